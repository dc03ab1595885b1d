#!/bin/bash
# GPU machine, from a checkout with .gpu (scripts/prepare-gpu-run.sh, plus student_water_painn.pt
# copied into .gpu) and .distill/wheels/common carried: the PaiNN CUDA tests, a PaiNN
# stage profile, the PaiNN benchmark of the shipped model and schnetpack's on the same GPU.
# This produced benches/RESULTS.md, "PaiNN on the GPU".
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/mlff-out}; mkdir -p "$OUT"
G=$PWD/.gpu
export MLFF_NVRTC_DIR=$(dirname $(find / -name 'libnvrtc.so.13' -not -path '/proc/*' 2>/dev/null | head -1)) MLFF_CACHE_DIR=/tmp/mlffcache
export MLFF_TEST_MODEL_DIR=$G/models MLFF_FIXTURES=$G/student_public_fixtures.json MLFF_PAINN_FIXTURES=$G/painn_fixtures.json
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; date -u
(cd $G && timeout 200 ./cuda painn --test-threads=2 --nocapture > $OUT/tests.log 2>&1); grep -E "^test |test result" $OUT/tests.log | grep -v " ok$"; grep -E "^worst" $OUT/tests.log
echo "=== painn profile"
(cd $G && MLFF_CUDA_PROFILE=1 timeout 100 ./mlff-gpu-bench --model ../models/water-painn-sevennet0.safetensors --structures . --cases water10k --repeat 5 2>&1 | grep -A30 "profile")
echo "=== painn bench"
(cd $G && timeout 100 ./mlff-gpu-bench --model ../models/water-painn-sevennet0.safetensors --structures . --check --cases water192,water10k,water100k --out $OUT/bench_painn_mlff.md 2>&1 | tail -5)
echo "=== schnetpack bench"
pip install --no-index --no-deps --target /tmp/spk .distill/wheels/common/*.whl >/dev/null 2>&1
(cd tools/reference && PYTHONPATH=/tmp/spk timeout 150 python3 bench_painn_torch.py $G/student_water_painn.pt --device cuda --cases water192,water10k --min-time 0.5 --max-reps 30 --json "$OUT/bench_painn_torch.json" 2>&1 | grep -v -i warn | tail -8)
echo "=== student f32 / mixed (same call: benches/RESULTS.md, Mixed precision)"
for p in f32 mixed; do (cd $G && timeout 120 ./mlff-gpu-bench --model models/student_427k.safetensors --structures . --precision $p --check --cases mol50,batch256x50,water10k,water100k --out $OUT/bench_student_$p.md 2>&1 | tail -6); done
date -u
