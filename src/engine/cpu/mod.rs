//! The CPU engine: f64 reference and f32.

use std::sync::Arc;

use super::Engine;
use crate::error::{Error, Result};
use crate::model::ModelFile;
use crate::options::Options;
use crate::system::{Request, Results, System};

pub struct CpuEngine {
    file: Arc<ModelFile>,
}

impl CpuEngine {
    pub fn new(file: Arc<ModelFile>, _options: &Options) -> Result<Self> {
        Ok(CpuEngine { file })
    }
}

impl Engine for CpuEngine {
    fn compute(&mut self, _system: &System, _request: &Request) -> Result<Results> {
        let _ = &self.file;
        Err(Error::Internal("not yet".into()))
    }
    fn description(&self) -> String {
        "cpu".into()
    }
    fn is_gpu(&self) -> bool {
        false
    }
}
