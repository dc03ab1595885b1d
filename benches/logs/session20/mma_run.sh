#!/bin/bash
# Session 20: the tensor-core (3xTF32 mma.sync) update kernels, MLFF_CUDA_UPDATE=mma, against
# the default choice of the same build: force error against the CPU f64 engine (water10k),
# the f32 CUDA tests with mma forced, benchmarks in the same call, ncu of the update kernels.
# The build it measured is not on main: ut_product as 3xTF32 mma.sync (update_tiled_mma_f32 and
# update_backward_tiled_mma_f32, MLFF_CUDA_UPDATE=mma); see gpu_results.md, session 20.
# Usage (GPU machine, .gpu carried): bash benches/logs/session20/mma_run.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
NCU=/usr/local/cuda/bin/ncu
M=models/student_427k.safetensors
ev() { ./mlff eval "$@" > /dev/null 2>&1; }
ev --device cpu --precision f64 $M water10k.xyz /tmp/ref.xyz
ev --device cuda --precision f32 $M water10k.xyz /tmp/def.xyz
MLFF_CUDA_UPDATE=mma ev --device cuda --precision f32 $M water10k.xyz /tmp/mma.xyz
MLFF_CUDA_UPDATE=mma ev --device cuda --precision f32 $M water10k.xyz /tmp/mma2.xyz
python3 xyzerr.py /tmp/def.xyz /tmp/ref.xyz "default f32 vs cpu f64"
python3 xyzerr.py /tmp/mma.xyz /tmp/ref.xyz "mma f32 vs cpu f64"
cmp -s /tmp/mma.xyz /tmp/mma2.xyz && echo "mma: two calls bitwise equal" || echo "mma: two calls DIFFER"
MLFF_CUDA_UPDATE=mma timeout 150 ./cuda f32_large repeated forces_into --test-threads=2 --nocapture > $OUT/tests_mma.log 2>&1; grep -E "^test |test result|panicked|relative" $OUT/tests_mma.log | head -20
b() { timeout 200 ./mlff-gpu-bench --model $M --structures . --precision f32 --cases ${CASES:-batch256x50,water10k,water100k} --out $OUT/v.md 2>&1 | grep "^| [0-9mwb]" | cut -d'|' -f2,4 | tr '\n' ' '; echo; }
for r in 1 2; do echo "default: $(b)"; echo "mma:     $(MLFF_CUDA_UPDATE=mma b)"; done
K="update"
for v in default mma; do echo "ncu $v: $(MLFF_CUDA_UPDATE=$v timeout 100 $NCU --clock-control none --kernel-name regex:"$K" --metrics gpu__time_duration.sum ./mlff eval --device cuda --precision f32 $M water10k.xyz /tmp/n.xyz 2>&1 | grep -E "^  [a-z_0-9]+|gpu__time" | paste - - | awk '{print $1, $(NF)}' | sed 's/_f32//' | tr '\n' ' ')"; done
date -u
