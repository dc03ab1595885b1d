#!/bin/bash
# Session 25, final numbers and checks in one call (an H200): the benchmark table with
# PyTorch (compile + CUDA graph) in the same call, 1M atoms with the call's host spans
# (MLFF_CUDA_TIMING, 25 calls), mol50's host spans, then the CUDA tests (also with the
# polynomial kernels on every size and in sequence).
# Usage (GPU machine, .gpu carried): bash benches/logs/session25/final_run.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
cd .. && SKIP_TESTS=1 bash scripts/gpu-student-bench-run.sh 2>&1 | grep -v -E "warning: model defect|^evaluated"
cd .gpu
MLFF_CUDA_TIMING=1 timeout 150 ./mlff-gpu-bench --model $M --structures . --precision f32 --cases water1m --repeat 25 --out $OUT/bench_water1m.md 2>&1 | grep -E "^\| w|host|GPU"
MLFF_CUDA_TIMING=1 timeout 60 ./mlff-gpu-bench --model $M --structures . --precision f32 --cases mol50 --out $OUT/t.md 2>&1 | grep -E "host|GPU"
timeout 150 ./cuda --test-threads=2 > $OUT/cuda_tests.log 2>&1; grep -E "^test |test result|panicked" $OUT/cuda_tests.log | grep -v " ok$"
MLFF_CUDA_POLY_MIN_ATOMS=1 timeout 60 ./cuda --skip painn --skip f32_large_system --skip out_of_memory --test-threads=2 > $OUT/tests_poly.log 2>&1; grep -E "test result|panicked" $OUT/tests_poly.log
MLFF_CUDA_POLY_MIN_ATOMS=1 MLFF_CUDA_SEQUENCE_MIN_PAIRS=0 MLFF_CUDA_RECOMPUTE_GATES_MIN_ATOMS=0 timeout 60 ./cuda --skip painn --skip f32_large_system --skip out_of_memory --test-threads=2 > $OUT/tests_sequence.log 2>&1; grep -E "test result|panicked" $OUT/tests_sequence.log
date -u
