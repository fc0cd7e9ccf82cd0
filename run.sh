#!/usr/bin/env bash
# The main job: build libelfc.so and run the bundled workloads under elfc and
# under the system malloc (and the peers: jemalloc, tcmalloc, mimalloc), side by
# side, printing one table.
#
#   ./run.sh                   quick: one interleaved run per allocator (~3 min)
#   ./run.sh --reps=3          medians of 3 interleaved runs
#   ./run.sh --filter=Pairs    only workloads matching a regex
#   ./run.sh --packages        afterwards, also every package's own Google
#                              Benchmark binary (bsalloc vs malloc, bagpipe vs
#                              moodycamel, slab_alloc vs new/delete, ...)
#
# The workloads are //elfc:malloc_benchmark: alloc/free pairs, buffered pairs
# (a ring of 64K live blocks) and producer-consumer (blocks freed by another
# thread), at 16 B, 64 B, 1 KiB, 16 KiB and 256 KiB, 1 and 2 threads, through
# plain malloc/free, run under each allocator with LD_PRELOAD
# (elfc/compare_mallocs.py). Installs missing Debian packages first, including
# the peers (libjemalloc2, libtcmalloc-minimal4, libmimalloc2.0).
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source=tools/setup.sh
source tools/setup.sh
allocators_setup
allocators_ensure_packages libjemalloc2 libtcmalloc-minimal4 libmimalloc2.0 || \
  echo "run.sh: peers not installed; comparing with what is there" >&2

reps=1
min_time=${BENCH_MIN_TIME:-0.1}
filter=""
packages=0
for arg in "$@"; do
  case "$arg" in
    --reps=*) reps="${arg#--reps=}" ;;
    --filter=*) filter="${arg#--filter=}" ;;
    --min_time=*) min_time="${arg#--min_time=}" ;;
    --packages) packages=1 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done

echo "=== building libelfc.so and the workloads"
bazel build --curses=no --color=no //elfc:libelfc.so //elfc:malloc_benchmark 2>&1 | \
  grep -E '^(ERROR|FAILED|INFO: Build completed)' || true
bazel build --curses=no //elfc:libelfc.so //elfc:malloc_benchmark >/dev/null 2>&1 || {
  echo "run.sh: build failed (run: bazel build //elfc:all)" >&2; exit 1; }
bin_dir=$(bazel info bazel-bin 2>/dev/null)

echo "=== workloads through malloc/free, $(nproc) CPUs, ${reps} interleaved run(s) per allocator"
/usr/bin/python3 elfc/compare_mallocs.py --bin_dir="$bin_dir" --reps="$reps" \
  --min_time="$min_time" ${filter:+--filter="$filter"}

if [ "$packages" = 1 ]; then
  bazel build --curses=no //... >/dev/null 2>&1 || { echo "run.sh: build //... failed" >&2; exit 1; }
  mapfile -t benches < <(bazel query --noshow_progress 'attr(tags, "\bbenchmark\b", kind("cc_binary", //...))' 2>/dev/null | sort)
  for label in "${benches[@]}"; do
    [ "$label" = "//elfc:malloc_benchmark" ] && continue
    path="$bin_dir/$(echo "${label#//}" | tr ':' '/')"
    echo
    echo "=== $label (min time ${min_time}s per benchmark)"
    "$path" --benchmark_min_time="$min_time" --benchmark_counters_tabular=true
  done
fi
