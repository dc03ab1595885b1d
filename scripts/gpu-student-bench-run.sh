#!/bin/bash
# GPU machine, from a checkout with .gpu laid out by scripts/prepare-gpu-run.sh (carried): the
# CUDA tests (also with the polynomial filter kernels forced on every size, with their channel
# groups in parallel and in sequence, the latter with the gates recomputed in the backward
# pass; the >4096-atom test, which those settings do not change, only once; with .gpu/mlff
# and .gpu/water10k.xyz, saved and recomputed gates compared bitwise; the f32 tests without
# the cluster update kernels, and their outputs against update_small's bitwise on small
# structures; the small-system launch changes of session 10 against one stream, bitwise;
# mixed = f32 on molecules, bitwise),
# the student benchmarks in f32, mixed and f64, and the
# PyTorch reference (compile + CUDA graph; SKIP_TORCH=1 skips it) in one call on one card. Produced
# benches/RESULTS.md, GPU section.
# SKIP_TESTS=1: the benchmarks only (the tests in a call of their own: the whole script
# runs longer than one device call may).
source "$(dirname "$0")/gpu-env.sh"
if [ -z "$SKIP_TESTS" ]; then
timeout 300 ./cuda --test-threads=2 --nocapture > "$OUT/tests.log" 2>&1; grep -E "^test |test result|panicked" "$OUT/tests.log" | grep -v " ok$"
MLFF_CUDA_POLY_MIN_ATOMS=1 timeout 100 ./cuda --skip painn --skip f32_large_system --test-threads=2 --nocapture > "$OUT/tests_poly.log" 2>&1; grep -E "test result|panicked" "$OUT/tests_poly.log"
# The message kernels' merged walk (two atoms per warp) on every size the polynomial kernels run.
MLFF_CUDA_POLY_MIN_ATOMS=1 MLFF_CUDA_MERGE_MIN_ATOMS=0 timeout 100 ./cuda --skip painn --skip f32_large_system --test-threads=2 --nocapture > "$OUT/tests_merge.log" 2>&1; grep -E "test result|panicked" "$OUT/tests_merge.log"
MLFF_CUDA_POLY_MIN_ATOMS=1 MLFF_CUDA_SEQUENCE_MIN_PAIRS=0 MLFF_CUDA_RECOMPUTE_GATES_MIN_ATOMS=0 timeout 100 ./cuda --skip painn --skip f32_large_system --test-threads=2 --nocapture > "$OUT/tests_sequence.log" 2>&1; grep -E "test result|panicked" "$OUT/tests_sequence.log"
# The register-tiled update kernels (wide, narrow) forced on every system above 4096 atoms
# (with recomputed gates), and forced off (the default picks by waves): the f32 tests.
MLFF_CUDA_UPDATE=tiled MLFF_CUDA_RECOMPUTE_GATES_MIN_ATOMS=0 timeout 200 ./cuda f32 --test-threads=2 --nocapture > "$OUT/tests_tiled.log" 2>&1; grep -E "test result|panicked" "$OUT/tests_tiled.log"
MLFF_CUDA_UPDATE=plain timeout 200 ./cuda f32 --test-threads=2 --nocapture > "$OUT/tests_plain.log" 2>&1; grep -E "test result|panicked" "$OUT/tests_plain.log"
MLFF_CUDA_UPDATE=narrow MLFF_CUDA_RECOMPUTE_GATES_MIN_ATOMS=0 timeout 200 ./cuda f32 --test-threads=2 --nocapture > "$OUT/tests_narrow.log" 2>&1; grep -E "test result|panicked" "$OUT/tests_narrow.log"
# The forward update on the tensor cores (update_wgmma.cu, opt-in): the f32 tests against the CPU f64 engine.
MLFF_CUDA_UPDATE=wgmma timeout 200 ./cuda f32 --test-threads=2 --nocapture > "$OUT/tests_wgmma.log" 2>&1; grep -E "test result|panicked" "$OUT/tests_wgmma.log"
# The small-system update kernels without thread-block clusters (as before sm_90).
MLFF_CUDA_CLUSTER=off timeout 200 ./cuda f32 --skip painn --test-threads=2 --nocapture > "$OUT/tests_nocluster.log" 2>&1; grep -E "test result|panicked" "$OUT/tests_nocluster.log"
# Gates recomputed in the backward pass (large systems) or saved, and the tiled update or
# update.cu: the same numbers bitwise.
if [ -x ./mlff ] && [ -f water10k.xyz ]; then
  MLFF_CUDA_UPDATE=plain ./mlff eval --device cuda --precision f32 models/student_427k.safetensors water10k.xyz $OUT/update.xyz > /dev/null
  MLFF_CUDA_UPDATE=tiled ./mlff eval --device cuda --precision f32 models/student_427k.safetensors water10k.xyz $OUT/tiled.xyz > /dev/null
  cmp -s $OUT/update.xyz $OUT/tiled.xyz && echo "tiled update = update.cu, bitwise" || echo "tiled update != update.cu"
  MLFF_CUDA_UPDATE=tiled MLFF_CUDA_RECOMPUTE_GATES_MIN_ATOMS=0 ./mlff eval --device cuda --precision f32 models/student_427k.safetensors water10k.xyz $OUT/tiled.xyz > /dev/null
  cmp -s $OUT/update.xyz $OUT/tiled.xyz && echo "tiled update with recomputed gates = update.cu, bitwise" || echo "tiled update with recomputed gates != update.cu"
  MLFF_CUDA_UPDATE=narrow MLFF_CUDA_RECOMPUTE_GATES_MIN_ATOMS=0 ./mlff eval --device cuda --precision f32 models/student_427k.safetensors water10k.xyz $OUT/tiled.xyz > /dev/null
  cmp -s $OUT/update.xyz $OUT/tiled.xyz && echo "narrow tiled update with recomputed gates = update.cu, bitwise" || echo "narrow tiled update != update.cu"
  # The register-tiled energy head (readout_tiled.cu, H = 128) against readout.cu.
  MLFF_CUDA_READOUT=plain ./mlff eval --device cuda --precision f32 models/student_427k.safetensors water10k.xyz $OUT/tiled.xyz > /dev/null
  cmp -s $OUT/update.xyz $OUT/tiled.xyz && echo "tiled readout = readout.cu, bitwise" || echo "tiled readout != readout.cu"
  rm -f $OUT/update.xyz $OUT/tiled.xyz
  # Small systems (sm_90): the cluster update kernels (each tile size the engine picks, and
  # the 8-atom tile forced over many waves) against update_small.
  for x in mol20 mol50 water192 water3k; do
    [ -f $x.xyz ] || continue
    force=""; [ $x = water3k ] && force="MLFF_CUDA_CLUSTER_MAX_ATOMS=4096"
    MLFF_CUDA_CLUSTER=off ./mlff eval --device cuda --precision f32 models/student_427k.safetensors $x.xyz $OUT/small.xyz > /dev/null
    env $force ./mlff eval --device cuda --precision f32 models/student_427k.safetensors $x.xyz $OUT/cluster.xyz > /dev/null
    cmp -s $OUT/small.xyz $OUT/cluster.xyz && echo "$x: cluster update = update_small, bitwise" || echo "$x: cluster update != update_small"
  done
  # Programmatic edges, graph branches and the fused message + update (small systems)
  # change no number; the fused kernel for each released student (H = 128, 64, 32).
  for m in student_427k student_tiny_77k student_ultra_tiny_21k; do
    for x in mol20 mol50 water192; do
      [ -f $x.xyz ] && [ -f models/$m.safetensors ] || continue
      MLFF_CUDA_PDL=off MLFF_CUDA_BRANCHES=off MLFF_CUDA_FUSE=off ./mlff eval --device cuda --precision f32 models/$m.safetensors $x.xyz $OUT/small.xyz > /dev/null
      ./mlff eval --device cuda --precision f32 models/$m.safetensors $x.xyz $OUT/cluster.xyz > /dev/null
      cmp -s $OUT/small.xyz $OUT/cluster.xyz && echo "$m $x: fused, programmatic edges and branches = one stream, bitwise" || echo "$m $x: fused, programmatic edges and branches != one stream"
    done
  done
  rm -f $OUT/small.xyz $OUT/cluster.xyz
  # The mixed engine takes the f32 table where the fused molecule kernels run: its numbers
  # there are the f32 engine's.
  for x in mol20 mol50; do
    [ -f $x.xyz ] || continue
    ./mlff eval --device cuda --precision mixed models/student_427k.safetensors $x.xyz $OUT/mixed.xyz > /dev/null
    ./mlff eval --device cuda --precision f32 models/student_427k.safetensors $x.xyz $OUT/f32.xyz > /dev/null
    cmp -s $OUT/mixed.xyz $OUT/f32.xyz && echo "$x: mixed = f32, bitwise" || echo "$x: mixed != f32"
  done
  rm -f $OUT/mixed.xyz $OUT/f32.xyz
  for p in f32 f64; do
    ./mlff eval --device cuda --precision $p models/student_427k.safetensors water10k.xyz $OUT/saved_$p.xyz > /dev/null
    MLFF_CUDA_RECOMPUTE_GATES_MIN_ATOMS=0 ./mlff eval --device cuda --precision $p models/student_427k.safetensors water10k.xyz $OUT/recomputed_$p.xyz > /dev/null
    cmp -s $OUT/saved_$p.xyz $OUT/recomputed_$p.xyz && echo "gates recomputed = saved, bitwise ($p)" || echo "gates recomputed != saved ($p)"
    rm -f $OUT/saved_$p.xyz $OUT/recomputed_$p.xyz
  done
fi
fi
date -u
for p in f32 mixed f64; do timeout 90 ./mlff-gpu-bench --model models/student_427k.safetensors --structures . --precision $p --check --cases mol50,batch256x50,water10k,water100k --out $OUT/bench_$p.md 2>&1 | grep "^| [mw2]"; done
date -u
[ -n "$SKIP_TORCH" ] || (cd ../tools/reference && timeout 220 python3 bench_torch.py ../../.gpu/models/student_427k.safetensors --device cuda --variants compile+cudagraph --cases mol50,batch256x50,water10k,water100k --min-time 1 --budget 190 --markdown $OUT/torch.md --json $OUT/torch.json > $OUT/torch.log 2>&1); grep -v -i warn $OUT/torch.log | tail -8
date -u
cd $OUT && tar czf logs.tgz *.log *.md *.json && rm -f *.log
