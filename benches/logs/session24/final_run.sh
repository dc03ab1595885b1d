#!/bin/bash
# Session 24, final numbers and checks in one call: the benchmark table with PyTorch
# (compile + CUDA graph) in the same call, the build of 6766039 (mlff-gpu-bench-old) against
# this one (three rounds), 1M atoms with the call's host spans (MLFF_CUDA_TIMING, 25
# calls), then the CUDA tests (also with the polynomial kernels on every size, in
# sequence, and the wgmma update variant).
# Usage (GPU machine, .gpu carried): bash benches/logs/session24/final_run.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
cd .. && SKIP_TESTS=1 bash scripts/gpu-student-bench-run.sh 2>&1 | grep -v -E "warning: model defect|^evaluated"
cd .gpu
b() { timeout 200 env $2 ./$1 --model $M --structures . --precision f32 --cases mol50,batch256x50,water10k,water100k --out /tmp/v.md 2>&1 | grep "^| [0-9mwb]" | cut -d"|" -f2,4,10 | tr '\n' ' '; echo; }
for r in 1 2 3; do echo "6766039: $(b mlff-gpu-bench-old)"; echo "new:     $(b mlff-gpu-bench)"; done
MLFF_CUDA_TIMING=1 timeout 150 ./mlff-gpu-bench --model $M --structures . --precision f32 --cases water1m --repeat 25 --out $OUT/bench_water1m.md 2>&1 | grep -E "^\| w|host|GPU"
timeout 150 ./cuda --test-threads=2 > $OUT/cuda_tests.log 2>&1; grep -E "^test |test result|panicked" $OUT/cuda_tests.log | grep -v " ok$"
MLFF_CUDA_POLY_MIN_ATOMS=1 timeout 60 ./cuda --skip painn --skip f32_large_system --test-threads=2 > $OUT/tests_poly.log 2>&1; grep -E "test result|panicked" $OUT/tests_poly.log
MLFF_CUDA_POLY_MIN_ATOMS=1 MLFF_CUDA_SEQUENCE_MIN_PAIRS=0 MLFF_CUDA_RECOMPUTE_GATES_MIN_ATOMS=0 timeout 60 ./cuda --skip painn --skip f32_large_system --test-threads=2 > $OUT/tests_sequence.log 2>&1; grep -E "test result|panicked" $OUT/tests_sequence.log
MLFF_CUDA_UPDATE=wgmma timeout 60 ./cuda f32 --test-threads=2 > $OUT/tests_wgmma.log 2>&1; grep -E "test result|panicked" $OUT/tests_wgmma.log
date -u
