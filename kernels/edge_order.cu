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
