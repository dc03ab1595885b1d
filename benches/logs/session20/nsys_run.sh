#!/bin/bash
# Session 20: a timeline of mlff-gpu-bench calls (nsys, CUDA trace) at water10k and mol50:
# where a call's time goes between the kernels (upload, gaps, download).
# Usage (GPU machine, .gpu carried): bash benches/logs/session20/nsys_run.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
NSYS=$(ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
[ -z "$NSYS" ] && NSYS=$(find / -name nsys -type f -perm -u+x -not -path '/proc/*' 2>/dev/null | head -1)
echo "nsys: $NSYS"
M=models/student_427k.safetensors
for c in water10k mol50; do
  MLFF_CUDA_TIMING=1 timeout 100 ./mlff-gpu-bench --model $M --structures . --precision f32 --cases $c --repeat 30 --out $OUT/t.md 2>&1 | tail -12
  timeout 200 $NSYS profile --trace=cuda --cuda-graph-trace=node -o /tmp/p_$c --force-overwrite true ./mlff-gpu-bench --model $M --structures . --precision f32 --cases $c --repeat 30 --out $OUT/t.md > /dev/null 2>&1
  timeout 200 $NSYS stats --report cuda_gpu_trace --report cuda_api_trace --format csv --output $OUT/$c /tmp/p_$c.nsys-rep > /dev/null 2>&1
  ls -la $OUT | grep $c
done
date -u
