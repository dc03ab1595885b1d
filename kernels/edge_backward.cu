// The pair gradient of one block (f32, filter polynomials in shared memory; see
// common.cuh): dE/dd and dE/du of every pair, both directions of the pair at once, so the
// filter polynomial (value and slope) is evaluated once per pair instead of once per
// directed edge, and one warp sum per pair serves both directions. The state gradient
// through the messages is message_poly_transpose_f32 (message.cu), a separate walk over
// all edges that needs filter values only.
//
// Grid (CTAs, H / 32 channel groups), one warp per atom a, lanes over the group's
// channels; the warp takes the forward edges of a's CSR (each pair is staged once, in the
// CSR that holds its forward edge), in summation order, with b the edge's source. With
// primes for the block's gradients (g_s' = dE/ds', g' = dE/dv') and x = (a -> b) the
// edge staged as the reverse, u_x its unit vector (geometry.yzw):
//   dE/dd   = sum_c phi_s'  (g_s'_b s_a + g_s'_a s_b)
//                 + phi_v1' (g'_b . v_a + g'_a . v_b)
//                 + phi_v2' ((g'_b - g'_a) . u_x)
//   dE/du_p = sign_x sum_c (g'_b - g'_a) phi_v2        (pair frame u_p = sign_x u_x)
// (the edge a -> b carries s_a to b: gradient g'_b; the edge b -> a has u = -u_x).
// Groups in parallel: each group writes its four sums of the pair to partial[group][pair]
// (float4) and edge_backward_sum adds the groups in a fixed order. Large systems run the
// groups in sequence (one launch per group, group_base = the group, gridDim.y = 1) and
// write into grad_du directly (`direct`), the first launch of the step overwriting and
// the others (the _accumulate kernels) adding, in launch order: blocks from the last,
// groups in order. Each pair is written by one warp per launch: no atomics, deterministic.
// ZERO_V (block 0): v = 0, so the v1 part and the v loads drop out.
template <bool ACCUMULATE, bool ZERO_V>
__device__ __forceinline__ void edge_backward_poly_impl(int n_atoms, int n_pairs, int intervals, double inv_h,
                                                        const float* table, const u32* edge_offsets,
                                                        const u32* edge_perm, const u32* edge_source,
                                                        const u32* edge_pair, const int* knot, const double* distance,
                                                        const float* unit, const float* s_in, const float* v_in,
                                                        const float* grad_s_mid, const float* grad_v_mid,
                                                        int group_base, float* partial, float* direct) {
    const int D = POLY_GRAD_DEGREE;
    float* sh = reinterpret_cast<float*>(poly_shared);
    int floats = intervals * (D + 1) * POLY_STRIDE;
    int g = blockIdx.y + group_base;
    poly_load(sh, table + (size_t)g * floats, floats);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    EdgeSlots slots = warp_slots(sh + floats);
    int c = g * POLY_GROUP + lane;
    float slope_scale = (float)(2.0 * inv_h);
    float* out = direct ? direct : partial;
    // The component of the pair gradient whose warp sum this lane ends with (lanes 0, 8, 16, 24).
    u32 component = lane == 0 ? 0u : lane == 8 ? 3u : lane == 16 ? 1u : 2u;
    PolyCoefficients<D> coef;
    for (int a = blockIdx.x * warps + warp; a < n_atoms; a += gridDim.x * warps) {
        float sa = s_in[(size_t)a * H + c], gsa = grad_s_mid[(size_t)a * H + c];
        const float* ga = grad_v_mid + (size_t)a * H3;
        float ga0 = ga[c], ga1 = ga[H + c], ga2 = ga[2 * H + c];
        float va0 = 0.0f, va1 = 0.0f, va2 = 0.0f;
        if (!ZERO_V) {
            va0 = v_in[(size_t)a * H3 + c];
            va1 = v_in[(size_t)a * H3 + H + c];
            va2 = v_in[(size_t)a * H3 + 2 * H + c];
        }
        u32 e0 = edge_offsets[a], e1 = edge_offsets[a + 1];
        for (u32 base = e0; base < e1; base += 32) {
            int count = warp_stage_edges(base + lane, e1, true, edge_perm, edge_source, edge_pair, knot, distance, unit,
                                         inv_h, intervals, slots, true, n_pairs, direct != nullptr);
#pragma unroll POLY_UNROLL
            for (int r = 0; r < count; r++) {
                float4 ge = slots.geometry[r];
                int4 ix = slots.index[r];
                size_t b = (size_t)ix.x;
                float sign_x = ((u32)ix.y & EDGE_REVERSE) ? 1.0f : -1.0f;
                const float* gb = grad_v_mid + b * H3;
                float gsb = grad_s_mid[b * H + c], sb = s_in[b * H + c];
                float d0 = gb[c] - ga0, d1 = gb[H + c] - ga1, d2 = gb[2 * H + c] - ga2;
                float f_s, df_s, f_v2, df_v2;
                coef.template load<ZERO_V ? 5 : 7>(sh, ix.z, lane);
                coef.value_and_slope(0, ge.x, f_s, df_s);
                coef.value_and_slope(2, ge.x, f_v2, df_v2);
                float dd = (gsb * sa + gsa * sb) * df_s + (d0 * ge.y + d1 * ge.z + d2 * ge.w) * df_v2;
                if (!ZERO_V) {
                    const float* vb = v_in + b * H3;
                    float gvb = gb[c] * va0 + gb[H + c] * va1 + gb[2 * H + c] * va2;
                    float gav = ga0 * vb[c] + ga1 * vb[H + c] + ga2 * vb[2 * H + c];
                    float f_v1, df_v1;
                    coef.value_and_slope(1, ge.x, f_v1, df_v1);
                    dd += (gvb + gav) * df_v1;
                }
                dd *= slope_scale;
                float du0 = sign_x * d0 * f_v2, du1 = sign_x * d1 * f_v2, du2 = sign_x * d2 * f_v2;
                // Four warp sums at once (6 shuffles, fixed order): lane 8 m holds sum m.
                bool hi = lane & 16;
                float keep0 = hi ? du0 : dd, keep1 = hi ? du1 : du2;
                float send0 = hi ? dd : du0, send1 = hi ? du2 : du1;
                keep0 += __shfl_xor_sync(FULL_MASK, send0, 16);
                keep1 += __shfl_xor_sync(FULL_MASK, send1, 16);
                bool mid = lane & 8;
                float x = mid ? keep1 : keep0;
                x += __shfl_xor_sync(FULL_MASK, mid ? keep0 : keep1, 8);
                x += __shfl_xor_sync(FULL_MASK, x, 4);
                x += __shfl_xor_sync(FULL_MASK, x, 2);
                x += __shfl_xor_sync(FULL_MASK, x, 1);
                // Lanes 0, 8, 16, 24 hold dd, du2, du0, du1 (see keep/send above); the
                // pair's slot was formed at staging.
                if ((lane & 7) == 0) {
                    u32 slot = (u32)ix.w + component;
                    if (ACCUMULATE)
                        out[slot] += x;
                    else
                        out[slot] = x;
                }
            }
            __syncwarp();  // the slots are rewritten by the next chunk
        }
    }
}

#define EDGE_BACKWARD_POLY(NAME, ACCUMULATE, ZERO_V)                                                            \
    extern "C" __global__ void __launch_bounds__(POLY_THREADS, 1) NAME(                                           \
        int n_atoms, int n_pairs, int intervals, double inv_h, const float* table, const u32* edge_offsets,     \
        const u32* edge_perm, const u32* edge_source, const u32* edge_pair, const int* knot,                    \
        const double* distance, const float* unit, const float* s_in, const float* v_in,                        \
        const float* grad_s_mid, const float* grad_v_mid, int group_base, float* partial, float* direct) {      \
        edge_backward_poly_impl<ACCUMULATE, ZERO_V>(n_atoms, n_pairs, intervals, inv_h, table, edge_offsets,    \
                                                    edge_perm, edge_source, edge_pair, knot, distance, unit,    \
                                                    s_in, v_in, grad_s_mid, grad_v_mid, group_base, partial,    \
                                                    direct);                                                    \
    }
EDGE_BACKWARD_POLY(edge_backward_poly_f32, false, false)
// Groups after the first, in sequence: add to grad_du.
EDGE_BACKWARD_POLY(edge_backward_poly_accumulate_f32, true, false)
// Block 0 (v = 0).
EDGE_BACKWARD_POLY(edge_backward_poly_zero_v_f32, false, true)
EDGE_BACKWARD_POLY(edge_backward_poly_zero_v_accumulate_f32, true, true)

// Per pair: the sum over channel groups (in order) of its terms into grad_du (dE/dd,
// dE/du per pair); accumulate = 0 overwrites (first block visited), 1 adds. Masked pairs
// (beyond rc) have no terms and get exact zeros.
extern "C" __global__ void edge_backward_sum_f32(int n_pairs, int groups, const int* knot, const float4* partial,
                                                 int accumulate, float4* grad_du) {
    int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= n_pairs) return;
    float4 sum = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (knot[p] >= 0) {
        for (int g = 0; g < groups; g++) {
            float4 x = partial[(size_t)g * n_pairs + p];
            sum.x += x.x;
            sum.y += x.y;
            sum.z += x.z;
            sum.w += x.w;
        }
    }
    if (accumulate) {
        float4 g = grad_du[p];
        g.x += sum.x;
        g.y += sum.y;
        g.z += sum.z;
        g.w += sum.w;
        grad_du[p] = g;
    } else {
        grad_du[p] = sum;
    }
}
