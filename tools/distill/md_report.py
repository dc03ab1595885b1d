"""NVE energy conservation of `mlff md` trajectories (issue 8): drift and plot.

  python tools/distill/md_report.py nve --run f32:nve_f32.extxyz --run f64:nve_f64.txt \
      --json nve.json --plot nve.png

Each run is an extended-XYZ trajectory written by `mlff md --traj` (or just its
comment lines, `grep Lattice= traj.extxyz`): the comment lines carry energy,
kinetic_energy, time_fs.  Reported per atom: drift = least-squares slope of the
total energy x run length, and the maximum |E_tot(t) - E_tot(0)|.

  python tools/distill/md_report.py join OUT.extxyz --skip-fs 2000 a.extxyz b.extxyz
writes the frames of several NVT pieces (the first piece's first --skip-fs fs
dropped) as one positions-only trajectory for rdf.py.

  python tools/distill/md_report.py msd nvt.extxyz
oxygen mean-squared displacement (liquid check) and a diffusion coefficient.
"""
from __future__ import annotations

import argparse
import json
import re

import numpy as np


def headers(path):
    rows = []
    with open(path) as f:
        for line in f:
            if "Lattice=" not in line:
                continue
            get = lambda k: float(re.search(r"(?<![_a-z])" + k + r"=(\S+)", line).group(1))
            rows.append((get("time_fs"), get("energy"), get("kinetic_energy")))
    return np.array(rows)


def count_atoms(path):
    with open(path) as f:
        first = f.readline().strip()
    return int(first) if first.isdigit() else None


def nve(args):
    res = []
    for spec in args.run:
        label, path = spec.split(":", 1)
        h = headers(path)
        n = args.atoms or count_atoms(path)
        t, epot, ekin = h[:, 0], h[:, 1], h[:, 2]
        etot = epot + ekin
        span = t[-1] - t[0]
        slope = np.polyfit(t, etot, 1)[0]  # eV/fs
        dev = etot - etot[0]
        r = dict(label=label, path=path, n_atoms=n, n_frames=len(t), time_ps=span / 1000,
                 steps=int(round(span / args.dt_fs)),
                 drift_meV_per_atom=1e3 * slope * span / n,
                 drift_meV_per_atom_per_ps=1e3 * slope * 1000 / n,
                 max_abs_dev_meV_per_atom=1e3 * np.abs(dev).max() / n,
                 std_meV_per_atom=1e3 * etot.std() / n,
                 mean_T_K=float(np.mean(2 * ekin / (3 * n - 3) / 8.617333262e-5)))
        r["_t"], r["_dev"], r["_epot"] = (t / 1000).tolist(), (1e3 * dev / n).tolist(), (1e3 * (epot - epot[0]) / n).tolist()
        res.append(r)
        print(f"{label}: {r['steps']} steps ({r['time_ps']:.2f} ps), drift {r['drift_meV_per_atom']:+.4f} meV/atom "
              f"({r['drift_meV_per_atom_per_ps']:+.5f} meV/atom/ps), max |dE| {r['max_abs_dev_meV_per_atom']:.4f} meV/atom, "
              f"mean T {r['mean_T_K']:.1f} K")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{k: v for k, v in r.items() if not k.startswith("_")} for r in res], f, indent=1)
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(2, 1, figsize=(6.4, 5.0), sharex=True)
        for r in res:
            ax[0].plot(r["_t"], r["_dev"], lw=0.9, label=f"{r['label']}: drift {r['drift_meV_per_atom']:+.3f}, "
                       f"max |ΔE| {r['max_abs_dev_meV_per_atom']:.3f} meV/atom")
            ax[1].plot(r["_t"], r["_epot"], lw=0.7, label=r["label"])
        ax[0].set_ylabel("E_tot − E_tot(0)\n(meV/atom)")
        ax[0].axhline(1.0, color="grey", ls=":", lw=0.8); ax[0].axhline(-1.0, color="grey", ls=":", lw=0.8)
        ax[0].legend(fontsize=7); ax[0].set_title(args.title, fontsize=9)
        ax[1].set_ylabel("E_pot − E_pot(0)\n(meV/atom)"); ax[1].set_xlabel("t / ps"); ax[1].legend(fontsize=7)
        fig.tight_layout(); fig.savefig(args.plot, dpi=110)


def join(args):
    out = open(args.out, "w")
    kept = 0
    for k, path in enumerate(args.inputs):
        lines = open(path).read().split("\n")
        i = 0
        while i < len(lines) and lines[i].strip():
            n = int(lines[i]); h = lines[i + 1]
            t = float(re.search(r"time_fs=(\S+)", h).group(1))
            block = lines[i + 2:i + 2 + n]
            i += n + 2
            if len(block) < n or (k == 0 and t < args.skip_fs):
                continue
            lat = re.search(r'Lattice="[^"]+"', h).group(0)
            out.write(f'{n}\n{lat} Properties=species:S:1:pos:R:3 piece={k} time_fs={t} pbc="T T T"\n')
            out.write("\n".join(" ".join(l.split()[:4]) for l in block) + "\n")
            kept += 1
    print(f"{args.out}: {kept} frames")


def msd(args):
    """Oxygen mean-squared displacement of one trajectory (frames unwrapped by the
    minimum image between consecutive frames) and D from its linear part."""
    lines = open(args.traj).read().split("\n")
    i, t, X, cell = 0, [], [], None
    while i < len(lines) and lines[i].strip():
        n = int(lines[i]); h = lines[i + 1]
        block = lines[i + 2:i + 2 + n]
        i += n + 2
        if len(block) < n:
            break
        cell = np.array([float(v) for v in re.search(r'Lattice="([^"]+)"', h).group(1).split()]).reshape(3, 3)
        t.append(float(re.search(r"time_fs=(\S+)", h).group(1)))
        X.append([[float(v) for v in l.split()[1:4]] for l in block if l.split()[0] == "O"])
    t, X = np.array(t) / 1000, np.array(X)
    inv = np.linalg.inv(cell)
    d = np.diff(X, axis=0)
    f = d @ inv
    d = (f - np.round(f)) @ cell
    U = np.concatenate([X[:1], X[:1] + np.cumsum(d, axis=0)])
    lags = np.arange(1, len(t) // 2)
    m = np.array([((U[l:] - U[:-l]) ** 2).sum(-1).mean() for l in lags])
    tau = lags * (t[1] - t[0])
    half = len(lags) // 2
    slope = np.polyfit(tau[half:], m[half:], 1)[0]
    # slope in A^2/ps; 1 A^2/ps = 1e-16 cm^2 / 1e-12 s = 1e-4 cm^2/s
    res = dict(traj=args.traj, span_ps=float(t[-1] - t[0]), msd_A2_at_max_lag=float(m[-1]),
               max_lag_ps=float(tau[-1]), D_1e5_cm2_per_s=float(slope / 6 * 1e-4 / 1e-5))
    print(json.dumps(res))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("nve")
    a.add_argument("--run", action="append", required=True, help="LABEL:PATH")
    a.add_argument("--atoms", type=int, default=None, help="atom count if PATH holds comment lines only")
    a.add_argument("--dt-fs", type=float, default=0.5)
    a.add_argument("--json"); a.add_argument("--plot"); a.add_argument("--title", default="NVE, 192 atoms, 0.5 fs")
    b = sub.add_parser("join")
    b.add_argument("out"); b.add_argument("inputs", nargs="+"); b.add_argument("--skip-fs", type=float, default=0.0)
    c = sub.add_parser("msd")
    c.add_argument("traj"); c.add_argument("--json")
    args = ap.parse_args()
    {"nve": nve, "join": join, "msd": msd}[args.cmd](args)


if __name__ == "__main__":
    main()
