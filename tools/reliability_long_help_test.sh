#!/usr/bin/env bash
# `tools/reliability_long.sh --help` prints the script's whole header
# comment: every step (the last one added, cpython_hardened, included) and
# the closing paragraphs on the environment and the time the tier takes,
# and nothing of the code after it. It printed a fixed range of lines,
# which cut the header off once a step was added.
# Argument: the script (a runfile of this test).
set -u
script=$1
out=$("$script" --help 2>&1)
status=$?
fail=0
check() {
  if ! grep -qF -- "$1" <<< "$out"; then
    echo "FAIL: --help does not print '$1'"; fail=1
  fi
}
[ "$status" -eq 0 ] || { echo "FAIL: --help exited with $status"; fail=1; }
check "The reliability battery's longer tier"
check "cpython_hardened"
check "# Environment:"
check "# Time on a quiet 2-core machine"
# The last line of the header (the comment block before `set -uo pipefail`).
last=$(awk 'NR > 1 && !/^#/ {exit} NR > 1 {l = $0} END {print l}' "$script")
check "$last"
if grep -qvE '^#' <<< "$out"; then
  echo "FAIL: --help printed lines that are not the header comment:"
  grep -vE '^#' <<< "$out" | head -3
  fail=1
fi
[ "$fail" -eq 0 ] && echo "ok: --help prints the whole header ($(wc -l <<< "$out") lines)"
exit "$fail"
