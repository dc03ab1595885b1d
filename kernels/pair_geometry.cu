// Per pair, every call: r_p = (r_j - r_i) + shift_p . cell (pair_vector_), then d = |r_p|,
// in f64 with the operations, order and rounding of the host's `neighbors::pair_vector`
// and `neighbors::norm` (explicit _rn intrinsics: no FMA contraction), so the cutoff
// decision d <= rc is the host's.
// Pairs of the candidate list (built with a skin) beyond rc are masked: knot = -1.
// For the filter table: knot = interval of d, frac = position in it (from f64).
// |v| as the host's `neighbors::norm` (no FMA contraction).
__device__ __forceinline__ double pair_norm_(const double v[3]) {
    return __dsqrt_rn(__dadd_rn(__dadd_rn(__dmul_rn(v[0], v[0]), __dmul_rn(v[1], v[1])), __dmul_rn(v[2], v[2])));
}
// Whether a pair at distance d is an edge (d <= rc; d = 0 is two atoms at one point).
__device__ __forceinline__ bool pair_within_(double d, double cutoff) { return d <= cutoff && d > 0.0; }

template <typename T>
__device__ void pair_geometry_impl(int n_pairs, const double* positions, const u32* pair_i, const u32* pair_j,
                                   PairFrame frame, double cutoff, double inv_h, int n_intervals,
                                   double* distance, int* knot, T* frac, T* unit, int* coincident) {
    int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= n_pairs) return;
    double v[3];
    pair_vector_(positions, pair_i[p], pair_j[p], frame, p, v);
    double d = pair_norm_(v);
    distance[p] = d;
    if (pair_within_(d, cutoff)) {
        double x = d * inv_h;
        int k = (int)x;
        if (k > n_intervals - 1) k = n_intervals - 1;
        knot[p] = k;
        frac[p] = (T)(x - (double)k);
        for (int c = 0; c < 3; c++) unit[3 * p + c] = (T)(v[c] / (d + 1e-8));
    } else {
        // Two atoms at one point: the host list rejects this; report it (read by reduce_final).
        if (d == 0.0) *coincident = 1;
        knot[p] = -1;
        frac[p] = T(0);
        for (int c = 0; c < 3; c++) unit[3 * p + c] = T(0);
    }
}
#define PAIR_GEOMETRY(SUFFIX, T)                                                                      \
    extern "C" __global__ void pair_geometry_##SUFFIX(int n_pairs, const double* positions, const u32* pair_i, \
                                                       const u32* pair_j, const unsigned long long* shift, \
                                                       const double* cells, const u32* atom_system, double cutoff, \
                                                       double inv_h, int n_intervals, double* distance,   \
                                                       int* knot, T* frac, T* unit, int* coincident) {                              \
        wait_for_previous_kernel_();                                                                                                \
        pair_geometry_impl<T>(n_pairs, positions, pair_i, pair_j, PairFrame{shift, cells, atom_system}, cutoff, inv_h, n_intervals, \
                              distance, knot, frac, unit, coincident);                                  \
    }
PAIR_GEOMETRY(f32, float)
PAIR_GEOMETRY(f64, double)
