#!/usr/bin/env bash
# elfc/OPTIONS.md's table must be what options_md prints from the options
# table (elfmalloc/options.h).
#   options_doc_test.sh OPTIONS_MD_BINARY OPTIONS.md
set -uo pipefail
expected=$("$1") || { echo "FAIL: $1 failed"; exit 1; }
actual=$(sed -n '/^<!-- BEGIN GENERATED/,/^<!-- END GENERATED/p' "$2" | sed '1d;$d')
if [ "$expected" != "$actual" ]; then
  echo "FAIL: the option table in elfc/OPTIONS.md differs from elfmalloc/options.h."
  echo "Replace the lines between the GENERATED markers with the output of"
  echo "  bazel run //elfc:options_md"
  diff <(echo "$expected") <(echo "$actual")
  exit 1
fi
echo "PASS: elfc/OPTIONS.md matches the options table"
