"""How many distinct neighbour rows a window of consecutive atoms touches.

The GPU engine's edge kernels (kernels/message.cu, edge_backward.cu) walk one atom per warp,
a CTA's warps on consecutive atoms of the spatial (Z-curve) order, and read each neighbour's
row of the CTA's channel group from L1 or L2. This counts, for a periodic structure as
written by tools/structures.py (mlff-gpu-bench's structures_*.json), the distinct rows that
windows of consecutive atoms touch, and the KiB those rows take for a given row size, to
compare with the L1 left beside the kernels' shared memory (docs/cuda.md, "Limits").

Usage: python tools/analysis/neighbour_rows.py STRUCTURES.json [--cutoff 5.3] [--row-bytes 512]
"""
import argparse
import json

import numpy as np


def morton(x, y, z):
    code = 0
    for bit in range(10):
        code |= ((x >> bit) & 1) << (3 * bit) | ((y >> bit) & 1) << (3 * bit + 1) | ((z >> bit) & 1) << (3 * bit + 2)
    return code


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("structures")
    parser.add_argument("--cutoff", type=float, default=5.3, help="rc + skin (A)")
    parser.add_argument("--row-bytes", type=int, default=512, help="bytes per row and channel group (s and v of 32 channels: 512)")
    args = parser.parse_args()
    s = json.load(open(args.structures))[0]
    positions = np.array(s["positions"])
    box = np.diag(np.array(s["cell"]))  # orthorhombic boxes (tools/structures.py water)
    n = len(positions)
    bins = np.floor(box / args.cutoff).astype(int)
    frac = (positions % box) / box
    b = np.minimum((frac * bins).astype(int), bins - 1)
    # Bins along the Z-curve, each bin's atoms in the caller's order (the engine's spatial_order).
    order = np.argsort([morton(*t) for t in b], kind="stable")
    r = positions[order] % box
    neighbours = []
    for i in range(n):
        d = r - r[i]
        d -= box * np.round(d / box)
        within = np.sqrt((d * d).sum(1)) <= args.cutoff
        within[i] = False
        neighbours.append(np.nonzero(within)[0])
    degree = np.mean([len(x) for x in neighbours])
    print(f"{n} atoms, {degree:.1f} candidates per atom (cutoff {args.cutoff} A)")
    for window in (1, 8, 16, 32, 64, 128, 256):
        sizes = []
        for a0 in range(0, n - window, max(window, 97)):
            sizes.append(len(set(np.concatenate(neighbours[a0 : a0 + window]).tolist())))
        rows = np.mean(sizes)
        print(
            f"window {window:4d} atoms: {rows:7.0f} distinct rows, {window * degree / rows:5.1f} uses per row, "
            f"{rows * args.row_bytes / 1024:6.0f} KiB at {args.row_bytes} B per row"
        )


if __name__ == "__main__":
    main()
