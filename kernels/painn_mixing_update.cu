// PaiNN mixing, second half: with [a, b, c] = the mixing MLP's output (N x 3F),
//   q += a + c (sum_x V_x W_x),  mu_x += b W_x.   One thread per (atom, channel).
template <typename T>
__device__ void painn_mixing_update_impl(int n_atoms, int f, const T* vw, const T* mix_out, const T* q1, const T* mu1,
                                         T* q2, T* mu2) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)n_atoms * f) return;
    int i = (int)(idx / f), c = (int)(idx % f);
    size_t f2 = 2 * (size_t)f, f3 = 3 * (size_t)f;
    const T* out = mix_out + i * f3;
    T dot = T(0);
    for (int a = 0; a < 3; a++) {
        const T* row = vw + (3 * (size_t)i + a) * f2;
        dot += row[c] * row[f + c];
    }
    q2[(size_t)i * f + c] = q1[(size_t)i * f + c] + out[c] + out[2 * f + c] * dot;
    for (int a = 0; a < 3; a++) {
        T w = vw[(3 * (size_t)i + a) * f2 + f + c];
        mu2[i * f3 + a * f + c] = mu1[i * f3 + a * f + c] + out[f + c] * w;
    }
}
#define PAINN_MIXING_UPDATE(SUFFIX, T)                                                                             \
    extern "C" __global__ void painn_mixing_update_##SUFFIX(int n_atoms, int f, const T* vw, const T* mix_out,   \
                                                            const T* q1, const T* mu1, T* q2, T* mu2) {          \
        wait_for_previous_kernel_();                                                                             \
        painn_mixing_update_impl<T>(n_atoms, f, vw, mix_out, q1, mu1, q2, mu2);                                  \
    }
PAINN_MIXING_UPDATE(f32, float)
PAINN_MIXING_UPDATE(f64, double)
