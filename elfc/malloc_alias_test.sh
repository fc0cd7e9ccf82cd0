#!/usr/bin/env bash
# Each shared object's exported malloc, free and operator delete (plain and
# sized, single and array) are elfmalloc::Allocate and elfmalloc::Deallocate
# themselves (the --defsym link options in elfc/BUILD), not stubs that jump
# to them. elfc.cc asserts at compile time that the bound functions are
# those calls and nothing else; this checks that the link made them the
# same functions.
#   malloc_alias_test.sh LIB.so...
set -uo pipefail
command -v nm > /dev/null || { echo "FAIL: nm (binutils) not found"; exit 1; }
status=0
for lib in "$@"; do
  d=_ZN9elfmalloc10DeallocateEPv
  for pair in malloc=_ZN9elfmalloc8AllocateEm free=$d _ZdlPv=$d _ZdaPv=$d \
              _ZdlPvm=$d _ZdaPvm=$d; do
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
