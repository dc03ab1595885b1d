// Per-system energy and virial totals of a batch (compute_batch), on the device, so that
// only 10 numbers per system come back instead of every atom's energy and virial.
// One block per system over its atoms [system_start[s], system_start[s + 1]): each
// thread sums a fixed strided share in f64, then a fixed tree over the threads
// (block_sum10_, as reduce_partial); the order depends on the system's atoms only
// (deterministic). out: 10 values per system
// (E, then W row-major); want_virial = 0 leaves W at zero.
template <typename T>
__device__ void reduce_systems_impl(int n_systems, const u32* system_start, const T* atom_energy,
                                    const double* atom_virials, int want_virial, double* out) {
    int s = blockIdx.x;
    if (s >= n_systems) return;  // whole block: no barrier is skipped by part of it
    u32 a0 = system_start[s], a1 = system_start[s + 1];
    double acc[10];
    for (int k = 0; k < 10; k++) acc[k] = 0.0;
    for (u32 i = a0 + threadIdx.x; i < a1; i += blockDim.x) add_atom10_(i, atom_energy, atom_virials, want_virial, acc);
    block_sum10_(acc, out + 10 * (size_t)s);  // reduce.cu
}
#define REDUCE_SYSTEMS(SUFFIX, T)                                                                     \
    extern "C" __global__ void __launch_bounds__(REDUCE_THREADS) reduce_systems_##SUFFIX(             \
        int n_systems, const u32* system_start, const T* atom_energy, const double* atom_virials,     \
        int want_virial, double* out) {                                                               \
        wait_for_previous_kernel_();                                                                  \
        reduce_systems_impl<T>(n_systems, system_start, atom_energy, atom_virials, want_virial, out); \
    }
REDUCE_SYSTEMS(f32, float)
REDUCE_SYSTEMS(f64, double)
