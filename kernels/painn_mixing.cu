// PaiNN mixing, first half: from [V, W] = channel_mix(mu) (rows (i, a) of 2F), the
// norms n = sqrt(sum_a V_a^2 + eps) and the context [q, n] of the mixing MLP.
// One thread per (atom i, channel c).
template <typename T>
__device__ void painn_mixing_impl(int n_atoms, int f, T epsilon, const T* vw, const T* q, T* norm, T* context) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)n_atoms * f) return;
    int i = (int)(idx / f), c = (int)(idx % f);
    size_t f2 = 2 * (size_t)f;
    T v0 = vw[(3 * (size_t)i) * f2 + c], v1 = vw[(3 * (size_t)i + 1) * f2 + c], v2 = vw[(3 * (size_t)i + 2) * f2 + c];
    T n = sqrt(v0 * v0 + v1 * v1 + v2 * v2 + epsilon);
    norm[(size_t)i * f + c] = n;
    context[i * f2 + c] = q[(size_t)i * f + c];
    context[i * f2 + f + c] = n;
}
#define PAINN_MIXING(SUFFIX, T)                                                                                   \
    extern "C" __global__ void painn_mixing_##SUFFIX(int n_atoms, int f, T epsilon, const T* vw, const T* q,    \
                                                     T* norm, T* context) {                                     \
        wait_for_previous_kernel_();                                                                            \
        painn_mixing_impl<T>(n_atoms, f, epsilon, vw, q, norm, context);                                        \
    }
PAINN_MIXING(f32, float)
PAINN_MIXING(f64, double)
