//! What goes into one evaluation ([`System`], [`Request`]) and what comes out ([`Results`]).

use crate::error::{Error, Result};

/// One structure: atoms `0..n_local` own the energy, atoms `n_local..` are ghosts
/// (explicit periodic or domain-decomposition copies whose energy is counted elsewhere).
#[derive(Debug, Clone, Copy)]
pub struct System<'a> {
    /// Atomic numbers, one per atom.
    pub numbers: &'a [i32],
    /// Cartesian positions in Å, one per atom. Need not be wrapped into the cell.
    pub positions: &'a [[f64; 3]],
    /// Lattice vectors as rows, in Å. `None` means no cell (all axes open).
    pub cell: Option<[[f64; 3]; 3]>,
    /// Periodicity per lattice vector. An axis can be periodic only with a cell.
    pub pbc: [bool; 3],
    /// Number of atoms whose energies count (the first `n_local`).
    pub n_local: usize,
}

impl<'a> System<'a> {
    /// An open-boundary system where every atom is local.
    pub fn molecule(numbers: &'a [i32], positions: &'a [[f64; 3]]) -> Self {
        System {
            numbers,
            positions,
            cell: None,
            pbc: [false; 3],
            n_local: numbers.len(),
        }
    }

    /// A system with a cell; every atom is local.
    pub fn periodic(
        numbers: &'a [i32],
        positions: &'a [[f64; 3]],
        cell: [[f64; 3]; 3],
        pbc: [bool; 3],
    ) -> Self {
        System {
            numbers,
            positions,
            cell: Some(cell),
            pbc,
            n_local: numbers.len(),
        }
    }

    pub fn n_atoms(&self) -> usize {
        self.numbers.len()
    }

    /// Checks everything that does not depend on a model: sizes, finite values,
    /// a usable cell along periodic axes. Element checks need the model
    /// ([`crate::Model::compute`] does both).
    pub fn validate_geometry(&self) -> Result<()> {
        if self.positions.len() != self.numbers.len() {
            return Err(Error::invalid(format!(
                "{} atomic numbers but {} positions",
                self.numbers.len(),
                self.positions.len()
            )));
        }
        if self.n_local > self.numbers.len() {
            return Err(Error::invalid(format!(
                "n_local = {} exceeds n_atoms = {}",
                self.n_local,
                self.numbers.len()
            )));
        }
        // Every call: one pass without early exits, then the first bad atom for the message.
        let finite = self
            .positions
            .as_flattened()
            .iter()
            .fold(true, |ok, x| ok & x.is_finite());
        if !finite {
            for (i, p) in self.positions.iter().enumerate() {
                if p.iter().any(|x| !x.is_finite()) {
                    return Err(Error::invalid(format!(
                        "position of atom {i} is not finite: {p:?}"
                    )));
                }
            }
        }
        Self::validate_cell(&self.cell, self.pbc)?;
        Ok(())
    }
}

impl System<'_> {
    /// Checks the cell alone: finite, present when an axis is periodic, usable
    /// along periodic axes.
    pub fn validate_cell(cell: &Option<[[f64; 3]; 3]>, pbc: [bool; 3]) -> Result<()> {
        match &cell {
            None => {
                if pbc.iter().any(|&b| b) {
                    return Err(Error::invalid(
                        "periodic boundary conditions requested without a cell",
                    ));
                }
            }
            Some(cell) => {
                for (a, row) in cell.iter().enumerate() {
                    if row.iter().any(|x| !x.is_finite()) {
                        return Err(Error::invalid(format!(
                            "cell vector {a} is not finite: {row:?}"
                        )));
                    }
                }
                if pbc.iter().any(|&b| b) {
                    crate::neighbors::check_periodic_cell(cell, pbc)?;
                }
            }
        }
        Ok(())
    }
}

/// Which outputs to compute. The energy is always computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub forces: bool,
    pub virial: bool,
    pub atom_energies: bool,
    pub atom_virials: bool,
}

impl Request {
    pub const ENERGY: Request = Request {
        forces: false,
        virial: false,
        atom_energies: false,
        atom_virials: false,
    };
    pub const ALL: Request = Request {
        forces: true,
        virial: true,
        atom_energies: true,
        atom_virials: true,
    };
    pub const FORCES_VIRIAL: Request = Request {
        forces: true,
        virial: true,
        atom_energies: false,
        atom_virials: false,
    };

    /// True when the backward pass is needed.
    pub fn needs_gradient(&self) -> bool {
        self.forces || self.virial || self.atom_virials
    }
}

/// Results of one evaluation. Vectors not requested are empty; `virial` is zero
/// when not requested.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Results {
    /// Total energy of the local atoms, eV.
    pub energy: f64,
    /// -dE/dr for every atom (ghosts included), eV/Å.
    pub forces: Vec<[f64; 3]>,
    /// W[a][b] = -Σ_edges r_ji[a] dE/dr_ji[b] (LAMMPS convention), eV. Not symmetric for the student.
    pub virial: [[f64; 3]; 3],
    /// Energy of each atom, eV (0 for ghosts).
    pub atom_energies: Vec<f64>,
    /// Per-atom virials, eV; each edge term split half and half between its two atoms.
    pub atom_virials: Vec<[[f64; 3]; 3]>,
}
