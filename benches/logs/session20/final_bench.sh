#!/bin/bash
# Session 20, final numbers: the staging in tasks of 2048 atoms against tasks of 16384
# (MLFF_CUDA_STAGE_ROWS=65536,16384, session 19's code path) in the same call, two rounds; the
# benchmark table with PyTorch (compile + CUDA graph) in the same call; 1M atoms with the
# call's host spans (MLFF_CUDA_TIMING). Two device calls: `final_bench.sh ab` (A/B and 1M),
# `final_bench.sh table`.
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
b() { env "$@" timeout 200 ./mlff-gpu-bench --model $M --structures . --precision f32 --cases mol50,batch256x50,water10k,water100k --out $OUT/v.md 2>&1 | grep "^| [0-9mwb]" | cut -d'|' -f2,4 | tr '\n' ' '; echo; }
if [ "$1" = ab ]; then
for r in 1 2; do echo "tasks of 16384: $(b MLFF_CUDA_STAGE_ROWS=65536,16384)"; echo "tasks of 2048:  $(b A=1)"; done
for v in 65536,16384 65536,2048; do echo "water1m, tasks $v:"; MLFF_CUDA_STAGE_ROWS=$v MLFF_CUDA_TIMING=1 timeout 150 ./mlff-gpu-bench --model $M --structures . --precision f32 --cases water1m --repeat 5 --out $OUT/bench_water1m.md 2>&1 | grep -E "^\| w|host|GPU"; done
else
cd .. && SKIP_TESTS=1 bash scripts/gpu-student-bench-run.sh 2>&1 | grep -v -E "warning: model defect|^evaluated"
# 1M with enough calls that the host spans' medians are of steps without a rebuild (the
# bench's 3 warm-up and 6 rebuild calls count too).
cd .gpu && MLFF_CUDA_TIMING=1 timeout 150 ./mlff-gpu-bench --model $M --structures . --precision f32 --cases water1m --repeat 25 --out $OUT/bench_water1m.md 2>&1 | grep -E "^\| w|host|GPU"
fi
date -u
