#!/bin/bash
# Session 23: threads per block of edge_order_records (MLFF_CUDA_EDGE_ORDER_THREADS):
# ncu at water10k and water100k for 32 ... 128, outputs bitwise equal to the default, the
# bench of 64 and 96 against 128 in the same call (two rounds).
# Usage (GPU machine, .gpu carried): bash benches/logs/session23/order_threads_run.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
./mlff eval --device cuda --precision f32 $M water10k.xyz /tmp/o.xyz > /dev/null 2>&1
for t in 32 64 96 128; do
  MLFF_CUDA_EDGE_ORDER_THREADS=$t ./mlff eval --device cuda --precision f32 $M water10k.xyz /tmp/n.xyz > /dev/null 2>&1
  cmp -s /tmp/o.xyz /tmp/n.xyz && b="bitwise equal" || b="DIFFERENT"
  for x in water10k water100k; do
    us=$(MLFF_CUDA_EDGE_ORDER_THREADS=$t timeout 100 /usr/local/cuda/bin/ncu --clock-control none -k regex:edge_order -c 1 --metrics gpu__time_duration.sum ./mlff eval --device cuda --precision f32 $M $x.xyz /tmp/n.xyz 2>&1 | grep duration | awk '{print $NF}')
    echo "threads $t $x: edge_order_records $us us ($b at water10k)"
  done
done
b() { timeout 200 env $2 ./mlff-gpu-bench --model $M --structures . --precision f32 --cases batch256x50,water10k,water100k --out $OUT/v.md 2>&1 | grep "^| [0-9mwb]" | cut -d"|" -f2,4 | tr '\n' ' '; echo; }
for r in 1 2; do for t in 128 64 96; do echo "threads $t: $(b x MLFF_CUDA_EDGE_ORDER_THREADS=$t)"; done; done
date -u
