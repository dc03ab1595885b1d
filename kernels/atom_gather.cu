// Forces and per-atom virials, gathered per atom over its CSR edges (one thread per
// atom, fixed order, no atomics). r_p = r_j - r_i + shift, so atom i = pair_i gets
// F += G_p (edge j -> i, forward) and atom j gets F -= G_p (reverse edge). Each pair's
// virial term -r_p (x) G_p is split half and half between its two atoms.
template <typename T>
__device__ void atom_gather_impl(int n_atoms, const u32* edge_offsets, const u32* edge_pair, const T* vec,
                                 const T* grad_r, int want_atom_virials, T* forces, T* atom_virials) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_atoms) return;
    T f[3] = {T(0), T(0), T(0)};
    T w[9];
    for (int k = 0; k < 9; k++) w[k] = T(0);
    u32 e0 = edge_offsets[i], e1 = edge_offsets[i + 1];
    for (u32 e = e0; e < e1; e++) {
        u32 word = edge_pair[e];
        u32 p = word & EDGE_PAIR_MASK;
        T sign = (word & EDGE_REVERSE) ? T(-1) : T(1);
        T g[3] = {grad_r[3 * p], grad_r[3 * p + 1], grad_r[3 * p + 2]};
        for (int a = 0; a < 3; a++) f[a] += sign * g[a];
        if (want_atom_virials) {
            for (int a = 0; a < 3; a++)
                for (int b = 0; b < 3; b++) w[3 * a + b] -= T(0.5) * vec[3 * p + a] * g[b];
        }
    }
    for (int a = 0; a < 3; a++) forces[3 * i + a] = f[a];
    if (want_atom_virials)
        for (int k = 0; k < 9; k++) atom_virials[9 * i + k] = w[k];
}
#define ATOM_GATHER(SUFFIX, T)                                                                        \
    extern "C" __global__ void atom_gather_##SUFFIX(int n_atoms, const u32* edge_offsets, const u32* edge_pair, \
                                                     const T* vec, const T* grad_r, int want_atom_virials, \
                                                     T* forces, T* atom_virials) {                    \
        atom_gather_impl<T>(n_atoms, edge_offsets, edge_pair, vec, grad_r, want_atom_virials, forces, atom_virials); \
    }
ATOM_GATHER(f32, float)
ATOM_GATHER(f64, double)
