//! The key expressions of an `@ormcache` method, evaluated without Python
//! code: a parameter, an attribute path from one (`self.env.uid`), or
//! either passed to the builtin `frozenset` or `tuple` (`frozenset(groups)`).
//! The Python side (`ormcache_redis.key_plan`) decides which expressions
//! have exactly this meaning and hands them over as `(position, attributes,
//! wrapper)`; any other expression keeps its compiled key function.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple, PyType};
use pyo3::{ffi, intern, Borrowed, PyTraverseError, PyVisit};
use smallvec::SmallVec;

use crate::method_type::Arguments;
use crate::record_id::RecordIdReader;

/// The builtin a key expression passes its value to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wrapper {
    Frozenset,
    Tuple,
}

struct KeyPart {
    /// The parameter's argument index (0: self).
    position: usize,
    /// The attributes read from it, in order.
    attributes: Vec<Py<PyString>>,
    wrapper: Option<Wrapper>,
}

/// The key expressions' values of one call: on the stack for up to four.
pub(crate) type KeyValues<'py> = SmallVec<[Bound<'py, PyAny>; 4]>;

/// A method's key expressions and its parameters' defaults.
pub(crate) struct KeyPlan {
    parts: Vec<KeyPart>,
    /// By argument index (None: required, or a default this path leaves
    /// to the compiled key function).
    defaults: Vec<Option<Py<PyAny>>>,
    /// Reads `.id` as Odoo's `Id` field does (`KeyPlan::reading_ids_as`).
    record_id: Option<RecordIdReader>,
}

/// What Python hands over: `(position, attributes, wrapper)` per
/// expression, `wrapper` being None, `"frozenset"` or `"tuple"`.
pub(crate) type KeyPartSpec = (usize, Vec<String>, Option<String>);

impl KeyPlan {
    pub(crate) fn new(
        py: Python<'_>,
        parts: Vec<KeyPartSpec>,
        defaults: Vec<Option<Py<PyAny>>>,
    ) -> PyResult<KeyPlan> {
        let parts = parts
            .into_iter()
            .map(|(position, attributes, wrapper)| {
                if position >= defaults.len() {
                    return Err(PyTypeError::new_err(
                        "a key position names no parameter of the method",
                    ));
                }
                let wrapper = match wrapper.as_deref() {
                    None => None,
                    Some("frozenset") => Some(Wrapper::Frozenset),
                    Some("tuple") => Some(Wrapper::Tuple),
                    Some(other) => {
                        return Err(PyValueError::new_err(format!(
                            "a key expression can pass its value to frozenset or tuple, not {other}"
                        )))
                    }
                };
                Ok(KeyPart {
                    position,
                    attributes: attributes
                        .iter()
                        .map(|name| PyString::intern(py, name).unbind())
                        .collect(),
                    wrapper,
                })
            })
            .collect::<PyResult<_>>()?;
        Ok(KeyPlan {
            parts,
            defaults,
            record_id: None,
        })
    }

    /// Reads an attribute `id` natively where the value's class has one of
    /// `field_class` (Odoo's `Id` field; see `record_id`).
    pub(crate) fn reading_ids_as(mut self, field_class: Py<PyType>) -> KeyPlan {
        self.record_id = Some(RecordIdReader::new(field_class));
        self
    }

    /// Reports the objects held to the garbage collector.
    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        for part in &self.parts {
            for attribute in &part.attributes {
                visit.call(attribute)?;
            }
        }
        for default in &self.defaults {
            visit.call(default)?;
        }
        self.record_id
            .as_ref()
            .map_or(Ok(()), |reader| reader.traverse(visit))
    }

    /// Drops what evaluating the key remembers (the garbage collector's
    /// clear).
    pub(crate) fn forget(&self, py: Python<'_>) {
        if let Some(reader) = &self.record_id {
            reader.forget(py);
        }
    }

    /// How many positional arguments the method takes, self included.
    pub(crate) fn parameters(&self) -> usize {
        self.defaults.len()
    }

    /// The parameter at argument `index`, from the call or its default.
    fn argument<'py>(&self, args: &Arguments<'_, 'py>, index: usize) -> Option<Bound<'py, PyAny>> {
        match args.values.get(index) {
            Some(value) => Some(Borrowed::to_owned(*value)),
            None => self
                .defaults
                .get(index)
                .and_then(|default| default.as_ref().map(|value| value.bind(args.py).clone())),
        }
    }

    /// The values of the key expressions, as the compiled key function
    /// computes them (None: an omitted parameter without a default, which
    /// the caller's slow path reports).
    pub(crate) fn values<'py>(
        &self,
        args: &Arguments<'_, 'py>,
    ) -> PyResult<Option<KeyValues<'py>>> {
        let py = args.py;
        let mut values = KeyValues::new();
        for part in &self.parts {
            let Some(mut value) = self.argument(args, part.position) else {
                return Ok(None);
            };
            for attribute in &part.attributes {
                value = self.attribute(value, attribute.bind(py))?;
            }
            let value = match part.wrapper {
                None => value,
                Some(Wrapper::Frozenset) => frozenset(value)?,
                Some(Wrapper::Tuple) => tuple(value)?,
            };
            values.push(value);
        }
        Ok(Some(values))
    }
}

impl KeyPlan {
    /// `value.<name>`; `id` by the record id reader when it knows how.
    fn attribute<'py>(
        &self,
        value: Bound<'py, PyAny>,
        name: &Bound<'py, PyString>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if let Some(reader) = &self.record_id {
            // Both interned: the same object when the name is `id`.
            if name.is(intern!(value.py(), "id")) {
                if let Some(id) = reader.read(&value)? {
                    return Ok(id);
                }
            }
        }
        value.getattr(name)
    }
}

/// `frozenset(value)`: the value itself when it is one already, as the
/// builtin does.
fn frozenset(value: Bound<'_, PyAny>) -> PyResult<Bound<'_, PyAny>> {
    // SAFETY: a live object and the GIL held.
    if unsafe { ffi::PyFrozenSet_CheckExact(value.as_ptr()) } != 0 {
        return Ok(value);
    }
    // SAFETY: a live object and the GIL held; a new reference or an error.
    unsafe { Bound::from_owned_ptr_or_err(value.py(), ffi::PyFrozenSet_New(value.as_ptr())) }
}

/// `tuple(value)`: the value itself when it is one already.
fn tuple(value: Bound<'_, PyAny>) -> PyResult<Bound<'_, PyAny>> {
    if value.is_exact_instance_of::<PyTuple>() {
        return Ok(value);
    }
    // SAFETY: a live object and the GIL held; a new reference or an error.
    unsafe { Bound::from_owned_ptr_or_err(value.py(), ffi::PySequence_Tuple(value.as_ptr())) }
}
