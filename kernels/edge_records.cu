// Each CSR slot's staging record for the polynomial edge kernels, written once per call
// after edge_order (and pair_geometry): slot q holds what warp_stage_edges would gather
// for it (common.cuh, edge_gather_) from the arrays indexed by edge and by pair (edge_perm, edge_pair,
// edge_source, knot, distance, unit: seven scattered loads and two f64 interval searches
// per edge, repeated by every channel group and every block), as two 16-byte words read
// with coalesced loads:
//   word 0: source atom, pair word (pair | EDGE_REVERSE), interval of the value table |
//           interval of the grad table << 16 (0xffffffff: masked, beyond rc), t of the
//           grad table;
//   word 1: t of the value table, the pair's unit vector (the pair frame, as `unit`).
// The t and intervals are poly_locate's, from the same f64 distance: the kernels stage
// the same numbers, so their results are bitwise unchanged. 32 bytes per CSR slot (64
// per pair): used below the channel groups' sequence threshold (kernels.rs, engine.rs).
extern "C" __global__ void edge_records_f32(u32 n_slots, const u32* edge_perm, const u32* edge_source,
                                            const u32* edge_pair, const int* knot, const double* distance,
                                            const float* unit, double inv_h_value, int intervals_value,
                                            double inv_h_grad, int intervals_grad, uint4* records) {
    wait_for_previous_kernel_();
    u32 q = blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= n_slots) return;
    EdgeGather g = edge_gather_(q, edge_perm, edge_source, edge_pair, knot, distance, unit, false);
    uint4 word0 = make_uint4(0u, g.w, EDGE_RECORD_MASKED, 0u), word1 = make_uint4(0u, 0u, 0u, 0u);
    if (g.valid) {
        int k_value, k_grad;
        float t_value, t_grad;
        poly_locate(g.distance, inv_h_value, intervals_value, k_value, t_value);
        poly_locate(g.distance, inv_h_grad, intervals_grad, k_grad, t_grad);
        word0 = make_uint4(g.source, g.w, (u32)k_value | ((u32)k_grad << 16), __float_as_uint(t_grad));
        word1 = make_uint4(__float_as_uint(t_value), __float_as_uint(g.unit[0]), __float_as_uint(g.unit[1]),
                           __float_as_uint(g.unit[2]));
    }
    records[2 * (size_t)q] = word0;
    records[2 * (size_t)q + 1] = word1;
}
