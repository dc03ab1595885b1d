// Forces and per-atom virials in f64, gathered per atom over its CSR edges (a warp per
// atom, fixed order, no atomics). Each edge's pair gradient G_p = dE/dr_p is formed
// here, in f64 from the f64 pair vector as in the CPU engine (the force sums cancel
// strongly; r_p recomputed from the positions by pair_geometry's expression, bitwise the
// same), with d = |r|, u = r / (d + eps):
//   G = g_u / (d + eps) - r (g_u . r) / (d (d + eps)^2) + (dE/dd) r / d
// (both atoms of a pair compute the same G; no per-pair buffer). r_p = r_j - r_i + shift,
// so atom i = pair_i gets F += G_p (edge j -> i, forward) and atom j gets F -= G_p
// (reverse edge). Each pair's virial term -r_p (x) G_p is split half and half between
// its two atoms. Masked pairs (beyond rc) add exact zeros.
template <typename T>
__device__ __forceinline__ void pair_force_(const double* r, const T* grad_du, double g[3]) {
    double d = sqrt(r[0] * r[0] + r[1] * r[1] + r[2] * r[2]);
    double grad_d, gu[3];
    if constexpr (sizeof(T) == 4) {  // one 16-byte load
        float4 q = *reinterpret_cast<const float4*>(grad_du);
        grad_d = q.x;
        gu[0] = q.y;
        gu[1] = q.z;
        gu[2] = q.w;
    } else {
        grad_d = grad_du[0];
        gu[0] = grad_du[1];
        gu[1] = grad_du[2];
        gu[2] = grad_du[3];
    }
    double de = d + 1e-8;
    double gr = gu[0] * r[0] + gu[1] * r[1] + gu[2] * r[2];
    double k_u = 1.0 / de;
    double k_r = grad_d / d - gr / (d * de * de);
    for (int a = 0; a < 3; a++) g[a] = gu[a] * k_u + r[a] * k_r;
}

template <typename T>
__device__ void atom_gather_impl(int n_atoms, const u32* edge_offsets, const u32* edge_perm, const u32* edge_pair,
                                 const int* knot, const double* positions, const u32* pair_i,
                                 const u32* pair_j, PairFrame frame, const T* grad_du,
                                 int want_atom_virials, double* forces, double* atom_virials) {
    // One warp per atom: lane l takes the atom's edges l, l + 32, ... in summation order,
    // then a fixed butterfly over the lanes (lane 0's sum is written): the same order at
    // every call, and atoms whose edges sort alike (symmetric sites) sum alike. Masked
    // edges sort last and add exact zeros.
    int lane = threadIdx.x & 31;
    int i = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (i >= n_atoms) return;
    double f[3] = {0.0, 0.0, 0.0};
    double w[9];
    for (int k = 0; k < 9; k++) w[k] = 0.0;
    u32 e0 = edge_offsets[i], e1 = edge_offsets[i + 1];
    for (u32 q = e0 + lane; q < e1; q += 32) {
        u32 word = edge_pair[edge_perm[q]];
        u32 p = word & EDGE_PAIR_MASK;
        double sign = (word & EDGE_REVERSE) ? -1.0 : 1.0;
        double r[3] = {0.0, 0.0, 0.0};
        double g[3] = {0.0, 0.0, 0.0};
        if (knot[p] >= 0) {  // masked pairs add exact zeros (also to the virial)
            pair_vector_(positions, pair_i[p], pair_j[p], frame, p, r);
            pair_force_<T>(r, grad_du + 4 * (size_t)p, g);
        }
        for (int a = 0; a < 3; a++) f[a] += sign * g[a];
        if (want_atom_virials) {
            for (int a = 0; a < 3; a++)
                for (int b = 0; b < 3; b++) w[3 * a + b] -= 0.5 * r[a] * g[b];
        }
    }
    for (int offset = 16; offset > 0; offset >>= 1) {
        for (int a = 0; a < 3; a++) f[a] += __shfl_xor_sync(FULL_MASK, f[a], offset);
        if (want_atom_virials)
            for (int k = 0; k < 9; k++) w[k] += __shfl_xor_sync(FULL_MASK, w[k], offset);
    }
    if (lane != 0) return;
    for (int a = 0; a < 3; a++) forces[3 * (size_t)i + a] = f[a];
    if (want_atom_virials)
        for (int k = 0; k < 9; k++) atom_virials[9 * (size_t)i + k] = w[k];
}
#define ATOM_GATHER(SUFFIX, T)                                                                             \
    extern "C" __global__ void atom_gather_##SUFFIX(int n_atoms, const u32* edge_offsets, const u32* edge_perm, \
                                                    const u32* edge_pair, const int* knot,                  \
                                                    const double* positions, const u32* pair_i,             \
                                                    const u32* pair_j, const unsigned long long* shift,     \
                                                    const double* cells, const u32* atom_system,            \
                                                    const T* grad_du,                                       \
                                                    int want_atom_virials, double* forces,                  \
                                                    double* atom_virials) {                                  \
        wait_for_previous_kernel_();                                                                         \
        atom_gather_impl<T>(n_atoms, edge_offsets, edge_perm, edge_pair, knot, positions, pair_i, pair_j,    \
                            PairFrame{shift, cells, atom_system}, grad_du,                           \
                            want_atom_virials, forces, atom_virials);                                        \
    }
ATOM_GATHER(f32, float)
ATOM_GATHER(f64, double)
