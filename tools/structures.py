#!/usr/bin/env python3
"""Deterministic test and benchmark structures, written as extended XYZ the way ASE writes it.

Pure Python standard library; the same arguments (and seed) give byte-identical output on
every machine, so benchmarks of mlff and of the PyTorch reference use the same atoms.

Command line:
    python3 tools/structures.py water --molecules 1000 [--density 1.0] [--seed 0] [-o water.extxyz]
    python3 tools/structures.py molecule --atoms 50 [--seed 0] [-o mol.extxyz]

Python API (tools/reference/* import it):
    water_box(n_molecules, density=1.0, seed=0) -> Structure
    organic_molecule(n_atoms, seed=0) -> Structure
    write_extxyz(path_or_file, structures), read_extxyz(path) -> [Structure]

Positions and cell entries are rounded to 8 decimals (what ASE's `%16.8f` columns hold),
so a structure read back from the file is bit-for-bit the one the API returned.
"""

from __future__ import annotations

import argparse
import math
import random
import signal
import sys
from dataclasses import dataclass, field

SYMBOLS = ["X", "H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "Ar", "K", "Ca"]
NUMBER = {s: z for z, s in enumerate(SYMBOLS) if z > 0}

WATER_MOLAR_MASS = 18.015  # g/mol
AVOGADRO = 6.02214076e23
OH_BOND = 0.9572  # Å
HOH_ANGLE = 104.52  # degrees
# Smallest accepted distance between atoms of different water molecules (Å). Real liquid
# water has H...O hydrogen bonds near 1.8 Å; 1.6 keeps every structure physical-looking.
WATER_MIN_INTERMOLECULAR = 1.6


@dataclass
class Structure:
    """Atoms in Å. `cell` holds three lattice vectors as rows (zeros when open)."""

    numbers: list[int]
    positions: list[list[float]]
    cell: list[list[float]] = field(default_factory=lambda: [[0.0] * 3 for _ in range(3)])
    pbc: list[bool] = field(default_factory=lambda: [False, False, False])
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.numbers)


# ----------------------------------------------------------------------------- geometry
def _rotation(rng: random.Random) -> list[list[float]]:
    """Uniformly random rotation matrix (Shoemake's quaternion method)."""
    u1, u2, u3 = rng.random(), rng.random(), rng.random()
    a, b = math.sqrt(1 - u1), math.sqrt(u1)
    w, x = a * math.sin(2 * math.pi * u2), a * math.cos(2 * math.pi * u2)
    y, z = b * math.sin(2 * math.pi * u3), b * math.cos(2 * math.pi * u3)
    return [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]


def _apply(m, v):
    return [m[0][0] * v[0] + m[0][1] * v[1] + m[0][2] * v[2], m[1][0] * v[0] + m[1][1] * v[1] + m[1][2] * v[2], m[2][0] * v[0] + m[2][1] * v[1] + m[2][2] * v[2]]


def _random_unit(rng: random.Random) -> list[float]:
    z = 2 * rng.random() - 1
    phi = 2 * math.pi * rng.random()
    s = math.sqrt(max(0.0, 1 - z * z))
    return [s * math.cos(phi), s * math.sin(phi), z]


def _dist2(a, b) -> float:
    return (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2 + (a[2] - b[2]) ** 2


def _r8(x: float) -> float:
    # Python's round() is correctly rounded, so this equals float("%.8f" % x).
    return round(x, 8) + 0.0  # + 0.0 turns -0.0 into 0.0


# ----------------------------------------------------------------------------- water
def water_box_length(n_molecules: int, density: float = 1.0) -> float:
    """Edge (Å) of a cubic box holding n water molecules at `density` g/cm^3."""
    volume_per_molecule = WATER_MOLAR_MASS / (density * AVOGADRO) * 1e24  # Å^3
    return (n_molecules * volume_per_molecule) ** (1.0 / 3.0)


def water_box(n_molecules: int, density: float = 1.0, seed: int = 0, jitter: float = 0.25) -> Structure:
    """A cubic periodic box of rigid water molecules (O-H 0.9572 Å, HOH 104.52°).

    Molecules sit on a cubic grid (a seeded random choice of sites when n is not a
    cube), each shifted by up to `jitter` Å and randomly oriented, with every
    intermolecular distance (minimum image) >= 1.6 Å. Atom order: O H H per molecule.
    """
    if n_molecules < 1:
        raise ValueError("need at least one molecule")
    if not density > 0:
        raise ValueError("density must be positive")
    rng = random.Random(seed)
    box = _r8(water_box_length(n_molecules, density))
    m = 1
    while m**3 < n_molecules:
        m += 1
    spacing = box / m
    sites = list(range(m**3))
    if len(sites) > n_molecules:
        sites = sorted(rng.sample(sites, n_molecules))
    half = math.radians(HOH_ANGLE) / 2
    local = [
        [0.0, 0.0, 0.0],
        [OH_BOND * math.sin(half), 0.0, OH_BOND * math.cos(half)],
        [-OH_BOND * math.sin(half), 0.0, OH_BOND * math.cos(half)],
    ]
    # Centre of the molecule's atoms at the site, so the reach from the site is small.
    centre = [sum(p[k] for p in local) / 3 for k in range(3)]
    local = [[p[k] - centre[k] for k in range(3)] for p in local]

    placed: dict[tuple[int, int, int], list[list[float]]] = {}
    min2 = WATER_MIN_INTERMOLECULAR**2

    def min_image(a, b):
        d = [b[k] - a[k] for k in range(3)]
        d = [x - box * round(x / box) for x in d]
        return d[0] ** 2 + d[1] ** 2 + d[2] ** 2

    neighbour_offsets = [(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)]
    numbers: list[int] = []
    positions: list[list[float]] = []
    for site in sites:
        gx, gy, gz = site // (m * m), (site // m) % m, site % m
        keys = {((gx + a) % m, (gy + b) % m, (gz + c) % m) for a, b, c in neighbour_offsets}
        others = [p for key in keys if key in placed for p in placed[key]]
        for attempt in range(1000):
            amp = jitter if attempt < 500 else 0.0
            rot = _rotation(rng)
            shift = [(rng.random() * 2 - 1) * amp for _ in range(3)]
            base = [(g + 0.5) * spacing + s for g, s in zip((gx, gy, gz), shift)]
            atoms = [[_r8((base[k] + r[k]) % box) for k in range(3)] for r in (_apply(rot, p) for p in local)]
            atoms = [[0.0 if x >= box else x for x in p] for p in atoms]  # % can round up to box
            if all(min_image(a, o) >= min2 for a in atoms for o in others):
                break
        else:
            raise RuntimeError(f"could not place water molecule at site {site}; lower the density")
        placed[(gx, gy, gz)] = atoms
        numbers += [8, 1, 1]
        positions += atoms
    cell = [[box, 0.0, 0.0], [0.0, box, 0.0], [0.0, 0.0, box]]
    info = {"generator": f"water --molecules {n_molecules} --density {density} --seed {seed}"}
    return Structure(numbers, positions, cell, [True, True, True], info)


# ----------------------------------------------------------------------------- molecule
_BOND = {6: 1.50, 7: 1.45, 8: 1.43}  # heavy-heavy single bond lengths (Å), by new atom
_XH = {6: 1.09, 7: 1.01, 8: 0.96}
_VALENCE = {6: 4, 7: 3, 8: 2}


def organic_molecule(n_atoms: int, seed: int = 0) -> Structure:
    """A connected organic-like C/H/N/O cluster with open boundaries.

    About half the atoms are heavy (C 70 %, N 15 %, O 15 %), grown as a random tree with
    single-bond lengths and valences respected; the rest are hydrogens bonded to heavy
    atoms with free valence. Non-bonded heavy atoms stay >= 2.3 Å apart, hydrogens
    >= 1.6 Å from everything but their own heavy atom, so every distance is >= 0.96 Å.
    """
    if n_atoms < 1:
        raise ValueError("need at least one atom")
    rng = random.Random(seed)
    n_heavy = max(1, (n_atoms + 1) // 2)
    n_h = n_atoms - n_heavy
    # Each heavy atom keeps one valence for the tree's bond and leaves the rest for H;
    # make sure the hydrogens fit.
    while n_heavy < n_atoms and n_h > 2 * n_heavy + 2:
        n_heavy += 1
        n_h -= 1
    for _ in range(200):
        result = _grow(rng, n_heavy, n_h)
        if result is not None:
            numbers, positions = result
            positions = [[_r8(x) for x in p] for p in positions]
            return Structure(numbers, positions, info={"generator": f"molecule --atoms {n_atoms} --seed {seed}"})
    raise RuntimeError(f"could not build a {n_atoms}-atom molecule")


def _grow(rng: random.Random, n_heavy: int, n_h: int):
    numbers: list[int] = []
    positions: list[list[float]] = []
    bonds: list[int] = []  # bonds used per atom
    for k in range(n_heavy):
        u = rng.random()
        z = 6 if u < 0.70 else (7 if u < 0.85 else 8)
        if k == 0:
            numbers.append(z)
            positions.append([0.0, 0.0, 0.0])
            bonds.append(0)
            continue
        for _ in range(300):
            candidates = [i for i in range(len(numbers)) if bonds[i] < _VALENCE[numbers[i]] - 1 or (n_heavy <= 3 and bonds[i] < _VALENCE[numbers[i]])]
            if not candidates:
                return None
            parent = rng.choice(candidates)
            length = _BOND[z] + rng.uniform(-0.04, 0.04)
            d = _random_unit(rng)
            p = [positions[parent][i] + length * d[i] for i in range(3)]
            if all(_dist2(p, q) >= 2.3**2 for j, q in enumerate(positions) if j != parent):
                numbers.append(z)
                positions.append(p)
                bonds[parent] += 1
                bonds.append(1)
                break
        else:
            return None
    for _ in range(n_h):
        for _ in range(300):
            free = [i for i in range(n_heavy) if bonds[i] < _VALENCE[numbers[i]]]
            if not free:
                return None
            parent = rng.choice(free)
            d = _random_unit(rng)
            p = [positions[parent][i] + _XH[numbers[parent]] * d[i] for i in range(3)]
            if all(_dist2(p, q) >= 1.6**2 for j, q in enumerate(positions) if j != parent):
                numbers.append(1)
                positions.append(p)
                bonds[parent] += 1
                break
        else:
            return None
    # Centre at the origin, so coordinates stay small.
    c = [sum(p[i] for p in positions) / len(positions) for i in range(3)]
    return numbers, [[p[i] - c[i] for i in range(3)] for p in positions]


def min_distance(s: Structure) -> float:
    """Smallest distance between two atoms (open boundaries only; for checks)."""
    best = math.inf
    for i in range(len(s)):
        for j in range(i):
            best = min(best, _dist2(s.positions[i], s.positions[j]))
    return math.sqrt(best)


# ----------------------------------------------------------------------------- extxyz
def _fmt_float(x: float) -> str:
    return repr(float(x))


def write_extxyz(dest, structures) -> None:
    """Writes frames like ase.io.write(format='extxyz'): species and positions columns."""
    if isinstance(structures, Structure):
        structures = [structures]
    own = isinstance(dest, str)
    f = open(dest, "w") if own else dest
    try:
        for s in structures:
            f.write(f"{len(s)}\n")
            parts = []
            if any(s.pbc) or any(x != 0.0 for row in s.cell for x in row):
                parts.append('Lattice="' + " ".join(_fmt_float(x) for row in s.cell for x in row) + '"')
            parts.append("Properties=species:S:1:pos:R:3")
            for k, v in s.info.items():
                parts.append(f'{k}="{v}"')
            parts.append('pbc="' + " ".join("T" if p else "F" for p in s.pbc) + '"')
            f.write(" ".join(parts) + "\n")
            for z, p in zip(s.numbers, s.positions):
                f.write(f"{SYMBOLS[z]:<2s} {p[0]:16.8f} {p[1]:16.8f} {p[2]:16.8f}\n")
    finally:
        if own:
            f.close()


def _parse_comment(line: str) -> dict:
    out, i, n = {}, 0, len(line)
    while i < n:
        while i < n and line[i].isspace():
            i += 1
        if i >= n:
            break
        j = i
        while j < n and line[j] not in "= " and not line[j].isspace():
            j += 1
        key = line[i:j]
        if j < n and line[j] == "=":
            j += 1
            if j < n and line[j] == '"':
                k = line.index('"', j + 1)
                value, i = line[j + 1 : k], k + 1
            else:
                k = j
                while k < n and not line[k].isspace():
                    k += 1
                value, i = line[j:k], k
        else:
            value, i = "T", j
        out[key] = value
    return out


def read_extxyz(path: str) -> list[Structure]:
    """Reads the frames this module (or ASE, for species/Z + pos columns) writes."""
    frames = []
    with open(path) as f:
        lines = f.read().splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        n = int(lines[i])
        meta = _parse_comment(lines[i + 1])
        props = meta.get("Properties", "species:S:1:pos:R:3").split(":")
        cols, col = {}, 0
        for name, kind, width in zip(props[0::3], props[1::3], props[2::3]):
            cols[name] = (col, kind, int(width))
            col += int(width)
        numbers, positions = [], []
        for line in lines[i + 2 : i + 2 + n]:
            t = line.split()
            if "species" in cols:
                sym = t[cols["species"][0]]
                numbers.append(NUMBER[sym] if sym in NUMBER else int(sym))
            else:
                numbers.append(int(t[cols["Z"][0]]))
            c = cols["pos"][0]
            positions.append([float(x) for x in t[c : c + 3]])
        cell = [[0.0] * 3 for _ in range(3)]
        if "Lattice" in meta:
            v = [float(x) for x in meta["Lattice"].split()]
            cell = [v[0:3], v[3:6], v[6:9]]
        pbc_text = meta.get("pbc", "T T T" if "Lattice" in meta else "F F F").split()
        pbc = [p.upper() in ("T", "TRUE", "1") for p in pbc_text]
        frames.append(Structure(numbers, positions, cell, pbc, {}))
        i += 2 + n
    return frames


# ----------------------------------------------------------------------------- CLI
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="kind", required=True)
    w = sub.add_parser("water", help="cubic periodic water box")
    w.add_argument("--molecules", type=int, required=True)
    w.add_argument("--density", type=float, default=1.0, help="g/cm^3 (default 1.0)")
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("-o", "--output", default="-")
    m = sub.add_parser("molecule", help="organic-like C/H/N/O cluster, open boundaries")
    m.add_argument("--atoms", type=int, required=True)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("-o", "--output", default="-")
    args = parser.parse_args(argv)
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` is not an error
    if args.kind == "water":
        s = water_box(args.molecules, args.density, args.seed)
    else:
        s = organic_molecule(args.atoms, args.seed)
    if args.output == "-":
        write_extxyz(sys.stdout, [s])
    else:
        write_extxyz(args.output, [s])
    return 0


if __name__ == "__main__":
    sys.exit(main())
