#!/bin/bash
# Session 19: this build (mlff) vs the session's starting commit 9b535e3 (mlff-old): outputs
# bitwise, then benchmarks in the same call, then ncu of the changed kernels at water10k.
# Usage (GPU machine, .gpu carried): bash benches/logs/session19/ab_run.sh [cases]
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
NCU=/usr/local/cuda/bin/ncu
M=models/student_427k.safetensors
CASES=${1:-mol50,batch256x50,water10k,water100k}
cmpx() { # label xyz env...
  local label=$1 x=$2; shift 2
  env "$@" ./mlff-old eval --device cuda --precision f32 $M $x.xyz /tmp/o.xyz > /dev/null 2>&1
  env "$@" ./mlff eval --device cuda --precision f32 $M $x.xyz /tmp/n.xyz > /dev/null 2>&1
  cmp -s /tmp/o.xyz /tmp/n.xyz && echo "$label $x: bitwise equal" || { echo "$label $x: DIFFERENT"; python3 xyzdiff.py /tmp/o.xyz /tmp/n.xyz $label 2>&1 | tail -3; }
}
for x in mol50 water192 water3k water10k water100k; do cmpx default $x A=1; done
cmpx poly_forced mol50 MLFF_CUDA_POLY_MIN_ATOMS=1
cmpx no_branches mol50 MLFF_CUDA_BRANCHES=off
cmpx readout_plain_new_vs_old water10k MLFF_CUDA_READOUT=plain
cmpx sequence water100k MLFF_CUDA_SEQUENCE_MIN_PAIRS=1
b() { timeout 200 ./$1 --model $M --structures . --precision f32 --cases $CASES --out $OUT/v.md 2>&1 | grep "^| [0-9mwb]" | cut -d'|' -f2,4 | tr '\n' ' '; echo; }
for r in 1 2; do echo "old: $(b mlff-gpu-bench-old)"; echo "new: $(b mlff-gpu-bench)"; done
K="readout|edge_order"
for v in mlff-old mlff; do echo "ncu $v: $(timeout 100 $NCU --kernel-name regex:"$K" --metrics gpu__time_duration.sum ./$v eval --device cuda --precision f32 $M water10k.xyz /tmp/n.xyz 2>&1 | grep -E "^  [a-z_0-9]+|gpu__time" | paste - - | awk '{print $1, $(NF)}' | sed 's/_f32//' | tr '\n' ' ')"; done
date -u
