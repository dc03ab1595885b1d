#!/usr/bin/env bash
# Machine code of the CUDA kernels without a GPU: registers and spills per kernel, and the
# size of each loop (backward branch) in SASS instructions. The issue-bound edge kernels
# cost what their edge loop issues; session 17 found 17% of edge_backward's loop this way
# (benches/gpu_results.md). Compiles the kernels with NVRTC from .venv (check-kernels.sh),
# then ptxas, cuobjdump and nvdisasm from PyPI wheels (downloaded once into
# $MLFF_SASS_TOOLS, default ~/.cache/mlff/sass-tools; needs the network the first time).
#   scripts/kernel-sass.sh [ARCH [HIDDEN [KERNEL...]]]   (default sm_90 128 and the
#   polynomial edge kernels; MLFF_CUDA_* variables change the build as for the engine)
# SASS=DIR also keeps each kernel's disassembly there.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
arch="${1:-sm_90}"
hidden="${2:-128}"
shift $(($# > 2 ? 2 : $#))
kernels=("$@")
[ ${#kernels[@]} -gt 0 ] || kernels=(message_poly_zero_v_f32 message_poly_f32 edge_backward_poly_f32 pair_backward_zero_v_f32)
venv="${MLFF_VENV:-$here/.venv}"
tools="${MLFF_SASS_TOOLS:-$HOME/.cache/mlff/sass-tools}"
bin="$tools/nvidia/cu13/bin"
if [ ! -x "$bin/ptxas" ] || [ ! -x "$bin/cuobjdump" ] || [ ! -x "$bin/nvdisasm" ]; then
  mkdir -p "$tools/wheels"
  [ -x "$venv/bin/pip" ] || "$here/scripts/setup-venv.sh" "$venv"
  # ptxas of the CUDA 13.0 line (the NVRTC the engine uses); the disassemblers of any 13.x.
  "$venv/bin/pip" download --quiet --no-deps -d "$tools/wheels" "nvidia-cuda-nvcc==13.0.*" \
    "nvidia-cuda-cuobjdump>=13" "nvidia-cuda-nvdisasm>=13"
  for w in "$tools"/wheels/*.whl; do python3 -m zipfile -e "$w" "$tools"; done
  chmod +x "$bin"/*
fi
ptx_dir="$(mktemp -d)"
trap 'rm -rf "$ptx_dir"' EXIT
MLFF_PTX_DIR="$ptx_dir" "$here/scripts/check-kernels.sh" "$arch" > /dev/null
ptx="$ptx_dir/mlff_${arch}_h${hidden}.ptx"
[ -f "$ptx" ] || { echo "no PTX for $arch H=$hidden (hidden widths: 32, 64, 128)" >&2; exit 1; }
"$bin/ptxas" -arch="$arch" -v "$ptx" -o "$ptx_dir/k.cubin" 2> "$ptx_dir/ptxas.txt"
for k in "${kernels[@]}"; do
  info=$(grep -A3 "entry function '$k'" "$ptx_dir/ptxas.txt")
  resources="$(sed -n 's/.*Used \([0-9]*\) registers.*/\1 registers/p' <<< "$info"), $(sed -n 's/.* \([0-9][0-9]*\) bytes spill stores.*/\1 bytes spilled/p' <<< "$info")"
  PATH="$bin:$PATH" "$bin/cuobjdump" -sass -fun "$k" "$ptx_dir/k.cubin" > "$ptx_dir/$k.sass"
  [ -z "${SASS:-}" ] || { mkdir -p "$SASS"; cp "$ptx_dir/$k.sass" "$SASS/"; }
  # Each backward branch closes a loop: its size is the instructions from the target to it.
  loops=$(python3 - "$ptx_dir/$k.sass" <<'EOF'
import re, sys
rows = [re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?);", l) for l in open(sys.argv[1])]
rows = [(int(m.group(1), 16), m.group(2)) for m in rows if m]
loops = []
for addr, text in rows:
    b = re.search(r"\bBRA\s+(?:\S+,\s*)?0x([0-9a-f]+)", text)
    if b and int(b.group(1), 16) < addr:
        loops.append((addr - int(b.group(1), 16)) // 16 + 1)
print(f"{len(rows)} instructions; loops: {' '.join(map(str, loops)) or 'none'}")
EOF
)
  echo "$k: $resources; $loops"
done
