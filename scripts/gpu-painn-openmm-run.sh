#!/bin/bash
# One GPU call (from the repository root, after scripts/prepare-gpu-run.sh,
# scripts/prepare-openmm-gpu-run.sh, student_water_painn.pt copied into .gpu/, and with
# .gpu, .omm and .distill/wheels/common carried): CUDA tests (student + PaiNN + staged device inputs), the PaiNN
# benchmark next to schnetpack on the same GPU, the OpenMM CUDA pytest.
cd "$(dirname "$0")/.."
G=$PWD/.gpu
L=$(find / -name 'libnvrtc.so.13' -not -path '/proc/*' 2>/dev/null | head -1)
export MLFF_NVRTC_DIR=$(dirname "$L") MLFF_CACHE_DIR=/tmp/mlffcache MLFF_TEST_MODEL_DIR=$G/models MLFF_FIXTURES=$G/student_public_fixtures.json MLFF_PAINN_FIXTURES=$G/painn_fixtures.json
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; date -u
echo "=== cuda tests"
(cd $G && timeout 150 ./cuda --test-threads=2 --nocapture > "$OUT/tests.log" 2>&1); grep -E "^test |test result|panicked" "$OUT/tests.log"
echo "=== mlff PaiNN bench"
(cd $G && timeout 60 ./mlff-gpu-bench --model ../models/water-painn-sevennet0.safetensors --structures . --check --cases water192,water10k --out "$OUT/bench_painn_mlff.md" 2>&1 | tail -8)
(cd $G && timeout 60 ./mlff-gpu-bench --model ../models/water-painn-sevennet0.safetensors --structures . --cases water100k --out "$OUT/bench_painn_mlff_100k.md" 2>&1 | tail -5)
echo "=== schnetpack bench"
pip install --no-index --no-deps --target /tmp/spk .distill/wheels/common/*.whl >/dev/null 2>&1
(cd tools/reference && PYTHONPATH=/tmp/spk timeout 150 python3 bench_painn_torch.py $G/student_water_painn.pt --device cuda --cases water192,water10k,water100k --min-time 1.0 --max-reps 100 --json "$OUT/bench_painn_torch.json" 2>&1 | grep -v -i warn | tail -14)
echo "=== openmm"
MLFF_OMM_TESTS_ONLY=1 OUT=$OUT/omm timeout 200 bash .omm/run.sh 2>&1 | tail -25
