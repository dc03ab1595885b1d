#!/bin/bash
# Session 24: the positions' upload enqueued before the skin check (the copy runs while the
# host checks the moves), against f8a6708 (mlff-prev, mlff-gpu-bench-prev): outputs bitwise,
# the CUDA tests, the bench (two rounds, water10k and water100k) and MLFF_CUDA_TIMING.
# Usage (GPU machine, .gpu carried): bash benches/logs/session24/upload_run.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
for x in mol50 water3k water10k water100k; do
  ./mlff-prev eval --device cuda --precision f32 $M $x.xyz /tmp/o.xyz > /dev/null 2>&1
  ./mlff eval --device cuda --precision f32 $M $x.xyz /tmp/n.xyz > /dev/null 2>&1
  cmp -s /tmp/o.xyz /tmp/n.xyz && echo "$x: bitwise equal to f8a6708" || echo "$x: DIFFERENT from f8a6708"
done
timeout 130 ./cuda --test-threads=2 > $OUT/cuda_tests.log 2>&1; grep -E "^test |test result|panicked" $OUT/cuda_tests.log | grep -v " ok$"
b() { timeout 60 env MLFF_CUDA_TIMING=1 ./$1 --model $M --structures . --precision f32 --cases water10k,water100k --out /tmp/v.md 2>&1 | grep -E "^\| [0-9mwb]|stage|GPU: upload" | sed -E 's/^\| ([^|]*)\| [0-9]+ \| ([0-9.]+) .*/\1 \2/; s/  +/ /g' | tr '\n' ';'; echo; }
for r in 1 2; do echo "f8a6708: $(b mlff-gpu-bench-prev)"; echo "new:     $(b mlff-gpu-bench)"; done
date -u
