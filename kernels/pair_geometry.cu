// Per pair: d = |r_p| computed in f64 with the same operations, in the same order
// and with the same rounding as the host's `neighbors::norm` (no FMA contraction),
// then stored in the engine's precision with r_p and u_p = r_p / (d + 1e-8).
template <typename T>
__device__ void pair_geometry_impl(int n_pairs, const double* pair_vector, T* distance, T* vec, T* unit) {
    int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= n_pairs) return;
    double x = pair_vector[3 * p], y = pair_vector[3 * p + 1], z = pair_vector[3 * p + 2];
    double d = __dsqrt_rn(__dadd_rn(__dadd_rn(__dmul_rn(x, x), __dmul_rn(y, y)), __dmul_rn(z, z)));
    double inv = 1.0 / (d + 1e-8);
    distance[p] = (T)d;
    vec[3 * p] = (T)x;
    vec[3 * p + 1] = (T)y;
    vec[3 * p + 2] = (T)z;
    unit[3 * p] = (T)(x * inv);
    unit[3 * p + 1] = (T)(y * inv);
    unit[3 * p + 2] = (T)(z * inv);
}
#define PAIR_GEOMETRY(SUFFIX, T)                                                                      \
    extern "C" __global__ void pair_geometry_##SUFFIX(int n_pairs, const double* pair_vector, T* distance, \
                                                       T* vec, T* unit) {                             \
        pair_geometry_impl<T>(n_pairs, pair_vector, distance, vec, unit);                             \
    }
PAIR_GEOMETRY(f32, float)
PAIR_GEOMETRY(f64, double)
