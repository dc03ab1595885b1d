//! Host-side layouts for the tensor-core kernels (`kernels/update_wgmma.cu`): the update
//! MLP's weights split into TF32 hi and lo parts ("3xTF32") and packed in the order the
//! kernel streams them through shared memory.

use crate::model::Linear;

/// Floats of one slab part: 32 inputs x 64 outputs (UW_PART_FLOATS in update_wgmma.cu).
pub const PART_FLOATS: usize = 2048;
/// A slab: the hi part, then the lo part.
pub const SLAB_FLOATS: usize = 2 * PART_FLOATS;

/// `x` rounded to TF32 (10 mantissa bits; to nearest, ties away from zero), as
/// `cvt.rna.tf32.f32` rounds it.
pub fn tf32(x: f32) -> f32 {
    f32::from_bits(x.to_bits().wrapping_add(0x1000) & !0x1fff)
}

/// `x = hi + lo` with hi and lo TF32: hi + lo is x within 2^-22 of |x|.
pub fn split_tf32(x: f32) -> (f32, f32) {
    let hi = tf32(x);
    (hi, tf32(x - hi))
}

/// Offset within a slab part of (output o, input i), o < 64, i < 32: core matrices of 8
/// outputs x 4 inputs (128 bytes), [input block][output block][output][input].
fn part_offset(o: usize, i: usize) -> usize {
    ((i / 4) * 8 + o / 8) * 32 + (o % 8) * 4 + i % 4
}

/// Appends one slab: `weight(o, i)` for 64 outputs and 32 inputs, as f32 hi and lo parts.
fn push_slab(packed: &mut Vec<f64>, weight: impl Fn(usize, usize) -> f64) {
    let start = packed.len();
    packed.resize(start + SLAB_FLOATS, 0.0);
    for o in 0..64 {
        for i in 0..32 {
            let (hi, lo) = split_tf32(weight(o, i) as f32);
            let at = start + part_offset(o, i);
            packed[at] = hi as f64;
            packed[at + PART_FLOATS] = lo as f64;
        }
    }
}

/// The forward kernel's weights (H = 128): the first layer U1 (H x 2H, PyTorch layout) for
/// each chunk of 64 hidden channels, in slabs of 32 inputs; then the second layer U2
/// (3H x H) for each chunk of 64 channels and each part (ds, and with a vector update the
/// gates g1, g2), in slabs of 32 hidden inputs. Values are f32 (exact in f64).
pub fn pack_update_forward(update1: &Linear, update2: &Linear, vector_update: bool) -> Vec<f64> {
    let h = update1.n_out;
    assert_eq!(
        (h, update1.n_in, update2.n_in),
        (128, 256, 128),
        "update_wgmma: H = 128 only"
    );
    let parts = if vector_update { 3 } else { 1 };
    assert!(update2.n_out >= parts * h);
    let mut packed = Vec::with_capacity((16 + 8 * parts) * SLAB_FLOATS);
    for c in 0..2 {
        for s in 0..8 {
            push_slab(&mut packed, |o, i| {
                update1.weight[(64 * c + o) * 256 + 32 * s + i]
            });
        }
    }
    for c in 0..2 {
        for p in 0..parts {
            for s in 0..4 {
                push_slab(&mut packed, |o, i| {
                    update2.weight[(p * h + 64 * c + o) * h + 32 * s + i]
                });
            }
        }
    }
    packed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_linear(n_in: usize, n_out: usize, seed: u64) -> Linear {
        let mut state = seed;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        };
        Linear {
            n_in,
            n_out,
            weight: (0..n_in * n_out).map(|_| next()).collect(),
            bias: (0..n_out).map(|_| next()).collect(),
        }
    }

    #[test]
    fn tf32_split_keeps_22_bits() {
        for &x in &[
            1.0f32,
            -3.25,
            1.0e-20,
            6.02e23,
            0.1,
            -0.333_333_34,
            1.999_999_9,
        ] {
            let (hi, lo) = split_tf32(x);
            assert_eq!(hi.to_bits() & 0x1fff, 0, "{x}: hi is not TF32");
            assert_eq!(lo.to_bits() & 0x1fff, 0, "{x}: lo is not TF32");
            let err = ((hi as f64 + lo as f64) - x as f64).abs();
            assert!(err <= x.abs() as f64 * 2f64.powi(-21), "{x}: {hi} + {lo}");
        }
        // Ties round away from zero, as cvt.rna does.
        assert_eq!(tf32(f32::from_bits(0x3f80_1000)).to_bits(), 0x3f80_2000);
        assert_eq!(tf32(f32::from_bits(0x3f80_0fff)).to_bits(), 0x3f80_0000);
    }

    /// Reads the packed slabs the way update_wgmma.cu does (slab order, core-matrix
    /// layout, hi + lo) and forms both layers' products: they must be the products of
    /// the weights.
    #[test]
    fn packed_weights_give_the_products() {
        let u1 = random_linear(256, 128, 1);
        let u2 = random_linear(128, 384, 2);
        let x: Vec<f64> = (0..256)
            .map(|i| ((i * 37 % 101) as f64 - 50.0) / 50.0)
            .collect();
        let hid: Vec<f64> = (0..128)
            .map(|i| ((i * 53 % 97) as f64 - 48.0) / 48.0)
            .collect();
        for vector_update in [true, false] {
            let packed = pack_update_forward(&u1, &u2, vector_update);
            let parts = if vector_update { 3 } else { 1 };
            assert_eq!(packed.len(), (16 + 8 * parts) * SLAB_FLOATS);
            let w = |slab: usize, o: usize, i: usize| {
                let at = slab * SLAB_FLOATS + part_offset(o, i);
                packed[at] + packed[at + PART_FLOATS]
            };
            let mut slab = 0;
            for c in 0..2 {
                let mut z = [0.0; 64];
                for s in 0..8 {
                    for (o, z) in z.iter_mut().enumerate() {
                        for i in 0..32 {
                            *z += w(slab, o, i) * x[32 * s + i];
                        }
                    }
                    slab += 1;
                }
                for (o, z) in z.iter().enumerate() {
                    let exact: f64 = (0..256)
                        .map(|i| u1.weight[(64 * c + o) * 256 + i] * x[i])
                        .sum();
                    assert!((z - exact).abs() < 1e-5, "layer 1, chunk {c}, output {o}");
                }
            }
            for c in 0..2 {
                for p in 0..parts {
                    let mut y = [0.0; 64];
                    for s in 0..4 {
                        for (o, y) in y.iter_mut().enumerate() {
                            for i in 0..32 {
                                *y += w(slab, o, i) * hid[32 * s + i];
                            }
                        }
                        slab += 1;
                    }
                    for (o, y) in y.iter().enumerate() {
                        let row = (p * 128 + 64 * c + o) * 128;
                        let exact: f64 = (0..128).map(|k| u2.weight[row + k] * hid[k]).sum();
                        assert!(
                            (y - exact).abs() < 1e-5,
                            "layer 2, chunk {c}, part {p}, output {o}"
                        );
                    }
                }
            }
            assert_eq!(slab * SLAB_FLOATS, packed.len());
        }
    }
}
