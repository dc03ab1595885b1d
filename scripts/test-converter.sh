#!/usr/bin/env bash
# Tests of the model converter (tools/convert_model.py): its unit tests, then a
# conversion of the released students in ../shared/models (when that folder
# exists), each loaded back by `mlff info` (when the CLI has that subcommand).
# Needs only python3 (3.8+); no torch, numpy or onnx.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}

"$python" -m unittest discover -s tools/tests -p 'test_convert_model.py' -v

models=../shared/models
if [ ! -d "$models" ]; then
    echo "SKIP: $models is absent: the released students are not converted"
    exit 0
fi
shopt -s nullglob
inputs=("$models"/*.onnx)
if [ ${#inputs[@]} -eq 0 ]; then
    echo "SKIP: no .onnx files in $models"
    exit 0
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for input in "${inputs[@]}"; do
    "$python" tools/convert_model.py "$input" "$out/$(basename "${input%.onnx}").safetensors"
done

mlff_bin=${CARGO_TARGET_DIR:-target}/release/mlff
if [ -x "$mlff_bin" ] && "$mlff_bin" info --help >/dev/null 2>&1; then
    for model in "$out"/*.safetensors; do
        echo "== mlff info $(basename "$model")"
        cargo run --release --quiet -- info "$model"
    done
else
    echo "SKIP: $mlff_bin has no working 'info' subcommand (build it with cargo build --release): converted files not loaded by mlff"
fi
echo "converter tests passed"
