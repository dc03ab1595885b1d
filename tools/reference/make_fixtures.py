#!/usr/bin/env python3
"""Make tests/data/student_random_h16.pt (a random-weight student, our own) and
tests/data/reference_fixtures.json (float64 energies, forces, virials, per-atom energies
of edge-case structures, computed by tools/reference/student_torch.py).

    python3 tools/reference/make_fixtures.py                  # both files, from scratch
    python3 tools/reference/make_fixtures.py --keep-checkpoint # recompute the numbers only

Needs torch. Deterministic: the same torch version gives the same files. Every structure's
forces and virial are also checked against central finite differences of the energy
(except where a displacement would cross the cutoff); the script fails if one is off.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, ".."))

import student_torch as ref  # noqa: E402
import structures  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
CHECKPOINT = os.path.join(ROOT, "tests", "data", "student_random_h16.pt")
FIXTURES = os.path.join(ROOT, "tests", "data", "reference_fixtures.json")
STEM = "student_random_h16"
CONFIG = {"hidden_dim": 16, "num_interactions": 3, "num_rbf": 8, "cutoff": 4.0, "max_z": 20}
SEED = 20251125
ZERO = [[0.0] * 3 for _ in range(3)]
OPEN = [False, False, False]


def make_checkpoint(path: str) -> None:
    """Random weights as PyTorch initialises them (float32), every block's mixing matrix
    (PyTorch keeps all of them; the released files drop the last) set away from identity."""
    torch.manual_seed(SEED)
    model = ref.StudentForceField(**CONFIG)
    with torch.no_grad():
        for block in model.interactions:
            block.update.mixing_matrix.copy_(torch.eye(3) + 0.3 * torch.randn(3, 3))
        # PyTorch's default init leaves the embedding N(0, 1) and the layers small; scale
        # the filter's output so messages matter as much as in a trained model.
        for block in model.interactions:
            block.message.rbf_to_scalar[2].weight.mul_(2.0)
    state = {k: v.detach().clone().float().contiguous() for k, v in model.state_dict().items()}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save({"model_state_dict": state, "config": dict(CONFIG)}, path)


def _random_cluster(rng, n, cell, species, min_dist=1.0, frac_range=(0.0, 1.0), z_range=None):
    """n atoms at random fractional coordinates of `cell` (or a z range for open axes),
    every pair (with the periodic images of the axes that repeat) >= min_dist apart."""
    pts = []
    while len(pts) < n:
        f = [rng.uniform(*frac_range) for _ in range(3)]
        p = [sum(f[k] * cell[k][a] for k in range(3)) for a in range(3)]
        if z_range is not None:
            p[2] = rng.uniform(*z_range)
        ok = True
        for q in pts:
            for s0 in (-1, 0, 1):
                for s1 in (-1, 0, 1):
                    for s2 in (-1, 0, 1):
                        sh = [s0 * cell[0][a] + s1 * cell[1][a] + s2 * cell[2][a] for a in range(3)]
                        d = math.sqrt(sum((p[a] + sh[a] - q[a]) ** 2 for a in range(3)))
                        ok &= d >= min_dist
        if ok:
            pts.append([round(x, 10) for x in p])
    numbers = [rng.choice(species) for _ in range(n)]
    return numbers, pts


def structures_list():
    """(name, numbers, positions, cell, pbc, fd) for every fixture; fd=False where a
    finite-difference step would cross rc."""
    rc = CONFIG["cutoff"]
    rng = random.Random(SEED)
    out = []

    def add(name, numbers, positions, cell=ZERO, pbc=OPEN, fd=True):
        out.append((name, list(numbers), [list(map(float, p)) for p in positions], [list(map(float, r)) for r in cell], list(pbc), fd))

    add("isolated_atom", [6], [[0.1, -0.2, 0.3]])
    add("two_atoms_beyond_rc", [1, 8], [[0.0, 0.0, 0.0], [0.0, 3.0, 2.9]])  # d = 4.17 > rc
    add("pair_at_rc", [6, 8], [[0.0, 0.0, 0.0], [rc, 0.0, 0.0]], fd=False)  # d == rc: an edge
    add("pair_just_inside_rc", [6, 8], [[0.0, 0.0, 0.0], [rc * (1 - 1e-12), 0.0, 0.0]], fd=False)
    add("pair_just_outside_rc", [6, 8], [[0.0, 0.0, 0.0], [rc * (1 + 1e-12), 0.0, 0.0]], fd=False)
    add("co2_symmetric", [8, 6, 8], [[-1.16, 0.0, 0.0], [0.0, 0.0, 0.0], [1.16, 0.0, 0.0]])
    add("water_molecule", [8, 1, 1], [[0.0, 0.0, 0.11730], [0.0, 0.75720, -0.46920], [0.0, -0.75720, -0.46920]])
    # A perfect tetrahedron is ill-conditioned (see tiny_norms); this one is distorted a little.
    add("methane_distorted", [6, 1, 1, 1, 1], [[0.01, -0.02, 0.0], [0.6291, 0.6391, 0.6291], [-0.6291, -0.6291, 0.6191], [-0.6391, 0.6291, -0.6291], [0.6291, -0.6291, -0.6241]])
    add("ammonia", [7, 1, 1, 1], [[0.0, 0.0, 0.1162], [0.0, 0.9377, -0.2711], [0.8121, -0.4689, -0.2711], [-0.8121, -0.4689, -0.2711]])
    add("ion_pair_z20_z17", [20, 17], [[0.0, 0.0, 0.0], [1.7, 1.5, -1.2]])
    for n, seed in ((12, 1), (21, 2), (50, 3)):
        m = structures.organic_molecule(n, seed)
        add(f"organic_{n}", m.numbers, m.positions)

    # periodic cells smaller than 2 rc: an atom sees many images of itself and of others
    add("single_atom_cube_2.7", [8], [[0.3, 0.2, 0.1]], [[2.7, 0, 0], [0, 2.7, 0], [0, 0, 2.7]], [True] * 3)
    cube = [[3.2, 0, 0], [0, 3.2, 0], [0, 0, 3.2]]
    add("small_cube_2_atoms", [8, 1], [[0.1, 0.2, 0.3], [1.0, 0.5, 0.7]], cube, [True] * 3)
    tri = [[4.8, 0.0, 0.0], [1.6, 4.4, 0.0], [-0.9, 1.3, 4.6]]
    tri_numbers, tri_pos = _random_cluster(rng, 8, tri, [1, 6, 7, 8])
    add("triclinic_8", tri_numbers, tri_pos, tri, [True] * 3)
    # the same atoms displaced by whole lattice vectors: the same energy, forces, virial
    moves = [(3, -2, 5), (-4, 1, 0), (0, 0, -7), (11, 6, -3), (1, 1, 1), (-2, -9, 4), (0, 5, 0), (7, 0, 2)]
    unwrapped = [[p[a] + sum(m[k] * tri[k][a] for k in range(3)) for a in range(3)] for p, m in zip(tri_pos, moves)]
    add("triclinic_8_unwrapped", tri_numbers, unwrapped, tri, [True] * 3)
    slab = [[5.0, 0.0, 0.0], [2.0, 4.6, 0.0], [0.0, 0.0, 0.0]]
    slab_numbers, slab_pos = _random_cluster(rng, 7, slab, [1, 6, 8], z_range=(-1.5, 1.5))
    add("slab_zero_c", slab_numbers, slab_pos, slab, [True, True, False])
    slab_c = [slab[0], slab[1], [0.4, -0.3, 6.0]]  # c is ignored: z does not repeat
    slab_pos_shifted = [[p[0] + 5.0 * 2, p[1], p[2] + 8.0] for p in slab_pos]
    add("slab_with_c_unwrapped", slab_numbers, slab_pos_shifted, slab_c, [True, True, False])
    wire = [[3.1, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    add("wire_short_period", [6, 1, 8, 1], [[0.0, 0.0, 0.0], [0.9, 1.0, 0.2], [1.6, -0.3, 1.1], [2.4, -1.2, 0.5]], wire, [True, False, False])
    w = structures.water_box(64, seed=5)
    add("water_64", w.numbers, w.positions, w.cell, w.pbc)
    return out


def tiny_norms(model, numbers, positions, cell, pbc, threshold=1e-9):
    """Count of per-channel vector norms n with 0 < n < threshold over all blocks.

    Where n is zero in exact arithmetic but rounding leaves ~1e-17 (e.g. the centre of
    a perfect tetrahedron after a non-symmetric mixing), dn/dv = v/n points in a direction
    set by rounding: forces then depend on summation order at the 1e-3 level and no two
    implementations agree. Such structures make bad fixtures; exact zeros are fine."""
    seen = []
    original = ref.safe_norm

    def spy(v, dim):
        n = original(v, dim)
        seen.append(int(((n > 0) & (n < threshold)).sum()))
        return n

    ref.safe_norm = spy
    try:
        ref.compute(model, numbers, positions, cell, pbc)
    finally:
        ref.safe_norm = original
    return sum(seen)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep-checkpoint", action="store_true", help="reuse the existing checkpoint")
    parser.add_argument("--checkpoint", default=CHECKPOINT)
    parser.add_argument("--output", default=FIXTURES)
    parser.add_argument("--no-fd", action="store_true", help="skip the finite-difference checks")
    args = parser.parse_args(argv)
    if not args.keep_checkpoint:
        make_checkpoint(args.checkpoint)
    model = ref.load_model(args.checkpoint, torch.float64, "cpu", row_invariant=True)
    records, ok = [], True
    for name, numbers, positions, cell, pbc, fd in structures_list():
        out = ref.compute(model, numbers, positions, cell, pbc)
        note = ""
        tiny = tiny_norms(model, numbers, positions, cell, pbc)
        if tiny:  # harmless when the finite differences below agree (rounding-level v
            # whose derivative is rounding-level too, e.g. one atom in a periodic cell)
            note += f"({tiny} vector norms in (0, 1e-9)) "
        if fd and not args.no_fd:
            err_f, err_w = ref._fd_checks(model, numbers, positions, cell, pbc)
            good = err_f < 1e-6 and err_w < 1e-6
            ok &= good
            note += f"fd force {err_f:.0e} virial {err_w:.0e}{'' if good else ' FAILED'}"
        print(f"{name:26s} n={len(numbers):4d} edges={out['edges']:6d} E={out['energy']:+.10f} {note}")
        records.append(
            dict(
                name=name,
                numbers=numbers,
                positions=positions,
                cell=cell,
                pbc=pbc,
                energy=out["energy"],
                forces=out["forces"],
                virial=out["virial"],
                atom_energies=out["atom_energies"],
                edges=out["edges"],
            )
        )
    data = {
        "cutoff": CONFIG["cutoff"],
        "description": "float64 reference values of tests/data/student_random_h16.pt (random weights); see tests/data/README.md",
        "generator": f"tools/reference/make_fixtures.py, torch {torch.__version__}",
        "models": {STEM: records},
    }
    with open(args.output, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    print(f"wrote {args.output} ({os.path.getsize(args.output)} bytes), {args.checkpoint} ({os.path.getsize(args.checkpoint)} bytes)")
    if not ok:
        print("finite-difference check FAILED")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
