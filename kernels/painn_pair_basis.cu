// PaiNN per-pair geometry from the f64 pair vectors r_p (the host's, recomputed every
// call from the positions): d = |r_p|, u = r_p / d, schnetpack's Gaussian basis
// exp(-(d - o_k)^2 / (2 w_k^2)) and its d-derivative, the cosine cutoff
// 0.5 (cos(pi d / rc) + 1) for d < rc (0 beyond, with its derivative) — the host's
// formulas (model::painn), in f64, each rounded once to T. One thread per (pair, k);
// the k = 0 thread also writes u and the cutoff.
template <typename T>
__device__ void painn_pair_basis_impl(int n_pairs, int num_rbf, const double* pair_vector, const double* offsets,
                                      const double* widths, double cutoff, T* unit, T* basis, T* basis_grad, T* cut,
                                      T* cut_grad) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)n_pairs * num_rbf) return;
    int p = (int)(idx / num_rbf), k = (int)(idx % num_rbf);
    double x = pair_vector[3 * (size_t)p], y = pair_vector[3 * (size_t)p + 1], z = pair_vector[3 * (size_t)p + 2];
    double d = sqrt(x * x + y * y + z * z);
    double coeff = -0.5 / (widths[k] * widths[k]);
    double diff = d - offsets[k];
    double value = exp(coeff * (diff * diff));
    basis[idx] = T(value);
    basis_grad[idx] = T(2.0 * coeff * diff * value);
    if (k == 0) {
        unit[3 * (size_t)p] = T(x / d);
        unit[3 * (size_t)p + 1] = T(y / d);
        unit[3 * (size_t)p + 2] = T(z / d);
        const double pi = 3.141592653589793;
        if (d < cutoff) {
            double a = d * pi / cutoff;
            cut[p] = T(0.5 * (cos(a) + 1.0));
            cut_grad[p] = T(-0.5 * pi / cutoff * sin(a));
        } else {
            cut[p] = T(0);
            cut_grad[p] = T(0);
        }
    }
}
#define PAINN_PAIR_BASIS(SUFFIX, T)                                                                                  \
    extern "C" __global__ void painn_pair_basis_##SUFFIX(int n_pairs, int num_rbf, const double* pair_vector,        \
                                                         const double* offsets, const double* widths, double cutoff, \
                                                         T* unit, T* basis, T* basis_grad, T* cut, T* cut_grad) {  \
        wait_for_previous_kernel_();                                                                               \
        painn_pair_basis_impl<T>(n_pairs, num_rbf, pair_vector, offsets, widths, cutoff, unit, basis, basis_grad,  \
                                 cut, cut_grad);                                                                     \
    }
PAINN_PAIR_BASIS(f32, float)
PAINN_PAIR_BASIS(f64, double)
