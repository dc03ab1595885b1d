// Update MLP of one block for a tile of atoms (one block of H threads; the weights
// are read once per tile and reused for every atom in it):
//   n = |v'| per channel, z = U1 [s', n] + c1, y = U2 silu(z) + c2 = [ds, g1, g2]
//   s'' = s' + ds,  v'' = v' g1 + (M v') g2   (v'' skipped for the last block)
// Saves z and, where the vector update exists and y_out is not null, g1 and g2 (y_out:
// 2H per atom) for the backward pass, which recomputes n from v' and v'' from v', g1, g2
// (update_backward.cu), and the gates from z where they were not saved.
// S > 1 (small systems): S slices of H threads split each weight loop (the input
// dimension) and add their partial sums in slice order after a barrier, so each thread's
// serial chain of dependent weight loads is S times shorter; deterministic.
template <typename T, int TA, int S>
__device__ void update_impl(int n_atoms, const T* s_mid, const T* v_mid, const T* w1t, const T* b1, const T* w2t,
                            const T* b2, const T* mixing, int vector_update, T* z_out, T* y_out,
                            T* s_out, T* v_out) {
    // [input][atom]: the tile's atoms of one input are contiguous, so the inner loop
    // over atoms reads them with vector loads (one broadcast load per 4 atoms in f32).
    __shared__ __align__(16) T x[2 * H][TA];
    __shared__ __align__(16) T hid[H][TA];
    __shared__ __align__(16) T part[S][3][H][S > 1 ? TA : 1];  // slice partial sums (S > 1)
    int c = threadIdx.x % H, slice = threadIdx.x / H;
    int base = blockIdx.x * TA;
    if (slice == 0) {
        for (int a = 0; a < TA; a++) {
            T s, nrm;
            update_input_(base + a, n_atoms, c, s_mid, v_mid, s, nrm);
            x[c][a] = s;
            x[H + c][a] = nrm;
        }
    }
    __syncthreads();
    T acc[TA];
    for (int a = 0; a < TA; a++) acc[a] = S == 1 ? b1[c] : T(0);
    const int K1 = 2 * H / S;
    #pragma unroll (TA <= 2 ? 16 : 4)
    for (int m = slice * K1; m < (slice + 1) * K1; m++) {
        T w = w1t[m * H + c];
#pragma unroll
        for (int a = 0; a < TA; a++) acc[a] += w * x[m][a];
    }
    if (S > 1) {
        for (int a = 0; a < TA; a++) part[slice][0][c][a] = acc[a];
        __syncthreads();
        for (int a = 0; a < TA; a++) {
            T z = b1[c];
            for (int q = 0; q < S; q++) z += part[q][0][c][a];
            acc[a] = z;
        }
    }
    if (slice == 0) {
        for (int a = 0; a < TA; a++) {
            int i = base + a;
            if (i < n_atoms) z_out[(size_t)i * H + c] = acc[a];
            hid[c][a] = silu_(acc[a]);
        }
    }
    __syncthreads();
    T y[3][TA];
    for (int q = 0; q < 3; q++) u2_row_<T, TA, S>(q, c, slice, w2t, b2, hid, y[q]);
    if (S > 1) {
        for (int q = 0; q < 3; q++)
            for (int a = 0; a < TA; a++) part[slice][q][c][a] = y[q][a];
        __syncthreads();
        for (int q = 0; q < 3; q++)
            for (int a = 0; a < TA; a++) {
                T sum = b2[q * H + c];
                for (int r = 0; r < S; r++) sum += part[r][q][c][a];
                y[q][a] = sum;
            }
    }
    if (slice != 0) return;
    for (int a = 0; a < TA; a++) {
        int i = base + a;
        if (i >= n_atoms) break;
        s_out[(size_t)i * H + c] = x[c][a] + y[0][a];
        if (vector_update) {
            if (y_out) {  // null: update_backward recomputes the gates (large systems)
                y_out[(size_t)i * 2 * H + c] = y[1][a];
                y_out[(size_t)i * 2 * H + H + c] = y[2][a];
            }
            T v0 = v_mid[(size_t)i * H3 + c], v1 = v_mid[(size_t)i * H3 + H + c], v2 = v_mid[(size_t)i * H3 + 2 * H + c];
            T out[3];
            vector_gate_(v0, v1, v2, y[1][a], y[2][a], mixing, out);
            for (int r = 0; r < 3; r++) v_out[(size_t)i * H3 + r * H + c] = out[r];
        }
    }
}
#define UPDATE(SUFFIX, T, TA, S)                                                                          \
    extern "C" __global__ void __launch_bounds__(H * S) update_##SUFFIX(                              \
        int n_atoms, const T* s_mid, const T* v_mid, const T* w1t, const T* b1, const T* w2t, const T* b2, \
        const T* mixing, int vector_update, T* z_out, T* y_out, T* s_out, T* v_out) {                \
        wait_for_previous_kernel_();                                                                 \
        update_impl<T, TA, S>(n_atoms, s_mid, v_mid, w1t, b1, w2t, b2, mixing, vector_update, z_out, \
                       y_out, s_out, v_out);                                                          \
    }
UPDATE(f32, float, Tile<float>::value, MLP_SLICES)
UPDATE(f64, double, Tile<double>::value, 1)
// Small systems: two atoms per block (more blocks) and the weight loops split over
// SMALL_SLICES slices of threads (shorter dependent chains).
UPDATE(small_f32, float, 2, SMALL_SLICES)
UPDATE(small_f64, double, 2, SMALL_SLICES)
