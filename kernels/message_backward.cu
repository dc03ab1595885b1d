// Backward of the messages through the state (one block of H x S threads per atom j).
// Each edge j -> i has its reverse i -> j with the same phi, so the edges leaving j
// are the reverses of the edges arriving at j and the same CSR serves (no atomics):
//   g_s_j = g_s'_j + sum_{e in in(j)} g_s'_src(e) phi_s(e)
//   g_v_j = g_v'_j + sum_{e in in(j)} g_v'_src(e) phi_v1(e)
// Edges are staged and compacted in shared memory as in message.cu.
// S > 1 (small systems): S slices of H threads split the valid edges by their index in
// the compacted sequence mod S and add their partial sums in slice order (as in message.cu).
template <typename T, typename C, int S>
__device__ void message_backward_impl(int n_atoms, const u32* edge_offsets, const u32* edge_perm, const u32* edge_source,
                                      const u32* edge_pair, const int* knot, const T* frac,
                                      const C* table, T inv_h,
                                      const T* grad_s_mid, const T* grad_v_mid, T* grad_s_in, T* grad_v_in) {
    const int NT = H * S;
    __shared__ u32 sh_source[NT];
    __shared__ int sh_knot[NT];
    __shared__ T sh_frac[NT];
    __shared__ int sh_counts[NT / 32];
    __shared__ T sh_part[S > 1 ? S - 1 : 1][4][S > 1 ? H : 1];
    int j = blockIdx.x, tid = threadIdx.x, c = tid % H, slice = tid / H;
    if (j >= n_atoms) return;
    T gs = T(0), gx = T(0), gy = T(0), gz = T(0);
    if (slice == 0) {
        gs = grad_s_mid[(size_t)j * H + c];
        gx = grad_v_mid[(size_t)j * H3 + c];
        gy = grad_v_mid[(size_t)j * H3 + H + c];
        gz = grad_v_mid[(size_t)j * H3 + 2 * H + c];
    }
    u32 e0 = edge_offsets[j], e1 = edge_offsets[j + 1];
    int done = 0;
    for (u32 base = e0; base < e1; base += NT) {
        bool valid = false;
        u32 src = 0;
        int kp = -1;
        T t = T(0);
        if (base + tid < e1) {
            u32 e = edge_perm[base + tid];  // summation order: see edge_order.cu
            u32 p = edge_pair[e] & EDGE_PAIR_MASK;
            kp = knot[p];
            valid = kp >= 0;
            if (valid) {
                src = edge_source[e];
                t = frac[p];
            }
        }
        __syncthreads();
        int count;
        int slot = block_compact<NT>(valid, sh_counts, &count);
        if (valid) {
            sh_source[slot] = src;
            sh_knot[slot] = kp;
            sh_frac[slot] = t;
        }
        __syncthreads();
#pragma unroll 4
        for (int q = (slice - done % S + S) % S; q < count; q += S) {
            typename SplineFor<T, C>::type sp(sh_knot[q], sh_frac[q], inv_h);
            T phi_s = sp.value(table, c), phi_v1 = sp.value(table, H + c);
            u32 i = sh_source[q];
            const T* gvi = grad_v_mid + (size_t)i * H3;
            gs += grad_s_mid[(size_t)i * H + c] * phi_s;
            gx += gvi[c] * phi_v1;
            gy += gvi[H + c] * phi_v1;
            gz += gvi[2 * H + c] * phi_v1;
        }
        done += count;
    }
    if (S > 1) {
        if (slice > 0) {
            sh_part[slice - 1][0][c] = gs;
            sh_part[slice - 1][1][c] = gx;
            sh_part[slice - 1][2][c] = gy;
            sh_part[slice - 1][3][c] = gz;
        }
        __syncthreads();
        if (slice != 0) return;
        for (int r = 0; r < S - 1; r++) {
            gs += sh_part[r][0][c];
            gx += sh_part[r][1][c];
            gy += sh_part[r][2][c];
            gz += sh_part[r][3][c];
        }
    }
    grad_s_in[(size_t)j * H + c] = gs;
    grad_v_in[(size_t)j * H3 + c] = gx;
    grad_v_in[(size_t)j * H3 + H + c] = gy;
    grad_v_in[(size_t)j * H3 + 2 * H + c] = gz;
}
#define MESSAGE_BACKWARD(SUFFIX, T, C, S)                                                               \
    extern "C" __global__ void __launch_bounds__(H * S) message_backward_##SUFFIX(                    \
        int n_atoms, const u32* edge_offsets, const u32* edge_perm, const u32* edge_source, const u32* edge_pair,           \
        const int* knot, const T* frac, const C* table,  T inv_h, const T* grad_s_mid,             \
        const T* grad_v_mid, T* grad_s_in, T* grad_v_in) {                                                          \
        wait_for_previous_kernel_();                                                                                \
        message_backward_impl<T, C, S>(n_atoms, edge_offsets, edge_perm, edge_source, edge_pair, knot, frac, table, \
                                 inv_h, grad_s_mid, grad_v_mid, grad_s_in, grad_v_in);                \
    }
MESSAGE_BACKWARD(f32, float, Cubic<float>, 1)
MESSAGE_BACKWARD(f64, double, Cubic<double>, 1)
MESSAGE_BACKWARD(mixed, float, Cubic16, 1)
// Small systems: SMALL_SLICES slices of H threads per atom.
MESSAGE_BACKWARD(small_f32, float, Cubic<float>, SMALL_SLICES)
MESSAGE_BACKWARD(small_f64, double, Cubic<double>, SMALL_SLICES)
MESSAGE_BACKWARD(small_mixed, float, Cubic16, SMALL_SLICES)
