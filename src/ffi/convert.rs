//! Raw C structs to checked Rust values, and Rust results back into C buffers.
//!
//! Fields are read one by one through raw pointers (never as a `&MlffSystem`), so
//! that a `bool` holding something other than 0 or 1 is an error, not undefined
//! behaviour.

use std::ptr::{self, addr_of, addr_of_mut};

use super::state::FfiError;
use super::{MlffDevice, MlffOptions, MlffPrecision, MlffResults, MlffSystem};
use super::{MLFF_DEVICE_AUTO, MLFF_DEVICE_CPU, MLFF_DEVICE_CUDA};
use super::{MLFF_PRECISION_F32, MLFF_PRECISION_F64, MLFF_PRECISION_MIXED};
use crate::options::{Device, Options, Precision};
use crate::system::{Request, Results, System};

/// Name of a field for messages: `system->numbers` or `systems[3].numbers`.
fn field(base: &str, index: Option<usize>, name: &str) -> String {
    match index {
        Some(k) => format!("{base}[{k}].{name}"),
        None => format!("{base}->{name}"),
    }
}

fn item(base: &str, index: Option<usize>) -> String {
    match index {
        Some(k) => format!("{base}[{k}]"),
        None => base.to_string(),
    }
}

/// NULL and alignment check of a pointer that must not be NULL.
pub(super) fn required<T>(
    pointer: *const T,
    what: impl FnOnce() -> String,
) -> Result<(), FfiError> {
    if pointer.is_null() {
        return Err(FfiError::null(what()));
    }
    aligned(pointer, what)
}

/// Alignment check of a non-NULL pointer (C guarantees it; a misaligned pointer
/// from a foreign caller must not become undefined behaviour here).
pub(super) fn aligned<T>(pointer: *const T, what: impl FnOnce() -> String) -> Result<(), FfiError> {
    if !pointer.is_aligned() {
        return Err(FfiError::invalid(format!(
            "`{}` is not aligned for its type",
            what()
        )));
    }
    Ok(())
}

/// Byte size of `count` values of `T`, if it can be a Rust slice (at most isize::MAX bytes).
fn slice_bytes<T>(count: usize) -> Option<usize> {
    count
        .checked_mul(std::mem::size_of::<T>())
        .filter(|&bytes| bytes <= isize::MAX as usize)
}

pub(super) fn device_from_c(value: MlffDevice) -> Result<Device, FfiError> {
    match value {
        MLFF_DEVICE_AUTO => Ok(Device::Auto),
        MLFF_DEVICE_CPU => Ok(Device::Cpu),
        MLFF_DEVICE_CUDA => Ok(Device::Cuda),
        other => Err(FfiError::invalid(format!(
            "options->device = {other} is not a device (expected MLFF_DEVICE_AUTO = 0, MLFF_DEVICE_CPU = 1 or MLFF_DEVICE_CUDA = 2)"
        ))),
    }
}

pub(super) fn precision_from_c(value: MlffPrecision) -> Result<Precision, FfiError> {
    match value {
        MLFF_PRECISION_F32 => Ok(Precision::F32),
        MLFF_PRECISION_F64 => Ok(Precision::F64),
        MLFF_PRECISION_MIXED => Ok(Precision::Mixed),
        other => Err(FfiError::invalid(format!(
            "options->precision = {other} is not a precision (expected MLFF_PRECISION_F32 = 0, MLFF_PRECISION_F64 = 1 or MLFF_PRECISION_MIXED = 2)"
        ))),
    }
}

pub(super) fn precision_to_c(precision: Precision) -> MlffPrecision {
    match precision {
        Precision::F32 => MLFF_PRECISION_F32,
        Precision::F64 => MLFF_PRECISION_F64,
        Precision::Mixed => MLFF_PRECISION_MIXED,
    }
}

/// Options from C; NULL means the defaults.
///
/// # Safety
/// `options` is NULL or points to a readable `MlffOptions`.
pub(super) unsafe fn read_options(options: *const MlffOptions) -> Result<Options, FfiError> {
    if options.is_null() {
        return Ok(Options::default());
    }
    aligned(options, || "options".into())?;
    // Every field is a plain integer, so any bit pattern is a valid value to read.
    let raw = ptr::read(options);
    let device = device_from_c(raw.device)?;
    let precision = precision_from_c(raw.precision)?;
    if raw.device_index < 0 {
        return Err(FfiError::invalid(format!(
            "options->device_index = {} is negative",
            raw.device_index
        )));
    }
    Ok(Options {
        device,
        device_index: raw.device_index,
        precision,
        num_threads: raw.num_threads,
    })
}

/// A system whose pointers have been checked; [`SystemView::as_system`] borrows the caller's arrays.
pub(super) struct SystemView {
    pub n_atoms: usize,
    n_local: usize,
    numbers: *const i32,
    positions: *const f64,
    cell: Option<[[f64; 3]; 3]>,
    pbc: [bool; 3],
}

/// Reads and checks `systems[index]` (or `*system` when `index` is None).
///
/// # Safety
/// `system` is NULL or points to a readable `MlffSystem` whose non-NULL arrays
/// hold the documented number of values.
pub(super) unsafe fn read_system(
    system: *const MlffSystem,
    base: &str,
    index: Option<usize>,
) -> Result<SystemView, FfiError> {
    required(system, || item(base, index))?;
    let n_atoms = addr_of!((*system).n_atoms).read();
    let n_local = addr_of!((*system).n_local).read();
    let numbers = addr_of!((*system).numbers).read();
    let positions = addr_of!((*system).positions).read();
    let cell_pointer = addr_of!((*system).cell).read();
    let pbc_bytes: [u8; 3] = addr_of!((*system).pbc).cast::<[u8; 3]>().read();

    if slice_bytes::<[f64; 3]>(n_atoms).is_none() {
        return Err(FfiError::invalid(format!(
            "{} = {n_atoms} is too large",
            field(base, index, "n_atoms")
        )));
    }
    if n_atoms > 0 {
        required(numbers, || field(base, index, "numbers"))?;
        required(positions, || field(base, index, "positions"))?;
    }
    let mut pbc = [false; 3];
    for (axis, &byte) in pbc_bytes.iter().enumerate() {
        pbc[axis] = match byte {
            0 => false,
            1 => true,
            other => {
                return Err(FfiError::invalid(format!(
                    "{}[{axis}] holds {other}, not a bool (0 or 1)",
                    field(base, index, "pbc")
                )));
            }
        };
    }
    let cell = if cell_pointer.is_null() {
        if pbc.iter().any(|&b| b) {
            return Err(FfiError::invalid(format!(
                "{} is NULL but {} = {pbc:?}: a periodic axis needs a cell",
                field(base, index, "cell"),
                field(base, index, "pbc")
            )));
        }
        None
    } else {
        aligned(cell_pointer, || field(base, index, "cell"))?;
        Some(cell_pointer.cast::<[[f64; 3]; 3]>().read())
    };
    Ok(SystemView {
        n_atoms,
        n_local,
        numbers,
        positions,
        cell,
        pbc,
    })
}

impl SystemView {
    /// Borrows the caller's arrays. Drop the result before writing any output, so
    /// that an output buffer that (wrongly) overlaps an input is never written
    /// while a Rust reference to it is alive.
    ///
    /// # Safety
    /// The arrays checked by [`read_system`] stay valid and unmodified while the result lives.
    pub(super) unsafe fn as_system(&self) -> System<'_> {
        let (numbers, positions): (&[i32], &[[f64; 3]]) = if self.n_atoms == 0 {
            (&[], &[])
        } else {
            (
                std::slice::from_raw_parts(self.numbers, self.n_atoms),
                std::slice::from_raw_parts(self.positions.cast::<[f64; 3]>(), self.n_atoms),
            )
        };
        System {
            numbers,
            positions,
            cell: self.cell,
            pbc: self.pbc,
            n_local: self.n_local,
        }
    }
}

impl SystemView {
    /// The system with its positions left in device memory (`mlff_model_compute_device`):
    /// borrows the caller's host `numbers` only; `forces` and `stream` are the caller's
    /// device buffer (0 = none) and CUstream.
    ///
    /// # Safety
    /// As for [`SystemView::as_system`], for `numbers`.
    pub(super) unsafe fn as_device_system(
        &self,
        forces: u64,
        stream: usize,
    ) -> crate::engine::DeviceSystem<'_> {
        let numbers: &[i32] = if self.n_atoms == 0 {
            &[]
        } else {
            std::slice::from_raw_parts(self.numbers, self.n_atoms)
        };
        crate::engine::DeviceSystem {
            numbers,
            n_local: self.n_local,
            positions: self.positions as u64,
            cell: self.cell,
            pbc: self.pbc,
            forces,
            stream,
        }
    }
}

/// Where results go; NULL arrays were not requested.
pub(super) struct Outputs {
    results: *mut MlffResults,
    forces: *mut f64,
    virial: *mut f64,
    atom_energies: *mut f64,
    atom_virials: *mut f64,
}

/// Reads and checks `results[index]` (or `*results`).
///
/// # Safety
/// `results` is NULL or points to a readable and writable `MlffResults`.
pub(super) unsafe fn read_outputs(
    results: *mut MlffResults,
    n_atoms: usize,
    base: &str,
    index: Option<usize>,
) -> Result<Outputs, FfiError> {
    required(results, || item(base, index))?;
    let outputs = Outputs {
        results,
        forces: addr_of!((*results).forces).read(),
        virial: addr_of!((*results).virial).read(),
        atom_energies: addr_of!((*results).atom_energies).read(),
        atom_virials: addr_of!((*results).atom_virials).read(),
    };
    for (pointer, name) in [
        (outputs.forces, "forces"),
        (outputs.virial, "virial"),
        (outputs.atom_energies, "atom_energies"),
        (outputs.atom_virials, "atom_virials"),
    ] {
        if !pointer.is_null() {
            aligned(pointer, || field(base, index, name))?;
        }
    }
    if !outputs.atom_virials.is_null() && slice_bytes::<[[f64; 3]; 3]>(n_atoms).is_none() {
        return Err(FfiError::invalid(format!(
            "n_atoms = {n_atoms} is too large for {}",
            field(base, index, "atom_virials")
        )));
    }
    Ok(outputs)
}

impl Outputs {
    pub(super) fn request(&self) -> Request {
        Request {
            forces: !self.forces.is_null(),
            virial: !self.virial.is_null(),
            atom_energies: !self.atom_energies.is_null(),
            atom_virials: !self.atom_virials.is_null(),
        }
    }

    /// The caller's forces as rows, to be written by the engine directly
    /// (`Model::compute_forces_into`): when they are requested, there are atoms, and
    /// the buffer shares no byte with the system's arrays (a `&mut` may alias nothing;
    /// otherwise the forces go through `write` as before).
    ///
    /// # Safety
    /// The forces buffer holds 3 n_atoms doubles, the system's arrays their documented
    /// sizes, and nothing else uses the buffer while the returned borrow (of the
    /// caller's memory, not of `self`) lives.
    pub(super) unsafe fn forces_rows<'a>(&self, system: &SystemView) -> Option<&'a mut [[f64; 3]]> {
        let n = system.n_atoms;
        if self.forces.is_null() || n == 0 {
            return None;
        }
        let span = |p: *const u8, bytes: usize| (p as usize, p as usize + bytes);
        let out = span(self.forces.cast(), 24 * n);
        let disjoint = |(a0, a1): (usize, usize)| a1 <= out.0 || out.1 <= a0;
        if !disjoint(span(system.positions.cast(), 24 * n))
            || !disjoint(span(system.numbers.cast(), 4 * n))
        {
            return None;
        }
        Some(std::slice::from_raw_parts_mut(
            self.forces.cast::<[f64; 3]>(),
            n,
        ))
    }

    /// Every system's forces as rows, for `Model::compute_batch_forces_into`: when each
    /// system with atoms has a forces buffer, and no forces buffer shares a byte with
    /// another one or with any system's positions or numbers (a `&mut` may alias
    /// nothing; otherwise the forces go through `write`). Systems without atoms get
    /// empty rows.
    ///
    /// # Safety
    /// As [`Outputs::forces_rows`], for every system.
    pub(super) unsafe fn batch_forces_rows<'a>(
        outputs: &[Outputs],
        systems: &[SystemView],
    ) -> Option<Vec<&'a mut [[f64; 3]]>> {
        // (start, end, is a forces buffer) of every buffer the engine reads or writes.
        let mut spans = Vec::with_capacity(3 * systems.len());
        for (out, system) in outputs.iter().zip(systems) {
            let n = system.n_atoms;
            if n == 0 {
                continue;
            }
            if out.forces.is_null() {
                return None;
            }
            let span = |p: *const u8, bytes: usize| (p as usize, p as usize + bytes);
            let (a, b) = span(out.forces.cast(), 24 * n);
            spans.push((a, b, true));
            let (a, b) = span(system.positions.cast(), 24 * n);
            spans.push((a, b, false));
            let (a, b) = span(system.numbers.cast(), 4 * n);
            spans.push((a, b, false));
        }
        // Sorted by start, a forces span is disjoint from all others when it starts at
        // or after every earlier span's end and ends at or before the next one's start.
        spans.sort_unstable();
        let mut end_so_far = 0usize;
        for (i, &(start, end, is_forces)) in spans.iter().enumerate() {
            if is_forces {
                let next_start = spans.get(i + 1).map_or(usize::MAX, |s| s.0);
                if start < end_so_far || next_start < end {
                    return None;
                }
            }
            end_so_far = end_so_far.max(end);
        }
        Some(
            outputs
                .iter()
                .zip(systems)
                .map(|(out, system)| match system.n_atoms {
                    0 => &mut [][..],
                    n => std::slice::from_raw_parts_mut(out.forces.cast::<[f64; 3]>(), n),
                })
                .collect(),
        )
    }

    /// Checks that `computed` holds every requested array at the right length, so
    /// that [`Outputs::write`] never writes out of bounds nor half of the outputs
    /// (the forces unless the engine wrote them into the caller's buffer:
    /// `forces_written`).
    pub(super) fn check(
        &self,
        computed: &Results,
        n_atoms: usize,
        forces_written: bool,
    ) -> Result<(), FfiError> {
        let bad = |name: &str, len: usize| {
            Err(FfiError::Lib(crate::Error::Internal(format!(
                "the engine returned {len} {name} for {n_atoms} atoms"
            ))))
        };
        if !self.forces.is_null() && !forces_written && computed.forces.len() != n_atoms {
            return bad("forces", computed.forces.len());
        }
        if !self.atom_energies.is_null() && computed.atom_energies.len() != n_atoms {
            return bad("atom energies", computed.atom_energies.len());
        }
        if !self.atom_virials.is_null() && computed.atom_virials.len() != n_atoms {
            return bad("atom virials", computed.atom_virials.len());
        }
        Ok(())
    }

    /// Copies `computed` into the caller's buffers.
    ///
    /// # Safety
    /// [`Outputs::check`] succeeded for `computed`, and every non-NULL array holds
    /// the documented number of values.
    pub(super) unsafe fn write(&self, computed: &Results, forces_written: bool) {
        // Sources are Rust-owned vectors, so they never overlap the caller's buffers.
        if !self.forces.is_null() && !forces_written {
            ptr::copy_nonoverlapping(
                computed.forces.as_ptr().cast::<f64>(),
                self.forces,
                3 * computed.forces.len(),
            );
        }
        if !self.virial.is_null() {
            ptr::copy_nonoverlapping(computed.virial.as_ptr().cast::<f64>(), self.virial, 9);
        }
        if !self.atom_energies.is_null() {
            ptr::copy_nonoverlapping(
                computed.atom_energies.as_ptr(),
                self.atom_energies,
                computed.atom_energies.len(),
            );
        }
        if !self.atom_virials.is_null() {
            ptr::copy_nonoverlapping(
                computed.atom_virials.as_ptr().cast::<f64>(),
                self.atom_virials,
                9 * computed.atom_virials.len(),
            );
        }
        addr_of_mut!((*self.results).energy).write(computed.energy);
    }
}
