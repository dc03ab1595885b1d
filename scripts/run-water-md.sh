#!/usr/bin/env bash
# The main job: builds mlff and runs Langevin MD (300 K, 0.5 fs) of a periodic
# 192-atom liquid-water box (64 H2O, 1.0 g/cm3) with the shipped default model,
# printing a progress bar and a summary (temperature, energy drift, atom-steps/s,
# ns/day). CPU by default; the GPU when one is usable (--device auto).
#
# Model: $MLFF_MODEL if set, else models/water-painn-sevennet0.safetensors (PaiNN
# distilled from SevenNet-0; card: models/water-painn-sevennet0.md).
# Start: $MLFF_MD_INPUT if set, else models/water-192-300K.extxyz (a 300 K liquid
# configuration); velocities are drawn at 300 K.
#
# Usage: scripts/run-water-md.sh   (MLFF_MD_STEPS=N [1000], MLFF_MD_DEVICE=cpu|cuda|auto,
#                                   MLFF_MD_PRECISION=f32|f64, MLFF_NUM_THREADS=N)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

cargo build --release --quiet --bin mlff
mlff="$here/target/release/mlff"
work="$here/target/main-job"
mkdir -p "$work"

model="${MLFF_MODEL:-$here/models/water-painn-sevennet0.safetensors}"
input="${MLFF_MD_INPUT:-$here/models/water-192-300K.extxyz}"
for f in "$model" "$input"; do
  [[ -f "$f" ]] || { echo "run-water-md.sh: $f not found" >&2; exit 1; }
done

"$mlff" info "$model"
"$mlff" md "$model" "$input" \
  --steps "${MLFF_MD_STEPS:-1000}" --dt-fs 0.5 \
  --thermostat langevin --temperature 300 --friction 1.0 --seed 1 \
  --precision "${MLFF_MD_PRECISION:-f32}" \
  --traj "$work/water-md.extxyz" --every 100 \
  --device "${MLFF_MD_DEVICE:-auto}"
echo "trajectory: $work/water-md.extxyz"
