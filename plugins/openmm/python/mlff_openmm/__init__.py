"""OpenMM plugin for mlff models (distilled PaiNN-style machine-learned force fields).

    import openmm, mlff_openmm
    force = mlff_openmm.MlffForce("model.safetensors", numbers, atoms=None,
                                  device="auto", precision="f32")
    force.setUsesPeriodicBoundaryConditions(True)   # box vectors from the Context
    system.addForce(force)

Units: OpenMM's nm and kJ/mol; the model's Å and eV are converted with
1 eV = KJ_PER_MOL_PER_EV kJ/mol (exact) and 1 nm = ANGSTROM_PER_NM Å.

On OpenMM's CUDA platform the force runs on the GPU without host copies (the
device path, libmlff_openmm_cuda.so, loaded here when the CUDA platform exists);
force.setUseDevicePath(False) forces the host path, and
force.getComputePath(context) tells which one a Context uses.
"""

import os as _os

import openmm as _openmm  # noqa: F401  (OpenMM's types must be registered before ours)

from .binding import ANGSTROM_PER_NM, KJ_PER_MOL_PER_EV, MlffForce, library_version

__all__ = ["MlffForce", "KJ_PER_MOL_PER_EV", "ANGSTROM_PER_NM", "library_version",
           "cuda_device_path_status"]

_CUDA_PLUGIN = _os.path.join(_os.path.dirname(__file__), "libmlff_openmm_cuda.so")


def _load_cuda_plugin():
    """Registers the CUDA platform kernel of MlffForce; returns why not, or "loaded"."""
    if _os.environ.get("_MLFF_OPENMM_NO_PYTHON_LOADER"):  # tests: leave it to the C++ side
        return "not loaded from Python (_MLFF_OPENMM_NO_PYTHON_LOADER)"
    if not _os.path.exists(_CUDA_PLUGIN):
        return "not built (libmlff_openmm_cuda.so is absent: no OpenMM CUDA headers at build time)"
    try:
        _openmm.Platform.getPlatformByName("CUDA")
    except Exception:
        return "no CUDA platform in this OpenMM (no openmm-cuda package, GPU driver or CUDA libraries)"
    try:
        _openmm.Platform.loadPluginLibrary(_CUDA_PLUGIN)
    except Exception as error:  # keep the host path usable
        import warnings
        warnings.warn(f"mlff_openmm: the CUDA device path is unavailable, MlffForce uses the host "
                      f"path on the CUDA platform: {error}")
        return f"failed to load: {error}"
    return "loaded"


_CUDA_STATUS = _load_cuda_plugin()


def cuda_device_path_status():
    """"loaded" when the CUDA device path is available, else the reason it is not."""
    return _CUDA_STATUS
