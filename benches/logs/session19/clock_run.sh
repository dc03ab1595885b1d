#!/bin/bash
# Session 19: the step's kernels at the card's own clocks (ncu --clock-control none) summed,
# next to the benchmark's median in the same call: what the step spends outside kernels.
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
NCU=/usr/local/cuda/bin/ncu
M=models/student_427k.safetensors
for c in ${1:-batch256x50 water10k water100k}; do
  timeout 200 ./mlff-gpu-bench --model $M --structures . --precision f32 --cases $c --out /tmp/b.md 2>&1 | grep "^| [0-9mwb]" | cut -d'|' -f2,4
  timeout 250 $NCU --clock-control none --metrics gpu__time_duration.sum ./mlff-gpu-bench --model $M --structures . --precision f32 --cases $c --repeat 3 --out /tmp/p.md 2>&1 \
    | grep -E "^  [a-z_0-9]+|gpu__time" | paste - - | awk '{print $1, $(NF)}' | sed 's/_f32//' > $OUT/ncu_clock_$c.txt
  echo "$c: $(wc -l < $OUT/ncu_clock_$c.txt) kernels"
done
MLFF_CUDA_PROFILE=1 timeout 100 ./mlff-gpu-bench --model $M --structures . --precision f32 --cases water10k --out /tmp/b.md > $OUT/profile_water10k.txt 2>&1
date -u
