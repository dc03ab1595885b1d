// Per pair: G_p = dE/dr_p from dE/dd and dE/du, with d = |r|, u = r / (d + eps):
//   G = g_u / (d + eps) - r (g_u . r) / (d (d + eps)^2) + (dE/dd) r / d
template <typename T>
__device__ void pair_force_impl(int n_pairs, const T* distance, const T* vec, const T* grad_d, const T* grad_u,
                                T* grad_r) {
    int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= n_pairs) return;
    T d = distance[p];
    T r[3] = {vec[3 * p], vec[3 * p + 1], vec[3 * p + 2]};
    T g[3] = {grad_u[3 * p], grad_u[3 * p + 1], grad_u[3 * p + 2]};
    T de = d + T(1e-8);
    T gr = g[0] * r[0] + g[1] * r[1] + g[2] * r[2];
    T k_u = T(1) / de;
    T k_r = grad_d[p] / d - gr / (d * de * de);
    for (int a = 0; a < 3; a++) grad_r[3 * p + a] = g[a] * k_u + r[a] * k_r;
}
#define PAIR_FORCE(SUFFIX, T)                                                                         \
    extern "C" __global__ void pair_force_##SUFFIX(int n_pairs, const T* distance, const T* vec,      \
                                                    const T* grad_d, const T* grad_u, T* grad_r) {    \
        pair_force_impl<T>(n_pairs, distance, vec, grad_d, grad_u, grad_r);                           \
    }
PAIR_FORCE(f32, float)
PAIR_FORCE(f64, double)
