//! `LRU` for Python: a thread-safe mapping with Odoo's `LRU` protocol
//! (17, 18 and 19).

use pyo3::exceptions::{PyKeyError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use super::budget::process_budget;
use super::core::Stored;
use super::locked::{Bounds, Lru};
use crate::clock::deadline_after;

/// Sentinel for `pop(key)` without a default.
fn missing_key(key: &Bound<'_, PyAny>) -> PyErr {
    PyKeyError::new_err(key.clone().unbind())
}

/// A thread-safe LRU mapping with Odoo's `LRU` protocol (17, 18 and 19).
#[pyclass(module = "ormcache_redis._native", name = "LRU", subclass, frozen)]
pub struct PyLru {
    pub lru: Lru,
}

#[pymethods]
impl PyLru {
    #[new]
    #[pyo3(signature = (count, pairs = None, *, max_bytes = 0, ttl = None))]
    fn py_new(
        count: i64,
        pairs: Option<&Bound<'_, PyAny>>,
        max_bytes: i64,
        ttl: Option<f64>,
    ) -> PyResult<Self> {
        let this = PyLru {
            lru: Lru::new(Bounds::from_args(count, max_bytes, ttl)?)?,
        };
        if let Some(pairs) = pairs {
            for pair in pairs.try_iter()? {
                let (key, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair?.extract()?;
                this.set_item(&key, &value, 0)?;
            }
        }
        Ok(this)
    }

    /// Maximum number of entries.
    #[getter]
    fn count(&self) -> usize {
        self.lru.bounds.max_entries
    }

    /// This LRU's own bound on its entries' bytes (0: only the process's).
    #[getter]
    fn max_bytes(&self) -> usize {
        self.lru.bounds.max_bytes
    }

    /// The bytes its entries hold (see `l1_memory`).
    #[getter]
    fn total_bytes(&self) -> usize {
        self.lru.total_bytes()
    }

    fn __getitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.lru
            .lookup(key, key.hash()?)?
            .ok_or_else(|| missing_key(key))
    }

    fn __setitem__(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.set_item(key, value, 0)
    }

    fn __delitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<()> {
        match self.lru.remove(key, key.hash()?)? {
            Some(_) => Ok(()),
            None => Err(missing_key(key)),
        }
    }

    fn __contains__(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.lru.contains(key, key.hash()?)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.lru.traverse(&visit)
    }

    /// Breaks the cycles through the entries (the collector's clear).
    fn __clear__(&self) {
        Python::attach(|py| self.lru.clear(py));
    }

    fn __len__(&self) -> usize {
        self.lru.len()
    }

    fn __bool__(&self) -> bool {
        !self.lru.is_empty()
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.keys(py)?.as_any().try_iter()?.into_any())
    }

    fn __repr__(&self) -> String {
        format!(
            "<LRU {} of {} entries>",
            self.lru.len(),
            self.lru.bounds.max_entries
        )
    }

    /// Stores a value with its own TTL in seconds (None: the LRU's default).
    #[pyo3(signature = (key, value, ttl = None))]
    fn set(
        &self,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: Option<f64>,
    ) -> PyResult<()> {
        self.set_item(key, value, deadline_after(ttl)?)
    }

    /// The value, or `default`.
    #[pyo3(signature = (key, default = None))]
    fn get(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        Ok(match self.lru.lookup(key, key.hash()?)? {
            Some(value) => value,
            None => default.unwrap_or_else(|| py.None()),
        })
    }

    /// Removes and returns the value; KeyError unless a default is given.
    #[pyo3(signature = (key, *default))]
    fn pop(&self, key: &Bound<'_, PyAny>, default: &Bound<'_, PyTuple>) -> PyResult<Py<PyAny>> {
        if default.len() > 1 {
            return Err(PyTypeError::new_err("pop expected at most 2 arguments"));
        }
        match self.lru.remove(key, key.hash()?)? {
            Some(value) => Ok(value),
            None if default.len() == 1 => Ok(default.get_item(0)?.unbind()),
            None => Err(missing_key(key)),
        }
    }

    /// Removes every entry.
    fn clear(&self, py: Python<'_>) {
        self.lru.clear(py);
    }

    /// The keys, least recently used first.
    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.lru.items(py).into_iter().map(|(k, _)| k))
    }

    /// The values, least recently used first.
    fn values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.lru.items(py).into_iter().map(|(_, v)| v))
    }

    /// The (key, value) pairs, least recently used first.
    fn items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.lru.items(py))
    }

    /// A copy of the mapping, least recently used first (Odoo 19).
    #[getter]
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (key, value) in self.lru.items(py) {
            dict.set_item(key, value)?;
        }
        Ok(dict)
    }

    /// Odoo 17/18 read `cache.d` (their OrderedDict) for statistics.
    #[getter]
    fn d<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.snapshot(py)
    }

    /// Local counters: hits, misses, sets, evictions (byte_evictions of
    /// them for a byte bound), too_large, expirations, size in entries and
    /// bytes, and the process's L1 bytes and bound.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        lru_stats_dict(py, &self.lru, LRU_LOOKUP_LABELS)
    }

    /// Zeroes the counters.
    fn reset_stats(&self) {
        self.lru.reset_counters();
    }
}

impl PyLru {
    pub fn set_item(
        &self,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        expires_at: u64,
    ) -> PyResult<()> {
        let hash = key.hash()?;
        let size = Lru::entry_size(key, value);
        let stored = Stored {
            size,
            expires_at,
            hit_counter: None,
        };
        self.lru.store(key, hash, value, stored)
    }
}

/// How an LRU's hit and miss counts are named: `hits`/`misses` for a
/// plain LRU; a two-tier cache reports them as its L1's.
pub type LookupLabels = (&'static str, &'static str);
pub const LRU_LOOKUP_LABELS: LookupLabels = ("hits", "misses");
pub const L1_LOOKUP_LABELS: LookupLabels = ("l1_hits", "l1_misses");

pub fn lru_stats_dict<'py>(
    py: Python<'py>,
    lru: &Lru,
    (hits_label, misses_label): LookupLabels,
) -> PyResult<Bound<'py, PyDict>> {
    let counters = lru.counters();
    let dict = PyDict::new(py);
    dict.set_item("entries", lru.len())?;
    dict.set_item("max_entries", lru.bounds.max_entries)?;
    dict.set_item("bytes", lru.total_bytes())?;
    dict.set_item("max_bytes", lru.bounds.max_bytes)?;
    dict.set_item(hits_label, counters.hits)?;
    dict.set_item(misses_label, counters.misses)?;
    dict.set_item("sets", counters.sets)?;
    dict.set_item("evictions", counters.evictions)?;
    dict.set_item("byte_evictions", counters.byte_evictions)?;
    dict.set_item("too_large", counters.too_large)?;
    dict.set_item("expirations", counters.expirations)?;
    let process = process_budget();
    dict.set_item("process_bytes", process.held())?;
    dict.set_item("process_max_bytes", process.max_bytes())?;
    Ok(dict)
}

/// The process's L1 together: `bytes` its entries hold, `max_bytes` its
/// bound, `byte_evictions` (least recently used entries evicted for it),
/// `too_large` (values larger than a bound, not kept), `caches` (LRUs
/// drawing on it).
#[pyfunction]
fn l1_memory(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let figures = process_budget().figures();
    let dict = PyDict::new(py);
    dict.set_item("bytes", figures.bytes)?;
    dict.set_item("max_bytes", figures.max_bytes)?;
    dict.set_item("byte_evictions", figures.byte_evictions)?;
    dict.set_item("too_large", figures.too_large)?;
    dict.set_item("caches", figures.caches)?;
    Ok(dict)
}

/// Bounds every L1 of the process together to `max_bytes`; entries beyond
/// it go at once, least recently used first.
#[pyfunction]
fn set_l1_max_bytes(py: Python<'_>, max_bytes: i64) -> PyResult<()> {
    if max_bytes < 1 {
        return Err(PyValueError::new_err(format!(
            "max_bytes must be a positive number of bytes, got {max_bytes}"
        )));
    }
    let budget = process_budget();
    let evicted = budget.set_max_bytes(max_bytes as usize);
    // Dropped outside every lock: `__del__` may run.
    drop(evicted);
    budget.return_freed_memory(py);
    Ok(())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    super::equality::register(m.py())?;
    super::held::register(m.py())?;
    m.add_class::<PyLru>()?;
    m.add_function(wrap_pyfunction!(l1_memory, m)?)?;
    m.add_function(wrap_pyfunction!(set_l1_max_bytes, m)?)?;
    Ok(())
}
