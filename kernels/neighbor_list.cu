// Neighbour list on the GPU, with exactly the semantics and the canonical order of
// the host's `neighbors::build`: the host bins the atoms (O(N), its own code path
// mirrored in gpu_neighbors.rs); here one thread per atom i searches the same bins,
// keeps (j >= i, shift) with d <= cutoff decided by the host's f64 formulas (explicit
// _rn intrinsics, no FMA), sorts its pairs by (j, shift), and the CSR of directed
// edges is laid out as the host does (per destination, in pair order). No float
// atomics; integer atomics only count, and every list they fill is sorted after.

struct BinGrid {
    int n_bins[3];
    int reach[3];
    int pbc[3];
};

// Calls f(j, shift, offset) for every (j >= i, shift) within cutoff, in the host's order.
template <typename F>
__device__ void for_each_neighbor(int i, const double* pos, const double* cell, BinGrid g, const int* atom_bin,
                                  const int* image, const u32* bin_start, const u32* bin_atoms, double cutoff,
                                  int* coincident, F f) {
    int b[3] = {atom_bin[3 * i], atom_bin[3 * i + 1], atom_bin[3 * i + 2]};
    int lo[3], hi[3];
    for (int k = 0; k < 3; k++) {
        if (g.pbc[k]) {
            lo[k] = -g.reach[k];
            hi[k] = g.reach[k];
        } else {
            lo[k] = -min(b[k], 1);
            hi[k] = min(g.n_bins[k] - 1 - b[k], 1);
        }
    }
    double ri[3] = {pos[3 * i], pos[3 * i + 1], pos[3 * i + 2]};
    for (int o0 = lo[0]; o0 <= hi[0]; o0++)
        for (int o1 = lo[1]; o1 <= hi[1]; o1++)
            for (int o2 = lo[2]; o2 <= hi[2]; o2++) {
                int offs[3] = {o0, o1, o2}, target[3], wrap[3];
                for (int k = 0; k < 3; k++) {
                    int t = b[k] + offs[k], nb = g.n_bins[k];
                    int q = t / nb, r = t % nb;  // Euclidean division
                    if (r < 0) {
                        r += nb;
                        q -= 1;
                    }
                    target[k] = r;
                    wrap[k] = q;
                }
                int fb = (target[0] * g.n_bins[1] + target[1]) * g.n_bins[2] + target[2];
                for (u32 slot = bin_start[fb]; slot < bin_start[fb + 1]; slot++) {
                    int j = (int)bin_atoms[slot];
                    if (j < i) continue;
                    int shift[3];
                    for (int k = 0; k < 3; k++) shift[k] = wrap[k] - image[3 * j + k] + image[3 * i + k];
                    if (j == i) {
                        int first = shift[0] != 0 ? shift[0] : (shift[1] != 0 ? shift[1] : shift[2]);
                        if (!(first > 0)) continue;
                    }
                    double off[3], v[3];
                    pair_offset_exact(cell, shift, off);
                    for (int c = 0; c < 3; c++) v[c] = __dadd_rn(__dsub_rn(pos[3 * j + c], ri[c]), off[c]);
                    double d = __dsqrt_rn(__dadd_rn(__dadd_rn(__dmul_rn(v[0], v[0]), __dmul_rn(v[1], v[1])),
                                                    __dmul_rn(v[2], v[2])));
                    if (d <= cutoff) {
                        // Flags read by the host: 1 two atoms at one point, 2 a shift
                        // beyond the packed range (unwrapped coordinates ~10^6 cells out).
                        if (d == 0.0) atomicOr(coincident, 1);
                        if (!shift_fits(shift)) atomicOr(coincident, 2);
                        f(j, shift, off);
                    }
                }
            }
}

extern "C" __global__ void nl_count(int n, const double* pos, const double* cell, BinGrid g, const int* atom_bin,
                                    const int* image, const u32* bin_start, const u32* bin_atoms, double cutoff,
                                    u32* counts, int* coincident) {
    wait_for_previous_kernel_();
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    u32 count = 0;
    for_each_neighbor(i, pos, cell, g, atom_bin, image, bin_start, bin_atoms, cutoff, coincident,
                      [&](int, const int*, const double*) { count++; });
    counts[i] = count;
}

// (j, packed shift) orders as (j, s_0, s_1, s_2): see shift_pack.
__device__ __forceinline__ bool shift_less(u32 ja, unsigned long long sa, u32 jb, unsigned long long sb) {
    return ja != jb ? ja < jb : sa < sb;
}

extern "C" __global__ void nl_fill(int n, const double* pos, const double* cell, BinGrid g, const int* atom_bin,
                                   const int* image, const u32* bin_start, const u32* bin_atoms, double cutoff,
                                   const u32* pair_start, u32* pair_i, u32* pair_j, unsigned long long* pair_shift,
                                   u32* self_count, int* coincident) {
    wait_for_previous_kernel_();
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    u32 p0 = pair_start[i];
    u32 p = p0;
    for_each_neighbor(i, pos, cell, g, atom_bin, image, bin_start, bin_atoms, cutoff, coincident,
                      [&](int j, const int* s, const double*) {
                          pair_j[p] = (u32)j;
                          pair_shift[p] = shift_pack(s);
                          p++;
                      });
    // Insertion sort of this atom's pairs by (j, shift): the host's canonical order.
    for (u32 a = p0 + 1; a < p; a++) {
        u32 j = pair_j[a];
        unsigned long long s = pair_shift[a];
        u32 b = a;
        while (b > p0 && shift_less(j, s, pair_j[b - 1], pair_shift[b - 1])) {
            pair_j[b] = pair_j[b - 1];
            pair_shift[b] = pair_shift[b - 1];
            b--;
        }
        pair_j[b] = j;
        pair_shift[b] = s;
    }
    u32 self = 0;
    for (u32 a = p0; a < p; a++) {
        pair_i[a] = (u32)i;
        if (pair_j[a] == (u32)i) self++;
    }
    self_count[i] = self;
}

// Reverse edges arriving at j from pairs (i < j): counted here (integer atomics).
extern "C" __global__ void nl_incoming(int n_pairs, const u32* pair_i, const u32* pair_j, u32* incoming) {
    wait_for_previous_kernel_();
    int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= n_pairs) return;
    if (pair_i[p] != pair_j[p]) atomicAdd(&incoming[pair_j[p]], 1u);
}

// Places each reverse edge in its destination's leading segment (any order; nl_edges sorts).
extern "C" __global__ void nl_reverse(int n_pairs, const u32* pair_i, const u32* pair_j, const u32* edge_offsets,
                                      u32* cursor, u32* edge_pair) {
    wait_for_previous_kernel_();
    int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= n_pairs) return;
    u32 i = pair_i[p], j = pair_j[p];
    if (i == j) return;
    u32 slot = atomicAdd(&cursor[j], 1u);
    edge_pair[edge_offsets[j] + slot] = (u32)p | EDGE_REVERSE;
}

// Per atom a: its edges are [reverse edges of pairs (i < a, a), increasing p] then, for
// each of its own pairs in order, the forward edge (and the reverse one of a self image).
extern "C" __global__ void nl_edges(int n, const u32* pair_start, const u32* pair_i, const u32* pair_j,
                                    const u32* incoming, const u32* edge_offsets, u32* edge_source, u32* edge_pair) {
    wait_for_previous_kernel_();
    int a = blockIdx.x * blockDim.x + threadIdx.x;
    if (a >= n) return;
    u32 e0 = edge_offsets[a], m = incoming[a];
    for (u32 x = e0 + 1; x < e0 + m; x++) {
        u32 w = edge_pair[x];
        u32 y = x;
        while (y > e0 && edge_pair[y - 1] > w) {
            edge_pair[y] = edge_pair[y - 1];
            y--;
        }
        edge_pair[y] = w;
    }
    for (u32 x = e0; x < e0 + m; x++) edge_source[x] = pair_i[edge_pair[x] & EDGE_PAIR_MASK];
    u32 e = e0 + m;
    for (u32 p = pair_start[a]; p < pair_start[a + 1]; p++) {
        edge_source[e] = pair_j[p];
        edge_pair[e] = p;
        e++;
        if (pair_j[p] == (u32)a) {
            edge_source[e] = (u32)a;
            edge_pair[e] = p | EDGE_REVERSE;
            e++;
        }
    }
}

// Device inputs (mlff_model_compute_device): sets bit 1 of *flag when an atom moved
// more than `limit` from where the candidate list was built (limit == 0: when any
// coordinate changed at all), bit 2 when a position is not finite. The squared
// distance is rounded exactly as on the host (no fused multiply-add), so the device
// and host paths rebuild the list at the same calls.
extern "C" __global__ void nl_displacement(int n, const double* positions, const double* built, double limit,
                                           int* flag) {
    wait_for_previous_kernel_();
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    double a0 = positions[3 * i], a1 = positions[3 * i + 1], a2 = positions[3 * i + 2];
    double b0 = built[3 * i], b1 = built[3 * i + 1], b2 = built[3 * i + 2];
    int bits = 0;
    if (!isfinite(a0) || !isfinite(a1) || !isfinite(a2)) bits |= 2;
    double d0 = __dsub_rn(a0, b0), d1 = __dsub_rn(a1, b1), d2 = __dsub_rn(a2, b2);
    double r2 = __dadd_rn(__dadd_rn(__dmul_rn(d0, d0), __dmul_rn(d1, d1)), __dmul_rn(d2, d2));
    bool moved = limit == 0.0 ? (r2 != 0.0 || a0 != b0 || a1 != b1 || a2 != b2) : r2 > __dmul_rn(limit, limit);
    if (moved) bits |= 1;
    if (bits) atomicOr(flag, bits);
}
