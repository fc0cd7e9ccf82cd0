#!/usr/bin/env bash
# The README examples compiled (building this test built every
# //tools:readme_examples_* library from them); here: every C/C++ block of
# every README is in the extractor's lists (tools/readme_examples/*.txt),
# compiled or explicitly skipped, and more are compiled than skipped.
#
#   readme_examples_test.sh README.md...
set -euo pipefail
fail() { echo "FAIL: $*"; exit 1; }
summary=$(cat tools/readme_examples/*.txt)
echo "$summary"
for readme in "$@"; do
  readme=${readme#./}
  blocks=$(grep -cE '^(```|~~~)[[:space:]]*(cpp|c\+\+|cc|c)([[:space:]]|$)' "$readme" || true)
  listed=$(grep -c "^$readme:" <<<"$summary" || true)
  [ "$blocks" = "$listed" ] || fail "$readme has $blocks C/C++ examples, the extractor listed $listed"
done
compiled=$(grep -vc ' skip$' <<<"$summary" || true)
skipped=$(grep -c ' skip$' <<<"$summary" || true)
echo "readme_examples_test: $compiled examples compiled, $skipped skipped"
[ "$compiled" -gt "$skipped" ] || fail "fewer examples compiled than skipped"
echo "readme_examples_test: PASS"
