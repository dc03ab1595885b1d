// The update MLP of update.cu (large f32 systems) on tensor cores: the products with U1
// and U2 as warp-level mma.sync m16n8k8 TF32 tiles with f32 accumulation, each operand
// split into a TF32 head and a TF32 remainder (x = hi + lo) and the product summed as
// lo*hi + hi*lo + hi*hi ("3xTF32": the dropped lo*lo term is ~2^-22 of the product, so
// the result has f32 accuracy, not TF32's 2^-11). The tensor cores truncate when they
// add into the accumulator, which biased long sums: with one accumulator through all
// 2H inputs the forces came out 1.2e-5 too small at 10k atoms (H100). So each k-step of
// 8 inputs starts from zero and its sum is added into the result with a rounded f32 add.
// Not bitwise equal to update.cu (the tensor cores sum in their own order); tested
// against the CPU f64 engine like every other kernel. Measured against update_tiled.cu
// in benches/gpu_results.md.
//
// A block takes 32 atoms (two m-tiles of 16) with H / 16 warps: warp w owns the output
// channels [16 w, 16 w + 16) of every part of every product (two n-tiles of 8), for all
// 32 atoms, so the gates g1, g2 of an (atom, channel) land in the thread that holds its
// ds, and every per-atom epilogue stays in registers. Fragment ownership (PTX ISA,
// m16n8k8 .tf32; g = lane / 4, t = lane % 4): A (atoms x inputs) a0 (g, t), a1 (g + 8, t),
// a2 (g, t + 4), a3 (g + 8, t + 4); B (inputs x channels) b0 (t, g), b1 (t + 4, g);
// C c0 (g, 2t), c1 (g, 2t + 1), c2 (g + 8, 2t), c3 (g + 8, 2t + 1). So a thread owns
// atoms g + 8 i (i < 4) and channels 16 w + 8 nt + 2 t + e (nt, e < 2).
// The activations sit in shared memory as [atom][input] with a row stride of inputs + 4
// floats (4 modulo 32 banks: the A fragment loads, bank 4 g + t, hit 32 different banks),
// the weight slabs as [row][channel] with rows of width + 8 floats (8 modulo 32: the B
// loads, bank 8 t + g, too). Global rows are read and written as float2 (a thread's two
// channels 2t, 2t + 1): a warp's access covers 8 atoms x 32 contiguous bytes.
// Requires sm_80 (mma .tf32, cp.async); H a multiple of 16. Measured on an H100 (10k
// water, benches/gpu_results.md) it runs as fast as update_tiled.cu, not faster: three
// mma.sync per product give back most of the tensor cores' advantage over the FMA units.
// So the f32 engine keeps the tiled kernels (MLFF_CUDA_UPDATE=mma selects this one);
// the mixed engine, whose tolerance is 1e-3, runs the one-pass variant (TF32 operands,
// `update_mma_tf32`) above SMALL_SYSTEM (kernels.rs, TiledPair::for_rows).
#define UM_ATOMS 32
#define UM_THREADS (2 * H)  // H / 16 warps
// Floats per weight slab buffer: 16 rows of 3H or 32 rows of H (um_product).
#define UM_SLAB (16 * (H3 + 8) > 32 * (H + 8) ? 16 * (H3 + 8) : 32 * (H + 8))
// The activation tile of INPUTS values per atom: its row stride, and the shared memory
// with STAGES slab buffers.
#define UM_STRIDE(INPUTS) ((INPUTS) + 4)
#define UM_SHARED_FLOATS(INPUTS, STAGES) (UM_ATOMS * UM_STRIDE(INPUTS) + (STAGES) * UM_SLAB)
// The forward's tile is 2H wide: three stages fit two blocks per SM (108 KB at H = 128);
// the backward's tile is 3H wide: two stages (100 KB).
#define UM_STAGES_FORWARD 3
#define UM_STAGES_BACKWARD 2
// Read by the host (kernels.rs, `tiled`) to size the launch: one definition of the layout.
extern "C" __device__ const int update_mma_f32_shared_bytes = UM_SHARED_FLOATS(2 * H, UM_STAGES_FORWARD) * 4;
extern "C" __device__ const int update_mma_tf32_shared_bytes = UM_SHARED_FLOATS(2 * H, UM_STAGES_FORWARD) * 4;
extern "C" __device__ const int update_mma_f32_threads = UM_THREADS;

// Accumulators of one thread for P parts: [part][m-tile][n-tile][c0..c3].
#define UM_ACC(P) float acc[P][2][2][4]

// x as a TF32 head (hi) and, with PASSES = 3, the TF32 rounding of the rest (lo).
template <int PASSES> __device__ __forceinline__ void tf32_split_(float x, u32& hi, u32& lo) {
#if __CUDA_ARCH__ >= 800
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(hi) : "f"(x));
    lo = 0u;
    if (PASSES == 3) {
        float rest = x - __uint_as_float(hi);
        asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(lo) : "f"(rest));
    }
#else
    hi = lo = 0u;
#endif
}

// c += a b for one m16n8k8 TF32 tile.
__device__ __forceinline__ void mma_tf32_(float c[4], const u32 a[4], u32 b0, u32 b1) {
#if __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// Rows [row0, row0 + KS) of a row-major weight matrix (WIDTH floats per row, a multiple
// of 4) into dst with rows of WIDTH + 8 floats, by the whole block; asynchronous, one
// commit group per call (an empty group where row0 >= rows, so that every step of the
// pipeline commits one and the waits count alike).
template <int KS, int WIDTH> __device__ __forceinline__ void um_slab(const float* w, int row0, int rows, float* dst) {
#if __CUDA_ARCH__ >= 800
    if (row0 < rows) {
        const float4* src = reinterpret_cast<const float4*>(w + (size_t)row0 * WIDTH);
        const int per_row = WIDTH / 4;
#pragma unroll 2
        for (int i = threadIdx.x; i < KS * per_row; i += UM_THREADS) {
            int r = i / per_row, q = i - r * per_row;
            unsigned to = (unsigned)__cvta_generic_to_shared(dst + r * (WIDTH + 8) + 4 * q);
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(to), "l"(src + i) : "memory");
        }
    }
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

template <int PENDING> __device__ __forceinline__ void um_slab_wait() {
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group %0;\n" ::"n"(PENDING) : "memory");
#endif
}

// acc[p] += (the tile's activations) x (weights w, `rows` input rows of WIDTH floats,
// columns offsets[p] + the warp's channels), for p < parts; the caller sets acc to the
// bias or zero. `in` ([atom][input], row stride `stride`) is published by the first slab's
// barrier; the call ends with a barrier (ws and in free again). rows: a multiple of KS.
// The weights stream through STAGES buffers of ws (KS rows each): slabs k + 1 ..
// k + STAGES - 1 are in flight while slab k is used. With tensor cores a slab is used in
// a few hundred cycles, so what limits is the bytes in flight: slabs of ~16-24 KB
// (KS = 32 rows for width H, 16 for 2H and 3H) and three stages where they fit.
template <int PASSES, int P, int KS, int WIDTH, int STAGES>
__device__ __forceinline__ void um_product(const float* w, int rows, const int offsets[P], int parts,
                                           const float* in, int stride, float* ws, float acc[P][2][2][4]) {
    int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3, warp = threadIdx.x >> 5;
    const int wst = WIDTH + 8;
    int slabs = rows / KS;
#pragma unroll
    for (int k = 0; k + 1 < STAGES; k++) um_slab<KS, WIDTH>(w, k * KS, rows, ws + k * UM_SLAB);
    for (int k = 0; k < slabs; k++) {
        // The buffer of slab k + STAGES - 1 was last read in step k - 1, which ended with a barrier.
        um_slab<KS, WIDTH>(w, (k + STAGES - 1) * KS, rows, ws + ((k + STAGES - 1) % STAGES) * UM_SLAB);
        um_slab_wait<STAGES - 1>();
        __syncthreads();  // slab k is in shared memory for every thread
        const float* slab = ws + (k % STAGES) * UM_SLAB;
#pragma unroll
        for (int kk = 0; kk < KS; kk += 8) {
            const float* x = in + g * stride + k * KS + kk + t;
            u32 ah[2][4], al[2][4];
#pragma unroll
            for (int mt = 0; mt < 2; mt++) {
                const float* xm = x + 16 * mt * stride;
                tf32_split_<PASSES>(xm[0], ah[mt][0], al[mt][0]);
                tf32_split_<PASSES>(xm[8 * stride], ah[mt][1], al[mt][1]);
                tf32_split_<PASSES>(xm[4], ah[mt][2], al[mt][2]);
                tf32_split_<PASSES>(xm[8 * stride + 4], ah[mt][3], al[mt][3]);
            }
#pragma unroll
            for (int p = 0; p < P; p++) {
                if (p >= parts) break;
#pragma unroll
                for (int nt = 0; nt < 2; nt++) {
                    const float* b = slab + (kk + t) * wst + offsets[p] + 16 * warp + 8 * nt + g;
                    u32 bh0, bl0, bh1, bl1;
                    tf32_split_<PASSES>(b[0], bh0, bl0);
                    tf32_split_<PASSES>(b[4 * wst], bh1, bl1);
#pragma unroll
                    for (int mt = 0; mt < 2; mt++) {
                        if (PASSES == 1) {  // TF32 operands (the mixed engine)
                            mma_tf32_(acc[p][mt][nt], ah[mt], bh0, bh1);
                            continue;
                        }
                        // This k-step's sum from zero, small terms first, then one rounded add.
                        float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                        mma_tf32_(d, al[mt], bh0, bh1);
                        mma_tf32_(d, ah[mt], bl0, bl1);
                        mma_tf32_(d, ah[mt], bh0, bh1);
#pragma unroll
                        for (int r = 0; r < 4; r++) acc[p][mt][nt][r] += d[r];
                    }
                }
            }
        }
        __syncthreads();  // this buffer is overwritten two steps on
    }
}

// The (atom, channel) of accumulator element [mt][nt][r] of this thread: atom row in the
// block's tile (16 mt + g + 8 (r / 2)), channel within a part (16 warp + 8 nt + 2 t + r % 2).
// Elements r = 2 h and 2 h + 1 are one atom's consecutive channels (one float2).
__device__ __forceinline__ int um_atom(int mt, int r) { return 16 * mt + ((threadIdx.x & 31) >> 2) + 8 * (r >> 1); }
__device__ __forceinline__ int um_channel(int nt, int r) {
    return 16 * (threadIdx.x >> 5) + 8 * nt + 2 * (threadIdx.x & 3) + (r & 1);
}
__device__ __forceinline__ float2 um_load2(const float* p) { return *reinterpret_cast<const float2*>(p); }
__device__ __forceinline__ void um_store2(float* p, float a, float b) {
    *reinterpret_cast<float2*>(p) = make_float2(a, b);
}
// Loops over the thread's (m-tile, n-tile, half) element pairs: atom row a (in the tile),
// channel c (the pair's first), accumulator elements [mt][nt][2 h], [2 h + 1].
#define UM_FOR_PAIRS                                                                                           \
    _Pragma("unroll") for (int mt = 0; mt < 2; mt++) _Pragma("unroll") for (int nt = 0; nt < 2; nt++)          \
        _Pragma("unroll") for (int h = 0; h < 2; h++)

// acc[p][..] = bias[offset_p + channel] for p < P.
template <int P> __device__ __forceinline__ void um_bias(const float* bias, const int offsets[P], float acc[P][2][2][4]) {
#pragma unroll
    for (int p = 0; p < P; p++)
#pragma unroll
        for (int mt = 0; mt < 2; mt++)
#pragma unroll
            for (int nt = 0; nt < 2; nt++)
#pragma unroll
                for (int r = 0; r < 4; r++) acc[p][mt][nt][r] = bias ? bias[offsets[p] + um_channel(nt, r)] : 0.0f;
}

template <int PASSES>
__device__ __forceinline__ void update_mma_impl(int n_atoms, const float* s_mid, const float* v_mid, const float* w1t,
                                                const float* b1, const float* w2t, const float* b2,
                                                const float* mixing, int vector_update, float* z_out, float* y_out,
                                                float* s_out, float* v_out) {
#if __CUDA_ARCH__ >= 800
    extern __shared__ float4 um_shared[];
    // x: [atom][s', n]; after the first product its columns 0..H-1 hold silu(z).
    const int xs = UM_STRIDE(2 * H);
    float* x = reinterpret_cast<float*>(um_shared);
    float* ws = x + UM_ATOMS * xs;
    int base = blockIdx.x * UM_ATOMS;
    // [s', n] of the thread's atoms and channels; s' stays in registers for s''.
    float s_keep[2][2][4];
    UM_FOR_PAIRS {
        int a = um_atom(mt, 2 * h), c = um_channel(nt, 0);
        float2 s = make_float2(0.0f, 0.0f), nrm = s;
        if (base + a < n_atoms) {
            const float* v = v_mid + (size_t)(base + a) * H3 + c;
            s = um_load2(s_mid + (size_t)(base + a) * H + c);
            float2 vx = um_load2(v), vy = um_load2(v + H), vz = um_load2(v + 2 * H);
            nrm = make_float2(norm3_(vx.x, vy.x, vz.x), norm3_(vx.y, vy.y, vz.y));
        }
        s_keep[mt][nt][2 * h] = s.x;
        s_keep[mt][nt][2 * h + 1] = s.y;
        um_store2(x + a * xs + c, s.x, s.y);
        um_store2(x + a * xs + H + c, nrm.x, nrm.y);
    }
    // z = U1 [s', n] + c1 (the first slab's barrier publishes x).
    const int off1[1] = {0};
    float z[1][2][2][4];
    um_bias<1>(b1, off1, z);
    um_product<PASSES, 1, 32, H, UM_STAGES_FORWARD>(w1t, 2 * H, off1, 1, x, xs, ws, z);
    // silu(z) into columns 0..H-1 (every thread has read x: the product's last barrier).
    UM_FOR_PAIRS {
        int a = um_atom(mt, 2 * h), c = um_channel(nt, 0);
        float z0 = z[0][mt][nt][2 * h], z1 = z[0][mt][nt][2 * h + 1];
        if (base + a < n_atoms) um_store2(z_out + (size_t)(base + a) * H + c, z0, z1);
        um_store2(x + a * xs + c, silu_(z0), silu_(z1));
    }
    // y = U2 silu(z) + c2: [ds, g1, g2] (the gates only with a vector update).
    const int off2[3] = {0, H, 2 * H};
    float y[3][2][2][4];
    um_bias<3>(b2, off2, y);
    um_product<PASSES, 3, 16, H3, UM_STAGES_FORWARD>(w2t, H, off2, vector_update ? 3 : 1, x, xs, ws, y);
    UM_FOR_PAIRS {
        size_t a = (size_t)(base + um_atom(mt, 2 * h));
        int c = um_channel(nt, 0), r = 2 * h;
        if (a >= (size_t)n_atoms) continue;
        // s_out may be s_mid: this thread read these elements (s_keep) before.
        um_store2(s_out + a * H + c, s_keep[mt][nt][r] + y[0][mt][nt][r], s_keep[mt][nt][r + 1] + y[0][mt][nt][r + 1]);
        if (!vector_update) continue;
        if (y_out) {  // null: update_backward recomputes the gates (large systems)
            um_store2(y_out + a * 2 * H + c, y[1][mt][nt][r], y[1][mt][nt][r + 1]);
            um_store2(y_out + a * 2 * H + H + c, y[2][mt][nt][r], y[2][mt][nt][r + 1]);
        }
        const float* v = v_mid + a * H3 + c;
        float2 vx = um_load2(v), vy = um_load2(v + H), vz = um_load2(v + 2 * H);
        float o0[3], o1[3];
        vector_gate_(vx.x, vy.x, vz.x, y[1][mt][nt][r], y[2][mt][nt][r], mixing, o0);
        vector_gate_(vx.y, vy.y, vz.y, y[1][mt][nt][r + 1], y[2][mt][nt][r + 1], mixing, o1);
        for (int q = 0; q < 3; q++) um_store2(v_out + a * H3 + q * H + c, o0[q], o1[q]);
    }
#else
    __trap();  // the host loads this kernel on sm_80 and later only
#endif
}

// PASSES = 3: f32 accuracy (the f32 engine, MLFF_CUDA_UPDATE=mma); 1: TF32 operands with
// f32 accumulation (the mixed engine's default above SMALL_SYSTEM).
#define UPDATE_MMA(NAME, PASSES)                                                                               \
    extern "C" __global__ void __launch_bounds__(UM_THREADS, 2)                                                \
        NAME(int n_atoms, const float* s_mid, const float* v_mid, const float* w1t, const float* b1,            \
             const float* w2t, const float* b2, const float* mixing, int vector_update, float* z_out,          \
             float* y_out, float* s_out, float* v_out) {                                                        \
        wait_for_previous_kernel_();                                                                            \
        update_mma_impl<PASSES>(n_atoms, s_mid, v_mid, w1t, b1, w2t, b2, mixing, vector_update, z_out, y_out,   \
                                s_out, v_out);                                                                  \
    }
UPDATE_MMA(update_mma_f32, 3)
UPDATE_MMA(update_mma_tf32, 1)
