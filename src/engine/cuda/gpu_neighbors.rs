//! Host side of the GPU neighbour list (`kernels/neighbor_list.cu`): the O(N) binning
//! of `neighbors::build`, mirrored step by step (same basis, fractional coordinates,
//! images, bin grid and search reach), so that the GPU search visits the same bins
//! and produces the same pairs in the same canonical order.

use crate::error::{Error, Result};

/// The bin grid, as passed to the kernels by value.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct BinGrid {
    pub n_bins: [i32; 3],
    pub reach: [i32; 3],
    pub pbc: [i32; 3],
}
// SAFETY: plain C struct of ints, laid out as `struct BinGrid` in neighbor_list.cu.
unsafe impl cudarc::driver::DeviceRepr for BinGrid {}

/// Atoms binned as `neighbors::build` bins them.
#[derive(Debug, Default)]
pub struct Bins {
    pub grid: BinGrid,
    /// 3D bin of each atom (3 ints per atom).
    pub atom_bin: Vec<i32>,
    /// Lattice image of each atom (3 ints per atom).
    pub image: Vec<i32>,
    pub bin_start: Vec<u32>,
    pub bin_atoms: Vec<u32>,
    /// Cell rows flattened (zero without a cell).
    pub cell: [f64; 9],
}

pub fn bin_atoms(
    positions: &[[f64; 3]],
    cell: Option<&[[f64; 3]; 3]>,
    pbc: [bool; 3],
    cutoff: f64,
) -> Result<Bins> {
    let zero_cell = [[0.0; 3]; 3];
    let cell = cell.unwrap_or(&zero_cell);
    if pbc.iter().any(|&b| b) {
        crate::neighbors::check_periodic_cell(cell, pbc)?;
    }
    // The host's binning itself, converted to the kernels' flat integer layout.
    let bins = crate::neighbors::bin_atoms(positions, cell, pbc, cutoff)?;
    let (n_bins, reach) = (bins.n_bins, bins.reach);
    if reach.iter().any(|&r| r > 1_000)
        || n_bins.iter().any(|&b| b > i32::MAX as usize / 4)
        || bins.bin_atoms.len() > u32::MAX as usize
    {
        return Err(Error::invalid("cell too small for the GPU neighbour list"));
    }
    let grid = BinGrid {
        n_bins: [n_bins[0] as i32, n_bins[1] as i32, n_bins[2] as i32],
        reach: [reach[0] as i32, reach[1] as i32, reach[2] as i32],
        pbc: [pbc[0] as i32, pbc[1] as i32, pbc[2] as i32],
    };
    let c = cell;
    Ok(Bins {
        grid,
        atom_bin: bins
            .atom_bin
            .iter()
            .flat_map(|b| b.map(|x| x as i32))
            .collect(),
        image: bins.image.iter().flatten().copied().collect(),
        bin_start: bins.bin_start.iter().map(|&x| x as u32).collect(),
        bin_atoms: bins.bin_atoms,
        cell: [
            c[0][0], c[0][1], c[0][2], c[1][0], c[1][1], c[1][2], c[2][0], c[2][1], c[2][2],
        ],
    })
}
