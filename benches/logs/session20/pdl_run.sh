#!/bin/bash
# Session 20: programmatic dependent launch on every graphed step (MLFF_CUDA_PDL_MAX_ATOMS=20001;
# default: below 256 atoms), with the polynomial edge kernels loading their table before
# they wait for the previous kernel. Outputs bitwise, then the bench in the same call,
# variants interleaved, three rounds.
# Usage (GPU machine, .gpu carried): bash benches/logs/session20/pdl_run.sh
source "$(dirname "$0")/../../../scripts/gpu-env.sh"
M=models/student_427k.safetensors
# The build it measured is not on main (reverted: no gain); see gpu_results.md, session 20.
for x in water3k water10k; do
  ./mlff eval --device cuda --precision f32 $M $x.xyz /tmp/a.xyz > /dev/null 2>&1
  MLFF_CUDA_PDL_MAX_ATOMS=20001 ./mlff eval --device cuda --precision f32 $M $x.xyz /tmp/b.xyz > /dev/null 2>&1
  cmp -s /tmp/a.xyz /tmp/b.xyz && echo "$x: PDL = default, bitwise" || echo "$x: PDL != default"
done
b() { env "$@" timeout 200 ./mlff-gpu-bench --model $M --structures . --precision f32 --cases ${CASES:-water1k,water3k,batch256x50,water10k} --out $OUT/v.md 2>&1 | grep "^| [0-9mwb]" | cut -d'|' -f2,4 | tr '\n' ' '; echo; }
for r in 1 2 3; do echo "default: $(b A=1)"; echo "pdl all: $(b MLFF_CUDA_PDL_MAX_ATOMS=20001)"; done
date -u
