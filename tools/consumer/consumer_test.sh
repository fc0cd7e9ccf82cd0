#!/usr/bin/env bash
# Builds and runs this directory's workspace, which depends on the repository
# two levels up the way another project would (WORKSPACE: one
# local_repository, one load, one allocators_deps() call; BUILD: elfc as the
# binary's malloc, slab_alloc as a dependency; no .bazelrc). Passes when the
# program prints "consumer: PASS".
#
# A nested workspace cannot be built from inside a `bazel test` of the outer
# one, so ./test.sh runs this as a step of its own and counts it as one test.
# Bazel output base: $CONSUMER_OUTPUT_BASE, or a directory under ${TMPDIR:-/tmp}
# named after this checkout (kept between runs, so the next build is
# incremental); its server is shut down at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
default_base="${TMPDIR:-/tmp}/allocators-consumer-$(id -u)-$(printf '%s' "$here" | md5sum | cut -c1-12)"
output_base=${CONSUMER_OUTPUT_BASE:-$default_base}
log=$(mktemp -t allocators-consumer.XXXXXX)
status=0
bazel --output_base="$output_base" run --symlink_prefix=/ --curses=no --color=no \
  --show_progress_rate_limit=30 //:consumer >"$log" 2>&1 || status=$?
bazel --output_base="$output_base" shutdown >/dev/null 2>&1 || true
if [ "$status" -ne 0 ] || ! grep -q '^consumer: PASS' "$log"; then
  grep -E '^(ERROR|consumer)|error:' "$log" >&2 || tail -30 "$log" >&2
  echo "consumer_test: FAILED (bazel exit $status; log: $log)" >&2
  exit 1
fi
grep '^consumer: PASS' "$log"
rm -f "$log"
