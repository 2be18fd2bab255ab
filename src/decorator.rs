//! The native hit path of the `ormcache` decorator.
//!
//! `CachedMethod` replaces the decorated function on the class. Called on a
//! record, it builds the key with the key function (Python: the decorator's
//! expressions), finds the cache in `obj.pool._Registry__caches`, and looks
//! the key up without leaving Rust when the cache is one of ours. The
//! Python layer (`ormcache_redis.decorator`) builds the key function and
//! handles the rare paths (clearing, warnings).

use std::sync::atomic::{AtomicU64, Ordering};

use pyo3::exceptions::{PyKeyError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use pyo3::{ffi, intern, PyTypeInfo};

use crate::lru::{deadline_after, PyLru};
use crate::two_tier::TwoTierCache;

/// `(obj, *args)` as a new tuple, built without an intermediate Vec: this is
/// on every cached call.
fn prepend<'py>(
    obj: &Bound<'py, PyAny>,
    args: &Bound<'py, PyTuple>,
) -> PyResult<Bound<'py, PyTuple>> {
    let py = obj.py();
    let n = args.len();
    // SAFETY: a fresh tuple of n + 1 slots, each filled once with a new
    // reference (PyTuple_SetItem steals it) before the tuple is shared.
    unsafe {
        let tuple = ffi::PyTuple_New((n + 1) as ffi::Py_ssize_t);
        if tuple.is_null() {
            return Err(PyErr::fetch(py));
        }
        ffi::PyTuple_SetItem(tuple, 0, obj.clone().into_ptr());
        for (i, item) in args.iter().enumerate() {
            ffi::PyTuple_SetItem(tuple, (i + 1) as ffi::Py_ssize_t, item.into_ptr());
        }
        Ok(Bound::from_owned_ptr(py, tuple).downcast_into_unchecked())
    }
}

#[pyclass(
    module = "ormcache_redis._native",
    name = "CachedMethod",
    frozen,
    dict,
    weakref
)]
pub struct CachedMethod {
    method: Py<PyAny>,
    key: Py<PyAny>,
    cache_name: Py<PyString>,
    ttl: Option<f64>,
    /// Called as `on_unhashable(obj, key, error)` when a key cannot be hashed.
    on_unhashable: Option<Py<PyAny>>,
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
}

/// The outcome of looking a key up in whatever cache object `obj` has.
enum Lookup {
    Hit(Py<PyAny>),
    Miss,
    Unhashable(PyErr),
}

impl CachedMethod {
    fn cache<'py>(&self, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = obj.py();
        obj.getattr(intern!(py, "pool"))?
            .getattr(intern!(py, "_Registry__caches"))?
            .get_item(self.cache_name.bind(py))
    }

    fn lookup(cache: &Bound<'_, PyAny>, key: &Bound<'_, PyAny>) -> PyResult<Lookup> {
        let found = if let Ok(two_tier) = cache.downcast::<TwoTierCache>() {
            TwoTierCache::lookup(two_tier, key)
        } else if let Ok(lru) = cache.downcast::<PyLru>() {
            key.hash().and_then(|hash| lru.get().lru.lookup(key, hash))
        } else {
            match cache.get_item(key) {
                Ok(value) => Ok(Some(value.unbind())),
                Err(err) if err.is_instance_of::<PyKeyError>(cache.py()) => Ok(None),
                Err(err) => Err(err),
            }
        };
        match found {
            Ok(Some(value)) => Ok(Lookup::Hit(value)),
            Ok(None) => Ok(Lookup::Miss),
            Err(err) if err.is_instance_of::<PyTypeError>(cache.py()) => {
                Ok(Lookup::Unhashable(err))
            }
            Err(err) => Err(err),
        }
    }

    fn store(
        &self,
        cache: &Bound<'_, PyAny>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        if let Ok(two_tier) = cache.downcast::<TwoTierCache>() {
            return TwoTierCache::store(two_tier, key, value, self.ttl);
        }
        if let Ok(lru) = cache.downcast::<PyLru>() {
            return lru.get().set_item(key, value, deadline_after(self.ttl)?);
        }
        cache.set_item(key, value)
    }

    /// The cached call: `method(obj, *args, **kwargs)`.
    fn invoke(
        &self,
        obj: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let py = obj.py();
        let full_args = prepend(obj, args)?;
        let key = self.key.bind(py).call(&full_args, kwargs)?;
        let cache = self.cache(obj)?;
        match Self::lookup(&cache, &key)? {
            Lookup::Hit(value) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Ok(value)
            }
            Lookup::Miss => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                let value = self.method.bind(py).call(&full_args, kwargs)?;
                self.store(&cache, &key, &value)?;
                Ok(value.unbind())
            }
            Lookup::Unhashable(err) => {
                // Odoo's behaviour: warn, compute, do not store.
                self.errors.fetch_add(1, Ordering::Relaxed);
                if let Some(report) = &self.on_unhashable {
                    report.bind(py).call1((obj, &key, err.value(py)))?;
                }
                Ok(self.method.bind(py).call(&full_args, kwargs)?.unbind())
            }
        }
    }
}

#[pymethods]
impl CachedMethod {
    #[new]
    #[pyo3(signature = (method, key, cache_name = "default", ttl = None, on_unhashable = None))]
    fn py_new(
        py: Python<'_>,
        method: Py<PyAny>,
        key: Py<PyAny>,
        cache_name: &str,
        ttl: Option<f64>,
        on_unhashable: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        deadline_after(ttl)?;
        Ok(CachedMethod {
            method,
            key,
            cache_name: PyString::intern(py, cache_name).unbind(),
            ttl,
            on_unhashable,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        })
    }

    fn __get__(
        slf: &Bound<'_, Self>,
        obj: Option<&Bound<'_, PyAny>>,
        _owner: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        match obj {
            None => Ok(slf.clone().into_any().unbind()),
            Some(obj) => Ok(Bound::new(
                slf.py(),
                BoundCachedMethod {
                    func: slf.clone().unbind(),
                    obj: obj.clone().unbind(),
                },
            )?
            .into_any()
            .unbind()),
        }
    }

    /// Unbound call: `Model.method(record, *args)`.
    #[pyo3(signature = (obj, *args, **kwargs))]
    fn __call__(
        &self,
        obj: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        self.invoke(obj, args, kwargs)
    }

    #[getter]
    fn method(&self, py: Python<'_>) -> Py<PyAny> {
        self.method.clone_ref(py)
    }

    #[getter]
    fn key(&self, py: Python<'_>) -> Py<PyAny> {
        self.key.clone_ref(py)
    }

    #[getter]
    fn cache_name(&self, py: Python<'_>) -> Py<PyString> {
        self.cache_name.clone_ref(py)
    }

    #[getter]
    fn ttl(&self) -> Option<f64> {
        self.ttl
    }

    /// The cache object this method uses for `obj`.
    fn cache_for<'py>(&self, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.cache(obj)
    }

    /// This decorator's own counters: hits, misses, errors (unhashable keys).
    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        dict.set_item("hits", self.hits.load(Ordering::Relaxed))?;
        dict.set_item("misses", self.misses.load(Ordering::Relaxed))?;
        dict.set_item("errors", self.errors.load(Ordering::Relaxed))?;
        Ok(dict)
    }
}

/// A `CachedMethod` bound to a record or model class.
#[pyclass(module = "ormcache_redis._native", name = "BoundCachedMethod", frozen)]
pub struct BoundCachedMethod {
    func: Py<CachedMethod>,
    obj: Py<PyAny>,
}

#[pymethods]
impl BoundCachedMethod {
    #[pyo3(signature = (*args, **kwargs))]
    fn __call__(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        self.func.get().invoke(self.obj.bind(py), args, kwargs)
    }

    #[getter]
    fn __func__(&self, py: Python<'_>) -> Py<CachedMethod> {
        self.func.clone_ref(py)
    }

    #[getter]
    fn __self__(&self, py: Python<'_>) -> Py<PyAny> {
        self.obj.clone_ref(py)
    }

    /// Attributes of the decorator (`clear_cache`, `__cache__`, `__name__`...).
    fn __getattr__(&self, py: Python<'_>, name: &Bound<'_, PyString>) -> PyResult<Py<PyAny>> {
        let attr = self.func.bind(py).as_any().getattr(name)?;
        // Methods of the decorator apply to the bound object, like
        // `record.method.clear_cache()`.
        if attr.is_callable() && !attr.is_instance(&CachedMethod::type_object(py))? {
            if let Ok(get) = attr.getattr(intern!(py, "__get__")) {
                return Ok(get.call1((self.obj.bind(py),))?.unbind());
            }
        }
        Ok(attr.unbind())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "<bound cached method {} of {}>",
            self.func
                .bind(py)
                .as_any()
                .getattr("__qualname__")
                .map(|q| q.to_string())
                .unwrap_or_default(),
            self.obj.bind(py).repr()?
        ))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<CachedMethod>()?;
    m.add_class::<BoundCachedMethod>()?;
    Ok(())
}
