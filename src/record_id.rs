//! `record.id` read as Odoo's `Id` field reads it, without its Python
//! `__get__` frame.
//!
//! Odoo's `Id.__get__` (the same in 17.0, 18.0 and 19.0) returns
//! `record._ids[0]` for one record, `False` for none, and raises for
//! several. Keys such as `@ormcache('self.id')` (`res.users._get_group_ids`,
//! read by every `has_group`) evaluate it on each call: a Python frame of
//! about 1,400 instructions, against a slot read here. The reader is only
//! used on a model class whose `id` attribute is an instance of exactly
//! the class the addon hands over (`odoo.fields.Id`, a data descriptor, so
//! no instance attribute can shadow it) and whose `_ids` is a slot; any
//! other object, an `_ids` that is not a tuple, and several records (whose
//! error Odoo's own code raises) are read by `getattr` as before.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyTuple, PyType, PyWeakrefReference};
use pyo3::{PyTraverseError, PyVisit};

use crate::gil_cell::GilCell;
use crate::member_slot::MemberSlot;
use crate::weak_ref::refers_to;

pub(crate) struct RecordIdReader {
    /// Odoo's `Id` field class.
    field_class: Py<PyType>,
    /// The class last seen, held weakly (a registry's class must be free
    /// to go), and its `_ids` slot when its `id` is an `Id`.
    known: GilCell<Option<(Py<PyWeakrefReference>, Option<MemberSlot>)>>,
}

impl RecordIdReader {
    pub(crate) fn new(field_class: Py<PyType>) -> Self {
        RecordIdReader {
            field_class,
            known: GilCell::new(None),
        }
    }

    /// `record.id` when this reader knows how Odoo computes it for this
    /// record, else None (the caller reads the attribute).
    pub(crate) fn read<'py>(
        &self,
        record: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = record.py();
        let class = record.get_type();
        // Some(None): a class known not to have Odoo's `id`.
        let recalled = self
            .known
            .with(py, |known| match known {
                Some((known, slot)) if refers_to(known, &class) => {
                    Some(slot.as_ref().map(|slot| slot.get(record)))
                }
                _ => None,
            })
            .flatten();
        let ids = match recalled {
            Some(ids) => ids,
            None => {
                let slot = self.ids_slot(&class)?;
                let ids = slot.as_ref().map(|slot| slot.get(record));
                let watched = PyWeakrefReference::new(&class)?.unbind();
                // What a replaced entry held is dropped after the cell is released.
                let _replaced = self.known.with(py, |known| known.replace((watched, slot)));
                ids
            }
        };
        let Some(ids) = ids else {
            return Ok(None);
        };
        // An unset slot: the attribute read raises as Odoo's code would.
        let Ok(ids) = ids else {
            return Ok(None);
        };
        let Ok(ids) = ids.cast_exact::<PyTuple>() else {
            return Ok(None);
        };
        match ids.len() {
            0 => Ok(Some(PyBool::new(py, false).to_owned().into_any())),
            1 => Ok(Some(ids.get_item(0)?)),
            _ => Ok(None),
        }
    }

    /// Reports the objects held to the garbage collector: the class last
    /// seen holds, through its method, this reader.
    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.field_class)?;
        // SAFETY: called from `tp_traverse` only (the owners' `__traverse__`).
        let known = unsafe {
            self.known.peek_during_gc(|known| match known {
                Some((class, slot)) => {
                    visit.call(class)?;
                    slot.as_ref().map_or(Ok(()), |slot| slot.traverse(visit))
                }
                None => Ok(()),
            })
        };
        known.unwrap_or(Ok(()))
    }

    /// Drops what the reader remembers (the garbage collector's clear).
    pub(crate) fn forget(&self, py: Python<'_>) {
        let _forgotten = self.known.with(py, Option::take);
    }

    /// The `_ids` slot of `class` when its `id` is Odoo's `Id` field.
    fn ids_slot(&self, class: &Bound<'_, PyType>) -> PyResult<Option<MemberSlot>> {
        let py = class.py();
        // On the class, `Id.__get__(None, class)` returns the field itself.
        let Ok(field) = class.getattr(intern!(py, "id")) else {
            return Ok(None);
        };
        if !field.get_type().is(self.field_class.bind(py)) {
            return Ok(None);
        }
        MemberSlot::find(class, intern!(py, "_ids"))
    }
}
