// Shared helpers for every mlff kernel. The engine compiles common.cuh followed by
// all kernels/*.cu as one NVRTC program, with these macros defined on the command
// line (compile-time constants let loops unroll and arrays live in registers):
//   HIDDEN   hidden width H (a multiple of 32)
//   TILE     atoms per block in the per-atom MLP kernels (f32; f64 uses TILE/2)
// Every kernel exists twice, with the suffix _f32 and _f64, from one template.

#ifndef HIDDEN
#define HIDDEN 128
#endif
#ifndef TILE
#define TILE 16
#endif

#define H HIDDEN
#define H3 (3 * HIDDEN)

typedef unsigned int u32;

// Sign bit of a packed edge word: set for the reverse edge i -> j of a pair (vector -r_p).
#define EDGE_REVERSE 0x80000000u
#define EDGE_PAIR_MASK 0x7fffffffu


// A pair's lattice shift (integers s_0, s_1, s_2, each in [-2^20, 2^20)) packed in 64
// bits, s_0 highest, each biased by 2^20: packed words order as (s_0, s_1, s_2)
// lexicographically (the neighbour list sorts by them). 8 bytes per pair instead of the
// 24 of an f64 offset; the host packs them the same way (engine.rs, `pack_shift`).
#define SHIFT_BITS 21
#define SHIFT_BIAS (1 << (SHIFT_BITS - 1))
__device__ __forceinline__ bool shift_fits(const int s[3]) {
    for (int c = 0; c < 3; c++)
        if (s[c] < -SHIFT_BIAS || s[c] >= SHIFT_BIAS) return false;
    return true;
}
__device__ __forceinline__ unsigned long long shift_pack(const int s[3]) {
    unsigned long long w = 0;
    for (int c = 0; c < 3; c++) w = (w << SHIFT_BITS) | (unsigned long long)(unsigned)(s[c] + SHIFT_BIAS);
    return w;
}
__device__ __forceinline__ void shift_unpack(unsigned long long w, int s[3]) {
    for (int c = 2; c >= 0; c--) {
        s[c] = (int)(w & ((1ull << SHIFT_BITS) - 1)) - SHIFT_BIAS;
        w >>= SHIFT_BITS;
    }
}

// offset = shift . cell (cell rows flattened) with the host's operations, order and
// rounding (`neighbors::pair_vector`'s shift term; explicit _rn intrinsics: no FMA).
__device__ __forceinline__ void pair_offset_exact(const double* cell, const int* s, double* out) {
    for (int c = 0; c < 3; c++)
        out[c] = __dadd_rn(__dadd_rn(__dmul_rn((double)s[0], cell[c]), __dmul_rn((double)s[1], cell[3 + c])),
                           __dmul_rn((double)s[2], cell[6 + c]));
}

// Where a pair's offset comes from: its packed shift and the cell of its system (cells:
// 9 per system; atom_system: the system of each atom, null for a single system).
struct PairFrame {
    const unsigned long long* shift;
    const double* cells;
    const u32* atom_system;
};

// r_p = (r_j - r_i) + shift_p . cell in f64 with the operations, order and rounding of
// the host's `neighbors::pair_vector` (explicit _rn intrinsics: no FMA contraction). One
// expression for pair_geometry (the cutoff decision) and atom_gather (the forces).
__device__ __forceinline__ void pair_vector_(const double* positions, u32 i, u32 j, PairFrame frame, size_t p,
                                             double v[3]) {
    int s[3];
    shift_unpack(frame.shift[p], s);
    const double* cell = frame.cells + 9 * (size_t)(frame.atom_system ? frame.atom_system[i] : 0u);
    double off[3];
    pair_offset_exact(cell, s, off);
    for (int c = 0; c < 3; c++)
        v[c] = __dadd_rn(__dsub_rn(positions[3 * (size_t)j + c], positions[3 * (size_t)i + c]), off[c]);
}

template <typename T> __device__ __forceinline__ T sigmoid_(T z) { return T(1) / (T(1) + exp(-z)); }
template <typename T> __device__ __forceinline__ T silu_(T z) { return z * sigmoid_(z); }
// d silu / dz = s (1 + z (1 - s)), s = sigmoid(z).
// The gated vector update of one atom and channel: out[r] = v_r g1 + (M v)_r g2, with
// M the 3x3 mixing matrix. One expression for update.cu and update_backward.cu, which
// recomputes the block inputs v for the backward pass.
template <typename T>
__device__ __forceinline__ void vector_gate_(T v0, T v1, T v2, T g1, T g2, const T* mixing, T out[3]) {
#pragma unroll
    for (int r = 0; r < 3; r++) {
        T vr = r == 0 ? v0 : (r == 1 ? v1 : v2);
        T mv = mixing[3 * r] * v0 + mixing[3 * r + 1] * v1 + mixing[3 * r + 2] * v2;
        out[r] = vr * g1 + mv * g2;
    }
}

// dE/dv' of one channel from dE/dn (g_n: n = |v'|, formed again here with the forward's
// expression), dE/dv'' (gv) through the gates g1, g2 and the mixing (no vector update:
// gv, g1, g2 zero, only the n term). The one expression of vector_grad_ and the tiled
// backward's vectorised form (update_backward_tiled.cu, utb_vector_grad).
template <typename T>
__device__ __forceinline__ void vector_grad_channel_(const T v[3], const T gv[3], T g1, T g2, T g_n, const T* mixing,
                                                     T out[3]) {
    T nrm = sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
    T gn_over_n = nrm > T(0) ? g_n / nrm : T(0);
    for (int b = 0; b < 3; b++) {
        T mt = mixing[b] * gv[0] + mixing[3 + b] * gv[1] + mixing[6 + b] * gv[2];
        out[b] = g1 * gv[b] + g2 * mt + gn_over_n * v[b];
    }
}

// vector_grad_channel_ for atom i, channel c, read from and written to the per-atom rows:
// written over v' (grad_v_mid may be v_mid: each element is read, then written, by this
// thread). update_backward.cu and update_backward_cluster.cu.
template <typename T>
__device__ __forceinline__ void vector_grad_(size_t i, int c, T g_n, const T* v_mid, const T* grad_v_out, const T* y,
                                             const T* mixing, int vector_update, T* grad_v_mid) {
    T v[3], gv[3] = {T(0), T(0), T(0)}, out[3];
    for (int r = 0; r < 3; r++) v[r] = v_mid[i * H3 + r * H + c];
    T g1 = T(0), g2 = T(0);
    if (vector_update) {
        for (int r = 0; r < 3; r++) gv[r] = grad_v_out[i * H3 + r * H + c];
        g1 = y[i * 2 * H + c];
        g2 = y[i * 2 * H + H + c];
    }
    vector_grad_channel_(v, gv, g1, g2, g_n, mixing, out);
    for (int b = 0; b < 3; b++) grad_v_mid[i * H3 + b * H + c] = out[b];
}

// |v| of one channel (the update's input n; update_input_ and message_update_cluster.cu).
// The operations are spelled out because the compiler's own contraction of the sum
// depends on the context (it matched this order where the three come from memory).
__device__ __forceinline__ float norm3_(float vx, float vy, float vz) {
    return sqrtf(__fmaf_rn(vz, vz, __fmaf_rn(vx, vx, __fmul_rn(vy, vy))));
}
__device__ __forceinline__ double norm3_(double vx, double vy, double vz) {
    return sqrt(__fma_rn(vz, vz, __fma_rn(vx, vx, __dmul_rn(vy, vy))));
}

// The update MLP's input of atom i, channel c: s' and n = |v'| (zeros beyond n_atoms).
// One expression for update.cu and update_cluster.cu, whose results are bitwise equal.
template <typename T>
__device__ __forceinline__ void update_input_(int i, int n_atoms, int c, const T* s_mid, const T* v_mid, T& s,
                                              T& nrm) {
    s = T(0);
    nrm = T(0);
    if (i < n_atoms) {
        s = s_mid[(size_t)i * H + c];
        T vx = v_mid[(size_t)i * H3 + c], vy = v_mid[(size_t)i * H3 + H + c], vz = v_mid[(size_t)i * H3 + 2 * H + c];
        nrm = norm3_(vx, vy, vz);
    }
}

// The gates' part of g_y for one channel: g1 = sum_r g_v''[r] v'[r], g2 = sum_r g_v''[r]
// (M v')[r] (update_grad_y_ and the tiled backward's prologue).
template <typename T>
__device__ __forceinline__ void gate_grads_channel_(const T v[3], const T gv[3], const T* mixing, T& g1, T& g2) {
    g1 = g2 = T(0);
    for (int r = 0; r < 3; r++) {
        T mv = mixing[3 * r] * v[0] + mixing[3 * r + 1] * v[1] + mixing[3 * r + 2] * v[2];
        g1 += gv[r] * v[r];
        g2 += gv[r] * mv;
    }
}

// g_y = [g_s'', sum_r g_v''[r] v'[r], sum_r g_v''[r] (M v')[r]] of atom i, channel c, the
// gradient of the update MLP's output (zeros beyond n_atoms; g1 = g2 = 0 without a vector
// update). update_backward.cu and update_backward_cluster.cu.
template <typename T>
__device__ __forceinline__ void update_grad_y_(int i, int n_atoms, int c, int vector_update, const T* grad_s_out,
                                               const T* grad_v_out, const T* v_mid, const T* mixing, T& g0, T& g1,
                                               T& g2) {
    g0 = g1 = g2 = T(0);
    if (i >= n_atoms) return;
    g0 = grad_s_out[(size_t)i * H + c];
    if (!vector_update) return;
    T v[3], gv[3];
    for (int r = 0; r < 3; r++) {
        v[r] = v_mid[(size_t)i * H3 + r * H + c];
        gv[r] = grad_v_out[(size_t)i * H3 + r * H + c];
    }
    gate_grads_channel_(v, gv, mixing, g1, g2);
}

// The block's input v of atom i, channel c, which update_backward writes for the edge
// backward: 0 (input_v = 1, block 0) or the previous block's v' g1 + (M v') g2 (input_v = 2,
// vector_gate_ on its saved gates). update_backward.cu and update_backward_cluster.cu.
template <typename T>
__device__ __forceinline__ void input_v_(size_t i, int c, int input_v, const T* prev_v_mid, const T* prev_y,
                                         const T* prev_mixing, T* v_in) {
    T out[3] = {T(0), T(0), T(0)};
    if (input_v == 2) {
        const T* pv = prev_v_mid + i * H3;
        vector_gate_(pv[c], pv[H + c], pv[2 * H + c], prev_y[i * 2 * H + c], prev_y[i * 2 * H + H + c], prev_mixing,
                     out);
    }
    for (int r = 0; r < 3; r++) v_in[i * H3 + r * H + c] = out[r];
}

template <typename T> __device__ __forceinline__ T dsilu_(T z) {
    T s = sigmoid_(z);
    return s * (T(1) + z * (T(1) - s));
}

// The filter phi(d) of one block as a piecewise cubic (Hermite interpolant of the
// exact values and derivatives at equally spaced nodes on [0, rc]). Each interval k
// stores, per channel q of 3H, the local polynomial phi = c0 + c1 t + c2 t^2 + c3 t^3
// in t = d / h - k (coefficients formed in f64 on the host): the derivative
// (c1 + 2 c2 t + 3 c3 t^2) / h then needs no difference of nearby values, which in
// f32 would cancel badly. One 16-byte (f32) load per channel and edge.
template <typename T> struct alignas(4 * sizeof(T)) Cubic { T c0, c1, c2, c3; };

// The interval k and the position t in it are computed per pair in f64 by
// pair_geometry (in f32, d / h alone would carry an error of 2e-4 in t); k < 0 marks
// a candidate pair beyond rc.
template <typename T> struct Spline {
    int k;     // interval
    T t;       // position inside it, in [0, 1]
    T inv_h;
    __device__ __forceinline__ Spline(int k_, T t_, T inv_h_) : k(k_), t(t_), inv_h(inv_h_) {}
    __device__ __forceinline__ T value(const Cubic<T>* table, int q) const {
        Cubic<T> c = table[(size_t)k * H3 + q];
        return c.c0 + t * (c.c1 + t * (c.c2 + t * c.c3));
    }
    __device__ __forceinline__ void value_and_derivative(const Cubic<T>* table, int q, T& f, T& df) const {
        Cubic<T> c = table[(size_t)k * H3 + q];
        f = c.c0 + t * (c.c1 + t * (c.c2 + t * c.c3));
        df = (c.c1 + t * (T(2) * c.c2 + t * (T(3) * c.c3))) * inv_h;
    }
};

// Mixed precision: the same table with f16 coefficients (8 bytes per channel and
// interval instead of 16, so the edge kernels, bound by reading the table from L2,
// move half the bytes). The coefficients are in physical units, e_n = c_n / h^n, and
// the polynomial runs in x = t h (Angstrom): scaled so, c2 and c3 (~h^2, h^3 smaller
// than c0) stay normal f16 numbers instead of underflowing. Arithmetic is f32.
struct alignas(8) Cubic16 { unsigned short e0, e1, e2, e3; };

__device__ __forceinline__ float f16_to_f32(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

struct SplineHalf {
    int k;
    float x;  // offset from the interval's left node, in Angstrom
    __device__ __forceinline__ SplineHalf(int k_, float t, float inv_h) : k(k_), x(t / inv_h) {}
    __device__ __forceinline__ float value(const Cubic16* table, int q) const {
        Cubic16 c = table[(size_t)k * H3 + q];
        return f16_to_f32(c.e0) + x * (f16_to_f32(c.e1) + x * (f16_to_f32(c.e2) + x * f16_to_f32(c.e3)));
    }
    __device__ __forceinline__ void value_and_derivative(const Cubic16* table, int q, float& f, float& df) const {
        Cubic16 c = table[(size_t)k * H3 + q];
        float e1 = f16_to_f32(c.e1), e2 = f16_to_f32(c.e2), e3 = f16_to_f32(c.e3);
        f = f16_to_f32(c.e0) + x * (e1 + x * (e2 + x * e3));
        df = e1 + x * (2.0f * e2 + x * (3.0f * e3));
    }
};

// The spline type that reads a table of entry type C with arithmetic in T.
template <typename T, typename C> struct SplineFor;
template <typename T> struct SplineFor<T, Cubic<T>> { typedef Spline<T> type; };
template <> struct SplineFor<float, Cubic16> { typedef SplineHalf type; };

// Order-preserving compaction of one flag per thread over a block of NT threads:
// returns this thread's slot among the set flags and (in *total) how many are set.
// Ends with a barrier; `counts` is scratch shared memory of (NT + 31) / 32 ints.
template <int NT> __device__ __forceinline__ int block_compact(bool flag, int* counts, int* total) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    // A block of NT threads, not necessarily whole warps (the cluster kernels at H = 32
    // have 48): the last warp's ballot names only the lanes it has.
    unsigned ballot = __ballot_sync(NT % 32 == 0 ? 0xffffffffu : __activemask(), flag);
    if (lane == 0) counts[warp] = __popc(ballot);
    __syncthreads();
    int offset = 0, sum = 0;
    for (int w = 0; w < (NT + 31) / 32; w++) {
        if (w < warp) offset += counts[w];
        sum += counts[w];
    }
    *total = sum;
    return offset + __popc(ballot & ((1u << lane) - 1u));
}

// Sum over a warp in a fixed butterfly order (deterministic).
template <typename T> __device__ __forceinline__ T warp_sum(T x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

// Row q (of 3H) of y = U2 silu(z) + c2 for the TA atoms of a tile (hid = silu(z),
// [input][atom]): this thread slice's partial sum over its share of the inputs, the bias
// included when S == 1 (S > 1: the caller adds the bias and the slices' sums in slice
// order). update.cu forms y with it and update_backward.cu recomputes gates with it, so
// the recomputed gates equal the forward pass's bitwise.
template <typename T, int TA, int S>
__device__ __forceinline__ void u2_row_(int q, int c, int slice, const T* w2t, const T* b2, const T (*hid)[TA],
                                        T acc[TA]) {
    for (int a = 0; a < TA; a++) acc[a] = S == 1 ? b2[q * H + c] : T(0);
    const int K2 = H / S;
#pragma unroll(TA <= 2 ? 16 : 4)
    for (int k = slice * K2; k < (slice + 1) * K2; k++) {
        T w = w2t[k * H3 + q * H + c];
#pragma unroll
        for (int a = 0; a < TA; a++) acc[a] += w * hid[k][a];
    }
}

// Thread slices of the f32 update kernels of large systems (the host passes its value).
#ifndef MLP_SLICES
#define MLP_SLICES 1
#endif

// Thread slices that split the weight loops of the small-system MLP kernels.
#define SMALL_SLICES 4

// Atoms per block of the per-atom MLP kernels: f64 halves it to keep shared memory small.
template <typename T> struct Tile { enum { value = sizeof(T) == 8 ? (TILE / 2 > 0 ? TILE / 2 : 1) : TILE }; };

// Filter polynomials in shared memory (f32 engine, systems large enough to fill the GPU;
// host side: spline.rs, build_poly_table). On interval k of [0, rc] (h = rc / intervals)
// phi(d) of channel c and part (s, v1, v2) is a polynomial in t = 2 (d / h - k) - 1.
// A CTA serves one group of 32 channels (blockIdx.y) and copies that group's slice,
// [interval][n][part][lane], into shared memory once; it then loops over many atoms
// (persistent CTAs). A warp handles one atom, lane = channel of the group,
// so coefficient reads are conflict-free and the table is never read from L2 per edge.
#define POLY_GROUP 32
#define POLY_VALUE_DEGREE 5
#define POLY_GRAD_DEGREE 7
#define FULL_MASK 0xffffffffu

// The dynamic shared memory of the polynomial kernels (table slice, then edge slots).
extern __shared__ float4 poly_shared[];

__device__ __forceinline__ void poly_load(float* sh, const float* group_table, int floats) {
    const float4* src = reinterpret_cast<const float4*>(group_table);
    float4* dst = reinterpret_cast<float4*>(sh);
    for (int x = threadIdx.x; x < floats / 4; x += blockDim.x) dst[x] = src[x];
    __syncthreads();
}

// Interval and t of a distance, in f64 (d in [0, rc]; d = rc lands at t = 1 of the last).
__device__ __forceinline__ void poly_locate(double d, double inv_h, int intervals, int& k, float& t) {
    double x = d * inv_h;
    int kk = min((int)x, intervals - 1);
    k = kk;
    t = (float)(2.0 * (x - (double)kk) - 1.0);
}

// The atoms of a persistent CTA of the polynomial kernels: a contiguous share of the
// system (gridDim.x shares; neighbouring atoms share neighbours, whose rows then hit in
// L1), handed to the CTA's warps one at a time from a shared-memory counter, so a warp
// that finishes early takes the next atom instead of idling behind a last round of
// atoms. Which warp sums an atom does not change its sums: deterministic.
// The shares are balanced by work, not by atom count (the kernel ends with its slowest
// CTA): by candidate edges plus AQ_ATOM_WEIGHT per atom (the atom's own rows and
// stores) for the kernels that walk every edge (atom_queue_init_edges), by pairs for
// pair_backward, which walks only the forward edges (atom_queue_init_pairs): in a
// spatially sorted system an atom early in the order has most of its neighbours after
// it, so equal atom counts gave that kernel's CTAs 0.53-1.29x the mean work (ncu at
// water10k, benches/gpu_results.md, session 15).
// POLY_BALANCE=0 (MLFF_CUDA_DEFINES): equal atom counts, for comparison.
// POLY_QUEUE=0: a fixed stride over the grid, for comparison.
#ifndef POLY_QUEUE
#define POLY_QUEUE 1
#endif
#ifndef POLY_BALANCE
#define POLY_BALANCE 1
#endif
#define AQ_ATOM_WEIGHT 2
__shared__ int poly_next_atom, poly_end_atom;
// The first atom of share `part` of `parts` by W(a) = offsets[a] - offsets[0] +
// AQ_ATOM_WEIGHT a (non-decreasing): the least a with W(a) parts >= part W(n). Called by a
// whole warp: a 32-ary search, ~log32(n) rounds of one load per lane.
__device__ __forceinline__ int balanced_share_start(int n_atoms, const u32* offsets, int part, int parts) {
    if (part <= 0) return 0;
    if (part >= parts) return n_atoms;
    long long o0 = offsets[0];
    long long target = ((long long)offsets[n_atoms] - o0 + (long long)AQ_ATOM_WEIGHT * n_atoms) * part;
    int lane = threadIdx.x & 31, lo = 0, hi = n_atoms;  // the answer is in [lo, hi]; W(hi) qualifies
    while (lo < hi) {
        int a = lo + (int)((long long)lane * (hi - lo) / 31);  // a = lo on lane 0, hi on lane 31
        bool ok = ((long long)offsets[a] - o0 + (long long)AQ_ATOM_WEIGHT * a) * parts >= target;
        int first = __ffs(__ballot_sync(FULL_MASK, ok)) - 1;  // lane 31 qualifies
        int below = __shfl_sync(FULL_MASK, a, first > 0 ? first - 1 : 0);
        hi = __shfl_sync(FULL_MASK, a, first);
        lo = first > 0 ? below + 1 : hi;
    }
    return lo;
}
// The first atom of share `part` of `parts` by atom count (POLY_BALANCE=0).
__device__ __forceinline__ int equal_share_start(int n_atoms, int part, int parts) {
    return (int)((long long)n_atoms * part / parts);
}
// Thread 0 (or warps 0 and 1) set the counter; a barrier must follow before the first
// atom_queue_take (poly_load's). Every thread of the CTA calls it. With `step` > 1 (the
// message kernels' merged walk: groups of POLY_MERGE atoms) every share starts at a
// multiple of `step`, and atom_queue_take hands out the first atom of each group.
__device__ __forceinline__ void atom_queue_init_edges(int n_atoms, const u32* edge_offsets, int step = 1) {
    if (!POLY_QUEUE) return;
    // Warp 0 finds the share's start, warp 1 its end (warp 0 both in a CTA of one warp).
    int warps = blockDim.x >> 5;
    for (int which = threadIdx.x >> 5; which < 2; which += warps) {
        int part = blockIdx.x + which;
        int a = POLY_BALANCE ? balanced_share_start(n_atoms, edge_offsets, part, gridDim.x)
                             : equal_share_start(n_atoms, part, gridDim.x);
        a = min(n_atoms, (a + step - 1) / step * step);
        if ((threadIdx.x & 31) == 0) {
            if (which == 0)
                poly_next_atom = a;
            else
                poly_end_atom = a;
        }
    }
}
// pair_backward's shares: equal numbers of pairs. Pair p's forward edge is in the CSR of
// pair_i[p], and pair_i is non-decreasing (neighbors::build, the GPU list, batches by
// atom offset), so share k starts at the first atom of pair floor(k n_pairs / parts).
__device__ __forceinline__ int pair_share_start(int n_atoms, int n_pairs, const u32* pair_i, int part, int parts) {
    if (!POLY_BALANCE) return equal_share_start(n_atoms, part, parts);
    if (part <= 0) return 0;
    if (part >= parts) return n_atoms;
    return (int)pair_i[(long long)n_pairs * part / parts];
}
__device__ __forceinline__ void atom_queue_init_pairs(int n_atoms, int n_pairs, const u32* pair_i) {
    if (!POLY_QUEUE || threadIdx.x != 0) return;
    poly_next_atom = pair_share_start(n_atoms, n_pairs, pair_i, blockIdx.x, gridDim.x);
    poly_end_atom = pair_share_start(n_atoms, n_pairs, pair_i, blockIdx.x + 1, gridDim.x);
}
// The warp's next atom (or group of `step` atoms) after `previous` (-1: its first), or -1
// when none is left.
__device__ __forceinline__ int atom_queue_take(int n_atoms, int previous, int step = 1) {
    int j;
    if (POLY_QUEUE) {
        if ((threadIdx.x & 31) == 0) {
            j = atomicAdd(&poly_next_atom, step);
            if (j >= poly_end_atom) j = -1;
        }
        return __shfl_sync(FULL_MASK, j, 0);
    }
    int warps = blockDim.x >> 5;
    j = previous < 0 ? (blockIdx.x * warps + (threadIdx.x >> 5)) * step : previous + gridDim.x * warps * step;
    return j < n_atoms ? j : -1;
}

// The message kernels' merged walk (session 26): a warp takes POLY_MERGE consecutive
// atoms at once and walks their edges merged by distance (edge_order_records.cu writes
// the records in that order, each tagged with its atom's slot in the group). Consecutive
// edges then share the interval of the filter polynomials more often (water10k, 64
// intervals: 0.51 coefficient reloads per edge alone, 0.32 with 2 atoms, 0.18 with 4),
// and each atom's edges keep their own order, so each atom's sums are the same numbers
// bitwise. The host passes the count (kernels.rs, poly_merge: 2 unless MLFF_CUDA_MERGE).
#ifndef POLY_MERGE
#define POLY_MERGE 2
#endif
// The atom's slot in its group: bits 13-15 of the value table's interval in a merged
// record (intervals < 2^13).
#define MERGED_SLOT_SHIFT 13
#if POLY_MERGE < 1 || POLY_MERGE > 8
#error "POLY_MERGE: 1 to 8 atoms (three bits of the record)"
#endif
#define MERGED_INTERVAL_MASK ((1u << MERGED_SLOT_SHIFT) - 1u)

// Coefficients of one interval for the three parts (s, v1, v2) of a lane's channel,
// held in registers. An atom's edges are staged in order of distance, so consecutive
// edges often fall into the same interval (two to three per interval beyond ~3 A in
// water): the kernels reload only when the (warp-uniform) interval changes, which
// saves shared-memory wavefronts, the limit of the polynomial kernels. The same
// numbers as reading per edge, so the same results bitwise.
// POLY_REUSE=0 (MLFF_CUDA_DEFINES) reads per edge, for comparison.
// Threads per CTA of the polynomial kernels (the host passes its value).
#ifndef POLY_THREADS
#define POLY_THREADS 896
#endif
// message_poly and pair_backward (fewer registers: kernels.rs, message_threads).
#ifndef POLY_MESSAGE_THREADS
#define POLY_MESSAGE_THREADS 896
#endif
// Edges in flight per warp in the message kernels' edge loop (unroll factor; the pair-
// gradient kernels take edges in batches of EDGE_SUM_BATCH instead).
#ifndef POLY_UNROLL
#define POLY_UNROLL 4
#endif
#ifndef POLY_REUSE
#define POLY_REUSE 1
#endif
// The tables' layout (spline.rs, PolyShape::lane_floats; the host passes both values):
// each lane's 3 (D + 1) coefficients of an interval contiguous and padded to this many
// floats, [interval][lane][part][n], read with 16-byte loads. 0 = not passed (the
// polynomial kernels then fail to compile).
#ifndef POLY_GRAD_LANE_FLOATS
#define POLY_GRAD_LANE_FLOATS 0
#endif
#ifndef POLY_VALUE_LANE_FLOATS
#define POLY_VALUE_LANE_FLOATS 0
#endif
// Floats of one group's slice of a table of `intervals` intervals (PolyShape::group_floats).
template <int LF> __device__ __forceinline__ int poly_group_floats(int intervals) {
    return intervals * POLY_GROUP * LF;
}
// A 16-byte load from a shared-memory window address (32 bits, `ld.shared`). The edge
// loops address the table this way from a per-lane base formed once: from the generic
// pointer, under the register caps of these kernels, the compiler re-formed the shared
// window's base (S2R of the CTA id and 5-8 more instructions) for every coefficient reload
// of message_poly, whose edge loop is bound by issue and L1 wavefronts (SASS: session 18).
__device__ __forceinline__ float4 shared_load16_(u32 address) {
    float4 x;
#ifdef __CUDA_ARCH__
    asm("ld.shared.v4.f32 {%0, %1, %2, %3}, [%4];" : "=f"(x.x), "=f"(x.y), "=f"(x.z), "=f"(x.w) : "r"(address));
#else
    x.x = x.y = x.z = x.w = 0.0f;  // device only (the CPU shim compiles this file but never runs it)
    (void)address;
#endif
    return x;
}
__device__ __forceinline__ u32 shared_address_(const void* p) {
#ifdef __CUDA_ARCH__
    return (u32)__cvta_generic_to_shared(p);
#else
    (void)p;
    return 0u;
#endif
}

// LF: the table's floats per lane and interval. `sh`: the table slice in shared memory,
// [interval][lane][LF].
template <int D, int LF> struct PolyCoefficients {
    static_assert(LF % 4 == 0 && LF >= 3 * (D + 1), "the host passes POLY_*_LANE_FLOATS (spline.rs)");
    float c[3][D + 1];
    int k;
    u32 lane_base;  // shared-window address of this lane's coefficients of interval 0
    __device__ __forceinline__ PolyCoefficients(const float* sh, int lane)
        : k(-1), lane_base(shared_address_(sh + lane * LF)) {}
    // PARTS: a bit mask of the parts (1 s, 2 v1, 4 v2) to load; the others are not read
    // (block 0, whose v is zero, needs no v1; the state gradient no v2).
    template <int PARTS = 7> __device__ __forceinline__ void load(int k_new) {
        if (POLY_REUSE && k_new == k) return;
        k = k_new;
        // The 16-byte words that hold the loaded parts' coefficients (compile-time
        // conditions: the others are not read), then the coefficients from them.
        u32 base = lane_base + (u32)k_new * (u32)(POLY_GROUP * LF * 4);
        float words[LF];
#pragma unroll
        for (int q = 0; q < LF / 4; q++) {
            bool needed = false;
#pragma unroll
            for (int part = 0; part < 3; part++)
                needed |= (PARTS & (1 << part)) && 4 * q < (part + 1) * (D + 1) && 4 * q + 4 > part * (D + 1);
            if (needed) {
                float4 x = shared_load16_(base + 16u * q);
                words[4 * q] = x.x;
                words[4 * q + 1] = x.y;
                words[4 * q + 2] = x.z;
                words[4 * q + 3] = x.w;
            }
        }
#pragma unroll
        for (int part = 0; part < 3; part++) {
            if (!(PARTS & (1 << part))) continue;
#pragma unroll
            for (int n = 0; n <= D; n++) c[part][n] = words[part * (D + 1) + n];
        }
    }
    __device__ __forceinline__ float value(int part, float t) const {
        float f = c[part][D];
#pragma unroll
        for (int n = D - 1; n >= 0; n--) f = fmaf(f, t, c[part][n]);
        return f;
    }
    // Horner for p and p' together. The derivative's first step, fmaf(0, t, c_D), is
    // c_D itself: taken as such, not issued (one FFMA per part and edge less).
    __device__ __forceinline__ void value_and_slope(int part, float t, float& f, float& df) const {
        df = c[part][D];
        f = fmaf(df, t, c[part][D - 1]);
#pragma unroll
        for (int n = D - 2; n >= 0; n--) {
            df = fmaf(df, t, f);
            f = fmaf(f, t, c[part][n]);
        }
    }
};

// A warp's valid edges of a chunk, compacted in order into its shared-memory slots
// (32 per warp): geometry (t, unit vector as the kernel needs it) and indices (source
// atom, interval, pair word, partial slot; the first two adjacent so that the message
// kernels, which need only them, read them with one 8-byte load). The edge loop then
// reads each record with two broadcast loads instead of shuffling six values from the
// lane that loaded it.
struct EdgeSlots {
    float4* geometry;
    int4* index;
};

// Returns how many of the warp's lanes hold a valid edge; their records are in slots
// 0..count-1 in lane order. Ends with __syncwarp.
__device__ __forceinline__ int warp_stage(bool valid, EdgeSlots slots, float4 geometry, int4 index) {
    int lane = threadIdx.x & 31;
    unsigned mask = __ballot_sync(FULL_MASK, valid);
    if (valid) {
        int r = __popc(mask & ((1u << lane) - 1u));
        slots.geometry[r] = geometry;
        slots.index[r] = index;
    }
    __syncwarp();
    return __popc(mask);
}

__device__ __forceinline__ EdgeSlots warp_slots(float* scratch) {
    int warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    EdgeSlots slots;
    slots.geometry = reinterpret_cast<float4*>(scratch) + 32 * warp;
    slots.index = reinterpret_cast<int4*>(reinterpret_cast<float4*>(scratch) + 32 * warps) + 32 * warp;
    return slots;
}

// Loads the record of CSR slot `q` (if q < end) and stages the chunk's valid edges:
// geometry = (t, unit vector of the edge itself, or of its reverse with `reverse`),
// index = (source atom, interval, pair word, partial slot). Candidates beyond rc
// (knot < 0) are dropped here, and with `forward_only` the reverse edges (each pair is
// then staged once, in the CSR that holds its forward edge). Returns the number of valid
// edges (slots 0..count-1, in order). With partial_pairs >= 0 (the pair-gradient
// kernels), the last field is the first float of the edge's partial-gradient slot,
// ((blockIdx.y partial_pairs + p) directions + direction) 4, direction 1 for the pair's
// forward edge staged as its reverse when directions = 2 (else 0; the host keeps it
// below 2^32); with `direct` (channel groups in sequence) it is 4 p, the pair's grad_du
// slot, with EDGE_REVERSE set for direction 1. Formed here once per edge instead of in
// the edge loop.
// The staging record of a masked slot (edge_order_records.cu): no interval.
#define EDGE_RECORD_MASKED 0xffffffffu

// The partial-gradient slot of an edge (see warp_stage_edges), formed at staging.
__device__ __forceinline__ u32 edge_partial_slot(u32 w, u32 p, int partial_pairs, int directions, bool direct) {
    if (partial_pairs < 0) return 0;
    u32 direction = (directions == 2 && !(w & EDGE_REVERSE)) ? 1u : 0u;  // staged as the reverse
    return direct ? (4u * p) | (direction ? EDGE_REVERSE : 0u)
                  : ((blockIdx.y * (u32)partial_pairs + p) * (u32)directions + direction) * 4u;
}

// What CSR slot q's edge needs for staging, gathered from the arrays indexed by edge and
// by pair: edge_order_records.cu stores it once per call, warp_stage_edges reads it from there
// or (without records) gathers it itself. valid: within rc (knot >= 0) and, with
// `forward_only`, a forward edge; the other fields are loaded only for a valid edge.
struct EdgeGather {
    u32 source, w;
    bool valid;
    double distance;
    float unit[3];
};
__device__ __forceinline__ EdgeGather edge_gather_(u32 q, const u32* edge_perm, const u32* edge_source,
                                                   const u32* edge_pair, const int* knot, const double* distance,
                                                   const float* unit, bool forward_only) {
    EdgeGather g;
    u32 e = edge_perm[q];  // summation order: see edge_order.cu
    g.w = edge_pair[e];
    u32 p = g.w & EDGE_PAIR_MASK;
    g.valid = knot[p] >= 0 && !(forward_only && (g.w & EDGE_REVERSE));
    g.source = 0;
    g.distance = 0.0;
    g.unit[0] = g.unit[1] = g.unit[2] = 0.0f;
    if (g.valid) {
        g.source = edge_source[e];
        g.distance = distance[p];
        for (int a = 0; a < 3; a++) g.unit[a] = unit[3 * p + a];
    }
    return g;
}

// With `records` (edge_order_records.cu; may be null), the slot's record is read instead of
// gathered: the same values (`grad` picks the grad table's interval and t, else the
// value table's).
__device__ __forceinline__ int warp_stage_edges(u32 q, u32 end, bool reverse, const u32* edge_perm, const u32* edge_source,
                                                const u32* edge_pair, const int* knot, const double* distance,
                                                const float* unit, double inv_h, int intervals, EdgeSlots slots,
                                                bool forward_only = false, int partial_pairs = -1, int directions = 2,
                                                bool direct = false, const uint4* records = nullptr,
                                                bool grad = false) {
    bool valid = false;
    u32 source = 0, w = 0;
    int k = 0;
    float t = 0.0f, u[3] = {0.0f, 0.0f, 0.0f};
    if (q < end && records) {
        uint4 word0 = records[2 * (size_t)q];
        w = word0.y;
        valid = word0.z != EDGE_RECORD_MASKED && !(forward_only && (w & EDGE_REVERSE));
        if (valid) {
            uint4 word1 = records[2 * (size_t)q + 1];
            source = word0.x;
            k = grad ? (int)(word0.z >> 16) : (int)(word0.z & 0xffffu);
            t = __uint_as_float(grad ? word0.w : word1.x);
            u[0] = __uint_as_float(word1.y);
            u[1] = __uint_as_float(word1.z);
            u[2] = __uint_as_float(word1.w);
        }
    } else if (q < end) {
        EdgeGather g = edge_gather_(q, edge_perm, edge_source, edge_pair, knot, distance, unit, forward_only);
        valid = g.valid;
        w = g.w;
        if (valid) {
            source = g.source;
            poly_locate(g.distance, inv_h, intervals, k, t);
            for (int a = 0; a < 3; a++) u[a] = g.unit[a];
        }
    }
    float4 geometry = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    int4 index = make_int4(0, 0, 0, 0);
    if (valid) {
        float sign = ((w & EDGE_REVERSE) != 0) != reverse ? -1.0f : 1.0f;
        geometry = make_float4(t, sign * u[0], sign * u[1], sign * u[2]);
        u32 slot = edge_partial_slot(w, w & EDGE_PAIR_MASK, partial_pairs, directions, direct);
        index = make_int4((int)source, k, (int)w, (int)slot);
    }
    return warp_stage(valid, slots, geometry, index);
}

// sign_x f for the pair frame of an edge staged with pair word w: sign_x = +1 where w has
// EDGE_REVERSE, else -1. A flip of f's sign bit (exactly the product by -1) in one
// instruction instead of a select, a constant and a product.
__device__ __forceinline__ float pair_frame_sign_(u32 w, float f) {
    return __uint_as_float(__float_as_uint(f) ^ (~w & EDGE_REVERSE));
}

// Edges whose pair-gradient terms (4 each) are summed over the warp at once.
#define EDGE_SUM_BATCH 4
// The warp sums of EDGE_SUM_BATCH x 4 values at once, as a butterfly that halves the
// values each lane holds at every level (levels 16, 8, 4, 2, then 1): 16 shuffles for 4
// edges instead of the 24 of four sums per edge (6 shuffles each, until session 18, whose
// experiment build measured those sums at ~18% of edge_backward at water10k). Lane L ends
// with the sum of v[(L >> 1) & 15]. Each sum is formed by the same tree as before (levels
// 16 to 1, at each level own + partner, and addition commutes): the same numbers bitwise.
// Deterministic.
// One level of that butterfly: 2N values per lane in, N out; lanes whose bit 2N is set
// keep the upper half (in[N..2N)) and add the partner's (lane ^ 2N) copy of it, the others
// the lower half.
template <int N> __device__ __forceinline__ void butterfly_level_(int lane, const float* in, float* out) {
    bool hi = lane & (2 * N);
#pragma unroll
    for (int q = 0; q < N; q++) {
        float keep = hi ? in[q + N] : in[q], send = hi ? in[q] : in[q + N];
        out[q] = keep + __shfl_xor_sync(FULL_MASK, send, 2 * N);
    }
}
__device__ __forceinline__ float warp_sum_batch_(int lane, const float v[EDGE_SUM_BATCH * 4]) {
    static_assert(EDGE_SUM_BATCH == 4, "the levels below are written for 16 values");
    float w8[8], w4[4], w2[2], x;
    butterfly_level_<8>(lane, v, w8);
    butterfly_level_<4>(lane, w8, w4);
    butterfly_level_<2>(lane, w4, w2);
    butterfly_level_<1>(lane, w2, &x);
    return x + __shfl_xor_sync(FULL_MASK, x, 1);
}

// The pair-gradient walk of a chunk's staged edges 0..count-1 (edge_backward.cu,
// pair_backward.cu) in batches of EDGE_SUM_BATCH: terms_of(r, t) writes edge r's four
// terms (dE/dd, dE/du) into t[0..3]; the batch's terms are summed over the warp at once
// (warp_sum_batch_), and store(r, m, x) runs on the one lane that stores term m of edge r,
// x. Full batches run a copy of the body without per-edge tests; the chunk's last batch
// takes the remainder (its missing edges contribute zero terms and are not stored).
template <typename TermsOf, typename Store>
__device__ __forceinline__ void edge_term_batches_(int lane, int count, TermsOf terms_of, Store store) {
    auto batch = [&](int r0, int valid) {
        float terms[EDGE_SUM_BATCH * 4];
#pragma unroll
        for (int e = 0; e < EDGE_SUM_BATCH; e++) {
            terms[4 * e] = terms[4 * e + 1] = terms[4 * e + 2] = terms[4 * e + 3] = 0.0f;
            if (e < valid) terms_of(r0 + e, &terms[4 * e]);
        }
        float x = warp_sum_batch_(lane, terms);
        // Lane 2 (4 e + m) holds term m of edge r0 + e.
        int e = (lane >> 3) & (EDGE_SUM_BATCH - 1), m = (lane >> 1) & 3;
        if ((lane & 1) == 0 && e < valid) store(r0 + e, m, x);
    };
    int r0 = 0;
    for (; r0 + EDGE_SUM_BATCH <= count; r0 += EDGE_SUM_BATCH) batch(r0, EDGE_SUM_BATCH);
    if (r0 < count) batch(r0, count - r0);
}

// Programmatic dependent launch (sm_90). In the CUDA graph of a small system every
// kernel-to-kernel edge is programmatic (engine.rs): a kernel is launched while its
// predecessor still runs, loads what does not depend on it (weights), and waits here
// before it touches any buffer an earlier kernel writes or reads; then it lets its own
// successor launch. Every kernel calls this before its first such access and before any
// return, so that a kernel completes only after its predecessor has: completion stays
// ordered along the chain. A no-op without a programmatic edge and before sm_90.
__device__ __forceinline__ void wait_for_previous_kernel_() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Thread-block clusters (sm_90): the small-system update kernels split each block's
// weights over the CLUSTER_BLOCKS blocks of a cluster (update_cluster.cu,
// update_backward_cluster.cu), which exchange hidden activations through distributed
// shared memory. Compiled to nothing before sm_90 (the host launches them only there).
#define CLUSTER_BLOCKS 8
#define CLUSTER_CHANNELS (H / CLUSTER_BLOCKS)  // channels per block of a cluster
#if __CUDA_ARCH__ >= 900
#define CLUSTER_DIMS __cluster_dims__(CLUSTER_BLOCKS, 1, 1)
__device__ __forceinline__ unsigned cluster_rank_() {
    unsigned r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
    return r;
}
// Every thread of every block of the cluster arrives (release: its shared-memory writes
// become visible to the cluster) / waits (acquire) for all of them.
__device__ __forceinline__ void cluster_arrive_() { asm volatile("barrier.cluster.arrive.release.aligned;" ::: "memory"); }
__device__ __forceinline__ void cluster_wait_() { asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory"); }
// The value at `local` (this block's shared-memory address) in block `rank` of the cluster.
__device__ __forceinline__ float cluster_load_(const float* local, unsigned rank) {
    unsigned addr = (unsigned)__cvta_generic_to_shared(local), remote;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(addr), "r"(rank));
    float v;
    asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(remote) : "memory");
    return v;
}
// The cluster's exchange of one hidden layer: each block has written its channels of the
// tile into `own` ([CLUSTER_CHANNELS][TA]); every block gathers all H channels into `all`
// ([H][TA]). The first barrier makes every `own` visible; the arrival after the reads
// lets the other blocks leave, and the caller waits for it (cluster_wait_) before the
// block exits, so no block's shared memory goes while another still reads it. Every
// thread of the block (NT, a compile-time count, so the loop unrolls) calls it; a
// __syncthreads must follow before `all` is read.
template <int TA, int NT>
__device__ __forceinline__ void cluster_gather_(const float (*own)[TA], float (*all)[TA]) {
    cluster_arrive_();
    cluster_wait_();
    for (int idx = threadIdx.x; idx < H * TA; idx += NT) {
        int k = idx / TA, a = idx % TA;
        all[k][a] = cluster_load_(&own[k % CLUSTER_CHANNELS][a], k / CLUSTER_CHANNELS);
    }
    cluster_arrive_();
}
#else
#define CLUSTER_DIMS
#endif
