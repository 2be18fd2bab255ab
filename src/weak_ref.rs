//! What the memos ask of the weak references they keep: whether one
//! still points at a given object (alive, and that very object). Held
//! weakly, a registry's classes, an environment or a transaction's set can
//! go while a memo outlives them; a dead reference answers no.

use pyo3::prelude::*;
use pyo3::types::{PyWeakrefMethods, PyWeakrefReference};

/// Whether `watched` still refers to `object`.
pub(crate) fn refers_to(watched: &Py<PyWeakrefReference>, object: &Bound<'_, PyAny>) -> bool {
    watched
        .bind(object.py())
        .upgrade()
        .is_some_and(|referent| referent.is(object))
}
