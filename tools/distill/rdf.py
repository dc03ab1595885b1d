"""O-O radial distribution function and its first-peak position.

Reads frames from
  * .npz with `positions` (F, N, 3), `cell` (F, 3, 3) or (3, 3), `numbers` (N,)
    (rdf_300K.npz / labelled_*.npz from run_sample.sh; optional `time_fs`,
    `temp`, `traj`, `phase` are used for filtering), or
  * anything ase.io.read understands (extxyz, .traj, LAMMPS dump ...), all frames.

g(r) is histogrammed over all periodic images within r_max (any cell shape),
averaged over frames, normalised by the ideal-gas pair density.  The first
peak is located by a local quadratic fit: the maximum of g in [r_lo, r_hi]
(default 2.4-3.3 A), then a least-squares parabola through the bins within
+-`fit_half_width` A of it; the vertex is the peak position.

Examples
  python tools/distill/rdf.py .distill/data/rdf_300K.npz --skip-fs 1000 --json teacher_rdf.json
  python tools/distill/rdf.py student_nvt.extxyz --skip-frames 200 --label student \
      --ref teacher_rdf.json --plot rdf.png
"""
from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np


def load_frames(path, skip_fs=0.0, skip_frames=0, stride=1, temp=None, phase=None, every_traj=None):
    if path.endswith(".npz"):
        d = np.load(path)
        pos = d["positions"]
        cell = d["cell"]
        if cell.ndim == 2:
            cell = np.repeat(cell[None], len(pos), 0)
        numbers = d["numbers"]
        keep = np.ones(len(pos), dtype=bool)
        if "time_fs" in d.files and skip_fs > 0:
            keep &= d["time_fs"] >= skip_fs
        if temp is not None and "traj_meta" in d.files and "traj" in d.files:
            metas = json.loads(str(d["traj_meta"]))
            ok = [k for k, m in enumerate(metas) if abs(m["temp"] - temp) < 1 and m["scale"] == 1.0]
            keep &= np.isin(d["traj"], ok)
        if phase is not None and "phase" in d.files:
            keep &= d["phase"] == phase
        idx = np.nonzero(keep)[0][skip_frames::stride]
        return numbers, pos[idx], cell[idx]
    from ase.io import read
    frames = read(path, index=":")
    frames = frames[skip_frames::stride]
    numbers = frames[0].get_atomic_numbers()
    pos = np.stack([a.get_positions() for a in frames])
    cell = np.stack([np.array(a.get_cell()) for a in frames])
    return numbers, pos, cell


def rdf(numbers, pos, cell, z1=8, z2=8, r_max=6.0, dr=0.02):
    sel1 = np.nonzero(numbers == z1)[0]
    sel2 = np.nonzero(numbers == z2)[0]
    edges = np.arange(0.0, r_max + dr / 2, dr)
    hist = np.zeros(len(edges) - 1)
    norm = 0.0
    for x, c in zip(pos, cell):
        inv = np.linalg.inv(c)
        heights = 1.0 / np.linalg.norm(inv.T, axis=1)
        reps = [int(math.ceil(r_max / h)) for h in heights]
        S = np.array(np.meshgrid(*[np.arange(-r, r + 1) for r in reps], indexing="ij")).reshape(3, -1).T
        img = S @ c
        frac = x @ inv
        xw = (frac - np.floor(frac)) @ c
        a, b = xw[sel1], xw[sel2]
        d = b[None, None, :, :] + img[:, None, None, :] - a[None, :, None, :]
        r = np.sqrt((d * d).sum(-1)).ravel()
        r = r[(r > 1e-8) & (r < r_max)]
        hist += np.histogram(r, bins=edges)[0]
        V = abs(np.linalg.det(c))
        n_pairs = len(sel1) * (len(sel2) - (1 if z1 == z2 else 0))
        norm += n_pairs / V
    rc = 0.5 * (edges[1:] + edges[:-1])
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    g = hist / (norm * shell)
    return rc, g


def first_peak(r, g, r_lo=2.4, r_hi=3.3, fit_half_width=0.12):
    m = (r >= r_lo) & (r <= r_hi)
    i0 = np.nonzero(m)[0][np.argmax(g[m])]
    w = np.abs(r - r[i0]) <= fit_half_width + 1e-9
    c2, c1, c0 = np.polyfit(r[w] - r[i0], g[w], 2)
    if c2 >= 0:  # not a maximum: fall back to the bin centre
        return float(r[i0]), float(g[i0])
    x = -c1 / (2 * c2)
    x = float(np.clip(x, -fit_half_width, fit_half_width))
    return float(r[i0] + x), float(c0 + c1 * x + c2 * x * x)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+")
    ap.add_argument("--label", action="append", help="one per input")
    ap.add_argument("--skip-fs", type=float, default=0.0, help="npz: drop frames with time_fs below")
    ap.add_argument("--skip-frames", type=int, default=0)
    ap.add_argument("--stride", type=int, default=1)
    ap.add_argument("--temp", type=float, default=None, help="npz with traj_meta: keep trajectories at this T")
    ap.add_argument("--phase", type=int, default=None, help="labelled npz: 2 = production only")
    ap.add_argument("--r-max", type=float, default=6.0)
    ap.add_argument("--dr", type=float, default=0.02)
    ap.add_argument("--fit-half-width", type=float, default=0.12)
    ap.add_argument("--json", help="write results (r, g, peak) here")
    ap.add_argument("--ref", help="JSON from an earlier run: report peak differences to its first entry")
    ap.add_argument("--plot", help="PNG of all g(r) (and --ref)")
    args = ap.parse_args(argv)
    labels = args.label or args.inputs
    results = []
    for path, lab in zip(args.inputs, labels):
        numbers, pos, cell = load_frames(path, args.skip_fs, args.skip_frames, args.stride,
                                         args.temp, args.phase)
        if len(pos) == 0:
            sys.exit(f"{path}: no frames left after filtering")
        r, g = rdf(numbers, pos, cell, r_max=args.r_max, dr=args.dr)
        rp, gp = first_peak(r, g, fit_half_width=args.fit_half_width)
        dens = float(np.mean([(numbers == 8).sum() * 18.01528 / 6.02214076e23 / (abs(np.linalg.det(c)) * 1e-24)
                              for c in cell]))
        results.append(dict(label=lab, path=path, n_frames=int(len(pos)), peak_r=rp, peak_g=gp,
                            density_g_cm3=dens, r=r.round(4).tolist(), g=g.round(5).tolist()))
        print(f"{lab}: {len(pos)} frames, density {dens:.3f} g/cm3, O-O first peak r = {rp:.4f} A, g = {gp:.3f}")
    ref = None
    if args.ref:
        with open(args.ref) as fh:
            ref = json.load(fh)[0]
        for res in results:
            d = res["peak_r"] - ref["peak_r"]
            res["peak_shift_vs_ref"] = d
            print(f"{res['label']}: peak shift vs {ref['label']} = {d:+.4f} A "
                  f"({'within' if abs(d) <= 0.05 else 'OUTSIDE'} 0.05 A)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh)
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 4))
        for res in ([ref] if ref else []) + results:
            ax.plot(res["r"], res["g"], label=f"{res['label']} (peak {res['peak_r']:.3f} Å)")
        ax.set_xlabel("r / Å"); ax.set_ylabel("g$_{OO}$(r)"); ax.set_xlim(2.0, args.r_max)
        ax.legend(); fig.tight_layout(); fig.savefig(args.plot, dpi=130)


if __name__ == "__main__":
    main()
