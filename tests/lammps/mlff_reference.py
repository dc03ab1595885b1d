"""A ctypes driver of libmlff's C ABI (include/mlff.h): the reference that
pair_style mlff is checked against. Units are the library's: Å, eV."""

import ctypes
import os
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
MLFF_OK = 0
MLFF_DEVICE_CPU = 1
MLFF_PRECISION_F64 = 1


class MlffOptions(ctypes.Structure):
    _fields_ = [("device", ctypes.c_int32), ("device_index", ctypes.c_int32),
                ("precision", ctypes.c_int32), ("num_threads", ctypes.c_uint32)]


class MlffSystem(ctypes.Structure):
    _fields_ = [("n_atoms", ctypes.c_size_t), ("n_local", ctypes.c_size_t),
                ("numbers", ctypes.POINTER(ctypes.c_int32)),
                ("positions", ctypes.POINTER(ctypes.c_double)),
                ("cell", ctypes.POINTER(ctypes.c_double)), ("pbc", ctypes.c_bool * 3)]


class MlffResults(ctypes.Structure):
    _fields_ = [("energy", ctypes.c_double), ("forces", ctypes.POINTER(ctypes.c_double)),
                ("virial", ctypes.POINTER(ctypes.c_double)),
                ("atom_energies", ctypes.POINTER(ctypes.c_double)),
                ("atom_virials", ctypes.POINTER(ctypes.c_double))]


class MlffError(Exception):
    pass


def cargo_release_dir():
    """target/release of this repository, or of $CARGO_TARGET_DIR."""
    target = Path(os.environ.get("CARGO_TARGET_DIR") or "target")
    return (target if target.is_absolute() else REPO_ROOT / target) / "release"


def library_path():
    """libmlff.so: $MLFF_LIBRARY, else the cargo release build of this repository."""
    return Path(os.environ.get("MLFF_LIBRARY") or cargo_release_dir() / "libmlff.so")


def _pointer(array, ctype):
    return array.ctypes.data_as(ctypes.POINTER(ctype))


class Reference:
    """One model opened on the CPU in f64."""

    def __init__(self, model_path, lib_path=None):
        lib = ctypes.CDLL(str(lib_path or library_path()))
        lib.mlff_options_default.restype = MlffOptions
        lib.mlff_model_create.argtypes = [ctypes.c_char_p, ctypes.POINTER(MlffOptions),
                                          ctypes.POINTER(ctypes.c_void_p)]
        lib.mlff_model_create.restype = ctypes.c_int
        lib.mlff_model_compute.argtypes = [ctypes.c_void_p, ctypes.POINTER(MlffSystem),
                                           ctypes.POINTER(MlffResults)]
        lib.mlff_model_compute.restype = ctypes.c_int
        lib.mlff_model_destroy.argtypes = [ctypes.c_void_p]
        lib.mlff_model_destroy.restype = None
        lib.mlff_last_error.restype = ctypes.c_char_p
        self.lib = lib
        options = lib.mlff_options_default()
        options.device = MLFF_DEVICE_CPU
        options.precision = MLFF_PRECISION_F64
        self.handle = ctypes.c_void_p()
        status = lib.mlff_model_create(os.fsencode(str(model_path)), ctypes.byref(options),
                                       ctypes.byref(self.handle))
        if status != MLFF_OK:
            raise MlffError(f"status {status}: {lib.mlff_last_error().decode()}")

    def __del__(self):
        if getattr(self, "handle", None):
            self.lib.mlff_model_destroy(self.handle)
            self.handle = None

    def compute(self, numbers, positions, cell=None, pbc=(False, False, False), n_local=None):
        """dict of energy (eV), forces (n,3), virial (3,3) with W[a][b] = sum r_a F_b,
        atom_energies (n), atom_virials (n,3,3)."""
        numbers = np.ascontiguousarray(numbers, dtype=np.int32)
        positions = np.ascontiguousarray(positions, dtype=np.float64).reshape(-1, 3)
        n = len(numbers)
        out = {"forces": np.zeros((n, 3)), "virial": np.zeros((3, 3)),
               "atom_energies": np.zeros(n), "atom_virials": np.zeros((n, 3, 3))}
        system = MlffSystem()
        system.n_atoms = n
        system.n_local = n if n_local is None else n_local
        system.numbers = _pointer(numbers, ctypes.c_int32)
        system.positions = _pointer(positions, ctypes.c_double)
        if cell is not None:
            cell = np.ascontiguousarray(cell, dtype=np.float64).reshape(3, 3)
            system.cell = _pointer(cell, ctypes.c_double)
        system.pbc = (ctypes.c_bool * 3)(*[bool(p) for p in pbc])
        results = MlffResults()
        for name in ("forces", "virial", "atom_energies", "atom_virials"):
            setattr(results, name, _pointer(out[name], ctypes.c_double))
        status = self.lib.mlff_model_compute(self.handle, ctypes.byref(system), ctypes.byref(results))
        if status != MLFF_OK:
            raise MlffError(f"status {status}: {self.lib.mlff_last_error().decode()}")
        out["energy"] = results.energy
        return out
