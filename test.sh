#!/usr/bin/env bash
# The test command: every test target, in every leg, ending with "N passed, N failed".
#
#   ./test.sh                 all legs: default (opt), elfc (elfc as every test's malloc), tsan, asan_ubsan,
#                             clang (every target compiled by clang, in an output base of its own)
#   ./test.sh --quick         the default leg only
#   ./test.sh --legs=tsan     chosen legs (comma-separated: default,elfc,dbg,tsan,asan,ubsan,asan_ubsan,clang)
#   ./test.sh -- //bagpipe/...  extra arguments after -- go to every `bazel test`
#   ./test.sh --help          this text; installs and builds nothing
#
# Installs missing Debian packages first (tools/setup.sh). Each (leg, test target)
# pair counts once; a leg whose build fails before any test ran counts as one
# failure. A default-leg run over //... also builds the consumer workspace
# (tools/consumer/consumer_test.sh) and the libraries under --config=checked,
# each counted as one more test. Exit status is
# non-zero when anything failed. .ci/run calls exactly this.
# BAZEL_STARTUP_OPTS from the environment (e.g. --output_base=DIR) go before
# every bazel command.
set -uo pipefail
cd "$(dirname "$0")"

legs="default,elfc,tsan,asan_ubsan,clang"
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) legs="default" ;;
    --legs=*) legs="${1#--legs=}" ;;
    --) shift; targets=("$@"); break ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "test.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

# shellcheck source=tools/setup.sh
source tools/setup.sh
allocators_setup || { echo "0 passed, 1 failed"; exit 1; }
# shellcheck disable=SC2206  # word-splitting the option list is intended
startup=(${BAZEL_STARTUP_OPTS:-})
[ ${#targets[@]} -eq 0 ] && targets=(//...)

passed=0
failed=0
failures=()
logdir=$(mktemp -d -t allocators-test.XXXXXX)
start=$(date +%s)

# The clang leg's startup options: the others' with an output base of its
# own (the given one or Bazel's default, plus "-clang"). Bazel configures its
# C++ toolchain per output base, so switching the compiler in a shared one
# would rebuild everything the other legs built, twice per run.
clang_startup() {
  local opt base=""
  for opt in "${startup[@]}"; do
    case "$opt" in
      --output_base=*) base=${opt#--output_base=} ;;
      *) printf '%s\n' "$opt" ;;
    esac
  done
  [ -n "$base" ] || base=$(bazel "${startup[@]}" info output_base 2>/dev/null)
  printf '%s\n' "--output_base=${base}-clang"
}

run_leg() {
  local leg=$1 log="$logdir/$1.log" rc
  local args=(test --keep_going --curses=no --color=no --show_progress_rate_limit=20)
  local leg_startup=("${startup[@]}") leg_env=()
  case "$leg" in
    default) ;;
    clang)
      # Bazel's autoconfigured toolchain takes the compiler from CC.
      mapfile -t leg_startup < <(clang_startup)
      leg_env=(CC=clang)
      args+=(--repo_env=CC=clang)
      ;;
    *) args+=(--config="$leg" --build_tests_only) ;;
  esac
  echo "=== [$leg] ${leg_env[*]}${leg_env[*]:+ }bazel ${leg_startup[*]}${leg_startup[*]:+ }${args[*]} ${targets[*]}"
  env "${leg_env[@]}" bazel "${leg_startup[@]}" "${args[@]}" "${targets[@]}" 2>&1 | tee "$log" | grep --line-buffered -E \
    '^(//|ERROR|FAIL|Executed|INFO: Elapsed|=+ Test output|[^ ]+ FAILED)'
  rc=${PIPESTATUS[0]}
  # The clang leg's server is not needed again in this run.
  [ "$leg" = clang ] && bazel "${leg_startup[@]}" shutdown >/dev/null 2>&1
  local p f
  p=$(grep -cE '^//[^ ]+ +(\(cached\) )?PASSED' "$log")
  f=$(grep -cE '^//[^ ]+ +(\(cached\) )?(FAILED|TIMEOUT|NO STATUS|INCOMPLETE|FLAKY)' "$log")
  while read -r line; do
    [ -n "$line" ] && failures+=("[$leg] $line")
  done < <(grep -E '^//[^ ]+ +(\(cached\) )?(FAILED|TIMEOUT|NO STATUS|INCOMPLETE|FLAKY)' "$log")
  # Exit 4 means "built, but no test targets"; anything else non-zero with no
  # failing test line is a build or analysis failure of the leg itself.
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 4 ] && [ "$f" -eq 0 ]; then
    f=1
    failures+=("[$leg] bazel exited $rc before running tests (see $log)")
  fi
  echo "=== [$leg] $p passed, $f failed (bazel exit $rc)"
  passed=$((passed + p))
  failed=$((failed + f))
}

# A check that cannot be a Bazel test (it runs Bazel itself): one (step) test.
run_step() {
  local name=$1 log="$logdir/${1//\//_}.log"  # a name with slashes: one file
  shift
  echo "=== [step] $name: $*"
  if "$@" >"$log" 2>&1; then
    echo "$name (step) PASSED"
    passed=$((passed + 1))
  else
    sed 's/^/  /' "$log" | tail -20
    echo "$name (step) FAILED (see $log)"
    failed=$((failed + 1))
    failures+=("[step] $name (see $log)")
  fi
}

IFS=',' read -r -a leg_list <<<"$legs"
for leg in "${leg_list[@]}"; do
  run_leg "$leg"
done

# With the default leg over the whole repository: another workspace that
# depends on this one (tools/consumer) builds and runs.
if [[ ",$legs," == *,default,* ]] && [ "${targets[*]}" = "//..." ]; then
  run_step tools/consumer/consumer_test.sh tools/consumer/consumer_test.sh
  # The documented --config=checked builds the libraries, the unchecked one
  # included (it undefines ELFMALLOC_CHECKED; elfmalloc/BUILD). Last: it
  # rebuilds what it touches with the checked flags.
  run_step config_checked_build bazel "${startup[@]}" build --config=checked \
    --curses=no --color=no //elfc:libelfc.so //elfc:libelfc_unchecked.so
fi

echo
echo "Test logs: $logdir ($(( $(date +%s) - start ))s in all)"
if [ ${#failures[@]} -gt 0 ]; then
  echo "Failures:"
  printf '  %s\n' "${failures[@]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
