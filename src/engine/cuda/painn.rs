//! PaiNN (architecture `painn`) on the GPU, f32 and f64: the same equations and the
//! same order of operations as the CPU engine (`src/engine/cpu/painn.rs`).
//!
//! The host keeps the neighbour list (the shared `neighbors::build`, cutoff rc + skin,
//! reused while no atom moved more than skin / 2) and recomputes the f64 pair vectors
//! every call; the GPU forms the pair geometry and basis, runs every per-atom and
//! per-pair stage (`kernels/painn_*.cu`: dense layers with runtime widths, messages
//! aggregated per destination over the CSR, the analytic backward pass), and the
//! per-pair gradients come back to the host, which forms forces and virial with the
//! CPU engine's shared gather (f64, fixed order). No atomics anywhere: results are
//! bitwise repeatable. Not yet: GPU neighbour list, persistent buffers, CUDA graphs,
//! fused/tiled MLP kernels (see docs/cuda.md).

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaSlice, CudaStream, CudaView, DeviceRepr};
use cudarc::nvrtc::Ptx;

use rayon::prelude::*;

use super::engine::{KeepCurrent, Profile};
use super::kernels::{self as k, PainnKernels, Real};
use super::{device_error, runtime};
use crate::engine::cpu::gather_pair_gradients;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::painn::atom_energies;
use crate::model::{Linear, ModelFile, PainnWeights};
use crate::neighbors::{self, NeighborList};
use crate::options::{Options, Precision};
use crate::system::{Request, Results, System};

/// The packed edge word's flag for the reverse edge of a pair (as kernels/common.cuh).
const EDGE_REVERSE: u32 = 0x8000_0000;
/// HIDDEN the shared NVRTC program is compiled with; the PaiNN kernels ignore it.
const PROGRAM_HIDDEN: usize = 32;

fn upload<T: DeviceRepr + Default + Copy>(
    stream: &Arc<CudaStream>,
    values: &[T],
) -> Result<CudaSlice<T>> {
    if values.is_empty() {
        return stream.clone_htod(&[T::default()]).map_err(device_error);
    }
    stream.clone_htod(values).map_err(device_error)
}

fn upload_f64<T: Real>(stream: &Arc<CudaStream>, values: &[f64]) -> Result<CudaSlice<T>> {
    let host: Vec<T> = values.iter().map(|&x| T::from_f64(x)).collect();
    upload(stream, &host)
}

fn zeros<T: Real>(stream: &Arc<CudaStream>, n: usize) -> Result<CudaSlice<T>> {
    stream.alloc_zeros::<T>(n.max(1)).map_err(device_error)
}

struct DenseDev<T> {
    n_in: usize,
    n_out: usize,
    /// n_out x n_in (PyTorch layout), for the backward pass.
    weight: CudaSlice<T>,
    /// n_in x n_out, for the forward pass (coalesced reads).
    weight_t: CudaSlice<T>,
    bias: CudaSlice<T>,
}

/// n_in x n_out transpose of a PyTorch-layout (n_out x n_in) weight.
fn transposed(weight: &[f64], n_out: usize, n_in: usize) -> Vec<f64> {
    let mut t = vec![0.0; weight.len()];
    for o in 0..n_out {
        for k in 0..n_in {
            t[k * n_out + o] = weight[o * n_in + k];
        }
    }
    t
}

impl<T: Real> DenseDev<T> {
    fn new(stream: &Arc<CudaStream>, layer: &Linear) -> Result<Self> {
        Ok(DenseDev {
            n_in: layer.n_in,
            n_out: layer.n_out,
            weight: upload_f64(stream, &layer.weight)?,
            weight_t: upload_f64(stream, &transposed(&layer.weight, layer.n_out, layer.n_in))?,
            bias: upload_f64(stream, &layer.bias)?,
        })
    }
}

struct BlockDev<T> {
    context1: DenseDev<T>,
    context2: DenseDev<T>,
    channel_mix: DenseDev<T>,
    mix1: DenseDev<T>,
    mix2: DenseDev<T>,
    filter_offset: usize,
}

/// What the backward pass needs from one block's forward pass (device buffers).
struct Saved<T> {
    raw: CudaSlice<T>,
    context_pre: CudaSlice<T>,
    x: CudaSlice<T>,
    mu_in: CudaSlice<T>,
    vw: CudaSlice<T>,
    norm: CudaSlice<T>,
    mix_pre: CudaSlice<T>,
    mix_out: CudaSlice<T>,
}

/// Device weights and kernels of one precision.
struct PainnGpu<T> {
    stream: Arc<CudaStream>,
    kernels: PainnKernels,
    f: usize,
    num_rbf: usize,
    cutoff: f64,
    epsilon: T,
    embedding: Vec<f64>,
    rbf_offsets_dev: CudaSlice<f64>,
    rbf_widths_dev: CudaSlice<f64>,
    filter_weight: CudaSlice<T>,
    /// The filter's weight transposed (K x all blocks' 3F outputs).
    filter_weight_t: CudaSlice<T>,
    filter_outputs: usize,
    filter_bias: CudaSlice<T>,
    blocks: Vec<BlockDev<T>>,
    readout: Vec<DenseDev<T>>,
    energy_scale: f64,
    atom_energy: Vec<f64>,
    /// Per-stage times (MLFF_CUDA_PROFILE; synchronises after each stage).
    profile: std::cell::RefCell<Option<Profile>>,
    /// Skin of the cached neighbour list (`MLFF_CUDA_SKIN`, as the student's engine).
    skin: f64,
    cached: Option<CachedList>,
}

/// A neighbour list with cutoff rc + skin and what it was built for.
struct CachedList {
    list: NeighborList,
    positions: Vec<[f64; 3]>,
    cell: Option<[[f64; 3]; 3]>,
    pbc: [bool; 3],
}

/// Host-side per-pair data uploaded for one call.
struct PairData<T> {
    unit: CudaSlice<T>,
    basis: CudaSlice<T>,
    basis_grad: CudaSlice<T>,
    cut: CudaSlice<T>,
    cut_grad: CudaSlice<T>,
    pair_i: CudaSlice<u32>,
    pair_j: CudaSlice<u32>,
    offsets: CudaSlice<u32>,
    source: CudaSlice<u32>,
    edge_word: CudaSlice<u32>,
}

impl<T: Real> PainnGpu<T> {
    fn new(
        stream: Arc<CudaStream>,
        module: &Arc<cudarc::driver::CudaModule>,
        w: &PainnWeights,
    ) -> Result<Self> {
        let c = &w.config;
        let kernels = PainnKernels::load::<T>(module)?;
        let blocks = (0..c.num_blocks)
            .map(|l| {
                let (i, m) = (&w.interactions[l], &w.mixings[l]);
                Ok(BlockDev {
                    context1: DenseDev::new(&stream, &i.context1)?,
                    context2: DenseDev::new(&stream, &i.context2)?,
                    channel_mix: DenseDev::new(&stream, &m.channel_mix)?,
                    mix1: DenseDev::new(&stream, &m.context1)?,
                    mix2: DenseDev::new(&stream, &m.context2)?,
                    filter_offset: w.filter_offset(l),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let readout = w
            .readout
            .iter()
            .map(|layer| DenseDev::new(&stream, layer))
            .collect::<Result<Vec<_>>>()?;
        let rbf_offsets_dev = upload(&stream, &w.rbf_offsets)?;
        let rbf_widths_dev = upload(&stream, &w.rbf_widths)?;
        Ok(PainnGpu {
            filter_weight: upload_f64(&stream, &w.filter.weight)?,
            filter_weight_t: upload_f64(
                &stream,
                &transposed(&w.filter.weight, w.filter.n_out, w.filter.n_in),
            )?,
            filter_outputs: w.filter.n_out,
            filter_bias: upload_f64(&stream, &w.filter.bias)?,
            stream,
            kernels,
            f: c.hidden,
            num_rbf: c.num_rbf,
            cutoff: c.cutoff,
            epsilon: T::from_f64(c.epsilon),
            embedding: w.embedding.clone(),
            rbf_offsets_dev,
            rbf_widths_dev,
            blocks,
            readout,
            energy_scale: w.energy_scale,
            atom_energy: w.atom_energy.clone(),
            skin: super::engine::skin(),
            cached: None,
            profile: std::cell::RefCell::new(
                std::env::var_os("MLFF_CUDA_PROFILE").map(|_| Profile::default()),
            ),
        })
    }

    fn mark(&self, name: &'static str) {
        if let Some(p) = self.profile.borrow_mut().as_mut() {
            p.mark(&self.stream, name);
        }
    }

    fn pair_data(&self, list: &NeighborList) -> Result<PairData<T>> {
        let (p, k) = (list.n_pairs(), self.num_rbf);
        let s = &self.stream;
        // The pair vectors go up in f64; the GPU forms d, u, the basis and the cutoff.
        let vectors: Vec<f64> = list.pair_vector.iter().flatten().copied().collect();
        let vectors = upload(s, &vectors)?;
        let mut unit = zeros(s, 3 * p)?;
        let mut basis = zeros(s, k * p)?;
        let mut basis_grad = zeros(s, k * p)?;
        let mut cut = zeros(s, p)?;
        let mut cut_grad = zeros(s, p)?;
        k::painn_pair_basis(
            s,
            &self.kernels,
            p,
            k,
            &vectors,
            &self.rbf_offsets_dev,
            &self.rbf_widths_dev,
            self.cutoff,
            k::PairBasisOut {
                unit: &mut unit,
                basis: &mut basis,
                basis_grad: &mut basis_grad,
                cut: &mut cut,
                cut_grad: &mut cut_grad,
            },
        )?;
        let offsets: Vec<u32> = list.edge_offsets.iter().map(|&o| o as u32).collect();
        let edge_word: Vec<u32> = list
            .edge_pair
            .iter()
            .zip(&list.edge_forward)
            .map(|(&pair, &forward)| if forward { pair } else { pair | EDGE_REVERSE })
            .collect();
        Ok(PairData {
            unit,
            basis,
            basis_grad,
            cut,
            cut_grad,
            pair_i: upload(s, &list.pair_i)?,
            pair_j: upload(s, &list.pair_j)?,
            offsets: upload(s, &offsets)?,
            source: upload(s, &list.edge_source)?,
            edge_word: upload(s, &edge_word)?,
        })
    }

    /// (pre-activation, silu(pre-activation)) of a dense layer on `rows` rows: the
    /// backward pass needs the pre-activation.
    fn dense_silu(
        &self,
        rows: usize,
        layer: &DenseDev<T>,
        x: &CudaView<T>,
    ) -> Result<(CudaSlice<T>, CudaSlice<T>)> {
        let mut pre = zeros(&self.stream, rows * layer.n_out)?;
        let out = self.dense_into(rows, layer, x, Some(&mut pre))?;
        Ok((pre, out))
    }

    /// Output of a dense layer without activation on `rows` rows.
    fn dense_linear(
        &self,
        rows: usize,
        layer: &DenseDev<T>,
        x: &CudaView<T>,
    ) -> Result<CudaSlice<T>> {
        self.dense_into(rows, layer, x, None)
    }

    /// A dense layer, with a SiLU when `pre` receives the pre-activation.
    fn dense_into(
        &self,
        rows: usize,
        layer: &DenseDev<T>,
        x: &CudaView<T>,
        pre: Option<&mut CudaSlice<T>>,
    ) -> Result<CudaSlice<T>> {
        let mut out = zeros(&self.stream, rows * layer.n_out)?;
        let silu = pre.is_some();
        // Without a SiLU the kernel does not touch `pre`: a 1-element placeholder.
        let mut placeholder;
        let pre = match pre {
            Some(p) => p,
            None => {
                placeholder = zeros(&self.stream, 1)?;
                &mut placeholder
            }
        };
        k::painn_dense(
            &self.stream,
            &self.kernels,
            rows,
            layer.n_in,
            layer.n_out,
            x,
            &layer.weight_t.as_view(),
            layer.n_out,
            &layer.bias.as_view(),
            silu,
            &mut pre.as_view_mut(),
            &mut out.as_view_mut(),
        )?;
        Ok(out)
    }

    /// New buffer: gy W (times silu'(input_pre) when given), rows x n_in.
    fn dense_backward(
        &self,
        rows: usize,
        layer: &DenseDev<T>,
        gy: &CudaView<T>,
        input_pre: Option<&CudaView<T>>,
    ) -> Result<CudaSlice<T>> {
        let mut gx = zeros(&self.stream, rows * layer.n_in)?;
        self.dense_backward_into(rows, layer, gy, input_pre, false, &mut gx)?;
        Ok(gx)
    }

    /// gx (+)= gy W (times silu'(input_pre) when given): added when `accumulate`.
    fn dense_backward_into(
        &self,
        rows: usize,
        layer: &DenseDev<T>,
        gy: &CudaView<T>,
        input_pre: Option<&CudaView<T>>,
        accumulate: bool,
        gx: &mut CudaSlice<T>,
    ) -> Result<()> {
        k::painn_dense_backward(
            &self.stream,
            &self.kernels,
            rows,
            layer.n_in,
            layer.n_out,
            gy,
            &layer.weight.as_view(),
            input_pre,
            accumulate,
            &mut gx.as_view_mut(),
        )
    }

    fn run(&mut self, system: &System, request: &Request) -> Result<Results> {
        if let Some(p) = self.profile.borrow_mut().as_mut() {
            p.begin();
        }
        let cached = self.take_list(system)?;
        self.mark("neighbor list");
        let results = self.run_with_list(system, request, &cached.list);
        self.cached = Some(cached);
        results
    }

    /// The neighbour list for `system`: the cached one (cutoff rc + skin) when sizes,
    /// cell and pbc are unchanged and no atom moved more than skin / 2 since it was
    /// built, with every pair vector recomputed from the current positions (the
    /// host's formula, f64); else a new one. Pairs beyond rc stay in the list with
    /// fc = dfc/dd = 0, so they add exact zeros to every sum.
    fn take_list(&mut self, system: &System) -> Result<CachedList> {
        let positions = system.positions;
        if let Some(mut c) = self.cached.take() {
            // As the student's engine: a hair less than skin / 2, for rounding.
            let limit = 0.5 * self.skin * (1.0 - 1e-9);
            let same_layout = c.positions.len() == positions.len()
                && c.cell == system.cell
                && c.pbc == system.pbc;
            let moved = !same_layout
                || positions.par_iter().zip(&c.positions).any(|(a, b)| {
                    let d = [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
                    let d2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
                    if limit == 0.0 {
                        a != b
                    } else {
                        d2 > limit * limit
                    }
                });
            if !moved {
                let cell = system.cell.unwrap_or([[0.0; 3]; 3]);
                let NeighborList {
                    pair_i,
                    pair_j,
                    pair_vector,
                    pair_shift,
                    ..
                } = &mut c.list;
                pair_vector.par_iter_mut().enumerate().for_each(|(p, v)| {
                    *v = neighbors::pair_vector(
                        &positions[pair_i[p] as usize],
                        &positions[pair_j[p] as usize],
                        pair_shift[p],
                        &cell,
                    );
                });
                if let Some(p) = pair_vector.iter().position(|v| neighbors::norm(v) == 0.0) {
                    return Err(Error::invalid(format!(
                        "atoms {} and {} are at the same position (shift {:?})",
                        pair_i[p], pair_j[p], pair_shift[p]
                    )));
                }
                return Ok(c);
            }
        }
        let list = neighbors::build(
            positions,
            system.cell.as_ref(),
            system.pbc,
            self.cutoff + self.skin,
        )?;
        Ok(CachedList {
            list,
            positions: positions.to_vec(),
            cell: system.cell,
            pbc: system.pbc,
        })
    }

    fn run_with_list(
        &self,
        system: &System,
        request: &Request,
        list: &NeighborList,
    ) -> Result<Results> {
        let (f, kb) = (self.f, self.num_rbf);
        let n = system.n_atoms();
        let n_local = system.n_local;
        let n_pairs = list.n_pairs();
        let st = self.stream.clone();
        let pd = self.pair_data(list)?;
        self.mark("pair data (host)");
        let edges = (&pd.offsets, &pd.source, &pd.edge_word);

        let mut q0 = vec![0.0f64; n * f];
        for (i, row) in q0.chunks_exact_mut(f).enumerate() {
            let z = system.numbers[i] as usize;
            row.copy_from_slice(&self.embedding[z * f..(z + 1) * f]);
        }
        let mut q: CudaSlice<T> = upload_f64(&st, &q0)?;
        let mut mu: CudaSlice<T> = zeros(&st, n * 3 * f)?;
        let mut saved: Vec<Saved<T>> = Vec::with_capacity(self.blocks.len());
        let zero_bias: CudaSlice<T> = zeros(&st, 2 * f)?;

        for block in &self.blocks {
            // Filter before the cutoff: Wf phi + bf for this block's slice (P x 3F).
            let width = 3 * f;
            let off = block.filter_offset;
            let mut raw = zeros(&st, n_pairs * width)?;
            let mut unused: CudaSlice<T> = zeros(&st, 1)?;
            k::painn_dense(
                &st,
                &self.kernels,
                n_pairs,
                kb,
                width,
                &pd.basis.as_view(),
                &self.filter_weight_t.slice(off..),
                self.filter_outputs,
                &self.filter_bias.slice(off..off + width),
                false,
                &mut unused.as_view_mut(),
                &mut raw.as_view_mut(),
            )?;
            self.mark("filter");
            let (context_pre, context_act) = self.dense_silu(n, &block.context1, &q.as_view())?;
            let x = self.dense_linear(n, &block.context2, &context_act.as_view())?;
            self.mark("context MLP");
            let mut q1 = zeros(&st, n * f)?;
            let mut mu1 = zeros(&st, n * 3 * f)?;
            k::painn_message(
                &st,
                &self.kernels,
                n,
                f,
                edges,
                &raw.as_view(),
                &pd.cut,
                &pd.unit,
                &x.as_view(),
                &q.as_view(),
                &mu.as_view(),
                &mut q1.as_view_mut(),
                &mut mu1.as_view_mut(),
            )?;
            self.mark("message");
            // Channel mix of every Cartesian component: 3N rows of F -> [V, W].
            let mut vw = zeros(&st, 3 * n * 2 * f)?;
            let mut unused: CudaSlice<T> = zeros(&st, 1)?;
            let cm = &block.channel_mix;
            k::painn_dense(
                &st,
                &self.kernels,
                3 * n,
                cm.n_in,
                cm.n_out,
                &mu1.as_view(),
                &cm.weight_t.as_view(),
                cm.n_out,
                &zero_bias.as_view(),
                false,
                &mut unused.as_view_mut(),
                &mut vw.as_view_mut(),
            )?;
            self.mark("channel mix");
            let mut norm = zeros(&st, n * f)?;
            let mut context = zeros(&st, n * 2 * f)?;
            k::painn_mixing(
                &st,
                &self.kernels,
                n,
                f,
                self.epsilon,
                &vw.as_view(),
                &q1.as_view(),
                &mut norm.as_view_mut(),
                &mut context.as_view_mut(),
            )?;
            let (mix_pre, mix_act) = self.dense_silu(n, &block.mix1, &context.as_view())?;
            let mix_out = self.dense_linear(n, &block.mix2, &mix_act.as_view())?;
            self.mark("mixing MLP + norm");
            let mut q2 = zeros(&st, n * f)?;
            let mut mu2 = zeros(&st, n * 3 * f)?;
            k::painn_mixing_update(
                &st,
                &self.kernels,
                n,
                f,
                &vw.as_view(),
                &mix_out.as_view(),
                &q1.as_view(),
                &mu1.as_view(),
                &mut q2.as_view_mut(),
                &mut mu2.as_view_mut(),
            )?;
            self.mark("mixing update");
            q = q2;
            let mu_in = std::mem::replace(&mut mu, mu2);
            saved.push(Saved {
                raw,
                context_pre,
                x,
                mu_in,
                vw,
                norm,
                mix_pre,
                mix_out,
            });
        }

        // Readout of the local atoms.
        let mut pre: Vec<CudaSlice<T>> = Vec::with_capacity(self.readout.len());
        let mut h: Option<CudaSlice<T>> = None;
        for (index, layer) in self.readout.iter().enumerate() {
            let last = index + 1 == self.readout.len();
            let input = match &h {
                Some(buffer) => buffer.as_view(),
                None => q.slice(0..n_local * f),
            };
            // pre[k]: the pre-activation of layer k, every layer but the last.
            h = Some(if last {
                self.dense_linear(n_local, layer, &input)?
            } else {
                let (p, out) = self.dense_silu(n_local, layer, &input)?;
                pre.push(p);
                out
            });
        }
        let y: Vec<T> = match (&h, n_local) {
            (Some(buffer), 1..) => st
                .clone_dtoh(&buffer.slice(0..n_local))
                .map_err(device_error)?,
            _ => Vec::new(),
        };
        let mut results = Results::default();
        let atom_energies = atom_energies(
            self.energy_scale,
            &self.atom_energy,
            system.numbers,
            n_local,
            |i| y[i].to_f64(),
        );
        results.energy = atom_energies.iter().sum();
        if request.atom_energies {
            results.atom_energies = atom_energies;
        }
        if !request.needs_gradient() {
            return Ok(results);
        }

        // Backward through the readout: dE/dq of the final state (local rows only).
        let mut gq: CudaSlice<T> = zeros(&st, n * f)?;
        if n_local > 0 {
            let mut g: CudaSlice<T> = upload_f64(&st, &vec![self.energy_scale; n_local])?;
            for index in (0..self.readout.len()).rev() {
                let layer = &self.readout[index];
                if index == 0 {
                    k::painn_dense_backward(
                        &st,
                        &self.kernels,
                        n_local,
                        layer.n_in,
                        layer.n_out,
                        &g.as_view(),
                        &layer.weight.as_view(),
                        None,
                        false,
                        &mut gq.slice_mut(0..n_local * f),
                    )?;
                } else {
                    g = self.dense_backward(
                        n_local,
                        layer,
                        &g.as_view(),
                        Some(&pre[index - 1].as_view()),
                    )?;
                }
            }
        }
        self.mark("readout");
        let mut gmu: CudaSlice<T> = zeros(&st, n * 3 * f)?;
        let mut g_unit: CudaSlice<T> = zeros(&st, 3 * n_pairs)?;
        let mut g_distance: CudaSlice<T> = zeros(&st, n_pairs)?;
        let mut partial: CudaSlice<T> = zeros(&st, 4 * k::PAINN_LANES * n_pairs)?;
        for (l, block) in self.blocks.iter().enumerate().rev() {
            let s = &saved[l];
            let mut g_out = zeros(&st, n * 3 * f)?;
            k::painn_mixing_output_grad(
                &st,
                &self.kernels,
                n,
                f,
                &s.vw.as_view(),
                &gq.as_view(),
                &gmu.as_view(),
                &mut g_out.as_view_mut(),
            )?;
            let g_act =
                self.dense_backward(n, &block.mix2, &g_out.as_view(), Some(&s.mix_pre.as_view()))?;
            let g_context = self.dense_backward(n, &block.mix1, &g_act.as_view(), None)?;
            let mut gq1 = zeros(&st, n * f)?;
            let mut g_vw = zeros(&st, 3 * n * 2 * f)?;
            k::painn_mixing_input_grad(
                &st,
                &self.kernels,
                n,
                f,
                &s.vw.as_view(),
                &s.mix_out.as_view(),
                &s.norm.as_view(),
                &gq.as_view(),
                &gmu.as_view(),
                &g_context.as_view(),
                &mut gq1.as_view_mut(),
                &mut g_vw.as_view_mut(),
            )?;
            // gmu becomes dE/dmu after the messages (gmu + channel-mix backward).
            self.dense_backward_into(
                3 * n,
                &block.channel_mix,
                &g_vw.as_view(),
                None,
                true,
                &mut gmu,
            )?;
            self.mark("bwd mixing");
            let gmu1 = gmu;
            let mut gx = zeros(&st, n * 3 * f)?;
            let mut gmu_in = zeros(&st, n * 3 * f)?;
            k::painn_message_backward(
                &st,
                &self.kernels,
                n,
                f,
                edges,
                &s.raw.as_view(),
                &pd.cut,
                &pd.unit,
                &s.x.as_view(),
                &s.mu_in.as_view(),
                &gq1.as_view(),
                &gmu1.as_view(),
                &mut gx.as_view_mut(),
                &mut gmu_in.as_view_mut(),
            )?;
            self.mark("bwd message");
            let mut g_filter = zeros(&st, n_pairs * 3 * f)?;
            let mut g_cut = zeros(&st, n_pairs)?;
            k::painn_pair_gradient(
                &st,
                &self.kernels,
                n_pairs,
                f,
                &pd.pair_i,
                &pd.pair_j,
                &s.raw.as_view(),
                &pd.cut,
                &pd.unit,
                &s.x.as_view(),
                &s.mu_in.as_view(),
                &gq1.as_view(),
                &gmu1.as_view(),
                &mut g_filter,
                &mut partial,
                &mut g_cut,
                &mut g_unit,
            )?;
            self.mark("bwd pair gradient");
            let off = block.filter_offset;
            let mut g_basis = zeros(&st, n_pairs * kb)?;
            k::painn_dense_backward(
                &st,
                &self.kernels,
                n_pairs,
                kb,
                3 * f,
                &g_filter.as_view(),
                &self.filter_weight.slice(off * kb..(off + 3 * f) * kb),
                None,
                false,
                &mut g_basis.as_view_mut(),
            )?;
            k::painn_distance_gradient(
                &st,
                &self.kernels,
                n_pairs,
                kb,
                &g_basis,
                &pd.basis_grad,
                &g_cut,
                &pd.cut_grad,
                &mut g_distance,
            )?;
            self.mark("bwd filter");
            let g_act = self.dense_backward(
                n,
                &block.context2,
                &gx.as_view(),
                Some(&s.context_pre.as_view()),
            )?;
            self.dense_backward_into(n, &block.context1, &g_act.as_view(), None, true, &mut gq1)?;
            self.mark("bwd context MLP");
            gq = gq1;
            gmu = gmu_in;
        }
        let (gd, gu): (Vec<T>, Vec<T>) = if n_pairs > 0 {
            (
                st.clone_dtoh(&g_distance.slice(0..n_pairs))
                    .map_err(device_error)?,
                st.clone_dtoh(&g_unit.slice(0..3 * n_pairs))
                    .map_err(device_error)?,
            )
        } else {
            (Vec::new(), Vec::new())
        };
        // dE/dr_p = dE/dd u + (dE/du - (dE/du . u) u) / d, in f64.
        self.mark("download");
        let grad_pair: Vec<[f64; 3]> = (0..n_pairs)
            .into_par_iter()
            .map(|p| {
                let r = list.pair_vector[p];
                let d = neighbors::norm(&r);
                let u = [r[0] / d, r[1] / d, r[2] / d];
                let g = [
                    gu[3 * p].to_f64(),
                    gu[3 * p + 1].to_f64(),
                    gu[3 * p + 2].to_f64(),
                ];
                let along = g[0] * u[0] + g[1] * u[1] + g[2] * u[2];
                let dd = gd[p].to_f64();
                [0, 1, 2].map(|c| dd * u[c] + (g[c] - along * u[c]) / d)
            })
            .collect();
        gather_pair_gradients(list, &grad_pair, request, &mut results);
        self.mark("forces (host)");
        Ok(results)
    }
}

enum Inner {
    F32(PainnGpu<f32>),
    F64(PainnGpu<f64>),
}

/// The CUDA engine for PaiNN models.
pub struct CudaPainnEngine {
    /// `None` only while dropping (see `Drop`).
    inner: Option<Inner>,
    description: String,
    _file: Arc<ModelFile>,
    /// `None` only while dropping: released inside `Drop`'s context guard, since
    /// releasing a primary context binds it to the calling thread.
    ctx: Option<Arc<CudaContext>>,
}

impl CudaPainnEngine {
    pub fn new(file: Arc<ModelFile>, options: &Options) -> Result<Self> {
        let _keep = KeepCurrent::new();
        let weights = file
            .weights
            .painn()
            .ok_or_else(|| Error::Internal("the PaiNN GPU engine needs a PaiNN model".into()))?;
        let ordinal = usize::try_from(options.device_index).map_err(|_| {
            Error::invalid(format!("bad CUDA device index {}", options.device_index))
        })?;
        let count = cudarc::driver::result::device::get_count().map_err(device_error)?;
        if ordinal >= count as usize {
            return Err(Error::Device(format!(
                "CUDA device {ordinal} requested but only {count} present"
            )));
        }
        let ctx = CudaContext::new(ordinal).map_err(device_error)?;
        // SAFETY: every buffer of this engine is used on its one stream.
        unsafe { ctx.disable_event_tracking() };
        let (major, minor) = ctx.compute_capability().map_err(device_error)?;
        let ptx = runtime::cached_ptx(&format!("sm_{major}{minor}"), PROGRAM_HIDDEN)?;
        let module = ctx.load_module(Ptx::from_src(ptx)).map_err(device_error)?;
        let stream = ctx.new_stream().map_err(device_error)?;
        keep_pool_memory(&ctx);
        let name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        let (inner, mode) = match options.precision {
            Precision::F64 => (Inner::F64(PainnGpu::new(stream, &module, weights)?), "f64"),
            Precision::F32 => (Inner::F32(PainnGpu::new(stream, &module, weights)?), "f32"),
            Precision::Mixed => (
                Inner::F32(PainnGpu::new(stream, &module, weights)?),
                "mixed=f32",
            ),
        };
        Ok(CudaPainnEngine {
            inner: Some(inner),
            description: format!("cuda:{ordinal} ({name}, {mode}, painn)"),
            _file: file,
            ctx: Some(ctx),
        })
    }
}

/// This engine allocates its per-call buffers from the device's stream-ordered memory
/// pool (cudarc's allocations). By default the pool gives freed memory back to the
/// driver at every synchronisation, so each call mapped hundreds of MB anew; keeping
/// it in the pool makes the next call's allocations cheap. Best effort: without pool
/// support nothing changes. The pool is trimmed when the engine is dropped.
fn keep_pool_memory(ctx: &CudaContext) {
    if let Some(pool) = default_pool(ctx) {
        let mut threshold: u64 = u64::MAX;
        // SAFETY: a valid pool handle; the attribute takes a pointer to a u64.
        unsafe {
            let _ = cudarc::driver::sys::cuMemPoolSetAttribute(
                pool,
                cudarc::driver::sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                (&mut threshold as *mut u64).cast(),
            );
        }
    }
}

/// Gives the default pool's unused memory back to the driver (see `keep_pool_memory`).
fn trim_pool_memory(ctx: &CudaContext) {
    if let Some(pool) = default_pool(ctx) {
        // SAFETY: a valid pool handle; trimming only releases unused memory.
        unsafe {
            let _ = cudarc::driver::sys::cuMemPoolTrimTo(pool, 0);
        }
    }
}

/// The default stream-ordered memory pool of the context's device, where supported.
fn default_pool(ctx: &CudaContext) -> Option<cudarc::driver::sys::CUmemoryPool> {
    use cudarc::driver::sys;
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    // SAFETY: `pool` receives the handle; the device comes from a live context.
    let status = unsafe { sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) };
    (status == sys::CUresult::CUDA_SUCCESS && !pool.is_null()).then_some(pool)
}

impl Drop for CudaPainnEngine {
    /// Frees the device buffers (cudarc binds its context to do so) and gives the
    /// calling thread back its current context, as every call does.
    fn drop(&mut self) {
        let _keep = KeepCurrent::new();
        let profile = match &self.inner {
            Some(Inner::F32(g)) => g.profile.borrow().clone(),
            Some(Inner::F64(g)) => g.profile.borrow().clone(),
            None => None,
        };
        if let Some(p) = profile {
            p.print(&self.description);
        }
        self.inner = None;
        if let Some(ctx) = &self.ctx {
            if ctx.bind_to_thread().is_ok() {
                let _ = ctx.synchronize();
                trim_pool_memory(ctx);
            }
        }
        self.ctx = None;
    }
}

impl Engine for CudaPainnEngine {
    fn compute(&mut self, system: &System, request: &Request) -> Result<Results> {
        let _keep = KeepCurrent::new();
        match &mut self.inner {
            Some(Inner::F32(g)) => g.run(system, request),
            Some(Inner::F64(g)) => g.run(system, request),
            None => Err(Error::Internal("the PaiNN GPU engine was dropped".into())),
        }
    }
    fn description(&self) -> String {
        self.description.clone()
    }
    fn is_gpu(&self) -> bool {
        true
    }
}
