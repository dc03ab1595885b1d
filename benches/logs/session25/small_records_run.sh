#!/bin/bash
# Prepared in session 25, not run (no device time left): message_update_cluster's staging
# records written by edge_order_positions (small_records.patch), against the build before
# it (mlff-old, mlff-gpu-bench-old) and against itself with MLFF_CUDA_SMALL_RECORDS=off:
# outputs bitwise (three students, f32 and mixed), the CUDA tests (also without
# clusters), ncu of a mol50 step, the bench in interleaved rounds.
# Usage: git apply benches/logs/session25/small_records.patch (after copying the current
# .gpu/mlff and mlff-gpu-bench to -old), scripts/prepare-gpu-run.sh, strip, then on the
# GPU machine (.gpu carried): bash benches/logs/session25/small_records_run.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
for m in student_427k student_tiny_77k student_ultra_tiny_21k; do
  for x in mol20 mol50 water192; do
    for p in f32 mixed; do
      ./mlff-old eval --device cuda --precision $p models/$m.safetensors $x.xyz /tmp/o.xyz > /dev/null 2>&1
      ./mlff eval --device cuda --precision $p models/$m.safetensors $x.xyz /tmp/n.xyz > /dev/null 2>&1
      cmp -s /tmp/o.xyz /tmp/n.xyz && echo "$m $x $p: bitwise equal to the previous build" || echo "$m $x $p: DIFFERENT from the previous build"
    done
  done
done
M=models/student_427k.safetensors
timeout 200 ./cuda --test-threads=2 > $OUT/cuda_tests.log 2>&1; grep -E "^test |test result|panicked" $OUT/cuda_tests.log | grep -v " ok$"
MLFF_CUDA_CLUSTER=off timeout 100 ./cuda f32 --skip painn --test-threads=2 > $OUT/tests_nocluster.log 2>&1; grep -E "test result|panicked" $OUT/tests_nocluster.log
MLFF_CUDA_SMALL_RECORDS=off timeout 100 ./cuda f32 --skip painn --test-threads=2 > $OUT/tests_gather.log 2>&1; grep -E "test result|panicked" $OUT/tests_gather.log
timeout 120 /usr/local/cuda/bin/ncu --clock-control none --launch-skip 100 --launch-count 40 --metrics gpu__time_duration.sum ./mlff-gpu-bench --model $M --structures . --precision f32 --cases mol50 --repeat 10 --out $OUT/t.md > $OUT/ncu_mol50.txt 2>&1
echo "ncu mol50: $(grep -E '^  [a-z_0-9]+.*\(|gpu__time_duration' $OUT/ncu_mol50.txt | awk '/\(/{name=$1} /duration/{printf "%s %s, ", name, $NF}' | cut -c1-1200)"
b() { timeout 100 env $2 ./$1 --model $M --structures . --precision f32 --cases mol50,water192 --out /tmp/v.md 2>&1 | grep "^| [0-9mwb]" | cut -d"|" -f2,4,5,6 | tr '\n' ' '; echo; }
for r in 1 2 3 4; do
  echo "previous: $(b mlff-gpu-bench-old)"; echo "new:      $(b mlff-gpu-bench)"; echo "new, off: $(b mlff-gpu-bench MLFF_CUDA_SMALL_RECORDS=off)"
done
date -u
