//! Typed errors. Every fallible public function returns [`Result`]; the C ABI maps
//! each variant to one `MlffStatus` value.

/// Why a model file was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelFormatError {
    #[error("not a safetensors file: {0}")]
    NotSafetensors(String),
    #[error("missing metadata key `{0}`")]
    MissingMetadata(String),
    #[error("bad metadata value for `{key}`: {reason}")]
    BadMetadata { key: String, reason: String },
    #[error("unsupported model format version `{0}` (this build reads version 1)")]
    UnsupportedVersion(String),
    #[error(
        "unsupported architecture `{0}` (this build knows `mlff-distiller-student` and `painn`)"
    )]
    UnsupportedArchitecture(String),
    #[error("missing tensor `{0}`")]
    MissingTensor(String),
    #[error("unexpected tensor `{0}` (not part of this architecture)")]
    UnexpectedTensor(String),
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    WrongShape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("tensor `{name}` has dtype {found}, expected F32, F64, F16 or BF16")]
    WrongDtype { name: String, found: String },
    #[error("tensor `{name}` holds a non-finite value at flat index {index}")]
    NonFinite { name: String, index: usize },
    #[error("inconsistent model: {0}")]
    Inconsistent(String),
}

/// The error type of the whole crate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("I/O error: {0}")]
    Io(String),
    #[error("invalid model file: {0}")]
    ModelFormat(#[from] ModelFormatError),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("device error: {0}")]
    Device(String),
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument(message.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
