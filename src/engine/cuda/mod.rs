//! CUDA engine (issue 4): hand-written kernels (`kernels/*.cu`) compiled by NVRTC at
//! first use, driven through cudarc with the driver and NVRTC loaded at run time.
//! On a machine without a GPU, driver or NVRTC, [`is_available`] is false and
//! [`create`] returns a clean `Error::Device`; nothing panics.
//!
//! Design (see docs/cuda.md): the filter MLP depends only on the pair distance, so
//! each block's filter is tabulated once per model as a cubic Hermite table (exact
//! f64 values and derivatives at the nodes, interpolation error measured in
//! `spline`); messages are aggregated per destination over the CSR of the
//! neighbour list (no floating-point atomics: results are bitwise repeatable); the
//! backward pass is analytic, with per-pair gradients gathered per atom and totals
//! reduced in a fixed order.

use std::sync::Arc;

use super::Engine;
use crate::error::{Error, Result};
use crate::model::ModelFile;
use crate::options::Options;

#[cfg(feature = "cuda")]
mod engine;
#[cfg(feature = "cuda")]
pub mod gpu_neighbors;
#[cfg(feature = "cuda")]
pub mod kernels;
#[cfg(feature = "cuda")]
mod painn;
#[cfg(feature = "cuda")]
pub mod runtime;
#[cfg(feature = "cuda")]
pub mod spline;
#[cfg(feature = "cuda")]
mod staged;
#[cfg(feature = "cuda")]
pub mod tensor_core;

/// Nodes of the filter table in f32 mode (rc = 5 Å: h = 1.2 mÅ).
pub const NODES_F32: usize = 4096;
/// Nodes of the filter table in f64 mode.
pub const NODES_F64: usize = 16384;

#[cfg(feature = "cuda")]
pub(crate) fn device_error(e: cudarc::driver::DriverError) -> Error {
    use cudarc::driver::sys::CUresult;
    if e.0 == CUresult::CUDA_ERROR_OUT_OF_MEMORY {
        Error::OutOfMemory(format!("GPU memory exhausted ({e:?})"))
    } else {
        Error::Device(format!("CUDA error: {e:?}"))
    }
}

/// Whether a usable GPU, driver and NVRTC are present. Never panics.
pub fn is_available() -> bool {
    #[cfg(feature = "cuda")]
    {
        runtime::driver_available() && runtime::nvrtc_available()
    }
    #[cfg(not(feature = "cuda"))]
    {
        false
    }
}

/// Number of CUDA devices the engine could use: 0 without a usable driver, without
/// NVRTC, without a GPU, or in a build without CUDA.
pub fn device_count() -> usize {
    #[cfg(feature = "cuda")]
    {
        if !is_available() {
            return 0;
        }
        // The driver is initialised (driver_available); cudarc panics only without it.
        std::panic::catch_unwind(cudarc::driver::result::device::get_count)
            .ok()
            .and_then(|count| count.ok())
            .map_or(0, |count| count.max(0) as usize)
    }
    #[cfg(not(feature = "cuda"))]
    {
        0
    }
}

/// Device memory in use on GPU `ordinal` (total minus free, bytes), as the driver
/// reports it: every context and process on the device, this process's CUDA context
/// included. `None` without a usable driver or device. For benchmarks: it binds the
/// device's primary context to the calling thread, so call it from a thread of its own.
pub fn device_memory_in_use(ordinal: usize) -> Option<u64> {
    device_memory(ordinal).map(|(free, total)| total - free)
}

/// Total memory of GPU `ordinal` (bytes), as the driver reports it; `None` without a
/// usable driver or device. Binds the device's primary context to the calling thread,
/// as `device_memory_in_use` does (tests size their out-of-memory systems by it).
pub fn device_memory_total(ordinal: usize) -> Option<u64> {
    device_memory(ordinal).map(|(_, total)| total)
}

/// (free, total) bytes of GPU `ordinal`, from the context bound on this thread.
fn device_memory(ordinal: usize) -> Option<(u64, u64)> {
    #[cfg(feature = "cuda")]
    {
        use std::cell::RefCell;
        thread_local! {
            // The context bound on this thread, kept between calls (polling is cheap).
            static BOUND: RefCell<Option<(usize, Arc<cudarc::driver::CudaContext>)>> =
                const { RefCell::new(None) };
        }
        BOUND.with(|bound| {
            let mut bound = bound.borrow_mut();
            if bound.as_ref().map(|b| b.0) != Some(ordinal) {
                if ordinal >= device_count() {
                    return None;
                }
                let ctx = cudarc::driver::CudaContext::new(ordinal).ok()?;
                *bound = Some((ordinal, ctx));
            }
            bound.as_ref()?.1.bind_to_thread().ok()?;
            let (free, total) = cudarc::driver::result::mem_get_info().ok()?;
            Some((free as u64, total as u64))
        })
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = ordinal;
        None
    }
}

/// Creates the CUDA engine, or explains why it cannot.
pub fn create(file: Arc<ModelFile>, options: &Options) -> Result<Box<dyn Engine>> {
    #[cfg(feature = "cuda")]
    {
        if !runtime::driver_available() {
            return Err(Error::Device(
                "no usable CUDA driver or GPU found (libcuda.so.1 missing, or no device)".into(),
            ));
        }
        if !runtime::nvrtc_available() {
            return Err(Error::Device(
                "CUDA driver found but NVRTC (libnvrtc.so.13) is missing: install the CUDA 13 toolkit or `pip install nvidia-cuda-nvrtc==13.0.*` and add its lib directory to LD_LIBRARY_PATH (or set MLFF_NVRTC_DIR)".into(),
            ));
        }
        let options = *options;
        let is_painn = file.weights.painn().is_some();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if is_painn {
                painn::CudaPainnEngine::new(file, &options).map(|e| Box::new(e) as Box<dyn Engine>)
            } else {
                engine::CudaEngine::new(file, &options).map(|e| Box::new(e) as Box<dyn Engine>)
            }
        })) {
            Ok(result) => result,
            Err(_) => Err(Error::Device(
                "the CUDA runtime panicked while creating the engine".into(),
            )),
        }
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (file, options);
        Err(Error::Device(
            "this build of mlff has no CUDA support (feature `cuda` off)".into(),
        ))
    }
}

/// Creates the CUDA engine in the caller's CUDA driver context `context` (a raw
/// `CUcontext`; 0 = the context current on the calling thread) instead of the
/// device's primary context. The engine never destroys that context, which must
/// outlive it.
pub fn create_in_context(
    file: Arc<ModelFile>,
    options: &Options,
    context: usize,
) -> Result<Box<dyn Engine>> {
    #[cfg(feature = "cuda")]
    {
        if !runtime::driver_available() {
            return Err(Error::Device(
                "no usable CUDA driver or GPU found (libcuda.so.1 missing, or no device)".into(),
            ));
        }
        if !runtime::nvrtc_available() {
            return Err(Error::Device(
                "CUDA driver found but NVRTC (libnvrtc.so.13) is missing: install the CUDA 13 toolkit or `pip install nvidia-cuda-nvrtc==13.0.*` and add its lib directory to LD_LIBRARY_PATH (or set MLFF_NVRTC_DIR)".into(),
            ));
        }
        let options = *options;
        let is_painn = file.weights.painn().is_some();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if is_painn {
                // Its first version builds neighbour list and geometry on the host: it
                // runs in its own context and stages device inputs through the host.
                let mut options = options;
                options.device_index = engine::context_device_ordinal(context)? as i32;
                painn::CudaPainnEngine::new(file, &options).map(|e| {
                    Box::new(staged::StagedDeviceEngine { inner: Box::new(e) }) as Box<dyn Engine>
                })
            } else {
                engine::CudaEngine::new_in_context(file, &options, context)
                    .map(|e| Box::new(e) as Box<dyn Engine>)
            }
        })) {
            Ok(result) => result,
            Err(_) => Err(Error::Device(
                "the CUDA runtime panicked while creating the engine".into(),
            )),
        }
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (file, options, context);
        Err(Error::Device(
            "this build of mlff has no CUDA support (feature `cuda` off)".into(),
        ))
    }
}

/// Whether NVRTC can be loaded (for tools that only compile).
pub fn is_nvrtc_available() -> bool {
    #[cfg(feature = "cuda")]
    {
        runtime::nvrtc_available()
    }
    #[cfg(not(feature = "cuda"))]
    {
        false
    }
}

/// Compiles every kernel for `arch` ("sm_90") and hidden width `hidden` to PTX,
/// without a GPU (used by `scripts/check-kernels.sh`).
pub fn compile_kernels(arch: &str, hidden: usize) -> Result<String> {
    #[cfg(feature = "cuda")]
    {
        runtime::compile_ptx(arch, hidden)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (arch, hidden);
        Err(Error::Device(
            "this build of mlff has no CUDA support (feature `cuda` off)".into(),
        ))
    }
}
