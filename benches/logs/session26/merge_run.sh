#!/bin/bash
# Session 26, first call: (1) session 25's staging records for the fused molecule kernels
# (small_records.patch, MLFF_CUDA_SMALL_RECORDS=off to compare) and (2) the merged walk of
# the polynomial message kernels (groups of POLY_MERGE atoms per warp, MLFF_CUDA_MERGE=off
# to compare, -DPOLY_MERGE=2 through MLFF_CUDA_DEFINES), against the build before both
# (mlff-old, mlff-gpu-bench-old): outputs bitwise, the CUDA tests, ncu, the bench in
# interleaved rounds.
# Usage (GPU machine, .gpu carried): bash benches/logs/session26/merge_run.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
for m in student_427k student_tiny_77k student_ultra_tiny_21k; do
  for x in mol20 mol50 water192 water3k water10k; do
    for p in f32 mixed; do
      [ $m != student_427k ] && [ $x = water10k ] && continue
      ./mlff-old eval --device cuda --precision $p models/$m.safetensors $x.xyz /tmp/o.xyz > /dev/null 2>&1
      ./mlff eval --device cuda --precision $p models/$m.safetensors $x.xyz /tmp/n.xyz > /dev/null 2>&1
      r="$m $x $p:"
      cmp -s /tmp/o.xyz /tmp/n.xyz && r="$r equal" || r="$r DIFFERENT"
      if [ $p = f32 ] && [ $m = student_427k ] && [ $x = water10k ]; then
        MLFF_CUDA_DEFINES=-DPOLY_MERGE=2 ./mlff eval --device cuda --precision $p models/$m.safetensors $x.xyz /tmp/n2.xyz > /dev/null 2>&1
        cmp -s /tmp/o.xyz /tmp/n2.xyz && r="$r, G=2 equal" || r="$r, G=2 DIFFERENT"
      fi
      echo "$r"
    done
  done
done | tr '\n' ';'; echo
timeout 200 ./cuda --test-threads=2 > $OUT/cuda_tests.log 2>&1; grep -E "^test |test result|panicked" $OUT/cuda_tests.log | grep -v " ok$"
MLFF_CUDA_POLY_MIN_ATOMS=1 timeout 80 ./cuda --skip painn --skip f32_large_system --skip out_of_memory --test-threads=2 > $OUT/tests_poly.log 2>&1; grep -E "test result|panicked" $OUT/tests_poly.log
MLFF_CUDA_SMALL_RECORDS=off timeout 80 ./cuda f32 --skip painn --skip f32_large_system --test-threads=2 > $OUT/tests_small_off.log 2>&1; grep -E "test result|panicked" $OUT/tests_small_off.log
k() { timeout 100 env $2 /usr/local/cuda/bin/ncu --clock-control none --launch-skip $3 --launch-count $4 --metrics gpu__time_duration.sum ./mlff-gpu-bench --model $M --structures . --precision f32 --cases $1 --repeat 3 --out /tmp/t.md 2>/dev/null | grep -E '^  [a-z_0-9]+.*\(|gpu__time_duration' | awk '/\(/{name=$1} /duration/{printf "%s %s, ", name, $NF}' | cut -c1-1500; echo; }
echo "ncu mol50 new: $(k mol50 X=1 100 40)"
echo "ncu 10k new G4: $(k water10k X=1 60 30)"
echo "ncu 10k new G2: $(k water10k MLFF_CUDA_DEFINES=-DPOLY_MERGE=2 60 30)"
echo "ncu 10k off: $(k water10k MLFF_CUDA_MERGE=off 60 30)"
b() { timeout 150 env $2 ./$1 --model $M --structures . --precision f32 --cases $3 --out /tmp/v.md 2>&1 | grep "^| [0-9mwb]" | cut -d"|" -f2,4 | tr '\n' ' '; echo; }
for r in 1 2 3; do
  echo "old:      $(b mlff-gpu-bench-old X=1 mol50,water192,water10k,batch256x50)"
  echo "new:      $(b mlff-gpu-bench X=1 mol50,water192,water10k,batch256x50)"
  echo "new G2:   $(b mlff-gpu-bench MLFF_CUDA_DEFINES=-DPOLY_MERGE=2 water10k,batch256x50)"
  echo "off both: $(b mlff-gpu-bench 'MLFF_CUDA_MERGE=off MLFF_CUDA_SMALL_RECORDS=off' mol50,water192,water10k,batch256x50)"
done
for r in 1 2; do
  echo "100k old: $(b mlff-gpu-bench-old X=1 water100k)"
  echo "100k new: $(b mlff-gpu-bench X=1 water100k)"
  echo "100k G2:  $(b mlff-gpu-bench MLFF_CUDA_DEFINES=-DPOLY_MERGE=2 water100k)"
done
date -u
