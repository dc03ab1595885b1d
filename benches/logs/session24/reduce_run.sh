#!/bin/bash
# Session 24: reduce_partial sums its rows in its last block (one launch instead of
# reduce_partial + reduce_final), against 6766039 (mlff-old, mlff-gpu-bench-old): outputs
# bitwise (f32 and f64, also in sequence and with the polynomial kernels on every size),
# the CUDA tests, ncu of the reduction, the bench (three rounds); then host_copy.py.
# Usage (GPU machine, .gpu carried): bash benches/logs/session24/reduce_run.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
python3 ../benches/logs/session24/host_copy.py 10002 100002 2>&1
for x in water3k water10k water100k; do
  for env in "" "MLFF_CUDA_POLY_MIN_ATOMS=1" "MLFF_CUDA_SEQUENCE_MIN_PAIRS=0"; do
    [ -n "$env" ] && [ $x = water100k ] && continue
    env $env ./mlff-old eval --device cuda --precision f32 $M $x.xyz /tmp/o.xyz > /dev/null 2>&1
    env $env ./mlff eval --device cuda --precision f32 $M $x.xyz /tmp/n.xyz > /dev/null 2>&1
    cmp -s /tmp/o.xyz /tmp/n.xyz && echo "$x $env: bitwise equal to 6766039" || echo "$x $env: DIFFERENT from 6766039"
  done
done
./mlff-old eval --device cuda --precision f64 $M water10k.xyz /tmp/o.xyz > /dev/null 2>&1
./mlff eval --device cuda --precision f64 $M water10k.xyz /tmp/n.xyz > /dev/null 2>&1
cmp -s /tmp/o.xyz /tmp/n.xyz && echo "water10k f64: bitwise equal" || echo "water10k f64: DIFFERENT"
timeout 300 ./cuda --test-threads=2 > $OUT/cuda_tests.log 2>&1; grep -E "^test |test result|panicked" $OUT/cuda_tests.log | grep -v " ok$"
timeout 120 /usr/local/cuda/bin/ncu --clock-control none --launch-skip 60 --launch-count 30 --kernel-name regex:reduce --metrics gpu__time_duration.sum ./mlff-gpu-bench --model $M --structures . --precision f32 --cases water10k,water100k --repeat 3 --out $OUT/t.md > $OUT/ncu_reduce.txt 2>&1
echo "reduce: $(grep -E '^  [a-z_0-9]+.*\(|gpu__time_duration' $OUT/ncu_reduce.txt | awk '/\(/{name=$1} /duration/{printf "%s %s, ", name, $NF}')"
b() { timeout 200 env $2 ./$1 --model $M --structures . --precision f32 --cases mol50,batch256x50,water10k,water100k --out $OUT/v.md 2>&1 | grep "^| [0-9mwb]" | cut -d"|" -f2,4,10 | tr '\n' ' '; echo; }
for r in 1 2 3; do echo "6766039: $(b mlff-gpu-bench-old)"; echo "new:     $(b mlff-gpu-bench)"; done
date -u
