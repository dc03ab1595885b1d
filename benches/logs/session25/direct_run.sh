#!/bin/bash
# Session 25: a small system's forces and totals written by atom_gather_reduce straight
# into mapped page-locked memory (no download after the kernels), against aca3a48
# (mlff-old, mlff-gpu-bench-old) and against itself with MLFF_CUDA_DIRECT_OUTPUT=off:
# outputs bitwise, the CUDA tests (also without clusters), MLFF_CUDA_TIMING at mol50,
# the bench in interleaved rounds.
# Usage (GPU machine, .gpu carried): bash benches/logs/session25/direct_run.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
for x in mol20 mol50 water192 water3k; do
  ./mlff-old eval --device cuda --precision f32 $M $x.xyz /tmp/o.xyz > /dev/null 2>&1
  ./mlff eval --device cuda --precision f32 $M $x.xyz /tmp/n.xyz > /dev/null 2>&1
  cmp -s /tmp/o.xyz /tmp/n.xyz && echo "$x: bitwise equal to aca3a48" || echo "$x: DIFFERENT from aca3a48"
done
timeout 200 ./cuda --test-threads=2 > $OUT/cuda_tests.log 2>&1; grep -E "^test |test result|panicked" $OUT/cuda_tests.log | grep -v " ok$"
MLFF_CUDA_CLUSTER=off timeout 100 ./cuda f32 --skip painn --test-threads=2 > $OUT/tests_nocluster.log 2>&1; grep -E "test result|panicked" $OUT/tests_nocluster.log
for v in new off; do
  e=""; [ $v = off ] && e="MLFF_CUDA_DIRECT_OUTPUT=off"
  echo "timing $v:"; env $e MLFF_CUDA_TIMING=1 timeout 60 ./mlff-gpu-bench --model $M --structures . --precision f32 --cases mol50 --out $OUT/t.md 2>&1 | grep -E "host|GPU"
done
b() { timeout 100 env $2 ./$1 --model $M --structures . --precision f32 --cases mol50,water192 --out /tmp/v.md 2>&1 | grep "^| [0-9mwb]" | cut -d"|" -f2,4,5,6 | tr '\n' ' '; echo; }
for r in 1 2 3 4; do
  echo "aca3a48: $(b mlff-gpu-bench-old)"; echo "new:     $(b mlff-gpu-bench)"; echo "new,off: $(b mlff-gpu-bench MLFF_CUDA_DIRECT_OUTPUT=off)"
done
date -u
