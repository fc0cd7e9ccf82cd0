#!/usr/bin/env bash
# Checks every package's VERSION, CHANGELOG.md and README.md agree: VERSION is
# one semantic version, CHANGELOG.md has a "## <version>" heading for it (so a
# release is never cut without its notes), and README.md names the package.
# Arguments: package names; their files are runfiles of this test.
set -u
fail=0
for pkg in "$@"; do
  dir="$pkg"
  v=$(tr -d ' \n' < "$dir/VERSION")
  if ! [[ "$v" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
    echo "FAIL $pkg: VERSION '$v' is not MAJOR.MINOR.PATCH"; fail=1
  fi
  if ! grep -qE "^## \[?$v\]?( |$)" "$dir/CHANGELOG.md"; then
    echo "FAIL $pkg: CHANGELOG.md has no '## $v' heading"; fail=1
  fi
  if ! grep -qi "$pkg" "$dir/README.md"; then
    echo "FAIL $pkg: README.md does not mention $pkg"; fail=1
  fi
  [ $fail -eq 0 ] && echo "ok   $pkg $v"
done
exit $fail
