// The f32 update MLP of one block (update.cu's operation, same arguments and outputs) on
// tensor cores, for large systems: a tile of 16 atoms per block of H threads (H / 32
// warps; warp w owns the channels [32 w, 32 w + 32) in every output part), both GEMMs as
// mma.m16n8k8 TF32 with the 3xTF32 split: a b ~ a_hi b_hi + a_hi b_lo + a_lo b_hi, with
// x_hi = tf32(x) and x_lo = tf32(x - x_hi), accumulated in f32. That keeps about 21
// significant bits per product (a single TF32 product keeps 11: not f32 accuracy), at a
// third of the tensor-core rate, still several times the f32 FMA rate.
//   z = U1 [s', |v'|] + c1 (16 x 2H times 2H x H), y = U2 silu(z) + c2 (16 x H times H x 3H)
// The fragments are laid out so that each thread holds ds, g1 and g2 of the same atoms and
// channels: the epilogue (s'' = s' + ds, v'' = v' g1 + (M v') g2) runs in registers.
// Deterministic (fixed order of the mma chain); not bitwise equal to update.cu (another
// summation order), within f32 rounding of it.
#define TC_ATOMS 16
#define TC_PAD 4  // row padding of the shared tiles: conflict-free fragment loads

__device__ __forceinline__ unsigned tf32_(float x) {
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}

// x = hi + lo, both TF32.
__device__ __forceinline__ void tf32_split_(float x, unsigned& hi, unsigned& lo) {
    hi = tf32_(x);
    lo = tf32_(x - __uint_as_float(hi));
}

__device__ __forceinline__ void mma_tf32_(float c[4], const unsigned a[4], const unsigned b[2]) {
#if __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    __trap();  // the host selects this kernel on sm_80 and newer only
#endif
}

// c += A B over one k-step of 8 with the 3xTF32 split (small terms first).
__device__ __forceinline__ void mma_3xtf32_(float c[4], const unsigned a_hi[4], const unsigned a_lo[4],
                                            float b0, float b1) {
    unsigned b_hi[2], b_lo[2];
    tf32_split_(b0, b_hi[0], b_lo[0]);
    tf32_split_(b1, b_hi[1], b_lo[1]);
    mma_tf32_(c, a_lo, b_hi);
    mma_tf32_(c, a_hi, b_lo);
    mma_tf32_(c, a_hi, b_hi);
}

// A fragment (16 x 8, row-major tile in shared memory with row stride `ld`) at column k0.
__device__ __forceinline__ void load_a_(const float* tile, int ld, int k0, int g, int t, unsigned hi[4],
                                        unsigned lo[4]) {
    tf32_split_(tile[g * ld + k0 + t], hi[0], lo[0]);
    tf32_split_(tile[(g + 8) * ld + k0 + t], hi[1], lo[1]);
    tf32_split_(tile[g * ld + k0 + t + 4], hi[2], lo[2]);
    tf32_split_(tile[(g + 8) * ld + k0 + t + 4], hi[3], lo[3]);
}

extern "C" __global__ void __launch_bounds__(H) update_tc_f32(
    int n_atoms, const float* s_mid, const float* v_mid, const float* w1t, const float* b1, const float* w2t,
    const float* b2, const float* mixing, int vector_update, float* z_out, float* y_out, float* s_out,
    float* v_out) {
    const int LX = 2 * H + TC_PAD, LH = H + TC_PAD;
    __shared__ __align__(16) float xs[TC_ATOMS * (2 * H + TC_PAD)];  // [atom][s', |v'|]
    __shared__ __align__(16) float hs[TC_ATOMS * (H + TC_PAD)];      // [atom][silu(z)]
    int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    int g = lane >> 2, t = lane & 3;  // fragment row group and thread in group
    int base = blockIdx.x * TC_ATOMS;
    for (int a = 0; a < TC_ATOMS; a++) {
        int i = base + a;
        float s = 0.0f, nrm = 0.0f;
        if (i < n_atoms) {
            s = s_mid[(size_t)i * H + tid];
            float vx = v_mid[(size_t)i * H3 + tid], vy = v_mid[(size_t)i * H3 + H + tid],
                  vz = v_mid[(size_t)i * H3 + 2 * H + tid];
            nrm = sqrt(vx * vx + vy * vy + vz * vz);  // update.cu's expression
        }
        xs[a * LX + tid] = s;
        xs[a * LX + H + tid] = nrm;
    }
    __syncthreads();
    int c0 = 32 * warp;  // this warp's channels
    // GEMM 1: z[16 x H], this warp's 32 columns as 4 n-tiles.
    float acc[4][4];
#pragma unroll
    for (int j = 0; j < 4; j++) {
        float lo_col = b1[c0 + 8 * j + 2 * t], hi_col = b1[c0 + 8 * j + 2 * t + 1];
        acc[j][0] = lo_col;
        acc[j][1] = hi_col;
        acc[j][2] = lo_col;
        acc[j][3] = hi_col;
    }
#pragma unroll 2
    for (int k0 = 0; k0 < 2 * H; k0 += 8) {
        unsigned a_hi[4], a_lo[4];
        load_a_(xs, LX, k0, g, t, a_hi, a_lo);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int n = c0 + 8 * j + g;
            mma_3xtf32_(acc[j], a_hi, a_lo, w1t[(size_t)(k0 + t) * H + n], w1t[(size_t)(k0 + t + 4) * H + n]);
        }
    }
#pragma unroll
    for (int j = 0; j < 4; j++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int row = g + 8 * (e >> 1), col = c0 + 8 * j + 2 * t + (e & 1);
            int i = base + row;
            if (i < n_atoms) z_out[(size_t)i * H + col] = acc[j][e];
            hs[row * LH + col] = silu_(acc[j][e]);
        }
    }
    __syncthreads();
    // GEMM 2: y[16 x 3H]; part q's n-tiles j cover channels c0 + 8 j .. + 8.
    float y[3][4][4];
#pragma unroll
    for (int q = 0; q < 3; q++)
#pragma unroll
        for (int j = 0; j < 4; j++) {
            float lo_col = b2[q * H + c0 + 8 * j + 2 * t], hi_col = b2[q * H + c0 + 8 * j + 2 * t + 1];
            y[q][j][0] = lo_col;
            y[q][j][1] = hi_col;
            y[q][j][2] = lo_col;
            y[q][j][3] = hi_col;
        }
    for (int k0 = 0; k0 < H; k0 += 8) {
        unsigned a_hi[4], a_lo[4];
        load_a_(hs, LH, k0, g, t, a_hi, a_lo);
#pragma unroll
        for (int q = 0; q < 3; q++)
#pragma unroll
            for (int j = 0; j < 4; j++) {
                int n = q * H + c0 + 8 * j + g;
                mma_3xtf32_(y[q][j], a_hi, a_lo, w2t[(size_t)(k0 + t) * H3 + n], w2t[(size_t)(k0 + t + 4) * H3 + n]);
            }
    }
    // Epilogue per (atom, channel) held by this thread.
#pragma unroll
    for (int j = 0; j < 4; j++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int row = g + 8 * (e >> 1), c = c0 + 8 * j + 2 * t + (e & 1);
            int i = base + row;
            if (i >= n_atoms) continue;
            s_out[(size_t)i * H + c] = xs[row * LX + c] + y[0][j][e];
            if (vector_update) {
                y_out[(size_t)i * 2 * H + c] = y[1][j][e];
                y_out[(size_t)i * 2 * H + H + c] = y[2][j][e];
                float v0 = v_mid[(size_t)i * H3 + c], v1 = v_mid[(size_t)i * H3 + H + c],
                      v2 = v_mid[(size_t)i * H3 + 2 * H + c];
                float out[3];
                vector_gate_(v0, v1, v2, y[1][j][e], y[2][j][e], mixing, out);
                for (int r = 0; r < 3; r++) v_out[(size_t)i * H3 + r * H + c] = out[r];
            }
        }
    }
}
