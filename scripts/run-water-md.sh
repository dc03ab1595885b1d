#!/usr/bin/env bash
# The main job: builds mlff and runs Langevin MD (300 K, 0.5 fs) of a periodic
# 192-atom liquid-water box, with a progress bar and a summary (temperature,
# energy drift, atom-steps/s, ns/day). CPU by default; the GPU when one is usable.
#
# Model: $MLFF_MODEL if set; else the released 427k student converted from
# ../shared/models (development data, never shipped); else a random test model,
# which only exercises the machinery (its forces are meaningless).
#
# Usage: scripts/run-water-md.sh        (MLFF_MD_STEPS=N, MLFF_MD_DEVICE=cpu|cuda|auto)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

cargo build --release --quiet --bin mlff
mlff="$here/target/release/mlff"
work="$here/target/main-job"
mkdir -p "$work"

model="${MLFF_MODEL:-}"
if [[ -z "$model" ]]; then
  if [[ -f ../shared/models/student_427k.onnx ]]; then
    model="$work/student_427k.safetensors"
    [[ -f "$model" ]] || "$mlff" convert ../shared/models/student_427k.onnx "$model"
  else
    model="$work/random-test-model.safetensors"
    echo "WARNING: no model given (MLFF_MODEL) and ../shared/models is absent:"
    echo "WARNING: running with RANDOM weights, which tests the machinery only."
    "$mlff" random-model "$model" --hidden 128 --rbf 20 --blocks 3 --cutoff 5.0 --seed 1
  fi
fi

python3 tools/structures.py water --molecules 64 --seed 0 -o "$work/water-192.extxyz"
"$mlff" info "$model"
"$mlff" md "$model" "$work/water-192.extxyz" \
  --steps "${MLFF_MD_STEPS:-2000}" --dt-fs 0.5 \
  --thermostat langevin --temperature 300 --friction 1.0 --seed 1 \
  --traj "$work/water-md.extxyz" --every 100 \
  --device "${MLFF_MD_DEVICE:-auto}"
echo "trajectory: $work/water-md.extxyz"
