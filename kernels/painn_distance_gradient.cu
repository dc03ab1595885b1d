// PaiNN dE/dd of each pair for one block, added to g_distance (accumulated over
// blocks): sum_k g_basis[p][k] dphi_k/dd + g_cut[p] dfc/dd. One thread per pair.
template <typename T>
__device__ void painn_distance_gradient_impl(int n_pairs, int k, const T* g_basis, const T* basis_grad, const T* g_cut,
                                             const T* cut_grad, T* g_distance) {
    int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= n_pairs) return;
    T acc = T(0);
    for (int m = 0; m < k; m++) acc += g_basis[(size_t)p * k + m] * basis_grad[(size_t)p * k + m];
    g_distance[p] += acc + g_cut[p] * cut_grad[p];
}
#define PAINN_DISTANCE_GRADIENT(SUFFIX, T)                                                                             \
    extern "C" __global__ void painn_distance_gradient_##SUFFIX(int n_pairs, int k, const T* g_basis,                \
                                                                const T* basis_grad, const T* g_cut,                 \
                                                                const T* cut_grad, T* g_distance) {                  \
        wait_for_previous_kernel_();                                                                                 \
        painn_distance_gradient_impl<T>(n_pairs, k, g_basis, basis_grad, g_cut, cut_grad, g_distance);               \
    }
PAINN_DISTANCE_GRADIENT(f32, float)
PAINN_DISTANCE_GRADIENT(f64, double)
