// The update MLP of update_tiled.cu on the tensor cores: warpgroup MMA (wgmma, sm_90a
// only) with f32 accuracy from split operands ("3xTF32": x = hi + lo, both TF32, and
// a b ~ a_lo b_hi + a_hi b_lo + a_hi b_hi). f32 engine, H = 128. Not the default: it runs
// only with MLFF_CUDA_UPDATE=wgmma (kernels.rs), because it is slower than the SIMT
// kernels so far (session 22, benches/gpu_results.md: ncu at water10k 127 / 124 / 67 us
// against 67 / 67 / 44; its products take a quarter of its stall samples, the per-atom
// prologue and epilogues the rest, with one block of four warps per SM).
//
// A block is one warpgroup (128 threads) and takes 64 atoms: warp w owns the rows
// [16 w, 16 w + 16) of each product, as wgmma's m64 shape lays them out. The activations
// ([s', n] for the first layer, silu(z) for the second) sit in shared memory as
// [atom][input] and come into registers as wgmma's A fragments (split there into hi and
// lo). The weights (B) stream through shared memory in slabs of 32 inputs x 64 outputs,
// each as TF32 hi and lo parts, packed by the host in the order this kernel consumes them
// (tensor_core.rs, `pack_update_forward`), so that a slab is one contiguous copy, through
// a ring of UW_STAGES buffers. Each slab's MMAs are one asynchronous wgmma group; in a
// quad of four slabs, slab j + 1's group runs while slab j's sum is added and slab
// j + 2's fragments are loaded.
//
// ptxas (CUDA 13.0) serialises every MMA of a kernel (a wait after each one, warning
// C7514) as soon as one MMA is in flight across a branch or a loop's back edge, so each
// quad is straight-line code that ends with no MMA in flight, and the epilogues run
// between quads.
//
// Accuracy: the tensor cores truncate when they add into an accumulator, and a product
// summed over 256 inputs in one accumulator comes out biased (session 11: forces 1.2e-5
// too small at 10k atoms). Each slab's 32 inputs are summed in an accumulator of their
// own, started from zero, and added to the running sum with a rounded f32 add. Measured
// at water10k against the CPU f64 engine: max force error 1.7e-6 of max |F| (the SIMT
// kernels: 1.8e-6).
//
// The sums run in another order than update_tiled.cu's, so the results differ from it in
// the last bits (tested against the CPU f64 engine like every fast path).
#if HIDDEN == 128

#define UW_ATOMS 64
#define UW_THREADS 128
// Row stride of the activation tile (floats): 4 mod 32 banks, so that the A-fragment loads
// of a warp (8 rows x 4 columns) hit 32 different banks.
#define UW_XS (2 * H + 4)
// One part of a slab: 32 inputs x 64 outputs as 8 x 8 core matrices of 8 outputs x 4 inputs
// (128 bytes each), [input block][output block][output][input]. A slab: hi, then lo.
#define UW_PART_FLOATS 2048
#define UW_SLAB_FLOATS (2 * UW_PART_FLOATS)
// The hidden layer silu(z), [atom][channel]; the same bank spread.
#define UW_HS (H + 4)
// Slab buffers in the ring: slab i + UW_STAGES - 2 is copied while slab i is multiplied
// (the buffer of slab i - 2 is free once every warp has passed step i's barrier).
#ifndef UW_STAGES
#define UW_STAGES 6
#endif
#define UW_SHARED_FLOATS (UW_ATOMS * UW_XS + UW_ATOMS * UW_HS + UW_STAGES * UW_SLAB_FLOATS)
// Read by the host (kernels.rs) to size the launch, and whether this build has the kernel.
extern "C" __device__ const int update_wgmma_f32_shared_bytes = UW_SHARED_FLOATS * 4;
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
extern "C" __device__ const int update_wgmma_f32_available = 1;
#else
extern "C" __device__ const int update_wgmma_f32_available = 0;
#endif

// Byte strides of the core matrices in a slab part: along the inputs (K, "leading
// dimension") and along the outputs (N, "stride dimension"), as the PTX ISA states for
// K-major layouts without swizzling (with the two swapped the kernel faults: session 22).
#define UW_LBO 1024
#define UW_SBO 128

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

extern __shared__ float4 uw_shared[];

// TF32 (round to nearest, ties away) in a 32-bit register, low 13 bits zero.
__device__ __forceinline__ unsigned uw_tf32(float x) {
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
    return r & 0xffffe000u;
}

// x = hi + lo, hi and lo TF32 (lo carries the next 11 bits).
__device__ __forceinline__ void uw_split(float x, unsigned& hi, unsigned& lo) {
    hi = uw_tf32(x);
    lo = uw_tf32(x - __uint_as_float(hi));
}

// Shared-memory matrix descriptor of one k8 step of a slab part: no swizzle, K-major
// core matrices (PTX ISA, "Matrix Descriptor Format").
__device__ __forceinline__ unsigned long long uw_desc(unsigned address) {
    return (unsigned long long)((address & 0x3ffff) >> 4) | ((unsigned long long)(UW_LBO >> 4) << 16) | ((unsigned long long)(UW_SBO >> 4) << 32);
}

// d (+)= A B for one k8 step: A in registers (TF32), B (64 outputs x 8 inputs) from shared
// memory. accumulate = 0 overwrites d.
__device__ __forceinline__ void uw_mma(float (&d)[32], const unsigned (&a)[4], unsigned long long b, int accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k8.f32.tf32.tf32 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
        "{%32, %33, %34, %35}, %36, p, 1, 1;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate));
}

// Keeps the compiler from moving reads or writes of d across the asynchronous MMAs
// (the values are only defined after wgmma.wait_group).
__device__ __forceinline__ void uw_hold(float (&d)[32]) {
#pragma unroll
    for (int i = 0; i < 32; i++) asm volatile("" : "+f"(d[i])::"memory");
}

// Slab i of the packed weights into stage buffer i % UW_STAGES (16-byte cp.async copies by
// the whole block). The caller commits.
__device__ __forceinline__ void uw_slab_load(const float* packed, int i, float* slabs) {
    const float4* src = reinterpret_cast<const float4*>(packed + (size_t)i * UW_SLAB_FLOATS);
    float4* dst = reinterpret_cast<float4*>(slabs + (i % UW_STAGES) * UW_SLAB_FLOATS);
#pragma unroll
    for (int m = 0; m < UW_SLAB_FLOATS / 4 / UW_THREADS; m++) {
        int k = threadIdx.x + m * UW_THREADS;
        unsigned to = (unsigned)__cvta_generic_to_shared(dst + k);
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(to), "l"(src + k) : "memory");
    }
}

__device__ __forceinline__ void uw_commit_copies() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

// Issues the 12 MMAs of one slab (32 inputs: 4 k8 steps, three passes each, the small
// terms first) into tmp, which they overwrite, as one wgmma group. hi/lo: the A fragments.
__device__ __forceinline__ void uw_slab_mma(const unsigned (&hi)[4][4], const unsigned (&lo)[4][4], unsigned slab,
                                            float (&tmp)[32]) {
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
    for (int t = 0; t < 4; t++) {
        unsigned long long b_hi = uw_desc(slab + t * 2048), b_lo = uw_desc(slab + UW_PART_FLOATS * 4 + t * 2048);
        uw_mma(tmp, lo[t], b_hi, t > 0);
        uw_mma(tmp, hi[t], b_lo, 1);
        uw_mma(tmp, hi[t], b_hi, 1);
    }
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}

template <int N> __device__ __forceinline__ void uw_mma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

#endif  // __CUDA_ARCH_FEAT_SM90_ALL

// The accumulator element d[4 j + e] of a thread (lane = 4 g + q) of warp w holds row
// 16 w + g + 8 (e >> 1) and column 8 j + 2 q + (e & 1) of the 64-column chunk.

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
// An 8-byte store of two floats.
__device__ __forceinline__ void uw_store2(float* p, float x, float y) {
    *reinterpret_cast<float2*>(p) = make_float2(x, y);
}

// silu without the IEEE division's slow-path branch (session 22: with it, the first
// layer's epilogue took 38% of the kernel's stall samples): within a few ulp of silu_.
__device__ __forceinline__ float uw_silu(float z) { return z * __fdividef(1.0f, 1.0f + __expf(-z)); }

// What one block works on; slab i of the sequence: the first layer's slabs 0..15 (chunk
// i / 8 of the hidden channels, inputs 32 (i % 8) ..), then the second layer's (chunk c,
// part p, hidden inputs 32 s ..) at 16 + (c parts + p) 4 + s.
struct UwTile {
    int n_atoms, base, r0, q;
    const float *s_mid, *v_mid, *b1, *b2, *mixing;
    float *z_out, *y_out, *s_out, *v_out;
    float (*x)[UW_XS];
    float (*hb)[UW_HS];
};

// The A fragments (f32) of slab i, split into TF32 hi and lo: rows r0 and r0 + 8, inputs
// 8 t + q and 8 t + q + 4 of the slab, from x ([s', n]) or hb (silu(z)).
__device__ __forceinline__ void uw_fragments(const UwTile& u, int i, unsigned (&hi)[4][4], unsigned (&lo)[4][4]) {
    // (selects, not a branch: MMAs may be in flight)
    const bool first = i < 16;
    const int stride = first ? UW_XS : UW_HS;
    const float* row = first ? &u.x[u.r0][32 * (i % 8) + u.q] : &u.hb[u.r0][32 * ((i - 16) % 4) + u.q];
#pragma unroll
    for (int t = 0; t < 4; t++) {
        uw_split(row[8 * t], hi[t][0], lo[t][0]);
        uw_split(row[8 * stride + 8 * t], hi[t][1], lo[t][1]);
        uw_split(row[8 * t + 4], hi[t][2], lo[t][2]);
        uw_split(row[8 * stride + 8 * t + 4], hi[t][3], lo[t][3]);
    }
}

// After the last slab of a product: its outputs from run (the sum without bias).
// First layer (chunk c): z = run + c1 to z_out, silu(z) into hb. Second layer (chunk c,
// part p): p = 0: s'' = s' + ds (s' from x); p = 1: the gate g1 to y_out and into x over
// s' (no longer needed: each thread reads and writes its own elements); p = 2: g2, and
// v'' = v' g1 + (M v') g2. Runs between quads (no MMA in flight). parts: 3 with a vector
// update, else 1.
__device__ __forceinline__ void uw_epilogue(const UwTile& u, int i, int parts, const float (&run)[32]) {
    const int q2 = 2 * u.q;
    if (i < 16) {
        const int c = i / 8;
#pragma unroll
        for (int j = 0; j < 8; j++) {
            int col = 64 * c + 8 * j + q2;
            float2 bias = *reinterpret_cast<const float2*>(u.b1 + col);
#pragma unroll
            for (int half = 0; half < 2; half++) {
                int r = u.r0 + 8 * half, a = u.base + r;
                float z0 = run[4 * j + 2 * half] + bias.x, z1 = run[4 * j + 2 * half + 1] + bias.y;
                if (a < u.n_atoms) uw_store2(u.z_out + (size_t)a * H + col, z0, z1);
                *reinterpret_cast<float2*>(&u.hb[r][col]) = make_float2(uw_silu(z0), uw_silu(z1));
            }
        }
        __syncwarp();  // a warp's rows of hb are read by its other lanes
        return;
    }
    const int cp = (i - 16) / 4, c = cp / parts, p = cp % parts;
#pragma unroll
    for (int j = 0; j < 8; j++) {
        int col = 64 * c + 8 * j + q2;
        float2 bias = *reinterpret_cast<const float2*>(u.b2 + p * H + col);
#pragma unroll
        for (int half = 0; half < 2; half++) {
            int r = u.r0 + 8 * half, a = u.base + r;
            float y0 = run[4 * j + 2 * half] + bias.x, y1 = run[4 * j + 2 * half + 1] + bias.y;
            float2* keep = reinterpret_cast<float2*>(&u.x[r][col]);
            if (a >= u.n_atoms) continue;
            if (p == 0) {
                float2 s = *keep;
                uw_store2(u.s_out + (size_t)a * H + col, s.x + y0, s.y + y1);
            } else if (p == 1) {
                *keep = make_float2(y0, y1);
                if (u.y_out) uw_store2(u.y_out + (size_t)a * 2 * H + col, y0, y1);
            } else {
                float2 g1 = *keep;
                if (u.y_out) uw_store2(u.y_out + (size_t)a * 2 * H + H + col, y0, y1);
                const float* v = u.v_mid + (size_t)a * H3 + col;
                float2 vx = *reinterpret_cast<const float2*>(v);
                float2 vy = *reinterpret_cast<const float2*>(v + H);
                float2 vz = *reinterpret_cast<const float2*>(v + 2 * H);
                float o0[3], o1[3];
                vector_gate_(vx.x, vy.x, vz.x, g1.x, y0, u.mixing, o0);
                vector_gate_(vx.y, vy.y, vz.y, g1.y, y1, u.mixing, o1);
                float* o = u.v_out + (size_t)a * H3 + col;
                uw_store2(o, o0[0], o1[0]);
                uw_store2(o + H, o0[1], o1[1]);
                uw_store2(o + 2 * H, o0[2], o1[2]);
            }
        }
    }
}

// Waits for slab i, makes it visible to the tensor cores and starts the copy of slab
// i + UW_STAGES - 2 (clamped to the last slab: a copy nobody reads, instead of a branch)
// into the buffer of slab i - 2, which every warp has finished with once past the barrier.
__device__ __forceinline__ unsigned uw_slab_begin(int i, int n_slabs, const float* packed, float* slabs) {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(UW_STAGES - 3) : "memory");
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    __syncthreads();
    uw_slab_load(packed, min(i + UW_STAGES - 2, n_slabs - 1), slabs);
    uw_commit_copies();
    return (unsigned)__cvta_generic_to_shared(slabs + (i % UW_STAGES) * UW_SLAB_FLOATS);
}

__device__ __forceinline__ void uw_add(float (&tmp)[32], float (&run)[32]) {
    uw_hold(tmp);
#pragma unroll
    for (int k = 0; k < 32; k++) run[k] += tmp[k];
}

// Slabs 4 k .. 4 k + 3 into run: each slab's MMAs are one wgmma group, and while slab
// j + 1's group runs, slab j's sum is added to run and slab j + 2's fragments are loaded.
// Straight-line, and no MMA is in flight at its end: ptxas serialises every MMA of a
// kernel where one is in flight across a branch or a loop's back edge (C7514).
__device__ __forceinline__ void uw_quad(const UwTile& u, int k, int n_slabs, const float* packed, float* slabs,
                                        unsigned (&hi)[2][4][4], unsigned (&lo)[2][4][4], float (&tmp)[2][32],
                                        float (&run)[32]) {
    const int i = 4 * k;
    uw_fragments(u, i, hi[0], lo[0]);
    uw_fragments(u, i + 1, hi[1], lo[1]);
    uw_slab_mma(hi[0], lo[0], uw_slab_begin(i, n_slabs, packed, slabs), tmp[0]);
    uw_slab_mma(hi[1], lo[1], uw_slab_begin(i + 1, n_slabs, packed, slabs), tmp[1]);
    uw_mma_wait<1>();
    uw_add(tmp[0], run);
    uw_fragments(u, i + 2, hi[0], lo[0]);
    uw_slab_mma(hi[0], lo[0], uw_slab_begin(i + 2, n_slabs, packed, slabs), tmp[0]);
    uw_mma_wait<1>();
    uw_add(tmp[1], run);
    uw_fragments(u, i + 3, hi[1], lo[1]);
    uw_slab_mma(hi[1], lo[1], uw_slab_begin(i + 3, n_slabs, packed, slabs), tmp[1]);
    uw_mma_wait<1>();
    uw_add(tmp[0], run);
    uw_mma_wait<0>();
    uw_add(tmp[1], run);
}
#endif  // __CUDA_ARCH_FEAT_SM90_ALL

extern "C" __global__ void __launch_bounds__(UW_THREADS, 1)
    update_wgmma_f32(int n_atoms, const float* s_mid, const float* v_mid, const float* packed, const float* b1,
                     const float* b2, const float* mixing, int vector_update, float* z_out, float* y_out,
                     float* s_out, float* v_out) {
    wait_for_previous_kernel_();
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    UwTile u;
    u.x = reinterpret_cast<float(*)[UW_XS]>(uw_shared);
    u.hb = reinterpret_cast<float(*)[UW_HS]>(reinterpret_cast<float*>(uw_shared) + UW_ATOMS * UW_XS);
    float* slabs = reinterpret_cast<float*>(uw_shared) + UW_ATOMS * (UW_XS + UW_HS);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    u.q = lane & 3;
    u.r0 = 16 * warp + (lane >> 2);  // the thread's rows: r0 and r0 + 8
    u.base = blockIdx.x * UW_ATOMS;
    u.n_atoms = n_atoms;
    u.s_mid = s_mid;
    u.v_mid = v_mid;
    u.b1 = b1;
    u.b2 = b2;
    u.mixing = mixing;
    u.z_out = z_out;
    u.y_out = y_out;
    u.s_out = s_out;
    u.v_out = v_out;
    // (At least UW_STAGES - 2 slabs in either sequence.)
#pragma unroll 1
    for (int k = 0; k < UW_STAGES - 2; k++) {
        uw_slab_load(packed, k, slabs);
        uw_commit_copies();
    }
    // x = [s', n] (update_tiled.cu's expressions), rows past n_atoms zero. Unrolled so
    // that several rows' loads are in flight at once (four warps per SM).
#pragma unroll 4
    for (int idx = threadIdx.x; idx < UW_ATOMS * (H / 4); idx += UW_THREADS) {
        int r = idx / (H / 4), c4 = 4 * (idx % (H / 4));
        int a = u.base + r;
        float4 s = make_float4(0.f, 0.f, 0.f, 0.f), vx = s, vy = s, vz = s;
        if (a < n_atoms) {
            s = *reinterpret_cast<const float4*>(s_mid + (size_t)a * H + c4);
            vx = *reinterpret_cast<const float4*>(v_mid + (size_t)a * H3 + c4);
            vy = *reinterpret_cast<const float4*>(v_mid + (size_t)a * H3 + H + c4);
            vz = *reinterpret_cast<const float4*>(v_mid + (size_t)a * H3 + 2 * H + c4);
        }
        float4 nrm = make_float4(sqrt(vx.x * vx.x + vy.x * vy.x + vz.x * vz.x),
                                 sqrt(vx.y * vx.y + vy.y * vy.y + vz.y * vz.y),
                                 sqrt(vx.z * vx.z + vy.z * vy.z + vz.z * vz.z),
                                 sqrt(vx.w * vx.w + vy.w * vy.w + vz.w * vz.w));
        *reinterpret_cast<float4*>(&u.x[r][c4]) = s;
        *reinterpret_cast<float4*>(&u.x[r][H + c4]) = nrm;
    }
    __syncthreads();  // x is read by other warps' lanes only in its own rows, but written by all
    unsigned hi[2][4][4], lo[2][4][4];
    float tmp[2][32], run[32];
#pragma unroll
    for (int k = 0; k < 32; k++) tmp[0][k] = tmp[1][k] = run[k] = 0.0f;
    // Quads of slabs; a product ends after every second quad of the first layer and after
    // every quad of the second; its epilogue runs with no MMA in flight (the second
    // layer's fragments come from hb, which the first layer's last epilogue writes).
    const int parts = vector_update ? 3 : 1, n_slabs = 16 + 8 * parts;
#pragma unroll 1
    for (int k = 0; k < n_slabs / 4; k++) {
        uw_quad(u, k, n_slabs, packed, slabs, hi, lo, tmp, run);
        if (k < 4 && k % 2 == 0) continue;
        uw_epilogue(u, 4 * k + 3, parts, run);
#pragma unroll
        for (int m = 0; m < 32; m++) run[m] = 0.0f;
    }
#endif  // __CUDA_ARCH_FEAT_SM90_ALL
}

#endif  // HIDDEN == 128
