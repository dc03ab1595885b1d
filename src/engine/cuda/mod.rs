//! CUDA engine (work in progress: see issue 4). Until it exists, asking for CUDA
//! is a clear `Device` error and `Auto` falls back to the CPU.

use std::sync::Arc;

use super::Engine;
use crate::error::{Error, Result};
use crate::model::ModelFile;
use crate::options::Options;

/// Whether a usable GPU, driver and NVRTC are present. Never panics.
pub fn is_available() -> bool {
    false
}

/// Creates the CUDA engine, or explains why it cannot.
pub fn create(_file: Arc<ModelFile>, _options: &Options) -> Result<Box<dyn Engine>> {
    Err(Error::Device(
        "this build of mlff has no CUDA engine yet; use device cpu".into(),
    ))
}
