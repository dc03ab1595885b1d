#!/bin/bash
# Session 20: the batch's per-system totals copied into page-locked memory against 770e65a
# (mlff-gpu-bench-old: into a vector, a copy that held the host until the GPU finished):
# all CUDA tests, MLFF_CUDA_TIMING of the batch, the bench in the same call (three rounds).
# Usage (GPU machine, .gpu carried): bash benches/logs/session20/batch_pinned_run.sh
# The build it measured (5dd3323) was reverted (7d53040): no measured gain.
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
timeout 300 ./cuda --test-threads=2 > $OUT/cuda_tests.log 2>&1; grep -E "^test |test result|panicked" $OUT/cuda_tests.log | grep -v " ok$"
for v in mlff-gpu-bench-old mlff-gpu-bench; do echo "$v: $(MLFF_CUDA_TIMING=1 timeout 60 ./$v --model $M --structures . --precision f32 --cases batch256x50 --repeat 100 --out $OUT/t.md 2>&1 | grep -E "host: results|download|GPU: kernels|wait" | tr -s ' ' | tr '\n' ' ')"; done
b() { timeout 200 ./$1 --model $M --structures . --precision f32 --cases batch256x50 --repeat 200 --out $OUT/v.md 2>&1 | grep "^| [0-9mwb]" | cut -d'|' -f2,4 | tr '\n' ' '; echo; }
for r in 1 2 3; do echo "770e65a: $(b mlff-gpu-bench-old)"; echo "new:     $(b mlff-gpu-bench)"; done
date -u
