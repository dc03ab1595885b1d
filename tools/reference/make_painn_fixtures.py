#!/usr/bin/env python3
"""Make the PaiNN fixtures: random-weight schnetpack 2.2.0 models (tests/data/painn_*.pt)
and the energies, forces and stresses schnetpack itself computes for them in float64
(tests/data/painn_fixtures.json).

    /work/torchvenv/bin/python tools/reference/make_painn_fixtures.py

Needs torch and schnetpack (2.2.0). Every model is a whole
`schnetpack.model.NeuralNetworkPotential` (PairwiseDistances + Strain input modules,
PaiNN, Atomwise energy, optionally ScaleProperty, Forces with stress, AddOffsets
post-processing) built with random float32 weights (biases included, so that every
term is exercised), saved as torch.save(model) (as `tools/distill` does) or as
{"hyperparameters", "state_dict"}, and evaluated after `.double()`: the float32 weights
widen exactly, so mlff's f64 engine must match to rounding.

The neighbour list is built here (all pairs within rc, periodic images included, each
directed pair exactly once), so the graph is exactly the one mlff builds.
Energies are schnetpack's `energy` after post-processing, forces its autograd `forces`,
and virial W = -V stress^T (mlff's convention W[a][b] = sum r_a F_b; schnetpack's
stress is dE/d(strain) / V). Molecules get a unit cube as a dummy cell (pbc off, no
offsets), so that `stress` is dE/d(strain) itself.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import sys

import torch

import schnetpack as spk
import schnetpack.properties as P
import schnetpack.transform as trn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
import structures  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
DATA = os.path.join(ROOT, "tests", "data")
FIXTURES = os.path.join(DATA, "painn_fixtures.json")
SEED = 20261125

# stem -> model configuration. Small widths keep the committed files small.
MODELS = {
    "painn_b1": dict(n_atom_basis=16, n_interactions=1, n_rbf=10, cutoff=4.0, shared_filters=False,
                     shared_interactions=False, epsilon=1e-8, readout=dict(n_hidden=None, n_layers=2),
                     scale=1.7, mean=-0.25, atomref=True, offsets_as="postprocessor", form="module"),
    "painn_b3_shared_filters": dict(n_atom_basis=16, n_interactions=3, n_rbf=12, cutoff=3.5, shared_filters=True,
                                    shared_interactions=False, epsilon=1e-8, readout=dict(n_hidden=None, n_layers=2),
                                    scale=None, mean=0.4, atomref=False, offsets_as="postprocessor", form="module"),
    "painn_b3": dict(n_atom_basis=16, n_interactions=3, n_rbf=8, cutoff=5.0, shared_filters=False,
                     shared_interactions=False, epsilon=1e-8, readout=dict(n_hidden=12, n_layers=3),
                     scale=0.8, mean=0.0, atomref=True, offsets_as="none", form="state_dict"),
    "painn_b5_shared_interactions": dict(n_atom_basis=12, n_interactions=5, n_rbf=8, cutoff=4.0, shared_filters=False,
                                         shared_interactions=True, epsilon=1e-6, readout=dict(n_hidden=None, n_layers=2),
                                         scale=1.3, mean=-0.1, atomref=True, offsets_as="output", form="module"),
}
SPECIES = [1, 6, 7, 8]


def build_model(cfg, gen):
    rc = cfg["cutoff"]
    painn = spk.representation.PaiNN(
        n_atom_basis=cfg["n_atom_basis"],
        n_interactions=cfg["n_interactions"],
        radial_basis=spk.nn.GaussianRBF(n_rbf=cfg["n_rbf"], cutoff=rc),
        cutoff_fn=spk.nn.CosineCutoff(rc),
        shared_interactions=cfg["shared_interactions"],
        shared_filters=cfg["shared_filters"],
        epsilon=cfg["epsilon"],
    )
    outputs = [spk.atomistic.Atomwise(n_in=cfg["n_atom_basis"], output_key="energy", **cfg["readout"])]
    atomref = None
    if cfg["atomref"]:
        atomref = torch.zeros(100)
        for z in SPECIES:
            atomref[z] = float(torch.randn(1, generator=gen)) * 3.0
    offsets = trn.AddOffsets("energy", add_mean=cfg["mean"] != 0.0, add_atomrefs=cfg["atomref"],
                             atomrefs=atomref, property_mean=torch.tensor([cfg["mean"]]))
    if cfg["offsets_as"] == "output":  # before the scaling: scaled with the energy
        outputs.append(offsets)
    if cfg["scale"] is not None:
        outputs.append(trn.ScaleProperty("energy", scale=torch.tensor([cfg["scale"]])))
    outputs.append(spk.atomistic.Forces(calc_forces=True, calc_stress=True))
    post = [trn.CastTo64()]
    if cfg["offsets_as"] == "postprocessor":
        post.append(offsets)
    model = spk.model.NeuralNetworkPotential(
        representation=painn,
        input_modules=[spk.atomistic.Strain(), spk.atomistic.PairwiseDistances()],
        output_modules=outputs,
        postprocessors=post,
    )
    # Random weights and biases (schnetpack initialises biases to zero).
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embedding" in name:
                p.copy_(torch.randn(p.shape, generator=gen))
            elif p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * (0.6 / math.sqrt(p.shape[1])))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    model.eval()
    return model, atomref


def neighbor_list(positions, cell, pbc, rc):
    """Every directed pair (i, j, shift) with |r_j - r_i + shift.cell| <= rc, j != i or shift != 0."""
    n = len(positions)
    reach = [0, 0, 0]
    if any(pbc):
        volume = abs(_det(cell))
        for a in range(3):
            if pbc[a]:
                b, c = cell[(a + 1) % 3], cell[(a + 2) % 3]
                spacing = volume / _norm(_cross(b, c))
                reach[a] = int(math.ceil(rc / spacing)) + 1
    # Fractional coordinates along the periodic axes: unwrapped positions need shifts
    # centred on the whole-cell part of r_j - r_i.
    frac = [_fractional(p, cell) if any(pbc) else [0.0] * 3 for p in positions]
    idx_i, idx_j, offs = [], [], []
    for i in range(n):
        for j in range(n):
            base = [-math.floor(frac[j][a] - frac[i][a] + 0.5) if pbc[a] else 0 for a in range(3)]
            for s0 in range(base[0] - reach[0], base[0] + reach[0] + 1):
                for s1 in range(base[1] - reach[1], base[1] + reach[1] + 1):
                    for s2 in range(base[2] - reach[2], base[2] + reach[2] + 1):
                        if i == j and s0 == s1 == s2 == 0:
                            continue
                        sh = [s0 * cell[0][a] + s1 * cell[1][a] + s2 * cell[2][a] for a in range(3)]
                        r = [(positions[j][a] - positions[i][a]) + sh[a] for a in range(3)]
                        if _norm(r) <= rc:
                            idx_i.append(i)
                            idx_j.append(j)
                            offs.append(sh)
    return idx_i, idx_j, offs


def _fractional(p, cell):
    inv = torch.linalg.inv(torch.tensor(cell, dtype=torch.float64))
    return (torch.tensor(p, dtype=torch.float64) @ inv).tolist()


def _det(m):
    return (m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]))


def _cross(a, b):
    return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]


def _norm(v):
    return math.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])


def evaluate(model64, numbers, positions, cell, pbc, rc):
    idx_i, idx_j, offs = neighbor_list(positions, cell, pbc, rc)
    periodic = any(pbc)
    dummy = [[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]
    used_cell = cell if periodic else dummy
    n = len(numbers)
    inputs = {
        P.Z: torch.tensor(numbers, dtype=torch.long),
        P.R: torch.tensor(positions, dtype=torch.float64),
        P.cell: torch.tensor([used_cell], dtype=torch.float64),
        P.pbc: torch.tensor([pbc], dtype=torch.bool),
        P.n_atoms: torch.tensor([n], dtype=torch.long),
        P.idx_m: torch.zeros(n, dtype=torch.long),
        P.idx_i: torch.tensor(idx_i, dtype=torch.long),
        P.idx_j: torch.tensor(idx_j, dtype=torch.long),
        P.offsets: torch.tensor(offs, dtype=torch.float64).reshape(-1, 3),
    }
    out = model64(inputs)
    energy = float(out["energy"].reshape(-1)[0])
    forces = out["forces"].detach().reshape(n, 3).tolist()
    stress = out["stress"].detach().reshape(3, 3)
    volume = abs(_det(used_cell))
    virial = (-stress.T * volume).tolist()
    return energy, forces, stress.tolist(), virial, len(idx_i)


def random_cluster(rng, n, cell, min_dist=1.0, z_range=None):
    pts = []
    while len(pts) < n:
        f = [rng.uniform(0.0, 1.0) for _ in range(3)]
        p = [sum(f[k] * cell[k][a] for k in range(3)) for a in range(3)]
        if z_range is not None:
            p[2] = rng.uniform(*z_range)
        ok = True
        for q in pts:
            for s0 in (-1, 0, 1):
                for s1 in (-1, 0, 1):
                    for s2 in (-1, 0, 1):
                        sh = [s0 * cell[0][a] + s1 * cell[1][a] + s2 * cell[2][a] for a in range(3)]
                        ok &= _norm([p[a] + sh[a] - q[a] for a in range(3)]) >= min_dist
        if ok:
            pts.append([round(x, 10) for x in p])
    return [rng.choice(SPECIES) for _ in range(n)], pts


def structures_for(rc, rng, big):
    zero = [[0.0] * 3 for _ in range(3)]
    off = [False] * 3
    out = []

    def add(name, numbers, positions, cell=zero, pbc=off):
        out.append((name, list(numbers), [list(map(float, p)) for p in positions], [list(map(float, r)) for r in cell], list(pbc)))

    add("isolated_atom", [6], [[0.1, -0.2, 0.3]])
    add("pair_inside", [1, 8], [[0.0, 0.0, 0.0], [0.3 * rc, 0.5 * rc, -0.2 * rc]])
    add("pair_at_rc", [6, 8], [[0.0, 0.0, 0.0], [rc, 0.0, 0.0]])
    add("pair_just_inside_rc", [6, 8], [[0.0, 0.0, 0.0], [0.0, rc * (1 - 1e-9), 0.0]])
    add("pair_just_outside_rc", [6, 8], [[0.0, 0.0, 0.0], [0.0, 0.0, rc * (1 + 1e-12)]])
    add("water_molecule", [8, 1, 1], [[0.0, 0.0, 0.11730], [0.0, 0.75720, -0.46920], [0.0, -0.75720, -0.46920]])
    add("methane_distorted", [6, 1, 1, 1, 1], [[0.01, -0.02, 0.0], [0.6291, 0.6391, 0.6291], [-0.6291, -0.6291, 0.6191], [-0.6391, 0.6291, -0.6291], [0.6291, -0.6291, -0.6241]])
    m = structures.organic_molecule(14, seed=3)
    add("organic_14", m.numbers, m.positions)
    add("single_atom_cube_2.7", [8], [[0.3, 0.2, 0.1]], [[2.7, 0, 0], [0, 2.7, 0], [0, 0, 2.7]], [True] * 3)
    add("small_cube_2_atoms", [8, 1], [[0.1, 0.2, 0.3], [1.0, 0.5, 0.7]], [[3.2, 0, 0], [0, 3.2, 0], [0, 0, 3.2]], [True] * 3)
    tri = [[4.8, 0.0, 0.0], [1.6, 4.4, 0.0], [-0.9, 1.3, 4.6]]
    tri_numbers, tri_pos = random_cluster(rng, 6, tri)
    add("triclinic_6", tri_numbers, tri_pos, tri, [True] * 3)
    moves = [(3, -2, 5), (-4, 1, 0), (0, 0, -7), (11, 6, -3), (1, 1, 1), (-2, -9, 4)]
    unwrapped = [[p[a] + sum(mv[k] * tri[k][a] for k in range(3)) for a in range(3)] for p, mv in zip(tri_pos, moves)]
    add("triclinic_6_unwrapped", tri_numbers, unwrapped, tri, [True] * 3)
    slab = [[5.0, 0.0, 0.0], [2.0, 4.6, 0.0], [0.0, 0.0, 20.0]]  # c does not repeat
    slab_numbers, slab_pos = random_cluster(rng, 5, slab, z_range=(-1.5, 1.5))
    add("slab", slab_numbers, slab_pos, slab, [True, True, False])
    if big:
        w = structures.water_box(24, seed=5)
        add("water_24", w.numbers, w.positions, w.cell, w.pbc)
    return out


def save(model, atomref, cfg, path):
    if cfg["form"] == "module":
        torch.save(model, path)
        return
    hyper = {
        "architecture": "painn",
        "n_atom_basis": cfg["n_atom_basis"],
        "n_interactions": cfg["n_interactions"],
        "n_rbf": cfg["n_rbf"],
        "cutoff": cfg["cutoff"],
        "rbf": "gaussian",
        "rbf_start": 0.0,
        "cutoff_fn": "cosine",
        "shared_interactions": cfg["shared_interactions"],
        "shared_filters": cfg["shared_filters"],
        "epsilon": cfg["epsilon"],
        "activation": "silu",
        "readout": {"n_hidden": cfg["readout"]["n_hidden"], "n_layers": cfg["readout"]["n_layers"], "activation": "silu"},
        # float32 values: exactly what ScaleProperty / AddOffsets hold in their buffers.
        "stddev": float(torch.tensor([cfg["scale"]])[0]) if cfg["scale"] is not None else 1.0,
        "mean": float(torch.tensor([cfg["mean"]])[0]),
        "atomref": None,
        "elements": ["H", "C", "N", "O"],
    }
    state = {k: v.detach().clone() for k, v in model.state_dict().items()
             if k.startswith("representation.") or k.startswith("output_modules.0.")}
    if atomref is not None:
        hyper["atomref"] = [float(x) for x in atomref]
    # The plain form means: energy = stddev * sum(readout) + sum(mean + atomref[Z]).
    if cfg["offsets_as"] == "output":
        raise ValueError("the state-dict form scales before adding offsets")
    torch.save({"hyperparameters": hyper, "state_dict": state}, path)


def main() -> int:
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    rng = random.Random(SEED)
    report = {"description": "float64 energies (eV), forces (eV/Å), schnetpack stress (dE/dstrain / V; "
                             "unit-cube dummy cell for molecules) and virial W = -V stress^T of random-weight "
                             "schnetpack PaiNN models; see tests/data/README.md",
              "generator": f"tools/reference/make_painn_fixtures.py, schnetpack {spk.__version__}, torch {torch.__version__}",
              "models": {}}
    for stem, cfg in MODELS.items():
        model, atomref = build_model(cfg, gen)
        path = os.path.join(DATA, f"{stem}.pt")
        save(model, atomref, cfg, path)
        reference = copy.deepcopy(model)
        if cfg["offsets_as"] == "none":
            # The plain form's post-processing (mean + atomref), added the schnetpack way.
            reference.postprocessors.append(trn.AddOffsets("energy", add_mean=cfg["mean"] != 0.0,
                                                           add_atomrefs=atomref is not None,
                                                           atomrefs=atomref if atomref is not None else torch.zeros(100),
                                                           property_mean=torch.tensor([cfg["mean"]])))
        reference = reference.double()
        rc = cfg["cutoff"]
        records = []
        for name, numbers, positions, cell, pbc in structures_for(rc, rng, big=stem == "painn_b1"):
            energy, forces, stress, virial, edges = evaluate(reference, numbers, positions, cell, pbc, rc)
            print(f"{stem:30s} {name:24s} n={len(numbers):3d} edges={edges:5d} E={energy:+.10f}")
            records.append(dict(name=name, numbers=numbers, positions=positions, cell=cell, pbc=pbc,
                                energy=energy, forces=forces, stress=stress, virial=virial, edges=edges))
        report["models"][stem] = dict(config={k: v for k, v in cfg.items()}, cutoff=rc, structures=records)
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")
    with open(FIXTURES, "w") as f:
        json.dump(report, f, indent=0)
        f.write("\n")
    print(f"wrote {FIXTURES} ({os.path.getsize(FIXTURES)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
