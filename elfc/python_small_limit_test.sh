#!/usr/bin/env bash
# Debian's python3 starts with libelfc.so preloaded under a 32 MiB address
# space limit (ulimit -v 32768), as it does under glibc's malloc.
#
#   python_small_limit_test.sh LIBELFC
#
# At start-up python3 touches a block or two of about a dozen classes of
# 16 .. 256 KiB, whose slabs are 2 MiB each: claimed by the main thread
# (and kept for its next allocation of the class), they used to add up to
# more address space than the limit leaves once the interpreter and its
# libraries are mapped. A mapping that fails now makes the thread give back
# its claimed slabs and cached blocks and try again (elfmalloc/
# thread_cache.h, "Draining"), so the start-up fits.
# Skipped (passes) when /usr/bin/python3 is missing, or when it does not
# start under the limit even with glibc's malloc (another python build).
set -uo pipefail

lib=$(realpath "$1")
py=/usr/bin/python3
limit_kib=32768
check='import sys; sys.exit(0 if "libelfc" in open("/proc/self/maps").read() else 3)'

if [ ! -x "$py" ]; then
  echo "SKIP: no $py"
  exit 0
fi
if ! (ulimit -v "$limit_kib"; "$py" -c pass); then
  echo "SKIP: $py does not start under ulimit -v $limit_kib even with glibc's malloc"
  exit 0
fi
(ulimit -v "$limit_kib"; LD_PRELOAD="$lib" "$py" -c "$check")
rc=$?
case $rc in
  0) echo "python_small_limit_test: PASS ($py -c ... under ulimit -v $limit_kib with $lib)" ;;
  3) echo "FAIL: libelfc.so was not mapped into $py"; exit 1 ;;
  *) echo "FAIL: $py exited with status $rc under ulimit -v $limit_kib with $lib preloaded"; exit 1 ;;
esac
