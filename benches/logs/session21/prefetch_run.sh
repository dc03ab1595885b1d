#!/bin/bash
# Session 21: update_backward_tiled with the late rows prefetched into L2 at its start and
# the block's input v formed last, against the pairs build (mlff-pairs) and 15059d1
# (mlff-old): outputs bitwise (every tiled variant, gates recomputed), all CUDA tests, ncu
# of the update kernels at water10k, the bench in the same call (three rounds).
# Usage (GPU machine, .gpu carried): bash benches/logs/session21/prefetch_run.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
for x in water3k water10k water100k; do
  for u in default tiled narrow wide10 recompute; do
    [ $x = water100k ] && [ $u != default ] && continue
    e="MLFF_CUDA_UPDATE=$u"; [ $u = recompute ] && e="MLFF_CUDA_RECOMPUTE_GATES_MIN_ATOMS=1"
    env $e ./mlff-old eval --device cuda --precision f32 $M $x.xyz /tmp/o.xyz > /dev/null 2>&1
    env $e ./mlff eval --device cuda --precision f32 $M $x.xyz /tmp/n.xyz > /dev/null 2>&1
    cmp -s /tmp/o.xyz /tmp/n.xyz && echo "$x $u: bitwise equal to 15059d1" || echo "$x $u: DIFFERENT from 15059d1"
  done
done
for m in student_tiny_77k student_ultra_tiny_21k; do
  ./mlff-old eval --device cuda --precision f32 models/$m.safetensors water10k.xyz /tmp/o.xyz > /dev/null 2>&1
  ./mlff eval --device cuda --precision f32 models/$m.safetensors water10k.xyz /tmp/n.xyz > /dev/null 2>&1
  cmp -s /tmp/o.xyz /tmp/n.xyz && echo "$m water10k: bitwise equal" || echo "$m water10k: DIFFERENT"
done
timeout 300 ./cuda --test-threads=2 > $OUT/cuda_tests.log 2>&1; grep -E "^test |test result|panicked" $OUT/cuda_tests.log | grep -v " ok$"
for v in mlff-pairs mlff; do
  echo "ncu $v:"; timeout 120 /usr/local/cuda/bin/ncu --clock-control none -k regex:update_backward -c 3 --metrics gpu__time_duration.sum ./$v eval --device cuda --precision f32 $M water10k.xyz /tmp/n.xyz 2>&1 | grep -E "duration" | awk '{print $NF}' | tr '\n' ' '; echo
done
b() { timeout 200 ./$1 --model $M --structures . --precision f32 --cases batch256x50,water10k,water100k --out $OUT/v.md 2>&1 | grep "^| [0-9mwb]" | cut -d'|' -f2,4 | tr '\n' ' '; echo; }
for r in 1 2 3; do echo "15059d1:  $(b mlff-gpu-bench-old)"; echo "pairs:    $(b mlff-gpu-bench-pairs)"; echo "prefetch: $(b mlff-gpu-bench)"; done
date -u
