//! Host side of the GPU neighbour list (`kernels/neighbor_list.cu`): the O(N) binning
//! of `neighbors::build`, mirrored step by step (same basis, fractional coordinates,
//! images, bin grid and search reach), so that the GPU search visits the same bins
//! and produces the same pairs in the same canonical order.

use crate::error::{Error, Result};
use crate::neighbors::{map_collect, PARALLEL_MIN_ATOMS};
use rayon::prelude::*;

/// The GPU list's own host passes (flattening, renumbering, the sorted positions) run in
/// parallel from this many atoms: at 10^4 atoms in parallel they made a step with a
/// rebuild 1.4 ms slower (H100 host, 16 cores: 5.5 vs 4.15 ms at water10k).
pub(super) const PARALLEL_MIN_ROWS: usize = 2 * PARALLEL_MIN_ATOMS;

/// Rows of three, flattened (in parallel for large inputs).
fn flatten3<T: Copy + Send + Sync, U: Copy + Default + Send + Sync>(
    rows: &[[T; 3]],
    f: impl Fn(T) -> U + Sync,
) -> Vec<U> {
    let mut out = vec![U::default(); 3 * rows.len()];
    let row = |(o, r): (&mut [U], &[T; 3])| {
        o[0] = f(r[0]);
        o[1] = f(r[1]);
        o[2] = f(r[2]);
    };
    if rows.len() >= PARALLEL_MIN_ROWS {
        out.par_chunks_mut(3)
            .zip(rows.par_iter())
            .with_min_len(PARALLEL_MIN_ATOMS / 4)
            .for_each(row);
    } else {
        out.chunks_mut(3).zip(rows.iter()).for_each(row);
    }
    out
}

/// The bin grid, as passed to the kernels by value.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BinGrid {
    pub n_bins: [i32; 3],
    pub reach: [i32; 3],
    pub pbc: [i32; 3],
}
// SAFETY: plain C struct of ints, laid out as `struct BinGrid` in neighbor_list.cu.
unsafe impl cudarc::driver::DeviceRepr for BinGrid {}

/// Atoms binned as `neighbors::build` bins them.
#[derive(Debug, Default, PartialEq)]
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

/// The cell (zeros without one), checked where some axis is periodic.
fn checked_cell(cell: Option<&[[f64; 3]; 3]>, pbc: [bool; 3]) -> Result<[[f64; 3]; 3]> {
    let cell = cell.copied().unwrap_or([[0.0; 3]; 3]);
    if pbc.iter().any(|&b| b) {
        crate::neighbors::check_periodic_cell(&cell, pbc)?;
    }
    Ok(cell)
}

pub fn bin_atoms(
    positions: &[[f64; 3]],
    cell: Option<&[[f64; 3]; 3]>,
    pbc: [bool; 3],
    cutoff: f64,
) -> Result<Bins> {
    let cell = &checked_cell(cell, pbc)?;
    // The host's binning itself, converted to the kernels' flat integer layout.
    let bins = crate::neighbors::bin_atoms(positions, cell, pbc, cutoff)?;
    let (n_bins, reach) = (bins.n_bins, bins.reach);
    check_grid(n_bins, reach)?;
    let grid = BinGrid {
        n_bins: [n_bins[0] as i32, n_bins[1] as i32, n_bins[2] as i32],
        reach: [reach[0] as i32, reach[1] as i32, reach[2] as i32],
        pbc: [pbc[0] as i32, pbc[1] as i32, pbc[2] as i32],
    };
    let c = cell;
    Ok(Bins {
        grid,
        atom_bin: flatten3(&bins.atom_bin, |x| x as i32),
        image: flatten3(&bins.image, |x| x),
        bin_start: bins.bin_start.iter().map(|&x| x as u32).collect(),
        bin_atoms: bins.bin_atoms,
        cell: [
            c[0][0], c[0][1], c[0][2], c[1][0], c[1][1], c[1][2], c[2][0], c[2][1], c[2][2],
        ],
    })
}

/// Atoms smaller than this stay in the caller's order (the whole system fits in L2).
pub const SORT_MIN_ATOMS: usize = 1000;

/// The rank of each bin (flat index, last axis fastest) along a Morton (Z-order) curve
/// over the grid: `rank[b]` = how many bins come before b on the curve.
pub fn bin_rank(n_bins: [usize; 3]) -> Vec<u32> {
    let n = n_bins;
    let spread = |x: usize| -> u64 {
        // Bits of x spread to every third bit (up to 21 bits per axis).
        let mut x = x as u64 & 0x1f_ffff;
        x = (x | x << 32) & 0x1f_0000_0000_ffff;
        x = (x | x << 16) & 0x1f_0000_ff00_00ff;
        x = (x | x << 8) & 0x100f_00f0_0f00_f00f;
        x = (x | x << 4) & 0x10c3_0c30_c30c_30c3;
        x = (x | x << 2) & 0x1249_2492_4924_9249;
        x
    };
    let total = n[0] * n[1] * n[2];
    let mut keyed: Vec<(u64, usize)> = (0..total)
        .map(|b| {
            let (x, y, z) = (b / (n[1] * n[2]), (b / n[2]) % n[1], b % n[2]);
            (spread(x) << 2 | spread(y) << 1 | spread(z), b)
        })
        .collect();
    keyed.sort_unstable();
    let mut rank = vec![0u32; total];
    for (r, &(_, b)) in keyed.iter().enumerate() {
        rank[b] = r as u32;
    }
    rank
}

/// A spatial order of the atoms: bins along a Morton (Z-order) curve over the bin grid
/// ([`bin_rank`]), each bin's atoms in the caller's order. `order[k]` is the caller's
/// index of the atom the engine numbers `k`; neighbours then sit close in memory (fewer
/// L2 misses on the neighbour rows of large systems). Deterministic: a function of the
/// bins only. `neighbor_bins.cu` forms the same permutation on the device.
pub fn spatial_order(bins: &Bins) -> Vec<u32> {
    let rank = bin_rank(bins.grid.n_bins.map(|b| b as usize));
    let mut by_rank = vec![0usize; rank.len()];
    for (b, &r) in rank.iter().enumerate() {
        by_rank[r as usize] = b;
    }
    let mut order = Vec::with_capacity(bins.bin_atoms.len());
    for b in by_rank {
        let (s, e) = (bins.bin_start[b] as usize, bins.bin_start[b + 1] as usize);
        order.extend_from_slice(&bins.bin_atoms[s..e]);
    }
    order
}

/// What `neighbor_bins.cu` needs to bin atoms as [`bin_atoms`] does, passed by value:
/// the inverse basis of the search frame and the grid.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BinMap {
    /// Row-major: fractional(r, k) = r0 inv[k] + r1 inv[3 + k] + r2 inv[6 + k].
    pub inv: [f64; 9],
    pub lower: [f64; 3],
    pub width: [f64; 3],
    pub n_bins: [i32; 3],
    pub pbc: [i32; 3],
}
// SAFETY: plain C struct of doubles and ints, laid out as `struct BinMap` in
// neighbor_bins.cu (no padding: 15 doubles, then 6 ints).
unsafe impl cudarc::driver::DeviceRepr for BinMap {}

/// The device binning's frame: the search frame of `neighbors::bin_atoms` for this cell,
/// with the grid still to be filled in (`with_grid`) once the open axes' extent is known.
pub(crate) fn bin_map_frame(
    cell: Option<&[[f64; 3]; 3]>,
    pbc: [bool; 3],
    cutoff: f64,
) -> Result<(crate::neighbors::BinFrame, BinMap)> {
    let frame = crate::neighbors::bin_frame(&checked_cell(cell, pbc)?, pbc, cutoff);
    let mut map = BinMap {
        pbc: pbc.map(|b| b as i32),
        ..Default::default()
    };
    for r in 0..3 {
        for k in 0..3 {
            map.inv[3 * r + k] = frame.inv[r][k];
        }
    }
    Ok((frame, map))
}

/// The grid of `n` atoms (`extent`: min and max fractional coordinate of each open axis,
/// as found on the device) in the map and in the search kernels' form, as [`bin_atoms`]
/// derives it.
pub(crate) fn with_grid(
    frame: &crate::neighbors::BinFrame,
    mut map: BinMap,
    n: usize,
    extent: [(f64, f64); 3],
) -> Result<(BinMap, BinGrid)> {
    let pbc = map.pbc.map(|p| p != 0);
    let g = crate::neighbors::BinGrid::new(frame, pbc, n, |k| extent[k]);
    check_grid(g.n_bins, g.reach)?;
    map.lower = g.lower;
    map.width = g.width;
    map.n_bins = g.n_bins.map(|b| b as i32);
    let grid = BinGrid {
        n_bins: map.n_bins,
        reach: g.reach.map(|r| r as i32),
        pbc: map.pbc,
    };
    Ok((map, grid))
}

/// The search kernels' limits on the grid (int indices, a bounded number of searched bins).
fn check_grid(n_bins: [usize; 3], reach: [i64; 3]) -> Result<()> {
    if reach.iter().any(|&r| r > 1_000) || n_bins.iter().any(|&b| b > i32::MAX as usize / 4) {
        return Err(Error::invalid("cell too small for the GPU neighbour list"));
    }
    Ok(())
}

/// The order-preserving key of a double that `neighbor_bins.cu` takes minima and maxima
/// of (`order_key_`), and back.
pub fn from_order_key(key: u64) -> f64 {
    f64::from_bits(if key >> 63 != 0 {
        key & !(1u64 << 63)
    } else {
        !key
    })
}

impl Bins {
    /// The bins of the same atoms renumbered by `order` (`order[k]` = old index of new atom
    /// k): exactly what [`bin_atoms`] returns for the permuted positions, without binning
    /// again. Binning is per atom (each keeps its bin and image; the grid depends on the set
    /// of positions only), and each bin lists its atoms in ascending index order.
    pub fn renumbered(&self, order: &[u32]) -> Bins {
        let n = order.len();
        let mut new_index = vec![0u32; n];
        for (k, &old) in order.iter().enumerate() {
            new_index[old as usize] = k as u32;
        }
        let (mut atom_bin, mut image) = (vec![0i32; 3 * n], vec![0i32; 3 * n]);
        let copy_row = |((bin, img), &old): ((&mut [i32], &mut [i32]), &u32)| {
            let o = 3 * old as usize;
            bin.copy_from_slice(&self.atom_bin[o..o + 3]);
            img.copy_from_slice(&self.image[o..o + 3]);
        };
        // Small systems stay on the calling thread (a parallel pass costs a round trip
        // to rayon's pool).
        let parallel = n >= PARALLEL_MIN_ROWS;
        if parallel {
            atom_bin
                .par_chunks_mut(3)
                .zip(image.par_chunks_mut(3))
                .zip(order.par_iter())
                .with_min_len(PARALLEL_MIN_ATOMS / 4)
                .for_each(copy_row);
        } else {
            atom_bin
                .chunks_mut(3)
                .zip(image.chunks_mut(3))
                .zip(order.iter())
                .for_each(copy_row);
        }
        let mut bin_atoms = map_collect(&self.bin_atoms, PARALLEL_MIN_ROWS, |&old| {
            new_index[old as usize]
        });
        // Each bin's atoms in ascending order: the bins are disjoint slices.
        let mut rest = &mut bin_atoms[..];
        let mut per_bin = Vec::with_capacity(self.bin_start.len().saturating_sub(1));
        for w in self.bin_start.windows(2) {
            let (bin, tail) = rest.split_at_mut((w[1] - w[0]) as usize);
            per_bin.push(bin);
            rest = tail;
        }
        if parallel {
            per_bin
                .par_iter_mut()
                .with_min_len(PARALLEL_MIN_ATOMS / 32)
                .for_each(|bin| bin.sort_unstable());
        } else {
            per_bin.iter_mut().for_each(|bin| bin.sort_unstable());
        }
        Bins {
            grid: self.grid,
            atom_bin,
            image,
            bin_start: self.bin_start.clone(),
            bin_atoms,
            cell: self.cell,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::structures;

    /// `order_key_` of neighbor_bins.cu.
    fn order_key(x: f64) -> u64 {
        let b = x.to_bits();
        if b >> 63 != 0 {
            !b
        } else {
            b | 1 << 63
        }
    }

    /// Positions, cell and periodic flags of a test system.
    type Case = (Vec<[f64; 3]>, Option<[[f64; 3]; 3]>, [bool; 3]);

    #[test]
    fn renumbered_bins_equal_binning_the_permuted_positions() {
        // Periodic water, a periodic triclinic cell, an open molecule; the spatial order
        // and an arbitrary permutation (reversal with a stride).
        let water = structures::water_box(300, 1.0, 3);
        let triclinic = [[14.0, 0.0, 0.0], [3.0, 13.0, 0.0], [-2.0, 4.0, 15.0]];
        let tri_positions: Vec<[f64; 3]> = (0..500)
            .map(|a| {
                let f = [
                    (a * 37 % 101) as f64 / 101.0,
                    (a * 53 % 97) as f64 / 97.0,
                    (a * 71 % 89) as f64 / 89.0,
                ];
                let mut r = [0.0; 3];
                for (k, row) in triclinic.iter().enumerate() {
                    for c in 0..3 {
                        r[c] += f[k] * row[c];
                    }
                }
                // Some atoms outside the cell (unwrapped coordinates).
                if a % 7 == 0 {
                    r[0] += 2.0 * triclinic[0][0];
                }
                r
            })
            .collect();
        let molecule = structures::random_molecule(200, 4);
        let cases: Vec<Case> = vec![
            (water.positions.clone(), water.cell, [true; 3]),
            (tri_positions, Some(triclinic), [true, true, false]),
            (molecule.positions.clone(), None, [false; 3]),
        ];
        for (positions, cell, pbc) in cases {
            let bins = bin_atoms(&positions, cell.as_ref(), pbc, 5.3).unwrap();
            let n = positions.len() as u32;
            let strided: Vec<u32> = (0..n).map(|k| (n - 1 - k) * 7 % n).collect();
            let mut check = strided.clone();
            check.sort_unstable();
            assert_eq!(check, (0..n).collect::<Vec<_>>(), "the test's permutation");
            for order in [spatial_order(&bins), strided] {
                let permuted: Vec<[f64; 3]> =
                    order.iter().map(|&a| positions[a as usize]).collect();
                let want = bin_atoms(&permuted, cell.as_ref(), pbc, 5.3).unwrap();
                assert_eq!(bins.renumbered(&order), want, "pbc {pbc:?}");
            }
        }
    }

    #[test]
    fn device_binning_grid_equals_the_host_grid() {
        // The grid `neighbor_bins.cu` is given (from the device's extent of the open
        // axes) against the host binning's, for periodic, slab, wire and open systems,
        // including a sparse one (the grid is coarsened to O(N) bins).
        let molecule = structures::random_molecule(300, 5);
        let water = structures::water_box(200, 1.0, 2);
        let slab_cell = [[12.0, 0.0, 0.0], [2.0, 11.0, 0.0], [0.0, 0.0, 0.0]];
        let wire_cell = [[0.0; 3], [0.0; 3], [0.3, 0.2, 17.0]];
        let sparse: Vec<[f64; 3]> = (0..40)
            .map(|a| [a as f64 * 9.0, 0.5 * a as f64, -3.0])
            .collect();
        let cases: Vec<Case> = vec![
            (water.positions.clone(), water.cell, [true; 3]),
            (
                molecule.positions.clone(),
                Some(slab_cell),
                [true, true, false],
            ),
            (
                molecule.positions.clone(),
                Some(wire_cell),
                [false, false, true],
            ),
            (molecule.positions.clone(), None, [false; 3]),
            (sparse, None, [false; 3]),
        ];
        for (positions, cell, pbc) in cases {
            let want = bin_atoms(&positions, cell.as_ref(), pbc, 5.3).unwrap();
            let (frame, map) = bin_map_frame(cell.as_ref(), pbc, 5.3).unwrap();
            // The open axes' extent, as the kernel finds it (through the order keys).
            let key = order_key;
            let mut extent = [(0.0, 0.0); 3];
            for (k, e) in extent.iter_mut().enumerate() {
                let f = |r: &[f64; 3]| {
                    r[0] * map.inv[k] + r[1] * map.inv[3 + k] + r[2] * map.inv[6 + k]
                };
                let lo = positions.iter().map(|r| key(f(r))).min().unwrap();
                let hi = positions.iter().map(|r| key(f(r))).max().unwrap();
                *e = (from_order_key(lo), from_order_key(hi));
            }
            let (map, grid) = with_grid(&frame, map, positions.len(), extent).unwrap();
            assert_eq!(grid, want.grid, "pbc {pbc:?}");
            // Every atom's bin from the map, as the kernel forms it.
            let g = crate::neighbors::BinGrid {
                n_bins: map.n_bins.map(|b| b as usize),
                lower: map.lower,
                width: map.width,
                reach: [0; 3],
            };
            for (a, r) in positions.iter().enumerate() {
                let mut f = [0.0; 3];
                for k in 0..3 {
                    f[k] = r[0] * map.inv[k] + r[1] * map.inv[3 + k] + r[2] * map.inv[6 + k];
                    if pbc[k] {
                        f[k] -= f[k].floor();
                        if f[k] >= 1.0 {
                            f[k] -= 1.0;
                        }
                    }
                }
                let b = g.bin_of(pbc, &f).map(|x| x as i32);
                assert_eq!(
                    b[..],
                    want.atom_bin[3 * a..3 * a + 3],
                    "atom {a}, pbc {pbc:?}"
                );
            }
        }
        for x in [0.0, -0.0, 1.5, -1.5, f64::MIN_POSITIVE, -1e300, 7e-310] {
            assert_eq!(from_order_key(order_key(x)).to_bits(), x.to_bits());
        }
    }

    #[test]
    fn bin_rank_is_a_permutation_along_the_z_curve() {
        let rank = bin_rank([3, 5, 2]);
        let mut seen = rank.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..30).collect::<Vec<u32>>());
        // The first bins on the curve: the origin, then z, then y (x slowest).
        assert_eq!(rank[0], 0); // (0, 0, 0)
        assert_eq!(rank[1], 1); // (0, 0, 1)
        assert_eq!(rank[2], 2); // (0, 1, 0)
        assert_eq!(rank[10], 4); // (1, 0, 0)
    }

    #[test]
    fn spatial_order_is_a_permutation_that_keeps_neighbours_close() {
        // A 12 x 12 x 12 simple cubic lattice (spacing 2 Å) in x-fastest order: with a
        // 2.1 Å cutoff the bins hold one atom each; lattice neighbours along z are 144
        // indices apart in that order, and on average much closer along the Z-curve.
        let side = 12usize;
        let cell = [[24.0, 0.0, 0.0], [0.0, 24.0, 0.0], [0.0, 0.0, 24.0]];
        let positions: Vec<[f64; 3]> = (0..side * side * side)
            .map(|a| {
                let (x, y, z) = (a % side, (a / side) % side, a / (side * side));
                [
                    2.0 * x as f64 + 0.5,
                    2.0 * y as f64 + 0.5,
                    2.0 * z as f64 + 0.5,
                ]
            })
            .collect();
        let bins = bin_atoms(&positions, Some(&cell), [true; 3], 2.1).unwrap();
        let order = spatial_order(&bins);
        let mut seen = order.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..positions.len() as u32).collect::<Vec<_>>());
        let mut rank = vec![0usize; order.len()];
        for (k, &a) in order.iter().enumerate() {
            rank[a as usize] = k;
        }
        // Mean index distance between lattice neighbours along z (no wrap).
        let mean = |index: &dyn Fn(usize) -> usize| -> f64 {
            let mut sum = 0.0;
            let mut count = 0.0;
            for a in 0..positions.len() - side * side {
                let b = a + side * side;
                sum += (index(a) as f64 - index(b) as f64).abs();
                count += 1.0;
            }
            sum / count
        };
        let caller = mean(&|a| a);
        let sorted = mean(&|a| rank[a]);
        assert_eq!(caller, (side * side) as f64);
        assert!(
            sorted < 0.5 * caller,
            "Z-order mean gap {sorted} vs {caller}"
        );
    }
}
