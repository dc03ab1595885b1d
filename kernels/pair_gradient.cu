// Gradient of one block's energy with respect to each pair's distance d and unit
// vector u (one warp per pair, both edges of the pair together, lanes over channels,
// fixed-order warp sums: deterministic). With i = pair_i, j = pair_j, the edge j -> i
// uses +u and the edge i -> j uses -u, and both use phi(d):
//   dE/dd += sum_c [g_s'_i s_j + g_s'_j s_i] phi_s' + [sum_a g_v'_i v_j + g_v'_j v_i] phi_v1'
//            + [sum_a (g_v'_i - g_v'_j)[a] u[a]] phi_v2'
//   dE/du[a] += sum_c (g_v'_i - g_v'_j)[a] phi_v2
// Written as grad_du[4p..4p+4) = (dE/dd, dE/du); accumulate = 0 overwrites (first block
// visited), 1 adds.
template <typename T, typename C>
__device__ void pair_gradient_impl(int n_pairs, const u32* pair_i, const u32* pair_j, const int* knot, const T* frac,
                                   const T* unit, const C* table,  T inv_h,
                                   const T* s_in, const T* v_in, const T* grad_s_mid, const T* grad_v_mid,
                                   int accumulate, T* grad_du) {
    int lane = threadIdx.x & 31;
    int p = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (p >= n_pairs) return;
    int kp = knot[p];
    if (kp < 0) {  // masked: contributes nothing (atom_gather adds G = 0)
        if (lane == 0) {
            for (int k = 0; k < 4; k++) grad_du[4 * (size_t)p + k] = T(0);
        }
        return;
    }
    u32 i = pair_i[p], j = pair_j[p];
    T u[3] = {unit[3 * p], unit[3 * p + 1], unit[3 * p + 2]};
    typename SplineFor<T, C>::type sp(kp, frac[p], inv_h);
    T gd = T(0), gu0 = T(0), gu1 = T(0), gu2 = T(0);
    const T* si = s_in + (size_t)i * H;
    const T* sj = s_in + (size_t)j * H;
    const T* vi = v_in + (size_t)i * H3;
    const T* vj = v_in + (size_t)j * H3;
    const T* gsi = grad_s_mid + (size_t)i * H;
    const T* gsj = grad_s_mid + (size_t)j * H;
    const T* gvi = grad_v_mid + (size_t)i * H3;
    const T* gvj = grad_v_mid + (size_t)j * H3;
#pragma unroll
    for (int m = 0; m < H / 32; m++) {
        int c = lane + 32 * m;
        T f_s, df_s, f_v1, df_v1, f_v2, df_v2;
        sp.value_and_derivative(table, c, f_s, df_s);
        sp.value_and_derivative(table, H + c, f_v1, df_v1);
        sp.value_and_derivative(table, 2 * H + c, f_v2, df_v2);
        T a_s = gsi[c] * sj[c] + gsj[c] * si[c];
        T a_v1 = T(0), a_v2 = T(0);
        T dv[3];
#pragma unroll
        for (int a = 0; a < 3; a++) {
            T gi = gvi[a * H + c], gj = gvj[a * H + c];
            a_v1 += gi * vj[a * H + c] + gj * vi[a * H + c];
            dv[a] = gi - gj;
            a_v2 += dv[a] * u[a];
        }
        gd += a_s * df_s + a_v1 * df_v1 + a_v2 * df_v2;
        gu0 += dv[0] * f_v2;
        gu1 += dv[1] * f_v2;
        gu2 += dv[2] * f_v2;
    }
    gd = warp_sum(gd);
    gu0 = warp_sum(gu0);
    gu1 = warp_sum(gu1);
    gu2 = warp_sum(gu2);
    if (lane == 0) {
        T* g = grad_du + 4 * (size_t)p;
        if (accumulate) {
            g[0] += gd;
            g[1] += gu0;
            g[2] += gu1;
            g[3] += gu2;
        } else {
            g[0] = gd;
            g[1] = gu0;
            g[2] = gu1;
            g[3] = gu2;
        }
    }
}
#define PAIR_GRADIENT(SUFFIX, T, C)                                                                     \
    extern "C" __global__ void pair_gradient_##SUFFIX(                                                \
        int n_pairs, const u32* pair_i, const u32* pair_j, const int* knot, const T* frac, const T* unit,          \
        const C* table,  T inv_h, const T* s_in, const T* v_in,                       \
        const T* grad_s_mid, const T* grad_v_mid, int accumulate, T* grad_du) {                       \
        wait_for_previous_kernel_();                                                                  \
        pair_gradient_impl<T, C>(n_pairs, pair_i, pair_j, knot, frac, unit, table, inv_h, s_in, v_in, \
                              grad_s_mid, grad_v_mid, accumulate, grad_du);                           \
    }
PAIR_GRADIENT(f32, float, Cubic<float>)
PAIR_GRADIENT(f64, double, Cubic<double>)
PAIR_GRADIENT(mixed, float, Cubic16)
