// A small system's message (message.cu, message_small) and update MLP
// (update_cluster.cu) of one block in one launch, on a thread-block cluster of 8 blocks per
// tile of TA <= 2 atoms: block r forms the messages of its channels [r C, r C + C) of the
// tile's atoms (C = H / CLUSTER_BLOCKS), writes them to s_mid / v_mid (which the backward
// pass reads), and the cluster exchanges [s', n] of those channels through distributed
// shared memory; the update then runs as in update_cluster.cu. One kernel boundary less
// per block; the same numbers bitwise: each channel's message sums the same terms in the
// same order as message_small (the valid edges of the atom, in summation order, dealt to
// SMALL_SLICES slices by their index mod SMALL_SLICES; the slices' sums added in slice
// order), with the same expression (message_edge_), and n as update_input_ forms it.
// The update writes v_out while other clusters still read v_in as message sources, so
// the host passes two different buffers (and alternates them between blocks).
#define MUC_WORKERS(TA) ((TA) * CLUSTER_CHANNELS * SMALL_SLICES)  // (atom, channel, slice)
struct UpdateInputFromMessage {
    int n_atoms;
    const u32* edge_offsets;
    const u32* edge_perm;
    const u32* edge_source;
    const u32* edge_pair;
    const int* knot;
    const float* frac;
    const float* unit;
    const Cubic<float>* table;
    float inv_h;
    const float* s_in;
    const float* v_in;
    float* s_mid;
    float* v_mid;

    template <int TA> __device__ __forceinline__ void form(int base, float (*x)[TA]) const {
#if __CUDA_ARCH__ >= 900
        typedef float T;
        const int S = SMALL_SLICES, C = CLUSTER_CHANNELS, NT = UC_THREADS;
        static_assert(MUC_WORKERS(TA) <= UC_THREADS, "one worker thread per (atom, channel, slice)");
        __shared__ u32 sh_source[NT];
        __shared__ int sh_knot[NT];
        __shared__ T sh_frac[NT];
        __shared__ T sh_unit[3][NT];
        __shared__ unsigned char sh_atom[NT];
        __shared__ int sh_counts[(NT + 31) / 32];
        __shared__ u32 sh_offsets[TA + 1];
        __shared__ int run_start[TA], run_end[TA];  // each atom's valid edges in the chunk
        __shared__ T part[S - 1][4][C][TA];
        __shared__ T own[2][C][TA];  // [s', n] of this block's channels (read by the cluster)
        const unsigned rank = cluster_rank_();
        const int t = threadIdx.x;
        const bool worker = t < MUC_WORKERS(TA);
        const int a = t / (C * S), slice = (t / C) % S, cl = t % C, c = rank * C + cl, i = base + a;
        const int last = min(base + TA, n_atoms);  // base < n_atoms: the grid has no empty tile
        if (t <= last - base) sh_offsets[t] = edge_offsets[base + t];
        T s = T(0), vx = T(0), vy = T(0), vz = T(0);
        if (worker && slice == 0 && i < n_atoms) {
            s = s_in[(size_t)i * H + c];
            vx = v_in[(size_t)i * H3 + c];
            vy = v_in[(size_t)i * H3 + H + c];
            vz = v_in[(size_t)i * H3 + 2 * H + c];
        }
        __syncthreads();
        const u32 e_begin = sh_offsets[0], e_end = sh_offsets[last - base];
        int done = 0;  // this worker's atom's valid edges in earlier chunks
        for (u32 chunk = e_begin; chunk < e_end; chunk += NT) {
            // Staged as in message_impl, the tile's atoms' edges together (contiguous in
            // the CSR); each valid edge also records its atom.
            bool valid = false;
            u32 j = 0;
            int kp = -1, atom = 0;
            T fr = T(0), u0 = T(0), u1 = T(0), u2 = T(0);
            const u32 e = chunk + t;
            if (e < e_end) {
                while (e >= sh_offsets[atom + 1]) atom++;
                u32 edge = edge_perm[e];  // summation order: see edge_order.cu
                u32 w = edge_pair[edge];
                u32 p = w & EDGE_PAIR_MASK;
                kp = knot[p];
                valid = kp >= 0;
                if (valid) {
                    T sign = (w & EDGE_REVERSE) ? T(-1) : T(1);
                    j = edge_source[edge];
                    fr = frac[p];
                    u0 = sign * unit[3 * p];
                    u1 = sign * unit[3 * p + 1];
                    u2 = sign * unit[3 * p + 2];
                }
            }
            __syncthreads();  // the previous chunk (and its runs) is no longer read
            if (t < TA) run_start[t] = run_end[t] = 0;  // before block_compact's barrier
            int count;
            int slot = block_compact<NT>(valid, sh_counts, &count);
            if (valid) {
                sh_source[slot] = j;
                sh_knot[slot] = kp;
                sh_frac[slot] = fr;
                sh_unit[0][slot] = u0;
                sh_unit[1][slot] = u1;
                sh_unit[2][slot] = u2;
                sh_atom[slot] = (unsigned char)atom;
            }
            __syncthreads();
            // Compaction keeps the order: each atom's valid edges are one run of slots.
            if (valid) {
                if (slot == 0 || sh_atom[slot - 1] != atom) run_start[atom] = slot;
                if (slot == count - 1 || sh_atom[slot + 1] != atom) run_end[atom] = slot + 1;
            }
            __syncthreads();
            if (worker) {
                const int q0 = run_start[a], q1 = run_end[a];
#pragma unroll 4
                for (int q = q0 + (slice - done % S + S) % S; q < q1; q += S)
                    message_edge_<T, Cubic<float>>(sh_knot[q], sh_frac[q], sh_source[q], sh_unit[0][q],
                                                   sh_unit[1][q], sh_unit[2][q], table, inv_h, c, s_in, v_in, s,
                                                   vx, vy, vz);
                done += q1 - q0;
            }
        }
        if (worker && slice > 0) {
            part[slice - 1][0][cl][a] = s;
            part[slice - 1][1][cl][a] = vx;
            part[slice - 1][2][cl][a] = vy;
            part[slice - 1][3][cl][a] = vz;
        }
        __syncthreads();
        if (worker && slice == 0) {
            for (int r = 0; r < S - 1; r++) {
                s += part[r][0][cl][a];
                vx += part[r][1][cl][a];
                vy += part[r][2][cl][a];
                vz += part[r][3][cl][a];
            }
            T nrm = T(0);
            if (i < n_atoms) {
                s_mid[(size_t)i * H + c] = s;
                v_mid[(size_t)i * H3 + c] = vx;
                v_mid[(size_t)i * H3 + H + c] = vy;
                v_mid[(size_t)i * H3 + 2 * H + c] = vz;
                nrm = norm3_(vx, vy, vz);
            } else {
                s = T(0);
            }
            own[0][cl][a] = s;
            own[1][cl][a] = nrm;
        }
        // Every block's own[] is complete; then each gathers the whole tile's [s', n]. No
        // block changes own[] or leaves before the update's own cluster exchange, a full
        // cluster barrier after these reads.
        cluster_arrive_();
        cluster_wait_();
        for (int idx = t; idx < 2 * H * TA; idx += NT) {
            int k = idx / TA, at = idx % TA, half = k / H, ch = k % H;
            x[k][at] = cluster_load_(&own[half][ch % C][at], ch / C);
        }
        __syncthreads();
#endif
    }
};

#define MESSAGE_UPDATE_CLUSTER(TA)                                                                                \
    extern "C" __global__ void CLUSTER_DIMS __launch_bounds__(UC_THREADS) message_update_cluster_t##TA##_f32(      \
        int n_atoms, const u32* edge_offsets, const u32* edge_perm, const u32* edge_source, const u32* edge_pair,  \
        const int* knot, const float* frac, const float* unit, const Cubic<float>* table, float inv_h,            \
        const float* s_in, const float* v_in, float* s_mid, float* v_mid, const float* w1t, const float* b1,      \
        const float* w2t, const float* b2, const float* mixing, int vector_update, float* z_out, float* y_out,    \
        float* s_out, float* v_out) {                                                                            \
        UpdateInputFromMessage input{n_atoms, edge_offsets, edge_perm, edge_source, edge_pair, knot, frac, unit,  \
                                     table, inv_h, s_in, v_in, s_mid, v_mid};                                    \
        update_cluster_impl<TA>(n_atoms, input, v_mid, w1t, b1, w2t, b2, mixing, vector_update, z_out, y_out,     \
                                s_out, v_out);                                                                   \
    }
MESSAGE_UPDATE_CLUSTER(1)
MESSAGE_UPDATE_CLUSTER(2)  // TA <= 3: UC_THREADS = 3 C SMALL_SLICES
