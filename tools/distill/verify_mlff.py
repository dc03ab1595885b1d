"""Held-out errors of the converted model, computed by mlff itself (f64, CPU), and
a check that mlff equals the schnetpack model's own prediction (issue 8).

  python tools/distill/verify_mlff.py --data .distill/data \
      --model models/water-painn-sevennet0.safetensors --mlff target/release/mlff \
      [--pt student_water_painn.pt --n-check 2] --json models/heldout_errors.json

Held-out set = the last 10 % (by MD step) of every teacher trajectory, exactly as
train.py's split_frames (copied here so this needs no torch).  Errors as train.py
reports them: energy per atom, force components, stress as the nine 3x3
components (ASE sign, sigma = (1/V) dE/d(eps)); mlff eval writes `stress` in the
ASE convention (-W/V) as 9 numbers.  --pt: also run the torch.save'd schnetpack
model (needs torch + schnetpack) in float64 on --n-check held-out frames.
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

EV_A3_TO_GPA = 160.21766208
SYMBOL = {1: "H", 8: "O"}


def load(data_dir):
    keys = ("positions", "cell", "energy", "forces", "stress", "traj", "step")
    parts = {k: [] for k in keys}
    numbers = names = None
    for f in sorted(glob.glob(os.path.join(data_dir, "labelled_*.npz"))):
        d = np.load(f)
        numbers, names = d["numbers"].astype(np.int64), [str(x) for x in d["traj_names"]]
        for k in keys:
            parts[k].append(d[k])
    return numbers, names, {k: np.concatenate(v) for k, v in parts.items()}


def split_frames(data, test_frac):  # = train.py split_frames
    test = []
    for t in np.unique(data["traj"]):
        idx = np.nonzero(data["traj"] == t)[0]
        idx = idx[np.argsort(data["step"][idx], kind="stable")]
        n_test = int(math.ceil(test_frac * len(idx))) if len(idx) > 1 else 0
        if n_test:
            test.extend(idx[-n_test:].tolist())
    test = np.array(sorted(test), dtype=np.int64)
    train = np.setdiff1d(np.arange(len(data["energy"])), test)
    return train, test


def voigt_to_3x3(s):
    out = np.empty(s.shape[:-1] + (3, 3))
    out[..., 0, 0], out[..., 1, 1], out[..., 2, 2] = s[..., 0], s[..., 1], s[..., 2]
    out[..., 1, 2] = out[..., 2, 1] = s[..., 3]
    out[..., 0, 2] = out[..., 2, 0] = s[..., 4]
    out[..., 0, 1] = out[..., 1, 0] = s[..., 5]
    return out


def write_extxyz(path, numbers, pos, cell):
    with open(path, "w") as f:
        for x, c in zip(pos, cell):
            lat = " ".join(repr(float(v)) for v in np.asarray(c, float).ravel())
            f.write(f'{len(numbers)}\nLattice="{lat}" Properties=species:S:1:pos:R:3 pbc="T T T"\n')
            for z, r in zip(numbers, np.asarray(x, float)):
                f.write(f"{SYMBOL[int(z)]} {float(r[0])!r} {float(r[1])!r} {float(r[2])!r}\n")


def read_mlff(path):
    lines = open(path).read().split("\n")
    out, k = [], 0
    while k < len(lines) and lines[k].strip():
        n = int(lines[k]); h = lines[k + 1]
        e = float(re.search(r"(?<![_a-z])energy=(\S+)", h).group(1))
        st = re.search(r'(?<![_a-z])stress="([^"]+)"', h)
        stress = np.array([float(v) for v in st.group(1).split()]).reshape(3, 3)
        props = re.search(r"Properties=(\S+)", h).group(1).split(":")
        col, fcol = 0, None
        for q in range(0, len(props), 3):
            if props[q] == "forces":
                fcol = col
            col += int(props[q + 2])
        F = np.array([[float(v) for v in l.split()[fcol:fcol + 3]] for l in lines[k + 2:k + 2 + n]])
        out.append((e, F, stress))
        k += n + 2
    return out


def errors(numbers, data, idx, pred):
    n = len(numbers)
    de = np.array([p[0] for p in pred]) / n - data["energy"][idx] / n
    df = np.stack([p[1] for p in pred]) - data["forces"][idx].astype(float)
    ds = np.stack([p[2] for p in pred]) - voigt_to_3x3(data["stress"][idx])
    return {
        "n_frames": int(len(idx)),
        "energy_mae_meV_per_atom": 1e3 * np.abs(de).mean(), "energy_rmse_meV_per_atom": 1e3 * np.sqrt((de ** 2).mean()),
        "energy_max_meV_per_atom": 1e3 * np.abs(de).max(),
        "forces_mae_meV_per_A": 1e3 * np.abs(df).mean(), "forces_rmse_meV_per_A": 1e3 * np.sqrt((df ** 2).mean()),
        "forces_max_meV_per_A": 1e3 * np.abs(df).max(),
        "stress_mae_GPa": EV_A3_TO_GPA * np.abs(ds).mean(), "stress_rmse_GPa": EV_A3_TO_GPA * np.sqrt((ds ** 2).mean()),
    }


def schnetpack_check(pt, numbers, data, idx, pred):
    import torch
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from neighbors import neighbor_list
    model = torch.load(pt, map_location="cpu", weights_only=False).double().eval()
    rows = []
    for k, p in zip(idx, pred):
        R = torch.tensor(data["positions"][k], dtype=torch.float64)
        C = torch.tensor(data["cell"][k], dtype=torch.float64)
        i, j, off = neighbor_list(R, C, 5.0)
        n = len(numbers)
        inp = {"_atomic_numbers": torch.tensor(numbers), "_positions": R.clone(), "_cell": C[None].clone(),
               "_pbc": torch.ones(1, 3, dtype=torch.bool), "_idx_i": i, "_idx_j": j, "_offsets": off,
               "_n_atoms": torch.tensor([n]), "_idx_m": torch.zeros(n, dtype=torch.long)}
        out = model(inp)
        e = float(out["energy"].detach()[0])
        F = out["forces"].detach().numpy()
        S = out["stress"].detach().numpy()[0]
        rows.append({"frame": int(k), "energy_schnetpack": e, "energy_mlff": p[0], "dE_eV": p[0] - e,
                     "max_dF_eV_per_A": float(np.abs(p[1] - F).max()),
                     "max_dstress_eV_per_A3": float(np.abs(p[2] - S).max())})
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=".distill/data")
    ap.add_argument("--model", default="models/water-painn-sevennet0.safetensors")
    ap.add_argument("--mlff", default="target/release/mlff")
    ap.add_argument("--precision", default="f64")
    ap.add_argument("--test-frac", type=float, default=0.1)
    ap.add_argument("--pt", help="torch.save'd schnetpack model for the equality check")
    ap.add_argument("--n-check", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args()
    numbers, names, data = load(args.data)
    _, test = split_frames(data, args.test_frac)
    with tempfile.TemporaryDirectory() as tmp:
        inp, outp = os.path.join(tmp, "in.extxyz"), os.path.join(tmp, "out.extxyz")
        write_extxyz(inp, numbers, data["positions"][test], data["cell"][test])
        subprocess.run([args.mlff, "eval", args.model, inp, outp, "--precision", args.precision,
                        "--device", "cpu"], check=True)
        pred = read_mlff(outp)
    res = {"model": args.model, "engine": f"mlff eval, cpu {args.precision}",
           "split": "held-out = last 10% (by MD step) of every teacher trajectory (train.py split_frames)",
           "heldout": errors(numbers, data, test, pred), "heldout_by_trajectory": {}}
    for t in np.unique(data["traj"][test]):
        m = data["traj"][test] == t
        res["heldout_by_trajectory"][names[t]] = errors(numbers, data, test[m], [p for p, q in zip(pred, m) if q])
    res["heldout_frame_indices"] = test.tolist()
    if args.pt:
        res["schnetpack_check"] = schnetpack_check(args.pt, numbers, data, test[:args.n_check], pred[:args.n_check])
    print(json.dumps({k: v for k, v in res.items() if k != "heldout_frame_indices"}, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
