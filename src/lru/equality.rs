//! Key equality that provably runs no Python code, so the LRU can decide a
//! lookup under its lock.
//!
//! The locking rule (see `locked`) keeps Python's `__eq__` out of the lock,
//! which costs a second lock and a copy of the candidates on every hit with
//! a key that is equal but not identical (every call builds a fresh key
//! tuple). Keys are almost always tuples of strings, ints and functions,
//! whose comparisons are the interpreter's own C code: those are compared
//! here, in place, and so are frozensets of them when both keys' sets were
//! found to hold nothing else (`sets_are_plain`: the stored key's when it
//! was stored, the asked key's before locking). Anything else answers
//! "unknown" and takes the general path.

use std::sync::atomic::{AtomicPtr, Ordering};

use pyo3::ffi;
use pyo3::prelude::*;

/// Nesting followed before answering "unknown": hostile keys cannot make
/// this recurse deeply under the lock.
const MAX_DEPTH: u32 = 8;

/// `Some(a == b)` when it can be known without running Python code (no
/// `__eq__` of a user class, no warning, no error); `None` otherwise.
/// `sets_plain`: both sides' frozensets were found plain (`sets_are_plain`).
pub(super) fn equal_without_python(
    a: &Bound<'_, PyAny>,
    b: &Bound<'_, PyAny>,
    sets_plain: bool,
) -> Option<bool> {
    // SAFETY: both pointers are live objects and the GIL is held.
    unsafe { equal_pointers(a.as_ptr(), b.as_ptr(), 0, sets_plain) }
}

unsafe fn equal_pointers(
    a: *mut ffi::PyObject,
    b: *mut ffi::PyObject,
    depth: u32,
    sets_plain: bool,
) -> Option<bool> {
    if a == b {
        // Python's containers treat identity as equality (NaN included).
        return Some(true);
    }
    let kind = ffi::Py_TYPE(a);
    if kind != ffi::Py_TYPE(b) {
        // `1 == 1.0 == True`, subclasses with their own `__eq__`, bytes
        // against str under `python -b`: the general path decides.
        return None;
    }
    if is_plain_scalar(a) {
        // Functions compare by identity (object's own `__eq__`); the other
        // plain scalars with the built-in comparison of two objects of the
        // same exact type: C code that cannot fail, call back or release
        // the GIL.
        return Some(
            kind != function_type() && ffi::PyObject_RichCompareBool(a, b, ffi::Py_EQ) == 1,
        );
    }
    if ffi::PyTuple_CheckExact(a) != 0 {
        if depth >= MAX_DEPTH {
            return None;
        }
        let length = ffi::PyTuple_Size(a);
        if length != ffi::PyTuple_Size(b) {
            return Some(false);
        }
        for index in 0..length {
            match equal_pointers(
                ffi::PyTuple_GetItem(a, index),
                ffi::PyTuple_GetItem(b, index),
                depth + 1,
                sets_plain,
            )? {
                true => {}
                false => return Some(false),
            }
        }
        return Some(true);
    }
    if sets_plain && ffi::PyFrozenSet_CheckExact(a) != 0 {
        // Both sets hold plain scalars only: the built-in comparison walks
        // them in C, comparing with C code, and allocates nothing.
        return Some(ffi::PyObject_RichCompareBool(a, b, ffi::Py_EQ) == 1);
    }
    None
}

/// Whether every frozenset in `value` (itself, or within its tuples) holds
/// only plain scalars other than bytes (which compare with str under
/// `python -b` with a warning): two such sets compare without Python code.
/// True when it holds no frozenset. Walking a set allocates an iterator,
/// which can start the garbage collector and with it any `__del__`: never
/// call this under the LRU's lock.
///
/// # Safety
/// `value` is a live object and the GIL is held.
#[inline(always)]
pub(super) unsafe fn sets_are_plain(value: *mut ffi::PyObject, depth: u32) -> bool {
    // Scalars, the items of almost every key, answer here, inlined.
    let tuple = ffi::PyTuple_CheckExact(value) != 0;
    if !tuple && ffi::PyFrozenSet_CheckExact(value) == 0 {
        return true;
    }
    match tuple {
        true => tuple_sets_are_plain(value, depth),
        false => set_is_plain(value),
    }
}

/// `sets_are_plain` of a tuple's items.
#[inline(never)]
unsafe fn tuple_sets_are_plain(tuple: *mut ffi::PyObject, depth: u32) -> bool {
    if depth >= MAX_DEPTH {
        return false;
    }
    (0..ffi::PyTuple_Size(tuple))
        .all(|index| sets_are_plain(ffi::PyTuple_GetItem(tuple, index), depth + 1))
}

/// `sets_are_plain` of a frozenset: a walk of its elements.
#[inline(never)]
unsafe fn set_is_plain(value: *mut ffi::PyObject) -> bool {
    let iterator = ffi::PyObject_GetIter(value);
    if iterator.is_null() {
        ffi::PyErr_Clear();
        return false;
    }
    let mut plain = true;
    loop {
        let element = ffi::PyIter_Next(iterator);
        if element.is_null() {
            break;
        }
        plain = is_plain_scalar(element) && ffi::PyBytes_CheckExact(element) == 0;
        ffi::Py_DECREF(element);
        if !plain {
            break;
        }
    }
    ffi::Py_DECREF(iterator);
    if !ffi::PyErr_Occurred().is_null() {
        ffi::PyErr_Clear();
        return false;
    }
    plain
}

/// `Some(key == tuple(items))` for a stored `key`, when that is known
/// without running Python code (see `equal_without_python`): a hit path
/// that has the key's items in hand need not build the tuple to ask.
///
/// # Safety
/// `key` and every item are live objects and the GIL is held.
pub(super) unsafe fn tuple_equals_items(
    key: *mut ffi::PyObject,
    items: &[*mut ffi::PyObject],
    sets_plain: bool,
) -> Option<bool> {
    if ffi::PyTuple_CheckExact(key) == 0 {
        return None;
    }
    if ffi::PyTuple_Size(key) != items.len() as ffi::Py_ssize_t {
        return Some(false);
    }
    for (index, &item) in items.iter().enumerate() {
        match equal_pointers(
            ffi::PyTuple_GetItem(key, index as ffi::Py_ssize_t),
            item,
            1,
            sets_plain,
        )? {
            true => {}
            false => return Some(false),
        }
    }
    Some(true)
}

/// Exact str, int, bool, float, bytes, None or a function: the values whose
/// hash and equality are the interpreter's own C code.
unsafe fn is_plain_scalar(value: *mut ffi::PyObject) -> bool {
    let kind = ffi::Py_TYPE(value);
    value == ffi::Py_None()
        || ffi::PyUnicode_CheckExact(value) != 0
        || ffi::PyLong_CheckExact(value) != 0
        || ffi::PyBool_Check(value) != 0
        || ffi::PyFloat_CheckExact(value) != 0
        || ffi::PyBytes_CheckExact(value) != 0
        || (kind == function_type() && !kind.is_null())
}

static FUNCTION_TYPE: AtomicPtr<ffi::PyTypeObject> = AtomicPtr::new(std::ptr::null_mut());

/// `types.FunctionType`, which the limited API does not name; found when
/// the module loads (never under the LRU's lock: an import runs Python).
fn function_type() -> *mut ffi::PyTypeObject {
    FUNCTION_TYPE.load(Ordering::Relaxed)
}

pub(super) fn register(py: Python<'_>) -> PyResult<()> {
    let function_type = py.import("types")?.getattr("FunctionType")?;
    // A static type of the interpreter: it lives as long as the process.
    FUNCTION_TYPE.store(function_type.as_ptr().cast(), Ordering::Relaxed);
    Ok(())
}
