//! Neighbour lists. An edge (j -> i) exists iff d = |r_j - r_i + shift| <= rc,
//! decided in f64 from the input coordinates in every precision mode, so every
//! engine sees the same graph (the student's energy jumps at rc).
//!
//! Pairs are found with an O(N) cell list in fractional coordinates, which handles
//! per-axis periodicity, triclinic cells, cells smaller than 2 rc (many images of
//! one atom) and unwrapped coordinates. Each unordered pair is stored once with a
//! canonical vector; its two directed edges use +vector and -vector exactly.

use rayon::prelude::*;

use crate::error::{Error, Result};

/// All pairs within the cutoff, and the directed edges grouped by destination.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NeighborList {
    pub n_atoms: usize,
    /// Pair p joins atoms `pair_i[p]` <= `pair_j[p]`.
    pub pair_i: Vec<u32>,
    pub pair_j: Vec<u32>,
    /// r_p = (r_j - r_i) + shift . cell, in Å (computed by [`pair_vector`]).
    pub pair_vector: Vec<[f64; 3]>,
    /// Lattice shift of atom j, in units of the input cell vectors.
    pub pair_shift: Vec<[i32; 3]>,
    /// Directed edges sorted by destination: edges of atom i are
    /// `edge_offsets[i]..edge_offsets[i + 1]`.
    pub edge_offsets: Vec<usize>,
    /// Source atom of each edge.
    pub edge_source: Vec<u32>,
    /// Pair of each edge.
    pub edge_pair: Vec<u32>,
    /// True when the edge is j -> i of its pair (vector +r_p), false for i -> j (-r_p).
    pub edge_forward: Vec<bool>,
}

impl NeighborList {
    pub fn n_pairs(&self) -> usize {
        self.pair_i.len()
    }
    pub fn n_edges(&self) -> usize {
        self.edge_source.len()
    }
    /// Vector r_ji = r_source - r_destination of edge `e`.
    pub fn edge_vector(&self, e: usize) -> [f64; 3] {
        let v = self.pair_vector[self.edge_pair[e] as usize];
        if self.edge_forward[e] {
            v
        } else {
            [-v[0], -v[1], -v[2]]
        }
    }
}

/// The one formula for a pair vector: (r_j - r_i) + (s0 a0 + s1 a1 + s2 a2).
#[inline]
pub fn pair_vector(
    ri: &[f64; 3],
    rj: &[f64; 3],
    shift: [i32; 3],
    cell: &[[f64; 3]; 3],
) -> [f64; 3] {
    let mut v = [0.0; 3];
    for c in 0..3 {
        let s = shift[0] as f64 * cell[0][c]
            + shift[1] as f64 * cell[1][c]
            + shift[2] as f64 * cell[2][c];
        v[c] = (rj[c] - ri[c]) + s;
    }
    v
}

/// The one formula for a distance (the cutoff decision uses it).
#[inline]
pub fn norm(v: &[f64; 3]) -> f64 {
    (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()
}

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

/// Checks that the cell vectors along periodic axes are linearly independent.
pub fn check_periodic_cell(cell: &[[f64; 3]; 3], pbc: [bool; 3]) -> Result<()> {
    let periodic: Vec<usize> = (0..3).filter(|&k| pbc[k]).collect();
    let scale_len = periodic.iter().map(|&k| norm(&cell[k])).fold(0.0, f64::max);
    let bad = |what: &str| {
        Err(Error::invalid(format!(
            "cell is singular along the periodic axes {periodic:?}: {what}"
        )))
    };
    for &k in &periodic {
        if norm(&cell[k]) < 1e-6 {
            return bad(&format!("cell vector {k} is (nearly) zero"));
        }
    }
    match periodic.len() {
        2 => {
            let n = cross(&cell[periodic[0]], &cell[periodic[1]]);
            if norm(&n) < 1e-9 * scale_len * scale_len {
                return bad("the two periodic vectors are parallel");
            }
        }
        3 => {
            let volume = dot(&cell[0], &cross(&cell[1], &cell[2])).abs();
            if volume < 1e-9 * scale_len.powi(3) {
                return bad("the cell has zero volume");
            }
        }
        _ => {}
    }
    Ok(())
}

/// A basis whose periodic rows are the cell vectors and whose other rows are an
/// orthonormal completion, so that coordinates along open axes are lengths.
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
            // Any vector not parallel to a, then Gram-Schmidt.
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

/// Inverse of a 3x3 matrix (rows as vectors), via cofactors.
fn inverse(m: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let c0 = cross(&m[1], &m[2]);
    let c1 = cross(&m[2], &m[0]);
    let c2 = cross(&m[0], &m[1]);
    let det = dot(&m[0], &c0);
    // x = f . m  =>  f = x . m^{-1}; columns of m^{-1} are c_k / det.
    let mut inv = [[0.0; 3]; 3];
    for r in 0..3 {
        inv[r][0] = c0[r] / det;
        inv[r][1] = c1[r] / det;
        inv[r][2] = c2[r] / det;
    }
    inv
}

/// Atoms binned for the cell-list search: the grid in fractional coordinates (lengths
/// along open axes), how many bins each search reaches, each atom's wrapped bin and
/// lattice image, and the atoms of each bin. Shared by the CPU list and the GPU list
/// (which searches the same bins on the device), so both find the same pairs.
pub(crate) struct CellBins {
    pub n_bins: [usize; 3],
    pub reach: [i64; 3],
    pub image: Vec<[i32; 3]>,
    pub atom_bin: Vec<[usize; 3]>,
    pub bin_start: Vec<usize>,
    pub bin_atoms: Vec<u32>,
}

/// Systems from this size bin their atoms and sort their edges in parallel (rayon);
/// smaller ones on the calling thread (a parallel pass costs a round trip to the pool,
/// tens of microseconds). Also the GPU list's host passes (engine::cuda).
pub(crate) const PARALLEL_MIN_ATOMS: usize = 1 << 13;
/// Edges from which the edge sort and its gathers run in parallel.
const PARALLEL_MIN_EDGES: usize = 4 * PARALLEL_MIN_ATOMS;

/// `f` of each item, in order: in parallel from `parallel_from` items, else on the
/// calling thread (see [`PARALLEL_MIN_ATOMS`]).
pub(crate) fn map_collect<T: Sync, U: Send>(
    items: &[T],
    parallel_from: usize,
    f: impl Fn(&T) -> U + Sync + Send,
) -> Vec<U> {
    if items.len() >= parallel_from {
        items
            .par_iter()
            .with_min_len(PARALLEL_MIN_ATOMS / 4)
            .map(f)
            .collect()
    } else {
        items.iter().map(f).collect()
    }
}
/// Whether a lattice image index is out of the supported range (or NaN: non-finite input).
#[allow(clippy::neg_cmp_op_on_partial_ord)]
fn beyond_image_range(image: f64) -> bool {
    !(image.abs() < 1e9)
}

/// Systems from this size search their pairs in parallel.
const PARALLEL_MIN_SEARCH_ATOMS: usize = 96;

/// The frame of a cell-list search: the basis whose fractional coordinates are binned
/// (lengths along open axes), its inverse, and the search radius (slightly widened: the
/// exact d <= rc test is made afterwards with [`pair_vector`] and [`norm`]). Shared with
/// the GPU list, which bins on the device with the same numbers.
pub(crate) struct BinFrame {
    pub basis: [[f64; 3]; 3],
    /// `fractional(r, k) = r[0] inv[0][k] + r[1] inv[1][k] + r[2] inv[2][k]`, summed left to right.
    pub inv: [[f64; 3]; 3],
    pub search: f64,
}

impl BinFrame {
    /// Fractional coordinate k of r (a length along open axes).
    fn fractional(&self, r: &[f64; 3], k: usize) -> f64 {
        let inv = &self.inv;
        r[0] * inv[0][k] + r[1] * inv[1][k] + r[2] * inv[2][k]
    }
}

/// (w in [0, 1), image) of a periodic fractional coordinate.
fn wrap(f: f64) -> (f64, f64) {
    let fl = f.floor();
    let (w, img) = (f - fl, fl);
    if w >= 1.0 {
        (w - 1.0, img + 1.0)
    } else {
        (w, img)
    }
}

pub(crate) fn bin_frame(cell: &[[f64; 3]; 3], pbc: [bool; 3], cutoff: f64) -> BinFrame {
    let basis = search_basis(cell, pbc);
    let inv = inverse(&basis);
    // Candidates are searched slightly beyond rc; the exact test decides.
    let search = cutoff * (1.0 + 1e-8) + 1e-10;
    BinFrame { basis, inv, search }
}

/// The bin grid: bins per axis, the lower edge and bin width along open axes (in
/// fractional units, i.e. lengths), and how many bins a search reaches along periodic ones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BinGrid {
    pub n_bins: [usize; 3],
    pub lower: [f64; 3],
    pub width: [f64; 3],
    pub reach: [i64; 3],
}

impl BinGrid {
    /// The grid of `n` atoms in `frame`; `extent(k)` gives (min, max) of the fractional
    /// coordinate along each open axis k (not called for periodic ones).
    pub(crate) fn new(
        frame: &BinFrame,
        pbc: [bool; 3],
        n: usize,
        extent: impl Fn(usize) -> (f64, f64),
    ) -> BinGrid {
        let (basis, search) = (&frame.basis, frame.search);
        // Plane spacings and bins per axis.
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
                let (lo, hi) = if n == 0 { (0.0, 0.0) } else { extent(k) };
                lower[k] = lo;
                n_bins[k] = (((hi - lo) / search).floor() as usize).max(1);
                width[k] = ((hi - lo) / n_bins[k] as f64).max(search);
            }
        }
        // Keep the bin grid O(N): sparse systems get coarser bins.
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
        BinGrid {
            n_bins,
            lower,
            width,
            reach,
        }
    }

    /// The bin of an atom with (wrapped) fractional coordinates `f`.
    pub(crate) fn bin_of(&self, pbc: [bool; 3], f: &[f64; 3]) -> [usize; 3] {
        let mut b = [0usize; 3];
        for k in 0..3 {
            let x = if pbc[k] {
                f[k] * self.n_bins[k] as f64
            } else {
                (f[k] - self.lower[k]) / self.width[k]
            };
            b[k] = (x.max(0.0) as usize).min(self.n_bins[k] - 1);
        }
        b
    }
}

/// Bins `positions` for a search of radius `cutoff` (see [`BinFrame`]).
pub(crate) fn bin_atoms(
    positions: &[[f64; 3]],
    cell: &[[f64; 3]; 3],
    pbc: [bool; 3],
    cutoff: f64,
) -> Result<CellBins> {
    let n = positions.len();
    let frame = bin_frame(cell, pbc, cutoff);

    // Fractional coordinates (lengths along open axes), the periodic part wrapped
    // to [0, 1) with the integer image of each atom remembered. Per atom, so in
    // parallel for large systems (a list rebuild of 10^5 atoms spent ~5 ms here).
    let fractional = |r: &[f64; 3], k: usize| frame.fractional(r, k);
    let mut frac = vec![[0.0f64; 3]; n];
    let mut image = vec![[0i32; 3]; n];
    let wrap_atom = |((f_out, i_out), r): ((&mut [f64; 3], &mut [i32; 3]), &[f64; 3])| {
        let mut far = false;
        for k in 0..3 {
            let f = fractional(r, k);
            if pbc[k] {
                let (w, img) = wrap(f);
                far |= beyond_image_range(img);
                f_out[k] = w;
                // (saturates for the far atoms reported below)
                i_out[k] = img as i32;
            } else {
                f_out[k] = f;
            }
        }
        far
    };
    let far = if n >= PARALLEL_MIN_ATOMS {
        frac.par_iter_mut()
            .zip(image.par_iter_mut())
            .zip(positions.par_iter())
            .with_min_len(PARALLEL_MIN_ATOMS / 4)
            .map(wrap_atom)
            .reduce(|| false, |a, b| a | b)
    } else {
        frac.iter_mut()
            .zip(image.iter_mut())
            .zip(positions.iter())
            .map(wrap_atom)
            .fold(false, |a, b| a | b)
    };
    if far {
        return Err(far_atom_error(positions, cell, pbc, cutoff));
    }
    let grid = BinGrid::new(&frame, pbc, n, |k| {
        frac.iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), f| {
                (lo.min(f[k]), hi.max(f[k]))
            })
    });
    let (n_bins, reach) = (grid.n_bins, grid.reach);
    let bin_of = |f: &[f64; 3]| grid.bin_of(pbc, f);
    let flat = |b: [usize; 3]| (b[0] * n_bins[1] + b[1]) * n_bins[2] + b[2];
    let total_bins = n_bins.iter().product::<usize>();
    let atom_bin: Vec<[usize; 3]> = map_collect(&frac, PARALLEL_MIN_ATOMS, bin_of);
    let mut bin_start = vec![0usize; total_bins + 1];
    for b in &atom_bin {
        bin_start[flat(*b) + 1] += 1;
    }
    for k in 0..total_bins {
        bin_start[k + 1] += bin_start[k];
    }
    let mut fill = bin_start.clone();
    let mut bin_atoms = vec![0u32; n];
    for (a, b) in atom_bin.iter().enumerate() {
        let slot = &mut fill[flat(*b)];
        bin_atoms[*slot] = a as u32;
        *slot += 1;
    }

    Ok(CellBins {
        n_bins,
        reach,
        image,
        atom_bin,
        bin_start,
        bin_atoms,
    })
}

/// The error for an atom more than 1e9 cells from the origin: the first such atom, as a
/// serial loop reports it (also for the GPU list, which only flags that one exists).
pub(crate) fn far_atom_error(
    positions: &[[f64; 3]],
    cell: &[[f64; 3]; 3],
    pbc: [bool; 3],
    cutoff: f64,
) -> Error {
    let frame = bin_frame(cell, pbc, cutoff);
    let far_out =
        |r: &[f64; 3]| (0..3).any(|k| pbc[k] && beyond_image_range(wrap(frame.fractional(r, k)).1));
    let a = positions.iter().position(far_out).unwrap_or(0);
    Error::invalid(format!(
        "atom {a} is more than 1e9 cells away from the origin"
    ))
}

/// Builds the neighbour list of `positions` with cutoff `cutoff` (edges with d <= cutoff).
/// Fails when two atoms sit at the same point.
pub fn build(
    positions: &[[f64; 3]],
    cell: Option<&[[f64; 3]; 3]>,
    pbc: [bool; 3],
    cutoff: f64,
) -> Result<NeighborList> {
    let n = positions.len();
    let zero_cell = [[0.0; 3]; 3];
    let cell = cell.unwrap_or(&zero_cell);
    if pbc.iter().any(|&b| b) {
        check_periodic_cell(cell, pbc)?;
    }
    if n > u32::MAX as usize / 2 {
        return Err(Error::invalid(format!(
            "{n} atoms is more than this neighbour list supports"
        )));
    }
    let CellBins {
        n_bins,
        reach,
        image,
        atom_bin,
        bin_start,
        bin_atoms,
    } = bin_atoms(positions, cell, pbc, cutoff)?;
    let flat = |b: [usize; 3]| (b[0] * n_bins[1] + b[1]) * n_bins[2] + b[2];

    // Pairs, per first atom i (parallel for large systems, concatenated in order:
    // deterministic).
    type Found = Vec<(u32, [f64; 3], [i32; 3])>;
    let pairs_of = |i: usize| -> Result<Found> {
        let mut found = Vec::new();
        let b = atom_bin[i];
        let range = |k: usize| -> (i64, i64) {
            if pbc[k] {
                (-reach[k], reach[k])
            } else {
                (-(b[k] as i64).min(1), (n_bins[k] - 1 - b[k]).min(1) as i64)
            }
        };
        let (r0, r1, r2) = (range(0), range(1), range(2));
        for o0 in r0.0..=r0.1 {
            for o1 in r1.0..=r1.1 {
                for o2 in r2.0..=r2.1 {
                    let offs = [o0, o1, o2];
                    let mut target = [0usize; 3];
                    let mut wrap = [0i32; 3];
                    for k in 0..3 {
                        let t = b[k] as i64 + offs[k];
                        let nb = n_bins[k] as i64;
                        target[k] = t.rem_euclid(nb) as usize;
                        wrap[k] = t.div_euclid(nb) as i32;
                    }
                    let fb = flat(target);
                    for &j in &bin_atoms[bin_start[fb]..bin_start[fb + 1]] {
                        let j = j as usize;
                        if j < i {
                            continue;
                        }
                        // Shift in the unwrapped frame of the input coordinates.
                        let mut shift = [0i32; 3];
                        for k in 0..3 {
                            shift[k] = wrap[k] - image[j][k] + image[i][k];
                        }
                        if j == i {
                            // One of each +/- pair of self images; never the atom itself.
                            let first = shift.iter().copied().find(|&s| s != 0);
                            if !matches!(first, Some(s) if s > 0) {
                                continue;
                            }
                        }
                        let v = pair_vector(&positions[i], &positions[j], shift, cell);
                        let d = norm(&v);
                        if d <= cutoff {
                            if d == 0.0 {
                                return Err(Error::invalid(format!(
                                    "atoms {i} and {j} are at the same position (shift {shift:?})"
                                )));
                            }
                            found.push((j as u32, v, shift));
                        }
                    }
                }
            }
        }
        // Bins are visited in a fixed order, but sort for a canonical list. The keys
        // (j, shift) are distinct, so an unstable sort gives the one order.
        found.sort_unstable_by(|a, b| (a.0, a.2).cmp(&(b.0, b.2)));
        Ok(found)
    };
    // Each atom's search visits ~10^3 candidates in dense periodic systems: worth the
    // pool's round trip from about a hundred atoms on (H100 host, 16 cores: 1002 atoms of
    // water 8.5 ms in one thread, 2.2 ms in parallel; 50-atom molecule 0.13 vs 0.47 ms).
    let per_atom: Vec<Result<Found>> = if n >= PARALLEL_MIN_SEARCH_ATOMS {
        (0..n).into_par_iter().map(pairs_of).collect()
    } else {
        (0..n).map(pairs_of).collect()
    };
    let per_atom: Vec<Found> = per_atom.into_iter().collect::<Result<_>>()?;
    let n_pairs: usize = per_atom.iter().map(Vec::len).sum();
    let mut list = NeighborList {
        n_atoms: n,
        pair_i: Vec::with_capacity(n_pairs),
        pair_j: Vec::with_capacity(n_pairs),
        pair_vector: Vec::with_capacity(n_pairs),
        pair_shift: Vec::with_capacity(n_pairs),
        ..Default::default()
    };
    for (i, found) in per_atom.into_iter().enumerate() {
        for (j, v, shift) in found {
            list.pair_i.push(i as u32);
            list.pair_j.push(j);
            list.pair_vector.push(v);
            list.pair_shift.push(shift);
        }
    }
    // Directed edges grouped by destination (counting sort, stable in pair order).
    let mut counts = vec![0usize; n + 1];
    for p in 0..list.n_pairs() {
        counts[list.pair_i[p] as usize + 1] += 1;
        counts[list.pair_j[p] as usize + 1] += 1;
    }
    for a in 0..n {
        counts[a + 1] += counts[a];
    }
    let n_edges = counts[n];
    let mut fill = counts.clone();
    list.edge_source = vec![0; n_edges];
    list.edge_pair = vec![0; n_edges];
    list.edge_forward = vec![false; n_edges];
    for p in 0..list.n_pairs() {
        let (i, j) = (list.pair_i[p] as usize, list.pair_j[p] as usize);
        // j -> i carries +r_p.
        let e = fill[i];
        fill[i] += 1;
        list.edge_source[e] = j as u32;
        list.edge_pair[e] = p as u32;
        list.edge_forward[e] = true;
        let e = fill[j];
        fill[j] += 1;
        list.edge_source[e] = i as u32;
        list.edge_pair[e] = p as u32;
        list.edge_forward[e] = false;
    }
    list.edge_offsets = counts;
    sort_edges_by_distance(&mut list);
    Ok(list)
}

/// Orders each atom's incoming edges by distance (then pair index). Atoms related by a
/// symmetry of the structure then sum their messages in the same order and get
/// bitwise identical states, so a site where vector messages cancel (the carbon of
/// CO2) sees exactly |v| = 0, where the model's gradient convention applies, rather
/// than a rounding residue whose direction is noise.
fn sort_edges_by_distance(list: &mut NeighborList) {
    // Small lists stay on the calling thread: a parallel pass costs a round trip to
    // rayon's pool (tens of microseconds), more than sorting ~3 x 10^4 edges costs.
    let parallel = list.edge_source.len() >= PARALLEL_MIN_EDGES;
    let distance: Vec<f64> = map_collect(&list.pair_vector, PARALLEL_MIN_EDGES, norm);
    // Each atom's range sorted independently (in parallel), then one gather per array.
    // Sort keys are built first (no indirection in the comparisons): distance bits (d > 0,
    // so they order as the distances), then pair, then the forward edge first. Keys are
    // distinct (the two edges of a self-image pair differ in direction).
    let sorted_range = |i: usize| {
        let mut keyed: Vec<(u64, u64, usize)> = (list.edge_offsets[i]..list.edge_offsets[i + 1])
            .map(|e| {
                let p = list.edge_pair[e] as usize;
                (
                    distance[p].to_bits(),
                    ((p as u64) << 1) | u64::from(!list.edge_forward[e]),
                    e,
                )
            })
            .collect();
        keyed.sort_unstable();
        keyed.into_iter().map(|k| k.2)
    };
    let order: Vec<usize> = if parallel {
        (0..list.n_atoms)
            .into_par_iter()
            .flat_map_iter(sorted_range)
            .collect()
    } else {
        (0..list.n_atoms).flat_map(sorted_range).collect()
    };
    list.edge_source = map_collect(&order, PARALLEL_MIN_EDGES, |&e| list.edge_source[e]);
    list.edge_pair = map_collect(&order, PARALLEL_MIN_EDGES, |&e| list.edge_pair[e]);
    list.edge_forward = map_collect(&order, PARALLEL_MIN_EDGES, |&e| list.edge_forward[e]);
}

/// O(N^2 x images) reference search with the same pair formula, for tests.
pub fn brute_force_pairs(
    positions: &[[f64; 3]],
    cell: Option<&[[f64; 3]; 3]>,
    pbc: [bool; 3],
    cutoff: f64,
) -> Vec<(u32, u32, [i32; 3])> {
    let zero_cell = [[0.0; 3]; 3];
    let cell = cell.unwrap_or(&zero_cell);
    let basis = search_basis(cell, pbc);
    let volume = dot(&basis[0], &cross(&basis[1], &basis[2])).abs();
    // Positions may be unwrapped: allow for the spread of the coordinates.
    let inv = inverse(&basis);
    let mut span = [0i64; 3];
    for k in 0..3 {
        if pbc[k] {
            let (a, b) = ((k + 1) % 3, (k + 2) % 3);
            let spacing = volume / norm(&cross(&basis[a], &basis[b]));
            let fs: Vec<f64> = positions
                .iter()
                .map(|r| r[0] * inv[0][k] + r[1] * inv[1][k] + r[2] * inv[2][k])
                .collect();
            let spread = fs.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
                - fs.iter().cloned().fold(f64::INFINITY, f64::min);
            span[k] = (cutoff / spacing).ceil() as i64 + spread.ceil() as i64 + 1;
        }
    }
    let mut pairs = Vec::new();
    for i in 0..positions.len() {
        for j in i..positions.len() {
            for s0 in -span[0]..=span[0] {
                for s1 in -span[1]..=span[1] {
                    for s2 in -span[2]..=span[2] {
                        let shift = [s0 as i32, s1 as i32, s2 as i32];
                        if i == j
                            && !matches!(shift.iter().copied().find(|&s| s != 0), Some(s) if s > 0)
                        {
                            continue;
                        }
                        let v = pair_vector(&positions[i], &positions[j], shift, cell);
                        if norm(&v) <= cutoff {
                            pairs.push((i as u32, j as u32, shift));
                        }
                    }
                }
            }
        }
    }
    pairs.sort();
    pairs
}
