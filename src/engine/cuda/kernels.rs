//! One Rust wrapper per kernel file in `kernels/` (same name), each a typed launch.
//! Every launch is `unsafe` because the driver cannot check pointer arguments: each
//! carries a `// SAFETY:` note on why the buffers are large enough.

use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DeviceRepr,
    LaunchConfig, PushKernelArg, ValidAsZeroBits,
};

use super::{device_error, spline};
use crate::error::Result;

/// Element type of an engine (f32 or f64); kernels exist for both.
pub trait Real:
    DeviceRepr + ValidAsZeroBits + Copy + Default + Send + Sync + std::fmt::Debug + 'static
{
    const SUFFIX: &'static str;
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
}
impl Real for f32 {
    const SUFFIX: &'static str = "f32";
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
}
impl Real for f64 {
    const SUFFIX: &'static str = "f64";
    fn from_f64(x: f64) -> Self {
        x
    }
    fn to_f64(self) -> f64 {
        self
    }
}

/// Every kernel entry point the engine loads (f32/f64 suffixes added for the templated ones);
/// `mlff-check-kernels` verifies that the compiled PTX defines each of them.
pub const ENTRY_POINTS: &[&str] = &[
    "embed_f32",
    "embed_f64",
    "pair_geometry_f32",
    "pair_geometry_f64",
    "message_f32",
    "message_f64",
    "message_mixed",
    "message_small_f32",
    "message_small_f64",
    "message_small_mixed",
    "update_f32",
    "update_f64",
    "update_tiled_f32",
    "update_backward_tiled_f32",
    "update_tiled_narrow_f32",
    "update_backward_tiled_narrow_f32",
    "update_tiled_wide10_f32",
    "update_backward_tiled_wide10_f32",
    "readout_f32",
    "readout_f64",
    "update_backward_f32",
    "update_backward_f64",
    "update_small_f32",
    "update_small_f64",
    "readout_small_f32",
    "readout_small_f64",
    "update_backward_small_f32",
    "update_backward_small_f64",
    "update_cluster_t1_f32",
    "update_cluster_t2_f32",
    "update_cluster_t4_f32",
    "update_cluster_t8_f32",
    "message_update_cluster_t1_f32",
    "message_update_cluster_t2_f32",
    "update_backward_cluster_t1_f32",
    "update_backward_cluster_t2_f32",
    "update_backward_cluster_t4_f32",
    "update_backward_cluster_t8_f32",
    "message_backward_f32",
    "message_backward_f64",
    "message_backward_mixed",
    "message_backward_small_f32",
    "message_backward_small_f64",
    "message_backward_small_mixed",
    "pair_gradient_f32",
    "pair_gradient_f64",
    "pair_gradient_mixed",
    "message_poly_f32",
    "edge_backward_poly_f32",
    "edge_backward_poly_direct_f32",
    "edge_backward_poly_accumulate_f32",
    "pair_backward_zero_v_f32",
    "pair_backward_zero_v_accumulate_f32",
    "message_poly_zero_v_f32",
    "message_poly_merged_f32",
    "message_poly_merged_zero_v_f32",
    "edge_backward_sum_f32",
    "edge_backward_finish_f32",
    "edge_order_records_f32",
    "edge_order_records_merged_f32",
    "reduce_partial_f32",
    "reduce_partial_f64",
    "atom_gather_f32",
    "atom_gather_f64",
    "reduce_final",
    "reduce_single_f32",
    "reduce_single_f64",
    "reduce_systems_f32",
    "reduce_systems_f64",
    "atom_gather_reduce_f32",
    "atom_gather_reduce_f64",
    "edge_order",
    "edge_order_positions",
    "nl_count",
    "nl_fill",
    "nl_scan",
    "nl_incoming",
    "nl_reverse",
    "nl_edges",
    "nl_displacement",
    "nl_bin_fractional",
    "nl_bin_count",
    "nl_bin_place",
    "nl_bin_sort",
    "nl_bin_renumber",
    "nl_bin_sizes",
    "nl_bin_members",
    "atom_order_gather",
    "atom_order_scatter",
    "painn_dense_f32",
    "painn_dense_f64",
    "painn_dense_backward_f32",
    "painn_dense_backward_f64",
    "painn_message_f32",
    "painn_message_f64",
    "painn_message_backward_f32",
    "painn_message_backward_f64",
    "painn_mixing_f32",
    "painn_mixing_f64",
    "painn_mixing_update_f32",
    "painn_mixing_update_f64",
    "painn_mixing_output_grad_f32",
    "painn_mixing_output_grad_f64",
    "painn_mixing_input_grad_f32",
    "painn_mixing_input_grad_f64",
    "painn_pair_gradient_f32",
    "painn_pair_gradient_f64",
    "painn_pair_gradient_sum_f32",
    "painn_pair_gradient_sum_f64",
    "painn_pair_basis_f32",
    "painn_pair_basis_f64",
    "painn_distance_gradient_f32",
    "painn_distance_gradient_f64",
];

/// Entry points compiled only at H = 128 (the register tiling assumes its layer widths).
pub const H128_ENTRY_POINTS: &[&str] = &["readout_tiled_f32", "update_wgmma_f32"];

/// Threads per block of the per-pair and per-atom elementwise kernels.
const THREADS: u32 = 256;
/// Blocks of the first reduction stage (fixed, so the summation order is fixed).
pub const REDUCE_BLOCKS: usize = 120;
// reduce_final stages at most REDUCE_FINAL_MAX_PARTIALS (128) rows in shared memory.
const _: () = assert!(REDUCE_BLOCKS <= 128);
/// Up to this many atoms the per-atom MLP kernels use tiles of `SMALL_TILE` atoms:
/// more blocks and shorter serial loops (latency matters more than weight reuse).
pub const SMALL_SYSTEM: usize = 4096;
const SMALL_TILE: usize = 2;
/// Thread slices splitting the weight loops of the small update kernels (SMALL_SLICES
/// in kernels/common.cuh): their blocks have hidden x SMALL_SLICES threads.
const SMALL_SLICES: u32 = 4;

/// The device address of a buffer, for a kernel that reads and writes it in place
/// (one buffer as two arguments) or takes a caller's address. The engine's kernels all
/// run on one stream, so the buffer needs no event tracking beyond that stream's order.
pub fn address<T>(st: &CudaStream, buffer: &CudaSlice<T>) -> u64 {
    let (ptr, _sync) = buffer.device_ptr(st);
    ptr
}

fn grid(n: usize, per_block: usize) -> u32 {
    n.div_ceil(per_block) as u32
}
fn cfg(blocks: u32, threads: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The kernels of one precision, loaded from the compiled module.
pub struct Kernels {
    pub hidden: usize,
    pub tile: usize,
    /// Thread slices of the large-system update kernels (`runtime::mlp_slices`, f32 only).
    pub slices: u32,
    embed: CudaFunction,
    pair_geometry: CudaFunction,
    message: CudaFunction,
    message_small: CudaFunction,
    update: CudaFunction,
    /// The register-tiled update (f32, `update_tiled.cu`), wide and narrow variants.
    update_tiled: TiledPair,
    /// Its backward (`update_backward_tiled.cu`).
    update_backward_tiled: TiledPair,
    /// The update on the tensor cores (`update_wgmma.cu`: f32, H = 128, sm_90a).
    update_wgmma: Option<TiledKernel>,
    readout: CudaFunction,
    /// The register-tiled energy head (`readout_tiled.cu`: f32, H = 128).
    readout_tiled: Option<TiledKernel>,
    update_backward: CudaFunction,
    update_small: CudaFunction,
    readout_small: CudaFunction,
    update_backward_small: CudaFunction,
    /// The small-system update kernels split over thread-block clusters (f32, sm_90).
    cluster: Option<ClusterKernels>,
    message_backward: CudaFunction,
    message_backward_small: CudaFunction,
    pair_gradient: CudaFunction,
    atom_gather: CudaFunction,
    atom_gather_reduce: CudaFunction,
    reduce_partial: CudaFunction,
    reduce_final: CudaFunction,
    reduce_single: CudaFunction,
    reduce_systems: CudaFunction,
    edge_order: CudaFunction,
    edge_order_positions: CudaFunction,
    nl_count: CudaFunction,
    nl_fill: CudaFunction,
    nl_scan: CudaFunction,
    nl_incoming: CudaFunction,
    nl_reverse: CudaFunction,
    nl_edges: CudaFunction,
    nl_displacement: CudaFunction,
    nl_bin_fractional: CudaFunction,
    nl_bin_count: CudaFunction,
    nl_bin_place: CudaFunction,
    nl_bin_sort: CudaFunction,
    nl_bin_renumber: CudaFunction,
    nl_bin_sizes: CudaFunction,
    nl_bin_members: CudaFunction,
    atom_order_gather: CudaFunction,
    atom_order_scatter: CudaFunction,
    /// The shared-memory polynomial filter kernels (f32 only, where the device has
    /// the shared memory): see `PolyKernels`.
    pub poly: Option<PolyKernels>,
    /// The mixed engine's readers of its f16 table (the fields above read an f32 table).
    half_table: Option<HalfTableKernels>,
}

/// The `_mixed` entry points: the table-reading kernels on the f16 table.
struct HalfTableKernels {
    message: CudaFunction,
    message_small: CudaFunction,
    message_backward: CudaFunction,
    message_backward_small: CudaFunction,
    pair_gradient: CudaFunction,
}

impl Kernels {
    /// `half_table`: the mixed engine (f32 states, the filter table in f16; it also keeps
    /// an f32 table for the systems the fused cluster kernels run): its table-reading
    /// kernels come in both variants, picked by the table (`reader`).
    pub fn load<T: Real>(
        module: &Arc<CudaModule>,
        ctx: &Arc<CudaContext>,
        hidden: usize,
        tile: usize,
        half_table: bool,
    ) -> Result<Kernels> {
        let f = |name: &str| {
            module
                .load_function(&format!("{name}_{}", T::SUFFIX))
                .map_err(device_error)
        };
        let mixed = |name: &str| {
            module
                .load_function(&format!("{name}_mixed"))
                .map_err(device_error)
        };
        let half_table = if half_table {
            Some(HalfTableKernels {
                message: mixed("message")?,
                message_small: mixed("message_small")?,
                message_backward: mixed("message_backward")?,
                message_backward_small: mixed("message_backward_small")?,
                pair_gradient: mixed("pair_gradient")?,
            })
        } else {
            None
        };
        Ok(Kernels {
            hidden,
            tile,
            slices: if T::SUFFIX == "f32" {
                super::runtime::mlp_slices() as u32
            } else {
                1
            },
            embed: f("embed")?,
            pair_geometry: f("pair_geometry")?,
            message: f("message")?,
            message_small: f("message_small")?,
            update: f("update")?,
            update_tiled: TiledPair {
                wide: tiled::<T>(module, ctx, "update_tiled_f32", 8)?,
                narrow: tiled::<T>(module, ctx, "update_tiled_narrow_f32", 8)?,
                wide10: tiled::<T>(module, ctx, "update_tiled_wide10_f32", 10)?,
            },
            update_backward_tiled: TiledPair {
                wide: tiled::<T>(module, ctx, "update_backward_tiled_f32", 8)?,
                narrow: tiled::<T>(module, ctx, "update_backward_tiled_narrow_f32", 8)?,
                wide10: tiled::<T>(module, ctx, "update_backward_tiled_wide10_f32", 10)?,
            },
            update_wgmma: if hidden == 128
                && T::SUFFIX == "f32"
                && module_int(module, ctx, "update_wgmma_f32_available")? == 1
            {
                // UW_ATOMS, UW_THREADS in update_wgmma.cu.
                tiled_kernel(module, ctx, "update_wgmma_f32", 64, 128)?
            } else {
                None
            },
            readout: f("readout")?,
            readout_tiled: if hidden == 128 {
                tiled::<T>(module, ctx, "readout_tiled_f32", 8)?
            } else {
                None
            },
            update_backward: f("update_backward")?,
            update_small: f("update_small")?,
            readout_small: f("readout_small")?,
            update_backward_small: f("update_backward_small")?,
            cluster: ClusterKernels::load::<T>(module, ctx)?,
            message_backward: f("message_backward")?,
            message_backward_small: f("message_backward_small")?,
            pair_gradient: f("pair_gradient")?,
            atom_gather: f("atom_gather")?,
            atom_gather_reduce: f("atom_gather_reduce")?,
            reduce_partial: f("reduce_partial")?,
            reduce_final: module.load_function("reduce_final").map_err(device_error)?,
            reduce_single: f("reduce_single")?,
            reduce_systems: f("reduce_systems")?,
            edge_order: module.load_function("edge_order").map_err(device_error)?,
            edge_order_positions: module
                .load_function("edge_order_positions")
                .map_err(device_error)?,
            nl_count: module.load_function("nl_count").map_err(device_error)?,
            nl_fill: module.load_function("nl_fill").map_err(device_error)?,
            nl_scan: module.load_function("nl_scan").map_err(device_error)?,
            nl_incoming: module.load_function("nl_incoming").map_err(device_error)?,
            nl_reverse: module.load_function("nl_reverse").map_err(device_error)?,
            nl_edges: module.load_function("nl_edges").map_err(device_error)?,
            nl_displacement: module
                .load_function("nl_displacement")
                .map_err(device_error)?,
            nl_bin_fractional: module
                .load_function("nl_bin_fractional")
                .map_err(device_error)?,
            nl_bin_count: module.load_function("nl_bin_count").map_err(device_error)?,
            nl_bin_place: module.load_function("nl_bin_place").map_err(device_error)?,
            nl_bin_sort: module.load_function("nl_bin_sort").map_err(device_error)?,
            nl_bin_renumber: module
                .load_function("nl_bin_renumber")
                .map_err(device_error)?,
            nl_bin_sizes: module.load_function("nl_bin_sizes").map_err(device_error)?,
            nl_bin_members: module
                .load_function("nl_bin_members")
                .map_err(device_error)?,
            atom_order_gather: module
                .load_function("atom_order_gather")
                .map_err(device_error)?,
            atom_order_scatter: module
                .load_function("atom_order_scatter")
                .map_err(device_error)?,
            poly: None,
            half_table,
        })
    }

    /// The kernel that reads `table`: `full` for a table in the engine's precision, the
    /// `_mixed` variant (`half`) for the mixed engine's f16 table.
    fn reader<'a, T>(
        &'a self,
        full: &'a CudaFunction,
        half: impl FnOnce(&'a HalfTableKernels) -> &'a CudaFunction,
        table: &Table<T>,
    ) -> Result<&'a CudaFunction> {
        match (&table.data, &self.half_table) {
            (TableData::Full(_), _) => Ok(full),
            (TableData::Half(_), Some(h)) => Ok(half(h)),
            (TableData::Half(_), None) => Err(crate::error::Error::Internal(
                "an f16 filter table outside the mixed engine".into(),
            )),
        }
    }
}

/// The f32 edge kernels that read the filter as piecewise polynomials from shared
/// memory (`kernels/common.cuh`, "Filter polynomials"): persistent CTAs, one group of
/// 32 channels each, one warp per atom.
pub struct PolyKernels {
    message: CudaFunction,
    /// The same for block 0, whose input v is zero (v_in is not read).
    message_zero_v: CudaFunction,
    /// The message kernels' merged walk (groups of POLY_MERGE atoms per warp).
    message_merged: CudaFunction,
    message_merged_zero_v: CudaFunction,
    edge_backward: CudaFunction,
    /// Channel groups in sequence: the step's first launch (terms of the forward
    /// direction straight into grad_du; the choice compiled in, not tested per edge).
    edge_backward_direct: CudaFunction,
    /// The same, adding to the slots (the other launches in sequence).
    edge_backward_accumulate: CudaFunction,
    /// Block 0 (input v = 0, no state gradient): each pair once, both directions.
    pair_backward: CudaFunction,
    pair_backward_accumulate: CudaFunction,
    edge_backward_sum: CudaFunction,
    /// Groups in sequence: adds the reverse-direction partial terms into grad_du after block 0.
    edge_backward_finish: CudaFunction,
    /// edge_order with the staging records of the polynomial kernels (edge_order_records.cu).
    edge_order_records: CudaFunction,
    /// The same and the merged records (groups of poly_merge() atoms).
    edge_order_records_merged: CudaFunction,
    /// CTAs per channel group (fills the device once: one CTA of 1024 threads per SM).
    ctas_per_group: u32,
    groups: u32,
}

/// Threads per CTA of the polynomial kernels (one atom per warp; the kernels' launch
/// bound, passed to NVRTC as POLY_THREADS): `MLFF_CUDA_POLY_THREADS` (a multiple of 32
/// up to 1024) for tuning, default 896 (72 registers). With the interval coefficients in
/// registers (common.cuh, `PolyCoefficients`) edge_backward took 80 registers, hence 768
/// threads until session 17 (2026-11-26 05:43 UTC, H100: water10k 3.03 ms at 768,
/// 3.13-3.17 at 1024, 3.19-3.24 at 640); with session 17's shorter edge loop, ncu at
/// water10k gives 428 us per launch at 896 against 440 at 768 and 451 at 1024
/// (benches/gpu_results.md, 13:12 UTC; outputs bitwise the same).
pub fn poly_threads() -> u32 {
    static THREADS: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| cta_threads("MLFF_CUDA_POLY_THREADS", 896))
}

/// Threads per CTA from the environment variable `var` (a multiple of 32 up to 1024),
/// else `default`.
fn cta_threads(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|t| *t >= 32 && *t <= 1024 && t % 32 == 0)
        .unwrap_or(default)
}

/// Threads per CTA of the message and pair_backward kernels (POLY_MESSAGE_THREADS): they
/// need fewer registers than edge_backward (no spills at 64), so they run 32 warps per SM
/// instead of 24. `MLFF_CUDA_MESSAGE_THREADS` (a multiple of 32 up to 1024), default
/// 896. Measured on an H100 (benches/gpu_results.md): 768 -> 1024 took water100k from
/// 26.3, 26.1 to 25.5, 25.3 ms (2026-11-26); with today's kernels 1024 -> 896 takes the
/// two message launches at water10k from 201.9 to 197.8 and 196.8 us (ncu, session 23)
/// and water10k from 2.035 to 2.018 ms (bench, mean of five interleaved rounds, session
/// 24; water100k equal).
pub fn message_threads() -> u32 {
    static THREADS: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| cta_threads("MLFF_CUDA_MESSAGE_THREADS", 896))
}

/// Threads per block of the edge-order kernels (edge_order.cu, edge_order_records.cu; one
/// block per atom, passed to NVRTC as EDGE_ORDER_THREADS): `MLFF_CUDA_EDGE_ORDER_THREADS`
/// (a multiple of 32 up to 1024), default 96: water has ~62 candidates per atom, so of
/// 128 threads a quarter to a half idle. ncu, H100, edge_order_records at water10k /
/// water100k (us): 32 threads 57.9 / 415.8, 64 42.8 / 303.5, 96 36.8 / 286.7, 128 40.7 /
/// 309.9 (benches/gpu_results.md, session 23; the order is the same for any count).
pub fn edge_order_threads() -> u32 {
    static THREADS: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| cta_threads("MLFF_CUDA_EDGE_ORDER_THREADS", 96))
}

/// Atoms per warp in the polynomial message kernels' merged walk (POLY_MERGE, common.cuh:
/// a group's edges walked in order of distance, so that consecutive edges share the
/// filter's interval more often): `MLFF_CUDA_MERGE` = `off` (or 1) for one atom per warp,
/// 2 to 8, default 2. Measured on an H200 (benches/gpu_results.md, session 26): ncu at
/// water10k, message kernels 141.9 / 196 / 196 us alone, 127.9 / 187 / 187 with 2 atoms,
/// 140 / 207 / 206 with 4 (each edge's sums then go to one of four atoms' registers:
/// predicated instructions, and the loop becomes bound by issue); water100k 18.1 ->
/// 17.7 ms.
pub fn poly_merge() -> usize {
    static MERGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MERGE.get_or_init(|| match std::env::var("MLFF_CUDA_MERGE").as_deref() {
        Ok("off") => 1,
        Ok(v) => v
            .parse::<usize>()
            .ok()
            .filter(|g| (1..=8).contains(g))
            .unwrap_or(2),
        Err(_) => 2,
    })
}

/// Atoms from which a system takes the merged walk (`MLFF_CUDA_MERGE_MIN_ATOMS`, default
/// 20000): its order writes a second record per edge and searches the group's other atom
/// (ncu, H200, session 26: edge_order_records 35 -> 52 us at water10k, 279 -> 404 us at
/// 100k) for 38 us and 0.55 ms less in the message kernels. Bench, same calls: water100k
/// 18.18, 18.30 -> 17.69, 17.90 ms; water10k within the spread (1.97-2.01 either way);
/// with an earlier, dearer order (68 us at 10k) water3k 0.927 -> 0.946 ms and the
/// 256 x 50-atom batch (~21 edges per atom) no better: below ~20k atoms it is not taken.
pub fn merge_min_atoms() -> usize {
    static MIN: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MIN.get_or_init(|| {
        std::env::var("MLFF_CUDA_MERGE_MIN_ATOMS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000)
    })
}

/// Threads per block of edge_order_records_merged (one block per group of poly_merge()
/// atoms; EDGE_ORDER_MERGED_THREADS): `MLFF_CUDA_EDGE_ORDER_MERGED_THREADS`, default 64
/// per atom of a group (water: ~62 candidates per atom, so a group's edges are staged once).
pub fn edge_order_merged_threads() -> u32 {
    static THREADS: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| {
        let default = (64 * poly_merge() as u32).clamp(64, 1024);
        cta_threads("MLFF_CUDA_EDGE_ORDER_MERGED_THREADS", default)
    })
}

/// Shared memory after the table: 32 edge records of 32 bytes per warp (`EdgeSlots`).
fn edge_slots(threads: u32) -> usize {
    threads as usize * 32
}

impl PolyKernels {
    fn value_smem() -> usize {
        4 * spline::POLY_VALUE.group_floats() + edge_slots(message_threads())
    }
    /// edge_backward's shared memory.
    fn grad_smem() -> usize {
        4 * spline::POLY_GRAD.group_floats() + edge_slots(poly_threads())
    }
    /// pair_backward's: the grad table, message_threads() warps.
    fn pair_smem() -> usize {
        4 * spline::POLY_GRAD.group_floats() + edge_slots(message_threads())
    }

    /// Loads the kernels and raises their dynamic shared memory limit; `None` when the
    /// device cannot give a CTA that much (e.g. 99 KB on sm_86/sm_89).
    pub fn load(
        module: &Arc<CudaModule>,
        ctx: &CudaContext,
        hidden: usize,
    ) -> Result<Option<PolyKernels>> {
        use cudarc::driver::sys::{CUdevice_attribute, CUfunction_attribute};
        let optin = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)
            .map_err(device_error)? as usize;
        let sms = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(device_error)? as u32;
        if optin
            < Self::value_smem()
                .max(Self::grad_smem())
                .max(Self::pair_smem())
            || hidden % spline::POLY_GROUP != 0
        {
            return Ok(None);
        }
        let f = |name: &str, smem: usize| -> Result<CudaFunction> {
            let func = module.load_function(name).map_err(device_error)?;
            if smem > 0 {
                func.set_attribute(
                    CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    smem as i32,
                )
                .map_err(device_error)?;
            }
            Ok(func)
        };
        let groups = (hidden / spline::POLY_GROUP) as u32;
        Ok(Some(PolyKernels {
            message: f("message_poly_f32", Self::value_smem())?,
            message_zero_v: f("message_poly_zero_v_f32", Self::value_smem())?,
            message_merged: f("message_poly_merged_f32", Self::value_smem())?,
            message_merged_zero_v: f("message_poly_merged_zero_v_f32", Self::value_smem())?,
            edge_backward: f("edge_backward_poly_f32", Self::grad_smem())?,
            edge_backward_direct: f("edge_backward_poly_direct_f32", Self::grad_smem())?,
            edge_backward_accumulate: f("edge_backward_poly_accumulate_f32", Self::grad_smem())?,
            pair_backward: f("pair_backward_zero_v_f32", Self::pair_smem())?,
            pair_backward_accumulate: f("pair_backward_zero_v_accumulate_f32", Self::pair_smem())?,
            edge_backward_sum: f("edge_backward_sum_f32", 0)?,
            edge_backward_finish: f("edge_backward_finish_f32", 0)?,
            edge_order_records: f("edge_order_records_f32", 0)?,
            edge_order_records_merged: f("edge_order_records_merged_f32", 0)?,
            ctas_per_group: sms.div_ceil(groups).max(1),
            groups,
        }))
    }

    /// Channel groups (H / 32): `edge_backward` writes 2 x 4 partial sums per pair and group.
    pub fn groups(&self) -> usize {
        self.groups as usize
    }

    /// The launches of a pair-gradient kernel: all groups in one (grid.y = groups) with
    /// `first`, or one per group in sequence, the step's first with `first_in_sequence`
    /// (overwrites) unless `accumulate`, the rest with `accumulating`. (group_base,
    /// kernel, config).
    #[allow(clippy::too_many_arguments)]
    fn group_launches<'a>(
        &self,
        n: usize,
        in_sequence: bool,
        accumulate: bool,
        first: &'a CudaFunction,
        first_in_sequence: &'a CudaFunction,
        accumulating: &'a CudaFunction,
        (threads, smem): (u32, usize),
    ) -> Vec<(i32, &'a CudaFunction, LaunchConfig)> {
        if !in_sequence {
            // Each launch overwrites its partial slots; edge_backward_sum accumulates.
            return vec![(0, first, self.config(n, threads, smem))];
        }
        (0..self.groups as i32)
            .map(|g| {
                let func = if g == 0 && !accumulate {
                    first_in_sequence
                } else {
                    accumulating
                };
                (g, func, self.config_one_group(n, threads, smem))
            })
            .collect()
    }

    /// One channel group per launch: every SM's CTA on the same group.
    fn config_one_group(&self, items: usize, threads: u32, smem: usize) -> LaunchConfig {
        let warps = threads / 32;
        LaunchConfig {
            grid_dim: (
                (items.div_ceil(warps as usize) as u32).clamp(1, self.ctas_per_group * self.groups),
                1,
                1,
            ),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: smem as u32,
        }
    }

    fn config(&self, items: usize, threads: u32, smem: usize) -> LaunchConfig {
        let warps = threads / 32;
        LaunchConfig {
            grid_dim: (
                (items.div_ceil(warps as usize) as u32).clamp(1, self.ctas_per_group),
                self.groups,
                1,
            ),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: smem as u32,
        }
    }
}

/// A block's filter as polynomial tables in the layout of `spline::build_poly_table`
/// (f32): `value` for the message kernels, `grad` for pair_gradient.
pub struct PolyTables<'a, T> {
    pub value: &'a CudaSlice<T>,
    pub grad: &'a CudaSlice<T>,
}

/// `update_cluster.cu` and `update_backward_cluster.cu`: the small-system update kernels
/// with each block's weights split over the 8 blocks of a thread-block cluster (f32,
/// sm_90; the same numbers as update_small bitwise), one entry point per tile (atoms per
/// cluster). Measured on an H100 (benches/gpu_results.md, 2026-11-26): they gain while
/// the clusters fit the GPU at once (mol50 0.140 -> 0.115 ms with 2 atoms per cluster;
/// 192 atoms of water 0.250 -> 0.222 ms with 8) and lose beyond (3000 atoms: 1.06 ->
/// 1.35 ms with 8), so the engine takes the smallest tile whose clusters fit in one
/// wave, and update_small where none does.
struct ClusterKernels {
    /// By tile, ascending.
    variants: Vec<ClusterVariant>,
    update_threads: u32,
    backward_threads: u32,
    /// `MLFF_CUDA_CLUSTER_MAX_ATOMS` (experiments): the largest tile up to this many
    /// atoms where no tile fits in one wave.
    max_atoms: Option<usize>,
}

struct ClusterVariant {
    tile: usize,
    update: CudaFunction,
    update_backward: CudaFunction,
    /// Clusters of both kernels the GPU runs at once (driver occupancy query).
    resident: usize,
    /// message_update_cluster.cu (tiles 1 and 2) and its resident clusters.
    message_update: Option<(CudaFunction, usize)>,
}

/// Blocks per cluster (CLUSTER_BLOCKS in kernels/common.cuh) and the tiles compiled.
const CLUSTER_BLOCKS: usize = 8;
const CLUSTER_TILES: [usize; 4] = [1, 2, 4, 8];

impl ClusterKernels {
    /// None for f64, before sm_90, or with `MLFF_CUDA_CLUSTER=off`.
    fn load<T: Real>(module: &Arc<CudaModule>, ctx: &Arc<CudaContext>) -> Result<Option<Self>> {
        use cudarc::driver::sys::CUdevice_attribute;
        let major = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
            .map_err(device_error)?;
        if T::SUFFIX != "f32"
            || major < 9
            || std::env::var("MLFF_CUDA_CLUSTER").as_deref() == Ok("off")
        {
            return Ok(None);
        }
        let threads = |name: &str| -> Result<u32> {
            let value = module_int(module, ctx, name)?;
            u32::try_from(value).ok().filter(|v| *v > 0).ok_or_else(|| {
                crate::error::Error::Internal(format!("{name} = {value} in the kernel module"))
            })
        };
        let update_threads = threads("update_cluster_threads")?;
        let backward_threads = threads("update_backward_cluster_threads")?;
        let stream = ctx.default_stream();
        let mut variants = Vec::new();
        for tile in CLUSTER_TILES {
            let load = |name: String| module.load_function(&name).map_err(device_error);
            let update = load(format!("update_cluster_t{tile}_f32"))?;
            let update_backward = load(format!("update_backward_cluster_t{tile}_f32"))?;
            // A device or context that cannot say (or hold none) keeps update_small.
            let resident_of = |func: &CudaFunction, threads: u32| {
                func.occupancy_max_active_clusters(cluster_config(1, threads), &stream)
                    .unwrap_or(0)
            };
            let resident = resident_of(&update, update_threads)
                .min(resident_of(&update_backward, backward_threads))
                as usize;
            let message_update =
                if tile <= 2 && std::env::var("MLFF_CUDA_FUSE").as_deref() != Ok("off") {
                    let func = load(format!("message_update_cluster_t{tile}_f32"))?;
                    let resident = resident_of(&func, update_threads) as usize;
                    (resident > 0).then_some((func, resident))
                } else {
                    None
                };
            if resident > 0 {
                variants.push(ClusterVariant {
                    tile,
                    update,
                    update_backward,
                    resident,
                    message_update,
                });
            }
        }
        if variants.is_empty() {
            return Ok(None);
        }
        Ok(Some(ClusterKernels {
            variants,
            update_threads,
            backward_threads,
            max_atoms: std::env::var("MLFF_CUDA_CLUSTER_MAX_ATOMS")
                .ok()
                .and_then(|v| v.parse().ok())
                .map(|v: usize| v.min(SMALL_SYSTEM)),
        }))
    }

    /// The variant for `n` atoms: see `cluster_variant`.
    fn for_atoms(&self, n: usize) -> Option<&ClusterVariant> {
        let shapes = self.variants.iter().map(|v| (v.tile, v.resident));
        cluster_variant(n, shapes, self.max_atoms).map(|k| &self.variants[k])
    }
}

/// Which of the cluster variants (tile, resident clusters; tiles ascending) runs `n`
/// atoms: the smallest tile whose clusters all fit on the GPU at once; where none does,
/// none (update_small), or with `max_atoms` (experiments) the largest tile up to that
/// many atoms.
fn cluster_variant(
    n: usize,
    mut shapes: impl ExactSizeIterator<Item = (usize, usize)>,
    max_atoms: Option<usize>,
) -> Option<usize> {
    let count = shapes.len();
    shapes
        .position(|(tile, resident)| n.div_ceil(tile) <= resident)
        .or_else(|| {
            max_atoms
                .filter(|max| n <= *max && count > 0)
                .map(|_| count - 1)
        })
}

/// Whole clusters of 8 blocks, `clusters` of them.
fn cluster_config(clusters: usize, threads: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: ((clusters * CLUSTER_BLOCKS) as u32, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// An `int` the kernel module defines (a `__device__` global), read once at load.
fn module_int(module: &Arc<CudaModule>, ctx: &Arc<CudaContext>, name: &str) -> Result<i32> {
    let stream = ctx.default_stream();
    let global = module.get_global(name, &stream).map_err(device_error)?;
    let bytes = stream.clone_dtoh(&global).map_err(device_error)?;
    let bytes: [u8; 4] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| crate::error::Error::Internal(format!("{name} is not an int")))?;
    Ok(i32::from_ne_bytes(bytes))
}

/// A register-tiled MLP kernel (`update_tiled.cu`, `update_backward_tiled.cu`; f32; the
/// same numbers as update.cu bitwise) and how many of its blocks the GPU holds at once.
pub struct TiledKernel {
    func: CudaFunction,
    resident_blocks: usize,
    /// Dynamic shared memory per block (bytes).
    smem: usize,
    /// Atoms per block (UT_ATOMS_OF(W)) and threads per block (UT_THREADS_OF(W)).
    atoms: usize,
    threads: u32,
}

/// The wide (16-row slabs, two blocks per SM at H = 128), narrow (8-row slabs, three
/// blocks per SM, registers capped) and wide10 (blocks of 10 warps and 40 atoms, two per
/// SM) variants of one tiled kernel; None where not loaded.
pub struct TiledPair {
    wide: Option<TiledKernel>,
    narrow: Option<TiledKernel>,
    wide10: Option<TiledKernel>,
}

/// MLFF_CUDA_UPDATE: `tiled` runs the wide tiled kernels on every system above
/// SMALL_SYSTEM, `narrow` the narrow ones, `wide10` the 40-atom ones, `plain` none
/// (update.cu); MLFF_CUDA_TILED_MIN_ATOMS runs the wide ones from that many rows;
/// otherwise by waves.
enum TiledChoice {
    Wide,
    Narrow,
    Wide10,
    /// update_wgmma.cu for the forward pass (where loaded), the backward by waves.
    Wgmma,
    Never,
    FromRows(usize),
    ByWaves,
}

/// MLFF_CUDA_READOUT=plain keeps readout.cu's kernel on large f32 systems (same numbers;
/// for comparisons).
fn tiled_readout() -> bool {
    static TILED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TILED.get_or_init(|| std::env::var("MLFF_CUDA_READOUT").as_deref() != Ok("plain"))
}

fn tiled_choice() -> &'static TiledChoice {
    static CHOICE: std::sync::OnceLock<TiledChoice> = std::sync::OnceLock::new();
    CHOICE.get_or_init(|| match std::env::var("MLFF_CUDA_UPDATE").as_deref() {
        Ok("tiled") => TiledChoice::Wide,
        Ok("narrow") => TiledChoice::Narrow,
        Ok("wide10") => TiledChoice::Wide10,
        Ok("wgmma") => TiledChoice::Wgmma,
        Ok("plain") => TiledChoice::Never,
        _ => std::env::var("MLFF_CUDA_TILED_MIN_ATOMS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(TiledChoice::ByWaves, TiledChoice::FromRows),
    })
}

impl TiledKernel {
    /// The launch of `n` rows: a block per `atoms` rows, with the kernel's threads and
    /// dynamic shared memory.
    fn launch_config(&self, n: usize) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (grid(n, self.atoms), 1, 1),
            block_dim: (self.threads, 1, 1),
            shared_mem_bytes: self.smem as u32,
        }
    }

    /// Grid blocks for `n` rows over the blocks the GPU holds at once.
    fn waves(&self, n: usize) -> f64 {
        n.div_ceil(self.atoms) as f64 / self.resident_blocks as f64
    }
}

impl Kernels {
    /// update_wgmma.cu for `n` rows, where loaded and chosen (MLFF_CUDA_UPDATE=wgmma).
    fn wgmma_for_rows(&self, n: usize) -> Option<&TiledKernel> {
        if n <= SMALL_SYSTEM || !matches!(tiled_choice(), TiledChoice::Wgmma) {
            return None;
        }
        self.update_wgmma.as_ref()
    }

    /// Whether the forward update may run on the tensor cores (the engine then packs
    /// each block's weights for it: tensor_core::pack_update_forward).
    pub fn has_update_wgmma(&self) -> bool {
        self.update_wgmma.is_some()
    }
}

impl TiledPair {
    /// The kernel that runs `n` rows, or None for update.cu (and for systems of up to
    /// SMALL_SYSTEM rows). The blocks are coarse (32 atoms), so a grid of just over one
    /// wave of the wide kernel leaves much of the GPU idle during its last wave: between 1
    /// and 1.5 waves the narrow kernel runs instead (three blocks per SM: within one wave
    /// there), else update.cu. Measured on an H100 (benches/gpu_results.md, 2026-11-26):
    /// wide faster than update.cu at 5k, 8k (< 1 wave) and 12.8k ... 100k atoms, slower at
    /// 10k (1.19 waves) and 12k (1.42); narrow 4% faster than update.cu at 10k and 12k and
    /// slower than wide above. Within one wave an SM's time goes with the atoms it holds
    /// (ncu at 10k, session 15: an SM with three narrow blocks took 1.4x as long as one
    /// with two), so where the 40-atom blocks fit one wave (two per SM) they run instead
    /// of the narrow ones: at most 80 atoms per SM instead of 96.
    fn for_rows(&self, n: usize) -> Option<&TiledKernel> {
        if n <= SMALL_SYSTEM {
            return None;
        }
        match tiled_choice() {
            TiledChoice::Wide => self.wide.as_ref(),
            TiledChoice::Narrow => self.narrow.as_ref(),
            TiledChoice::Wide10 => self.wide10.as_ref(),
            TiledChoice::Never => None,
            TiledChoice::FromRows(min) => self.wide.as_ref().filter(|_| n >= *min),
            TiledChoice::ByWaves | TiledChoice::Wgmma => {
                let wide = self.wide.as_ref()?;
                let waves = wide.waves(n);
                if !(1.0 < waves && waves < 1.5) {
                    return Some(wide);
                }
                let one_wave = |k: &&TiledKernel| k.waves(n) <= 1.0;
                self.wide10
                    .as_ref()
                    .filter(one_wave)
                    .or_else(|| self.narrow.as_ref().filter(one_wave))
            }
        }
    }
}

/// A tiled MLP kernel (f32 engines only) with its dynamic shared memory limit raised;
/// None where the device cannot give a block that much (104 KB at H = 128 for the
/// backward: sm_86 and sm_89 have 99 KB), so the engine keeps update.cu's kernels. The
/// shared memory comes from the module (`<name>_shared_bytes`, the kernel's own layout),
/// so host and kernel cannot disagree on it.
fn tiled<T: Real>(
    module: &Arc<CudaModule>,
    ctx: &Arc<CudaContext>,
    name: &str,
    warps: usize,
) -> Result<Option<TiledKernel>> {
    if T::SUFFIX != "f32" {
        return Ok(None);
    }
    // UT_ATOMS_OF(W), UT_THREADS_OF(W) in update_tiled.cu.
    tiled_kernel(module, ctx, name, 4 * warps, 32 * warps as u32)
}

/// A kernel that takes `atoms` rows per block of `threads` threads, with the dynamic
/// shared memory its module states (`<name>_shared_bytes`); None where the device cannot
/// give a block that much.
fn tiled_kernel(
    module: &Arc<CudaModule>,
    ctx: &Arc<CudaContext>,
    name: &str,
    atoms: usize,
    threads: u32,
) -> Result<Option<TiledKernel>> {
    use cudarc::driver::sys::{CUdevice_attribute, CUfunction_attribute};
    let func = module.load_function(name).map_err(device_error)?;
    let smem = module_int(module, ctx, &format!("{name}_shared_bytes"))? as usize;
    if func
        .set_attribute(
            CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            smem as i32,
        )
        .is_err()
    {
        return Ok(None);
    }
    let per_sm = func
        .occupancy_max_active_blocks_per_multiprocessor(threads, smem, None)
        .map_err(device_error)? as usize;
    let sms = ctx
        .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
        .map_err(device_error)? as usize;
    if per_sm == 0 {
        return Ok(None);
    }
    Ok(Some(TiledKernel {
        func,
        resident_blocks: per_sm * sms,
        smem,
        atoms,
        threads,
    }))
}

fn f32_only<T: Real>(name: &str) -> Result<()> {
    if T::SUFFIX == "f32" {
        Ok(())
    } else {
        Err(crate::error::Error::Internal(format!(
            "{name}: the polynomial filter kernels are f32 only"
        )))
    }
}

#[allow(clippy::too_many_arguments)]
pub fn message_poly<T: Real>(
    st: &CudaStream,
    pk: &PolyKernels,
    n: usize,
    edges: &Edges,
    knot: &CudaSlice<i32>,
    distance: &CudaSlice<f64>,
    unit: &CudaSlice<T>,
    tables: &PolyTables<T>,
    inv_rc: f64,
    s_in: &CudaSlice<T>,
    v_in: Option<&CudaSlice<T>>,
    s_out: &mut CudaSlice<T>,
    v_out: &mut CudaSlice<T>,
) -> Result<()> {
    f32_only::<T>("message_poly")?;
    if n == 0 {
        return Ok(());
    }
    let (n_i, intervals) = (n as i32, spline::POLY_VALUE.intervals as i32);
    let inv_h = spline::POLY_VALUE.intervals as f64 * inv_rc;
    // v_in None: the block's input v is zero (block 0); the kernel does not read it.
    let records = edges.records_address(st)?;
    let merged = edges.merged_address(st);
    let (func, v_in) = match (v_in, merged != 0) {
        (Some(v), false) => (&pk.message, v),
        (None, false) => (&pk.message_zero_v, s_in),
        (Some(v), true) => (&pk.message_merged, v),
        (None, true) => (&pk.message_merged_zero_v, s_in),
    };
    let mut b = st.launch_builder(func);
    b.arg(&n_i)
        .arg(&intervals)
        .arg(&inv_h)
        .arg(tables.value)
        .arg(edges.offsets);
    push_edge_staging(&mut b, edges, knot, distance, unit);
    b.arg(s_in)
        .arg(v_in)
        .arg(s_out)
        .arg(v_out)
        .arg(&records)
        .arg(&merged);
    // SAFETY: as for `message` (validated CSR, n-row state buffers, distinct in/out);
    // records, if not null, hold 8 u32 per CSR slot (checked) written by edge_order_records,
    // merged (if not null) 8 more per slot after them (merged_address);
    // the table holds groups x POLY_VALUE.group_floats() floats (blockIdx.y < groups),
    // the dynamic shared memory is that slice plus 32 ints per warp, as the kernel lays
    // it out; distances of unmasked pairs are in [0, rc] (pair_geometry). The zero-v
    // kernel never reads v_in (any valid pointer is passed).
    unsafe { b.launch(pk.config(n, message_threads(), PolyKernels::value_smem())) }
        .map(|_| ())
        .map_err(device_error)
}

/// `edge_order` with the polynomial kernels' staging records (`kernels/edge_order_records.cu`):
/// each atom's summation order into `perm` and, at each place q of that order, slot q's
/// record (8 u32) into `records`.
#[allow(clippy::too_many_arguments)]
pub fn edge_order_records<T: Real>(
    st: &CudaStream,
    pk: &PolyKernels,
    n: usize,
    n_slots: usize,
    merged: bool,
    offsets: &CudaSlice<u32>,
    edge_pair: &CudaSlice<u32>,
    edge_source: &CudaSlice<u32>,
    knot: &CudaSlice<i32>,
    distance: &CudaSlice<f64>,
    unit: &CudaSlice<T>,
    inv_rc: f64,
    perm: &mut CudaSlice<u32>,
    records: &mut CudaSlice<u32>,
) -> Result<()> {
    f32_only::<T>("edge_order_records")?;
    if n == 0 {
        return Ok(());
    }
    if n_slots > perm.len() || records.len() < 8 * n_slots {
        return Err(crate::error::Error::Internal(
            "edge_order_records: buffers too small".into(),
        ));
    }
    // The merged records (message kernels' group walk) after the records, where the
    // buffer holds both.
    let merged_address = merged
        .then(|| merged_records_address(st, records, perm.len()))
        .flatten();
    let merged = merged_address.is_some();
    let n_i = n as i32;
    let (value, grad) = (spline::POLY_VALUE.intervals, spline::POLY_GRAD.intervals);
    let (inv_h_value, intervals_value) = (value as f64 * inv_rc, value as i32);
    let (inv_h_grad, intervals_grad) = (grad as f64 * inv_rc, grad as i32);
    let func = if merged {
        &pk.edge_order_records_merged
    } else {
        &pk.edge_order_records
    };
    let mut b = st.launch_builder(func);
    b.arg(&n_i)
        .arg(offsets)
        .arg(edge_pair)
        .arg(knot)
        .arg(distance)
        .arg(edge_source)
        .arg(unit)
        .arg(&inv_h_value)
        .arg(&intervals_value)
        .arg(&inv_h_grad)
        .arg(&intervals_grad)
        .arg(perm)
        .arg(records);
    if let Some(merged_address) = &merged_address {
        b.arg(merged_address);
    }
    // SAFETY: as `edge_order` (one block of EDGE_ORDER_THREADS per atom, each writing
    // its own CSR range of perm), and a record of 8 u32 at each of those slots,
    // all < n_slots = offsets[n] <= perm's length (records holds 8 n_slots, checked);
    // merged: one block of edge_order_merged_threads() (the kernel's
    // EDGE_ORDER_MERGED_THREADS) per group of poly_merge() atoms, writing the group's CSR
    // range of perm and records and the merged records at places in the same range
    // (< n_slots), in the second half of a buffer of 16 perm.len() u32 (checked);
    // edge_source holds a source per CSR slot, unit 3 values per pair (pairs < n_pairs).
    let config = if merged {
        cfg(n.div_ceil(poly_merge()) as u32, edge_order_merged_threads())
    } else {
        cfg(n as u32, edge_order_threads())
    };
    unsafe { b.launch(config) }
        .map(|_| ())
        .map_err(device_error)
}

/// The fused backward of the edges of a block after the first
/// (`kernels/edge_backward.cu`): the state gradient through the messages and the pair
/// gradient. Groups in parallel: the per-group, per-direction terms go to block `block`'s
/// region of `partial` (groups x n_pairs x 8 values; `partial_offset`), which
/// `edge_backward_sum` adds into grad_du with the other blocks' after block 0. Groups in
/// sequence (`in_sequence`, large lists): the
/// forward direction's terms go straight into grad_du and the reverse direction's into
/// `partial` (4 values per pair), both overwritten by the step's first launch
/// (`accumulate` false) and added to afterwards; `pair_backward` (block 0) then adds
/// partial into grad_du.
#[allow(clippy::too_many_arguments)]
pub fn edge_backward<T: Real>(
    st: &CudaStream,
    pk: &PolyKernels,
    n: usize,
    edges: &Edges,
    pairs: &PairArgs<T>,
    distance: &CudaSlice<f64>,
    tables: &PolyTables<T>,
    inv_rc: f64,
    s_in: &CudaSlice<T>,
    v_in: &CudaSlice<T>,
    grad_s_mid: &CudaSlice<T>,
    grad_v_mid: &CudaSlice<T>,
    grad_s_in: &mut CudaSlice<T>,
    grad_v_in: &mut CudaSlice<T>,
    partial: &mut CudaSlice<T>,
    block: usize,
    in_sequence: bool,
    accumulate: bool,
    grad_du: &mut CudaSlice<T>,
) -> Result<()> {
    f32_only::<T>("edge_backward")?;
    // Without pairs there are no forces or virial, and the state gradient only ever
    // feeds pair terms: nothing to do.
    if n == 0 || pairs.n_pairs == 0 {
        return Ok(());
    }
    let partial_at = partial_address(st, pk, pairs.n_pairs, block, in_sequence, partial, grad_du)?;
    let prefix = PairGradPrefix::new(n, edges, pairs, distance, tables, inv_rc, s_in);
    let launches = pk.group_launches(
        n,
        in_sequence,
        accumulate,
        &pk.edge_backward,
        &pk.edge_backward_direct,
        &pk.edge_backward_accumulate,
        (poly_threads(), PolyKernels::grad_smem()),
    );
    // Groups in sequence write the forward direction into grad_du; in parallel, null.
    let direct: u64 = if in_sequence { address(st, grad_du) } else { 0 };
    let records = edges.records_address(st)?;
    for (group_base, func, config) in launches {
        let mut b = st.launch_builder(func);
        prefix.push(&mut b);
        b.arg(v_in)
            .arg(grad_s_mid)
            .arg(grad_v_mid)
            .arg(&mut *grad_s_in)
            .arg(&mut *grad_v_in)
            .arg(&group_base)
            .arg(&partial_at)
            .arg(&direct)
            .arg(&records);
        // SAFETY: as for `message_poly` (validated CSR, n-row state buffers, the
        // gradient outputs distinct from the inputs); every pair index p < n_pairs and
        // blockIdx.y < gridDim.y, so the block's region of partial (checked: gridDim.y x
        // n_pairs x 8 values from partial_at, or 4 n_pairs in sequence) and grad_du (4
        // n_pairs, direct only) are written in bounds; each slot by one warp per launch,
        // and launches on one stream run in order.
        unsafe { b.launch(config) }.map_err(device_error)?;
    }
    Ok(())
}

/// The pair gradient of block 0 (`kernels/pair_backward.cu`; its input v is zero and no
/// state gradient is needed): each pair once, both directions from one evaluation of the
/// filter. Groups in parallel: per-group terms in block 0's region of `partial` (groups x
/// n_pairs x 4), which `edge_backward_sum` then adds into grad_du. In sequence:
/// straight into grad_du, after which `edge_backward`'s reverse-direction terms (from
/// the blocks after the first, `after_edge_backward`) are added from `partial`.
#[allow(clippy::too_many_arguments)]
pub fn pair_backward<T: Real>(
    st: &CudaStream,
    pk: &PolyKernels,
    n: usize,
    edges: &Edges,
    pairs: &PairArgs<T>,
    distance: &CudaSlice<f64>,
    tables: &PolyTables<T>,
    inv_rc: f64,
    s_in: &CudaSlice<T>,
    grad_s_mid: &CudaSlice<T>,
    grad_v_mid: &CudaSlice<T>,
    partial: &mut CudaSlice<T>,
    in_sequence: bool,
    after_edge_backward: bool,
    grad_du: &mut CudaSlice<T>,
) -> Result<()> {
    f32_only::<T>("pair_backward")?;
    if n == 0 || pairs.n_pairs == 0 {
        return Ok(());
    }
    let partial_at = partial_address(st, pk, pairs.n_pairs, 0, in_sequence, partial, grad_du)?;
    let prefix = PairGradPrefix::new(n, edges, pairs, distance, tables, inv_rc, s_in);
    let accumulate = after_edge_backward;
    let launches = pk.group_launches(
        n,
        in_sequence,
        accumulate,
        &pk.pair_backward,
        &pk.pair_backward,
        &pk.pair_backward_accumulate,
        (message_threads(), PolyKernels::pair_smem()),
    );
    let direct: u64 = if in_sequence { address(st, grad_du) } else { 0 };
    let records = edges.records_address(st)?;
    for (group_base, func, config) in launches {
        let mut b = st.launch_builder(func);
        prefix.push(&mut b);
        b.arg(grad_s_mid)
            .arg(grad_v_mid)
            .arg(&group_base)
            .arg(&partial_at)
            .arg(&direct)
            .arg(pairs.pair_i)
            .arg(&records);
        // SAFETY: as for `edge_backward`; partial is written at (group, pair) slots
        // from partial_at (gridDim.y x n_pairs x 4 within its checked length) in
        // parallel and not at all in sequence; each pair's slot by the one warp whose
        // CSR holds its forward edge.
        // pair_i holds n_pairs atom indices < n, read at indices < n_pairs; if it were not
        // non-decreasing the CTAs' shares would overlap or leave gaps (wrong sums, no
        // out-of-bounds access): tests/engine.rs `check_list_against_brute_force` checks
        // the host list's order, and the GPU list equals the host list.
        unsafe { b.launch(config) }.map_err(device_error)?;
    }
    if !in_sequence || !after_edge_backward {
        return Ok(());
    }
    let config = cfg(grid(pairs.n_pairs, THREADS as usize), THREADS);
    let mut b = st.launch_builder(&pk.edge_backward_finish);
    b.arg(&prefix.np)
        .arg(pairs.knots.knot)
        .arg(&*partial)
        .arg(grad_du);
    // SAFETY: one thread per pair; partial and grad_du hold 4 n_pairs values each
    // (float4 per pair: the buffers are 256-byte aligned).
    unsafe { b.launch(config) }
        .map(|_| ())
        .map_err(device_error)
}

/// The leading arguments of both pair-gradient kernels (edge_backward.cu,
/// pair_backward.cu), in their order: sizes, the grad polynomial table, the CSR, the pair
/// geometry and s_in.
struct PairGradPrefix<'a, T> {
    n_i: i32,
    np: i32,
    intervals: i32,
    inv_h: f64,
    tables: &'a PolyTables<'a, T>,
    edges: &'a Edges<'a>,
    pairs: &'a PairArgs<'a, T>,
    distance: &'a CudaSlice<f64>,
    s_in: &'a CudaSlice<T>,
}

impl<'a, T: Real> PairGradPrefix<'a, T> {
    fn new(
        n: usize,
        edges: &'a Edges<'a>,
        pairs: &'a PairArgs<'a, T>,
        distance: &'a CudaSlice<f64>,
        tables: &'a PolyTables<'a, T>,
        inv_rc: f64,
        s_in: &'a CudaSlice<T>,
    ) -> Self {
        PairGradPrefix {
            n_i: n as i32,
            np: pairs.n_pairs as i32,
            intervals: spline::POLY_GRAD.intervals as i32,
            inv_h: spline::POLY_GRAD.intervals as f64 * inv_rc,
            tables,
            edges,
            pairs,
            distance,
            s_in,
        }
    }

    fn push<'b>(&'b self, b: &mut cudarc::driver::LaunchArgs<'b>) {
        b.arg(&self.n_i)
            .arg(&self.np)
            .arg(&self.intervals)
            .arg(&self.inv_h)
            .arg(self.tables.grad)
            .arg(self.edges.offsets);
        push_edge_staging(
            b,
            self.edges,
            self.pairs.knots.knot,
            self.distance,
            self.pairs.unit,
        );
        b.arg(self.s_in);
    }
}

/// The device address of block `block`'s region of the partial buffer (groups in
/// parallel: `partial_offset`; in sequence: the whole buffer, 4 values per pair), after
/// checking that the buffer holds that region and grad_du 4 values per pair, and that the
/// kernels' offsets within the region fit in 32 bits.
fn partial_address<T>(
    st: &CudaStream,
    pk: &PolyKernels,
    n_pairs: usize,
    block: usize,
    in_sequence: bool,
    partial: &mut CudaSlice<T>,
    grad_du: &CudaSlice<T>,
) -> Result<u64> {
    let (offset, values) = if in_sequence {
        (0, 4 * n_pairs)
    } else {
        let per_block = if block == 0 { 4 } else { 8 };
        (
            partial_offset(block, pk.groups(), n_pairs),
            per_block * pk.groups() * n_pairs,
        )
    };
    if partial.len() < offset + values || grad_du.len() < 4 * n_pairs {
        return Err(crate::error::Error::Internal(
            "edge_backward: partial or grad_du buffer too small".into(),
        ));
    }
    // The kernels index partial (from the region's start) and grad_du with 32-bit offsets
    // (formed at edge staging; with the groups in sequence the top bit marks the direction).
    let limit = if in_sequence {
        1usize << 31
    } else {
        1usize << 32
    };
    if values.max(4 * n_pairs) >= limit {
        return Err(crate::error::Error::invalid(format!(
            "{n_pairs} candidate pairs: too many for one GPU (partial pair gradients need 32-bit offsets)"
        )));
    }
    Ok(address(st, partial) + (offset * std::mem::size_of::<T>()) as u64)
}

/// Groups in parallel: where block l's terms start in the partial buffer (values).
/// Block 0 (`pair_backward`, one direction) holds 4 values per pair and group, each later
/// block (`edge_backward`, two directions) 8; a multiple of 4, so float4-aligned.
pub fn partial_offset(block: usize, groups: usize, n_pairs: usize) -> usize {
    if block == 0 {
        0
    } else {
        (4 + 8 * (block - 1)) * groups * n_pairs
    }
}

/// Values of the partial buffer for `n_pairs` pairs and `n_blocks` blocks: every block's
/// region (groups in parallel), or 4 per pair (in sequence: edge_backward's reverse
/// direction only, one block at a time).
pub fn partial_values(in_sequence: bool, n_blocks: usize, groups: usize, n_pairs: usize) -> usize {
    if in_sequence {
        4 * n_pairs
    } else {
        partial_offset(n_blocks.max(1), groups, n_pairs)
    }
}

/// Groups in parallel, after the last pair-gradient kernel (block 0's `pair_backward`):
/// every block's partial terms added into grad_du in one launch (`edge_backward_sum` in
/// edge_backward.cu): per pair, each block's sum over groups and directions in that
/// order, the blocks from the last to block 0 (the order the per-block sums had when each
/// block added its own). In sequence there is nothing to add here.
pub fn edge_backward_sum<T: Real>(
    st: &CudaStream,
    pk: &PolyKernels,
    pairs: &PairArgs<T>,
    n_blocks: usize,
    in_sequence: bool,
    partial: &CudaSlice<T>,
    grad_du: &mut CudaSlice<T>,
) -> Result<()> {
    f32_only::<T>("edge_backward_sum")?;
    if in_sequence || pairs.n_pairs == 0 || n_blocks == 0 {
        return Ok(());
    }
    let needed = partial_values(false, n_blocks, pk.groups(), pairs.n_pairs);
    if partial.len() < needed || grad_du.len() < 4 * pairs.n_pairs {
        return Err(crate::error::Error::Internal(
            "edge_backward_sum: partial or grad_du buffer too small".into(),
        ));
    }
    let np = pairs.n_pairs as i32;
    let config = cfg(grid(pairs.n_pairs, THREADS as usize), THREADS);
    let groups = pk.groups as i32;
    let blocks = n_blocks as i32;
    let mut b = st.launch_builder(&pk.edge_backward_sum);
    b.arg(&np)
        .arg(&groups)
        .arg(&blocks)
        .arg(pairs.knots.knot)
        .arg(partial)
        .arg(grad_du);
    // SAFETY: one thread per pair; partial holds every block's region (checked:
    // partial_values, float4 per (block, group, pair, direction), regions float4-aligned);
    // grad_du holds 4 n_pairs values (float4 per pair: the buffer is 256-byte aligned).
    unsafe { b.launch(config) }
        .map(|_| ())
        .map_err(device_error)
}

/// The filter table of one block: intervals x 3H channels x 4 coefficients.
pub struct Table<'a, T> {
    pub data: TableData<'a, T>,
    pub inv_h: T,
}

/// Coefficients in the engine's precision (`Cubic<T>`), or the mixed engine's f16
/// coefficients (`Cubic16`, 4 raw f16 per channel and interval).
pub enum TableData<'a, T> {
    Full(&'a CudaSlice<T>),
    Half(&'a CudaSlice<u16>),
}

impl<T: Real> Table<'_, T> {
    /// Pushes the table pointer and 1/h, in the kernels' argument order.
    fn push<'b>(&'b self, b: &mut cudarc::driver::LaunchArgs<'b>) {
        match self.data {
            TableData::Full(d) => b.arg(d),
            TableData::Half(d) => b.arg(d),
        };
        b.arg(&self.inv_h);
    }
}

/// Per-pair position in the filter table (interval, -1 when masked; fraction).
pub struct Knots<'a, T> {
    pub knot: &'a CudaSlice<i32>,
    pub frac: &'a CudaSlice<T>,
}

/// The CSR edges: offsets per destination atom, source atom, packed pair word.
pub struct Edges<'a> {
    pub offsets: &'a CudaSlice<u32>,
    /// Summation order of each atom's edges (a permutation within its range; edge_order).
    pub perm: &'a CudaSlice<u32>,
    pub source: &'a CudaSlice<u32>,
    pub pair: &'a CudaSlice<u32>,
    /// Each CSR slot's staging record for the polynomial kernels (`edge_order_records`: 8 u32
    /// per slot of `perm`), or None: they gather it.
    pub records: Option<&'a CudaSlice<u32>>,
    /// Whether `records` also hold the merged records (edge_order_records wrote them).
    pub merged: bool,
}

/// The merged records' device address: the second half of a records buffer that holds
/// both kinds (16 u32 per CSR slot, `slots` slots: `perm`'s length), or None.
fn merged_records_address(st: &CudaStream, records: &CudaSlice<u32>, slots: usize) -> Option<u64> {
    (records.len() >= 16 * slots).then(|| address(st, records) + 32 * slots as u64)
}

impl Edges<'_> {
    /// The merged records' device address (edge_order_records: each group of POLY_MERGE
    /// atoms' records in merged order, after the records), or 0 where the buffer does
    /// not hold them (`MLFF_CUDA_MERGE=off`, or no records).
    fn merged_address(&self, st: &CudaStream) -> u64 {
        match self.records {
            Some(r) if self.merged => merged_records_address(st, r, self.perm.len()).unwrap_or(0),
            _ => 0,
        }
    }

    /// The records' device address for the polynomial kernels (0: none), after checking
    /// that they cover every CSR slot.
    fn records_address(&self, st: &CudaStream) -> Result<u64> {
        match self.records {
            None => Ok(0),
            Some(r) if r.len() >= 8 * self.perm.len() => Ok(address(st, r)),
            Some(_) => Err(crate::error::Error::Internal(
                "edge records buffer too small".into(),
            )),
        }
    }
}

/// Pushes what the polynomial kernels stage each edge from (and edge_order_records packs), in
/// their argument order: edge_perm, edge_source, edge_pair, knot, distance, unit.
fn push_edge_staging<'b, T: Real>(
    b: &mut cudarc::driver::LaunchArgs<'b>,
    edges: &'b Edges<'b>,
    knot: &'b CudaSlice<i32>,
    distance: &'b CudaSlice<f64>,
    unit: &'b CudaSlice<T>,
) {
    b.arg(edges.perm)
        .arg(edges.source)
        .arg(edges.pair)
        .arg(knot)
        .arg(distance)
        .arg(unit);
}

pub fn embed<T: Real>(
    st: &CudaStream,
    k: &Kernels,
    n: usize,
    numbers: &CudaSlice<i32>,
    embedding: &CudaSlice<T>,
    s: &mut CudaSlice<T>,
    v: Option<&mut CudaSlice<T>>,
) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let n_i = n as i32;
    // Null: the kernel writes s only.
    let v_ptr: u64 = v.map_or(0, |v| address(st, v));
    let mut b = st.launch_builder(&k.embed);
    b.arg(&n_i).arg(numbers).arg(embedding).arg(s).arg(&v_ptr);
    // One thread per 16-byte word of v (or of s when v is null), EMBED_THREADS = 256
    // per block; the kernel strides over the rest.
    let words = n * k.hidden * std::mem::size_of::<T>() / 16;
    let threads = if v_ptr != 0 { 3 * words } else { words };
    // SAFETY: numbers has n entries in 1..=max_z (validated), embedding (max_z+1)*H,
    // s n*H and v (when not null) n*3H values (rows of H*size_of::<T>() bytes, a
    // multiple of 16: H is 32, 64, 96 or 128).
    unsafe { b.launch(cfg(grid(threads, 256), 256)) }
        .map(|_| ())
        .map_err(device_error)
}

#[allow(clippy::too_many_arguments)]
pub fn pair_geometry<T: Real>(
    st: &CudaStream,
    k: &Kernels,
    n_pairs: usize,
    pair_atoms: &PairAtoms,
    cutoff: f64,
    inv_h: f64,
    n_intervals: i32,
    distance: &mut CudaSlice<f64>,
    knot: &mut CudaSlice<i32>,
    frac: &mut CudaSlice<T>,
    unit: &mut CudaSlice<T>,
    coincident: &mut CudaSlice<i32>,
) -> Result<()> {
    if n_pairs == 0 {
        return Ok(());
    }
    let np = n_pairs as i32;
    let system = pair_atoms.system_address(st);
    let mut b = st.launch_builder(&k.pair_geometry);
    b.arg(&np);
    pair_atoms.push(&mut b, &system);
    b.arg(&cutoff)
        .arg(&inv_h)
        .arg(&n_intervals)
        .arg(distance)
        .arg(knot)
        .arg(frac)
        .arg(unit)
        .arg(coincident);
    // SAFETY: positions holds 3n f64 and pair atoms are < n; shift holds n_pairs words,
    // cells 9 per system and atom_system (when not null) n system indices below the
    // number of systems; distance, knot and frac n_pairs, unit 3*n_pairs; coincident is
    // one int.
    unsafe { b.launch(cfg(grid(n_pairs, THREADS as usize), THREADS)) }
        .map(|_| ())
        .map_err(device_error)
}

/// The arguments message.cu and message_update_cluster.cu start with: the atom count, the
/// CSR, each pair's table position and unit vector, the filter table and 1/h.
fn push_message_inputs<'b, T: Real>(
    b: &mut cudarc::driver::LaunchArgs<'b>,
    n_atoms: &'b i32,
    edges: &'b Edges,
    knots: &'b Knots<T>,
    unit: &'b CudaSlice<T>,
    table: &'b Table<T>,
) {
    b.arg(n_atoms)
        .arg(edges.offsets)
        .arg(edges.perm)
        .arg(edges.source)
        .arg(edges.pair)
        .arg(knots.knot)
        .arg(knots.frac)
        .arg(unit);
    table.push(b);
}

#[allow(clippy::too_many_arguments)]
pub fn message<T: Real>(
    st: &CudaStream,
    k: &Kernels,
    n: usize,
    edges: &Edges,
    knots: &Knots<T>,
    unit: &CudaSlice<T>,
    table: &Table<T>,
    s_in: &CudaSlice<T>,
    v_in: &CudaSlice<T>,
    s_out: &mut CudaSlice<T>,
    v_out: &mut CudaSlice<T>,
) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let n_i = n as i32;
    let (func, slices) = if n <= SMALL_SYSTEM {
        (
            k.reader(&k.message_small, |h| &h.message_small, table)?,
            SMALL_SLICES,
        )
    } else {
        (k.reader(&k.message, |h| &h.message, table)?, 1)
    };
    let mut b = st.launch_builder(func);
    push_message_inputs(&mut b, &n_i, edges, knots, unit, table);
    b.arg(s_in).arg(v_in).arg(s_out).arg(v_out);
    // SAFETY: the CSR (n+1 offsets, sources < n, pair indices < n_pairs) comes from a
    // validated neighbour list; knots (from pair_geometry) index the table's intervals; state buffers
    // hold n*H (s) and n*3H (v); s_in/v_in and s_out/v_out are distinct buffers; one
    // block of H x slices threads per atom, as the kernel variant expects.
    unsafe { b.launch(cfg(n as u32, k.hidden as u32 * slices)) }
        .map(|_| ())
        .map_err(device_error)
}

/// The update MLP's weights of one block, for `message_update`.
pub struct UpdateWeights<'a, T> {
    pub w1t: &'a CudaSlice<T>,
    pub b1: &'a CudaSlice<T>,
    pub w2t: &'a CudaSlice<T>,
    pub b2: &'a CudaSlice<T>,
    pub mixing: &'a CudaSlice<T>,
    pub vector_update: bool,
}

/// Whether `message_update` is loaded at all (sm_90, f32, not `MLFF_CUDA_FUSE=off`): the
/// mixed engine keeps its f32 table only then.
pub fn message_update_loaded(k: &Kernels) -> bool {
    k.cluster
        .as_ref()
        .is_some_and(|c| c.variants.iter().any(|v| v.message_update.is_some()))
}

/// Whether `message_update` runs `n` atoms (cluster kernels with a tile of 1 or 2 atoms
/// whose fused clusters all fit at once, the f32 table; `MLFF_CUDA_FUSE=off`: never).
pub fn message_update_applies<T: Real>(k: &Kernels, n: usize, table: &Table<T>) -> bool {
    let fused = k
        .cluster
        .as_ref()
        .and_then(|c| c.for_atoms(n))
        .and_then(|v| {
            let (_, resident) = v.message_update.as_ref()?;
            (n.div_ceil(v.tile) <= *resident).then_some(())
        });
    fused.is_some() && matches!(table.data, TableData::Full(_)) && n <= SMALL_SYSTEM
}

/// `message` then `update` of one block in one launch (kernels/message_update_cluster.cu),
/// the same numbers bitwise; only where `message_update_applies`. v_out must differ from
/// v_in (other clusters still read v_in while a cluster writes its atoms' v_out).
#[allow(clippy::too_many_arguments)]
pub fn message_update<T: Real>(
    st: &CudaStream,
    k: &Kernels,
    n: usize,
    edges: &Edges,
    knots: &Knots<T>,
    unit: &CudaSlice<T>,
    table: &Table<T>,
    s_in: &CudaSlice<T>,
    v_in: &CudaSlice<T>,
    s_mid: &mut CudaSlice<T>,
    v_mid: &mut CudaSlice<T>,
    weights: &UpdateWeights<T>,
    z: &mut CudaSlice<T>,
    y: Option<&mut CudaSlice<T>>,
    s_out: Option<&mut CudaSlice<T>>,
    v_out: &mut CudaSlice<T>,
) -> Result<()> {
    let internal = |what: &str| crate::error::Error::Internal(format!("message_update: {what}"));
    if !message_update_applies(k, n, table) {
        return Err(internal("not for this system"));
    }
    let cluster = k
        .cluster
        .as_ref()
        .ok_or_else(|| internal("no cluster kernels"))?;
    let variant = cluster.for_atoms(n).ok_or_else(|| internal("no tile"))?;
    let (func, _) = variant
        .message_update
        .as_ref()
        .ok_or_else(|| internal("no fused kernel"))?;
    let n_i = n as i32;
    let vu = weights.vector_update as i32;
    let s_mid_ptr = address(st, s_mid);
    let s_out_ptr = s_out.map_or(s_mid_ptr, |s| address(st, s));
    let y_ptr: u64 = y.map_or(0, |y| address(st, y));
    let mut b = st.launch_builder(func);
    push_message_inputs(&mut b, &n_i, edges, knots, unit, table);
    b.arg(s_in)
        .arg(v_in)
        .arg(&s_mid_ptr)
        .arg(v_mid)
        .arg(weights.w1t)
        .arg(weights.b1)
        .arg(weights.w2t)
        .arg(weights.b2)
        .arg(weights.mixing)
        .arg(&vu)
        .arg(z)
        .arg(&y_ptr)
        .arg(&s_out_ptr)
        .arg(v_out);
    // SAFETY: as `message` (CSR, knots, f32 table: checked by message_update_applies) and
    // `update` (the cluster kernel's shapes, whole clusters of 8 blocks, `tile` atoms each,
    // the last masked; s_out may be s_mid: each block writes s'' of its own channels after
    // the cluster exchange of s'). v_out is not v_in (the caller alternates two buffers);
    // s_in, v_in are read only, s_mid / v_mid rows only by the cluster of their atoms.
    unsafe {
        b.launch(cluster_config(
            n.div_ceil(variant.tile),
            cluster.update_threads,
        ))
    }
    .map(|_| ())
    .map_err(device_error)
}

#[allow(clippy::too_many_arguments)]
/// `s_out` None: s'' is written over s' (the last block; each thread reads its rows of
/// s' before it writes them).
pub fn update<T: Real>(
    st: &CudaStream,
    k: &Kernels,
    n: usize,
    s_mid: &mut CudaSlice<T>,
    v_mid: &CudaSlice<T>,
    w1t: &CudaSlice<T>,
    b1: &CudaSlice<T>,
    w2t: &CudaSlice<T>,
    b2: &CudaSlice<T>,
    mixing: &CudaSlice<T>,
    vector_update: bool,
    wgmma_weights: Option<&CudaSlice<T>>,
    z: &mut CudaSlice<T>,
    y: Option<&mut CudaSlice<T>>,
    s_out: Option<&mut CudaSlice<T>>,
    v_out: &mut CudaSlice<T>,
) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let n_i = n as i32;
    let vu = vector_update as i32;
    let config = |func, blocks, threads, smem: usize| {
        let config = LaunchConfig {
            grid_dim: (blocks, 1, 1),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: smem as u32,
        };
        (func, config)
    };
    // The tensor-core kernel takes the packed weights in place of U1 and U2.
    let wgmma = k.wgmma_for_rows(n).zip(wgmma_weights);
    let cluster = k.cluster.as_ref().and_then(|c| Some((c, c.for_atoms(n)?)));
    let (func, launch) = if let Some((w, _)) = wgmma {
        (&w.func, w.launch_config(n))
    } else if let Some((c, v)) = cluster {
        (
            &v.update,
            cluster_config(n.div_ceil(v.tile), c.update_threads),
        )
    } else {
        match (k.update_tiled.for_rows(n), n <= SMALL_SYSTEM) {
            (_, true) => config(
                &k.update_small,
                grid(n, SMALL_TILE),
                k.hidden as u32 * SMALL_SLICES,
                0,
            ),
            (Some(tiled), false) => (&tiled.func, tiled.launch_config(n)),
            _ => config(&k.update, grid(n, k.tile), k.hidden as u32 * k.slices, 0),
        }
    };
    let s_mid_ptr = address(st, s_mid);
    let s_out_ptr = s_out.map_or(s_mid_ptr, |s| address(st, s));
    // Null: the gates are not saved (update_backward recomputes them from z).
    let y_ptr: u64 = y.map_or(0, |y| address(st, y));
    let mut b = st.launch_builder(func);
    b.arg(&n_i).arg(&s_mid_ptr).arg(v_mid);
    match wgmma {
        Some((_, packed)) => b.arg(packed).arg(b1).arg(b2),
        None => b.arg(w1t).arg(b1).arg(w2t).arg(b2),
    };
    b.arg(mixing)
        .arg(&vu)
        .arg(z)
        .arg(&y_ptr)
        .arg(&s_out_ptr)
        .arg(v_out);
    // SAFETY: per-atom buffers hold n rows (H or 3H wide; y 2H, written only with
    // vector_update and when not null), weights have the shapes of the model (2H x H, H x 3H transposed),
    // mixing 9 values; the last tile is masked; H x slices threads, as the kernel expects.
    // s_out may be s_mid: the kernel stages each atom's s' row in shared memory (the
    // tiled kernel in registers) before the same thread writes s'' (and all kernels of
    // the engine run on this stream). The tiled kernel: 32 atoms per block of 256
    // threads, H a multiple of 32 (each lane H / 32 channels), the last tile masked,
    // its dynamic shared memory as the kernel lays it out (raised at load). The cluster
    // kernel: whole clusters of 8 blocks (its compiled cluster shape), `tile` atoms each,
    // the last masked, its thread count from the module; every block reads the tile's s'
    // before the cluster barrier and writes s'' (its own channels) only after it. The
    // tensor-core kernel: `packed` is tensor_core::pack_update_forward of this block's
    // weights with the same vector_update (16 + 24 or 16 + 8 slabs, as the kernel reads
    // them); 64 atoms per block of 128 threads (one warpgroup), the last tile masked, its
    // dynamic shared memory as the kernel lays it out (raised at load); it was loaded
    // only where it exists (update_wgmma_f32_available: sm_90a); each block stages its
    // atoms' s' in shared memory before it writes their s''.
    unsafe { b.launch(launch) }
        .map(|_| ())
        .map_err(device_error)
}

pub struct HeadArgs<'a, T> {
    pub at: &'a CudaSlice<T>,
    pub a_bias: &'a CudaSlice<T>,
    pub a_w: &'a CudaSlice<T>,
    pub bt: &'a CudaSlice<T>,
    pub b_bias: &'a CudaSlice<T>,
    pub b_w: &'a CudaSlice<T>,
    pub c_w: &'a CudaSlice<T>,
    pub c_bias: &'a CudaSlice<T>,
}

#[allow(clippy::too_many_arguments)]
pub fn readout<T: Real>(
    st: &CudaStream,
    k: &Kernels,
    n: usize,
    is_local: &CudaSlice<u8>,
    s: &CudaSlice<T>,
    head: &HeadArgs<T>,
    atom_energy: &mut CudaSlice<T>,
    grad_s: &mut CudaSlice<T>,
) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let n_i = n as i32;
    let tiled = k
        .readout_tiled
        .as_ref()
        .filter(|_| n > SMALL_SYSTEM && tiled_readout());
    let (func, launch) = match tiled {
        Some(t) => (&t.func, t.launch_config(n)),
        None if n <= SMALL_SYSTEM => (
            &k.readout_small,
            cfg(grid(n, SMALL_TILE), k.hidden as u32 * SMALL_SLICES),
        ),
        None => (&k.readout, cfg(grid(n, k.tile), k.hidden as u32)),
    };
    let mut b = st.launch_builder(func);
    b.arg(&n_i)
        .arg(is_local)
        .arg(s)
        .arg(head.at)
        .arg(head.a_bias)
        .arg(head.a_w)
        .arg(head.bt)
        .arg(head.b_bias)
        .arg(head.b_w)
        .arg(head.c_w)
        .arg(head.c_bias)
        .arg(atom_energy)
        .arg(grad_s);
    // SAFETY: s and grad_s hold n*H, atom_energy and is_local n; head weights have the
    // model's shapes; the block has the threads (and the tiled kernel the dynamic shared
    // memory) its variant expects.
    unsafe { b.launch(launch) }
        .map(|_| ())
        .map_err(device_error)
}

/// What update_backward writes into the block's input v (for the edge backward).
pub enum InputV<'a, T> {
    /// Already there (the last block: the forward pass left it).
    Keep,
    /// v = 0 (block 0).
    Zero,
    /// v = v' g1 + (M v') g2 of the previous block.
    Gate {
        v_mid: &'a CudaSlice<T>,
        y: &'a CudaSlice<T>,
        mixing: &'a CudaSlice<T>,
    },
    /// The same with the previous block's gates recomputed from its z (they were not
    /// saved) and written to `y_out` (2H per atom) for its own update_backward.
    GateFromZ {
        v_mid: &'a CudaSlice<T>,
        z: &'a CudaSlice<T>,
        w2t: &'a CudaSlice<T>,
        b2: &'a CudaSlice<T>,
        mixing: &'a CudaSlice<T>,
        y_out: &'a mut CudaSlice<T>,
    },
}

#[allow(clippy::too_many_arguments)]
pub fn update_backward<T: Real>(
    st: &CudaStream,
    k: &Kernels,
    n: usize,
    grad_s_out: &CudaSlice<T>,
    grad_v_out: &CudaSlice<T>,
    v_mid_then_grad: &mut CudaSlice<T>,
    z: &CudaSlice<T>,
    y: &CudaSlice<T>,
    w1: &CudaSlice<T>,
    w2: &CudaSlice<T>,
    mixing: &CudaSlice<T>,
    vector_update: bool,
    grad_s_mid: &mut CudaSlice<T>,
    input_v: InputV<'_, T>,
    v_in: &mut CudaSlice<T>,
) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let n_i = n as i32;
    let vu = vector_update as i32;
    let launch = |blocks, threads, smem: usize| LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: smem as u32,
    };
    // The cluster kernel does not recompute gates (GateFromZ: large systems only).
    let cluster = k
        .cluster
        .as_ref()
        .filter(|_| !matches!(input_v, InputV::GateFromZ { .. }))
        .and_then(|c| Some((c, c.for_atoms(n)?)));
    let (func, config) = if let Some((c, v)) = cluster {
        let config = cluster_config(n.div_ceil(v.tile), c.backward_threads);
        (&v.update_backward, config)
    } else {
        match (k.update_backward_tiled.for_rows(n), n <= SMALL_SYSTEM) {
            (_, true) => (
                &k.update_backward_small,
                launch(grid(n, SMALL_TILE), k.hidden as u32 * SMALL_SLICES, 0),
            ),
            (Some(tiled), false) => (&tiled.func, tiled.launch_config(n)),
            _ => (
                &k.update_backward,
                launch(grid(n, k.tile), k.hidden as u32 * k.slices, 0),
            ),
        }
    };
    // g_v' is written over v' (no longer needed once this block's update is undone).
    let v_ptr = address(st, v_mid_then_grad);
    let mut b = st.launch_builder(func);
    b.arg(&n_i)
        .arg(grad_s_out)
        .arg(grad_v_out)
        .arg(&v_ptr)
        .arg(z)
        .arg(y)
        .arg(w1)
        .arg(w2)
        .arg(mixing)
        .arg(&vu)
        .arg(grad_s_mid)
        .arg(&v_ptr);
    let any = v_ptr; // any valid pointer for the unused inputs
    let (mode, prev_v, prev_y, prev_m, prev_z, prev_w2t, prev_b2) = match input_v {
        InputV::Keep => (0i32, any, any, any, any, any, any),
        InputV::Zero => (1, any, any, any, any, any, any),
        InputV::Gate { v_mid, y, mixing } => (
            2,
            address(st, v_mid),
            address(st, y),
            address(st, mixing),
            any,
            any,
            any,
        ),
        InputV::GateFromZ {
            v_mid,
            z,
            w2t,
            b2,
            mixing,
            y_out,
        } => (
            3,
            address(st, v_mid),
            address(st, y_out),
            address(st, mixing),
            address(st, z),
            address(st, w2t),
            address(st, b2),
        ),
    };
    b.arg(&mode)
        .arg(&prev_v)
        .arg(&prev_y)
        .arg(&prev_m)
        .arg(&prev_z)
        .arg(&prev_w2t)
        .arg(&prev_b2)
        .arg(v_in);
    // SAFETY: as for `update`; grad_v_out and y (n x 2H) are only read when vector_update
    // is set; H x slices threads. v' and g_v' share a buffer: each element (atom, axis,
    // channel) is read and then written by the same thread only (update_backward.cu).
    // v_in (3Hn) is a buffer of its own; with Gate, the previous block's v' (3Hn), gates
    // (2Hn: a block with a vector update) and mixing (9) are only read; with GateFromZ,
    // its z (Hn), U2 (H x 3H transposed), c2 (3H) and mixing are read and y_out, a buffer
    // distinct from every other argument holding at least 2Hn values, is written.
    // The tiled kernel: 32 atoms per block of 256 threads, its dynamic shared memory as
    // the kernel lays it out (raised at load); the same element ownership (each element
    // of v' read, then written, by one thread). The cluster kernel (never with GateFromZ):
    // whole clusters of 8 blocks (its compiled cluster shape), `tile` atoms each, the last
    // masked, its thread count from the module; each block reads every channel of v' and
    // g_v'' before the cluster barrier and writes g_v' (its own channels) only after it.
    unsafe { b.launch(config) }
        .map(|_| ())
        .map_err(device_error)
}

#[allow(clippy::too_many_arguments)]
pub fn message_backward<T: Real>(
    st: &CudaStream,
    k: &Kernels,
    n: usize,
    edges: &Edges,
    knots: &Knots<T>,
    table: &Table<T>,
    grad_s_mid: &CudaSlice<T>,
    grad_v_mid: &CudaSlice<T>,
    grad_s_in: &mut CudaSlice<T>,
    grad_v_in: &mut CudaSlice<T>,
) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let n_i = n as i32;
    let (func, slices) = if n <= SMALL_SYSTEM {
        let func = k.reader(
            &k.message_backward_small,
            |h| &h.message_backward_small,
            table,
        )?;
        (func, SMALL_SLICES)
    } else {
        (
            k.reader(&k.message_backward, |h| &h.message_backward, table)?,
            1,
        )
    };
    let mut b = st.launch_builder(func);
    b.arg(&n_i)
        .arg(edges.offsets)
        .arg(edges.perm)
        .arg(edges.source)
        .arg(edges.pair)
        .arg(knots.knot)
        .arg(knots.frac);
    table.push(&mut b);
    b.arg(grad_s_mid)
        .arg(grad_v_mid)
        .arg(grad_s_in)
        .arg(grad_v_in);
    // SAFETY: as for `message`.
    unsafe { b.launch(cfg(n as u32, k.hidden as u32 * slices)) }
        .map(|_| ())
        .map_err(device_error)
}

pub struct PairArgs<'a, T> {
    pub n_pairs: usize,
    pub pair_i: &'a CudaSlice<u32>,
    pub pair_j: &'a CudaSlice<u32>,
    pub knots: Knots<'a, T>,
    pub unit: &'a CudaSlice<T>,
}

#[allow(clippy::too_many_arguments)]
pub fn pair_gradient<T: Real>(
    st: &CudaStream,
    k: &Kernels,
    pairs: &PairArgs<T>,
    table: &Table<T>,
    s_in: &CudaSlice<T>,
    v_in: &CudaSlice<T>,
    grad_s_mid: &CudaSlice<T>,
    grad_v_mid: &CudaSlice<T>,
    accumulate: bool,
    grad_du: &mut CudaSlice<T>,
) -> Result<()> {
    if pairs.n_pairs == 0 {
        return Ok(());
    }
    let np = pairs.n_pairs as i32;
    let acc = accumulate as i32;
    let mut b = st.launch_builder(k.reader(&k.pair_gradient, |h| &h.pair_gradient, table)?);
    b.arg(&np)
        .arg(pairs.pair_i)
        .arg(pairs.pair_j)
        .arg(pairs.knots.knot)
        .arg(pairs.knots.frac)
        .arg(pairs.unit);
    table.push(&mut b);
    b.arg(s_in)
        .arg(v_in)
        .arg(grad_s_mid)
        .arg(grad_v_mid)
        .arg(&acc)
        .arg(grad_du);
    // SAFETY: one warp per pair (8 per block, the tail masked); pair atoms < n index
    // the n-row state buffers; grad_du holds 4 n_pairs values.
    unsafe { b.launch(cfg(grid(pairs.n_pairs, (THREADS / 32) as usize), THREADS)) }
        .map(|_| ())
        .map_err(device_error)
}

/// What atom_gather needs to recompute each pair vector r_p = r_j - r_i + offset_p
/// (bitwise pair_geometry's).
/// What the pair vectors r_p = (r_j - r_i) + shift_p . cell are formed from
/// (common.cuh, `pair_vector_`).
pub struct PairAtoms<'a> {
    pub positions: &'a CudaSlice<f64>,
    pub pair_i: &'a CudaSlice<u32>,
    pub pair_j: &'a CudaSlice<u32>,
    /// Lattice shifts, packed (common.cuh, `shift_pack`; engine.rs, `pack_shift`).
    pub shift: &'a CudaSlice<u64>,
    /// Cell rows of each system, 9 values per system (zero without a cell).
    pub cells: &'a CudaSlice<f64>,
    /// The system of each atom; None for a single system.
    pub atom_system: Option<&'a CudaSlice<u32>>,
}

impl PairAtoms<'_> {
    /// The device address of `atom_system`, or null (0) for a single system.
    fn system_address(&self, st: &CudaStream) -> u64 {
        self.atom_system.map_or(0, |a| address(st, a))
    }

    /// Pushes positions, pair_i, pair_j, shift, cells and `system` (from
    /// `system_address`), the kernels' argument order.
    fn push<'b>(&'b self, b: &mut cudarc::driver::LaunchArgs<'b>, system: &'b u64) {
        b.arg(self.positions)
            .arg(self.pair_i)
            .arg(self.pair_j)
            .arg(self.shift)
            .arg(self.cells)
            .arg(system);
    }
}

/// What `reduce` sums, for `atom_gather` with the reduction.
pub struct Totals<'a, T> {
    pub atom_energy: &'a CudaSlice<T>,
    pub want_virial: bool,
    pub coincident: &'a mut CudaSlice<i32>,
    /// One counter, zero between calls (the kernel's last block resets it).
    pub blocks_done: &'a mut CudaSlice<u32>,
    pub totals: TotalsOut<'a>,
}

/// Where `atom_gather_reduce` writes the 11 totals.
pub enum TotalsOut<'a> {
    /// Their own buffer (11 doubles).
    Buffer(&'a mut CudaSlice<f64>),
    /// The forces buffer's rows 3n .. 3n + 11 (it holds at least 3n + TOTALS_AFTER_FORCES
    /// doubles), so that one download brings back forces and totals.
    AfterForces,
}

/// Where `atom_gather` writes the forces (and, with `TotalsOut::AfterForces`, the totals
/// after them).
pub enum ForcesOut<'a> {
    /// The engine's device buffer (3 x capacity doubles and TOTALS_AFTER_FORCES more).
    Device(&'a mut CudaSlice<f64>),
    /// Page-locked host memory mapped into the device's address space (`address`, `len`
    /// doubles): the results need no download after the kernel.
    Host { address: u64, len: usize },
}

/// Doubles that the forces buffer keeps after its 3 x capacity values, for the totals
/// (`TotalsOut::AfterForces`).
pub const TOTALS_AFTER_FORCES: usize = 11;

/// Forces and per-atom virials (kernels/atom_gather.cu); with `then_reduce`, also what
/// `reduce` sums, in the same launch (kernels/atom_gather_reduce.cu; systems of
/// 1 ..= SMALL_SYSTEM atoms only: `reduce_single`'s single block sums them).
#[allow(clippy::too_many_arguments)]
pub fn atom_gather<T: Real>(
    st: &CudaStream,
    k: &Kernels,
    n: usize,
    edges: &Edges,
    knot: &CudaSlice<i32>,
    pair_atoms: &PairAtoms,
    grad_du: &CudaSlice<T>,
    want_atom_virials: bool,
    forces: ForcesOut,
    atom_virials: &mut CudaSlice<f64>,
    then_reduce: Option<Totals<T>>,
) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    if then_reduce.is_some() && n > SMALL_SYSTEM {
        return Err(crate::error::Error::Internal(format!(
            "atom_gather_reduce is for 1 to {SMALL_SYSTEM} atoms, not {n}"
        )));
    }
    let n_i = n as i32;
    let w = want_atom_virials as i32;
    let system = pair_atoms.system_address(st);
    let after_forces = matches!(
        then_reduce,
        Some(Totals {
            totals: TotalsOut::AfterForces,
            ..
        })
    );
    let (forces_address, forces_len) = match &forces {
        ForcesOut::Device(buffer) => (address(st, buffer), buffer.len()),
        ForcesOut::Host { address, len } => (*address, *len),
    };
    let needed = 3 * n + if after_forces { TOTALS_AFTER_FORCES } else { 0 };
    if forces_len < needed || forces_address == 0 {
        return Err(crate::error::Error::Internal(format!(
            "the forces buffer holds {forces_len} doubles, not {needed}"
        )));
    }
    // Rows 3n .. 3n + 11 of the forces buffer (8 bytes each).
    let totals_after_forces = if after_forces {
        forces_address + 8 * 3 * n as u64
    } else {
        0
    };
    let func = match then_reduce {
        Some(_) => &k.atom_gather_reduce,
        None => &k.atom_gather,
    };
    let mut b = st.launch_builder(func);
    b.arg(&n_i)
        .arg(edges.offsets)
        .arg(edges.perm)
        .arg(edges.pair)
        .arg(knot);
    pair_atoms.push(&mut b, &system);
    b.arg(grad_du).arg(&w);
    // The device buffer as itself (its stream tracking), host memory by its address.
    match &forces {
        ForcesOut::Device(buffer) => b.arg(&**buffer),
        ForcesOut::Host { .. } => b.arg(&forces_address),
    };
    b.arg(atom_virials);
    let want_virial = then_reduce.as_ref().map_or(0, |t| t.want_virial as i32);
    if let Some(sums) = then_reduce {
        b.arg(sums.atom_energy)
            .arg(&want_virial)
            .arg(sums.coincident)
            .arg(sums.blocks_done);
        match sums.totals {
            TotalsOut::Buffer(totals) => b.arg(totals),
            TotalsOut::AfterForces => b.arg(&totals_after_forces),
        };
    }
    // SAFETY: forces holds 3n values (checked above; a host buffer is page-locked,
    // mapped, and outlives the launch: the engine keeps it and keys its graphs by its
    // address), atom_virials 9n values; the CSR is valid (see `message`),
    // so every pair index p < n_pairs indexes knot, pair_i, pair_j, shift (n_pairs) and
    // grad_du (4 n_pairs); pair atoms are < n, the rows of positions (3n) and, when not
    // null, of atom_system, whose entries index cells (9 per system).
    // One warp per atom (8 per block, the tail masked). With the reduction: atom_energy
    // holds n and atom_virials 9n values (written by the gather itself whenever
    // want_virial is set, and published by the fences before the last block reads them),
    // totals 11 doubles (their buffer, or rows 3n .. 3n + 11 of forces, checked above,
    // which the gather does not write), blocks_done one counter that is zero at launch;
    // THREADS = REDUCE_THREADS, as reduce_single.
    unsafe { b.launch(cfg(grid(n, (THREADS / 32) as usize), THREADS)) }
        .map(|_| ())
        .map_err(device_error)
}

/// Energy and virial totals of atoms 0..n into `totals[0..10]`, and the coincident-atoms
/// flag into `totals[10]` (reset on the device); n = 0: the flag only (a batch, whose
/// systems `reduce_systems` sums).
#[allow(clippy::too_many_arguments)]
pub fn reduce<T: Real>(
    st: &CudaStream,
    k: &Kernels,
    n: usize,
    atom_energy: &CudaSlice<T>,
    atom_virials: &CudaSlice<f64>,
    want_virial: bool,
    partials: &mut CudaSlice<f64>,
    coincident: &mut CudaSlice<i32>,
    blocks_done: &mut CudaSlice<u32>,
    totals: &mut CudaSlice<f64>,
) -> Result<()> {
    let (n_i, w) = (n as i32, want_virial as i32);
    if n == 0 {
        // Only the flag (and zero totals): reduce_final over no partials.
        let mut b = st.launch_builder(&k.reduce_final);
        b.arg(&0i32).arg(&*partials).arg(coincident).arg(totals);
        // SAFETY: reads no partials and the flag, writes 11 totals.
        return unsafe { b.launch(cfg(1, 32)) }
            .map(|_| ())
            .map_err(device_error);
    }
    if n <= SMALL_SYSTEM {
        // One launch instead of two (a molecule's step is a chain of short kernels).
        let mut b = st.launch_builder(&k.reduce_single);
        b.arg(&n_i)
            .arg(atom_energy)
            .arg(atom_virials)
            .arg(&w)
            .arg(coincident)
            .arg(totals);
        // SAFETY: atom_energy holds n and atom_virials 9n values (written by atom_gather
        // whenever want_virial is set); totals 11 doubles (the kernel writes 0..=10).
        return unsafe { b.launch(cfg(1, 256)) }
            .map(|_| ())
            .map_err(device_error);
    }
    // The partial rows and, in the last block to finish, their sum: one launch.
    let mut b = st.launch_builder(&k.reduce_partial);
    b.arg(&n_i)
        .arg(atom_energy)
        .arg(atom_virials)
        .arg(&w)
        .arg(&mut *partials)
        .arg(coincident)
        .arg(blocks_done)
        .arg(totals);
    // SAFETY: partials holds REDUCE_BLOCKS*10 doubles (REDUCE_BLOCKS <= the kernel's
    // REDUCE_FINAL_MAX_PARTIALS, 128, for the last block's sum); atom_energy n and
    // atom_virials 9n values (atom virials written by atom_gather whenever want_virial is
    // set); the flag one int, totals 11 doubles; blocks_done one counter, zero at launch
    // (the last block resets it); 256 threads = REDUCE_THREADS = REDUCE_FINAL_THREADS.
    unsafe { b.launch(cfg(REDUCE_BLOCKS as u32, 256)) }
        .map(|_| ())
        .map_err(device_error)
}

/// Per-system energy and virial totals of a batch (kernels/reduce_systems.cu): 10
/// doubles per system into `out` (E, then W row-major).
#[allow(clippy::too_many_arguments)]
pub fn reduce_systems<T: Real>(
    st: &CudaStream,
    k: &Kernels,
    n_systems: usize,
    system_start: &CudaSlice<u32>,
    atom_energy: &CudaSlice<T>,
    atom_virials: &CudaSlice<f64>,
    want_virial: bool,
    out: &mut CudaSlice<f64>,
) -> Result<()> {
    if n_systems == 0 {
        return Ok(());
    }
    if system_start.len() < n_systems + 1 || out.len() < 10 * n_systems {
        return Err(crate::error::Error::Internal(
            "reduce_systems: buffers smaller than the batch".into(),
        ));
    }
    let (ns, w) = (n_systems as i32, want_virial as i32);
    let mut b = st.launch_builder(&k.reduce_systems);
    b.arg(&ns)
        .arg(system_start)
        .arg(atom_energy)
        .arg(atom_virials)
        .arg(&w)
        .arg(out);
    // SAFETY: system_start holds n_systems + 1 ascending atom offsets within the atom
    // buffers (energies n, virials 9n, written by this step's kernels; virials only read
    // with want_virial); out holds 10 n_systems doubles (checked above); one block of
    // REDUCE_THREADS (256) threads per system.
    unsafe { b.launch(cfg(n_systems as u32, 256)) }
        .map(|_| ())
        .map_err(device_error)
}

/// Device copies of the host binning (`gpu_neighbors::Bins`) for the search kernels.
pub struct BinArgs<'a> {
    pub grid: super::gpu_neighbors::BinGrid,
    pub cell: &'a CudaSlice<f64>,
    pub atom_bin: &'a CudaSlice<i32>,
    pub image: &'a CudaSlice<i32>,
    pub bin_start: &'a CudaSlice<u32>,
    pub bin_atoms: &'a CudaSlice<u32>,
}

/// neighbor_list.cu, pass 1: pairs (j >= i) within `cutoff` per atom.
#[allow(clippy::too_many_arguments)]
pub fn neighbor_list_count(
    st: &CudaStream,
    k: &Kernels,
    n: usize,
    positions: &CudaSlice<f64>,
    bins: &BinArgs,
    cutoff: f64,
    counts: &mut CudaSlice<u32>,
    coincident: &mut CudaSlice<i32>,
) -> Result<()> {
    let n_i = n as i32;
    let mut b = st.launch_builder(&k.nl_count);
    b.arg(&n_i)
        .arg(positions)
        .arg(bins.cell)
        .arg(&bins.grid)
        .arg(bins.atom_bin)
        .arg(bins.image)
        .arg(bins.bin_start)
        .arg(bins.bin_atoms)
        .arg(&cutoff)
        .arg(counts)
        .arg(coincident);
    // SAFETY: positions 3n, atom_bin and image 3n, bin_start holds one more entry than
    // there are bins and bin_atoms n (from the host binning of these positions);
    // counts n; the grid's bin indices stay inside the grid by construction. A warp
    // per atom: 32 n threads in blocks of whole warps.
    unsafe { b.launch(cfg(grid(32 * n, 128), 128)) }
        .map(|_| ())
        .map_err(device_error)
}

/// neighbor_list.cu, pass 2: writes each atom's pairs at pair_start[i] and sorts them.
#[allow(clippy::too_many_arguments)]
pub fn neighbor_list_fill(
    st: &CudaStream,
    k: &Kernels,
    n: usize,
    positions: &CudaSlice<f64>,
    bins: &BinArgs,
    cutoff: f64,
    pair_start: &CudaSlice<u32>,
    pair_i: &mut CudaSlice<u32>,
    pair_j: &mut CudaSlice<u32>,
    pair_shift: &mut CudaSlice<u64>,
    self_count: &mut CudaSlice<u32>,
    coincident: &mut CudaSlice<i32>,
) -> Result<()> {
    let n_i = n as i32;
    let mut b = st.launch_builder(&k.nl_fill);
    b.arg(&n_i)
        .arg(positions)
        .arg(bins.cell)
        .arg(&bins.grid)
        .arg(bins.atom_bin)
        .arg(bins.image)
        .arg(bins.bin_start)
        .arg(bins.bin_atoms)
        .arg(&cutoff)
        .arg(pair_start)
        .arg(pair_i)
        .arg(pair_j)
        .arg(pair_shift)
        .arg(self_count)
        .arg(coincident);
    // SAFETY: as for the count pass; pair_start is the prefix sum of its counts, so each
    // atom writes inside its own range of the pair buffers (capacity >= total pairs;
    // pair_start holds n + 1 entries); a warp per atom, as the count pass.
    unsafe { b.launch(cfg(grid(32 * n, 128), 128)) }
        .map(|_| ())
        .map_err(device_error)
}

/// neighbor_list.cu, pass 3: the CSR of directed edges.
#[allow(clippy::too_many_arguments)]
pub fn neighbor_list_edges(
    st: &CudaStream,
    k: &Kernels,
    n: usize,
    n_pairs: usize,
    pair_start: &CudaSlice<u32>,
    pair_i: &CudaSlice<u32>,
    pair_j: &CudaSlice<u32>,
    incoming: &CudaSlice<u32>,
    edge_offsets: &CudaSlice<u32>,
    cursor: &mut CudaSlice<u32>,
    edge_source: &mut CudaSlice<u32>,
    edge_pair: &mut CudaSlice<u32>,
) -> Result<()> {
    let (n_i, np) = (n as i32, n_pairs as i32);
    if n_pairs > 0 {
        let mut b = st.launch_builder(&k.nl_reverse);
        b.arg(&np)
            .arg(pair_i)
            .arg(pair_j)
            .arg(edge_offsets)
            .arg(&mut *cursor)
            .arg(&mut *edge_pair);
        // SAFETY: edge_offsets is the prefix sum of the per-atom edge counts, whose
        // leading `incoming` slots the cursor (zeroed, n entries) fills; capacity 2*n_pairs.
        unsafe { b.launch(cfg(grid(n_pairs, THREADS as usize), THREADS)) }.map_err(device_error)?;
    }
    let mut b = st.launch_builder(&k.nl_edges);
    b.arg(&n_i)
        .arg(pair_start)
        .arg(pair_i)
        .arg(pair_j)
        .arg(incoming)
        .arg(edge_offsets)
        .arg(edge_source)
        .arg(edge_pair);
    // SAFETY: a warp per atom (32 n threads); each rewrites only its own edge range
    // [edge_offsets[a], edge_offsets[a+1]), whose first incoming[a] slots nl_reverse filled.
    unsafe { b.launch(cfg(grid(32 * n, 128), 128)) }
        .map(|_| ())
        .map_err(device_error)
}

/// neighbor_list.cu: `out[k]` = the sum of `a[m] (+ b[m] + c[m])` over m < k for k <= n
/// (n + 1 entries), and that sum over all n in 64 bits into `total`.
#[allow(clippy::too_many_arguments)]
pub fn neighbor_list_scan(
    st: &CudaStream,
    k: &Kernels,
    n: usize,
    a: &CudaSlice<u32>,
    b: Option<&CudaSlice<u32>>,
    c: Option<&CudaSlice<u32>>,
    out: &mut CudaSlice<u32>,
    total: &mut CudaSlice<u64>,
) -> Result<()> {
    let n_i = n as i32;
    let none = 0u64;
    let mut l = st.launch_builder(&k.nl_scan);
    l.arg(&n_i).arg(a);
    match b {
        Some(b) => l.arg(b),
        None => l.arg(&none),
    };
    match c {
        Some(c) => l.arg(c),
        None => l.arg(&none),
    };
    l.arg(out).arg(total);
    // SAFETY: a (and b, c where given) hold n entries, out n + 1, total one; a null
    // pointer (0) for b or c is skipped by the kernel. One block of 1024 threads.
    unsafe { l.launch(cfg(1, 1024)) }
        .map(|_| ())
        .map_err(device_error)
}

/// neighbor_list.cu: counts the reverse edges arriving at each atom (integer atomics).
pub fn neighbor_list_incoming(
    st: &CudaStream,
    k: &Kernels,
    n_pairs: usize,
    pair_i: &CudaSlice<u32>,
    pair_j: &CudaSlice<u32>,
    incoming: &mut CudaSlice<u32>,
) -> Result<()> {
    if n_pairs == 0 {
        return Ok(());
    }
    let np = n_pairs as i32;
    let mut b = st.launch_builder(&k.nl_incoming);
    b.arg(&np).arg(pair_i).arg(pair_j).arg(incoming);
    // SAFETY: pair atoms are < n and incoming holds n zeroed counters.
    unsafe { b.launch(cfg(grid(n_pairs, THREADS as usize), THREADS)) }
        .map(|_| ())
        .map_err(device_error)
}

/// neighbor_bins.cu, pass 1: fractional coordinates and lattice images of the caller's
/// atoms, the open axes' extent (order keys: 3 minima then 3 maxima; `extent` must hold
/// u64::MAX and 0 on entry) and bit 4 of `flag` for an atom beyond the image range.
#[allow(clippy::too_many_arguments)]
pub fn neighbor_bins_fractional(
    st: &CudaStream,
    k: &Kernels,
    n: usize,
    positions: &CudaSlice<f64>,
    map: &super::gpu_neighbors::BinMap,
    frac: &mut CudaSlice<f64>,
    image: &mut CudaSlice<i32>,
    extent: &mut CudaSlice<u64>,
    flag: &mut CudaSlice<i32>,
) -> Result<()> {
    let n_i = n as i32;
    let mut b = st.launch_builder(&k.nl_bin_fractional);
    b.arg(&n_i)
        .arg(positions)
        .arg(map)
        .arg(frac)
        .arg(image)
        .arg(extent)
        .arg(flag);
    // SAFETY: positions, frac and image hold 3n entries, extent 6, flag 1; a thread per
    // atom (threads past n only take part in the warp reductions).
    unsafe { b.launch(cfg(grid(n, 128), 128)) }
        .map(|_| ())
        .map_err(device_error)
}

/// The device buffers of the binning after `neighbor_bins_fractional` (caller's order)
/// and what `neighbor_bins_order` writes (engine order).
pub struct DeviceBins<'a> {
    pub frac: &'a CudaSlice<f64>,
    pub image_caller: &'a CudaSlice<i32>,
    pub positions_caller: &'a CudaSlice<f64>,
    /// Z-curve rank of each bin (flat order), total_bins entries.
    pub bin_rank: &'a CudaSlice<u32>,
    pub scratch: &'a mut ScratchBins,
    pub order: &'a mut CudaSlice<u32>,
    pub atom_bin: &'a mut CudaSlice<i32>,
    pub image: &'a mut CudaSlice<i32>,
    pub positions: &'a mut CudaSlice<f64>,
    pub bin_start: &'a mut CudaSlice<u32>,
    pub bin_atoms: &'a mut CudaSlice<u32>,
}

/// Scratch buffers of `neighbor_bins_order`, sized for n atoms and `total_bins` bins.
pub struct ScratchBins {
    pub atom_bin_caller: CudaSlice<i32>,
    pub atom_rank: CudaSlice<u32>,
    pub unsorted: CudaSlice<u32>,
    /// Per ranked bin: counts, then the cursors (both zeroed by the caller).
    pub count: CudaSlice<u32>,
    pub cursor: CudaSlice<u32>,
    pub start: CudaSlice<u32>,
    pub sizes: CudaSlice<u32>,
    pub total: CudaSlice<u64>,
}

/// neighbor_bins.cu, passes 2-7: each atom's bin, the spatial order (`order`, bins along
/// the Z-curve), the renumbered atoms' bins, images and positions, and the search
/// kernels' bin_start / bin_atoms for the renumbered atoms: what the host's
/// `bin_atoms`, `spatial_order` and `Bins::renumbered` give.
pub fn neighbor_bins_order(
    st: &CudaStream,
    k: &Kernels,
    n: usize,
    total_bins: usize,
    map: &super::gpu_neighbors::BinMap,
    bins: DeviceBins,
) -> Result<()> {
    let (n_i, nb_i) = (n as i32, total_bins as i32);
    let s = bins.scratch;
    let mut b = st.launch_builder(&k.nl_bin_count);
    b.arg(&n_i)
        .arg(bins.frac)
        .arg(map)
        .arg(bins.bin_rank)
        .arg(&mut s.atom_bin_caller)
        .arg(&mut s.atom_rank)
        .arg(&mut s.count);
    // SAFETY: frac and atom_bin_caller hold 3n entries, atom_rank n, bin_rank and count
    // total_bins = the product of map.n_bins; bins are clamped into the grid.
    unsafe { b.launch(cfg(grid(n, 128), 128)) }.map_err(device_error)?;
    neighbor_list_scan(
        st,
        k,
        total_bins,
        &s.count,
        None,
        None,
        &mut s.start,
        &mut s.total,
    )?;
    let mut b = st.launch_builder(&k.nl_bin_place);
    b.arg(&n_i)
        .arg(&s.atom_rank)
        .arg(&s.start)
        .arg(&mut s.cursor)
        .arg(&mut s.unsorted);
    // SAFETY: atom_rank and unsorted hold n entries, start total_bins + 1 (the prefix
    // sums of the counts, so every slot start[r] + cursor < start[r + 1] <= n), cursor
    // total_bins zeroed counters.
    unsafe { b.launch(cfg(grid(n, 128), 128)) }.map_err(device_error)?;
    let mut b = st.launch_builder(&k.nl_bin_sort);
    b.arg(&nb_i)
        .arg(&s.start)
        .arg(&s.unsorted)
        .arg(&mut *bins.order);
    // SAFETY: a warp per ranked bin (32 total_bins threads); each writes only its own
    // bin's range of order (n entries), a permutation of the range it read.
    unsafe { b.launch(cfg(grid(32 * total_bins, 128), 128)) }.map_err(device_error)?;
    let mut b = st.launch_builder(&k.nl_bin_renumber);
    b.arg(&n_i)
        .arg(&*bins.order)
        .arg(&s.atom_bin_caller)
        .arg(bins.image_caller)
        .arg(bins.positions_caller)
        .arg(bins.atom_bin)
        .arg(bins.image)
        .arg(bins.positions);
    // SAFETY: order is a permutation of 0..n; every per-atom buffer holds 3n entries.
    unsafe { b.launch(cfg(grid(n, 128), 128)) }.map_err(device_error)?;
    let mut b = st.launch_builder(&k.nl_bin_sizes);
    b.arg(&nb_i)
        .arg(bins.bin_rank)
        .arg(&s.start)
        .arg(&mut s.sizes);
    // SAFETY: bin_rank and sizes hold total_bins entries, start total_bins + 1; bin_rank
    // is a permutation of 0..total_bins.
    unsafe { b.launch(cfg(grid(total_bins, 128), 128)) }.map_err(device_error)?;
    neighbor_list_scan(
        st,
        k,
        total_bins,
        &s.sizes,
        None,
        None,
        bins.bin_start,
        &mut s.total,
    )?;
    let mut b = st.launch_builder(&k.nl_bin_members);
    b.arg(&nb_i)
        .arg(bins.bin_rank)
        .arg(&s.start)
        .arg(&*bins.bin_start)
        .arg(bins.bin_atoms);
    // SAFETY: bin_start holds total_bins + 1 prefix sums of the bins' sizes (n in all),
    // so bin b writes bin_atoms[bin_start[b] .. bin_start[b + 1]] within its n entries.
    unsafe { b.launch(cfg(grid(total_bins, 128), 128)) }
        .map(|_| ())
        .map_err(device_error)
}

/// neighbor_list.cu, device inputs: ORs into `flag` bit 1 when an atom moved more than
/// `limit` Å from `built` (any change when `limit` is 0), bit 2 for a non-finite position.
pub fn neighbor_list_displacement(
    st: &CudaStream,
    k: &Kernels,
    n: usize,
    positions: &CudaSlice<f64>,
    built: &CudaSlice<f64>,
    limit: f64,
    flag: &mut CudaSlice<i32>,
) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let n_i = n as i32;
    let mut b = st.launch_builder(&k.nl_displacement);
    b.arg(&n_i).arg(positions).arg(built).arg(&limit).arg(flag);
    // SAFETY: positions and built hold at least 3n doubles (atom buffers of capacity >= n),
    // flag one int.
    unsafe { b.launch(cfg(grid(n, THREADS as usize), THREADS)) }
        .map(|_| ())
        .map_err(device_error)
}

/// atom_order.cu: `engine[k] = caller[order[k]]`, rows of three doubles; `caller` is
/// a device address of the caller's (3n doubles, checked by the caller).
pub fn atom_order_gather(
    st: &CudaStream,
    k: &Kernels,
    n: usize,
    order: &CudaSlice<u32>,
    caller: u64,
    engine: &mut CudaSlice<f64>,
) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let n_i = n as i32;
    let mut b = st.launch_builder(&k.atom_order_gather);
    b.arg(&n_i).arg(order).arg(&caller).arg(engine);
    // SAFETY: order holds a permutation of 0..n, caller 3n doubles (checked by the
    // caller), engine at least 3n (atom buffers of capacity >= n).
    unsafe { b.launch(cfg(grid(n, THREADS as usize), THREADS)) }
        .map(|_| ())
        .map_err(device_error)
}

/// atom_order.cu: `caller[order[k]] = engine[k]`, rows of three doubles.
pub fn atom_order_scatter(
    st: &CudaStream,
    k: &Kernels,
    n: usize,
    order: &CudaSlice<u32>,
    engine: &CudaSlice<f64>,
    caller: u64,
) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let n_i = n as i32;
    let mut b = st.launch_builder(&k.atom_order_scatter);
    b.arg(&n_i).arg(order).arg(engine).arg(&caller);
    // SAFETY: as atom_order_gather; a permutation writes each caller row once.
    unsafe { b.launch(cfg(grid(n, THREADS as usize), THREADS)) }
        .map(|_| ())
        .map_err(device_error)
}

/// edge_order.cu: each atom's summation order (by current distance, pair, direction).
pub fn edge_order(
    st: &CudaStream,
    k: &Kernels,
    n: usize,
    offsets: &CudaSlice<u32>,
    edge_pair: &CudaSlice<u32>,
    knot: &CudaSlice<i32>,
    distance: &CudaSlice<f64>,
    perm: &mut CudaSlice<u32>,
) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let n_i = n as i32;
    let mut b = st.launch_builder(&k.edge_order);
    b.arg(&n_i)
        .arg(offsets)
        .arg(edge_pair)
        .arg(knot)
        .arg(distance)
        .arg(perm);
    // SAFETY: one block per atom; each writes a permutation of its own CSR range
    // [offsets[a], offsets[a+1]) of perm (capacity 2*n_pairs); pair indices < n_pairs;
    // edge_order_threads() = EDGE_ORDER_THREADS, the size of the kernel's shared tiles.
    unsafe { b.launch(cfg(n as u32, edge_order_threads())) }
        .map(|_| ())
        .map_err(device_error)
}

/// `edge_order` with each pair's distance and mask formed from the positions (with
/// pair_geometry's expressions, so the same order bitwise) instead of read from
/// pair_geometry's outputs: it need not wait for pair_geometry (small systems run the
/// two side by side).
#[allow(clippy::too_many_arguments)]
pub fn edge_order_positions(
    st: &CudaStream,
    k: &Kernels,
    n: usize,
    offsets: &CudaSlice<u32>,
    edge_pair: &CudaSlice<u32>,
    pair_atoms: &PairAtoms,
    cutoff: f64,
    perm: &mut CudaSlice<u32>,
) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let n_i = n as i32;
    let system = pair_atoms.system_address(st);
    let mut b = st.launch_builder(&k.edge_order_positions);
    b.arg(&n_i).arg(offsets).arg(edge_pair);
    pair_atoms.push(&mut b, &system);
    b.arg(&cutoff).arg(perm);
    // SAFETY: as `edge_order`; pair atoms are < n, the rows of positions (3n), shift
    // holds n_pairs words, cells 9 per system and atom_system (when not null) n system
    // indices (see `pair_geometry`).
    unsafe { b.launch(cfg(n as u32, edge_order_threads())) }
        .map(|_| ())
        .map_err(device_error)
}

// ---------------------------------------------------------------------------------
// PaiNN (architecture `painn`): kernels with runtime widths, one thread per output.

use cudarc::driver::{CudaView, CudaViewMut};

/// The PaiNN kernels of one precision.
/// Lanes per pair of `painn_pair_gradient` (PAINN_LANES in kernels/painn_pair_gradient.cu).
pub const PAINN_LANES: usize = 32;

pub struct PainnKernels {
    dense: CudaFunction,
    dense_backward: CudaFunction,
    message: CudaFunction,
    message_backward: CudaFunction,
    mixing: CudaFunction,
    mixing_update: CudaFunction,
    mixing_output_grad: CudaFunction,
    mixing_input_grad: CudaFunction,
    pair_gradient: CudaFunction,
    pair_gradient_sum: CudaFunction,
    pair_basis: CudaFunction,
    distance_gradient: CudaFunction,
}

impl PainnKernels {
    pub fn load<T: Real>(module: &Arc<CudaModule>) -> Result<PainnKernels> {
        let f = |name: &str| {
            module
                .load_function(&format!("{name}_{}", T::SUFFIX))
                .map_err(device_error)
        };
        Ok(PainnKernels {
            dense: f("painn_dense")?,
            dense_backward: f("painn_dense_backward")?,
            message: f("painn_message")?,
            message_backward: f("painn_message_backward")?,
            mixing: f("painn_mixing")?,
            mixing_update: f("painn_mixing_update")?,
            mixing_output_grad: f("painn_mixing_output_grad")?,
            mixing_input_grad: f("painn_mixing_input_grad")?,
            pair_gradient: f("painn_pair_gradient")?,
            pair_gradient_sum: f("painn_pair_gradient_sum")?,
            pair_basis: f("painn_pair_basis")?,
            distance_gradient: f("painn_distance_gradient")?,
        })
    }
}

fn launch_1d(b: &mut cudarc::driver::LaunchArgs, total: usize) -> Result<()> {
    // SAFETY (for every caller): each kernel guards idx < total and reads/writes only
    // indices the caller sized its buffers for (stated at each call site).
    unsafe { b.launch(cfg(grid(total, THREADS as usize), THREADS)) }
        .map(|_| ())
        .map_err(device_error)
}

fn int(x: usize) -> i32 {
    x as i32
}

/// pre = x W^T + b (rows x n_out), out = silu(pre) or pre.
#[allow(clippy::too_many_arguments)]
pub fn painn_dense<T: Real>(
    st: &CudaStream,
    k: &PainnKernels,
    rows: usize,
    n_in: usize,
    n_out: usize,
    x: &CudaView<T>,
    weight_t: &CudaView<T>,
    ldw: usize,
    bias: &CudaView<T>,
    apply_silu: bool,
    pre: &mut CudaViewMut<T>,
    out: &mut CudaViewMut<T>,
) -> Result<()> {
    if rows == 0 {
        return Ok(());
    }
    // Checked in every build: the kernel trusts these sizes.
    if x.len() < rows * n_in
        || ldw < n_out
        || weight_t.len() < (n_in.max(1) - 1) * ldw + n_out
        || bias.len() < n_out
        || out.len() < rows * n_out
        || (apply_silu && pre.len() < rows * n_out)
    {
        return Err(crate::error::Error::Internal(
            "painn_dense: buffer sizes do not match the layer".into(),
        ));
    }
    let (r, i, o, s, l) = (
        int(rows),
        int(n_in),
        int(n_out),
        apply_silu as i32,
        int(ldw),
    );
    let mut b = st.launch_builder(&k.dense);
    b.arg(&r)
        .arg(&i)
        .arg(&o)
        .arg(x)
        .arg(weight_t)
        .arg(&l)
        .arg(bias)
        .arg(&s)
        .arg(pre)
        .arg(out);
    // SAFETY: x holds rows*n_in values, weight_t (n_in-1)*ldw + n_out, bias n_out, out
    // rows*n_out and, with apply_silu, pre too (checked above); pre is not touched otherwise.
    launch_1d(&mut b, rows * n_out)
}

/// gx (rows x n_in) [+]= (gy W) * silu'(input_pre) (or without the silu factor).
#[allow(clippy::too_many_arguments)]
pub fn painn_dense_backward<T: Real>(
    st: &CudaStream,
    k: &PainnKernels,
    rows: usize,
    n_in: usize,
    n_out: usize,
    gy: &CudaView<T>,
    weight: &CudaView<T>,
    input_pre: Option<&CudaView<T>>,
    accumulate: bool,
    gx: &mut CudaViewMut<T>,
) -> Result<()> {
    if rows == 0 {
        return Ok(());
    }
    debug_assert!(
        gy.len() >= rows * n_out && weight.len() >= n_in * n_out && gx.len() >= rows * n_in
    );
    let (r, i, o) = (int(rows), int(n_in), int(n_out));
    let (dsilu, acc) = (input_pre.is_some() as i32, accumulate as i32);
    // Without the silu factor the kernel never reads input_pre; gy is a valid pointer.
    let pre = input_pre.unwrap_or(gy);
    let mut b = st.launch_builder(&k.dense_backward);
    b.arg(&r)
        .arg(&i)
        .arg(&o)
        .arg(gy)
        .arg(weight)
        .arg(pre)
        .arg(&dsilu)
        .arg(&acc)
        .arg(gx);
    // SAFETY: gy holds rows*n_out values, weight n_out*n_in, input_pre (when read) and gx
    // rows*n_in.
    launch_1d(&mut b, rows * n_in)
}

/// Messages of one block: q_out, mu_out from q_in, mu_in over the CSR edges.
#[allow(clippy::too_many_arguments)]
pub fn painn_message<T: Real>(
    st: &CudaStream,
    k: &PainnKernels,
    n_atoms: usize,
    f: usize,
    edges: (&CudaSlice<u32>, &CudaSlice<u32>, &CudaSlice<u32>),
    raw: &CudaView<T>,
    cut: &CudaSlice<T>,
    unit: &CudaSlice<T>,
    x: &CudaView<T>,
    q_in: &CudaView<T>,
    mu_in: &CudaView<T>,
    q_out: &mut CudaViewMut<T>,
    mu_out: &mut CudaViewMut<T>,
) -> Result<()> {
    if n_atoms == 0 {
        return Ok(());
    }
    let (n, fi) = (int(n_atoms), int(f));
    let mut b = st.launch_builder(&k.message);
    b.arg(&n)
        .arg(&fi)
        .arg(edges.0)
        .arg(edges.1)
        .arg(edges.2)
        .arg(raw)
        .arg(cut)
        .arg(unit)
        .arg(x);
    b.arg(q_in).arg(mu_in).arg(q_out).arg(mu_out);
    // SAFETY: offsets has n_atoms+1 entries bounding source/edge_pair; pair indices are
    // < n_pairs, the length of cut (unit 3x, raw 3F x); atoms < n_atoms index x, mu (3F
    // per atom) and q (F per atom).
    launch_1d(&mut b, n_atoms * f)
}

/// Interaction backward per source atom: gx (N x 3F) and gmu_out (N x 3F).
#[allow(clippy::too_many_arguments)]
pub fn painn_message_backward<T: Real>(
    st: &CudaStream,
    k: &PainnKernels,
    n_atoms: usize,
    f: usize,
    edges: (&CudaSlice<u32>, &CudaSlice<u32>, &CudaSlice<u32>),
    raw: &CudaView<T>,
    cut: &CudaSlice<T>,
    unit: &CudaSlice<T>,
    x: &CudaView<T>,
    mu_in: &CudaView<T>,
    gq1: &CudaView<T>,
    gmu1: &CudaView<T>,
    gx: &mut CudaViewMut<T>,
    gmu_out: &mut CudaViewMut<T>,
) -> Result<()> {
    if n_atoms == 0 {
        return Ok(());
    }
    let (n, fi) = (int(n_atoms), int(f));
    let mut b = st.launch_builder(&k.message_backward);
    b.arg(&n)
        .arg(&fi)
        .arg(edges.0)
        .arg(edges.1)
        .arg(edges.2)
        .arg(raw)
        .arg(cut)
        .arg(unit)
        .arg(x);
    b.arg(mu_in).arg(gq1).arg(gmu1).arg(gx).arg(gmu_out);
    // SAFETY: as painn_message; gq1 has F and gmu1, gx, gmu_out 3F values per atom.
    launch_1d(&mut b, n_atoms * f)
}

/// Mixing, first half: norms (N x F) and the MLP context (N x 2F).
#[allow(clippy::too_many_arguments)]
pub fn painn_mixing<T: Real>(
    st: &CudaStream,
    k: &PainnKernels,
    n_atoms: usize,
    f: usize,
    epsilon: T,
    vw: &CudaView<T>,
    q: &CudaView<T>,
    norm: &mut CudaViewMut<T>,
    context: &mut CudaViewMut<T>,
) -> Result<()> {
    if n_atoms == 0 {
        return Ok(());
    }
    let (n, fi) = (int(n_atoms), int(f));
    let mut b = st.launch_builder(&k.mixing);
    b.arg(&n)
        .arg(&fi)
        .arg(&epsilon)
        .arg(vw)
        .arg(q)
        .arg(norm)
        .arg(context);
    // SAFETY: vw holds 3N rows of 2F, q and norm N x F, context N x 2F.
    launch_1d(&mut b, n_atoms * f)
}

/// Mixing, second half: q2, mu2.
#[allow(clippy::too_many_arguments)]
pub fn painn_mixing_update<T: Real>(
    st: &CudaStream,
    k: &PainnKernels,
    n_atoms: usize,
    f: usize,
    vw: &CudaView<T>,
    mix_out: &CudaView<T>,
    q1: &CudaView<T>,
    mu1: &CudaView<T>,
    q2: &mut CudaViewMut<T>,
    mu2: &mut CudaViewMut<T>,
) -> Result<()> {
    if n_atoms == 0 {
        return Ok(());
    }
    let (n, fi) = (int(n_atoms), int(f));
    let mut b = st.launch_builder(&k.mixing_update);
    b.arg(&n)
        .arg(&fi)
        .arg(vw)
        .arg(mix_out)
        .arg(q1)
        .arg(mu1)
        .arg(q2)
        .arg(mu2);
    // SAFETY: vw 3N x 2F, mix_out N x 3F, q1/q2 N x F, mu1/mu2 N x 3F.
    launch_1d(&mut b, n_atoms * f)
}

/// Mixing backward, first step: gradient of the MLP output (N x 3F).
#[allow(clippy::too_many_arguments)]
pub fn painn_mixing_output_grad<T: Real>(
    st: &CudaStream,
    k: &PainnKernels,
    n_atoms: usize,
    f: usize,
    vw: &CudaView<T>,
    gq: &CudaView<T>,
    gmu: &CudaView<T>,
    g_out: &mut CudaViewMut<T>,
) -> Result<()> {
    if n_atoms == 0 {
        return Ok(());
    }
    let (n, fi) = (int(n_atoms), int(f));
    let mut b = st.launch_builder(&k.mixing_output_grad);
    b.arg(&n).arg(&fi).arg(vw).arg(gq).arg(gmu).arg(g_out);
    // SAFETY: vw 3N x 2F, gq N x F, gmu and g_out N x 3F.
    launch_1d(&mut b, n_atoms * f)
}

/// Mixing backward, second step: gq1 (N x F) and the gradient of [V, W] (3N x 2F).
#[allow(clippy::too_many_arguments)]
pub fn painn_mixing_input_grad<T: Real>(
    st: &CudaStream,
    k: &PainnKernels,
    n_atoms: usize,
    f: usize,
    vw: &CudaView<T>,
    mix_out: &CudaView<T>,
    norm: &CudaView<T>,
    gq: &CudaView<T>,
    gmu: &CudaView<T>,
    g_context: &CudaView<T>,
    gq1: &mut CudaViewMut<T>,
    g_vw: &mut CudaViewMut<T>,
) -> Result<()> {
    if n_atoms == 0 {
        return Ok(());
    }
    let (n, fi) = (int(n_atoms), int(f));
    let mut b = st.launch_builder(&k.mixing_input_grad);
    b.arg(&n)
        .arg(&fi)
        .arg(vw)
        .arg(mix_out)
        .arg(norm)
        .arg(gq)
        .arg(gmu)
        .arg(g_context)
        .arg(gq1)
        .arg(g_vw);
    // SAFETY: vw and g_vw 3N x 2F, mix_out and gmu N x 3F, norm, gq, gq1 N x F, g_context N x 2F.
    launch_1d(&mut b, n_atoms * f)
}

/// Per-pair gradients of one block: dE/d(raw filter) (P x 3F), dE/dfc (P), dE/du += (P x 3).
#[allow(clippy::too_many_arguments)]
pub fn painn_pair_gradient<T: Real>(
    st: &CudaStream,
    k: &PainnKernels,
    n_pairs: usize,
    f: usize,
    pair_i: &CudaSlice<u32>,
    pair_j: &CudaSlice<u32>,
    raw: &CudaView<T>,
    cut: &CudaSlice<T>,
    unit: &CudaSlice<T>,
    x: &CudaView<T>,
    mu_in: &CudaView<T>,
    gq1: &CudaView<T>,
    gmu1: &CudaView<T>,
    g_filter: &mut CudaSlice<T>,
    partial: &mut CudaSlice<T>,
    g_cut: &mut CudaSlice<T>,
    g_unit: &mut CudaSlice<T>,
) -> Result<()> {
    if n_pairs == 0 {
        return Ok(());
    }
    if partial.len() < 4 * PAINN_LANES * n_pairs {
        return Err(crate::error::Error::Internal(
            "painn_pair_gradient: partial sums buffer too small".into(),
        ));
    }
    let (n, fi) = (int(n_pairs), int(f));
    let mut b = st.launch_builder(&k.pair_gradient);
    b.arg(&n)
        .arg(&fi)
        .arg(pair_i)
        .arg(pair_j)
        .arg(raw)
        .arg(cut)
        .arg(unit)
        .arg(x)
        .arg(mu_in);
    b.arg(gq1).arg(gmu1).arg(&mut *g_filter).arg(&mut *partial);
    // SAFETY: pair_i/pair_j/cut hold n_pairs entries, unit 3x, raw/g_filter 3F x,
    // partial 4 x PAINN_LANES x (checked); atom indices are < n_atoms, the row count
    // of x, mu_in (3F) and gq1 (F), gmu1 (3F).
    launch_1d(&mut b, n_pairs * PAINN_LANES)?;
    let mut b = st.launch_builder(&k.pair_gradient_sum);
    b.arg(&n).arg(&*partial).arg(g_cut).arg(g_unit);
    // SAFETY: partial as above; g_cut holds n_pairs entries, g_unit 3 n_pairs.
    launch_1d(&mut b, n_pairs)
}

/// Per-pair unit vector, Gaussian basis, cosine cutoff and their d-derivatives from
/// the f64 pair vectors (kernels/painn_pair_basis.cu).
pub struct PairBasisOut<'a, T> {
    pub unit: &'a mut CudaSlice<T>,
    pub basis: &'a mut CudaSlice<T>,
    pub basis_grad: &'a mut CudaSlice<T>,
    pub cut: &'a mut CudaSlice<T>,
    pub cut_grad: &'a mut CudaSlice<T>,
}

#[allow(clippy::too_many_arguments)]
pub fn painn_pair_basis<T: Real>(
    st: &CudaStream,
    k: &PainnKernels,
    n_pairs: usize,
    num_rbf: usize,
    pair_vector: &CudaSlice<f64>,
    offsets: &CudaSlice<f64>,
    widths: &CudaSlice<f64>,
    cutoff: f64,
    out: PairBasisOut<T>,
) -> Result<()> {
    if n_pairs == 0 {
        return Ok(());
    }
    if pair_vector.len() < 3 * n_pairs
        || offsets.len() < num_rbf
        || widths.len() < num_rbf
        || out.unit.len() < 3 * n_pairs
        || out.basis.len() < num_rbf * n_pairs
        || out.basis_grad.len() < num_rbf * n_pairs
        || out.cut.len() < n_pairs
        || out.cut_grad.len() < n_pairs
    {
        return Err(crate::error::Error::Internal(
            "painn_pair_basis: buffer sizes do not match".into(),
        ));
    }
    let (n, kb) = (int(n_pairs), int(num_rbf));
    let mut b = st.launch_builder(&k.pair_basis);
    b.arg(&n)
        .arg(&kb)
        .arg(pair_vector)
        .arg(offsets)
        .arg(widths)
        .arg(&cutoff)
        .arg(out.unit)
        .arg(out.basis)
        .arg(out.basis_grad)
        .arg(out.cut)
        .arg(out.cut_grad);
    // SAFETY: every buffer holds the n_pairs (x 3, x num_rbf) values checked above.
    launch_1d(&mut b, n_pairs * num_rbf)
}

/// dE/dd of one block added to g_distance.
#[allow(clippy::too_many_arguments)]
pub fn painn_distance_gradient<T: Real>(
    st: &CudaStream,
    k: &PainnKernels,
    n_pairs: usize,
    num_rbf: usize,
    g_basis: &CudaSlice<T>,
    basis_grad: &CudaSlice<T>,
    g_cut: &CudaSlice<T>,
    cut_grad: &CudaSlice<T>,
    g_distance: &mut CudaSlice<T>,
) -> Result<()> {
    if n_pairs == 0 {
        return Ok(());
    }
    let (n, kk) = (int(n_pairs), int(num_rbf));
    let mut b = st.launch_builder(&k.distance_gradient);
    b.arg(&n)
        .arg(&kk)
        .arg(g_basis)
        .arg(basis_grad)
        .arg(g_cut)
        .arg(cut_grad)
        .arg(g_distance);
    // SAFETY: g_basis and basis_grad hold n_pairs*num_rbf values, the others n_pairs.
    launch_1d(&mut b, n_pairs)
}

#[cfg(test)]
mod tests {
    use super::{cluster_variant, partial_offset, partial_values};

    #[test]
    fn partial_regions_tile_the_buffer_in_float4_units() {
        // Block 0 holds 4 values per group and pair, each later block 8; the regions
        // follow each other without gaps or overlaps and start on float4 boundaries
        // (edge_backward_sum_f32 indexes them in float4).
        for (groups, n_pairs) in [(1, 1), (4, 7), (2, 1000), (4, 274_938)] {
            for n_blocks in 1..=5 {
                let mut end = 0;
                for l in 0..n_blocks {
                    assert_eq!(partial_offset(l, groups, n_pairs), end);
                    assert_eq!(end % 4, 0);
                    end += if l == 0 { 4 } else { 8 } * groups * n_pairs;
                }
                assert_eq!(partial_values(false, n_blocks, groups, n_pairs), end);
                assert_eq!(partial_values(true, n_blocks, groups, n_pairs), 4 * n_pairs);
            }
        }
    }

    #[test]
    fn cluster_variant_takes_the_smallest_tile_that_fits_in_one_wave() {
        let pick =
            |n, shapes: &[(usize, usize)], max| cluster_variant(n, shapes.iter().copied(), max);
        // An H100: 32 clusters of each tile at once (tiles 1, 2, 4, 8).
        let h100 = [(1, 32), (2, 32), (4, 32), (8, 32)];
        assert_eq!(pick(1, &h100, None), Some(0));
        assert_eq!(pick(32, &h100, None), Some(0));
        assert_eq!(pick(33, &h100, None), Some(1));
        // mol50: 25 clusters of 2 atoms; 192 atoms: 24 clusters of 8.
        assert_eq!(pick(50, &h100, None), Some(1));
        assert_eq!(pick(192, &h100, None), Some(3));
        assert_eq!(pick(256, &h100, None), Some(3));
        // Beyond one wave of the largest tile: update_small.
        assert_eq!(pick(257, &h100, None), None);
        // MLFF_CUDA_CLUSTER_MAX_ATOMS: the largest tile beyond one wave, up to that size;
        // a tile that fits in one wave still wins.
        assert_eq!(pick(3000, &h100, Some(4096)), Some(3));
        assert_eq!(pick(5000, &h100, Some(4096)), None);
        assert_eq!(pick(100, &h100, Some(4096)), Some(2));
        // Fewer resident clusters for some tiles: each tile is judged by its own count.
        let uneven = [(1, 40), (2, 30), (4, 20), (8, 10)];
        assert_eq!(pick(45, &uneven, None), Some(1));
        assert_eq!(pick(70, &uneven, None), Some(2));
        assert_eq!(pick(90, &uneven, None), None);
        assert_eq!(pick(10, &[], Some(4096)), None);
    }
}
