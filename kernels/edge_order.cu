// The order in which each atom sums over its edges, recomputed every call from the
// current distances: by distance, then pair index, then the forward edge of a
// self-image pair first — the order of `neighbors::build`. Atoms related by a symmetry
// then sum in the same order and get bitwise identical states, so a site where the
// vector messages cancel (the carbon of CO2) sees exactly |v| = 0; and a candidate list
// reused across calls sums exactly as a fresh list would. One block per atom; each
// edge's rank is the number of edges of the atom with a smaller key (O(E^2), tiny).
__device__ __forceinline__ bool edge_key_less(double da, u32 pa, bool fa, double db, u32 pb, bool fb) {
    if (da != db) return da < db;
    if (pa != pb) return pa < pb;
    return fa && !fb;
}

// The atom's edges are compared in tiles staged in shared memory (one coalesced load
// per tile instead of every thread reading every edge's record from global memory).
// The key of pair p is its distance, masked candidates last; `Key` says where it comes
// from: pair_geometry's outputs, or (small systems: edge_order_positions, which then runs
// beside pair_geometry instead of after it) the positions, with pair_geometry's
// expressions, so the same key bitwise.
#ifndef EDGE_ORDER_THREADS
#define EDGE_ORDER_THREADS 96  // kernels.rs, edge_order_threads()
#endif
struct KeyFromGeometry {
    const int* knot;
    const double* distance;
    __device__ __forceinline__ double operator()(u32 p) const {
        return knot[p] < 0 ? 1e300 : distance[p];  // masked candidates last
    }
};
struct KeyFromPositions {
    const double* positions;
    const u32* pair_i;
    const u32* pair_j;
    PairFrame frame;
    double cutoff;
    __device__ __forceinline__ double operator()(u32 p) const {
        double v[3];
        pair_vector_(positions, pair_i[p], pair_j[p], frame, p, v);
        double d = pair_norm_(v);
        return pair_within_(d, cutoff) ? d : 1e300;
    }
};

// Where an edge goes once its rank is known: `place(e, slot, p, w, key)` with CSR slot e,
// its place slot = offset + rank in the summation order, its pair p, pair word w and key.
struct PlacePerm {
    u32* edge_perm;
    __device__ __forceinline__ void operator()(u32 e, u32 slot, u32, u32, double) const { edge_perm[slot] = e; }
};

template <typename Key, typename Place>
__device__ void edge_order_impl(int n_atoms, const u32* edge_offsets, const u32* edge_pair, Key key, Place place) {
    __shared__ double sh_d[EDGE_ORDER_THREADS];
    __shared__ u32 sh_w[EDGE_ORDER_THREADS];
    int a = blockIdx.x;
    if (a >= n_atoms) return;  // whole block
    u32 e0 = edge_offsets[a], e1 = edge_offsets[a + 1];
    for (u32 base = e0; base < e1; base += EDGE_ORDER_THREADS) {
        u32 e = base + threadIdx.x;
        bool mine = e < e1;
        u32 w = 0, p = 0;
        double d = 0.0;
        if (mine) {
            w = edge_pair[e];
            p = w & EDGE_PAIR_MASK;
            d = key(p);
        }
        bool fwd = !(w & EDGE_REVERSE);
        u32 rank = 0;
        for (u32 tile = e0; tile < e1; tile += EDGE_ORDER_THREADS) {
            __syncthreads();  // the previous tile is no longer read
            u32 f = tile + threadIdx.x;
            if (f < e1) {
                u32 wf = edge_pair[f];
                sh_w[threadIdx.x] = wf;
                // The block's own chunk is this tile: its keys are at hand.
                sh_d[threadIdx.x] = tile == base ? d : key(wf & EDGE_PAIR_MASK);
            }
            __syncthreads();
            u32 count = min((u32)EDGE_ORDER_THREADS, e1 - tile);
            if (mine)
                for (u32 q = 0; q < count; q++) {
                    u32 wf = sh_w[q];
                    if (edge_key_less(sh_d[q], wf & EDGE_PAIR_MASK, !(wf & EDGE_REVERSE), d, p, fwd)) rank++;
                }
        }
        if (mine) place(e, e0 + rank, p, w, d);
    }
}

// The order and, for the message kernels' merged walk (common.cuh, POLY_MERGE), each
// edge's place in the merged order of its group of POLY_MERGE consecutive atoms: the
// group's edges by key, a tie between atoms broken by the atom's slot in the group. Each
// atom's own edges keep their order in it, so an atom sums exactly as alone. One block of
// EDGE_ORDER_MERGED_THREADS per group. A group of up to EDGE_ORDER_GROUP_EDGES edges is
// staged in shared memory once: each edge's rank in its own atom counts the smaller keys
// of that atom (the summation order, as edge_order_impl), its key goes to that place of
// the atom's sorted keys, and its place in the merged order adds, for every other atom
// of the group, a binary search of those (the keys before it). `place.place_both(e, slot,
// p, w, key, group_slot, place)` then writes the order, the record and the merged record
// (formed once). Larger groups compare every edge with every edge of the group in tiles
// (edge_order_group_tiled_).
#ifndef EDGE_ORDER_MERGED_THREADS
#define EDGE_ORDER_MERGED_THREADS 128  // kernels.rs, edge_order_merged_threads()
#endif
#ifndef EDGE_ORDER_GROUP_EDGES
#define EDGE_ORDER_GROUP_EDGES 512  // (MLFF_CUDA_DEFINES: smaller to test the tiled path)
#endif
__shared__ u32 edge_group_offsets[POLY_MERGE + 1];  // the group's CSR offsets

// The slot in the group of the atom whose CSR holds slot f.
__device__ __forceinline__ u32 edge_group_slot_(u32 f, int na) {
    u32 slot = 0;
    for (int b = 1; b < na; b++) slot += f >= edge_group_offsets[b] ? 1u : 0u;
    return slot;
}

template <typename Key, typename Place>
__device__ void edge_order_group_tiled_(int na, const u32* edge_pair, Key key, Place place) {
    const int NT = EDGE_ORDER_MERGED_THREADS;
    __shared__ double sh_d[NT];
    __shared__ u32 sh_w[NT], sh_slot[NT];
    u32 group0 = edge_group_offsets[0], group1 = edge_group_offsets[na];
    for (u32 base = group0; base < group1; base += NT) {
        u32 e = base + threadIdx.x;
        bool mine = e < group1;
        u32 w = 0, p = 0, slot = 0;
        double d = 0.0;
        if (mine) {
            w = edge_pair[e];
            p = w & EDGE_PAIR_MASK;
            d = key(p);
            slot = edge_group_slot_(e, na);
        }
        bool fwd = !(w & EDGE_REVERSE);
        u32 rank = 0, cross = 0;
        for (u32 tile = group0; tile < group1; tile += NT) {
            __syncthreads();  // the previous tile is no longer read
            u32 f = tile + threadIdx.x;
            if (f < group1) {
                u32 wf = edge_pair[f];
                sh_w[threadIdx.x] = wf;
                // The block's own chunk is this tile: its keys are at hand.
                sh_d[threadIdx.x] = tile == base ? d : key(wf & EDGE_PAIR_MASK);
                sh_slot[threadIdx.x] = tile == base ? slot : edge_group_slot_(f, na);
            }
            __syncthreads();
            u32 count = min((u32)NT, group1 - tile);
            if (mine)
                for (u32 q = 0; q < count; q++) {
                    u32 wf = sh_w[q], sq = sh_slot[q];
                    double y = sh_d[q];
                    if (sq == slot)
                        rank += edge_key_less(y, wf & EDGE_PAIR_MASK, !(wf & EDGE_REVERSE), d, p, fwd) ? 1u : 0u;
                    else
                        cross += (y < d || (y == d && sq < slot)) ? 1u : 0u;
                }
        }
        if (mine) place.place_both(e, edge_group_offsets[slot] + rank, p, w, d, slot, group0 + rank + cross);
    }
}

template <typename Key, typename Place>
__device__ void edge_order_group_impl(int n_atoms, const u32* edge_offsets, const u32* edge_pair, Key key,
                                      Place place) {
    const int NT = EDGE_ORDER_MERGED_THREADS, CAP = EDGE_ORDER_GROUP_EDGES;
    static_assert(NT > POLY_MERGE, "a thread per group offset");
    __shared__ double sh_d[CAP], sh_sorted[CAP];
    __shared__ u32 sh_w[CAP], sh_rank[CAP];
    int g0 = blockIdx.x * POLY_MERGE;
    if (g0 >= n_atoms) return;  // whole block
    int na = min(POLY_MERGE, n_atoms - g0);
    if ((int)threadIdx.x <= na) edge_group_offsets[threadIdx.x] = edge_offsets[g0 + threadIdx.x];
    __syncthreads();
    u32 group0 = edge_group_offsets[0], n_edges = edge_group_offsets[na] - group0;
    if (n_edges > (u32)CAP) {
        edge_order_group_tiled_(na, edge_pair, key, place);
        return;
    }
    for (u32 x = threadIdx.x; x < n_edges; x += NT) {
        u32 w = edge_pair[group0 + x];
        sh_w[x] = w;
        sh_d[x] = key(w & EDGE_PAIR_MASK);
    }
    __syncthreads();
    // The rank in the own atom: the summation order.
    for (u32 x = threadIdx.x; x < n_edges; x += NT) {
        u32 slot = edge_group_slot_(group0 + x, na);
        u32 lo = edge_group_offsets[slot] - group0, hi = edge_group_offsets[slot + 1] - group0;
        u32 w = sh_w[x], p = w & EDGE_PAIR_MASK, rank = 0;
        bool fwd = !(w & EDGE_REVERSE);
        double d = sh_d[x];
        for (u32 q = lo; q < hi; q++) {
            u32 wq = sh_w[q];
            rank += edge_key_less(sh_d[q], wq & EDGE_PAIR_MASK, !(wq & EDGE_REVERSE), d, p, fwd) ? 1u : 0u;
        }
        sh_rank[x] = rank;
        sh_sorted[lo + rank] = d;
    }
    __syncthreads();
    // The other atoms' keys before it: those below (or equal to, for an atom of a lower
    // slot) its key, by binary search in that atom's sorted keys.
    for (u32 x = threadIdx.x; x < n_edges; x += NT) {
        u32 slot = edge_group_slot_(group0 + x, na), w = sh_w[x], cross = 0;
        double d = sh_d[x];
        for (int b = 0; b < na; b++) {
            if ((u32)b == slot) continue;
            u32 lo = edge_group_offsets[b] - group0, hi = edge_group_offsets[b + 1] - group0;
            bool or_equal = (u32)b < slot;
            while (lo < hi) {  // the first key of b not before d
                u32 mid = (lo + hi) / 2;
                double y = sh_sorted[mid];
                if (y < d || (or_equal && y == d))
                    lo = mid + 1;
                else
                    hi = mid;
            }
            cross += lo - (edge_group_offsets[b] - group0);
        }
        u32 lo = edge_group_offsets[slot], rank = sh_rank[x];
        place.place_both(group0 + x, lo + rank, w & EDGE_PAIR_MASK, w, d, slot, group0 + rank + cross);
    }
}

extern "C" __global__ void __launch_bounds__(EDGE_ORDER_THREADS) edge_order(
    int n_atoms, const u32* edge_offsets, const u32* edge_pair, const int* knot, const double* distance,
    u32* edge_perm) {
    wait_for_previous_kernel_();
    edge_order_impl(n_atoms, edge_offsets, edge_pair, KeyFromGeometry{knot, distance}, PlacePerm{edge_perm});
}

extern "C" __global__ void __launch_bounds__(EDGE_ORDER_THREADS) edge_order_positions(
    int n_atoms, const u32* edge_offsets, const u32* edge_pair, const double* positions, const u32* pair_i,
    const u32* pair_j, const unsigned long long* shift, const double* cells, const u32* atom_system, double cutoff,
    u32* edge_perm) {
    wait_for_previous_kernel_();
    KeyFromPositions key{positions, pair_i, pair_j, PairFrame{shift, cells, atom_system}, cutoff};
    edge_order_impl(n_atoms, edge_offsets, edge_pair, key, PlacePerm{edge_perm});
}
