#!/bin/bash
# Session 12: warp-per-atom GPU neighbour list, parallel host binning.
source "$(dirname "$0")/../scripts/gpu-env.sh"
M=models/student_427k.safetensors
for x in water10k water3k; do
  ./mlff eval --device cuda --precision f32 $M $x.xyz $OUT/new.xyz > /dev/null 2>&1
  ./mlff-old eval --device cuda --precision f32 $M $x.xyz $OUT/old.xyz > /dev/null 2>&1
  echo "$x bitwise: $(cmp -s $OUT/new.xyz $OUT/old.xyz && echo yes || echo NO)"
done
rm -f $OUT/*.xyz
for r in 1 2; do
  for b in new old; do
    B=./mlff-gpu-bench; [ $b = old ] && B=./mlff-gpu-bench-old
    echo "round $r $b (median, rebuild step)"; timeout 120 $B --model $M --structures . --precision f32 --cases water1k,water10k,water100k --out $OUT/b.md 2>&1 | grep "^| [0-9mw]" | cut -d'|' -f2,4,9
  done
done
MLFF_CUDA_PROFILE=1 timeout 120 ./mlff-gpu-bench --model $M --structures . --precision f32 --cases water100k --out $OUT/p.md 2>&1 | grep "list:"
timeout 300 ./cuda list rebuild reuse --test-threads=2 > "$OUT/tests.log" 2>&1; grep -E "test result|panicked|^test " "$OUT/tests.log"
date -u
