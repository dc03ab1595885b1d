#!/bin/bash
# Session 22: where update_wgmma.cu's time goes (water10k, second launch): ncu's warp-state
# and memory sections, and the stall samples per SASS instruction (source page, CSV).
# Usage (GPU machine, .gpu carried): bash benches/logs/session22/wgmma_diag.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
export MLFF_CUDA_UPDATE=wgmma
timeout 150 /usr/local/cuda/bin/ncu --clock-control none -k regex:update_wgmma -s 1 -c 1 --section WarpStateStats --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis --section Occupancy --section SpeedOfLight ./mlff eval --device cuda --precision f32 $M water10k.xyz /tmp/n.xyz > $OUT/wgmma_details.txt 2>&1
grep -E "Stall|stall|Warp Cycles|Issued|Throughput|Bank|Hit Rate|Occupancy|Duration|Block Limit|Registers|Shared Memory" $OUT/wgmma_details.txt | head -60
timeout 150 /usr/local/cuda/bin/ncu --clock-control none -k regex:update_wgmma -s 1 -c 1 --section WarpStateStats --section SourceCounters --page source --print-source sass --csv ./mlff eval --device cuda --precision f32 $M water10k.xyz /tmp/n.xyz > $OUT/wgmma_source.csv 2>/dev/null
python3 - $OUT/wgmma_source.csv <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
h = next(i for i, r in enumerate(rows) if "Source" in r)
head = rows[h]; data = rows[h + 1:]
def col(name):
    return next(i for i, c in enumerate(head) if c.startswith(name))
src = col("Source"); samp = col("Warp Stall Sampling (All")
tot = sum(float(r[samp] or 0) for r in data if len(r) > samp)
top = sorted(data, key=lambda r: -float(r[samp] or 0) if len(r) > samp else 0)[:25]
print("total samples", tot)
for r in top: print(f"{float(r[samp])/tot*100:5.1f}%  {r[src][:90]}")
PY
date -u
