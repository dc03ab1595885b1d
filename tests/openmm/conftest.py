"""Fixtures of the OpenMM plugin tests: small random models (H=16, made by
`mlff random-model`), the ctypes reference driver, and test structures."""

import json
import subprocess
from pathlib import Path

import pytest

from openmm_ctypes_driver import Library, cargo_release_dir, library_path
from openmm_structures import CUBIC_BOX, TRICLINIC_BOX, water_box, water_cluster

MLFF_CLI = cargo_release_dir() / "mlff"


def random_model(directory, cutoff):
    if not MLFF_CLI.exists():
        pytest.skip(f"{MLFF_CLI} is missing: run `cargo build --release` (scripts/test-openmm.sh does)")
    path = directory / f"random-h16-rc{cutoff:g}.safetensors"
    subprocess.run(
        [str(MLFF_CLI), "random-model", str(path), "--hidden", "16", "--rbf", "8", "--blocks", "3",
         "--cutoff", str(cutoff), "--species", "H,O", "--seed", "1"],
        check=True, capture_output=True)
    return path


@pytest.fixture(scope="session")
def model_path(tmp_path_factory):
    """A random student (H=16, K=8, L=3, rc=4 Å, H and O only)."""
    return random_model(tmp_path_factory.mktemp("model"), 4.0)


@pytest.fixture(scope="session")
def wide_model_path(tmp_path_factory):
    """The same with rc=10 Å: wider than the NVE test's cluster, so no edge ever
    crosses the cutoff, where the student's energy jumps (student-model.md)."""
    return random_model(tmp_path_factory.mktemp("model"), 10.0)


SHARED = Path(__file__).resolve().parents[3] / "shared"


@pytest.fixture(scope="session")
def public_fixtures(tmp_path_factory):
    """The released students (converted with `mlff convert`) and their public
    fixtures (float64, independent PyTorch implementation), from ../shared."""
    fixtures = SHARED / "fixtures" / "student_public_fixtures.json"
    if not fixtures.exists():
        pytest.skip(f"{fixtures} is absent (the shared data is not on this machine)")
    if not MLFF_CLI.exists():
        pytest.skip(f"{MLFF_CLI} is missing: run `cargo build --release` (scripts/test-openmm.sh does)")
    data = json.loads(fixtures.read_text())
    directory = tmp_path_factory.mktemp("students")
    models = {}
    for stem in data["models"]:
        onnx = SHARED / "models" / f"{stem}.onnx"
        if not onnx.exists():
            pytest.skip(f"{onnx} is absent")
        models[stem] = directory / f"{stem}.safetensors"
        subprocess.run([str(MLFF_CLI), "convert", str(onnx), str(models[stem])], check=True, capture_output=True)
    return models, data


@pytest.fixture(scope="session")
def library():
    path = library_path()
    if not path.exists():
        pytest.skip(f"{path} is missing: run `cargo build --release` (scripts/test-openmm.sh does)")
    return Library(path)


@pytest.fixture(params=["molecule", "cubic", "triclinic"])
def structure(request):
    """(name, numbers, positions nm, box rows nm or None)."""
    if request.param == "molecule":
        numbers, positions = water_cluster(4, seed=11)
        return request.param, numbers, positions, None
    box = CUBIC_BOX if request.param == "cubic" else TRICLINIC_BOX
    numbers, positions = water_box(2, box, seed=12)
    return request.param, numbers, positions, box
