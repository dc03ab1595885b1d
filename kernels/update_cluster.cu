// The update MLP (update.cu's equations) of small systems on sm_90, one thread-block
// cluster per tile of TA atoms (1, 2, 4 or 8: one entry point each, the host picks): block r of the cluster computes the channels
// [r C, r C + C) (C = H / CLUSTER_BLOCKS) of both layers, so it reads an eighth of the
// weights (update_small reads all of them in each of its blocks and is bound by one SM's
// bandwidth from L2). Each block forms the tile's whole input [s', n] itself; the hidden
// layer silu(z) goes to the other blocks through distributed shared memory. Every output
// is the same sum in the same order as update_small's (SMALL_SLICES slices of the input
// dimension, added after the bias in slice order), so the results are bitwise equal.
// Each thread loads its weights first: they do not depend on the previous kernel.
#define UC_THREADS (CLUSTER_CHANNELS * 3 * SMALL_SLICES)
// The tile's input [s', n] (x[2H][TA]) read from the message kernel's outputs s_mid,
// v_mid. message_update_cluster.cu forms it from its own message instead.
struct UpdateInputFromMemory {
    int n_atoms;
    const float* s_mid;
    const float* v_mid;
    template <int TA> __device__ __forceinline__ void form(int base, float (*x)[TA]) const {
        for (int idx = threadIdx.x; idx < H * TA; idx += UC_THREADS) {
            int ch = idx % H, a = idx / H;
            float s, nrm;
            update_input_(base + a, n_atoms, ch, s_mid, v_mid, s, nrm);
            x[ch][a] = s;
            x[H + ch][a] = nrm;
        }
        __syncthreads();
    }
};

template <int TA, typename Input>
__device__ __forceinline__ void update_cluster_impl(int n_atoms, const Input& input, const float* v_mid,
                                                    const float* w1t, const float* b1, const float* w2t,
                                                    const float* b2, const float* mixing, int vector_update,
                                                    float* z_out, float* y_out, float* s_out, float* v_out) {
#if __CUDA_ARCH__ >= 900
    typedef float T;
    const int S = SMALL_SLICES, C = CLUSTER_CHANNELS;
    const int K1 = 2 * H / S, K2 = H / S;
    __shared__ __align__(16) T x[2 * H][TA];     // [s', n] of the tile, every channel
    __shared__ __align__(16) T hid_own[C][TA];   // silu(z), this block's channels (read by the cluster)
    __shared__ __align__(16) T hid[H][TA];       // silu(z), every channel
    __shared__ __align__(16) T part[S][3][C][TA];
    const unsigned rank = cluster_rank_();
    const int t = threadIdx.x, cl = t % C, c = rank * C + cl;
    const int base = (blockIdx.x / CLUSTER_BLOCKS) * TA;
    // Layer 2: every thread, one row q of [ds, g1, g2] and one slice of the inputs.
    const int q = (t / C) % 3, slice = t / (3 * C);
    // Layer 1: the first C S threads, one slice each.
    const bool layer1 = t < C * S;
    const int s1 = t / C;
    T w2r[K2], w1r[K1];
#pragma unroll
    for (int k = 0; k < K2; k++) w2r[k] = w2t[(slice * K2 + k) * H3 + q * H + c];
    if (layer1) {
#pragma unroll
        for (int m = 0; m < K1; m++) w1r[m] = w1t[(s1 * K1 + m) * H + c];
    }
    wait_for_previous_kernel_();  // the weights above do not depend on it
    input.template form<TA>(base, x);
    if (layer1) {
        T acc[TA];
#pragma unroll
        for (int a = 0; a < TA; a++) acc[a] = T(0);
#pragma unroll
        for (int m = 0; m < K1; m++)
#pragma unroll
            for (int a = 0; a < TA; a++) acc[a] += w1r[m] * x[s1 * K1 + m][a];
#pragma unroll
        for (int a = 0; a < TA; a++) part[s1][0][cl][a] = acc[a];
    }
    __syncthreads();
    if (t < C)
        for (int a = 0; a < TA; a++) {
            T z = b1[c];
            for (int r = 0; r < S; r++) z += part[r][0][cl][a];
            int i = base + a;
            if (i < n_atoms) z_out[(size_t)i * H + c] = z;
            hid_own[cl][a] = silu_(z);
        }
    cluster_gather_<TA, UC_THREADS>(hid_own, hid);
    __syncthreads();
    T y[TA];
#pragma unroll
    for (int a = 0; a < TA; a++) y[a] = T(0);
#pragma unroll
    for (int k = 0; k < K2; k++)
#pragma unroll
        for (int a = 0; a < TA; a++) y[a] += w2r[k] * hid[slice * K2 + k][a];
#pragma unroll
    for (int a = 0; a < TA; a++) part[slice][q][cl][a] = y[a];
    __syncthreads();
    if (t < C * TA) {
        int a = t / C, i = base + a;
        if (i < n_atoms) {
            T g[3];
            for (int r3 = 0; r3 < 3; r3++) {
                T sum = b2[r3 * H + c];
                for (int r = 0; r < S; r++) sum += part[r][r3][cl][a];
                g[r3] = sum;
            }
            s_out[(size_t)i * H + c] = x[c][a] + g[0];
            if (vector_update) {
                if (y_out) {
                    y_out[(size_t)i * 2 * H + c] = g[1];
                    y_out[(size_t)i * 2 * H + H + c] = g[2];
                }
                T v0 = v_mid[(size_t)i * H3 + c], v1 = v_mid[(size_t)i * H3 + H + c], v2 = v_mid[(size_t)i * H3 + 2 * H + c];
                T out[3];
                vector_gate_(v0, v1, v2, g[1], g[2], mixing, out);
                for (int r = 0; r < 3; r++) v_out[(size_t)i * H3 + r * H + c] = out[r];
            }
        }
    }
    cluster_wait_();  // no block leaves while another may still read its hid_own
#endif
}
#define UPDATE_CLUSTER(TA)                                                                                      \
    extern "C" __global__ void CLUSTER_DIMS __launch_bounds__(UC_THREADS) update_cluster_t##TA##_f32(             \
        int n_atoms, const float* s_mid, const float* v_mid, const float* w1t, const float* b1, const float* w2t, \
        const float* b2, const float* mixing, int vector_update, float* z_out, float* y_out, float* s_out,        \
        float* v_out) {                                                                                          \
        update_cluster_impl<TA>(n_atoms, UpdateInputFromMemory{n_atoms, s_mid, v_mid}, v_mid, w1t, b1, w2t, b2,  \
                                mixing, vector_update, z_out, y_out, s_out, v_out);                              \
    }
UPDATE_CLUSTER(1)
UPDATE_CLUSTER(2)
UPDATE_CLUSTER(4)
UPDATE_CLUSTER(8)
__device__ int update_cluster_threads = UC_THREADS;
