//! Classes Python sees as `OdooLookup` and `CachedMethod`: a pyclass,
//! called the way the interpreter calls its own functions.
//!
//! A `#[pyclass]` with `__get__` and `__call__` costs two things per
//! `record.method(args)` that a Python function does not: the interpreter
//! calls `__get__` to build a bound method (a function type is marked
//! `Py_TPFLAGS_METHOD_DESCRIPTOR`, so for a function it skips that and
//! passes the record as the first argument), and it packs the arguments
//! into a tuple for `tp_call` (a function has a vectorcall entry that takes
//! them in place). pyo3 sets neither, so this module derives a subclass
//! from the pyclass through the stable API (`PyType_FromSpecWithBases`)
//! with both: the flag, and a vectorcall function pointer stored in each
//! instance after the pyclass's own layout. Together they took a native
//! hit from about 4,600 to 3,900 instructions (callgrind), and more in
//! time: the bound method was an allocation per call. A pyclass opts in by
//! implementing `CalledInPlace` (its calls come as `Arguments`).
//!
//! Every behaviour stays the pyclass's: `__get__` still binds like a
//! function (the flag's contract, `bind_like_a_function`) for code that
//! reads the attribute without calling it, and `tp_call` is still there
//! (`CalledInPlace::call_with_tuple`) for callers that do not use vectorcall.

use std::ffi::{c_int, c_uint, c_ulong, c_void, CStr};
use std::sync::OnceLock;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pyclass::boolean_struct::True;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyTuple, PyType};
use pyo3::{ffi, intern, Borrowed, PyClass};
use smallvec::SmallVec;

use crate::c_entry::returned;

/// A pyclass whose derived class (`derive_method_type`) is called in place.
pub(crate) trait CalledInPlace: PyClass<Frozen = True> + Sync {
    /// The derived class's qualified name (static: CPython before 3.12
    /// keeps the pointer as `tp_name`).
    const QUALIFIED_NAME: &'static CStr;
    /// Where this class's layout is kept once derived.
    fn layout() -> &'static OnceLock<Layout>;
    /// One call: positional arguments (the record first) and keywords.
    fn dispatch(
        &self,
        args: &Arguments<'_, '_>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>>;

    /// `dispatch` for a call through `tp_call` (the arguments in a tuple):
    /// the pyclass's `__call__`.
    fn call_with_tuple(
        &self,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let values: SmallVec<[Borrowed<'_, '_, PyAny>; 4]> = args.iter_borrowed().collect();
        let arguments = Arguments {
            py: args.py(),
            values: &values,
        };
        self.dispatch(&arguments, kwargs)
    }
}

/// A call's positional arguments, borrowed from the caller (a vectorcall
/// array or a tuple's items): no tuple is built on the hit path.
pub(crate) struct Arguments<'a, 'py> {
    pub(crate) py: Python<'py>,
    pub(crate) values: &'a [Borrowed<'a, 'py, PyAny>],
}

impl<'py> Arguments<'_, 'py> {
    pub(crate) fn to_tuple(&self) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(
            self.py,
            self.values.iter().map(|value| Borrowed::to_owned(*value)),
        )
    }
}

/// `Py_TPFLAGS_HAVE_VECTORCALL`: honoured by every CPython since 3.8, named
/// by the limited API only from 3.12 (this wheel targets 3.10).
const HAVE_VECTORCALL: c_ulong = 1 << 11;

/// `PY_VECTORCALL_ARGUMENTS_OFFSET`, likewise: the flag in `nargsf` that
/// lets a callee borrow `args[-1]`; the count is the rest.
const ARGUMENTS_OFFSET: usize = 1 << (usize::BITS - 1);

/// Where instances of the derived class keep their vectorcall pointer, and
/// the pyclass's constructor that the derived one wraps.
pub(crate) struct Layout {
    vectorcall_offset: ffi::Py_ssize_t,
    pyclass_new: ffi::newfunc,
}

/// Derives the callable class from the pyclass `T`.
pub(crate) fn derive_method_type<T: CalledInPlace>(py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
    let base = py.get_type::<T>();
    let base = &base;
    let base_size: ffi::Py_ssize_t = base.getattr(intern!(py, "__basicsize__"))?.extract()?;
    let pointer_size = std::mem::size_of::<ffi::vectorcallfunc>() as ffi::Py_ssize_t;
    let vectorcall_offset = (base_size + pointer_size - 1) / pointer_size * pointer_size;
    // SAFETY: a type object; its tp_new slot is null or a `newfunc`.
    let pyclass_new = unsafe { ffi::PyType_GetSlot(base.as_type_ptr(), ffi::Py_tp_new) };
    if pyclass_new.is_null() {
        return Err(PyTypeError::new_err(format!(
            "{:?}'s pyclass has no constructor",
            T::QUALIFIED_NAME
        )));
    }
    let layout = T::layout().get_or_init(|| Layout {
        vectorcall_offset,
        // SAFETY: a non-null tp_new slot.
        pyclass_new: unsafe { std::mem::transmute::<*mut c_void, ffi::newfunc>(pyclass_new) },
    });
    if layout.vectorcall_offset != vectorcall_offset {
        return Err(PyTypeError::new_err(format!(
            "{:?}'s layout changed since the module was first loaded",
            T::QUALIFIED_NAME
        )));
    }
    let mut members = [
        ffi::PyMemberDef {
            name: c"__vectorcalloffset__".as_ptr(),
            type_code: ffi::Py_T_PYSSIZET,
            offset: vectorcall_offset,
            flags: ffi::Py_READONLY,
            doc: std::ptr::null(),
        },
        ffi::PyMemberDef::default(),
    ];
    let mut slots = [
        ffi::PyType_Slot {
            slot: ffi::Py_tp_new,
            pfunc: new_with_vectorcall::<T> as *mut c_void,
        },
        ffi::PyType_Slot {
            slot: ffi::Py_tp_members,
            pfunc: members.as_mut_ptr().cast(),
        },
        ffi::PyType_Slot::default(),
    ];
    let mut spec = ffi::PyType_Spec {
        name: T::QUALIFIED_NAME.as_ptr(),
        basicsize: c_int::try_from(vectorcall_offset + pointer_size)?,
        itemsize: 0,
        // Not a base type: every instance is exactly this class, so each
        // has the pointer `new_with_vectorcall` stores. Immutable: the
        // interpreter specialises `record.method` only for descriptors of
        // immutable types. GC support, dict, weak references, traverse,
        // clear and dealloc come from the base.
        flags: c_uint::try_from(
            ffi::Py_TPFLAGS_DEFAULT
                | ffi::Py_TPFLAGS_METHOD_DESCRIPTOR
                | ffi::Py_TPFLAGS_IMMUTABLETYPE
                | HAVE_VECTORCALL,
        )?,
        slots: slots.as_mut_ptr(),
    };
    let bases = PyTuple::new(py, [base])?;
    // SAFETY: the spec, its slots and members are valid for the call
    // (CPython copies the members; the name is static).
    unsafe {
        Bound::from_owned_ptr_or_err(py, ffi::PyType_FromSpecWithBases(&mut spec, bases.as_ptr()))
    }?
    .cast_into::<PyType>()
    .map_err(Into::into)
}

/// The pyclass's constructor, then the vectorcall pointer.
unsafe extern "C" fn new_with_vectorcall<T: CalledInPlace>(
    subtype: *mut ffi::PyTypeObject,
    args: *mut ffi::PyObject,
    kwargs: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    let Some(layout) = T::layout().get() else {
        return std::ptr::null_mut();
    };
    // SAFETY: the caller's arguments, passed on unchanged.
    let object = unsafe { (layout.pyclass_new)(subtype, args, kwargs) };
    if !object.is_null() {
        // SAFETY: `object` is an instance of `subtype`, the derived class
        // (not a base type), whose basicsize has room for the pointer at
        // this offset.
        unsafe {
            object
                .cast::<u8>()
                .offset(layout.vectorcall_offset)
                .cast::<ffi::vectorcallfunc>()
                .write(call_in_place::<T>);
        }
    }
    object
}

/// The vectorcall entry: the record and the arguments as the interpreter
/// has them on its stack.
unsafe extern "C" fn call_in_place<T: CalledInPlace>(
    callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: the interpreter calls vectorcall functions attached.
    let py = unsafe { Python::assume_attached() };
    let entry = || T::QUALIFIED_NAME.to_string_lossy().into_owned();
    returned(py, entry, || {
        let count = nargsf & !ARGUMENTS_OFFSET;
        // SAFETY: vectorcall's contract: `args` holds `count` positional
        // arguments, then one per name in `kwnames`, all borrowed for the
        // call; `callable` is an instance of the derived class.
        unsafe {
            let callee = Borrowed::from_ptr(py, callable).cast_unchecked::<T>();
            let keywords = match kwnames.is_null() {
                true => 0,
                false => ffi::PyTuple_Size(kwnames) as usize,
            };
            let values: SmallVec<[Borrowed<'_, '_, PyAny>; 4]> = (0..count + keywords)
                .map(|index| Borrowed::from_ptr(py, *args.add(index)))
                .collect();
            let (positional, keyword_values) = values.split_at(count);
            let arguments = Arguments {
                py,
                values: positional,
            };
            let kwargs = match keywords {
                0 => None,
                _ => {
                    let names = Borrowed::from_ptr(py, kwnames).cast_unchecked::<PyTuple>();
                    let kwargs = PyDict::new(py);
                    for (name, value) in names.iter_borrowed().zip(keyword_values) {
                        kwargs.set_item(name, value)?;
                    }
                    Some(kwargs)
                }
            };
            callee.get().dispatch(&arguments, kwargs.as_ref())
        }
    })
}

type DescrGet = unsafe extern "C" fn(
    *mut ffi::PyObject,
    *mut ffi::PyObject,
    *mut ffi::PyObject,
) -> *mut ffi::PyObject;

/// How to bind a `CalledInPlace` class's instance to a record, found once
/// per process.
enum Binder {
    /// `FunctionType`'s own `tp_descr_get` (PyType_GetSlot, limited API
    /// since 3.10): builds a bound method for any callable, at the cost of
    /// binding a plain function. Used only after checking that it does.
    FunctionDescrGet(DescrGet),
    /// `types.MethodType(callable, obj)`: slower, always correct.
    MethodType(Py<PyAny>),
}

fn binder(py: Python<'_>) -> PyResult<&'static Binder> {
    static BINDER: PyOnceLock<Binder> = PyOnceLock::new();
    BINDER.get_or_try_init(py, || {
        let types = py.import("types")?;
        let method_type = types.getattr("MethodType")?;
        let function_type = types.getattr("FunctionType")?;
        // SAFETY: FunctionType is a type object; the slot is either null
        // or a tp_descr_get function pointer.
        let slot = unsafe {
            ffi::PyType_GetSlot(
                function_type.as_ptr().cast::<ffi::PyTypeObject>(),
                ffi::Py_tp_descr_get,
            )
        };
        if !slot.is_null() {
            // SAFETY: a tp_descr_get slot has exactly this signature.
            let descr_get: DescrGet = unsafe { std::mem::transmute(slot) };
            // Check that it binds an arbitrary callable the way MethodType does.
            let probe = py.import("builtins")?.getattr("len")?;
            let target = PyString::new(py, "probe");
            let bound = unsafe {
                Bound::from_owned_ptr_or_err(
                    py,
                    descr_get(probe.as_ptr(), target.as_ptr(), ffi::Py_None()),
                )
            };
            if let Ok(bound) = bound {
                if bound.is_instance(&method_type)?
                    && bound.getattr("__func__")?.is(&probe)
                    && bound.getattr("__self__")?.is(&target)
                {
                    return Ok(Binder::FunctionDescrGet(descr_get));
                }
            }
        }
        Ok(Binder::MethodType(method_type.unbind()))
    })
}

/// `__get__` of a callable that binds like a plain function: itself on the
/// class, a bound method on an instance.
pub(crate) fn bind_like_a_function(
    func: &Bound<'_, PyAny>,
    obj: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    match obj {
        None => Ok(func.clone().unbind()),
        Some(obj) => Ok(bind_method(func, obj)?.unbind()),
    }
}

/// `types.MethodType(func, obj)`, as cheaply as the interpreter allows.
fn bind_method<'py>(
    func: &Bound<'py, PyAny>,
    obj: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = func.py();
    match binder(py)? {
        // SAFETY: checked at start-up to behave as MethodType(func, obj).
        Binder::FunctionDescrGet(descr_get) => unsafe {
            Bound::from_owned_ptr_or_err(py, descr_get(func.as_ptr(), obj.as_ptr(), ffi::Py_None()))
        },
        Binder::MethodType(method_type) => method_type.bind(py).call1((func, obj)),
    }
}
