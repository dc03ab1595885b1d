// PaiNN interaction backward per source atom j (one thread per (j, channel)): the
// edges out of j are the reverses of j's own CSR edges (the list is symmetric), so
// j gathers over its CSR in order (no atomics). For the reverse of edge e (i -> j as
// stored, direction -sign u):
//   gx_s,j += gq1_i fc w_s;  gx_R,j += fc w_R sum_a gmu1_i,a dir_a;
//   gx_M,j += fc w_M sum_a gmu1_i,a mu_j,a;  gmu_out,j,a = gmu1_j,a + sum gmu1_i,a fc w_M x_M,j
template <typename T>
__device__ void painn_message_backward_impl(int n_atoms, int f, const u32* offsets, const u32* source,
                                            const u32* edge_pair, const T* raw, const T* cut, const T* unit,
                                            const T* x, const T* mu_in, const T* gq1, const T* gmu1, T* gx,
                                            T* gmu_out) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)n_atoms * f) return;
    int j = (int)(idx / f), c = (int)(idx % f);
    size_t f3 = 3 * (size_t)f;
    const T* mj = mu_in + j * f3;
    T xm = x[j * f3 + 2 * f + c];
    T gs = T(0), gr = T(0), gm = T(0);
    T g0 = gmu1[j * f3 + c], g1 = gmu1[j * f3 + f + c], g2 = gmu1[j * f3 + 2 * f + c];
    for (u32 e = offsets[j]; e < offsets[j + 1]; e++) {
        u32 i = source[e], word = edge_pair[e], p = word & EDGE_PAIR_MASK;
        // e points i -> j with direction sign*u; its reverse j -> i has -sign*u.
        T sign = (word & EDGE_REVERSE) ? T(1) : T(-1);
        T fc = cut[p];
        const T* fr = raw + p * f3;
        const T* gmi = gmu1 + i * f3;
        T along = sign * (gmi[c] * unit[3 * p] + gmi[f + c] * unit[3 * p + 1] + gmi[2 * f + c] * unit[3 * p + 2]);
        T with_mu = gmi[c] * mj[c] + gmi[f + c] * mj[f + c] + gmi[2 * f + c] * mj[2 * f + c];
        T wv = fc * fr[2 * f + c];
        gs += gq1[(size_t)i * f + c] * fc * fr[c];
        gr += fc * fr[f + c] * along;
        gm += wv * with_mu;
        T scale = wv * xm;
        g0 += gmi[c] * scale;
        g1 += gmi[f + c] * scale;
        g2 += gmi[2 * f + c] * scale;
    }
    gx[j * f3 + c] = gs;
    gx[j * f3 + f + c] = gr;
    gx[j * f3 + 2 * f + c] = gm;
    gmu_out[j * f3 + c] = g0;
    gmu_out[j * f3 + f + c] = g1;
    gmu_out[j * f3 + 2 * f + c] = g2;
}
#define PAINN_MESSAGE_BACKWARD(SUFFIX, T)                                                                              \
    extern "C" __global__ void painn_message_backward_##SUFFIX(int n_atoms, int f, const u32* offsets,               \
                                                               const u32* source, const u32* edge_pair, const T* raw, \
                                                               const T* cut, const T* unit, const T* x,              \
                                                               const T* mu_in, const T* gq1, const T* gmu1, T* gx,   \
                                                               T* gmu_out) {                                        \
        wait_for_previous_kernel_();                                                                                \
        painn_message_backward_impl<T>(n_atoms, f, offsets, source, edge_pair, raw, cut, unit, x, mu_in, gq1, gmu1, \
                                       gx, gmu_out);                                                                \
    }
PAINN_MESSAGE_BACKWARD(f32, float)
PAINN_MESSAGE_BACKWARD(f64, double)
