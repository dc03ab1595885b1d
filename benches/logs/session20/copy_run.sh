#!/bin/bash
# Session 20: the positions' staging into page-locked memory and the forces' copy into the
# caller's rows on more of rayon's threads (MLFF_CUDA_COPY_ROWS=threshold,rows per task;
# default: staging from 65536 atoms in tasks of 16384, copy-out from 16384 in tasks of 4096).
# MLFF_CUDA_TIMING medians (host spans) and the bench medians, variants interleaved, 2 rounds.
# Usage (GPU machine, .gpu carried): bash benches/logs/session20/copy_run.sh
# The build it measured had MLFF_CUDA_COPY_ROWS (staging and copy-out); main kept the staging
# part as MLFF_CUDA_STAGE_ROWS.
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
t() { # case, env...
  local c=$1; shift
  env "$@" MLFF_CUDA_TIMING=1 timeout 100 ./mlff-gpu-bench --model $M --structures . --precision f32 --cases $c --repeat 40 --out $OUT/t.md 2>&1 \
    | grep -E "^\| $c|stage|results|GPU: upload|GPU: down" | sed -E 's/\| [0-9]+ \| ([0-9.]+) .*/median \1/; s/  +/ /g' | tr '\n' ' '
  echo
}
for r in 1 2; do
  for v in default 2048,512 4096,1024; do echo "water10k $v: $(t water10k MLFF_CUDA_COPY_ROWS=$v)"; done
  for v in default 8192,2048 16384,4096; do echo "water100k $v: $(t water100k MLFF_CUDA_COPY_ROWS=$v)"; done
done
date -u
