// The update MLP of update.cu (large f32 systems) as register-tiled products: a block of
// 256 threads takes 32 atoms (320 threads and 40 atoms: wide10); a thread owns 4 atoms and
// CPT = H / 32 channels of each product (ut_tile_origin). The weights
// come through shared memory in slabs of 16 (wide) or 8 (narrow) input rows (two buffers: the next slab is
// copied, asynchronously on sm_80+, while this one is used), loaded by the whole block with
// independent vector loads (update.cu waits on one global weight load per input: its
// products run at ~25% of the FMA rate, bound by that latency); every step over the
// inputs then reads 4 activations (one shared vector load, the same address for the
// warp) and CPT weights (one shared vector load) for 4 CPT FMAs, and the block reads
// each weight once per 32 atoms instead of 16. Each output is summed over the inputs in
// order, starting from the bias, with the expression of update.cu (acc += w * x), so the
// results are the same numbers bitwise. Which systems run it: kernels.rs, TiledKernel::for_rows
// (MLFF_CUDA_UPDATE=tiled|narrow|wide10|plain forces one). Dynamic shared memory:
// UT_SHARED_FLOATS(KS, W) floats.
// W: warps per block (8: 32 atoms; 10: 40 atoms, the wide10 variant).
#define UT_AT 4  // atoms per thread
#define UT_CPT (H / 32)
// Atoms and threads of a block of W warps.
#define UT_ATOMS_OF(W) (UT_AT * (W))
#define UT_THREADS_OF(W) (32 * (W))
// Row stride of the activation tile: a multiple of 4 floats (16-byte rows for the vector
// reads) and not of 32, so a warp's row-wise vector stores spread over the banks.
#define UT_STRIDE_OF(W) (UT_ATOMS_OF(W) + 4)
// Input rows per weight slab, per variant: the wide kernels (two blocks per SM) take 16;
// the narrow ones 8, so that three blocks fit an SM (registers capped by the launch bound:
// a few spills), for grids of just over one wave of the wide kernels (kernels.rs). The
// wide10 kernels (blocks of 10 warps, 40 atoms, two per SM) serve grids that the wide
// kernels would run in 1 to 1.5 waves but that fit one wave of 40-atom blocks: an SM then
// takes at most 80 atoms instead of the narrow kernels' 96 (3 x 32).
#ifndef UT_KS_WIDE  // MLFF_CUDA_DEFINES=-DUT_KS_WIDE=n (measurements; a power of two up to 16)
#define UT_KS_WIDE 16
#endif
#define UT_KS_NARROW 8
// Steps over a slab's rows unrolled together (MLFF_CUDA_DEFINES=-DUT_UNROLL=n, measurements).
#ifndef UT_UNROLL
#define UT_UNROLL 4
#endif
#define UT_PRAGMA_(x) _Pragma(#x)
#define UT_PRAGMA(x) UT_PRAGMA_(x)
#define UT_SHARED_FLOATS(KS, W) (2 * H * UT_STRIDE_OF(W) + 2 * (KS) * H3)
// Read by the host (kernels.rs, `tiled`) to size the launch: one definition of the layout.
extern "C" __device__ const int update_tiled_f32_shared_bytes = UT_SHARED_FLOATS(UT_KS_WIDE, 8) * 4;
extern "C" __device__ const int update_tiled_narrow_f32_shared_bytes = UT_SHARED_FLOATS(UT_KS_NARROW, 8) * 4;
extern "C" __device__ const int update_tiled_wide10_f32_shared_bytes = UT_SHARED_FLOATS(UT_KS_WIDE, 10) * 4;

extern __shared__ float4 ut_shared[];

// Rows [row0, row0 + KS) of a row-major weight matrix of `width` floats per row into
// dst, by the whole block (independent 16-byte copies; asynchronous on sm_80 and later,
// one commit group per slab: the caller waits with ut_slab_wait and a barrier).
template <int KS, int W> __device__ __forceinline__ void ut_slab(const float* w, int row0, int width, float* dst) {
    const float4* src = reinterpret_cast<const float4*>(w + (size_t)row0 * width);
    float4* d = reinterpret_cast<float4*>(dst);
    for (int i = threadIdx.x; i < KS * width / 4; i += UT_THREADS_OF(W)) {
#if __CUDA_ARCH__ >= 800
        unsigned to = (unsigned)__cvta_generic_to_shared(d + i);
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(to), "l"(src + i) : "memory");
#else
        d[i] = src[i];
#endif
    }
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

// Waits until this thread's copies of all slabs but the newest `pending` (0 or 1) have landed.
template <int PENDING> __device__ __forceinline__ void ut_slab_wait() {
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group %0;\n" ::"n"(PENDING) : "memory");
#endif
}

// CPT consecutive floats (16-, 8- or 4-byte aligned: c0 is a multiple of CPT, a power of two).
__device__ __forceinline__ void ut_load(const float* p, float out[UT_CPT]) {
#if UT_CPT == 4
    float4 v = *reinterpret_cast<const float4*>(p);
    out[0] = v.x;
    out[1] = v.y;
    out[2] = v.z;
    out[3] = v.w;
#elif UT_CPT == 2
    float2 v = *reinterpret_cast<const float2*>(p);
    out[0] = v.x;
    out[1] = v.y;
#else
    for (int j = 0; j < UT_CPT; j++) out[j] = p[j];
#endif
}
__device__ __forceinline__ void ut_store(float* p, const float in[UT_CPT]) {
#if UT_CPT == 4
    *reinterpret_cast<float4*>(p) = make_float4(in[0], in[1], in[2], in[3]);
#elif UT_CPT == 2
    *reinterpret_cast<float2*>(p) = make_float2(in[0], in[1]);
#else
    for (int j = 0; j < UT_CPT; j++) p[j] = in[j];
#endif
}

// Step k of a slab loop over `slabs` slabs of KS rows in two buffers of STRIDE floats
// at ws (slab k in buffer k & 1): copies slab k + 1 (if any) into the other buffer and
// waits until slab k is in shared memory for every thread. The buffer of slab k + 1 was
// last read in step k - 1, which the caller ends with a barrier.
template <int KS, int W, int STRIDE>
__device__ __forceinline__ void ut_slab_advance(const float* w, int k, int slabs, int width, float* ws) {
    if (k + 1 < slabs) {
        ut_slab<KS, W>(w, (k + 1) * KS, width, ws + ((k + 1) & 1) * STRIDE);
        ut_slab_wait<1>();
    } else {
        ut_slab_wait<0>();
    }
    __syncthreads();  // slab k is in shared memory for every thread
}

// The tile a thread owns: atoms a0 .. a0 + 3 and channels c0 .. c0 + CPT - 1. Warps 2m and
// 2m + 1 share atom groups 2m and 2m + 1 (even lanes the first, odd lanes the second) and
// split the channels in halves, lane pairs (2i, 2i + 1) sharing their CPT channels. Shared
// memory returns 128 bytes per cycle, so a warp's 16-byte load takes four cycles, and two
// where lanes 2i and 2i + 1 (or 4i + j and 4i + j + 2) read one address: every weight load
// of a product is then such a load, and so is every activation load. (With thread = (lane,
// warp) = (channels, atoms) the activation load was a broadcast, two cycles, but each weight
// load took four: 6 cycles per 16 FMAs instead of 4.) Any one-to-one map gives the same
// sums; the caller and ut_product must use this one.
template <int W> __device__ __forceinline__ void ut_tile_origin(int& a0, int& c0) {
    static_assert(W % 2 == 0, "warps come in pairs");
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    a0 = UT_AT * (2 * (warp >> 1) + (lane & 1));
    c0 = UT_CPT * (16 * (warp & 1) + (lane >> 1));
}

// A tile's product with row-major weights w (`rows` input rows of `width` floats): for
// each part p < parts, acc[p][i][j] += sum over input rows r, in order, of
// w[r][offset_p + c0 + j] in[r][a0 + i], with offset_p = offsets[p]; the caller sets acc
// to the bias (or zero) first. `in` is the activation tile ([input][atom], published by
// a barrier before the call; the first slab's barrier does that). The weights come in
// slabs of KS rows through two buffers of ws: slab k + 1 is copied while slab k is
// used. Ends with a barrier (ws free again). rows: a multiple of KS.
template <int KS, int W, int P>
__device__ __forceinline__ void ut_product(const float* w, int rows, int width, const int offsets[P], int parts,
                                           const float (*in)[UT_STRIDE_OF(W)], float* ws,
                                           float acc[P][UT_AT][UT_CPT]) {
    int a0, c0;
    ut_tile_origin<W>(a0, c0);
    int slabs = rows / KS;
    ut_slab<KS, W>(w, 0, width, ws);
    for (int k = 0; k < slabs; k++) {
        ut_slab_advance<KS, W, KS * H3>(w, k, slabs, width, ws);
        const float* slab = ws + (k & 1) * KS * H3;
        int r0 = k * KS;
        UT_PRAGMA(unroll UT_UNROLL)
        for (int kk = 0; kk < KS; kk++) {
            float4 xv = *reinterpret_cast<const float4*>(&in[r0 + kk][a0]);
            float xa[UT_AT] = {xv.x, xv.y, xv.z, xv.w};
#pragma unroll
            for (int p = 0; p < P; p++) {
                if (p >= parts) break;
                float wv[UT_CPT];
                ut_load(slab + kk * width + offsets[p] + c0, wv);
#pragma unroll
                for (int i = 0; i < UT_AT; i++)
#pragma unroll
                    for (int j = 0; j < UT_CPT; j++) acc[p][i][j] += wv[j] * xa[i];
            }
        }
        __syncthreads();  // this buffer is overwritten two steps on
    }
}

// Four atoms' values of one channel as one row segment of a tile: a vector store.
template <int S> __device__ __forceinline__ void ut_put(float (*tile)[S], int row, int a0, const float v[UT_AT]) {
    *reinterpret_cast<float4*>(&tile[row][a0]) = make_float4(v[0], v[1], v[2], v[3]);
}

template <int KS, int W>
__device__ __forceinline__ void update_tiled_impl(int n_atoms, const float* s_mid, const float* v_mid, const float* w1t,
                                                  const float* b1, const float* w2t, const float* b2,
                                                  const float* mixing, int vector_update, float* z_out, float* y_out,
                                                  float* s_out, float* v_out) {
    // x: [input][atom] (row stride UT_STRIDE_OF(W)); after the first product its rows 0..H-1
    // hold silu(z). ws: the current weight slab, [row][column].
    float(*x)[UT_STRIDE_OF(W)] = reinterpret_cast<float(*)[UT_STRIDE_OF(W)]>(ut_shared);
    float* ws = reinterpret_cast<float*>(ut_shared) + 2 * H * UT_STRIDE_OF(W);
    int a0, c0;
    ut_tile_origin<W>(a0, c0);
    int base = blockIdx.x * UT_ATOMS_OF(W);
    // Stage [s', n] of the thread's atoms and channels; s' stays in registers for s''.
    float s_keep[UT_AT][UT_CPT], nrm[UT_AT][UT_CPT];
    for (int i = 0; i < UT_AT; i++) {
        int a = base + a0 + i;
        float vx[UT_CPT], vy[UT_CPT], vz[UT_CPT];
        for (int j = 0; j < UT_CPT; j++) s_keep[i][j] = vx[j] = vy[j] = vz[j] = 0.0f;
        if (a < n_atoms) {
            ut_load(s_mid + (size_t)a * H + c0, s_keep[i]);
            ut_load(v_mid + (size_t)a * H3 + c0, vx);
            ut_load(v_mid + (size_t)a * H3 + H + c0, vy);
            ut_load(v_mid + (size_t)a * H3 + 2 * H + c0, vz);
        }
        for (int j = 0; j < UT_CPT; j++) nrm[i][j] = sqrt(vx[j] * vx[j] + vy[j] * vy[j] + vz[j] * vz[j]);
    }
    // Each channel's four atoms are one row segment: one vector store.
    for (int j = 0; j < UT_CPT; j++) {
        float sv[UT_AT], nv[UT_AT];
        for (int i = 0; i < UT_AT; i++) {
            sv[i] = s_keep[i][j];
            nv[i] = nrm[i][j];
        }
        ut_put(x, c0 + j, a0, sv);
        ut_put(x, H + c0 + j, a0, nv);
    }
    // (The first slab's barrier also publishes x.)
    // z = U1 [s', n] + c1.
    float acc[1][UT_AT][UT_CPT];
    {
        float bias[UT_CPT];
        ut_load(b1 + c0, bias);
        for (int i = 0; i < UT_AT; i++)
            for (int j = 0; j < UT_CPT; j++) acc[0][i][j] = bias[j];
        const int offsets[1] = {0};
        ut_product<KS, W, 1>(w1t, 2 * H, H, offsets, 1, x, ws, acc);
    }
    for (int i = 0; i < UT_AT; i++) {
        int a = base + a0 + i;
        if (a < n_atoms) ut_store(z_out + (size_t)a * H + c0, acc[0][i]);
    }
    // Every thread has read x (the slab loop's last barrier) before rows 0..H-1 become silu(z).
    for (int j = 0; j < UT_CPT; j++) {
        float h[UT_AT];
        for (int i = 0; i < UT_AT; i++) h[i] = silu_(acc[0][i][j]);
        ut_put(x, c0 + j, a0, h);
    }
    // (The first slab's barrier publishes silu(z).)
    // y = U2 silu(z) + c2: [ds, g1, g2] (the gates only with a vector update).
    const int parts = vector_update ? 3 : 1;
    float y[3][UT_AT][UT_CPT];
    for (int q = 0; q < 3; q++) {
        float bias[UT_CPT];
        ut_load(b2 + q * H + c0, bias);
        for (int i = 0; i < UT_AT; i++)
            for (int j = 0; j < UT_CPT; j++) y[q][i][j] = bias[j];
    }
    {
        const int offsets[3] = {0, H, 2 * H};
        ut_product<KS, W, 3>(w2t, H, H3, offsets, parts, x, ws, y);
    }
    for (int i = 0; i < UT_AT; i++) {
        int a = base + a0 + i;
        if (a >= n_atoms) break;
        float s_new[UT_CPT];
        for (int j = 0; j < UT_CPT; j++) s_new[j] = s_keep[i][j] + y[0][i][j];
        ut_store(s_out + (size_t)a * H + c0, s_new);
        if (!vector_update) continue;
        if (y_out) {  // null: update_backward recomputes the gates (large systems)
            ut_store(y_out + (size_t)a * 2 * H + c0, y[1][i]);
            ut_store(y_out + (size_t)a * 2 * H + H + c0, y[2][i]);
        }
        float vx[UT_CPT], vy[UT_CPT], vz[UT_CPT], ox[UT_CPT], oy[UT_CPT], oz[UT_CPT];
        ut_load(v_mid + (size_t)a * H3 + c0, vx);
        ut_load(v_mid + (size_t)a * H3 + H + c0, vy);
        ut_load(v_mid + (size_t)a * H3 + 2 * H + c0, vz);
        for (int j = 0; j < UT_CPT; j++) {
            float out[3];
            vector_gate_(vx[j], vy[j], vz[j], y[1][i][j], y[2][i][j], mixing, out);
            ox[j] = out[0];
            oy[j] = out[1];
            oz[j] = out[2];
        }
        ut_store(v_out + (size_t)a * H3 + c0, ox);
        ut_store(v_out + (size_t)a * H3 + H + c0, oy);
        ut_store(v_out + (size_t)a * H3 + 2 * H + c0, oz);
    }
}

#define UPDATE_TILED(NAME, KS, W, MIN_BLOCKS)                                                              \
    extern "C" __global__ void __launch_bounds__(UT_THREADS_OF(W), MIN_BLOCKS)                             \
        NAME(int n_atoms, const float* s_mid, const float* v_mid, const float* w1t, const float* b1,        \
             const float* w2t, const float* b2, const float* mixing, int vector_update, float* z_out,      \
             float* y_out, float* s_out, float* v_out) {                                                    \
        wait_for_previous_kernel_();                                                                        \
        update_tiled_impl<KS, W>(n_atoms, s_mid, v_mid, w1t, b1, w2t, b2, mixing, vector_update, z_out,    \
                                 y_out, s_out, v_out);                                                     \
    }
UPDATE_TILED(update_tiled_f32, UT_KS_WIDE, 8, 1)
UPDATE_TILED(update_tiled_narrow_f32, UT_KS_NARROW, 8, 3)
UPDATE_TILED(update_tiled_wide10_f32, UT_KS_WIDE, 10, 2)
