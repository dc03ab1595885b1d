// Forward messages of one block, fused with aggregation by destination: one block of
// H threads per destination atom i (thread = channel), edges of i in CSR order, so
// the sums are formed in a fixed order without atomics (bitwise deterministic).
//   s'_i = s_i + sum_j s_j phi_s(d),  v'_i = v_i + sum_j (v_j phi_v1(d) + u_ji phi_v2(d))
// phi comes from the block's Hermite table (filter computed once per distance).
template <typename T>
__device__ void message_impl(int n_atoms, const u32* edge_offsets, const u32* edge_source, const u32* edge_pair,
                             const int* knot, const T* frac, const T* unit, const Cubic<T>* table, 
                             T inv_h, const T* s_in, const T* v_in, T* s_out, T* v_out) {
    int i = blockIdx.x, c = threadIdx.x;
    if (i >= n_atoms) return;
    T s = s_in[(size_t)i * H + c];
    T vx = v_in[(size_t)i * H3 + c], vy = v_in[(size_t)i * H3 + H + c], vz = v_in[(size_t)i * H3 + 2 * H + c];
    u32 e0 = edge_offsets[i], e1 = edge_offsets[i + 1];
    for (u32 e = e0; e < e1; e++) {
        u32 j = edge_source[e];
        u32 w = edge_pair[e];
        u32 p = w & EDGE_PAIR_MASK;
        int kp = knot[p];
        if (kp < 0) continue;  // candidate beyond rc (the whole block agrees)
        T sign = (w & EDGE_REVERSE) ? T(-1) : T(1);
        Spline<T> sp(kp, frac[p], inv_h);
        T phi_s = sp.value(table, c), phi_v1 = sp.value(table, H + c), phi_v2 = sp.value(table, 2 * H + c);
        T ux = sign * unit[3 * p], uy = sign * unit[3 * p + 1], uz = sign * unit[3 * p + 2];
        const T* vj = v_in + (size_t)j * H3;
        s += s_in[(size_t)j * H + c] * phi_s;
        vx += vj[c] * phi_v1 + ux * phi_v2;
        vy += vj[H + c] * phi_v1 + uy * phi_v2;
        vz += vj[2 * H + c] * phi_v1 + uz * phi_v2;
    }
    s_out[(size_t)i * H + c] = s;
    v_out[(size_t)i * H3 + c] = vx;
    v_out[(size_t)i * H3 + H + c] = vy;
    v_out[(size_t)i * H3 + 2 * H + c] = vz;
}
#define MESSAGE(SUFFIX, T)                                                                            \
    extern "C" __global__ void __launch_bounds__(H) message_##SUFFIX(                                 \
        int n_atoms, const u32* edge_offsets, const u32* edge_source, const u32* edge_pair,           \
        const int* knot, const T* frac, const T* unit, const Cubic<T>* table,  T inv_h,           \
        const T* s_in, const T* v_in, T* s_out, T* v_out) {                                           \
        message_impl<T>(n_atoms, edge_offsets, edge_source, edge_pair, knot, frac, unit, table, \
                        inv_h, s_in, v_in, s_out, v_out);                                             \
    }
MESSAGE(f32, float)
MESSAGE(f64, double)
