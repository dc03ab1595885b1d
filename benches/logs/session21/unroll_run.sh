#!/bin/bash
# Session 21: steps over a slab unrolled 2 / 4 (default) / 8 / 16 in the tiled update kernels
# (MLFF_CUDA_DEFINES=-DUT_UNROLL=n): outputs bitwise against the default, ncu of the update
# kernels at water10k and water3k, the bench (two rounds).
# Usage (GPU machine, .gpu carried): bash benches/logs/session21/unroll_run.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
./mlff eval --device cuda --precision f32 $M water10k.xyz /tmp/d10.xyz > /dev/null 2>&1
./mlff eval --device cuda --precision f32 $M water3k.xyz /tmp/d3.xyz > /dev/null 2>&1
for u in 2 8 16; do
  export MLFF_CUDA_DEFINES="-DUT_UNROLL=$u"
  ./mlff eval --device cuda --precision f32 $M water10k.xyz /tmp/n.xyz > /dev/null 2>&1; cmp -s /tmp/d10.xyz /tmp/n.xyz && echo "unroll $u water10k: bitwise equal" || echo "unroll $u water10k: DIFFERENT"
  ./mlff eval --device cuda --precision f32 $M water3k.xyz /tmp/n.xyz > /dev/null 2>&1; cmp -s /tmp/d3.xyz /tmp/n.xyz && echo "unroll $u water3k: bitwise equal" || echo "unroll $u water3k: DIFFERENT"
done
for u in 2 4 8 16; do
  export MLFF_CUDA_DEFINES="-DUT_UNROLL=$u"
  for x in water10k water3k; do
    echo "ncu unroll $u $x: $(timeout 120 /usr/local/cuda/bin/ncu --clock-control none -k regex:update -c 6 --metrics gpu__time_duration.sum ./mlff eval --device cuda --precision f32 $M $x.xyz /tmp/n.xyz 2>&1 | grep -E "duration" | awk '{print $NF}' | tr '\n' ' ')"
  done
done
b() { timeout 200 ./mlff-gpu-bench --model $M --structures . --precision f32 --cases batch256x50,water10k,water100k --out $OUT/v.md 2>&1 | grep "^| [0-9mwb]" | cut -d'|' -f2,4 | tr '\n' ' '; echo; }
for r in 1 2; do for u in 4 2 8 16; do echo "unroll $u: $(MLFF_CUDA_DEFINES=-DUT_UNROLL=$u b)"; done; done
date -u
