//! Safe closed-type codec: Python value <-> bytes. Never pickle.
//! (Interface stub: the full implementation lands in the codec commit.)

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::{DecodeError, EncodeError};

/// Encodes and decodes values of a closed set of types plus registered
/// extension types. Shared between threads; registration is rare.
#[pyclass(module = "ormcache_redis._native", frozen)]
pub struct Codec {}

impl Codec {
    /// Appends the framed encoding (header, optional compression) of `obj`.
    pub fn encode_into(&self, _obj: &Bound<'_, PyAny>, _out: &mut Vec<u8>) -> PyResult<()> {
        Err(EncodeError::new_err("codec not implemented"))
    }

    /// Decodes framed bytes produced by `encode_into`.
    pub fn decode(&self, _py: Python<'_>, _data: &[u8]) -> PyResult<Py<PyAny>> {
        Err(DecodeError::new_err("codec not implemented"))
    }
}

#[pymethods]
impl Codec {
    #[new]
    fn py_new() -> Self {
        Codec {}
    }

    fn dumps<'py>(&self, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
        let mut out = Vec::new();
        self.encode_into(obj, &mut out)?;
        Ok(PyBytes::new(obj.py(), &out))
    }

    fn loads(&self, py: Python<'_>, data: &[u8]) -> PyResult<Py<PyAny>> {
        self.decode(py, data)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Codec>()?;
    Ok(())
}
