"""One teacher-MD worker: SevenNet-0 + ASE Langevin on a water box.

Runs until a wall-clock deadline (unix time), saving teacher-labelled frames
(energy, forces, stress) every `save_every` steps and, optionally, positions
for the RDF every `rdf_every` steps.  Results are written atomically to
<out>/<name>.npz every few saved frames and on exit (also on SIGTERM), so a
killed worker still leaves what it did.

Phases: 0 = FIRE pre-relaxation is not saved; 1 = equilibration (strong
friction, frames saved sparsely); 2 = production.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

import numpy as np

T_START = time.time()


class Stop(Exception):
    pass


def _on_term(signum, frame):
    raise Stop()


def sevennet0_path() -> str:
    import sevenn._const as C
    p = C.SEVENNET_0_11Jul2024
    if not os.path.isfile(p):
        raise FileNotFoundError(f"SevenNet-0 checkpoint not in the package: {p}")
    return p


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--temp", type=float, default=300.0)
    ap.add_argument("--scale", type=float, default=1.0, help="linear box scale")
    ap.add_argument("--density", type=float, default=1.0)
    ap.add_argument("--n-side", type=int, default=4, help="molecules per edge (4 -> 192 atoms)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--deadline", type=float, required=True, help="unix time to stop")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dt", type=float, default=0.5, help="fs")
    ap.add_argument("--equil-fs", type=float, default=500.0)
    ap.add_argument("--equil-max-frac", type=float, default=0.35,
                    help="equilibration may use at most this fraction of the time left")
    ap.add_argument("--friction-equil", type=float, default=0.05, help="1/fs")
    ap.add_argument("--friction", type=float, default=0.01, help="1/fs, production")
    ap.add_argument("--target-frames", type=int, default=250)
    ap.add_argument("--min-save-every", type=int, default=5)
    ap.add_argument("--max-save-every", type=int, default=40)
    ap.add_argument("--equil-save-every", type=int, default=40)
    ap.add_argument("--rdf-every", type=int, default=0, help="0: no RDF positions")
    ap.add_argument("--relax-steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    signal.signal(signal.SIGTERM, _on_term)
    import torch
    torch.set_num_threads(args.threads)
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
    from ase.optimize import FIRE
    from sevenn.calculator import SevenNetCalculator

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from water import water_box

    os.makedirs(args.out, exist_ok=True)
    log = open(os.path.join(args.out, f"{args.name}.log"), "a", buffering=1)

    def say(msg):
        line = f"[{args.name} {time.time() - T_START:7.1f}s] {msg}"
        print(line, flush=True)
        log.write(line + "\n")

    dev = args.device
    if dev == "cuda" and not torch.cuda.is_available():
        say("WARNING: cuda not available, using cpu")
        dev = "cpu"
    ckpt = sevennet0_path()
    calc = SevenNetCalculator(model=ckpt, file_type="checkpoint", device=dev)
    atoms = water_box(n_per_side=args.n_side, density=args.density, scale=args.scale,
                      seed=args.seed)
    atoms.calc = calc
    n = len(atoms)
    say(f"loaded SevenNet-0 from {ckpt} on {dev}; {n} atoms, V={atoms.get_volume():.1f} A^3, "
        f"T={args.temp} K, scale={args.scale}")

    rec = {k: [] for k in ("positions", "cell", "energy", "forces", "stress",
                           "temp", "step", "time_fs", "phase")}
    rdf_pos, rdf_time = [], []
    meta = dict(vars(args))
    meta.update(numbers=atoms.get_atomic_numbers().tolist(), checkpoint=os.path.basename(ckpt))
    out_path = os.path.join(args.out, f"{args.name}.npz")
    state = dict(step=0, t_step=None, save_every=None, last_write=0)

    def record(phase):
        # results of the last force call are cached for the current positions
        e = atoms.get_potential_energy()
        f = atoms.get_forces()
        s = atoms.get_stress(voigt=True)  # ASE sign: (1/V) dE/d(strain), eV/A^3
        rec["positions"].append(atoms.get_positions(wrap=True).astype(np.float32))
        rec["cell"].append(np.array(atoms.get_cell()).astype(np.float64))
        rec["energy"].append(float(e))
        rec["forces"].append(f.astype(np.float32))
        rec["stress"].append(np.asarray(s, dtype=np.float64))
        rec["temp"].append(float(atoms.get_temperature()))
        rec["step"].append(state["step"])
        rec["time_fs"].append(state["step"] * args.dt)
        rec["phase"].append(phase)

    def write():
        tmp = out_path + ".tmp.npz"
        arrs = {}
        if rec["energy"]:
            arrs = dict(
                positions=np.stack(rec["positions"]), cell=np.stack(rec["cell"]),
                energy=np.array(rec["energy"]), forces=np.stack(rec["forces"]),
                stress=np.stack(rec["stress"]), temp=np.array(rec["temp"]),
                step=np.array(rec["step"]), time_fs=np.array(rec["time_fs"]),
                phase=np.array(rec["phase"], dtype=np.int8))
        if rdf_pos:
            arrs["rdf_positions"] = np.stack(rdf_pos)
            arrs["rdf_time_fs"] = np.array(rdf_time)
        m = dict(meta, t_step_s=state["t_step"], save_every=state["save_every"],
                 n_steps=state["step"], n_frames=len(rec["energy"]),
                 wall_s=time.time() - T_START)
        np.savez(tmp, numbers=atoms.get_atomic_numbers().astype(np.int16),
                 meta=np.array(json.dumps(m)), **arrs)
        os.replace(tmp, out_path)
        state["last_write"] = len(rec["energy"])

    def left():
        return args.deadline - time.time()

    try:
        # 0) remove close contacts of the lattice
        t0 = time.time()
        opt = FIRE(atoms, logfile=None)
        opt.run(fmax=0.5, steps=args.relax_steps)
        say(f"FIRE {opt.nsteps} steps, fmax={np.abs(atoms.get_forces()).max():.2f} eV/A, "
            f"{time.time() - t0:.1f}s; E={atoms.get_potential_energy():.3f} eV")

        rng = np.random.default_rng(args.seed + 1000)
        MaxwellBoltzmannDistribution(atoms, temperature_K=args.temp, rng=rng)
        Stationary(atoms)

        # 1) equilibration with strong friction (a lattice releases heat)
        dyn = Langevin(atoms, args.dt * units.fs, temperature_K=args.temp,
                       friction=args.friction_equil / units.fs, fixcm=False,
                       rng=np.random.RandomState(args.seed + 1))
        n_eq = int(round(args.equil_fs / args.dt))
        t0 = time.time()
        dyn.run(5)
        state["step"] += 5
        t_warm = time.time() - t0
        t0 = time.time()
        dyn.run(10)
        state["step"] += 10
        t_step = (time.time() - t0) / 10
        state["t_step"] = t_step
        n_eq = max(20, min(n_eq, int(args.equil_max_frac * left() / t_step)))
        say(f"first 5 steps {t_warm:.2f}s; {t_step * 1e3:.1f} ms/step; equilibrating "
            f"{n_eq} steps ({n_eq * args.dt:.0f} fs) at friction {args.friction_equil}/fs")
        while state["step"] < n_eq and left() > 0:
            dyn.run(1)
            state["step"] += 1
            if state["step"] % args.equil_save_every == 0:
                record(1)
            if state["step"] % 200 == 0:
                say(f"equil step {state['step']} T={atoms.get_temperature():.0f} K "
                    f"E={atoms.get_potential_energy():.3f} eV")

        # 2) production
        if left() <= 0:
            raise Stop()
        dyn = Langevin(atoms, args.dt * units.fs, temperature_K=args.temp,
                       friction=args.friction / units.fs, fixcm=False,
                       rng=np.random.RandomState(args.seed + 2))
        t0 = time.time()
        n_probe = max(1, min(20, int(0.05 * left() / max(t_step, 1e-3))))
        dyn.run(n_probe)
        state["step"] += n_probe
        t_step = (time.time() - t0) / n_probe
        state["t_step"] = t_step
        n_left = max(1, int(left() / t_step))
        every = int(round(n_left / max(1, args.target_frames)))
        every = max(args.min_save_every, min(args.max_save_every, every))
        state["save_every"] = every
        say(f"production: {t_step * 1e3:.1f} ms/step, ~{n_left} steps left, saving every {every}")
        p_step = 0
        while left() > 0:
            dyn.run(1)
            state["step"] += 1
            p_step += 1
            if p_step % every == 0:
                record(2)
                if len(rec["energy"]) - state["last_write"] >= 25:
                    write()
            if args.rdf_every and p_step % args.rdf_every == 0:
                rdf_pos.append(atoms.get_positions(wrap=True).astype(np.float32))
                rdf_time.append(state["step"] * args.dt)
            if p_step % 1000 == 0:
                say(f"prod step {p_step} T={atoms.get_temperature():.0f} K "
                    f"E={atoms.get_potential_energy():.3f} eV frames={len(rec['energy'])}")
        say("deadline reached")
    except Stop:
        say("stopped (SIGTERM or deadline): writing what was done")
    except Exception as exc:  # keep partial data
        say(f"ERROR {type(exc).__name__}: {exc}")
        write()
        raise
    write()
    say(f"done: {state['step']} steps, {len(rec['energy'])} frames, {len(rdf_pos)} rdf frames")


if __name__ == "__main__":
    main()
