//! PaiNN on the CPU (f64 reference and f32), schnetpack 2.2 semantics.
//!
//! Edge e = (j -> i) with r = r_j - r_i + shift, d = |r|, u = r / d.
//! Filter of block l: w = fc(d) (Wf phi(d) + bf)[3F l .. 3F (l + 1)] (slice 0 when shared),
//! phi_k = exp(-(d - mu_k)^2 / (2 sigma_k^2)), fc = 0.5 (cos(pi d / rc) + 1) for d < rc.
//! Block l, state q (F), mu (3 x F) per atom:
//!   interaction: x = C2 silu(C1 q + c1) + c2 = [x_s, x_R, x_M];
//!     q_i += sum_e w_s x_s,j;  mu_i += sum_e (w_R x_R,j) u_e + (w_M x_M,j) mu_j
//!   mixing: [V, W] = M mu (per Cartesian component); n = sqrt(sum_c V_c^2 + eps);
//!     [a, b, c] = D2 silu(D1 [q, n] + d1) + d2;
//!     q += a + c (sum_c V_c W_c);  mu += b W
//! Energy: E = scale sum_i MLP(q_i) + sum_i atom_energy[Z_i] over local atoms.
//! The backward pass is the exact reverse of these steps; per-pair gradients then go
//! through the shared [`super::gather_pair_gradients`].
//! f64 evaluates the filter exactly (basis, matrix product, cutoff); f32 interpolates
//! w(d) and dw/dd from the shared cubic Hermite table ([`FilterTable`]), as the
//! student's f32 path does.

use rayon::prelude::*;

use super::filter_table::FilterTable;
use super::real::{linear_backward, linear_forward, silu, silu_grad, Real};
use super::{gather_pair_gradients, ATOM_CHUNK, PAIR_CHUNK};
use crate::model::painn::{atom_energies, cosine_cutoff, gaussian_basis};
use crate::model::{Linear, PainnWeights};
use crate::neighbors::{self, NeighborList};
use crate::system::{Request, Results, System};

/// A dense layer in the engine's precision.
struct Dense<T> {
    n_in: usize,
    n_out: usize,
    weight: Vec<T>,
    bias: Vec<T>,
}

impl<T: Real> Dense<T> {
    fn from(layer: &Linear) -> Self {
        Dense {
            n_in: layer.n_in,
            n_out: layer.n_out,
            weight: layer.weight.iter().map(|&x| T::from_f64(x)).collect(),
            bias: layer.bias.iter().map(|&x| T::from_f64(x)).collect(),
        }
    }

    /// Y = X W^T + b for `rows` rows, in parallel chunks of atoms.
    fn forward(&self, x: &[T], rows: usize) -> Vec<T> {
        let mut y = vec![T::ZERO; rows * self.n_out];
        y.par_chunks_mut(ATOM_CHUNK * self.n_out)
            .enumerate()
            .for_each(|(chunk, out)| {
                let n = out.len() / self.n_out;
                let first = chunk * ATOM_CHUNK;
                linear_forward(
                    &x[first * self.n_in..(first + n) * self.n_in],
                    n,
                    self.n_in,
                    &self.weight,
                    &self.bias,
                    out,
                );
            });
        y
    }

    /// GX = GY W for `rows` rows.
    fn backward(&self, gy: &[T], rows: usize) -> Vec<T> {
        let mut gx = vec![T::ZERO; rows * self.n_in];
        gx.par_chunks_mut(ATOM_CHUNK * self.n_in)
            .enumerate()
            .for_each(|(chunk, out)| {
                let n = out.len() / self.n_in;
                let first = chunk * ATOM_CHUNK;
                linear_backward(
                    &gy[first * self.n_out..(first + n) * self.n_out],
                    n,
                    self.n_out,
                    &self.weight,
                    self.n_in,
                    out,
                );
            });
        gx
    }
}

struct Block<T> {
    context1: Dense<T>,
    context2: Dense<T>,
    channel_mix: Dense<T>,
    mix1: Dense<T>,
    mix2: Dense<T>,
    /// First filter output of this block.
    filter_offset: usize,
    /// Which filter table (f32 path) this block uses.
    filter_index: usize,
}

/// PaiNN weights in the engine's precision.
pub(crate) struct PainnEngineWeights<T> {
    hidden: usize,
    num_rbf: usize,
    pub(crate) cutoff: f64,
    epsilon: T,
    embedding: Vec<T>,
    rbf_offsets: Vec<f64>,
    rbf_widths: Vec<f64>,
    /// K -> 3F x (filter blocks), weight row-major [3F Lf][K].
    filter_weight: Vec<T>,
    filter_bias: Vec<T>,
    blocks: Vec<Block<T>>,
    readout: Vec<Dense<T>>,
    energy_scale: f64,
    atom_energy: Vec<f64>,
    /// f32 path: the filter w(d) = fc(d) (Wf phi(d) + bf) of each filter block as a
    /// cubic Hermite table of exact f64 values and derivatives (as the student's f32
    /// path); `None` in f64, which evaluates the filter exactly.
    tables: Option<Vec<FilterTable<T>>>,
}

/// The exact filter w(d) = fc(d) (Wf phi(d) + bf) of filter block `index` and dw/dd, in f64.
fn filter_exact(w: &PainnWeights, index: usize, d: f64, value: &mut [f64], derivative: &mut [f64]) {
    let (k, width) = (w.config.num_rbf, 3 * w.config.hidden);
    let (mut phi, mut dphi) = (vec![0.0; k], vec![0.0; k]);
    gaussian_basis(&w.rbf_offsets, &w.rbf_widths, d, &mut phi, &mut dphi);
    let (fc, dfc) = cosine_cutoff(d, w.config.cutoff);
    for o in 0..width {
        let row = w.filter.row(index * width + o);
        let raw: f64 = row.iter().zip(&phi).map(|(a, b)| a * b).sum::<f64>()
            + w.filter.bias[index * width + o];
        let draw: f64 = row.iter().zip(&dphi).map(|(a, b)| a * b).sum();
        value[o] = fc * raw;
        derivative[o] = dfc * raw + fc * draw;
    }
}

impl<T: Real> PainnEngineWeights<T> {
    pub(crate) fn from(w: &PainnWeights, tabulate_filter: bool) -> Self {
        let c = &w.config;
        PainnEngineWeights {
            hidden: c.hidden,
            num_rbf: c.num_rbf,
            cutoff: c.cutoff,
            epsilon: T::from_f64(c.epsilon),
            embedding: w.embedding.iter().map(|&x| T::from_f64(x)).collect(),
            rbf_offsets: w.rbf_offsets.clone(),
            rbf_widths: w.rbf_widths.clone(),
            filter_weight: w.filter.weight.iter().map(|&x| T::from_f64(x)).collect(),
            filter_bias: w.filter.bias.iter().map(|&x| T::from_f64(x)).collect(),
            blocks: (0..c.num_blocks)
                .map(|l| Block {
                    context1: Dense::from(&w.interactions[l].context1),
                    context2: Dense::from(&w.interactions[l].context2),
                    channel_mix: Dense::from(&w.mixings[l].channel_mix),
                    mix1: Dense::from(&w.mixings[l].context1),
                    mix2: Dense::from(&w.mixings[l].context2),
                    filter_offset: w.filter_offset(l),
                    filter_index: if c.shared_filters { 0 } else { l },
                })
                .collect(),
            readout: w.readout.iter().map(Dense::from).collect(),
            energy_scale: w.energy_scale,
            atom_energy: w.atom_energy.clone(),
            tables: tabulate_filter.then(|| {
                (0..c.num_filter_blocks())
                    .map(|index| {
                        FilterTable::from_exact(3 * c.hidden, c.cutoff, |d, value, derivative| {
                            filter_exact(w, index, d, value, derivative)
                        })
                    })
                    .collect()
            }),
        }
    }
}

/// Per-pair geometry: d, u, basis and its derivative, cutoff and its derivative.
struct Geometry<T> {
    distance: Vec<f64>,
    unit: Vec<T>,
    basis: Vec<T>,
    basis_grad: Vec<T>,
    cut: Vec<T>,
    cut_grad: Vec<T>,
}

fn geometry<T: Real>(w: &PainnEngineWeights<T>, list: &NeighborList) -> Geometry<T> {
    let (p, k) = (list.n_pairs(), w.num_rbf);
    let mut g = Geometry {
        distance: vec![0.0; p],
        unit: vec![T::ZERO; 3 * p],
        basis: vec![T::ZERO; k * p],
        basis_grad: vec![T::ZERO; k * p],
        cut: vec![T::ZERO; p],
        cut_grad: vec![T::ZERO; p],
    };
    g.distance
        .par_iter_mut()
        .zip(g.unit.par_chunks_mut(3))
        .zip(
            g.basis
                .par_chunks_mut(k.max(1))
                .zip(g.basis_grad.par_chunks_mut(k.max(1))),
        )
        .zip(g.cut.par_iter_mut().zip(g.cut_grad.par_iter_mut()))
        .enumerate()
        .for_each_init(
            || (vec![0.0; k], vec![0.0; k]),
            |(phi, dphi), (pair, (((d_out, u), (b, db)), (fc, dfc)))| {
                let r = list.pair_vector[pair];
                let d = neighbors::norm(&r);
                *d_out = d;
                for c in 0..3 {
                    u[c] = T::from_f64(r[c] / d);
                }
                gaussian_basis(&w.rbf_offsets, &w.rbf_widths, d, phi, dphi);
                for kk in 0..k {
                    b[kk] = T::from_f64(phi[kk]);
                    db[kk] = T::from_f64(dphi[kk]);
                }
                let (f, df) = cosine_cutoff(d, w.cutoff);
                *fc = T::from_f64(f);
                *dfc = T::from_f64(df);
            },
        );
    g
}

/// The filter of every pair for one block: `value` = fc (Wf phi + bf) (P x 3F), and on
/// the exact path also `raw` = Wf phi + bf (for dE/dfc); the table path leaves it empty.
struct FilterValues<T> {
    value: Vec<T>,
    raw: Vec<T>,
}

fn filter_values<T: Real>(
    w: &PainnEngineWeights<T>,
    block: &Block<T>,
    g: &Geometry<T>,
    n_pairs: usize,
) -> FilterValues<T> {
    let (k, width) = (w.num_rbf, 3 * w.hidden);
    let mut value = vec![T::ZERO; n_pairs * width];
    if let Some(tables) = &w.tables {
        let table = &tables[block.filter_index];
        value
            .par_chunks_mut(width)
            .zip(g.distance.par_iter())
            .for_each(|(out, &d)| table.value(d, out));
        return FilterValues {
            value,
            raw: Vec::new(),
        };
    }
    let weight = &w.filter_weight[block.filter_offset * k..(block.filter_offset + width) * k];
    let bias = &w.filter_bias[block.filter_offset..block.filter_offset + width];
    let mut raw = vec![T::ZERO; n_pairs * width];
    raw.par_chunks_mut(PAIR_CHUNK * width)
        .zip(value.par_chunks_mut(PAIR_CHUNK * width))
        .enumerate()
        .for_each(|(chunk, (out, scaled))| {
            let rows = out.len() / width;
            let first = chunk * PAIR_CHUNK;
            linear_forward(
                &g.basis[first * k..(first + rows) * k],
                rows,
                k,
                weight,
                bias,
                out,
            );
            for (r, (row, scaled_row)) in out
                .chunks_exact(width)
                .zip(scaled.chunks_exact_mut(width))
                .enumerate()
            {
                let fc = g.cut[first + r];
                for (s, &v) in scaled_row.iter_mut().zip(row) {
                    *s = fc * v;
                }
            }
        });
    FilterValues { value, raw }
}

/// What the backward pass needs from one block.
struct Saved<T> {
    mu_in: Vec<T>,
    context_pre: Vec<T>,
    x: Vec<T>,
    /// V and W of the mixing (N x 3 x F each).
    v: Vec<T>,
    w: Vec<T>,
    norm: Vec<T>,
    mix_pre: Vec<T>,
    mix_out: Vec<T>,
}

/// The three F-wide parts of a 3F row.
#[inline]
fn split3<T>(row: &[T], f: usize) -> (&[T], &[T], &[T]) {
    let (a, rest) = row[..3 * f].split_at(f);
    let (b, c) = rest.split_at(f);
    (a, b, c)
}

#[inline]
fn split3_mut<T>(row: &mut [T], f: usize) -> (&mut [T], &mut [T], &mut [T]) {
    let (a, rest) = row[..3 * f].split_at_mut(f);
    let (b, c) = rest.split_at_mut(f);
    (a, b, c)
}

fn silu_all<T: Real>(x: &[T]) -> Vec<T> {
    x.par_iter().map(|&v| silu(v)).collect()
}

pub(crate) fn evaluate<T: Real>(
    w: &PainnEngineWeights<T>,
    system: &System,
    list: &NeighborList,
    request: &Request,
) -> Results {
    let f = w.hidden;
    let n = system.n_atoms();
    let n_local = system.n_local;
    let n_pairs = list.n_pairs();
    let g = geometry(w, list);

    let mut q = vec![T::ZERO; n * f];
    for (i, row) in q.chunks_exact_mut(f).enumerate() {
        let z = system.numbers[i] as usize;
        row.copy_from_slice(&w.embedding[z * f..(z + 1) * f]);
    }
    let mut mu = vec![T::ZERO; n * 3 * f];
    let mut saved: Vec<Saved<T>> = Vec::with_capacity(w.blocks.len());

    for block in &w.blocks {
        // Interaction.
        let context_pre = block.context1.forward(&q, n);
        let x = block.context2.forward(&silu_all(&context_pre), n);
        let filter = filter_values(w, block, &g, n_pairs).value;
        let mut q1 = q.clone();
        let mut mu1 = mu.clone();
        q1.par_chunks_mut(f)
            .zip(mu1.par_chunks_mut(3 * f))
            .enumerate()
            .for_each_init(
                || (vec![T::ZERO; f], vec![T::ZERO; f]),
                |(radial, vector), (i, (qi, mui))| {
                    for e in list.edge_offsets[i]..list.edge_offsets[i + 1] {
                        let j = list.edge_source[e] as usize;
                        let p = list.edge_pair[e] as usize;
                        let sign = if list.edge_forward[e] {
                            T::ONE
                        } else {
                            -T::ONE
                        };
                        let (rs, rr, rm) = split3(&filter[p * 3 * f..(p + 1) * 3 * f], f);
                        let (xs, rest) = x[j * 3 * f..(j + 1) * 3 * f].split_at(f);
                        let (xr, xm) = rest.split_at(f);
                        // Zipped equal-length slices: no bounds checks, vectorised loops.
                        for (q, (&r, &xv)) in qi.iter_mut().zip(rs.iter().zip(xs)) {
                            *q += r * xv;
                        }
                        for ((out, &r), &xv) in radial.iter_mut().zip(rr).zip(xr) {
                            *out = r * xv;
                        }
                        for ((out, &r), &xv) in vector.iter_mut().zip(rm).zip(xm) {
                            *out = r * xv;
                        }
                        let muj = &mu[j * 3 * f..(j + 1) * 3 * f];
                        for (a, (mu_a, muj_a)) in
                            mui.chunks_exact_mut(f).zip(muj.chunks_exact(f)).enumerate()
                        {
                            let ua = sign * g.unit[3 * p + a];
                            for (((m, &rad), &vec), &mj) in mu_a
                                .iter_mut()
                                .zip(radial.iter())
                                .zip(vector.iter())
                                .zip(muj_a)
                            {
                                *m += rad * ua + vec * mj;
                            }
                        }
                    }
                },
            );
        // Mixing: channel mix of each Cartesian component (3N rows of F).
        let vw = block.channel_mix.forward(&mu1, 3 * n);
        let mut v = vec![T::ZERO; n * 3 * f];
        let mut wm = vec![T::ZERO; n * 3 * f];
        v.par_chunks_mut(f)
            .zip(wm.par_chunks_mut(f))
            .zip(vw.par_chunks(2 * f))
            .for_each(|((vr, wr), src)| {
                vr.copy_from_slice(&src[..f]);
                wr.copy_from_slice(&src[f..]);
            });
        let mut norm = vec![T::ZERO; n * f];
        let mut context = vec![T::ZERO; n * 2 * f];
        norm.par_chunks_mut(f)
            .zip(context.par_chunks_mut(2 * f))
            .enumerate()
            .for_each(|(i, (nr, ctx))| {
                let vi = &v[i * 3 * f..(i + 1) * 3 * f];
                for c in 0..f {
                    let (a, b, z) = (vi[c], vi[f + c], vi[2 * f + c]);
                    nr[c] = (a * a + b * b + z * z + w.epsilon).sqrt();
                }
                ctx[..f].copy_from_slice(&q1[i * f..(i + 1) * f]);
                ctx[f..].copy_from_slice(nr);
            });
        let mix_pre = block.mix1.forward(&context, n);
        let mix_out = block.mix2.forward(&silu_all(&mix_pre), n);
        let mut q2 = q1;
        let mut mu2 = mu1;
        q2.par_chunks_mut(f)
            .zip(mu2.par_chunks_mut(3 * f))
            .enumerate()
            .for_each(|(i, (qi, mui))| {
                let out = &mix_out[i * 3 * f..(i + 1) * 3 * f];
                let (vi, wi) = (
                    &v[i * 3 * f..(i + 1) * 3 * f],
                    &wm[i * 3 * f..(i + 1) * 3 * f],
                );
                for c in 0..f {
                    let dot = vi[c] * wi[c] + vi[f + c] * wi[f + c] + vi[2 * f + c] * wi[2 * f + c];
                    qi[c] += out[c] + out[2 * f + c] * dot;
                    for a in 0..3 {
                        mui[a * f + c] += out[f + c] * wi[a * f + c];
                    }
                }
            });
        q = q2;
        let mu_in = std::mem::replace(&mut mu, mu2);
        saved.push(Saved {
            mu_in,
            context_pre,
            x,
            v,
            w: wm,
            norm,
            mix_pre,
            mix_out,
        });
    }

    // Readout of the local atoms: pre-activations of every layer kept for the backward pass.
    let mut pre: Vec<Vec<T>> = Vec::with_capacity(w.readout.len());
    let mut h = q[..n_local * f].to_vec();
    for (index, layer) in w.readout.iter().enumerate() {
        let y = layer.forward(&h, n_local);
        let last = index + 1 == w.readout.len();
        let next = if last { y.clone() } else { silu_all(&y) };
        h = next;
        pre.push(y);
    }
    let mut results = Results::default();
    let atom_energies = atom_energies(
        w.energy_scale,
        &w.atom_energy,
        system.numbers,
        n_local,
        |i| h[i].to_f64(),
    );
    results.energy = atom_energies.iter().sum();
    if request.atom_energies {
        results.atom_energies = atom_energies;
    }
    if !request.needs_gradient() {
        return results;
    }

    // Backward pass: dE/dq of the final state, through the readout.
    let mut gh = vec![T::from_f64(w.energy_scale); n_local];
    for (index, layer) in w.readout.iter().enumerate().rev() {
        let last = index + 1 == w.readout.len();
        if !last {
            for (gv, &x) in gh.iter_mut().zip(&pre[index]) {
                *gv = *gv * silu_grad(x);
            }
        }
        gh = layer.backward(&gh, n_local);
    }
    let mut gq = vec![T::ZERO; n * f];
    gq[..n_local * f].copy_from_slice(&gh);
    let mut gmu = vec![T::ZERO; n * 3 * f];
    let mut grad_distance = vec![0.0f64; n_pairs];
    let mut grad_unit = vec![[0.0f64; 3]; n_pairs];

    for (l, block) in w.blocks.iter().enumerate().rev() {
        let s = &saved[l];
        // Mixing backward: gq2, gmu2 -> gq1, gmu1.
        let mut g_out = vec![T::ZERO; n * 3 * f];
        let mut g_vw = vec![T::ZERO; n * 3 * 2 * f];
        g_out.par_chunks_mut(3 * f).enumerate().for_each(|(i, go)| {
            let (vi, wi) = (
                &s.v[i * 3 * f..(i + 1) * 3 * f],
                &s.w[i * 3 * f..(i + 1) * 3 * f],
            );
            let (gqi, gmui) = (&gq[i * f..(i + 1) * f], &gmu[i * 3 * f..(i + 1) * 3 * f]);
            for c in 0..f {
                let dot = vi[c] * wi[c] + vi[f + c] * wi[f + c] + vi[2 * f + c] * wi[2 * f + c];
                go[c] = gqi[c];
                go[f + c] =
                    gmui[c] * wi[c] + gmui[f + c] * wi[f + c] + gmui[2 * f + c] * wi[2 * f + c];
                go[2 * f + c] = gqi[c] * dot;
            }
        });
        let g_act = block.mix2.backward(&g_out, n);
        let g_pre: Vec<T> = g_act
            .par_iter()
            .zip(&s.mix_pre)
            .map(|(&gv, &x)| gv * silu_grad(x))
            .collect();
        let g_context = block.mix1.backward(&g_pre, n);
        let mut gq1 = gq.clone();
        g_vw.par_chunks_mut(3 * 2 * f)
            .zip(gq1.par_chunks_mut(f))
            .enumerate()
            .for_each(|(i, (gvw, gq1i))| {
                let (vi, wi) = (
                    &s.v[i * 3 * f..(i + 1) * 3 * f],
                    &s.w[i * 3 * f..(i + 1) * 3 * f],
                );
                let out = &s.mix_out[i * 3 * f..(i + 1) * 3 * f];
                let (gqi, gmui) = (&gq[i * f..(i + 1) * f], &gmu[i * 3 * f..(i + 1) * 3 * f]);
                let gctx = &g_context[i * 2 * f..(i + 1) * 2 * f];
                let nr = &s.norm[i * f..(i + 1) * f];
                for c in 0..f {
                    gq1i[c] += gctx[c];
                    let g_dot = gqi[c] * out[2 * f + c];
                    let g_norm = gctx[f + c] / nr[c];
                    for a in 0..3 {
                        // Row (i, a) of the channel mix: outputs [V, W].
                        gvw[a * 2 * f + c] = g_dot * wi[a * f + c] + g_norm * vi[a * f + c];
                        gvw[a * 2 * f + f + c] =
                            g_dot * vi[a * f + c] + gmui[a * f + c] * out[f + c];
                    }
                }
            });
        let mut gmu1 = block.channel_mix.backward(&g_vw, 3 * n);
        for (g, &x) in gmu1.iter_mut().zip(&gmu) {
            *g += x;
        }
        // Interaction backward. dE/dx per source atom, gathered over its own edges
        // (the list is symmetric: each edge into j is the reverse of an edge out of j).
        let FilterValues { value: filter, raw } = filter_values(w, block, &g, n_pairs);
        let (x, mu_in) = (&s.x, &s.mu_in);
        let mut gx = vec![T::ZERO; n * 3 * f];
        let mut gq_in = gq1.clone();
        let mut gmu_in = gmu1.clone();
        gx.par_chunks_mut(3 * f)
            .zip(gmu_in.par_chunks_mut(3 * f))
            .enumerate()
            .for_each(|(j, (gxj, gmuj))| {
                let muj = &mu_in[j * 3 * f..(j + 1) * 3 * f];
                let xj = &x[j * 3 * f..(j + 1) * 3 * f];
                for e in list.edge_offsets[j]..list.edge_offsets[j + 1] {
                    let i = list.edge_source[e] as usize;
                    let p = list.edge_pair[e] as usize;
                    // The reverse edge (j -> i) has direction -(direction of e).
                    let sign = if list.edge_forward[e] {
                        -T::ONE
                    } else {
                        T::ONE
                    };
                    let (f_s, f_r, f_m) = split3(&filter[p * 3 * f..(p + 1) * 3 * f], f);
                    let gqi = &gq1[i * f..(i + 1) * f];
                    let (g0, g1, g2) = split3(&gmu1[i * 3 * f..(i + 1) * 3 * f], f);
                    let (m0, m1, m2) = split3(muj, f);
                    let xm = &xj[2 * f..3 * f];
                    let (gx_s, gx_r, gx_m) = split3_mut(gxj, f);
                    let (gm0, gm1, gm2) = split3_mut(gmuj, f);
                    let u = [
                        sign * g.unit[3 * p],
                        sign * g.unit[3 * p + 1],
                        sign * g.unit[3 * p + 2],
                    ];
                    // Every slice has length f: the bounds checks go and the loop vectorises.
                    for c in 0..f {
                        let (ws, wr, wv) = (f_s[c], f_r[c], f_m[c]);
                        gx_s[c] += gqi[c] * ws;
                        let along = g0[c] * u[0] + g1[c] * u[1] + g2[c] * u[2];
                        gx_r[c] += wr * along;
                        let with_mu = g0[c] * m0[c] + g1[c] * m1[c] + g2[c] * m2[c];
                        gx_m[c] += wv * with_mu;
                        let scale = wv * xm[c];
                        gm0[c] += g0[c] * scale;
                        gm1[c] += g1[c] * scale;
                        gm2[c] += g2[c] * scale;
                    }
                }
            });
        let g_act = block.context2.backward(&gx, n);
        let g_pre: Vec<T> = g_act
            .par_iter()
            .zip(&s.context_pre)
            .map(|(&gv, &x)| gv * silu_grad(x))
            .collect();
        let g_q = block.context1.backward(&g_pre, n);
        gq_in.par_iter_mut().zip(&g_q).for_each(|(a, &b)| *a += b);
        // Per pair: dE/dw (both edges) -> dE/dd through the filter, and dE/du.
        let k = w.num_rbf;
        let weight = &w.filter_weight[block.filter_offset * k..(block.filter_offset + 3 * f) * k];
        grad_distance
            .par_chunks_mut(PAIR_CHUNK)
            .zip(grad_unit.par_chunks_mut(PAIR_CHUNK))
            .enumerate()
            .for_each(|(chunk, (gd, gu))| {
                let first = chunk * PAIR_CHUNK;
                let rows = gd.len();
                let mut g_filter = vec![T::ZERO; rows * 3 * f];
                for r in 0..rows {
                    let p = first + r;
                    let (i, j) = (list.pair_i[p] as usize, list.pair_j[p] as usize);
                    let gw = &mut g_filter[r * 3 * f..(r + 1) * 3 * f];
                    let w_p = &filter[p * 3 * f..(p + 1) * 3 * f];
                    let u = &g.unit[3 * p..3 * p + 3];
                    let mut g_u = [T::ZERO; 3];
                    // Edge j -> i (direction +u) and edge i -> j (direction -u).
                    for (dst, src, sign) in [(i, j, T::ONE), (j, i, -T::ONE)] {
                        let gqd = &gq1[dst * f..(dst + 1) * f];
                        let (g0, g1, g2) = split3(&gmu1[dst * 3 * f..(dst + 1) * 3 * f], f);
                        let (xs, xr, xm) = split3(&x[src * 3 * f..(src + 1) * 3 * f], f);
                        let (m0, m1, m2) = split3(&mu_in[src * 3 * f..(src + 1) * 3 * f], f);
                        let w_r = &w_p[f..2 * f];
                        let (gw_s, gw_r, gw_m) = split3_mut(gw, f);
                        let (su0, su1, su2) = (sign * u[0], sign * u[1], sign * u[2]);
                        for c in 0..f {
                            gw_s[c] += gqd[c] * xs[c];
                            gw_r[c] += xr[c] * (g0[c] * su0 + g1[c] * su1 + g2[c] * su2);
                            gw_m[c] += xm[c] * (g0[c] * m0[c] + g1[c] * m1[c] + g2[c] * m2[c]);
                            let radial = sign * w_r[c] * xr[c];
                            g_u[0] += g0[c] * radial;
                            g_u[1] += g1[c] * radial;
                            g_u[2] += g2[c] * radial;
                        }
                    }
                    for a in 0..3 {
                        gu[r][a] += g_u[a].to_f64();
                    }
                    if let Some(tables) = &w.tables {
                        // dE/dd = dE/dw . dw/dd, straight from the table.
                        gd[r] += tables[block.filter_index]
                            .gradient_dot(g.distance[p], gw)
                            .to_f64();
                        continue;
                    }
                    // Exact path: dE/d(raw) = fc dE/dw; dE/dfc = dE/dw . raw.
                    let (fc, raw_p) = (g.cut[p], &raw[p * 3 * f..(p + 1) * 3 * f]);
                    let mut g_cut = T::ZERO;
                    for c in 0..3 * f {
                        g_cut += gw[c] * raw_p[c];
                        gw[c] = gw[c] * fc;
                    }
                    gd[r] += (g_cut * g.cut_grad[p]).to_f64();
                }
                if w.tables.is_some() {
                    return;
                }
                let mut g_basis = vec![T::ZERO; rows * k];
                linear_backward(&g_filter, rows, 3 * f, weight, k, &mut g_basis);
                for r in 0..rows {
                    let db = &g.basis_grad[(first + r) * k..(first + r + 1) * k];
                    let mut acc = T::ZERO;
                    for kk in 0..k {
                        acc += g_basis[r * k + kk] * db[kk];
                    }
                    gd[r] += acc.to_f64();
                }
            });
        gq = gq_in;
        gmu = gmu_in;
    }

    // dE/dr_p = dE/dd u + (dE/du - (dE/du . u) u) / d.
    let grad_pair: Vec<[f64; 3]> = (0..n_pairs)
        .into_par_iter()
        .map(|p| {
            let r = list.pair_vector[p];
            let d = g.distance[p];
            let u = [r[0] / d, r[1] / d, r[2] / d];
            let gu = grad_unit[p];
            let along = gu[0] * u[0] + gu[1] * u[1] + gu[2] * u[2];
            let gd = grad_distance[p];
            [0, 1, 2].map(|c| gd * u[c] + (gu[c] - along * u[c]) / d)
        })
        .collect();
    gather_pair_gradients(list, &grad_pair, request, &mut results);
    results
}
