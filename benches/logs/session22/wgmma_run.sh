#!/bin/bash
# Session 22: the forward update on the tensor cores (update_wgmma.cu, MLFF_CUDA_UPDATE=wgmma)
# against the default (tiled SIMT) kernels: force error against the CPU f64 engine for both
# descriptor field orders (UW_DESC_SWAP), the f32 CUDA tests with it forced, ncu of the
# update kernels at water10k, the bench in the same call.
# Usage (GPU machine, .gpu carried): bash benches/logs/session22/wgmma_run.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
for x in water3k water10k; do
  timeout 120 ./mlff eval --device cpu --precision f64 $M $x.xyz /tmp/cpu_$x.xyz > /dev/null 2>&1 || echo "cpu $x failed"
done
for swap in 0 1; do
  for x in water3k water10k; do
    for u in default wgmma; do
      [ $swap = 1 ] && [ $u = default ] && continue
      MLFF_CUDA_DEFINES="-DUW_DESC_SWAP=$swap" MLFF_CUDA_UPDATE=$u timeout 60 ./mlff eval --device cuda --precision f32 $M $x.xyz /tmp/g.xyz > /tmp/eval.log 2>&1 || { echo "$x $u swap=$swap: eval failed"; tail -3 /tmp/eval.log; continue; }
      python3 xyzerr.py /tmp/g.xyz /tmp/cpu_$x.xyz "$x $u swap=$swap"
    done
  done
done
date -u
MLFF_CUDA_UPDATE=wgmma timeout 200 ./cuda f32 --test-threads=2 > $OUT/tests_wgmma.log 2>&1; grep -E "^test |test result|panicked" $OUT/tests_wgmma.log | grep -v " ok$"
for u in default wgmma; do
  echo "ncu $u:"; MLFF_CUDA_UPDATE=$u timeout 120 /usr/local/cuda/bin/ncu --clock-control none -k regex:update -c 6 --metrics gpu__time_duration.sum,smsp__issue_active.avg.pct_of_peak_sustained_active,launch__registers_per_thread ./mlff eval --device cuda --precision f32 $M water10k.xyz /tmp/n.xyz 2>&1 | grep -E "update|duration|issue_active|registers" | awk '{print $1, $NF}' | paste - - - - | sed 's/(.*//'
done > $OUT/ncu.txt 2>&1; cat $OUT/ncu.txt
b() { MLFF_CUDA_UPDATE=$1 timeout 200 ./mlff-gpu-bench --model $M --structures . --precision f32 --cases batch256x50,water10k,water100k --out $OUT/v.md 2>&1 | grep "^| [0-9mwb]" | cut -d"|" -f2,4 | tr "\n" " "; echo; }
for r in 1 2; do echo "default: $(b default)"; echo "wgmma:   $(b wgmma)"; done
date -u
