//! Names that mean the same thing in every process, and Odoo's key shape.
//!
//! A function object has no identity across processes: whatever leaves the
//! process names it `module.qualname`. An Odoo cache key is
//! `(model_name, method, *args)`; `key_method` is the one place that knows
//! the method is its second element.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyTuple, PyType};

/// `types.MethodType`, the type of bound methods.
fn method_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static METHOD_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    METHOD_TYPE
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(
                py.import("types")?
                    .getattr("MethodType")?
                    .cast_into::<PyType>()?
                    .unbind(),
            )
        })
        .map(|t| t.bind(py))
}

/// `module.qualname` of a function, bound method or class (a bound
/// method is named by its function); None when either part is not a
/// string, an error when reading them raised.
pub fn qualified_name(obj: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    let py = obj.py();
    // Only a bound method is asked for `__func__`: on anything else the
    // failed lookup would build an AttributeError on every call (this runs
    // on every L2 access).
    let obj = if obj.get_type().is(method_type(py)?) {
        obj.getattr(intern!(py, "__func__"))?
    } else {
        obj.clone()
    };
    let module = obj.getattr(intern!(py, "__module__"))?;
    let qualname = obj.getattr(intern!(py, "__qualname__"))?;
    let (Ok(module), Ok(qualname)) = (module.cast::<PyString>(), qualname.cast::<PyString>())
    else {
        return Ok(None);
    };
    Ok(Some(format!("{}.{}", module.to_str()?, qualname.to_str()?)))
}

/// The name of a method, or None when it has none (no error).
pub fn method_name(method: &Bound<'_, PyAny>) -> Option<String> {
    qualified_name(method).ok().flatten()
}

/// Whether a qualified name names a single object in every process
/// (lambdas and `<locals>` definitions do not).
pub fn is_unique(name: &str) -> bool {
    !name.contains('<')
}

/// The method element of an Odoo cache key `(model_name, method, *args)`.
pub fn key_method<'py>(key: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    let tuple = key.cast::<PyTuple>().ok()?;
    if tuple.len() < 2 {
        return None;
    }
    let item = tuple.get_item(1).ok()?;
    (item.is_callable() && !item.is_instance_of::<PyString>()).then_some(item)
}

#[pyfunction(name = "qualified_name")]
fn py_qualified_name(obj: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    qualified_name(obj)
}

#[pyfunction(name = "key_method")]
fn py_key_method<'py>(key: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    key_method(key)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(py_qualified_name, m)?)?;
    m.add_function(wrap_pyfunction!(py_key_method, m)?)?;
    Ok(())
}
