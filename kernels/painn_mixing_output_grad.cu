// PaiNN mixing backward, first step: the gradient of the mixing MLP's output [a, b, c]
// from dE/dq and dE/dmu after the block: g_a = gq, g_b = sum_x gmu_x W_x,
// g_c = gq (sum_x V_x W_x). One thread per (atom, channel).
template <typename T>
__device__ void painn_mixing_output_grad_impl(int n_atoms, int f, const T* vw, const T* gq, const T* gmu, T* g_out) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)n_atoms * f) return;
    int i = (int)(idx / f), c = (int)(idx % f);
    size_t f2 = 2 * (size_t)f, f3 = 3 * (size_t)f;
    T dot = T(0), gb = T(0);
    for (int a = 0; a < 3; a++) {
        const T* row = vw + (3 * (size_t)i + a) * f2;
        dot += row[c] * row[f + c];
        gb += gmu[i * f3 + a * f + c] * row[f + c];
    }
    T g = gq[(size_t)i * f + c];
    g_out[i * f3 + c] = g;
    g_out[i * f3 + f + c] = gb;
    g_out[i * f3 + 2 * f + c] = g * dot;
}
#define PAINN_MIXING_OUTPUT_GRAD(SUFFIX, T)                                                                          \
    extern "C" __global__ void painn_mixing_output_grad_##SUFFIX(int n_atoms, int f, const T* vw, const T* gq,      \
                                                                 const T* gmu, T* g_out) {                         \
        wait_for_previous_kernel_();                                                                               \
        painn_mixing_output_grad_impl<T>(n_atoms, f, vw, gq, gmu, g_out);                                          \
    }
PAINN_MIXING_OUTPUT_GRAD(f32, float)
PAINN_MIXING_OUTPUT_GRAD(f64, double)
