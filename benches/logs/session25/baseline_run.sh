#!/bin/bash
# Session 25, first call on the machine now lent (an H200): the benchmark table with
# PyTorch in the same call, two more bench rounds, 1M atoms with the host spans, ncu of a
# water10k step and of a mol50 step (every kernel), then the CUDA tests.
# Usage (GPU machine, .gpu carried): bash benches/logs/session25/baseline_run.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem,memory.total --format=csv
cd .. && SKIP_TESTS=1 bash scripts/gpu-student-bench-run.sh 2>&1 | grep -v -E "warning: model defect|^evaluated"
cd .gpu
b() { timeout 200 env $2 ./$1 --model $M --structures . --precision f32 --cases mol50,batch256x50,water10k,water100k --out /tmp/v.md 2>&1 | grep "^| [0-9mwb]" | cut -d"|" -f2,4,10 | tr '\n' ' '; echo; }
for r in 1 2; do echo "bench: $(b mlff-gpu-bench)"; done
MLFF_CUDA_TIMING=1 timeout 150 ./mlff-gpu-bench --model $M --structures . --precision f32 --cases water1m --repeat 25 --out $OUT/bench_water1m.md 2>&1 | grep -E "^\| w|host|GPU"
timeout 120 /usr/local/cuda/bin/ncu --clock-control none --launch-skip 60 --launch-count 30 --metrics gpu__time_duration.sum ./mlff-gpu-bench --model $M --structures . --precision f32 --cases water10k --repeat 3 --out $OUT/t.md > $OUT/ncu_10k.txt 2>&1
echo "ncu 10k: $(grep -E '^  [a-z_0-9]+.*\(|gpu__time_duration' $OUT/ncu_10k.txt | awk '/\(/{name=$1} /duration/{printf "%s %s, ", name, $NF}')"
timeout 120 /usr/local/cuda/bin/ncu --clock-control none --launch-skip 100 --launch-count 40 --metrics gpu__time_duration.sum ./mlff-gpu-bench --model $M --structures . --precision f32 --cases mol50 --repeat 10 --out $OUT/t.md > $OUT/ncu_mol50.txt 2>&1
echo "ncu mol50: $(grep -E '^  [a-z_0-9]+.*\(|gpu__time_duration' $OUT/ncu_mol50.txt | awk '/\(/{name=$1} /duration/{printf "%s %s, ", name, $NF}')"
MLFF_CUDA_TIMING=1 timeout 60 ./mlff-gpu-bench --model $M --structures . --precision f32 --cases mol50 --out $OUT/t.md 2>&1 | grep -E "host|GPU" | head -20
timeout 200 ./cuda --test-threads=2 > $OUT/cuda_tests.log 2>&1; grep -E "^test |test result|panicked" $OUT/cuda_tests.log | grep -v " ok$"
date -u
