#!/usr/bin/env bash
# Builds and tests the OpenMM plugin from a clean clone: the project venv
# (scripts/setup-venv.sh), the Rust library and CLI (cargo, release), the plugin
# (CMake against the openmm wheel, installed into the venv; with the CUDA platform
# kernel, compiled and linked against the openmm-cuda-13 wheel and the CUDA headers
# from PyPI, so that a compile error fails here without a GPU), then pytest on the
# Reference and CPU platforms (the CUDA-platform tests skip without a GPU). Usage: scripts/test-openmm.sh [extra pytest args]
# Environment: MLFF_VENV (default .venv), MLFF_OPENMM_BUILD (default build/openmm).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
venv="${MLFF_VENV:-$here/.venv}"
build="${MLFF_OPENMM_BUILD:-$here/build/openmm}"

scripts/setup-venv.sh "$venv"
# shellcheck disable=SC1091
source "$venv/bin/activate"

# libmlff.so and the `mlff` CLI (random test models); the CMake package would build
# the library on its own, the CLI is needed by the tests.
cargo build --release --quiet

cmake -S plugins/openmm -B "$build" -DCMAKE_BUILD_TYPE=Release -DMLFF_OPENMM_CUDA=ON >/dev/null
cmake --build "$build" --parallel 2
cmake --install "$build" >/dev/null

# Run from outside the source tree: the tests must use the installed package.
cd "$here/tests/openmm"
python -m pytest -q -p no:cacheprovider . "$@"
