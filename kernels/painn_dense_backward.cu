// PaiNN: input gradient of a dense layer, fused with the activation before it:
//   g[r][k] = (sum_o gy[r][o] W[o][k]) * (apply_dsilu ? silu'(input_pre[r][k]) : 1),
//   gx = accumulate ? gx + g : g.
// One thread per input element; the sum runs over o in order (deterministic).
template <typename T>
__device__ void painn_dense_backward_impl(int rows, int n_in, int n_out, const T* gy, const T* w, const T* input_pre,
                                          int apply_dsilu, int accumulate, T* gx) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)rows * n_in) return;
    int r = (int)(idx / n_in), k = (int)(idx % n_in);
    const T* gr = gy + (size_t)r * n_out;
    T acc = T(0);
    for (int o = 0; o < n_out; o++) acc += gr[o] * w[(size_t)o * n_in + k];
    if (apply_dsilu) acc *= dsilu_(input_pre[idx]);
    gx[idx] = accumulate ? gx[idx] + acc : acc;
}
#define PAINN_DENSE_BACKWARD(SUFFIX, T)                                                                          \
    extern "C" __global__ void painn_dense_backward_##SUFFIX(int rows, int n_in, int n_out, const T* gy,       \
                                                             const T* w, const T* input_pre, int apply_dsilu,  \
                                                             int accumulate, T* gx) {                         \
        wait_for_previous_kernel_();                                                                          \
        painn_dense_backward_impl<T>(rows, n_in, n_out, gy, w, input_pre, apply_dsilu, accumulate, gx);       \
    }
PAINN_DENSE_BACKWARD(f32, float)
PAINN_DENSE_BACKWARD(f64, double)
