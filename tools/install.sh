#!/usr/bin/env bash
# Installs elfc for programs built outside Bazel: builds what it needs with
# Bazel (optimised), then copies it into a prefix.
#
#   tools/install.sh --prefix=DIR      build and install into DIR (e.g. /usr/local)
#   tools/install.sh --help            this text; installs and builds nothing
#
# What lands in DIR:
#   lib/libelfc.so.V, lib/libelfc.so.M -> libelfc.so.V, lib/libelfc.so -> libelfc.so.M
#                                  the shared library (SONAME libelfc.so.M)
#   lib/libelfc_checked.so.V (+ the same links)
#                                  the checked build: bad frees abort
#   lib/libelfc_hardened.so.V (+ the same links)
#                                  the hardened build: canaries, quarantine,
#                                  shuffled reuse, guard pages (LD_PRELOAD it)
#   lib/libelfc.a                  self-contained archive (elfmalloc, malloc_bind,
#                                  mmap_alloc, bsalloc, bagpipe, the abseil parts)
#   include/elfc/elfc.h            elfc's C API (#include "elfc/elfc.h")
#   lib/pkgconfig/elfc.pc, elfc-static.pc
#   lib/cmake/elfc/elfcConfig.cmake, elfcConfigVersion.cmake
#                                  find_package(elfc): elfc::elfc, elfc::elfc_static
#   share/doc/elfc/                README.md, elfc.3.md (the C API reference)
# where V is elfc/VERSION (e.g. 0.1.0) and M its major number.
#
# Other options: --from=DIR installs the files found in DIR (as the build
# leaves them: libelfc.so, libelfc.a, libelfc.a.flags, ..., and elfc's
# sources) without building; //elfc:install_test uses it. BAZEL_STARTUP_OPTS
# and BAZEL_BUILD_OPTS from the environment go to Bazel, as for ./run.sh.
set -euo pipefail

prefix=""
from=""
for arg in "$@"; do
  case "$arg" in
    --prefix=*) prefix="${arg#--prefix=}" ;;
    --from=*) from="${arg#--from=}" ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$prefix" ]; then
  echo "install.sh: --prefix=DIR is required (see --help)" >&2
  exit 2
fi

repo=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "$from" ]; then
  cd "$repo"
  # shellcheck source=tools/setup.sh
  source tools/setup.sh
  allocators_setup
  # shellcheck disable=SC2206  # word-splitting the option lists is intended
  startup=(${BAZEL_STARTUP_OPTS:-})
  # shellcheck disable=SC2206
  build_opts=(${BAZEL_BUILD_OPTS:-})
  echo "install.sh: bazel build //elfc:install_files" >&2
  bazel "${startup[@]}" build --curses=no --color=no --compilation_mode=opt \
    "${build_opts[@]}" //elfc:install_files
  bin=$(bazel "${startup[@]}" info --compilation_mode=opt "${build_opts[@]}" bazel-bin 2>/dev/null)
  dirs=("$bin/elfc" "$repo/elfc")
else
  dirs=("$from")
fi

# The file called $1 from the first directory that has it.
find_file() {
  local d
  for d in "${dirs[@]}"; do
    if [ -e "$d/$1" ]; then
      echo "$d/$1"
      return 0
    fi
  done
  echo "install.sh: $1 not found in ${dirs[*]}" >&2
  return 1
}

version=$(tr -d ' \n' <"$(find_file VERSION)")
major=${version%%.*}
soname=$(readelf -d "$(find_file libelfc.so)" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
if [ "$soname" != "libelfc.so.$major" ]; then
  echo "install.sh: libelfc.so has SONAME '$soname', expected libelfc.so.$major (elfc/VERSION $version; see elfc/BUILD)" >&2
  exit 1
fi

# The archive's system libraries: what its Bazel libraries ask for (the C++
# runtime is optional, as for libelfc.so: elfc reaches it through weak
# references).
static_libs=()
while read -r flag; do
  [ -n "$flag" ] && static_libs+=("$flag")
done <"$(find_file libelfc.a.flags)"

mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)
lib="$prefix/lib"
mkdir -p "$lib/pkgconfig" "$lib/cmake/elfc" "$prefix/include/elfc" "$prefix/share/doc/elfc"

install_shared() {  # $1 = the built name, e.g. libelfc.so
  local stem=${1%.so}
  install -m 0755 "$(find_file "$1")" "$lib/$stem.so.$version"
  ln -sfn "$stem.so.$version" "$lib/$stem.so.$major"
  ln -sfn "$stem.so.$major" "$lib/$stem.so"
}
install_shared libelfc.so
install_shared libelfc_checked.so
install_shared libelfc_hardened.so
install -m 0644 "$(find_file libelfc.a)" "$lib/libelfc.a"
install -m 0644 "$(find_file elfc.h)" "$prefix/include/elfc/elfc.h"
for doc in README.md elfc.3.md; do
  install -m 0644 "$(find_file "$doc")" "$prefix/share/doc/elfc/$doc"
done

# Fills in a template's @...@ fields.
fill() {  # $1 = template, $2 = destination
  local cmake_libs
  cmake_libs=$(IFS=';'; echo "${static_libs[*]}")
  sed -e "s|@PREFIX@|$prefix|g" \
      -e "s|@VERSION@|$version|g" \
      -e "s|@SONAME@|$soname|g" \
      -e "s|@SHARED_FILE@|libelfc.so.$version|g" \
      -e "s|@STATIC_LIBS@|${static_libs[*]}|g" \
      -e "s|@STATIC_LIBS_CMAKE@|$cmake_libs|g" \
      "$(find_file "$1")" >"$2"
  chmod 0644 "$2"
}
fill elfc.pc.in "$lib/pkgconfig/elfc.pc"
fill elfc-static.pc.in "$lib/pkgconfig/elfc-static.pc"
fill elfcConfig.cmake.in "$lib/cmake/elfc/elfcConfig.cmake"
fill elfcConfigVersion.cmake.in "$lib/cmake/elfc/elfcConfigVersion.cmake"

echo "install.sh: elfc $version installed in $prefix" >&2
