#!/usr/bin/env bash
# Runs one elfc test program under LD_PRELOAD and decides pass/fail
# (the sh_test behind every elfc_preload_test, see preload_test.bzl).
#
#   preload_test.sh PROGRAM PRELOAD|none [--strict] [--expect=TEXT]... -- ARGS...
#
# PROGRAM runs with LD_PRELOAD=<absolute PRELOAD> (nothing when `none`) and
# ELFC_PRELOAD_EXPECT set to the same path (or `none`), ELFC_PRELOAD_STRICT=1
# with --strict; only PROGRAM sees these variables, not this script or the
# timeout(1) around it. The test passes only if
#   * PROGRAM exits 0 (a signal, a non-zero status or a hang fails),
#   * its output has the line "elfc-preload-check: OK" from CheckPreload()
#     (preload_test_util.h): the allocation API really came from PRELOAD,
#   * its output contains every --expect TEXT.
# A hang is cut off by timeout(1) shortly before Bazel's own timeout
# ($TEST_TIMEOUT), so the log says what happened instead of "TIMEOUT".
#
# Environment (pass with --test_env=NAME=VALUE):
#   ELFC_TEST_PRELOAD=/path/lib.so  run against another malloc instead of the
#       built one, e.g. /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 to check
#       that a failure is elfc's and not the test's (drops --strict: peers do
#       not export every entry point elfc does).
#   ELFC_STRESS_SCALE=N  multiplies the work of every program (default 1).
set -uo pipefail

die() { echo "FAIL: $*"; exit 1; }

[ $# -ge 2 ] || die "usage: $0 PROGRAM PRELOAD|none [--strict] [--expect=TEXT]... -- ARGS..."
program=$1
preload=$2
shift 2
strict=0
expects=()
while [ $# -gt 0 ]; do
  case "$1" in
    --strict) strict=1 ;;
    --expect=*) expects+=("${1#--expect=}") ;;
    --) shift; break ;;
    *) die "unknown runner option $1" ;;
  esac
  shift
done

abs() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
program=$(abs "$program")
[ -x "$program" ] || die "program $program not found"
if [ "$preload" != none ]; then
  if [ -n "${ELFC_TEST_PRELOAD:-}" ]; then
    echo "ELFC_TEST_PRELOAD overrides the preload: $ELFC_TEST_PRELOAD"
    preload=$ELFC_TEST_PRELOAD
    strict=0
  fi
  preload=$(abs "$preload")
  [ -f "$preload" ] || die "preload $preload not found"
fi

# Leave 20 s of Bazel's timeout for our own report.
limit=$(( ${TEST_TIMEOUT:-300} - 20 ))
[ "$limit" -ge 10 ] || limit=10

out="${TEST_TMPDIR:-$(mktemp -d)}/$(basename "$program").out"
envs=(ELFC_PRELOAD_EXPECT="$preload" ELFC_PRELOAD_STRICT="$strict")
[ "$preload" != none ] && envs+=(LD_PRELOAD="$preload")
echo "+ LD_PRELOAD=$([ "$preload" != none ] && echo "$preload") $program $*"
# -k: if the program ignores SIGTERM (a deadlocked child), SIGKILL follows.
# timeout(1) signals its whole process group, forked children included.
timeout -k 5 "$limit" env "${envs[@]}" "$program" "$@" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}

fail=0
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
  echo "FAIL: $(basename "$program") did not finish within ${limit}s (hang?); killed"
  fail=1
elif [ "$rc" -gt 128 ]; then
  echo "FAIL: $(basename "$program") died of signal $((rc - 128)) ($(kill -l $((rc - 128)) 2>/dev/null))"
  fail=1
elif [ "$rc" -ne 0 ]; then
  echo "FAIL: $(basename "$program") exited with status $rc"
  fail=1
fi
if ! grep -q '^elfc-preload-check: OK' "$out"; then
  echo "FAIL: no 'elfc-preload-check: OK' line: the program did not verify that the preload is in effect"
  fail=1
fi
for e in "${expects[@]+"${expects[@]}"}"; do
  if ! grep -qF -- "$e" "$out"; then
    echo "FAIL: expected output '$e' is missing"
    fail=1
  fi
done
[ "$fail" -eq 0 ] && echo "PASS: $(basename "$program") under ${preload}"
exit "$fail"
