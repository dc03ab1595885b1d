// update_backward.cu for large f32 systems with the tiled products of update_tiled.cu
// (32 atoms per block of 256 threads, thread = 4 atoms x H/32 channels, weights through
// shared memory in slabs): every sum runs over the same terms in the same order as in
// update_backward.cu (one thread slice), so the results are the same numbers bitwise.
// Runs where update_tiled.cu runs (kernels.rs, TiledKernel::for_rows). Dynamic shared memory:
// UTB_SHARED_FLOATS floats, the tile t ([3H][UT_STRIDE_OF(W)]: g_y; its rows 0..H-1 hold the
// previous block's silu(z) first when its gates are recomputed, and g_z later) and
// two weight slabs (KS rows of up to 3H floats each). Wide, narrow and wide10 variants as
// in update_tiled.cu.
#define UTB_SHARED_FLOATS(KS, W) (3 * H * UT_STRIDE_OF(W) + 2 * (KS) * H3)
// Read by the host (kernels.rs, `tiled`) to size the launch: one definition of the layout.
extern "C" __device__ const int update_backward_tiled_f32_shared_bytes = UTB_SHARED_FLOATS(UT_KS_WIDE, 8) * 4;
// The narrow backward takes slabs of 4 rows: its tile is 3H rows, and three blocks must fit
// an SM's shared memory (228 KB on sm_90).
#define UTB_KS_NARROW 4
extern "C" __device__ const int update_backward_tiled_narrow_f32_shared_bytes = UTB_SHARED_FLOATS(UTB_KS_NARROW, 8) * 4;
// The wide10 backward takes slabs of 8 rows: two blocks of 40 atoms must fit an SM.
#ifndef UTB_KS_WIDE10  // MLFF_CUDA_DEFINES=-DUTB_KS_WIDE10=n (measurements)
#define UTB_KS_WIDE10 8
#endif
extern "C" __device__ const int update_backward_tiled_wide10_f32_shared_bytes = UTB_SHARED_FLOATS(UTB_KS_WIDE10, 10) * 4;

// CPT consecutive channels (from c0) of the x, y, z rows of one atom's [3][H] vector row.
__device__ __forceinline__ void utb_load3(const float* row, int c0, float out[3][UT_CPT]) {
    for (int r = 0; r < 3; r++) ut_load(row + r * H + c0, out[r]);
}
__device__ __forceinline__ void utb_store3(float* row, int c0, const float in[3][UT_CPT]) {
    for (int r = 0; r < 3; r++) ut_store(row + r * H + c0, in[r]);
}

// vector_grad_ (common.cuh) for the thread's CPT channels of atom a, with vector loads and
// stores: vector_grad_channel_ per channel, so the same numbers.
__device__ __forceinline__ void utb_vector_grad(size_t a, int c0, const float g_n[UT_CPT], const float* v_mid,
                                                const float* grad_v_out, const float* y, const float* mixing,
                                                int vector_update, float* grad_v_mid) {
    float v[3][UT_CPT], gv[3][UT_CPT], g1[UT_CPT], g2[UT_CPT], out[3][UT_CPT];
    utb_load3(v_mid + a * H3, c0, v);
    for (int j = 0; j < UT_CPT; j++) g1[j] = g2[j] = gv[0][j] = gv[1][j] = gv[2][j] = 0.0f;
    if (vector_update) {
        utb_load3(grad_v_out + a * H3, c0, gv);
        ut_load(y + a * 2 * H + c0, g1);
        ut_load(y + a * 2 * H + H + c0, g2);
    }
    for (int j = 0; j < UT_CPT; j++) {
        float vc[3] = {v[0][j], v[1][j], v[2][j]}, gvc[3] = {gv[0][j], gv[1][j], gv[2][j]}, oc[3];
        vector_grad_channel_(vc, gvc, g1[j], g2[j], g_n[j], mixing, oc);
        for (int b = 0; b < 3; b++) out[b][j] = oc[b];
    }
    utb_store3(grad_v_mid + a * H3, c0, out);
}

template <int KS, int W>
__device__ __forceinline__ void update_backward_tiled_impl(
    int n_atoms, const float* grad_s_out, const float* grad_v_out, const float* v_mid, const float* z, const float* y,
    const float* w1, const float* w2, const float* mixing, int vector_update, float* grad_s_mid, float* grad_v_mid,
    int input_v, const float* __restrict__ prev_v_mid, float* __restrict__ prev_y,
    const float* __restrict__ prev_mixing, const float* __restrict__ prev_z, const float* __restrict__ prev_w2t,
    const float* __restrict__ prev_b2, float* __restrict__ v_in) {
    float(*t)[UT_STRIDE_OF(W)] = reinterpret_cast<float(*)[UT_STRIDE_OF(W)]>(ut_shared);
    float* ws = reinterpret_cast<float*>(ut_shared) + 3 * H * UT_STRIDE_OF(W);
    int a0, c0;
    ut_tile_origin<W>(a0, c0);
    int base = blockIdx.x * UT_ATOMS_OF(W);
    // The block's input v, which the edge backward needs next (see update_backward.cu).
    if (input_v == 3) {
        // The previous block's gates from its z (update.cu's expression and order).
        float pz[UT_AT][UT_CPT];
        for (int i = 0; i < UT_AT; i++) {
            int a = base + a0 + i;
            for (int j = 0; j < UT_CPT; j++) pz[i][j] = 0.0f;
            if (a < n_atoms) ut_load(prev_z + (size_t)a * H + c0, pz[i]);
        }
        for (int j = 0; j < UT_CPT; j++) {
            float h[UT_AT];
            for (int i = 0; i < UT_AT; i++) h[i] = base + a0 + i < n_atoms ? silu_(pz[i][j]) : 0.0f;
            ut_put(t, c0 + j, a0, h);
        }
        float g[2][UT_AT][UT_CPT];
        for (int q = 0; q < 2; q++) {
            float bias[UT_CPT];
            ut_load(prev_b2 + (q + 1) * H + c0, bias);
            for (int i = 0; i < UT_AT; i++)
                for (int j = 0; j < UT_CPT; j++) g[q][i][j] = bias[j];
        }
        const int offsets[2] = {H, 2 * H};
        ut_product<KS, W, 2>(prev_w2t, H, H3, offsets, 2, t, ws, g);
        for (int i = 0; i < UT_AT; i++) {
            int a = base + a0 + i;
            if (a >= n_atoms) break;
            ut_store(prev_y + (size_t)a * 2 * H + c0, g[0][i]);
            ut_store(prev_y + (size_t)a * 2 * H + H + c0, g[1][i]);
            float pv[3][UT_CPT], vv[3][UT_CPT];
            utb_load3(prev_v_mid + (size_t)a * H3, c0, pv);
            for (int j = 0; j < UT_CPT; j++) {
                float out[3];
                vector_gate_(pv[0][j], pv[1][j], pv[2][j], g[0][i][j], g[1][i][j], prev_mixing, out);
                for (int r = 0; r < 3; r++) vv[r][j] = out[r];
            }
            utb_store3(v_in + (size_t)a * H3, c0, vv);
        }
    } else if (input_v) {
        for (int i = 0; i < UT_AT; i++) {
            int a = base + a0 + i;
            if (a >= n_atoms) break;
            float vv[3][UT_CPT];
            for (int j = 0; j < UT_CPT; j++) vv[0][j] = vv[1][j] = vv[2][j] = 0.0f;
            if (input_v == 2) {
                float pv[3][UT_CPT], g1[UT_CPT], g2[UT_CPT];
                utb_load3(prev_v_mid + (size_t)a * H3, c0, pv);
                ut_load(prev_y + (size_t)a * 2 * H + c0, g1);
                ut_load(prev_y + (size_t)a * 2 * H + H + c0, g2);
                for (int j = 0; j < UT_CPT; j++) {
                    float out[3];
                    vector_gate_(pv[0][j], pv[1][j], pv[2][j], g1[j], g2[j], prev_mixing, out);
                    for (int r = 0; r < 3; r++) vv[r][j] = out[r];
                }
            }
            utb_store3(v_in + (size_t)a * H3, c0, vv);
        }
    }
    // g_y = [g_s'', sum_r g_v''[r] v'[r], sum_r g_v''[r] (M v')[r]] (t was last read inside
    // the product above, which ends with a barrier).
    float gs_keep[UT_AT][UT_CPT], g1s[UT_AT][UT_CPT], g2s[UT_AT][UT_CPT];
#pragma unroll
    for (int i = 0; i < UT_AT; i++) {
        int a = base + a0 + i;
        float gsv[UT_CPT];
        for (int j = 0; j < UT_CPT; j++) gsv[j] = g1s[i][j] = g2s[i][j] = 0.0f;
        if (a < n_atoms) ut_load(grad_s_out + (size_t)a * H + c0, gsv);
        for (int j = 0; j < UT_CPT; j++) gs_keep[i][j] = gsv[j];
        if (a >= n_atoms || !vector_update) continue;
        float vr[3][UT_CPT], gvr[3][UT_CPT];
        utb_load3(v_mid + (size_t)a * H3, c0, vr);
        utb_load3(grad_v_out + (size_t)a * H3, c0, gvr);
#pragma unroll
        for (int j = 0; j < UT_CPT; j++) {
            float v[3], gv[3];
            for (int r = 0; r < 3; r++) {
                v[r] = vr[r][j];
                gv[r] = gvr[r][j];
            }
            gate_grads_channel_(v, gv, mixing, g1s[i][j], g2s[i][j]);
        }
    }
    for (int j = 0; j < UT_CPT; j++) {
        float col[3][UT_AT];
        for (int i = 0; i < UT_AT; i++) {
            col[0][i] = gs_keep[i][j];
            col[1][i] = g1s[i][j];
            col[2][i] = g2s[i][j];
        }
        for (int q = 0; q < 3; q++) ut_put(t, q * H + c0 + j, a0, col[q]);
    }
    // g_z = (U2^T g_y) silu'(z); rows H..3H of U2 only matter with the vector update.
    float acc[1][UT_AT][UT_CPT];
    for (int i = 0; i < UT_AT; i++)
        for (int j = 0; j < UT_CPT; j++) acc[0][i][j] = 0.0f;
    float zt[UT_AT][UT_CPT];  // z of the thread's atoms and channels, for silu'(z)
    {
        const int offsets[1] = {0};
        ut_product<KS, W, 1>(w2, vector_update ? H3 : H, H, offsets, 1, t, ws, acc);
    }
    // (Loading z before the product instead, to hide its latency, was no faster: session 16.)
    for (int i = 0; i < UT_AT; i++) {
        int a = base + a0 + i;
        for (int j = 0; j < UT_CPT; j++) zt[i][j] = 0.0f;
        if (a < n_atoms) ut_load(z + (size_t)a * H + c0, zt[i]);
    }
    for (int j = 0; j < UT_CPT; j++) {
        float gz[UT_AT];
        for (int i = 0; i < UT_AT; i++) gz[i] = base + a0 + i < n_atoms ? acc[0][i][j] * dsilu_(zt[i][j]) : 0.0f;
        ut_put(t, c0 + j, a0, gz);
    }
    // [g_s'_x, g_n] = U1^T g_z (U1: H rows of 2H).
    float gsn[2][UT_AT][UT_CPT];
    for (int p = 0; p < 2; p++)
        for (int i = 0; i < UT_AT; i++)
            for (int j = 0; j < UT_CPT; j++) gsn[p][i][j] = 0.0f;
    {
        const int offsets[2] = {0, H};
        ut_product<KS, W, 2>(w1, H, 2 * H, offsets, 2, t, ws, gsn);
    }
#pragma unroll
    for (int i = 0; i < UT_AT; i++) {
        int a = base + a0 + i;
        if (a >= n_atoms) break;
        float gs_new[UT_CPT];
        for (int j = 0; j < UT_CPT; j++) gs_new[j] = gs_keep[i][j] + gsn[0][i][j];
        ut_store(grad_s_mid + (size_t)a * H + c0, gs_new);
        // g_v' over v' (the same buffer: each element is read before it is written).
        utb_vector_grad((size_t)a, c0, gsn[1][i], v_mid, grad_v_out, y, mixing, vector_update, grad_v_mid);
    }
}

#define UPDATE_BACKWARD_TILED(NAME, KS, W, MIN_BLOCKS)                                                         \
    extern "C" __global__ void __launch_bounds__(UT_THREADS_OF(W), MIN_BLOCKS) NAME(                            \
        int n_atoms, const float* grad_s_out, const float* grad_v_out, const float* v_mid, const float* z,      \
        const float* y, const float* w1, const float* w2, const float* mixing, int vector_update,               \
        float* grad_s_mid, float* grad_v_mid, int input_v, const float* __restrict__ prev_v_mid,                \
        float* __restrict__ prev_y, const float* __restrict__ prev_mixing, const float* __restrict__ prev_z,    \
        const float* __restrict__ prev_w2t, const float* __restrict__ prev_b2, float* __restrict__ v_in) {     \
        wait_for_previous_kernel_();                                                                           \
        update_backward_tiled_impl<KS, W>(n_atoms, grad_s_out, grad_v_out, v_mid, z, y, w1, w2, mixing,           \
                                       vector_update, grad_s_mid, grad_v_mid, input_v, prev_v_mid, prev_y,     \
                                       prev_mixing, prev_z, prev_w2t, prev_b2, v_in);                          \
    }
UPDATE_BACKWARD_TILED(update_backward_tiled_f32, UT_KS_WIDE, 8, 1)
UPDATE_BACKWARD_TILED(update_backward_tiled_narrow_f32, UTB_KS_NARROW, 8, 3)
UPDATE_BACKWARD_TILED(update_backward_tiled_wide10_f32, UTB_KS_WIDE10, 10, 2)
