// PaiNN (architecture `painn`): a dense layer over rows, with runtime sizes (PaiNN's
// widths need not be multiples of 32, so these kernels do not use HIDDEN):
//   pre[r][o] = b[o] + sum_k W[o][k] x[r][k],  out = silu(pre) if apply_silu else pre.
// The weight comes transposed, wt[k * ldw + o] = W[o][k] (ldw >= n_out: a column slice
// of a wider layer), so the threads of a warp, consecutive in o, read consecutive
// weights. `pre` is written only with apply_silu (the backward pass needs it there).
// One thread per output element; the sum runs over k in order (deterministic).
template <typename T>
__device__ void painn_dense_impl(int rows, int n_in, int n_out, const T* x, const T* wt, int ldw, const T* bias,
                                 int apply_silu, T* pre, T* out) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)rows * n_out) return;
    int r = (int)(idx / n_out), o = (int)(idx % n_out);
    const T* xr = x + (size_t)r * n_in;
    T acc = T(0);
    for (int k = 0; k < n_in; k++) acc += wt[(size_t)k * ldw + o] * xr[k];
    acc += bias[o];
    if (apply_silu) {
        pre[idx] = acc;
        out[idx] = silu_(acc);
    } else {
        out[idx] = acc;
    }
}
#define PAINN_DENSE(SUFFIX, T)                                                                                  \
    extern "C" __global__ void painn_dense_##SUFFIX(int rows, int n_in, int n_out, const T* x, const T* wt,   \
                                                    int ldw, const T* bias, int apply_silu, T* pre, T* out) {  \
        wait_for_previous_kernel_();                                                                           \
        painn_dense_impl<T>(rows, n_in, n_out, x, wt, ldw, bias, apply_silu, pre, out);                        \
    }
PAINN_DENSE(f32, float)
PAINN_DENSE(f64, double)
