"""Merge teacher_md.py worker outputs into a few files for $OUT.

Writes (at most 8 files, each < 16 MiB, as the device transfer allows):
  labelled_000.npz ...   teacher-labelled frames (positions, cell, energy,
                         forces, stress [ASE Voigt, eV/A^3], temp, step,
                         time_fs, phase, traj) + traj_names / traj_meta
  rdf_300K.npz           positions (frames, atoms, 3), cell, numbers, traj,
                         time_fs from the 300 K production runs (teacher RDF)
  summary.json           per-trajectory counts and timings
"""
from __future__ import annotations

import argparse
import glob
import json
import os

import numpy as np

MAX_BYTES = 12 * 2 ** 20


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-chunks", type=int, default=4)
    ap.add_argument("--max-frames", type=int, default=4000,
                    help="subsample evenly above this (keeps the training carry small)")
    ap.add_argument("--rdf-temp", type=float, default=300.0)
    args = ap.parse_args(argv)

    files = sorted(glob.glob(os.path.join(args.work, "*.npz")))
    files = [f for f in files if not f.endswith(".tmp.npz")]
    names, metas, parts, rdf = [], [], [], []
    numbers = None
    for f in files:
        try:
            d = np.load(f)
            meta = json.loads(str(d["meta"]))
        except Exception as exc:  # a worker killed while writing
            print(f"skip {f}: {exc}")
            continue
        if numbers is None:
            numbers = d["numbers"]
        elif len(d["numbers"]) != len(numbers) or (d["numbers"] != numbers).any():
            print(f"skip {f}: different atoms")
            continue
        k = len(names)
        names.append(meta["name"])
        metas.append(meta)
        if "energy" in d.files:
            nf = len(d["energy"])
            parts.append({key: d[key] for key in ("positions", "cell", "energy", "forces", "stress",
                                                  "temp", "step", "time_fs", "phase")}
                         | {"traj": np.full(nf, k, dtype=np.int16)})
        if "rdf_positions" in d.files and abs(meta["temp"] - args.rdf_temp) < 1 and meta["scale"] == 1.0:
            rdf.append((k, d["rdf_positions"], d["rdf_time_fs"], d["cell"][0] if "cell" in d.files else None))

    os.makedirs(args.out, exist_ok=True)
    summary = {"trajectories": [], "n_frames": 0}
    for k, m in enumerate(metas):
        nf = sum(int((p["traj"] == k).sum()) for p in parts)
        summary["trajectories"].append(dict(name=m["name"], temp=m["temp"], scale=m["scale"],
                                            n_steps=m.get("n_steps"), n_frames_sampled=nf,
                                            ms_per_step=None if m.get("t_step_s") is None
                                            else round(1e3 * m["t_step_s"], 2),
                                            save_every=m.get("save_every"),
                                            sim_ps=None if m.get("n_steps") is None
                                            else m["n_steps"] * m["dt"] / 1000))
    if parts:
        allp = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        nf = len(allp["energy"])
        per_frame = sum(v[0].nbytes for v in allp.values())
        chunk = max(1, MAX_BYTES // per_frame)
        n_chunks = -(-nf // chunk)
        cap = min(args.max_chunks * chunk, args.max_frames)
        if nf > cap:  # subsample evenly to fit the transfer limits
            keep = np.linspace(0, nf - 1, cap).round().astype(int)
            keep = np.unique(keep)
            allp = {key: v[keep] for key, v in allp.items()}
            nf = len(keep)
            n_chunks = -(-nf // chunk)
            print(f"subsampled to {nf} frames")
        for c in range(n_chunks):
            sl = slice(c * chunk, (c + 1) * chunk)
            np.savez(os.path.join(args.out, f"labelled_{c:03d}.npz"), numbers=numbers,
                     traj_names=np.array(names), traj_meta=np.array(json.dumps(metas)),
                     **{key: v[sl] for key, v in allp.items()})
        summary["n_frames"] = int(nf)
        summary["n_files"] = int(n_chunks)
        e = allp["energy"] / len(numbers)
        summary["energy_per_atom_mean_std"] = [float(e.mean()), float(e.std())]
        summary["force_rms"] = float(np.sqrt((allp["forces"].astype(np.float64) ** 2).mean()))
        ph = allp["phase"]
        summary["frames_by_phase"] = {int(p): int((ph == p).sum()) for p in np.unique(ph)}
    if rdf:
        pos = np.concatenate([r[1] for r in rdf])
        traj = np.concatenate([np.full(len(r[1]), r[0], dtype=np.int16) for r in rdf])
        tfs = np.concatenate([r[2] for r in rdf])
        cells = np.concatenate([np.repeat(r[3][None], len(r[1]), 0) for r in rdf])
        max_frames = max(1, (14 * 2 ** 20) // (pos[0].nbytes + 72))
        if len(pos) > max_frames:
            keep = np.linspace(0, len(pos) - 1, max_frames).round().astype(int)
            pos, traj, tfs, cells = pos[keep], traj[keep], tfs[keep], cells[keep]
        np.savez(os.path.join(args.out, "rdf_300K.npz"), positions=pos, cell=cells,
                 numbers=numbers, traj=traj, time_fs=tfs, traj_names=np.array(names))
        summary["rdf_frames"] = int(len(pos))
    with open(os.path.join(args.out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
