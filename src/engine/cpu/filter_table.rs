//! The filter phi(d) as a cubic Hermite table, for the f32 path.
//!
//! The filter MLP depends only on the pair distance, so it is a smooth function
//! [0, rc] -> R^{3H}. Tabulating phi and dphi/dd exactly (f64, forward-mode
//! derivative) at M + 1 nodes and interpolating with cubic Hermite polynomials
//! replaces two matrix products per pair by a few multiply-adds per output, with
//! an interpolation error of order h^4 phi''''/384 (about 1e-9 relative for the
//! released students at M = 1024), far below f32 rounding. Forces stay exactly
//! consistent with the interpolated energy because the derivative used is that
//! of the interpolant.

use super::real::Real;
use crate::model::{Block, StudentWeights};

/// Intervals per table.
pub const TABLE_INTERVALS: usize = 1024;

pub struct FilterTable<T> {
    width: usize,
    step: f64,
    /// Per interval m: the cubic phi(d_m + s h) = c0 + s (c1 + s (c2 + s c3)) as
    /// [c0, c1, c2, c3], 3H values each. The coefficients come from f64 values and
    /// derivatives, so the small c1..c3 keep full relative precision in f32 (node
    /// differences computed in f32 would lose it).
    coefficients: Vec<T>,
}

fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

fn silu_grad(x: f64) -> f64 {
    let s = 1.0 / (1.0 + (-x).exp());
    s * (1.0 + x * (1.0 - s))
}

/// Gaussian basis times cosine cutoff, a_k(d) = exp(-((d - mu_k)/sigma_k)^2) fc(d), and
/// its derivative, in f64: the one implementation of the student's edge features.
pub fn basis_and_grad(
    centers: &[f64],
    widths: &[f64],
    cutoff: f64,
    d: f64,
    a: &mut [f64],
    da: &mut [f64],
) {
    let (fc, dfc) = if d < cutoff {
        let x = std::f64::consts::PI * d / cutoff;
        (
            0.5 * (x.cos() + 1.0),
            -0.5 * std::f64::consts::PI / cutoff * x.sin(),
        )
    } else {
        (0.0, 0.0)
    };
    for k in 0..centers.len() {
        let t = (d - centers[k]) / widths[k];
        let e = (-t * t).exp();
        let de = -2.0 * t / widths[k] * e;
        a[k] = e * fc;
        da[k] = de * fc + e * dfc;
    }
}

/// phi(d) and dphi/dd of one block, exactly, in f64.
pub fn filter_exact(
    weights: &StudentWeights,
    block: &Block,
    d: f64,
    phi: &mut [f64],
    dphi: &mut [f64],
) {
    let (k, h) = (weights.config.num_rbf, weights.config.hidden);
    let mut a = vec![0.0; k];
    let mut da = vec![0.0; k];
    basis_and_grad(
        &weights.rbf_centers,
        &weights.rbf_widths,
        weights.config.cutoff,
        d,
        &mut a,
        &mut da,
    );
    let mut act = vec![0.0; h];
    let mut dact = vec![0.0; h];
    for o in 0..h {
        let row = block.filter1.row(o);
        let z: f64 = row.iter().zip(&a).map(|(w, x)| w * x).sum::<f64>() + block.filter1.bias[o];
        let dz: f64 = row.iter().zip(&da).map(|(w, x)| w * x).sum();
        act[o] = silu(z);
        dact[o] = silu_grad(z) * dz;
    }
    for o in 0..3 * h {
        let row = block.filter2.row(o);
        phi[o] = row.iter().zip(&act).map(|(w, x)| w * x).sum::<f64>() + block.filter2.bias[o];
        dphi[o] = row.iter().zip(&dact).map(|(w, x)| w * x).sum();
    }
}

impl<T: Real> FilterTable<T> {
    pub fn new(weights: &StudentWeights, block: &Block) -> Self {
        let width = 3 * weights.config.hidden;
        let step = weights.config.cutoff / TABLE_INTERVALS as f64;
        // Exact values and scaled derivatives at the nodes; the last node is rc
        // itself, where the basis times cutoff is exactly 0.
        let mut phi = vec![0.0; (TABLE_INTERVALS + 1) * width];
        let mut dphi = vec![0.0; (TABLE_INTERVALS + 1) * width];
        for m in 0..=TABLE_INTERVALS {
            let d = if m == TABLE_INTERVALS {
                weights.config.cutoff
            } else {
                m as f64 * step
            };
            filter_exact(
                weights,
                block,
                d,
                &mut phi[m * width..(m + 1) * width],
                &mut dphi[m * width..(m + 1) * width],
            );
        }
        let mut coefficients = vec![T::ZERO; TABLE_INTERVALS * 4 * width];
        for (m, interval) in coefficients.chunks_exact_mut(4 * width).enumerate() {
            for c in 0..width {
                let (p0, p1) = (phi[m * width + c], phi[(m + 1) * width + c]);
                let (g0, g1) = (step * dphi[m * width + c], step * dphi[(m + 1) * width + c]);
                interval[c] = T::from_f64(p0);
                interval[width + c] = T::from_f64(g0);
                interval[2 * width + c] = T::from_f64(3.0 * (p1 - p0) - 2.0 * g0 - g1);
                interval[3 * width + c] = T::from_f64(2.0 * (p0 - p1) + g0 + g1);
            }
        }
        FilterTable {
            width,
            step,
            coefficients,
        }
    }

    fn locate(&self, d: f64) -> (&[T], T) {
        let t = d / self.step;
        let m = (t.floor().max(0.0) as usize).min(TABLE_INTERVALS - 1);
        let w = self.width;
        (
            &self.coefficients[m * 4 * w..(m + 1) * 4 * w],
            T::from_f64((t - m as f64).min(1.0)),
        )
    }

    /// phi(d) into `out` (3H values).
    pub fn value(&self, d: f64, out: &mut [T]) {
        let (c, s) = self.locate(d);
        let w = self.width;
        // Equal-length slices and an index loop: the bounds checks go away and the
        // loop vectorises.
        let (out, c0, c1, c2, c3) = (
            &mut out[..w],
            &c[..w],
            &c[w..2 * w],
            &c[2 * w..3 * w],
            &c[3 * w..4 * w],
        );
        for o in 0..w {
            out[o] = c0[o] + s * (c1[o] + s * (c2[o] + s * c3[o]));
        }
    }

    /// sum_c g[c] dphi_c/dd at d.
    pub fn gradient_dot(&self, d: f64, g: &[T]) -> T {
        let (c, s) = self.locate(d);
        let w = self.width;
        let (two_s, three_s2) = (T::from_f64(2.0) * s, T::from_f64(3.0) * s * s);
        let c1 = &c[w..2 * w];
        let c2 = &c[2 * w..3 * w];
        let c3 = &c[3 * w..4 * w];
        // Eight partial sums in a fixed order: vectorisable and deterministic.
        let mut acc = [T::ZERO; 8];
        let lanes = w / 8 * 8;
        for (((gs, a1), a2), a3) in g[..lanes]
            .chunks_exact(8)
            .zip(c1.chunks_exact(8))
            .zip(c2.chunks_exact(8))
            .zip(c3.chunks_exact(8))
        {
            for l in 0..8 {
                acc[l] += gs[l] * (a1[l] + two_s * a2[l] + three_s2 * a3[l]);
            }
        }
        let mut total = T::ZERO;
        for o in lanes..w {
            total += g[o] * (c1[o] + two_s * c2[o] + three_s2 * c3[o]);
        }
        for a in acc {
            total += a;
        }
        total / T::from_f64(self.step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{random::random_student, StudentConfig};

    #[test]
    fn table_matches_the_exact_filter() {
        let config = StudentConfig {
            hidden: 32,
            num_rbf: 10,
            num_blocks: 2,
            cutoff: 5.0,
            max_z: 10,
        };
        let weights = random_student(&config, 5);
        let block = &weights.blocks[0];
        let table: FilterTable<f64> = FilterTable::new(&weights, block);
        let (mut exact, mut dexact) = (vec![0.0; 96], vec![0.0; 96]);
        let mut approx = vec![0.0; 96];
        let (mut worst, mut worst_grad, mut scale) = (0.0f64, 0.0f64, 0.0f64);
        for i in 0..=997 {
            let d = 5.0 * i as f64 / 997.0;
            filter_exact(&weights, block, d, &mut exact, &mut dexact);
            table.value(d, &mut approx);
            for c in 0..96 {
                worst = worst.max((approx[c] - exact[c]).abs());
                scale = scale.max(exact[c].abs());
                let mut unit = vec![0.0; 96];
                unit[c] = 1.0;
                worst_grad = worst_grad.max(
                    (table.gradient_dot(d, &unit) - dexact[c]).abs()
                        / dexact.iter().fold(1.0f64, |m, x| m.max(x.abs())),
                );
            }
        }
        assert!(
            worst / scale < 1e-9,
            "relative interpolation error {}",
            worst / scale
        );
        assert!(worst_grad < 1e-6, "relative derivative error {worst_grad}");
    }
}
