// Shared helpers for every mlff kernel. The engine compiles common.cuh followed by
// all kernels/*.cu as one NVRTC program, with these macros defined on the command
// line (compile-time constants let loops unroll and arrays live in registers):
//   HIDDEN   hidden width H (a multiple of 32)
//   TILE     atoms per block in the per-atom MLP kernels (f32; f64 uses TILE/2)
// Every kernel exists twice, with the suffix _f32 and _f64, from one template.

#ifndef HIDDEN
#define HIDDEN 128
#endif
#ifndef TILE
#define TILE 16
#endif

#define H HIDDEN
#define H3 (3 * HIDDEN)

typedef unsigned int u32;

// Sign bit of a packed edge word: set for the reverse edge i -> j of a pair (vector -r_p).
#define EDGE_REVERSE 0x80000000u
#define EDGE_PAIR_MASK 0x7fffffffu

template <typename T> struct Vec2;
template <> struct Vec2<float> { typedef float2 type; };
template <> struct Vec2<double> { typedef double2 type; };

template <typename T> __device__ __forceinline__ T sigmoid_(T z) { return T(1) / (T(1) + exp(-z)); }
template <typename T> __device__ __forceinline__ T silu_(T z) { return z * sigmoid_(z); }
// d silu / dz = s (1 + z (1 - s)), s = sigmoid(z).
template <typename T> __device__ __forceinline__ T dsilu_(T z) {
    T s = sigmoid_(z);
    return s * (T(1) + z * (T(1) - s));
}

// The filter phi(d) of one block as a cubic Hermite table over [0, rc]: node k at
// d = k h stores (phi, h dphi/dd) for each of the 3H channels, rows of 3H pairs.
template <typename T> struct Spline {
    int k;  // interval
    T t;    // position inside it, in [0, 1]
    T h00, h10, h01, h11;      // value weights
    T d00, d10, d01, d11;      // derivative weights (already divided by h)
    __device__ __forceinline__ Spline(T d, T inv_h, int n_nodes) {
        T x = d * inv_h;
        int kk = (int)x;
        if (kk > n_nodes - 2) kk = n_nodes - 2;
        if (kk < 0) kk = 0;
        k = kk;
        t = x - (T)kk;
        T t2 = t * t, t3 = t2 * t;
        h00 = T(2) * t3 - T(3) * t2 + T(1);
        h10 = t3 - T(2) * t2 + t;
        h01 = T(3) * t2 - T(2) * t3;
        h11 = t3 - t2;
        d00 = (T(6) * t2 - T(6) * t) * inv_h;
        d10 = (T(3) * t2 - T(4) * t + T(1)) * inv_h;
        d01 = -d00;
        d11 = (T(3) * t2 - T(2) * t) * inv_h;
    }
    // Value of channel q (0..3H) from a table of rows of 3H (value, h*derivative) pairs.
    __device__ __forceinline__ T value(const typename Vec2<T>::type* table, int q) const {
        typename Vec2<T>::type a = table[(size_t)k * H3 + q];
        typename Vec2<T>::type b = table[(size_t)(k + 1) * H3 + q];
        return h00 * a.x + h10 * a.y + h01 * b.x + h11 * b.y;
    }
    __device__ __forceinline__ void value_and_derivative(const typename Vec2<T>::type* table, int q, T& f, T& df) const {
        typename Vec2<T>::type a = table[(size_t)k * H3 + q];
        typename Vec2<T>::type b = table[(size_t)(k + 1) * H3 + q];
        f = h00 * a.x + h10 * a.y + h01 * b.x + h11 * b.y;
        df = d00 * a.x + d10 * a.y + d01 * b.x + d11 * b.y;
    }
};

// Sum over a warp in a fixed butterfly order (deterministic).
template <typename T> __device__ __forceinline__ T warp_sum(T x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

// Atoms per block of the per-atom MLP kernels: f64 halves it to keep shared memory small.
template <typename T> struct Tile { enum { value = sizeof(T) == 8 ? (TILE / 2 > 0 ? TILE / 2 : 1) : TILE }; };
