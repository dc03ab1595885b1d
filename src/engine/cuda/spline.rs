//! The filter phi(d) of each block as a piecewise cubic table (host side).
//!
//! The filter MLP depends on the pair distance only, so the GPU does not run it per
//! pair: the exact f64 values of phi (3H channels) and dphi/dd at `n_nodes` equally
//! spaced distances on [0, rc] define a cubic Hermite interpolant, stored per interval
//! as the coefficients of its local polynomial in t (see `kernels/common.cuh`,
//! `Spline`; storing coefficients rather than node values avoids the cancellation
//! of f32 differences in the derivative). The interpolation error is O(h^4) for phi
//! and O(h^3) for dphi/dd; [`max_table_error`] measures it, in f64 or with the
//! coefficients and arithmetic rounded to f32 as on the GPU.

use rayon::prelude::*;

use crate::model::{Block, StudentWeights};

/// Exact filter of one block at distance `d`: (phi, dphi/dd), 3H values each, in f64
/// (the CPU engine's implementation, so both engines tabulate the same function).
pub fn filter_exact(weights: &StudentWeights, block: &Block, d: f64) -> (Vec<f64>, Vec<f64>) {
    let width = block.filter2.n_out;
    let (mut phi, mut dphi) = (vec![0.0; width], vec![0.0; width]);
    crate::engine::cpu::filter_table::filter_exact(weights, block, d, &mut phi, &mut dphi);
    (phi, dphi)
}

/// Table of one block: `n_nodes - 1` intervals x 3H channels x [c0, c1, c2, c3], flattened,
/// with phi(d) = c0 + c1 t + c2 t^2 + c3 t^3, t = d / h - k on interval k.
pub fn build_table(weights: &StudentWeights, block: &Block, n_nodes: usize) -> Vec<f64> {
    let rc = weights.config.cutoff;
    let step = rc / (n_nodes - 1) as f64;
    let width = block.filter2.n_out;
    let nodes: Vec<(Vec<f64>, Vec<f64>)> = (0..n_nodes)
        .into_par_iter()
        .map(|k| {
            filter_exact(
                weights,
                block,
                if k + 1 == n_nodes {
                    rc
                } else {
                    k as f64 * step
                },
            )
        })
        .collect();
    let mut table = Vec::with_capacity((n_nodes - 1) * width * 4);
    for k in 0..n_nodes - 1 {
        let ((f0, d0), (f1, d1)) = (&nodes[k], &nodes[k + 1]);
        for q in 0..width {
            let (g0, g1) = (d0[q] * step, d1[q] * step);
            table.push(f0[q]);
            table.push(g0);
            table.push(3.0 * (f1[q] - f0[q]) - 2.0 * g0 - g1);
            table.push(2.0 * (f0[q] - f1[q]) + g0 + g1);
        }
    }
    table
}

/// The arithmetic in which a table is evaluated (as the kernels do).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arithmetic {
    /// f64 coefficients and operations (the f64 engine).
    F64,
    /// Coefficients, fraction and operations rounded to f32 (the f32 engine).
    F32,
    /// The mixed engine: the f16 table of [`half_table`], f32 operations.
    F16Table,
}

/// Converts an f64 table (coefficients in t) to the mixed engine's f16 table
/// (`Cubic16` in `kernels/common.cuh`): per interval and channel e_n = c_n / h^n, the
/// coefficients of the same cubic in x = t h (Angstrom), as raw f16 bits. In t, c2
/// and c3 are ~h^2 and ~h^3 times smaller than c0 and would underflow f16; in x all
/// four are derivatives in physical units.
pub fn half_table(table: &[f64], n_nodes: usize, rc: f64) -> Vec<u16> {
    let inv_h = (n_nodes - 1) as f64 / rc;
    table
        .chunks_exact(4)
        .flat_map(|c| {
            let mut scale = 1.0;
            let mut out = [0u16; 4];
            for (o, &v) in out.iter_mut().zip(c) {
                *o = half::f16::from_f64(v * scale).to_bits();
                scale *= inv_h;
            }
            out
        })
        .collect()
}

/// Interpolates a table as the kernels do: (phi, dphi/dd) of channel q, evaluated in
/// `arithmetic` (k and t always come from f64, as pair_geometry forms them).
pub fn interpolate(
    table: &[f64],
    n_nodes: usize,
    width: usize,
    rc: f64,
    d: f64,
    q: usize,
    arithmetic: Arithmetic,
) -> (f64, f64) {
    let n_intervals = n_nodes - 1;
    let inv_h = n_intervals as f64 / rc;
    let x = d * inv_h;
    let k = (x as usize).min(n_intervals - 1);
    let c = &table[4 * (k * width + q)..4 * (k * width + q) + 4];
    match arithmetic {
        Arithmetic::F64 => {
            let t = x - k as f64;
            let f = c[0] + t * (c[1] + t * (c[2] + t * c[3]));
            let df = (c[1] + t * (2.0 * c[2] + t * (3.0 * c[3]))) * inv_h;
            (f, df)
        }
        Arithmetic::F32 => {
            let t = (x - k as f64) as f32;
            let inv_h = inv_h as f32;
            let c: Vec<f32> = c.iter().map(|&v| v as f32).collect();
            let f = c[0] + t * (c[1] + t * (c[2] + t * c[3]));
            let df = (c[1] + t * (2.0 * c[2] + t * (3.0 * c[3]))) * inv_h;
            (f as f64, df as f64)
        }
        Arithmetic::F16Table => {
            let e: Vec<f32> = half_table(c, n_nodes, rc)
                .iter()
                .map(|&b| half::f16::from_bits(b).to_f32())
                .collect();
            let t = (x - k as f64) as f32;
            let x = t / inv_h as f32;
            let f = e[0] + x * (e[1] + x * (e[2] + x * e[3]));
            let df = e[1] + x * (2.0 * e[2] + x * (3.0 * e[3]));
            (f as f64, df as f64)
        }
    }
}

/// Largest error of the table of `block` against the exact filter, over `samples`
/// distances in (0, rc]: (max |phi error| / max |phi|, max |dphi error| / max |dphi|).
pub fn max_table_error(
    weights: &StudentWeights,
    block: &Block,
    n_nodes: usize,
    samples: usize,
    arithmetic: Arithmetic,
) -> (f64, f64) {
    let rc = weights.config.cutoff;
    let table = build_table(weights, block, n_nodes);
    let width = block.filter2.n_out;
    max_error(weights, block, samples, |d, q| {
        interpolate(&table, n_nodes, width, rc, d, q, arithmetic)
    })
}

/// Largest error of an approximation `approx(d, q) -> (phi, dphi/dd)` of the filter of
/// `block` over `samples` distances in (0, rc]: (max |phi error| / max |phi|,
/// max |dphi error| / max |dphi|).
fn max_error(
    weights: &StudentWeights,
    block: &Block,
    samples: usize,
    approx: impl Fn(f64, usize) -> (f64, f64),
) -> (f64, f64) {
    let rc = weights.config.cutoff;
    let width = block.filter2.n_out;
    let (mut e0, mut e1, mut m0, mut m1) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for s in 0..samples {
        // Irrational stride so the samples do not sit on nodes.
        let d = rc * (((s as f64 + 0.5) * 0.618_033_988_749_894_9) % 1.0).max(1e-3);
        let (phi, dphi) = filter_exact(weights, block, d);
        for q in 0..width {
            let (f, df) = approx(d, q);
            e0 = e0.max((f - phi[q]).abs());
            e1 = e1.max((df - dphi[q]).abs());
            m0 = m0.max(phi[q].abs());
            m1 = m1.max(dphi[q].abs());
        }
    }
    (e0 / m0, e1 / m1)
}

/// Shape of a polynomial filter table (`kernels/common.cuh`, "Filter polynomials"):
/// `intervals` equal intervals on [0, rc], a polynomial of `degree` per interval and
/// channel, channels in groups of [`POLY_GROUP`] (one CTA's shared-memory slice).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolyShape {
    pub intervals: usize,
    pub degree: usize,
    /// Each lane's coefficients of an interval contiguous, [interval][lane][part][n],
    /// padded to `lane_floats` (a multiple of 4 with an odd number of 16-byte words, so
    /// that the kernels' 16-byte loads of eight lanes hit distinct banks; the kernels'
    /// `POLY_VALUE_LANE_FLOATS` / `POLY_GRAD_LANE_FLOATS`). 0: interleaved by lane,
    /// [interval][n][part][lane], the former layout, which no kernel reads any more: the
    /// tests' reference for the other.
    pub lane_floats: usize,
}

/// Channels per group: one warp's lanes, for each of the three parts of phi.
pub const POLY_GROUP: usize = 32;

/// The table the message kernels read (phi only): 64 intervals of degree 5, 18
/// coefficients per lane padded to 20 (164 KB of shared memory per group).
pub const POLY_VALUE: PolyShape = PolyShape {
    intervals: 64,
    degree: 5,
    lane_floats: 20,
};
/// The table `edge_backward` reads (phi and dphi/dd): 48 intervals of degree 7, 24
/// coefficients per lane padded to 28 (172 KB per group: six 16-byte loads per
/// interval); the derivative needs the higher order. On the released student (numpy,
/// f32 arithmetic) dphi/dd is within 2.4e-6 of its largest value (32 x 9: 5e-7, but 4%
/// slower at water10k, same force error 1.6e-6).
pub const POLY_GRAD: PolyShape = PolyShape {
    intervals: 48,
    degree: 7,
    lane_floats: 28,
};

impl PolyShape {
    /// f32 values of one group's slice.
    pub fn group_floats(&self) -> usize {
        self.intervals * self.interval_floats()
    }
    fn interval_floats(&self) -> usize {
        match self.lane_floats {
            0 => (self.degree + 1) * 3 * POLY_GROUP,
            lane_floats => lane_floats * POLY_GROUP,
        }
    }
    /// Where coefficient n of `part` of the group's channel `lane` on interval k sits in
    /// the group's slice.
    pub fn index(&self, k: usize, n: usize, part: usize, lane: usize) -> usize {
        k * self.interval_floats()
            + match self.lane_floats {
                0 => (n * 3 + part) * POLY_GROUP + lane,
                lane_floats => lane * lane_floats + part * (self.degree + 1) + n,
            }
    }
}

/// Monomial coefficients of the Chebyshev polynomials T_0..T_degree.
fn chebyshev_monomials(degree: usize) -> Vec<Vec<f64>> {
    let mut t = vec![vec![0.0; degree + 1]; degree + 1];
    t[0][0] = 1.0;
    if degree > 0 {
        t[1][1] = 1.0;
    }
    for n in 2..=degree {
        for m in 0..=degree {
            let shifted = if m > 0 { 2.0 * t[n - 1][m - 1] } else { 0.0 };
            t[n][m] = shifted - t[n - 2][m];
        }
    }
    t
}

/// The filter of one block as piecewise polynomials for the shared-memory kernels:
/// on interval k (d in [k h, (k+1) h], h = rc / intervals) and channel q = part H + c,
/// phi(d) ~ sum_n a_n t^n with t = 2 (d / h - k) - 1 in [-1, 1]: the Chebyshev
/// interpolant at degree + 1 Chebyshev points, formed in f64 and written in monomials
/// (degree <= 9 on [-1, 1]: well conditioned). Layout, as the kernels copy it: per
/// group (channel c = group * 32 + lane) the shape's layout ([`PolyShape::index`];
/// padding zero).
pub fn build_poly_table(weights: &StudentWeights, block: &Block, shape: PolyShape) -> Vec<f64> {
    let rc = weights.config.cutoff;
    let hidden = weights.config.hidden;
    let (intervals, degree) = (shape.intervals, shape.degree);
    let h = rc / intervals as f64;
    let points = degree + 1;
    let nodes: Vec<f64> = (0..points)
        .map(|m| (std::f64::consts::PI * (m as f64 + 0.5) / points as f64).cos())
        .collect();
    let cheb = chebyshev_monomials(degree);
    // Monomial coefficients per interval: [interval][n][3H].
    let per_interval: Vec<Vec<f64>> = (0..intervals)
        .into_par_iter()
        .map(|k| {
            let values: Vec<Vec<f64>> = nodes
                .iter()
                .map(|&x| filter_exact(weights, block, h * (k as f64 + 0.5 * (x + 1.0))).0)
                .collect();
            let mut mono = vec![0.0; points * 3 * hidden];
            for q in 0..3 * hidden {
                for n in 0..points {
                    // Chebyshev coefficient a_n = (2 / points) sum_m f(x_m) T_n(x_m).
                    let mut a: f64 = (0..points)
                        .map(|m| {
                            values[m][q]
                                * (n as f64 * (m as f64 + 0.5) * std::f64::consts::PI
                                    / points as f64)
                                    .cos()
                        })
                        .sum::<f64>()
                        * 2.0
                        / points as f64;
                    if n == 0 {
                        a *= 0.5;
                    }
                    for (m, &tm) in cheb[n].iter().enumerate() {
                        mono[m * 3 * hidden + q] += a * tm;
                    }
                }
            }
            mono
        })
        .collect();
    let groups = hidden / POLY_GROUP;
    let group_floats = shape.group_floats();
    let mut out = vec![0.0; groups * group_floats];
    for g in 0..groups {
        for (k, mono) in per_interval.iter().enumerate() {
            for n in 0..points {
                for part in 0..3 {
                    for lane in 0..POLY_GROUP {
                        out[g * group_floats + shape.index(k, n, part, lane)] =
                            mono[n * 3 * hidden + part * hidden + g * POLY_GROUP + lane];
                    }
                }
            }
        }
    }
    out
}

/// Evaluates a polynomial table as the kernels do: (phi, dphi/dd) of channel q at d,
/// the interval and t from f64, then coefficients, t and operations in f32 (or f64).
pub fn poly_interpolate(
    table: &[f64],
    hidden: usize,
    shape: PolyShape,
    rc: f64,
    d: f64,
    q: usize,
    f32_arithmetic: bool,
) -> (f64, f64) {
    let inv_h = shape.intervals as f64 / rc;
    let x = d * inv_h;
    let k = (x as usize).min(shape.intervals - 1);
    let t = 2.0 * (x - k as f64) - 1.0;
    let (part, c) = (q / hidden, q % hidden);
    let (g, lane) = (c / POLY_GROUP, c % POLY_GROUP);
    let coefficient = |n: usize| table[g * shape.group_floats() + shape.index(k, n, part, lane)];
    if f32_arithmetic {
        let t = t as f32;
        let (mut f, mut df) = (coefficient(shape.degree) as f32, 0.0f32);
        for n in (0..shape.degree).rev() {
            df = df.mul_add(t, f);
            f = f.mul_add(t, coefficient(n) as f32);
        }
        (f as f64, (df * (2.0 * inv_h) as f32) as f64)
    } else {
        let (mut f, mut df) = (coefficient(shape.degree), 0.0);
        for n in (0..shape.degree).rev() {
            df = df * t + f;
            f = f * t + coefficient(n);
        }
        (f, df * 2.0 * inv_h)
    }
}

/// Largest error of a polynomial table against the exact filter (as
/// [`max_table_error`]).
pub fn max_poly_error(
    weights: &StudentWeights,
    block: &Block,
    shape: PolyShape,
    samples: usize,
    f32_arithmetic: bool,
) -> (f64, f64) {
    let rc = weights.config.cutoff;
    let hidden = weights.config.hidden;
    let table = build_poly_table(weights, block, shape);
    max_error(weights, block, samples, |d, q| {
        poly_interpolate(&table, hidden, shape, rc, d, q, f32_arithmetic)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::random::random_student;
    use crate::model::StudentConfig;

    fn model(hidden: usize, num_rbf: usize) -> StudentWeights {
        random_student(
            &StudentConfig {
                hidden,
                num_rbf,
                num_blocks: 2,
                cutoff: 5.0,
                max_z: 10,
            },
            7,
        )
    }

    #[test]
    fn derivative_matches_finite_difference() {
        let w = model(32, 10);
        let d = 2.345;
        let eps = 1e-6;
        let (_, dphi) = filter_exact(&w, &w.blocks[0], d);
        let (p1, _) = filter_exact(&w, &w.blocks[0], d + eps);
        let (p0, _) = filter_exact(&w, &w.blocks[0], d - eps);
        for q in 0..dphi.len() {
            let fd = (p1[q] - p0[q]) / (2.0 * eps);
            assert!(
                (fd - dphi[q]).abs() < 1e-6 * (1.0 + dphi[q].abs()),
                "channel {q}: {fd} vs {}",
                dphi[q]
            );
        }
    }

    #[test]
    fn table_is_exact_at_nodes_and_includes_the_cutoff() {
        let w = model(32, 10);
        let n = 65;
        let table = build_table(&w, &w.blocks[1], n);
        for k in [0usize, 17, 63] {
            let d = 5.0 * k as f64 / 64.0;
            let (phi, _) = filter_exact(&w, &w.blocks[1], d);
            for q in 0..96 {
                assert_eq!(table[4 * (k * 96 + q)], phi[q]);
            }
        }
        // At d = rc the filter is W2 silu(b1) + b2 (a = 0), not zero.
        let (f, _) = interpolate(&table, n, 96, 5.0, 5.0, 3, Arithmetic::F64);
        let (phi, _) = filter_exact(&w, &w.blocks[1], 5.0);
        assert!((f - phi[3]).abs() < 1e-12);
        assert!(phi[3].abs() > 0.0);
    }

    #[test]
    fn table_error_is_far_below_f32_rounding() {
        // Released width K = 20 (narrowest Gaussians, sigma = rc/K = 0.25 Å).
        let w = model(64, 20);
        let (e_phi, e_dphi) = max_table_error(
            &w,
            &w.blocks[0],
            super::super::NODES_F32,
            2000,
            Arithmetic::F64,
        );
        eprintln!(
            "f32 table ({} nodes), f64 arithmetic: phi {e_phi:.2e}, dphi/dd {e_dphi:.2e}",
            super::super::NODES_F32
        );
        assert!(
            e_phi < 1e-7 && e_dphi < 1e-6,
            "phi {e_phi:e}, dphi {e_dphi:e}"
        );
        // As evaluated on the GPU in f32: rounding only, no cancellation in the derivative.
        let (e_phi, e_dphi) = max_table_error(
            &w,
            &w.blocks[0],
            super::super::NODES_F32,
            2000,
            Arithmetic::F32,
        );
        eprintln!(
            "f32 table ({} nodes), f32 arithmetic: phi {e_phi:.2e}, dphi/dd {e_dphi:.2e}",
            super::super::NODES_F32
        );
        assert!(
            e_phi < 1e-6 && e_dphi < 2e-7,
            "phi {e_phi:e}, dphi {e_dphi:e}"
        );
        let (e_phi, e_dphi) = max_table_error(
            &w,
            &w.blocks[0],
            super::super::NODES_F64,
            1000,
            Arithmetic::F64,
        );
        eprintln!(
            "f64 table ({} nodes): phi {e_phi:.2e}, dphi/dd {e_dphi:.2e}",
            super::super::NODES_F64
        );
        assert!(
            e_phi < 1e-11 && e_dphi < 1e-9,
            "phi {e_phi:e}, dphi {e_dphi:e}"
        );
    }

    #[test]
    fn half_table_error_is_within_f16_rounding() {
        // The mixed engine's table: f16 coefficients in physical units. Its error is
        // the f16 rounding of phi and dphi/dd (2^-11 = 4.9e-4 relative), nothing more:
        // no coefficient underflows.
        for (hidden, num_rbf) in [(64, 20), (32, 10)] {
            let w = model(hidden, num_rbf);
            for b in &w.blocks {
                let (e_phi, e_dphi) =
                    max_table_error(&w, b, super::super::NODES_F32, 2000, Arithmetic::F16Table);
                eprintln!(
                    "f16 table ({} nodes, H={hidden}, K={num_rbf}), f32 arithmetic: phi {e_phi:.2e}, dphi/dd {e_dphi:.2e}",
                    super::super::NODES_F32
                );
                assert!(
                    e_phi < 1e-3 && e_dphi < 1e-3,
                    "phi {e_phi:e}, dphi {e_dphi:e}"
                );
                assert!(
                    e_phi > 1e-6,
                    "the f16 table cannot be this exact: {e_phi:e}"
                );
            }
        }
    }

    #[test]
    fn poly_tables_are_f32_accurate() {
        // The shared-memory tables of the f32 engine, released width K = 20. The message
        // kernels read phi only (POLY_VALUE), edge_backward phi and dphi/dd (POLY_GRAD).
        let w = model(64, 20);
        for b in &w.blocks {
            let (e_phi, _) = max_poly_error(&w, b, POLY_VALUE, 3000, true);
            let (g_phi, g_dphi) = max_poly_error(&w, b, POLY_GRAD, 3000, true);
            let (x_phi, x_dphi) = max_poly_error(&w, b, POLY_GRAD, 1000, false);
            eprintln!(
                "poly value table {POLY_VALUE:?}: phi {e_phi:.2e}; grad table {POLY_GRAD:?}: phi {g_phi:.2e}, dphi/dd {g_dphi:.2e} (f64 arithmetic: {x_phi:.2e}, {x_dphi:.2e})"
            );
            assert!(e_phi < 1e-6, "value table phi {e_phi:e}");
            assert!(
                g_phi < 1e-6 && g_dphi < 1e-6,
                "grad table {g_phi:e} {g_dphi:e}"
            );
            // The interpolation of phi itself is far below f32 rounding.
            assert!(x_phi < 1e-8 && x_dphi < 1e-6, "f64: {x_phi:e} {x_dphi:e}");
        }
    }

    #[test]
    fn poly_table_layout_and_cutoff() {
        // Exact at interior Chebyshev structure is not checkable directly; instead: the
        // group/lane layout maps back to the right channel and the table holds the value
        // at d = rc (W2 silu(b1) + b2, not zero).
        let w = model(64, 10);
        let b = &w.blocks[1];
        let table = build_poly_table(&w, b, POLY_VALUE);
        assert_eq!(table.len(), 2 * POLY_VALUE.group_floats());
        let (phi, _) = filter_exact(&w, b, 5.0);
        for q in [0usize, 31, 32, 63, 64, 100, 191] {
            let (f, _) = poly_interpolate(&table, 64, POLY_VALUE, 5.0, 5.0, q, false);
            assert!(
                (f - phi[q]).abs() < 1e-9 * (1.0 + phi[q].abs()),
                "channel {q}: {f} vs {}",
                phi[q]
            );
        }
        assert!(phi.iter().any(|p| p.abs() > 1e-3));
    }

    #[test]
    fn lane_contiguous_layout_holds_the_interleaved_coefficients() {
        // Each table's layout (per lane, padded) against the interleaved one of the same
        // polynomials: every coefficient where `index` says, the padding zero.
        let w = model(64, 10);
        let b = &w.blocks[0];
        for shape in [POLY_VALUE, POLY_GRAD] {
            let interleaved = PolyShape {
                lane_floats: 0,
                ..shape
            };
            let by_lane = build_poly_table(&w, b, shape);
            let reference = build_poly_table(&w, b, interleaved);
            assert_eq!(by_lane.len(), 2 * shape.group_floats());
            assert_eq!(
                shape.group_floats(),
                shape.intervals * POLY_GROUP * shape.lane_floats
            );
            let mut used = vec![false; by_lane.len()];
            for g in 0..2 {
                for k in 0..shape.intervals {
                    for n in 0..=shape.degree {
                        for part in 0..3 {
                            for lane in 0..POLY_GROUP {
                                let at = g * shape.group_floats() + shape.index(k, n, part, lane);
                                let from = g * interleaved.group_floats()
                                    + interleaved.index(k, n, part, lane);
                                assert_eq!(
                                    by_lane[at], reference[from],
                                    "{shape:?} k {k} n {n} part {part}"
                                );
                                assert!(!used[at], "two coefficients at {at}");
                                used[at] = true;
                            }
                        }
                    }
                }
            }
            assert!(by_lane.iter().zip(&used).all(|(x, u)| *u || *x == 0.0));
            // 16-byte loads of eight lanes on distinct banks: an odd number of 16-byte
            // words per lane, holding the three parts.
            assert_eq!(shape.lane_floats % 8, 4, "{shape:?}");
            assert!(shape.lane_floats >= 3 * (shape.degree + 1));
        }
    }
}
