#!/bin/bash
# Session 21: the tiled update kernels' last loops load UT_EPILOGUE_ATOMS / UTB_EPILOGUE_ATOMS
# atoms' rows before their stores (default 2; 1 = one atom at a time, the s'' / g_s' stores
# first) against a57d685 (mlff-old): outputs bitwise, CUDA tests, ncu of the update kernels
# at water10k, the bench in the same call (two rounds).
# Usage (GPU machine, .gpu carried): bash benches/logs/session21/epilogue_run.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
for x in water3k water10k water100k; do
  for u in default tiled narrow recompute; do
    [ $x = water100k ] && [ $u != default ] && continue
    e="MLFF_CUDA_UPDATE=$u"; [ $u = recompute ] && e="MLFF_CUDA_RECOMPUTE_GATES_MIN_ATOMS=1"
    env $e ./mlff-old eval --device cuda --precision f32 $M $x.xyz /tmp/o.xyz > /dev/null 2>&1
    env $e ./mlff eval --device cuda --precision f32 $M $x.xyz /tmp/n.xyz > /dev/null 2>&1
    cmp -s /tmp/o.xyz /tmp/n.xyz && echo "$x $u: bitwise equal to a57d685" || echo "$x $u: DIFFERENT from a57d685"
  done
done
timeout 200 ./cuda --test-threads=2 > $OUT/cuda_tests.log 2>&1; grep -E "^test |test result|panicked" $OUT/cuda_tests.log | grep -v " ok$"
n() { timeout 60 /usr/local/cuda/bin/ncu --clock-control none -k regex:update -c 6 --metrics gpu__time_duration.sum "$@" eval --device cuda --precision f32 $M water10k.xyz /tmp/n.xyz 2>&1 | grep -E "duration" | awk '{print $NF}' | tr '\n' ' '; }
echo "ncu a57d685: $(n ./mlff-old)"
echo "ncu E=2:     $(n ./mlff)"
echo "ncu E=1:     $(MLFF_CUDA_DEFINES='-DUT_EPILOGUE_ATOMS=1 -DUTB_EPILOGUE_ATOMS=1' n ./mlff)"
b() { timeout 100 ./$1 --model $M --structures . --precision f32 --cases batch256x50,water10k,water100k --out $OUT/v.md 2>&1 | grep "^| [0-9mwb]" | cut -d'|' -f2,4 | tr '\n' ' '; echo; }
for r in 1 2; do echo "a57d685: $(b mlff-gpu-bench-old)"; echo "E=2:     $(b mlff-gpu-bench)"; done
date -u
