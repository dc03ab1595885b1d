// The pair gradient of block 0 (f32, filter polynomials in shared memory; see
// common.cuh): dE/dd and dE/du of every pair with both directions at once, so the filter
// polynomial (value and slope) is evaluated once per pair instead of once per directed
// edge, and one warp sum per pair serves both directions. Block 0 needs no state gradient
// (its input is the embedding) and its input v is zero, so nothing else walks its edges.
// (Blocks with a state gradient use edge_backward.cu, which fuses both: there a separate
// pair walk would read every neighbour's rows twice, which measured slower.)
//
// Grid (CTAs, H / 32 channel groups), one warp per atom a, lanes over the group's
// channels; the warp takes the forward edges of a's CSR (each pair is staged once, in the
// CSR that holds its forward edge), in summation order, with b the edge's source. With
// g_s' = dE/ds', g' = dE/dv' of the block and x = (a -> b) the edge staged as the
// reverse, u_x its unit vector (geometry.yzw):
//   dE/dd   = sum_c phi_s' (g_s'_b s_a + g_s'_a s_b) + phi_v2' ((g'_b - g'_a) . u_x)
//   dE/du_p = sign_x sum_c (g'_b - g'_a) phi_v2        (pair frame u_p = sign_x u_x)
// (the edge a -> b carries s_a to b: gradient g'_b; the edge b -> a has u = -u_x).
// Groups in parallel: each group writes its four sums of the pair to block 0's region of
// partial, [group][pair] (float4; edge_backward_sum then adds every block's terms in a
// fixed order). Groups in sequence (large
// systems): straight into grad_du (`direct`), the _accumulate kernel adding to what the
// blocks before wrote. Each pair is written by one warp per launch: deterministic.
template <bool ACCUMULATE>
__device__ __forceinline__ void pair_backward_impl(int n_atoms, int n_pairs, int intervals, double inv_h,
                                                   const float* table, const u32* edge_offsets, const u32* edge_perm,
                                                   const u32* edge_source, const u32* edge_pair, const int* knot,
                                                   const double* distance, const float* unit, const float* s_in,
                                                   const float* grad_s_mid, const float* grad_v_mid, int group_base,
                                                   float* partial, float* direct, const u32* pair_i,
                                                  const uint4* records) {
    const int D = POLY_GRAD_DEGREE;
    float* sh = reinterpret_cast<float*>(poly_shared);
    int floats = poly_group_floats<POLY_GRAD_LANE_FLOATS>(intervals);
    int g = blockIdx.y + group_base;
    atom_queue_init_pairs(n_atoms, n_pairs, pair_i);
    poly_load(sh, table + (size_t)g * floats, floats);
    int lane = threadIdx.x & 31;
    EdgeSlots slots = warp_slots(sh + floats);
    int c = g * POLY_GROUP + lane;
    float slope_scale = (float)(2.0 * inv_h);
    float* out = direct ? direct : partial;
    PolyCoefficients<D, POLY_GRAD_LANE_FLOATS> coef(sh, lane);
    for (int a = atom_queue_take(n_atoms, -1); a >= 0; a = atom_queue_take(n_atoms, a)) {
        float sa = s_in[(size_t)a * H + c], gsa = grad_s_mid[(size_t)a * H + c];
        const float* ga = grad_v_mid + (size_t)a * H3;
        float ga0 = ga[c], ga1 = ga[H + c], ga2 = ga[2 * H + c];
        u32 e0 = edge_offsets[a], e1 = edge_offsets[a + 1];
        for (u32 base = e0; base < e1; base += 32) {
            int count = warp_stage_edges(base + lane, e1, true, edge_perm, edge_source, edge_pair, knot, distance, unit,
                                         inv_h, intervals, slots, true, n_pairs, 1, direct != nullptr, records, true);
            // The terms of 4 pairs at a time summed over the warp together.
            auto terms_of = [&](int r, float* t) {
                float4 ge = slots.geometry[r];
                int4 ix = slots.index[r];
                // 32-bit row offsets (the host runs these kernels only while n 3H < 2^32).
                u32 b = (u32)ix.x;
                const float* gb = grad_v_mid + (b * H3 + (u32)c);
                float gsb = grad_s_mid[b * H + (u32)c], sb = s_in[b * H + (u32)c];
                float d0 = gb[0] - ga0, d1 = gb[H] - ga1, d2 = gb[2 * H] - ga2;
                float f_s, df_s, f_v2, df_v2;
                coef.template load<5>(ix.y);
                coef.value_and_slope(0, ge.x, f_s, df_s);
                coef.value_and_slope(2, ge.x, f_v2, df_v2);
                t[0] = ((gsb * sa + gsa * sb) * df_s + (d0 * ge.y + d1 * ge.z + d2 * ge.w) * df_v2) * slope_scale;
                float f_v2x = pair_frame_sign_((u32)ix.z, f_v2);  // sign_x (d f) = d (sign_x f) exactly
                t[1] = d0 * f_v2x;
                t[2] = d1 * f_v2x;
                t[3] = d2 * f_v2x;
            };
            // The pair's slot was formed at staging.
            auto store = [&](int r, int m, float x) {
                u32 slot = (u32)slots.index[r].w + (u32)m;
                if (ACCUMULATE)
                    out[slot] += x;
                else
                    out[slot] = x;
            };
            edge_term_batches_(lane, count, terms_of, store);
            __syncwarp();  // the slots are rewritten by the next chunk
        }
    }
}

#define PAIR_BACKWARD(NAME, ACCUMULATE)                                                                         \
    extern "C" __global__ void __launch_bounds__(POLY_MESSAGE_THREADS, 1) NAME(                                           \
        int n_atoms, int n_pairs, int intervals, double inv_h, const float* table, const u32* edge_offsets,     \
        const u32* edge_perm, const u32* edge_source, const u32* edge_pair, const int* knot,                    \
        const double* distance, const float* unit, const float* s_in, const float* grad_s_mid,                  \
        const float* grad_v_mid, int group_base, float* partial, float* direct, const u32* pair_i,              \
        const uint4* records) {                                                                                 \
        wait_for_previous_kernel_();                                                                            \
        pair_backward_impl<ACCUMULATE>(n_atoms, n_pairs, intervals, inv_h, table, edge_offsets, edge_perm,      \
                                       edge_source, edge_pair, knot, distance, unit, s_in, grad_s_mid,          \
                                       grad_v_mid, group_base, partial, direct, pair_i, records);               \
    }
PAIR_BACKWARD(pair_backward_zero_v_f32, false)
// Blocks before it wrote grad_du (groups in sequence), or groups after the first: add.
PAIR_BACKWARD(pair_backward_zero_v_accumulate_f32, true)
