#!/bin/bash
# Session 12: the candidate list's skin (MLFF_CUDA_SKIN) in LAMMPS runs.
cd "$(dirname "$0")"
for r in 1 2; do
  for s in 0.3 0.5 0.8; do
    echo "##### round $r skin $s"
    MLFF_CUDA_SKIN=$s OUT=$OUT/s$s-$r bash run.sh "1 4 4 4 f32 50" "1 8 8 8 f32 50" 2>&1 | grep -E "===|Loop time"
  done
done
L=$(find / -name 'libnvrtc.so.13' -not -path '/proc/*' 2>/dev/null | head -1)
export MLFF_NVRTC_DIR=$(dirname "$L") MLFF_CACHE_DIR=/tmp/mlffcache
for s in 0.3 0.5 0.8; do
  echo "== bench skin $s (median, rebuild step)"
  MLFF_CUDA_SKIN=$s timeout 100 ./mlff-gpu-bench --model model.safetensors --structures . --precision f32 --cases water10k,water100k --out $OUT/b.md 2>&1 | grep "^| [0-9mw]" | cut -d'|' -f2,4,9
done
