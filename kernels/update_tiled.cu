// The update MLP of update.cu (large f32 systems) as register-tiled products: a block of
// 256 threads takes 32 atoms; thread (ty, tx) = (warp, lane) owns atoms 4 ty .. 4 ty + 3
// and channels CPT tx .. CPT tx + CPT - 1 (CPT = H / 32) of each product. Every step over
// the inputs then loads 4 activations (one shared-memory vector load, the same address for
// the whole warp) and CPT weights (one vector load; the warp reads a whole weight row,
// contiguous) for 4 CPT FMAs, where update.cu issues one weight load and four shared
// vector loads for 16 FMAs; the block reads each weight once per 32 atoms instead of 16.
// Each output is summed over the inputs in order, starting from the bias, with the
// expression of update.cu (acc += w * x), so the results are the same numbers bitwise.
// Selected with MLFF_CUDA_UPDATE=tiled (kernels.rs, `update`).
#define UT_ATOMS 32
#define UT_THREADS 256
#define UT_AT 4  // atoms per thread
#define UT_CPT (H / 32)
// Row stride of the shared tile: a multiple of 4 floats (16-byte rows for the vector
// reads) and not of 32, so a warp's row-wise vector stores spread over the banks.
#define UT_STRIDE (UT_ATOMS + 4)

// CPT consecutive floats (16-, 8- or 4-byte aligned: CPT tx with CPT a power of two).
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

extern "C" __global__ void __launch_bounds__(UT_THREADS)
    update_tiled_f32(int n_atoms, const float* s_mid, const float* v_mid, const float* w1t, const float* b1,
                     const float* w2t, const float* b2, const float* mixing, int vector_update, float* z_out,
                     float* y_out, float* s_out, float* v_out) {
    // [input][atom]; after the first product its rows 0..H-1 hold silu(z).
    __shared__ __align__(16) float x[2 * H][UT_STRIDE];
    int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
    int c0 = UT_CPT * tx, a0 = UT_AT * ty;
    int base = blockIdx.x * UT_ATOMS;
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
        *reinterpret_cast<float4*>(&x[c0 + j][a0]) = make_float4(s_keep[0][j], s_keep[1][j], s_keep[2][j], s_keep[3][j]);
        *reinterpret_cast<float4*>(&x[H + c0 + j][a0]) = make_float4(nrm[0][j], nrm[1][j], nrm[2][j], nrm[3][j]);
    }
    __syncthreads();
    // z = U1 [s', n] + c1.
    float acc[UT_AT][UT_CPT];
    {
        float bias[UT_CPT];
        ut_load(b1 + c0, bias);
        for (int i = 0; i < UT_AT; i++)
            for (int j = 0; j < UT_CPT; j++) acc[i][j] = bias[j];
    }
#pragma unroll 4
    for (int m = 0; m < 2 * H; m++) {
        float w[UT_CPT];
        ut_load(w1t + (size_t)m * H + c0, w);
        float4 xv = *reinterpret_cast<const float4*>(&x[m][a0]);
        float xa[UT_AT] = {xv.x, xv.y, xv.z, xv.w};
#pragma unroll
        for (int i = 0; i < UT_AT; i++)
#pragma unroll
            for (int j = 0; j < UT_CPT; j++) acc[i][j] += w[j] * xa[i];
    }
    for (int i = 0; i < UT_AT; i++) {
        int a = base + a0 + i;
        if (a < n_atoms) ut_store(z_out + (size_t)a * H + c0, acc[i]);
    }
    __syncthreads();  // every thread has read x before its rows 0..H-1 become silu(z)
    for (int j = 0; j < UT_CPT; j++)
        *reinterpret_cast<float4*>(&x[c0 + j][a0]) =
            make_float4(silu_(acc[0][j]), silu_(acc[1][j]), silu_(acc[2][j]), silu_(acc[3][j]));
    __syncthreads();
    // y = U2 silu(z) + c2: [ds, g1, g2] (the gates only with a vector update).
    const int parts = vector_update ? 3 : 1;
    float y[3][UT_AT][UT_CPT];
    for (int q = 0; q < 3; q++) {
        float bias[UT_CPT];
        ut_load(b2 + q * H + c0, bias);
        for (int i = 0; i < UT_AT; i++)
            for (int j = 0; j < UT_CPT; j++) y[q][i][j] = bias[j];
    }
#pragma unroll 2
    for (int k = 0; k < H; k++) {
        float4 hv = *reinterpret_cast<const float4*>(&x[k][a0]);
        float ha[UT_AT] = {hv.x, hv.y, hv.z, hv.w};
#pragma unroll
        for (int q = 0; q < 3; q++) {
            if (q >= parts) break;
            float w[UT_CPT];
            ut_load(w2t + (size_t)k * H3 + q * H + c0, w);
#pragma unroll
            for (int i = 0; i < UT_AT; i++)
#pragma unroll
                for (int j = 0; j < UT_CPT; j++) y[q][i][j] += w[j] * ha[i];
        }
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
