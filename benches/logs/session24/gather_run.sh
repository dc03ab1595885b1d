#!/bin/bash
# Session 24: atom_gather adds up the pair terms itself (edge_backward_sum and
# edge_backward_finish removed) and reduce_partial sums its rows in its last block
# (reduce_final's launch gone), against 6766039 (mlff-old, mlff-gpu-bench-old): outputs
# bitwise (also in sequence and with the polynomial kernels on every size, f64), the
# CUDA tests, ncu of a water10k step (both builds), the bench in the same call (three
# rounds; the new build also with 896 threads per message CTA).
# Usage (GPU machine, .gpu carried): bash benches/logs/session24/gather_run.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
for x in mol50 water192 water3k water10k water100k; do
  for env in "" "MLFF_CUDA_POLY_MIN_ATOMS=1" "MLFF_CUDA_SEQUENCE_MIN_PAIRS=0"; do
    [ -n "$env" ] && [ $x = water100k ] && continue
    env $env ./mlff-old eval --device cuda --precision f32 $M $x.xyz /tmp/o.xyz > /dev/null 2>&1
    env $env ./mlff eval --device cuda --precision f32 $M $x.xyz /tmp/n.xyz > /dev/null 2>&1
    cmp -s /tmp/o.xyz /tmp/n.xyz && echo "$x $env: bitwise equal to 6766039" || echo "$x $env: DIFFERENT from 6766039"
  done
done
for x in water3k water10k; do
  ./mlff-old eval --device cuda --precision f64 $M $x.xyz /tmp/o.xyz > /dev/null 2>&1
  ./mlff eval --device cuda --precision f64 $M $x.xyz /tmp/n.xyz > /dev/null 2>&1
  cmp -s /tmp/o.xyz /tmp/n.xyz && echo "$x f64: bitwise equal" || echo "$x f64: DIFFERENT"
done
for m in student_tiny_77k student_ultra_tiny_21k; do
  ./mlff-old eval --device cuda --precision f32 models/$m.safetensors water10k.xyz /tmp/o.xyz > /dev/null 2>&1
  ./mlff eval --device cuda --precision f32 models/$m.safetensors water10k.xyz /tmp/n.xyz > /dev/null 2>&1
  cmp -s /tmp/o.xyz /tmp/n.xyz && echo "$m water10k: bitwise equal" || echo "$m water10k: DIFFERENT"
done
timeout 300 ./cuda --test-threads=2 > $OUT/cuda_tests.log 2>&1; grep -E "^test |test result|panicked" $OUT/cuda_tests.log | grep -v " ok$"
MLFF_CUDA_POLY_MIN_ATOMS=1 timeout 100 ./cuda --skip painn --skip f32_large_system --test-threads=2 > $OUT/tests_poly.log 2>&1; grep -E "test result|panicked" $OUT/tests_poly.log
MLFF_CUDA_POLY_MIN_ATOMS=1 MLFF_CUDA_SEQUENCE_MIN_PAIRS=0 MLFF_CUDA_RECOMPUTE_GATES_MIN_ATOMS=0 timeout 100 ./cuda --skip painn --skip f32_large_system --test-threads=2 > $OUT/tests_sequence.log 2>&1; grep -E "test result|panicked" $OUT/tests_sequence.log
for v in old new; do
  bin=./mlff-gpu-bench; [ $v = old ] && bin=./mlff-gpu-bench-old
  timeout 120 /usr/local/cuda/bin/ncu --clock-control none --launch-skip 60 --launch-count 30 --metrics gpu__time_duration.sum $bin --model $M --structures . --precision f32 --cases water10k --repeat 3 --out $OUT/t.md > $OUT/ncu_$v.txt 2>&1
  echo "$v: $(grep -E '^  [a-z_0-9]+.*\(|gpu__time_duration' $OUT/ncu_$v.txt | awk '/\(/{name=$1} /duration/{printf "%s %s, ", name, $NF}')"
done
b() { timeout 200 env $2 ./$1 --model $M --structures . --precision f32 --cases mol50,batch256x50,water10k,water100k --out $OUT/v.md 2>&1 | grep "^| [0-9mwb]" | cut -d"|" -f2,4,10 | tr '\n' ' '; echo; }
for r in 1 2 3; do echo "6766039: $(b mlff-gpu-bench-old)"; echo "new:     $(b mlff-gpu-bench)"; echo "new, 896: $(b mlff-gpu-bench MLFF_CUDA_MESSAGE_THREADS=896)"; done
date -u
