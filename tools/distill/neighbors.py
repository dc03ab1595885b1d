"""Periodic full neighbour list in torch (works on CPU and GPU).

Convention as schnetpack: cell rows are lattice vectors, and for every pair
r_ij = R[j] - R[i] + offset  with |r_ij| < cutoff, both (i, j) and (j, i) are
listed; offset = S @ cell for an integer image shift S.
"""
from __future__ import annotations

import math

import torch


def neighbor_list(pos: torch.Tensor, cell: torch.Tensor, cutoff: float, pbc=(True, True, True)):
    """pos (N, 3), cell (3, 3) -> idx_i, idx_j (int64), offsets (P, 3) same dtype as pos.

    Positions may lie outside the cell; the offsets are then relative to the
    given positions (no wrapping needed by the caller).
    """
    dtype = pos.dtype
    pos64 = pos.double()
    cell64 = cell.double()
    n = pos.shape[0]
    # wrap into the cell, remember the shift so offsets refer to the input positions
    frac = pos64 @ torch.linalg.inv(cell64)
    shift_in = torch.zeros_like(frac)
    for k in range(3):
        if pbc[k]:
            shift_in[:, k] = -torch.floor(frac[:, k])
    wrapped = (frac + shift_in) @ cell64
    # number of images per direction from the perpendicular widths
    recip = torch.linalg.inv(cell64).T  # rows b_k with a_i . b_k = delta_ik
    heights = 1.0 / torch.linalg.norm(recip, dim=1)
    reps = [int(math.ceil(cutoff / float(heights[k]))) if pbc[k] else 0 for k in range(3)]
    rng = [torch.arange(-r, r + 1, device=pos.device, dtype=torch.float64) for r in reps]
    S = torch.cartesian_prod(*rng).reshape(-1, 3)  # (M, 3)
    img = S @ cell64  # (M, 3)
    # d[m, i, j] = wrapped[j] + img[m] - wrapped[i]
    d = wrapped[None, None, :, :] + img[:, None, None, :] - wrapped[None, :, None, :]
    dist2 = (d * d).sum(-1)
    mask = dist2 < cutoff * cutoff
    zero = (S == 0).all(dim=1)
    eye = torch.eye(n, dtype=torch.bool, device=pos.device)
    mask[zero] &= ~eye
    m, i, j = mask.nonzero(as_tuple=True)
    # r_ij(input positions) = R[j] - R[i] + off, with wrapped = R + shift_in @ cell
    sh = S[m] + shift_in[j] - shift_in[i]
    off = sh @ cell64
    order = torch.argsort(i * n + j, stable=True)
    return i[order], j[order], off[order].to(dtype)


if __name__ == "__main__":
    # check against ASE's neighbour list
    import numpy as np
    from ase.build import bulk
    from ase.neighborlist import neighbor_list as ase_nl

    at = bulk("Cu", "fcc", a=3.6).repeat((2, 3, 2))
    at.set_cell(at.cell @ np.array([[1, 0.1, 0], [0, 1, 0.05], [0.02, 0, 1]]), scale_atoms=True)
    at.rattle(0.1, seed=1)
    at.positions += 7.3  # outside the cell
    ii, jj, DD = ase_nl("ijD", at, 5.0)
    i, j, off = neighbor_list(torch.tensor(at.positions), torch.tensor(np.array(at.cell)), 5.0)
    R = torch.tensor(at.positions)
    D = R[j] - R[i] + off
    a = sorted(zip(ii.tolist(), jj.tolist(), np.round(DD, 6).tolist()))
    b = sorted(zip(i.tolist(), j.tolist(), np.round(D.numpy(), 6).tolist()))
    print(len(a), len(b), "match" if a == b else "MISMATCH")
