// update_backward.cu for large f32 systems on tensor cores, with update_mma.cu's 3xTF32
// products, block shape and fragment ownership (32 atoms per block, warp w = channels
// [16 w, 16 w + 16) of every part, all per-atom work in registers). Runs where
// update_mma.cu runs. Dynamic shared memory: the tile t ([atom][3H]: g_y; its columns
// 0..H-1 hold the previous block's silu(z) first when its gates are recomputed, and g_z
// later) and two weight slabs.
extern "C" __device__ const int update_backward_mma_f32_shared_bytes = UM_SHARED_FLOATS(3 * H, UM_STAGES_BACKWARD) * 4;
extern "C" __device__ const int update_backward_mma_tf32_shared_bytes =
    UM_SHARED_FLOATS(3 * H, UM_STAGES_BACKWARD) * 4;

template <int PASSES>
__device__ __forceinline__ void update_backward_mma_impl(
    int n_atoms, const float* grad_s_out, const float* grad_v_out, const float* v_mid, const float* z, const float* y,
    const float* w1, const float* w2, const float* mixing, int vector_update, float* grad_s_mid, float* grad_v_mid,
    int input_v, const float* __restrict__ prev_v_mid, float* __restrict__ prev_y,
    const float* __restrict__ prev_mixing, const float* __restrict__ prev_z, const float* __restrict__ prev_w2t,
    const float* __restrict__ prev_b2, float* __restrict__ v_in) {
#if __CUDA_ARCH__ >= 800
    extern __shared__ float4 um_shared[];
    const int ts = UM_STRIDE(3 * H);
    float* t = reinterpret_cast<float*>(um_shared);
    float* ws = t + UM_ATOMS * ts;
    int base = blockIdx.x * UM_ATOMS;
    // The block's input v, which the edge backward needs next (see update_backward.cu).
    if (input_v == 3) {
        // The previous block's gates from its z (update.cu's expressions).
        UM_FOR_PAIRS {
            int a = um_atom(mt, 2 * h), c = um_channel(nt, 0);
            float2 pz = base + a < n_atoms ? um_load2(prev_z + (size_t)(base + a) * H + c) : make_float2(0.0f, 0.0f);
            um_store2(t + a * ts + c, base + a < n_atoms ? silu_(pz.x) : 0.0f, base + a < n_atoms ? silu_(pz.y) : 0.0f);
        }
        const int offsets[2] = {H, 2 * H};
        float g[2][2][2][4];
        um_bias<2>(prev_b2, offsets, g);
        um_product<PASSES, 2, 16, H3, UM_STAGES_BACKWARD>(prev_w2t, H, offsets, 2, t, ts, ws, g);
        UM_FOR_PAIRS {
            size_t a = (size_t)(base + um_atom(mt, 2 * h));
            int c = um_channel(nt, 0), r = 2 * h;
            if (a >= (size_t)n_atoms) continue;
            um_store2(prev_y + a * 2 * H + c, g[0][mt][nt][r], g[0][mt][nt][r + 1]);
            um_store2(prev_y + a * 2 * H + H + c, g[1][mt][nt][r], g[1][mt][nt][r + 1]);
            const float* pv = prev_v_mid + a * H3 + c;
            float2 vx = um_load2(pv), vy = um_load2(pv + H), vz = um_load2(pv + 2 * H);
            float o0[3], o1[3];
            vector_gate_(vx.x, vy.x, vz.x, g[0][mt][nt][r], g[1][mt][nt][r], prev_mixing, o0);
            vector_gate_(vx.y, vy.y, vz.y, g[0][mt][nt][r + 1], g[1][mt][nt][r + 1], prev_mixing, o1);
            for (int q = 0; q < 3; q++) um_store2(v_in + a * H3 + q * H + c, o0[q], o1[q]);
        }
    } else if (input_v) {
        UM_FOR_PAIRS {
            int a = base + um_atom(mt, 2 * h), c = um_channel(nt, 0);
            if (a >= n_atoms) continue;
            input_v_<float>((size_t)a, c, input_v, prev_v_mid, prev_y, prev_mixing, v_in);
            input_v_<float>((size_t)a, c + 1, input_v, prev_v_mid, prev_y, prev_mixing, v_in);
        }
    }
    // g_y = [g_s'', sum_r g_v''[r] v'[r], sum_r g_v''[r] (M v')[r]] into t (last read
    // inside the product above, which ends with a barrier); g_s'' stays in registers.
    float gs_keep[2][2][4];
    UM_FOR_PAIRS {
        int a = um_atom(mt, 2 * h), c = um_channel(nt, 0);
        float g0[2], g1[2], g2[2];
        for (int e = 0; e < 2; e++)
            update_grad_y_(base + a, n_atoms, c + e, vector_update, grad_s_out, grad_v_out, v_mid, mixing, g0[e],
                           g1[e], g2[e]);
        gs_keep[mt][nt][2 * h] = g0[0];
        gs_keep[mt][nt][2 * h + 1] = g0[1];
        um_store2(t + a * ts + c, g0[0], g0[1]);
        um_store2(t + a * ts + H + c, g1[0], g1[1]);
        um_store2(t + a * ts + 2 * H + c, g2[0], g2[1]);
    }
    // g_z = (U2^T g_y) silu'(z); rows H..3H of U2 only matter with the vector update.
    const int off1[1] = {0};
    float acc[1][2][2][4];
    um_bias<1>(nullptr, off1, acc);
    um_product<PASSES, 1, 32, H, UM_STAGES_BACKWARD>(w2, vector_update ? H3 : H, off1, 1, t, ts, ws, acc);
    UM_FOR_PAIRS {
        int a = um_atom(mt, 2 * h), c = um_channel(nt, 0);
        float g0 = 0.0f, g1 = 0.0f;
        if (base + a < n_atoms) {
            float2 zv = um_load2(z + (size_t)(base + a) * H + c);
            g0 = acc[0][mt][nt][2 * h] * dsilu_(zv.x);
            g1 = acc[0][mt][nt][2 * h + 1] * dsilu_(zv.y);
        }
        um_store2(t + a * ts + c, g0, g1);
    }
    // [g_s'_x, g_n] = U1^T g_z (U1: H rows of 2H).
    const int off2[2] = {0, H};
    float gsn[2][2][2][4];
    um_bias<2>(nullptr, off2, gsn);
    um_product<PASSES, 2, 16, 2 * H, UM_STAGES_BACKWARD>(w1, H, off2, 2, t, ts, ws, gsn);
    UM_FOR_PAIRS {
        size_t a = (size_t)(base + um_atom(mt, 2 * h));
        int c = um_channel(nt, 0), r = 2 * h;
        if (a >= (size_t)n_atoms) continue;
        um_store2(grad_s_mid + a * H + c, gs_keep[mt][nt][r] + gsn[0][mt][nt][r],
                  gs_keep[mt][nt][r + 1] + gsn[0][mt][nt][r + 1]);
        // g_v' over v' (the same buffer: vector_grad_ reads this thread's elements before writing them).
        for (int e = 0; e < 2; e++)
            vector_grad_<float>(a, c + e, gsn[1][mt][nt][r + e], v_mid, grad_v_out, y, mixing, vector_update,
                                grad_v_mid);
    }
#else
    __trap();  // the host loads this kernel on sm_80 and later only
#endif
}

#define UPDATE_BACKWARD_MMA(NAME, PASSES)                                                                      \
    extern "C" __global__ void __launch_bounds__(UM_THREADS, 2) NAME(                                           \
        int n_atoms, const float* grad_s_out, const float* grad_v_out, const float* v_mid, const float* z,       \
        const float* y, const float* w1, const float* w2, const float* mixing, int vector_update,                \
        float* grad_s_mid, float* grad_v_mid, int input_v, const float* __restrict__ prev_v_mid,                 \
        float* __restrict__ prev_y, const float* __restrict__ prev_mixing, const float* __restrict__ prev_z,     \
        const float* __restrict__ prev_w2t, const float* __restrict__ prev_b2, float* __restrict__ v_in) {      \
        wait_for_previous_kernel_();                                                                            \
        update_backward_mma_impl<PASSES>(n_atoms, grad_s_out, grad_v_out, v_mid, z, y, w1, w2, mixing,          \
                                         vector_update, grad_s_mid, grad_v_mid, input_v, prev_v_mid, prev_y,    \
                                         prev_mixing, prev_z, prev_w2t, prev_b2, v_in);                         \
    }
UPDATE_BACKWARD_MMA(update_backward_mma_f32, 3)
UPDATE_BACKWARD_MMA(update_backward_mma_tf32, 1)
