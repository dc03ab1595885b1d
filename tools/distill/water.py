"""Liquid-water starting boxes for teacher MD (own code, numpy + ASE only).

Water molecules (O-H 0.9572 A, H-O-H 104.52 deg) are put on a simple cubic grid
of molecule centres at the requested density, each with a random orientation;
orientations are redrawn until no H is closer than `min_hh` to any atom of
another molecule.  The result is an ordered, cold lattice that must still be
relaxed and equilibrated (teacher_md.py does FIRE + strongly damped Langevin).
"""
from __future__ import annotations

import math

import numpy as np
from ase import Atoms

M_H2O = 18.01528  # g/mol
N_A = 6.02214076e23
R_OH = 0.9572
THETA = math.radians(104.52)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    a, b, c, d = q
    return np.array(
        [
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
        ]
    )


def box_length(n_mol: int, density: float) -> float:
    """Cubic box edge (A) holding n_mol waters at `density` g/cm^3."""
    vol_cm3 = n_mol * M_H2O / N_A / density
    return (vol_cm3 * 1e24) ** (1.0 / 3.0)


def water_box(n_per_side: int = 4, density: float = 1.0, scale: float = 1.0,
              seed: int = 0, min_sep: float = 1.9) -> Atoms:
    """n_per_side^3 waters (4 -> 64 molecules, 192 atoms) in a periodic cube.

    `scale` multiplies the box edge (isotropic linear strain) after the density
    is set; molecules keep their geometry (only centres move).
    """
    rng = np.random.default_rng(seed)
    n_mol = n_per_side ** 3
    L = box_length(n_mol, density) * scale
    a = L / n_per_side
    # molecule frame: O at origin, H's in the xy-plane, bisector along +x
    h1 = R_OH * np.array([math.cos(THETA / 2), math.sin(THETA / 2), 0.0])
    h2 = R_OH * np.array([math.cos(THETA / 2), -math.sin(THETA / 2), 0.0])
    com_shift = (2 * 1.008 * h1[0]) / M_H2O
    local = np.array([[0.0, 0.0, 0.0], h1, h2]) - np.array([com_shift, 0, 0])
    cell = np.eye(3) * L
    pos = []
    for ix in range(n_per_side):
        for iy in range(n_per_side):
            for iz in range(n_per_side):
                centre = (np.array([ix, iy, iz]) + 0.5) * a
                for _ in range(200):
                    mol = local @ _random_rotation(rng).T + centre
                    if not pos:
                        break
                    other = np.array(pos)
                    d = mol[:, None, :] - other[None, :, :]
                    d -= L * np.round(d / L)
                    if np.sqrt((d ** 2).sum(-1)).min() > min_sep:
                        break
                pos.extend(mol)
    symbols = ["O", "H", "H"] * n_mol
    atoms = Atoms(symbols=symbols, positions=np.array(pos), cell=cell, pbc=True)
    atoms.wrap()
    return atoms


if __name__ == "__main__":
    at = water_box()
    print(at, at.get_volume(), len(at))
    from ase.geometry import get_distances
    _, D = get_distances(at.positions, cell=at.cell, pbc=True)
    np.fill_diagonal(D, 9)
    print("min distance", D.min())
