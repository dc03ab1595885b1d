#!/bin/bash
# Session 26, last call: the kept build (the message kernels' merged walk from 50k atoms;
# the merged order with the record formed once and groups of up to 512 edges staged)
# checked against the build before the session (mlff-old) bitwise, its tests with the
# merged walk forced on every size, ncu of the order kernel, old vs new at 10k (merge
# forced) and 100k, then the benchmark table with PyTorch in the same call.
# Usage (GPU machine, .gpu carried): bash benches/logs/session26/final_run.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
for v in MLFF_CUDA_MERGE_MIN_ATOMS=0 'MLFF_CUDA_MERGE_MIN_ATOMS=0 MLFF_CUDA_DEFINES=-DEDGE_ORDER_GROUP_EDGES=64'; do
  for x in water3k water10k; do
    for p in f32 mixed; do
      ./mlff-old eval --device cuda --precision $p $M $x.xyz /tmp/o.xyz > /dev/null 2>&1
      env $v ./mlff eval --device cuda --precision $p $M $x.xyz /tmp/n.xyz > /dev/null 2>&1
      cmp -s /tmp/o.xyz /tmp/n.xyz && echo "$v $x $p: equal" || echo "$v $x $p: DIFFERENT"
    done
  done
done | tr '\n' ';'; echo
timeout 100 ./cuda --test-threads=2 > $OUT/cuda_tests.log 2>&1; grep -E "^test |test result|panicked" $OUT/cuda_tests.log | grep -v " ok$"
MLFF_CUDA_POLY_MIN_ATOMS=1 MLFF_CUDA_MERGE_MIN_ATOMS=0 timeout 60 ./cuda --skip painn --skip f32_large_system --skip out_of_memory --test-threads=2 > $OUT/tests_merge.log 2>&1; grep -E "test result|panicked" $OUT/tests_merge.log
k() { timeout 60 env $2 /usr/local/cuda/bin/ncu --clock-control none --kernel-name regex:"edge_order|message_poly" --launch-skip 8 --launch-count 4 --metrics gpu__time_duration.sum ./mlff-gpu-bench --model $M --structures . --precision f32 --cases $1 --repeat 3 --out /tmp/t.md 2>/dev/null | grep -E '^  [a-z_0-9]+.*\(|gpu__time_duration' | awk '/\(/{name=$1} /duration/{printf "%s %s, ", name, $NF}'; echo; }
echo "ncu 10k merged: $(k water10k MLFF_CUDA_MERGE_MIN_ATOMS=0)"
echo "ncu 100k:       $(k water100k X=1)"
b() { timeout 100 env $2 ./$1 --model $M --structures . --precision f32 --cases $3 --out /tmp/v.md 2>&1 | grep "^| [0-9mwb]" | cut -d"|" -f2,4 | tr '\n' ' '; echo; }
for r in 1 2; do
  echo "old:            $(b mlff-gpu-bench-old X=1 water10k,water100k)"
  echo "new:            $(b mlff-gpu-bench X=1 water10k,water100k)"
  echo "new, 10k merged: $(b mlff-gpu-bench MLFF_CUDA_MERGE_MIN_ATOMS=0 water10k)"
done
date -u
cd .. && SKIP_TESTS=1 bash scripts/gpu-student-bench-run.sh 2>&1 | grep -v -E "warning: model defect|^evaluated"
date -u
