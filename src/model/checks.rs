//! Load-time detection of the student's known defects. They are warnings, not
//! errors: the model is evaluated exactly as trained, and users are told.

use super::StudentWeights;

/// A defect of a model that users should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelWarning {
    /// Stable machine-readable code, e.g. `not-rotation-invariant`.
    pub code: &'static str,
    /// Human-readable explanation with numbers.
    pub message: String,
}

/// Checks a model for defects: a mixing matrix that is not a multiple of the
/// identity (energy not rotation invariant) and a filter that is not zero at the
/// cutoff (energy discontinuous at rc).
pub fn model_warnings(weights: &StudentWeights) -> Vec<ModelWarning> {
    let mut warnings = Vec::new();
    let mut worst = (0.0f64, 0usize);
    for (l, block) in weights.blocks.iter().enumerate() {
        if let Some(m) = &block.mixing {
            let diag = (m[0][0] + m[1][1] + m[2][2]) / 3.0;
            let mut deviation = 0.0f64;
            for (a, row) in m.iter().enumerate() {
                for (b, value) in row.iter().enumerate() {
                    let target = if a == b { diag } else { 0.0 };
                    deviation = deviation.max((value - target).abs());
                }
            }
            if deviation > worst.0 {
                worst = (deviation, l);
            }
        }
    }
    if worst.0 > 0.0 {
        warnings.push(ModelWarning {
            code: "not-rotation-invariant",
            message: format!(
                "mixing matrix of block {} differs from a multiple of the identity by up to {:.3e}: \
                 energies change when the structure is rotated, and the virial is not symmetric",
                worst.1, worst.0
            ),
        });
    }
    // At d = rc the basis times the cosine cutoff is zero, so the filter is
    // W2 silu(b1) + b2; an edge just beyond rc contributes nothing.
    let mut jump = (0.0f64, 0usize);
    for (l, block) in weights.blocks.iter().enumerate() {
        let hidden: Vec<f64> = block.filter1.bias.iter().map(|&b| silu(b)).collect();
        for o in 0..block.filter2.n_out {
            let value: f64 = block
                .filter2
                .row(o)
                .iter()
                .zip(&hidden)
                .map(|(w, x)| w * x)
                .sum::<f64>()
                + block.filter2.bias[o];
            if value.abs() > jump.0 {
                jump = (value.abs(), l);
            }
        }
    }
    if jump.0 > 1e-12 {
        warnings.push(ModelWarning {
            code: "energy-discontinuous-at-cutoff",
            message: format!(
                "the filter of block {} is {:.3e} (largest component) at d = rc instead of 0: \
                 the energy jumps when a pair crosses the cutoff, so NVE runs drift",
                jump.1, jump.0
            ),
        });
    }
    warnings
}

fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}
