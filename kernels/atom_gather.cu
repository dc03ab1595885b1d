// Forces and per-atom virials in f64, gathered per atom over its CSR edges (one thread
// per atom, fixed order, no atomics). r_p = r_j - r_i + shift, so atom i = pair_i
// gets F += G_p (edge j -> i, forward) and atom j gets F -= G_p (reverse edge). Each
// pair's virial term -r_p (x) G_p is split half and half between its two atoms.
extern "C" __global__ void atom_gather(int n_atoms, const u32* edge_offsets, const u32* edge_perm, const u32* edge_pair,
                                       const double* pair_vector, const double* grad_r, int want_atom_virials,
                                       double* forces, double* atom_virials) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_atoms) return;
    double f[3] = {0.0, 0.0, 0.0};
    double w[9];
    for (int k = 0; k < 9; k++) w[k] = 0.0;
    u32 e0 = edge_offsets[i], e1 = edge_offsets[i + 1];
    for (u32 q = e0; q < e1; q++) {
        u32 word = edge_pair[edge_perm[q]];
        u32 p = word & EDGE_PAIR_MASK;
        double sign = (word & EDGE_REVERSE) ? -1.0 : 1.0;
        double g[3] = {grad_r[3 * p], grad_r[3 * p + 1], grad_r[3 * p + 2]};
        for (int a = 0; a < 3; a++) f[a] += sign * g[a];
        if (want_atom_virials) {
            for (int a = 0; a < 3; a++)
                for (int b = 0; b < 3; b++) w[3 * a + b] -= 0.5 * pair_vector[3 * p + a] * g[b];
        }
    }
    for (int a = 0; a < 3; a++) forces[3 * i + a] = f[a];
    if (want_atom_virials)
        for (int k = 0; k < 9; k++) atom_virials[9 * i + k] = w[k];
}
