#!/usr/bin/env bash
# Each shared object's exported malloc, free and operator delete (plain and
# sized, single and array) are elfmalloc::Allocate and elfmalloc::Deallocate
# themselves (the --defsym link options in elfc/BUILD), not stubs that jump
# to them. elfc.cc asserts at compile time that the bound functions are
# those calls and nothing else; this checks that the link made them the
# same functions.
#   malloc_alias_test.sh --alias=NAME=SYMBOL... LIB.so...
# (the pairs are elfc/BUILD's _MALLOC_ALIASES, the list the links use)
set -uo pipefail
command -v nm > /dev/null || { echo "FAIL: nm (binutils) not found"; exit 1; }
aliases=()
libs=()
for arg in "$@"; do
  case "$arg" in
    --alias=*) aliases+=("${arg#--alias=}") ;;
    *) libs+=("$arg") ;;
  esac
done
if [ ${#aliases[@]} = 0 ] || [ ${#libs[@]} = 0 ]; then
  echo "FAIL: usage: malloc_alias_test.sh --alias=NAME=SYMBOL... LIB.so..."
  exit 1
fi
status=0
for lib in "${libs[@]}"; do
  for pair in "${aliases[@]}"; do
    name=${pair%%=*}
    target=${pair#*=}
    exported=$(nm -D --defined-only "$lib" | awk -v s="$name" '$3 == s { print $1 }')
    internal=$(nm "$lib" | awk -v s="$target" '$3 == s { print $1 }')
    if [ -z "$exported" ] || [ -z "$internal" ]; then
      echo "FAIL: $lib: '$name' exported at '${exported}', '$target' at '${internal}' (stripped?)"
      status=1
    elif [ "$exported" != "$internal" ]; then
      echo "FAIL: $lib: $name is at $exported, $target at $internal: not the same function"
      status=1
    else
      echo "ok: $(basename "$lib"): $name is $target ($exported)"
    fi
  done
done
[ "$status" = 0 ] && echo "PASS: malloc, free and operator delete are elfmalloc's functions in every library"
exit "$status"
