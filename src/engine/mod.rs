//! Engines evaluate a model on one backend. They share the model description and
//! the neighbour-list semantics, and never call each other; the CPU f64 engine is
//! the reference every other path is tested against.

pub mod cpu;
pub mod cuda;

use crate::error::Result;
use crate::system::{Request, Results, System};

/// A backend that evaluates one loaded model.
pub trait Engine: Send {
    /// Evaluates one validated system (sizes, finite values and elements already checked).
    fn compute(&mut self, system: &System, request: &Request) -> Result<Results>;

    /// Evaluates independent systems; results equal the one-by-one results.
    fn compute_batch(&mut self, systems: &[System], request: &Request) -> Result<Vec<Results>> {
        systems.iter().map(|s| self.compute(s, request)).collect()
    }

    /// A short human-readable name: "cpu (f64, 2 threads)", "cuda:0 (NVIDIA H100, f32)".
    fn description(&self) -> String;

    /// Whether this engine runs on a GPU.
    fn is_gpu(&self) -> bool;
}
