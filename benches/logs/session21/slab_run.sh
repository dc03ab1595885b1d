#!/bin/bash
# Session 21, diagnosis for the next session: are the wide10 update kernels bound by their
# slab pipeline (each block's weights in slabs of KS rows, one in flight)? ncu durations at
# water10k (wide10 forced) with slabs of 16 / 8 / 4 rows (backward 8 / 4 / 2); then the
# forward kernel's per-instruction stall samples (ncu source page, SASS, CSV).
# Usage (GPU machine, .gpu carried): bash benches/logs/session21/slab_run.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
export MLFF_CUDA_UPDATE=wide10
for d in "" "-DUT_KS_WIDE=8 -DUTB_KS_WIDE10=4" "-DUT_KS_WIDE=4 -DUTB_KS_WIDE10=2"; do
  echo "ncu [$d]: $(MLFF_CUDA_DEFINES="$d" timeout 90 /usr/local/cuda/bin/ncu --clock-control none -k regex:update -c 6 --metrics gpu__time_duration.sum ./mlff eval --device cuda --precision f32 $M water10k.xyz /tmp/n.xyz 2>&1 | grep -E "duration" | awk '{print $NF}' | tr '\n' ' ')"
done
timeout 120 /usr/local/cuda/bin/ncu --clock-control none -k regex:update_tiled_wide10 -s 1 -c 1 --section WarpStateStats --section SourceCounters --page source --print-source sass --csv ./mlff eval --device cuda --precision f32 $M water10k.xyz /tmp/n.xyz > $OUT/update_tiled_source.csv 2> $OUT/ncu_err.txt
wc -l $OUT/update_tiled_source.csv; head -c 600 $OUT/update_tiled_source.csv; tail -3 $OUT/ncu_err.txt
timeout 90 /usr/local/cuda/bin/ncu --clock-control none -k regex:update_tiled_wide10 -s 1 -c 1 --section WarpStateStats --section SourceCounters ./mlff eval --device cuda --precision f32 $M water10k.xyz /tmp/n.xyz > $OUT/update_tiled_details.txt 2>&1
grep -iE "stall|sampl|warp cycles|issued" $OUT/update_tiled_details.txt | head -30
date -u
