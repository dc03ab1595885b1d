#!/bin/bash
# Session 20: a small single system's totals downloaded with its forces, in one copy
# (totals_in_forces) against b40986a (mlff-old, mlff-gpu-bench-old): outputs bitwise, all
# CUDA tests, MLFF_CUDA_TIMING at mol50, the bench in the same call (three rounds).
# Usage (GPU machine, .gpu carried): bash benches/logs/session20/totals_run.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
for x in mol20 mol50 water192 water1k water3k water10k; do
  [ -f $x.xyz ] || continue
  ./mlff-old eval --device cuda --precision f32 $M $x.xyz /tmp/o.xyz > /dev/null 2>&1
  ./mlff eval --device cuda --precision f32 $M $x.xyz /tmp/n.xyz > /dev/null 2>&1
  cmp -s /tmp/o.xyz /tmp/n.xyz && echo "$x: bitwise equal to b40986a" || echo "$x: DIFFERENT from b40986a"
done
timeout 300 ./cuda --test-threads=2 > $OUT/cuda_tests.log 2>&1; grep -E "^test |test result|panicked" $OUT/cuda_tests.log | grep -v " ok$"
for v in mlff-gpu-bench-old mlff-gpu-bench; do echo "$v: $(MLFF_CUDA_TIMING=1 timeout 60 ./$v --model $M --structures . --precision f32 --cases mol50 --repeat 200 --out $OUT/t.md 2>&1 | grep -E "download|GPU: kernels" | tr -s ' ' | tr '\n' ' ')"; done
b() { timeout 200 ./$1 --model $M --structures . --precision f32 --cases mol50,water192,water1k,batch256x50 --out $OUT/v.md 2>&1 | grep "^| [0-9mwb]" | cut -d'|' -f2,4 | tr '\n' ' '; echo; }
for r in 1 2 3; do echo "b40986a: $(b mlff-gpu-bench-old)"; echo "new:     $(b mlff-gpu-bench)"; done
date -u
