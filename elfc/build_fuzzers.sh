#!/usr/bin/env bash
# Builds the reliability battery's three libFuzzer fuzzers with clang,
# outside Bazel (Debian's Bazel 4.2.3 toolchain is GCC, which has no
# libFuzzer):
#
#   malloc_fuzzer   elfc/malloc_fuzzer.cc: the malloc operation fuzzer
#                   (elfc/malloc_fuzz.h) over elfmalloc through the prefixed
#                   malloc_bind binding, i.e. the code libelfc.so runs
#   slab_fuzzer     elfmalloc/slab_fuzz_test.cc: Slab against a set model
#   bagpipe_fuzzer  bagpipe/bagpipe_fuzz_test.cc: Bagpipe / FaaQueue against
#                   multiset and FIFO models
#
# Each is its Bazel target's sources (found with `bazel query`, so new files
# are picked up) compiled with -DALLOCATORS_LIBFUZZER (the file then defines
# LLVMFuzzerTestOneInput instead of its tests), the allocator code compiled
# with coverage instrumentation (-fsanitize=fuzzer-no-link) so libFuzzer is
# guided by elfmalloc's / bagpipe's own branches, and everything with
# AddressSanitizer and UndefinedBehaviorSanitizer. The package version
# headers Bazel generates are generated here the same way. abseil comes
# from Debian's static archives, as in the Bazel build.
#
# Usage:
#   elfc/build_fuzzers.sh [OUT_DIR]          (default /tmp/allocators-fuzzers)
#   OUT_DIR/malloc_fuzzer -max_total_time=600 CORPUS_DIR
#   OUT_DIR/slab_fuzzer -max_total_time=600
#   OUT_DIR/bagpipe_fuzzer -max_total_time=600
# A crash input replays with the Bazel-built tools too:
#   bazel run //elfc:malloc_fuzzer -- /path/to/crash-...   (MALLOC_FUZZ_TRACE=1
#   prints every operation)
# tools/reliability_long.sh builds and runs them for a given time.
#
# Environment: CXX (default clang++; needs libFuzzer, i.e. clang >= 6),
# BAZEL (default bazel), BAZEL_STARTUP_FLAGS (e.g. --output_base=...),
# JOBS (parallel compiles, default 2).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
out=${1:-/tmp/allocators-fuzzers}
cxx=${CXX:-clang++}
bazel=${BAZEL:-bazel}
jobs=${JOBS:-2}
mkdir -p "$out/obj" "$out/gen"

if ! echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' |
    "$cxx" -x c++ -fsanitize=fuzzer - -o "$out/probe" 2>/dev/null; then
  echo "build_fuzzers: $cxx cannot build a libFuzzer binary (-fsanitize=fuzzer)" >&2
  exit 1
fi

# version.h of every package, as //tools:version.bzl generates it.
for version in */VERSION; do
  pkg=${version%/VERSION}
  ns=$(sed -n 's/.*package_version(\s*namespace = "\([a-z_]*\)".*/\1/p' "$pkg/BUILD" | head -1)
  if [ -z "$ns" ]; then
    ns=$(grep -A2 'package_version(' "$pkg/BUILD" | sed -n 's/.*namespace = "\([a-z_]*\)".*/\1/p' | head -1)
  fi
  [ -n "$ns" ] || continue
  guard=$(echo "${pkg}_VERSION_H_" | tr 'a-z/' 'A-Z_')
  mkdir -p "$out/gen/$pkg"
  printf '%s\n' "// Generated from $pkg/VERSION by elfc/build_fuzzers.sh." \
    "#ifndef $guard" "#define $guard" "" "namespace $ns {" "" \
    "inline constexpr char kVersion[] = \"$(tr -d ' \n' < "$version")\";" "" \
    "}  // namespace $ns" "" "#endif  // $guard" > "$out/gen/$pkg/version.h"
done

rm -rf "$out/overlay"  # fix-ups of earlier versions; the sources build with clang now

common=(-std=c++20 -O1 -g -fno-omit-frame-pointer -DALLOCATORS_LIBFUZZER
        -DADDRESS_SANITIZER -I"$root" -I"$out/gen"
        -fsanitize=address,undefined -fno-sanitize-recover=undefined
        -Wno-unused-command-line-argument)
absl_libs=$(pkg-config --libs --static absl_base absl_raw_logging_internal \
  absl_spinlock_wait absl_log_severity 2>/dev/null || \
  echo "-labsl_base -labsl_raw_logging_internal -labsl_spinlock_wait -labsl_log_severity")

build() {
  local name=$1 target=$2
  local srcs objs=()
  srcs=$($bazel ${BAZEL_STARTUP_FLAGS:-} query --noshow_progress \
    "kind('source file', deps($target))" 2>/dev/null |
    grep -v '^@' | grep '\.cc$' | sed 's|^//||; s|:|/|')
  [ -n "$srcs" ] || { echo "build_fuzzers: bazel query of $target found no sources" >&2; exit 1; }
  local pids=()
  for src in $srcs; do
    local obj="$out/obj/$name/${src%.cc}.o"
    mkdir -p "$(dirname "$obj")"
    objs+=("$obj")
    # Always recompiled (no header dependency tracking; a build is ~1 min).
    "$cxx" "${common[@]}" -fsanitize=fuzzer-no-link -c "$src" -o "$obj" &
    pids+=($!)
    if [ "${#pids[@]}" -ge "$jobs" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
  done
  for p in "${pids[@]+"${pids[@]}"}"; do wait "$p"; done
  "$cxx" "${common[@]}" -fsanitize=fuzzer "${objs[@]}" $absl_libs -pthread -ldl \
    -o "$out/$name"
  echo "built $out/$name ($(echo "$srcs" | wc -l) sources from $target)"
}

build malloc_fuzzer //elfc:malloc_fuzzer
build slab_fuzzer //elfmalloc:slab_fuzz_test
build bagpipe_fuzzer //bagpipe:bagpipe_fuzz_test
