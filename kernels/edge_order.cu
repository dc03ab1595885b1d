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

extern "C" __global__ void edge_order(int n_atoms, const u32* edge_offsets, const u32* edge_pair, const int* knot,
                                      const double* distance, u32* edge_perm) {
    int a = blockIdx.x;
    if (a >= n_atoms) return;
    u32 e0 = edge_offsets[a], e1 = edge_offsets[a + 1];
    for (u32 e = e0 + threadIdx.x; e < e1; e += blockDim.x) {
        u32 w = edge_pair[e];
        u32 p = w & EDGE_PAIR_MASK;
        bool fwd = !(w & EDGE_REVERSE);
        double d = knot[p] < 0 ? 1e300 : distance[p];  // masked candidates last
        u32 rank = 0;
        for (u32 f = e0; f < e1; f++) {
            u32 wf = edge_pair[f];
            u32 pf = wf & EDGE_PAIR_MASK;
            double df = knot[pf] < 0 ? 1e300 : distance[pf];
            if (edge_key_less(df, pf, !(wf & EDGE_REVERSE), d, p, fwd)) rank++;
        }
        edge_perm[e0 + rank] = e;
    }
}
