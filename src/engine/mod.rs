//! Engines evaluate a model on one backend. They share the model description and
//! the neighbour-list semantics, and never call each other; the CPU f64 engine is
//! the reference every other path is tested against.

pub mod cpu;
pub mod cuda;

use crate::error::{Error, Result};
use crate::system::{Request, Results, System};

/// One structure whose positions are, and whose forces go, in GPU memory
/// (`mlff_model_compute_device`). Everything else is on the host.
#[derive(Debug, Clone, Copy)]
pub struct DeviceSystem<'a> {
    /// Atomic numbers (host), one per atom.
    pub numbers: &'a [i32],
    /// Atoms `0..n_local` own the energy.
    pub n_local: usize,
    /// Device address of 3 n f64 positions in Å (xyz per atom), readable in the
    /// engine's CUDA context.
    pub positions: u64,
    /// Lattice vectors as rows, in Å (host).
    pub cell: Option<[[f64; 3]; 3]>,
    pub pbc: [bool; 3],
    /// Device address of 3 n f64 receiving the forces in eV/Å, or 0 for none.
    pub forces: u64,
    /// The caller's `CUstream` (0: the legacy default stream): the work is ordered
    /// after what is already enqueued there, and the forces are complete before
    /// anything enqueued there after the call.
    pub stream: usize,
}

/// A backend that evaluates one loaded model.
pub trait Engine: Send {
    /// Evaluates one validated system (sizes, finite values and elements already checked).
    fn compute(&mut self, system: &System, request: &Request) -> Result<Results>;

    /// `compute` with the forces written into `forces` (one row per atom, only when
    /// the request has forces, and only once everything else succeeded) instead of
    /// into a new vector: the returned `Results` has none. Engines whose results arrive
    /// in their own buffers (the CUDA engine: page-locked memory) copy them straight
    /// there: no allocation per call (its pages touched for the first time: 0.4 ms at
    /// 10^5 atoms in a virtual machine) and no second copy (the C ABI's path).
    fn compute_forces_into(
        &mut self,
        system: &System,
        request: &Request,
        forces: &mut [[f64; 3]],
    ) -> Result<Results> {
        let mut results = self.compute(system, request)?;
        if request.forces && request.needs_gradient() {
            if results.forces.len() != forces.len() {
                return Err(Error::Internal(format!(
                    "the engine returned {} forces for {} atoms",
                    results.forces.len(),
                    forces.len()
                )));
            }
            forces.copy_from_slice(&results.forces);
        }
        results.forces = Vec::new();
        Ok(results)
    }

    /// Evaluates independent systems; results equal the one-by-one results.
    fn compute_batch(&mut self, systems: &[System], request: &Request) -> Result<Vec<Results>> {
        systems.iter().map(|s| self.compute(s, request)).collect()
    }

    /// `compute_batch` with the forces (when requested) of `systems[k]` written into
    /// `forces[k]` (one row per atom; the callers check the lengths) instead of
    /// `Results::forces`, left empty: the C ABI's batch path. Written only on success.
    /// The default computes, then copies; the CUDA engine copies from its page-locked
    /// buffer straight into the caller's rows (no vector per system).
    fn compute_batch_forces_into(
        &mut self,
        systems: &[System],
        request: &Request,
        forces: &mut [&mut [[f64; 3]]],
    ) -> Result<Vec<Results>> {
        let mut results = self.compute_batch(systems, request)?;
        let wanted = request.forces && request.needs_gradient();
        if results.len() != forces.len()
            || (wanted
                && results
                    .iter()
                    .zip(forces.iter())
                    .any(|(r, f)| r.forces.len() != f.len()))
        {
            return Err(Error::Internal(format!(
                "the engine returned results for {} systems, or forces of other lengths, for {} buffers",
                results.len(),
                forces.len()
            )));
        }
        for (r, f) in results.iter_mut().zip(forces.iter_mut()) {
            if wanted {
                f.copy_from_slice(&r.forces);
            }
            r.forces = Vec::new();
        }
        Ok(results)
    }

    /// Evaluates a system whose positions and forces live in GPU memory. Only the
    /// energy and the virial are returned in `Results` (the forces go to
    /// `system.forces`). Engines without a GPU refuse.
    fn compute_device(&mut self, system: &DeviceSystem, request: &Request) -> Result<Results> {
        let _ = (system, request);
        Err(Error::Device(format!(
            "the model runs on the {} engine; device-resident inputs need the CUDA engine",
            self.description()
        )))
    }

    /// A short human-readable name: "cpu (f64, 2 threads)", "cuda:0 (NVIDIA H100, f32)".
    fn description(&self) -> String;

    /// Whether this engine runs on a GPU.
    fn is_gpu(&self) -> bool;
}
