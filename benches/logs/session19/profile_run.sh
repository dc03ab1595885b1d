#!/bin/bash
# Session 19: every kernel of one step (ncu gpu__time_duration, us) for the benchmark cases.
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
NCU=/usr/local/cuda/bin/ncu
M=models/student_427k.safetensors
for c in ${1:-batch256x50 water10k}; do
  echo "== $c"
  timeout 250 $NCU --metrics gpu__time_duration.sum ./mlff-gpu-bench --model $M --structures . --precision f32 --cases $c --repeat 3 --out /tmp/p.md 2>&1 \
    | grep -E "^  [a-z_0-9]+|gpu__time" | paste - - | awk '{print $1, $(NF)}' | sed 's/_f32//' > $OUT/ncu_$c.txt
  wc -l < $OUT/ncu_$c.txt
done
date -u
