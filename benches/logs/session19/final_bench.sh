#!/bin/bash
# Session 19, final numbers: outputs vs 9b535e3 bitwise; this build and 9b535e3 timed in the
# same call (two rounds); then the benchmark table with PyTorch (compile + CUDA graph) in
# the same call; then 1M atoms.
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
for p in f32 f64; do for x in mol50 water3k water10k water100k; do
  [ $p = f64 ] && [ $x = water100k ] && continue
  ./mlff-old eval --device cuda --precision $p $M $x.xyz /tmp/o.xyz > /dev/null 2>&1
  ./mlff eval --device cuda --precision $p $M $x.xyz /tmp/n.xyz > /dev/null 2>&1
  cmp -s /tmp/o.xyz /tmp/n.xyz && echo "$p $x: bitwise equal to 9b535e3" || echo "$p $x: DIFFERENT from 9b535e3"
done; done
b() { timeout 200 ./$1 --model $M --structures . --precision f32 --cases mol50,batch256x50,water10k,water100k --out $OUT/v.md 2>&1 | grep "^| [0-9mwb]" | cut -d'|' -f2,4 | tr '\n' ' '; echo; }
for r in 1 2; do echo "9b535e3: $(b mlff-gpu-bench-old)"; echo "final:   $(b mlff-gpu-bench)"; done
cd .. && SKIP_TESTS=1 bash scripts/gpu-student-bench-run.sh 2>&1 | grep -v -E "warning: model defect|^evaluated"
cd .gpu && timeout 150 ./mlff-gpu-bench --model $M --structures . --precision f32 --cases water1m --repeat 5 --out $OUT/bench_water1m.md 2>&1 | grep "^| w"
date -u
