// Backward of the messages through the state (one block of H threads per atom j).
// Each edge j -> i has its reverse i -> j with the same phi, so the edges leaving j
// are the reverses of the edges arriving at j and the same CSR serves (no atomics):
//   g_s_j = g_s'_j + sum_{e in in(j)} g_s'_src(e) phi_s(e)
//   g_v_j = g_v'_j + sum_{e in in(j)} g_v'_src(e) phi_v1(e)
// Edges are staged and compacted in shared memory as in message.cu.
template <typename T, typename C>
__device__ void message_backward_impl(int n_atoms, const u32* edge_offsets, const u32* edge_perm, const u32* edge_source,
                                      const u32* edge_pair, const int* knot, const T* frac,
                                      const C* table, T inv_h,
                                      const T* grad_s_mid, const T* grad_v_mid, T* grad_s_in, T* grad_v_in) {
    __shared__ u32 sh_source[H];
    __shared__ int sh_knot[H];
    __shared__ T sh_frac[H];
    __shared__ int sh_counts[H / 32];
    int j = blockIdx.x, c = threadIdx.x;
    if (j >= n_atoms) return;
    T gs = grad_s_mid[(size_t)j * H + c];
    T gx = grad_v_mid[(size_t)j * H3 + c], gy = grad_v_mid[(size_t)j * H3 + H + c],
      gz = grad_v_mid[(size_t)j * H3 + 2 * H + c];
    u32 e0 = edge_offsets[j], e1 = edge_offsets[j + 1];
    for (u32 base = e0; base < e1; base += H) {
        bool valid = false;
        u32 src = 0;
        int kp = -1;
        T t = T(0);
        if (base + c < e1) {
            u32 e = edge_perm[base + c];  // summation order: see edge_order.cu
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
        int slot = block_compact(valid, sh_counts, &count);
        if (valid) {
            sh_source[slot] = src;
            sh_knot[slot] = kp;
            sh_frac[slot] = t;
        }
        __syncthreads();
#pragma unroll 4
        for (int q = 0; q < count; q++) {
            typename SplineFor<T, C>::type sp(sh_knot[q], sh_frac[q], inv_h);
            T phi_s = sp.value(table, c), phi_v1 = sp.value(table, H + c);
            u32 i = sh_source[q];
            const T* gvi = grad_v_mid + (size_t)i * H3;
            gs += grad_s_mid[(size_t)i * H + c] * phi_s;
            gx += gvi[c] * phi_v1;
            gy += gvi[H + c] * phi_v1;
            gz += gvi[2 * H + c] * phi_v1;
        }
    }
    grad_s_in[(size_t)j * H + c] = gs;
    grad_v_in[(size_t)j * H3 + c] = gx;
    grad_v_in[(size_t)j * H3 + H + c] = gy;
    grad_v_in[(size_t)j * H3 + 2 * H + c] = gz;
}
#define MESSAGE_BACKWARD(SUFFIX, T, C)                                                                  \
    extern "C" __global__ void __launch_bounds__(H) message_backward_##SUFFIX(                        \
        int n_atoms, const u32* edge_offsets, const u32* edge_perm, const u32* edge_source, const u32* edge_pair,           \
        const int* knot, const T* frac, const C* table,  T inv_h, const T* grad_s_mid,             \
        const T* grad_v_mid, T* grad_s_in, T* grad_v_in) {                                            \
        message_backward_impl<T, C>(n_atoms, edge_offsets, edge_perm, edge_source, edge_pair, knot, frac, table, \
                                 inv_h, grad_s_mid, grad_v_mid, grad_s_in, grad_v_in);                \
    }
MESSAGE_BACKWARD(f32, float, Cubic<float>)
MESSAGE_BACKWARD(f64, double, Cubic<double>)
MESSAGE_BACKWARD(mixed, float, Cubic16)
