// edge_order (edge_order.cu) and the polynomial edge kernels' staging records in one
// launch, after pair_geometry (session 23; before, edge_records read the order back in a
// second launch): once a block has ranked an edge of its atom, it writes the edge's place
// q in the summation order and, at q, the record, which holds what warp_stage_edges would
// otherwise gather for slot q (common.cuh, edge_gather_) from the arrays indexed by edge
// and by pair (edge_perm, edge_pair, edge_source, knot, distance, unit: seven scattered
// loads and two f64 interval searches per edge, repeated by every channel group and every
// block), as two 16-byte words read with coalesced loads:
//   word 0: source atom, pair word (pair | EDGE_REVERSE), interval of the value table |
//           interval of the grad table << 16 (0xffffffff: masked, beyond rc), t of the
//           grad table;
//   word 1: t of the value table, the pair's unit vector (the pair frame, as `unit`).
// The t and intervals are poly_locate's, from the same f64 distance: the kernels stage
// the same numbers as from the arrays, so their results are bitwise the same. 32 bytes
// per CSR slot (64 per pair): used below the channel groups' sequence threshold
// (kernels.rs, engine.rs). The _merged kernel also writes the same records once more in
// each group's merged order (edge_order_group_impl) for the polynomial kernels' group walk.

// Slot q's record from its edge's source, pair word, mask, distance and unit vector.
__device__ __forceinline__ void edge_record_(u32 source, u32 w, bool valid, double distance, const float* unit,
                                             double inv_h_value, int intervals_value, double inv_h_grad,
                                             int intervals_grad, uint4& word0, uint4& word1) {
    word0 = make_uint4(0u, w, EDGE_RECORD_MASKED, 0u);
    word1 = make_uint4(0u, 0u, 0u, 0u);
    if (valid) {
        int k_value, k_grad;
        float t_value, t_grad;
        poly_locate(distance, inv_h_value, intervals_value, k_value, t_value);
        poly_locate(distance, inv_h_grad, intervals_grad, k_grad, t_grad);
        word0 = make_uint4(source, w, (u32)k_value | ((u32)k_grad << 16), __float_as_uint(t_grad));
        word1 = make_uint4(__float_as_uint(t_value), __float_as_uint(unit[0]), __float_as_uint(unit[1]),
                           __float_as_uint(unit[2]));
    }
}

// edge_order_impl's placement: the order and the record.
struct PlaceWithRecord {
    u32* edge_perm;
    const u32* edge_source;
    const int* knot;
    const float* unit;
    double inv_h_value, inv_h_grad;
    int intervals_value, intervals_grad;
    uint4* records;
    // The merged records (edge_order_group_impl): null where not written.
    uint4* merged;
    // key: the pair's distance where it is within rc (KeyFromGeometry).
    __device__ __forceinline__ void record(u32 e, u32 p, u32 w, double key, uint4& word0, uint4& word1) const {
        bool valid = knot[p] >= 0;
        edge_record_(valid ? edge_source[e] : 0u, w, valid, valid ? key : 0.0, unit + 3 * (size_t)p, inv_h_value,
                     intervals_value, inv_h_grad, intervals_grad, word0, word1);
    }
    __device__ __forceinline__ void operator()(u32 e, u32 slot, u32 p, u32 w, double key) const {
        edge_perm[slot] = e;
        uint4 word0, word1;
        record(e, p, w, key, word0, word1);
        records[2 * (size_t)slot] = word0;
        records[2 * (size_t)slot + 1] = word1;
    }
    // Both: the order and the record at `slot`, and the same record at the edge's place
    // `place` in its group's merged order, its atom's slot in the group in bits 13-15 of
    // the value table's interval (MERGED_SLOT_SHIFT).
    __device__ __forceinline__ void place_both(u32 e, u32 slot, u32 p, u32 w, double key, u32 group_slot,
                                               u32 place) const {
        edge_perm[slot] = e;
        uint4 word0, word1;
        record(e, p, w, key, word0, word1);
        records[2 * (size_t)slot] = word0;
        records[2 * (size_t)slot + 1] = word1;
        if (word0.z != EDGE_RECORD_MASKED) word0.z |= group_slot << MERGED_SLOT_SHIFT;
        merged[2 * (size_t)place] = word0;
        merged[2 * (size_t)place + 1] = word1;
    }
};

extern "C" __global__ void __launch_bounds__(EDGE_ORDER_THREADS) edge_order_records_f32(
    int n_atoms, const u32* edge_offsets, const u32* edge_pair, const int* knot, const double* distance,
    const u32* edge_source, const float* unit, double inv_h_value, int intervals_value, double inv_h_grad,
    int intervals_grad, u32* edge_perm, uint4* records) {
    wait_for_previous_kernel_();
    PlaceWithRecord place{edge_perm,  edge_source,     knot,           unit,    inv_h_value,
                          inv_h_grad, intervals_value, intervals_grad, records, nullptr};
    edge_order_impl(n_atoms, edge_offsets, edge_pair, KeyFromGeometry{knot, distance}, place);
}
// The same and the merged records (one block per group of POLY_MERGE atoms).
extern "C" __global__ void __launch_bounds__(EDGE_ORDER_MERGED_THREADS) edge_order_records_merged_f32(
    int n_atoms, const u32* edge_offsets, const u32* edge_pair, const int* knot, const double* distance,
    const u32* edge_source, const float* unit, double inv_h_value, int intervals_value, double inv_h_grad,
    int intervals_grad, u32* edge_perm, uint4* records, uint4* merged) {
    wait_for_previous_kernel_();
    PlaceWithRecord place{edge_perm,  edge_source,     knot,           unit,    inv_h_value,
                          inv_h_grad, intervals_value, intervals_grad, records, merged};
    edge_order_group_impl(n_atoms, edge_offsets, edge_pair, KeyFromGeometry{knot, distance}, place);
}
