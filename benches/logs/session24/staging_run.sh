#!/bin/bash
# Session 24: the positions staged with one bulk copy and then the skin check (instead of
# row copies interleaved with the check), with the one-launch reduction, against 6766039
# (mlff-gpu-bench-old): the staging loops alone on this machine's CPU (stagebench, ordinary
# memory: the loop as before, copy + check, each part alone), MLFF_CUDA_TIMING of both
# builds (medians per call), then the bench in the same call (three rounds).
# Usage (GPU machine, .gpu carried): bash benches/logs/session24/staging_run.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
./stagebench
for r in 1 2; do for c in water10k water100k; do for b in mlff-gpu-bench-old mlff-gpu-bench; do
  echo "== $b $c: $(MLFF_CUDA_TIMING=1 timeout 120 ./$b --model $M --structures . --precision f32 --cases $c --out /tmp/b.md 2>&1 | grep -E "^\| [0-9mwb]|  (host|GPU)" | sed -E 's/^\| ([^|]*)\| [0-9]+ \| ([0-9.]+) .*/median \2/; s/  +/ /g' | tr '\n' ';')"
done; done; done
for x in water10k water100k; do
  ./mlff-old eval --device cuda --precision f32 $M $x.xyz /tmp/o.xyz > /dev/null 2>&1
  ./mlff eval --device cuda --precision f32 $M $x.xyz /tmp/n.xyz > /dev/null 2>&1
  cmp -s /tmp/o.xyz /tmp/n.xyz && echo "$x: bitwise equal to 6766039" || echo "$x: DIFFERENT from 6766039"
done
timeout 200 ./cuda reused repeated --test-threads=2 2>&1 | grep -E "test result|panicked"
b() { timeout 200 env $2 ./$1 --model $M --structures . --precision f32 --cases mol50,batch256x50,water10k,water100k --out $OUT/v.md 2>&1 | grep "^| [0-9mwb]" | cut -d"|" -f2,4,10 | tr '\n' ' '; echo; }
for r in 1 2 3; do echo "6766039: $(b mlff-gpu-bench-old)"; echo "new:     $(b mlff-gpu-bench)"; done
date -u
