#!/usr/bin/env bash
# Tests of the C ABI, as CI runs them on a release build:
#   - include/mlff.h is what cbindgen generates from src/ffi/ and compiles as C and C++;
#   - tests/c/test_mlff.c (C99) and tests/cpp/test_mlff.cpp (C++17), built with cc/c++
#     and again through the CMake package (find_package(mlff) from a temporary build
#     folder, as a consumer would), reproduce the Rust API's results bit for bit and get
#     the documented status for every error path;
#   - the public fixtures through the C API (when ../shared exists; skipped otherwise);
#   - valgrind: the whole C check plus 10^4 computes with no leak and no invalid access.
# Usage: scripts/test-c-abi.sh        (MLFF_VALGRIND_ITERATIONS=N to change 10^4)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

need() { command -v "$1" >/dev/null 2>&1; }

# valgrind: install it on a fresh Debian machine when we may, else say what is missing.
if ! need valgrind; then
  if [[ "$(id -u)" == 0 ]] && need apt-get; then
    echo "test-c-abi: installing valgrind"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
  else
    echo "test-c-abi: valgrind is required (apt-get install valgrind) and this is not root" >&2
    exit 1
  fi
fi
for tool in cc c++; do
  need "$tool" || { echo "test-c-abi: $tool is required (apt-get install build-essential)" >&2; exit 1; }
done

# cmake: on PATH, else the project venv's (scripts/setup-venv.sh installs it).
if need cmake; then
  cmake="$(command -v cmake)"
else
  venv="${MLFF_VENV:-$here/.venv}"
  if [[ ! -x "$venv/bin/cmake" ]]; then
    "$here/scripts/setup-venv.sh" "$venv"
  fi
  cmake="$venv/bin/cmake"
fi

echo "test-c-abi: cargo build --release --lib"
cargo build --release --lib

# MLFF_REQUIRE_ALL=1: a missing tool fails the run instead of skipping a test.
echo "test-c-abi: header, C, C++, CMake consumer, fixtures, valgrind"
MLFF_REQUIRE_ALL=1 MLFF_VALGRIND=1 MLFF_CMAKE="$cmake" \
  cargo test --release --test header --test ffi -- --nocapture --test-threads=1
echo "test-c-abi: all C ABI tests passed"
