// Backward of the update MLP for a tile of atoms (one block of H threads):
// from g_s'' and g_v'' (gradients after the block) to g_s' and g_v' (after the
// messages). For the last block v'' does not exist: g1, g2 get no gradient.
//   g_y = [g_s'', sum_a g_v''[a] v'[a], sum_a g_v''[a] (M v')[a]]
//   g_z = (U2^T g_y) silu'(z);  [g_s'_x, g_n] = U1^T g_z
//   g_s' = g_s'' + g_s'_x
//   g_v'[b] = g1 g_v''[b] + g2 sum_a M[a][b] g_v''[a] + g_n v'[b] / n   (0 where n = 0)
// S > 1 (small systems): the weight loops are split over S slices of H threads, whose
// partial sums are added in slice order (as in update.cu).
// g_v' is written over v' (same buffer: each element is read, then written, by one
// thread). Fused for memory: the block's input v, which the edge backward needs next, is
// recomputed per atom from the previous block's v' and gates (input_v = 2, the update.cu
// expression) or set to 0 (input_v = 1, block 0); input_v = 0 leaves v_in alone.
// input_v = 3: the previous block's gates were not saved (large systems, to save memory):
// they are recomputed from its z (prev_z, prev_w2t, prev_b2: u2_row_, the forward's
// expression, so the same numbers), written to prev_y for that block's update_backward,
// and used for v_in.
template <typename T, int TA, int S>
__device__ void update_backward_impl(int n_atoms, const T* grad_s_out, const T* grad_v_out, const T* v_mid,
                                     const T* z, const T* y, const T* w1, const T* w2,
                                     const T* mixing, int vector_update, T* grad_s_mid, T* grad_v_mid,
                                     int input_v, const T* __restrict__ prev_v_mid, T* __restrict__ prev_y,
                                     const T* __restrict__ prev_mixing, const T* __restrict__ prev_z,
                                     const T* __restrict__ prev_w2t, const T* __restrict__ prev_b2,
                                     T* __restrict__ v_in) {
    // [input][atom]: contiguous atoms per input for vector loads (see update.cu).
    __shared__ __align__(16) T gy[H3][TA];
    __shared__ __align__(16) T gz[H][TA];
    __shared__ __align__(16) T part[S][2][H][S > 1 ? TA : 1];  // slice partial sums (S > 1)
    int c = threadIdx.x % H, slice = threadIdx.x / H;
    int base = blockIdx.x * TA;
    if (input_v == 3) {
        // gz and part serve as scratch here (hid = silu(z) of the previous block).
        if (slice == 0)
            for (int a = 0; a < TA; a++) {
                int i = base + a;
                gz[c][a] = i < n_atoms ? silu_(prev_z[(size_t)i * H + c]) : T(0);
            }
        __syncthreads();
        T g[2][TA];
        for (int q = 1; q < 3; q++) u2_row_<T, TA, S>(q, c, slice, prev_w2t, prev_b2, gz, g[q - 1]);
        if (S > 1) {
            for (int q = 0; q < 2; q++)
                for (int a = 0; a < TA; a++) part[slice][q][c][a] = g[q][a];
            __syncthreads();
            for (int q = 0; q < 2; q++)
                for (int a = 0; a < TA; a++) {
                    T sum = prev_b2[(q + 1) * H + c];
                    for (int r = 0; r < S; r++) sum += part[r][q][c][a];
                    g[q][a] = sum;
                }
        }
        if (slice == 0)
            for (int a = 0; a < TA; a++) {
                int i = base + a;
                if (i >= n_atoms) break;
                prev_y[(size_t)i * 2 * H + c] = g[0][a];
                prev_y[(size_t)i * 2 * H + H + c] = g[1][a];
                const T* pv = prev_v_mid + (size_t)i * H3;
                T out[3];
                vector_gate_(pv[c], pv[H + c], pv[2 * H + c], g[0][a], g[1][a], prev_mixing, out);
                for (int r = 0; r < 3; r++) v_in[(size_t)i * H3 + r * H + c] = out[r];
            }
        __syncthreads();  // gz and part are used again below
    } else if (input_v) {
        // Independent of the rest (v_in is no other argument): its loads overlap the tile's.
#pragma unroll 4
        for (int a = slice; a < TA; a += S) {
            int i = base + a;
            if (i >= n_atoms) break;
            input_v_<T>((size_t)i, c, input_v, prev_v_mid, prev_y, prev_mixing, v_in);
        }
    }
    if (slice == 0) {
        for (int a = 0; a < TA; a++) {
            T g0, g1, g2;
            update_grad_y_(base + a, n_atoms, c, vector_update, grad_s_out, grad_v_out, v_mid, mixing, g0, g1, g2);
            gy[c][a] = g0;
            gy[H + c][a] = g1;
            gy[2 * H + c][a] = g2;
        }
    }
    __syncthreads();
    T acc[TA];
    for (int a = 0; a < TA; a++) acc[a] = T(0);
    // Rows H..3H of U2 only matter when the vector update exists.
    int n_out = vector_update ? H3 : H;
    int o_per = n_out / S;
    #pragma unroll (TA <= 2 ? 16 : 4)
    for (int o = slice * o_per; o < (slice + 1) * o_per; o++) {
        T w = w2[(size_t)o * H + c];
#pragma unroll
        for (int a = 0; a < TA; a++) acc[a] += w * gy[o][a];
    }
    if (S > 1) {
        for (int a = 0; a < TA; a++) part[slice][0][c][a] = acc[a];
        __syncthreads();
        for (int a = 0; a < TA; a++) {
            T sum = part[0][0][c][a];
            for (int r = 1; r < S; r++) sum += part[r][0][c][a];
            acc[a] = sum;
        }
    }
    if (slice == 0) {
        for (int a = 0; a < TA; a++) {
            int i = base + a;
            gz[c][a] = i < n_atoms ? acc[a] * dsilu_(z[(size_t)i * H + c]) : T(0);
        }
    }
    __syncthreads();
    T acc_n[TA];
    for (int a = 0; a < TA; a++) {
        acc[a] = T(0);
        acc_n[a] = T(0);
    }
    const int K = H / S;
    #pragma unroll (TA <= 2 ? 16 : 4)
    for (int k = slice * K; k < (slice + 1) * K; k++) {
        T ws = w1[(size_t)k * 2 * H + c], wn = w1[(size_t)k * 2 * H + H + c];
#pragma unroll
        for (int a = 0; a < TA; a++) {
            acc[a] += ws * gz[k][a];
            acc_n[a] += wn * gz[k][a];
        }
    }
    if (S > 1) {
        for (int a = 0; a < TA; a++) {
            part[slice][0][c][a] = acc[a];
            part[slice][1][c][a] = acc_n[a];
        }
        __syncthreads();
        for (int a = 0; a < TA; a++) {
            T sum = part[0][0][c][a], sum_n = part[0][1][c][a];
            for (int r = 1; r < S; r++) {
                sum += part[r][0][c][a];
                sum_n += part[r][1][c][a];
            }
            acc[a] = sum;
            acc_n[a] = sum_n;
        }
    }
    if (slice != 0) return;
    for (int a = 0; a < TA; a++) {
        int i = base + a;
        if (i >= n_atoms) break;
        grad_s_mid[(size_t)i * H + c] = gy[c][a] + acc[a];
        vector_grad_<T>((size_t)i, c, acc_n[a], v_mid, grad_v_out, y, mixing, vector_update, grad_v_mid);
    }
}
#define UPDATE_BACKWARD(SUFFIX, T, TA, S)                                                                 \
    extern "C" __global__ void __launch_bounds__(H * S) update_backward_##SUFFIX(                     \
        int n_atoms, const T* grad_s_out, const T* grad_v_out, const T* v_mid, const T* z,               \
        const T* y, const T* w1, const T* w2, const T* mixing, int vector_update, T* grad_s_mid,      \
        T* grad_v_mid, int input_v, const T* prev_v_mid, T* prev_y, const T* prev_mixing,              \
        const T* prev_z, const T* prev_w2t, const T* prev_b2, T* v_in) {                               \
        wait_for_previous_kernel_();                                                                   \
        update_backward_impl<T, TA, S>(n_atoms, grad_s_out, grad_v_out, v_mid, z, y, w1, w2, mixing,   \
                                vector_update, grad_s_mid, grad_v_mid, input_v, prev_v_mid, prev_y,   \
                                prev_mixing, prev_z, prev_w2t, prev_b2, v_in);                        \
    }
UPDATE_BACKWARD(f32, float, Tile<float>::value, MLP_SLICES)
UPDATE_BACKWARD(f64, double, Tile<double>::value, 1)
// Small systems: two atoms per block and the weight loops split over SMALL_SLICES.
UPDATE_BACKWARD(small_f32, float, 2, SMALL_SLICES)
UPDATE_BACKWARD(small_f64, double, 2, SMALL_SLICES)
