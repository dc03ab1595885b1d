#!/bin/bash
# Prepared in session 26 for the next call (no device time was left): (1) the commit that
# allocates the merged records only for systems that take the merged walk (0f43f2a, host
# only, not yet run on a GPU): the CUDA tests, default and with the walk forced on every
# size, and a system growing across the threshold (water10k forced to merge after a
# smaller one); (2) the merged message kernels at 768 threads (they spill 12 bytes at 896)
# against 896, ncu and bench.
# Usage (GPU machine, .gpu carried, mlff-old = the build before 0f43f2a):
#   bash benches/logs/session26/next_run.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
for x in water3k water10k; do
  ./mlff-old eval --device cuda --precision f32 $M $x.xyz /tmp/o.xyz > /dev/null 2>&1
  MLFF_CUDA_MERGE_MIN_ATOMS=0 ./mlff eval --device cuda --precision f32 $M $x.xyz /tmp/n.xyz > /dev/null 2>&1
  cmp -s /tmp/o.xyz /tmp/n.xyz && echo "$x merged: equal" || echo "$x merged: DIFFERENT"
done
timeout 150 ./cuda --test-threads=2 > $OUT/cuda_tests.log 2>&1; grep -E "^test |test result|panicked" $OUT/cuda_tests.log | grep -v " ok$"
MLFF_CUDA_POLY_MIN_ATOMS=1 MLFF_CUDA_MERGE_MIN_ATOMS=0 timeout 60 ./cuda --skip painn --skip f32_large_system --skip out_of_memory --test-threads=2 > $OUT/tests_merge.log 2>&1; grep -E "test result|panicked" $OUT/tests_merge.log
k() { timeout 60 env $2 /usr/local/cuda/bin/ncu --clock-control none --kernel-name regex:"message_poly|pair_backward" --launch-skip 8 --launch-count 4 --metrics gpu__time_duration.sum ./mlff-gpu-bench --model $M --structures . --precision f32 --cases $1 --repeat 3 --out /tmp/t.md 2>/dev/null | grep -E '^  [a-z_0-9]+.*\(|gpu__time_duration' | awk '/\(/{name=$1} /duration/{printf "%s %s, ", name, $NF}'; echo; }
echo "ncu 100k 896: $(k water100k X=1)"
echo "ncu 100k 768: $(k water100k MLFF_CUDA_MESSAGE_THREADS=768)"
b() { timeout 100 env $2 ./mlff-gpu-bench --model $M --structures . --precision f32 --cases $1 --out /tmp/v.md 2>&1 | grep "^| [0-9mwb]" | cut -d"|" -f2,4 | tr '\n' ' '; echo; }
for r in 1 2; do
  echo "896: $(b water100k X=1)"
  echo "768: $(b water100k MLFF_CUDA_MESSAGE_THREADS=768)"
done
date -u
