//! Canonical PaiNN (Schütt, Unke, Gastegger 2021) exactly as schnetpack 2.2 defines it:
//! `schnetpack.representation.PaiNN` with a Gaussian radial basis and a cosine cutoff,
//! an `Atomwise` energy readout (sum over atoms), and the energy post-processing of
//! `ScaleProperty` / `AddOffsets` folded into one scale and one per-element energy.
//! The file layout is in `docs/model-format.md`; the equations are in
//! `src/engine/cpu/painn.rs`.

use std::collections::{BTreeMap, HashMap};

use super::format::{meta, serialize, TensorReader, MAX_WIDTH};
use super::{Linear, ModelWarning};
use crate::error::{ModelFormatError as E, Result};

/// Hyper-parameters of a PaiNN model.
#[derive(Debug, Clone, PartialEq)]
pub struct PainnConfig {
    /// Feature width F (`n_atom_basis`).
    pub hidden: usize,
    /// Radial basis size K (`n_rbf`).
    pub num_rbf: usize,
    /// Interaction blocks L (`n_interactions`).
    pub num_blocks: usize,
    /// Cutoff radius rc in Å, the value of schnetpack's `cutoff_fn.cutoff` buffer.
    pub cutoff: f64,
    /// Largest atomic number the embedding covers (it has max_z + 1 rows).
    pub max_z: usize,
    /// One filter network for all blocks (`shared_filters`).
    pub shared_filters: bool,
    /// One interaction and mixing block used L times (`shared_interactions`).
    pub shared_interactions: bool,
    /// Added under the square root of the vector norm in the mixing block.
    pub epsilon: f64,
    /// Widths of the readout MLP from F to 1, e.g. [F, F/2, 1]; SiLU between layers.
    pub readout_widths: Vec<usize>,
}

impl PainnConfig {
    /// Number of distinct filter slices stored (1 when shared).
    pub fn num_filter_blocks(&self) -> usize {
        if self.shared_filters {
            1
        } else {
            self.num_blocks
        }
    }
    /// Number of distinct interaction/mixing blocks stored (1 when shared).
    pub fn num_stored_blocks(&self) -> usize {
        if self.shared_interactions {
            1
        } else {
            self.num_blocks
        }
    }
}

/// `PaiNNInteraction.interatomic_context_net`: F -> F (SiLU) -> 3F.
#[derive(Debug, Clone, PartialEq)]
pub struct PainnInteraction {
    pub context1: Linear,
    pub context2: Linear,
}

/// `PaiNNMixing`: `mu_channel_mix` F -> 2F (no bias; outputs V then W), and
/// `intraatomic_context_net` 2F -> F (SiLU) -> 3F on [q, |V|].
#[derive(Debug, Clone, PartialEq)]
pub struct PainnMixing {
    pub channel_mix: Linear,
    pub context1: Linear,
    pub context2: Linear,
}

/// Every weight of a PaiNN model in f64 (the conversion from the file is exact).
#[derive(Debug, Clone, PartialEq)]
pub struct PainnWeights {
    pub config: PainnConfig,
    /// (max_z + 1) x F, row-major; row Z is the embedding of element Z.
    pub embedding: Vec<f64>,
    /// Gaussian centres mu_k and widths sigma_k: phi_k = exp(-(d - mu_k)^2 / (2 sigma_k^2)).
    pub rbf_offsets: Vec<f64>,
    pub rbf_widths: Vec<f64>,
    /// K -> 3F x (number of filter blocks); block l uses outputs [3F l, 3F (l + 1)).
    pub filter: Linear,
    /// One per block (shared blocks are repeated).
    pub interactions: Vec<PainnInteraction>,
    pub mixings: Vec<PainnMixing>,
    /// F -> ... -> 1, SiLU between layers.
    pub readout: Vec<Linear>,
    /// E = energy_scale * sum_i readout(q_i) + sum_i atom_energy[Z_i].
    pub energy_scale: f64,
    /// max_z + 1 entries (per-atom mean plus atomref, scaled as schnetpack applies them).
    pub atom_energy: Vec<f64>,
}

impl PainnWeights {
    /// First output row of block `l`'s slice of the filter network.
    pub fn filter_offset(&self, l: usize) -> usize {
        if self.config.shared_filters {
            0
        } else {
            3 * self.config.hidden * l
        }
    }
}

/// Gaussian basis and its derivative at distance d, as schnetpack computes it:
/// exp(coeff (d - mu)^2) with coeff = -0.5 / sigma^2.
#[inline]
pub fn gaussian_basis(offsets: &[f64], widths: &[f64], d: f64, phi: &mut [f64], dphi: &mut [f64]) {
    for k in 0..offsets.len() {
        let coeff = -0.5 / (widths[k] * widths[k]);
        let diff = d - offsets[k];
        let value = (coeff * (diff * diff)).exp();
        phi[k] = value;
        dphi[k] = 2.0 * coeff * diff * value;
    }
}

/// Energy of each atom (eV) from the readout's output `readout(i)`: the local atoms
/// get `energy_scale * readout(i) + atom_energy[Z_i]` (schnetpack's ScaleProperty and
/// AddOffsets, folded), ghosts 0. The CPU and CUDA engines share this.
pub fn atom_energies(
    energy_scale: f64,
    atom_energy: &[f64],
    numbers: &[i32],
    n_local: usize,
    readout: impl Fn(usize) -> f64,
) -> Vec<f64> {
    (0..numbers.len())
        .map(|i| {
            if i < n_local {
                energy_scale * readout(i) + atom_energy[numbers[i] as usize]
            } else {
                0.0
            }
        })
        .collect()
}

/// Behler's cosine cutoff 0.5 (cos(pi d / rc) + 1) for d < rc, else 0, and its derivative.
#[inline]
pub fn cosine_cutoff(d: f64, rc: f64) -> (f64, f64) {
    if d < rc {
        let x = d * std::f64::consts::PI / rc;
        (
            0.5 * (x.cos() + 1.0),
            -0.5 * std::f64::consts::PI / rc * x.sin(),
        )
    } else {
        (0.0, 0.0)
    }
}

fn meta_bool(map: &HashMap<String, String>, key: &str) -> Result<bool, E> {
    match meta(map, key)?.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(E::BadMetadata {
            key: key.into(),
            reason: format!("`{other}` is not `true` or `false`"),
        }),
    }
}

fn meta_is(map: &HashMap<String, String>, key: &str, supported: &str) -> Result<(), E> {
    let value = meta(map, key)?.trim();
    if value != supported {
        return Err(E::BadMetadata {
            key: key.into(),
            reason: format!("`{value}`; only `{supported}` is supported"),
        });
    }
    Ok(())
}

/// The PaiNN-specific metadata (the common keys are already parsed).
pub(super) fn config_from_metadata(
    map: &HashMap<String, String>,
    hidden: usize,
    num_rbf: usize,
    num_blocks: usize,
    cutoff: f64,
    max_z: usize,
) -> Result<PainnConfig, E> {
    meta_is(map, "rbf", "gaussian")?;
    meta_is(map, "cutoff_fn", "cosine")?;
    meta_is(map, "activation", "silu")?;
    let shared_filters = meta_bool(map, "shared_filters")?;
    let shared_interactions = meta_bool(map, "shared_interactions")?;
    let epsilon_text = meta(map, "epsilon")?;
    let epsilon: f64 = epsilon_text.trim().parse().map_err(|_| E::BadMetadata {
        key: "epsilon".into(),
        reason: format!("`{epsilon_text}` is not a number"),
    })?;
    // With epsilon = 0 the norm of the (initially zero) vector features has no derivative.
    if !(epsilon.is_finite() && epsilon > 0.0 && epsilon < 1.0) {
        return Err(E::BadMetadata {
            key: "epsilon".into(),
            reason: format!("{epsilon} is not in (0, 1)"),
        });
    }
    let widths_text = meta(map, "readout_widths")?;
    let readout_widths: Vec<usize> = widths_text
        .split(',')
        .map(|w| w.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| E::BadMetadata {
            key: "readout_widths".into(),
            reason: format!("`{widths_text}` is not a comma-separated list of integers"),
        })?;
    if readout_widths.len() < 2
        || readout_widths.len() > 17
        || readout_widths[0] != hidden
        || readout_widths[readout_widths.len() - 1] != 1
        || readout_widths.iter().any(|&w| w == 0 || w > MAX_WIDTH)
    {
        return Err(E::BadMetadata {
            key: "readout_widths".into(),
            reason: format!(
                "`{widths_text}`: expected 2 to 17 widths in 1..={MAX_WIDTH}, from hidden_dim ({hidden}) to 1"
            ),
        });
    }
    Ok(PainnConfig {
        hidden,
        num_rbf,
        num_blocks,
        cutoff,
        max_z,
        shared_filters,
        shared_interactions,
        epsilon,
        readout_widths,
    })
}

const EMBEDDING: &str = "representation.embedding.weight";
const RBF_OFFSETS: &str = "representation.radial_basis.offsets";
const RBF_WIDTHS: &str = "representation.radial_basis.widths";
const CUTOFF: &str = "representation.cutoff_fn.cutoff";
const FILTER: &str = "representation.filter_net";
const ENERGY_SCALE: &str = "postprocessing.energy_scale";
const ATOM_ENERGY: &str = "postprocessing.atom_energy";

fn interaction_prefix(b: usize) -> String {
    format!("representation.interactions.{b}.interatomic_context_net")
}
fn mixing_prefix(b: usize) -> String {
    format!("representation.mixing.{b}")
}
fn readout_prefix(i: usize) -> String {
    format!("output_modules.0.outnet.{i}")
}

/// Tensor names and shapes of a PaiNN model with this configuration.
pub fn expected_shapes(c: &PainnConfig) -> BTreeMap<String, Vec<usize>> {
    let (f, k) = (c.hidden, c.num_rbf);
    let mut shapes = BTreeMap::new();
    let mut linear = |prefix: String, n_in: usize, n_out: usize, bias: bool| {
        shapes.insert(format!("{prefix}.weight"), vec![n_out, n_in]);
        if bias {
            shapes.insert(format!("{prefix}.bias"), vec![n_out]);
        }
    };
    linear(FILTER.to_string(), k, 3 * f * c.num_filter_blocks(), true);
    for b in 0..c.num_stored_blocks() {
        linear(format!("{}.0", interaction_prefix(b)), f, f, true);
        linear(format!("{}.1", interaction_prefix(b)), f, 3 * f, true);
        let m = mixing_prefix(b);
        linear(format!("{m}.intraatomic_context_net.0"), 2 * f, f, true);
        linear(format!("{m}.intraatomic_context_net.1"), f, 3 * f, true);
        linear(format!("{m}.mu_channel_mix"), f, 2 * f, false);
    }
    for (i, pair) in c.readout_widths.windows(2).enumerate() {
        linear(readout_prefix(i), pair[0], pair[1], true);
    }
    shapes.insert(EMBEDDING.to_string(), vec![c.max_z + 1, f]);
    shapes.insert(RBF_OFFSETS.to_string(), vec![k]);
    shapes.insert(RBF_WIDTHS.to_string(), vec![k]);
    shapes.insert(CUTOFF.to_string(), vec![1]);
    shapes.insert(ENERGY_SCALE.to_string(), vec![1]);
    shapes.insert(ATOM_ENERGY.to_string(), vec![c.max_z + 1]);
    shapes
}

pub(super) fn read_weights(
    mut config: PainnConfig,
    reader: &TensorReader,
) -> Result<PainnWeights, E> {
    let (f, k) = (config.hidden, config.num_rbf);
    let filter = reader.linear(FILTER, k, 3 * f * config.num_filter_blocks())?;
    let mut interactions = Vec::with_capacity(config.num_blocks);
    let mut mixings = Vec::with_capacity(config.num_blocks);
    for b in 0..config.num_stored_blocks() {
        interactions.push(PainnInteraction {
            context1: reader.linear(&format!("{}.0", interaction_prefix(b)), f, f)?,
            context2: reader.linear(&format!("{}.1", interaction_prefix(b)), f, 3 * f)?,
        });
        let m = mixing_prefix(b);
        mixings.push(PainnMixing {
            channel_mix: reader.linear_without_bias(&format!("{m}.mu_channel_mix"), f, 2 * f)?,
            context1: reader.linear(&format!("{m}.intraatomic_context_net.0"), 2 * f, f)?,
            context2: reader.linear(&format!("{m}.intraatomic_context_net.1"), f, 3 * f)?,
        });
    }
    // Shared blocks: the same weights in every position.
    while interactions.len() < config.num_blocks {
        interactions.push(interactions[0].clone());
        mixings.push(mixings[0].clone());
    }
    let readout = config
        .readout_widths
        .windows(2)
        .enumerate()
        .map(|(i, pair)| reader.linear(&readout_prefix(i), pair[0], pair[1]))
        .collect::<Result<Vec<_>, E>>()?;
    let embedding = reader.read(EMBEDDING)?;
    let rbf_offsets = reader.read(RBF_OFFSETS)?;
    let rbf_widths = reader.read(RBF_WIDTHS)?;
    let cutoff = reader.read(CUTOFF)?[0];
    let energy_scale = reader.read(ENERGY_SCALE)?[0];
    let atom_energy = reader.read(ATOM_ENERGY)?;
    if let Some(i) = rbf_widths.iter().position(|w| *w == 0.0) {
        return Err(E::Inconsistent(format!("{RBF_WIDTHS}[{i}] is zero")));
    }
    if !(cutoff > 0.0 && (cutoff - config.cutoff).abs() <= 1e-6 * config.cutoff) {
        return Err(E::Inconsistent(format!(
            "metadata cutoff {} Å differs from {CUTOFF} = {cutoff} Å",
            config.cutoff
        )));
    }
    // The tensor holds the exact value schnetpack used (often a float32 number).
    config.cutoff = cutoff;
    Ok(PainnWeights {
        config,
        embedding,
        rbf_offsets,
        rbf_widths,
        filter,
        interactions,
        mixings,
        readout,
        energy_scale,
        atom_energy,
    })
}

/// Load-time checks. PaiNN's energy is rotation invariant by construction (scalars
/// and vector norms and dot products only), and the cosine cutoff multiplies the
/// filter, so the filter is zero at rc; this evaluates it there to be sure.
pub fn model_warnings(w: &PainnWeights) -> Vec<ModelWarning> {
    let rc = w.config.cutoff;
    let k = w.config.num_rbf;
    let (mut phi, mut dphi) = (vec![0.0; k], vec![0.0; k]);
    gaussian_basis(&w.rbf_offsets, &w.rbf_widths, rc, &mut phi, &mut dphi);
    let (fc, _) = cosine_cutoff(rc, rc);
    let mut largest = 0.0f64;
    for o in 0..w.filter.n_out {
        let value: f64 = w
            .filter
            .row(o)
            .iter()
            .zip(&phi)
            .map(|(a, b)| a * b)
            .sum::<f64>()
            + w.filter.bias[o];
        largest = largest.max((fc * value).abs());
    }
    let mut warnings = Vec::new();
    if largest > 1e-12 {
        warnings.push(ModelWarning {
            code: "energy-discontinuous-at-cutoff",
            message: format!("the filter is {largest:.3e} at d = rc instead of 0"),
        });
    }
    warnings
}

/// Flattens weights into (name, shape, values) in the file's naming; shared blocks once.
pub fn named_tensors(w: &PainnWeights) -> Vec<(String, Vec<usize>, Vec<f64>)> {
    let shapes = expected_shapes(&w.config);
    let mut values: Vec<(String, Vec<f64>)> = vec![
        (EMBEDDING.into(), w.embedding.clone()),
        (RBF_OFFSETS.into(), w.rbf_offsets.clone()),
        (RBF_WIDTHS.into(), w.rbf_widths.clone()),
        (CUTOFF.into(), vec![w.config.cutoff]),
        (ENERGY_SCALE.into(), vec![w.energy_scale]),
        (ATOM_ENERGY.into(), w.atom_energy.clone()),
        (format!("{FILTER}.weight"), w.filter.weight.clone()),
        (format!("{FILTER}.bias"), w.filter.bias.clone()),
    ];
    for b in 0..w.config.num_stored_blocks() {
        let (i, m) = (&w.interactions[b], &w.mixings[b]);
        let p = interaction_prefix(b);
        values.push((format!("{p}.0.weight"), i.context1.weight.clone()));
        values.push((format!("{p}.0.bias"), i.context1.bias.clone()));
        values.push((format!("{p}.1.weight"), i.context2.weight.clone()));
        values.push((format!("{p}.1.bias"), i.context2.bias.clone()));
        let p = mixing_prefix(b);
        values.push((
            format!("{p}.intraatomic_context_net.0.weight"),
            m.context1.weight.clone(),
        ));
        values.push((
            format!("{p}.intraatomic_context_net.0.bias"),
            m.context1.bias.clone(),
        ));
        values.push((
            format!("{p}.intraatomic_context_net.1.weight"),
            m.context2.weight.clone(),
        ));
        values.push((
            format!("{p}.intraatomic_context_net.1.bias"),
            m.context2.bias.clone(),
        ));
        values.push((
            format!("{p}.mu_channel_mix.weight"),
            m.channel_mix.weight.clone(),
        ));
    }
    for (i, layer) in w.readout.iter().enumerate() {
        values.push((
            format!("{}.weight", readout_prefix(i)),
            layer.weight.clone(),
        ));
        values.push((format!("{}.bias", readout_prefix(i)), layer.bias.clone()));
    }
    values
        .into_iter()
        .map(|(name, v)| {
            let shape = shapes[&name].clone();
            (name, shape, v)
        })
        .collect()
}

/// Serialises a PaiNN model (every tensor F32 or F64) into safetensors bytes; `extra`
/// adds metadata such as `provenance` or `species`.
pub fn save_painn_bytes(
    w: &PainnWeights,
    f64_storage: bool,
    extra: &[(&str, &str)],
) -> Result<Vec<u8>> {
    let c = &w.config;
    let mut meta: HashMap<String, String> = HashMap::new();
    for (key, value) in [
        ("format_version", super::FORMAT_VERSION.to_string()),
        ("architecture", super::ARCHITECTURE_PAINN.to_string()),
        ("hidden_dim", c.hidden.to_string()),
        ("num_rbf", c.num_rbf.to_string()),
        ("num_interactions", c.num_blocks.to_string()),
        ("cutoff", format!("{:?}", c.cutoff)),
        ("max_z", c.max_z.to_string()),
        ("energy_unit", "eV".to_string()),
        ("length_unit", "angstrom".to_string()),
        ("rbf", "gaussian".to_string()),
        ("cutoff_fn", "cosine".to_string()),
        ("activation", "silu".to_string()),
        ("shared_filters", c.shared_filters.to_string()),
        ("shared_interactions", c.shared_interactions.to_string()),
        ("epsilon", format!("{:?}", c.epsilon)),
        (
            "readout_widths",
            c.readout_widths
                .iter()
                .map(|w| w.to_string())
                .collect::<Vec<_>>()
                .join(","),
        ),
    ] {
        meta.insert(key.to_string(), value);
    }
    for (k, v) in extra {
        meta.insert(k.to_string(), v.to_string());
    }
    let buffers = named_tensors(w)
        .into_iter()
        .map(|(name, shape, values)| {
            let bytes: Vec<u8> = if f64_storage {
                values.iter().flat_map(|v| v.to_le_bytes()).collect()
            } else {
                values
                    .iter()
                    .flat_map(|v| (*v as f32).to_le_bytes())
                    .collect()
            };
            (name, shape, bytes)
        })
        .collect();
    serialize(buffers, f64_storage, meta)
}

/// Random PaiNN weights for tests and benchmarks (deterministic in `seed`), scaled so
/// that deep models stay well-conditioned; biases are non-zero.
pub fn random_painn(config: &PainnConfig, seed: u64) -> PainnWeights {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    let mut next = move || {
        // xorshift64*, mapped to (-1, 1).
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let x = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    let mut linear = |n_in: usize, n_out: usize, bias: bool| {
        let scale = 1.0 / (n_in as f64).sqrt();
        Linear {
            n_in,
            n_out,
            weight: (0..n_in * n_out).map(|_| next() * scale).collect(),
            bias: (0..n_out)
                .map(|_| if bias { 0.1 * next() } else { 0.0 })
                .collect(),
        }
    };
    let (f, k, l) = (config.hidden, config.num_rbf, config.num_blocks);
    let filter = linear(k, 3 * f * config.num_filter_blocks(), true);
    let mut interactions = Vec::new();
    let mut mixings = Vec::new();
    for _ in 0..config.num_stored_blocks() {
        interactions.push(PainnInteraction {
            context1: linear(f, f, true),
            context2: linear(f, 3 * f, true),
        });
        mixings.push(PainnMixing {
            channel_mix: linear(f, 2 * f, false),
            context1: linear(2 * f, f, true),
            context2: linear(f, 3 * f, true),
        });
    }
    while interactions.len() < l {
        interactions.push(interactions[0].clone());
        mixings.push(mixings[0].clone());
    }
    let readout = config
        .readout_widths
        .windows(2)
        .map(|p| linear(p[0], p[1], true))
        .collect();
    let embedding = (0..(config.max_z + 1) * f)
        .map(|_| 1.5 * linear(1, 1, false).weight[0])
        .collect();
    let atom_energy = (0..=config.max_z).map(|z| -0.1 * z as f64).collect();
    let rbf_offsets: Vec<f64> = (0..k)
        .map(|i| {
            if k > 1 {
                config.cutoff * i as f64 / (k - 1) as f64
            } else {
                0.0
            }
        })
        .collect();
    let width = if k > 1 {
        rbf_offsets[1] - rbf_offsets[0]
    } else {
        config.cutoff
    };
    PainnWeights {
        config: config.clone(),
        embedding,
        rbf_offsets,
        rbf_widths: vec![width; k],
        filter,
        interactions,
        mixings,
        readout,
        energy_scale: 1.3,
        atom_energy,
    }
}
