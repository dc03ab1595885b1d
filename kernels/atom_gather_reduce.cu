// atom_gather and reduce_single in one launch, for small systems (a molecule's step is a
// chain of short kernels, each mostly latency; kernels.rs: `atom_gather` with
// `then_reduce`): every block gathers its atoms' forces and virials (atom_gather_impl);
// the last block to finish, found with a device counter that it resets for the next
// call, then sums the energies and virials as reduce_single does, with the same
// REDUCE_THREADS threads: the same numbers bitwise, one launch less.
template <typename T>
__device__ __forceinline__ void reduce_in_last_block_(int n_atoms, const T* atom_energy, const double* atom_virials,
                                                      int want_virial, int* coincident, u32* blocks_done,
                                                      double* totals) {
    if (!last_block_(blocks_done)) return;
    reduce_single_impl<T>(n_atoms, atom_energy, atom_virials, want_virial, coincident, totals);
    if (threadIdx.x == 0) *blocks_done = 0;
}
#define ATOM_GATHER_REDUCE(SUFFIX, T)                                                                              \
    extern "C" __global__ void __launch_bounds__(REDUCE_THREADS) atom_gather_reduce_##SUFFIX(                       \
        int n_atoms, const u32* edge_offsets, const u32* edge_perm, const u32* edge_pair, const int* knot,            \
        const double* positions, const u32* pair_i, const u32* pair_j, const unsigned long long* shift,              \
        const double* cells, const u32* atom_system, const T* grad_du, int want_atom_virials, double* forces,       \
        double* atom_virials, const T* atom_energy, int want_virial, int* coincident, u32* blocks_done,             \
        double* totals) {                                                                                           \
        wait_for_previous_kernel_();                                                                                \
        atom_gather_impl<T>(n_atoms, edge_offsets, edge_perm, edge_pair, knot, positions, pair_i, pair_j,           \
                            PairFrame{shift, cells, atom_system}, grad_du, want_atom_virials, forces, atom_virials); \
        reduce_in_last_block_<T>(n_atoms, atom_energy, atom_virials, want_virial, coincident, blocks_done, totals);  \
    }
ATOM_GATHER_REDUCE(f32, float)
ATOM_GATHER_REDUCE(f64, double)
