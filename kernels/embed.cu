// Initial state: s = embedding[Z], v = 0 (v null: s only; the backward pass rewrites s^0,
// whose buffer it shares with dE/ds). One block of H threads per atom.
template <typename T>
__device__ void embed_impl(int n_atoms, const int* numbers, const T* embedding, T* s, T* v) {
    int i = blockIdx.x, c = threadIdx.x;
    if (i >= n_atoms) return;
    s[(size_t)i * H + c] = embedding[(size_t)numbers[i] * H + c];
    if (v)
        for (int a = 0; a < 3; a++) v[(size_t)i * H3 + a * H + c] = T(0);
}
#define EMBED(SUFFIX, T)                                                                              \
    extern "C" __global__ void __launch_bounds__(H)                                                   \
        embed_##SUFFIX(int n_atoms, const int* numbers, const T* embedding, T* s, T* v) {             \
        wait_for_previous_kernel_();                                                                  \
        embed_impl<T>(n_atoms, numbers, embedding, s, v);                                             \
    }
EMBED(f32, float)
EMBED(f64, double)
