#!/bin/bash
# GPU machine, from a checkout with .gpu laid out by scripts/prepare-gpu-run.sh (carried): the
# CUDA tests (also with the polynomial filter kernels forced on every size, with their channel
# groups in parallel and in sequence; the >4096-atom test, which those settings do not change,
# only once), the student benchmarks in f32, mixed and f64, and the
# PyTorch reference (compile + CUDA graph) in one call on one card. Produced
# benches/RESULTS.md, GPU section.
source "$(dirname "$0")/gpu-env.sh"
timeout 150 ./cuda --test-threads=2 --nocapture > "$OUT/tests.log" 2>&1; grep -E "^test |test result|panicked" "$OUT/tests.log" | grep -v " ok$"
MLFF_CUDA_POLY_MIN_ATOMS=1 timeout 100 ./cuda --skip painn --skip f32_large_system --test-threads=2 --nocapture > "$OUT/tests_poly.log" 2>&1; grep -E "test result|panicked" "$OUT/tests_poly.log"
MLFF_CUDA_POLY_MIN_ATOMS=1 MLFF_CUDA_SEQUENCE_MIN_PAIRS=0 timeout 100 ./cuda --skip painn --skip f32_large_system --test-threads=2 --nocapture > "$OUT/tests_sequence.log" 2>&1; grep -E "test result|panicked" "$OUT/tests_sequence.log"
date -u
for p in f32 mixed f64; do timeout 90 ./mlff-gpu-bench --model models/student_427k.safetensors --structures . --precision $p --check --cases mol50,batch256x50,water10k,water100k --out $OUT/bench_$p.md 2>&1 | grep "^| [mw2]"; done
date -u
(cd ../tools/reference && timeout 220 python3 bench_torch.py ../../.gpu/models/student_427k.safetensors --device cuda --variants compile+cudagraph --cases mol50,batch256x50,water10k,water100k --min-time 1 --budget 190 --markdown $OUT/torch.md --json $OUT/torch.json > $OUT/torch.log 2>&1); grep -v -i warn $OUT/torch.log | tail -8
date -u
cd $OUT && tar czf logs.tgz *.log *.md *.json && rm -f *.log
