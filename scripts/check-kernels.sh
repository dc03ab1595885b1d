#!/usr/bin/env bash
# Compiles every CUDA kernel (kernels/*.cu) with NVRTC from PyPI, for sm_80, sm_90 and sm_90a
# and hidden widths 32, 64, 128. Needs no GPU; fails (non-zero exit) if a kernel does
# not compile or NVRTC is missing. Usage: scripts/check-kernels.sh [ARCH...]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${MLFF_VENV:-$here/.venv}"
if ! compgen -G "$venv/lib/python3*/site-packages/nvidia/cu13/lib/libnvrtc.so.13" >/dev/null; then
  "$here/scripts/setup-venv.sh" "$venv"
fi
libdir="$(dirname "$(compgen -G "$venv/lib/python3*/site-packages/nvidia/cu13/lib/libnvrtc.so.13" | head -n1)")"
cd "$here"
cargo build --release --quiet --bin mlff-check-kernels
LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ./target/release/mlff-check-kernels "$@"
