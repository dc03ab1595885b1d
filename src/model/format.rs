//! Reading and writing model files (safetensors + metadata; see `docs/model-format.md`).
//! The reader never panics on any input: every problem is a typed [`ModelFormatError`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use super::{Block, Linear, ModelFile, ModelMetadata, ModelWeights, StudentConfig, StudentWeights};
use crate::error::{Error, ModelFormatError as E, Result};

/// The format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Architecture id of the MLFF-Distiller student.
pub const ARCHITECTURE_STUDENT: &str = "mlff-distiller-student";
/// Architecture id of canonical PaiNN as schnetpack 2.2 defines it.
pub const ARCHITECTURE_PAINN: &str = "painn";

/// Largest hyper-parameters accepted; they only guard against absurd allocations
/// from a corrupt header.
pub(super) const MAX_WIDTH: usize = 4096;
pub(super) const MAX_BLOCKS: usize = 64;

/// Loads and validates a model file.
pub fn load_model_file(path: impl AsRef<Path>) -> Result<ModelFile> {
    let path = path.as_ref();
    let bytes = std::fs::read(path)
        .map_err(|e| Error::Io(format!("cannot read model file `{}`: {e}", path.display())))?;
    load_model_bytes(&bytes)
}

pub(super) fn meta<'m>(map: &'m HashMap<String, String>, key: &str) -> Result<&'m str, E> {
    map.get(key)
        .map(|s| s.as_str())
        .ok_or_else(|| E::MissingMetadata(key.to_string()))
}

pub(super) fn meta_usize(map: &HashMap<String, String>, key: &str, max: usize) -> Result<usize, E> {
    let text = meta(map, key)?;
    let value: usize = text.trim().parse().map_err(|_| E::BadMetadata {
        key: key.into(),
        reason: format!("`{text}` is not a non-negative integer"),
    })?;
    if value == 0 || value > max {
        return Err(E::BadMetadata {
            key: key.into(),
            reason: format!("{value} is outside 1..={max}"),
        });
    }
    Ok(value)
}

/// Parses a comma-separated list of element symbols ("H,C,N,O").
pub fn parse_species(text: &str) -> Result<Vec<u32>, String> {
    let mut numbers = Vec::new();
    for symbol in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let z = crate::elements::atomic_number(symbol)
            .ok_or_else(|| format!("unknown element `{symbol}`"))?;
        if !numbers.contains(&z) {
            numbers.push(z);
        }
    }
    if numbers.is_empty() {
        return Err("empty element list".into());
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// Loads and validates a model from the bytes of a file.
pub fn load_model_bytes(bytes: &[u8]) -> Result<ModelFile> {
    Ok(parse(bytes)?)
}

fn parse(bytes: &[u8]) -> Result<ModelFile, E> {
    let tensors = SafeTensors::deserialize(bytes).map_err(|e| E::NotSafetensors(e.to_string()))?;
    let (_, header) =
        SafeTensors::read_metadata(bytes).map_err(|e| E::NotSafetensors(e.to_string()))?;
    let empty = HashMap::new();
    let map = header.metadata().as_ref().unwrap_or(&empty);

    let version = meta(map, "format_version")?;
    if version.trim() != FORMAT_VERSION.to_string() {
        return Err(E::UnsupportedVersion(version.to_string()));
    }
    let architecture = meta(map, "architecture")?;
    if architecture != ARCHITECTURE_STUDENT && architecture != ARCHITECTURE_PAINN {
        return Err(E::UnsupportedArchitecture(architecture.to_string()));
    }
    let hidden = meta_usize(map, "hidden_dim", MAX_WIDTH)?;
    let num_rbf = meta_usize(map, "num_rbf", MAX_WIDTH)?;
    let num_blocks = meta_usize(map, "num_interactions", MAX_BLOCKS)?;
    let max_z = meta_usize(map, "max_z", 118)?;
    let cutoff_text = meta(map, "cutoff")?;
    let cutoff: f64 = cutoff_text.trim().parse().map_err(|_| E::BadMetadata {
        key: "cutoff".into(),
        reason: format!("`{cutoff_text}` is not a number"),
    })?;
    if !(cutoff.is_finite() && cutoff > 0.0 && cutoff < 1000.0) {
        return Err(E::BadMetadata {
            key: "cutoff".into(),
            reason: format!("{cutoff} is not in (0, 1000) Å"),
        });
    }
    if hidden % 4 != 0 && architecture == ARCHITECTURE_STUDENT {
        return Err(E::BadMetadata {
            key: "hidden_dim".into(),
            reason: format!("{hidden} is not a multiple of 4 (the energy head needs H/4)"),
        });
    }
    let energy_unit = meta(map, "energy_unit")?.to_string();
    let length_unit = meta(map, "length_unit")?.to_string();
    if energy_unit != "eV" {
        return Err(E::BadMetadata {
            key: "energy_unit".into(),
            reason: format!("`{energy_unit}`; only eV is supported"),
        });
    }
    if !matches!(length_unit.as_str(), "angstrom" | "Angstrom" | "Å" | "A") {
        return Err(E::BadMetadata {
            key: "length_unit".into(),
            reason: format!("`{length_unit}`; only angstrom is supported"),
        });
    }
    let provenance = map.get("provenance").cloned().unwrap_or_default();
    let species = match map.get("species") {
        None => None,
        Some(text) => {
            let numbers = parse_species(text).map_err(|reason| E::BadMetadata {
                key: "species".into(),
                reason,
            })?;
            if let Some(&z) = numbers.iter().find(|&&z| z as usize > max_z) {
                return Err(E::BadMetadata {
                    key: "species".into(),
                    reason: format!("element Z={z} is beyond max_z={max_z}"),
                });
            }
            Some(numbers)
        }
    };

    let metadata = ModelMetadata {
        format_version: FORMAT_VERSION,
        architecture: architecture.to_string(),
        energy_unit,
        length_unit,
        provenance,
        species,
    };
    if architecture == ARCHITECTURE_PAINN {
        let config =
            super::painn::config_from_metadata(map, hidden, num_rbf, num_blocks, cutoff, max_z)?;
        let expected = super::painn::expected_shapes(&config);
        let reader = TensorReader::new(&tensors, &expected)?;
        let weights = super::painn::read_weights(config, &reader)?;
        let warnings = super::painn::model_warnings(&weights);
        return Ok(ModelFile {
            weights: ModelWeights::Painn(weights),
            metadata,
            warnings,
        });
    }
    let config = StudentConfig {
        hidden,
        num_rbf,
        num_blocks,
        cutoff,
        max_z,
    };
    let expected = expected_shapes(&config);
    let reader = TensorReader::new(&tensors, &expected)?;
    let read = |name: &str| reader.read(name);
    let linear = |prefix: &str, n_in: usize, n_out: usize| reader.linear(prefix, n_in, n_out);
    let h = hidden;
    let mut blocks = Vec::with_capacity(num_blocks);
    for l in 0..num_blocks {
        let filter1 = linear(
            &format!("interactions.{l}.message.rbf_to_scalar.0"),
            num_rbf,
            h,
        )?;
        let filter2 = linear(
            &format!("interactions.{l}.message.rbf_to_scalar.2"),
            h,
            3 * h,
        )?;
        let update1 = linear(&format!("interactions.{l}.update.update_mlp.0"), 2 * h, h)?;
        let update2 = linear(&format!("interactions.{l}.update.update_mlp.2"), h, 3 * h)?;
        blocks.push(Block {
            filter1,
            filter2,
            update1,
            update2,
            mixing: None,
        });
    }
    let head = [
        linear("energy_head.0", h, h / 2)?,
        linear("energy_head.2", h / 2, h / 4)?,
        linear("energy_head.4", h / 4, 1)?,
    ];
    for (l, block) in blocks.iter_mut().enumerate().take(num_blocks - 1) {
        let m = read(&format!("interactions.{l}.update.mixing_matrix"))?;
        block.mixing = Some([[m[0], m[1], m[2]], [m[3], m[4], m[5]], [m[6], m[7], m[8]]]);
    }
    let embedding = read("embedding.weight")?;
    let rbf_centers = read("rbf.centers")?;
    let rbf_widths = read("rbf.widths")?;
    if let Some(k) = rbf_widths.iter().position(|w| *w == 0.0) {
        return Err(E::Inconsistent(format!("rbf.widths[{k}] is zero")));
    }
    let last_center = rbf_centers[num_rbf - 1];
    if (last_center - cutoff).abs() > 1e-5 * cutoff {
        return Err(E::Inconsistent(format!(
            "cutoff is {cutoff} Å but the last basis centre is {last_center} Å"
        )));
    }
    let weights = StudentWeights {
        config,
        embedding,
        rbf_centers,
        rbf_widths,
        blocks,
        head,
    };
    let warnings = super::model_warnings(&weights);
    Ok(ModelFile {
        weights: ModelWeights::Student(weights),
        metadata,
        warnings,
    })
}

/// Reads the tensors of a file against the table of expected names and shapes.
pub(super) struct TensorReader<'a> {
    tensors: &'a SafeTensors<'a>,
    expected: &'a BTreeMap<String, Vec<usize>>,
}

impl<'a> TensorReader<'a> {
    /// Checks for unexpected tensors first: a file for another architecture says so early.
    pub(super) fn new(
        tensors: &'a SafeTensors<'a>,
        expected: &'a BTreeMap<String, Vec<usize>>,
    ) -> Result<Self, E> {
        let mut names: Vec<&str> = tensors.names().into_iter().map(|s| s.as_str()).collect();
        names.sort_unstable();
        if let Some(extra) = names.iter().find(|n| !expected.contains_key(**n)) {
            return Err(E::UnexpectedTensor(extra.to_string()));
        }
        Ok(TensorReader { tensors, expected })
    }

    /// The values of one tensor, widened to f64, after the shape and finiteness checks.
    pub(super) fn read(&self, name: &str) -> Result<Vec<f64>, E> {
        let shape = self
            .expected
            .get(name)
            .ok_or_else(|| E::MissingTensor(name.to_string()))?;
        let view = self
            .tensors
            .tensor(name)
            .map_err(|_| E::MissingTensor(name.to_string()))?;
        if view.shape() != shape.as_slice() {
            return Err(E::WrongShape {
                name: name.into(),
                expected: shape.clone(),
                found: view.shape().to_vec(),
            });
        }
        let values = decode(name, view.dtype(), view.data())?;
        if let Some(index) = values.iter().position(|v| !v.is_finite()) {
            return Err(E::NonFinite {
                name: name.into(),
                index,
            });
        }
        Ok(values)
    }

    /// `{prefix}.weight` (n_out x n_in) and `{prefix}.bias` (n_out).
    pub(super) fn linear(&self, prefix: &str, n_in: usize, n_out: usize) -> Result<Linear, E> {
        Ok(Linear {
            n_in,
            n_out,
            weight: self.read(&format!("{prefix}.weight"))?,
            bias: self.read(&format!("{prefix}.bias"))?,
        })
    }

    /// `{prefix}.weight` only; the bias is zero.
    pub(super) fn linear_without_bias(
        &self,
        prefix: &str,
        n_in: usize,
        n_out: usize,
    ) -> Result<Linear, E> {
        Ok(Linear {
            n_in,
            n_out,
            weight: self.read(&format!("{prefix}.weight"))?,
            bias: vec![0.0; n_out],
        })
    }
}

fn decode(name: &str, dtype: Dtype, data: &[u8]) -> Result<Vec<f64>, E> {
    // safetensors has already checked that the byte length matches shape x dtype.
    Ok(match dtype {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f64())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f64())
            .collect(),
        other => {
            return Err(E::WrongDtype {
                name: name.into(),
                found: format!("{other:?}"),
            })
        }
    })
}

/// Tensor names and shapes of a student with this configuration.
pub fn expected_shapes(config: &StudentConfig) -> BTreeMap<String, Vec<usize>> {
    let (h, k) = (config.hidden, config.num_rbf);
    let mut shapes = BTreeMap::new();
    shapes.insert("embedding.weight".to_string(), vec![config.max_z + 1, h]);
    shapes.insert("rbf.centers".to_string(), vec![k]);
    shapes.insert("rbf.widths".to_string(), vec![k]);
    for l in 0..config.num_blocks {
        let p = format!("interactions.{l}");
        shapes.insert(format!("{p}.message.rbf_to_scalar.0.weight"), vec![h, k]);
        shapes.insert(format!("{p}.message.rbf_to_scalar.0.bias"), vec![h]);
        shapes.insert(
            format!("{p}.message.rbf_to_scalar.2.weight"),
            vec![3 * h, h],
        );
        shapes.insert(format!("{p}.message.rbf_to_scalar.2.bias"), vec![3 * h]);
        shapes.insert(format!("{p}.update.update_mlp.0.weight"), vec![h, 2 * h]);
        shapes.insert(format!("{p}.update.update_mlp.0.bias"), vec![h]);
        shapes.insert(format!("{p}.update.update_mlp.2.weight"), vec![3 * h, h]);
        shapes.insert(format!("{p}.update.update_mlp.2.bias"), vec![3 * h]);
        if l + 1 < config.num_blocks {
            shapes.insert(format!("{p}.update.mixing_matrix"), vec![3, 3]);
        }
    }
    shapes.insert("energy_head.0.weight".to_string(), vec![h / 2, h]);
    shapes.insert("energy_head.0.bias".to_string(), vec![h / 2]);
    shapes.insert("energy_head.2.weight".to_string(), vec![h / 4, h / 2]);
    shapes.insert("energy_head.2.bias".to_string(), vec![h / 4]);
    shapes.insert("energy_head.4.weight".to_string(), vec![1, h / 4]);
    shapes.insert("energy_head.4.bias".to_string(), vec![1]);
    shapes
}

/// Flattens weights into (name, values) pairs in the file's naming.
pub fn named_tensors(weights: &StudentWeights) -> Vec<(String, Vec<f64>)> {
    let mut out = vec![
        ("embedding.weight".to_string(), weights.embedding.clone()),
        ("rbf.centers".to_string(), weights.rbf_centers.clone()),
        ("rbf.widths".to_string(), weights.rbf_widths.clone()),
    ];
    let push_linear = |out: &mut Vec<(String, Vec<f64>)>, prefix: String, layer: &Linear| {
        out.push((format!("{prefix}.weight"), layer.weight.clone()));
        out.push((format!("{prefix}.bias"), layer.bias.clone()));
    };
    for (l, block) in weights.blocks.iter().enumerate() {
        let p = format!("interactions.{l}");
        push_linear(
            &mut out,
            format!("{p}.message.rbf_to_scalar.0"),
            &block.filter1,
        );
        push_linear(
            &mut out,
            format!("{p}.message.rbf_to_scalar.2"),
            &block.filter2,
        );
        push_linear(&mut out, format!("{p}.update.update_mlp.0"), &block.update1);
        push_linear(&mut out, format!("{p}.update.update_mlp.2"), &block.update2);
        if let Some(m) = &block.mixing {
            out.push((
                format!("{p}.update.mixing_matrix"),
                m.iter().flatten().copied().collect(),
            ));
        }
    }
    for (i, layer) in weights.head.iter().enumerate() {
        push_linear(&mut out, format!("energy_head.{}", 2 * i), layer);
    }
    out
}

/// Serialises weights (as F32 or F64) with the given metadata into safetensors bytes.
/// Used by tests and tools; the metadata map should contain the provenance and,
/// optionally, `species`; the structural keys are filled in here.
pub fn save_model_bytes(
    weights: &StudentWeights,
    f64_storage: bool,
    extra_metadata: &[(&str, &str)],
) -> Result<Vec<u8>> {
    let c = &weights.config;
    let mut meta: HashMap<String, String> = HashMap::new();
    meta.insert("format_version".into(), FORMAT_VERSION.to_string());
    meta.insert("architecture".into(), ARCHITECTURE_STUDENT.into());
    meta.insert("hidden_dim".into(), c.hidden.to_string());
    meta.insert("num_rbf".into(), c.num_rbf.to_string());
    meta.insert("num_interactions".into(), c.num_blocks.to_string());
    meta.insert("cutoff".into(), format!("{:?}", c.cutoff));
    meta.insert("max_z".into(), c.max_z.to_string());
    meta.insert("energy_unit".into(), "eV".into());
    meta.insert("length_unit".into(), "angstrom".into());
    for (k, v) in extra_metadata {
        meta.insert(k.to_string(), v.to_string());
    }
    let shapes = expected_shapes(c);
    let mut buffers: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, values) in named_tensors(weights) {
        let shape = shapes
            .get(&name)
            .cloned()
            .ok_or_else(|| Error::Internal(format!("no shape for {name}")))?;
        let bytes: Vec<u8> = if f64_storage {
            values.iter().flat_map(|v| v.to_le_bytes()).collect()
        } else {
            values
                .iter()
                .flat_map(|v| (*v as f32).to_le_bytes())
                .collect()
        };
        buffers.push((name, shape, bytes));
    }
    serialize(buffers, f64_storage, meta)
}

/// Writes (name, shape, little-endian bytes) tensors of one dtype with metadata.
pub(super) fn serialize(
    buffers: Vec<(String, Vec<usize>, Vec<u8>)>,
    f64_storage: bool,
    meta: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let dtype = if f64_storage { Dtype::F64 } else { Dtype::F32 };
    let views: Vec<(String, safetensors::tensor::TensorView)> = buffers
        .iter()
        .map(|(name, shape, bytes)| {
            safetensors::tensor::TensorView::new(dtype, shape.clone(), bytes)
                .map(|view| (name.clone(), view))
                .map_err(|e| Error::Internal(e.to_string()))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize(views, &Some(meta)).map_err(|e| Error::Internal(e.to_string()))
}
