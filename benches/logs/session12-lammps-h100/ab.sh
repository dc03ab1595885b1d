#!/bin/bash
# Session 12: LAMMPS on the GPU, new libmlff vs the previous build (list rebuilds).
cd "$(dirname "$0")"
cp libmlff.so libmlff-new.so
for r in 1 2; do
  for v in new old; do
    cp libmlff-$v.so libmlff.so
    echo "##### round $r $v"
    OUT=$OUT/$v$r bash run.sh "1 4 4 4 f32 50" "1 8 8 8 f32 50" 2>&1 | grep -E "===|Loop time|calls|Pair  |Neigh "
  done
done
cp libmlff-new.so libmlff.so
