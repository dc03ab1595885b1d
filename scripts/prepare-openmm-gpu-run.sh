#!/usr/bin/env bash
# Lays out what the OpenMM CUDA-platform checks need on the GPU machine in one
# git-excluded folder (default .omm/; `/.omm/` is in .git/info/exclude): Python 3.12
# wheels of openmm 8.6.1, openmm-cuda-13 8.6.1 and swig (installed there without
# network), the release libmlff.so built here (stripped; that machine has no Rust),
# the tests/cuda.rs binary (stripped; its device-input tests compare
# mlff_model_compute_device with the host path bitwise), two random models (`mlff
# random-model`: H=32 for the tests, H=128 K=20 L=3 rc=5 Å, the released student's
# shape, for the benchmark), and run.sh.
#
# Usage: scripts/prepare-openmm-gpu-run.sh [DIR]
# Then, on the GPU machine, from the repository root (this tree's sources are used):
#   bash .omm/run.sh          (device tool: carry [".omm"]; results under $OUT)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$here/.omm}"
cd "$here"
mkdir -p "$out/wheels" "$out/lib"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_34_x86_64 \
  -d "$out/wheels" "openmm==8.6.1" "openmm-cuda-13==8.6.1" "swig==4.5.1"
cargo build --release --quiet --lib --bin mlff
cp target/release/libmlff.so "$out/lib/libmlff.so"
strip --strip-debug "$out/lib/libmlff.so"
test_bin="$(cargo test --release --test cuda --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable") and "cuda" in m["target"]["name"]][-1])')"
cp "$test_bin" "$out/cuda-tests"
strip --strip-debug "$out/cuda-tests"
target/release/mlff random-model "$out/model-h32.safetensors" --hidden 32 --rbf 8 --blocks 3 \
  --cutoff 4 --species H,O --seed 3 >/dev/null
target/release/mlff random-model "$out/model-bench.safetensors" --hidden 128 --rbf 20 --blocks 3 \
  --cutoff 5 --species H,O --seed 1 >/dev/null
cp scripts/openmm-gpu-run.sh "$out/run.sh"
chmod +x "$out/run.sh"
du -sh "$out"
echo "ready: $out (on the GPU machine, from the repository root: bash ${out#"$here"/}/run.sh)"
