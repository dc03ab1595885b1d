#!/usr/bin/env bash
# Teacher sampling + labelling (SevenNet-0, ASE Langevin) for the distilled water model.
# Usage (repository root, GPU machine):  OUT=/some/dir bash .distill/run_sample.sh
# Env: DISTILL_WALL   total wall budget in s (default 330; workers stop ~25 s before)
#      DISTILL_SMOKE=1 tiny CPU run (24-atom boxes, 2 workers, 100 s)
#      DISTILL_PY      python (default python3); DISTILL_SKIP_INSTALL=1 uses it as is
#      DISTILL_DEVICE  cuda (default) | cpu
set -euo pipefail
T0=$(date +%s)
: "${OUT:?set OUT to the output folder}"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PY=${DISTILL_PY:-python3}
SMOKE=${DISTILL_SMOKE:-0}
DEVICE=${DISTILL_DEVICE:-cuda}
WORK=${DISTILL_WORK:-/tmp/distill_sample_work}
if [ "$SMOKE" = 1 ]; then WALL=${DISTILL_WALL:-100}; DEVICE=${DISTILL_DEVICE:-cpu}; else WALL=${DISTILL_WALL:-330}; fi
mkdir -p "$OUT" "$WORK"
rm -f "$WORK"/*.npz "$WORK"/*.log "$WORK"/*.out
exec > >(tee -a "$OUT/sample_log.txt") 2>&1
say() { echo "[sample $(( $(date +%s) - T0 ))s] $*"; }
say "start $(date -u +%FT%TZ) wall budget ${WALL}s smoke=$SMOKE device=$DEVICE repo=$REPO"

if [ "${DISTILL_SKIP_INSTALL:-0}" != 1 ]; then
  PYLIB=${DISTILL_PYLIB:-/tmp/distill_pylib}
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check \
      --upgrade --target "$PYLIB" "$REPO"/.distill/wheels/*/*.whl
  export PYTHONPATH="$PYLIB${PYTHONPATH:+:$PYTHONPATH}"
  say "wheels installed into $PYLIB"
fi
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
export HF_HUB_OFFLINE=1 NO_PROXY='*'
"$PY" - <<'PYEOF'
import os, torch, ase, sevenn, sevenn._const as C, e3nn, torch_geometric, matscipy
p = C.SEVENNET_0_11Jul2024
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
print("sevenn", sevenn.__version__, "ase", ase.__version__, "e3nn", e3nn.__version__,
      "pyg", torch_geometric.__version__, "matscipy", matscipy.__version__)
print("SevenNet-0 checkpoint", p, os.path.getsize(p), "bytes")
PYEOF
say "imports ok"

# name temp linear-scale seed rdf_every
if [ "$SMOKE" = 1 ]; then
  NSIDE=2; TARGET=6; EQFS=20; RELAX=5
  SPECS="w300a 300 1.00 11 2
hot600 600 1.00 19 0"
else
  NSIDE=4; TARGET=${DISTILL_TARGET_FRAMES:-240}; EQFS=${DISTILL_EQUIL_FS:-500}; RELAX=40
  SPECS="w300a 300 1.00 11 10
w300b 300 1.00 12 10
w300c 300 1.00 13 10
w330 330 1.00 14 0
w360 360 1.00 15 0
w400 400 1.00 16 0
c095 330 0.95 17 0
e105 330 1.05 18 0
c0975 300 0.975 20 0
e1025 360 1.025 21 0
hot600 600 1.00 19 0"
fi
DEADLINE=$(( T0 + WALL - 25 ))
PIDS=()
while read -r name temp scale seed rdfe; do
  [ -z "$name" ] && continue
  timeout -s TERM -k 10 $(( DEADLINE - $(date +%s) + 15 )) \
    "$PY" "$REPO/tools/distill/teacher_md.py" --name "$name" --out "$WORK" --temp "$temp" \
      --scale "$scale" --seed "$seed" --rdf-every "$rdfe" --deadline "$DEADLINE" --device "$DEVICE" \
      --n-side "$NSIDE" --target-frames "$TARGET" --equil-fs "$EQFS" --relax-steps "$RELAX" \
      > "$WORK/$name.out" 2>&1 &
  PIDS+=($!)
done <<< "$SPECS"
say "started ${#PIDS[@]} workers, deadline in $(( DEADLINE - $(date +%s) ))s"
while :; do
  alive=0
  for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive+1)) || true; done
  [ "$alive" = 0 ] && break
  sleep 10
  if [ $(( ( $(date +%s) - T0 ) % 30 )) -lt 10 ]; then
    say "$alive workers running"
    for f in "$WORK"/*.log; do [ -f "$f" ] && tail -n 1 "$f"; done
  fi
done
for p in "${PIDS[@]}"; do wait "$p" || say "worker $p exit $?"; done
say "workers done; merging"
"$PY" "$REPO/tools/distill/merge.py" --work "$WORK" --out "$OUT" || say "merge failed"
for f in "$WORK"/*.out; do echo "===== $f"; grep -v -i warn "$f" | tail -n 40; done
say "end $(date -u +%FT%TZ); files:"; ls -la "$OUT"; sleep 1
