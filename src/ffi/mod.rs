//! The C ABI (see include/mlff.h, generated from this module by `tests/header.rs`).
//! The only module with raw pointers and status codes.
//!
//! Conventions, all enforced here:
//! - every `extern "C"` body runs in a panic guard (`state::guard*`); a panic
//!   becomes `MLFF_ERR_INTERNAL` with its message;
//! - every pointer is NULL-checked and alignment-checked; enum-like inputs are
//!   plain integers, validated before use;
//! - outputs are written only on success (compute into Rust buffers, then copy);
//! - the last error is a thread-local string, "" when the last status call succeeded.
//!
//! Doc comments of public items become the Doxygen comments of the header.

mod convert;
mod state;

use std::ffi::{c_char, c_void, CStr, CString};
use std::path::PathBuf;

use convert::{aligned, required};
use state::{c_string, guard, guard_quiet, guard_value, FfiError};

use crate::Model;

/// Version of the C ABI described by this header. It changes whenever a type
/// layout or a function signature changes; compare it with `mlff_abi_version()`
/// to detect a header/library mismatch at run time.
pub const MLFF_ABI_VERSION: u32 = 1;

/// Status returned by every fallible function. Values are never reused. On any
/// status other than `MLFF_OK`, `mlff_last_error()` describes the problem and no
/// output was written.
#[repr(C)]
#[must_use = "an MlffStatus reports failure; check it"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum MlffStatus {
    /// Success.
    MLFF_OK = 0,
    /// A required pointer argument (or a required array of a struct) was NULL.
    MLFF_ERR_NULL_POINTER = 1,
    /// An argument is invalid: sizes, non-finite values, an element the model
    /// does not support, n_local > n_atoms, a singular cell, two atoms at the
    /// same position, an out-of-range option. The message names the atom or field.
    MLFF_ERR_INVALID_ARGUMENT = 2,
    /// A file could not be read (for example, it does not exist).
    MLFF_ERR_IO = 3,
    /// A file is not a valid model (not safetensors, truncated, wrong tensors...).
    MLFF_ERR_MODEL_FORMAT = 4,
    /// The requested device is unavailable or failed (for example, CUDA requested
    /// on a machine without a usable GPU).
    MLFF_ERR_DEVICE = 5,
    /// Memory could not be allocated (host or device).
    MLFF_ERR_OUT_OF_MEMORY = 6,
    /// A bug in mlff (including a caught panic). Please report it with the message.
    MLFF_ERR_INTERNAL = 255,
}

/// Where to compute: one of the `MLFF_DEVICE_*` constants. A fixed-size integer
/// rather than a C enum, so any value coming from C is well defined; an
/// out-of-range value is rejected with `MLFF_ERR_INVALID_ARGUMENT`.
pub type MlffDevice = i32;
/// CUDA when a usable GPU, driver and NVRTC are present, else the CPU. Never
/// fails for lack of a GPU.
pub const MLFF_DEVICE_AUTO: MlffDevice = 0;
/// The CPU engine.
pub const MLFF_DEVICE_CPU: MlffDevice = 1;
/// The CUDA engine; `mlff_model_create` fails with `MLFF_ERR_DEVICE` where none is usable.
pub const MLFF_DEVICE_CUDA: MlffDevice = 2;

/// Arithmetic precision: one of the `MLFF_PRECISION_*` constants (an integer,
/// validated like `MlffDevice`). Neighbour lists are always built in f64.
pub type MlffPrecision = i32;
/// f32 everywhere (the default).
pub const MLFF_PRECISION_F32: MlffPrecision = 0;
/// f64 everywhere: the reference.
pub const MLFF_PRECISION_F64: MlffPrecision = 1;
/// BF16/FP16 matrix operands with f32 accumulation on the GPU; f32 on the CPU.
pub const MLFF_PRECISION_MIXED: MlffPrecision = 2;

/// How to open a model. Start from `mlff_options_default()` and change fields.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MlffOptions {
    /// An `MLFF_DEVICE_*` value (default `MLFF_DEVICE_AUTO`).
    pub device: MlffDevice,
    /// CUDA device ordinal, >= 0 (default 0; ignored on the CPU).
    pub device_index: i32,
    /// An `MLFF_PRECISION_*` value (default `MLFF_PRECISION_F32`).
    pub precision: MlffPrecision,
    /// CPU threads; 0 (default) means `MLFF_NUM_THREADS`, else `OMP_NUM_THREADS`,
    /// else all cores.
    pub num_threads: u32,
}

/// One structure to evaluate. The library only reads the arrays, and only during
/// the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct MlffSystem {
    /// All atoms: local atoms first, then ghosts.
    pub n_atoms: usize,
    /// The energy is the sum over atoms [0, n_local); atoms [n_local, n_atoms) are
    /// ghosts (explicit periodic or domain-decomposition copies). Must be <= n_atoms.
    pub n_local: usize,
    /// Atomic numbers, n_atoms values (may be NULL only when n_atoms is 0).
    pub numbers: *const i32,
    /// Cartesian positions in Å, 3 * n_atoms values (x0, y0, z0, x1, ...); need
    /// not be wrapped into the cell (may be NULL only when n_atoms is 0).
    pub positions: *const f64,
    /// 9 values, lattice vectors in Å as rows (a = cell[0..3], ...), or NULL for
    /// no cell. Must not be NULL when any `pbc` entry is true.
    pub cell: *const f64,
    /// Periodicity along each lattice vector.
    pub pbc: [bool; 3],
}

/// Where results go. Set an array pointer to NULL to skip computing it; the
/// energy is always computed. Nothing is written unless the call succeeds.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct MlffResults {
    /// Energy of the local atoms, eV.
    pub energy: f64,
    /// 3 * n_atoms values or NULL: forces -dE/dr in eV/Å on every atom, ghosts
    /// included (add ghost forces back to their owners).
    pub forces: *mut f64,
    /// 9 values or NULL: virial W[a][b] = sum r_a F_b in eV (LAMMPS convention),
    /// row-major at index 3 * a + b. Not symmetric for models with the
    /// `not-rotation-invariant` warning.
    pub virial: *mut f64,
    /// n_atoms values or NULL: energy of each atom in eV (0 for ghosts).
    pub atom_energies: *mut f64,
    /// 9 * n_atoms values or NULL: per-atom virials in eV at index 9 * i + 3 * a + b;
    /// each edge term is split half and half between its two atoms.
    pub atom_virials: *mut f64,
}

/// One structure for `mlff_model_compute_device`: like `MlffSystem`, except that
/// `positions` is a CUDA device pointer. The library reads the arrays only during
/// the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct MlffDeviceSystem {
    /// All atoms: local atoms first, then ghosts.
    pub n_atoms: usize,
    /// The energy is the sum over atoms [0, n_local). Must be <= n_atoms.
    pub n_local: usize,
    /// Atomic numbers in host memory, n_atoms values (may be NULL only when n_atoms is 0).
    pub numbers: *const i32,
    /// DEVICE memory: 3 * n_atoms f64 Cartesian positions in Å (x0, y0, z0, x1, ...),
    /// allocated in the model's CUDA context (see `mlff_model_create_in_cuda_context`);
    /// need not be wrapped into the cell. 8-byte aligned.
    pub positions: *const f64,
    /// Host memory: 9 values, lattice vectors in Å as rows, or NULL for no cell.
    pub cell: *const f64,
    /// Periodicity along each lattice vector.
    pub pbc: [bool; 3],
}

/// Where `mlff_model_compute_device` puts its results. Nothing is written unless
/// the call succeeds.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct MlffDeviceResults {
    /// Energy of the local atoms, eV (host).
    pub energy: f64,
    /// DEVICE memory or NULL: 3 * n_atoms f64, overwritten with the forces -dE/dr in
    /// eV/Å (ghosts included), in the model's CUDA context.
    pub forces: *mut f64,
    /// Host memory, 9 values or NULL: the virial in eV, as in `MlffResults`.
    pub virial: *mut f64,
}

// MlffDeviceSystem is read through read_system: the layouts must agree.
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<MlffDeviceSystem>() == size_of::<MlffSystem>());
    assert!(offset_of!(MlffDeviceSystem, numbers) == offset_of!(MlffSystem, numbers));
    assert!(offset_of!(MlffDeviceSystem, positions) == offset_of!(MlffSystem, positions));
    assert!(offset_of!(MlffDeviceSystem, cell) == offset_of!(MlffSystem, cell));
    assert!(offset_of!(MlffDeviceSystem, pbc) == offset_of!(MlffSystem, pbc));
};

/// A loaded model bound to an engine (opaque). Create with `mlff_model_create`,
/// free with `mlff_model_destroy`. A handle may be used from one thread at a
/// time; different handles may be used concurrently.
pub struct MlffModel {
    model: Model,
    description: CString,
    supported: Vec<i32>,
    /// (code, message) of each warning.
    warnings: Vec<(CString, CString)>,
}

impl MlffModel {
    fn new(model: Model) -> Self {
        let description = c_string(&model.engine_description());
        let supported = model
            .supported_numbers()
            .into_iter()
            .map(|z| z as i32)
            .collect();
        let warnings = model
            .warnings()
            .iter()
            .map(|w| (c_string(w.code), c_string(&w.message)))
            .collect();
        MlffModel {
            model,
            description,
            supported,
            warnings,
        }
    }
}

/// # Safety
/// `model` is NULL or a live handle from `mlff_model_create`.
unsafe fn model_ref<'a>(model: *const MlffModel) -> Result<&'a MlffModel, FfiError> {
    required(model, || "model".into())?;
    Ok(&*model)
}

/// # Safety
/// `model` is NULL or a live handle from `mlff_model_create`, used by this thread only.
unsafe fn model_mut<'a>(model: *mut MlffModel) -> Result<&'a mut MlffModel, FfiError> {
    required(model, || "model".into())?;
    Ok(&mut *model)
}

/// Writes `value` to a required output pointer, checked first.
///
/// # Safety
/// `out` is NULL or valid for writes.
unsafe fn write_out<T>(out: *mut T, name: &str, value: T) -> Result<(), FfiError> {
    required(out, || name.into())?;
    out.write(value);
    Ok(())
}

/// The default options: `MLFF_DEVICE_AUTO`, device 0, `MLFF_PRECISION_F32`, threads
/// from the environment.
#[no_mangle]
pub extern "C" fn mlff_options_default() -> MlffOptions {
    let defaults = MlffOptions {
        device: MLFF_DEVICE_AUTO,
        device_index: 0,
        precision: MLFF_PRECISION_F32,
        num_threads: 0,
    };
    guard_quiet(defaults, || defaults)
}

/// Loads the model file at `path` (a NUL-terminated file name) and binds it to an
/// engine. `options` may be NULL for the defaults. On success `*out` receives a
/// new handle, to be freed with `mlff_model_destroy`; on failure `*out` is left
/// unchanged.
///
/// Errors: `MLFF_ERR_NULL_POINTER` (path or out NULL), `MLFF_ERR_IO` (cannot read
/// the file), `MLFF_ERR_MODEL_FORMAT` (not a valid model, truncated),
/// `MLFF_ERR_INVALID_ARGUMENT` (an out-of-range option), `MLFF_ERR_DEVICE` (CUDA
/// requested and unusable).
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `options` is NULL or points to an
/// `MlffOptions`; `out` is NULL or writable.
#[no_mangle]
#[must_use = "an MlffStatus reports failure; check it"]
pub unsafe extern "C" fn mlff_model_create(
    path: *const c_char,
    options: *const MlffOptions,
    out: *mut *mut MlffModel,
) -> MlffStatus {
    guard("mlff_model_create", || {
        required(path, || "path".into())?;
        required(out, || "out".into())?;
        let path = path_from_c(CStr::from_ptr(path))?;
        let options = convert::read_options(options)?;
        let model = Model::load(&path, &options)?;
        out.write(Box::into_raw(Box::new(MlffModel::new(model))));
        Ok(())
    })
}

/// Like `mlff_model_create`, but the CUDA engine runs in the caller's CUDA driver
/// context `cuda_context` (a `CUcontext`; NULL = the context current on the
/// calling thread) instead of the device's primary context. Use it when the
/// device buffers given to `mlff_model_compute_device` belong to a context of
/// your own (OpenMM's CUDA platform creates one per Context, with cuCtxCreate).
/// `options->device` must be `MLFF_DEVICE_AUTO` or `MLFF_DEVICE_CUDA` (both mean
/// CUDA here); `options->device_index` is ignored: the context's device is used.
/// The library never destroys that context: it must outlive the model. mlff
/// calls leave the calling thread's current context as they found it.
///
/// Errors: as `mlff_model_create`; `MLFF_ERR_DEVICE` without a usable CUDA
/// driver, GPU and NVRTC, or when no context is given and none is current;
/// `MLFF_ERR_INVALID_ARGUMENT` for `MLFF_DEVICE_CPU`.
///
/// # Safety
/// As `mlff_model_create`; `cuda_context` is NULL or a live `CUcontext`.
#[no_mangle]
#[must_use = "an MlffStatus reports failure; check it"]
pub unsafe extern "C" fn mlff_model_create_in_cuda_context(
    path: *const c_char,
    options: *const MlffOptions,
    cuda_context: *mut c_void,
    out: *mut *mut MlffModel,
) -> MlffStatus {
    guard("mlff_model_create_in_cuda_context", || {
        required(path, || "path".into())?;
        required(out, || "out".into())?;
        let path = path_from_c(CStr::from_ptr(path))?;
        let options = convert::read_options(options)?;
        let model = Model::load_in_cuda_context(&path, &options, cuda_context as usize)?;
        out.write(Box::into_raw(Box::new(MlffModel::new(model))));
        Ok(())
    })
}

#[cfg(unix)]
fn path_from_c(path: &CStr) -> Result<PathBuf, FfiError> {
    use std::os::unix::ffi::OsStrExt;
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(path.to_bytes())))
}

#[cfg(not(unix))]
fn path_from_c(path: &CStr) -> Result<PathBuf, FfiError> {
    path.to_str()
        .map(PathBuf::from)
        .map_err(|_| FfiError::invalid("path is not valid UTF-8"))
}

/// Frees a handle. NULL is a no-op. Does not change `mlff_last_error()`.
///
/// # Safety
/// `model` is NULL or a live handle from `mlff_model_create`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn mlff_model_destroy(model: *mut MlffModel) {
    if model.is_null() {
        return;
    }
    guard_quiet((), || drop(Box::from_raw(model)));
}

/// Evaluates one structure: the energy, and every array of `results` that is not
/// NULL. Inputs are validated first (sizes, NULL arrays, finite positions and
/// cell, supported elements, n_local <= n_atoms, a cell that is not singular
/// along periodic axes, no two atoms at the same position).
///
/// Errors: `MLFF_ERR_NULL_POINTER` (model, system, results, or numbers/positions
/// with n_atoms > 0), `MLFF_ERR_INVALID_ARGUMENT` (invalid input; the message
/// names the atom or field), `MLFF_ERR_DEVICE`, `MLFF_ERR_OUT_OF_MEMORY`,
/// `MLFF_ERR_INTERNAL`.
///
/// # Safety
/// Pointers are NULL or valid for the documented sizes; `model` is used by this
/// thread only during the call.
#[no_mangle]
#[must_use = "an MlffStatus reports failure; check it"]
pub unsafe extern "C" fn mlff_model_compute(
    model: *mut MlffModel,
    system: *const MlffSystem,
    results: *mut MlffResults,
) -> MlffStatus {
    guard("mlff_model_compute", || {
        let model = model_mut(model)?;
        let view = convert::read_system(system, "system", None)?;
        let outputs = convert::read_outputs(results, view.n_atoms, "results", None)?;
        let request = outputs.request();
        // The forces straight into the caller's buffer where it aliases no input (the
        // CUDA engine copies them there from page-locked memory: no vector per call).
        let (computed, forces_written) = match outputs.forces_rows(&view) {
            Some(rows) => (
                model
                    .model
                    .compute_forces_into(&view.as_system(), &request, rows)?,
                true,
            ),
            None => (model.model.compute(&view.as_system(), &request)?, false),
        };
        outputs.check(&computed, view.n_atoms, forces_written)?;
        outputs.write(&computed, forces_written);
        Ok(())
    })
}

/// Evaluates one structure whose positions are in GPU memory and writes the
/// forces to GPU memory, with no copy through the host in the usual case (only
/// when the neighbour list must be rebuilt, every few steps of MD, are the
/// positions downloaded). For a CUDA model only (`MLFF_ERR_DEVICE` otherwise,
/// also on a machine without CUDA).
///
/// Stream contract: `cuda_stream` is a `CUstream` of the model's context (NULL =
/// the legacy default stream). The library's work starts after everything
/// already enqueued on that stream (so positions may be written by kernels
/// enqueued there just before the call), and `results->forces` is complete
/// before anything enqueued on that stream after the call returns. The call
/// returns once the energy is known (it waits for the library's own work, not
/// for unrelated work on the stream). Device buffers must belong to the model's
/// context (see `mlff_model_create_in_cuda_context`) or be stream-ordered
/// allocations usable there.
///
/// Results are those of `mlff_model_compute` on the same positions, bitwise, when
/// the calls see the same sequence of positions (the neighbour-list rebuilds
/// happen at the same calls). `results->forces` is overwritten (not added to).
///
/// Errors: `MLFF_ERR_NULL_POINTER` (model, system, results, or numbers/positions
/// with n_atoms > 0), `MLFF_ERR_INVALID_ARGUMENT` (as `mlff_model_compute`, a
/// non-finite position, or a pointer that is not device memory of the right
/// size), `MLFF_ERR_DEVICE`, `MLFF_ERR_OUT_OF_MEMORY`, `MLFF_ERR_INTERNAL`.
///
/// # Safety
/// `system` and `results` are NULL or valid; their host arrays hold the documented
/// sizes; `cuda_stream` is NULL or a live stream of the model's context;
/// `model` is used by this thread only.
#[no_mangle]
#[must_use = "an MlffStatus reports failure; check it"]
pub unsafe extern "C" fn mlff_model_compute_device(
    model: *mut MlffModel,
    system: *const MlffDeviceSystem,
    results: *mut MlffDeviceResults,
    cuda_stream: *mut c_void,
) -> MlffStatus {
    guard("mlff_model_compute_device", || {
        let model = model_mut(model)?;
        let view = convert::read_system(system.cast::<MlffSystem>(), "system", None)?;
        required(results, || "results".into())?;
        let forces = std::ptr::addr_of!((*results).forces).read();
        let virial = std::ptr::addr_of!((*results).virial).read();
        if !virial.is_null() {
            aligned(virial, || "results->virial".into())?;
        }
        let request = crate::Request {
            virial: !virial.is_null(),
            ..crate::Request::ENERGY
        };
        let computed = {
            let device = view.as_device_system(forces as u64, cuda_stream as usize);
            model.model.compute_device(&device, &request)?
        };
        if !virial.is_null() {
            std::ptr::copy_nonoverlapping(computed.virial.as_ptr().cast::<f64>(), virial, 9);
        }
        std::ptr::addr_of_mut!((*results).energy).write(computed.energy);
        Ok(())
    })
}

/// Evaluates `n` independent structures in one pass (on the GPU, one launch
/// sequence); `results[k]` receives the results of `systems[k]`, equal to those
/// of `mlff_model_compute` on `systems[k]` alone. Each `results[k]` chooses its
/// own arrays. If any structure is invalid, the call fails (the message names
/// `systems[k]`) and nothing is written. `n == 0` succeeds; `systems` and
/// `results` may then be NULL.
///
/// # Safety
/// `systems` and `results` are NULL or arrays of `n` elements whose pointers are
/// valid for the documented sizes; `model` is used by this thread only.
#[no_mangle]
#[must_use = "an MlffStatus reports failure; check it"]
pub unsafe extern "C" fn mlff_model_compute_batch(
    model: *mut MlffModel,
    systems: *const MlffSystem,
    n: usize,
    results: *mut MlffResults,
) -> MlffStatus {
    guard("mlff_model_compute_batch", || {
        let model = model_mut(model)?;
        if n == 0 {
            return Ok(());
        }
        required(systems, || "systems".into())?;
        required(results, || "results".into())?;
        if n.checked_mul(std::mem::size_of::<MlffSystem>())
            .map_or(true, |bytes| bytes > isize::MAX as usize)
        {
            return Err(FfiError::invalid(format!("n = {n} is too large")));
        }
        let mut views = Vec::with_capacity(n);
        let mut outputs = Vec::with_capacity(n);
        for k in 0..n {
            let view = convert::read_system(systems.add(k), "systems", Some(k))?;
            outputs.push(convert::read_outputs(
                results.add(k),
                view.n_atoms,
                "results",
                Some(k),
            )?);
            views.push(view);
        }
        // One request for the pass: the union of what the structures ask for; each
        // result then receives only its own arrays.
        let mut request = crate::Request::ENERGY;
        for out in &outputs {
            let r = out.request();
            request.forces |= r.forces;
            request.virial |= r.virial;
            request.atom_energies |= r.atom_energies;
            request.atom_virials |= r.atom_virials;
        }
        // The forces straight into the callers' buffers where every structure has one
        // and none aliases an input or another (as in `mlff_model_compute`).
        let rows = if request.forces {
            convert::Outputs::batch_forces_rows(&outputs, &views)
        } else {
            None
        };
        let (computed, forces_written) = {
            let inputs: Vec<crate::System> = views.iter().map(|v| v.as_system()).collect();
            match rows {
                Some(mut rows) => (
                    model
                        .model
                        .compute_batch_forces_into(&inputs, &request, &mut rows)?,
                    true,
                ),
                None => (model.model.compute_batch(&inputs, &request)?, false),
            }
        };
        if computed.len() != n {
            return Err(crate::Error::Internal(format!(
                "the engine returned {} results for {n} systems",
                computed.len()
            ))
            .into());
        }
        for k in 0..n {
            outputs[k].check(&computed[k], views[k].n_atoms, forces_written)?;
        }
        for (out, result) in outputs.iter().zip(&computed) {
            out.write(result, forces_written);
        }
        Ok(())
    })
}

/// Cutoff radius of the model in Å; NaN when `model` is NULL.
///
/// # Safety
/// `model` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn mlff_model_cutoff(model: *const MlffModel) -> f64 {
    guard_value("mlff_model_cutoff", f64::NAN, || {
        Ok(model_ref(model)?.model.cutoff())
    })
}

/// Number of message-passing layers; the receptive field is
/// `num_layers * cutoff` (the ghost shell a domain decomposition needs). 0 when
/// `model` is NULL.
///
/// # Safety
/// `model` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn mlff_model_num_layers(model: *const MlffModel) -> u32 {
    guard_value("mlff_model_num_layers", 0, || {
        Ok(u32::try_from(model_ref(model)?.model.num_layers()).unwrap_or(u32::MAX))
    })
}

/// The device actually in use: `MLFF_DEVICE_CPU` or `MLFF_DEVICE_CUDA` (never
/// `MLFF_DEVICE_AUTO`), written to `*out`.
///
/// # Safety
/// `model` is NULL or a live handle; `out` is NULL or writable.
#[no_mangle]
#[must_use = "an MlffStatus reports failure; check it"]
pub unsafe extern "C" fn mlff_model_device(
    model: *const MlffModel,
    out: *mut MlffDevice,
) -> MlffStatus {
    guard("mlff_model_device", || {
        let model = model_ref(model)?;
        let device = if model.model.is_gpu() {
            MLFF_DEVICE_CUDA
        } else {
            MLFF_DEVICE_CPU
        };
        write_out(out, "out", device)
    })
}

/// Number of CUDA devices mlff can use, written to `*out`: 0 (and `MLFF_OK`) without
/// a usable driver and NVRTC, without a GPU, or in a build without CUDA. Lets a host
/// program spread its processes over the GPUs (the LAMMPS plugin takes GPU
/// node-local rank modulo this count).
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
#[must_use = "an MlffStatus reports failure; check it"]
pub unsafe extern "C" fn mlff_cuda_device_count(out: *mut usize) -> MlffStatus {
    guard("mlff_cuda_device_count", || {
        write_out(out, "out", crate::engine::cuda::device_count())
    })
}

/// The precision in use (an `MLFF_PRECISION_*` value), written to `*out`.
///
/// # Safety
/// `model` is NULL or a live handle; `out` is NULL or writable.
#[no_mangle]
#[must_use = "an MlffStatus reports failure; check it"]
pub unsafe extern "C" fn mlff_model_precision(
    model: *const MlffModel,
    out: *mut MlffPrecision,
) -> MlffStatus {
    guard("mlff_model_precision", || {
        let model = model_ref(model)?;
        write_out(out, "out", convert::precision_to_c(model.model.precision()))
    })
}

/// A short description of the engine in use, e.g. "cpu (f64, 2 threads)" or
/// "cuda:0 (NVIDIA H100, f32)". Owned by the model, valid until it is destroyed;
/// "" when `model` is NULL (never NULL).
///
/// # Safety
/// `model` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn mlff_model_engine_description(model: *const MlffModel) -> *const c_char {
    guard_value("mlff_model_engine_description", c"".as_ptr(), || {
        Ok(model_ref(model)?.description.as_ptr())
    })
}

/// Number of elements the model accepts; 0 when `model` is NULL.
///
/// # Safety
/// `model` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn mlff_model_num_supported_elements(model: *const MlffModel) -> usize {
    guard_value("mlff_model_num_supported_elements", 0, || {
        Ok(model_ref(model)?.supported.len())
    })
}

/// Copies the atomic numbers the model accepts, in increasing order, into
/// `numbers`, which holds `capacity` values. `capacity` must be at least
/// `mlff_model_num_supported_elements(model)` (else `MLFF_ERR_INVALID_ARGUMENT`,
/// nothing written).
///
/// # Safety
/// `model` is NULL or a live handle; `numbers` is NULL or writable for `capacity` values.
#[no_mangle]
#[must_use = "an MlffStatus reports failure; check it"]
pub unsafe extern "C" fn mlff_model_supported_elements(
    model: *const MlffModel,
    numbers: *mut i32,
    capacity: usize,
) -> MlffStatus {
    guard("mlff_model_supported_elements", || {
        let model = model_ref(model)?;
        required(numbers, || "numbers".into())?;
        let count = model.supported.len();
        if capacity < count {
            return Err(FfiError::invalid(format!(
                "capacity = {capacity} but the model supports {count} elements"
            )));
        }
        std::ptr::copy_nonoverlapping(model.supported.as_ptr(), numbers, count);
        Ok(())
    })
}

/// Number of warnings (known defects) found when the model was loaded; 0 when
/// `model` is NULL.
///
/// # Safety
/// `model` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn mlff_model_num_warnings(model: *const MlffModel) -> usize {
    guard_value("mlff_model_num_warnings", 0, || {
        Ok(model_ref(model)?.warnings.len())
    })
}

/// Warning `index` (0-based, below `mlff_model_num_warnings(model)`): `*code`
/// receives a stable machine-readable code (e.g. "not-rotation-invariant",
/// "energy-discontinuous-at-cutoff") and `*message` a human-readable explanation.
/// Either may be NULL if not wanted. The strings are owned by the model and valid
/// until it is destroyed.
///
/// # Safety
/// `model` is NULL or a live handle; `code` and `message` are NULL or writable.
#[no_mangle]
#[must_use = "an MlffStatus reports failure; check it"]
pub unsafe extern "C" fn mlff_model_warning(
    model: *const MlffModel,
    index: usize,
    code: *mut *const c_char,
    message: *mut *const c_char,
) -> MlffStatus {
    guard("mlff_model_warning", || {
        let model = model_ref(model)?;
        let Some((warning_code, warning_message)) = model.warnings.get(index) else {
            return Err(FfiError::invalid(format!(
                "index = {index} but the model has {} warnings",
                model.warnings.len()
            )));
        };
        if !code.is_null() {
            aligned(code, || "code".into())?;
        }
        if !message.is_null() {
            aligned(message, || "message".into())?;
        }
        if !code.is_null() {
            code.write(warning_code.as_ptr());
        }
        if !message.is_null() {
            message.write(warning_message.as_ptr());
        }
        Ok(())
    })
}

/// The message of the last failure on this thread, or "" when the last function
/// returning an `MlffStatus` succeeded. Never NULL. The string is owned by the
/// library and valid until the next mlff call on this thread. Functions that do
/// not return a status leave it unchanged, except that getters given a NULL
/// model set it.
#[no_mangle]
pub extern "C" fn mlff_last_error() -> *const c_char {
    guard_quiet(c"".as_ptr(), state::last_error_ptr)
}

/// Version of the library, e.g. "0.1.0" (static string).
#[no_mangle]
pub extern "C" fn mlff_version() -> *const c_char {
    const VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(version) => version,
            Err(_) => c"unknown",
        };
    guard_quiet(c"".as_ptr(), || VERSION.as_ptr())
}

/// `MLFF_ABI_VERSION` of the library actually loaded.
#[no_mangle]
pub extern "C" fn mlff_abi_version() -> u32 {
    guard_quiet(MLFF_ABI_VERSION, || MLFF_ABI_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_variant_has_its_own_status() {
        use crate::Error;
        let cases = [
            (Error::Io(String::new()), MlffStatus::MLFF_ERR_IO),
            (
                Error::ModelFormat(crate::ModelFormatError::MissingTensor(String::new())),
                MlffStatus::MLFF_ERR_MODEL_FORMAT,
            ),
            (
                Error::InvalidArgument(String::new()),
                MlffStatus::MLFF_ERR_INVALID_ARGUMENT,
            ),
            (Error::Device(String::new()), MlffStatus::MLFF_ERR_DEVICE),
            (
                Error::OutOfMemory(String::new()),
                MlffStatus::MLFF_ERR_OUT_OF_MEMORY,
            ),
            (
                Error::Internal(String::new()),
                MlffStatus::MLFF_ERR_INTERNAL,
            ),
        ];
        for (error, status) in cases {
            assert_eq!(state::status_of(&error), status, "{error:?}");
        }
        assert_eq!(
            FfiError::null("x").status(),
            MlffStatus::MLFF_ERR_NULL_POINTER
        );
    }

    #[test]
    fn a_panic_becomes_internal_with_its_message() {
        let status = guard("test_fn", || panic!("boom {}", 42));
        assert_eq!(status, MlffStatus::MLFF_ERR_INTERNAL);
        let message = unsafe { CStr::from_ptr(mlff_last_error()) }
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            message.contains("test_fn") && message.contains("boom 42"),
            "{message}"
        );
        let _ = guard("ok_fn", || Ok(()));
        assert_eq!(unsafe { CStr::from_ptr(mlff_last_error()) }.to_bytes(), b"");
    }

    #[test]
    fn messages_with_nul_bytes_are_kept_whole() {
        state::set_last_error("before\0after");
        let message = unsafe { CStr::from_ptr(mlff_last_error()) }
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            message.starts_with("before") && message.ends_with("after"),
            "{message}"
        );
    }

    #[test]
    fn version_is_the_crate_version() {
        assert_eq!(
            unsafe { CStr::from_ptr(mlff_version()) }.to_str().unwrap(),
            crate::VERSION
        );
    }
}
