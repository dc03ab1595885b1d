// PaiNN per-pair gradient of one block (one thread per pair, both directed edges:
// j -> i with direction +u and i -> j with -u): dE/dw of the filter (written scaled
// by fc, i.e. dE/d(raw)), dE/dfc, and dE/du added to g_unit (accumulated over blocks).
template <typename T>
__device__ void painn_pair_gradient_impl(int n_pairs, int f, const u32* pair_i, const u32* pair_j, const T* raw,
                                         const T* cut, const T* unit, const T* x, const T* mu_in, const T* gq1,
                                         const T* gmu1, T* g_filter, T* g_cut, T* g_unit) {
    int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= n_pairs) return;
    size_t f3 = 3 * (size_t)f;
    u32 i = pair_i[p], j = pair_j[p];
    T u0 = unit[3 * p], u1 = unit[3 * p + 1], u2 = unit[3 * p + 2];
    T fc = cut[p];
    const T* fr = raw + p * f3;
    const T *xi = x + i * f3, *xj = x + j * f3, *mi = mu_in + i * f3, *mj = mu_in + j * f3;
    const T *gmi = gmu1 + i * f3, *gmj = gmu1 + j * f3;
    T gu0 = T(0), gu1 = T(0), gu2 = T(0), gc = T(0);
    for (int c = 0; c < f; c++) {
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
    g_cut[p] = gc;
    g_unit[3 * p] += gu0;
    g_unit[3 * p + 1] += gu1;
    g_unit[3 * p + 2] += gu2;
}
#define PAINN_PAIR_GRADIENT(SUFFIX, T)                                                                                \
    extern "C" __global__ void painn_pair_gradient_##SUFFIX(int n_pairs, int f, const u32* pair_i, const u32* pair_j, \
                                                            const T* raw, const T* cut, const T* unit, const T* x,   \
                                                            const T* mu_in, const T* gq1, const T* gmu1,             \
                                                            T* g_filter, T* g_cut, T* g_unit) {                      \
        painn_pair_gradient_impl<T>(n_pairs, f, pair_i, pair_j, raw, cut, unit, x, mu_in, gq1, gmu1, g_filter,      \
                                    g_cut, g_unit);                                                                  \
    }
PAINN_PAIR_GRADIENT(f32, float)
PAINN_PAIR_GRADIENT(f64, double)
