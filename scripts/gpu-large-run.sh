#!/bin/bash
# GPU machine, from a checkout with .gpu laid out by scripts/prepare-gpu-run.sh (carried):
# the large water boxes in f32 and mixed, as written and with their atoms shuffled, with
# the atoms sorted spatially (default) and in the caller's order (MLFF_CUDA_SORT=off): time
# per step and device memory (the tests: scripts/gpu-student-bench-run.sh).
# Usage: bash scripts/gpu-large-run.sh [CASES] (default water100k,water1m).
cases=${1:-water100k,water1m}
source "$(dirname "$0")/gpu-env.sh"
date -u
for sort in on off; do
  for p in f32 mixed; do
    for order in "" --shuffle; do
      MLFF_CUDA_SORT=$sort timeout 150 ./mlff-gpu-bench --model models/student_427k.safetensors --structures . --precision $p --repeat 5 --cases "$cases" $order --out "$OUT/large_${p}_sort_$sort$order.md" 2>&1 | grep "^| w" | sed "s/^/$p sort=$sort /"
    done
  done
done
date -u
cd "$OUT" && tar czf logs.tgz *.md
