//! The CUDA engine proper: device weights, reusable buffers, and one step.

use std::mem::ManuallyDrop;
use std::sync::Arc;

use cudarc::driver::{
    sys, CudaContext, CudaEvent, CudaGraph, CudaModule, CudaSlice, CudaStream, DevicePtr,
    PinnedHostSlice,
};
use cudarc::nvrtc::Ptx;

use super::kernels::{
    self as k, address, Edges, HeadArgs, Kernels, Knots, PairArgs, PolyTables, Real, Table,
    TableData,
};
use super::{device_error, runtime, spline, tensor_core, NODES_F32, NODES_F64};
use crate::engine::{DeviceSystem, Engine};
use crate::error::{Error, Result};
use crate::model::{Linear, ModelFile};
use crate::neighbors::{self, NeighborList};
use crate::options::{Options, Precision};
use crate::system::{Request, Results, System};

/// Transposes a PyTorch-layout weight (n_out x n_in) to n_in x n_out.
fn transposed(l: &Linear) -> Vec<f64> {
    let mut t = vec![0.0; l.weight.len()];
    for o in 0..l.n_out {
        for m in 0..l.n_in {
            t[m * l.n_out + o] = l.weight[o * l.n_in + m];
        }
    }
    t
}

fn upload<T: Real>(stream: &Arc<CudaStream>, values: &[f64]) -> Result<CudaSlice<T>> {
    let host: Vec<T> = if values.is_empty() {
        vec![T::default()]
    } else {
        values.iter().map(|&x| T::from_f64(x)).collect()
    };
    stream.clone_htod(&host).map_err(device_error)
}

fn zeros<T: Real>(stream: &Arc<CudaStream>, n: usize) -> Result<CudaSlice<T>> {
    stream.alloc_zeros::<T>(n.max(1)).map_err(device_error)
}

/// A block's filter table: coefficients in the engine's precision, or (mixed) f16 and,
/// where the fused cluster kernels (f32 only) are loaded, f32 coefficients: molecules
/// small enough for those kernels take the f32 table (with f16 they ran the unfused
/// kernels, 16% slower at 50 atoms on an H100), larger systems the f16 one (half the
/// bytes). The f32 table is 25 MB per block at H = 128, so it is not kept elsewhere.
enum DeviceTable<T> {
    Full(CudaSlice<T>),
    Half {
        half: CudaSlice<u16>,
        full: Option<CudaSlice<T>>,
    },
}

impl<T: Real> DeviceTable<T> {
    /// `full`: the f32 table where the engine has both.
    fn view(&self, inv_h: T, full: bool) -> Table<'_, T> {
        Table {
            data: match self {
                DeviceTable::Full(d) => TableData::Full(d),
                DeviceTable::Half { full: Some(d), .. } if full => TableData::Full(d),
                DeviceTable::Half { half, .. } => TableData::Half(half),
            },
            inv_h,
        }
    }
}

struct DeviceBlock<T> {
    table: DeviceTable<T>,
    w1t: CudaSlice<T>,
    b1: CudaSlice<T>,
    w2t: CudaSlice<T>,
    b2: CudaSlice<T>,
    w1: CudaSlice<T>,
    w2: CudaSlice<T>,
    mixing: CudaSlice<T>,
    vector_update: bool,
    /// U1 and U2 packed for update_wgmma.cu (where the engine loaded it).
    wgmma_forward: Option<CudaSlice<T>>,
    /// The filter as shared-memory polynomials (value, grad tables), f32 engine only.
    poly: Option<(CudaSlice<T>, CudaSlice<T>)>,
}

struct DeviceHead<T> {
    at: CudaSlice<T>,
    a_bias: CudaSlice<T>,
    a_w: CudaSlice<T>,
    bt: CudaSlice<T>,
    b_bias: CudaSlice<T>,
    b_w: CudaSlice<T>,
    c_w: CudaSlice<T>,
    c_bias: CudaSlice<T>,
}

/// Per-atom buffers for up to `capacity` atoms.
struct AtomBuffers<T> {
    capacity: usize,
    numbers: CudaSlice<i32>,
    is_local: CudaSlice<u8>,
    positions: CudaSlice<f64>,
    offsets: CudaSlice<u32>,
    /// s^1..s^{L-1}: the input of each block after the first (`s[l - 1]` is block l's).
    s: Vec<CudaSlice<T>>,
    /// s^0 = embedding[Z], except for large systems (`recompute_gates`): there it lives
    /// in `grad_s`, which the forward pass does not use; the readout overwrites it with
    /// dE/ds^L, and the embedding is written there again before block 0's pair gradient
    /// (saves H numbers per atom; smaller systems save the launch instead).
    s0: Option<CudaSlice<T>>,
    /// v of the block being run: v^0 = 0, then each update's output; the backward pass
    /// recomputes each block's input here from v_mid and y of the block before
    /// (in update_backward), which saves 3H numbers per atom and block.
    v: CudaSlice<T>,
    /// The second v buffer of the fused message + update (small systems, where `s0` is
    /// kept: k::message_update writes v'' while other clusters still read v): blocks
    /// alternate between the two so that the last block's input ends in `v`. Zeros
    /// until written (the input of block 0 when it writes `v`).
    v_alt: Option<CudaSlice<T>>,
    /// s' of the block being run; then s^L, the final state (the last update writes it
    /// in place, the readout reads it); then, in the backward pass, dE/ds' of the block.
    s_mid: CudaSlice<T>,
    /// v' of each block; update_backward overwrites block l's with dE/dv' (in place).
    v_mid: Vec<CudaSlice<T>>,
    /// z of blocks 0..L-2; the last block's lives in `grad_v`, which is free until that
    /// block's edge backward, after the only reader (its update_backward).
    z: Vec<CudaSlice<T>>,
    /// The gates g1, g2 (2H per atom) of each block with a vector update (the last
    /// block's slot is unused). With `recompute_gates` (large systems) only block L-2's
    /// are saved: those of a block l <= L-3 are recomputed from z[l] by block l+1's
    /// update_backward into v_mid[l + 2], dead by then (saves 2H per atom and block).
    y: Vec<CudaSlice<T>>,
    recompute_gates: bool,
    atom_energy: CudaSlice<T>,
    /// dE/ds, dE/dv of the current block's output; message_backward overwrites them with
    /// the block input's once update_backward has read them.
    grad_s: CudaSlice<T>,
    grad_v: CudaSlice<T>,
    forces: CudaSlice<f64>,
    atom_virials: CudaSlice<f64>,
}

impl<T: Real> AtomBuffers<T> {
    fn new(
        stream: &Arc<CudaStream>,
        capacity: usize,
        hidden: usize,
        blocks: usize,
        recompute_gates: bool,
    ) -> Result<Self> {
        let (nh, nv) = (capacity * hidden, capacity * 3 * hidden);
        let many = |count: usize, size: usize| -> Result<Vec<CudaSlice<T>>> {
            (0..count).map(|_| zeros(stream, size)).collect()
        };
        Ok(AtomBuffers {
            capacity,
            numbers: stream.alloc_zeros(capacity.max(1)).map_err(device_error)?,
            is_local: stream.alloc_zeros(capacity.max(1)).map_err(device_error)?,
            positions: stream
                .alloc_zeros(3 * capacity.max(1))
                .map_err(device_error)?,
            offsets: stream.alloc_zeros(capacity + 1).map_err(device_error)?,
            s: many(blocks - 1, nh)?,
            s0: if recompute_gates {
                None
            } else {
                Some(zeros(stream, nh)?)
            },
            v: zeros(stream, nv)?,
            v_alt: if recompute_gates || capacity > k::SMALL_SYSTEM {
                None
            } else {
                Some(zeros(stream, nv)?)
            },
            s_mid: zeros(stream, nh)?,
            v_mid: many(blocks, nv)?,
            z: many(blocks - 1, nh)?,
            y: (0..blocks)
                .map(|l| {
                    let saved = l + 1 < blocks && !(recompute_gates && l + 2 < blocks);
                    zeros(stream, if saved { 2 * nh } else { 1 })
                })
                .collect::<Result<_>>()?,
            recompute_gates,
            atom_energy: zeros(stream, capacity)?,
            grad_s: zeros(stream, nh)?,
            grad_v: zeros(stream, nv)?,
            // Room for the totals after the forces (kernels::TotalsOut::AfterForces).
            forces: stream
                .alloc_zeros(3 * capacity.max(1) + k::TOTALS_AFTER_FORCES)
                .map_err(device_error)?,
            atom_virials: stream
                .alloc_zeros(9 * capacity.max(1))
                .map_err(device_error)?,
        })
    }
}

fn bytes<U>(slice: &CudaSlice<U>) -> usize {
    slice.len() * std::mem::size_of::<U>()
}

impl<T: Real> AtomBuffers<T> {
    /// Whether block l's gates are in y[l] (false: recomputed, or no vector update).
    fn gates_saved(&self, l: usize) -> bool {
        let blocks = self.v_mid.len();
        l + 1 < blocks && !(self.recompute_gates && l + 2 < blocks)
    }

    /// Device bytes held (for the profile report).
    fn device_bytes(&self) -> usize {
        let many = |v: &Vec<CudaSlice<T>>| v.iter().map(bytes).sum::<usize>();
        bytes(&self.numbers)
            + bytes(&self.is_local)
            + bytes(&self.positions)
            + bytes(&self.offsets)
            + many(&self.s)
            + self.v_alt.as_ref().map_or(0, bytes)
            + self.s0.as_ref().map_or(0, bytes)
            + bytes(&self.v)
            + bytes(&self.s_mid)
            + many(&self.v_mid)
            + many(&self.z)
            + many(&self.y)
            + bytes(&self.atom_energy)
            + bytes(&self.grad_s)
            + bytes(&self.grad_v)
            + bytes(&self.forces)
            + bytes(&self.atom_virials)
    }
}

/// Per-pair and per-edge buffers for up to `capacity` pairs.
struct PairBuffers<T> {
    capacity: usize,
    pair_i: CudaSlice<u32>,
    pair_j: CudaSlice<u32>,
    /// The lattice shift of each pair, packed (`pack_shift`); the kernels form
    /// shift . cell with the host's formula (8 bytes per pair instead of 24 for an f64
    /// offset).
    shift: CudaSlice<u64>,
    knot: CudaSlice<i32>,
    frac: CudaSlice<T>,
    unit: CudaSlice<T>,
    /// dE/dd and dE/du of each pair, 4 values per pair (one aligned load in atom_gather).
    grad_du: CudaSlice<T>,
    edge_source: CudaSlice<u32>,
    edge_pair: CudaSlice<u32>,
    /// Per-call summation order of the edges (edge_order.cu).
    edge_perm: CudaSlice<u32>,
    /// |r_p| in f64 (the key of that order).
    distance: CudaSlice<f64>,
    /// Partial pair gradients per block, channel group, pair and direction (a region per
    /// block: `kernels::partial_offset`; pair_backward's, block 0's, per group and pair);
    /// per pair and direction only for large lists, see `partial_len`; one element when
    /// the polynomial kernels are not loaded.
    partial: CudaSlice<T>,
    /// Each CSR slot's staging record for the polynomial kernels (edge_order_records.cu): 8 u32
    /// per slot, 16 per pair; one element where they are not used (`records_len`).
    edge_records: CudaSlice<u32>,
}

impl<T: Real> PairBuffers<T> {
    fn new(
        stream: &Arc<CudaStream>,
        capacity: usize,
        partial_len: usize,
        records_len: usize,
    ) -> Result<Self> {
        let u = |n: usize| stream.alloc_zeros::<u32>(n.max(1)).map_err(device_error);
        Ok(PairBuffers {
            capacity,
            pair_i: u(capacity)?,
            pair_j: u(capacity)?,
            shift: stream.alloc_zeros(capacity.max(1)).map_err(device_error)?,
            knot: stream.alloc_zeros(capacity.max(1)).map_err(device_error)?,
            frac: zeros(stream, capacity)?,
            unit: zeros(stream, 3 * capacity)?,
            grad_du: zeros(stream, 4 * capacity)?,
            edge_source: u(2 * capacity)?,
            edge_pair: u(2 * capacity)?,
            edge_perm: u(2 * capacity)?,
            distance: stream.alloc_zeros(capacity.max(1)).map_err(device_error)?,
            partial: zeros(stream, partial_len)?,
            edge_records: u(records_len)?,
        })
    }
}

impl<T: Real> PairBuffers<T> {
    /// Device bytes held (for the profile report).
    fn device_bytes(&self) -> usize {
        bytes(&self.pair_i)
            + bytes(&self.pair_j)
            + bytes(&self.shift)
            + bytes(&self.knot)
            + bytes(&self.frac)
            + bytes(&self.unit)
            + bytes(&self.grad_du)
            + bytes(&self.edge_source)
            + bytes(&self.edge_pair)
            + bytes(&self.edge_perm)
            + bytes(&self.distance)
            + bytes(&self.partial)
            + bytes(&self.edge_records)
    }
}

/// The candidate neighbour list on the device (built on the host with cutoff rc + skin)
/// and what it was built for; reused while no atom moved more than skin / 2.
#[derive(Default)]
struct ListState {
    /// Atoms of each system (a batch is one disjoint union).
    sizes: Vec<usize>,
    cells: Vec<Option<[[f64; 3]; 3]>>,
    pbcs: Vec<[bool; 3]>,
    build_positions: Vec<[f64; 3]>,
    numbers: Vec<i32>,
    is_local: Vec<u8>,
    n_pairs: usize,
    /// The engine's atom order: `order[k]` is the caller's index of engine atom `k`
    /// (sorted spatially when the list is built on the GPU; empty: the caller's order).
    /// `build_positions`, `numbers` and `is_local` stay in the caller's order.
    order: Vec<u32>,
    valid: bool,
    /// Calls and rebuilds so far (for benchmarks and tests).
    rebuilds: usize,
}

const EDGE_REVERSE: u32 = 0x8000_0000;

/// Host staging of the concatenated neighbour lists in the device layout.
#[derive(Default)]
struct HostGraph {
    offsets: Vec<u32>,
    edge_source: Vec<u32>,
    edge_pair: Vec<u32>,
    pair_i: Vec<u32>,
    pair_j: Vec<u32>,
    pair_shift: Vec<u64>,
}

/// Bits per component of a packed lattice shift (kernels/common.cuh, `shift_pack`).
const SHIFT_BITS: u32 = 21;

/// The cell of every system of the list (9 values each, zero without a cell) and, for
/// more than one system, the system of each atom: with the packed shifts, what the
/// kernels form the pair vectors from.
struct PairFrames {
    cells: CudaSlice<f64>,
    atom_system: Option<CudaSlice<u32>>,
}

impl PairFrames {
    fn upload(stream: &Arc<CudaStream>, systems: &[System]) -> Result<Self> {
        let cells: Vec<f64> = systems
            .iter()
            .flat_map(|s| s.cell.unwrap_or([[0.0; 3]; 3]).into_iter().flatten())
            .collect();
        let atom_system = if systems.len() > 1 {
            let index: Vec<u32> = systems
                .iter()
                .enumerate()
                .flat_map(|(k, s)| std::iter::repeat(k as u32).take(s.n_atoms()))
                .collect();
            Some(stream.clone_htod(&index).map_err(device_error)?)
        } else {
            None
        };
        Ok(PairFrames {
            cells: stream.clone_htod(&cells).map_err(device_error)?,
            atom_system,
        })
    }

    /// Field by field: the callers hold other fields of the same buffers mutably.
    fn args<'a>(
        &'a self,
        positions: &'a CudaSlice<f64>,
        pair_i: &'a CudaSlice<u32>,
        pair_j: &'a CudaSlice<u32>,
        shift: &'a CudaSlice<u64>,
    ) -> k::PairAtoms<'a> {
        k::PairAtoms {
            positions,
            pair_i,
            pair_j,
            shift,
            cells: &self.cells,
            atom_system: self.atom_system.as_ref(),
        }
    }
}

/// A lattice shift packed as the kernels read it: each component biased by 2^20 into 21
/// bits, s_0 highest (so packed words order as the shifts do).
fn pack_shift(shift: [i32; 3]) -> Result<u64> {
    let bias = 1i64 << (SHIFT_BITS - 1);
    let mut word = 0u64;
    for &s in &shift {
        let biased = s as i64 + bias;
        if !(0..2 * bias).contains(&biased) {
            return Err(Error::invalid(format!(
                "lattice shift {shift:?} of a pair is beyond the CUDA engine's range (|s| < 2^20 cells): wrap the coordinates into the cell"
            )));
        }
        word = (word << SHIFT_BITS) | biased as u64;
    }
    Ok(word)
}

impl HostGraph {
    fn clear(&mut self) {
        self.offsets.clear();
        self.offsets.push(0);
        self.edge_source.clear();
        self.edge_pair.clear();
        self.pair_i.clear();
        self.pair_j.clear();
        self.pair_shift.clear();
    }

    /// Appends one system's list, its atoms numbered from `atom_base`.
    fn append(&mut self, nl: &NeighborList, atom_base: usize) -> Result<()> {
        let pair_base = self.pair_i.len();
        let edge_base = self.edge_source.len();
        if pair_base + nl.n_pairs() >= EDGE_REVERSE as usize
            || atom_base + nl.n_atoms >= u32::MAX as usize
        {
            return Err(Error::invalid(format!(
                "{} pairs is more than the CUDA engine supports",
                pair_base + nl.n_pairs()
            )));
        }
        self.offsets
            .extend(nl.edge_offsets[1..].iter().map(|&o| (edge_base + o) as u32));
        self.edge_source
            .extend(nl.edge_source.iter().map(|&j| j + atom_base as u32));
        self.edge_pair
            .extend(nl.edge_pair.iter().zip(&nl.edge_forward).map(|(&p, &f)| {
                let p = p + pair_base as u32;
                if f {
                    p
                } else {
                    p | EDGE_REVERSE
                }
            }));
        self.pair_i
            .extend(nl.pair_i.iter().map(|&i| i + atom_base as u32));
        self.pair_j
            .extend(nl.pair_j.iter().map(|&j| j + atom_base as u32));
        for &shift in &nl.pair_shift {
            self.pair_shift.push(pack_shift(shift)?);
        }
        Ok(())
    }
}

/// A captured graph bakes in sizes, buffers and flags: it is replayed only for the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GraphKey {
    n_atoms: usize,
    rebuilds: usize,
    gradient: bool,
    virial: bool,
    atom_virials: bool,
    per_system: bool,
    /// The totals written after the forces (`Engine::totals_in_forces`).
    totals_in_forces: bool,
    /// The page-locked buffer the graph's last kernel writes into (`Engine::forces_host`).
    forces_host: Option<u64>,
}

/// A captured graph owned by one engine; on sm_90, also the same graph with programmatic
/// kernel-to-kernel edges (each kernel launches while its predecessor runs and waits
/// for it in `wait_for_previous_kernel_`), which is the one launched.
struct SendGraph {
    captured: CudaGraph,
    programmatic: Option<runtime::GraphExec>,
}
// SAFETY: the graphs are only touched through `&mut` of their engine (one thread at a
// time); CUDA allows launching a graph from any thread, and both launch paths bind the
// context first.
unsafe impl Send for SendGraph {}

impl SendGraph {
    /// Keeps `captured`; with `programmatic`, makes its kernel-to-kernel edges
    /// programmatic and instantiates it again. Where the driver refuses that, the graph
    /// as captured runs (the same kernels, full dependencies).
    fn new(captured: CudaGraph, programmatic: bool, ctx: &Arc<CudaContext>) -> SendGraph {
        let programmatic = programmatic
            .then(|| {
                // SAFETY: the graph was just captured on this engine's stream and is used
                // by nothing else; every kernel calls wait_for_previous_kernel_ before
                // touching memory (kernels/common.cuh).
                let made = unsafe {
                    runtime::make_edges_programmatic(captured.cu_graph()).and_then(|edges| {
                        runtime::GraphExec::instantiate(captured.cu_graph(), ctx)
                            .map(|exec| (edges, exec))
                    })
                };
                match made {
                    Ok((edges, exec)) if edges > 0 => Some(exec),
                    Ok(_) => None,
                    Err(e) => {
                        eprintln!("mlff: warning: the CUDA driver refused programmatic edges in the step's graph ({e}); running it without them");
                        None
                    }
                }
            })
            .flatten();
        SendGraph {
            captured,
            programmatic,
        }
    }

    fn launch(&self, stream: &CudaStream) -> Result<()> {
        match &self.programmatic {
            Some(exec) => exec.launch(stream),
            None => self.captured.launch(),
        }
        .map_err(device_error)
    }
}

/// The fused message + update of block l (of `n_blocks`) writes v'' into `v` (else into
/// `v_alt`) and reads v from the other buffer: into `v` when an even number of blocks with
/// a vector update follow it, so that the last block (no vector update) finds its input in
/// `v`, where the backward pass expects it; block 0 then reads the embedding's zeros in
/// `v`, or v_alt's zeros where no block writes v_alt (two blocks).
fn fused_writes_into_v(n_blocks: usize, l: usize) -> bool {
    (n_blocks - 1 - l) % 2 == 1
}

/// Systems up to this many atoms replay a CUDA graph of the whole step (launch
/// overheads dominate there); larger ones launch kernel by kernel.
const GRAPH_MAX_ATOMS: usize = 20_000;

/// Graphs of systems below this many atoms get programmatic kernel-to-kernel edges.
/// Same call, H100 (benches/gpu_results.md, session 10): 2 atoms 0.089 -> 0.079 ms,
/// mol50 0.123 -> 0.120; water192 equal; water1k and water10k 1-2% slower (there the
/// early-launched blocks only wait).
const PROGRAMMATIC_MAX_ATOMS: usize = 256;

/// A second stream for the kernels of a small system's step that need not wait for the
/// main stream's next kernel (the embedding and the edges' summation order beside the pair
/// geometry, each block's pair gradient beside its message backward): the captured graph
/// gets parallel branches, so those kernels leave the critical path.
/// `MLFF_CUDA_BRANCHES=off` keeps one stream.
struct SideStream {
    stream: Arc<CudaStream>,
    fork: CudaEvent,
    join: CudaEvent,
}

impl SideStream {
    fn new(main: &CudaStream) -> Result<Option<SideStream>> {
        if std::env::var("MLFF_CUDA_BRANCHES").ok().as_deref() == Some("off") {
            return Ok(None);
        }
        let ctx = main.context();
        Ok(Some(SideStream {
            stream: main.fork().map_err(device_error)?,
            fork: ctx.new_event(None).map_err(device_error)?,
            join: ctx.new_event(None).map_err(device_error)?,
        }))
    }

    /// The side stream, after everything enqueued on `main` so far.
    fn fork(&self, main: &CudaStream) -> Result<&CudaStream> {
        self.fork.record(main).map_err(device_error)?;
        self.stream.wait(&self.fork).map_err(device_error)?;
        Ok(&self.stream)
    }

    /// `main` continues after everything enqueued on the side stream so far.
    fn join(&self, main: &CudaStream) -> Result<()> {
        self.join.record(&self.stream).map_err(device_error)?;
        main.wait(&self.join).map_err(device_error)
    }
}

/// Where candidate lists are built: `MLFF_CUDA_NL` = `host`, `gpu`, or unset (GPU for
/// single systems of at least `GPU_LIST_MIN_ATOMS` atoms, host otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListBuilder {
    Auto,
    Host,
    Gpu,
}
const GPU_LIST_MIN_ATOMS: usize = 1000;

fn list_builder() -> ListBuilder {
    match std::env::var("MLFF_CUDA_NL").ok().as_deref() {
        Some("host") => ListBuilder::Host,
        Some("gpu") => ListBuilder::Gpu,
        _ => ListBuilder::Auto,
    }
}

/// `MLFF_CUDA_FILTER=table` keeps the f32 engine on the global filter table everywhere
/// (for comparisons); by default systems of at least `poly_min_atoms()` atoms read the
/// filter as polynomials from shared memory.
fn poly_filter_enabled() -> bool {
    std::env::var("MLFF_CUDA_FILTER").map_or(true, |v| v != "table")
}

/// Smallest system (atoms) for the shared-memory polynomial filter kernels:
/// `MLFF_CUDA_POLY_MIN_ATOMS`, by default 384 for f32 and 1000 for mixed (`half_table`,
/// whose table kernels read half the bytes). Their persistent CTAs need enough atoms to
/// fill the device; smaller systems keep the per-atom-block kernels. H100, same call
/// (benches/gpu_results.md, 2026-11-26), table -> polynomial kernels, water: f32 192 atoms
/// 0.219 -> 0.304 ms, 384 0.330 -> 0.315, 1002 0.66 -> 0.51, 3000 1.07 -> 1.10 (equal within
/// the spread); mixed 384 0.265 -> 0.325, 1002 0.543 -> 0.485, 3000 1.09 -> 1.09.
fn poly_min_atoms(half_table: bool) -> usize {
    std::env::var("MLFF_CUDA_POLY_MIN_ATOMS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if half_table { 1000 } else { 384 })
}

/// Skin of the candidate list in Å (`MLFF_CUDA_SKIN`, default 0.3; 0 rebuilds
/// whenever a position changes).
pub(super) fn skin() -> f64 {
    std::env::var("MLFF_CUDA_SKIN")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s >= 0.0 && s.is_finite())
        .unwrap_or(0.3)
}

/// Everything of one precision.
struct Gpu<T: Real> {
    stream: Arc<CudaStream>,
    kernels: Kernels,
    hidden: usize,
    n_nodes: usize,
    inv_h: f64,
    embedding: CudaSlice<T>,
    blocks: Vec<DeviceBlock<T>>,
    head: DeviceHead<T>,
    atoms: Option<AtomBuffers<T>>,
    pairs: Option<PairBuffers<T>>,
    partials: CudaSlice<f64>,
    totals: CudaSlice<f64>,
    host: HostGraph,
    list: ListState,
    cutoff: f64,
    skin: f64,
    builder: ListBuilder,
    /// False with MLFF_CUDA_NO_GRAPH set (read once, at creation).
    graphs: bool,
    /// Programmatic kernel-to-kernel edges in those graphs (`runtime::programmatic_launch`,
    /// read once, at creation; for systems below PROGRAMMATIC_MAX_ATOMS).
    programmatic: bool,
    /// Parallel branches of the small-system step (None with MLFF_CUDA_BRANCHES=off).
    side: Option<SideStream>,
    /// Smallest system for the polynomial filter kernels (read once, at creation).
    poly_min_atoms: usize,
    /// Pair capacity from which edge_backward runs its channel groups in sequence
    /// (`MLFF_CUDA_SEQUENCE_MIN_PAIRS`, default 2^22: ~150k atoms of water; read once).
    sequence_min_pairs: usize,
    /// Atom buffers of at least this many rows save only block L-2's gates and the
    /// backward pass recomputes the others from z (`MLFF_CUDA_RECOMPUTE_GATES_MIN_ATOMS`,
    /// default 2^17: per block <= L-3, one more per-atom product with the H x 2H gate rows
    /// of U2 for 2H numbers per atom less; the same numbers bitwise).
    recompute_gates_min_atoms: usize,
    coincident: CudaSlice<i32>,
    /// atom_gather_reduce's count of finished blocks (zero between calls).
    blocks_done: CudaSlice<u32>,
    /// The captured launch sequence for small systems, and what it was captured for.
    graph: Option<(GraphKey, SendGraph)>,
    /// `ListState::rebuilds` of the previous call: a list's first call runs its launch
    /// sequence directly and only a second call on the same list captures a graph, so
    /// runs that rebuild on every step (hot systems, a small skin) never pay a capture
    /// and instantiation they would use once.
    previous_list: Option<usize>,
    download: Vec<T>,
    /// With MLFF_CUDA_PROFILE set: synchronise after each stage and add its wall time here.
    profile: Option<Profile>,
    /// MLFF_CUDA_TIMING (see `CallTiming`).
    timing: Option<CallTiming>,
    /// Device inputs (`run_device`) only.
    device_io: DeviceIo,
    /// `list.order` on the device (filled when the list is built on the GPU).
    order_dev: Option<CudaSlice<u32>>,
    /// The cells the pair shifts refer to (set with the list).
    frames: Option<PairFrames>,
    /// 3 x atoms doubles in the caller's order (positions in, forces out) when the
    /// engine's order differs.
    staging: Option<CudaSlice<f64>>,
    /// Page-locked host rows of this call's positions (write-combined: the host only
    /// writes them) and forces (3n doubles each, reallocated when n changes).
    pinned_in: Option<PinnedHostSlice<f64>>,
    pinned_out: Option<PinnedHostSlice<f64>>,
    /// This step's totals go into the forces buffer after its 3n forces, and come back
    /// with them in one download (a single unsorted system whose forces and totals one
    /// launch forms: atom_gather_reduce); else into `totals`, downloaded on their own.
    totals_in_forces: bool,
    /// Where `totals_in_forces` holds (and MLFF_CUDA_DIRECT_OUTPUT is not `off`): the
    /// device address of `pinned_out`, into which atom_gather_reduce writes the forces
    /// and totals itself, so that no download follows the kernels (mol50: the copy of
    /// ~1.3 KB took 5-10 us of the step's GPU time).
    forces_host: Option<u64>,
    /// The 11 totals, page-locked: an asynchronous copy and one wait for the stream,
    /// instead of a copy into pageable memory.
    pinned_totals: Option<PinnedHostSlice<f64>>,
    /// False with MLFF_CUDA_SORT=off (read once, at creation): keep the caller's order.
    sort_atoms: bool,
    /// GPU lists of at least this many atoms sort them (`SORT_MIN_ATOMS`;
    /// MLFF_CUDA_SORT_MIN_ATOMS, for tests of small cells).
    sort_min_atoms: usize,
    /// False with MLFF_CUDA_BINS=host (read once, at creation): the GPU list's binning
    /// and spatial order on the host (as before `neighbor_bins.cu`) instead of the device.
    device_bins: bool,
    /// The bins' Z-curve ranks on the device, for the grid they were computed for.
    bin_rank: Option<([usize; 3], CudaSlice<u32>)>,
    /// `compute_batch`: per-system totals reduced on the device.
    batch: BatchTotals,
}

/// Per-system energy and virial totals of a batch (kernels/reduce_systems.cu).
#[derive(Default)]
struct BatchTotals {
    /// Atom offsets of the systems (n_systems + 1), for the list of `start_for` rebuilds.
    system_start: Option<CudaSlice<u32>>,
    start_for: Option<usize>,
    /// 10 doubles per system (E, W row-major), on the device and as last copied back.
    totals: Option<CudaSlice<f64>>,
    host: Vec<f64>,
}

/// State of the device-input path: the positions the candidate list was built for,
/// on the device, so that the skin check needs no download of the positions.
#[derive(Default)]
struct DeviceIo {
    /// 3 x capacity build positions (Å).
    built: Option<CudaSlice<f64>>,
    /// `ListState::rebuilds` when `built` was filled.
    built_for: Option<usize>,
    flag: Option<CudaSlice<i32>>,
    /// Recorded on the caller's stream (the engine waits), and on the engine's (the caller waits).
    events: Option<(CudaEvent, CudaEvent)>,
    host: Vec<f64>,
}

/// Per-stage wall times (seconds), for tuning only (synchronising costs time).
#[derive(Default, Debug, Clone)]
pub struct Profile {
    pub stages: Vec<(&'static str, f64)>,
    last: Option<std::time::Instant>,
}

impl Profile {
    /// Starts the clock of a call (the first mark measures from here).
    pub(super) fn begin(&mut self) {
        self.last = Some(std::time::Instant::now());
    }

    /// Prints the accumulated per-stage times (MLFF_CUDA_PROFILE, at engine drop).
    pub(super) fn print(&self, description: &str) {
        let total: f64 = self.stages.iter().map(|s| s.1).sum();
        eprintln!(
            "mlff cuda profile ({description}): total {:.3} ms",
            total * 1e3
        );
        for (name, t) in &self.stages {
            eprintln!(
                "  {name:<18} {:9.3} ms  {:5.1}%",
                t * 1e3,
                100.0 * t / total.max(1e-300)
            );
        }
    }

    /// Synchronises `stream` and adds the time since the previous mark to `name`.
    pub(super) fn mark(&mut self, stream: &CudaStream, name: &'static str) {
        let _ = stream.synchronize();
        let now = std::time::Instant::now();
        if let Some(last) = self.last {
            let dt = (now - last).as_secs_f64();
            match self.stages.iter_mut().find(|(n, _)| *n == name) {
                Some((_, t)) => *t += dt,
                None => self.stages.push((name, dt)),
            }
        }
        self.last = Some(now);
    }
}

/// MLFF_CUDA_TIMING: where a host-array call's time goes, without the profile's
/// synchronisations: host instants at the call's steps and GPU events around the
/// upload, the kernels and the download; medians printed at engine drop.
struct CallTiming {
    events: [CudaEvent; 4],
    host: [std::time::Instant; 5],
    /// Per call: host staging, host launches, host wait, host results; GPU upload,
    /// kernels, download (ms).
    calls: Vec<[f64; 7]>,
}

impl CallTiming {
    fn new(stream: &CudaStream) -> Option<CallTiming> {
        std::env::var_os("MLFF_CUDA_TIMING")?;
        let ctx = stream.context();
        let event = || ctx.new_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT));
        let events = [event().ok()?, event().ok()?, event().ok()?, event().ok()?];
        let now = std::time::Instant::now();
        Some(CallTiming {
            events,
            host: [now; 5],
            calls: Vec::new(),
        })
    }

    /// GPU event k on the stream (0: call entry, 1: upload enqueued, 2: kernels
    /// enqueued, 3: downloads enqueued).
    fn event(&mut self, stream: &CudaStream, k: usize) {
        let _ = self.events[k].record(stream);
    }

    /// Host step k (0 .. 2 as the events, 3: the wait for the GPU over, 4: results
    /// formed); step 4 closes the call.
    fn host(&mut self, k: usize) {
        self.host[k] = std::time::Instant::now();
        if k == 4 {
            let ms = |a: usize, b: usize| (self.host[b] - self.host[a]).as_secs_f64() * 1e3;
            let gpu = |a: usize, b: usize| {
                self.events[a]
                    .elapsed_ms(&self.events[b])
                    .map_or(f64::NAN, f64::from)
            };
            self.calls.push([
                ms(0, 1),
                ms(1, 2),
                ms(2, 3),
                ms(3, 4),
                gpu(0, 1),
                gpu(1, 2),
                gpu(2, 3),
            ]);
        }
    }

    fn print(&self, description: &str) {
        let names = [
            "host: stage + enqueue upload",
            "host: enqueue kernels",
            "host: wait for the GPU",
            "host: results",
            "GPU: upload",
            "GPU: kernels",
            "GPU: download + totals",
        ];
        eprintln!(
            "mlff cuda call timing ({description}), medians over {} calls (ms):",
            self.calls.len()
        );
        for (k, name) in names.iter().enumerate() {
            let mut v: Vec<f64> = self.calls.iter().map(|c| c[k]).collect();
            v.sort_by(f64::total_cmp);
            if let Some(m) = v.get(v.len() / 2) {
                eprintln!("  {name:<30} {m:8.4}");
            }
        }
    }
}

macro_rules! timing_step {
    ($timing:expr, $stream:expr, $k:expr) => {
        if let Some(t) = $timing.as_mut() {
            if $k < 3 {
                t.event(&$stream, $k);
            }
            t.host($k);
        }
    };
}

macro_rules! mark {
    ($prof:expr, $stream:expr, $name:expr) => {
        if let Some(p) = $prof.as_mut() {
            p.mark(&$stream, $name);
        }
    };
}

impl<T: Real> Gpu<T> {
    fn new(
        stream: Arc<CudaStream>,
        module: &Arc<CudaModule>,
        file: &ModelFile,
        n_nodes: usize,
        half_table: bool,
    ) -> Result<Self> {
        let w = file.weights.student().ok_or_else(|| {
            Error::Internal("the student GPU weights need a student model".into())
        })?;
        let hidden = w.config.hidden;
        let (compute_major, _) = stream
            .context()
            .compute_capability()
            .map_err(device_error)?;
        let tile = if std::mem::size_of::<T>() == 8 {
            (runtime::tile() / 2).max(1) // Tile<double> in common.cuh
        } else {
            runtime::tile()
        };
        let mut kernels = Kernels::load::<T>(module, stream.context(), hidden, tile, half_table)?;
        // The mixed engine too: for systems of >= poly_min_atoms the f32 polynomial
        // kernels are faster than its f16 table (and more accurate), so it runs them there.
        if T::SUFFIX == "f32" && poly_filter_enabled() {
            kernels.poly = k::PolyKernels::load(module, stream.context(), hidden)?;
        }
        let n_blocks = w.blocks.len();
        let mut blocks = Vec::with_capacity(n_blocks);
        for (l, b) in w.blocks.iter().enumerate() {
            let vector_update = l + 1 < n_blocks;
            let mixing: Vec<f64> = match (&b.mixing, vector_update) {
                (Some(m), _) => m.iter().flatten().copied().collect(),
                (None, false) => vec![0.0; 9],
                (None, true) => {
                    return Err(Error::Internal(format!("block {l} has no mixing matrix")))
                }
            };
            let table = spline::build_table(w, b, n_nodes);
            let table = if half_table {
                let bits = spline::half_table(&table, n_nodes, w.config.cutoff);
                DeviceTable::Half {
                    half: stream.clone_htod(&bits).map_err(device_error)?,
                    full: if k::message_update_loaded(&kernels) {
                        Some(upload(&stream, &table)?)
                    } else {
                        None
                    },
                }
            } else {
                DeviceTable::Full(upload(&stream, &table)?)
            };
            let poly = match kernels.poly {
                Some(_) => Some((
                    upload(&stream, &spline::build_poly_table(w, b, spline::POLY_VALUE))?,
                    upload(&stream, &spline::build_poly_table(w, b, spline::POLY_GRAD))?,
                )),
                None => None,
            };
            blocks.push(DeviceBlock {
                poly,
                table,
                w1t: upload(&stream, &transposed(&b.update1))?,
                b1: upload(&stream, &b.update1.bias)?,
                w2t: upload(&stream, &transposed(&b.update2))?,
                b2: upload(&stream, &b.update2.bias)?,
                w1: upload(&stream, &b.update1.weight)?,
                w2: upload(&stream, &b.update2.weight)?,
                mixing: upload(&stream, &mixing)?,
                vector_update,
                wgmma_forward: if kernels.has_update_wgmma() {
                    Some(upload(
                        &stream,
                        &tensor_core::pack_update_forward(&b.update1, &b.update2, vector_update),
                    )?)
                } else {
                    None
                },
            });
        }
        let [a, b, c] = &w.head;
        let head = DeviceHead {
            at: upload(&stream, &transposed(a))?,
            a_bias: upload(&stream, &a.bias)?,
            a_w: upload(&stream, &a.weight)?,
            bt: upload(&stream, &transposed(b))?,
            b_bias: upload(&stream, &b.bias)?,
            b_w: upload(&stream, &b.weight)?,
            c_w: upload(&stream, &c.weight)?,
            c_bias: upload(&stream, &c.bias)?,
        };
        let coincident = stream.alloc_zeros(1).map_err(device_error)?;
        let stream_zeros_u32 = stream.alloc_zeros(1).map_err(device_error)?;
        Ok(Gpu {
            side: SideStream::new(&stream)?,
            embedding: upload(&stream, &w.embedding)?,
            timing: CallTiming::new(&stream),
            partials: stream
                .alloc_zeros(10 * k::REDUCE_BLOCKS)
                .map_err(device_error)?,
            totals: stream.alloc_zeros(11).map_err(device_error)?,
            inv_h: (n_nodes - 1) as f64 / w.config.cutoff,
            // The kernels take the number of intervals.
            stream,
            kernels,
            hidden,
            n_nodes,
            blocks,
            head,
            atoms: None,
            pairs: None,
            host: HostGraph::default(),
            list: ListState::default(),
            cutoff: w.config.cutoff,
            skin: skin(),
            builder: list_builder(),
            graphs: std::env::var_os("MLFF_CUDA_NO_GRAPH").is_none(),
            programmatic: runtime::programmatic_launch(compute_major),
            poly_min_atoms: poly_min_atoms(half_table),
            sequence_min_pairs: std::env::var("MLFF_CUDA_SEQUENCE_MIN_PAIRS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(1 << 22),
            recompute_gates_min_atoms: std::env::var("MLFF_CUDA_RECOMPUTE_GATES_MIN_ATOMS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(1 << 17),
            coincident,
            blocks_done: stream_zeros_u32,
            graph: None,
            previous_list: None,
            download: Vec::new(),
            profile: std::env::var_os("MLFF_CUDA_PROFILE").map(|_| Profile::default()),
            device_io: DeviceIo::default(),
            order_dev: None,
            frames: None,
            staging: None,
            pinned_in: None,
            pinned_out: None,
            totals_in_forces: false,
            forces_host: None,
            pinned_totals: None,
            sort_atoms: std::env::var("MLFF_CUDA_SORT").map_or(true, |v| v != "off"),
            sort_min_atoms: std::env::var("MLFF_CUDA_SORT_MIN_ATOMS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(super::gpu_neighbors::SORT_MIN_ATOMS),
            device_bins: std::env::var("MLFF_CUDA_BINS").map_or(true, |v| v != "host"),
            bin_rank: None,
            batch: BatchTotals::default(),
        })
    }

    fn ensure_capacity(&mut self, n_atoms: usize, n_pairs: usize) -> Result<()> {
        // Grow with slack so that MD's fluctuating atom (ghost) and pair counts do not
        // reallocate each step. Relative fluctuations shrink with size, and so does the
        // slack of large systems (it would cost gigabytes at a million atoms): at least
        // 1/128 (~0.11 GB of atom buffers at a million atoms).
        let slack =
            |n: usize, fraction: usize, at_most: usize| (n / fraction).min(at_most).max(n / 128);
        if self.atoms.as_ref().map_or(true, |a| a.capacity < n_atoms) {
            self.atoms = None;
            let cap = n_atoms + slack(n_atoms, 8, 8192);
            self.atoms = Some(AtomBuffers::new(
                &self.stream,
                cap,
                self.hidden,
                self.blocks.len(),
                cap >= self.recompute_gates_min_atoms,
            )?);
        }
        if self.pairs.as_ref().map_or(true, |p| p.capacity < n_pairs) {
            self.pairs = None;
            let cap = n_pairs + slack(n_pairs, 4, 1 << 18) + 16;
            let partial = self.partial_len(cap).max(self.partial_len(n_pairs));
            let records = self.records_len(cap, n_atoms);
            self.pairs = Some(PairBuffers::new(&self.stream, cap, partial, records)?);
        }
        let need = self.partial_len(n_pairs);
        let pairs = self.pairs.as_mut().expect("allocated");
        if pairs.partial.len() < need {
            // A list below the sequence threshold in buffers sized above it.
            pairs.partial = zeros(&self.stream, 1)?;
            pairs.partial = zeros(&self.stream, need)?;
        }
        Ok(())
    }

    /// Whether one launch (`atom_gather_reduce`) forms a step's forces and totals: a
    /// single system of up to SMALL_SYSTEM atoms, without the profiler. `enqueue` and
    /// the choice of `totals_in_forces` both follow it.
    fn fused_reduce(&self, n: usize, per_system: bool) -> bool {
        n <= k::SMALL_SYSTEM && self.profile.is_none() && !per_system
    }

    /// Whether edge_backward runs its channel groups in sequence for a list of
    /// `n_pairs` candidates (a function of the list only, so that results do not
    /// depend on what the engine computed before).
    fn groups_in_sequence(&self, n_pairs: usize) -> bool {
        n_pairs >= self.sequence_min_pairs
    }

    /// u32 of the edge records for a pair capacity `capacity` (16 per pair: 8 per CSR
    /// slot), or 0: only for the polynomial kernels, and only with the channel groups in
    /// parallel (below ~150k atoms of water: at a million atoms they would take 1.7 GB);
    /// `MLFF_CUDA_EDGE_RECORDS=off` gathers instead (the same numbers). Twice that for a
    /// system of `n_atoms` that takes the message kernels' merged walk: the merged records
    /// after them (kernels::poly_merge, merge_min_atoms; without them the kernels walk one
    /// atom per warp, with the same results).
    fn records_len(&self, capacity: usize, n_atoms: usize) -> usize {
        let enabled = std::env::var("MLFF_CUDA_EDGE_RECORDS").as_deref() != Ok("off");
        let merge = k::poly_merge() > 1 && n_atoms >= k::merge_min_atoms();
        if enabled && self.kernels.poly.is_some() && !self.groups_in_sequence(capacity) {
            if merge {
                32 * capacity
            } else {
                16 * capacity
            }
        } else {
            0
        }
    }

    /// Values in the partial pair-gradient buffer for `n_pairs` pairs: per block,
    /// channel group, pair and direction (4 per pair and group for block 0, 8 for each
    /// later block: every block's terms are summed in one launch after block 0), or,
    /// with the groups in sequence, 4 per pair (edge_backward's reverse direction);
    /// none without the polynomial kernels.
    fn partial_len(&self, n_pairs: usize) -> usize {
        match self.kernels.poly.as_ref() {
            None => 0,
            Some(p) => k::partial_values(
                self.groups_in_sequence(n_pairs),
                self.blocks.len(),
                p.groups(),
                n_pairs,
            ),
        }
    }

    fn fetch(
        &mut self,
        which: impl Fn(&AtomBuffers<T>) -> &CudaSlice<T>,
        len: usize,
    ) -> Result<Vec<f64>> {
        let atoms = self.atoms.as_ref().expect("buffers exist");
        self.download.resize(len, T::default());
        self.stream
            .memcpy_dtoh(&which(atoms).slice(0..len), &mut self.download[..])
            .map_err(device_error)?;
        Ok(self.download.iter().map(|x| x.to_f64()).collect())
    }

    fn fetch_f64(
        &mut self,
        which: impl Fn(&AtomBuffers<T>) -> &CudaSlice<f64>,
        len: usize,
    ) -> Result<Vec<f64>> {
        let atoms = self.atoms.as_ref().expect("buffers exist");
        let mut out = vec![0.0f64; len];
        self.stream
            .memcpy_dtoh(&which(atoms).slice(0..len), &mut out[..])
            .map_err(device_error)?;
        Ok(out)
    }

    /// Makes the device neighbour list valid for `systems` (rebuilding it on the host
    /// with cutoff rc + skin only when needed) and uploads this call's positions.
    fn prepare(&mut self, systems: &[System]) -> Result<()> {
        let n: usize = systems.iter().map(|s| s.n_atoms()).sum();
        let same_layout = self.list.valid
            && self.list.sizes.len() == systems.len()
            && systems
                .iter()
                .zip(&self.list.sizes)
                .all(|(s, &k)| s.n_atoms() == k)
            && systems
                .iter()
                .zip(&self.list.cells)
                .all(|(s, c)| s.cell == *c)
            && systems
                .iter()
                .zip(&self.list.pbcs)
                .all(|(s, p)| s.pbc == *p);
        // Rebuild when an atom moved more than skin / 2 (a hair less, for rounding),
        // checked in the pass that stages this call's positions in page-locked memory
        // for the upload below.
        let limit = 0.5 * self.skin * (1.0 - 1e-9);
        let moved = {
            let ctx = self.stream.context().clone();
            let write_combined = cudarc::driver::sys::CU_MEMHOSTALLOC_WRITECOMBINED;
            let pinned = pinned_exact(&ctx, &mut self.pinned_in, 3 * n, write_combined)?;
            let host = pinned.as_mut_slice().map_err(device_error)?;
            let comparable = same_layout && self.list.build_positions.len() == n;
            let built = comparable.then_some(&self.list.build_positions[..]);
            let moved = stage_positions(systems, host, built, limit);
            !comparable || moved
        };
        // Needed on a rebuild only; written into the previous build's rows (their pages
        // are mapped already).
        let positions = |previous: &mut Vec<[f64; 3]>| -> Vec<[f64; 3]> {
            let mut rows = std::mem::take(previous);
            rows.clear();
            for s in systems {
                rows.extend_from_slice(s.positions);
            }
            rows
        };
        let on_gpu = systems.len() == 1
            && match self.builder {
                ListBuilder::Auto => n >= GPU_LIST_MIN_ATOMS,
                ListBuilder::Host => false,
                ListBuilder::Gpu => true,
            };
        if moved && on_gpu {
            self.list.valid = false;
            let positions = positions(&mut self.list.build_positions);
            self.build_list_on_gpu(&systems[0], &positions)?;
            self.list.sizes = vec![n];
            self.list.cells = vec![systems[0].cell];
            self.list.pbcs = vec![systems[0].pbc];
            self.list.build_positions = positions;
            self.list.numbers.clear();
            self.list.is_local.clear();
            self.list.rebuilds += 1;
            self.list.valid = true;
        } else if moved {
            self.list.valid = false;
            self.host.clear();
            let mut base = 0;
            for s in systems {
                let nl =
                    neighbors::build(s.positions, s.cell.as_ref(), s.pbc, self.cutoff + self.skin)?;
                self.host.append(&nl, base)?;
                base += s.n_atoms();
            }
            let n_pairs = self.host.pair_i.len();
            self.list.order.clear();
            self.ensure_capacity(n, n_pairs)?;
            let (st, h) = (&self.stream, &self.host);
            let atoms = self.atoms.as_mut().expect("allocated");
            let pairs = self.pairs.as_mut().expect("allocated");
            let e = device_error;
            st.memcpy_htod(&h.offsets, &mut atoms.offsets.slice_mut(0..n + 1))
                .map_err(e)?;
            if n_pairs > 0 {
                st.memcpy_htod(
                    &h.edge_source,
                    &mut pairs.edge_source.slice_mut(0..2 * n_pairs),
                )
                .map_err(e)?;
                st.memcpy_htod(&h.edge_pair, &mut pairs.edge_pair.slice_mut(0..2 * n_pairs))
                    .map_err(e)?;
                st.memcpy_htod(&h.pair_i, &mut pairs.pair_i.slice_mut(0..n_pairs))
                    .map_err(e)?;
                st.memcpy_htod(&h.pair_j, &mut pairs.pair_j.slice_mut(0..n_pairs))
                    .map_err(e)?;
                st.memcpy_htod(&h.pair_shift, &mut pairs.shift.slice_mut(0..n_pairs))
                    .map_err(e)?;
            }
            self.frames = Some(PairFrames::upload(&self.stream, systems)?);
            self.list.sizes = systems.iter().map(|s| s.n_atoms()).collect();
            self.list.cells = systems.iter().map(|s| s.cell).collect();
            self.list.pbcs = systems.iter().map(|s| s.pbc).collect();
            self.list.build_positions = positions(&mut self.list.build_positions);
            self.list.n_pairs = n_pairs;
            self.list.numbers.clear();
            self.list.is_local.clear();
            self.list.rebuilds += 1;
            self.list.valid = true;
        }
        let atoms = self.atoms.as_mut().expect("allocated");
        let numbers = || systems.iter().flat_map(|s| s.numbers.iter().copied());
        let is_local = || {
            systems
                .iter()
                .flat_map(|s| (0..s.n_atoms()).map(move |i| (i < s.n_local) as u8))
        };
        // Compared slice by slice every call (comparing the iterators above took ~0.2-0.3
        // ms at 10^5 atoms, session 19); collected only when they changed.
        if !same_atoms(systems, &self.list.numbers, &self.list.is_local) {
            let (numbers, is_local): (Vec<i32>, Vec<u8>) =
                (numbers().collect(), is_local().collect());
            let order = &self.list.order;
            let engine_numbers = permuted(order, &numbers);
            let engine_local = permuted(order, &is_local);
            self.stream
                .memcpy_htod(&engine_numbers, &mut atoms.numbers.slice_mut(0..n))
                .map_err(device_error)?;
            self.stream
                .memcpy_htod(&engine_local, &mut atoms.is_local.slice_mut(0..n))
                .map_err(device_error)?;
            self.list.numbers = numbers;
            self.list.is_local = is_local;
        }
        // A list just built on the GPU left this call's positions in the atom buffer
        // (in the engine's order).
        if moved && on_gpu {
            return Ok(());
        }
        // Through page-locked memory (staged above): an asynchronous copy (a pageable one
        // synchronises).
        let pinned = self.pinned_in.as_ref().expect("staged");
        if self.list.order.is_empty() {
            self.stream
                .memcpy_htod(pinned, &mut atoms.positions.slice_mut(0..3 * n))
                .map_err(device_error)?;
        } else {
            // Uploaded in the caller's order and permuted on the device (a gather on the
            // host misses its caches at 10^6 atoms: ~10 ms).
            let staging = staging_rows(&self.stream, &mut self.staging, n)?;
            self.stream
                .memcpy_htod(pinned, &mut staging.slice_mut(0..3 * n))
                .map_err(device_error)?;
            let from = address(&self.stream, staging);
            let order = self.order_dev.as_ref().expect("uploaded with the order");
            k::atom_order_gather(
                &self.stream,
                &self.kernels,
                n,
                order,
                from,
                &mut atoms.positions,
            )?;
        }
        Ok(())
    }

    /// Bins the atoms on the host (`gpu_neighbors::bin_atoms`, `spatial_order`,
    /// `Bins::renumbered`) and uploads the bins and the positions in the engine's order.
    fn bin_on_host(
        &mut self,
        system: &System,
        positions: &[[f64; 3]],
        cutoff: f64,
    ) -> Result<ListBins> {
        use super::gpu_neighbors::{bin_atoms, spatial_order};
        let n = positions.len();
        let mut bins = bin_atoms(positions, system.cell.as_ref(), system.pbc, cutoff)?;
        mark!(self.profile, self.stream, "list: host bins");
        // Atoms sorted along the bins' Z-curve; the list is built for that order (the
        // same bins, as binning is per atom), so the caller's order only matters at
        // the inputs and outputs.
        let order = if self.sort_atoms && n >= self.sort_min_atoms {
            spatial_order(&bins)
        } else {
            Vec::new()
        };
        let sorted: Vec<[f64; 3]>;
        let positions = if order.is_empty() {
            positions
        } else {
            sorted = crate::neighbors::map_collect(
                &order,
                super::gpu_neighbors::PARALLEL_MIN_ROWS,
                |&a| positions[a as usize],
            );
            // The same bins renumbered (binning again cost ~30-60 ms at 10^6 atoms).
            bins = bins.renumbered(&order);
            &sorted[..]
        };
        mark!(self.profile, self.stream, "list: host order");
        let old_pairs = self.pairs.as_ref().map_or(0, |p| p.capacity);
        self.ensure_capacity(n, old_pairs)?;
        let st = self.stream.clone();
        let e = device_error;
        let flat: Vec<f64> = positions.iter().flatten().copied().collect();
        {
            let atoms = self.atoms.as_mut().expect("allocated");
            st.memcpy_htod(&flat, &mut atoms.positions.slice_mut(0..3 * n))
                .map_err(e)?;
        }
        if !order.is_empty() {
            let order_dev = order_buffer(&st, &mut self.order_dev, &self.atoms, n)?;
            st.memcpy_htod(&order, &mut order_dev.slice_mut(0..n))
                .map_err(e)?;
        }
        Ok(ListBins {
            grid: bins.grid,
            cell: st.clone_htod(&bins.cell[..]).map_err(e)?,
            atom_bin: st.clone_htod(&bins.atom_bin).map_err(e)?,
            image: st.clone_htod(&bins.image).map_err(e)?,
            bin_start: st.clone_htod(&bins.bin_start).map_err(e)?,
            bin_atoms: st.clone_htod(&bins.bin_atoms).map_err(e)?,
            order,
        })
    }

    /// Bins the atoms on the device (`neighbor_bins.cu`): the same bins, spatial order
    /// and renumbered bins as `bin_on_host`, from the positions staged page-locked by
    /// `prepare` (caller's order); only the order comes back (and, with open axes, their
    /// extent before the grid is laid out).
    fn bin_on_device(
        &mut self,
        system: &System,
        positions: &[[f64; 3]],
        cutoff: f64,
    ) -> Result<ListBins> {
        use super::gpu_neighbors::{bin_map_frame, bin_rank, from_order_key, with_grid};
        let n = positions.len();
        let st = self.stream.clone();
        let e = device_error;
        let (frame, map) = bin_map_frame(system.cell.as_ref(), system.pbc, cutoff)?;
        let old_pairs = self.pairs.as_ref().map_or(0, |p| p.capacity);
        self.ensure_capacity(n, old_pairs)?;
        let caller = staging_rows(&st, &mut self.staging, n)?;
        let pinned = self.pinned_in.as_ref().expect("staged by prepare");
        st.memcpy_htod(pinned, &mut caller.slice_mut(0..3 * n))
            .map_err(e)?;
        let mut frac = st.alloc_zeros::<f64>(3 * n).map_err(e)?;
        let mut image_caller = st.alloc_zeros::<i32>(3 * n).map_err(e)?;
        let mut extent = st
            .clone_htod(&[u64::MAX, u64::MAX, u64::MAX, 0, 0, 0])
            .map_err(e)?;
        let mut flag = st.alloc_zeros::<i32>(1).map_err(e)?;
        k::neighbor_bins_fractional(
            &st,
            &self.kernels,
            n,
            caller,
            &map,
            &mut frac,
            &mut image_caller,
            &mut extent,
            &mut flag,
        )?;
        let mut extents = [(0.0, 0.0); 3];
        if system.pbc.iter().any(|&p| !p) {
            let keys = st.clone_dtoh(&extent).map_err(e)?;
            for (k, x) in extents.iter_mut().enumerate() {
                *x = (from_order_key(keys[k]), from_order_key(keys[3 + k]));
            }
        }
        let (map, grid) = with_grid(&frame, map, n, extents)?;
        let n_bins = map.n_bins.map(|b| b as usize);
        let total_bins = n_bins.iter().product::<usize>();
        if self.bin_rank.as_ref().map(|r| r.0) != Some(n_bins) {
            self.bin_rank = None;
            self.bin_rank = Some((n_bins, st.clone_htod(&bin_rank(n_bins)).map_err(e)?));
        }
        let mut scratch = k::ScratchBins {
            atom_bin_caller: st.alloc_zeros::<i32>(3 * n).map_err(e)?,
            atom_rank: st.alloc_zeros::<u32>(n).map_err(e)?,
            unsorted: st.alloc_zeros::<u32>(n).map_err(e)?,
            count: st.alloc_zeros::<u32>(total_bins).map_err(e)?,
            cursor: st.alloc_zeros::<u32>(total_bins).map_err(e)?,
            start: st.alloc_zeros::<u32>(total_bins + 1).map_err(e)?,
            sizes: st.alloc_zeros::<u32>(total_bins).map_err(e)?,
            total: st.alloc_zeros::<u64>(1).map_err(e)?,
        };
        let mut atom_bin = st.alloc_zeros::<i32>(3 * n).map_err(e)?;
        let mut image = st.alloc_zeros::<i32>(3 * n).map_err(e)?;
        let mut bin_start = st.alloc_zeros::<u32>(total_bins + 1).map_err(e)?;
        let mut bin_atoms = st.alloc_zeros::<u32>(n).map_err(e)?;
        let order_dev = order_buffer(&st, &mut self.order_dev, &self.atoms, n)?;
        let caller = self.staging.as_ref().expect("allocated");
        let atoms = self.atoms.as_mut().expect("allocated");
        k::neighbor_bins_order(
            &st,
            &self.kernels,
            n,
            total_bins,
            &map,
            k::DeviceBins {
                frac: &frac,
                image_caller: &image_caller,
                positions_caller: caller,
                bin_rank: &self.bin_rank.as_ref().expect("uploaded").1,
                scratch: &mut scratch,
                order: order_dev,
                atom_bin: &mut atom_bin,
                image: &mut image,
                positions: &mut atoms.positions,
                bin_start: &mut bin_start,
                bin_atoms: &mut bin_atoms,
            },
        )?;
        // The order is needed on the host (per-atom outputs, the atomic numbers).
        let mut order = vec![0u32; n];
        st.memcpy_dtoh(&order_dev.slice(0..n), &mut order[..])
            .map_err(e)?;
        if st.clone_dtoh(&flag).map_err(e)?[0] & 4 != 0 {
            let zero_cell = [[0.0; 3]; 3];
            let cell = system.cell.as_ref().unwrap_or(&zero_cell);
            return Err(crate::neighbors::far_atom_error(
                positions, cell, system.pbc, cutoff,
            ));
        }
        mark!(self.profile, self.stream, "list: device bins");
        let c = system.cell.unwrap_or([[0.0; 3]; 3]);
        let cell: Vec<f64> = c.iter().flatten().copied().collect();
        Ok(ListBins {
            grid,
            cell: st.clone_htod(&cell).map_err(e)?,
            atom_bin,
            image,
            bin_start,
            bin_atoms,
            order,
        })
    }

    /// Builds the candidate list (cutoff rc + skin) of one system on the GPU: binning
    /// (O(N); on the device for sorted systems, `neighbor_bins.cu`), then count, prefix
    /// sums, fill + sort, and the CSR. Same pairs, order and CSR as `neighbors::build`.
    fn build_list_on_gpu(&mut self, system: &System, positions: &[[f64; 3]]) -> Result<()> {
        let n = positions.len();
        let cutoff = self.cutoff + self.skin;
        mark!(self.profile, self.stream, "list: stage positions");
        let on_device = self.device_bins && self.sort_atoms && n >= self.sort_min_atoms;
        let ListBins {
            grid,
            cell,
            atom_bin,
            image,
            bin_start,
            bin_atoms,
            order,
        } = if on_device {
            self.bin_on_device(system, positions, cutoff)?
        } else {
            self.bin_on_host(system, positions, cutoff)?
        };
        let st = self.stream.clone();
        let e = device_error;
        let args = k::BinArgs {
            grid,
            cell: &cell,
            atom_bin: &atom_bin,
            image: &image,
            bin_start: &bin_start,
            bin_atoms: &bin_atoms,
        };
        let mut counts = st.alloc_zeros::<u32>(n).map_err(e)?;
        let mut flag = st.alloc_zeros::<i32>(1).map_err(e)?;
        mark!(self.profile, self.stream, "list: upload bins");
        {
            let atoms = self.atoms.as_ref().expect("allocated");
            k::neighbor_list_count(
                &st,
                &self.kernels,
                n,
                &atoms.positions,
                &args,
                cutoff,
                &mut counts,
                &mut flag,
            )?;
        }
        // Each atom's first pair: prefix sums on the device (only the total comes back).
        let mut pair_start_dev = st.alloc_zeros::<u32>(n + 1).map_err(e)?;
        let mut total_dev = st.alloc_zeros::<u64>(1).map_err(e)?;
        k::neighbor_list_scan(
            &st,
            &self.kernels,
            n,
            &counts,
            None,
            None,
            &mut pair_start_dev,
            &mut total_dev,
        )?;
        mark!(self.profile, self.stream, "list: count");
        let total = st.clone_dtoh(&total_dev).map_err(e)?[0];
        let host_flag = st.clone_dtoh(&flag).map_err(e)?;
        if host_flag[0] & 1 != 0 {
            return Err(Error::invalid("two atoms are at the same position"));
        }
        if host_flag[0] & 2 != 0 {
            return Err(Error::invalid(
                "a pair's lattice shift is beyond the CUDA engine's range (|s| < 2^20 cells): wrap the coordinates into the cell",
            ));
        }
        if total >= EDGE_REVERSE as u64 {
            return Err(Error::invalid(format!(
                "more than {} pairs: too many for the CUDA engine",
                EDGE_REVERSE
            )));
        }
        let n_pairs = total as usize;
        self.ensure_capacity(n, n_pairs)?;
        mark!(self.profile, self.stream, "list: counts down, capacity");
        let mut self_count = st.alloc_zeros::<u32>(n).map_err(e)?;
        let mut incoming = st.alloc_zeros::<u32>(n).map_err(e)?;
        let mut cursor = st.alloc_zeros::<u32>(n).map_err(e)?;
        let atoms = self.atoms.as_mut().expect("allocated");
        let pairs = self.pairs.as_mut().expect("allocated");
        k::neighbor_list_fill(
            &st,
            &self.kernels,
            n,
            &atoms.positions,
            &args,
            cutoff,
            &pair_start_dev,
            &mut pairs.pair_i,
            &mut pairs.pair_j,
            &mut pairs.shift,
            &mut self_count,
            &mut flag,
        )?;
        k::neighbor_list_incoming(
            &st,
            &self.kernels,
            n_pairs,
            &pairs.pair_i,
            &pairs.pair_j,
            &mut incoming,
        )?;
        mark!(self.profile, self.stream, "list: fill");
        // Edges per destination: its pairs (i), its self images' reverse edges and the
        // reverse edges of pairs (j < i) arriving at it; their prefix sums are the CSR.
        k::neighbor_list_scan(
            &st,
            &self.kernels,
            n,
            &counts,
            Some(&self_count),
            Some(&incoming),
            &mut atoms.offsets,
            &mut total_dev,
        )?;
        let edges = st.clone_dtoh(&total_dev).map_err(e)?[0];
        if edges != 2 * n_pairs as u64 {
            return Err(Error::Internal(format!(
                "GPU neighbour list: {edges} edges for {n_pairs} pairs"
            )));
        }
        k::neighbor_list_edges(
            &st,
            &self.kernels,
            n,
            n_pairs,
            &pair_start_dev,
            &pairs.pair_i,
            &pairs.pair_j,
            &incoming,
            &atoms.offsets,
            &mut cursor,
            &mut pairs.edge_source,
            &mut pairs.edge_pair,
        )?;
        st.synchronize().map_err(e)?;
        mark!(self.profile, self.stream, "list: edges");
        self.frames = Some(PairFrames {
            cells: cell,
            atom_system: None,
        });
        self.list.n_pairs = n_pairs;
        self.list.order = order;
        Ok(())
    }

    /// Runs the model on the prepared list; returns the 11 totals (energy, virial, flag).
    fn launch_all(
        &mut self,
        n: usize,
        request: &Request,
        want_atom_virials: bool,
    ) -> Result<[f64; 11]> {
        self.launch_all_then(n, request, want_atom_virials, false, false)
    }

    /// `launch_all`; with `forces_to_pinned` the forces (in the caller's order) are also
    /// copied into `pinned_out` before the totals, so that one synchronisation serves both.
    fn launch_all_then(
        &mut self,
        n: usize,
        request: &Request,
        want_atom_virials: bool,
        forces_to_pinned: bool,
        per_system: bool,
    ) -> Result<[f64; 11]> {
        let reused_list = self.previous_list == Some(self.list.rebuilds);
        self.previous_list = Some(self.list.rebuilds);
        // Where `enqueue` forms the totals with the forces (fused_reduce there), one
        // download brings back both (mol50: two copies of ~3.4 us on the GPU become one).
        self.totals_in_forces = forces_to_pinned
            && request.needs_gradient()
            && self.fused_reduce(n, per_system)
            && self.list.order.is_empty();
        self.forces_host = None;
        if self.totals_in_forces && direct_output() {
            let ctx = self.stream.context().clone();
            let out = result_rows(&ctx, &mut self.pinned_out, 3 * n + k::TOTALS_AFTER_FORCES)?;
            // A driver that cannot map it (no unified addressing) keeps the download.
            self.forces_host = mapped_address(&ctx, out).ok();
        }
        let use_graph =
            n <= GRAPH_MAX_ATOMS && self.profile.is_none() && self.graphs && reused_list;
        if use_graph {
            let key = GraphKey {
                n_atoms: n,
                rebuilds: self.list.rebuilds,
                gradient: request.needs_gradient(),
                virial: request.virial,
                atom_virials: want_atom_virials,
                per_system,
                totals_in_forces: self.totals_in_forces,
                forces_host: self.forces_host,
            };
            if self.graph.as_ref().map(|g| g.0) != Some(key) {
                self.graph = None;
                use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
                self.stream
                    .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
                    .map_err(device_error)?;
                let enqueued = self.enqueue(n, request, want_atom_virials, per_system);
                let captured = self.stream.end_capture(CUgraphInstantiate_flags(0));
                enqueued?;
                if let Some(graph) = captured.map_err(device_error)? {
                    let programmatic = self.programmatic && n < PROGRAMMATIC_MAX_ATOMS;
                    let graph = SendGraph::new(graph, programmatic, self.stream.context());
                    self.graph = Some((key, graph));
                }
            }
            match &self.graph {
                Some((_, graph)) => graph.launch(&self.stream)?,
                None => self.enqueue(n, request, want_atom_virials, per_system)?,
            }
        } else {
            self.enqueue(n, request, want_atom_virials, per_system)?;
        }
        timing_step!(self.timing, self.stream, 2);
        if forces_to_pinned && self.forces_host.is_none() {
            self.enqueue_forces_download(n)?;
        }
        if per_system {
            self.enqueue_system_totals(want_atom_virials)?;
        }
        let ctx = self.stream.context().clone();
        if !self.totals_in_forces {
            let pinned = pinned_exact(&ctx, &mut self.pinned_totals, 11, 0)?;
            self.stream
                .memcpy_dtoh(&self.totals, pinned)
                .map_err(device_error)?;
        }
        // The pinned slices' own events do not track stream copies into them: wait for
        // the stream (the copies and every earlier operation).
        if let Some(t) = self.timing.as_mut() {
            t.event(&self.stream, 3);
        }
        self.stream.synchronize().map_err(device_error)?;
        timing_step!(self.timing, self.stream, 3);
        let mut totals = [0.0f64; 11];
        let downloaded = if self.totals_in_forces {
            let out = self.pinned_out.as_ref().expect("downloaded into");
            &out.as_slice().map_err(device_error)?[3 * n..]
        } else {
            let pinned = self.pinned_totals.as_ref().expect("downloaded into");
            pinned.as_slice().map_err(device_error)?
        };
        totals.copy_from_slice(downloaded);
        mark!(self.profile, self.stream, "reduce");
        if totals[10] != 0.0 {
            self.list.valid = false;
            return Err(Error::invalid("two atoms are at the same position"));
        }
        Ok(totals)
    }

    /// Sums each system's atom energies and virials on the device (one block per system,
    /// fixed order) and copies the 10 numbers per system into `batch.host`.
    fn enqueue_system_totals(&mut self, want_virial: bool) -> Result<()> {
        let n_systems = self.list.sizes.len();
        let e = device_error;
        if self.batch.start_for != Some(self.list.rebuilds)
            || self
                .batch
                .system_start
                .as_ref()
                .map_or(true, |s| s.len() != n_systems + 1)
        {
            let mut start = Vec::with_capacity(n_systems + 1);
            let mut at = 0u32;
            start.push(at);
            for &m in &self.list.sizes {
                at += m as u32;
                start.push(at);
            }
            self.batch.system_start = Some(self.stream.clone_htod(&start).map_err(e)?);
            self.batch.start_for = Some(self.list.rebuilds);
        }
        if self
            .batch
            .totals
            .as_ref()
            .map_or(true, |t| t.len() < 10 * n_systems)
        {
            self.batch.totals = None;
            self.batch.totals = Some(self.stream.alloc_zeros(10 * n_systems).map_err(e)?);
        }
        let atoms = self.atoms.as_ref().expect("allocated");
        let totals = self.batch.totals.as_mut().expect("allocated");
        k::reduce_systems(
            &self.stream,
            &self.kernels,
            n_systems,
            self.batch.system_start.as_ref().expect("uploaded"),
            &atoms.atom_energy,
            &atoms.atom_virials,
            want_virial,
            totals,
        )?;
        self.batch.host.resize(10 * n_systems, 0.0);
        self.stream
            .memcpy_dtoh(&totals.slice(0..10 * n_systems), &mut self.batch.host[..])
            .map_err(e)
    }

    /// Enqueues the copy of the forces into `pinned_out` (3n doubles, page-locked, so the
    /// copy is asynchronous; with `totals_in_forces` the 11 totals after them), through the
    /// staging buffer when the atoms are sorted.
    fn enqueue_forces_download(&mut self, n: usize) -> Result<()> {
        let ctx = self.stream.context().clone();
        let len = 3 * n
            + if self.totals_in_forces {
                k::TOTALS_AFTER_FORCES
            } else {
                0
            };
        let out = result_rows(&ctx, &mut self.pinned_out, len)?;
        let atoms = self.atoms.as_ref().expect("allocated");
        if self.list.order.is_empty() {
            self.stream
                .memcpy_dtoh(&atoms.forces.slice(0..len), out)
                .map_err(device_error)?;
        } else {
            let staging = staging_rows(&self.stream, &mut self.staging, n)?;
            let to = address(&self.stream, staging);
            let order = self.order_dev.as_ref().expect("uploaded with the order");
            k::atom_order_scatter(&self.stream, &self.kernels, n, order, &atoms.forces, to)?;
            let staging = self.staging.as_ref().expect("allocated");
            self.stream
                .memcpy_dtoh(&staging.slice(0..3 * n), out)
                .map_err(device_error)?;
        }
        Ok(())
    }

    /// Enqueues every kernel of one step on the stream (no host synchronisation).
    /// With `per_system` (a batch: `reduce_systems` sums each system) the totals of the
    /// whole union are not formed, only the coincident-atoms flag is reported.
    fn enqueue(
        &mut self,
        n: usize,
        request: &Request,
        want_atom_virials: bool,
        per_system: bool,
    ) -> Result<()> {
        let n_pairs = self.list.n_pairs;
        let st = self.stream.clone();
        let kn = &self.kernels;
        let in_sequence = self.groups_in_sequence(n_pairs);
        let totals_in_forces = self.totals_in_forces;
        let forces_host = self.forces_host;
        let fused_reduce = self.fused_reduce(n, per_system);
        let atoms = self.atoms.as_mut().expect("allocated");
        let pairs = self.pairs.as_mut().expect("allocated");
        let frames = self.frames.as_ref().expect("set with the list");
        let prof = &mut self.profile;
        mark!(prof, st, "upload");
        // The polynomial kernels address state rows with 32-bit offsets (atom x 3H +
        // channel): beyond ~11M atoms at H = 128 the other kernels run.
        let poly = kn
            .poly
            .as_ref()
            .filter(|_| n >= self.poly_min_atoms && n * 3 * self.hidden <= u32::MAX as usize);
        // Branches on the small-kernel path only (the polynomial path fuses the pair
        // gradient into edge_backward; an embedding beside the pair geometry there measured
        // no faster, session 23), and not while profiling stage by stage.
        let side = self
            .side
            .as_ref()
            .filter(|_| poly.is_none() && prof.is_none());
        {
            let s0 = match atoms.s0.as_mut() {
                Some(s0) => s0,
                None => &mut atoms.grad_s,
            };
            let v0 = &mut atoms.v;
            let embed_stream = match side {
                Some(side) => side.fork(&st)?,
                None => &st,
            };
            k::embed(
                embed_stream,
                kn,
                n,
                &atoms.numbers,
                &self.embedding,
                s0,
                Some(v0),
            )?;
        }
        let pair_atoms = frames.args(&atoms.positions, &pairs.pair_i, &pairs.pair_j, &pairs.shift);
        if let Some(side) = side {
            // Beside the embedding: the order from the positions, not from pair_geometry.
            k::edge_order_positions(
                &side.stream,
                kn,
                n,
                &atoms.offsets,
                &pairs.edge_pair,
                &pair_atoms,
                self.cutoff,
                &mut pairs.edge_perm,
            )?;
        }
        k::pair_geometry(
            &st,
            kn,
            n_pairs,
            &pair_atoms,
            self.cutoff,
            self.inv_h,
            (self.n_nodes - 1) as i32,
            &mut pairs.distance,
            &mut pairs.knot,
            &mut pairs.frac,
            &mut pairs.unit,
            &mut self.coincident,
        )?;
        // The polynomial kernels' staging records, where the buffer covers every CSR slot:
        // written with the order, by one launch (side is None on that path).
        let records_for = poly.filter(|_| pairs.edge_records.len() >= 8 * pairs.edge_perm.len());
        // The message kernels' merged walk (kernels::poly_merge) for a system large enough
        // to gain (kernels::merge_min_atoms), where the buffer holds its records
        // (records_len; edge_order_records and Edges::merged_address check it).
        let merged = records_for.is_some() && n >= k::merge_min_atoms();
        match records_for {
            Some(pk) => k::edge_order_records(
                &st,
                pk,
                n,
                2 * n_pairs,
                merged,
                &atoms.offsets,
                &pairs.edge_pair,
                &pairs.edge_source,
                &pairs.knot,
                &pairs.distance,
                &pairs.unit,
                1.0 / self.cutoff,
                &mut pairs.edge_perm,
                &mut pairs.edge_records,
            )?,
            None if side.is_none() => k::edge_order(
                &st,
                kn,
                n,
                &atoms.offsets,
                &pairs.edge_pair,
                &pairs.knot,
                &pairs.distance,
                &mut pairs.edge_perm,
            )?,
            None => {}
        }
        if let Some(side) = side {
            side.join(&st)?;
        }
        let edges = Edges {
            offsets: &atoms.offsets,
            perm: &pairs.edge_perm,
            source: &pairs.edge_source,
            pair: &pairs.edge_pair,
            records: records_for.map(|_| &pairs.edge_records),
            merged,
        };
        mark!(prof, st, "geometry+embed");
        let knots = Knots {
            knot: &pairs.knot,
            frac: &pairs.frac,
        };
        let n_blocks = self.blocks.len();
        let inv_h = T::from_f64(self.inv_h);
        let inv_rc = 1.0 / self.cutoff;
        // Message and update in one launch per block (the same numbers): molecules. The
        // mixed engine takes its f32 table for them (whether fused or, profiling, not).
        let full_table = poly.is_none()
            && k::message_update_applies(kn, n, &self.blocks[0].table.view(inv_h, true));
        let fused = full_table && prof.is_none() && atoms.v_alt.is_some() && atoms.s0.is_some();
        for (l, b) in self.blocks.iter().enumerate() {
            let table = b.table.view(inv_h, full_table);
            if fused {
                let into_v = fused_writes_into_v(n_blocks, l);
                let gates_saved = atoms.gates_saved(l);
                let v_alt = atoms.v_alt.as_mut().expect("checked");
                let (v_in, v_out) = if into_v {
                    (&*v_alt, &mut atoms.v)
                } else {
                    (&atoms.v, v_alt)
                };
                let (s_before, s_after) = atoms.s.split_at_mut(l);
                let s_in = match l {
                    0 => atoms.s0.as_ref().expect("checked"),
                    _ => &s_before[l - 1],
                };
                let (z_out, s_next) = if l + 1 == n_blocks {
                    (&mut atoms.grad_v, None)
                } else {
                    (&mut atoms.z[l], s_after.first_mut())
                };
                let weights = k::UpdateWeights {
                    w1t: &b.w1t,
                    b1: &b.b1,
                    w2t: &b.w2t,
                    b2: &b.b2,
                    mixing: &b.mixing,
                    vector_update: b.vector_update,
                };
                k::message_update(
                    &st,
                    kn,
                    n,
                    &edges,
                    &knots,
                    &pairs.unit,
                    &table,
                    s_in,
                    v_in,
                    &mut atoms.s_mid,
                    &mut atoms.v_mid[l],
                    &weights,
                    z_out,
                    gates_saved.then_some(&mut atoms.y[l]),
                    s_next,
                    v_out,
                )?;
                continue;
            }
            let s_in = if l == 0 {
                atoms.s0.as_ref().unwrap_or(&atoms.grad_s)
            } else {
                &atoms.s[l - 1]
            };
            match (poly, &b.poly) {
                (Some(pk), Some((value, grad))) => k::message_poly(
                    &st,
                    pk,
                    n,
                    &edges,
                    &pairs.knot,
                    &pairs.distance,
                    &pairs.unit,
                    &PolyTables { value, grad },
                    inv_rc,
                    s_in,
                    // v^0 = 0: block 0 reads no v.
                    (l > 0).then_some(&atoms.v),
                    &mut atoms.s_mid,
                    &mut atoms.v_mid[l],
                )?,
                _ => k::message(
                    &st,
                    kn,
                    n,
                    &edges,
                    &knots,
                    &pairs.unit,
                    &table,
                    s_in,
                    &atoms.v,
                    &mut atoms.s_mid,
                    &mut atoms.v_mid[l],
                )?,
            }
            mark!(prof, st, "message");
            let gates_saved = atoms.gates_saved(l);
            let s_next = atoms.s.get_mut(l);
            let z_out = if l + 1 == n_blocks {
                &mut atoms.grad_v
            } else {
                &mut atoms.z[l]
            };
            let y_out = gates_saved.then_some(&mut atoms.y[l]);
            k::update(
                &st,
                kn,
                n,
                &mut atoms.s_mid,
                &atoms.v_mid[l],
                &b.w1t,
                &b.b1,
                &b.w2t,
                &b.b2,
                &b.mixing,
                b.vector_update,
                b.wgmma_forward.as_ref(),
                z_out,
                y_out,
                s_next,
                &mut atoms.v,
            )?;
            mark!(prof, st, "update");
        }
        let hd = &self.head;
        let head = HeadArgs {
            at: &hd.at,
            a_bias: &hd.a_bias,
            a_w: &hd.a_w,
            bt: &hd.bt,
            b_bias: &hd.b_bias,
            b_w: &hd.b_w,
            c_w: &hd.c_w,
            c_bias: &hd.c_bias,
        };
        {
            let g0 = &mut atoms.grad_s;
            k::readout(
                &st,
                kn,
                n,
                &atoms.is_local,
                &atoms.s_mid,
                &head,
                &mut atoms.atom_energy,
                g0,
            )?;
        }
        mark!(prof, st, "readout");
        let gradient = request.needs_gradient();
        if gradient {
            let pa = PairArgs {
                n_pairs,
                pair_i: &pairs.pair_i,
                pair_j: &pairs.pair_j,
                knots: Knots {
                    knot: &pairs.knot,
                    frac: &pairs.frac,
                },
                unit: &pairs.unit,
            };
            for l in (0..n_blocks).rev() {
                let b = &self.blocks[l];
                let table = b.table.view(inv_h, full_table);
                // This block's input v, which the edge backward needs, is recomputed by
                // update_backward (the forward pass left the last block's in place).
                // Gates not saved (large systems): this block's were recomputed by the
                // next block's update_backward into v_mid[l + 2]; the previous block's
                // are recomputed here into v_mid[l + 1] (both dead: their blocks' edge
                // backward has run).
                let own_gates_saved = atoms.gates_saved(l) || !b.vector_update;
                let previous_gates_saved = l == 0 || atoms.gates_saved(l - 1);
                let (v_mid_before, v_mid_rest) = atoms.v_mid.split_at_mut(l);
                let (v_mid_here, v_mid_after) = v_mid_rest.split_at_mut(1);
                let (v_mid_next, v_mid_later) = v_mid_after.split_at_mut(1.min(v_mid_after.len()));
                let input_v = if l + 1 == n_blocks {
                    k::InputV::Keep
                } else if l == 0 {
                    k::InputV::Zero
                } else if previous_gates_saved {
                    k::InputV::Gate {
                        v_mid: &v_mid_before[l - 1],
                        y: &atoms.y[l - 1],
                        mixing: &self.blocks[l - 1].mixing,
                    }
                } else {
                    let before = &self.blocks[l - 1];
                    k::InputV::GateFromZ {
                        v_mid: &v_mid_before[l - 1],
                        z: &atoms.z[l - 1],
                        w2t: &before.w2t,
                        b2: &before.b2,
                        mixing: &before.mixing,
                        y_out: &mut v_mid_next[0],
                    }
                };
                let gates = if own_gates_saved {
                    &atoms.y[l]
                } else {
                    &v_mid_later[0]
                };
                k::update_backward(
                    &st,
                    kn,
                    n,
                    &atoms.grad_s,
                    &atoms.grad_v,
                    &mut v_mid_here[0],
                    if l + 1 == n_blocks {
                        &atoms.grad_v
                    } else {
                        &atoms.z[l]
                    },
                    gates,
                    &b.w1,
                    &b.w2,
                    &b.mixing,
                    b.vector_update,
                    &mut atoms.s_mid,
                    input_v,
                    &mut atoms.v,
                )?;
                // Now s_mid holds dE/ds' and v_mid[l] dE/dv' of this block.
                mark!(prof, st, "update_backward");
                if l == 0 && atoms.s0.is_none() {
                    // s^0 again where the forward pass had it (grad_s, read for the
                    // last time by the update_backward above).
                    k::embed(
                        &st,
                        kn,
                        n,
                        &atoms.numbers,
                        &self.embedding,
                        &mut atoms.grad_s,
                        None,
                    )?;
                }
                // From here on grad_s / grad_v are free: the message backward writes the
                // gradient of this block's input there (not needed for block 0).
                if let (Some(pk), Some((value, grad))) = (poly, &b.poly) {
                    let tables = PolyTables { value, grad };
                    if l == 0 {
                        // No state gradient, v = 0: each pair once, both directions.
                        k::pair_backward(
                            &st,
                            pk,
                            n,
                            &edges,
                            &pa,
                            &pairs.distance,
                            &tables,
                            inv_rc,
                            atoms.s0.as_ref().unwrap_or(&atoms.grad_s),
                            &atoms.s_mid,
                            &atoms.v_mid[0],
                            &mut pairs.partial,
                            in_sequence,
                            n_blocks > 1,
                            &mut pairs.grad_du,
                        )?;
                        // Every block's terms into grad_du (groups in parallel).
                        k::edge_backward_sum(
                            &st,
                            pk,
                            &pa,
                            n_blocks,
                            in_sequence,
                            &pairs.partial,
                            &mut pairs.grad_du,
                        )?;
                    } else {
                        // One fused walk over the edges: state gradient and pair gradient.
                        k::edge_backward(
                            &st,
                            pk,
                            n,
                            &edges,
                            &pa,
                            &pairs.distance,
                            &tables,
                            inv_rc,
                            &atoms.s[l - 1],
                            &atoms.v,
                            &atoms.s_mid,
                            &atoms.v_mid[l],
                            &mut atoms.grad_s,
                            &mut atoms.grad_v,
                            &mut pairs.partial,
                            l,
                            in_sequence,
                            l + 1 < n_blocks,
                            &mut pairs.grad_du,
                        )?;
                    }
                    mark!(prof, st, "edge_backward");
                    continue;
                }
                let s_in = if l == 0 {
                    atoms.s0.as_ref().unwrap_or(&atoms.grad_s)
                } else {
                    &atoms.s[l - 1]
                };
                // The pair gradient only reads what the message backward reads, and the
                // next update_backward overwrites: beside it on the side stream.
                let branch = side.filter(|_| l > 0);
                let pair_stream = match branch {
                    Some(side) => side.fork(&st)?,
                    None => &st,
                };
                k::pair_gradient(
                    pair_stream,
                    kn,
                    &pa,
                    &table,
                    s_in,
                    &atoms.v,
                    &atoms.s_mid,
                    &atoms.v_mid[l],
                    l + 1 < n_blocks,
                    &mut pairs.grad_du,
                )?;
                mark!(prof, st, "pair_gradient");
                if l > 0 {
                    k::message_backward(
                        &st,
                        kn,
                        n,
                        &edges,
                        &knots,
                        &table,
                        &atoms.s_mid,
                        &atoms.v_mid[l],
                        &mut atoms.grad_s,
                        &mut atoms.grad_v,
                    )?;
                    mark!(prof, st, "message_backward");
                }
                if let Some(side) = branch {
                    side.join(&st)?;
                }
            }
            let pair_atoms =
                frames.args(&atoms.positions, &pairs.pair_i, &pairs.pair_j, &pairs.shift);
            // Up to SMALL_SYSTEM atoms (one system) forces and totals in one launch.
            let then_reduce = fused_reduce.then(|| k::Totals {
                atom_energy: &atoms.atom_energy,
                want_virial: request.virial,
                coincident: &mut self.coincident,
                blocks_done: &mut self.blocks_done,
                totals: if totals_in_forces {
                    k::TotalsOut::AfterForces
                } else {
                    k::TotalsOut::Buffer(&mut self.totals)
                },
            });
            k::atom_gather(
                &st,
                kn,
                n,
                &edges,
                &pairs.knot,
                &pair_atoms,
                &pairs.grad_du,
                want_atom_virials,
                match forces_host {
                    Some(address) => k::ForcesOut::Host {
                        address,
                        len: 3 * n + k::TOTALS_AFTER_FORCES,
                    },
                    None => k::ForcesOut::Device(&mut atoms.forces),
                },
                &mut atoms.atom_virials,
                then_reduce,
            )?;
            if fused_reduce {
                return Ok(());
            }
            mark!(prof, st, "forces");
        }
        k::reduce(
            &st,
            kn,
            if per_system { 0 } else { n },
            &atoms.atom_energy,
            &atoms.atom_virials,
            gradient && request.virial,
            &mut self.partials,
            &mut self.coincident,
            &mut self.blocks_done,
            &mut self.totals,
        )?;
        Ok(())
    }

    /// Device bytes of the per-atom and per-pair buffers (for the profile report).
    fn buffer_report(&self) -> String {
        let gb = |b: usize| b as f64 / 1e9;
        let (atoms, atom_cap) = self
            .atoms
            .as_ref()
            .map_or((0, 0), |a| (a.device_bytes(), a.capacity));
        let (pairs, pair_cap) = self
            .pairs
            .as_ref()
            .map_or((0, 0), |p| (p.device_bytes(), p.capacity));
        format!(
            "device buffers: atoms {:.3} GB ({atom_cap} rows), pairs {:.3} GB ({pair_cap} rows)",
            gb(atoms),
            gb(pairs)
        )
    }

    fn begin_profile(&mut self) {
        if let Some(p) = self.profile.as_mut() {
            p.begin();
        }
    }

    /// One system from host arrays; the forces into a new vector in `Results`, or,
    /// with `forces_out`, into that buffer (last, once everything else succeeded).
    fn run(
        &mut self,
        system: &System,
        request: &Request,
        forces_out: Option<&mut [[f64; 3]]>,
    ) -> Result<Results> {
        let n = system.n_atoms();
        if n == 0 {
            return Ok(Results::default());
        }
        self.begin_profile();
        timing_step!(self.timing, self.stream, 0);
        self.prepare(std::slice::from_ref(system))?;
        timing_step!(self.timing, self.stream, 1);
        let gradient = request.needs_gradient();
        let want_forces = gradient && request.forces;
        let totals = self.launch_all_then(
            n,
            request,
            request.atom_virials || request.virial,
            want_forces,
            false,
        )?;
        let mut results = Results {
            energy: totals[0],
            ..Default::default()
        };
        if gradient && request.virial {
            for a in 0..3 {
                for b in 0..3 {
                    results.virial[a][b] = totals[1 + 3 * a + b];
                }
            }
        }
        if request.atom_energies {
            let energies = self.fetch(|a| &a.atom_energy, n)?;
            results.atom_energies = unpermuted_rows(&self.list.order, energies, 1);
        }
        if gradient && request.atom_virials {
            let w = self.fetch_f64(|a| &a.atom_virials, 9 * n)?;
            results.atom_virials = unpermuted_rows(&self.list.order, w, 9)
                .chunks_exact(9)
                .map(|c| [[c[0], c[1], c[2]], [c[3], c[4], c[5]], [c[6], c[7], c[8]]])
                .collect();
        }
        if want_forces {
            // Copied before the totals (same stream): complete once they arrived.
            // The first 3n doubles (the totals may follow: `totals_in_forces`).
            let f = &self
                .pinned_out
                .as_ref()
                .expect("allocated")
                .as_slice()
                .map_err(device_error)?[..3 * n];
            match forces_out {
                Some(out) => copy_force_rows(f, out),
                None => results.forces = force_rows(f),
            }
        }
        mark!(self.profile, self.stream, "download");
        timing_step!(self.timing, self.stream, 4);
        Ok(results)
    }

    /// One system whose positions (and forces) are in device memory: the positions
    /// are copied device to device, the skin check runs on the device (one flag is
    /// downloaded), and the positions are downloaded only when the candidate list
    /// must be rebuilt. Same list decisions, kernels and results as `run` on the same
    /// sequence of positions.
    fn run_device(&mut self, d: &DeviceSystem, request: &Request) -> Result<Results> {
        let n = d.numbers.len();
        if n == 0 {
            return Ok(Results::default());
        }
        let e = device_error;
        let ctx = self.stream.context().clone();
        let bytes = 3 * n * std::mem::size_of::<f64>();
        check_device_pointer(&ctx, d.positions, "positions", bytes)?;
        if d.forces != 0 {
            check_device_pointer(&ctx, d.forces, "forces", bytes)?;
        }
        self.begin_profile();
        // SAFETY: the caller passes a stream of this context (or 0, the legacy default
        // stream), alive during the call; the wrapper does not own it.
        let caller = unsafe { ctx.wrap_borrowed_stream(d.stream as sys::CUstream) };
        if self.device_io.events.is_none() {
            self.device_io.events = Some((
                ctx.new_event(None).map_err(e)?,
                ctx.new_event(None).map_err(e)?,
            ));
        }
        if self.device_io.flag.is_none() {
            self.device_io.flag = Some(self.stream.alloc_zeros::<i32>(1).map_err(e)?);
        }
        {
            let (event_in, _) = self.device_io.events.as_ref().expect("created");
            event_in.record(&caller).map_err(e)?;
            self.stream.wait(event_in).map_err(e)?;
        }
        let same_layout = self.list.valid
            && self.list.sizes == [n]
            && self.list.cells == [d.cell]
            && self.list.pbcs == [d.pbc]
            && self.list.numbers == d.numbers
            && local_flags_match(&self.list.is_local, n, d.n_local)
            && self.atoms.as_ref().is_some_and(|a| a.capacity >= n);
        let mut rebuild = !same_layout;
        if same_layout {
            if self.device_io.built_for != Some(self.list.rebuilds) {
                self.upload_build_positions(n)?;
            }
            let st = self.stream.clone();
            let atoms = self.atoms.as_mut().expect("allocated");
            if !self.list.order.is_empty() {
                let order = self.order_dev.as_ref().expect("uploaded with the order");
                k::atom_order_gather(
                    &st,
                    &self.kernels,
                    n,
                    order,
                    d.positions,
                    &mut atoms.positions,
                )?;
            } else {
                let (dst, _sync) = atoms.positions.device_ptr(&st);
                // SAFETY: both ranges hold 3n doubles (checked above / capacity >= n).
                unsafe {
                    cudarc::driver::result::memcpy_dtod_async(
                        dst,
                        d.positions,
                        bytes,
                        st.cu_stream(),
                    )
                }
                .map_err(e)?;
            }
            let io = &mut self.device_io;
            let flag = io.flag.as_mut().expect("allocated");
            st.memset_zeros(flag).map_err(e)?;
            let limit = 0.5 * self.skin * (1.0 - 1e-9);
            k::neighbor_list_displacement(
                &st,
                &self.kernels,
                n,
                &atoms.positions,
                io.built.as_ref().expect("uploaded"),
                limit,
                flag,
            )?;
            let bits = st.clone_dtoh(&*flag).map_err(e)?[0];
            rebuild = bits != 0;
        }
        if rebuild {
            // Rare (every skin / 2 of motion): the host builds the list, as in `run`.
            let io = &mut self.device_io;
            io.host.resize(3 * n, 0.0);
            // SAFETY: d.positions holds 3n doubles (checked), the host buffer as many.
            unsafe {
                cudarc::driver::result::memcpy_dtoh_async(
                    &mut io.host[..],
                    d.positions,
                    self.stream.cu_stream(),
                )
            }
            .map_err(e)?;
            self.stream.synchronize().map_err(e)?;
            let positions: Vec<[f64; 3]> = self
                .device_io
                .host
                .chunks_exact(3)
                .map(|c| [c[0], c[1], c[2]])
                .collect();
            let system = System {
                numbers: d.numbers,
                positions: &positions,
                cell: d.cell,
                pbc: d.pbc,
                n_local: d.n_local,
            };
            system.validate_geometry()?;
            self.prepare(std::slice::from_ref(&system))?;
            if self.device_io.built_for != Some(self.list.rebuilds) {
                self.upload_build_positions(n)?;
            }
        }
        let gradient = request.needs_gradient();
        let totals = self.launch_all(n, request, request.atom_virials || request.virial)?;
        let mut results = Results {
            energy: totals[0],
            ..Default::default()
        };
        if gradient && request.virial {
            for a in 0..3 {
                for b in 0..3 {
                    results.virial[a][b] = totals[1 + 3 * a + b];
                }
            }
        }
        if gradient && d.forces != 0 && !self.list.order.is_empty() {
            let atoms = self.atoms.as_ref().expect("allocated");
            let order = self.order_dev.as_ref().expect("uploaded with the order");
            k::atom_order_scatter(
                &self.stream,
                &self.kernels,
                n,
                order,
                &atoms.forces,
                d.forces,
            )?;
        } else if gradient && d.forces != 0 {
            let atoms = self.atoms.as_ref().expect("allocated");
            let (src, _sync) = atoms.forces.device_ptr(&self.stream);
            // SAFETY: d.forces holds 3n doubles (checked), the engine's forces as many.
            unsafe {
                cudarc::driver::result::memcpy_dtod_async(
                    d.forces,
                    src,
                    bytes,
                    self.stream.cu_stream(),
                )
            }
            .map_err(e)?;
        }
        let (_, event_out) = self.device_io.events.as_ref().expect("created");
        event_out.record(&self.stream).map_err(e)?;
        caller.wait(event_out).map_err(e)?;
        mark!(self.profile, self.stream, "download");
        Ok(results)
    }

    /// Copies the host's build positions of the current list to the device.
    fn upload_build_positions(&mut self, n: usize) -> Result<()> {
        let e = device_error;
        let need = 3 * n.max(1);
        if self
            .device_io
            .built
            .as_ref()
            .map_or(true, |b| b.len() < need)
        {
            let capacity = self.atoms.as_ref().map_or(n, |a| a.capacity.max(n));
            self.device_io.built = Some(
                self.stream
                    .alloc_zeros::<f64>(3 * capacity.max(1))
                    .map_err(e)?,
            );
        }
        // In the engine's order, as the positions they are compared with.
        let built = &self.list.build_positions;
        let flat: Vec<f64> = if self.list.order.is_empty() {
            built.iter().flatten().copied().collect()
        } else {
            let order = &self.list.order;
            order.iter().flat_map(|&a| built[a as usize]).collect()
        };
        if flat.len() != 3 * n {
            return Err(Error::Internal(format!(
                "build positions of {} atoms for {n}",
                flat.len() / 3
            )));
        }
        let built = self.device_io.built.as_mut().expect("allocated");
        self.stream
            .memcpy_htod(&flat, &mut built.slice_mut(0..3 * n))
            .map_err(e)?;
        self.device_io.built_for = Some(self.list.rebuilds);
        Ok(())
    }

    /// Many systems as one disjoint union: one launch sequence; per-system energies
    /// and virials summed from the per-atom values in a fixed order. With `forces_out`,
    /// system k's forces go into `forces_out[k]` (last, once everything else succeeded)
    /// instead of its `Results::forces`.
    fn run_batch(
        &mut self,
        systems: &[System],
        request: &Request,
        mut forces_out: Option<&mut [&mut [[f64; 3]]]>,
    ) -> Result<Vec<Results>> {
        if let Some(out) = forces_out.as_deref() {
            if out.len() != systems.len()
                || out.iter().zip(systems).any(|(f, s)| f.len() != s.n_atoms())
            {
                return Err(Error::Internal(
                    "forces buffers of other lengths than the systems".into(),
                ));
            }
        }
        let n: usize = systems.iter().map(|s| s.n_atoms()).sum();
        if n == 0 {
            return Ok(vec![Results::default(); systems.len()]);
        }
        self.begin_profile();
        timing_step!(self.timing, self.stream, 0);
        self.prepare(systems)?;
        timing_step!(self.timing, self.stream, 1);
        let gradient = request.needs_gradient();
        let want_w = gradient && (request.virial || request.atom_virials);
        let want_forces = gradient && request.forces;
        // Per-system totals are summed on the device; forces come back page-locked (in
        // the caller's order: a batch of one large system may have its atoms sorted).
        self.launch_all_then(n, request, want_w, want_forces, true)?;
        let energies = if request.atom_energies {
            let e = self.fetch(|a| &a.atom_energy, n)?;
            unpermuted_rows(&self.list.order, e, 1)
        } else {
            Vec::new()
        };
        let virials = if gradient && request.atom_virials {
            let w = self.fetch_f64(|a| &a.atom_virials, 9 * n)?;
            unpermuted_rows(&self.list.order, w, 9)
        } else {
            Vec::new()
        };
        // Read in place from the page-locked buffer (after the fetches, which need &mut self).
        let forces: &[f64] = if want_forces {
            let f = self.pinned_out.as_ref().expect("allocated");
            &f.as_slice().map_err(device_error)?[..3 * n]
        } else {
            &[]
        };
        // Each system's rows from its first atom (systems are independent: many at once
        // on rayon's threads when the batch is large, as its vectors' pages are first
        // touched here).
        let starts: Vec<usize> = systems
            .iter()
            .scan(0, |base, s| {
                let start = *base;
                *base += s.n_atoms();
                Some(start)
            })
            .collect();
        let sums = &self.batch.host;
        let into = forces_out.is_some();
        let result_of = |k: usize| {
            let (s, base) = (&systems[k], starts[k]);
            let m = s.n_atoms();
            let sums = &sums[10 * k..10 * k + 10];
            let mut r = Results {
                energy: sums[0],
                ..Default::default()
            };
            if gradient && request.virial {
                for a in 0..3 {
                    for b in 0..3 {
                        r.virial[a][b] = sums[1 + 3 * a + b];
                    }
                }
            }
            if request.atom_energies {
                r.atom_energies = energies[base..base + m].to_vec();
            }
            if !forces.is_empty() && !into {
                r.forces = forces[3 * base..3 * (base + m)]
                    .chunks_exact(3)
                    .map(|c| [c[0], c[1], c[2]])
                    .collect();
            }
            if !virials.is_empty() {
                r.atom_virials = virials[9 * base..9 * (base + m)]
                    .chunks_exact(9)
                    .map(|c| [[c[0], c[1], c[2]], [c[3], c[4], c[5]], [c[6], c[7], c[8]]])
                    .collect();
            }
            r
        };
        let out: Vec<Results> = if n >= PARALLEL_ROWS {
            use rayon::prelude::*;
            (0..systems.len()).into_par_iter().map(result_of).collect()
        } else {
            (0..systems.len()).map(result_of).collect()
        };
        // Last: the caller's rows, straight from the page-locked buffer.
        if let (Some(rows), false) = (&mut forces_out, forces.is_empty()) {
            let copy = |(k, f): (usize, &mut &mut [[f64; 3]])| {
                let (base, m) = (starts[k], f.len());
                f.as_flattened_mut()
                    .copy_from_slice(&forces[3 * base..3 * (base + m)]);
            };
            if n >= PARALLEL_ROWS {
                use rayon::prelude::*;
                rows.par_iter_mut().enumerate().for_each(copy);
            } else {
                rows.iter_mut().enumerate().for_each(copy);
            }
        }
        timing_step!(self.timing, self.stream, 4);
        Ok(out)
    }
}

/// The forces as rows (3 doubles each); large systems in parallel: a fresh vector's
/// pages are first touched here, and one thread took 0.4 ms at 10^5 atoms.
fn force_rows(flat: &[f64]) -> Vec<[f64; 3]> {
    use rayon::prelude::*;
    let row = |c: &[f64]| [c[0], c[1], c[2]];
    if flat.len() >= 3 * PARALLEL_ROWS {
        flat.par_chunks_exact(3).map(row).collect()
    } else {
        flat.chunks_exact(3).map(row).collect()
    }
}

/// The forces copied into a caller's rows (as `force_rows`, into memory the caller
/// owns and has usually touched already).
fn copy_force_rows(flat: &[f64], out: &mut [[f64; 3]]) {
    use rayon::prelude::*;
    let rows = out.as_flattened_mut();
    if flat.len() >= 3 * PARALLEL_ROWS {
        rows.par_chunks_mut(3 * 4096)
            .zip(flat.par_chunks(3 * 4096))
            .for_each(|(o, f)| o.copy_from_slice(f));
    } else {
        rows.copy_from_slice(flat);
    }
}

/// Rows from which per-call host copies of per-atom data run on rayon's threads.
const PARALLEL_ROWS: usize = 1 << 14;

/// Atoms from which the positions are staged on rayon's threads, and atoms per task.
/// The staging writes page-locked (write-combined) memory at ~5 GB/s per thread on the
/// H100 machines (a VM), so it scales with the threads that take part: at 10^5 atoms
/// tasks of 2048 rows (49 tasks) took 0.27-0.29 ms, of 16384 (6 tasks) 0.43-0.44 ms;
/// at 10^4 every parallel split was slower than one thread (rayon's wake-up costs more;
/// benches/gpu_results.md, session 20). MLFF_CUDA_STAGE_ROWS=threshold,rows per task
/// changes both (measurements).
fn stage_rows() -> (usize, usize) {
    static ROWS: std::sync::OnceLock<(usize, usize)> = std::sync::OnceLock::new();
    *ROWS.get_or_init(|| {
        std::env::var("MLFF_CUDA_STAGE_ROWS")
            .ok()
            .and_then(|v| {
                let (t, c) = v.split_once(',')?;
                Some((t.parse().ok()?, c.parse::<usize>().ok()?.max(1)))
            })
            .unwrap_or((1 << 16, 2048))
    })
}

/// Whether `numbers` and `is_local` (the engine's copies, in the caller's order) are
/// those of `systems`, concatenated: slice comparisons, run on every call.
fn same_atoms(systems: &[System], numbers: &[i32], is_local: &[u8]) -> bool {
    let n: usize = systems.iter().map(|s| s.n_atoms()).sum();
    if numbers.len() != n || is_local.len() != n {
        return false;
    }
    let mut base = 0;
    systems.iter().all(|s| {
        let m = s.n_atoms();
        let same = s.numbers == &numbers[base..base + m]
            && local_flags_match(&is_local[base..base + m], m, s.n_local);
        base += m;
        same
    })
}

/// Whether `flags` is n_local ones followed by zeros, `n` in all.
fn local_flags_match(flags: &[u8], n: usize, n_local: usize) -> bool {
    flags.len() == n
        && n_local <= n
        && flags[..n_local].iter().all(|&f| f == 1)
        && flags[n_local..].iter().all(|&f| f == 0)
}

/// Writes the positions of `systems`, concatenated, into `dst` (3 doubles per atom) and
/// says whether an atom is more than `limit` from its position in `built` (the positions
/// of the last list build, same layout; None: nothing to compare), limit 0 meaning any
/// change at all. One pass, as the positions are copied anyway; large systems in
/// parallel chunks (the same answer: an OR over atoms).
fn stage_positions(
    systems: &[System],
    dst: &mut [f64],
    built: Option<&[[f64; 3]]>,
    limit: f64,
) -> bool {
    use rayon::prelude::*;
    let (threshold, chunk) = stage_rows();
    let moved_from = |a: &[f64; 3], b: &[f64; 3]| {
        let d = [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
        let d2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
        if limit == 0.0 {
            d2 != 0.0 || a != b
        } else {
            d2 > limit * limit
        }
    };
    // One bulk copy (a memcpy), then the check: on an H100 machine's CPU (ordinary
    // memory) 16 us at 10^4 atoms and 445 us at 10^5 where row copies interleaved with
    // the check took 20 and 550 (benches/gpu_results.md, session 24).
    let part = |out: &mut [f64], positions: &[[f64; 3]], old: Option<&[[f64; 3]]>| {
        out.copy_from_slice(positions.as_flattened());
        old.is_some_and(|old| {
            positions
                .iter()
                .zip(old)
                .fold(false, |moved, (r, b)| moved | moved_from(r, b))
        })
    };
    let mut moved = false;
    let mut base = 0;
    for s in systems {
        let m = s.n_atoms();
        let out = &mut dst[3 * base..3 * (base + m)];
        let old = built.map(|b| &b[base..base + m]);
        moved |= if m >= threshold {
            out.par_chunks_mut(3 * chunk)
                .zip(s.positions.par_chunks(chunk))
                .enumerate()
                .map(|(c, (o, p))| part(o, p, old.map(|b| &b[c * chunk..c * chunk + p.len()])))
                .reduce(|| false, |a, b| a | b)
        } else {
            part(out, s.positions, old)
        };
        base += m;
    }
    moved
}

/// A page-locked host buffer of exactly `len` doubles (a copy's length is the buffer's).
fn pinned_exact<'a>(
    ctx: &Arc<CudaContext>,
    slot: &'a mut Option<PinnedHostSlice<f64>>,
    len: usize,
    flags: u32,
) -> Result<&'a mut PinnedHostSlice<f64>> {
    if slot.as_ref().map_or(true, |p| p.len() != len) {
        *slot = None;
        // SAFETY: the contents are written (positions) or copied into (forces) before
        // they are read.
        *slot =
            Some(unsafe { ctx.alloc_pinned_with_flags::<f64>(len, flags) }.map_err(device_error)?);
    }
    Ok(slot.as_mut().expect("allocated"))
}

/// MLFF_CUDA_DIRECT_OUTPUT=off: a small system's forces and totals are downloaded after
/// the kernels instead of written into page-locked memory by the last kernel (the same
/// numbers; for comparisons).
fn direct_output() -> bool {
    static DIRECT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DIRECT.get_or_init(|| std::env::var("MLFF_CUDA_DIRECT_OUTPUT").as_deref() != Ok("off"))
}

/// `pinned_out` with exactly `len` doubles, always mapped into the device's address
/// space (the copies after the kernels and atom_gather_reduce's own writes, `forces_host`,
/// share it: one kind of buffer).
fn result_rows<'a>(
    ctx: &Arc<CudaContext>,
    slot: &'a mut Option<PinnedHostSlice<f64>>,
    len: usize,
) -> Result<&'a mut PinnedHostSlice<f64>> {
    pinned_exact(
        ctx,
        slot,
        len,
        cudarc::driver::sys::CU_MEMHOSTALLOC_DEVICEMAP,
    )
}

/// The device address of a page-locked buffer allocated with CU_MEMHOSTALLOC_DEVICEMAP
/// (with unified addressing, the host address itself).
fn mapped_address(ctx: &Arc<CudaContext>, buffer: &mut PinnedHostSlice<f64>) -> Result<u64> {
    let host = buffer.as_mut_ptr().map_err(device_error)?;
    ctx.bind_to_thread().map_err(device_error)?;
    let mut device: cudarc::driver::sys::CUdeviceptr = 0;
    // SAFETY: `host` is the start of a live cuMemHostAlloc allocation made with
    // CU_MEMHOSTALLOC_DEVICEMAP in `ctx`, current on this thread; the driver writes one
    // pointer.
    unsafe {
        cudarc::driver::sys::cuMemHostGetDevicePointer_v2(&mut device, host.cast(), 0)
            .result()
            .map_err(device_error)?;
    }
    Ok(device)
}

/// The staging buffer, grown to hold `n` rows of three doubles.
/// The bins a GPU list build searches (device copies) and the engine's order of the atoms
/// (empty: the caller's), from `bin_on_host` or `bin_on_device`.
struct ListBins {
    grid: super::gpu_neighbors::BinGrid,
    cell: CudaSlice<f64>,
    atom_bin: CudaSlice<i32>,
    image: CudaSlice<i32>,
    bin_start: CudaSlice<u32>,
    bin_atoms: CudaSlice<u32>,
    order: Vec<u32>,
}

/// `order_dev` with room for n atoms (allocated for the atom buffers' capacity).
fn order_buffer<'a, T: Real>(
    stream: &Arc<CudaStream>,
    order_dev: &'a mut Option<CudaSlice<u32>>,
    atoms: &Option<AtomBuffers<T>>,
    n: usize,
) -> Result<&'a mut CudaSlice<u32>> {
    if order_dev.as_ref().map_or(true, |o| o.len() < n) {
        let capacity = atoms.as_ref().map_or(n, |a| a.capacity.max(n));
        *order_dev = None;
        *order_dev = Some(stream.alloc_zeros::<u32>(capacity).map_err(device_error)?);
    }
    Ok(order_dev.as_mut().expect("allocated"))
}

fn staging_rows<'a>(
    stream: &Arc<CudaStream>,
    staging: &'a mut Option<CudaSlice<f64>>,
    n: usize,
) -> Result<&'a mut CudaSlice<f64>> {
    if staging.as_ref().map_or(true, |s| s.len() < 3 * n) {
        *staging = None;
        *staging = Some(
            stream
                .alloc_zeros::<f64>(3 * n.max(1))
                .map_err(device_error)?,
        );
    }
    Ok(staging.as_mut().expect("allocated"))
}

/// `values` (caller's order) in the engine's order: `out[k] = values[order[k]]`.
fn permuted<U: Copy>(order: &[u32], values: &[U]) -> Vec<U> {
    if order.is_empty() {
        values.to_vec()
    } else {
        order.iter().map(|&a| values[a as usize]).collect()
    }
}

/// Rows of `width` numbers stored flat, from the engine's order back to the caller's:
/// row `order[k]` of the result is row `k` of `values`.
fn unpermuted_rows(order: &[u32], values: Vec<f64>, width: usize) -> Vec<f64> {
    if order.is_empty() {
        return values;
    }
    let mut out = values.clone();
    for (k, &a) in order.iter().enumerate() {
        let a = a as usize;
        out[width * a..width * (a + 1)].copy_from_slice(&values[width * k..width * (k + 1)]);
    }
    out
}

enum Inner {
    F32(Gpu<f32>),
    F64(Gpu<f64>),
}

/// Restores the calling thread's current CUDA context when dropped: cudarc makes
/// its context current (cuCtxSetCurrent) in every call, and a host application
/// such as OpenMM, with a context of its own current, must find it unchanged.
pub(super) struct KeepCurrent(sys::CUcontext);

impl KeepCurrent {
    pub(super) fn new() -> Self {
        let mut current: sys::CUcontext = std::ptr::null_mut();
        // SAFETY: the driver is loaded (an engine exists or is being created); on
        // failure `current` stays NULL, which restores "no context".
        unsafe {
            let _ = sys::cuCtxGetCurrent(&mut current);
        }
        KeepCurrent(current)
    }
}

impl Drop for KeepCurrent {
    fn drop(&mut self) {
        let mut now: sys::CUcontext = std::ptr::null_mut();
        // SAFETY: as in `new`; setting back a context that was current is valid.
        unsafe {
            if sys::cuCtxGetCurrent(&mut now) == sys::CUresult::CUDA_SUCCESS && now != self.0 {
                let _ = sys::cuCtxSetCurrent(self.0);
            }
        }
    }
}

/// Checks that `ptr` is CUDA device memory holding `bytes` bytes from `ptr`, usable in `ctx`.
fn check_device_pointer(ctx: &CudaContext, ptr: u64, name: &str, bytes: usize) -> Result<()> {
    use sys::CUpointer_attribute as A;
    if ptr == 0 {
        return Err(Error::invalid(format!("{name} is NULL")));
    }
    if ptr % 8 != 0 {
        return Err(Error::invalid(format!(
            "{name} (0x{ptr:x}) is not aligned to 8 bytes"
        )));
    }
    let mut memory_type: u32 = 0;
    // SAFETY: the attribute is an unsigned int, written to a local.
    let status = unsafe {
        sys::cuPointerGetAttribute(
            &mut memory_type as *mut u32 as *mut std::ffi::c_void,
            A::CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
            ptr,
        )
    };
    if status != sys::CUresult::CUDA_SUCCESS
        || (memory_type != sys::CUmemorytype::CU_MEMORYTYPE_DEVICE as u32
            && memory_type != sys::CUmemorytype::CU_MEMORYTYPE_UNIFIED as u32)
    {
        return Err(Error::invalid(format!(
            "{name} (0x{ptr:x}) is not CUDA device memory ({status:?}, memory type {memory_type})"
        )));
    }
    let mut owner: sys::CUcontext = std::ptr::null_mut();
    // SAFETY: the attribute is a CUcontext, written to a local.
    let status = unsafe {
        sys::cuPointerGetAttribute(
            &mut owner as *mut sys::CUcontext as *mut std::ffi::c_void,
            A::CU_POINTER_ATTRIBUTE_CONTEXT,
            ptr,
        )
    };
    // Stream-ordered (pool) allocations report no context.
    if status == sys::CUresult::CUDA_SUCCESS && !owner.is_null() && owner != ctx.cu_ctx() {
        return Err(Error::Device(format!(
            "{name} (0x{ptr:x}) was allocated in another CUDA context than the model's; create the model in that context (mlff_model_create_in_cuda_context)"
        )));
    }
    let (mut start, mut size): (u64, usize) = (0, 0);
    // SAFETY: the attributes are a CUdeviceptr and a size_t, written to locals.
    let ok = unsafe {
        sys::cuPointerGetAttribute(
            &mut start as *mut u64 as *mut std::ffi::c_void,
            A::CU_POINTER_ATTRIBUTE_RANGE_START_ADDR,
            ptr,
        ) == sys::CUresult::CUDA_SUCCESS
            && sys::cuPointerGetAttribute(
                &mut size as *mut usize as *mut std::ffi::c_void,
                A::CU_POINTER_ATTRIBUTE_RANGE_SIZE,
                ptr,
            ) == sys::CUresult::CUDA_SUCCESS
    };
    if ok && size > 0 {
        let available = (start + size as u64).saturating_sub(ptr);
        if available < bytes as u64 {
            return Err(Error::invalid(format!(
                "{name} (0x{ptr:x}) has {available} bytes left in its allocation but {bytes} are needed (3 x n_atoms doubles)"
            )));
        }
    }
    Ok(())
}

pub struct CudaEngine {
    _file: Arc<ModelFile>,
    /// Dropped in `Drop::drop`, with the caller's current context kept.
    inner: ManuallyDrop<Inner>,
    description: String,
    /// Never dropped when borrowed: the engine must not destroy the caller's context.
    ctx: ManuallyDrop<Arc<CudaContext>>,
    borrowed: bool,
}

/// A caller's CUDA context (0: the one current on this thread), its device and that
/// device's ordinal.
fn resolve_context(context: usize) -> Result<(sys::CUcontext, sys::CUdevice, usize)> {
    let context = if context == 0 {
        match cudarc::driver::result::ctx::get_current().map_err(device_error)? {
            Some(current) => current,
            None => {
                return Err(Error::Device(
                    "no CUDA context is current on the calling thread (pass one explicitly)".into(),
                ))
            }
        }
    } else {
        context as sys::CUcontext
    };
    let mut device: sys::CUdevice = 0;
    // SAFETY: the caller guarantees a live context; it is pushed and popped again.
    unsafe {
        sys::cuCtxPushCurrent_v2(context)
            .result()
            .map_err(device_error)?;
        let got = sys::cuCtxGetDevice(&mut device).result();
        let mut popped: sys::CUcontext = std::ptr::null_mut();
        let _ = sys::cuCtxPopCurrent_v2(&mut popped);
        got.map_err(device_error)?;
    }
    let count = cudarc::driver::result::device::get_count().map_err(device_error)?;
    let mut ordinal = None;
    for i in 0..count {
        let mut candidate: sys::CUdevice = 0;
        // SAFETY: i < count; the result goes to a local.
        if unsafe { sys::cuDeviceGet(&mut candidate, i) } == sys::CUresult::CUDA_SUCCESS
            && candidate == device
        {
            ordinal = Some(i as usize);
        }
    }
    let ordinal = ordinal
        .ok_or_else(|| Error::Device("cannot find the device of the given CUDA context".into()))?;
    Ok((context, device, ordinal))
}

/// The ordinal of the device of a caller's CUDA context (0: the current one).
pub(super) fn context_device_ordinal(context: usize) -> Result<usize> {
    let _keep = KeepCurrent::new();
    resolve_context(context).map(|(_, _, ordinal)| ordinal)
}

impl CudaEngine {
    pub fn new(file: Arc<ModelFile>, options: &Options) -> Result<Self> {
        let _keep = KeepCurrent::new();
        let ordinal = usize::try_from(options.device_index).map_err(|_| {
            Error::invalid(format!("bad CUDA device index {}", options.device_index))
        })?;
        let count = cudarc::driver::result::device::get_count().map_err(device_error)?;
        if ordinal >= count as usize {
            return Err(Error::Device(format!(
                "CUDA device {ordinal} requested but only {count} present"
            )));
        }
        Self::check_hidden(&file)?;
        let ctx = CudaContext::new(ordinal).map_err(device_error)?;
        Self::build(file, options, ctx, ordinal, false)
    }

    /// The engine in the caller's context (`context` = 0: the current one).
    pub fn new_in_context(file: Arc<ModelFile>, options: &Options, context: usize) -> Result<Self> {
        let _keep = KeepCurrent::new();
        Self::check_hidden(&file)?;
        let (context, device, ordinal) = resolve_context(context)?;
        // SAFETY: a live context of `device`; the Arc is never dropped (`borrowed`), so
        // cudarc never destroys it.
        let ctx = unsafe { CudaContext::from_raw_context(ordinal, device, context) }
            .map_err(device_error)?;
        Self::build(file, options, ctx, ordinal, true)
    }

    fn check_hidden(file: &ModelFile) -> Result<()> {
        // PaiNN models have their own engine (painn.rs); this one runs the student.
        if file.weights.student().is_none() {
            return Err(Error::Device(format!(
                "this CUDA engine runs the student architecture, not `{}`",
                file.weights.architecture()
            )));
        }
        let hidden = file.weights.hidden();
        if hidden % 32 != 0 || hidden == 0 || hidden > 128 {
            return Err(Error::Device(format!(
                "the CUDA engine supports hidden widths 32, 64, 96 and 128, not {hidden}"
            )));
        }
        Ok(())
    }

    fn build(
        file: Arc<ModelFile>,
        options: &Options,
        ctx: Arc<CudaContext>,
        ordinal: usize,
        borrowed: bool,
    ) -> Result<Self> {
        let ctx = ManuallyDrop::new(ctx);
        let built = Self::build_inner(&file, options, &ctx);
        let (inner, mode, name) = match built {
            Ok(parts) => parts,
            Err(error) => {
                if !borrowed {
                    drop(ManuallyDrop::into_inner(ctx));
                }
                return Err(error);
            }
        };
        let shared = if borrowed { ", shared context" } else { "" };
        Ok(CudaEngine {
            _file: file,
            inner: ManuallyDrop::new(inner),
            description: format!("cuda:{ordinal} ({name}, {mode}{shared})"),
            ctx,
            borrowed,
        })
    }

    fn build_inner(
        file: &Arc<ModelFile>,
        options: &Options,
        ctx: &Arc<CudaContext>,
    ) -> Result<(Inner, &'static str, String)> {
        let hidden = file.weights.hidden();
        // One stream, so cudarc's per-buffer event tracking is pure overhead.
        // SAFETY: every buffer of this engine is used on the one stream below.
        unsafe { ctx.disable_event_tracking() };
        let (major, minor) = ctx.compute_capability().map_err(device_error)?;
        // sm_90a: Hopper's arch-specific instructions (wgmma: update_wgmma.cu).
        let arch = format!(
            "sm_{major}{minor}{}",
            if (major, minor) == (9, 0) { "a" } else { "" }
        );
        let ptx = runtime::cached_ptx(&arch, hidden)?;
        let module = ctx.load_module(Ptx::from_src(ptx)).map_err(device_error)?;
        let stream = ctx.new_stream().map_err(device_error)?;
        let name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        let (inner, mode) = match options.precision {
            Precision::F64 => (
                Inner::F64(Gpu::new(stream, &module, file, NODES_F64, false)?),
                "f64",
            ),
            Precision::F32 => (
                Inner::F32(Gpu::new(stream, &module, file, NODES_F32, false)?),
                "f32",
            ),
            // f32 states and arithmetic, the filter table in f16: the edge kernels,
            // bound by reading the table, move half the bytes (docs/cuda.md).
            Precision::Mixed => (
                Inner::F32(Gpu::new(stream, &module, file, NODES_F32, true)?),
                "mixed: f16 filter table",
            ),
        };
        Ok((inner, mode, name))
    }
}

impl Drop for CudaEngine {
    /// With MLFF_CUDA_PROFILE set, prints the accumulated per-stage times.
    fn drop(&mut self) {
        let _keep = KeepCurrent::new();
        let (profile, buffers) = match &*self.inner {
            Inner::F32(g) => (g.profile.clone(), g.buffer_report()),
            Inner::F64(g) => (g.profile.clone(), g.buffer_report()),
        };
        match &*self.inner {
            Inner::F32(Gpu {
                timing: Some(t), ..
            })
            | Inner::F64(Gpu {
                timing: Some(t), ..
            }) => t.print(&self.description),
            _ => {}
        }
        if let Some(p) = profile {
            p.print(&self.description);
            eprintln!("  {buffers}");
        }
        // SAFETY: dropped exactly once, here; nothing uses them afterwards.
        unsafe {
            ManuallyDrop::drop(&mut self.inner);
            if !self.borrowed {
                ManuallyDrop::drop(&mut self.ctx);
            }
        }
    }
}

impl Engine for CudaEngine {
    fn compute(&mut self, system: &System, request: &Request) -> Result<Results> {
        let _keep = KeepCurrent::new();
        match &mut *self.inner {
            Inner::F32(g) => g.run(system, request, None),
            Inner::F64(g) => g.run(system, request, None),
        }
    }
    fn compute_forces_into(
        &mut self,
        system: &System,
        request: &Request,
        forces: &mut [[f64; 3]],
    ) -> Result<Results> {
        let _keep = KeepCurrent::new();
        match &mut *self.inner {
            Inner::F32(g) => g.run(system, request, Some(forces)),
            Inner::F64(g) => g.run(system, request, Some(forces)),
        }
    }
    fn compute_device(&mut self, system: &DeviceSystem, request: &Request) -> Result<Results> {
        let _keep = KeepCurrent::new();
        match &mut *self.inner {
            Inner::F32(g) => g.run_device(system, request),
            Inner::F64(g) => g.run_device(system, request),
        }
    }
    fn compute_batch(&mut self, systems: &[System], request: &Request) -> Result<Vec<Results>> {
        let _keep = KeepCurrent::new();
        match &mut *self.inner {
            Inner::F32(g) => g.run_batch(systems, request, None),
            Inner::F64(g) => g.run_batch(systems, request, None),
        }
    }
    fn compute_batch_forces_into(
        &mut self,
        systems: &[System],
        request: &Request,
        forces: &mut [&mut [[f64; 3]]],
    ) -> Result<Vec<Results>> {
        let _keep = KeepCurrent::new();
        match &mut *self.inner {
            Inner::F32(g) => g.run_batch(systems, request, Some(forces)),
            Inner::F64(g) => g.run_batch(systems, request, Some(forces)),
        }
    }
    fn description(&self) -> String {
        self.description.clone()
    }
    fn is_gpu(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::{
        fused_writes_into_v, pack_shift, permuted, stage_positions, unpermuted_rows, SHIFT_BITS,
    };
    use crate::system::System;

    #[test]
    fn fused_blocks_alternate_v_buffers_and_leave_the_last_input_in_v() {
        for n_blocks in 1..=6 {
            // Replay the forward pass on the two buffers: true = `v`, false = `v_alt`.
            // Which block last wrote each buffer (None: still zeros).
            let mut last_writer = [None::<usize>, None::<usize>];
            let slot = |in_v: bool| if in_v { 0 } else { 1 };
            for l in 0..n_blocks {
                let into_v = fused_writes_into_v(n_blocks, l);
                let read = last_writer[slot(!into_v)];
                // Block l reads block l-1's output, and block 0 reads zeros.
                assert_eq!(read, l.checked_sub(1), "blocks {n_blocks}, block {l}");
                if l + 1 < n_blocks {
                    last_writer[slot(into_v)] = Some(l);
                }
            }
            // The last block read from `v`: the backward pass finds its input there.
            assert!(!fused_writes_into_v(n_blocks, n_blocks - 1));
        }
    }

    #[test]
    fn staged_positions_are_copied_and_the_skin_check_matches_a_plain_loop() {
        // One large system (the parallel chunks, with a last partial chunk) and a batch of
        // small ones (sequential), against the obvious loop.
        let positions = |n: usize, seed: f64| -> Vec<[f64; 3]> {
            (0..n)
                .map(|i| {
                    let x = (i as f64 * 0.618 + seed).fract();
                    [
                        10.0 * x,
                        (i % 97) as f64 * 0.31,
                        (i % 13) as f64 * 1.7 + seed,
                    ]
                })
                .collect()
        };
        let large = positions(70_001, 0.25);
        let small: Vec<Vec<[f64; 3]>> = (0..5).map(|k| positions(7 + 3 * k, k as f64)).collect();
        let numbers_large = vec![8; large.len()];
        let numbers_small: Vec<Vec<i32>> = small.iter().map(|p| vec![1; p.len()]).collect();
        let cases: Vec<Vec<System>> = vec![
            vec![System::molecule(&numbers_large, &large)],
            small
                .iter()
                .zip(&numbers_small)
                .map(|(p, z)| System::molecule(z, p))
                .collect(),
        ];
        let limit = 0.15;
        for systems in &cases {
            let flat: Vec<[f64; 3]> = systems
                .iter()
                .flat_map(|s| s.positions.iter().copied())
                .collect();
            let n = flat.len();
            let mut dst = vec![f64::NAN; 3 * n];
            // Nothing to compare: copied, not moved.
            assert!(!stage_positions(systems, &mut dst, None, limit));
            let want: Vec<f64> = flat.iter().flatten().copied().collect();
            assert_eq!(dst, want);
            // The same positions: not moved (also with limit 0, exact comparison).
            assert!(!stage_positions(systems, &mut dst, Some(&flat), limit));
            assert!(!stage_positions(systems, &mut dst, Some(&flat), 0.0));
            // One atom (anywhere) moved just past and just within the limit.
            for &k in &[0, n / 2, n - 1] {
                for (shift, expect) in [(limit * 1.001, true), (limit * 0.999, false)] {
                    let mut built = flat.clone();
                    built[k][1] -= shift;
                    assert_eq!(
                        stage_positions(systems, &mut dst, Some(&built), limit),
                        expect,
                        "atom {k}, shift {shift}"
                    );
                    assert_eq!(dst, want, "the copy does not depend on the check");
                }
                let mut built = flat.clone();
                built[k][2] = f64::from_bits(built[k][2].to_bits() + 1);
                assert!(stage_positions(systems, &mut dst, Some(&built), 0.0));
            }
        }
    }

    #[test]
    fn packed_shifts_order_as_shifts_and_reject_out_of_range() {
        let limit = 1i32 << (SHIFT_BITS - 1);
        let shifts = [
            [0, 0, 0],
            [-1, 0, 0],
            [1, -1, 2],
            [0, 5, -3],
            [-limit, limit - 1, 0],
            [limit - 1, -limit, -limit],
            [3, 3, -1],
        ];
        // The kernels' unpacking, mirrored (common.cuh, shift_unpack).
        let unpack = |mut w: u64| {
            let mut s = [0i32; 3];
            for c in (0..3).rev() {
                s[c] = (w & ((1 << SHIFT_BITS) - 1)) as i32 - limit;
                w >>= SHIFT_BITS;
            }
            s
        };
        for a in &shifts {
            let pa = pack_shift(*a).unwrap();
            assert_eq!(unpack(pa), *a);
            for b in &shifts {
                // The GPU neighbour list sorts by packed words: the host's order of shifts.
                assert_eq!(pa.cmp(&pack_shift(*b).unwrap()), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
        for bad in [[limit, 0, 0], [0, -limit - 1, 0], [0, 0, i32::MAX]] {
            let message = pack_shift(bad).unwrap_err().to_string();
            assert!(message.contains("lattice shift"), "{message}");
        }
    }

    #[test]
    fn engine_order_round_trips_to_the_callers_order() {
        // order[k] = caller's index of engine atom k.
        let order = [2u32, 0, 3, 1];
        let caller = [10, 11, 12, 13];
        let engine = permuted(&order, &caller);
        assert_eq!(engine, vec![12, 10, 13, 11]);
        let engine_f64: Vec<f64> = engine.iter().map(|&x| x as f64).collect();
        let caller_f64: Vec<f64> = caller.iter().map(|&x| x as f64).collect();
        assert_eq!(unpermuted_rows(&order, engine_f64, 1), caller_f64);
        // Rows of three, flat: engine row k goes to caller row order[k].
        let flat: Vec<f64> = engine
            .iter()
            .flat_map(|&x| [x as f64, 0.5, -(x as f64)])
            .collect();
        let back = unpermuted_rows(&order, flat, 3);
        let want: Vec<f64> = caller
            .iter()
            .flat_map(|&x| [x as f64, 0.5, -(x as f64)])
            .collect();
        assert_eq!(back, want);
        // The empty order is the identity.
        assert_eq!(permuted(&[], &caller), caller.to_vec());
        assert_eq!(unpermuted_rows(&[], vec![1.0, 2.0], 1), vec![1.0, 2.0]);
    }
}
