#!/usr/bin/env bash
# The reliability battery's longer tier, one command:
#
#   tools/reliability_long.sh [--out DIR] [--fuzz-seconds N] [--fork-runs N]
#                             [--turnover-runs N] [--only STEP]... [--skip STEP]...
#
# Steps (all by default, in this order; each prints its figures and the run
# ends with a summary, also written to DIR/summary.md for info/reliability.md):
#   build    bazel build //elfc:libelfc.so //elfc:libelfc_hardened.so
#            //elfc:fork //elfc:malloc_fuzzer //tools/workloads:threadtest
#            (copied to DIR, so later steps use a fixed build)
#   cpython  CPython's regression tests (/usr/bin/python3 -m test, Debian's
#            libpython3.X-testsuite) twice: under glibc, then with
#            LD_PRELOAD=libelfc.so (every worker process inherits it); the
#            step passes if every test module has the same result both times
#            (passed / failed / skipped / ...). Modules listed in
#            CPYTHON_EXCLUDE below are left out (GUI, network-dependent or
#            very slow ones; see there).
#   cpython_hardened
#            the same suite once more with LD_PRELOAD=libelfc_hardened.so
#            and PYTHONMALLOC=malloc, so that every Python object goes
#            through the hardened malloc (canaries, neighbour checks,
#            quarantine: a false alarm in a correct program aborts it),
#            compared with the glibc run (run first if the cpython step is
#            not selected; no module's result depends on PYTHONMALLOC
#            there).
#   bazel    this repository's own `bazel build //...` in a FRESH output base
#            (DIR/bazel_output_base) with libelfc.so preloaded into the Bazel
#            client, the server (a JVM: through a --server_javabase wrapper,
#            since the client drops LD_PRELOAD) and, through --action_env,
#            every build action (gcc, cc1plus, as, ld, ar, the genrules'
#            shells); checked by reading /proc/<server pid>/maps and the
#            actions' environment in `bazel aquery`.
#   fork     `fork --forkers=3 --runs=N` under libelfc.so (default N = 100):
#            N consecutive fresh processes, each forking 200 times from 3
#            worker threads and the main thread while 2 more threads
#            allocate, each run with its own deadline (a hang fails).
#   turnover `threadtest --size=2048 --objects=10000 --seconds=0.3` under
#            libelfc.so, N fresh processes (default 1000) on 2, 3 and 4
#            threads in turn: slabs change hands between threads thousands
#            of times a second, and the workload checks every block's
#            contents before it frees it (a block handed out twice fails).
#            A slab-turnover race once failed about one run in 200 here.
#   fuzz     elfc/build_fuzzers.sh (clang, libFuzzer + ASan/UBSan), then
#            malloc_fuzzer (seeded with elfc/testdata/malloc_fuzz_corpus),
#            slab_fuzzer and bagpipe_fuzzer for --fuzz-seconds each (default
#            600), one after the other; then the grown malloc corpus replayed
#            through the real libelfc.so (malloc_fuzzer --process under
#            LD_PRELOAD). Any crash input fails the step (kept in DIR/fuzz).
#
# Environment: BAZEL (default bazel), BAZEL_STARTUP_FLAGS (e.g.
# --output_base=... for the build step; the bazel step always uses its own
# fresh output base), BAZEL_FLAGS (e.g. --local_cpu_resources=2), JOBS
# (parallel CPython test processes, default 2), CXX for the fuzzers.
#
# Time on a quiet 2-core machine: ~1 h 15 min with the defaults (CPython
# 3 x ~8 min, bazel //... ~3-6 min, fork ~2-5 min, turnover ~10 min, fuzzing
# 3 x 10 min + build).
set -uo pipefail

# Started in the background by a non-interactive shell (`cmd &` in a
# script) a process inherits SIGINT and SIGQUIT ignored (and SIGHUP under
# nohup), and so would every test run from here: CPython's signal-based tests (test_signal,
# test_threading, test_generators, test_multiprocessing_*, ...) then fail
# under glibc too. Re-exec once with the default dispositions.
if [ -z "${RELIABILITY_SIGNALS_RESET:-}" ]; then
  export RELIABILITY_SIGNALS_RESET=1
  exec /usr/bin/python3 -c 'import os, signal, sys
for s in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP):
    signal.signal(s, signal.SIG_DFL)
os.execv(sys.argv[1], sys.argv[1:])' "$(readlink -f "$0")" "$@"
fi

cd "$(dirname "$0")/.."
root=$PWD
out=/tmp/allocators-reliability
fuzz_seconds=600
fork_runs=100
turnover_runs=1000
only=()
skip=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift ;;
    --fuzz-seconds) fuzz_seconds=$2; shift ;;
    --fork-runs) fork_runs=$2; shift ;;
    --turnover-runs) turnover_runs=$2; shift ;;
    --only) only+=("$2"); shift ;;
    --skip) skip+=("$2"); shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
bazel_cmd=${BAZEL:-bazel}
read -r -a startup <<< "${BAZEL_STARTUP_FLAGS:-}"
read -r -a bflags <<< "${BAZEL_FLAGS:-}"
jobs=${JOBS:-2}
mkdir -p "$out"
out=$(cd "$out" && pwd)
summary=$out/summary.md
: > "$summary"
status=0

want() {
  local s
  if [ "${#only[@]}" -gt 0 ]; then
    for s in "${only[@]}"; do [ "$s" = "$1" ] && return 0; done
    return 1
  fi
  for s in "${skip[@]+"${skip[@]}"}"; do [ "$s" = "$1" ] && return 1; done
  return 0
}
log() { echo "[$(date +%H:%M:%S)] $*"; }
record() { echo "$*" | tee -a "$summary"; }
fail() { record "- **FAILED**: $*"; status=1; }
elapsed() { local s=$(( $(date +%s) - $1 )); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

lib=$out/libelfc.so
hardened_lib=$out/libelfc_hardened.so
record "# Reliability long tier: $(date -u +%Y-%m-%dT%H:%MZ) on $(uname -n), $(nproc) CPUs"
record ""

# ------------------------------------------------------------------ build
if want build || [ ! -f "$lib" ] || [ ! -f "$hardened_lib" ]; then
  log "build: bazel build //elfc:libelfc.so //elfc:libelfc_hardened.so //elfc:fork //elfc:malloc_fuzzer //tools/workloads:threadtest"
  if ! "$bazel_cmd" "${startup[@]+"${startup[@]}"}" build "${bflags[@]+"${bflags[@]}"}" \
      //elfc:libelfc.so //elfc:libelfc_hardened.so //elfc:fork \
      //elfc:malloc_fuzzer //tools/workloads:threadtest; then
    echo "build failed" >&2
    exit 1
  fi
  bin=$("$bazel_cmd" "${startup[@]+"${startup[@]}"}" info "${bflags[@]+"${bflags[@]}"}" bazel-bin 2>/dev/null)
  cp -f "$bin/elfc/libelfc.so" "$bin/elfc/libelfc_hardened.so" \
    "$bin/elfc/fork" "$bin/elfc/malloc_fuzzer" \
    "$bin/tools/workloads/threadtest" "$out/"
  chmod u+w "$out/libelfc.so" "$out/libelfc_hardened.so" "$out/fork" \
    "$out/malloc_fuzzer" "$out/threadtest"
fi
preload_ok() {
  # The preload is in effect if elfc's own symbol is visible in a process.
  LD_PRELOAD=$lib /usr/bin/python3 -c \
    'import ctypes; ctypes.CDLL(None).elfc_version' 2>/dev/null
}
if ! preload_ok; then
  echo "LD_PRELOAD=$lib does not take effect" >&2
  exit 1
fi

# ---------------------------------------------------------------- cpython
# Left out: the modules that do not pass under glibc on this machine
# (measured: python3 -m test -j2 on Debian 12's Python 3.11.2, as root in a
# container, no network, no display), so the subset passes under glibc:
#   test_cmd_line     environment-dependent flag output (runs as root)
#   test_compileall   needs write access it does not have as configured here
#   test_cppext       builds a C++ extension with its own toolchain setup
#   test_ensurepip    needs the bundled wheels Debian does not ship
#   test_idle         needs tkinter
#   test_socket       hangs in accept() in this container (15 min timeout)
CPYTHON_EXCLUDE=(
  test_cmd_line test_compileall test_cppext test_ensurepip test_idle
  test_socket
)
# Parses a regrtest log into "module result" lines (passed, failed,
# skipped, resource-denied, env-changed, crashed, timed-out, no-tests).
parse_regrtest() {
  /usr/bin/python3 - "$1" <<'EOF_PY'
import re, sys
res = {}
for line in open(sys.argv[1], errors="replace"):
    m = re.search(r"\[\s*\d+/\d+(?:/\d+)?\]\s+(test_\S+)\s+(.*)$", line)
    if not m:
        continue
    rest = m.group(2)
    for prefix, status in (("passed", "passed"),
                           ("skipped (resource denied)", "resource-denied"),
                           ("skipped", "skipped"),
                           ("failed (env changed)", "env-changed"),
                           ("failed", "failed"), ("crashed", "crashed"),
                           ("timed out", "timed-out"),
                           ("run no tests", "no-tests")):
        if rest.startswith(prefix):
            res[m.group(1)] = status
            break
for t in sorted(res):
    print(t, res[t])
EOF_PY
}
# The allocators the cpython steps run the suite under: glibc first (the
# reference), then elfc's default build and/or its hardened build.
cpython_allocs=()
want cpython && cpython_allocs+=(glibc elfc)
if want cpython_hardened; then
  [ "${#cpython_allocs[@]}" -eq 0 ] && cpython_allocs+=(glibc)
  cpython_allocs+=(hardened)
fi
if [ "${#cpython_allocs[@]}" -gt 0 ]; then
  suite=$(/usr/bin/python3 -c 'import test, os; print(os.path.dirname(test.__file__))')
  if [ ! -f "$suite/test_dict.py" ]; then
    fail "cpython: the regression tests are not installed (apt-get install libpython3-testsuite / libpython3.X-testsuite)"
  else
    pyver=$(/usr/bin/python3 -c 'import sys; print(sys.version.split()[0])')
    for alloc in "${cpython_allocs[@]}"; do
      log "cpython: python3 -m test under $alloc"
      t0=$(date +%s)
      dir=$out/cpython-$alloc
      rm -rf "$dir"; mkdir -p "$dir"
      envs=()
      [ "$alloc" = elfc ] && envs=(LD_PRELOAD="$lib")
      [ "$alloc" = hardened ] && envs=(LD_PRELOAD="$hardened_lib" PYTHONMALLOC=malloc)
      (cd "$dir" && env "${envs[@]+"${envs[@]}"}" /usr/bin/python3 -m test \
         -j"$jobs" --timeout 1200 -x "${CPYTHON_EXCLUDE[@]}" > regrtest.log 2>&1)
      echo "$?" > "$dir/rc"
      parse_regrtest "$dir/regrtest.log" > "$dir/results"
      eval "secs_$alloc=$(( $(date +%s) - t0 ))"
    done
    record "## CPython $pyver regression tests (python3 -m test -j$jobs, ${#CPYTHON_EXCLUDE[@]} modules excluded)"
    record ""
    for alloc in "${cpython_allocs[@]}"; do
      eval "secs=\$secs_$alloc"
      record "- $alloc: $(wc -l < "$out/cpython-$alloc/results") modules, $(grep -c ' passed$' "$out/cpython-$alloc/results") passed, regrtest says \"$(grep -E '^Tests result:' "$out/cpython-$alloc/regrtest.log" | tail -1)\", $((secs / 60)) min"
    done
    for alloc in "${cpython_allocs[@]}"; do
      record "- not passed under $alloc ($(grep -vc ' passed$' "$out/cpython-$alloc/results")): $(grep -v ' passed$' "$out/cpython-$alloc/results" | sed 's/ \(.*\)/ (\1)/' | paste -sd, - | sed 's/,/, /g')"
    done
    for alloc in "${cpython_allocs[@]}"; do
      [ "$alloc" = glibc ] && continue
      if diff "$out/cpython-glibc/results" "$out/cpython-$alloc/results" > "$out/cpython-$alloc.diff"; then
        record "- **same result for every module** under glibc and $alloc"
      else
        fail "cpython: results differ (< glibc, > $alloc):"
        record "$(sed 's/^/    /' "$out/cpython-$alloc.diff")"
      fi
    done
    record ""
  fi
fi

# ------------------------------------------------------------------ bazel
if want bazel; then
  ob=$out/bazel_output_base
  log "bazel: fresh output base $ob, bazel build //... with libelfc.so preloaded"
  [ -d "$ob" ] && "$bazel_cmd" --output_base="$ob" shutdown >/dev/null 2>&1
  rm -rf "$ob"
  # The Bazel client drops LD_PRELOAD from the server's environment
  # ("ignoring LD_PRELOAD in environment"), so the server (a JVM) gets the
  # preload through --server_javabase: a copy of its JDK made of symlinks,
  # whose bin/java sets LD_PRELOAD and execs the real java.
  real_jdk=$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")
  jdk=$out/jdk-with-elfc
  rm -rf "$jdk"
  mkdir -p "$jdk/bin"
  for f in "$real_jdk"/*; do [ "$(basename "$f")" = bin ] || ln -s "$f" "$jdk/"; done
  for f in "$real_jdk"/bin/*; do [ "$(basename "$f")" = java ] || ln -s "$f" "$jdk/bin/"; done
  printf '#!/bin/sh\nLD_PRELOAD=%s exec %s/bin/java "$@"\n' "$lib" "$real_jdk" > "$jdk/bin/java"
  chmod +x "$jdk/bin/java"
  bz=("$bazel_cmd" --output_base="$ob" --server_javabase="$jdk")
  t0=$(date +%s)
  LD_PRELOAD=$lib "${bz[@]}" build "${bflags[@]+"${bflags[@]}"}" \
      --symlink_prefix="$out/bazel-" --action_env=LD_PRELOAD="$lib" //... \
      > "$out/bazel-build.log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - t0 ))
  pid=$("${bz[@]}" info server_pid 2>/dev/null)
  in_server=no
  if [ -n "$pid" ] && grep -q "$(basename "$lib")" "/proc/$pid/maps" 2>/dev/null; then
    in_server=yes
  fi
  query='mnemonic("CppCompile", deps(//elfc:libelfc.so))'
  aq=$("${bz[@]}" aquery "${bflags[@]+"${bflags[@]}"}" --symlink_prefix="$out/bazel-" \
      --action_env=LD_PRELOAD="$lib" "$query" 2>/dev/null)
  compiles=$(echo "$aq" | grep -c '^action ' || true)
  preloaded=$(echo "$aq" | grep -c "Environment: .*LD_PRELOAD=$lib" || true)
  actions=$(grep -oE '[0-9]+ total actions' "$out/bazel-build.log" | tail -1)
  targets=$("${bz[@]}" query //... 2>/dev/null | wc -l)
  record "## bazel build //... ($targets targets) in a fresh output base, elfc preloaded"
  record ""
  record "- exit status $rc, $actions, $((secs / 60)) min $((secs % 60)) s"
  record "- libelfc.so mapped in the Bazel server (JVM, pid $pid): $in_server; LD_PRELOAD=libelfc.so in the environment of $preloaded of the $compiles compile actions of //elfc:libelfc.so and its deps (bazel aquery)"
  [ "$rc" -eq 0 ] || fail "bazel build //... with elfc preloaded (see $out/bazel-build.log)"
  [ "$in_server" = yes ] || fail "bazel: the server did not have libelfc.so mapped"
  [ "$compiles" -gt 0 ] && [ "$preloaded" -eq "$compiles" ] ||
    fail "bazel: LD_PRELOAD missing from build actions"
  "${bz[@]}" shutdown >/dev/null 2>&1
  record ""
fi

# ------------------------------------------------------------------- fork
if want fork; then
  log "fork: $fork_runs consecutive runs of fork --forkers=3"
  t0=$(date +%s)
  LD_PRELOAD=$lib ELFC_PRELOAD_EXPECT=$lib ELFC_PRELOAD_STRICT=1 \
    "$out/fork" --forkers=3 --runs="$fork_runs" > "$out/fork.log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - t0 ))
  passes=$(grep -c '^fork: PASS 200 forks' "$out/fork.log")
  forks=$(( passes * 200 ))
  record "## fork: $fork_runs consecutive runs (fork --forkers=3 under libelfc.so)"
  record ""
  record "- exit status $rc, $passes runs passed ($forks forks, plus grandchildren and posix_spawns), $(grep -c WATCHDOG "$out/fork.log") watchdog firings (hangs), $((secs / 60)) min $((secs % 60)) s"
  grep -q "fork: PASS $fork_runs consecutive runs" "$out/fork.log" ||
    fail "fork: see $out/fork.log ($(grep -m1 FAILED "$out/fork.log"))"
  record ""
fi

# --------------------------------------------------------------- turnover
if want turnover; then
  log "turnover: $turnover_runs runs of threadtest --size=2048 on 2..4 threads"
  t0=$(date +%s)
  failures=0
  : > "$out/turnover.log"
  for i in $(seq 1 "$turnover_runs"); do
    t=$(( i % 3 + 2 ))
    if ! LD_PRELOAD=$lib timeout 60 "$out/threadtest" --size=2048 \
        --objects=10000 --threads=$t --seconds=0.3 \
        > /dev/null 2>> "$out/turnover.log"; then
      failures=$(( failures + 1 ))
      echo "run $i (threads $t) failed" >> "$out/turnover.log"
    fi
  done
  secs=$(( $(date +%s) - t0 ))
  record "## turnover: $turnover_runs runs of threadtest --size=2048 --objects=10000 on 2..4 threads under libelfc.so"
  record ""
  record "- $failures runs failed, $((secs / 60)) min $((secs % 60)) s"
  [ "$failures" -eq 0 ] || fail "turnover: see $out/turnover.log"
  record ""
fi

# ------------------------------------------------------------------- fuzz
if want fuzz; then
  fz=$out/fuzz
  mkdir -p "$fz"
  log "fuzz: building the libFuzzer binaries"
  if ! BAZEL="$bazel_cmd" elfc/build_fuzzers.sh "$fz/bin" > "$fz/build.log" 2>&1; then
    fail "fuzz: elfc/build_fuzzers.sh failed (see $fz/build.log)"
  else
    record "## libFuzzer (clang, ASan + UBSan, coverage of the allocator code), $fuzz_seconds s each"
    record ""
    mkdir -p "$fz/malloc_corpus" "$fz/slab_corpus" "$fz/bagpipe_corpus"
    cp -n elfc/testdata/malloc_fuzz_corpus/* "$fz/malloc_corpus/" 2>/dev/null
    for f in malloc slab bagpipe; do
      log "fuzz: ${f}_fuzzer for $fuzz_seconds s"
      (cd "$fz" && ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
        "$fz/bin/${f}_fuzzer" -max_total_time="$fuzz_seconds" -timeout=60 \
        -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$fz/${f}-" \
        "$fz/${f}_corpus" > "$fz/$f.log" 2>&1)
      rc=$?
      runs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$fz/$f.log" | grep -oE '[0-9]+$')
      cov=$(grep -oE 'cov: [0-9]+' "$fz/$f.log" | tail -1)
      crashes=$(ls "$fz/${f}-"crash-* "$fz/${f}-"leak-* "$fz/${f}-"timeout-* "$fz/${f}-"oom-* 2>/dev/null | wc -l)
      record "- ${f}_fuzzer: exit status $rc, ${runs:-?} inputs in $fuzz_seconds s, $cov edges, corpus $(ls "$fz/${f}_corpus" | wc -l) inputs, $crashes crash/leak/timeout/oom inputs"
      [ "$rc" -eq 0 ] && [ "$crashes" -eq 0 ] || fail "fuzz: ${f}_fuzzer (see $fz/$f.log)"
    done
    log "fuzz: the malloc corpus through the real libelfc.so"
    LD_PRELOAD=$lib ELFC_PRELOAD_EXPECT=$lib ELFC_PRELOAD_STRICT=1 \
      "$out/malloc_fuzzer" --process "$fz/malloc_corpus" > "$fz/replay.log" 2>&1
    rc=$?
    record "- malloc corpus replayed through libelfc.so's exported API: exit status $rc; $(grep -o 'PASS.*inputs' "$fz/replay.log" | head -1)"
    [ "$rc" -eq 0 ] || fail "fuzz: replay through libelfc.so (see $fz/replay.log)"
  fi
  record ""
fi

if [ "$status" -eq 0 ]; then record "**Result: PASS**"; else record "**Result: FAIL**"; fi
log "summary in $summary"
exit "$status"
