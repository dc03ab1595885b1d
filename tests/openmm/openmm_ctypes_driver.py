"""A small ctypes driver of libmlff's C ABI (include/mlff.h): the reference the
OpenMM plugin is checked against. Units are the library's: Å and eV."""

import ctypes
import os
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]

MLFF_OK = 0
MLFF_DEVICE = {"auto": 0, "cpu": 1, "cuda": 2}
MLFF_PRECISION = {"f32": 0, "f64": 1, "mixed": 2}


class MlffOptions(ctypes.Structure):
    _fields_ = [
        ("device", ctypes.c_int32),
        ("device_index", ctypes.c_int32),
        ("precision", ctypes.c_int32),
        ("num_threads", ctypes.c_uint32),
    ]


class MlffSystem(ctypes.Structure):
    _fields_ = [
        ("n_atoms", ctypes.c_size_t),
        ("n_local", ctypes.c_size_t),
        ("numbers", ctypes.POINTER(ctypes.c_int32)),
        ("positions", ctypes.POINTER(ctypes.c_double)),
        ("cell", ctypes.POINTER(ctypes.c_double)),
        ("pbc", ctypes.c_bool * 3),
    ]


class MlffResults(ctypes.Structure):
    _fields_ = [
        ("energy", ctypes.c_double),
        ("forces", ctypes.POINTER(ctypes.c_double)),
        ("virial", ctypes.POINTER(ctypes.c_double)),
        ("atom_energies", ctypes.POINTER(ctypes.c_double)),
        ("atom_virials", ctypes.POINTER(ctypes.c_double)),
    ]


class MlffError(Exception):
    """A failed library call: status code and the library's message."""

    def __init__(self, status, message):
        super().__init__(f"status {status}: {message}")
        self.status = status
        self.message = message


def cargo_release_dir():
    """target/release of this repository, or of $CARGO_TARGET_DIR (as cmake/mlffConfig.cmake)."""
    return Path(os.environ.get("CARGO_TARGET_DIR") or REPO_ROOT / "target") / "release"


def library_path():
    """libmlff.so: $MLFF_LIBRARY, else the cargo release build (the library the plugin links)."""
    return Path(os.environ.get("MLFF_LIBRARY") or cargo_release_dir() / "libmlff.so")


def _as_pointer(array, ctype):
    return array.ctypes.data_as(ctypes.POINTER(ctype))


class Library:
    def __init__(self, path=None):
        self.lib = ctypes.CDLL(str(path or library_path()))
        lib = self.lib
        lib.mlff_options_default.restype = MlffOptions
        lib.mlff_model_create.argtypes = [ctypes.c_char_p, ctypes.POINTER(MlffOptions), ctypes.POINTER(ctypes.c_void_p)]
        lib.mlff_model_create.restype = ctypes.c_int
        lib.mlff_model_compute.argtypes = [ctypes.c_void_p, ctypes.POINTER(MlffSystem), ctypes.POINTER(MlffResults)]
        lib.mlff_model_compute.restype = ctypes.c_int
        lib.mlff_model_destroy.argtypes = [ctypes.c_void_p]
        lib.mlff_model_destroy.restype = None
        lib.mlff_last_error.restype = ctypes.c_char_p

    def last_error(self):
        return self.lib.mlff_last_error().decode()

    def open(self, path, device="cpu", precision="f64"):
        return Model(self, path, device, precision)


class Model:
    def __init__(self, library, path, device, precision):
        self.library = library
        options = library.lib.mlff_options_default()
        options.device = MLFF_DEVICE[device]
        options.precision = MLFF_PRECISION[precision]
        handle = ctypes.c_void_p()
        status = library.lib.mlff_model_create(os.fsencode(path), ctypes.byref(options), ctypes.byref(handle))
        if status != MLFF_OK:
            raise MlffError(status, library.last_error())
        self.handle = handle

    def __del__(self):
        if getattr(self, "handle", None):
            self.library.lib.mlff_model_destroy(self.handle)
            self.handle = None

    def compute(self, numbers, positions, cell=None):
        """Energy (eV) and forces (eV/Å, n x 3) of atoms at positions (Å); cell rows
        in Å (all axes periodic) or None (open boundaries)."""
        numbers = np.ascontiguousarray(numbers, dtype=np.int32)
        positions = np.ascontiguousarray(positions, dtype=np.float64).reshape(-1, 3)
        n = len(numbers)
        assert positions.shape == (n, 3)
        forces = np.zeros((n, 3))
        system = MlffSystem()
        system.n_atoms = n
        system.n_local = n
        system.numbers = _as_pointer(numbers, ctypes.c_int32)
        system.positions = _as_pointer(positions, ctypes.c_double)
        if cell is not None:
            cell = np.ascontiguousarray(cell, dtype=np.float64).reshape(3, 3)
            system.cell = _as_pointer(cell, ctypes.c_double)
            system.pbc = (ctypes.c_bool * 3)(True, True, True)
        results = MlffResults()
        results.forces = _as_pointer(forces, ctypes.c_double)
        status = self.library.lib.mlff_model_compute(self.handle, ctypes.byref(system), ctypes.byref(results))
        if status != MLFF_OK:
            raise MlffError(status, self.library.last_error())
        return results.energy, forces
