"""Molecular dynamics speed of MlffForce on OpenMM's CUDA platform: the device
path (positions and forces stay on the GPU) against the host path
(CustomCPPForceImpl: positions down, forces up, every step), on periodic water
boxes from tools/structures.py. Prints ns/day per case and writes JSON.

    python tests/openmm/bench_openmm_cuda.py --model MODEL [--atoms 3000,24000]
        [--cases f32:mixed,f64:double] [--seconds 5] [--out results.json]

Each case: Langevin middle integrator (300 K, 1/ps), 0.5 fs step, velocities at
300 K, MlffForce the only force; 10 warm-up steps, then a run of about
--seconds. The clock stops after a velocity download, which waits for the GPU.
"""

import argparse
import json
import math
import platform as host_platform
import sys
import time
from pathlib import Path

import openmm
from openmm import unit

import mlff_openmm

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
import structures  # noqa: E402

MASSES = {1: 1.008, 8: 15.999}
STEP_FS = 0.5


def water(n_atoms, seed=0):
    box = structures.water_box(math.ceil(n_atoms / 3), seed=seed)
    numbers = [int(z) for z in box.numbers]
    positions_nm = [[x * 0.1 for x in p] for p in box.positions]
    cell_nm = [[x * 0.1 for x in row] for row in box.cell]
    return numbers, positions_nm, cell_nm


def run_case(model, numbers, positions, cell, model_precision, platform_precision, device_path, seconds,
             platform_name="CUDA", device="cuda"):
    system = openmm.System()
    for z in numbers:
        system.addParticle(MASSES[z])
    system.setDefaultPeriodicBoxVectors(*[openmm.Vec3(*row) for row in cell])
    force = mlff_openmm.MlffForce(model, numbers, device=device, precision=model_precision)
    force.setUsesPeriodicBoundaryConditions(True)
    force.setUseDevicePath(device_path)
    system.addForce(force)
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond,
                                                 STEP_FS * unit.femtosecond)
    integrator.setRandomNumberSeed(1)
    platform = openmm.Platform.getPlatformByName(platform_name)
    properties = {"Precision": platform_precision} if platform_name in ("CUDA", "OpenCL") else {}
    started = time.perf_counter()
    context = openmm.Context(system, integrator, platform, properties)
    context.setPositions([openmm.Vec3(*p) for p in positions])
    context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    path = force.getComputePath(context)

    def sync():
        context.getState(getVelocities=True)

    integrator.step(10)
    sync()
    setup = time.perf_counter() - started
    t0 = time.perf_counter()
    integrator.step(10)
    sync()
    per_step = max((time.perf_counter() - t0) / 10, 1e-6)
    steps = int(min(max(seconds / per_step, 20), 200000))
    t0 = time.perf_counter()
    integrator.step(steps)
    sync()
    elapsed = time.perf_counter() - t0
    state = context.getState(getEnergy=True)
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    temperature = (2 * state.getKineticEnergy() / (3 * len(numbers) * unit.MOLAR_GAS_CONSTANT_R)).value_in_unit(
        unit.kelvin)
    ms_per_step = 1e3 * elapsed / steps
    ns_per_day = steps * STEP_FS * 1e-6 / elapsed * 86400
    del context, integrator
    return {
        "path": path, "steps": steps, "seconds": elapsed, "ms_per_step": ms_per_step, "ns_per_day": ns_per_day,
        "setup_seconds": setup, "final_potential_kj_mol": energy, "final_temperature_k": temperature,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--atoms", default="3000,24000")
    parser.add_argument("--cases", default="f32:mixed,f64:double",
                        help="model precision:OpenMM precision pairs; f64 cases run on the smallest box only")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--platform", default="CUDA", help="for dry runs elsewhere (only CUDA has the device path)")
    parser.add_argument("--device", default="cuda", help="mlff device (cuda; cpu for dry runs)")
    parser.add_argument("--out", help="JSON file of every run")
    parser.add_argument("--markdown", help="a table for benches/RESULTS.md")
    args = parser.parse_args()

    openmm.Platform.getPlatformByName(args.platform)
    status = mlff_openmm.cuda_device_path_status()
    if args.platform == "CUDA" and status != "loaded":
        sys.exit(f"the CUDA device path is unavailable: {status}")
    sizes = [int(x) for x in args.atoms.split(",")]
    cases = [tuple(c.split(":")) for c in args.cases.split(",")]
    results = {"openmm": openmm.version.full_version, "mlff": mlff_openmm.library_version(),
               "host": host_platform.node(), "model": str(args.model), "step_fs": STEP_FS,
               "integrator": "LangevinMiddle 300 K, 1/ps", "platform": args.platform, "runs": []}
    print(f"{'atoms':>6} {'model':>5} {'openmm':>7} {'path':>6} {'ms/step':>9} {'ns/day':>9} {'speedup':>8}")
    for n in sizes:
        numbers, positions, cell = water(n)
        for model_precision, platform_precision in cases:
            if model_precision == "f64" and n != min(sizes):
                continue
            row = {}
            for device_path in (True, False):
                r = run_case(args.model, numbers, positions, cell, model_precision, platform_precision,
                             device_path, args.seconds, args.platform, args.device)
                r.update(atoms=len(numbers), model_precision=model_precision, platform_precision=platform_precision)
                results["runs"].append(r)
                row[r["path"]] = r
                speedup = ""
                if r["path"] == "host" and "device" in row:
                    speedup = f"{row['device']['ns_per_day'] / r['ns_per_day']:.2f}x"
                print(f"{len(numbers):>6} {model_precision:>5} {platform_precision:>7} {r['path']:>6} "
                      f"{r['ms_per_step']:>9.3f} {r['ns_per_day']:>9.2f} {speedup:>8}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    if args.markdown:
        Path(args.markdown).write_text(markdown_table(results))
    print()
    print(markdown_table(results))


def markdown_table(results):
    lines = ["| atoms | model | OpenMM precision | device path ns/day (ms/step) | host path ns/day (ms/step) | device / host |",
             "|---|---|---|---|---|---|"]
    runs = results["runs"]
    keys = sorted({(r["atoms"], r["model_precision"], r["platform_precision"]) for r in runs})
    for key in keys:
        by_path = {r["path"]: r for r in runs if (r["atoms"], r["model_precision"], r["platform_precision"]) == key}
        cells = []
        for path in ("device", "host"):
            r = by_path.get(path)
            cells.append(f"{r['ns_per_day']:.2f} ({r['ms_per_step']:.3f})" if r else "-")
        ratio = (f"{by_path['device']['ns_per_day'] / by_path['host']['ns_per_day']:.2f}x"
                 if "device" in by_path and "host" in by_path else "-")
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {cells[0]} | {cells[1]} | {ratio} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
