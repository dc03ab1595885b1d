#!/usr/bin/env python3
"""Runs NVE molecular dynamics of a periodic water box with an mlff model in OpenMM
and prints the total energy and the speed.

    # a random test model (its energies mean nothing), then 2000 steps on the CPU platform
    target/release/mlff random-model /tmp/model.safetensors --species H,O
    python examples/openmm/water_nve.py /tmp/model.safetensors --waters 4 --steps 2000

--ml-waters N puts only the first N waters under the model (ML/MM); the others
are then kept together by harmonic O-H bonds only (a toy MM region).
"""

import argparse
import time

import numpy as np
import openmm
from openmm import unit

import mlff_openmm


def water_box(n_per_side, spacing_nm, seed):
    """n_per_side^3 waters on a jittered lattice in a cubic box; returns numbers,
    positions (nm) and the box edge (nm)."""
    rng = np.random.default_rng(seed)
    r_oh, angle = 0.09572, np.deg2rad(104.52)
    local = np.array([[0, 0, 0], [r_oh, 0, 0], [r_oh * np.cos(angle), r_oh * np.sin(angle), 0]])
    positions = []
    for index in np.ndindex(n_per_side, n_per_side, n_per_side):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        center = (np.array(index) + 0.5) * spacing_nm + rng.uniform(-0.01, 0.01, 3)
        positions.append(center + (local - local.mean(axis=0)) @ q.T)
    return np.tile([8, 1, 1], n_per_side ** 3), np.concatenate(positions), n_per_side * spacing_nm


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="model file (.safetensors)")
    parser.add_argument("--waters", type=int, default=3, help="waters per box edge (default 3: 27 waters)")
    parser.add_argument("--ml-waters", type=int, default=None, help="only the first N waters under the model")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--dt-fs", type=float, default=0.5)
    parser.add_argument("--platform", default="CPU", help="Reference, CPU (or CUDA where installed)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--precision", default="f32", help="f32, f64 or mixed")
    parser.add_argument("--temperature", type=float, default=300.0, help="initial temperature, K")
    args = parser.parse_args()

    numbers, positions, edge = water_box(args.waters, 0.31, seed=1)
    system = openmm.System()
    for z in numbers:
        system.addParticle({1: 1.008, 8: 15.999}[int(z)])
    system.setDefaultPeriodicBoxVectors(openmm.Vec3(edge, 0, 0), openmm.Vec3(0, edge, 0), openmm.Vec3(0, 0, edge))

    if args.ml_waters is None:
        force = mlff_openmm.MlffForce(args.model, numbers, device=args.device, precision=args.precision)
    else:
        ml_atoms = list(range(3 * args.ml_waters))
        force = mlff_openmm.MlffForce(args.model, numbers[ml_atoms], atoms=ml_atoms,
                                      device=args.device, precision=args.precision)
        bonds = openmm.HarmonicBondForce()
        for first in range(3 * args.ml_waters, len(numbers), 3):
            bonds.addBond(first, first + 1, 0.09572, 4.0e5)
            bonds.addBond(first, first + 2, 0.09572, 4.0e5)
        bonds.setUsesPeriodicBoundaryConditions(True)
        system.addForce(bonds)
    force.setUsesPeriodicBoundaryConditions(True)
    system.addForce(force)

    integrator = openmm.VerletIntegrator(args.dt_fs * 1e-3)
    platform = openmm.Platform.getPlatformByName(args.platform)
    context = openmm.Context(system, integrator, platform)
    context.setPositions(positions)
    context.setVelocitiesToTemperature(args.temperature * unit.kelvin, 1)

    def total_energy():
        state = context.getState(getEnergy=True)
        return (state.getPotentialEnergy() + state.getKineticEnergy()).value_in_unit(unit.kilojoule_per_mole)

    e0 = total_energy()
    print(f"{len(numbers)} atoms, platform {args.platform}, library {mlff_openmm.library_version()}")
    print(f"step {0:6d}  E_total = {e0:.6f} kJ/mol")
    report = max(1, args.steps // 10)
    start = time.perf_counter()
    done = 0
    while done < args.steps:
        n = min(report, args.steps - done)
        integrator.step(n)
        done += n
        print(f"step {done:6d}  E_total = {total_energy():.6f} kJ/mol")
    elapsed = time.perf_counter() - start
    ns_per_day = args.steps * args.dt_fs * 1e-6 / (elapsed / 86400)
    print(f"E_end - E0 = {total_energy() - e0:+.3e} kJ/mol; {elapsed / args.steps * 1e3:.3f} ms/step, "
          f"{ns_per_day:.2f} ns/day (including the energy reports)")


if __name__ == "__main__":
    main()
