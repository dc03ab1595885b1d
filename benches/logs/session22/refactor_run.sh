#!/bin/bash
# Session 22: after `update`'s launch paths became one (kernels.rs): outputs bitwise equal to
# the build before (mlff-old) by default and with the tensor-core kernel, then all CUDA tests
# and the wgmma-forced f32 tests. Usage (GPU machine, .gpu carried): bash benches/logs/session22/refactor_run.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
for x in mol50 water192 water3k water10k; do for u in default wgmma; do
  [ $u = wgmma ] && [ $x != water10k ] && continue
  MLFF_CUDA_UPDATE=$u ./mlff-old eval --device cuda --precision f32 $M $x.xyz /tmp/o.xyz > /dev/null 2>&1
  MLFF_CUDA_UPDATE=$u ./mlff eval --device cuda --precision f32 $M $x.xyz /tmp/n.xyz > /dev/null 2>&1
  cmp -s /tmp/o.xyz /tmp/n.xyz && echo "$x $u: bitwise equal" || echo "$x $u: DIFFERENT"
done; done
timeout 300 ./cuda --test-threads=2 > $OUT/cuda_tests.log 2>&1; grep -E "^test |test result|panicked" $OUT/cuda_tests.log | grep -v " ok$"
MLFF_CUDA_UPDATE=wgmma timeout 200 ./cuda f32 --test-threads=2 > $OUT/tests_wgmma.log 2>&1; grep -E "test result|panicked" $OUT/tests_wgmma.log
date -u
