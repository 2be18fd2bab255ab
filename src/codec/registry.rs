//! Registered extension types. Immutable snapshots behind an `Arc`: a
//! registration builds a new snapshot and swaps it in, so encoders and
//! decoders never hold a lock while they call into Python.

use std::collections::HashMap;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyType;
use pyo3::{PyTraverseError, PyVisit};

pub struct ExtEntry {
    pub tag: String,
    pub cls: Py<PyType>,
    pub to_state: Py<PyAny>,
    pub from_state: Py<PyAny>,
}

#[derive(Default, Clone)]
pub struct Registry {
    /// Keyed by the type object's address; `ExtEntry::cls` keeps it alive,
    /// so the address cannot be reused by another type.
    pub by_type: HashMap<usize, Arc<ExtEntry>>,
    pub by_tag: HashMap<String, Arc<ExtEntry>>,
    pub order: Vec<Arc<ExtEntry>>,
}

impl Registry {
    pub fn with(&self, entry: ExtEntry) -> Registry {
        let entry = Arc::new(entry);
        let mut next = self.clone();
        next.by_type
            .insert(entry.cls.as_ptr() as usize, Arc::clone(&entry));
        next.by_tag.insert(entry.tag.clone(), Arc::clone(&entry));
        next.order.push(entry);
        next
    }

    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        for e in &self.order {
            visit.call(&e.cls)?;
            visit.call(&e.to_state)?;
            visit.call(&e.from_state)?;
        }
        Ok(())
    }
}

/// Validates an extension tag: 1..=64 printable ASCII characters.
pub fn check_tag(tag: &str) -> Result<(), &'static str> {
    if tag.is_empty() || tag.len() > 64 {
        return Err("tag must be 1 to 64 characters long");
    }
    if !tag.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("tag must be printable ASCII without spaces");
    }
    Ok(())
}
