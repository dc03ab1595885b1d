//! The CUDA engine proper: device weights, reusable buffers, and one step.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaModule, CudaSlice, CudaStream};
use cudarc::nvrtc::Ptx;

use super::kernels::{self as k, Edges, HeadArgs, Kernels, PairArgs, Real, Table};
use super::{device_error, runtime, spline, NODES_F32, NODES_F64};
use crate::engine::Engine;
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
    let host: Vec<T> = if values.is_empty() { vec![T::default()] } else { values.iter().map(|&x| T::from_f64(x)).collect() };
    stream.clone_htod(&host).map_err(device_error)
}

fn zeros<T: Real>(stream: &Arc<CudaStream>, n: usize) -> Result<CudaSlice<T>> {
    stream.alloc_zeros::<T>(n.max(1)).map_err(device_error)
}

struct DeviceBlock<T> {
    table: CudaSlice<T>,
    w1t: CudaSlice<T>,
    b1: CudaSlice<T>,
    w2t: CudaSlice<T>,
    b2: CudaSlice<T>,
    w1: CudaSlice<T>,
    w2: CudaSlice<T>,
    mixing: CudaSlice<T>,
    vector_update: bool,
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
    offsets: CudaSlice<u32>,
    /// s^0..s^L (input of each block, then the final state).
    s: Vec<CudaSlice<T>>,
    /// v^0..v^{L-1}, plus an unused slot for the skipped last vector update.
    v: Vec<CudaSlice<T>>,
    s_mid: Vec<CudaSlice<T>>,
    v_mid: Vec<CudaSlice<T>>,
    norm: Vec<CudaSlice<T>>,
    z: Vec<CudaSlice<T>>,
    y: Vec<CudaSlice<T>>,
    atom_energy: CudaSlice<T>,
    grad_s: [CudaSlice<T>; 2],
    grad_v: [CudaSlice<T>; 2],
    grad_s_mid: CudaSlice<T>,
    grad_v_mid: CudaSlice<T>,
    forces: CudaSlice<T>,
    atom_virials: CudaSlice<T>,
}

impl<T: Real> AtomBuffers<T> {
    fn new(stream: &Arc<CudaStream>, capacity: usize, hidden: usize, blocks: usize) -> Result<Self> {
        let (nh, nv) = (capacity * hidden, capacity * 3 * hidden);
        let many = |count: usize, size: usize| -> Result<Vec<CudaSlice<T>>> { (0..count).map(|_| zeros(stream, size)).collect() };
        let mut v = many(blocks, nv)?;
        v.push(zeros(stream, 1)?);
        Ok(AtomBuffers {
            capacity,
            numbers: stream.alloc_zeros(capacity.max(1)).map_err(device_error)?,
            offsets: stream.alloc_zeros(capacity + 1).map_err(device_error)?,
            s: many(blocks + 1, nh)?,
            v,
            s_mid: many(blocks, nh)?,
            v_mid: many(blocks, nv)?,
            norm: many(blocks, nh)?,
            z: many(blocks, nh)?,
            y: many(blocks, nv)?,
            atom_energy: zeros(stream, capacity)?,
            grad_s: [zeros(stream, nh)?, zeros(stream, nh)?],
            grad_v: [zeros(stream, nv)?, zeros(stream, nv)?],
            grad_s_mid: zeros(stream, nh)?,
            grad_v_mid: zeros(stream, nv)?,
            forces: zeros(stream, 3 * capacity)?,
            atom_virials: zeros(stream, 9 * capacity)?,
        })
    }
}

/// Per-pair and per-edge buffers for up to `capacity` pairs.
struct PairBuffers<T> {
    capacity: usize,
    pair_vector: CudaSlice<f64>,
    pair_i: CudaSlice<u32>,
    pair_j: CudaSlice<u32>,
    distance: CudaSlice<T>,
    vec: CudaSlice<T>,
    unit: CudaSlice<T>,
    grad_d: CudaSlice<T>,
    grad_u: CudaSlice<T>,
    grad_r: CudaSlice<T>,
    edge_source: CudaSlice<u32>,
    edge_pair: CudaSlice<u32>,
}

impl<T: Real> PairBuffers<T> {
    fn new(stream: &Arc<CudaStream>, capacity: usize) -> Result<Self> {
        let u = |n: usize| stream.alloc_zeros::<u32>(n.max(1)).map_err(device_error);
        Ok(PairBuffers {
            capacity,
            pair_vector: stream.alloc_zeros(3 * capacity.max(1)).map_err(device_error)?,
            pair_i: u(capacity)?,
            pair_j: u(capacity)?,
            distance: zeros(stream, capacity)?,
            vec: zeros(stream, 3 * capacity)?,
            unit: zeros(stream, 3 * capacity)?,
            grad_d: zeros(stream, capacity)?,
            grad_u: zeros(stream, 3 * capacity)?,
            grad_r: zeros(stream, 3 * capacity)?,
            edge_source: u(2 * capacity)?,
            edge_pair: u(2 * capacity)?,
        })
    }
}

/// Host staging of one neighbour list in the device layout.
#[derive(Default)]
struct HostGraph {
    numbers: Vec<i32>,
    offsets: Vec<u32>,
    edge_source: Vec<u32>,
    edge_pair: Vec<u32>,
    pair_i: Vec<u32>,
    pair_j: Vec<u32>,
    pair_vector: Vec<f64>,
}

const EDGE_REVERSE: u32 = 0x8000_0000;

impl HostGraph {
    fn fill(&mut self, numbers: &[i32], nl: &NeighborList) -> Result<()> {
        if nl.n_pairs() >= EDGE_REVERSE as usize || nl.n_edges() > u32::MAX as usize {
            return Err(Error::invalid(format!("{} pairs is more than the CUDA engine supports", nl.n_pairs())));
        }
        self.numbers.clear();
        self.numbers.extend_from_slice(numbers);
        self.offsets.clear();
        self.offsets.extend(nl.edge_offsets.iter().map(|&o| o as u32));
        self.edge_source.clear();
        self.edge_source.extend_from_slice(&nl.edge_source);
        self.edge_pair.clear();
        self.edge_pair.extend(nl.edge_pair.iter().zip(&nl.edge_forward).map(|(&p, &f)| if f { p } else { p | EDGE_REVERSE }));
        self.pair_i.clear();
        self.pair_i.extend_from_slice(&nl.pair_i);
        self.pair_j.clear();
        self.pair_j.extend_from_slice(&nl.pair_j);
        self.pair_vector.clear();
        self.pair_vector.extend(nl.pair_vector.iter().flatten());
        Ok(())
    }
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
    download: Vec<T>,
    /// With MLFF_CUDA_PROFILE set: synchronise after each stage and add its wall time here.
    profile: Option<Profile>,
}

/// Per-stage wall times (seconds), for tuning only (synchronising costs time).
#[derive(Default, Debug, Clone)]
pub struct Profile {
    pub stages: Vec<(&'static str, f64)>,
    last: Option<std::time::Instant>,
}

impl Profile {
    fn mark(&mut self, stream: &CudaStream, name: &'static str) {
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

macro_rules! mark {
    ($prof:expr, $stream:expr, $name:expr) => {
        if let Some(p) = $prof.as_mut() {
            p.mark(&$stream, $name);
        }
    };
}

impl<T: Real> Gpu<T> {
    fn new(stream: Arc<CudaStream>, module: &Arc<CudaModule>, file: &ModelFile, n_nodes: usize) -> Result<Self> {
        let w = &file.weights;
        let hidden = w.config.hidden;
        let tile = if std::mem::size_of::<T>() == 8 { runtime::TILE / 2 } else { runtime::TILE };
        let kernels = Kernels::load::<T>(module, hidden, tile)?;
        let n_blocks = w.blocks.len();
        let mut blocks = Vec::with_capacity(n_blocks);
        for (l, b) in w.blocks.iter().enumerate() {
            let vector_update = l + 1 < n_blocks;
            let mixing: Vec<f64> = match (&b.mixing, vector_update) {
                (Some(m), _) => m.iter().flatten().copied().collect(),
                (None, false) => vec![0.0; 9],
                (None, true) => return Err(Error::Internal(format!("block {l} has no mixing matrix"))),
            };
            let table = spline::build_table(w, b, n_nodes);
            blocks.push(DeviceBlock {
                table: upload(&stream, &table)?,
                w1t: upload(&stream, &transposed(&b.update1))?,
                b1: upload(&stream, &b.update1.bias)?,
                w2t: upload(&stream, &transposed(&b.update2))?,
                b2: upload(&stream, &b.update2.bias)?,
                w1: upload(&stream, &b.update1.weight)?,
                w2: upload(&stream, &b.update2.weight)?,
                mixing: upload(&stream, &mixing)?,
                vector_update,
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
        Ok(Gpu {
            embedding: upload(&stream, &w.embedding)?,
            partials: stream.alloc_zeros(10 * k::REDUCE_BLOCKS).map_err(device_error)?,
            totals: stream.alloc_zeros(10).map_err(device_error)?,
            inv_h: (n_nodes - 1) as f64 / w.config.cutoff,
            stream,
            kernels,
            hidden,
            n_nodes,
            blocks,
            head,
            atoms: None,
            pairs: None,
            host: HostGraph::default(),
            download: Vec::new(),
            profile: std::env::var_os("MLFF_CUDA_PROFILE").map(|_| Profile::default()),
        })
    }

    fn ensure_capacity(&mut self, n_atoms: usize, n_pairs: usize) -> Result<()> {
        // Grow with slack so that MD's fluctuating pair counts do not reallocate each step.
        if self.atoms.as_ref().map_or(true, |a| a.capacity < n_atoms) {
            self.atoms = None;
            let cap = n_atoms + n_atoms / 8;
            self.atoms = Some(AtomBuffers::new(&self.stream, cap, self.hidden, self.blocks.len())?);
        }
        if self.pairs.as_ref().map_or(true, |p| p.capacity < n_pairs) {
            self.pairs = None;
            let cap = n_pairs + n_pairs / 4 + 16;
            self.pairs = Some(PairBuffers::new(&self.stream, cap)?);
        }
        Ok(())
    }

    fn fetch(&mut self, which: impl Fn(&AtomBuffers<T>) -> &CudaSlice<T>, len: usize) -> Result<Vec<f64>> {
        let atoms = self.atoms.as_ref().expect("buffers exist");
        self.download.resize(len, T::default());
        self.stream.memcpy_dtoh(&which(atoms).slice(0..len), &mut self.download[..]).map_err(device_error)?;
        Ok(self.download.iter().map(|x| x.to_f64()).collect())
    }

    fn run(&mut self, system: &System, nl: &NeighborList, request: &Request) -> Result<Results> {
        let n = system.n_atoms();
        let n_pairs = nl.n_pairs();
        if n == 0 {
            return Ok(Results::default());
        }
        let st = self.stream.clone();
        if let Some(p) = self.profile.as_mut() {
            p.last = Some(std::time::Instant::now());
        }
        self.host.fill(system.numbers, nl)?;
        self.ensure_capacity(n, n_pairs)?;
        let prof = &mut self.profile;
        let kn = &self.kernels;
        let atoms = self.atoms.as_mut().expect("allocated above");
        let pairs = self.pairs.as_mut().expect("allocated above");
        let h = &self.host;
        let e = device_error;
        st.memcpy_htod(&h.numbers, &mut atoms.numbers.slice_mut(0..n)).map_err(e)?;
        st.memcpy_htod(&h.offsets, &mut atoms.offsets.slice_mut(0..n + 1)).map_err(e)?;
        if n_pairs > 0 {
            st.memcpy_htod(&h.edge_source, &mut pairs.edge_source.slice_mut(0..2 * n_pairs)).map_err(e)?;
            st.memcpy_htod(&h.edge_pair, &mut pairs.edge_pair.slice_mut(0..2 * n_pairs)).map_err(e)?;
            st.memcpy_htod(&h.pair_i, &mut pairs.pair_i.slice_mut(0..n_pairs)).map_err(e)?;
            st.memcpy_htod(&h.pair_j, &mut pairs.pair_j.slice_mut(0..n_pairs)).map_err(e)?;
            st.memcpy_htod(&h.pair_vector, &mut pairs.pair_vector.slice_mut(0..3 * n_pairs)).map_err(e)?;
        }
        mark!(prof, st, "upload");
        k::pair_geometry(&st, kn, n_pairs, &pairs.pair_vector, &mut pairs.distance, &mut pairs.vec, &mut pairs.unit)?;
        {
            let (s0, v0) = (&mut atoms.s[0], &mut atoms.v[0]);
            k::embed(&st, kn, n, &atoms.numbers, &self.embedding, s0, v0)?;
        }
        mark!(prof, st, "geometry+embed");
        let edges = Edges { offsets: &atoms.offsets, source: &pairs.edge_source, pair: &pairs.edge_pair };
        let n_blocks = self.blocks.len();
        let inv_h = T::from_f64(self.inv_h);
        let nodes = self.n_nodes as i32;
        for (l, b) in self.blocks.iter().enumerate() {
            let table = Table { data: &b.table, nodes, inv_h };
            k::message(&st, kn, n, &edges, &pairs.distance, &pairs.unit, &table, &atoms.s[l], &atoms.v[l], &mut atoms.s_mid[l], &mut atoms.v_mid[l])?;
            mark!(prof, st, "message");
            let (s_lo, s_hi) = atoms.s.split_at_mut(l + 1);
            let (_, v_hi) = atoms.v.split_at_mut(l + 1);
            k::update(&st, kn, n, &atoms.s_mid[l], &atoms.v_mid[l], &b.w1t, &b.b1, &b.w2t, &b.b2, &b.mixing, b.vector_update, &mut atoms.norm[l], &mut atoms.z[l], &mut atoms.y[l], &mut s_hi[0], &mut v_hi[0])?;
            mark!(prof, st, "update");
            let _ = s_lo;
        }
        let hd = &self.head;
        let head = HeadArgs { at: &hd.at, a_bias: &hd.a_bias, a_w: &hd.a_w, bt: &hd.bt, b_bias: &hd.b_bias, b_w: &hd.b_w, c_w: &hd.c_w, c_bias: &hd.c_bias };
        {
            let [g0, _] = &mut atoms.grad_s;
            k::readout(&st, kn, n, system.n_local, &atoms.s[n_blocks], &head, &mut atoms.atom_energy, g0)?;
        }
        mark!(prof, st, "readout");
        let gradient = request.needs_gradient();
        if gradient {
            let pa = PairArgs { n_pairs, pair_i: &pairs.pair_i, pair_j: &pairs.pair_j, distance: &pairs.distance, unit: &pairs.unit };
            let mut cur = 0usize;
            for l in (0..n_blocks).rev() {
                let b = &self.blocks[l];
                let table = Table { data: &b.table, nodes, inv_h };
                k::update_backward(&st, kn, n, &atoms.grad_s[cur], &atoms.grad_v[cur], &atoms.v_mid[l], &atoms.norm[l], &atoms.z[l], &atoms.y[l], &b.w1, &b.w2, &b.mixing, b.vector_update, &mut atoms.grad_s_mid, &mut atoms.grad_v_mid)?;
                mark!(prof, st, "update_backward");
                k::pair_gradient(&st, kn, &pa, &table, &atoms.s[l], &atoms.v[l], &atoms.grad_s_mid, &atoms.grad_v_mid, l + 1 < n_blocks, &mut pairs.grad_d, &mut pairs.grad_u)?;
                mark!(prof, st, "pair_gradient");
                if l > 0 {
                    let next = 1 - cur;
                    let [gs0, gs1] = &mut atoms.grad_s;
                    let [gv0, gv1] = &mut atoms.grad_v;
                    let (gs_out, gv_out) = if next == 0 { (gs0, gv0) } else { (gs1, gv1) };
                    k::message_backward(&st, kn, n, &edges, &pairs.distance, &table, &atoms.grad_s_mid, &atoms.grad_v_mid, gs_out, gv_out)?;
                    mark!(prof, st, "message_backward");
                    cur = next;
                }
            }
            k::pair_force(&st, kn, n_pairs, &pairs.distance, &pairs.vec, &pairs.grad_d, &pairs.grad_u, &mut pairs.grad_r)?;
            k::atom_gather(&st, kn, n, &edges, &pairs.vec, &pairs.grad_r, request.atom_virials, &mut atoms.forces, &mut atoms.atom_virials)?;
            mark!(prof, st, "forces");
        }
        k::reduce(&st, kn, n, n_pairs, &atoms.atom_energy, &pairs.vec, &pairs.grad_r, gradient && request.virial, &mut self.partials, &mut self.totals)?;
        let mut totals = [0.0f64; 10];
        st.memcpy_dtoh(&self.totals, &mut totals[..]).map_err(e)?;
        mark!(prof, st, "reduce");

        let mut results = Results { energy: totals[0], ..Default::default() };
        if gradient && request.virial {
            for a in 0..3 {
                for b in 0..3 {
                    results.virial[a][b] = totals[1 + 3 * a + b];
                }
            }
        }
        if gradient && request.forces {
            let f = self.fetch(|a| &a.forces, 3 * n)?;
            results.forces = f.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect();
        }
        if request.atom_energies {
            results.atom_energies = self.fetch(|a| &a.atom_energy, n)?;
        }
        if gradient && request.atom_virials {
            let w = self.fetch(|a| &a.atom_virials, 9 * n)?;
            results.atom_virials = w.chunks_exact(9).map(|c| [[c[0], c[1], c[2]], [c[3], c[4], c[5]], [c[6], c[7], c[8]]]).collect();
        }
        self.stream.synchronize().map_err(e)?;
        mark!(self.profile, self.stream, "download");
        Ok(results)
    }
}

enum Inner {
    F32(Gpu<f32>),
    F64(Gpu<f64>),
}

pub struct CudaEngine {
    file: Arc<ModelFile>,
    inner: Inner,
    description: String,
    _ctx: Arc<CudaContext>,
}

impl CudaEngine {
    pub fn new(file: Arc<ModelFile>, options: &Options) -> Result<Self> {
        let hidden = file.weights.config.hidden;
        if hidden % 32 != 0 || hidden == 0 || hidden > 128 {
            return Err(Error::Device(format!("the CUDA engine supports hidden widths 32, 64, 96 and 128, not {hidden}")));
        }
        let ordinal = usize::try_from(options.device_index).map_err(|_| Error::invalid(format!("bad CUDA device index {}", options.device_index)))?;
        let count = cudarc::driver::result::device::get_count().map_err(device_error)?;
        if ordinal >= count as usize {
            return Err(Error::Device(format!("CUDA device {ordinal} requested but only {count} present")));
        }
        let ctx = CudaContext::new(ordinal).map_err(device_error)?;
        // One stream, so cudarc's per-buffer event tracking is pure overhead.
        // SAFETY: every buffer of this engine is used on the one stream below.
        unsafe { ctx.disable_event_tracking() };
        let (major, minor) = ctx.compute_capability().map_err(device_error)?;
        let arch = format!("sm_{major}{minor}");
        let ptx = runtime::cached_ptx(&arch, hidden)?;
        let module = ctx.load_module(Ptx::from_src(ptx)).map_err(device_error)?;
        let stream = ctx.new_stream().map_err(device_error)?;
        let name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        let (inner, mode) = match options.precision {
            Precision::F64 => (Inner::F64(Gpu::new(stream, &module, &file, NODES_F64)?), "f64"),
            Precision::F32 => (Inner::F32(Gpu::new(stream, &module, &file, NODES_F32)?), "f32"),
            // No BF16 path yet: mixed runs the f32 kernels (error well inside mixed's tolerance).
            Precision::Mixed => (Inner::F32(Gpu::new(stream, &module, &file, NODES_F32)?), "mixed=f32"),
        };
        Ok(CudaEngine { file, inner, description: format!("cuda:{ordinal} ({name}, {mode})"), _ctx: ctx })
    }
}

impl Drop for CudaEngine {
    /// With MLFF_CUDA_PROFILE set, prints the accumulated per-stage times.
    fn drop(&mut self) {
        let profile = match &self.inner {
            Inner::F32(g) => g.profile.clone(),
            Inner::F64(g) => g.profile.clone(),
        };
        if let Some(p) = profile {
            let total: f64 = p.stages.iter().map(|s| s.1).sum();
            eprintln!("mlff cuda profile ({}): total {:.3} ms", self.description, total * 1e3);
            for (name, t) in &p.stages {
                eprintln!("  {name:<18} {:9.3} ms  {:5.1}%", t * 1e3, 100.0 * t / total.max(1e-300));
            }
        }
    }
}

impl Engine for CudaEngine {
    fn compute(&mut self, system: &System, request: &Request) -> Result<Results> {
        let nl = neighbors::build(system.positions, system.cell.as_ref(), system.pbc, self.file.weights.config.cutoff)?;
        match &mut self.inner {
            Inner::F32(g) => g.run(system, &nl, request),
            Inner::F64(g) => g.run(system, &nl, request),
        }
    }
    fn description(&self) -> String {
        self.description.clone()
    }
    fn is_gpu(&self) -> bool {
        true
    }
}
