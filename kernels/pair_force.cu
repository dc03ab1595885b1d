// Per pair: G_p = dE/dr_p in f64 (as the CPU engine: the force sums cancel strongly,
// so they are formed in f64 from the f64 pair vector), with d = |r|, u = r / (d + eps):
//   G = g_u / (d + eps) - r (g_u . r) / (d (d + eps)^2) + (dE/dd) r / d
template <typename T>
__device__ void pair_force_impl(int n_pairs, const int* knot, const double* pair_vector, const T* grad_d,
                                const T* grad_u, double* grad_r) {
    int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= n_pairs) return;
    if (knot[p] < 0) {  // masked pair: adds exact zeros downstream
        for (int a = 0; a < 3; a++) grad_r[3 * p + a] = 0.0;
        return;
    }
    double r[3] = {pair_vector[3 * p], pair_vector[3 * p + 1], pair_vector[3 * p + 2]};
    double d = sqrt(r[0] * r[0] + r[1] * r[1] + r[2] * r[2]);
    double g[3] = {(double)grad_u[3 * p], (double)grad_u[3 * p + 1], (double)grad_u[3 * p + 2]};
    double de = d + 1e-8;
    double gr = g[0] * r[0] + g[1] * r[1] + g[2] * r[2];
    double k_u = 1.0 / de;
    double k_r = (double)grad_d[p] / d - gr / (d * de * de);
    for (int a = 0; a < 3; a++) grad_r[3 * p + a] = g[a] * k_u + r[a] * k_r;
}
#define PAIR_FORCE(SUFFIX, T)                                                                         \
    extern "C" __global__ void pair_force_##SUFFIX(int n_pairs, const int* knot, const double* pair_vector, \
                                                    const T* grad_d, const T* grad_u, double* grad_r) { \
        pair_force_impl<T>(n_pairs, knot, pair_vector, grad_d, grad_u, grad_r);                             \
    }
PAIR_FORCE(f32, float)
PAIR_FORCE(f64, double)
