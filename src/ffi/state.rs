//! Panic guards, the ABI's error type and the thread-local last-error string.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::MlffStatus;
use crate::error::Error;

/// Why an ABI call failed: a NULL pointer (which the Rust API cannot express) or
/// an error of the library.
#[derive(Debug)]
pub(super) enum FfiError {
    /// The named argument or field was NULL where a pointer is required.
    NullPointer(String),
    Lib(Error),
}

impl From<Error> for FfiError {
    fn from(error: Error) -> Self {
        FfiError::Lib(error)
    }
}

impl FfiError {
    pub(super) fn null(what: impl Into<String>) -> Self {
        FfiError::NullPointer(what.into())
    }

    pub(super) fn invalid(message: impl Into<String>) -> Self {
        FfiError::Lib(Error::InvalidArgument(message.into()))
    }

    pub(super) fn status(&self) -> MlffStatus {
        match self {
            FfiError::NullPointer(_) => MlffStatus::MLFF_ERR_NULL_POINTER,
            FfiError::Lib(error) => status_of(error),
        }
    }
}

impl fmt::Display for FfiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FfiError::NullPointer(what) => write!(f, "null pointer: `{what}` is NULL"),
            FfiError::Lib(error) => write!(f, "{error}"),
        }
    }
}

/// The one mapping from library errors to status codes (1:1 by variant).
pub(super) fn status_of(error: &Error) -> MlffStatus {
    match error {
        Error::Io(_) => MlffStatus::MLFF_ERR_IO,
        Error::ModelFormat(_) => MlffStatus::MLFF_ERR_MODEL_FORMAT,
        Error::InvalidArgument(_) => MlffStatus::MLFF_ERR_INVALID_ARGUMENT,
        Error::Device(_) => MlffStatus::MLFF_ERR_DEVICE,
        Error::OutOfMemory(_) => MlffStatus::MLFF_ERR_OUT_OF_MEMORY,
        Error::Internal(_) => MlffStatus::MLFF_ERR_INTERNAL,
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// A NUL-free C string (interior NULs would silently truncate the message).
pub(super) fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', "\u{FFFD}")).unwrap_or_default()
}

pub(super) fn set_last_error(message: &str) {
    let message = c_string(message);
    // try_with: during thread teardown the slot may be gone; losing the message
    // is better than aborting.
    let _ = LAST_ERROR.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut() {
            *slot = message;
        }
    });
}

pub(super) fn clear_last_error() {
    let _ = LAST_ERROR.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut() {
            // Keeps the hot path (a successful compute) free of allocations.
            if !slot.as_bytes().is_empty() {
                *slot = CString::default();
            }
        }
    });
}

/// The current thread's message; it stays valid until the slot is next written.
pub(super) fn last_error_ptr() -> *const c_char {
    static EMPTY: &[u8] = b"\0";
    LAST_ERROR
        .try_with(|slot| match slot.try_borrow() {
            Ok(slot) => slot.as_ptr(),
            Err(_) => EMPTY.as_ptr().cast(),
        })
        .unwrap_or(EMPTY.as_ptr().cast())
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text.to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

/// Runs the body of a status-returning function: a panic becomes
/// `MLFF_ERR_INTERNAL`, an error sets the last error, success clears it.
pub(super) fn guard(function: &str, body: impl FnOnce() -> Result<(), FfiError>) -> MlffStatus {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => {
            clear_last_error();
            MlffStatus::MLFF_OK
        }
        Ok(Err(error)) => {
            set_last_error(&format!("{function}: {error}"));
            error.status()
        }
        Err(payload) => {
            set_last_error(&format!(
                "{function}: internal error: panic: {}",
                panic_message(payload.as_ref())
            ));
            MlffStatus::MLFF_ERR_INTERNAL
        }
    }
}

/// Runs the body of a value-returning function: on error or panic it sets the
/// last error and returns `fallback`; success leaves the last error alone (so a
/// getter between a failure and `mlff_last_error()` does not hide the message).
pub(super) fn guard_value<T>(
    function: &str,
    fallback: T,
    body: impl FnOnce() -> Result<T, FfiError>,
) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => value,
        Ok(Err(error)) => {
            set_last_error(&format!("{function}: {error}"));
            fallback
        }
        Err(payload) => {
            set_last_error(&format!(
                "{function}: internal error: panic: {}",
                panic_message(payload.as_ref())
            ));
            fallback
        }
    }
}

/// Runs a body that cannot fail and must not touch the last error.
pub(super) fn guard_quiet<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}
