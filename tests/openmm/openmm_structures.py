"""Test structures for the OpenMM plugin tests: water clusters and boxes, in nm."""

import numpy as np

MASSES = {1: 1.008, 6: 12.011, 8: 15.999}  # carbon: error tests


def water(rng, center):
    """One water molecule (O, H, H) at center (nm), randomly oriented."""
    r_oh, angle = 0.09572, np.deg2rad(104.52)
    local = np.array([[0.0, 0.0, 0.0],
                      [r_oh, 0.0, 0.0],
                      [r_oh * np.cos(angle), r_oh * np.sin(angle), 0.0]])
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return center + (local - local.mean(axis=0)) @ q.T


def water_cluster(n_waters, seed):
    """An open-boundary water cluster (nm): molecules on a 0.3 nm grid, jittered."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(n_waters ** (1 / 3)))
    centers = [np.array([i, j, k]) * 0.3 for i in range(side) for j in range(side) for k in range(side)]
    positions = [water(rng, c + rng.uniform(-0.02, 0.02, 3)) for c in centers[:n_waters]]
    return np.tile([8, 1, 1], n_waters), np.concatenate(positions)


def water_box(grid, box, seed):
    """Waters on a grid x grid x grid lattice of the cell box (rows, nm), about
    liquid density for the boxes used here. Returns numbers, positions (nm)."""
    rng = np.random.default_rng(seed)
    box = np.asarray(box, dtype=float)
    positions = []
    for i in range(grid):
        for j in range(grid):
            for k in range(grid):
                fractional = (np.array([i, j, k]) + 0.5 + rng.uniform(-0.1, 0.1, 3)) / grid
                positions.append(water(rng, fractional @ box))
    return np.tile([8, 1, 1], grid ** 3), np.concatenate(positions)


CUBIC_BOX = np.diag([0.65, 0.65, 0.65])
# Triclinic, in OpenMM's reduced form (a along x, b in the xy plane, |b_x| <= a_x/2,
# |c_x| <= a_x/2, |c_y| <= b_y/2).
TRICLINIC_BOX = np.array([[0.70, 0.0, 0.0], [0.20, 0.65, 0.0], [-0.15, 0.25, 0.60]])
