//! A `__slots__` attribute read and written through its member descriptor:
//! what the interpreter's specialised bytecode does for `obj.attr` and
//! `obj.attr = v`, which a generic getattr/setattr from C costs several
//! times over (a walk of the type's MRO, then the descriptor protocol).
//!
//! A slot holds no reference to the class it was found on (a registry's
//! model class must be free to go): its owner keeps that class, strongly
//! or weakly, and uses the slot only on instances of exactly that class
//! while it is alive.

use std::ffi::{c_int, c_void};

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyType};
use pyo3::{PyTraverseError, PyVisit};

type DescrGet = unsafe extern "C" fn(
    *mut ffi::PyObject,
    *mut ffi::PyObject,
    *mut ffi::PyObject,
) -> *mut ffi::PyObject;
type DescrSet =
    unsafe extern "C" fn(*mut ffi::PyObject, *mut ffi::PyObject, *mut ffi::PyObject) -> c_int;

pub(crate) struct MemberSlot {
    /// The address of the class the slot was found on, for debug checks
    /// only (the owner holds the class).
    class_address: usize,
    /// The member descriptor (it holds the class that declares the slot,
    /// Odoo's `BaseModel` or `ormcache_counter`, not a registry's class).
    descriptor: Py<PyAny>,
    get: DescrGet,
    set: DescrSet,
}

impl MemberSlot {
    /// `name` on `class` when it is a plain member descriptor, found as
    /// attribute lookup finds it (the MRO's first, a data descriptor that
    /// no instance dictionary can shadow).
    pub(crate) fn find(
        class: &Bound<'_, PyType>,
        name: &Bound<'_, PyString>,
    ) -> PyResult<Option<Self>> {
        let py = class.py();
        let Ok(descriptor) = class.getattr(name) else {
            return Ok(None);
        };
        let member_descriptor = py
            .import(intern!(py, "types"))?
            .getattr(intern!(py, "MemberDescriptorType"))?;
        if !descriptor.get_type().is(&member_descriptor) {
            return Ok(None);
        }
        let descriptor_type = descriptor.get_type();
        // SAFETY: a type object; the slots are null or functions of exactly
        // these signatures.
        let (get, set) = unsafe {
            (
                ffi::PyType_GetSlot(descriptor_type.as_type_ptr(), ffi::Py_tp_descr_get),
                ffi::PyType_GetSlot(descriptor_type.as_type_ptr(), ffi::Py_tp_descr_set),
            )
        };
        if get.is_null() || set.is_null() {
            return Ok(None);
        }
        Ok(Some(MemberSlot {
            class_address: class.as_ptr() as usize,
            descriptor: descriptor.unbind(),
            // SAFETY: non-null tp_descr_get / tp_descr_set slots.
            get: unsafe { std::mem::transmute::<*mut c_void, DescrGet>(get) },
            set: unsafe { std::mem::transmute::<*mut c_void, DescrSet>(set) },
        }))
    }

    /// Reports the objects held to the garbage collector.
    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.descriptor)
    }

    /// `obj.<slot>`; `obj` must be an instance of exactly the class the
    /// slot was found on, which must be alive.
    pub(crate) fn get<'py>(&self, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        debug_assert_eq!(obj.get_type().as_ptr() as usize, self.class_address);
        // SAFETY: the descriptor's own tp_descr_get on an instance of the
        // class it was found on; the GIL is held.
        unsafe {
            Bound::from_owned_ptr_or_err(
                obj.py(),
                (self.get)(self.descriptor.as_ptr(), obj.as_ptr(), ffi::Py_None()),
            )
        }
    }

    /// `obj.<slot> = value`; as `get`.
    pub(crate) fn set(&self, obj: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        debug_assert_eq!(obj.get_type().as_ptr() as usize, self.class_address);
        // SAFETY: as in `get`, with the descriptor's tp_descr_set.
        match unsafe { (self.set)(self.descriptor.as_ptr(), obj.as_ptr(), value.as_ptr()) } {
            0 => Ok(()),
            _ => Err(PyErr::fetch(obj.py())),
        }
    }
}
