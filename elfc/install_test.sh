#!/usr/bin/env bash
# tools/install.sh into a temporary prefix, then programs built against the
# installed tree the ways a user would, each run and required to use elfc's
# malloc (testdata/install/prog.c checks elfc's own statistics):
#   * pkg-config elfc (libelfc.so: NEEDED libelfc.so.0, found through rpath)
#   * pkg-config elfc-static, and plainly `cc prog.c libelfc.a -lpthread`
#     (no libelfc and no C++ runtime at run time), also with -static
#   * CMake find_package(elfc): elfc::elfc (shared; static with
#     ELFC_USE_STATIC_LIBS=ON) and elfc::elfc_static; versions it must refuse
#   * libelfc_checked.so preloaded over the shared program: "(checked)"
#   * libelfc_hardened.so preloaded over the shared program: "(hardened)"
#
#   install_test.sh DIR_WITH_INSTALL_FILES [checked]
# "checked": the build runs under --config=checked, where the installed
# libraries are checked builds too (elfc/BUILD passes it).
set -euo pipefail
from=$(realpath "$1")
repo=$PWD
tmp=${TEST_TMPDIR:-$(mktemp -d)}
prefix="$tmp/prefix"
src="$repo/elfc/testdata/install"
version=$(tr -d ' \n' <"$from/VERSION")
fail() { echo "FAIL: $*"; exit 1; }
suffix=""
[ "${2:-}" = "checked" ] && suffix=" (checked)"

bash "$repo/tools/install.sh" --prefix="$prefix" --from="$from"

needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' '; }
run() {  # $1 = label, $2 = program
  local out
  out=$("$2") || fail "$1: the program failed: $out"
  [ "$out" = "install_prog: PASS (elfc $version$suffix)" ] || fail "$1: unexpected output: $out"
  echo "$1: $out [NEEDED: $(needed "$2")]"
}

export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
[ "$(pkg-config --modversion elfc)" = "$version" ] || fail "pkg-config --modversion elfc"

# shellcheck disable=SC2046  # pkg-config output is meant to be split
cc -Wall -Werror -o "$tmp/pc_shared" "$src/prog.c" $(pkg-config --cflags --libs elfc) \
  -Wl,-rpath,"$prefix/lib"
[[ " $(needed "$tmp/pc_shared")" == *" libelfc.so.0 "* ]] || fail "pkg-config elfc: no NEEDED libelfc.so.0"
run "pkg-config elfc" "$tmp/pc_shared"

# shellcheck disable=SC2046
cc -Wall -Werror -o "$tmp/pc_static" "$src/prog.c" $(pkg-config --cflags --libs elfc-static)
cc -Wall -Werror -o "$tmp/plain_static" "$src/prog.c" -I"$prefix/include" \
  "$prefix/lib/libelfc.a" -lpthread
for p in pc_static plain_static; do
  case " $(needed "$tmp/$p")" in
    *libelfc*|*libstdc++*) fail "$p: depends on $(needed "$tmp/$p")" ;;
  esac
done
run "pkg-config elfc-static" "$tmp/pc_static"
run "cc prog.c libelfc.a -lpthread" "$tmp/plain_static"

# A fully static executable: libc.a's malloc.o must not be pulled in.
cc -Wall -Werror -static -o "$tmp/full_static" "$src/prog.c" -I"$prefix/include" \
  "$prefix/lib/libelfc.a" -lpthread
readelf -l "$tmp/full_static" | grep -q INTERP && fail "-static: the program has an interpreter"
run "cc -static prog.c libelfc.a -lpthread" "$tmp/full_static"

cmake -S "$src" -B "$tmp/cmake" -DCMAKE_PREFIX_PATH="$prefix" >"$tmp/cmake.log" 2>&1 &&
  cmake --build "$tmp/cmake" >>"$tmp/cmake.log" 2>&1 || { cat "$tmp/cmake.log"; fail "CMake project"; }
[[ " $(needed "$tmp/cmake/prog_shared")" == *" libelfc.so.0 "* ]] || fail "CMake elfc::elfc: no NEEDED libelfc.so.0"
run "cmake elfc::elfc" "$tmp/cmake/prog_shared"
run "cmake elfc::elfc_static" "$tmp/cmake/prog_static"

# ELFC_USE_STATIC_LIBS=ON: elfc::elfc is the archive.
cmake -S "$src" -B "$tmp/cmake_static" -DCMAKE_PREFIX_PATH="$prefix" -DELFC_USE_STATIC_LIBS=ON \
  >"$tmp/cmake.log" 2>&1 &&
  cmake --build "$tmp/cmake_static" >>"$tmp/cmake.log" 2>&1 || { cat "$tmp/cmake.log"; fail "CMake, static"; }
[[ " $(needed "$tmp/cmake_static/prog_shared")" == *libelfc* ]] && fail "ELFC_USE_STATIC_LIBS=ON: still NEEDED libelfc"
run "cmake elfc::elfc, ELFC_USE_STATIC_LIBS=ON" "$tmp/cmake_static/prog_shared"

# Versions the installed package must refuse (before 1.0, another minor).
for want in 0.2 1.0 99; do
  if cmake -S "$src" -B "$tmp/cmake_v$want" -DCMAKE_PREFIX_PATH="$prefix" \
      -DELFC_TEST_VERSION="$want" >"$tmp/cmake.log" 2>&1; then
    fail "find_package(elfc $want) accepted elfc $version"
  fi
done
echo "find_package(elfc 0.2 / 1.0 / 99): refused"

out=$(LD_PRELOAD="$prefix/lib/libelfc_checked.so" "$tmp/pc_shared") || fail "under libelfc_checked.so: $out"
[ "$out" = "install_prog: PASS (elfc $version (checked))" ] || fail "under libelfc_checked.so: $out"
echo "libelfc_checked.so preloaded: $out"
out=$(LD_PRELOAD="$prefix/lib/libelfc_hardened.so" "$tmp/pc_shared") || fail "under libelfc_hardened.so: $out"
[ "$out" = "install_prog: PASS (elfc $version (hardened))" ] || fail "under libelfc_hardened.so: $out"
echo "libelfc_hardened.so preloaded: $out"
echo "install_test: PASS"
