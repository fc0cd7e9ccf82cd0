#!/usr/bin/env bash
# The main job: build libelfc.so and the workload programs, run every workload
# under elfc, glibc, jemalloc, tcmalloc and mimalloc side by side
# (tools/harness.py), and print throughput and peak-RSS tables with elfc's
# ratios to glibc and to the best peer, and whether the targets are met.
#
#   ./run.sh                   quick: threads 1 and 2, 3 interleaved runs of
#                              0.5 s per allocator, 28 rows (~4-5 min)
#   ./run.sh --full            threads 1, 2, 4, ... and nproc, 5 runs of 1 s;
#                              rewrites info/performance.md and its plots
#                              (installs python3-matplotlib if missing; needs
#                              a committed tree, see --allow_dirty; ~20 min)
#   ./run.sh --instructions    instructions per op of the single-thread rows
#                              and the malloc/free pair under callgrind
#                              (independent of the machine's load; with
#                              --full, both in one report)
#   ./run.sh --reps=5 --seconds=0.5 --threads=1,4 --workloads=larson,prodcons
#            --allocators=elfc,glibc --settle_seconds=30 --allow_dirty
#            --extra=NAME=LIB --label=NAME=TEXT
#                              overrides, passed to the harness (--extra runs
#                              another build, e.g. the previous commit's
#                              libelfc.so, side by side with elfc)
#   ./run.sh --matrix          afterwards, also the Google Benchmark matrix
#                              (//elfc:malloc_benchmark: pairs, 64K ring,
#                              producer-consumer x 16 B..256 KiB) under each
#                              allocator (elfc/compare_mallocs.py); with
#                              --filter=REGEX, --min_time=S
#   ./run.sh --checked         also elfc's checked build
#                              (//elfc:libelfc_checked.so: double free,
#                              interior and foreign pointers abort) as a sixth
#                              allocator, reported as elfc-checked / elfc
#                              (target: at most 5% slower)
#   ./run.sh --packages        afterwards, also every package's own Google
#                              Benchmark binary (bsalloc vs malloc, bagpipe vs
#                              moodycamel, slab_alloc vs new/delete, ...)
#
# The workloads (tools/workloads/README.md): threadtest (Hoard), shbench
# (SmartHeap-style), prodcons (blocks freed by another thread), larson (server
# churn with thread replacement), pair_latency, large-block churn, realloc
# growth, random-size cross-thread churn (rpmalloc), glibc's thread benchmark
# pattern, mixed-size stress, a long-running server, a database-like mix, and
# real programs from Debian with fixed inputs (sqlite3, python3, perl, g++,
# git), each run with LD_PRELOAD. Installs missing Debian packages first, including the
# peers (libjemalloc2, libtcmalloc-minimal4, libmimalloc2.0); a missing peer
# is skipped with a note. Bazel options from the environment, if set:
# BAZEL_STARTUP_OPTS (e.g. --output_base=DIR), BAZEL_BUILD_OPTS (e.g.
# --local_cpu_resources=1).
set -euo pipefail
cd "$(dirname "$0")"
# --help prints the text above and installs nothing.
for arg in "$@"; do
  case "$arg" in -h|--help) sed -n '2,47p' "$0"; exit 0 ;; esac
done
# shellcheck source=tools/setup.sh
source tools/setup.sh
allocators_setup
allocators_ensure_packages libjemalloc2 libtcmalloc-minimal4 libmimalloc2.0 || \
  echo "run.sh: peers not installed; comparing with what is there" >&2

full=0
matrix=0
packages=0
checked=0
min_time=${BENCH_MIN_TIME:-0.1}
filter=""
harness_args=()
for arg in "$@"; do
  case "$arg" in
    --full) full=1; harness_args+=(--full) ;;
    --reps=*|--seconds=*|--threads=*|--workloads=*|--allocators=*) harness_args+=("$arg") ;;
    --instructions|--allow_dirty|--settle_seconds=*|--extra=*|--label=*) harness_args+=("$arg") ;;
    --matrix) matrix=1 ;;
    --filter=*) filter="${arg#--filter=}" ;;
    --min_time=*) min_time="${arg#--min_time=}" ;;
    --packages) packages=1 ;;
    --checked) checked=1 ;;
    *) echo "run.sh: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done

# shellcheck disable=SC2206  # word-splitting the option lists is intended
startup=(${BAZEL_STARTUP_OPTS:-})
# shellcheck disable=SC2206
build_opts=(${BAZEL_BUILD_OPTS:-})
bazel_build() {
  local log
  log=$(mktemp -t allocators-run-build.XXXXXX)
  if ! bazel "${startup[@]}" build --curses=no --color=no "${build_opts[@]}" "$@" >"$log" 2>&1; then
    grep -E '^(ERROR|FAILED)' "$log" >&2 || tail -20 "$log" >&2
    echo "run.sh: build failed: bazel build $* (full log: $log)" >&2
    exit 1
  fi
  rm -f "$log"
}

if [ "$full" = 1 ]; then
  allocators_ensure_packages python3-matplotlib || \
    echo "run.sh: python3-matplotlib not installed; the report will have no plots" >&2
fi

echo "=== building libelfc.so and the workloads"
targets=(//elfc:libelfc.so //tools/workloads:all)
[ "$checked" = 1 ] && targets+=(//elfc:libelfc_checked.so)
[ "$matrix" = 1 ] && targets+=(//elfc:malloc_benchmark)
bazel_build "${targets[@]}"
bin_dir=$(bazel "${startup[@]}" info "${build_opts[@]}" bazel-bin 2>/dev/null)
if [ "$checked" = 1 ]; then
  harness_args+=(--extra="elfc-checked=$bin_dir/elfc/libelfc_checked.so")
fi
echo "=== workloads under each allocator, $(nproc) CPUs (progress on stderr)"
status=0
/usr/bin/python3 tools/harness.py --bin_dir="$bin_dir" \
  --command="./run.sh${*:+ $*}" "${harness_args[@]}" || status=$?

if [ "$matrix" = 1 ]; then
  echo
  echo "=== the Google Benchmark matrix (//elfc:malloc_benchmark) through malloc/free"
  /usr/bin/python3 elfc/compare_mallocs.py --bin_dir="$bin_dir" --reps=1 \
    --min_time="$min_time" ${filter:+--filter="$filter"}
fi

if [ "$packages" = 1 ]; then
  bazel_build //...
  mapfile -t benches < <(bazel "${startup[@]}" query --noshow_progress 'attr(tags, "\bbenchmark\b", kind("cc_binary", //...))' 2>/dev/null | sort)
  for label in "${benches[@]}"; do
    [ "$label" = "//elfc:malloc_benchmark" ] && continue
    path="$bin_dir/$(echo "${label#//}" | tr ':' '/')"
    echo
    echo "=== $label (min time ${min_time}s per benchmark)"
    "$path" --benchmark_min_time="$min_time" --benchmark_counters_tabular=true
  done
fi
exit "$status"
