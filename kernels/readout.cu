// One dense layer on a tile, out[o][a] = sum_m W[m * N_OUT + o] f(in[m][a]) (f = silu if
// SILU, else identity), by all NT threads of the block: thread t = slice * N_OUT + o sums
// its slice of the inputs; threads t < N_OUT then add the slices in order (deterministic)
// into acc. Every thread must call it (it has barriers). The weights come from
// `DenseWeights`: read from global memory in the loop, or (PRELOAD) loaded into registers
// at the start of the kernel, before its inputs (the small-system readout: its four
// layers then wait for one round trip to L2 instead of one per layer); the same values,
// so the same sums bitwise.
template <typename T, int NT, int N_IN, int N_OUT, bool PRELOAD> struct DenseWeights {
    enum { SL = NT / N_OUT, K = N_IN / SL };
    static_assert(NT % N_OUT == 0 && N_IN % (NT / N_OUT) == 0, "slices must divide the inputs");
    const T* w;
    T r[PRELOAD ? K : 1];
    __device__ __forceinline__ DenseWeights(const T* w_) : w(w_) {
        if (PRELOAD) {
            int o = threadIdx.x % N_OUT, slice = threadIdx.x / N_OUT;
#pragma unroll
            for (int k = 0; k < K; k++) r[PRELOAD ? k : 0] = w[(slice * K + k) * N_OUT + o];
        }
    }
    // Weight k of this thread's slice.
    __device__ __forceinline__ T at(int k) const {
        if (PRELOAD) return r[PRELOAD ? k : 0];
        return w[(threadIdx.x / N_OUT * K + k) * N_OUT + threadIdx.x % N_OUT];
    }
};

template <typename T, int TA, int NT, int N_IN, int N_OUT, bool SILU, bool PRELOAD>
__device__ __forceinline__ void dense_split(const DenseWeights<T, NT, N_IN, N_OUT, PRELOAD>& w, const T (*in)[TA],
                                            T (*part)[TA], T* acc) {
    const int SL = NT / N_OUT, K = N_IN / SL;
    int t = threadIdx.x, slice = t / N_OUT;
    T p[TA];
    for (int a = 0; a < TA; a++) p[a] = T(0);
#pragma unroll(PRELOAD ? K : 4)
    for (int k = 0; k < K; k++) {
        T wv = w.at(k);
        int m = slice * K + k;
#pragma unroll
        for (int a = 0; a < TA; a++) p[a] += wv * (SILU ? silu_(in[m][a]) : in[m][a]);
    }
    for (int a = 0; a < TA; a++) part[t][a] = p[a];
    __syncthreads();
    if (t < N_OUT) {
        for (int a = 0; a < TA; a++) {
            T sum = part[t][a];
            for (int r = 1; r < SL; r++) sum += part[r * N_OUT + t][a];
            acc[a] = sum;
        }
    }
    __syncthreads();
}

// Energy head and its gradient for a tile of TA atoms by H x S threads:
//   E_i = C silu(B silu(A s + a) + b) + c,  g_s = dE_i/ds_i.
// Ghost atoms (is_local[i] == 0) own no energy: E_i = 0 and g_s = 0.
template <typename T, int TA, int S>
__device__ void readout_impl(int n_atoms, const unsigned char* is_local, const T* s, const T* at, const T* a_bias, const T* a_w,
                             const T* bt, const T* b_bias, const T* b_w, const T* c_w, const T* c_bias,
                             T* atom_energy, T* grad_s) {
    const int H2 = H / 2, H4 = H / 4, NT = H * S;
    // [input][atom]: contiguous atoms per input for vector loads (see update.cu).
    __shared__ __align__(16) T x[H][TA];
    __shared__ __align__(16) T za[H2][TA];
    __shared__ __align__(16) T zb[H4][TA];
    __shared__ __align__(16) T g[H2][TA];
    __shared__ __align__(16) T part[NT][TA];
    int t = threadIdx.x;
    int base = blockIdx.x * TA;
    const bool P = S > 1;  // small systems: weights into registers first
    DenseWeights<T, NT, H, H2, P> wa(at);
    DenseWeights<T, NT, H2, H4, P> wb(bt);
    DenseWeights<T, NT, H4, H2, P> wbt(b_w);
    DenseWeights<T, NT, H2, H, P> wat(a_w);
    wait_for_previous_kernel_();  // the weights above do not depend on it
    for (int k = t; k < H * TA; k += NT) {
        int c = k % H, a = k / H, i = base + a;
        x[c][a] = i < n_atoms ? s[(size_t)i * H + c] : T(0);
    }
    __syncthreads();
    T acc[TA];
    dense_split<T, TA, NT, H, H2, false>(wa, x, part, acc);
    if (t < H2)
        for (int a = 0; a < TA; a++) za[t][a] = a_bias[t] + acc[a];
    __syncthreads();
    dense_split<T, TA, NT, H2, H4, true>(wb, za, part, acc);
    if (t < H4)
        for (int a = 0; a < TA; a++) zb[t][a] = b_bias[t] + acc[a];
    __syncthreads();
    // Energy: one thread per atom, fixed order.
    if (t < TA) {
        int i = base + t;
        if (i < n_atoms) {
            T e = c_bias[0];
            for (int k = 0; k < H4; k++) e += c_w[k] * silu_(zb[k][t]);
            atom_energy[i] = is_local[i] ? e : T(0);
        }
    }
    // Backward: g_zb = C * silu'(zb); g_za = (B^T g_zb) * silu'(za); g_s = A^T g_za.
    __syncthreads();
    if (t < H4)
        for (int a = 0; a < TA; a++) zb[t][a] = c_w[t] * dsilu_(zb[t][a]);
    __syncthreads();
    dense_split<T, TA, NT, H4, H2, false>(wbt, zb, part, acc);
    if (t < H2)
        for (int a = 0; a < TA; a++) g[t][a] = acc[a] * dsilu_(za[t][a]);
    __syncthreads();
    dense_split<T, TA, NT, H2, H, false>(wat, g, part, acc);
    if (t < H) {
        for (int a = 0; a < TA; a++) {
            int i = base + a;
            if (i < n_atoms) grad_s[(size_t)i * H + t] = is_local[i] ? acc[a] : T(0);
        }
    }
}
#define READOUT(SUFFIX, T, TA, S)                                                                         \
    extern "C" __global__ void __launch_bounds__(H * S) readout_##SUFFIX(                             \
        int n_atoms, const unsigned char* is_local, const T* s, const T* at, const T* a_bias, const T* a_w, const T* bt, \
        const T* b_bias, const T* b_w, const T* c_w, const T* c_bias, T* atom_energy, T* grad_s) {    \
        readout_impl<T, TA, S>(n_atoms, is_local, s, at, a_bias, a_w, bt, b_bias, b_w, c_w, c_bias, atom_energy, \
                        grad_s);                                                                      \
    }
READOUT(f32, float, Tile<float>::value, 1)
READOUT(f64, double, Tile<double>::value, 1)
// Small systems: two atoms per block, SMALL_SLICES x H threads.
READOUT(small_f32, float, 2, SMALL_SLICES)
READOUT(small_f64, double, 2, SMALL_SLICES)
