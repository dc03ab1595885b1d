//! Random students for tests and benchmarks (no trained file needed).

use super::{Block, Linear, StudentConfig, StudentWeights};

/// A small deterministic generator (SplitMix64), good enough for test data.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }
}

fn linear(rng: &mut SplitMix64, n_in: usize, n_out: usize) -> Linear {
    let scale = 1.0 / (n_in as f64).sqrt();
    // Rounded to f32 so that a save/load round trip through an F32 file is exact.
    let mut draw = |s: f64| (rng.range(-s, s) as f32) as f64;
    Linear {
        n_in,
        n_out,
        weight: (0..n_in * n_out).map(|_| draw(scale)).collect(),
        bias: (0..n_out).map(|_| draw(scale)).collect(),
    }
}

/// A student with random weights of the right shapes and the released basis
/// (centres linspace(0, rc, K), widths rc/K).
pub fn random_student(config: &StudentConfig, seed: u64) -> StudentWeights {
    let mut rng = SplitMix64(seed);
    let (h, k) = (config.hidden, config.num_rbf);
    let embedding = (0..(config.max_z + 1) * h)
        .map(|_| (rng.range(-1.0, 1.0) as f32) as f64)
        .collect();
    let rbf_centers = (0..k)
        .map(|i| ((config.cutoff * i as f64 / (k - 1).max(1) as f64) as f32) as f64)
        .collect();
    let rbf_widths = vec![((config.cutoff / k as f64) as f32) as f64; k];
    let blocks = (0..config.num_blocks)
        .map(|l| {
            let mixing = (l + 1 < config.num_blocks).then(|| {
                let mut m = [[0.0; 3]; 3];
                for (a, row) in m.iter_mut().enumerate() {
                    for (b, value) in row.iter_mut().enumerate() {
                        let base = if a == b { 1.0 } else { 0.0 };
                        *value = ((base + rng.range(-0.3, 0.3)) as f32) as f64;
                    }
                }
                m
            });
            Block {
                filter1: linear(&mut rng, k, h),
                filter2: linear(&mut rng, h, 3 * h),
                update1: linear(&mut rng, 2 * h, h),
                update2: linear(&mut rng, h, 3 * h),
                mixing,
            }
        })
        .collect();
    let head = [
        linear(&mut rng, h, h / 2),
        linear(&mut rng, h / 2, h / 4),
        linear(&mut rng, h / 4, 1),
    ];
    StudentWeights {
        config: config.clone(),
        embedding,
        rbf_centers,
        rbf_widths,
        blocks,
        head,
    }
}
