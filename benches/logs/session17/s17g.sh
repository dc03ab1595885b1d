#!/bin/bash
# Session 17, run g (= run f): gate_grads_channel_ shared by update_grad_y_ and the tiled prologue; bitwise against main f7d351e.
source "$(dirname "$0")/../scripts/gpu-env.sh"
M=models/student_427k.safetensors
cmpx() { # label xyz precision env...
  local label=$1 x=$2 p=$3; shift 3
  env "$@" ./mlff-old eval --device cuda --precision $p $M $x.xyz /tmp/o.xyz > /dev/null 2>&1
  env "$@" ./mlff eval --device cuda --precision $p $M $x.xyz /tmp/n.xyz > /dev/null 2>&1
  cmp -s /tmp/o.xyz /tmp/n.xyz && echo "$label $x $p: bitwise equal" || { echo "$label $x $p: DIFFERENT"; python3 xyzdiff.py /tmp/o.xyz /tmp/n.xyz $label 2>&1 | tail -2; }
}
for x in water3k water10k water100k; do cmpx default $x f32 A=1; done
for u in plain tiled narrow wide10; do cmpx $u water10k f32 MLFF_CUDA_UPDATE=$u; done
cmpx recomputed_gates water10k f32 MLFF_CUDA_RECOMPUTE_GATES_MIN_ATOMS=0
for x in mol20 mol50 water192; do cmpx default $x f32 A=1; cmpx nocluster $x f32 MLFF_CUDA_CLUSTER=off; done
for x in mol50 water10k; do cmpx default $x f64 A=1; cmpx default $x mixed A=1; done
./mlff eval --device cuda --precision f32 $M water10k.xyz /tmp/a.xyz > /dev/null 2>&1
MLFF_CUDA_UPDATE=plain ./mlff eval --device cuda --precision f32 $M water10k.xyz /tmp/b.xyz > /dev/null 2>&1
cmp -s /tmp/a.xyz /tmp/b.xyz && echo "new: tiled = plain, bitwise" || echo "new: tiled != plain"
date -u
