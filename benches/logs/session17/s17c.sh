#!/bin/bash
# Session 17, run c: sign flip as one instruction; bitwise against main f7d351e, then the full GPU test script.
source "$(dirname "$0")/../scripts/gpu-env.sh"
M=models/student_427k.safetensors
cmpx() { # label xyz env...
  local label=$1 x=$2; shift 2
  env "$@" ./mlff-old eval --device cuda --precision f32 $M $x.xyz /tmp/o.xyz > /dev/null 2>&1
  env "$@" ./mlff eval --device cuda --precision f32 $M $x.xyz /tmp/n.xyz > /dev/null 2>&1
  cmp -s /tmp/o.xyz /tmp/n.xyz && echo "$label $x: bitwise equal" || { echo "$label $x: DIFFERENT"; python3 xyzdiff.py /tmp/o.xyz /tmp/n.xyz $label | tail -2; }
}
for x in water3k water10k water100k; do cmpx default $x A=1; done
cmpx sequence water100k MLFF_CUDA_SEQUENCE_MIN_PAIRS=1
cmpx records_off water10k MLFF_CUDA_EDGE_RECORDS=off
for x in mol50 water192; do cmpx poly_forced $x MLFF_CUDA_POLY_MIN_ATOMS=1; done
NCU=/usr/local/cuda/bin/ncu
echo "ncu: $(timeout 100 $NCU --kernel-name regex:"poly|pair_backward" --metrics gpu__time_duration.sum ./mlff eval --device cuda --precision f32 $M water10k.xyz /tmp/n.xyz 2>&1 | grep -E "^  [a-z_0-9]+|gpu__time" | paste - - | awk '{print $1, $(NF)}' | sed 's/_f32//' | tr '\n' ' ')"
cd .. && SKIP_TORCH=1 bash scripts/gpu-student-bench-run.sh
