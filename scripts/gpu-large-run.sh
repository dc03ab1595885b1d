#!/bin/bash
# GPU machine, from a checkout with .gpu laid out by scripts/prepare-gpu-run.sh (carried):
# the CUDA tests (also with the polynomial kernels forced on every size and their channel
# groups run in sequence), then the large water boxes in f32 with the atoms sorted
# spatially (default) and in the caller's order (MLFF_CUDA_SORT=off): time per step and
# peak device memory. Usage: bash scripts/gpu-large-run.sh [CASES] (default water100k,water1m).
cases=${1:-water100k,water1m}
cd "$(dirname "$0")/../.gpu"
L=$(find / -name 'libnvrtc.so.13' -not -path '/proc/*' 2>/dev/null | head -1)
export MLFF_NVRTC_DIR=$(dirname "$L") MLFF_CACHE_DIR=/tmp/mlffcache MLFF_TEST_MODEL_DIR=$PWD/models MLFF_FIXTURES=$PWD/student_public_fixtures.json MLFF_PAINN_FIXTURES=$PWD/painn_fixtures.json
OUT=${OUT:-/tmp/mlff-out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; date -u
timeout 150 ./cuda --test-threads=2 --nocapture > "$OUT/tests.log" 2>&1; grep -E "^test |test result|panicked" "$OUT/tests.log" | grep -v " ok$"
MLFF_CUDA_POLY_MIN_ATOMS=1 MLFF_CUDA_SEQUENCE_MIN_PAIRS=0 timeout 100 ./cuda --skip painn --test-threads=2 --nocapture > "$OUT/tests_sequence.log" 2>&1; grep -E "test result|panicked" "$OUT/tests_sequence.log"
date -u
for sort in on off; do
  for p in f32 mixed; do
    MLFF_CUDA_SORT=$sort timeout 150 ./mlff-gpu-bench --model models/student_427k.safetensors --structures . --precision $p --repeat 5 --cases "$cases" --out "$OUT/large_${p}_sort_$sort.md" 2>&1 | grep "^| w" | sed "s/^/$p sort=$sort /"
  done
done
date -u
cd "$OUT" && tar czf logs.tgz *.log *.md && rm -f *.log
