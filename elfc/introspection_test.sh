#!/usr/bin/env bash
# elfc's options and statistics as a user meets them, with libelfc.so
# preloaded into the introspection program (introspection.cc):
#   1. the program's own checks (mallinfo2, malloc_stats, malloc_info,
#      mallopt, elfc_set_option / elfc_get_option, detailed statistics);
#   2. bad and unknown ELFMALLOC_ variables: exactly one "elfc: ..." line
#      each, and the value used instead;
#   3. ELFMALLOC_VERBOSE=1: the version, the build kind, every option;
#   4. ELFMALLOC_PRINT_STATS=1 in a program that closes stderr before
#      exiting: the statistics still reach the original stderr;
#   5. ELFMALLOC_STATS_FILE with %p and ELFMALLOC_STATS_JSON=1: a JSON file
#      named after the pid (parsed with python3's json module).
#
#   introspection_test.sh PROGRAM LIBELFC
set -uo pipefail

die() { echo "FAIL: $*"; exit 1; }
abs() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
[ $# -eq 2 ] || die "usage: $0 PROGRAM LIBELFC"
program=$(abs "$1")
lib=$(abs "$2")
tmp=${TEST_TMPDIR:-$(mktemp -d)}

# run OUT ERR [VAR=VALUE...] -- ARGS...: the program under the preload with
# only the given ELFMALLOC_ variables.
run() {
  local out=$1 err=$2
  shift 2
  local envs=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  env LD_PRELOAD="$lib" ELFC_PRELOAD_EXPECT="$lib" \
    ELFC_PRELOAD_STRICT=1 "${envs[@]+"${envs[@]}"}" "$program" "$@" \
    >"$out" 2>"$err"
}

echo "== 1. the program's checks"
run "$tmp/1.out" "$tmp/1.err" -- || { cat "$tmp/1.out" "$tmp/1.err"; die "introspection checks"; }
cat "$tmp/1.err"
grep -q '^introspection: PASS' "$tmp/1.err" || die "no PASS line"
grep -q '^elfc: ' "$tmp/1.err" && die "warnings without any ELFMALLOC_ variable"

echo "== 2. one warning per bad or unknown variable"
run "$tmp/2.out" "$tmp/2.err" ELFMALLOC_DECAY_MS=-5 ELFMALLOC_MAX_DIRTY_MB=99999999999999999999999 \
  ELFMALLOC_PRINT_STATS=maybe ELFMALLOC_DECAY=5 -- --noop || die "exit status"
cat "$tmp/2.err"
[ "$(grep -c '^elfc: ' "$tmp/2.err")" -eq 4 ] || die "expected exactly 4 warning lines"
grep -qxF 'elfc: ELFMALLOC_DECAY_MS=-5: not an unsigned decimal number; using the default 1000 ms' "$tmp/2.err" || die "decay warning"
grep -qxF 'elfc: ELFMALLOC_MAX_DIRTY_MB=99999999999999999999999: above the maximum 1048576 MiB; using 1048576 MiB' "$tmp/2.err" || die "saturation warning"
grep -qxF 'elfc: ELFMALLOC_PRINT_STATS=maybe: not a boolean (1/0, true/false, yes/no, on/off); using the default false' "$tmp/2.err" || die "boolean warning"
grep -qxF 'elfc: ELFMALLOC_DECAY=5: unknown option; ignored (did you mean ELFMALLOC_DECAY_MS?)' "$tmp/2.err" || die "unknown-name warning"
grep -q 'RAW:' "$tmp/2.err" && die "internal log prefix in a warning"
grep -q 'statistics' "$tmp/2.err" && die "PRINT_STATS=maybe printed statistics"

echo "== 3. ELFMALLOC_VERBOSE=1"
run "$tmp/3.out" "$tmp/3.err" ELFMALLOC_VERBOSE=1 ELFMALLOC_DECAY_MS=250 -- --noop || die "exit status"
cat "$tmp/3.err"
grep -qE '^elfc: version [0-9]+\.[0-9]+\.[0-9]+.*, (default|checked) build$' "$tmp/3.err" || die "version line"
for opt in decay_ms max_dirty_small_mb max_dirty_mid_mb max_dirty_medium_mb max_dirty_mb verbose print_stats stats_json stats_file; do
  grep -q "^elfc: option $opt " "$tmp/3.err" || die "option $opt not listed"
done
grep -qE '^elfc: option decay_ms += 250 ms \(environment; ELFMALLOC_DECAY_MS\)$' "$tmp/3.err" || die "effective decay_ms"
grep -qE '^elfc: option max_dirty_medium_mb += 16 MiB \(default; ' "$tmp/3.err" || die "default medium cap"

echo "== 4. statistics at exit after the program closed stderr"
for v in 1 true YES on; do
  run "$tmp/4.out" "$tmp/4.err" ELFMALLOC_PRINT_STATS=$v -- --close-stderr || die "exit status"
  grep -q '^elfc .* statistics:$' "$tmp/4.err" || { cat "$tmp/4.err"; die "no statistics with PRINT_STATS=$v"; }
  grep -q '^allocated_bytes ' "$tmp/4.err" || die "no allocated_bytes line"
done
for v in 0 false no OFF; do
  run "$tmp/4.out" "$tmp/4.err" ELFMALLOC_PRINT_STATS=$v -- --close-stderr || die "exit status"
  grep -v '^elfc-preload-check: ' "$tmp/4.err" | grep -q . && { cat "$tmp/4.err"; die "output with PRINT_STATS=$v"; }
done

echo "== 5. ELFMALLOC_STATS_FILE with %p, JSON"
rm -f "$tmp"/stats.*.json
run "$tmp/5.out" "$tmp/5.err" "ELFMALLOC_STATS_FILE=$tmp/stats.%p.json" ELFMALLOC_STATS_JSON=1 -- --close-stderr || die "exit status"
files=("$tmp"/stats.[0-9]*.json)
[ -f "${files[0]}" ] || die "no statistics file $tmp/stats.<pid>.json"
[ ${#files[@]} -eq 1 ] || die "more than one statistics file"
grep -v '^elfc-preload-check: ' "$tmp/5.err" | grep -q . && { cat "$tmp/5.err"; die "output on stderr with a statistics file"; }
python3 - "${files[0]}" <<'EOF' || die "JSON"
import json, sys
d = json.load(open(sys.argv[1]))
for key in ("version", "build", "allocated_bytes", "mapped_bytes", "metadata_bytes",
            "resident_bytes", "peak_resident_bytes", "classes"):
    assert key in d, key
assert d["build"] in ("default", "checked")
assert len(d["classes"]) > 10
for c in d["classes"]:
    assert set(c) == {"object_size", "page_size", "allocated_objects", "cached_objects", "pages"}, c
print("statistics file:", sys.argv[1], "classes:", len(d["classes"]))
EOF
echo "PASS: introspection_test"
