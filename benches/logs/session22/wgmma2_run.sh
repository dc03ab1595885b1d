#!/bin/bash
# Session 22, second version of update_wgmma.cu (a ring of slab buffers, the MMAs of slab
# i overlapping the retirement of slab i - 1, unrolled): force error against the CPU f64
# engine, ncu of the update kernels at water10k and water100k, the bench in the same call.
# Usage (GPU machine, .gpu carried): bash benches/logs/session22/wgmma2_run.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
timeout 120 ./mlff eval --device cpu --precision f64 $M water10k.xyz /tmp/cpu_water10k.xyz > /dev/null 2>&1 || echo "cpu failed"
for u in default wgmma; do
  MLFF_CUDA_UPDATE=$u timeout 60 ./mlff eval --device cuda --precision f32 $M water10k.xyz /tmp/g.xyz > /tmp/eval.log 2>&1 || { echo "$u: eval failed"; tail -3 /tmp/eval.log; continue; }
  python3 xyzerr.py /tmp/g.xyz /tmp/cpu_water10k.xyz "water10k $u"
done
for x in water10k water100k; do for u in default wgmma; do
  echo "ncu $x $u: $(MLFF_CUDA_UPDATE=$u timeout 120 /usr/local/cuda/bin/ncu --clock-control none -k regex:'update_(tiled|wgmma)' -c 3 --metrics gpu__time_duration.sum ./mlff eval --device cuda --precision f32 $M $x.xyz /tmp/n.xyz 2>&1 | grep -E "duration" | awk '{print $NF}' | tr '\n' ' ')"
done; done
b() { MLFF_CUDA_UPDATE=$1 timeout 200 ./mlff-gpu-bench --model $M --structures . --precision f32 --cases batch256x50,water10k,water100k --out $OUT/v.md 2>&1 | grep "^| [0-9mwb]" | cut -d"|" -f2,4 | tr "\n" " "; echo; }
for r in 1 2; do echo "default: $(b default)"; echo "wgmma:   $(b wgmma)"; done
date -u
# (third run: the f32 CUDA tests with the kernel forced)
[ -n "$TESTS" ] && { MLFF_CUDA_UPDATE=wgmma timeout 200 ./cuda f32 --test-threads=2 > $OUT/tests_wgmma.log 2>&1; grep -E "^test |test result|panicked" $OUT/tests_wgmma.log | grep -v " ok$"; }
