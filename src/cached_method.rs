//! The native hit path of the `ormcache` decorator.
//!
//! `CachedMethod` replaces the decorated function on the class. Called on a
//! record, it builds the key with the key function (Python: the decorator's
//! expressions), finds the cache in `obj.pool._Registry__caches`, and looks
//! the key up without leaving Rust when the cache is one of ours. The
//! Python layer (`ormcache_redis.two_tier_ormcache`) builds the key function and
//! handles the rare paths (clearing, warnings).
//!
//! When every key expression is one `key_parts` evaluates (a parameter, an
//! attribute path, `frozenset(...)` or `tuple(...)` of one: the Python
//! layer decides), a hit runs no Python code of the key function and builds
//! no key tuple, as `OdooLookup` does: the items are hashed as a tuple
//! would be and compared in L1 (`l1_hit`). The class Python sees is
//! derived by `method_type`, so `record.method(x)` is a vectorcall with no
//! bound method built.

use std::ffi::CStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use pyo3::exceptions::{PyKeyError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use pyo3::{ffi, intern, PyTraverseError, PyVisit};
use smallvec::SmallVec;

use crate::clock::deadline_after;
use crate::key_hash;
use crate::key_parts::{KeyPartSpec, KeyPlan};
use crate::lru::{ItemsHit, Probe, PyLru};
use crate::method_type::{
    bind_like_a_function, derive_method_type, Arguments, CalledInPlace, Layout,
};
use crate::two_tier::TwoTierCache;

/// The native hit path of `ormcache_redis.ormcache`: a method whose results
/// are cached in `self.pool._Registry__caches[cache_name]` under `key(...)`.
/// Python sees the class `method_type` derives from this one.
#[pyclass(
    module = "ormcache_redis._native",
    name = "_CachedMethod",
    frozen,
    dict,
    weakref,
    subclass
)]
pub struct CachedMethod {
    method: Py<PyAny>,
    key: Py<PyAny>,
    /// The key expressions, when `key_parts` evaluates every one of them
    /// exactly as `key` does.
    key_plan: Option<KeyPlan>,
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

/// `cache[key]` as Odoo asks it (None on a miss), without the mapping
/// protocol when the cache is one of ours. `hash`: the key's hash when
/// the caller computed it already (else a cache of ours counts an
/// unhashable key against its method).
pub(crate) fn find_in(
    cache: &Bound<'_, PyAny>,
    key: &Bound<'_, PyAny>,
    hash: Option<isize>,
) -> PyResult<Option<Py<PyAny>>> {
    if let Ok(two_tier) = cache.cast::<TwoTierCache>() {
        return match hash {
            Some(hash) => TwoTierCache::lookup_hashed(two_tier, key, hash),
            None => TwoTierCache::lookup(two_tier, key),
        };
    }
    if let Ok(lru) = cache.cast::<PyLru>() {
        let hash = match hash {
            Some(hash) => hash,
            None => key.hash()?,
        };
        return lru.get().lru.lookup(key, hash);
    }
    match cache.get_item(key) {
        Ok(value) => Ok(Some(value.unbind())),
        Err(err) if err.is_instance_of::<PyKeyError>(cache.py()) => Ok(None),
        Err(err) => Err(err),
    }
}

/// A hit in `cache` found without the key tuple (see `Lru::hit`): by the
/// key's items and their tuple's hash, or where the same key was found
/// before. `None` is not a miss: ask `find_in` with the tuple.
///
/// # Safety
/// The probe's items are live objects and the GIL is held.
pub(crate) unsafe fn l1_hit(
    cache: &Bound<'_, PyAny>,
    probe: Probe<'_>,
    marks: Option<u64>,
) -> Option<ItemsHit> {
    if let Ok(two_tier) = cache.cast::<TwoTierCache>() {
        return TwoTierCache::l1_hit(two_tier, probe, marks);
    }
    if let Ok(lru) = cache.cast::<PyLru>() {
        return lru.get().lru.hit(cache.py(), probe, marks);
    }
    None
}

impl CachedMethod {
    fn cache<'py>(&self, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = obj.py();
        obj.getattr(intern!(py, "pool"))?
            .getattr(intern!(py, "_Registry__caches"))?
            .get_item(self.cache_name.bind(py))
    }

    fn lookup(cache: &Bound<'_, PyAny>, key: &Bound<'_, PyAny>) -> PyResult<Lookup> {
        match find_in(cache, key, None) {
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
        if let Ok(two_tier) = cache.cast::<TwoTierCache>() {
            return TwoTierCache::store(two_tier, key, value, self.ttl);
        }
        if let Ok(lru) = cache.cast::<PyLru>() {
            return lru.get().set_item(key, value, deadline_after(self.ttl)?);
        }
        cache.set_item(key, value)
    }

    /// A call with positional arguments only, its key from `key_plan`: a
    /// hit without the key function or a key tuple; else the tuple, built
    /// from the same items, takes the general path.
    fn call_planned(&self, plan: &KeyPlan, args: &Arguments<'_, '_>) -> PyResult<Py<PyAny>> {
        let py = args.py;
        let obj = args.values[0].to_owned();
        // The key function's order: the model name, the expressions, then
        // the cache.
        let name = obj.getattr(intern!(py, "_name"))?;
        let Some(values) = plan.values(args)? else {
            return self.invoke(&args.to_tuple()?, None);
        };
        let cache = self.cache(&obj)?;
        let mut items: SmallVec<[*mut ffi::PyObject; 6]> = SmallVec::new();
        items.extend([name.as_ptr(), self.method.as_ptr()]);
        items.extend(values.iter().map(|value| value.as_ptr()));
        // SAFETY: the items are held by `name`, `self` and `values`; the
        // GIL is held.
        let hit = unsafe {
            match key_hash::hash_of_items(py, &items) {
                Some(hash) => l1_hit(&cache, Probe::Items(&items, hash), None),
                None => None,
            }
        };
        if let Some(hit) = hit {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(hit.value);
        }
        let mut key: SmallVec<[Bound<'_, PyAny>; 6]> = SmallVec::new();
        key.extend([name, self.method.bind(py).clone()]);
        key.extend(values);
        let key = PyTuple::new(py, key)?;
        self.finish(&obj, &cache, key.as_any(), &args.to_tuple()?, None)
    }

    /// The cached call: `method(*args, **kwargs)`, `args[0]` being the record.
    fn invoke(
        &self,
        full_args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let py = full_args.py();
        let obj = full_args.get_item(0).map_err(|_| {
            PyTypeError::new_err("a cached method needs its record (self) as first argument")
        })?;
        let key = self.key.bind(py).call(full_args, kwargs)?;
        let cache = self.cache(&obj)?;
        self.finish(&obj, &cache, &key, full_args, kwargs)
    }

    /// The lookup of a built key, and what follows a miss or an
    /// unhashable key.
    fn finish(
        &self,
        obj: &Bound<'_, PyAny>,
        cache: &Bound<'_, PyAny>,
        key: &Bound<'_, PyAny>,
        full_args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let py = obj.py();
        match Self::lookup(cache, key)? {
            Lookup::Hit(value) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Ok(value)
            }
            Lookup::Miss => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                let value = self.method.bind(py).call(full_args, kwargs)?;
                self.store(cache, key, &value)?;
                Ok(value.unbind())
            }
            Lookup::Unhashable(err) => {
                // Odoo's behaviour: warn, compute, do not store.
                self.errors.fetch_add(1, Ordering::Relaxed);
                if let Some(report) = &self.on_unhashable {
                    report.bind(py).call1((obj, key, err.value(py)))?;
                }
                Ok(self.method.bind(py).call(full_args, kwargs)?.unbind())
            }
        }
    }
}

impl CalledInPlace for CachedMethod {
    const QUALIFIED_NAME: &'static CStr = c"ormcache_redis._native.CachedMethod";

    fn layout() -> &'static OnceLock<Layout> {
        static LAYOUT: OnceLock<Layout> = OnceLock::new();
        &LAYOUT
    }

    fn dispatch(
        &self,
        args: &Arguments<'_, '_>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let keywords = kwargs.is_some_and(|kwargs| !kwargs.is_empty());
        match &self.key_plan {
            Some(plan)
                if !keywords
                    && !args.values.is_empty()
                    && args.values.len() <= plan.parameters() =>
            {
                self.call_planned(plan, args)
            }
            _ => self.invoke(&args.to_tuple()?, kwargs),
        }
    }
}

#[pymethods]
impl CachedMethod {
    /// `key_parts` and `defaults` (see `key_parts`): given when every key
    /// expression is one the engine evaluates; `key` stays the reference.
    #[new]
    #[pyo3(signature = (
        method, key, cache_name = "default", ttl = None, on_unhashable = None,
        *, key_parts = None, defaults = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn py_new(
        py: Python<'_>,
        method: Py<PyAny>,
        key: Py<PyAny>,
        cache_name: &str,
        ttl: Option<f64>,
        on_unhashable: Option<Py<PyAny>>,
        key_parts: Option<Vec<KeyPartSpec>>,
        defaults: Option<Vec<Option<Py<PyAny>>>>,
    ) -> PyResult<Self> {
        deadline_after(ttl)?;
        let key_plan = match (key_parts, defaults) {
            (Some(parts), Some(defaults)) => Some(KeyPlan::new(py, parts, defaults)?),
            (None, None) => None,
            _ => return Err(PyTypeError::new_err("key_parts and defaults come together")),
        };
        Ok(CachedMethod {
            method,
            key,
            key_plan,
            cache_name: PyString::intern(py, cache_name).unbind(),
            ttl,
            on_unhashable,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        })
    }

    /// The class it is installed on holds it, and its method and key
    /// function may hold that class (a `super()` cell, their module): the
    /// garbage collector must see these references to free such classes.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.method)?;
        visit.call(&self.key)?;
        visit.call(&self.cache_name)?;
        visit.call(&self.on_unhashable)?;
        self.key_plan
            .as_ref()
            .map_or(Ok(()), |plan| plan.traverse(&visit))
    }

    /// Binds like a plain function, with a `types.MethodType`: CPython then
    /// passes the record as first argument without an extra tuple, and
    /// attribute access (`record.method.clear_cache`) reaches this object.
    fn __get__(
        slf: &Bound<'_, Self>,
        obj: Option<&Bound<'_, PyAny>>,
        _owner: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        bind_like_a_function(slf.as_any(), obj)
    }

    #[pyo3(signature = (*args, **kwargs))]
    fn __call__(
        &self,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        self.call_with_tuple(args, kwargs)
    }

    /// Whether calls build their key without the key function.
    #[getter]
    fn planned(&self) -> bool {
        self.key_plan.is_some()
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

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("CachedMethod", derive_method_type::<CachedMethod>(m.py())?)?;
    Ok(())
}
