#!/bin/bash
# Session 24: 896 vs 1024 threads per message CTA (MLFF_CUDA_MESSAGE_THREADS), the bench
# alone, five rounds interleaved, water10k and water100k (ms, median of each run).
# Usage (GPU machine, .gpu carried): bash benches/logs/session24/threads_run.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
b() { timeout 200 env $1 ./mlff-gpu-bench --model $M --structures . --precision f32 --cases water10k,water100k --out /tmp/v.md 2>&1 | grep "^| [0-9mwb]" | cut -d"|" -f2,4 | tr '\n' ' '; echo; }
for r in 1 2 3 4 5; do echo "1024: $(b MLFF_CUDA_MESSAGE_THREADS=1024)"; echo "896:  $(b MLFF_CUDA_MESSAGE_THREADS=896)"; done
date -u
