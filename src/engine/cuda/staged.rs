//! Device-resident inputs for an engine that computes from host arrays (the PaiNN GPU
//! engine's first version, whose neighbour list and pair geometry are built on the
//! host): `compute_device` copies the positions to the host and the forces back, in
//! the caller's current CUDA context (where those addresses are valid, e.g. OpenMM's),
//! ordered after and before the caller's stream. Correct everywhere the native path
//! is; it costs the host round trip that the native path avoids.

use cudarc::driver::sys;

use super::device_error;
use crate::engine::{DeviceSystem, Engine};
use crate::error::{Error, Result};
use crate::system::{Request, Results, System};

pub(super) struct StagedDeviceEngine {
    pub(super) inner: Box<dyn Engine>,
}

impl Engine for StagedDeviceEngine {
    fn compute(&mut self, system: &System, request: &Request) -> Result<Results> {
        self.inner.compute(system, request)
    }

    fn compute_batch(&mut self, systems: &[System], request: &Request) -> Result<Vec<Results>> {
        self.inner.compute_batch(systems, request)
    }

    fn compute_device(&mut self, system: &DeviceSystem, request: &Request) -> Result<Results> {
        let n = system.numbers.len();
        let bytes = 3 * n * std::mem::size_of::<f64>();
        let stream = system.stream as sys::CUstream;
        let mut positions = vec![[0.0f64; 3]; n];
        if n > 0 {
            if system.positions == 0 {
                return Err(Error::invalid("positions is a NULL device pointer"));
            }
            // SAFETY: the caller's stream and a device range of 3n f64 valid in the
            // current context (the C ABI's contract); `positions` holds 3n f64. The
            // stream is drained first so the copy sees what was enqueued before.
            unsafe {
                sys::cuStreamSynchronize(stream)
                    .result()
                    .map_err(device_error)?;
                sys::cuMemcpyDtoH_v2(positions.as_mut_ptr().cast(), system.positions, bytes)
                    .result()
                    .map_err(|e| {
                        Error::invalid(format!(
                            "cannot read the positions from device address {:#x} in the current CUDA context: {e}",
                            system.positions
                        ))
                    })?;
            }
        }
        let host = System {
            numbers: system.numbers,
            positions: &positions,
            cell: system.cell,
            pbc: system.pbc,
            n_local: system.n_local,
        };
        // The device positions were not seen by the host-side checks.
        host.validate_geometry()?;
        let mut results = self.inner.compute(&host, request)?;
        if system.forces != 0 && n > 0 {
            // SAFETY: a device range of 3n f64 in the current context (the contract);
            // a pageable source is staged before the call returns, so `results` may
            // be dropped afterwards; the copy is ordered on the caller's stream.
            unsafe {
                sys::cuMemcpyHtoDAsync_v2(system.forces, results.forces.as_ptr().cast(), bytes, stream)
                    .result()
                    .map_err(|e| {
                        Error::invalid(format!(
                            "cannot write the forces to device address {:#x} in the current CUDA context: {e}",
                            system.forces
                        ))
                    })?;
            }
        }
        results.forces = Vec::new();
        Ok(results)
    }

    fn description(&self) -> String {
        format!(
            "{}, device inputs staged through the host",
            self.inner.description()
        )
    }

    fn is_gpu(&self) -> bool {
        self.inner.is_gpu()
    }
}
