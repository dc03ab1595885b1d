// PaiNN (architecture `painn`): a dense layer over rows, with runtime sizes (PaiNN's
// widths need not be multiples of 32, so these kernels do not use HIDDEN):
//   pre[r][o] = b[o] + sum_k W[o][k] x[r][k],  out = silu(pre) if apply_silu else pre.
// One thread per output element; the sum runs over k in order (deterministic).
template <typename T>
__device__ void painn_dense_impl(int rows, int n_in, int n_out, const T* x, const T* w, const T* bias, int apply_silu,
                                 T* pre, T* out) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)rows * n_out) return;
    int r = (int)(idx / n_out), o = (int)(idx % n_out);
    const T* xr = x + (size_t)r * n_in;
    const T* wo = w + (size_t)o * n_in;
    T acc = T(0);
    for (int k = 0; k < n_in; k++) acc += wo[k] * xr[k];
    acc += bias[o];
    pre[idx] = acc;
    out[idx] = apply_silu ? silu_(acc) : acc;
}
#define PAINN_DENSE(SUFFIX, T)                                                                                  \
    extern "C" __global__ void painn_dense_##SUFFIX(int rows, int n_in, int n_out, const T* x, const T* w,    \
                                                    const T* bias, int apply_silu, T* pre, T* out) {          \
        painn_dense_impl<T>(rows, n_in, n_out, x, w, bias, apply_silu, pre, out);                              \
    }
PAINN_DENSE(f32, float)
PAINN_DENSE(f64, double)
