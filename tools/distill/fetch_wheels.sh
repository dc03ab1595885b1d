#!/usr/bin/env bash
# Download the py3.12 wheels the GPU image lacks into .distill/wheels/{common,sevenn}
# (common = schnetpack 2.2.0 and its import-time needs; sevenn = the teacher, 43 MB).
# Run from the repository root on a machine with network access.
set -euo pipefail
PIP=${PIP:-/work/torchvenv/bin/pip}
W=.distill/wheels
mkdir -p $W/common $W/sevenn
dl() { "$PIP" download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
        --platform any -d "$1" "$2"; }
dl $W/sevenn sevenn==0.13.0
for p in schnetpack==2.2.0 ase==3.29.0 matscipy==1.1.0 braceexpand==0.1.7 hydra-core==1.3.8 \
         omegaconf==2.3.1 hydra-colorlog==1.2.0 colorlog==6.12.0 torch-ema==0.3 fasteners==0.20 \
         dirsync==2.2.6 petname==2.9 vesin==0.6.2 tensorboardX==2.6.5; do
  dl $W/common "$p"
done
# sdist-only, pure python: build wheels
for p in antlr4-python3-runtime==4.9.3 progressbar==2.5; do
  "$PIP" wheel -q --no-deps -w $W/common "$p"
done
ls -la $W/common $W/sevenn
