#!/usr/bin/env bash
# Installs what building and testing this repository needs, from Debian's
# packages, when it is missing. Sourced by ./run.sh and ./test.sh so that each
# works on a fresh Debian machine with only the base image. Idempotent and quiet
# when everything is present; never touches packages that are already installed.
#
# What we need and why:
#   bazel-bootstrap   Bazel 4.2.3, the build (offline; see WORKSPACE)
#   g++               the compiler Bazel's auto-configured toolchain finds
#   clang             ./test.sh's clang leg (every target compiled by clang)
#   libabsl-dev       abseil (static archives + pkg-config files)
#   libgtest-dev libgmock-dev   GoogleTest
#   libbenchmark-dev  Google Benchmark
#   libconcurrentqueue-dev      moodycamel::ConcurrentQueue (bagpipe benchmark peer)
#   python3           the test-result and report scripts
#   perl git sqlite3  real programs that //elfc:real_programs_test runs under elfc
#   cmake pkgconf     //elfc:install_test builds against an installed elfc with both

ALLOCATORS_DEBIAN_PACKAGES=(
  bazel-bootstrap g++ clang libabsl-dev libgtest-dev libgmock-dev libbenchmark-dev
  libconcurrentqueue-dev python3 perl git sqlite3 cmake pkgconf
)

allocators_ensure_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "setup: installing missing Debian packages: ${missing[*]}" >&2
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
      echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; return 1
    fi
  fi
  # A fresh image has no package lists; refresh them once per run, then install.
  if [ -z "${ALLOCATORS_APT_UPDATED:-}" ]; then
    "${sudo[@]}" apt-get update -qq >&2 || { echo "setup: apt-get update failed" >&2; return 1; }
    export ALLOCATORS_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >&2 || { echo "setup: apt-get install failed: ${missing[*]}" >&2; return 1; }
}

allocators_setup() {
  allocators_ensure_packages "${ALLOCATORS_DEBIAN_PACKAGES[@]}" || return 1
  command -v bazel >/dev/null 2>&1 || { echo "setup: bazel not on PATH after install" >&2; return 1; }
}
