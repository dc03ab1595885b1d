// The backward pass of one block's edges (blocks after the first; block 0, which needs
// no state gradient, is pair_backward.cu), fused (f32, filter polynomials in shared
// memory; see common.cuh): message_backward and pair_gradient in one walk over each
// atom's edges, so every neighbour's gradient row is read once per edge instead of
// once for the state gradient plus twice per pair (both atoms' states and gradients)
// for the pair gradient.
//
// Grid (CTAs, H / 32 channel groups), one warp per atom j, lanes over the group's
// channels. Edge e in j's CSR has source i and destination j; its reverse x = (j -> i)
// has the same phi and the unit vector u_x = -u_e. Per edge:
//   g_s_j += g_s'_i phi_s,  g_v_j += g_v'_i phi_v1                   (message_backward)
//   term(x): dE/dd  = sum_c g_s'_i s_j phi_s' + (g_v'_i . v_j) phi_v1' + (g_v'_i . u_x) phi_v2'
//            dE/du_p = sign_x sum_c g_v'_i phi_v2                      (pair frame u_p)
// Each pair's two edges are the reverse edges of entries in the CSRs of its two atoms,
// so every (pair, direction) gets one term per channel group, written to the block's
// region of partial, [group][pair][direction] (float4); edge_backward_sum adds every
// block's in a fixed order after block 0. No atomics: deterministic.
// Large systems run the groups in sequence instead (one launch per group, group_base =
// the group, gridDim.y = 1, the _accumulate kernel after the first launch of the step):
// the terms of each pair's forward direction are added straight into grad_du (`direct`),
// those of its reverse direction into one partial slot per pair (16 bytes per pair instead
// of 32 per pair and group), in launch order (blocks from the last, groups in order);
// edge_backward_finish adds the partial slots into grad_du after block 0 (pair_backward).
template <bool ACCUMULATE, bool DIRECT>
__device__ __forceinline__ void edge_backward_poly_impl(
    int n_atoms, int n_pairs, int intervals, double inv_h, const float* table, const u32* edge_offsets,
    const u32* edge_perm, const u32* edge_source, const u32* edge_pair, const int* knot, const double* distance,
    const float* unit, const float* s_in, const float* v_in, const float* grad_s_mid, const float* grad_v_mid,
    float* grad_s_in, float* grad_v_in, int group_base, float* partial, float* direct, const uint4* records) {
    const int D = POLY_GRAD_DEGREE;
    float* sh = reinterpret_cast<float*>(poly_shared);
    int floats = poly_group_floats<POLY_GRAD_LANE_FLOATS>(intervals);
    int g = blockIdx.y + group_base;
    atom_queue_init_edges(n_atoms, edge_offsets);
    poly_load(sh, table + (size_t)g * floats, floats);
    int lane = threadIdx.x & 31;
    EdgeSlots slots = warp_slots(sh + floats);
    int c = g * POLY_GROUP + lane;
    float slope_scale = (float)(2.0 * inv_h);
    PolyCoefficients<D, POLY_GRAD_LANE_FLOATS> coef(sh, lane);
    for (int j = atom_queue_take(n_atoms, -1); j >= 0; j = atom_queue_take(n_atoms, j)) {
        float sj = s_in[(size_t)j * H + c];
        float vj0 = v_in[(size_t)j * H3 + c], vj1 = v_in[(size_t)j * H3 + H + c], vj2 = v_in[(size_t)j * H3 + 2 * H + c];
        float gs = grad_s_mid[(size_t)j * H + c];
        float gx = grad_v_mid[(size_t)j * H3 + c];
        float gy = grad_v_mid[(size_t)j * H3 + H + c];
        float gz = grad_v_mid[(size_t)j * H3 + 2 * H + c];
        u32 e0 = edge_offsets[j], e1 = edge_offsets[j + 1];
        for (u32 base = e0; base < e1; base += 32) {
            // Staged as the reverse edge x = (j -> i): u_x = -u_e.
            int count = warp_stage_edges(base + lane, e1, true, edge_perm, edge_source, edge_pair, knot, distance, unit,
                                         inv_h, intervals, slots, false, n_pairs, 2, DIRECT, records, true);
            // The pair-gradient terms of 4 edges at a time summed over the warp together.
            auto terms_of = [&](int r, float* t) {
                float4 ge = slots.geometry[r];
                int4 ix = slots.index[r];
                // 32-bit row offsets (the host runs these kernels only while n 3H < 2^32).
                u32 src = (u32)ix.x;
                const float* gvi = grad_v_mid + (src * H3 + (u32)c);
                float gsi = grad_s_mid[src * H + (u32)c], g0 = gvi[0], g1 = gvi[H], g2 = gvi[2 * H];
                float f_s, df_s, f_v1, df_v1, f_v2, df_v2;
                coef.load(ix.y);
                coef.value_and_slope(0, ge.x, f_s, df_s);
                coef.value_and_slope(1, ge.x, f_v1, df_v1);
                coef.value_and_slope(2, ge.x, f_v2, df_v2);
                gs += gsi * f_s;
                gx += g0 * f_v1;
                gy += g1 * f_v1;
                gz += g2 * f_v1;
                t[0] = (gsi * sj * df_s + (g0 * vj0 + g1 * vj1 + g2 * vj2) * df_v1 +
                        (g0 * ge.y + g1 * ge.z + g2 * ge.w) * df_v2) * slope_scale;
                // sign_x (g f) = g (sign_x f) exactly: the sign applied once, to f.
                float f_v2x = pair_frame_sign_((u32)ix.z, f_v2);
                t[1] = g0 * f_v2x;
                t[2] = g1 * f_v2x;
                t[3] = g2 * f_v2x;
            };
            // The edge's slot (pair, direction) was formed at staging: (dd, dE/du) at slot ..
            // slot + 3.
            auto store = [&](int r, int m, float x) {
                u32 slot = (u32)slots.index[r].w;
                float* out = partial;
                // DIRECT (groups in sequence; compiled in, so the edge loop tests no
                // argument): the forward direction into grad_du, the reverse into partial.
                if (DIRECT) {
                    out = (slot & EDGE_REVERSE) ? partial : direct;
                    slot &= EDGE_PAIR_MASK;
                }
                slot += (u32)m;
                if (ACCUMULATE)
                    out[slot] += x;
                else
                    out[slot] = x;
            };
            edge_term_batches_(lane, count, terms_of, store);
            __syncwarp();  // the slots are rewritten by the next chunk
        }
        grad_s_in[(size_t)j * H + c] = gs;
        grad_v_in[(size_t)j * H3 + c] = gx;
        grad_v_in[(size_t)j * H3 + H + c] = gy;
        grad_v_in[(size_t)j * H3 + 2 * H + c] = gz;
    }
}

#define EDGE_BACKWARD_POLY(NAME, ACCUMULATE, DIRECT)                                                                  \
    extern "C" __global__ void __launch_bounds__(POLY_THREADS, 1) NAME(                                                    \
        int n_atoms, int n_pairs, int intervals, double inv_h, const float* table, const u32* edge_offsets,     \
        const u32* edge_perm, const u32* edge_source, const u32* edge_pair, const int* knot,                    \
        const double* distance, const float* unit, const float* s_in, const float* v_in,                        \
        const float* grad_s_mid, const float* grad_v_mid, float* grad_s_in, float* grad_v_in, int group_base,   \
        float* partial, float* direct, const uint4* records) {                                                  \
        wait_for_previous_kernel_();                                                                            \
        edge_backward_poly_impl<ACCUMULATE, DIRECT>(n_atoms, n_pairs, intervals, inv_h, table, edge_offsets, edge_perm, \
                                            edge_source, edge_pair, knot, distance, unit, s_in, v_in,           \
                                            grad_s_mid, grad_v_mid, grad_s_in, grad_v_in,                       \
                                            group_base, partial, direct, records);                              \
    }
// Groups in parallel: every term into partial.
EDGE_BACKWARD_POLY(edge_backward_poly_f32, false, false)
// Groups in sequence: the step's first launch overwrites, the others add.
EDGE_BACKWARD_POLY(edge_backward_poly_direct_f32, false, true)
EDGE_BACKWARD_POLY(edge_backward_poly_accumulate_f32, true, true)

// Groups in parallel, after block 0's pair_backward: per pair, every block's terms
// (partial: block 0's region of groups x pairs x 1 direction first, then each later
// block's of groups x pairs x 2 directions, float4 each) summed into grad_du (dE/dd,
// dE/du per pair): each block's sum over groups and directions in that order, started
// from zero, the blocks from the last to block 0, each block's sum added to the running
// total: the additions one launch per block made when each block summed its own. Masked
// pairs (beyond rc) have no terms and get exact zeros.
extern "C" __global__ void edge_backward_sum_f32(int n_pairs, int groups, int n_blocks, const int* knot,
                                                 const float4* partial, float4* grad_du) {
    wait_for_previous_kernel_();
    int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= n_pairs) return;
    float4 total = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (knot[p] >= 0) {
        for (int l = n_blocks - 1; l >= 0; l--) {
            int directions = l == 0 ? 1 : 2;
            // The block's region (partial_offset in kernels.rs), in float4.
            const float4* region = partial + (l == 0 ? 0 : (size_t)(1 + 2 * (l - 1)) * groups * n_pairs);
            float4 sum = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            for (int g = 0; g < groups; g++) {
                for (int direction = 0; direction < directions; direction++) {
                    float4 x = region[((size_t)g * n_pairs + p) * directions + direction];
                    sum.x += x.x;
                    sum.y += x.y;
                    sum.z += x.z;
                    sum.w += x.w;
                }
            }
            if (l == n_blocks - 1) {
                total = sum;
            } else {
                total.x += sum.x;
                total.y += sum.y;
                total.z += sum.z;
                total.w += sum.w;
            }
        }
    }
    grad_du[p] = total;
}

// Groups in sequence, after block 0: grad_du += the reverse-direction terms (partial, 4
// values per pair). Masked pairs (beyond rc) were never written and are skipped (their
// grad_du is not read: atom_gather skips them too).
extern "C" __global__ void edge_backward_finish_f32(int n_pairs, const int* knot, const float4* partial,
                                                    float4* grad_du) {
    wait_for_previous_kernel_();
    int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= n_pairs || knot[p] < 0) return;
    float4 g = grad_du[p], x = partial[p];
    g.x += x.x;
    g.y += x.y;
    g.z += x.z;
    g.w += x.w;
    grad_du[p] = g;
}
