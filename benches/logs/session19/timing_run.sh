#!/bin/bash
# Session 19: MLFF_CUDA_TIMING (host and GPU spans of a call, medians) for benchmark binaries
# given as arguments, alternating, in one call. Usage: timing_run.sh BIN... 
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
for r in 1 2; do for c in ${CASES:-mol50 batch256x50 water10k water100k}; do for b in "$@"; do
  echo "== $b $c: $(MLFF_CUDA_TIMING=1 timeout 120 ./$b --model models/student_427k.safetensors --structures . --precision f32 --cases $c --out /tmp/b.md 2>&1 | grep -E "^\| [0-9mwb]|  (host|GPU)" | sed -E 's/^\| ([^|]*)\| [0-9]+ \| ([0-9.]+) .*/median \2/; s/  +/ /g' | tr '\n' ';')"
done; done; done
date -u
