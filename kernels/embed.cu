// Initial state: s = embedding[Z], v = 0 (v null: s only; the backward pass rewrites s^0,
// whose buffer it shares with dE/ds). Rows as 16-byte words (H is a multiple of 4), the
// threads of the grid striding over every atom's words: one block of H threads per atom
// (until session 19) took 14 us at 10k atoms and 123 us at 10^5 on an H100. Copies and
// zeros: the same bits.
#define EMBED_THREADS 256
template <typename T>
__device__ void embed_impl(int n_atoms, const int* numbers, const T* embedding, T* s, T* v) {
    const int words = H * (int)sizeof(T) / 16;  // per row
    const uint4* from = reinterpret_cast<const uint4*>(embedding);
    uint4* to = reinterpret_cast<uint4*>(s);
    size_t stride = (size_t)gridDim.x * blockDim.x, start = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (size_t w = start; w < (size_t)n_atoms * words; w += stride) {
        size_t i = w / words, c = w % words;
        to[w] = from[(size_t)numbers[i] * words + c];
    }
    if (v) {
        uint4* zeros = reinterpret_cast<uint4*>(v);
        for (size_t w = start; w < (size_t)n_atoms * 3 * words; w += stride) zeros[w] = make_uint4(0, 0, 0, 0);
    }
}
#define EMBED(SUFFIX, T)                                                                              \
    extern "C" __global__ void __launch_bounds__(EMBED_THREADS)                                       \
        embed_##SUFFIX(int n_atoms, const int* numbers, const T* embedding, T* s, T* v) {             \
        wait_for_previous_kernel_();                                                                  \
        embed_impl<T>(n_atoms, numbers, embedding, s, v);                                             \
    }
EMBED(f32, float)
EMBED(f64, double)
