#!/usr/bin/env python3
"""Liquid water (64 H2O, 192 atoms, 1.0 g/cm3, periodic) in OpenMM with the shipped
mlff model: Langevin dynamics at 300 K (or NVE with --nve), 0.5 fs steps, printing
temperature and energies and the speed.

    source .venv/bin/activate          # OpenMM + the mlff_openmm plugin (scripts/test-openmm.sh builds it)
    python examples/openmm/water_md.py --steps 200
    python examples/openmm/water_md.py --platform CUDA --device auto --steps 20000

Defaults: model models/water-painn-sevennet0.safetensors (schnetpack PaiNN distilled
from SevenNet-0, H and O, PBE-level; card models/water-painn-sevennet0.md), start
models/water-192-300K.extxyz (a 300 K liquid configuration).
"""

import argparse
import os
import re
import time

import numpy as np
import openmm
from openmm import unit

import mlff_openmm

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
MASS = {1: 1.008, 8: 15.999}
Z = {"H": 1, "O": 8}


def read_extxyz(path):
    """First frame of an extended XYZ file: atomic numbers, positions (Å), cell rows (Å)."""
    with open(path) as f:
        n = int(f.readline())
        header = f.readline()
        cell = np.array([float(v) for v in re.search(r'Lattice="([^"]+)"', header).group(1).split()]).reshape(3, 3)
        rows = [f.readline().split() for _ in range(n)]
    numbers = np.array([Z[r[0]] for r in rows])
    positions = np.array([[float(v) for v in r[1:4]] for r in rows])
    return numbers, positions, cell


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=os.path.join(ROOT, "models", "water-painn-sevennet0.safetensors"))
    parser.add_argument("--start", default=os.path.join(ROOT, "models", "water-192-300K.extxyz"))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--dt-fs", type=float, default=0.5)
    parser.add_argument("--temperature", type=float, default=300.0, help="K: Langevin target and initial velocities")
    parser.add_argument("--friction", type=float, default=1.0, help="1/ps")
    parser.add_argument("--nve", action="store_true", help="Verlet (NVE) instead of Langevin")
    parser.add_argument("--platform", default="CPU", help="Reference, CPU or CUDA")
    parser.add_argument("--device", default="auto", help="where mlff computes: auto, cpu or cuda")
    parser.add_argument("--precision", default="f32", help="f32, f64 or mixed")
    parser.add_argument("--report", type=int, default=0, help="steps between reports (default steps/10)")
    args = parser.parse_args()

    numbers, positions, cell = read_extxyz(args.start)
    system = openmm.System()
    for z in numbers:
        system.addParticle(MASS[int(z)])
    a, b, c = (openmm.Vec3(*(row / 10.0)) for row in cell)  # Å -> nm
    system.setDefaultPeriodicBoxVectors(a, b, c)
    force = mlff_openmm.MlffForce(args.model, numbers, device=args.device, precision=args.precision)
    force.setUsesPeriodicBoundaryConditions(True)
    system.addForce(force)
    system.addForce(openmm.CMMotionRemover())

    dt = args.dt_fs * 1e-3  # ps
    if args.nve:
        integrator = openmm.VerletIntegrator(dt)
    else:
        integrator = openmm.LangevinMiddleIntegrator(args.temperature, args.friction, dt)
        integrator.setRandomNumberSeed(1)
    platform = openmm.Platform.getPlatformByName(args.platform)
    context = openmm.Context(system, integrator, platform)
    context.setPositions(positions / 10.0)
    context.setVelocitiesToTemperature(args.temperature * unit.kelvin, 1)
    n_dof = 3 * len(numbers) - 3
    kB = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)
    ev = 96.48533212  # kJ/mol per eV

    def report(step):
        s = context.getState(getEnergy=True)
        pe = s.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        ke = s.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
        print(f"step {step:7d}  T = {2 * ke / (n_dof * kB):7.1f} K  E_pot = {pe / ev:12.4f} eV  "
              f"E_tot = {(pe + ke) / ev:12.4f} eV", flush=True)
        return (pe + ke) / ev

    print(f"{len(numbers)} atoms, {'NVE' if args.nve else f'Langevin {args.temperature:g} K'}, "
          f"{args.dt_fs:g} fs, platform {args.platform}, mlff {mlff_openmm.library_version()}, model {args.model}")
    e0 = report(0)
    every = args.report or max(1, args.steps // 10)
    start, done = time.perf_counter(), 0
    while done < args.steps:
        n = min(every, args.steps - done)
        integrator.step(n)
        done += n
        e1 = report(done)
    elapsed = time.perf_counter() - start
    print(f"{args.steps} steps in {elapsed:.1f} s: {elapsed / args.steps * 1e3:.2f} ms/step, "
          f"{args.steps * dt * 1e-3 / (elapsed / 86400):.3f} ns/day (including the reports)")
    if args.nve:
        print(f"NVE: E_tot(end) - E_tot(0) = {1e3 * (e1 - e0) / len(numbers):+.4f} meV/atom after {args.steps * args.dt_fs / 1000:g} ps")


if __name__ == "__main__":
    main()
