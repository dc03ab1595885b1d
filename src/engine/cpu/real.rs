//! The scalar type of the CPU engine (f32 or f64) and the matrix products it needs.

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub, SubAssign};

/// f32 or f64.
pub trait Real:
    Copy
    + Send
    + Sync
    + Debug
    + Default
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + 'static
{
    const ZERO: Self;
    const ONE: Self;
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn sqrt(self) -> Self;
    /// C (m x n) = A (m x k) B (k x n) + beta C, with explicit row/column strides.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: &[Self],
        rsa: isize,
        csa: isize,
        b: &[Self],
        rsb: isize,
        csb: isize,
        beta: Self,
        c: &mut [Self],
        rsc: isize,
        csc: isize,
    );
}

macro_rules! impl_real {
    ($t:ty, $gemm:path) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[inline(always)]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn gemm(
                m: usize,
                k: usize,
                n: usize,
                a: &[Self],
                rsa: isize,
                csa: isize,
                b: &[Self],
                rsb: isize,
                csb: isize,
                beta: Self,
                c: &mut [Self],
                rsc: isize,
                csc: isize,
            ) {
                if m == 0 || n == 0 {
                    return;
                }
                let last = |rows: usize, cols: usize, rs: isize, cs: isize| {
                    (rows as isize - 1) * rs + (cols as isize - 1) * cs
                };
                // The strides are non-negative here; these checks make the raw-pointer call sound.
                assert!(rsa >= 0 && csa >= 0 && rsb >= 0 && csb >= 0 && rsc >= 0 && csc >= 0);
                assert!(k == 0 || (last(m, k, rsa, csa) as usize) < a.len());
                assert!(k == 0 || (last(k, n, rsb, csb) as usize) < b.len());
                assert!((last(m, n, rsc, csc) as usize) < c.len());
                // SAFETY: every element index the product touches was bounds-checked above.
                unsafe {
                    $gemm(
                        m,
                        k,
                        n,
                        1.0,
                        a.as_ptr(),
                        rsa,
                        csa,
                        b.as_ptr(),
                        rsb,
                        csb,
                        beta,
                        c.as_mut_ptr(),
                        rsc,
                        csc,
                    );
                }
            }
        }
    };
}

impl_real!(f32, matrixmultiply::sgemm);
impl_real!(f64, matrixmultiply::dgemm);

/// Y (n x out) = X (n x in) W^T + bias, for W stored as out x in (PyTorch layout).
pub fn linear_forward<T: Real>(x: &[T], n: usize, n_in: usize, w: &[T], bias: &[T], y: &mut [T]) {
    let n_out = bias.len();
    for row in y[..n * n_out].chunks_exact_mut(n_out) {
        row.copy_from_slice(bias);
    }
    T::gemm(
        n,
        n_in,
        n_out,
        x,
        n_in as isize,
        1,
        w,
        1,
        n_in as isize,
        T::ONE,
        y,
        n_out as isize,
        1,
    );
}

/// GX (n x in) = GY (n x out) W, the input gradient of [`linear_forward`].
pub fn linear_backward<T: Real>(
    gy: &[T],
    n: usize,
    n_out: usize,
    w: &[T],
    n_in: usize,
    gx: &mut [T],
) {
    T::gemm(
        n,
        n_out,
        n_in,
        gy,
        n_out as isize,
        1,
        w,
        n_in as isize,
        1,
        T::ZERO,
        gx,
        n_in as isize,
        1,
    );
}

#[inline(always)]
pub fn sigmoid<T: Real>(x: T) -> T {
    T::ONE / (T::ONE + (-x).exp())
}

#[inline(always)]
pub fn silu<T: Real>(x: T) -> T {
    x * sigmoid(x)
}

/// d silu / dx.
#[inline(always)]
pub fn silu_grad<T: Real>(x: T) -> T {
    let s = sigmoid(x);
    s * (T::ONE + x * (T::ONE - s))
}
