//! The counters Odoo reads on a hit (`hit`, `tx_hit`): natively in a
//! `HitCounter`, else the way the interpreter's own bytecode adds to them.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyType};
use pyo3::{ffi, intern};

use super::hit_counter::HitCounter;
use crate::member_slot::MemberSlot;

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
    if let Ok(native) = counter.cast::<HitCounter>() {
        native.get().add_one(field);
        return Ok(());
    }
    let py = counter.py();
    if let Some(slot) = counter_slot(counter, field)? {
        return slot.set(counter, &plus_one(slot.get(counter)?)?);
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

/// The slot of `field` in `counter`'s type when it is a plain member
/// descriptor (as in Odoo's `ormcache_counter`), found once per field for
/// the first counter class seen (held here: Odoo's, for the process's life).
fn counter_slot(
    counter: &Bound<'_, PyAny>,
    field: CounterField,
) -> PyResult<Option<&'static MemberSlot>> {
    type Found = (Py<PyType>, Option<MemberSlot>);
    static HIT: PyOnceLock<Found> = PyOnceLock::new();
    static TX_HIT: PyOnceLock<Found> = PyOnceLock::new();
    let py = counter.py();
    let cell = match field {
        CounterField::Hit => &HIT,
        CounterField::TransactionHit => &TX_HIT,
    };
    let class = counter.get_type();
    let (known, slot) = cell.get_or_try_init(py, || {
        MemberSlot::find(&class, field.name(py)).map(|slot| (class.clone().unbind(), slot))
    })?;
    Ok(slot.as_ref().filter(|_| known.is(&class)))
}
