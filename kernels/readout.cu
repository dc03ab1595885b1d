// Energy head and its gradient for a tile of atoms (one block of H threads):
//   E_i = C silu(B silu(A s + a) + b) + c,  g_s = dE_i/ds_i.
// Ghost atoms (is_local[i] == 0) own no energy: E_i = 0 and g_s = 0.
template <typename T, int TA>
__device__ void readout_impl(int n_atoms, const unsigned char* is_local, const T* s, const T* at, const T* a_bias, const T* a_w,
                             const T* bt, const T* b_bias, const T* b_w, const T* c_w, const T* c_bias,
                             T* atom_energy, T* grad_s) {
    const int H2 = H / 2, H4 = H / 4;
    // [input][atom]: contiguous atoms per input for vector loads (see update.cu).
    __shared__ __align__(16) T x[H][TA];
    __shared__ __align__(16) T za[H2][TA];
    __shared__ __align__(16) T zb[H4][TA];
    __shared__ __align__(16) T g[H2][TA];
    int c = threadIdx.x;
    int base = blockIdx.x * TA;
    for (int a = 0; a < TA; a++) {
        int i = base + a;
        x[c][a] = i < n_atoms ? s[(size_t)i * H + c] : T(0);
    }
    __syncthreads();
    if (c < H2) {
        T acc[TA];
        for (int a = 0; a < TA; a++) acc[a] = a_bias[c];
        #pragma unroll (TA <= 2 ? 16 : 4)
        for (int m = 0; m < H; m++) {
            T w = at[m * H2 + c];
#pragma unroll
            for (int a = 0; a < TA; a++) acc[a] += w * x[m][a];
        }
        for (int a = 0; a < TA; a++) za[c][a] = acc[a];
    }
    __syncthreads();
    if (c < H4) {
        T acc[TA];
        for (int a = 0; a < TA; a++) acc[a] = b_bias[c];
        #pragma unroll (TA <= 2 ? 16 : 4)
        for (int m = 0; m < H2; m++) {
            T w = bt[m * H4 + c];
#pragma unroll
            for (int a = 0; a < TA; a++) acc[a] += w * silu_(za[m][a]);
        }
        for (int a = 0; a < TA; a++) zb[c][a] = acc[a];
    }
    __syncthreads();
    // Energy: one thread per atom, fixed order.
    if (c < TA) {
        int i = base + c;
        if (i < n_atoms) {
            T e = c_bias[0];
            for (int k = 0; k < H4; k++) e += c_w[k] * silu_(zb[k][c]);
            atom_energy[i] = is_local[i] ? e : T(0);
        }
    }
    // Backward: g_zb = C * silu'(zb); g_za = (B^T g_zb) * silu'(za); g_s = A^T g_za.
    __syncthreads();
    if (c < H4) {
        for (int a = 0; a < TA; a++) zb[c][a] = c_w[c] * dsilu_(zb[c][a]);
    }
    __syncthreads();
    if (c < H2) {
        T acc[TA];
        for (int a = 0; a < TA; a++) acc[a] = T(0);
        #pragma unroll (TA <= 2 ? 16 : 4)
        for (int k = 0; k < H4; k++) {
            T w = b_w[k * H2 + c];
#pragma unroll
            for (int a = 0; a < TA; a++) acc[a] += w * zb[k][a];
        }
        for (int a = 0; a < TA; a++) g[c][a] = acc[a] * dsilu_(za[c][a]);
    }
    __syncthreads();
    T acc[TA];
    for (int a = 0; a < TA; a++) acc[a] = T(0);
    #pragma unroll (TA <= 2 ? 16 : 4)
    for (int m = 0; m < H2; m++) {
        T w = a_w[m * H + c];
#pragma unroll
        for (int a = 0; a < TA; a++) acc[a] += w * g[m][a];
    }
    for (int a = 0; a < TA; a++) {
        int i = base + a;
        if (i < n_atoms) grad_s[(size_t)i * H + c] = is_local[i] ? acc[a] : T(0);
    }
}
#define READOUT(SUFFIX, T, TA)                                                                            \
    extern "C" __global__ void __launch_bounds__(H) readout_##SUFFIX(                                 \
        int n_atoms, const unsigned char* is_local, const T* s, const T* at, const T* a_bias, const T* a_w, const T* bt, \
        const T* b_bias, const T* b_w, const T* c_w, const T* c_bias, T* atom_energy, T* grad_s) {    \
        readout_impl<T, TA>(n_atoms, is_local, s, at, a_bias, a_w, bt, b_bias, b_w, c_w, c_bias, atom_energy, \
                        grad_s);                                                                      \
    }
READOUT(f32, float, Tile<float>::value)
READOUT(f64, double, Tile<double>::value)
// Two atoms per block: more blocks and shorter loops for small systems.
READOUT(small_f32, float, 2)
READOUT(small_f64, double, 2)
