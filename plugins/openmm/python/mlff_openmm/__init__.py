"""OpenMM plugin for mlff models (distilled PaiNN-style machine-learned force fields).

    import openmm, mlff_openmm
    force = mlff_openmm.MlffForce("model.safetensors", numbers, atoms=None,
                                  device="auto", precision="f32")
    force.setUsesPeriodicBoundaryConditions(True)   # box vectors from the Context
    system.addForce(force)

Units: OpenMM's nm and kJ/mol; the model's Å and eV are converted with
1 eV = KJ_PER_MOL_PER_EV kJ/mol (exact) and 1 nm = ANGSTROM_PER_NM Å.
"""

import openmm as _openmm  # noqa: F401  (OpenMM's types must be registered before ours)

from .binding import ANGSTROM_PER_NM, KJ_PER_MOL_PER_EV, MlffForce, library_version

__all__ = ["MlffForce", "KJ_PER_MOL_PER_EV", "ANGSTROM_PER_NM", "library_version"]
