// Binning for the GPU neighbour list, on the device: the host's `neighbors::bin_atoms`
// (fractional coordinates, wrap, bin of each atom) and `gpu_neighbors::spatial_order`
// (bins along the Z-curve, each bin's atoms in the caller's order), step by step with
// the host's f64 operations (explicit _rn intrinsics, no FMA), so that the bins, the
// order and hence the list are the host's exactly. The host only computes the grid
// (from the cell and, along open axes, the extent found here) and the bins' Z-curve rank.
// Integer atomics count and place; every placement is sorted afterwards: deterministic.

// The binning map, as gpu_neighbors.rs's `BinMap` (by value).
struct BinMap {
    double inv[9];  // fractional(r, k) = r0 inv[k] + r1 inv[3 + k] + r2 inv[6 + k]
    double lower[3];
    double width[3];
    int n_bins[3];
    int pbc[3];
};

// A double as an unsigned key with the same order (for integer atomicMin / atomicMax).
__device__ __forceinline__ unsigned long long order_key_(double x) {
    unsigned long long b = (unsigned long long)__double_as_longlong(x);
    return (b >> 63) ? ~b : (b | 0x8000000000000000ull);
}

// Pass 1, per atom: fractional coordinates (periodic axes wrapped to [0, 1), the lattice
// image kept; open axes as they are), the extent of each open axis (keys: extent[k] the
// minimum, extent[3 + k] the maximum) and bit 4 of *flag for an atom more than 1e9 cells
// from the origin (the host reports which).
extern "C" __global__ void nl_bin_fractional(int n, const double* pos, BinMap m, double* frac, int* image,
                                             unsigned long long* extent, int* flag) {
    wait_for_previous_kernel_();
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    unsigned long long lo[3] = {~0ull, ~0ull, ~0ull}, hi[3] = {0ull, 0ull, 0ull};
    if (i < n) {
        double r0 = pos[3 * i], r1 = pos[3 * i + 1], r2 = pos[3 * i + 2];
        bool far = false;
        for (int k = 0; k < 3; k++) {
            double f = __dadd_rn(__dadd_rn(__dmul_rn(r0, m.inv[k]), __dmul_rn(r1, m.inv[3 + k])),
                                 __dmul_rn(r2, m.inv[6 + k]));
            int img = 0;
            if (m.pbc[k]) {
                double fl = floor(f);
                double w = __dsub_rn(f, fl);
                if (w >= 1.0) {
                    w = __dsub_rn(w, 1.0);
                    fl = __dadd_rn(fl, 1.0);
                }
                far |= !(fabs(fl) < 1e9);
                img = (int)fl;  // saturates (cvt.rzi); far atoms are an error anyway
                f = w;
            } else {
                lo[k] = hi[k] = order_key_(f);
            }
            frac[3 * i + k] = f;
            image[3 * i + k] = img;
        }
        if (far) atomicOr(flag, 4);
    }
    // Open axes: warp minimum and maximum, then one atomic per warp.
    for (int k = 0; k < 3; k++) {
        if (m.pbc[k]) continue;
        for (int o = 16; o > 0; o >>= 1) {
            lo[k] = min(lo[k], __shfl_xor_sync(FULL_MASK, lo[k], o));
            hi[k] = max(hi[k], __shfl_xor_sync(FULL_MASK, hi[k], o));
        }
        if ((threadIdx.x & 31) == 0) {
            atomicMin(&extent[k], lo[k]);
            atomicMax(&extent[3 + k], hi[k]);
        }
    }
}

// Pass 2, per atom: its bin (the host's bin_of), stored as 3 ints, the bin's rank along
// the Z-curve (bin_rank, from the host) per atom, and the count of each ranked bin.
extern "C" __global__ void nl_bin_count(int n, const double* frac, BinMap m, const u32* bin_rank, int* atom_bin,
                                        u32* atom_rank, u32* count) {
    wait_for_previous_kernel_();
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    int b[3];
    for (int k = 0; k < 3; k++) {
        double f = frac[3 * i + k];
        double x = m.pbc[k] ? __dmul_rn(f, (double)m.n_bins[k]) : __ddiv_rn(__dsub_rn(f, m.lower[k]), m.width[k]);
        x = fmax(x, 0.0);  // as Rust's f64::max: NaN -> 0
        // (x as usize).min(n_bins - 1): truncation, clamped before it can overflow.
        b[k] = x >= (double)(m.n_bins[k] - 1) ? m.n_bins[k] - 1 : (int)x;
        atom_bin[3 * i + k] = b[k];
    }
    u32 r = bin_rank[((size_t)b[0] * m.n_bins[1] + b[1]) * m.n_bins[2] + b[2]];
    atom_rank[i] = r;
    atomicAdd(&count[r], 1u);
}

// Pass 3, per atom: a slot in its ranked bin (start = prefix sums of the counts), in any
// order; nl_bin_sort puts each bin's atoms in ascending order.
extern "C" __global__ void nl_bin_place(int n, const u32* atom_rank, const u32* start, u32* cursor, u32* unsorted) {
    wait_for_previous_kernel_();
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    u32 r = atom_rank[i];
    unsorted[start[r] + atomicAdd(&cursor[r], 1u)] = (u32)i;
}

// Pass 4, a warp per ranked bin: its atoms in ascending order (each one's rank among the
// bin's distinct indices), so order[k] = the caller's index of engine atom k, bins along
// the Z-curve: spatial_order's permutation.
extern "C" __global__ void nl_bin_sort(int n_bins, const u32* start, const u32* unsorted, u32* order) {
    wait_for_previous_kernel_();
    int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
    if (warp >= n_bins) return;
    u32 s = start[warp], size = start[warp + 1] - s;
    for (u32 e = lane; e < size; e += 32) {
        u32 v = unsorted[s + e], rank = 0;
        for (u32 x = 0; x < size; x++) rank += unsorted[s + x] < v;
        order[s + rank] = v;
    }
}

// Pass 5, per engine atom k: the bin, image and position of caller atom order[k] (binning
// is per atom, so these are the bins of the renumbered atoms).
extern "C" __global__ void nl_bin_renumber(int n, const u32* order, const int* atom_bin_caller,
                                           const int* image_caller, const double* pos_caller, int* atom_bin,
                                           int* image, double* pos) {
    wait_for_previous_kernel_();
    int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= n) return;
    u32 a = order[k];
    for (int c = 0; c < 3; c++) {
        atom_bin[3 * k + c] = atom_bin_caller[3 * a + c];
        image[3 * k + c] = image_caller[3 * a + c];
        pos[3 * k + c] = pos_caller[3 * a + c];
    }
}

// Pass 6, per bin in the grid's own (flat) order: its size, for the prefix sums that
// give the search kernels' bin_start.
extern "C" __global__ void nl_bin_sizes(int n_bins, const u32* bin_rank, const u32* start, u32* size) {
    wait_for_previous_kernel_();
    int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= n_bins) return;
    u32 r = bin_rank[b];
    size[b] = start[r + 1] - start[r];
}

// Pass 7, per bin (flat order): its renumbered atoms, consecutive engine indices from
// the ranked bin's start, listed at bin_start[b].
extern "C" __global__ void nl_bin_members(int n_bins, const u32* bin_rank, const u32* start, const u32* bin_start,
                                          u32* bin_atoms) {
    wait_for_previous_kernel_();
    int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= n_bins) return;
    u32 first = start[bin_rank[b]];
    for (u32 t = 0; t < bin_start[b + 1] - bin_start[b]; t++) bin_atoms[bin_start[b] + t] = first + t;
}
