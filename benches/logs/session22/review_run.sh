#!/bin/bash
# Session 22 review: update_wgmma.cu without the workarounds of its unrolled version
# (predicated asm stores, the opaque slab index, the epilogue templated on the part count):
# outputs bitwise equal to the build before (mlff-old), ncu of both, the wgmma-forced f32 tests.
# Usage (GPU machine, .gpu carried): bash benches/logs/session22/review_run.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
for x in water10k water100k; do for u in default wgmma; do
  MLFF_CUDA_UPDATE=$u ./mlff-old eval --device cuda --precision f32 $M $x.xyz /tmp/o.xyz > /dev/null 2>&1
  MLFF_CUDA_UPDATE=$u ./mlff eval --device cuda --precision f32 $M $x.xyz /tmp/n.xyz > /dev/null 2>&1
  cmp -s /tmp/o.xyz /tmp/n.xyz && echo "$x $u: bitwise equal" || echo "$x $u: DIFFERENT"
done; done
for v in mlff-old mlff; do
  echo "ncu $v water10k wgmma: $(MLFF_CUDA_UPDATE=wgmma timeout 120 /usr/local/cuda/bin/ncu --clock-control none -k regex:update_wgmma -c 3 --metrics gpu__time_duration.sum ./$v eval --device cuda --precision f32 $M water10k.xyz /tmp/n.xyz 2>&1 | grep -E "duration" | awk '{print $NF}' | tr '\n' ' ')"
done
MLFF_CUDA_UPDATE=wgmma timeout 200 ./cuda f32 --test-threads=2 > $OUT/tests_wgmma.log 2>&1; grep -E "test result|panicked" $OUT/tests_wgmma.log
date -u
