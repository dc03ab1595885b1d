// The energy head of readout.cu (large f32 systems, H = 128) as register-tiled products,
// as update_tiled.cu does the update MLP: a block of 256 threads takes 32 atoms, thread
// (ty, tx) = (warp, lane) owns atoms 4 ty .. 4 ty + 3 and, in a layer of N outputs, the
// channels (N / 32) tx ... The weights come through shared memory in slabs of 16 input
// rows (ut_slab: the next copied while this one is used). readout.cu reads one weight
// from global memory per input and waits on it (70 us at 10k atoms on an H100, ~14% of
// the FMA rate). Every sum is readout.cu's (S = 1, 128 threads): a layer of N_IN inputs
// and N_OUT outputs sums its inputs in SL = 128 / N_OUT slices of N_IN / SL rows, each
// from zero and in order, and adds the slices in order, then the bias; the same terms in
// the same order, so the same numbers bitwise.
#if HIDDEN == 128
#define RT_WARPS 8
#define RT_STRIDE UT_STRIDE_OF(RT_WARPS)  // 36: a multiple of 4, not of 32
#define RT_KS 16
#define RT_H2 (H / 2)
#define RT_H4 (H / 4)
// Tiles [channel][atom]: s (rows 0..H-1; later dE/dza), silu(za), zb; then two slabs (za
// itself stays in the registers of the thread that formed it and later needs it).
#define RT_SHARED_FLOATS ((H + RT_H2 + RT_H4) * RT_STRIDE + 2 * RT_KS * H)
extern "C" __device__ const int readout_tiled_f32_shared_bytes = RT_SHARED_FLOATS * 4;

template <int CPT> __device__ __forceinline__ void rt_load(const float* p, float out[CPT]) {
    if (CPT == 4) {
        float4 v = *reinterpret_cast<const float4*>(p);
        out[0] = v.x;
        out[CPT > 1 ? 1 : 0] = v.y;
        out[CPT > 2 ? 2 : 0] = v.z;
        out[CPT > 3 ? 3 : 0] = v.w;
    } else if (CPT == 2) {
        float2 v = *reinterpret_cast<const float2*>(p);
        out[0] = v.x;
        out[CPT > 1 ? 1 : 0] = v.y;
    } else {
        out[0] = p[0];
    }
}

// acc[sl][i][j] = sum over the rows r of slice sl (ROWS / SL rows, in order, from zero) of
// w[r][CPT tx + j] in[r][4 ty + i]; w row-major, CPT * 32 floats per row. `in` published
// by a barrier before the call (the first slab's barrier does it); ends with a barrier.
template <int SL, int CPT, int ROWS>
__device__ __forceinline__ void rt_product(const float* w, const float (*in)[RT_STRIDE], float* ws,
                                           float acc[SL][UT_AT][CPT]) {
    const int width = 32 * CPT, per_slice = ROWS / SL, slabs = ROWS / RT_KS;
    static_assert(per_slice % RT_KS == 0, "a slab lies in one slice");
    int c0 = CPT * (threadIdx.x & 31), a0 = UT_AT * (threadIdx.x >> 5);
    ut_slab<RT_KS, RT_WARPS>(w, 0, width, ws);
#pragma unroll
    for (int sl = 0; sl < SL; sl++) {
        for (int i = 0; i < UT_AT; i++)
            for (int j = 0; j < CPT; j++) acc[sl][i][j] = 0.0f;
        for (int ks = 0; ks < per_slice / RT_KS; ks++) {
            int k = sl * (per_slice / RT_KS) + ks;
            ut_slab_advance<RT_KS, RT_WARPS, RT_KS * H>(w, k, slabs, width, ws);
            const float* slab = ws + (k & 1) * RT_KS * H;
            int r0 = k * RT_KS;
#pragma unroll 4
            for (int kk = 0; kk < RT_KS; kk++) {
                float4 xv = *reinterpret_cast<const float4*>(&in[r0 + kk][a0]);
                float xa[UT_AT] = {xv.x, xv.y, xv.z, xv.w};
                float wv[CPT];
                rt_load<CPT>(slab + kk * width + c0, wv);
#pragma unroll
                for (int i = 0; i < UT_AT; i++)
#pragma unroll
                    for (int j = 0; j < CPT; j++) acc[sl][i][j] += wv[j] * xa[i];
            }
            __syncthreads();
        }
    }
}

// The slices' sum in readout.cu's order: ((p0 + p1) + p2) + ...
template <int SL, int CPT> __device__ __forceinline__ float rt_slices(const float acc[SL][UT_AT][CPT], int i, int j) {
    float sum = acc[0][i][j];
#pragma unroll
    for (int sl = 1; sl < SL; sl++) sum += acc[sl][i][j];
    return sum;
}

extern "C" __global__ void __launch_bounds__(32 * RT_WARPS) readout_tiled_f32(
    int n_atoms, const unsigned char* is_local, const float* s, const float* at, const float* a_bias,
    const float* a_w, const float* bt, const float* b_bias, const float* b_w, const float* c_w,
    const float* c_bias, float* atom_energy, float* grad_s) {
    float* sh = reinterpret_cast<float*>(ut_shared);
    float(*x)[RT_STRIDE] = reinterpret_cast<float(*)[RT_STRIDE]>(sh);  // s, then dE/dza
    float(*sa)[RT_STRIDE] = x + H;  // silu(za)
    float(*zb)[RT_STRIDE] = sa + RT_H2;  // zb, then dE/dzb
    float* ws = reinterpret_cast<float*>(zb + RT_H4);
    int t = threadIdx.x, tx = t & 31, a0 = UT_AT * (t >> 5);
    int base = blockIdx.x * UT_ATOMS_OF(RT_WARPS);
    wait_for_previous_kernel_();
    {  // s of the thread's atoms, channels 4 tx .. 4 tx + 3, as [channel][atom]
        float v[UT_AT][4];
        for (int i = 0; i < UT_AT; i++) {
            int a = base + a0 + i;
            for (int j = 0; j < 4; j++) v[i][j] = 0.0f;
            if (a < n_atoms) rt_load<4>(s + (size_t)a * H + 4 * tx, v[i]);
        }
        for (int j = 0; j < 4; j++) {
            float col[UT_AT] = {v[0][j], v[1][j], v[2][j], v[3][j]};
            ut_put(x, 4 * tx + j, a0, col);
        }
    }
    // za = A s + a (64 outputs: 2 per lane; 2 slices of 64 inputs).
    float za_keep[UT_AT][2];
    {
        float acc[2][UT_AT][2];
        rt_product<2, 2, H>(at, x, ws, acc);
        for (int j = 0; j < 2; j++) {
            int c = 2 * tx + j;
            float bias = a_bias[c], h[UT_AT];
            for (int i = 0; i < UT_AT; i++) {
                za_keep[i][j] = bias + rt_slices<2, 2>(acc, i, j);
                h[i] = silu_(za_keep[i][j]);
            }
            ut_put(sa, c, a0, h);
        }
    }
    // zb = B silu(za) + b (32 outputs: 1 per lane; 4 slices of 16 inputs).
    float zb_keep[UT_AT];
    {
        float acc[4][UT_AT][1];
        rt_product<4, 1, RT_H2>(bt, sa, ws, acc);
        float bias = b_bias[tx];
        for (int i = 0; i < UT_AT; i++) zb_keep[i] = bias + rt_slices<4, 1>(acc, i, 0);
        ut_put(zb, tx, a0, zb_keep);
    }
    __syncthreads();
    // Energy: one thread per atom, readout.cu's order.
    if (t < UT_ATOMS_OF(RT_WARPS)) {
        int i = base + t;
        if (i < n_atoms) {
            float e = c_bias[0];
            for (int k = 0; k < RT_H4; k++) e += c_w[k] * silu_(zb[k][t]);
            atom_energy[i] = is_local[i] ? e : 0.0f;
        }
    }
    __syncthreads();  // zb read by the energy before it becomes dE/dzb
    {
        float g[UT_AT];
        float cw = c_w[tx];
        for (int i = 0; i < UT_AT; i++) g[i] = cw * dsilu_(zb_keep[i]);
        ut_put(zb, tx, a0, g);
    }
    // dE/dza = (B^T dE/dzb) silu'(za) (64 outputs; 2 slices of 16 inputs), into x (s is
    // no longer read: the first product ended with a barrier).
    {
        float acc[2][UT_AT][2];
        rt_product<2, 2, RT_H4>(b_w, zb, ws, acc);
        for (int j = 0; j < 2; j++) {
            float g[UT_AT];
            for (int i = 0; i < UT_AT; i++) g[i] = rt_slices<2, 2>(acc, i, j) * dsilu_(za_keep[i][j]);
            ut_put(x, 2 * tx + j, a0, g);
        }
    }
    // dE/ds = A^T dE/dza (128 outputs: 4 per lane; one slice of 64 inputs).
    {
        float acc[1][UT_AT][4];
        rt_product<1, 4, RT_H2>(a_w, x, ws, acc);
        for (int i = 0; i < UT_AT; i++) {
            int a = base + a0 + i;
            if (a >= n_atoms) break;
            float out[4];
            for (int j = 0; j < 4; j++) out[j] = is_local[a] ? acc[0][i][j] : 0.0f;
            *reinterpret_cast<float4*>(grad_s + (size_t)a * H + 4 * tx) = make_float4(out[0], out[1], out[2], out[3]);
        }
    }
}
#endif
