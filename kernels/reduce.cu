// Energy and virial totals by a fixed-order two-stage reduction (deterministic), in one
// launch: each of a fixed number of blocks of reduce_partial sums a fixed strided share
// of the atoms in f64 (10 values: E = sum of atom energies, W = sum of per-atom virials,
// so the grouping depends on atoms only, not on the candidate pairs of the list) and
// writes one row of partials; the last block to finish then sums the rows in order.
// Systems of up to SMALL_SYSTEM atoms: reduce_single, one block and one launch, in the
// order reduce_systems.cu uses for one system (so a batch's totals equal one-by-one ones).
#define REDUCE_THREADS 256

// Adds atom i's 10 values (E, then its virial row-major when want_virial) to acc, in f64.
template <typename T>
__device__ __forceinline__ void add_atom10_(size_t i, const T* atom_energy, const double* atom_virials,
                                            int want_virial, double acc[10]) {
    acc[0] += (double)atom_energy[i];
    if (want_virial)
        for (int k = 0; k < 9; k++) acc[1 + k] += atom_virials[9 * i + k];
}

// The block's sums of each thread's 10 values, by a fixed tree over the threads
// (deterministic), written by thread 0 to out[0..10). Every thread of the block (of
// REDUCE_THREADS) calls it. Shared by reduce_partial and reduce_systems.cu.
__device__ __forceinline__ void block_sum10_(const double acc[10], double* out) {
    __shared__ double sh[REDUCE_THREADS];
    for (int k = 0; k < 10; k++) {
        sh[threadIdx.x] = acc[k];
        __syncthreads();
        for (int h = REDUCE_THREADS / 2; h > 0; h >>= 1) {
            if ((int)threadIdx.x < h) sh[threadIdx.x] += sh[threadIdx.x + h];
            __syncthreads();
        }
        if (threadIdx.x == 0) out[k] = sh[0];
        __syncthreads();
    }
}

template <typename T>
__device__ void reduce_partial_impl(int n_atoms, const T* atom_energy, const double* atom_virials, int want_virial,
                                    double* partials) {
    double acc[10];
    for (int k = 0; k < 10; k++) acc[k] = 0.0;
    int stride = gridDim.x * blockDim.x;
    int start = blockIdx.x * blockDim.x + threadIdx.x;
    for (int i = start; i < n_atoms; i += stride) add_atom10_(i, atom_energy, atom_virials, want_virial, acc);
    block_sum10_(acc, partials + 10 * blockIdx.x);
}
// totals[10] reports (and resets) the coincident-atoms flag of pair_geometry. The
// partials come into shared memory with coalesced loads first (REDUCE_FINAL_THREADS
// threads): ten threads each reading their column straight from L2 waited on one load
// after another (16 us at 10k atoms on an H100); each column is then summed in the same
// order, so the same totals. Every thread of the block calls it.
#define REDUCE_FINAL_THREADS 256
#define REDUCE_FINAL_MAX_PARTIALS 128
__device__ __forceinline__ void reduce_final_rows_(int n_partials, const double* partials, int* coincident,
                                                   double* totals) {
    __shared__ double sh[10 * REDUCE_FINAL_MAX_PARTIALS];
    int k = threadIdx.x;
    if (k == 0) {
        totals[10] = (double)*coincident;
        *coincident = 0;
    }
    for (int i = k; i < 10 * n_partials; i += blockDim.x) sh[i] = partials[i];
    __syncthreads();
    if (k >= 10) return;
    double s = 0.0;
    for (int b = 0; b < n_partials; b++) s += sh[10 * b + k];
    totals[k] = s;
}
// The flag alone (a batch, whose systems reduce_systems sums): no partials.
extern "C" __global__ void __launch_bounds__(REDUCE_FINAL_THREADS)
    reduce_final(int n_partials, const double* partials, int* coincident, double* totals) {
    wait_for_previous_kernel_();
    reduce_final_rows_(n_partials, partials, coincident, totals);
}

// Whether this block is the last of the grid to get here (every thread calls it; a
// device counter, zero at launch, that the last block must reset when done): what every
// block wrote before its call is then visible to it.
__device__ __forceinline__ bool last_block_(u32* blocks_done) {
    __shared__ bool last;
    __threadfence();  // this block's writes are visible before its arrival counts
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(blocks_done, 1u) == gridDim.x - 1;
    __syncthreads();
    if (last) __threadfence();  // and every other block's, which arrived before
    return last;
}

// REDUCE_THREADS = REDUCE_FINAL_THREADS threads per block.
#define REDUCE_PARTIAL(SUFFIX, T)                                                                         \
    extern "C" __global__ void __launch_bounds__(REDUCE_THREADS) reduce_partial_##SUFFIX(                 \
        int n_atoms, const T* atom_energy, const double* atom_virials, int want_virial, double* partials,  \
        int* coincident, u32* blocks_done, double* totals) {                                               \
        wait_for_previous_kernel_();                                                                       \
        reduce_partial_impl<T>(n_atoms, atom_energy, atom_virials, want_virial, partials);                 \
        if (!last_block_(blocks_done)) return;                                                             \
        reduce_final_rows_(gridDim.x, partials, coincident, totals);                                       \
        if (threadIdx.x == 0) *blocks_done = 0;                                                            \
    }
REDUCE_PARTIAL(f32, float)
REDUCE_PARTIAL(f64, double)

// Small systems: one block sums all atoms (thread t: atoms t, t + blockDim.x, ...; then
// block_sum10_) straight into totals, as reduce_systems does for one system of a batch;
// totals[10] reports (and resets) the coincident-atoms flag as reduce_final does.
template <typename T>
__device__ void reduce_single_impl(int n_atoms, const T* atom_energy, const double* atom_virials, int want_virial,
                                   int* coincident, double* totals) {
    double acc[10];
    for (int k = 0; k < 10; k++) acc[k] = 0.0;
    for (int i = threadIdx.x; i < n_atoms; i += blockDim.x) add_atom10_(i, atom_energy, atom_virials, want_virial, acc);
    block_sum10_(acc, totals);
    if (threadIdx.x == 0) {
        totals[10] = (double)*coincident;
        *coincident = 0;
    }
}
#define REDUCE_SINGLE(SUFFIX, T)                                                                      \
    extern "C" __global__ void __launch_bounds__(REDUCE_THREADS) reduce_single_##SUFFIX(              \
        int n_atoms, const T* atom_energy, const double* atom_virials, int want_virial, int* coincident, \
        double* totals) {                                                                            \
        wait_for_previous_kernel_();                                                                 \
        reduce_single_impl<T>(n_atoms, atom_energy, atom_virials, want_virial, coincident, totals);  \
    }
REDUCE_SINGLE(f32, float)
REDUCE_SINGLE(f64, double)
