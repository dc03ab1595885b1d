//! Model files: the safetensors format (see `docs/model-format.md`), the student's
//! weights in memory, and the checks that report the model's known defects.

mod checks;
mod format;
pub mod painn;
pub mod random;

pub use checks::{model_warnings, ModelWarning};
pub use format::{
    expected_shapes, load_model_bytes, load_model_file, parse_species, save_model_bytes,
    ARCHITECTURE_PAINN, ARCHITECTURE_STUDENT, FORMAT_VERSION,
};
pub use painn::{
    random_painn, save_painn_bytes, PainnConfig, PainnInteraction, PainnMixing, PainnWeights,
};

/// Hyper-parameters of the MLFF-Distiller student.
#[derive(Debug, Clone, PartialEq)]
pub struct StudentConfig {
    /// Hidden width H.
    pub hidden: usize,
    /// Radial basis size K.
    pub num_rbf: usize,
    /// Interaction blocks L.
    pub num_blocks: usize,
    /// Cutoff radius rc in Å (edges with d <= rc exist).
    pub cutoff: f64,
    /// Largest atomic number the embedding covers (it has max_z + 1 rows).
    pub max_z: usize,
}

/// A dense layer y = W x + b with W stored row-major as `n_out x n_in` (PyTorch layout).
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    pub n_in: usize,
    pub n_out: usize,
    pub weight: Vec<f64>,
    pub bias: Vec<f64>,
}

impl Linear {
    pub fn row(&self, o: usize) -> &[f64] {
        &self.weight[o * self.n_in..(o + 1) * self.n_in]
    }
}

/// One interaction block.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// K -> H (`message.rbf_to_scalar.0`).
    pub filter1: Linear,
    /// H -> 3H (`message.rbf_to_scalar.2`), outputs in the order phi_s, phi_v1, phi_v2.
    pub filter2: Linear,
    /// 2H -> H (`update.update_mlp.0`), input [s, |v|].
    pub update1: Linear,
    /// H -> 3H (`update.update_mlp.2`), outputs in the order ds, g1, g2.
    pub update2: Linear,
    /// `update.mixing_matrix` acting on x,y,z; `None` for the last block, whose vector
    /// update cannot reach the energy.
    pub mixing: Option<[[f64; 3]; 3]>,
}

/// Every weight of a student, in f64 (files store f32; the conversion is exact).
#[derive(Debug, Clone, PartialEq)]
pub struct StudentWeights {
    pub config: StudentConfig,
    /// (max_z + 1) x H, row-major.
    pub embedding: Vec<f64>,
    pub rbf_centers: Vec<f64>,
    pub rbf_widths: Vec<f64>,
    pub blocks: Vec<Block>,
    /// H -> H/2 -> H/4 -> 1, silu between.
    pub head: [Linear; 3],
}

/// Descriptive metadata of a model file.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelMetadata {
    pub format_version: u32,
    pub architecture: String,
    pub energy_unit: String,
    pub length_unit: String,
    pub provenance: String,
    /// Elements the model was trained on, if recorded; other elements are rejected.
    pub species: Option<Vec<u32>>,
}

/// The weights of one of the architectures a model file can hold.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelWeights {
    /// `mlff-distiller-student`.
    Student(StudentWeights),
    /// `painn`: schnetpack 2.2 PaiNN + Atomwise energy + offsets and scaling.
    Painn(PainnWeights),
}

impl PartialEq<StudentWeights> for ModelWeights {
    fn eq(&self, other: &StudentWeights) -> bool {
        matches!(self, ModelWeights::Student(w) if w == other)
    }
}

impl ModelWeights {
    /// The architecture id written in the file's metadata.
    pub fn architecture(&self) -> &'static str {
        match self {
            ModelWeights::Student(_) => ARCHITECTURE_STUDENT,
            ModelWeights::Painn(_) => ARCHITECTURE_PAINN,
        }
    }
    /// Cutoff radius rc in Å: edges with d <= rc exist.
    pub fn cutoff(&self) -> f64 {
        match self {
            ModelWeights::Student(w) => w.config.cutoff,
            ModelWeights::Painn(w) => w.config.cutoff,
        }
    }
    /// Number of message-passing blocks.
    pub fn num_blocks(&self) -> usize {
        match self {
            ModelWeights::Student(w) => w.config.num_blocks,
            ModelWeights::Painn(w) => w.config.num_blocks,
        }
    }
    /// Largest atomic number the embedding covers.
    pub fn max_z(&self) -> usize {
        match self {
            ModelWeights::Student(w) => w.config.max_z,
            ModelWeights::Painn(w) => w.config.max_z,
        }
    }
    /// Width of the atom features.
    pub fn hidden(&self) -> usize {
        match self {
            ModelWeights::Student(w) => w.config.hidden,
            ModelWeights::Painn(w) => w.config.hidden,
        }
    }
    /// The student's weights, if this is a student.
    pub fn student(&self) -> Option<&StudentWeights> {
        match self {
            ModelWeights::Student(w) => Some(w),
            ModelWeights::Painn(_) => None,
        }
    }
    /// The PaiNN weights, if this is a PaiNN model.
    pub fn painn(&self) -> Option<&PainnWeights> {
        match self {
            ModelWeights::Painn(w) => Some(w),
            ModelWeights::Student(_) => None,
        }
    }
}

/// A validated model file.
#[derive(Debug, Clone)]
pub struct ModelFile {
    pub weights: ModelWeights,
    pub metadata: ModelMetadata,
    pub warnings: Vec<ModelWarning>,
}

impl ModelFile {
    /// Atomic numbers this model accepts.
    pub fn supported_numbers(&self) -> Vec<u32> {
        match &self.metadata.species {
            Some(species) => species.clone(),
            None => (1..=self.weights.max_z() as u32).collect(),
        }
    }

    /// Whether atomic number `z` is accepted.
    pub fn supports(&self, z: i32) -> bool {
        if z < 1 || z as usize > self.weights.max_z() {
            return false;
        }
        match &self.metadata.species {
            Some(species) => species.contains(&(z as u32)),
            None => true,
        }
    }
}
