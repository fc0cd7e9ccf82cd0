#!/usr/bin/env bash
# libelfc_checked.so and libelfc_hardened.so against libelfc.so, each
# preloaded into a plain C program (checked_test_program.c): the checked
# build's elfc_version() says "(checked)", the hardened build's
# "(hardened)", and a double free aborts with a message under both; the
# normal build's version says neither (and its double free aborts too);
# the unchecked build (for measuring the checks' cost) says "(unchecked)".
#
#   checked_test.sh PROGRAM LIBELFC_SO LIBELFC_CHECKED_SO VERSION_FILE \
#       LIBELFC_HARDENED_SO LIBELFC_UNCHECKED_SO [checked]
# "checked": the build runs under --config=checked, where libelfc.so is a
# checked build too (elfc/BUILD passes it).
set -uo pipefail
program=$1
normal=$(realpath "$2")
checked=$(realpath "$3")
version=$(tr -d ' \n' <"$4")
hardened=$(realpath "$5")
unchecked=$(realpath "$6")
normal_suffix=""
[ "${7:-}" = "checked" ] && normal_suffix=" (checked)"
fail() { echo "FAIL: $*"; exit 1; }

out=$(LD_PRELOAD=$checked "$program" version) || fail "version under the checked build: $out"
[ "$out" = "version: $version (checked)" ] || fail "checked build says '$out', want 'version: $version (checked)'"
echo "checked: $out"

out=$(LD_PRELOAD=$hardened "$program" version) || fail "version under the hardened build: $out"
[ "$out" = "version: $version (hardened)" ] || fail "hardened build says '$out', want 'version: $version (hardened)'"
echo "hardened: $out"

out=$(LD_PRELOAD=$normal "$program" version) || fail "version under the normal build: $out"
[ "$out" = "version: $version$normal_suffix" ] || fail "normal build says '$out', want 'version: $version$normal_suffix'"
echo "normal: $out"

out=$(LD_PRELOAD=$unchecked "$program" version) || fail "version under the unchecked build: $out"
[ "$out" = "version: $version (unchecked)" ] || fail "unchecked build says '$out', want 'version: $version (unchecked)'"
echo "unchecked: $out"

for lib in "$checked" "$hardened" "$normal"; do
  LD_PRELOAD=$lib "$program" double_free >"$TEST_TMPDIR/out" 2>&1
  status=$?
  cat "$TEST_TMPDIR/out"
  # 134 = 128 + SIGABRT.
  [ "$status" -eq 134 ] || fail "double free under $(basename "$lib"): exit status $status, want 134 (abort)"
  grep -qi "free" "$TEST_TMPDIR/out" || fail "the abort under $(basename "$lib") printed no message about the free"
done
echo "checked_test: PASS"
