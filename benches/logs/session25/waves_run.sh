#!/bin/bash
# Session 25: the batch (12,800 atoms) with each tiled update variant (bench, interleaved
# rounds), ncu of one batch step by kernel with the default (wide: 400 blocks, 1.52
# waves) and wide10 (320 blocks, 1.21 waves), and the out-of-memory test sized by the
# card's memory.
# Usage (GPU machine, .gpu carried): bash benches/logs/session25/waves_run.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
timeout 200 ./cuda out_of_memory --nocapture 2>&1 | grep -E "atoms|test result|panicked"
b() { timeout 100 env $1 ./mlff-gpu-bench --model $M --structures . --precision f32 --cases batch256x50 --out /tmp/v.md 2>&1 | grep "^| [0-9mwb]" | cut -d"|" -f2,4,5,6 | tr '\n' ' '; echo; }
for r in 1 2 3; do
  for v in default wide10 narrow tiled plain; do echo "$v: $(b MLFF_CUDA_UPDATE=$v)"; done
done
for v in default wide10; do
  MLFF_CUDA_UPDATE=$v timeout 120 /usr/local/cuda/bin/ncu --clock-control none --launch-skip 60 --launch-count 30 --metrics gpu__time_duration.sum ./mlff-gpu-bench --model $M --structures . --precision f32 --cases batch256x50 --repeat 3 --out $OUT/t.md > $OUT/ncu_batch_$v.txt 2>&1
  echo "ncu batch $v: $(grep -E '^  [a-z_0-9]+.*\(|gpu__time_duration' $OUT/ncu_batch_$v.txt | awk '/\(/{name=$1} /duration/{printf "%s %s, ", name, $NF}')"
done
date -u
