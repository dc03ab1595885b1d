#!/bin/bash
# Session 24: 896 threads per message CTA by default: outputs bitwise equal to the build
# with 1024 (mlff-prev, 3567d94), also in sequence and with the polynomial kernels on every
# size; the CUDA tests.
# Usage (GPU machine, .gpu carried): bash benches/logs/session24/threads_check.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
for x in water3k water10k water100k; do
  for env in "" "MLFF_CUDA_POLY_MIN_ATOMS=1" "MLFF_CUDA_SEQUENCE_MIN_PAIRS=0"; do
    [ -n "$env" ] && [ $x = water100k ] && continue
    env $env ./mlff-prev eval --device cuda --precision f32 $M $x.xyz /tmp/o.xyz > /dev/null 2>&1
    env $env ./mlff eval --device cuda --precision f32 $M $x.xyz /tmp/n.xyz > /dev/null 2>&1
    cmp -s /tmp/o.xyz /tmp/n.xyz && echo "$x $env: bitwise equal to 3567d94" || echo "$x $env: DIFFERENT from 3567d94"
  done
done
timeout 150 ./cuda --test-threads=2 > $OUT/cuda_tests.log 2>&1; grep -E "^test |test result|panicked" $OUT/cuda_tests.log | grep -v " ok$"
date -u
