// PaiNN per-pair gradient of one block (both directed edges of a pair: j -> i with
// direction +u and i -> j with -u): dE/dw of the filter (written scaled by fc, i.e.
// dE/d(raw)), dE/dfc, and dE/du added to g_unit (accumulated over blocks).
// Two kernels, no atomics, fixed summation order (bitwise repeatable):
//  painn_pair_gradient: one thread per (pair, lane), PAINN_LANES lanes per pair, lane l
//    taking channels l, l + PAINN_LANES, ...: consecutive threads read consecutive
//    channels of the same rows (coalesced) and write g_filter; each lane writes its
//    partial sums of dE/dfc and dE/du (4 values) to `partial`.
//  painn_pair_gradient_sum: one thread per pair adds its lanes' partials in lane order.
#define PAINN_LANES 32
template <typename T>
__device__ void painn_pair_gradient_impl(int n_pairs, int f, const u32* pair_i, const u32* pair_j, const T* raw,
                                         const T* cut, const T* unit, const T* x, const T* mu_in, const T* gq1,
                                         const T* gmu1, T* g_filter, T* partial) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)n_pairs * PAINN_LANES) return;
    int p = (int)(idx / PAINN_LANES), lane = (int)(idx % PAINN_LANES);
    size_t f3 = 3 * (size_t)f;
    u32 i = pair_i[p], j = pair_j[p];
    T u0 = unit[3 * p], u1 = unit[3 * p + 1], u2 = unit[3 * p + 2];
    T fc = cut[p];
    const T* fr = raw + p * f3;
    const T *xi = x + i * f3, *xj = x + j * f3, *mi = mu_in + i * f3, *mj = mu_in + j * f3;
    const T *gmi = gmu1 + i * f3, *gmj = gmu1 + j * f3;
    T gu0 = T(0), gu1 = T(0), gu2 = T(0), gc = T(0);
    for (int c = lane; c < f; c += PAINN_LANES) {
        T gw_s = gq1[(size_t)i * f + c] * xj[c] + gq1[(size_t)j * f + c] * xi[c];
        T along_i = gmi[c] * u0 + gmi[f + c] * u1 + gmi[2 * f + c] * u2;
        T along_j = -(gmj[c] * u0 + gmj[f + c] * u1 + gmj[2 * f + c] * u2);
        T gw_r = xj[f + c] * along_i + xi[f + c] * along_j;
        T gw_m = xj[2 * f + c] * (gmi[c] * mj[c] + gmi[f + c] * mj[f + c] + gmi[2 * f + c] * mj[2 * f + c]) +
                 xi[2 * f + c] * (gmj[c] * mi[c] + gmj[f + c] * mi[f + c] + gmj[2 * f + c] * mi[2 * f + c]);
        T radial_i = fc * fr[f + c] * xj[f + c];
        T radial_j = -fc * fr[f + c] * xi[f + c];
        gu0 += gmi[c] * radial_i + gmj[c] * radial_j;
        gu1 += gmi[f + c] * radial_i + gmj[f + c] * radial_j;
        gu2 += gmi[2 * f + c] * radial_i + gmj[2 * f + c] * radial_j;
        gc += gw_s * fr[c] + gw_r * fr[f + c] + gw_m * fr[2 * f + c];
        g_filter[p * f3 + c] = fc * gw_s;
        g_filter[p * f3 + f + c] = fc * gw_r;
        g_filter[p * f3 + 2 * f + c] = fc * gw_m;
    }
    T* out = partial + 4 * (size_t)idx;
    out[0] = gc;
    out[1] = gu0;
    out[2] = gu1;
    out[3] = gu2;
}
template <typename T>
__device__ void painn_pair_gradient_sum_impl(int n_pairs, const T* partial, T* g_cut, T* g_unit) {
    long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= n_pairs) return;
    const T* in = partial + 4 * PAINN_LANES * (size_t)p;
    T gc = T(0), gu0 = T(0), gu1 = T(0), gu2 = T(0);
    for (int lane = 0; lane < PAINN_LANES; lane++) {
        gc += in[4 * lane];
        gu0 += in[4 * lane + 1];
        gu1 += in[4 * lane + 2];
        gu2 += in[4 * lane + 3];
    }
    g_cut[p] = gc;
    g_unit[3 * p] += gu0;
    g_unit[3 * p + 1] += gu1;
    g_unit[3 * p + 2] += gu2;
}
#define PAINN_PAIR_GRADIENT(SUFFIX, T)                                                                                \
    extern "C" __global__ void painn_pair_gradient_##SUFFIX(int n_pairs, int f, const u32* pair_i, const u32* pair_j, \
                                                            const T* raw, const T* cut, const T* unit, const T* x,   \
                                                            const T* mu_in, const T* gq1, const T* gmu1,             \
                                                            T* g_filter, T* partial) {                              \
        wait_for_previous_kernel_();                                                                                \
        painn_pair_gradient_impl<T>(n_pairs, f, pair_i, pair_j, raw, cut, unit, x, mu_in, gq1, gmu1, g_filter,      \
                                    partial);                                                                        \
    }                                                                                                                \
    extern "C" __global__ void painn_pair_gradient_sum_##SUFFIX(int n_pairs, const T* partial, T* g_cut,             \
                                                                T* g_unit) {                                        \
        wait_for_previous_kernel_();                                                                                \
        painn_pair_gradient_sum_impl<T>(n_pairs, partial, g_cut, g_unit);                                           \
    }
PAINN_PAIR_GRADIENT(f32, float)
PAINN_PAIR_GRADIENT(f64, double)
