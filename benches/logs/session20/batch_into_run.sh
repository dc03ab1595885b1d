#!/bin/bash
# Session 20: a batch's forces copied straight into the callers' rows
# (compute_batch_forces_into, the C ABI's batch path) against 08fd424 (mlff-gpu-bench-old
# times compute_batch, which builds a vector per system; the C ABI then copied again):
# all CUDA tests, MLFF_CUDA_TIMING of the batch, the bench in the same call (three rounds).
# Usage (GPU machine, .gpu carried): bash benches/logs/session20/batch_into_run.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
timeout 300 ./cuda --test-threads=2 > $OUT/cuda_tests.log 2>&1; grep -E "^test |test result|panicked" $OUT/cuda_tests.log | grep -v " ok$"
for v in mlff-gpu-bench-old mlff-gpu-bench; do echo "$v: $(MLFF_CUDA_TIMING=1 timeout 60 ./$v --model $M --structures . --precision f32 --cases batch256x50 --repeat 100 --out $OUT/t.md 2>&1 | grep -E "^\| 256|host|GPU" | sed -E 's/\| [0-9]+ \| ([0-9.]+) .*/median \1/' | tr -s ' ' | tr '\n' ' ')"; done
b() { timeout 200 ./$1 --model $M --structures . --precision f32 --cases batch256x50,mol50 --out $OUT/v.md 2>&1 | grep "^| [0-9mwb]" | cut -d'|' -f2,4 | tr '\n' ' '; echo; }
for r in 1 2 3; do echo "08fd424: $(b mlff-gpu-bench-old)"; echo "new:     $(b mlff-gpu-bench)"; done
date -u
