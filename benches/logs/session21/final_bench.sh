#!/bin/bash
# Session 21, final numbers: the benchmark table with PyTorch (compile + CUDA graph) in the
# same call, then 1M atoms with the call's host spans (MLFF_CUDA_TIMING, 25 calls).
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
cd .. && SKIP_TESTS=1 bash scripts/gpu-student-bench-run.sh 2>&1 | grep -v -E "warning: model defect|^evaluated"
cd .gpu && MLFF_CUDA_TIMING=1 timeout 150 ./mlff-gpu-bench --model $M --structures . --precision f32 --cases water1m --repeat 25 --out $OUT/bench_water1m.md 2>&1 | grep -E "^\| w|host|GPU"
date -u
