#!/usr/bin/env bash
# Smoke test of one workload program (the sh_test behind every
# *_smoke_test in tools/workloads/BUILD): runs it with tiny parameters under
# whatever malloc the build links (glibc by default; sanitizer runtimes under
# --config=asan_ubsan/tsan; elfc under --config=elfc) and checks that
#   * it exits 0 and prints exactly one RESULT line for WORKLOAD, with the
#     fields tools/harness.py reads (threads, ops, seconds, ops_per_sec) and
#     positive numbers;
#   * with --expect_ops=N, ops is exactly N (the work is deterministic in
#     iteration mode, so a wrong count means a lost or repeated unit);
#   * a misspelt flag is rejected with exit status 2 instead of silently
#     running the default (long) workload.
#
# Usage: smoke_test.sh PROGRAM WORKLOAD [--expect_ops=N] -- ARGS...
set -uo pipefail

die() { echo "FAIL: $*"; exit 1; }

[ $# -ge 2 ] || die "usage: $0 PROGRAM WORKLOAD [--expect_ops=N] -- ARGS..."
program=$1
workload=$2
shift 2
expect_ops=""
while [ $# -gt 0 ]; do
  case "$1" in
    --expect_ops=*) expect_ops="${1#--expect_ops=}" ;;
    --) shift; break ;;
    *) die "unknown runner option $1" ;;
  esac
  shift
done
[ -x "$program" ] || die "program $program not found"

echo "+ $program $*"
out=$("$program" "$@" 2>&1)
rc=$?
echo "$out"
[ "$rc" -eq 0 ] || die "exit status $rc"

results=$(grep -c '^RESULT ' <<<"$out")
[ "$results" -eq 1 ] || die "expected one RESULT line, got $results"
line=$(grep '^RESULT ' <<<"$out")
[[ "$line" =~ ^RESULT\ workload=$workload\ threads=[1-9][0-9]*\ ops=([0-9]+)\ seconds=([0-9.]+)\ ops_per_sec=([0-9.]+)( |$) ]] ||
  die "malformed RESULT line: $line"
ops=${BASH_REMATCH[1]}
seconds=${BASH_REMATCH[2]}
rate=${BASH_REMATCH[3]}
[ "$ops" -gt 0 ] || die "ops=$ops"
awk -v s="$seconds" -v r="$rate" 'BEGIN { exit !(s > 0 && r > 0) }' ||
  die "seconds=$seconds ops_per_sec=$rate: expected positive numbers"
if [ -n "$expect_ops" ]; then
  [ "$ops" = "$expect_ops" ] || die "ops=$ops, expected $expect_ops"
fi

"$program" --no_such_flag=1 >/dev/null 2>&1
rc=$?
[ "$rc" -eq 2 ] || die "an unknown flag gave exit status $rc, expected 2"

echo "PASS: $workload ops=$ops"
