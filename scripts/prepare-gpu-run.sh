#!/usr/bin/env bash
# Lays out everything the CUDA checks need on a GPU machine in one folder (default
# .gpu/, which must be git-excluded): the tests/cuda.rs binary, mlff-gpu-bench, mlff, the
# released students converted (from ../shared/models, never committed), the public
# fixtures, the PaiNN test models (converted from tests/data) and their fixtures, the benchmark structures from tools/structures.py, and run.sh.
# Usage: scripts/prepare-gpu-run.sh [DIR]; then on the GPU machine: bash DIR/run.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$here/.gpu}"
shared="$here/../shared"
mkdir -p "$out/models"
cd "$here"
cargo build --release --quiet --bin mlff-gpu-bench --bin mlff
test_bin="$(cargo test --release --test cuda --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable") and "cuda" in m["target"]["name"]][-1])')"
cp "$test_bin" "$out/cuda"
cp target/release/mlff-gpu-bench target/release/mlff "$out/"
# 10,002 atoms of water as extended XYZ (mlff eval: bitwise comparisons of engine modes).
[[ -f "$out/water10k.xyz" ]] || python3 tools/structures.py water --molecules 3334 --seed 0 -o "$out/water10k.xyz"
# Small systems (the cluster update kernels vs update_small, bitwise).
[[ -f "$out/mol50.xyz" ]] || python3 tools/structures.py molecule --atoms 50 --seed 0 -o "$out/mol50.xyz"
[[ -f "$out/water3k.xyz" ]] || python3 tools/structures.py water --molecules 1000 --seed 0 -o "$out/water3k.xyz"
[[ -f "$out/mol20.xyz" ]] || python3 tools/structures.py molecule --atoms 20 --seed 1 -o "$out/mol20.xyz"
[[ -f "$out/water192.xyz" ]] || python3 tools/structures.py water --molecules 64 --seed 0 -o "$out/water192.xyz"
for m in student_427k student_tiny_77k student_ultra_tiny_21k; do
  if [[ -f "$shared/models/$m.onnx" && ! -f "$out/models/$m.safetensors" ]]; then
    python3 tools/convert_model.py "$shared/models/$m.onnx" "$out/models/$m.safetensors"
  fi
done
[[ -f "$shared/fixtures/student_public_fixtures.json" ]] && cp "$shared/fixtures/student_public_fixtures.json" "$out/"
# PaiNN: the committed schnetpack test models, converted, and schnetpack's numbers for them.
for m in painn_b1 painn_b3_shared_filters painn_b3 painn_b5_shared_interactions; do
  python3 tools/convert_model.py "tests/data/$m.pt" "$out/models/$m.safetensors" >/dev/null
done
cp tests/data/painn_fixtures.json "$out/"
python3 - "$out" <<'PY'
import json, math, os, sys
sys.path.insert(0, "tools")
import structures as S
out = sys.argv[1]
def dump(s):
    return dict(numbers=list(s.numbers), positions=[list(p) for p in s.positions],
                cell=[list(r) for r in s.cell] if s.cell else None,
                pbc=list(s.pbc) if isinstance(s.pbc, (list, tuple)) else [bool(s.pbc)] * 3)
cases = {"mol50": lambda: [S.organic_molecule(50, seed=0)],
         "water192": lambda: [S.water_box(64, seed=0)],
         "water384": lambda: [S.water_box(128, seed=0)],
         "water1k": lambda: [S.water_box(334, seed=0)],
         "water3k": lambda: [S.water_box(1000, seed=0)],
         "batch256x50": lambda: [S.organic_molecule(50, seed=k) for k in range(256)],
         "water10k": lambda: [S.water_box(math.ceil(10000 / 3), seed=0)],
         "water100k": lambda: [S.water_box(math.ceil(100000 / 3), seed=0)]}
for name, make in cases.items():
    path = os.path.join(out, f"structures_{name}.json")
    if not os.path.exists(path):
        json.dump([dump(s) for s in make()], open(path, "w"))
PY
cat > "$out/run.sh" <<'RUN'
#!/bin/bash
# On the GPU machine: tests against the CPU f64 engine, then the benchmark table.
cd "$(dirname "$0")"
L=$(find / -name 'libnvrtc.so.13' -not -path '/proc/*' 2>/dev/null | head -1)
export MLFF_NVRTC_DIR=$(dirname "$L") MLFF_CACHE_DIR=/tmp/mlffcache MLFF_TEST_MODEL_DIR=$PWD/models MLFF_FIXTURES=$PWD/student_public_fixtures.json MLFF_PAINN_FIXTURES=$PWD/painn_fixtures.json
OUT=${OUT:-/tmp/mlff-out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; date -u
./cuda --test-threads=2 --nocapture > "$OUT/tests.log" 2>&1; grep -E "^test |test result|panicked|worst" "$OUT/tests.log"
./mlff-gpu-bench --model models/student_427k.safetensors --structures . --check --cases mol50,batch256x50,water10k,water100k --out "$OUT/bench_f32.md" 2>/dev/null
RUN
chmod +x "$out/run.sh"
echo "ready: $out (run: bash $out/run.sh)"
