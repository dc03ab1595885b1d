#!/bin/bash
# Session 21: the tiled update kernels with lane pairs sharing their shared-memory addresses
# (ut_tile_origin) against 15059d1 (mlff-old, mlff-gpu-bench-old): outputs bitwise for every
# tiled variant, all CUDA tests, ncu of the update kernels at water10k, the bench in the
# same call (three rounds). Usage (GPU machine, .gpu carried): bash benches/logs/session21/pairs_run.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
for x in water3k water10k water100k; do
  for u in default tiled narrow wide10; do
    [ $x = water100k ] && [ $u != default ] && continue
    MLFF_CUDA_UPDATE=$u ./mlff-old eval --device cuda --precision f32 $M $x.xyz /tmp/o.xyz > /dev/null 2>&1
    MLFF_CUDA_UPDATE=$u ./mlff eval --device cuda --precision f32 $M $x.xyz /tmp/n.xyz > /dev/null 2>&1
    cmp -s /tmp/o.xyz /tmp/n.xyz && echo "$x $u: bitwise equal to 15059d1" || echo "$x $u: DIFFERENT from 15059d1"
  done
done
for m in student_tiny_77k student_ultra_tiny_21k; do
  ./mlff-old eval --device cuda --precision f32 models/$m.safetensors water10k.xyz /tmp/o.xyz > /dev/null 2>&1
  ./mlff eval --device cuda --precision f32 models/$m.safetensors water10k.xyz /tmp/n.xyz > /dev/null 2>&1
  cmp -s /tmp/o.xyz /tmp/n.xyz && echo "$m water10k: bitwise equal" || echo "$m water10k: DIFFERENT"
done
timeout 300 ./cuda --test-threads=2 > $OUT/cuda_tests.log 2>&1; grep -E "^test |test result|panicked" $OUT/cuda_tests.log | grep -v " ok$"
for v in mlff-old mlff; do
  echo "ncu $v:"; timeout 120 /usr/local/cuda/bin/ncu --clock-control none -k regex:update -c 6 --metrics gpu__time_duration.sum,l1tex__data_pipe_lsu_wavefronts_mem_shared.sum,smsp__issue_active.avg.pct_of_peak_sustained_active ./$v eval --device cuda --precision f32 $M water10k.xyz /tmp/n.xyz 2>&1 | grep -E "update|duration|wavefronts|issue_active" | awk '{print $1, $NF}' | paste - - - - | sed 's/(.*//'
done > $OUT/ncu.txt 2>&1; cat $OUT/ncu.txt
b() { timeout 200 ./$1 --model $M --structures . --precision f32 --cases batch256x50,water10k,water100k --out $OUT/v.md 2>&1 | grep "^| [0-9mwb]" | cut -d'|' -f2,4 | tr '\n' ' '; echo; }
for r in 1 2 3; do echo "15059d1: $(b mlff-gpu-bench-old)"; echo "pairs:   $(b mlff-gpu-bench)"; done
date -u
