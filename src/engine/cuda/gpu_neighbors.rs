//! Host side of the GPU neighbour list (`kernels/neighbor_list.cu`): the O(N) binning
//! of `neighbors::build`, mirrored step by step (same basis, fractional coordinates,
//! images, bin grid and search reach), so that the GPU search visits the same bins
//! and produces the same pairs in the same canonical order.

use crate::error::{Error, Result};
use crate::neighbors::norm;

fn cross(a: &[f64; 3], b: &[f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}
fn dot(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
fn scale(a: &[f64; 3], s: f64) -> [f64; 3] {
    [a[0] * s, a[1] * s, a[2] * s]
}

fn search_basis(cell: &[[f64; 3]; 3], pbc: [bool; 3]) -> [[f64; 3]; 3] {
    let periodic: Vec<usize> = (0..3).filter(|&k| pbc[k]).collect();
    let open: Vec<usize> = (0..3).filter(|&k| !pbc[k]).collect();
    let mut basis = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    match periodic.len() {
        0 => {}
        3 => basis = *cell,
        2 => {
            let n = cross(&cell[periodic[0]], &cell[periodic[1]]);
            basis[periodic[0]] = cell[periodic[0]];
            basis[periodic[1]] = cell[periodic[1]];
            basis[open[0]] = scale(&n, 1.0 / norm(&n));
        }
        _ => {
            let a = cell[periodic[0]];
            let ua = scale(&a, 1.0 / norm(&a));
            let trial = if ua[0].abs() < 0.9 {
                [1.0, 0.0, 0.0]
            } else {
                [0.0, 1.0, 0.0]
            };
            let u1 = cross(&ua, &trial);
            let u1 = scale(&u1, 1.0 / norm(&u1));
            let u2 = cross(&ua, &u1);
            basis[periodic[0]] = a;
            basis[open[0]] = u1;
            basis[open[1]] = u2;
        }
    }
    basis
}

fn inverse(m: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let c0 = cross(&m[1], &m[2]);
    let c1 = cross(&m[2], &m[0]);
    let c2 = cross(&m[0], &m[1]);
    let det = dot(&m[0], &c0);
    let mut inv = [[0.0; 3]; 3];
    for r in 0..3 {
        inv[r][0] = c0[r] / det;
        inv[r][1] = c1[r] / det;
        inv[r][2] = c2[r] / det;
    }
    inv
}

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
    let n = positions.len();
    let zero_cell = [[0.0; 3]; 3];
    let cell = cell.unwrap_or(&zero_cell);
    if pbc.iter().any(|&b| b) {
        crate::neighbors::check_periodic_cell(cell, pbc)?;
    }
    let basis = search_basis(cell, pbc);
    let inv = inverse(&basis);
    let search = cutoff * (1.0 + 1e-8) + 1e-10;
    let mut frac = vec![[0.0f64; 3]; n];
    let mut image = vec![0i32; 3 * n];
    for (a, r) in positions.iter().enumerate() {
        for k in 0..3 {
            let f = r[0] * inv[0][k] + r[1] * inv[1][k] + r[2] * inv[2][k];
            if pbc[k] {
                let fl = f.floor();
                let mut w = f - fl;
                let mut img = fl;
                if w >= 1.0 {
                    w -= 1.0;
                    img += 1.0;
                }
                if !(img.abs() < 1e9) {
                    return Err(Error::invalid(format!(
                        "atom {a} is more than 1e9 cells away from the origin"
                    )));
                }
                frac[a][k] = w;
                image[3 * a + k] = img as i32;
            } else {
                frac[a][k] = f;
            }
        }
    }
    let volume = dot(&basis[0], &cross(&basis[1], &basis[2])).abs();
    let mut n_bins = [1usize; 3];
    let mut lower = [0.0f64; 3];
    let mut width = [1.0f64; 3];
    let mut spacing = [1.0f64; 3];
    for k in 0..3 {
        let (a, b) = ((k + 1) % 3, (k + 2) % 3);
        spacing[k] = volume / norm(&cross(&basis[a], &basis[b]));
        if pbc[k] {
            n_bins[k] = ((spacing[k] / search).floor() as usize).max(1);
        } else {
            let (lo, hi) = frac
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), f| {
                    (lo.min(f[k]), hi.max(f[k]))
                });
            let (lo, hi) = if n == 0 { (0.0, 0.0) } else { (lo, hi) };
            lower[k] = lo;
            n_bins[k] = (((hi - lo) / search).floor() as usize).max(1);
            width[k] = ((hi - lo) / n_bins[k] as f64).max(search);
        }
    }
    let limit = 2 * n + 64;
    while n_bins.iter().product::<usize>() > limit {
        let k = (0..3).max_by_key(|&k| n_bins[k]).unwrap_or(0);
        n_bins[k] = n_bins[k].div_ceil(2);
        if !pbc[k] {
            let extent = width[k] * (n_bins[k] * 2) as f64;
            width[k] = (extent / n_bins[k] as f64).max(search);
        }
    }
    let mut reach = [1i64; 3];
    for k in 0..3 {
        if pbc[k] {
            let bin_height = spacing[k] / n_bins[k] as f64;
            reach[k] = (search / bin_height).ceil() as i64;
        }
    }
    if reach.iter().any(|&r| r > 1_000) || n_bins.iter().any(|&b| b > i32::MAX as usize / 4) {
        return Err(Error::invalid("cell too small for the GPU neighbour list"));
    }
    let flat = |b: [usize; 3]| (b[0] * n_bins[1] + b[1]) * n_bins[2] + b[2];
    let total_bins = n_bins.iter().product::<usize>();
    let mut atom_bin = vec![0i32; 3 * n];
    let mut bin_start = vec![0u32; total_bins + 1];
    let mut flat_bin = vec![0usize; n];
    for (a, f) in frac.iter().enumerate() {
        let mut b = [0usize; 3];
        for k in 0..3 {
            let x = if pbc[k] {
                f[k] * n_bins[k] as f64
            } else {
                (f[k] - lower[k]) / width[k]
            };
            b[k] = (x.max(0.0) as usize).min(n_bins[k] - 1);
            atom_bin[3 * a + k] = b[k] as i32;
        }
        flat_bin[a] = flat(b);
        bin_start[flat_bin[a] + 1] += 1;
    }
    for k in 0..total_bins {
        bin_start[k + 1] += bin_start[k];
    }
    let mut fill = bin_start.clone();
    let mut bin_atoms = vec![0u32; n];
    for (a, &fb) in flat_bin.iter().enumerate() {
        bin_atoms[fill[fb] as usize] = a as u32;
        fill[fb] += 1;
    }
    let grid = BinGrid {
        n_bins: [n_bins[0] as i32, n_bins[1] as i32, n_bins[2] as i32],
        reach: [reach[0] as i32, reach[1] as i32, reach[2] as i32],
        pbc: [pbc[0] as i32, pbc[1] as i32, pbc[2] as i32],
    };
    let c = cell;
    Ok(Bins {
        grid,
        atom_bin,
        image,
        bin_start,
        bin_atoms,
        cell: [
            c[0][0], c[0][1], c[0][2], c[1][0], c[1][1], c[1][2], c[2][0], c[2][1], c[2][2],
        ],
    })
}
