#!/usr/bin/env bash
# Train the schnetpack PaiNN student on the teacher-labelled frames.
# Usage (repository root, GPU machine):  OUT=/some/dir bash .distill/run_train.sh
# Input: .distill/data/labelled_*.npz (the files run_sample.sh wrote to its $OUT)
# Env: DISTILL_TRAIN_S  seconds of training steps (default 420; whole script ~+60 s)
#      DISTILL_DATA     data folder (default .distill/data)
#      DISTILL_SMOKE=1  tiny CPU run (30 s of training)
#      DISTILL_PY, DISTILL_SKIP_INSTALL, DISTILL_DEVICE as in run_sample.sh
#      DISTILL_TRAIN_ARGS extra arguments for train.py
set -euo pipefail
T0=$(date +%s)
: "${OUT:?set OUT to the output folder}"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PY=${DISTILL_PY:-python3}
SMOKE=${DISTILL_SMOKE:-0}
DATA=${DISTILL_DATA:-$REPO/.distill/data}
if [ "$SMOKE" = 1 ]; then
  DEVICE=${DISTILL_DEVICE:-cpu}; TRAIN_S=${DISTILL_TRAIN_S:-30}; EXTRA="--eval-every 10 --ckpt-every 15 --batch-size 2 --warmup-steps 5"
else
  DEVICE=${DISTILL_DEVICE:-cuda}; TRAIN_S=${DISTILL_TRAIN_S:-420}; EXTRA=""
fi
mkdir -p "$OUT"
exec > >(tee -a "$OUT/train_log.txt") 2>&1
say() { echo "[run_train $(( $(date +%s) - T0 ))s] $*"; }
say "start $(date -u +%FT%TZ) smoke=$SMOKE device=$DEVICE train budget ${TRAIN_S}s data=$DATA"
ls -la "$DATA"
if [ "${DISTILL_SKIP_INSTALL:-0}" != 1 ]; then
  PYLIB=${DISTILL_PYLIB:-/tmp/distill_pylib}
  # schnetpack and its import-time needs only (sevenn is not needed here)
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check \
      --upgrade --target "$PYLIB" "$REPO"/.distill/wheels/common/*.whl
  export PYTHONPATH="$PYLIB${PYTHONPATH:+:$PYTHONPATH}"
  say "wheels installed into $PYLIB"
fi
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
"$PY" -c "import torch, schnetpack; print('torch', torch.__version__, 'schnetpack', schnetpack.__version__, 'cuda', torch.cuda.is_available())"
# shellcheck disable=SC2086
"$PY" "$REPO/tools/distill/train.py" --data "$DATA" --out "$OUT" --device "$DEVICE" \
    --time-budget "$TRAIN_S" $EXTRA ${DISTILL_TRAIN_ARGS:-}
say "end $(date -u +%FT%TZ)"; ls -la "$OUT"; sleep 1
