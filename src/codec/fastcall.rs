//! `Codec.dumps` and `Codec.loads` called the way the interpreter calls its
//! own methods: `METH_FASTCALL | METH_KEYWORDS` functions behind method
//! descriptors (`PyDescr_NewMethod`, stable ABI), set on the class once it
//! exists. A `#[pymethods]` wrapper walked pyo3's argument description and
//! trampoline for its one argument: about 170 instructions a call
//! (callgrind), a tenth of the round trip of a small value. The interpreter
//! checks that `self` is a `Codec` before calling a descriptor's function
//! (and `Codec` has no subclasses); the argument is checked here, by
//! position or by name, as the pyo3 signature did.

use std::cell::UnsafeCell;
use std::ffi::{c_char, CStr};

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyType};
use pyo3::Borrowed;

use super::Codec;
use crate::c_entry::returned;

/// A method definition CPython keeps a pointer to for as long as the
/// descriptor lives: static, never written after it is built.
struct MethodDef(UnsafeCell<ffi::PyMethodDef>);

// SAFETY: written only by its constant initializer; CPython reads it under
// the GIL.
unsafe impl Sync for MethodDef {}

const fn method(
    name: &'static CStr,
    doc: &'static CStr,
    function: ffi::PyCFunctionFastWithKeywords,
) -> MethodDef {
    MethodDef(UnsafeCell::new(ffi::PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: function,
        },
        ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        ml_doc: doc.as_ptr(),
    }))
}

static DUMPS: MethodDef = method(
    c"dumps",
    c"dumps($self, /, obj)\n--\n\nEncodes `obj` to framed bytes; EncodeError for unsupported values.",
    dumps,
);

static LOADS: MethodDef = method(
    c"loads",
    c"loads($self, /, data)\n--\n\nDecodes bytes produced by `dumps`; DecodeError for anything invalid.",
    loads,
);

/// Sets `dumps` and `loads` on the class.
pub(super) fn install(class: &Bound<'_, PyType>) -> PyResult<()> {
    let py = class.py();
    for (name, def) in [("dumps", &DUMPS), ("loads", &LOADS)] {
        // SAFETY: a type object and a static definition that outlives it.
        let descriptor = unsafe {
            Bound::from_owned_ptr_or_err(
                py,
                ffi::PyDescr_NewMethod(class.as_type_ptr(), def.0.get()),
            )
        }?;
        class.setattr(name, descriptor)?;
    }
    Ok(())
}

unsafe extern "C" fn dumps(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    call(
        slf,
        args,
        nargs,
        kwnames,
        ("dumps", c"obj"),
        |codec, obj| codec.dumps(&obj).map(Bound::into_any),
    )
}

unsafe extern "C" fn loads(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    call(
        slf,
        args,
        nargs,
        kwnames,
        ("loads", c"data"),
        |codec, data| {
            let py = data.py();
            let data = data.cast::<PyBytes>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "loads() argument 'data' must be bytes, not {}",
                    super::encode_type_name(&data)
                ))
            })?;
            codec.decode(py, data.as_bytes()).map(|v| v.into_bound(py))
        },
    )
}

/// The method's one argument (`signature`: the method's name, the
/// parameter's), by position or by name, then `body`; any
/// error (a panic too) set as the exception and NULL returned.
///
/// # Safety
/// Called by the interpreter as a `METH_FASTCALL | METH_KEYWORDS` method of
/// `Codec`: `slf` is a `Codec`, `args` holds `nargs` positional arguments
/// then one per name of `kwnames` (NULL or a tuple of str), all borrowed.
#[inline(always)]
unsafe fn call(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
    signature: (&'static str, &'static CStr),
    body: impl for<'py> FnOnce(&Codec, Borrowed<'_, 'py, PyAny>) -> PyResult<Bound<'py, PyAny>>,
) -> *mut ffi::PyObject {
    // SAFETY: the interpreter calls methods attached.
    let py = Python::assume_attached();
    // encode_into and decode catch their own panics: only the argument
    // handling around them is left to `returned`.
    returned(
        py,
        || format!("Codec.{}", signature.0),
        || {
            let argument = one_argument(py, args, nargs, kwnames, signature)?;
            let codec = Borrowed::from_ptr(py, slf).cast_unchecked::<Codec>();
            body(codec.get(), argument).map(Bound::unbind)
        },
    )
}

/// # Safety
/// As `call`.
#[inline(always)]
unsafe fn one_argument<'a, 'py>(
    py: Python<'py>,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
    (method, parameter): (&'static str, &'static CStr),
) -> PyResult<Borrowed<'a, 'py, PyAny>> {
    if nargs == 1 && kwnames.is_null() {
        return Ok(Borrowed::from_ptr(py, *args));
    }
    let keywords = if kwnames.is_null() {
        0
    } else {
        ffi::PyTuple_Size(kwnames)
    };
    if nargs + keywords != 1 {
        return Err(PyTypeError::new_err(format!(
            "{method}() takes exactly one argument ({} given)",
            nargs + keywords
        )));
    }
    if keywords == 1 {
        let name = ffi::PyTuple_GetItem(kwnames, 0);
        if ffi::PyUnicode_CompareWithASCIIString(name, parameter.as_ptr() as *const c_char) != 0 {
            let name = Borrowed::from_ptr(py, name);
            return Err(PyTypeError::new_err(format!(
                "{method}() got an unexpected keyword argument {}",
                name.repr()?
            )));
        }
    }
    Ok(Borrowed::from_ptr(py, *args))
}
