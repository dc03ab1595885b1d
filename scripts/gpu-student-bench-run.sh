#!/bin/bash
# GPU machine, from a checkout with .gpu laid out by scripts/prepare-gpu-run.sh (carried): the
# CUDA tests (also with the polynomial filter kernels forced on every size), the student
# benchmarks in f32, mixed and f64, the f32 table kernels, and the PyTorch reference
# (compile + CUDA graph) in one call on one card. Produced benches/RESULTS.md, GPU section.
cd "$(dirname "$0")/../.gpu"
L=$(find / -name 'libnvrtc.so.13' -not -path '/proc/*' 2>/dev/null | head -1)
export MLFF_NVRTC_DIR=$(dirname "$L") MLFF_CACHE_DIR=/tmp/mlffcache MLFF_TEST_MODEL_DIR=$PWD/models MLFF_FIXTURES=$PWD/student_public_fixtures.json MLFF_PAINN_FIXTURES=$PWD/painn_fixtures.json
OUT=${OUT:-/tmp/mlff-out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; date -u
timeout 150 ./cuda --test-threads=2 --nocapture > "$OUT/tests.log" 2>&1; grep -E "^test |test result|panicked" "$OUT/tests.log" | grep -v " ok$"
MLFF_CUDA_POLY_MIN_ATOMS=1 timeout 100 ./cuda --skip painn --test-threads=2 --nocapture > "$OUT/tests_poly.log" 2>&1; grep -E "test result|panicked" "$OUT/tests_poly.log"
date -u
for p in f32 mixed f64; do timeout 90 ./mlff-gpu-bench --model models/student_427k.safetensors --structures . --precision $p --check --cases mol50,batch256x50,water10k,water100k --out $OUT/bench_$p.md 2>&1 | grep "^| [mw2]"; done
MLFF_CUDA_FILTER=table timeout 60 ./mlff-gpu-bench --model models/student_427k.safetensors --structures . --precision f32 --cases water10k,water100k --out $OUT/bench_f32_table.md 2>&1 | grep "^| w"
date -u
(cd ../tools/reference && timeout 260 python3 bench_torch.py ../../.gpu/models/student_427k.safetensors --device cuda --variants compile+cudagraph --cases mol50,batch256x50,water10k,water100k --min-time 1 --budget 230 --markdown $OUT/torch.md --json $OUT/torch.json > $OUT/torch.log 2>&1); grep -v -i warn $OUT/torch.log | tail -8
date -u
cd $OUT && tar czf logs.tgz *.log *.md *.json && rm -f *.log
