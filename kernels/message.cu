// Forward messages of one block, fused with aggregation by destination: one block of
// H threads per destination atom i (thread = channel), edges of i in CSR order, so
// the sums are formed in a fixed order without atomics (bitwise deterministic).
//   s'_i = s_i + sum_j s_j phi_s(d),  v'_i = v_i + sum_j (v_j phi_v1(d) + u_ji phi_v2(d))
// phi comes from the block's Hermite table (filter computed once per distance).
// The edges of the atom are staged in chunks of H: each thread loads one edge's
// source, table position and unit vector, the valid (d <= rc) edges are compacted in
// order into shared memory, and the channel loop then runs over shared data, so the
// dependent global loads of consecutive edges no longer serialise.
// S > 1 (small systems): blocks of S x H threads; slice r takes the valid edges whose
// index in the atom's compacted sequence is r mod S, and the slices' partial sums are
// added in slice order at the end. The assignment depends on the valid edges only (not
// on chunk boundaries or masked candidates), so a reused list still sums exactly as a
// fresh one; each thread's chain of dependent loads is S times shorter.
// One edge's terms of channel c, added to the destination's sums (message_impl and
// message_update_cluster.cu: the same expression, so the same numbers).
template <typename T, typename C>
__device__ __forceinline__ void message_edge_(int knot, T frac, u32 src, T u0, T u1, T u2, const C* table, T inv_h,
                                              int c, const T* s_in, const T* v_in, T& s, T& vx, T& vy, T& vz) {
    typename SplineFor<T, C>::type sp(knot, frac, inv_h);
    T phi_s = sp.value(table, c), phi_v1 = sp.value(table, H + c), phi_v2 = sp.value(table, 2 * H + c);
    const T* vj = v_in + (size_t)src * H3;
    s += s_in[(size_t)src * H + c] * phi_s;
    vx += vj[c] * phi_v1 + u0 * phi_v2;
    vy += vj[H + c] * phi_v1 + u1 * phi_v2;
    vz += vj[2 * H + c] * phi_v1 + u2 * phi_v2;
}

template <typename T, typename C, int S>
__device__ void message_impl(int n_atoms, const u32* edge_offsets, const u32* edge_perm, const u32* edge_source, const u32* edge_pair,
                             const int* knot, const T* frac, const T* unit, const C* table,
                             T inv_h, const T* s_in, const T* v_in, T* s_out, T* v_out) {
    const int NT = H * S;
    __shared__ u32 sh_source[NT];
    __shared__ int sh_knot[NT];
    __shared__ T sh_frac[NT];
    __shared__ T sh_unit[3][NT];
    __shared__ int sh_counts[NT / 32];
    __shared__ T sh_part[S > 1 ? S - 1 : 1][4][S > 1 ? H : 1];
    int i = blockIdx.x, tid = threadIdx.x, c = tid % H, slice = tid / H;
    if (i >= n_atoms) return;
    T s = T(0), vx = T(0), vy = T(0), vz = T(0);
    if (slice == 0) {
        s = s_in[(size_t)i * H + c];
        vx = v_in[(size_t)i * H3 + c];
        vy = v_in[(size_t)i * H3 + H + c];
        vz = v_in[(size_t)i * H3 + 2 * H + c];
    }
    u32 e0 = edge_offsets[i], e1 = edge_offsets[i + 1];
    int done = 0;  // valid edges of earlier chunks
    for (u32 base = e0; base < e1; base += NT) {
        bool valid = false;
        u32 j = 0;
        int kp = -1;
        T t = T(0), u0 = T(0), u1 = T(0), u2 = T(0);
        if (base + tid < e1) {
            u32 e = edge_perm[base + tid];  // summation order: see edge_order.cu
            u32 w = edge_pair[e];
            u32 p = w & EDGE_PAIR_MASK;
            kp = knot[p];
            valid = kp >= 0;  // candidates beyond rc are dropped here
            if (valid) {
                T sign = (w & EDGE_REVERSE) ? T(-1) : T(1);
                j = edge_source[e];
                t = frac[p];
                u0 = sign * unit[3 * p];
                u1 = sign * unit[3 * p + 1];
                u2 = sign * unit[3 * p + 2];
            }
        }
        __syncthreads();  // the previous chunk is no longer read
        int count;
        int slot = block_compact<NT>(valid, sh_counts, &count);
        if (valid) {
            sh_source[slot] = j;
            sh_knot[slot] = kp;
            sh_frac[slot] = t;
            sh_unit[0][slot] = u0;
            sh_unit[1][slot] = u1;
            sh_unit[2][slot] = u2;
        }
        __syncthreads();
#pragma unroll 4
        for (int q = (slice - done % S + S) % S; q < count; q += S)
            message_edge_<T, C>(sh_knot[q], sh_frac[q], sh_source[q], sh_unit[0][q], sh_unit[1][q], sh_unit[2][q],
                                table, inv_h, c, s_in, v_in, s, vx, vy, vz);
        done += count;
    }
    if (S > 1) {
        if (slice > 0) {
            sh_part[slice - 1][0][c] = s;
            sh_part[slice - 1][1][c] = vx;
            sh_part[slice - 1][2][c] = vy;
            sh_part[slice - 1][3][c] = vz;
        }
        __syncthreads();
        if (slice != 0) return;
        for (int r = 0; r < S - 1; r++) {
            s += sh_part[r][0][c];
            vx += sh_part[r][1][c];
            vy += sh_part[r][2][c];
            vz += sh_part[r][3][c];
        }
    }
    s_out[(size_t)i * H + c] = s;
    v_out[(size_t)i * H3 + c] = vx;
    v_out[(size_t)i * H3 + H + c] = vy;
    v_out[(size_t)i * H3 + 2 * H + c] = vz;
}
#define MESSAGE(SUFFIX, T, C, S)                                                                      \
    extern "C" __global__ void __launch_bounds__(H * S) message_##SUFFIX(                             \
        int n_atoms, const u32* edge_offsets, const u32* edge_perm, const u32* edge_source, const u32* edge_pair, \
        const int* knot, const T* frac, const T* unit, const C* table,  T inv_h,                   \
        const T* s_in, const T* v_in, T* s_out, T* v_out) {                                                      \
        wait_for_previous_kernel_();                                                                             \
        message_impl<T, C, S>(n_atoms, edge_offsets, edge_perm, edge_source, edge_pair, knot, frac, unit, table, \
                        inv_h, s_in, v_in, s_out, v_out);                                             \
    }
MESSAGE(f32, float, Cubic<float>, 1)
MESSAGE(f64, double, Cubic<double>, 1)
MESSAGE(mixed, float, Cubic16, 1)
// Small systems: SMALL_SLICES slices of H threads per atom.
MESSAGE(small_f32, float, Cubic<float>, SMALL_SLICES)
MESSAGE(small_f64, double, Cubic<double>, SMALL_SLICES)
MESSAGE(small_mixed, float, Cubic16, SMALL_SLICES)

// The f32 message with the filter from shared-memory polynomials (POLY_VALUE_DEGREE):
// grid (CTAs, H / 32 channel groups), one warp per destination atom, lanes over the
// group's channels; each warp walks its atom's edges in the same summation order as
// message_impl (edge_perm, masked edges skipped), so results are deterministic and a
// reused candidate list sums exactly as a fresh one.
// ZERO_V (block 0, whose input v is zero): v' = sum_j u_ji phi_v2, and the three loads of
// v_j per edge are skipped (v_in is not read).
// The merged walk (common.cuh, POLY_MERGE): a warp takes a group of POLY_MERGE
// consecutive atoms and walks the group's records in their merged order; each edge's
// terms go to its own atom's sums (the slot is warp-uniform; the compiler predicates the
// accumulation into each atom's registers, which is why more than 2 atoms per warp made
// the loop issue-bound), each the same operations as message_poly_impl's, in the same
// order per atom, so the same numbers bitwise.
template <bool ZERO_V, typename Coef>
__device__ __forceinline__ void message_poly_merged_(int n_atoms, const u32* edge_offsets, const float* s_in,
                                                     const float* v_in, float* s_out, float* v_out,
                                                     const uint4* merged, EdgeSlots slots, Coef& coef, int c) {
    const int G = POLY_MERGE;
    int lane = threadIdx.x & 31;
    for (int i0 = atom_queue_take(n_atoms, -1, G); i0 >= 0; i0 = atom_queue_take(n_atoms, i0, G)) {
        int na = min(G, n_atoms - i0);
        float s[G], vx[G], vy[G], vz[G];
#pragma unroll
        for (int a = 0; a < G; a++) {
            s[a] = vx[a] = vy[a] = vz[a] = 0.0f;
            if (a < na) {
                size_t i = (size_t)(i0 + a);
                s[a] = s_in[i * H + c];
                if (!ZERO_V) {
                    vx[a] = v_in[i * H3 + c];
                    vy[a] = v_in[i * H3 + H + c];
                    vz[a] = v_in[i * H3 + 2 * H + c];
                }
            }
        }
        u32 e0 = edge_offsets[i0], e1 = edge_offsets[i0 + na];
        for (u32 base = e0; base < e1; base += 32) {
            int count = warp_stage_edges(base + lane, e1, false, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                         0.0, 0, slots, false, -1, 2, false, merged, false);
#pragma unroll POLY_UNROLL
            for (int r = 0; r < count; r++) {
                float4 ge = slots.geometry[r];
                int2 ix = *reinterpret_cast<const int2*>(&slots.index[r]);  // source, interval | slot
                u32 src = (u32)ix.x;
                int slot = (int)((u32)ix.y >> MERGED_SLOT_SHIFT);
                float sj = s_in[src * H + (u32)c];
                coef.template load<ZERO_V ? 5 : 7>((int)((u32)ix.y & MERGED_INTERVAL_MASK));
                float phi_s = coef.value(0, ge.x), phi_v2 = coef.value(2, ge.x);
                float vjx = 0.0f, vjy = 0.0f, vjz = 0.0f, phi_v1 = 0.0f;
                if (!ZERO_V) {
                    const float* vj = v_in + (src * H3 + (u32)c);
                    vjx = vj[0];
                    vjy = vj[H];
                    vjz = vj[2 * H];
                    phi_v1 = coef.value(1, ge.x);
                }
                // The operations message_poly_impl's expressions compile to, spelled out:
                // the compiler would otherwise form a product once and add it per slot
                // (a rounding more than the fused multiply-add of the single-atom walk).
                float tx = 0.0f, ty = 0.0f, tz = 0.0f;
                if (!ZERO_V) {
                    tx = __fmaf_rn(ge.y, phi_v2, __fmul_rn(vjx, phi_v1));
                    ty = __fmaf_rn(ge.z, phi_v2, __fmul_rn(vjy, phi_v1));
                    tz = __fmaf_rn(ge.w, phi_v2, __fmul_rn(vjz, phi_v1));
                }
#pragma unroll
                for (int a = 0; a < G; a++) {
                    if (a != slot) continue;
                    s[a] = __fmaf_rn(sj, phi_s, s[a]);
                    if (ZERO_V) {
                        vx[a] = __fmaf_rn(ge.y, phi_v2, vx[a]);
                        vy[a] = __fmaf_rn(ge.z, phi_v2, vy[a]);
                        vz[a] = __fmaf_rn(ge.w, phi_v2, vz[a]);
                    } else {
                        vx[a] = __fadd_rn(vx[a], tx);
                        vy[a] = __fadd_rn(vy[a], ty);
                        vz[a] = __fadd_rn(vz[a], tz);
                    }
                }
            }
            __syncwarp();  // the slots are rewritten by the next chunk
        }
#pragma unroll
        for (int a = 0; a < G; a++) {
            if (a >= na) continue;
            size_t i = (size_t)(i0 + a);
            s_out[i * H + c] = s[a];
            v_out[i * H3 + c] = vx[a];
            v_out[i * H3 + H + c] = vy[a];
            v_out[i * H3 + 2 * H + c] = vz[a];
        }
    }
}

template <bool ZERO_V, bool MERGED>
__device__ __forceinline__ void message_poly_impl(
    int n_atoms, int intervals, double inv_h, const float* table, const u32* edge_offsets, const u32* edge_perm,
    const u32* edge_source, const u32* edge_pair, const int* knot, const double* distance, const float* unit,
    const float* s_in, const float* v_in, float* s_out, float* v_out, const uint4* records, const uint4* merged) {
    const int D = POLY_VALUE_DEGREE;
    float* sh = reinterpret_cast<float*>(poly_shared);
    int floats = poly_group_floats<POLY_VALUE_LANE_FLOATS>(intervals);
    int g = blockIdx.y;
    atom_queue_init_edges(n_atoms, edge_offsets, MERGED ? POLY_MERGE : 1);
    poly_load(sh, table + (size_t)g * floats, floats);
    int lane = threadIdx.x & 31;
    EdgeSlots slots = warp_slots(sh + floats);
    int c = g * POLY_GROUP + lane;
    PolyCoefficients<D, POLY_VALUE_LANE_FLOATS> coef(sh, lane);
    if constexpr (MERGED) {
        message_poly_merged_<ZERO_V>(n_atoms, edge_offsets, s_in, v_in, s_out, v_out, merged, slots, coef, c);
        return;
    }
    for (int i = atom_queue_take(n_atoms, -1); i >= 0; i = atom_queue_take(n_atoms, i)) {
        float s = s_in[(size_t)i * H + c];
        float vx = 0.0f, vy = 0.0f, vz = 0.0f;
        if (!ZERO_V) {
            vx = v_in[(size_t)i * H3 + c];
            vy = v_in[(size_t)i * H3 + H + c];
            vz = v_in[(size_t)i * H3 + 2 * H + c];
        }
        u32 e0 = edge_offsets[i], e1 = edge_offsets[i + 1];
        for (u32 base = e0; base < e1; base += 32) {
            int count = warp_stage_edges(base + lane, e1, false, edge_perm, edge_source, edge_pair, knot, distance, unit,
                                         inv_h, intervals, slots, false, -1, 2, false, records, false);
#pragma unroll POLY_UNROLL
            for (int r = 0; r < count; r++) {
                float4 ge = slots.geometry[r];
                int2 ix = *reinterpret_cast<const int2*>(&slots.index[r]);  // source, interval
                // 32-bit row offsets (the host runs these kernels only while n 3H < 2^32).
                u32 src = (u32)ix.x;
                float sj = s_in[src * H + (u32)c];
                coef.template load<ZERO_V ? 5 : 7>(ix.y);
                float phi_s = coef.value(0, ge.x), phi_v2 = coef.value(2, ge.x);
                s += sj * phi_s;
                if (ZERO_V) {
                    vx += ge.y * phi_v2;
                    vy += ge.z * phi_v2;
                    vz += ge.w * phi_v2;
                } else {
                    const float* vj = v_in + (src * H3 + (u32)c);
                    float vjx = vj[0], vjy = vj[H], vjz = vj[2 * H];
                    float phi_v1 = coef.value(1, ge.x);
                    vx += vjx * phi_v1 + ge.y * phi_v2;
                    vy += vjy * phi_v1 + ge.z * phi_v2;
                    vz += vjz * phi_v1 + ge.w * phi_v2;
                }
            }
            __syncwarp();  // the slots are rewritten by the next chunk
        }
        s_out[(size_t)i * H + c] = s;
        v_out[(size_t)i * H3 + c] = vx;
        v_out[(size_t)i * H3 + H + c] = vy;
        v_out[(size_t)i * H3 + 2 * H + c] = vz;
    }
}
#define MESSAGE_POLY(NAME, ZERO_V, MERGED)                                                                              \
    extern "C" __global__ void __launch_bounds__(POLY_MESSAGE_THREADS, 1) NAME(                                         \
        int n_atoms, int intervals, double inv_h, const float* table, const u32* edge_offsets,                  \
        const u32* edge_perm, const u32* edge_source, const u32* edge_pair, const int* knot,                    \
        const double* distance, const float* unit, const float* s_in, const float* v_in, float* s_out,          \
        float* v_out, const uint4* records, const uint4* merged) {                                              \
        wait_for_previous_kernel_();                                                                            \
        message_poly_impl<ZERO_V, MERGED>(n_atoms, intervals, inv_h, table, edge_offsets, edge_perm, edge_source,       \
                                  edge_pair, knot, distance, unit, s_in, v_in, s_out, v_out, records, merged);  \
    }
MESSAGE_POLY(message_poly_f32, false, false)
MESSAGE_POLY(message_poly_zero_v_f32, true, false)
// The merged walk (`merged` not null): groups of POLY_MERGE atoms per warp.
MESSAGE_POLY(message_poly_merged_f32, false, true)
MESSAGE_POLY(message_poly_merged_zero_v_f32, true, true)
