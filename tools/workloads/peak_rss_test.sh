#!/usr/bin/env bash
# Test of peak_rss (the launcher tools/harness.py measures peak RSS with):
# a run that keeps ~31 MiB live reports at least that much, and more than a
# tiny run; the command's output and exit status pass through; LD_PRELOAD is
# set for the command only with --preload.
# Usage: peak_rss_test.sh PEAK_RSS THREADTEST
set -uo pipefail
die() { echo "FAIL: $*"; exit 1; }
peak_rss=$1
threadtest=$2

kib() { sed -n 's/^PEAK_RSS_KIB=\([0-9][0-9]*\)$/\1/p' <<<"$1"; }

# 8000 live blocks of 4000 B, each touched at both ends (so every page they
# span is touched): >= 30 MiB resident.
big_out=$("$peak_rss" "$threadtest" --objects=8000 --size=4000 --iterations=1) ||
  die "big run failed: $big_out"
echo "$big_out"
grep -q '^RESULT workload=threadtest ' <<<"$big_out" || die "command output lost"
big=$(kib "$big_out")
[ -n "$big" ] || die "no PEAK_RSS_KIB line"
[ "$big" -ge 30000 ] || die "peak RSS $big KiB, expected >= 30000 (31 MiB live)"

small_out=$("$peak_rss" "$threadtest" --objects=10 --size=16 --iterations=1) ||
  die "small run failed: $small_out"
small=$(kib "$small_out")
echo "small run: $small KiB, big run: $big KiB"
if [ -z "$small" ] || [ "$small" -ge "$big" ]; then
  die "small run '$small' KiB is not below the big run's $big KiB"
fi

"$peak_rss" "$threadtest" --no_such_flag=1 >/dev/null 2>&1
rc=$?
[ "$rc" -eq 2 ] || die "exit status $rc passed through, expected 2"

# --preload: a library that does not exist makes the loader complain, which
# proves LD_PRELOAD reached the command (and the command still runs).
err=$("$peak_rss" --preload=/nonexistent/libx.so "$threadtest" --objects=10 --iterations=1 2>&1 >/dev/null)
grep -q "nonexistent/libx.so" <<<"$err" || die "--preload did not reach the command: $err"
echo "PASS"
