// Backward of the update MLP (update_backward.cu's equations) for small systems on sm_90,
// split over a thread-block cluster as update_cluster.cu splits the forward: block r of
// the cluster forms dE/dz for the channels [r C, r C + C) (C = H / CLUSTER_BLOCKS) from
// the tile's whole g_y (which every block forms itself), the blocks exchange dE/dz
// through distributed shared memory, and block r forms [g_s'_x, g_n] and the outputs of
// its channels. The first C S threads hold the weights of U2^T, the next C S those of
// U1^T, loaded first (they do not depend on the previous kernel). Every output is the
// same sum in the same order as update_backward_small's, so the results are bitwise equal.
// input_v 0, 1, 2 as in update_backward.cu (3, gates recomputed from z, is for large
// systems only: the host never launches this kernel with it).
#define UBC_THREADS (CLUSTER_CHANNELS * SMALL_SLICES * 2)
template <int TA>
__device__ __forceinline__ void update_backward_cluster_impl(
    int n_atoms, const float* grad_s_out, const float* grad_v_out, const float* v_mid, const float* z,
    const float* y, const float* w1, const float* w2, const float* mixing, int vector_update,
    float* grad_s_mid, float* grad_v_mid, int input_v, const float* prev_v_mid, const float* prev_y,
    const float* prev_mixing, float* v_in) {
    // The epilogues give one thread to each (channel, atom) of the block: C TA threads.
    static_assert(TA <= 2 * SMALL_SLICES, "at most 2 SMALL_SLICES atoms per cluster");
#if __CUDA_ARCH__ >= 900
    typedef float T;
    const int S = SMALL_SLICES, C = CLUSTER_CHANNELS;
    const int K = H / S;
    __shared__ __align__(16) T gy[H3][TA];      // g_y of the tile, every channel
    __shared__ __align__(16) T gz_own[C][TA];   // dE/dz, this block's channels (read by the cluster)
    __shared__ __align__(16) T gz[H][TA];       // dE/dz, every channel
    __shared__ __align__(16) T part[S][2][C][TA];
    const unsigned rank = cluster_rank_();
    const int t = threadIdx.x, cl = t % C, c = rank * C + cl;
    const int base = (blockIdx.x / CLUSTER_BLOCKS) * TA;
    // Rows H..3H of U2 only matter when the vector update exists.
    const int o_per = (vector_update ? H3 : H) / S;
    const bool first = t < C * S;  // U2^T, then the outputs
    const int sl = (first ? t : t - C * S) / C;
    T w2r[H3 / S], w1s[K], w1n[K];
    if (first) {
#pragma unroll
        for (int o = 0; o < H3 / S; o++)
            if (o < o_per) w2r[o] = w2[(size_t)(sl * o_per + o) * H + c];
    } else {
#pragma unroll
        for (int k = 0; k < K; k++) {
            w1s[k] = w1[(size_t)(sl * K + k) * 2 * H + c];
            w1n[k] = w1[(size_t)(sl * K + k) * 2 * H + H + c];
        }
    }
    wait_for_previous_kernel_();  // the weights above do not depend on it
    for (int idx = t; idx < H * TA; idx += UBC_THREADS) {
        int ch = idx % H, a = idx / H;
        T g0, g1, g2;
        update_grad_y_(base + a, n_atoms, ch, vector_update, grad_s_out, grad_v_out, v_mid, mixing, g0, g1, g2);
        gy[ch][a] = g0;
        gy[H + ch][a] = g1;
        gy[2 * H + ch][a] = g2;
    }
    // The block's input v for the edge backward, this block's channels.
    if (input_v && t < C * TA) {
        int i = base + t / C;
        if (i < n_atoms) input_v_<T>((size_t)i, c, input_v, prev_v_mid, prev_y, prev_mixing, v_in);
    }
    __syncthreads();
    if (first) {
        T acc[TA];
#pragma unroll
        for (int a = 0; a < TA; a++) acc[a] = T(0);
#pragma unroll
        for (int o = 0; o < H3 / S; o++)
            if (o < o_per)
#pragma unroll
                for (int a = 0; a < TA; a++) acc[a] += w2r[o] * gy[sl * o_per + o][a];
#pragma unroll
        for (int a = 0; a < TA; a++) part[sl][0][cl][a] = acc[a];
    }
    __syncthreads();
    if (t < C)
        for (int a = 0; a < TA; a++) {
            int i = base + a;
            T sum = part[0][0][cl][a];
            for (int r = 1; r < S; r++) sum += part[r][0][cl][a];
            gz_own[cl][a] = i < n_atoms ? sum * dsilu_(z[(size_t)i * H + c]) : T(0);
        }
    cluster_gather_<TA, UBC_THREADS>(gz_own, gz);
    __syncthreads();
    if (!first) {
        T acc[TA], acc_n[TA];
#pragma unroll
        for (int a = 0; a < TA; a++) {
            acc[a] = T(0);
            acc_n[a] = T(0);
        }
#pragma unroll
        for (int k = 0; k < K; k++)
#pragma unroll
            for (int a = 0; a < TA; a++) {
                acc[a] += w1s[k] * gz[sl * K + k][a];
                acc_n[a] += w1n[k] * gz[sl * K + k][a];
            }
#pragma unroll
        for (int a = 0; a < TA; a++) {
            part[sl][0][cl][a] = acc[a];
            part[sl][1][cl][a] = acc_n[a];
        }
    }
    __syncthreads();
    if (t < C * TA) {
        int a = t / C, i = base + a;
        if (i < n_atoms) {
            T sum = part[0][0][cl][a], sum_n = part[0][1][cl][a];
            for (int r = 1; r < S; r++) {
                sum += part[r][0][cl][a];
                sum_n += part[r][1][cl][a];
            }
            grad_s_mid[(size_t)i * H + c] = gy[c][a] + sum;
            vector_grad_<T>((size_t)i, c, sum_n, v_mid, grad_v_out, y, mixing, vector_update, grad_v_mid);
        }
    }
    cluster_wait_();  // no block leaves while another may still read its gz_own
#endif
}
// The arguments of update_backward_small (prev_z, prev_w2t, prev_b2 unused).
#define UPDATE_BACKWARD_CLUSTER(TA)                                                                               \
    extern "C" __global__ void CLUSTER_DIMS __launch_bounds__(UBC_THREADS) update_backward_cluster_t##TA##_f32(     \
        int n_atoms, const float* grad_s_out, const float* grad_v_out, const float* v_mid, const float* z,         \
        const float* y, const float* w1, const float* w2, const float* mixing, int vector_update,                  \
        float* grad_s_mid, float* grad_v_mid, int input_v, const float* prev_v_mid, const float* prev_y,           \
        const float* prev_mixing, const float* prev_z, const float* prev_w2t, const float* prev_b2, float* v_in) { \
        update_backward_cluster_impl<TA>(n_atoms, grad_s_out, grad_v_out, v_mid, z, y, w1, w2, mixing,             \
                                         vector_update, grad_s_mid, grad_v_mid, input_v, prev_v_mid, prev_y,       \
                                         prev_mixing, v_in);                                                       \
    }
UPDATE_BACKWARD_CLUSTER(1)
UPDATE_BACKWARD_CLUSTER(2)
UPDATE_BACKWARD_CLUSTER(4)
UPDATE_BACKWARD_CLUSTER(8)
__device__ int update_backward_cluster_threads = UBC_THREADS;
