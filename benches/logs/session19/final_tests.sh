#!/bin/bash
# Session 19, final build: outputs against the session's starting commit 9b535e3
# (mlff-old) bitwise, then the GPU test script without PyTorch.
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
for p in f32 f64; do for x in mol20 mol50 water192 water3k water10k water100k; do
  [ $p = f64 ] && [ $x = water100k ] && continue
  ./mlff-old eval --device cuda --precision $p $M $x.xyz /tmp/o.xyz > /dev/null 2>&1
  ./mlff eval --device cuda --precision $p $M $x.xyz /tmp/n.xyz > /dev/null 2>&1
  cmp -s /tmp/o.xyz /tmp/n.xyz && echo "$p $x: bitwise equal to 9b535e3" || echo "$p $x: DIFFERENT from 9b535e3"
done; done
cd .. && SKIP_TORCH=1 bash scripts/gpu-student-bench-run.sh 2>&1 | grep -v -E "warning: model defect|^evaluated"
