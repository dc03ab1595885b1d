#!/bin/bash
# GPU machine, .gpu laid out by scripts/prepare-gpu-run.sh (carried): times kernel variants
# against each other in one call, interleaved over ROUNDS rounds so that clock drift
# hits all alike. Each argument is one variant: environment assignments for the engine
# (shell words, e.g. 'MLFF_CUDA_DEFINES="-DPOLY_REUSE=0 -DPOLY_UNROLL=2" MLFF_CUDA_POLY_THREADS=768';
# "" = the defaults).
# CASES (default water10k,water100k), ROUNDS (default 2), PRECISION (default f32).
# Usage: bash scripts/gpu-variants-run.sh "" "MLFF_CUDA_DEFINES=-DPOLY_REUSE=0" ...
source "$(dirname "$0")/gpu-env.sh"
cases=${CASES:-water10k,water100k}
for round in $(seq 1 "${ROUNDS:-2}"); do
  for variant in "$@"; do
    echo "== round $round: ${variant:-default}"
    (if [ -n "$variant" ]; then eval "export $variant"; fi
     timeout 120 ./mlff-gpu-bench --model models/student_427k.safetensors --structures . \
      --precision "${PRECISION:-f32}" --cases "$cases" --out "$OUT/variant.md" 2>&1 | grep "^| [mw2b]" | cut -d'|' -f2-4)
  done
done
date -u
