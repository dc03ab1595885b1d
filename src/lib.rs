//! mlff: fast, exact inference of distilled machine-learned force fields.
//!
//! ```no_run
//! use mlff::{Model, Options, Request, System};
//! let mut model = Model::load("model.safetensors", &Options::default())?;
//! let numbers = [8, 1, 1];
//! let positions = [[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]];
//! let results = model.compute(&System::molecule(&numbers, &positions), &Request::ALL)?;
//! println!("E = {} eV", results.energy);
//! # Ok::<(), mlff::Error>(())
//! ```

pub mod convert;
pub mod elements;
pub mod engine;
pub mod error;
pub mod ffi;
pub mod io;
pub mod model;
pub mod neighbors;
pub mod options;
pub mod structures;
pub mod system;

use std::path::Path;
use std::sync::Arc;

pub use engine::DeviceSystem;
pub use error::{Error, ModelFormatError, Result};
pub use model::{ModelFile, ModelWarning};
pub use options::{Device, Options, Precision};
pub use system::{Request, Results, System};

use engine::Engine;

/// A loaded model bound to an engine. A `Model` may be used from one thread at a
/// time; different `Model`s work concurrently.
pub struct Model {
    file: Arc<ModelFile>,
    engine: Box<dyn Engine>,
    precision: Precision,
    /// Whether the model supports each atomic number 0..=max_z (`ModelFile::supports`),
    /// for the check that every call runs.
    supported: Vec<bool>,
}

/// `ModelFile::supports` for 0..=max_z.
fn supported_numbers(file: &ModelFile) -> Vec<bool> {
    (0..=file.weights.max_z())
        .map(|z| i32::try_from(z).is_ok_and(|z| file.supports(z)))
        .collect()
}

impl Model {
    /// Opens a model file with the given options.
    pub fn load(path: impl AsRef<Path>, options: &Options) -> Result<Model> {
        Model::from_file(model::load_model_file(path)?, options)
    }

    /// Binds an already loaded model file to an engine.
    pub fn from_file(file: ModelFile, options: &Options) -> Result<Model> {
        let file = Arc::new(file);
        let engine: Box<dyn Engine> = match options.device {
            Device::Cpu => Box::new(engine::cpu::CpuEngine::new(file.clone(), options)?),
            Device::Cuda => engine::cuda::create(file.clone(), options)?,
            Device::Auto => {
                if engine::cuda::is_available() {
                    match engine::cuda::create(file.clone(), options) {
                        Ok(engine) => engine,
                        Err(_) => Box::new(engine::cpu::CpuEngine::new(file.clone(), options)?),
                    }
                } else {
                    Box::new(engine::cpu::CpuEngine::new(file.clone(), options)?)
                }
            }
        };
        Ok(Model {
            supported: supported_numbers(&file),
            file,
            engine,
            precision: options.precision,
        })
    }

    /// Opens a model on the CUDA engine in the caller's CUDA driver context
    /// (`context`: a raw `CUcontext`, 0 = the one current on this thread) rather
    /// than the device's primary context, so that device pointers of that context
    /// can be given to [`Model::compute_device`]. `options.device` must be `Auto` or
    /// `Cuda`; `options.device_index` is ignored (the context's device is used). The
    /// context is never destroyed by mlff and must outlive the model.
    pub fn load_in_cuda_context(
        path: impl AsRef<Path>,
        options: &Options,
        context: usize,
    ) -> Result<Model> {
        if options.device == Device::Cpu {
            return Err(Error::invalid(
                "a model in a CUDA context needs device auto or cuda, not cpu",
            ));
        }
        let file = Arc::new(model::load_model_file(path)?);
        let engine = engine::cuda::create_in_context(file.clone(), options, context)?;
        Ok(Model {
            supported: supported_numbers(&file),
            file,
            engine,
            precision: options.precision,
        })
    }

    /// Checks a system against this model: geometry and elements.
    pub fn validate(&self, system: &System) -> Result<()> {
        system.validate_geometry()?;
        self.validate_elements(system.numbers)
    }

    fn validate_elements(&self, numbers: &[i32]) -> Result<()> {
        // Run on every call: one pass without early exits over the table of supported
        // numbers (the loop below, one `supports` per atom, took 17 us for 10^4 atoms),
        // and the first unsupported atom looked up only for the message.
        let all = numbers.iter().fold(true, |ok, &z| {
            // Negative numbers become indices past the table.
            ok & self.supported.get(z as usize).copied().unwrap_or(false)
        });
        if all {
            return Ok(());
        }
        for (i, &z) in numbers.iter().enumerate() {
            if !self.file.supports(z) {
                let name = u32::try_from(z)
                    .ok()
                    .and_then(elements::symbol)
                    .unwrap_or("?");
                return Err(Error::invalid(format!(
                    "atom {i} has atomic number {z} ({name}), which this model does not support (supported: {})",
                    self.supported_elements_text()
                )));
            }
        }
        Ok(())
    }

    fn supported_elements_text(&self) -> String {
        match &self.file.metadata.species {
            Some(species) => species
                .iter()
                .filter_map(|&z| elements::symbol(z))
                .collect::<Vec<_>>()
                .join(","),
            None => format!("Z = 1..{}", self.file.weights.max_z()),
        }
    }

    /// Energy and whatever `request` asks for.
    pub fn compute(&mut self, system: &System, request: &Request) -> Result<Results> {
        self.validate(system)?;
        self.engine.compute(system, request)
    }

    /// `compute`, with the forces (when requested) written into `forces`, one row per
    /// atom, instead of `Results::forces` (left empty): the C ABI's path, with no
    /// vector allocated per call. `forces` is written only when the call succeeds.
    pub fn compute_forces_into(
        &mut self,
        system: &System,
        request: &Request,
        forces: &mut [[f64; 3]],
    ) -> Result<Results> {
        self.validate(system)?;
        if forces.len() != system.n_atoms() {
            return Err(Error::invalid(format!(
                "the forces buffer has {} rows for {} atoms",
                forces.len(),
                system.n_atoms()
            )));
        }
        self.engine.compute_forces_into(system, request, forces)
    }

    /// Energy (and virial if requested) of a system whose positions are in GPU
    /// memory; the forces, when `system.forces` is set, are written to GPU memory.
    /// `request.forces` is ignored (the forces pointer decides). The returned
    /// `Results` has no forces. Needs the CUDA engine; non-finite positions are
    /// found on the device and reported like on the host.
    pub fn compute_device(&mut self, system: &DeviceSystem, request: &Request) -> Result<Results> {
        if system.n_local > system.numbers.len() {
            return Err(Error::invalid(format!(
                "n_local = {} exceeds n_atoms = {}",
                system.n_local,
                system.numbers.len()
            )));
        }
        System::validate_cell(&system.cell, system.pbc)?;
        self.validate_elements(system.numbers)?;
        let request = Request {
            forces: system.forces != 0,
            virial: request.virial,
            atom_energies: false,
            atom_virials: false,
        };
        self.engine.compute_device(system, &request)
    }

    /// Independent systems in one pass; results equal one-by-one calls.
    pub fn compute_batch(&mut self, systems: &[System], request: &Request) -> Result<Vec<Results>> {
        self.validate_batch(systems)?;
        self.engine.compute_batch(systems, request)
    }

    /// `validate` for each of `systems`, an input error naming the first bad one.
    fn validate_batch(&self, systems: &[System]) -> Result<()> {
        for (k, system) in systems.iter().enumerate() {
            self.validate(system).map_err(|e| match e {
                Error::InvalidArgument(m) => Error::InvalidArgument(format!("system {k}: {m}")),
                other => other,
            })?;
        }
        Ok(())
    }

    /// `compute_batch`, with the forces (when requested) of `systems[k]` written into
    /// `forces[k]`, one row per atom, instead of `Results::forces` (left empty): the C
    /// ABI's batch path, with no vector per system. Written only when the call succeeds.
    pub fn compute_batch_forces_into(
        &mut self,
        systems: &[System],
        request: &Request,
        forces: &mut [&mut [[f64; 3]]],
    ) -> Result<Vec<Results>> {
        if forces.len() != systems.len() {
            return Err(Error::invalid(format!(
                "{} forces buffers for {} systems",
                forces.len(),
                systems.len()
            )));
        }
        self.validate_batch(systems)?;
        for (k, (system, rows)) in systems.iter().zip(forces.iter()).enumerate() {
            if rows.len() != system.n_atoms() {
                return Err(Error::invalid(format!(
                    "system {k}: the forces buffer has {} rows for {} atoms",
                    rows.len(),
                    system.n_atoms()
                )));
            }
        }
        self.engine
            .compute_batch_forces_into(systems, request, forces)
    }

    /// Cutoff radius in Å.
    pub fn cutoff(&self) -> f64 {
        self.file.weights.cutoff()
    }

    /// Number of message-passing layers; the receptive field is `num_layers * cutoff`.
    pub fn num_layers(&self) -> usize {
        self.file.weights.num_blocks()
    }

    /// The architecture id of the model (`mlff-distiller-student`, `painn`).
    pub fn architecture(&self) -> &'static str {
        self.file.weights.architecture()
    }

    /// Known defects of the model.
    pub fn warnings(&self) -> &[ModelWarning] {
        &self.file.warnings
    }

    /// Atomic numbers the model accepts.
    pub fn supported_numbers(&self) -> Vec<u32> {
        self.file.supported_numbers()
    }

    /// The engine in use, e.g. "cpu (f32, 2 threads)".
    pub fn engine_description(&self) -> String {
        self.engine.description()
    }

    /// Whether the engine runs on a GPU.
    pub fn is_gpu(&self) -> bool {
        self.engine.is_gpu()
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The model file (weights, metadata, warnings).
    pub fn file(&self) -> &ModelFile {
        &self.file
    }
}

/// Version of this library.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
