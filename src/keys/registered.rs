//! Types the application teaches the key encoder (`register_key_type`),
//! such as Odoo recordsets.

use pyo3::prelude::*;
use pyo3::types::PyType;

use super::encode::{check_depth, encode, unsupported, write_bytes};
use super::K_REGISTERED;

/// A type the application taught the key encoder (an Odoo recordset, keyed
/// by its model and ids as Odoo compares it): its name, then its state.
struct KeyType {
    cls: Py<PyAny>,
    name: String,
    to_state: Py<PyAny>,
}

/// Registered once at start-up by the application; every process of a
/// deployment must register the same types to compute the same keys.
static KEY_TYPES_REGISTERED: parking_lot::RwLock<Vec<KeyType>> =
    parking_lot::RwLock::new(Vec::new());

pub(super) fn encode_registered(
    obj: &Bound<'_, PyAny>,
    out: &mut Vec<u8>,
    depth: u32,
) -> PyResult<()> {
    let py = obj.py();
    // Copied out: `to_state` and isinstance run Python code, never under
    // the lock.
    let registered: Vec<(Py<PyAny>, String, Py<PyAny>)> = KEY_TYPES_REGISTERED
        .read()
        .iter()
        .map(|t| {
            (
                t.cls.clone_ref(py),
                t.name.clone(),
                t.to_state.clone_ref(py),
            )
        })
        .collect();
    for (cls, name, to_state) in registered {
        if obj.is_instance(cls.bind(py))? {
            check_depth(depth)?;
            let state = to_state.bind(py).call1((obj,))?;
            write_bytes(out, K_REGISTERED, name.as_bytes());
            return encode(&state, out, depth + 1);
        }
    }
    Err(unsupported(obj))
}

/// Teaches the key encoder a type: instances of `cls` (subclasses too)
/// are encoded as `name` followed by the encoding of `to_state(obj)`, which
/// must hold only what a key may (a raised exception makes the key local).
#[pyfunction]
pub(super) fn register_key_type(
    cls: &Bound<'_, PyType>,
    name: &str,
    to_state: Py<PyAny>,
) -> PyResult<()> {
    let mut registered = KEY_TYPES_REGISTERED.write();
    if let Some(existing) = registered.iter_mut().find(|t| t.name == name) {
        existing.cls = cls.clone().into_any().unbind();
        existing.to_state = to_state;
        return Ok(());
    }
    registered.push(KeyType {
        cls: cls.clone().into_any().unbind(),
        name: name.to_string(),
        to_state,
    });
    Ok(())
}
