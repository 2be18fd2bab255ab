//! Canonical cache keys: a deterministic byte encoding of a key, identical
//! across processes and runs, and its digest for Redis key names.
//! (Interface stub: the full implementation lands in the keys commit.)

use pyo3::prelude::*;

use crate::errors::EncodeError;

/// Appends the canonical encoding of `key` to `out`.
pub fn canonical_key(_key: &Bound<'_, PyAny>, _out: &mut Vec<u8>) -> PyResult<()> {
    Err(EncodeError::new_err("canonical keys not implemented"))
}

pub fn register(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}

/// SHA-256 over (u32-LE length of namespace, namespace, canonical).
pub fn key_digest(namespace: &[u8], canonical: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update((namespace.len() as u32).to_le_bytes());
    hasher.update(namespace);
    hasher.update(canonical);
    hasher.finalize().into()
}
