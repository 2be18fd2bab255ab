//! What a C entry point the interpreter calls directly (a vectorcall or
//! `METH_FASTCALL` function of ours) returns: a new reference, or NULL with
//! the exception set. A panic must not unwind into the interpreter: it
//! becomes a `PanicException` naming the entry point.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::ffi;
use pyo3::panic::PanicException;
use pyo3::prelude::*;

/// `body`'s value as a new reference; its error, or its panic, set as the
/// exception and NULL. `entry` names the entry point (asked on a panic only).
#[inline(always)]
pub(crate) fn returned(
    py: Python<'_>,
    entry: impl FnOnce() -> String,
    body: impl FnOnce() -> PyResult<Py<PyAny>>,
) -> *mut ffi::PyObject {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => value.into_ptr(),
        Ok(Err(error)) => {
            error.restore(py);
            std::ptr::null_mut()
        }
        Err(payload) => {
            let detail = payload
                .downcast_ref::<&str>()
                .map(|text| text.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned());
            let entry = entry();
            let message = match detail {
                Some(detail) => format!("internal error in {entry}: {detail}"),
                None => format!("internal error in {entry}"),
            };
            PanicException::new_err(message).restore(py);
            std::ptr::null_mut()
        }
    }
}
