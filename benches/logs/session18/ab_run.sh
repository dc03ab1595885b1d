#!/bin/bash
# Session 18, run f: full batches of warp_sum_batch_ without per-edge tests (mlff) vs 2a9220d (mlff-mid)
# vs 1643726 (mlff-old); then the GPU test script (SKIP_TORCH=1) on this build.
source "$(dirname "$0")/../scripts/gpu-env.sh"
NCU=/usr/local/cuda/bin/ncu
M=models/student_427k.safetensors
cmpx() { # label xyz env...
  local label=$1 x=$2; shift 2
  env "$@" ./mlff-old eval --device cuda --precision f32 $M $x.xyz /tmp/o.xyz > /dev/null 2>&1
  env "$@" ./mlff eval --device cuda --precision f32 $M $x.xyz /tmp/n.xyz > /dev/null 2>&1
  cmp -s /tmp/o.xyz /tmp/n.xyz && echo "$label $x: bitwise equal" || { echo "$label $x: DIFFERENT"; python3 xyzdiff.py /tmp/o.xyz /tmp/n.xyz $label 2>&1 | tail -2; }
}
for x in water3k water10k water100k; do cmpx default $x A=1; done
cmpx sequence water100k MLFF_CUDA_SEQUENCE_MIN_PAIRS=1
cmpx sequence water10k MLFF_CUDA_SEQUENCE_MIN_PAIRS=1
cmpx records_off water10k MLFF_CUDA_EDGE_RECORDS=off
for x in mol50 water192; do cmpx poly_forced $x MLFF_CUDA_POLY_MIN_ATOMS=1; cmpx poly_forced_records_off $x MLFF_CUDA_POLY_MIN_ATOMS=1 MLFF_CUDA_EDGE_RECORDS=off; done
b() { timeout 200 ./$1 --model $M --structures . --precision f32 --cases batch256x50,water10k,water100k --out $OUT/v.md 2>&1 | grep "^| [0-9mwb]" | cut -d'|' -f2,4 | tr '\n' ' '; echo; }
for r in 1 2; do echo "old: $(b mlff-gpu-bench-old)"; echo "mid: $(b mlff-gpu-bench-mid)"; echo "new: $(b mlff-gpu-bench)"; done
for v in mlff-mid mlff; do echo "ncu $v: $(timeout 100 $NCU --kernel-name regex:"edge_backward_poly|pair_backward" --metrics gpu__time_duration.sum ./$v eval --device cuda --precision f32 $M water10k.xyz /tmp/n.xyz 2>&1 | grep -E "^  [a-z_0-9]+|gpu__time" | paste - - | awk '{print $1, $(NF)}' | sed 's/_f32//' | tr '\n' ' ')"; done
date -u
cd .. && SKIP_TORCH=1 bash scripts/gpu-student-bench-run.sh
