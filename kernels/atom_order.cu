// Between the caller's atom order and the engine's (atoms sorted spatially when the
// candidate list is built on the GPU): order[k] is the caller's index of the atom the
// engine numbers k. Rows of three doubles (positions in, forces out).
extern "C" __global__ void atom_order_gather(int n, const u32* order, const double* caller, double* engine) {
    wait_for_previous_kernel_();
    int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= n) return;
    u32 a = order[k];
    engine[3 * k] = caller[3 * a];
    engine[3 * k + 1] = caller[3 * a + 1];
    engine[3 * k + 2] = caller[3 * a + 2];
}

extern "C" __global__ void atom_order_scatter(int n, const u32* order, const double* engine, double* caller) {
    wait_for_previous_kernel_();
    int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= n) return;
    u32 a = order[k];
    caller[3 * a] = engine[3 * k];
    caller[3 * a + 1] = engine[3 * k + 1];
    caller[3 * a + 2] = engine[3 * k + 2];
}
