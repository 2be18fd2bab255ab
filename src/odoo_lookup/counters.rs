//! The counters Odoo reads on a hit (`hit`, `tx_hit`), added to the way
//! the interpreter's own bytecode does it.

use std::ffi::c_int;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyType};
use pyo3::{ffi, intern};

/// The counters' attributes the hit path adds to.
#[derive(Clone, Copy)]
pub(super) enum CounterField {
    Hit,
    TransactionHit,
}

impl CounterField {
    fn name(self, py: Python<'_>) -> &Bound<'_, PyString> {
        match self {
            CounterField::Hit => intern!(py, "hit"),
            CounterField::TransactionHit => intern!(py, "tx_hit"),
        }
    }
}

pub(super) fn increment(counter: &Bound<'_, PyAny>, field: CounterField) -> PyResult<()> {
    let py = counter.py();
    if let Some(slot) = counter_slot(counter, field)? {
        // SAFETY: `slot` is a member descriptor of exactly `counter`'s type
        // (checked by `counter_slot`), and `get`/`set` are its type's own
        // tp_descr_get/tp_descr_set slots.
        unsafe {
            let value = Bound::from_owned_ptr_or_err(
                py,
                (slot.get)(slot.descriptor.as_ptr(), counter.as_ptr(), ffi::Py_None()),
            )?;
            let value = plus_one(value)?;
            if (slot.set)(slot.descriptor.as_ptr(), counter.as_ptr(), value.as_ptr()) != 0 {
                return Err(PyErr::fetch(py));
            }
        }
        return Ok(());
    }
    let name = field.name(py);
    let value = plus_one(counter.getattr(name)?)?;
    counter.setattr(name, value)
}

/// `value + 1`, without the number protocol's dispatch for a plain int.
fn plus_one(value: Bound<'_, PyAny>) -> PyResult<Bound<'_, PyAny>> {
    // SAFETY: a live object; the GIL is held.
    if unsafe { ffi::PyLong_CheckExact(value.as_ptr()) } != 0 {
        if let Ok(count) = value.extract::<i64>() {
            if let Some(next) = count.checked_add(1) {
                return Ok(next.into_pyobject(value.py())?.into_any());
            }
        }
    }
    value.add(1)
}

type DescrGet = unsafe extern "C" fn(
    *mut ffi::PyObject,
    *mut ffi::PyObject,
    *mut ffi::PyObject,
) -> *mut ffi::PyObject;
type DescrSet =
    unsafe extern "C" fn(*mut ffi::PyObject, *mut ffi::PyObject, *mut ffi::PyObject) -> c_int;

/// A `__slots__` attribute of Odoo's `ormcache_counter`, read and written
/// through its member descriptor: what the interpreter's specialised
/// bytecode does for `counter.hit += 1`, which a generic getattr/setattr
/// pair from C costs several times over.
struct CounterSlot {
    class: Py<PyAny>,
    descriptor: Py<PyAny>,
    get: DescrGet,
    set: DescrSet,
}

/// The slot of `field` in `counter`'s type when it is a plain member
/// descriptor (as in Odoo's `ormcache_counter`), found once per field.
fn counter_slot(
    counter: &Bound<'_, PyAny>,
    field: CounterField,
) -> PyResult<Option<&'static CounterSlot>> {
    static HIT: PyOnceLock<Option<CounterSlot>> = PyOnceLock::new();
    static TX_HIT: PyOnceLock<Option<CounterSlot>> = PyOnceLock::new();
    let py = counter.py();
    let cell = match field {
        CounterField::Hit => &HIT,
        CounterField::TransactionHit => &TX_HIT,
    };
    let class = counter.get_type();
    let slot = cell.get_or_try_init(py, || find_counter_slot(&class, field.name(py)))?;
    Ok(slot.as_ref().filter(|slot| slot.class.is(&class)))
}

fn find_counter_slot(
    class: &Bound<'_, PyType>,
    name: &Bound<'_, PyString>,
) -> PyResult<Option<CounterSlot>> {
    let py = class.py();
    let Some(descriptor) = class.getattr(intern!(py, "__dict__"))?.get_item(name).ok() else {
        return Ok(None);
    };
    let member_descriptor = py.import("types")?.getattr("MemberDescriptorType")?;
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
    Ok(Some(CounterSlot {
        class: class.clone().into_any().unbind(),
        descriptor: descriptor.unbind(),
        // SAFETY: non-null tp_descr_get / tp_descr_set slots.
        get: unsafe { std::mem::transmute::<*mut std::ffi::c_void, DescrGet>(get) },
        set: unsafe { std::mem::transmute::<*mut std::ffi::c_void, DescrSet>(set) },
    }))
}
