//! State touched only by the thread attached to the interpreter, without a
//! lock.
//!
//! A mutex costs two locked instructions per use, and on x86 each is a full
//! barrier that drains the store buffer: on the native hit path, where the
//! interpreter has just written a dozen reference counts, that was about a
//! tenth of the whole call. Code that holds the GIL is already serialised
//! by it, and a `Python` token proves the GIL is held; a busy flag turns
//! re-entry (Python code run while the value is borrowed, which may also
//! switch threads) into `None` instead of a second mutable borrow.

use std::cell::{Cell, UnsafeCell};

use pyo3::exceptions::PyImportError;
use pyo3::prelude::*;

/// Refuses to load where the GIL is off. The limited API this module is
/// built for cannot be loaded by a free-threaded interpreter today; this
/// keeps the assumption checked rather than implied.
pub fn require_gil(py: Python<'_>) -> PyResult<()> {
    let sys = py.import("sys")?;
    let enabled = match sys.getattr("_is_gil_enabled") {
        Ok(is_gil_enabled) => is_gil_enabled.call0()?.is_truthy()?,
        Err(_) => true, // before 3.13 there is always a GIL
    };
    match enabled {
        true => Ok(()),
        false => Err(PyImportError::new_err(
            "ormcache_redis needs the GIL: run it on an interpreter with the GIL enabled",
        )),
    }
}

pub struct GilCell<T> {
    busy: Cell<bool>,
    value: UnsafeCell<T>,
}

// SAFETY: every access goes through `with`, which takes a `Python` token:
// the GIL is held, so one thread at a time, and the GIL's own hand-over
// orders the accesses of successive holders. `busy` refuses nested access.
unsafe impl<T: Send> Sync for GilCell<T> {}

impl<T> GilCell<T> {
    pub fn new(value: T) -> Self {
        GilCell {
            busy: Cell::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Runs `f` on the value; `None` when the value is already borrowed (a
    /// Python callback run from inside `f` came back here). What `f`
    /// returns is dropped by the caller, after the value is released:
    /// return what `f` replaces, whose drop may run Python code.
    pub fn with<R>(&self, _attached: Python<'_>, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        if self.busy.replace(true) {
            return None;
        }
        struct Release<'a>(&'a Cell<bool>);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.set(false);
            }
        }
        let _release = Release(&self.busy);
        // SAFETY: the GIL is held and `busy` was clear: this is the only
        // reference to the value until `_release` clears it.
        Some(f(unsafe { &mut *self.value.get() }))
    }

    /// The value, for the garbage collector's `tp_traverse` (which cannot
    /// give a `Python` token); None while it is borrowed, and then the
    /// references it holds are not reported, which only delays their
    /// collection.
    ///
    /// # Safety
    /// Only from `tp_traverse`: the GIL is held and no Python code runs
    /// until `f` returns.
    pub unsafe fn peek_during_gc<R>(&self, f: impl FnOnce(&T) -> R) -> Option<R> {
        if self.busy.get() {
            return None;
        }
        // SAFETY: the caller's contract; `busy` was clear, so no mutable
        // borrow is alive.
        Some(f(unsafe { &*self.value.get() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_access_is_refused_and_the_value_kept() {
        Python::attach(|py| {
            let cell = GilCell::new(1);
            let nested = cell.with(py, |outer| {
                *outer += 1;
                cell.with(py, |inner| *inner += 10)
            });
            assert_eq!(nested, Some(None));
            assert_eq!(cell.with(py, |value| *value), Some(2));
        });
    }
}
