// The energy head and its gradient (readout.cu's equations) folded into the last block's
// update backward on the thread-block clusters (update_backward_cluster.cu), for small
// systems: one launch less on a molecule's critical path. The readout's layers are split
// over the cluster as the update MLP is: block r forms outputs [r N/8, r N/8 + N/8) of
// each layer of width N from its weights (loaded into registers before the kernel waits
// for its predecessor) and the blocks exchange each layer through distributed shared
// memory; every block then holds dE/ds'' of the whole tile, which is g_y of the last
// block (no vector update), and goes on as update_backward_cluster. Block 0 writes the
// atom energies. Ghost atoms (is_local = 0) own no energy and no gradient, as in readout.cu.
// Each sum runs in a fixed order, but over other slices than readout_small's: the numbers
// differ from the unfused path in the last bits (compared in the GPU tests against the CPU
// f64 engine; MLFF_CUDA_FUSE=off runs readout_small and update_backward_cluster).

struct HeadPointers {
    const unsigned char* is_local;
    const float* s;  // s'' of the last block (the readout's input)
    const float *at, *a_bias, *a_w, *bt, *b_bias, *b_w, *c_w, *c_bias;
    float* atom_energy;
};

// One dense layer of N_IN inputs and N_OUT outputs split over the cluster: this block's
// N_OUT / CLUSTER_BLOCKS outputs, each summed by SL slices of K inputs (thread t: output
// t % OWN, slice t / OWN), the slices then added in order. W is input-major
// ([N_IN][N_OUT], as readout.cu's DenseWeights reads it).
template <int N_IN, int N_OUT> struct ClusterDense {
    enum {
        OWN = N_OUT / CLUSTER_BLOCKS,
        SL0 = UBC_THREADS / OWN,
        SL = SL0 < N_IN ? SL0 : N_IN,
        K = N_IN / SL,
    };
    static_assert(N_OUT % CLUSTER_BLOCKS == 0 && N_IN % SL == 0, "the layer must split over the cluster");
    float w[K];
    __device__ __forceinline__ void load(const float* W, unsigned rank) {
        int o = threadIdx.x % OWN, sl = threadIdx.x / OWN;
#pragma unroll
        for (int k = 0; k < K; k++) w[k] = sl < SL ? W[(size_t)(sl * K + k) * N_OUT + rank * OWN + o] : 0.0f;
    }
    // acc (threads t < OWN): output t of this block for each atom of the tile, from
    // in ([N_IN][TA], silu applied first if SILU). Every thread calls it (barriers).
    template <int TA, bool SILU>
    __device__ __forceinline__ void apply(const float (*in)[TA], float (*part)[TA], float acc[TA]) const {
        int t = threadIdx.x, sl = t / OWN;
        if (sl < SL) {
            float p[TA];
#pragma unroll
            for (int a = 0; a < TA; a++) p[a] = 0.0f;
#pragma unroll
            for (int k = 0; k < K; k++)
#pragma unroll
                for (int a = 0; a < TA; a++) p[a] += w[k] * (SILU ? silu_(in[sl * K + k][a]) : in[sl * K + k][a]);
#pragma unroll
            for (int a = 0; a < TA; a++) part[t][a] = p[a];
        }
        __syncthreads();
        if (t < OWN)
#pragma unroll
            for (int a = 0; a < TA; a++) {
                float sum = part[t][a];
                for (int r = 1; r < SL; r++) sum += part[r * OWN + t][a];
                acc[a] = sum;
            }
        __syncthreads();
    }
};

// GradS of update_backward_cluster_impl: dE/ds'' from the energy head.
struct GradSFromReadout {
    HeadPointers head;
    ClusterDense<H, H / 2> a;      // A s + a_bias
    ClusterDense<H / 2, H / 4> b;  // B silu(.) + b_bias
    ClusterDense<H / 4, H / 2> bt; // B^T
    ClusterDense<H / 2, H> at;     // A^T
    unsigned rank;
    __device__ __forceinline__ void preload(unsigned r) {
        rank = r;
        a.load(head.at, r);
        b.load(head.bt, r);
        bt.load(head.b_w, r);
        at.load(head.a_w, r);
    }
    template <int TA>
    __device__ __forceinline__ void stage(float (*gy)[TA], int base, int n_atoms, int, const float*, const float*,
                                          const float*) const {
#if __CUDA_ARCH__ >= 900
        const int H2 = H / 2, H4 = H / 4;
        __shared__ __align__(16) float x[H][TA];
        __shared__ __align__(16) float za[H2][TA], zb[H4][TA], gza[H2][TA];
        __shared__ __align__(16) float za_own[H2 / CLUSTER_BLOCKS][TA], zb_own[H4 / CLUSTER_BLOCKS][TA];
        __shared__ __align__(16) float gza_own[H2 / CLUSTER_BLOCKS][TA], gs_own[H / CLUSTER_BLOCKS][TA];
        __shared__ __align__(16) float part[UBC_THREADS][TA];
        const int t = threadIdx.x;
        for (int idx = t; idx < H * TA; idx += UBC_THREADS) {
            int c = idx % H, a = idx / H, i = base + a;
            x[c][a] = i < n_atoms ? head.s[(size_t)i * H + c] : 0.0f;
        }
        __syncthreads();
        float acc[TA];
        a.template apply<TA, false>(x, part, acc);
        if (t < a.OWN)
            for (int q = 0; q < TA; q++) za_own[t][q] = head.a_bias[rank * a.OWN + t] + acc[q];
        cluster_gather_<TA, UBC_THREADS, H2>(za_own, za);
        __syncthreads();
        cluster_wait_();  // the gather's last arrival: every block has read za_own
        b.template apply<TA, true>(za, part, acc);
        if (t < b.OWN)
            for (int q = 0; q < TA; q++) zb_own[t][q] = head.b_bias[rank * b.OWN + t] + acc[q];
        cluster_gather_<TA, UBC_THREADS, H4>(zb_own, zb);
        __syncthreads();
        cluster_wait_();
        // Energy: block 0, one thread per atom, in readout.cu's order.
        if (rank == 0 && t < TA && base + t < n_atoms) {
            int i = base + t;
            float e = head.c_bias[0];
            for (int k = 0; k < H4; k++) e += head.c_w[k] * silu_(zb[k][t]);
            head.atom_energy[i] = head.is_local[i] ? e : 0.0f;
        }
        __syncthreads();  // zb read above before it becomes dE/d zb
        for (int idx = t; idx < H4 * TA; idx += UBC_THREADS) {
            int k = idx / TA, q = idx % TA;
            zb[k][q] = head.c_w[k] * dsilu_(zb[k][q]);
        }
        __syncthreads();
        bt.template apply<TA, false>(zb, part, acc);
        if (t < bt.OWN)
            for (int q = 0; q < TA; q++) gza_own[t][q] = acc[q] * dsilu_(za[rank * bt.OWN + t][q]);
        cluster_gather_<TA, UBC_THREADS, H2>(gza_own, gza);
        __syncthreads();
        cluster_wait_();
        at.template apply<TA, false>(gza, part, acc);
        if (t < at.OWN)
            for (int q = 0; q < TA; q++) {
                int i = base + q;
                gs_own[t][q] = i < n_atoms && head.is_local[i] ? acc[q] : 0.0f;
            }
        // g_y = [dE/ds'', 0, 0]: the last block has no vector update.
        cluster_gather_<TA, UBC_THREADS, H>(gs_own, gy);
        for (int idx = t; idx < 2 * H * TA; idx += UBC_THREADS) gy[H + idx / TA][idx % TA] = 0.0f;
        cluster_wait_();  // the caller's next cluster barrier starts a new phase
#endif
    }
};

// update_backward_cluster's arguments (grad_s_out, input_v and the prev_* unused: the last
// block) and readout.cu's.
#define READOUT_UPDATE_BACKWARD_CLUSTER(TA)                                                                       \
    extern "C" __global__ void CLUSTER_DIMS __launch_bounds__(UBC_THREADS)                                        \
        readout_update_backward_cluster_t##TA##_f32(                                                              \
            int n_atoms, const float* grad_s_out, const float* grad_v_out, const float* v_mid, const float* z,    \
            const float* y, const float* w1, const float* w2, const float* mixing, int vector_update,             \
            float* grad_s_mid, float* grad_v_mid, int input_v, const float* prev_v_mid, const float* prev_y,      \
            const float* prev_mixing, const float* prev_z, const float* prev_w2t, const float* prev_b2,           \
            float* v_in, const unsigned char* is_local, const float* s, const float* at, const float* a_bias,     \
            const float* a_w, const float* bt, const float* b_bias, const float* b_w, const float* c_w,           \
            const float* c_bias, float* atom_energy) {                                                            \
        GradSFromReadout head{{is_local, s, at, a_bias, a_w, bt, b_bias, b_w, c_w, c_bias, atom_energy}};          \
        update_backward_cluster_impl<TA>(n_atoms, head, grad_v_out, v_mid, z, y, w1, w2, mixing, vector_update,   \
                                         grad_s_mid, grad_v_mid, input_v, prev_v_mid, prev_y, prev_mixing, v_in); \
    }
READOUT_UPDATE_BACKWARD_CLUSTER(1)
READOUT_UPDATE_BACKWARD_CLUSTER(2)
READOUT_UPDATE_BACKWARD_CLUSTER(4)
READOUT_UPDATE_BACKWARD_CLUSTER(8)
