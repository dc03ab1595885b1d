"""Tests of the OpenMM plugin (mlff_openmm.MlffForce) on the Reference and CPU
platforms, against libmlff called directly through ctypes (Å, eV)."""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import openmm
import pytest
from openmm import unit

import mlff_openmm
from openmm_ctypes_driver import MlffError
from openmm_structures import CUBIC_BOX, MASSES, water_box, water_cluster

PLATFORMS = ["Reference", "CPU"]

KJ_PER_MOL_PER_EV = 96.48533212331  # exact: e * N_A / 1000
FORCE_SCALE = KJ_PER_MOL_PER_EV * 10.0  # eV/Å -> kJ/mol/nm


def make_context(force, numbers, positions, box=None, platform="Reference", masses=None, other_forces=()):
    system = openmm.System()
    for z in numbers:
        system.addParticle(MASSES[int(z)] if masses is None else masses)
    if box is not None:
        system.setDefaultPeriodicBoxVectors(*[openmm.Vec3(*row) for row in box])
        force.setUsesPeriodicBoundaryConditions(True)
    system.addForce(force)
    for other in other_forces:
        system.addForce(other)
    integrator = openmm.VerletIntegrator(0.0005)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform))
    context.setPositions(positions)
    return context


def energy_forces(context, groups=-1):
    state = context.getState(getEnergy=True, getForces=True, getPositions=True, groups=groups)
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    positions = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    return energy, np.asarray(forces), np.asarray(positions)


def reference(library, model_path, numbers, positions_nm, box_nm, precision="f64"):
    """The library's energy and forces in OpenMM units."""
    model = library.open(model_path, device="cpu", precision=precision)
    cell = None if box_nm is None else np.asarray(box_nm) * 10.0
    energy, forces = model.compute(numbers, np.asarray(positions_nm) * 10.0, cell)
    return energy * KJ_PER_MOL_PER_EV, forces * FORCE_SCALE


def assert_close(energy, forces, ref_energy, ref_forces, rtol):
    assert abs(energy - ref_energy) <= rtol * abs(ref_energy), (energy, ref_energy)
    scale = np.max(np.abs(ref_forces))
    assert scale > 0
    assert np.max(np.abs(forces - ref_forces)) <= rtol * scale, np.max(np.abs(forces - ref_forces)) / scale


# --- construction and settings -------------------------------------------------------

def test_constants():
    assert mlff_openmm.KJ_PER_MOL_PER_EV == KJ_PER_MOL_PER_EV
    assert mlff_openmm.ANGSTROM_PER_NM == 10.0
    assert mlff_openmm.library_version() != ""


def test_construction_and_getters(tmp_path):
    path = tmp_path / "model.safetensors"  # not opened before a Context exists
    force = mlff_openmm.MlffForce(path, np.array([8, 1, 1], dtype=np.int64), atoms=np.array([5, 3, 4]),
                                  device="cpu", precision="mixed")
    assert isinstance(force, openmm.Force)
    assert force.getModelPath() == str(path)
    assert force.getNumbers() == [8, 1, 1]
    assert force.getAtoms() == [5, 3, 4]
    assert force.getDevice() == "cpu"
    assert force.getPrecision() == "mixed"
    assert not force.usesPeriodicBoundaryConditions()
    force.setUsesPeriodicBoundaryConditions(True)
    assert force.usesPeriodicBoundaryConditions()
    default = mlff_openmm.MlffForce(str(path), [1, 1])
    assert (default.getAtoms(), default.getDevice(), default.getPrecision()) == ([], "auto", "f32")
    assert (default.getDeviceIndex(), default.getNumThreads()) == (0, 0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(device="gpu"), 'unknown device "gpu"'),
    (dict(precision="f16"), 'unknown precision "f16"'),
    (dict(atoms=[0, 1]), "3 atomic numbers for 2 particles"),
    (dict(atoms=[0, 1, 1]), "particle 1 appears twice"),
    (dict(atoms=[0, -1, 2]), "is negative"),
])
def test_invalid_settings_raise(kwargs, message):
    with pytest.raises(openmm.OpenMMException, match=message):
        mlff_openmm.MlffForce("model.safetensors", [8, 1, 1], **kwargs)


def test_numbers_must_be_integers():
    with pytest.raises(TypeError):
        mlff_openmm.MlffForce("model.safetensors", ["O", "H", "H"])
    with pytest.raises(openmm.OpenMMException, match="numbers is empty"):
        mlff_openmm.MlffForce("model.safetensors", [])


# --- energies and forces against the library -------------------------------------------

@pytest.mark.parametrize("platform", PLATFORMS)
def test_matches_library_f64(model_path, library, structure, platform):
    name, numbers, positions, box = structure
    force = mlff_openmm.MlffForce(model_path, numbers, device="cpu", precision="f64")
    context = make_context(force, numbers, positions, box, platform)
    energy, forces, used_positions = energy_forces(context)
    ref_energy, ref_forces = reference(library, model_path, numbers, used_positions, box)
    assert_close(energy, forces, ref_energy, ref_forces, rtol=1e-9)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_matches_library_default_f32(model_path, library, platform):
    numbers, positions = water_box(2, CUBIC_BOX, seed=3)
    force = mlff_openmm.MlffForce(model_path, numbers, device="cpu")  # precision f32 by default
    context = make_context(force, numbers, positions, CUBIC_BOX, platform)
    energy, forces, used_positions = energy_forces(context)
    ref_energy, ref_forces = reference(library, model_path, numbers, used_positions, CUBIC_BOX, precision="f32")
    assert_close(energy, forces, ref_energy, ref_forces, rtol=1e-6)
    # and f32 is close to the f64 reference
    ref64_energy, ref64_forces = reference(library, model_path, numbers, used_positions, CUBIC_BOX)
    assert_close(energy, forces, ref64_energy, ref64_forces, rtol=1e-3)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_public_fixtures(public_fixtures, platform):
    """The released students through OpenMM reproduce the public fixtures (float64,
    an independent PyTorch implementation) within the engine's own tolerances:
    1e-9 eV on the energy, 1e-8 eV/Å on the forces, converted."""
    models, data = public_fixtures
    for stem, path in models.items():
        for item in data["models"][stem]:
            numbers = np.array(item["numbers"])
            positions = np.array(item["positions"]) * 0.1
            box = np.array(item["cell"]) * 0.1 if all(item["pbc"]) else None
            assert any(item["pbc"]) == all(item["pbc"])  # OpenMM is periodic on all axes or none
            force = mlff_openmm.MlffForce(path, numbers, device="cpu", precision="f64")
            context = make_context(force, numbers, positions, box, platform, masses=1.0)
            energy, forces, _ = energy_forces(context)
            ref_energy = item["energy"] * KJ_PER_MOL_PER_EV
            ref_forces = np.array(item["forces"]) * FORCE_SCALE
            assert abs(energy - ref_energy) <= 1e-9 * KJ_PER_MOL_PER_EV * max(1.0, abs(item["energy"])), \
                (stem, item["name"], energy, ref_energy)
            assert np.max(np.abs(forces - ref_forces)) <= 1e-8 * FORCE_SCALE, (stem, item["name"])


def test_box_from_context_and_unwrapped_positions(model_path, library):
    """Particles moved by lattice vectors give the same result; a new box set on the
    Context is used."""
    box = np.array([[0.70, 0.0, 0.0], [0.20, 0.65, 0.0], [-0.15, 0.25, 0.60]])
    numbers, positions = water_box(2, box, seed=5)
    force = mlff_openmm.MlffForce(model_path, numbers, device="cpu", precision="f64")
    context = make_context(force, numbers, positions, box)
    energy, forces, _ = energy_forces(context)
    shifted = positions.copy()
    shifted[0] += box[0] - 2 * box[2]
    shifted[4] -= box[1]
    shifted[9] += 3 * box[2] + box[1]
    context.setPositions(shifted)
    energy_shifted, forces_shifted, _ = energy_forces(context)
    assert_close(energy_shifted, forces_shifted, energy, forces, rtol=1e-9)

    bigger = box * 1.05
    context.setPeriodicBoxVectors(*[openmm.Vec3(*row) for row in bigger])
    context.setPositions(positions)
    energy_big, forces_big, used = energy_forces(context)
    ref_energy, ref_forces = reference(library, model_path, numbers, used, bigger)
    assert_close(energy_big, forces_big, ref_energy, ref_forces, rtol=1e-9)
    assert abs(energy_big - energy) > 1e-6 * abs(energy)


@pytest.mark.parametrize("periodic", [False, True])
def test_finite_differences(model_path, periodic):
    if periodic:
        numbers, positions = water_box(2, CUBIC_BOX, seed=7)
        box = CUBIC_BOX
    else:
        numbers, positions = water_cluster(4, seed=7)
        box = None
    force = mlff_openmm.MlffForce(model_path, numbers, device="cpu", precision="f64")
    context = make_context(force, numbers, positions, box)
    _, forces, _ = energy_forces(context)
    scale = np.max(np.abs(forces))
    h = 1e-5  # nm
    rng = np.random.default_rng(0)
    for atom, axis in zip(rng.choice(len(numbers), 8, replace=False), rng.integers(0, 3, 8)):
        energies = []
        for sign in (1, -1):
            moved = positions.copy()
            moved[atom, axis] += sign * h
            context.setPositions(moved)
            energies.append(context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
        numeric = -(energies[0] - energies[1]) / (2 * h)
        assert abs(numeric - forces[atom, axis]) <= 1e-6 * scale, (atom, axis, numeric, forces[atom, axis])


# --- ML/MM: a particle subset ------------------------------------------------------

@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("periodic", [False, True])
def test_particle_subset(model_path, library, platform, periodic):
    box = CUBIC_BOX if periodic else None
    numbers, positions = water_box(2, CUBIC_BOX, seed=9)  # 8 waters, 24 particles
    ml_atoms = [7, 6, 8, 0, 2, 1, 15, 16, 17]              # three waters, in a scrambled order
    ml_numbers = numbers[ml_atoms]
    # An MM force in its own group, on particles inside and outside the ML region.
    bonds = openmm.HarmonicBondForce()
    bonds.addBond(3, 4, 0.1, 1000.0)
    bonds.addBond(0, 10, 0.2, 500.0)
    bonds.setForceGroup(1)
    bonds.setUsesPeriodicBoundaryConditions(periodic)
    force = mlff_openmm.MlffForce(model_path, ml_numbers, atoms=ml_atoms, device="cpu", precision="f64")
    context = make_context(force, numbers, positions, box, platform, other_forces=[bonds])

    energy, forces, used = energy_forces(context, groups={0})
    outside = np.setdiff1d(np.arange(len(numbers)), ml_atoms)
    assert np.all(forces[outside] == 0.0)
    ref_energy, ref_forces = reference(library, model_path, ml_numbers, used[ml_atoms], box)
    assert_close(energy, forces[ml_atoms], ref_energy, ref_forces, rtol=1e-9)

    mm_energy, mm_forces, _ = energy_forces(context, groups={1})
    total_energy, total_forces, _ = energy_forces(context)
    assert abs(total_energy - (energy + mm_energy)) <= 1e-9 * (abs(energy) + abs(mm_energy))
    assert np.allclose(total_forces, forces + mm_forces, rtol=1e-12, atol=1e-9)
    assert np.any(mm_forces[outside] != 0.0)


# --- dynamics --------------------------------------------------------------------

def add_water_mm(system, n_atoms, periodic):
    """Flexible-water bonds and an intermolecular r^-12 wall, in force group 1: the
    random model has no short-range repulsion and would let atoms collapse."""
    bonds = openmm.HarmonicBondForce()
    repulsion = openmm.CustomNonbondedForce("4e-7/r^12")
    if periodic:
        bonds.setUsesPeriodicBoundaryConditions(True)
        repulsion.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffPeriodic)
        repulsion.setCutoffDistance(0.32)
    for _ in range(n_atoms):
        repulsion.addParticle([])
    for o in range(0, n_atoms, 3):
        bonds.addBond(o, o + 1, 0.09572, 5e5)
        bonds.addBond(o, o + 2, 0.09572, 5e5)
        bonds.addBond(o + 1, o + 2, 0.1514, 2.5e5)
        for i, j in ((o, o + 1), (o, o + 2), (o + 1, o + 2)):
            repulsion.addExclusion(i, j)
    for force in (bonds, repulsion):
        force.setForceGroup(1)
        system.addForce(force)


def run_nve(context, dt_ps, steps, samples=100):
    """Velocity Verlet; returns times (ps), total energies (kJ/mol), kinetic energies."""
    integrator = context.getIntegrator()
    integrator.setStepSize(dt_ps)
    every = steps // samples
    times, totals, kinetic = [], [], []
    for sample in range(samples + 1):
        if sample:
            integrator.step(every)
        state = context.getState(getEnergy=True)
        ke = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
        pe = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        times.append(sample * every * dt_ps)
        totals.append(ke + pe)
        kinetic.append(ke)
    return np.array(times), np.array(totals), np.array(kinetic)


def report_nve(capsys, label, n_atoms, dt_ps, steps, times, totals, kinetic):
    slope = np.polyfit(times, totals, 1)[0]  # kJ/mol/ps
    max_dev = float(np.max(np.abs(totals - totals[0])))
    with capsys.disabled():
        print(f"\n[NVE {label}] {n_atoms} atoms, {steps} steps of {dt_ps * 1000:g} fs: "
              f"E0 = {totals[0]:.4f} kJ/mol, E_end - E0 = {totals[-1] - totals[0]:+.3e} kJ/mol, "
              f"max|E - E0| = {max_dev:.3e} kJ/mol, drift = {slope:+.3e} kJ/mol/ps "
              f"= {slope / KJ_PER_MOL_PER_EV * 1000 / n_atoms:+.3e} meV/atom/ps, "
              f"mean KE = {np.mean(kinetic):.3f} kJ/mol")
    return max_dev


@pytest.mark.parametrize("precision", ["f64", "f32"])
def test_nve_energy_conservation(wide_model_path, precision, capsys):
    """1000 velocity-Verlet steps of 0.5 fs of a 3-water cluster (model + MM bonds and
    wall). Every pair stays inside rc, so the model is smooth and the total energy
    must be conserved up to Verlet's O(dt^2) error: halving dt divides the
    fluctuation by about 4. Wrong forces (sign, units, a missing term) break both."""
    numbers, positions = water_cluster(3, seed=21)
    force = mlff_openmm.MlffForce(wide_model_path, numbers, device="cpu", precision=precision)
    context = make_context(force, numbers, positions)
    system = context.getSystem()
    add_water_mm(system, len(numbers), periodic=False)
    context.reinitialize()
    context.setPositions(positions)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    start = context.getState(getPositions=True, getVelocities=True)

    ml_energy_start = context.getState(getEnergy=True, groups={0}).getPotentialEnergy()
    times, totals, kinetic = run_nve(context, 0.0005, 1000)
    ml_energy_end = context.getState(getEnergy=True, groups={0}).getPotentialEnergy()
    max_dev = report_nve(capsys, f"{precision}, cluster", len(numbers), 0.0005, 1000, times, totals, kinetic)

    context.setState(start)
    _, totals_half, _ = run_nve(context, 0.00025, 2000)
    max_dev_half = float(np.max(np.abs(totals_half - totals_half[0])))
    with capsys.disabled():
        print(f"[NVE {precision}, cluster] dt/2: max|E - E0| = {max_dev_half:.3e} kJ/mol "
              f"(ratio {max_dev / max_dev_half:.2f}; Verlet: 4)")
    # the model did real work during the run
    assert abs((ml_energy_end - ml_energy_start).value_in_unit(unit.kilojoule_per_mole)) > 1.0
    assert max_dev < 0.02 * np.mean(kinetic), (max_dev, np.mean(kinetic))
    assert 3.0 < max_dev / max_dev_half < 6.0, (max_dev, max_dev_half)


def test_nve_periodic_water(model_path, library, capsys):
    """1000 steps of 0.5 fs of a periodic water box (rc = 4 Å model + MM), on the CPU
    platform. Particles cross the box and edges cross rc, where the student's energy
    jumps (student-model.md), so the drift is reported, not bounded; the plugin
    must still agree with the library on the final, unwrapped configuration."""
    numbers, positions = water_box(2, CUBIC_BOX, seed=21)
    force = mlff_openmm.MlffForce(model_path, numbers, device="cpu", precision="f64")
    context = make_context(force, numbers, positions, CUBIC_BOX, platform="CPU")
    add_water_mm(context.getSystem(), len(numbers), periodic=True)
    context.reinitialize()
    context.setPositions(positions)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    times, totals, kinetic = run_nve(context, 0.0005, 1000)
    report_nve(capsys, "f64, periodic box", len(numbers), 0.0005, 1000, times, totals, kinetic)
    assert np.all(np.isfinite(totals))
    energy, forces, used = energy_forces(context, groups={0})
    assert np.max(np.abs(used - positions)) > 0.05  # the particles did move
    ref_energy, ref_forces = reference(library, model_path, numbers, used, CUBIC_BOX)
    assert_close(energy, forces, ref_energy, ref_forces, rtol=1e-9)


# --- serialization -----------------------------------------------------------------

def test_serialization_round_trip(model_path):
    numbers, positions = water_box(2, CUBIC_BOX, seed=31)
    ml_atoms = [3, 4, 5, 9, 10, 11, 0, 1, 2]
    force = mlff_openmm.MlffForce(model_path, numbers[ml_atoms], atoms=ml_atoms, device="cpu", precision="f64")
    force.setForceGroup(3)
    force.setNumThreads(1)
    force.setDeviceIndex(2)
    force.setName("ml region")
    force.setUsesPeriodicBoundaryConditions(True)
    assert force.getUseDevicePath()
    force.setUseDevicePath(False)
    xml = openmm.XmlSerializer.serialize(force)
    copy = mlff_openmm.MlffForce.cast(openmm.XmlSerializer.deserialize(xml))
    assert not copy.getUseDevicePath()
    assert copy.getModelPath() == str(model_path)
    assert copy.getNumbers() == [int(z) for z in numbers[ml_atoms]]
    assert copy.getAtoms() == ml_atoms
    assert (copy.getDevice(), copy.getPrecision()) == ("cpu", "f64")
    assert (copy.getForceGroup(), copy.getNumThreads(), copy.getDeviceIndex()) == (3, 1, 2)
    assert copy.getName() == "ml region"
    assert copy.usesPeriodicBoundaryConditions()
    assert openmm.XmlSerializer.serialize(copy) == xml

    # A whole System: the copy computes exactly what the original does.
    force.setDeviceIndex(0)
    context = make_context(force, numbers, positions, CUBIC_BOX)
    energy, forces, _ = energy_forces(context)
    system_xml = openmm.XmlSerializer.serialize(context.getSystem())
    system = openmm.XmlSerializer.deserialize(system_xml)
    assert mlff_openmm.MlffForce.isinstance(system.getForce(0))
    assert mlff_openmm.MlffForce.cast(system.getForce(0)).getAtoms() == ml_atoms
    context2 = openmm.Context(system, openmm.VerletIntegrator(0.0005), openmm.Platform.getPlatformByName("Reference"))
    context2.setPositions(positions)
    energy2, forces2, _ = energy_forces(context2)
    assert energy2 == energy
    assert np.array_equal(forces2, forces)


def test_serialization_version_1_reads_with_the_device_path_default(model_path):
    force = mlff_openmm.MlffForce(model_path, [8, 1, 1], device="cpu")
    force.setUseDevicePath(False)
    xml = openmm.XmlSerializer.serialize(force)
    assert 'version="2"' in xml and 'useDevicePath="0"' in xml
    old = xml.replace('version="2"', 'version="1"').replace(' useDevicePath="0"', "")
    copy = mlff_openmm.MlffForce.cast(openmm.XmlSerializer.deserialize(old))
    assert copy.getUseDevicePath()
    with pytest.raises(openmm.OpenMMException, match="unsupported serialization version 3"):
        openmm.XmlSerializer.deserialize(xml.replace('version="2"', 'version="3"'))


def test_compute_path_is_host_off_the_cuda_platform(model_path):
    numbers, positions = water_cluster(2, seed=3)
    force = mlff_openmm.MlffForce(model_path, numbers, device="cpu")
    context = make_context(force, numbers, positions, None)
    assert force.getComputePath(context) == "host"
    other = mlff_openmm.MlffForce(model_path, numbers, device="cpu")
    with pytest.raises(openmm.OpenMMException):
        other.getComputePath(context)
    status = mlff_openmm.cuda_device_path_status()
    assert isinstance(status, str) and status


# --- errors ------------------------------------------------------------------------

def expected_open_error(library, path, device="cpu"):
    with pytest.raises(MlffError) as error:
        library.open(path, device=device)
    return error.value.message


def test_missing_model_file(library, tmp_path):
    path = tmp_path / "no-such-model.safetensors"
    message = expected_open_error(library, path)
    assert message
    force = mlff_openmm.MlffForce(path, [8, 1, 1], device="cpu")
    numbers, positions = water_cluster(1, seed=1)
    with pytest.raises(openmm.OpenMMException) as error:
        make_context(force, numbers, positions)
    assert message in str(error.value)


def test_not_a_model_file(library, tmp_path):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(b"this is not a model" * 10)
    message = expected_open_error(library, path)
    force = mlff_openmm.MlffForce(path, [8, 1, 1], device="cpu")
    numbers, positions = water_cluster(1, seed=1)
    with pytest.raises(openmm.OpenMMException) as error:
        make_context(force, numbers, positions)
    assert message in str(error.value)


@pytest.mark.parametrize("bad_z", [6, 0, 150])
def test_unknown_element(model_path, library, bad_z):
    numbers, positions = water_cluster(2, seed=2)
    numbers = numbers.copy()
    numbers[4] = bad_z
    with pytest.raises(MlffError) as expected:
        library.open(model_path).compute(numbers, positions * 10.0)
    assert expected.value.message
    force = mlff_openmm.MlffForce(model_path, numbers, device="cpu", precision="f64")
    context = make_context(force, numbers, positions, masses=1.0)
    with pytest.raises(openmm.OpenMMException) as error:
        context.getState(getEnergy=True)
    assert expected.value.message in str(error.value)


def test_cuda_without_gpu(model_path, library):
    try:
        library.open(model_path, device="cuda")
    except MlffError as error:
        message = error.message
    else:
        pytest.skip("a usable CUDA device is present, so device='cuda' does not fail here")
    numbers, positions = water_cluster(1, seed=1)
    force = mlff_openmm.MlffForce(model_path, numbers, device="cuda")
    with pytest.raises(openmm.OpenMMException) as error:
        make_context(force, numbers, positions)
    assert message in str(error.value)


def test_settings_checked_against_system(model_path):
    numbers, positions = water_cluster(2, seed=4)
    force = mlff_openmm.MlffForce(model_path, numbers[:5], device="cpu")
    with pytest.raises(openmm.OpenMMException, match="5 atomic numbers but the System has 6 particles"):
        make_context(force, numbers, positions)
    force = mlff_openmm.MlffForce(model_path, [8, 1, 1], atoms=[0, 1, 6], device="cpu")
    with pytest.raises(openmm.OpenMMException, match="particle 6 in atoms is out of range"):
        make_context(force, numbers, positions)


# --- installation ------------------------------------------------------------------

def test_import_from_any_directory(tmp_path):
    """The installed package loads from elsewhere without LD_LIBRARY_PATH or PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "PYTHONPATH")}
    code = "import mlff_openmm; print(mlff_openmm.__file__); print(mlff_openmm.library_version())"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                            capture_output=True, text=True, check=True)
    location = Path(result.stdout.splitlines()[0]).resolve()
    site = Path(sysconfig.get_paths()["platlib"]).resolve()
    assert site in location.parents, (location, site)
