#!/bin/bash
# NVE energy conservation and 300 K NVT (RDF) runs of the distilled water model with
# `mlff md` (issue 8).  Used on the GPU machine (NVT on the CUDA engine after a
# CUDA-vs-CPU f64 check, NVE f64 on the CPU cores) and, with MD_NVT_DEVICE=cpu,
# anywhere.
#   MLFF=target/release/mlff MODEL=models/water-painn-sevennet0.safetensors \
#   START=equil.extxyz OUT=out bash tools/distill/run_md.sh
# START: a 300 K configuration with momenta (last frame is used for NVE, which starts
# from those momenta; NVT draws 300 K velocities).
set -u
MLFF=${MLFF:-target/release/mlff}
MODEL=${MODEL:-models/water-painn-sevennet0.safetensors}
START=${START:?START=equilibrated .extxyz with momenta}
OUT=${OUT:-/tmp/mlff-md}
NVE_STEPS=${NVE_STEPS:-10000}
NVE_PRECISION=${NVE_PRECISION:-f64}
NVE_DEVICE=${NVE_DEVICE:-cpu}
NVE_THREADS=${NVE_THREADS:-0}
NVT_STEPS=${NVT_STEPS:-40000}
NVT_DEVICE=${NVT_DEVICE:-cuda}
NVT_THREADS=${NVT_THREADS:-0}
NVT_EVERY=${NVT_EVERY:-100}
LIMIT_S=${LIMIT_S:-540}
mkdir -p "$OUT"
if [ -z "${MLFF_NVRTC_DIR:-}" ]; then
  L=$(find / -name 'libnvrtc.so.13' -not -path '/proc/*' 2>/dev/null | head -1)
  [ -n "$L" ] && export MLFF_NVRTC_DIR=$(dirname "$L")
fi
export MLFF_CACHE_DIR=${MLFF_CACHE_DIR:-/tmp/mlffcache}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null; nproc; date -u

if [ "$NVT_DEVICE" = cuda ]; then
  # the CUDA PaiNN path against the CPU f64 reference on the start frame
  "$MLFF" eval "$MODEL" "$START" "$OUT/cpu_f64.extxyz" --precision f64 --device cpu &&
  "$MLFF" eval "$MODEL" "$START" "$OUT/cuda_f64.extxyz" --precision f64 --device cuda &&
  "$MLFF" eval "$MODEL" "$START" "$OUT/cuda_f32.extxyz" --precision f32 --device cuda &&
  python3 - "$OUT" <<'PY' > "$OUT/cuda_check.txt" 2>&1
import sys, re, numpy as np
def rd(p):
    L = open(p).read().split("\n"); n = int(L[0]); h = L[1]
    e = float(re.search(r"(?<![_a-z])energy=(\S+)", h).group(1))
    props = re.search(r"Properties=(\S+)", h).group(1).split(":")
    col, k = 0, 0
    while k < len(props):
        name, typ, m = props[k], props[k+1], int(props[k+2])
        if name == "forces": fcol = col
        col += m; k += 3
    F = np.array([[float(x) for x in l.split()[fcol:fcol+3]] for l in L[2:2+n]])
    return e, F
o = sys.argv[1]
e0, f0 = rd(o + "/cpu_f64.extxyz")
for t in ("cuda_f64", "cuda_f32"):
    e, f = rd(o + f"/{t}.extxyz")
    print(f"{t}: E {e:.9f} vs cpu f64 {e0:.9f}: dE {e-e0:.3e} eV, max|dF| {np.abs(f-f0).max():.3e} eV/A")
PY
  cat "$OUT/cuda_check.txt"
  if ! awk '/^cuda_f64/ { de=$9+0; df=$12+0; if (de<0) de=-de; if (de<1e-6 && df<1e-6) ok=1 } END { exit !ok }' "$OUT/cuda_check.txt"; then
    echo "CUDA PaiNN check failed: NVT on the CPU"; NVT_DEVICE=cpu
  fi
fi

# NVE (background) and NVT at the same time
NFR=$(grep -c "Lattice=" "$START"); LAST=$((NFR-1))
timeout "$LIMIT_S" "$MLFF" md "$MODEL" "$START" --frame $LAST --steps "$NVE_STEPS" --dt-fs 0.5 \
  --thermostat nve --precision "$NVE_PRECISION" --device "$NVE_DEVICE" --threads "$NVE_THREADS" \
  --traj "$OUT/nve_full.extxyz" --every 20 > "$OUT/nve.log" 2>&1 &
NVE_PID=$!
timeout "$LIMIT_S" "$MLFF" md "$MODEL" "$START" --frame $LAST --steps "$NVT_STEPS" --dt-fs 0.5 \
  --temperature 300 --thermostat langevin --friction 1 --seed 11 --precision f32 \
  --device "$NVT_DEVICE" --threads "$NVT_THREADS" \
  --traj "$OUT/nvt.extxyz" --every "$NVT_EVERY" > "$OUT/nvt.log" 2>&1
echo "nvt rc $?"
wait $NVE_PID; echo "nve rc $?"
grep "Lattice=" "$OUT/nve_full.extxyz" | sed 's/Lattice="[^"]*" Properties=[^ ]* //' > "$OUT/nve_energy.txt"
rm -f "$OUT/nve_full.extxyz"
gzip -f "$OUT/nvt.extxyz"
tail -n 8 "$OUT/nve.log" "$OUT/nvt.log"
date -u
