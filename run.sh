#!/usr/bin/env bash
# The main job: build everything, then run the bundled workloads side by side.
#
#   ./run.sh                  build, then run every benchmark (short)
#   BENCH_MIN_TIME=1 ./run.sh longer, steadier runs
#   ./run.sh bsalloc          only the benchmarks of packages matching a pattern
#
# Until libelfc.so exists (elfc, later), the workloads are the packages' Google
# Benchmark binaries (every target tagged "benchmark"). Each measures our code
# against a peer in the same run (bsalloc against malloc, bagpipe against a
# mutex-guarded deque and moodycamel::ConcurrentQueue, ...); compare rows within
# one run, not across runs. Installs missing Debian packages first.
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source=tools/setup.sh
source tools/setup.sh
allocators_setup

pattern=${1:-}
min_time=${BENCH_MIN_TIME:-0.1}

echo "=== building everything"
bazel build --curses=no --color=no --show_progress_rate_limit=20 //... 2>&1 | grep -vE '^(Loading|Analyzing|INFO: From)' || true
bazel build --curses=no //... >/dev/null 2>&1 || { echo "run.sh: build failed (run: bazel build //...)" >&2; exit 1; }

mapfile -t benches < <(bazel query --noshow_progress 'attr(tags, "\bbenchmark\b", kind("cc_binary", //...))' 2>/dev/null | sort)
bin_dir=$(bazel info bazel-bin 2>/dev/null)
ran=0
for label in "${benches[@]}"; do
  [ -n "$pattern" ] && [[ "$label" != *"$pattern"* ]] && continue
  path="$bin_dir/$(echo "${label#//}" | tr ':' '/')"
  echo
  echo "=== $label (min time ${min_time}s per benchmark)"
  "$path" --benchmark_min_time="$min_time" --benchmark_counters_tabular=true
  ran=$((ran + 1))
done
echo
echo "run.sh: ran $ran benchmark binaries on $(nproc) CPUs."
