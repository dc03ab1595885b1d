#!/bin/bash
# Session 23: graph branches on the polynomial path (the edges' order from the positions
# beside the pair geometry; each block's edge_backward_sum beside the next block's
# update_backward) against 60da694 (mlff-old, mlff-gpu-bench-old): outputs bitwise, the
# CUDA tests, the bench in the same call (three rounds), MLFF_CUDA_TIMING, and the graph's
# kernel spans (nsys where installed).
# Usage (GPU machine, .gpu carried): bash benches/logs/session23/branches_run.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
for x in mol50 water192 water3k water10k water100k; do
  ./mlff-old eval --device cuda --precision f32 $M $x.xyz /tmp/o.xyz > /dev/null 2>&1
  ./mlff eval --device cuda --precision f32 $M $x.xyz /tmp/n.xyz > /dev/null 2>&1
  cmp -s /tmp/o.xyz /tmp/n.xyz && echo "$x: bitwise equal to 60da694" || echo "$x: DIFFERENT from 60da694"
done
MLFF_CUDA_SEQUENCE_MIN_PAIRS=0 ./mlff-old eval --device cuda --precision f32 $M water10k.xyz /tmp/o.xyz > /dev/null 2>&1
MLFF_CUDA_SEQUENCE_MIN_PAIRS=0 ./mlff eval --device cuda --precision f32 $M water10k.xyz /tmp/n.xyz > /dev/null 2>&1
cmp -s /tmp/o.xyz /tmp/n.xyz && echo "water10k groups in sequence: bitwise equal" || echo "water10k groups in sequence: DIFFERENT"
timeout 300 ./cuda --test-threads=2 > $OUT/cuda_tests.log 2>&1; grep -E "^test |test result|panicked" $OUT/cuda_tests.log | grep -v " ok$"
b() { timeout 200 ./$1 --model $M --structures . --precision f32 --cases mol50,batch256x50,water10k,water100k --out $OUT/v.md 2>&1 | grep "^| [0-9mwb]" | cut -d'|' -f2,4 | tr '\n' ' '; echo; }
for r in 1 2 3; do echo "60da694:  $(b mlff-gpu-bench-old)"; echo "branches: $(b mlff-gpu-bench)"; done
for v in mlff-gpu-bench-old mlff-gpu-bench; do
  echo "$v:"; MLFF_CUDA_TIMING=1 timeout 100 ./$v --model $M --structures . --precision f32 --cases water10k,batch256x50 --repeat 40 --out $OUT/t.md 2>&1 | grep -E "timing|host|GPU"
done
NSYS=$(ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1); echo "nsys: ${NSYS:-none}"
if [ -n "$NSYS" ]; then
  for v in mlff-gpu-bench-old mlff-gpu-bench; do
    timeout 120 $NSYS profile --cuda-graph-trace=node -t cuda -o /tmp/$v -f true ./$v --model $M --structures . --precision f32 --cases water10k --repeat 10 --out $OUT/t.md > /dev/null 2>&1
    timeout 60 $NSYS stats -r cuda_gpu_kern_sum -f csv -o $OUT/$v /tmp/$v.nsys-rep > /dev/null 2>&1; ls $OUT | grep $v
  done
fi
date -u
