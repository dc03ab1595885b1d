#!/bin/bash
# Session 26, third call: the merged walk in the message kernels only (2 atoms per warp;
# edge_backward and pair_backward as before), the merged order from one block per group
# with the group's keys staged once (own rank by compares within the atom, the other
# atom's keys before it by binary search), against the build before the session
# (mlff-old) and with MLFF_CUDA_MERGE=off; the tiled path for large groups forced with
# -DEDGE_ORDER_GROUP_EDGES=64.
# Usage (GPU machine, .gpu carried): bash benches/logs/session26/merge3_run.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
for v in X=1 MLFF_CUDA_DEFINES=-DEDGE_ORDER_GROUP_EDGES=64; do
for m in student_427k student_tiny_77k student_ultra_tiny_21k; do
  for x in water192 water3k water10k; do
    for p in f32 mixed; do
      [ $m != student_427k ] && [ $x = water10k ] && continue
      ./mlff-old eval --device cuda --precision $p models/$m.safetensors $x.xyz /tmp/o.xyz > /dev/null 2>&1
      env $v ./mlff eval --device cuda --precision $p models/$m.safetensors $x.xyz /tmp/n.xyz > /dev/null 2>&1
      cmp -s /tmp/o.xyz /tmp/n.xyz && echo "$v $m $x $p: equal" || echo "$v $m $x $p: DIFFERENT"
    done
  done
done
done | tr '\n' ';'; echo
timeout 200 ./cuda --test-threads=2 > $OUT/cuda_tests.log 2>&1; grep -E "^test |test result|panicked" $OUT/cuda_tests.log | grep -v " ok$"
MLFF_CUDA_POLY_MIN_ATOMS=1 timeout 80 ./cuda --skip painn --skip f32_large_system --skip out_of_memory --test-threads=2 > $OUT/tests_poly.log 2>&1; grep -E "test result|panicked" $OUT/tests_poly.log
MLFF_CUDA_DEFINES=-DEDGE_ORDER_GROUP_EDGES=64 MLFF_CUDA_POLY_MIN_ATOMS=1 timeout 80 ./cuda --skip painn --skip f32_large_system --skip out_of_memory --test-threads=2 > $OUT/tests_tiled.log 2>&1; grep -E "test result|panicked" $OUT/tests_tiled.log
k() { timeout 100 env $2 /usr/local/cuda/bin/ncu --clock-control none --kernel-name regex:"edge_order|message_poly" --launch-skip 8 --launch-count 4 --metrics gpu__time_duration.sum ./mlff-gpu-bench --model $M --structures . --precision f32 --cases $1 --repeat 3 --out /tmp/t.md 2>/dev/null | grep -E '^  [a-z_0-9]+.*\(|gpu__time_duration' | awk '/\(/{name=$1} /duration/{printf "%s %s, ", name, $NF}'; echo; }
echo "ncu 10k new:  $(k water10k X=1)"
echo "ncu 10k off:  $(k water10k MLFF_CUDA_MERGE=off)"
echo "ncu 100k new: $(k water100k X=1)"
echo "ncu batch new: $(k batch256x50 X=1)"
b() { timeout 150 env $2 ./$1 --model $M --structures . --precision f32 --cases $3 --out /tmp/v.md 2>&1 | grep "^| [0-9mwb]" | cut -d"|" -f2,4 | tr '\n' ' '; echo; }
for r in 1 2 3; do
  echo "old: $(b mlff-gpu-bench-old X=1 water3k,water10k,batch256x50,water100k)"
  echo "new: $(b mlff-gpu-bench X=1 water3k,water10k,batch256x50,water100k)"
  echo "off: $(b mlff-gpu-bench MLFF_CUDA_MERGE=off water3k,water10k,batch256x50,water100k)"
done
date -u
