// PaiNN interaction messages, aggregated per destination atom over its CSR edges in
// the host's order (no atomics): one thread per (atom i, channel c).
//   q_i += sum_e fc w_s x_s,j;  mu_i,a += sum_e (fc w_R x_R,j) u_a + (fc w_M x_M,j) mu_j,a
// raw = Wf phi + bf per pair (P x 3F, before the cutoff fc); the edge word holds the
// pair and EDGE_REVERSE for the edge i -> j of a pair (direction -u).
template <typename T>
__device__ void painn_message_impl(int n_atoms, int f, const u32* offsets, const u32* source, const u32* edge_pair,
                                   const T* raw, const T* cut, const T* unit, const T* x, const T* q_in,
                                   const T* mu_in, T* q_out, T* mu_out) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)n_atoms * f) return;
    int i = (int)(idx / f), c = (int)(idx % f);
    size_t f3 = 3 * (size_t)f;
    T q = q_in[(size_t)i * f + c];
    T m0 = mu_in[i * f3 + c], m1 = mu_in[i * f3 + f + c], m2 = mu_in[i * f3 + 2 * f + c];
    for (u32 e = offsets[i]; e < offsets[i + 1]; e++) {
        u32 j = source[e], word = edge_pair[e], p = word & EDGE_PAIR_MASK;
        T sign = (word & EDGE_REVERSE) ? T(-1) : T(1);
        T fc = cut[p];
        const T* fr = raw + p * f3;
        const T* xj = x + j * f3;
        const T* mj = mu_in + j * f3;
        q += fc * fr[c] * xj[c];
        T radial = fc * fr[f + c] * xj[f + c];
        T vector = fc * fr[2 * f + c] * xj[2 * f + c];
        m0 += radial * sign * unit[3 * p] + vector * mj[c];
        m1 += radial * sign * unit[3 * p + 1] + vector * mj[f + c];
        m2 += radial * sign * unit[3 * p + 2] + vector * mj[2 * f + c];
    }
    q_out[(size_t)i * f + c] = q;
    mu_out[i * f3 + c] = m0;
    mu_out[i * f3 + f + c] = m1;
    mu_out[i * f3 + 2 * f + c] = m2;
}
#define PAINN_MESSAGE(SUFFIX, T)                                                                                    \
    extern "C" __global__ void painn_message_##SUFFIX(int n_atoms, int f, const u32* offsets, const u32* source,  \
                                                      const u32* edge_pair, const T* raw, const T* cut,           \
                                                      const T* unit, const T* x, const T* q_in, const T* mu_in,   \
                                                      T* q_out, T* mu_out) {                                          \
        wait_for_previous_kernel_();                                                                                  \
        painn_message_impl<T>(n_atoms, f, offsets, source, edge_pair, raw, cut, unit, x, q_in, mu_in, q_out, mu_out); \
    }
PAINN_MESSAGE(f32, float)
PAINN_MESSAGE(f64, double)
