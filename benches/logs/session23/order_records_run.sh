#!/bin/bash
# Session 23: edge_order and edge_records in one launch (edge_order_records.cu) against
# 60da694 (mlff-old, mlff-gpu-bench-old): outputs bitwise, the CUDA tests (also with the
# polynomial kernels on every size, with and without records), ncu of every kernel of a
# water10k call, the bench in the same call (three rounds).
# Usage (GPU machine, .gpu carried): bash benches/logs/session23/order_records_run.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
for x in mol50 water192 water3k water10k water100k; do
  for env in "" "MLFF_CUDA_POLY_MIN_ATOMS=1"; do
    [ -n "$env" ] && [ $x = water100k ] && continue
    env $env ./mlff-old eval --device cuda --precision f32 $M $x.xyz /tmp/o.xyz > /dev/null 2>&1
    env $env ./mlff eval --device cuda --precision f32 $M $x.xyz /tmp/n.xyz > /dev/null 2>&1
    cmp -s /tmp/o.xyz /tmp/n.xyz && echo "$x $env: bitwise equal to 60da694" || echo "$x $env: DIFFERENT from 60da694"
  done
done
timeout 300 ./cuda --test-threads=2 > $OUT/cuda_tests.log 2>&1; grep -E "^test |test result|panicked" $OUT/cuda_tests.log | grep -v " ok$"
MLFF_CUDA_POLY_MIN_ATOMS=1 timeout 100 ./cuda --skip painn --skip f32_large_system --test-threads=2 > $OUT/tests_poly.log 2>&1; grep -E "test result|panicked" $OUT/tests_poly.log
MLFF_CUDA_POLY_MIN_ATOMS=1 MLFF_CUDA_SEQUENCE_MIN_PAIRS=0 timeout 100 ./cuda --skip painn --skip f32_large_system --test-threads=2 > $OUT/tests_sequence.log 2>&1; grep -E "test result|panicked" $OUT/tests_sequence.log
for v in mlff-old mlff; do
  timeout 120 /usr/local/cuda/bin/ncu --clock-control none --metrics gpu__time_duration.sum ./$v eval --device cuda --precision f32 $M water10k.xyz /tmp/n.xyz > $OUT/ncu_$v.txt 2>&1
  echo "$v: $(grep -E '^  [a-z_0-9]+.*\(|gpu__time_duration' $OUT/ncu_$v.txt | awk '/\(/{name=$1} /duration/{printf "%s %s, ", name, $NF}')"
done
b() { timeout 200 ./$1 --model $M --structures . --precision f32 --cases mol50,batch256x50,water10k,water100k --out $OUT/v.md 2>&1 | grep "^| [0-9mwb]" | cut -d'|' -f2,4 | tr '\n' ' '; echo; }
for r in 1 2 3; do echo "60da694: $(b mlff-gpu-bench-old)"; echo "fused:   $(b mlff-gpu-bench)"; done
date -u
