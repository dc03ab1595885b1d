// PaiNN mixing backward, second step: from the gradient of the MLP's input [q, n]
// (g_context, N x 2F): gq1 = gq + g_context[:F], and the gradient of [V, W] per row
// (i, x): g_V = g_dot W + (g_n / n) V, g_W = g_dot V + gmu b, with g_dot = gq c.
// One thread per (atom, channel).
template <typename T>
__device__ void painn_mixing_input_grad_impl(int n_atoms, int f, const T* vw, const T* mix_out, const T* norm,
                                             const T* gq, const T* gmu, const T* g_context, T* gq1, T* g_vw) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)n_atoms * f) return;
    int i = (int)(idx / f), c = (int)(idx % f);
    size_t f2 = 2 * (size_t)f, f3 = 3 * (size_t)f;
    const T* out = mix_out + i * f3;
    T g = gq[(size_t)i * f + c];
    gq1[(size_t)i * f + c] = g + g_context[i * f2 + c];
    T g_dot = g * out[2 * f + c];
    T g_norm = g_context[i * f2 + f + c] / norm[(size_t)i * f + c];
    for (int a = 0; a < 3; a++) {
        size_t row = (3 * (size_t)i + a) * f2;
        T v = vw[row + c], w = vw[row + f + c];
        g_vw[row + c] = g_dot * w + g_norm * v;
        g_vw[row + f + c] = g_dot * v + gmu[i * f3 + a * f + c] * out[f + c];
    }
}
#define PAINN_MIXING_INPUT_GRAD(SUFFIX, T)                                                                            \
    extern "C" __global__ void painn_mixing_input_grad_##SUFFIX(int n_atoms, int f, const T* vw, const T* mix_out, \
                                                                const T* norm, const T* gq, const T* gmu,           \
                                                                const T* g_context, T* gq1, T* g_vw) {            \
        wait_for_previous_kernel_();                                                                              \
        painn_mixing_input_grad_impl<T>(n_atoms, f, vw, mix_out, norm, gq, gmu, g_context, gq1, g_vw);            \
    }
PAINN_MIXING_INPUT_GRAD(f32, float)
PAINN_MIXING_INPUT_GRAD(f64, double)
