"""MlffForce on OpenMM's CUDA platform: the device path (positions and forces stay
on the GPU, the model runs in OpenMM's CUDA context) against the host path
(CustomCPPForceImpl) on the same platform and against the Reference platform.

Skips without a usable CUDA platform (no GPU, no openmm-cuda package, or the
device path not built). The model: $MLFF_OPENMM_TEST_MODEL if set (the GPU run
carries one: hidden width 32, species H and O), else a random one from `mlff
random-model` (hidden 32: the CUDA engine's smallest width).
"""

import os
import sys
import subprocess
from pathlib import Path

import numpy as np
import pytest

openmm = pytest.importorskip("openmm")
import mlff_openmm  # noqa: E402
from openmm import unit  # noqa: E402

from conftest import MLFF_CLI  # noqa: E402
from openmm_structures import CUBIC_BOX, MASSES, TRICLINIC_BOX, water_box, water_cluster  # noqa: E402

EV = mlff_openmm.KJ_PER_MOL_PER_EV


def cuda_platform():
    try:
        platform = openmm.Platform.getPlatformByName("CUDA")
    except Exception as error:
        pytest.skip(f"no CUDA platform: {error}")
    status = mlff_openmm.cuda_device_path_status()
    if status != "loaded":
        pytest.skip(f"the CUDA device path is unavailable: {status}")
    return platform


@pytest.fixture(scope="session")
def gpu_model_path(tmp_path_factory):
    given = os.environ.get("MLFF_OPENMM_TEST_MODEL")
    if given:
        return Path(given)
    if not MLFF_CLI.exists():
        pytest.skip(f"{MLFF_CLI} is missing and MLFF_OPENMM_TEST_MODEL is not set")
    path = tmp_path_factory.mktemp("gpu-model") / "random-h32.safetensors"
    subprocess.run([str(MLFF_CLI), "random-model", str(path), "--hidden", "32", "--rbf", "8",
                    "--blocks", "3", "--cutoff", "4", "--species", "H,O", "--seed", "3"],
                   check=True, capture_output=True)
    return path


def make_system(numbers, box, extra_particles=0):
    system = openmm.System()
    for z in numbers:
        system.addParticle(MASSES[int(z)])
    for _ in range(extra_particles):
        system.addParticle(12.0)
    if box is not None:
        system.setDefaultPeriodicBoxVectors(*[openmm.Vec3(*row) for row in box])
    return system


def evaluate(model_path, numbers, positions, box, platform, properties=None, device_path=True,
             precision="f64", device="auto", atoms=None, model_numbers=None, extra=None, groups=-1):
    """(energy kJ/mol, forces kJ/mol/nm, compute path) of one MlffForce. `extra`:
    positions of additional (non-model) particles appended to the System."""
    n_extra = 0 if extra is None else len(extra)
    system = make_system(numbers, box, n_extra)
    force = mlff_openmm.MlffForce(model_path, numbers if model_numbers is None else model_numbers,
                                  atoms=atoms, device=device, precision=precision)
    force.setUsesPeriodicBoundaryConditions(box is not None)
    force.setUseDevicePath(device_path)
    system.addForce(force)
    all_positions = positions if extra is None else np.concatenate([positions, extra])
    integrator = openmm.VerletIntegrator(0.0005)
    context = openmm.Context(system, integrator, platform, properties or {})
    context.setPositions(all_positions * unit.nanometer)
    state = context.getState(getEnergy=True, getForces=True, groups=groups)
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    return energy, np.asarray(forces), force.getComputePath(context)


def structures():
    numbers, positions = water_cluster(8, seed=5)
    yield "cluster", numbers, positions, None
    numbers, positions = water_box(3, CUBIC_BOX * 1.5, seed=6)
    yield "cubic", numbers, positions, CUBIC_BOX * 1.5
    numbers, positions = water_box(3, TRICLINIC_BOX * 1.5, seed=7)
    yield "triclinic", numbers, positions, TRICLINIC_BOX * 1.5


def relative(a, b):
    return np.linalg.norm(np.asarray(a) - np.asarray(b)) / max(np.linalg.norm(b), 1e-30)


def test_cuda_platform_uses_the_device_path_unless_told_otherwise(gpu_model_path):
    platform = cuda_platform()
    numbers, positions = water_cluster(4, seed=1)
    assert evaluate(gpu_model_path, numbers, positions, None, platform)[2] == "device"
    assert evaluate(gpu_model_path, numbers, positions, None, platform, device_path=False)[2] == "host"
    assert evaluate(gpu_model_path, numbers, positions, None, platform, device="cpu")[2] == "host"
    reference = openmm.Platform.getPlatformByName("Reference")
    assert evaluate(gpu_model_path, numbers, positions, None, reference)[2] == "host"


@pytest.mark.parametrize("precision", ["double", "mixed", "single"])
def test_device_path_matches_host_path_and_reference(gpu_model_path, precision):
    """f64 model. OpenMM double: the device path sees the exact positions (maybe
    wrapped by whole box vectors), so it agrees with the host path to rounding and
    the 2^-32 fixed point; mixed adds posq's correction; single has f32 positions."""
    platform = cuda_platform()
    reference = openmm.Platform.getPlatformByName("Reference")
    tolerance = {"double": 1e-9, "mixed": 1e-9, "single": 1e-5}[precision]
    # In mixed and single precision OpenMM adds a host-computed force (the host
    # path) through f32: measured 2-3e-8 relative on an H100, while the device path,
    # which adds f64 forces in fixed point, stays within 1.3e-11 of Reference.
    host_tolerance = 1e-9 if precision == "double" else 1e-7
    for name, numbers, positions, box in structures():
        if precision == "single":
            # The reference sees the positions the GPU holds: rounded to f32.
            positions = positions.astype(np.float32).astype(np.float64)
        props = {"Precision": precision}
        e_dev, f_dev, path = evaluate(gpu_model_path, numbers, positions, box, platform, props)
        assert path == "device"
        e_host, f_host, _ = evaluate(gpu_model_path, numbers, positions, box, platform, props, device_path=False)
        e_ref, f_ref, _ = evaluate(gpu_model_path, numbers, positions, box, reference, device="cpu")
        scale = max(abs(e_ref), 1.0)
        print(f"[{precision} {name}] E device {e_dev:.10f} host {e_host:.10f} reference {e_ref:.10f} kJ/mol; "
              f"forces rel. device-host {relative(f_dev, f_host):.2e}, device-reference {relative(f_dev, f_ref):.2e}")
        assert abs(e_dev - e_host) <= tolerance * scale, name
        assert relative(f_dev, f_host) <= max(tolerance, host_tolerance), name
        # GPU f64 (tabulated filters) against the CPU f64 engine.
        assert abs(e_dev - e_ref) <= max(tolerance, 1e-7) * scale, name
        assert relative(f_dev, f_ref) <= max(tolerance, 1e-6), name


def test_f32_model_device_path_matches_host_path(gpu_model_path):
    platform = cuda_platform()
    numbers, positions = water_box(4, CUBIC_BOX * 2, seed=9)
    box = CUBIC_BOX * 2
    props = {"Precision": "double"}
    e_dev, f_dev, _ = evaluate(gpu_model_path, numbers, positions, box, platform, props, precision="f32")
    e_host, f_host, _ = evaluate(gpu_model_path, numbers, positions, box, platform, props, precision="f32",
                                 device_path=False)
    assert abs(e_dev - e_host) <= 1e-6 * max(abs(e_host), 1.0)
    assert relative(f_dev, f_host) <= 1e-6


def test_ml_subset_and_force_groups(gpu_model_path):
    """Particles outside `atoms` get no force; the model atoms match the host path;
    a force group the state does not ask for contributes nothing."""
    platform = cuda_platform()
    numbers, positions = water_cluster(6, seed=4)
    extra = np.array([[2.0, 2.0, 2.0], [2.3, 2.0, 2.1]])  # two more particles, not in the model
    atoms = list(range(3, len(numbers)))  # nor is the first water
    kwargs = dict(atoms=atoms, model_numbers=list(numbers[3:]), extra=extra)
    e_dev, f_dev, path = evaluate(gpu_model_path, numbers, positions, None, platform, **kwargs)
    assert path == "device"
    e_host, f_host, _ = evaluate(gpu_model_path, numbers, positions, None, platform, device_path=False, **kwargs)
    assert abs(e_dev - e_host) <= 1e-9 * max(abs(e_host), 1.0)
    assert np.all(f_dev[:3] == 0.0) and np.all(f_dev[len(numbers):] == 0.0)
    assert np.abs(f_dev[3:len(numbers)]).max() > 0.0
    # The platform's default precision is single: the host path adds its forces
    # through f32 (see test_device_path_matches_host_path_and_reference).
    assert relative(f_dev, f_host) <= 1e-7
    e_other, f_other, _ = evaluate(gpu_model_path, numbers, positions, None, platform, groups={1}, **kwargs)
    assert e_other == 0.0 and np.all(f_other == 0.0)


CXX_AUTOLOAD_CHECK = """
import sys
import numpy as np
import openmm
import mlff_openmm
assert mlff_openmm.cuda_device_path_status().startswith("not loaded from Python")
assert not openmm.Platform.getPlatformByName("CUDA").supportsKernels(["CalcMlffForce"])
numbers = [8, 1, 1]
positions = np.array([[0.0, 0.0, 0.0], [0.0957, 0.0, 0.0], [-0.024, 0.0927, 0.0]])
system = openmm.System()
for z in numbers:
    system.addParticle(1.0)
force = mlff_openmm.MlffForce(sys.argv[1], numbers)
system.addForce(force)
context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CUDA"))
context.setPositions(positions)
print(force.getComputePath(context), context.getState(getEnergy=True).getPotentialEnergy())
"""


def test_cxx_side_loads_the_cuda_plugin_by_itself(gpu_model_path):
    """Without Python's loader, the first MlffForce on the CUDA platform loads
    libmlff_openmm_cuda.so from libmlff_openmm.so's folder (what C++ programs rely on)."""
    cuda_platform()
    env = dict(os.environ, _MLFF_OPENMM_NO_PYTHON_LOADER="1")
    result = subprocess.run([sys.executable, "-c", CXX_AUTOLOAD_CHECK, str(gpu_model_path)], env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("device "), result.stdout


def test_library_errors_become_openmm_exceptions(gpu_model_path, tmp_path):
    platform = cuda_platform()
    numbers, positions = water_cluster(2, seed=2)
    missing = tmp_path / "no-such-model.safetensors"
    with pytest.raises(openmm.OpenMMException, match="no-such-model"):
        evaluate(missing, numbers, positions, None, platform)
    carbon = np.array(numbers)
    carbon[0] = 6  # the model knows H and O only
    with pytest.raises(openmm.OpenMMException, match="atomic number 6"):
        evaluate(gpu_model_path, carbon, positions, None, platform)
    # Two atoms on top of each other: the library's message, through the device path.
    stacked = positions.copy()
    stacked[1] = stacked[0]
    with pytest.raises(openmm.OpenMMException, match="same position"):
        evaluate(gpu_model_path, numbers, stacked, None, platform)


def test_molecular_dynamics_on_the_device_path(gpu_model_path):
    """200 Verlet steps of a small periodic water box: the device path and the host
    path follow the same trajectory (OpenMM double precision, f64 model) and the
    energy stays finite."""
    platform = cuda_platform()
    box = CUBIC_BOX * 1.5
    numbers, positions = water_box(3, box, seed=8)
    finals = []
    for device_path in (True, False):
        system = make_system(numbers, box)
        force = mlff_openmm.MlffForce(gpu_model_path, numbers, precision="f64")
        force.setUsesPeriodicBoundaryConditions(True)
        force.setUseDevicePath(device_path)
        system.addForce(force)
        integrator = openmm.VerletIntegrator(0.0002)
        context = openmm.Context(system, integrator, platform, {"Precision": "double"})
        context.setPositions(positions * unit.nanometer)
        context.setVelocitiesToTemperature(50 * unit.kelvin, 1)
        integrator.step(200)
        state = context.getState(getEnergy=True, getPositions=True, enforcePeriodicBox=False)
        energy = (state.getPotentialEnergy() + state.getKineticEnergy()).value_in_unit(unit.kilojoule_per_mole)
        assert np.isfinite(energy)
        finals.append(np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)))
    print(f"[MD] max |x_device - x_host| after 200 steps: {np.abs(finals[0] - finals[1]).max():.2e} nm")
    assert np.abs(finals[0] - finals[1]).max() < 1e-6


STUB_CHECK = """
import openmm
assert "CUDA" in [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())], \\
    openmm.Platform.getPluginLoadFailures()
import mlff_openmm
status = mlff_openmm.cuda_device_path_status()
assert status == "loaded", status
assert openmm.Platform.getPlatformByName("CUDA").supportsKernels(["CalcMlffForce"])
print("registered")
"""


def test_the_cuda_plugin_loads_and_registers_with_a_stub_driver(tmp_path):
    """Without a GPU: stub libcuda.so.1 and libcufft.so.12 (every function fails) let
    OpenMM load its CUDA platform, so this checks that libmlff_openmm_cuda.so loads
    (RPATH, symbols, typeinfo across the RTLD_LOCAL plugin boundary) and registers the
    CalcMlffForce kernel there."""
    import shutil
    import sysconfig

    cuda_lib = Path(openmm.version.openmm_library_path) / "plugins" / "libOpenMMCUDA.so"
    plugin = Path(mlff_openmm.__file__).parent / "libmlff_openmm_cuda.so"
    if not cuda_lib.exists() or not plugin.exists():
        pytest.skip("openmm-cuda or the device path is not installed")
    if shutil.which("gcc") is None or shutil.which("nm") is None:
        pytest.skip("gcc or nm missing")
    try:
        openmm.Platform.getPlatformByName("CUDA")
        pytest.skip("a real CUDA platform is loaded in this process")
    except Exception:
        pass
    nvrtc = Path(sysconfig.get_paths()["purelib"]) / "nvidia" / "cu13" / "lib"
    if not (nvrtc / "libnvrtc.so.13").exists():
        pytest.skip("libnvrtc.so.13 (nvidia-cuda-nvrtc) missing")
    symbols = subprocess.run(["nm", "-D", "--undefined-only", str(cuda_lib)], check=True, capture_output=True,
                             text=True).stdout.split()
    cu = sorted({s.split("@")[0] for s in symbols if s.startswith("cu") and not s.startswith("cufft")})
    cufft = sorted({s.split("@")[0] for s in symbols if s.startswith("cufft")})
    special = {
        "cuGetErrorString": "int cuGetErrorString(int e, const char** s) { *s = \"stub\"; return 0; }",
        "cuGetErrorName": "int cuGetErrorName(int e, const char** s) { *s = \"stub\"; return 0; }",
        "cuDriverGetVersion": "int cuDriverGetVersion(int* v) { *v = 13000; return 0; }",
        "cuDeviceGetCount": "int cuDeviceGetCount(int* n) { *n = 0; return 0; }",
    }
    (tmp_path / "cuda.c").write_text("\n".join(special.get(n, f"int {n}(void) {{ return 100; }}") for n in cu))
    (tmp_path / "cufft.c").write_text("\n".join(f"int {n}(void) {{ return 1; }}" for n in cufft))
    (tmp_path / "cufft.map").write_text("libcufft.so.12 { global: *; };\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", "libcuda.so.1", "-Wl,-soname,libcuda.so.1", "cuda.c"],
                   cwd=tmp_path, check=True)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", "libcufft.so.12", "-Wl,-soname,libcufft.so.12",
                    "-Wl,--version-script=cufft.map", "cufft.c"], cwd=tmp_path, check=True)
    env = dict(os.environ, LD_LIBRARY_PATH=f"{tmp_path}:{nvrtc}")
    result = subprocess.run([sys.executable, "-c", STUB_CHECK], env=env, capture_output=True, text=True,
                            cwd=tmp_path)
    assert result.returncode == 0 and "registered" in result.stdout, result.stdout + result.stderr


SHIPPED_MODEL = Path(__file__).resolve().parents[2] / "models" / "water-painn-sevennet0.safetensors"


def test_shipped_painn_model_on_the_cuda_platform():
    """The shipped PaiNN water model on the CUDA platform (its GPU engine stages
    OpenMM's device arrays through the host) equals the Reference platform (CPU f64
    engine) for a cluster and periodic boxes, in OpenMM double precision."""
    if not SHIPPED_MODEL.exists():
        pytest.skip(f"{SHIPPED_MODEL} is missing")
    platform = cuda_platform()
    reference = openmm.Platform.getPlatformByName("Reference")
    for name, numbers, positions, box in structures():
        props = {"Precision": "double"}
        e_dev, f_dev, path = evaluate(SHIPPED_MODEL, numbers, positions, box, platform, props)
        assert path == "device", name
        e_ref, f_ref, _ = evaluate(SHIPPED_MODEL, numbers, positions, box, reference, device="cpu")
        print(f"[painn {name}] E device {e_dev:.10f} reference {e_ref:.10f} kJ/mol; "
              f"forces rel. {relative(f_dev, f_ref):.2e}")
        assert abs(e_dev - e_ref) <= 1e-9 * max(abs(e_ref), 1.0), name
        assert relative(f_dev, f_ref) <= 1e-9, name
