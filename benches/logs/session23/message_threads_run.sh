#!/bin/bash
# Session 23: threads per CTA of the message kernels and pair_backward
# (MLFF_CUDA_MESSAGE_THREADS, default 1024) at water10k and water100k: ncu durations.
# Usage (GPU machine, .gpu carried): bash benches/logs/session23/message_threads_run.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
for t in 1024 896 768; do
  for x in water10k water100k; do
    r=$(MLFF_CUDA_MESSAGE_THREADS=$t timeout 100 /usr/local/cuda/bin/ncu --clock-control none -k regex:"message_poly|pair_backward" -c 4 --metrics gpu__time_duration.sum ./mlff eval --device cuda --precision f32 $M $x.xyz /tmp/n.xyz 2>&1 | grep duration | awk '{printf "%s ", $NF}')
    echo "threads $t $x: zero_v, message, message, pair_backward: $r"
  done
done
date -u
