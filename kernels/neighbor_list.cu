// Neighbour list on the GPU, with exactly the semantics and the canonical order of
// the host's `neighbors::build`: the host bins the atoms (O(N), its own code path
// mirrored in gpu_neighbors.rs); here one warp per atom i searches the same bins,
// keeps (j >= i, shift) with d <= cutoff decided by the host's f64 formulas (explicit
// _rn intrinsics, no FMA), sorts its pairs by (j, shift), and the CSR of directed
// edges is laid out as the host does (per destination, in pair order). No float
// atomics; integer atomics only count, and every list they fill is sorted after.

struct BinGrid {
    int n_bins[3];
    int reach[3];
    int pbc[3];
};

// A warp per atom i: calls f(j, shift, hit) on every lane for each group of 32
// candidates, hit = (j >= i, shift) is a pair within cutoff (lanes past the last
// candidate get hit = false); warp-uniform control flow, so f may use warp votes. The
// searched bins and the test are the host's (f64, explicit _rn intrinsics, no FMA).
// The warp takes up to 32 searched bins at once (lane = bin, one round trip for their
// ranges), then walks their atoms as one sequence, lane = candidate, so that every load
// of a group is independent (a thread per atom walked ~27 bins one after the other,
// latency-bound). The order of the hits is not the canonical one (nl_fill sorts them).
template <typename F>
__device__ void for_each_candidate(int i, const double* pos, const double* cell, BinGrid g, const int* atom_bin,
                                   const int* image, const u32* bin_start, const u32* bin_atoms, double cutoff,
                                   int* coincident, F f) {
    int lane = threadIdx.x & 31;
    int b[3] = {atom_bin[3 * i], atom_bin[3 * i + 1], atom_bin[3 * i + 2]};
    int img_i[3] = {image[3 * i], image[3 * i + 1], image[3 * i + 2]};
    int lo[3], span[3];
    for (int k = 0; k < 3; k++) {
        int hi;
        if (g.pbc[k]) {
            lo[k] = -g.reach[k];
            hi = g.reach[k];
        } else {
            lo[k] = -min(b[k], 1);
            hi = min(g.n_bins[k] - 1 - b[k], 1);
        }
        span[k] = hi - lo[k] + 1;
    }
    double ri[3] = {pos[3 * i], pos[3 * i + 1], pos[3 * i + 2]};
    int searched = span[0] * span[1] * span[2];
    for (int group = 0; group < searched; group += 32) {
        // This lane's bin: offsets in the host's loop order (the last axis fastest).
        int q = group + lane;
        u32 first = 0, size = 0;
        int wrap[3] = {0, 0, 0};
        if (q < searched) {
            int offs[3] = {q / (span[1] * span[2]) + lo[0], (q / span[2]) % span[1] + lo[1], q % span[2] + lo[2]};
            int target[3];
            for (int k = 0; k < 3; k++) {
                int t = b[k] + offs[k], nb = g.n_bins[k];
                int qq = t / nb, r = t % nb;  // Euclidean division
                if (r < 0) {
                    r += nb;
                    qq -= 1;
                }
                target[k] = r;
                wrap[k] = qq;
            }
            int fb = (target[0] * g.n_bins[1] + target[1]) * g.n_bins[2] + target[2];
            first = bin_start[fb];
            size = bin_start[fb + 1] - first;
        }
        // Inclusive prefix of the bins' sizes over the lanes.
        u32 end = size;
        for (int o = 1; o < 32; o <<= 1) {
            u32 t = __shfl_up_sync(FULL_MASK, end, o);
            if (lane >= o) end += t;
        }
        u32 total = __shfl_sync(FULL_MASK, end, 31);
        for (u32 base = 0; base < total; base += 32) {
            u32 k = base + lane;
            // The bin holding candidate k: the number of bins that end at or before k.
            int owner = 0;
            for (int step = 16; step > 0; step >>= 1) {
                u32 e = __shfl_sync(FULL_MASK, end, owner + step - 1);
                if (e <= k) owner += step;
            }
            owner = min(owner, 31);
            u32 owner_first = __shfl_sync(FULL_MASK, first, owner);
            u32 owner_start = __shfl_sync(FULL_MASK, end - size, owner);
            int w0 = __shfl_sync(FULL_MASK, wrap[0], owner), w1 = __shfl_sync(FULL_MASK, wrap[1], owner),
                w2 = __shfl_sync(FULL_MASK, wrap[2], owner);
            bool hit = false;
            int j = -1, shift[3] = {0, 0, 0};
            if (k < total) {
                j = (int)bin_atoms[owner_first + (k - owner_start)];
                shift[0] = w0 - image[3 * j] + img_i[0];
                shift[1] = w1 - image[3 * j + 1] + img_i[1];
                shift[2] = w2 - image[3 * j + 2] + img_i[2];
                bool keep = j >= i;
                if (j == i) {
                    int lead = shift[0] != 0 ? shift[0] : (shift[1] != 0 ? shift[1] : shift[2]);
                    keep = lead > 0;
                }
                if (keep) {
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
                        hit = true;
                    }
                }
            }
            f(j, shift, hit);
        }
    }
}

// Warp per atom (grid: 32 n threads, blocks of whole warps).
__device__ __forceinline__ int warp_atom_(int n) {
    int i = (int)((blockIdx.x * (unsigned)blockDim.x + threadIdx.x) >> 5);
    return i < n ? i : -1;
}

extern "C" __global__ void nl_count(int n, const double* pos, const double* cell, BinGrid g, const int* atom_bin,
                                    const int* image, const u32* bin_start, const u32* bin_atoms, double cutoff,
                                    u32* counts, int* coincident) {
    wait_for_previous_kernel_();
    int i = warp_atom_(n);
    if (i < 0) return;
    u32 count = 0;
    for_each_candidate(i, pos, cell, g, atom_bin, image, bin_start, bin_atoms, cutoff, coincident,
                       [&](int, const int*, bool hit) { count += hit; });
    for (int o = 16; o > 0; o >>= 1) count += __shfl_xor_sync(FULL_MASK, count, o);
    if ((threadIdx.x & 31) == 0) counts[i] = count;
}

// (j, packed shift) orders as (j, s_0, s_1, s_2): see shift_pack.
__device__ __forceinline__ bool shift_less(u32 ja, unsigned long long sa, u32 jb, unsigned long long sb) {
    return ja != jb ? ja < jb : sa < sb;
}

// Pairs of one atom the warp sorts in registers (NL_SORT_SLOTS per lane); atoms with
// more (dense systems, long cutoffs) are sorted by one lane in place.
#define NL_SORT_SLOTS 8

extern "C" __global__ void nl_fill(int n, const double* pos, const double* cell, BinGrid g, const int* atom_bin,
                                   const int* image, const u32* bin_start, const u32* bin_atoms, double cutoff,
                                   const u32* pair_start, u32* pair_i, u32* pair_j, unsigned long long* pair_shift,
                                   u32* self_count, int* coincident) {
    wait_for_previous_kernel_();
    int i = warp_atom_(n);
    if (i < 0) return;
    int lane = threadIdx.x & 31;
    u32 p0 = pair_start[i], p1 = pair_start[i + 1];
    u32 p = p0;
    for_each_candidate(i, pos, cell, g, atom_bin, image, bin_start, bin_atoms, cutoff, coincident,
                       [&](int j, const int* s, bool hit) {
                           unsigned mask = __ballot_sync(FULL_MASK, hit);
                           if (hit) {
                               u32 at = p + __popc(mask & ((1u << lane) - 1u));
                               pair_j[at] = (u32)j;
                               pair_shift[at] = shift_pack(s);
                           }
                           p += __popc(mask);
                       });
    __syncwarp();  // the hits of every lane are visible to the warp
    u32 m = p1 - p0;
    // Sort by (j, shift), the host's canonical order; the keys are distinct, so each
    // pair's rank (how many keys are smaller) is its place.
    if (m <= 32u * NL_SORT_SLOTS) {
        u32 own_j[NL_SORT_SLOTS], rank[NL_SORT_SLOTS];
        unsigned long long own_s[NL_SORT_SLOTS];
#pragma unroll
        for (int r = 0; r < NL_SORT_SLOTS; r++) {
            u32 a = (u32)lane + 32u * r;
            rank[r] = 0;
            if (a < m) {
                own_j[r] = pair_j[p0 + a];
                own_s[r] = pair_shift[p0 + a];
            }
        }
        for (u32 k = 0; k < m; k++) {
            u32 jk = pair_j[p0 + k];
            unsigned long long sk = pair_shift[p0 + k];
#pragma unroll
            for (int r = 0; r < NL_SORT_SLOTS; r++)
                if ((u32)lane + 32u * r < m && shift_less(jk, sk, own_j[r], own_s[r])) rank[r]++;
        }
        __syncwarp();  // every lane has read every key before any is overwritten
#pragma unroll
        for (int r = 0; r < NL_SORT_SLOTS; r++) {
            if ((u32)lane + 32u * r < m) {
                pair_j[p0 + rank[r]] = own_j[r];
                pair_shift[p0 + rank[r]] = own_s[r];
            }
        }
    } else if (lane == 0) {
        // Insertion sort of this atom's pairs.
        for (u32 a = p0 + 1; a < p1; a++) {
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
    }
    __syncwarp();
    u32 self = 0;
    for (u32 a = p0 + lane; a < p1; a += 32) {
        pair_i[a] = (u32)i;
        if (pair_j[a] == (u32)i) self++;
    }
    for (int o = 16; o > 0; o >>= 1) self += __shfl_xor_sync(FULL_MASK, self, o);
    if (lane == 0) self_count[i] = self;
}

// Exclusive prefix sums of a[k] (+ b[k] + c[k] where given) over k < n into out[0..n],
// out[n] = the sum (mod 2^32), and the sum in 64 bits into *total, which the host checks
// against its limits (one 8-byte download instead of the counts and a host loop). One
// block of NL_SCAN_THREADS: thread t sums a contiguous chunk, the chunk sums are scanned
// in shared memory in order, then every chunk is written. Integer sums: exact.
#define NL_SCAN_THREADS 1024
extern "C" __global__ void __launch_bounds__(NL_SCAN_THREADS) nl_scan(int n, const u32* a, const u32* b, const u32* c,
                                                                      u32* out, unsigned long long* total) {
    wait_for_previous_kernel_();
    __shared__ unsigned long long chunk_sum[NL_SCAN_THREADS];
    int t = threadIdx.x;
    int per = (n + NL_SCAN_THREADS - 1) / NL_SCAN_THREADS;
    int lo = min(n, t * per), hi = min(n, lo + per);
    auto value = [&](int k) -> unsigned long long {
        unsigned long long x = a[k];
        if (b) x += b[k];
        if (c) x += c[k];
        return x;
    };
    unsigned long long sum = 0;
    for (int k = lo; k < hi; k++) sum += value(k);
    chunk_sum[t] = sum;
    __syncthreads();
    // Inclusive scan of the chunk sums (Hillis-Steele; 10 steps).
    for (int o = 1; o < NL_SCAN_THREADS; o <<= 1) {
        unsigned long long x = t >= o ? chunk_sum[t - o] : 0ull;
        __syncthreads();
        chunk_sum[t] += x;
        __syncthreads();
    }
    unsigned long long run = chunk_sum[t] - sum;
    for (int k = lo; k < hi; k++) {
        out[k] = (u32)run;
        run += value(k);
    }
    if (t == NL_SCAN_THREADS - 1) {
        out[n] = (u32)chunk_sum[t];
        *total = chunk_sum[t];
    }
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

// A warp per atom a: its edges are [reverse edges of pairs (i < a, a), increasing p]
// then, for each of its own pairs in order, the forward edge (and the reverse one of a
// self image). The reverse edges (placed in any order by nl_reverse) are ranked by lanes
// (each word's rank among the distinct words of the segment) into edge_source, which is
// free until this kernel writes it, and copied back; the pairs follow in chunks of 32,
// each lane's slot from a ballot of the self images before it. (A thread per atom
// insertion-sorted in global memory: latency-bound, ~1 ms per 10^5 atoms.)
extern "C" __global__ void nl_edges(int n, const u32* pair_start, const u32* pair_i, const u32* pair_j,
                                    const u32* incoming, const u32* edge_offsets, u32* edge_source, u32* edge_pair) {
    wait_for_previous_kernel_();
    int a = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
    if (a >= n) return;
    u32 e0 = edge_offsets[a], m = incoming[a];
    for (u32 x = lane; x < m; x += 32) {
        u32 w = edge_pair[e0 + x], rank = 0;
        for (u32 y = 0; y < m; y++) rank += edge_pair[e0 + y] < w;
        edge_source[e0 + rank] = w;
    }
    __syncwarp();
    for (u32 x = lane; x < m; x += 32) {
        u32 w = edge_source[e0 + x];
        edge_pair[e0 + x] = w;
        edge_source[e0 + x] = pair_i[w & EDGE_PAIR_MASK];
    }
    u32 e = e0 + m;
    u32 p0 = pair_start[a], p1 = pair_start[a + 1];
    for (u32 base = p0; base < p1; base += 32) {
        u32 p = base + lane;
        bool valid = p < p1;
        u32 j = valid ? pair_j[p] : 0u;
        bool self_image = valid && j == (u32)a;
        u32 images = __ballot_sync(FULL_MASK, self_image);
        u32 slot = e + lane + __popc(images & ((1u << lane) - 1u));
        if (valid) {
            edge_source[slot] = j;
            edge_pair[slot] = p;
            if (self_image) {
                edge_source[slot + 1] = (u32)a;
                edge_pair[slot + 1] = p | EDGE_REVERSE;
            }
        }
        e += min(32u, p1 - base) + __popc(images);
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
