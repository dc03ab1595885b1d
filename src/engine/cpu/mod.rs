//! The CPU engine: the f64 reference and the f32 fast path, one generic code.
//!
//! One evaluation: neighbour list (f64, exact d <= rc) -> pair geometry (each
//! unordered pair once: the filter depends only on d) -> L blocks (filter as
//! matrix products over chunks of pairs, messages gathered per destination atom,
//! update MLP over chunks of atoms) -> readout of local atoms -> the analytic
//! backward pass in reverse order -> per-pair gradients -> forces, virial and
//! per-atom virials gathered per atom.
//!
//! Determinism: every sum runs in a fixed order over fixed-size chunks that do not
//! depend on the thread count, and nothing is reduced with atomics, so results
//! are bitwise identical for every call and every number of threads.

pub(crate) mod filter_table;
mod painn;
mod real;

use std::sync::Arc;

use rayon::prelude::*;

use self::filter_table::{basis_and_grad, FilterTable};
use self::real::{linear_backward, linear_forward, silu, silu_grad, Real};
use super::Engine;
use crate::error::{Error, Result};
use crate::model::{Linear, ModelFile, ModelWeights, StudentWeights};
use crate::neighbors::{self, NeighborList};
use crate::options::{resolve_num_threads, Options, Precision};
use crate::system::{Request, Results, System};

/// Pairs per matrix-product chunk.
const PAIR_CHUNK: usize = 256;
/// Atoms per matrix-product chunk.
const ATOM_CHUNK: usize = 64;
/// Pairs per partial sum of the virial.
const VIRIAL_CHUNK: usize = 1024;
/// Memory the table path may spend on keeping phi of every pair and block.
/// Kept only while it stays cache-sized: measured on the 2-core EPYC, keeping it was
/// ~10 % faster for a 50-atom molecule (3 MB) and 1.6x slower for 900 atoms (115 MB).
const PHI_CACHE_BYTES: usize = 8 << 20;
/// The student's guard in u = r / (d + EPS).
const UNIT_EPS: f64 = 1e-8;

struct LinearT<T> {
    n_in: usize,
    n_out: usize,
    weight: Vec<T>,
    bias: Vec<T>,
}

impl<T: Real> LinearT<T> {
    fn from(layer: &Linear) -> Self {
        LinearT {
            n_in: layer.n_in,
            n_out: layer.n_out,
            weight: layer.weight.iter().map(|&x| T::from_f64(x)).collect(),
            bias: layer.bias.iter().map(|&x| T::from_f64(x)).collect(),
        }
    }
    fn forward(&self, x: &[T], n: usize, y: &mut [T]) {
        linear_forward(x, n, self.n_in, &self.weight, &self.bias, y);
    }
    fn backward(&self, gy: &[T], n: usize, gx: &mut [T]) {
        linear_backward(gy, n, self.n_out, &self.weight, self.n_in, gx);
    }
}

struct BlockT<T> {
    filter1: LinearT<T>,
    filter2: LinearT<T>,
    update1: LinearT<T>,
    update2: LinearT<T>,
    mixing: Option<[[T; 3]; 3]>,
}

/// The model's weights in the engine's precision.
struct Weights<T> {
    hidden: usize,
    num_rbf: usize,
    cutoff: f64,
    embedding: Vec<T>,
    rbf_centers: Vec<f64>,
    rbf_widths: Vec<f64>,
    blocks: Vec<BlockT<T>>,
    head: [LinearT<T>; 3],
    /// Filter tables (one per block) when the filter is interpolated, else exact.
    tables: Option<Vec<FilterTable<T>>>,
}

impl<T: Real> Weights<T> {
    fn from(w: &StudentWeights, tabulate_filter: bool) -> Self {
        Weights {
            hidden: w.config.hidden,
            num_rbf: w.config.num_rbf,
            cutoff: w.config.cutoff,
            embedding: w.embedding.iter().map(|&x| T::from_f64(x)).collect(),
            rbf_centers: w.rbf_centers.clone(),
            rbf_widths: w.rbf_widths.clone(),
            blocks: w
                .blocks
                .iter()
                .map(|b| BlockT {
                    filter1: LinearT::from(&b.filter1),
                    filter2: LinearT::from(&b.filter2),
                    update1: LinearT::from(&b.update1),
                    update2: LinearT::from(&b.update2),
                    mixing: b.mixing.map(|m| m.map(|row| row.map(T::from_f64))),
                })
                .collect(),
            head: [
                LinearT::from(&w.head[0]),
                LinearT::from(&w.head[1]),
                LinearT::from(&w.head[2]),
            ],
            tables: tabulate_filter
                .then(|| w.blocks.iter().map(|b| FilterTable::new(w, b)).collect()),
        }
    }
}

enum TypedWeights {
    F32(Weights<f32>),
    F64(Weights<f64>),
    PainnF32(painn::PainnEngineWeights<f32>),
    PainnF64(painn::PainnEngineWeights<f64>),
}

/// The CPU engine. Precision `Mixed` runs in f32 on the CPU.
pub struct CpuEngine {
    weights: TypedWeights,
    precision: Precision,
    num_threads: usize,
    /// `Some` until drop; see [`CpuWorkers`].
    pool: Option<rayon::ThreadPool>,
    workers: CpuWorkers,
    _file: Arc<ModelFile>,
}

impl CpuEngine {
    pub fn new(file: Arc<ModelFile>, options: &Options) -> Result<Self> {
        let num_threads = resolve_num_threads(options.num_threads);
        let workers = CpuWorkers::default();
        let handles = workers.0.clone();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(num_threads)
            .thread_name(|i| format!("mlff-cpu-{i}"))
            .spawn_handler(move |thread| {
                let mut builder = std::thread::Builder::new();
                if let Some(name) = thread.name() {
                    builder = builder.name(name.to_string());
                }
                let handle = builder.spawn(move || thread.run())?;
                handles
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(handle);
                Ok(())
            })
            .build()
            .map_err(|e| Error::Internal(format!("cannot start {num_threads} CPU threads: {e}")))?;
        let weights = match (&file.weights, options.precision) {
            (ModelWeights::Student(w), Precision::F64) => {
                TypedWeights::F64(Weights::from(w, false))
            }
            (ModelWeights::Student(w), Precision::F32 | Precision::Mixed) => {
                TypedWeights::F32(Weights::from(w, true))
            }
            (ModelWeights::Painn(w), Precision::F64) => {
                TypedWeights::PainnF64(painn::PainnEngineWeights::from(w))
            }
            (ModelWeights::Painn(w), Precision::F32 | Precision::Mixed) => {
                TypedWeights::PainnF32(painn::PainnEngineWeights::from(w))
            }
        };
        Ok(CpuEngine {
            weights,
            precision: options.precision,
            num_threads,
            pool: Some(pool),
            workers,
            _file: file,
        })
    }
}

/// The pool's worker threads. rayon does not join the threads of a dropped pool, so
/// the engine keeps their handles and joins them when it is dropped: after
/// `mlff_model_destroy` returns, no thread of that model is left running.
#[derive(Default)]
struct CpuWorkers(Arc<std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>>);

impl Drop for CpuEngine {
    fn drop(&mut self) {
        // Dropping the pool tells its threads to finish; then wait for them.
        drop(self.pool.take());
        let handles =
            std::mem::take(&mut *self.workers.0.lock().unwrap_or_else(|e| e.into_inner()));
        for handle in handles {
            let _ = handle.join();
        }
    }
}

impl Engine for CpuEngine {
    fn compute(&mut self, system: &System, request: &Request) -> Result<Results> {
        let cutoff = match &self.weights {
            TypedWeights::F32(w) => w.cutoff,
            TypedWeights::F64(w) => w.cutoff,
            TypedWeights::PainnF32(w) => w.cutoff,
            TypedWeights::PainnF64(w) => w.cutoff,
        };
        let weights = &self.weights;
        let pool = self
            .pool
            .as_ref()
            .ok_or_else(|| Error::Internal("CPU thread pool already shut down".into()))?;
        pool.install(|| {
            let list =
                neighbors::build(system.positions, system.cell.as_ref(), system.pbc, cutoff)?;
            Ok(match weights {
                TypedWeights::F32(w) => evaluate(w, system, &list, request),
                TypedWeights::F64(w) => evaluate(w, system, &list, request),
                TypedWeights::PainnF32(w) => painn::evaluate(w, system, &list, request),
                TypedWeights::PainnF64(w) => painn::evaluate(w, system, &list, request),
            })
        })
    }

    fn description(&self) -> String {
        let painn = matches!(
            self.weights,
            TypedWeights::PainnF32(_) | TypedWeights::PainnF64(_)
        );
        let precision = match self.precision {
            Precision::F32 if painn => "f32",
            Precision::Mixed if painn => "mixed: f32 on the CPU",
            Precision::F64 if painn => "f64",
            Precision::F32 => "f32, tabulated filter",
            Precision::F64 => "f64, exact",
            Precision::Mixed => "mixed: f32 with tabulated filter on the CPU",
        };
        format!("cpu ({precision}, {} threads)", self.num_threads)
    }

    fn is_gpu(&self) -> bool {
        false
    }
}

/// Geometry of every unordered pair, in the engine's precision.
struct PairGeometry<T> {
    /// d, for the cutoff function and the basis.
    distance: Vec<f64>,
    /// u = r / (d + eps), 3 per pair.
    unit: Vec<T>,
    /// a = basis(d) * fc(d), K per pair.
    basis: Vec<T>,
    /// da/dd, K per pair.
    basis_grad: Vec<T>,
}

fn pair_geometry<T: Real>(w: &Weights<T>, list: &NeighborList) -> PairGeometry<T> {
    let n_pairs = list.n_pairs();
    // The basis feeds only the exact filter; the table path needs d and u alone.
    let k = if w.tables.is_some() { 0 } else { w.num_rbf };
    let mut g = PairGeometry {
        distance: vec![0.0; n_pairs],
        unit: vec![T::ZERO; 3 * n_pairs],
        basis: vec![T::ZERO; k * n_pairs],
        basis_grad: vec![T::ZERO; k * n_pairs],
    };
    g.distance
        .par_iter_mut()
        .zip(g.unit.par_chunks_mut(3))
        .enumerate()
        .for_each(|(p, (d_out, u))| {
            let r = list.pair_vector[p];
            let d = neighbors::norm(&r);
            *d_out = d;
            for c in 0..3 {
                u[c] = T::from_f64(r[c] / (d + UNIT_EPS));
            }
        });
    if k > 0 {
        let distance = &g.distance;
        g.basis
            .par_chunks_mut(k)
            .zip(g.basis_grad.par_chunks_mut(k))
            .enumerate()
            .for_each_init(
                || (vec![0.0; k], vec![0.0; k]),
                |(a64, da64), (p, (a, da))| {
                    basis_and_grad(
                        &w.rbf_centers,
                        &w.rbf_widths,
                        w.cutoff,
                        distance[p],
                        a64,
                        da64,
                    );
                    for kk in 0..k {
                        a[kk] = T::from_f64(a64[kk]);
                        da[kk] = T::from_f64(da64[kk]);
                    }
                },
            );
    }
    g
}

/// Filter of every pair for one block: pre-activation Z (P x H) and phi (P x 3H).
fn filter_forward<T: Real>(
    block: &BlockT<T>,
    basis: &[T],
    k: usize,
    h: usize,
    n_pairs: usize,
) -> (Vec<T>, Vec<T>) {
    let mut z = vec![T::ZERO; n_pairs * h];
    let mut phi = vec![T::ZERO; n_pairs * 3 * h];
    z.par_chunks_mut(PAIR_CHUNK * h)
        .zip(phi.par_chunks_mut(PAIR_CHUNK * 3 * h))
        .enumerate()
        .for_each(|(chunk, (z, phi))| {
            let rows = z.len() / h;
            let a = &basis[chunk * PAIR_CHUNK * k..][..rows * k];
            block.filter1.forward(a, rows, z);
            let act: Vec<T> = z.iter().map(|&x| silu(x)).collect();
            block.filter2.forward(&act, rows, phi);
        });
    (z, phi)
}

/// sum_c (a_c - b_c) w_c with eight partial sums in a fixed order (vectorisable, deterministic).
#[inline]
fn dot_of_difference<T: Real>(a: &[T], b: &[T], w: &[T]) -> T {
    let n = a.len().min(b.len()).min(w.len());
    let lanes = n / 8 * 8;
    let mut acc = [T::ZERO; 8];
    for ((x, y), z) in a[..lanes]
        .chunks_exact(8)
        .zip(b[..lanes].chunks_exact(8))
        .zip(w[..lanes].chunks_exact(8))
    {
        for l in 0..8 {
            acc[l] += (x[l] - y[l]) * z[l];
        }
    }
    let mut total = T::ZERO;
    for c in lanes..n {
        total += (a[c] - b[c]) * w[c];
    }
    for partial in acc {
        total += partial;
    }
    total
}

/// Where a block's filter values come from: stored for every pair (exact path) or
/// interpolated on demand (table path: no P x 3H array, no memory traffic).
enum PhiSource<'a, T> {
    Stored(&'a [T]),
    Table(&'a FilterTable<T>, &'a [f64]),
}

impl<'a, T: Real> PhiSource<'a, T> {
    #[inline]
    fn get<'b>(&'b self, p: usize, h: usize, buffer: &'b mut [T]) -> &'b [T] {
        match self {
            PhiSource::Stored(phi) => &phi[p * 3 * h..(p + 1) * 3 * h],
            PhiSource::Table(table, distance) => {
                table.value(distance[p], buffer);
                buffer
            }
        }
    }
}

/// What the backward pass needs from one block's forward pass.
struct BlockSaved<T> {
    /// State entering the block: s (N x H), v (N x 3 x H).
    s_in: Vec<T>,
    v_in: Vec<T>,
    /// Vectors after the messages.
    v_msg: Vec<T>,
    /// Per-channel norm of v_msg (N x H).
    norm: Vec<T>,
    /// Update MLP pre-activation (N x H) and output [ds, g1, g2] (N x 3H).
    update_pre: Vec<T>,
    update_out: Vec<T>,
    /// Table path, small systems: phi of every pair (P x 3H), interpolated once in the
    /// forward pass and reused by the backward pass; empty otherwise.
    phi: Vec<T>,
}

fn evaluate<T: Real>(
    w: &Weights<T>,
    system: &System,
    list: &NeighborList,
    request: &Request,
) -> Results {
    let (h, k) = (w.hidden, w.num_rbf);
    let n = system.n_atoms();
    let n_local = system.n_local;
    let n_pairs = list.n_pairs();
    let geometry = pair_geometry(w, list);

    // Embedding.
    let mut s = vec![T::ZERO; n * h];
    let mut v = vec![T::ZERO; n * 3 * h];
    for (i, row) in s.chunks_exact_mut(h).enumerate() {
        let z = system.numbers[i] as usize;
        row.copy_from_slice(&w.embedding[z * h..(z + 1) * h]);
    }

    let n_blocks = w.blocks.len();
    // Table path: interpolate phi once per pair and block and keep it for the backward
    // pass while that fits the budget (each pair is otherwise interpolated five times per
    // block); large systems interpolate on demand and keep no P x 3H arrays.
    let keep_phi = w.tables.is_some()
        && n_pairs * 3 * h * n_blocks * std::mem::size_of::<T>() <= PHI_CACHE_BYTES;
    let mut saved: Vec<BlockSaved<T>> = Vec::with_capacity(n_blocks);
    for (l, block) in w.blocks.iter().enumerate() {
        let last = l + 1 == n_blocks;
        let mut kept = Vec::new();
        let stored;
        let phi = match &w.tables {
            Some(tables) if keep_phi => {
                kept = vec![T::ZERO; n_pairs * 3 * h];
                kept.par_chunks_mut(3 * h)
                    .zip(geometry.distance.par_iter())
                    .for_each(|(out, &d)| tables[l].value(d, out));
                PhiSource::Stored(&kept)
            }
            Some(tables) => PhiSource::Table(&tables[l], &geometry.distance),
            None => {
                stored = filter_forward(block, &geometry.basis, k, h, n_pairs).1;
                PhiSource::Stored(&stored)
            }
        };
        // Messages, gathered per destination atom from the state before the block.
        let mut s_msg = s.clone();
        let mut v_msg = v.clone();
        s_msg
            .par_chunks_mut(h)
            .zip(v_msg.par_chunks_mut(3 * h))
            .enumerate()
            .for_each_init(
                || vec![T::ZERO; 3 * h],
                |buffer, (i, (sm, vm))| {
                    for e in list.edge_offsets[i]..list.edge_offsets[i + 1] {
                        let j = list.edge_source[e] as usize;
                        let p = list.edge_pair[e] as usize;
                        let sign = if list.edge_forward[e] {
                            T::ONE
                        } else {
                            -T::ONE
                        };
                        let phi_p = phi.get(p, h, buffer);
                        let (phi_s, phi_v1, phi_v2) =
                            (&phi_p[..h], &phi_p[h..2 * h], &phi_p[2 * h..]);
                        // Zipped equal-length slices: no bounds checks, vectorised loops.
                        let sj = &s[j * h..(j + 1) * h];
                        for (m, (&x, &f)) in sm.iter_mut().zip(sj.iter().zip(phi_s)) {
                            *m += x * f;
                        }
                        let vj = &v[j * 3 * h..(j + 1) * 3 * h];
                        for (a, (vm_a, vj_a)) in
                            vm.chunks_exact_mut(h).zip(vj.chunks_exact(h)).enumerate()
                        {
                            let ua = sign * geometry.unit[3 * p + a];
                            for ((m, &x), (&f1, &f2)) in
                                vm_a.iter_mut().zip(vj_a).zip(phi_v1.iter().zip(phi_v2))
                            {
                                *m += x * f1 + ua * f2;
                            }
                        }
                    }
                },
            );
        // Update MLP on [s, |v|], in chunks of atoms.
        let mut norm = vec![T::ZERO; n * h];
        norm.par_chunks_mut(h)
            .zip(v_msg.par_chunks(3 * h))
            .for_each(|(nr, vm)| {
                for c in 0..h {
                    let (x, y, z) = (vm[c], vm[h + c], vm[2 * h + c]);
                    nr[c] = (x * x + y * y + z * z).sqrt();
                }
            });
        let mut update_pre = vec![T::ZERO; n * h];
        let mut update_out = vec![T::ZERO; n * 3 * h];
        update_pre
            .par_chunks_mut(ATOM_CHUNK * h)
            .zip(update_out.par_chunks_mut(ATOM_CHUNK * 3 * h))
            .enumerate()
            .for_each(|(chunk, (pre, out))| {
                let rows = pre.len() / h;
                let first = chunk * ATOM_CHUNK;
                let mut x = vec![T::ZERO; rows * 2 * h];
                for r in 0..rows {
                    x[r * 2 * h..r * 2 * h + h]
                        .copy_from_slice(&s_msg[(first + r) * h..(first + r + 1) * h]);
                    x[r * 2 * h + h..(r + 1) * 2 * h]
                        .copy_from_slice(&norm[(first + r) * h..(first + r + 1) * h]);
                }
                block.update1.forward(&x, rows, pre);
                let act: Vec<T> = pre.iter().map(|&x| silu(x)).collect();
                block.update2.forward(&act, rows, out);
            });
        let mut s_next = s_msg.clone();
        s_next
            .par_chunks_mut(h)
            .zip(update_out.par_chunks(3 * h))
            .for_each(|(sn, out)| {
                for c in 0..h {
                    sn[c] += out[c];
                }
            });
        let v_next = match (&block.mixing, last) {
            (Some(m), false) => {
                let mut v_next = vec![T::ZERO; n * 3 * h];
                v_next
                    .par_chunks_mut(3 * h)
                    .zip(v_msg.par_chunks(3 * h))
                    .zip(update_out.par_chunks(3 * h))
                    .for_each(|((vn, vm), out)| {
                        let (g1, g2) = (&out[h..2 * h], &out[2 * h..]);
                        for a in 0..3 {
                            for c in 0..h {
                                let mixed =
                                    m[a][0] * vm[c] + m[a][1] * vm[h + c] + m[a][2] * vm[2 * h + c];
                                vn[a * h + c] = vm[a * h + c] * g1[c] + mixed * g2[c];
                            }
                        }
                    });
                v_next
            }
            // The last block's vector update never reaches the energy.
            _ => Vec::new(),
        };
        let s_in = std::mem::replace(&mut s, s_next);
        let v_in = std::mem::replace(&mut v, v_next);
        saved.push(BlockSaved {
            s_in,
            v_in,
            v_msg,
            norm,
            update_pre,
            update_out,
            phi: kept,
        });
    }

    // Readout of the local atoms.
    let [head0, head1, head2] = &w.head;
    let (h1, h2) = (head0.n_out, head1.n_out);
    let mut pre0 = vec![T::ZERO; n_local * h1];
    let mut pre1 = vec![T::ZERO; n_local * h2];
    let mut atom_energy_t = vec![T::ZERO; n_local];
    pre0.par_chunks_mut(ATOM_CHUNK * h1)
        .zip(pre1.par_chunks_mut(ATOM_CHUNK * h2))
        .zip(atom_energy_t.par_chunks_mut(ATOM_CHUNK))
        .enumerate()
        .for_each(|(chunk, ((p0, p1), e))| {
            let rows = e.len();
            let x = &s[chunk * ATOM_CHUNK * h..][..rows * h];
            head0.forward(x, rows, p0);
            let a0: Vec<T> = p0.iter().map(|&x| silu(x)).collect();
            head1.forward(&a0, rows, p1);
            let a1: Vec<T> = p1.iter().map(|&x| silu(x)).collect();
            head2.forward(&a1, rows, e);
        });
    let mut results = Results::default();
    let atom_energies: Vec<f64> = (0..n)
        .map(|i| {
            if i < n_local {
                atom_energy_t[i].to_f64()
            } else {
                0.0
            }
        })
        .collect();
    results.energy = atom_energies.iter().sum();
    if request.atom_energies {
        results.atom_energies = atom_energies;
    }
    if !request.needs_gradient() {
        return results;
    }

    // Backward pass. gs, gv: dE/ds, dE/dv of the state leaving the current block.
    let mut gs = vec![T::ZERO; n * h];
    gs[..n_local * h]
        .par_chunks_mut(ATOM_CHUNK * h)
        .zip(pre0.par_chunks(ATOM_CHUNK * h1))
        .zip(pre1.par_chunks(ATOM_CHUNK * h2))
        .for_each(|((g, p0), p1)| {
            let rows = g.len() / h;
            // dE/dE_i = 1 for local atoms.
            let g1: Vec<T> = p1
                .iter()
                .enumerate()
                .map(|(idx, &x)| head2.weight[idx % h2] * silu_grad(x))
                .collect();
            let mut g0 = vec![T::ZERO; rows * h1];
            head1.backward(&g1, rows, &mut g0);
            for (g, &x) in g0.iter_mut().zip(p0) {
                *g = *g * silu_grad(x);
            }
            head0.backward(&g0, rows, g);
        });
    let mut gv: Vec<T> = Vec::new();
    // dE/dd and dE/du_p of every pair, accumulated over blocks.
    let mut grad_distance = vec![T::ZERO; n_pairs];
    let mut grad_unit = vec![T::ZERO; 3 * n_pairs];

    for (l, block) in w.blocks.iter().enumerate().rev() {
        let last = l + 1 == n_blocks;
        let sv = &saved[l];
        // Update backward: gradients w.r.t. s_msg and v_msg.
        let mut gs_msg = gs.clone();
        let mut gv_msg = vec![T::ZERO; n * 3 * h];
        gs_msg
            .par_chunks_mut(ATOM_CHUNK * h)
            .zip(gv_msg.par_chunks_mut(ATOM_CHUNK * 3 * h))
            .enumerate()
            .for_each(|(chunk, (gsm, gvm))| {
                let rows = gsm.len() / h;
                let first = chunk * ATOM_CHUNK;
                let mut g_out = vec![T::ZERO; rows * 3 * h];
                for r in 0..rows {
                    let i = first + r;
                    let go = &mut g_out[r * 3 * h..(r + 1) * 3 * h];
                    go[..h].copy_from_slice(&gs[i * h..(i + 1) * h]);
                    if !last {
                        if let Some(m) = &block.mixing {
                            let vm = &sv.v_msg[i * 3 * h..(i + 1) * 3 * h];
                            let gvo = &gv[i * 3 * h..(i + 1) * 3 * h];
                            for c in 0..h {
                                let (mut g1, mut g2) = (T::ZERO, T::ZERO);
                                for a in 0..3 {
                                    let mixed = m[a][0] * vm[c]
                                        + m[a][1] * vm[h + c]
                                        + m[a][2] * vm[2 * h + c];
                                    g1 += gvo[a * h + c] * vm[a * h + c];
                                    g2 += gvo[a * h + c] * mixed;
                                }
                                go[h + c] = g1;
                                go[2 * h + c] = g2;
                            }
                        }
                    }
                }
                let mut g_act = vec![T::ZERO; rows * h];
                block.update2.backward(&g_out, rows, &mut g_act);
                for (g, &x) in g_act
                    .iter_mut()
                    .zip(&sv.update_pre[first * h..(first + rows) * h])
                {
                    *g = *g * silu_grad(x);
                }
                let mut g_x = vec![T::ZERO; rows * 2 * h];
                block.update1.backward(&g_act, rows, &mut g_x);
                for r in 0..rows {
                    let i = first + r;
                    let gx = &g_x[r * 2 * h..(r + 1) * 2 * h];
                    let vm = &sv.v_msg[i * 3 * h..(i + 1) * 3 * h];
                    let nr = &sv.norm[i * h..(i + 1) * h];
                    let out = &sv.update_out[i * 3 * h..(i + 1) * 3 * h];
                    let gvm_i = &mut gvm[r * 3 * h..(r + 1) * 3 * h];
                    for c in 0..h {
                        gsm[r * h + c] += gx[c];
                        // d|v|/dv = v/|v|, taken as 0 where |v| = 0.
                        let gn = gx[h + c];
                        let scale = if nr[c] > T::ZERO { gn / nr[c] } else { T::ZERO };
                        for a in 0..3 {
                            gvm_i[a * h + c] = scale * vm[a * h + c];
                        }
                    }
                    if !last {
                        if let Some(m) = &block.mixing {
                            let gvo = &gv[i * 3 * h..(i + 1) * 3 * h];
                            let (g1, g2) = (&out[h..2 * h], &out[2 * h..]);
                            for b in 0..3 {
                                for c in 0..h {
                                    let mixed_t = m[0][b] * gvo[c]
                                        + m[1][b] * gvo[h + c]
                                        + m[2][b] * gvo[2 * h + c];
                                    gvm_i[b * h + c] += gvo[b * h + c] * g1[c] + mixed_t * g2[c];
                                }
                            }
                        }
                    }
                }
            });
        // Message backward. The filter is recomputed (exact path) or interpolated
        // again (table path) rather than stored for every block.
        let stored;
        let (z, phi) = match &w.tables {
            Some(_) if keep_phi => (Vec::new(), PhiSource::Stored(&sv.phi)),
            Some(tables) => (Vec::new(), PhiSource::Table(&tables[l], &geometry.distance)),
            None => {
                let (z, values) = filter_forward(block, &geometry.basis, k, h, n_pairs);
                stored = values;
                (z, PhiSource::Stored(&stored))
            }
        };
        let (s_in, v_in) = (&sv.s_in, &sv.v_in);
        // Gradients w.r.t. the block's input state: identity plus the sources of messages.
        // The list is symmetric and phi depends only on the pair, so atom j gathers
        // over its own incoming edges.
        let mut gs_in = gs_msg.clone();
        let mut gv_in = gv_msg.clone();
        gs_in
            .par_chunks_mut(h)
            .zip(gv_in.par_chunks_mut(3 * h))
            .enumerate()
            .for_each_init(
                || vec![T::ZERO; 3 * h],
                |buffer, (j, (gsj, gvj))| {
                    for e in list.edge_offsets[j]..list.edge_offsets[j + 1] {
                        let i = list.edge_source[e] as usize;
                        let p = list.edge_pair[e] as usize;
                        let phi_p = phi.get(p, h, buffer);
                        let gsi = &gs_msg[i * h..(i + 1) * h];
                        for (g, (&x, &f)) in gsj.iter_mut().zip(gsi.iter().zip(&phi_p[..h])) {
                            *g += x * f;
                        }
                        let gvi = &gv_msg[i * 3 * h..(i + 1) * 3 * h];
                        let phi_v1 = &phi_p[h..2 * h];
                        for (gvj_a, gvi_a) in gvj.chunks_exact_mut(h).zip(gvi.chunks_exact(h)) {
                            for (g, (&x, &f)) in gvj_a.iter_mut().zip(gvi_a.iter().zip(phi_v1)) {
                                *g += x * f;
                            }
                        }
                    }
                },
            );
        // dE/dphi of pair p (both directions) into `gp`, and its dE/du_p into `gu`.
        let pair_gradient = |p: usize, buffer: &mut [T], gp: &mut [T], gu: &mut [T]| {
            let (i, j) = (list.pair_i[p] as usize, list.pair_j[p] as usize);
            let u = &geometry.unit[3 * p..3 * p + 3];
            let phi_v2 = &phi.get(p, h, buffer)[2 * h..];
            let (gsi, gsj) = (&gs_msg[i * h..(i + 1) * h], &gs_msg[j * h..(j + 1) * h]);
            let (si, sj) = (&s_in[i * h..(i + 1) * h], &s_in[j * h..(j + 1) * h]);
            let (gvi, gvj) = (
                &gv_msg[i * 3 * h..(i + 1) * 3 * h],
                &gv_msg[j * 3 * h..(j + 1) * 3 * h],
            );
            let (vi, vj) = (
                &v_in[i * 3 * h..(i + 1) * 3 * h],
                &v_in[j * 3 * h..(j + 1) * 3 * h],
            );
            // Edge j -> i (vector +r_p) and edge i -> j (vector -r_p).
            let (gp_s, rest) = gp[..3 * h].split_at_mut(h);
            let (gp_v1, gp_v2) = rest.split_at_mut(h);
            for (g, ((&a, &b), (&c, &d))) in gp_s
                .iter_mut()
                .zip(gsi.iter().zip(sj).zip(gsj.iter().zip(si)))
            {
                *g = a * b + c * d;
            }
            gp_v1.fill(T::ZERO);
            gp_v2.fill(T::ZERO);
            for a in 0..3 {
                let range = a * h..(a + 1) * h;
                let (gvi_a, gvj_a, vi_a, vj_a) = (
                    &gvi[range.clone()],
                    &gvj[range.clone()],
                    &vi[range.clone()],
                    &vj[range],
                );
                let ua = u[a];
                for (((g1, g2), (&x_i, &x_j)), (&y_i, &y_j)) in gp_v1
                    .iter_mut()
                    .zip(gp_v2.iter_mut())
                    .zip(gvi_a.iter().zip(gvj_a))
                    .zip(vi_a.iter().zip(vj_a))
                {
                    *g1 += x_i * y_j + x_j * y_i;
                    *g2 += (x_i - x_j) * ua;
                }
                gu[a] += dot_of_difference(gvi_a, gvj_a, phi_v2);
            }
        };
        if let Some(tables) = &w.tables {
            // dE/dd = dE/dphi . dphi/dd, straight from the table.
            grad_distance
                .par_iter_mut()
                .zip(grad_unit.par_chunks_mut(3))
                .enumerate()
                .for_each_init(
                    || (vec![T::ZERO; 3 * h], vec![T::ZERO; 3 * h]),
                    |(buffer, gp), (p, (gd, gu))| {
                        pair_gradient(p, buffer, gp, gu);
                        *gd += tables[l].gradient_dot(geometry.distance[p], gp);
                    },
                );
        } else {
            let mut g_phi = vec![T::ZERO; n_pairs * 3 * h];
            g_phi
                .par_chunks_mut(3 * h)
                .zip(grad_unit.par_chunks_mut(3))
                .enumerate()
                .for_each_init(
                    || vec![T::ZERO; 3 * h],
                    |buffer, (p, (gp, gu))| pair_gradient(p, buffer, gp, gu),
                );
            // Filter backward to dE/dd, in chunks of pairs.
            grad_distance
                .par_chunks_mut(PAIR_CHUNK)
                .enumerate()
                .for_each(|(chunk, gd)| {
                    let rows = gd.len();
                    let first = chunk * PAIR_CHUNK;
                    let mut g_act = vec![T::ZERO; rows * h];
                    block.filter2.backward(
                        &g_phi[first * 3 * h..(first + rows) * 3 * h],
                        rows,
                        &mut g_act,
                    );
                    for (g, &x) in g_act.iter_mut().zip(&z[first * h..(first + rows) * h]) {
                        *g = *g * silu_grad(x);
                    }
                    let mut g_basis = vec![T::ZERO; rows * k];
                    block.filter1.backward(&g_act, rows, &mut g_basis);
                    for r in 0..rows {
                        let da = &geometry.basis_grad[(first + r) * k..(first + r + 1) * k];
                        let mut acc = T::ZERO;
                        for kk in 0..k {
                            acc += g_basis[r * k + kk] * da[kk];
                        }
                        gd[r] += acc;
                    }
                });
        }
        gs = gs_in;
        gv = gv_in;
    }

    // dE/dr_p for every pair (f64 from here on).
    let mut grad_pair = vec![[0.0f64; 3]; n_pairs];
    grad_pair.par_iter_mut().enumerate().for_each(|(p, g)| {
        let r = list.pair_vector[p];
        let d = geometry.distance[p];
        let gd = grad_distance[p].to_f64();
        let gu = [
            grad_unit[3 * p].to_f64(),
            grad_unit[3 * p + 1].to_f64(),
            grad_unit[3 * p + 2].to_f64(),
        ];
        // u = r / (d + eps): du/dr = I/(d + eps) - r r^T / (d (d + eps)^2).
        let de = d + UNIT_EPS;
        let r_dot_gu = r[0] * gu[0] + r[1] * gu[1] + r[2] * gu[2];
        for c in 0..3 {
            g[c] = gd * r[c] / d + gu[c] / de - r[c] * r_dot_gu / (d * de * de);
        }
    });
    gather_pair_gradients(list, &grad_pair, request, &mut results);
    results
}

/// Forces, virial and per-atom virials from dE/dr_p of every pair (shared by every
/// architecture): gathered per atom in CSR order and summed in fixed chunks, so the
/// result is bitwise the same for any thread count.
pub(crate) fn gather_pair_gradients(
    list: &NeighborList,
    grad_pair: &[[f64; 3]],
    request: &Request,
    results: &mut Results,
) {
    let n = list.n_atoms;
    let n_pairs = list.n_pairs();
    if request.forces {
        // r_p = r_j - r_i + shift: F_i = +G_p, F_j = -G_p; gathered per atom in CSR order.
        let mut forces = vec![[0.0f64; 3]; n];
        forces.par_iter_mut().enumerate().for_each(|(i, f)| {
            for e in list.edge_offsets[i]..list.edge_offsets[i + 1] {
                let p = list.edge_pair[e] as usize;
                let g = grad_pair[p];
                let sign = if list.edge_forward[e] { 1.0 } else { -1.0 };
                for c in 0..3 {
                    f[c] += sign * g[c];
                }
            }
        });
        results.forces = forces;
    }
    let pair_virial = |p: usize| -> [[f64; 3]; 3] {
        let (r, g) = (list.pair_vector[p], grad_pair[p]);
        let mut w = [[0.0; 3]; 3];
        for a in 0..3 {
            for b in 0..3 {
                w[a][b] = -r[a] * g[b];
            }
        }
        w
    };
    if request.virial {
        let partial: Vec<[[f64; 3]; 3]> = (0..n_pairs.div_ceil(VIRIAL_CHUNK))
            .into_par_iter()
            .map(|chunk| {
                let mut acc = [[0.0; 3]; 3];
                for p in chunk * VIRIAL_CHUNK..((chunk + 1) * VIRIAL_CHUNK).min(n_pairs) {
                    let w = pair_virial(p);
                    for a in 0..3 {
                        for b in 0..3 {
                            acc[a][b] += w[a][b];
                        }
                    }
                }
                acc
            })
            .collect();
        for w in partial {
            for a in 0..3 {
                for b in 0..3 {
                    results.virial[a][b] += w[a][b];
                }
            }
        }
    }
    if request.atom_virials {
        // Each edge's term split half to each of its atoms; both edges of a pair
        // together give -r_p G_p^T, so each atom of the pair receives half of that.
        let mut atom_virials = vec![[[0.0f64; 3]; 3]; n];
        atom_virials.par_iter_mut().enumerate().for_each(|(i, wi)| {
            for e in list.edge_offsets[i]..list.edge_offsets[i + 1] {
                let p = list.edge_pair[e] as usize;
                // A self-image pair appears twice in its atom's list: each time half.
                let w = pair_virial(p);
                for a in 0..3 {
                    for b in 0..3 {
                        wi[a][b] += 0.5 * w[a][b];
                    }
                }
            }
        });
        results.atom_virials = atom_virials;
    }
}
