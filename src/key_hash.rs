//! The hash of an `@ormcache` key tuple `(model name, method, *values)`
//! from its items, so that a hit needs no tuple: the interpreter's own `tuplehash`
//! (xxHash-based since CPython 3.8), checked once against the running
//! interpreter before it is trusted.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyTuple};

const PRIME_1: u64 = 11_400_714_785_074_694_791;
const PRIME_2: u64 = 14_029_467_366_897_019_727;
const PRIME_5: u64 = 2_870_177_450_012_600_261;

/// `hash(tuple(items))`, or None when this interpreter hashes tuples
/// otherwise or an item is unhashable (the error is dropped: the caller
/// builds the tuple and meets it again where Odoo would).
///
/// # Safety
/// Every item is a live object and the GIL is held.
pub(crate) unsafe fn hash_of_items(py: Python<'_>, items: &[*mut ffi::PyObject]) -> Option<isize> {
    if !same_as_the_interpreter(py) {
        return None;
    }
    let mut hashes = [0isize; 8];
    let hashes = hashes.get_mut(..items.len())?;
    for (hash, &item) in hashes.iter_mut().zip(items) {
        *hash = ffi::PyObject_Hash(item);
        if *hash == -1 {
            drop(PyErr::take(py));
            return None;
        }
    }
    Some(combine(hashes))
}

/// CPython's `tuplehash` over the items' hashes.
fn combine(hashes: &[isize]) -> isize {
    let mut acc = PRIME_5;
    for &hash in hashes {
        acc = acc.wrapping_add((hash as u64).wrapping_mul(PRIME_2));
        acc = acc.rotate_left(31);
        acc = acc.wrapping_mul(PRIME_1);
    }
    acc = acc.wrapping_add(hashes.len() as u64 ^ (PRIME_5 ^ 3_527_539));
    if acc == u64::MAX {
        return 1_546_275_796;
    }
    acc as isize
}

/// Whether `combine` gives the interpreter's own tuple hashes, on keys of
/// Odoo's shapes (asked once per process).
fn same_as_the_interpreter(py: Python<'_>) -> bool {
    static SAME: PyOnceLock<bool> = PyOnceLock::new();
    *SAME.get_or_init(py, || {
        let samples = || -> PyResult<bool> {
            let name = PyString::new(py, "res.partner").into_any();
            let method = py.import("builtins")?.getattr("len")?;
            let keys = [
                PyTuple::empty(py),
                PyTuple::new(py, [name.clone(), method.clone()])?,
                PyTuple::new(
                    py,
                    [
                        name,
                        method,
                        (-1i64).into_pyobject(py)?.into_any(),
                        py.None().into_bound(py),
                        PyTuple::new(py, [1, 2])?.into_any(),
                    ],
                )?,
            ];
            for key in keys {
                let hashes = key
                    .iter()
                    .map(|item| item.hash())
                    .collect::<PyResult<Vec<isize>>>()?;
                if combine(&hashes) != key.hash()? {
                    return Ok(false);
                }
            }
            Ok(true)
        };
        samples().unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combine_is_the_interpreters_tuple_hash() {
        Python::attach(|py| {
            assert!(same_as_the_interpreter(py));
            let key = PyTuple::new(py, ["ir.model.data", "base.user_admin"]).unwrap();
            let items: Vec<*mut ffi::PyObject> = key.iter().map(|item| item.as_ptr()).collect();
            // SAFETY: live items of a live tuple; attached.
            let hash = unsafe { hash_of_items(py, &items) };
            assert_eq!(hash, Some(key.hash().unwrap()));
        });
    }

    #[test]
    fn an_unhashable_item_is_no_hash_and_no_pending_error() {
        Python::attach(|py| {
            let list = pyo3::types::PyList::empty(py);
            let items = [list.as_ptr()];
            // SAFETY: a live item; attached.
            assert_eq!(unsafe { hash_of_items(py, &items) }, None);
            assert!(PyErr::take(py).is_none());
        });
    }
}
