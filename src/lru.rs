//! The local tier (L1): a thread-safe LRU keyed by Python objects.
//!
//! Keys follow Python's own hash/equality (`1 == 1.0 == True` are one key,
//! unhashable keys raise `TypeError`), bounded by entry count and optionally
//! by total bytes, with optional per-entry TTL. Every operation is O(1): a
//! hash index over a slab of nodes chained in recency order.
//!
//! Locking rule: the mutex is never held while Python code can run. Python's
//! `__eq__` may release the GIL (or re-enter this cache), so equality checks
//! happen on candidates copied out of the lock, and the slot is re-validated
//! by its stamp afterwards. Reference drops (which can run `__del__`) are
//! likewise deferred until the lock is released. As a consequence a GIL
//! holder never waits for this lock while another GIL holder holds it.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use parking_lot::{Mutex, MutexGuard};
use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use smallvec::SmallVec;

const NIL: u32 = u32::MAX;

/// Monotonic nanoseconds since the first call in this process.
pub fn now_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64 + 1
}

/// Converts a TTL in seconds into an absolute deadline (0 = never expires).
pub fn deadline_after(ttl_seconds: Option<f64>) -> PyResult<u64> {
    match ttl_seconds {
        None => Ok(0),
        Some(ttl) if ttl.is_finite() && ttl > 0.0 => Ok(now_ns() + (ttl * 1e9) as u64),
        Some(ttl) => Err(PyValueError::new_err(format!(
            "ttl must be a positive number of seconds, got {ttl}"
        ))),
    }
}

/// Python hashes of small ints are the ints themselves: spread them over the
/// table's control bits.
#[derive(Default)]
struct PyHashMixer(u64);

impl Hasher for PyHashMixer {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_isize(&mut self, i: isize) {
        let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 29);
    }
}

type Index = HashMap<isize, Bucket, BuildHasherDefault<PyHashMixer>>;

/// Slots whose keys share one Python hash; almost always exactly one.
enum Bucket {
    One(u32),
    Many(Vec<u32>),
}

impl Bucket {
    fn slots(&self) -> &[u32] {
        match self {
            Bucket::One(slot) => std::slice::from_ref(slot),
            Bucket::Many(slots) => slots,
        }
    }
}

pub struct Entry {
    pub key: Py<PyAny>,
    pub value: Py<PyAny>,
    /// A counter owned by the caller (e.g. per-method L1 hits), bumped on
    /// every hit of this entry without any lookup of its own.
    hit_counter: Option<Arc<AtomicU64>>,
    hash: isize,
    size: usize,
    expires_at: u64,
    stamp: u64,
}

struct Node {
    entry: Option<Entry>,
    prev: u32,
    next: u32,
}

/// Counters of one LRU, read by `stats()`.
#[derive(Default, Clone, Copy)]
pub struct LruCounters {
    pub hits: u64,
    pub misses: u64,
    pub sets: u64,
    pub evictions: u64,
    pub expirations: u64,
}

/// The LRU structure itself. Only touched under `Lru::core`'s mutex, and it
/// never calls into Python (increfs only).
pub struct Core {
    nodes: Vec<Node>,
    free: Vec<u32>,
    index: Index,
    /// Most recently used.
    head: u32,
    /// Least recently used: evicted first.
    tail: u32,
    len: usize,
    bytes: usize,
    next_stamp: u64,
    pub counters: LruCounters,
}

impl Core {
    fn new() -> Self {
        Core {
            nodes: Vec::new(),
            free: Vec::new(),
            index: Index::default(),
            head: NIL,
            tail: NIL,
            len: 0,
            bytes: 0,
            next_stamp: 1,
            counters: LruCounters::default(),
        }
    }

    fn entry(&self, slot: u32) -> &Entry {
        self.nodes[slot as usize]
            .entry
            .as_ref()
            .expect("index points at a live slot")
    }

    fn find_identical(&self, hash: isize, key: *mut pyo3::ffi::PyObject) -> Option<u32> {
        let bucket = self.index.get(&hash)?;
        bucket
            .slots()
            .iter()
            .copied()
            .find(|&slot| self.entry(slot).key.as_ptr() == key)
    }

    fn candidates(&self, py: Python<'_>, hash: isize) -> Candidates {
        match self.index.get(&hash) {
            None => Candidates::new(),
            Some(bucket) => bucket
                .slots()
                .iter()
                .map(|&slot| {
                    let entry = self.entry(slot);
                    (slot, entry.stamp, entry.key.clone_ref(py))
                })
                .collect(),
        }
    }

    fn stamp_of(&self, slot: u32) -> Option<u64> {
        self.nodes
            .get(slot as usize)
            .and_then(|node| node.entry.as_ref())
            .map(|entry| entry.stamp)
    }

    fn unlink(&mut self, slot: u32) {
        let (prev, next) = {
            let node = &self.nodes[slot as usize];
            (node.prev, node.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.nodes[next as usize].prev = prev;
        }
    }

    fn link_front(&mut self, slot: u32) {
        let old_head = self.head;
        {
            let node = &mut self.nodes[slot as usize];
            node.prev = NIL;
            node.next = old_head;
        }
        if old_head == NIL {
            self.tail = slot;
        } else {
            self.nodes[old_head as usize].prev = slot;
        }
        self.head = slot;
    }

    fn touch(&mut self, slot: u32) {
        if self.head != slot {
            self.unlink(slot);
            self.link_front(slot);
        }
    }

    fn is_expired(&self, slot: u32) -> bool {
        let expires_at = self.entry(slot).expires_at;
        expires_at != 0 && now_ns() >= expires_at
    }

    /// Removes a slot and hands back its entry, to be dropped after unlocking.
    fn remove(&mut self, slot: u32) -> Entry {
        self.unlink(slot);
        let entry = self.nodes[slot as usize]
            .entry
            .take()
            .expect("removing a live slot");
        self.free.push(slot);
        self.len -= 1;
        self.bytes -= entry.size;
        let emptied = match self.index.get_mut(&entry.hash) {
            Some(Bucket::One(_)) => true,
            Some(Bucket::Many(slots)) => {
                slots.retain(|&s| s != slot);
                if slots.len() == 1 {
                    let only = slots[0];
                    self.index.insert(entry.hash, Bucket::One(only));
                }
                false
            }
            None => false,
        };
        if emptied {
            self.index.remove(&entry.hash);
        }
        entry
    }

    fn insert(&mut self, key: Py<PyAny>, hash: isize, value: Py<PyAny>, stored: Stored) {
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        let Stored {
            size,
            expires_at,
            hit_counter,
        } = stored;
        let entry = Entry {
            key,
            value,
            hit_counter,
            hash,
            size,
            expires_at,
            stamp,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.nodes[slot as usize].entry = Some(entry);
                slot
            }
            None => {
                self.nodes.push(Node {
                    entry: Some(entry),
                    prev: NIL,
                    next: NIL,
                });
                (self.nodes.len() - 1) as u32
            }
        };
        self.link_front(slot);
        self.len += 1;
        self.bytes += size;
        match self.index.get_mut(&hash) {
            None => {
                self.index.insert(hash, Bucket::One(slot));
            }
            Some(Bucket::Many(slots)) => slots.push(slot),
            Some(bucket @ Bucket::One(_)) => {
                let first = bucket.slots()[0];
                *bucket = Bucket::Many(vec![first, slot]);
            }
        }
    }

    fn replace(&mut self, slot: u32, value: Py<PyAny>, stored: Stored) -> Py<PyAny> {
        let entry = self.nodes[slot as usize]
            .entry
            .as_mut()
            .expect("replacing a live slot");
        self.bytes = self.bytes - entry.size + stored.size;
        entry.size = stored.size;
        entry.expires_at = stored.expires_at;
        entry.hit_counter = stored.hit_counter;
        let old = std::mem::replace(&mut entry.value, value);
        self.touch(slot);
        old
    }

    fn evict_over(&mut self, max_entries: usize, max_bytes: usize, garbage: &mut Vec<Entry>) {
        while self.len > max_entries || (max_bytes > 0 && self.bytes > max_bytes && self.len > 1) {
            let victim = self.tail;
            garbage.push(self.remove(victim));
            self.counters.evictions += 1;
        }
    }

    fn take_all(&mut self) -> Vec<Node> {
        self.index.clear();
        self.free.clear();
        self.head = NIL;
        self.tail = NIL;
        self.len = 0;
        self.bytes = 0;
        std::mem::take(&mut self.nodes)
    }

    /// Live slots from least to most recently used (Odoo 19's snapshot order).
    fn slots_lru_first(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.len);
        let mut slot = self.tail;
        while slot != NIL {
            out.push(slot);
            slot = self.nodes[slot as usize].prev;
        }
        out
    }
}

/// Keys sharing a probe's hash, copied out of the lock; almost always one.
type Candidates = SmallVec<[(u32, u64, Py<PyAny>); 2]>;

/// Result of a key lookup under the lock.
enum Found<R> {
    Live(R),
    Expired(Entry),
}

/// How a value is stored: its size for the byte bound, its deadline (0:
/// the LRU's default TTL) and an optional external hit counter.
#[derive(Default)]
pub struct Stored {
    pub size: usize,
    pub expires_at: u64,
    pub hit_counter: Option<Arc<AtomicU64>>,
}

/// Configuration of the bounds of one LRU.
#[derive(Clone, Copy)]
pub struct Bounds {
    pub max_entries: usize,
    pub max_bytes: usize,
    pub default_ttl: Option<f64>,
}

/// Thread-safe LRU usable from Rust (the two-tier cache embeds one) and
/// exposed to Python as `LRU`.
pub struct Lru {
    core: Mutex<Core>,
    pub bounds: Bounds,
}

impl Bounds {
    /// Bounds from Python arguments, each checked with an error naming it
    /// (Python ints would otherwise fail as an unnamed OverflowError).
    pub fn from_args(count: i64, max_bytes: i64, default_ttl: Option<f64>) -> PyResult<Bounds> {
        if count < 1 {
            return Err(PyValueError::new_err(format!(
                "count must be a positive number of entries, got {count}"
            )));
        }
        if max_bytes < 0 {
            return Err(PyValueError::new_err(format!(
                "max_bytes must be 0 (no byte bound) or a positive number of bytes, got {max_bytes}"
            )));
        }
        deadline_after(default_ttl)?;
        Ok(Bounds {
            max_entries: count as usize,
            max_bytes: max_bytes as usize,
            default_ttl,
        })
    }
}

impl Lru {
    pub fn new(bounds: Bounds) -> PyResult<Self> {
        if bounds.max_entries == 0 {
            return Err(PyValueError::new_err("LRU needs a positive count"));
        }
        deadline_after(bounds.default_ttl)?;
        Ok(Lru {
            core: Mutex::new(Core::new()),
            bounds,
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock()
    }

    /// Finds the live slot of `key` and runs `f` on it under the lock.
    fn with_slot<R>(
        &self,
        key: &Bound<'_, PyAny>,
        hash: isize,
        f: impl FnOnce(&mut Core, u32) -> R,
    ) -> PyResult<Option<R>> {
        let py = key.py();
        let candidates = {
            let mut core = self.core.lock();
            if let Some(slot) = core.find_identical(hash, key.as_ptr()) {
                return Ok(Some(f(&mut core, slot)));
            }
            core.candidates(py, hash)
        };
        for (slot, stamp, candidate) in &candidates {
            if python_equal(candidate.bind(py), key)? {
                let mut core = self.core.lock();
                if core.stamp_of(*slot) == Some(*stamp) {
                    return Ok(Some(f(&mut core, *slot)));
                }
                // Evicted or replaced while we compared: a miss.
                return Ok(None);
            }
        }
        Ok(None)
    }

    fn live_slot<R>(
        &self,
        key: &Bound<'_, PyAny>,
        hash: isize,
        f: impl FnOnce(&mut Core, u32) -> R,
    ) -> PyResult<Option<R>> {
        let found = self.with_slot(key, hash, |core, slot| {
            if core.is_expired(slot) {
                core.counters.expirations += 1;
                Found::Expired(core.remove(slot))
            } else {
                Found::Live(f(core, slot))
            }
        })?;
        Ok(match found {
            Some(Found::Live(r)) => Some(r),
            Some(Found::Expired(entry)) => {
                // Dropped here, outside the lock: `__del__` may run.
                drop(entry);
                None
            }
            None => None,
        })
    }

    /// Looks a key up, counting a hit or a miss and refreshing its recency.
    pub fn lookup(&self, key: &Bound<'_, PyAny>, hash: isize) -> PyResult<Option<Py<PyAny>>> {
        let py = key.py();
        let found = self.live_slot(key, hash, |core, slot| {
            core.touch(slot);
            core.counters.hits += 1;
            let entry = core.entry(slot);
            if let Some(counter) = &entry.hit_counter {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            entry.value.clone_ref(py)
        })?;
        if found.is_none() {
            self.core.lock().counters.misses += 1;
        }
        Ok(found)
    }

    pub fn contains(&self, key: &Bound<'_, PyAny>, hash: isize) -> PyResult<bool> {
        Ok(self.live_slot(key, hash, |_, _| ())?.is_some())
    }

    /// Stores a value.
    pub fn store(
        &self,
        key: &Bound<'_, PyAny>,
        hash: isize,
        value: &Bound<'_, PyAny>,
        mut stored: Stored,
    ) -> PyResult<()> {
        if stored.expires_at == 0 {
            stored.expires_at = deadline_after(self.bounds.default_ttl)?;
        }
        let mut stored = Some(stored);
        let replaced = self.with_slot(key, hash, |core, slot| {
            core.counters.sets += 1;
            core.replace(
                slot,
                value.clone().unbind(),
                stored.take().unwrap_or_default(),
            )
        })?;
        let mut garbage = Vec::new();
        {
            let mut core = self.core.lock();
            if let Some(stored) = stored {
                core.counters.sets += 1;
                core.insert(key.clone().unbind(), hash, value.clone().unbind(), stored);
            }
            core.evict_over(self.bounds.max_entries, self.bounds.max_bytes, &mut garbage);
        }
        drop(replaced);
        drop(garbage);
        Ok(())
    }

    pub fn remove(&self, key: &Bound<'_, PyAny>, hash: isize) -> PyResult<Option<Py<PyAny>>> {
        let entry = self.with_slot(key, hash, |core, slot| core.remove(slot))?;
        Ok(entry.map(|e| e.value))
    }

    /// Removes every entry for which `predicate(key)` holds; returns how many.
    /// The predicate runs without the lock (it is Python code).
    pub fn remove_where(
        &self,
        py: Python<'_>,
        mut predicate: impl FnMut(&Bound<'_, PyAny>) -> bool,
    ) -> usize {
        let keyed: Vec<(u32, u64, Py<PyAny>)> = {
            let core = self.core.lock();
            core.slots_lru_first()
                .into_iter()
                .map(|slot| {
                    let entry = core.entry(slot);
                    (slot, entry.stamp, entry.key.clone_ref(py))
                })
                .collect()
        };
        let doomed: Vec<(u32, u64)> = keyed
            .iter()
            .filter(|(_, _, key)| predicate(key.bind(py)))
            .map(|(slot, stamp, _)| (*slot, *stamp))
            .collect();
        let mut garbage = Vec::with_capacity(doomed.len());
        {
            let mut core = self.core.lock();
            for (slot, stamp) in doomed {
                if core.stamp_of(slot) == Some(stamp) {
                    garbage.push(core.remove(slot));
                }
            }
        }
        garbage.len()
    }

    pub fn clear(&self) {
        let nodes = self.core.lock().take_all();
        drop(nodes);
    }

    pub fn len(&self) -> usize {
        self.core.lock().len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn total_bytes(&self) -> usize {
        self.core.lock().bytes
    }

    pub fn counters(&self) -> LruCounters {
        self.core.lock().counters
    }

    pub fn reset_counters(&self) {
        self.core.lock().counters = LruCounters::default();
    }

    /// (key, value) pairs, least recently used first; expired entries omitted.
    pub fn items(&self, py: Python<'_>) -> Vec<(Py<PyAny>, Py<PyAny>)> {
        let now = now_ns();
        let core = self.core.lock();
        core.slots_lru_first()
            .into_iter()
            .map(|slot| core.entry(slot))
            .filter(|entry| entry.expires_at == 0 || entry.expires_at > now)
            .map(|entry| (entry.key.clone_ref(py), entry.value.clone_ref(py)))
            .collect()
    }

    /// Bytes an entry counts for when the LRU is bounded by bytes.
    pub fn estimate_size(&self, value: &Bound<'_, PyAny>) -> PyResult<usize> {
        if self.bounds.max_bytes == 0 {
            return Ok(0);
        }
        let sys = value.py().import("sys")?;
        sys.call_method1("getsizeof", (value,))?.extract()
    }
}

/// `a == b` with Python's semantics, through the C call that answers a
/// bool directly (no intermediate bool object, identity short-cut).
fn python_equal(a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) -> PyResult<bool> {
    // SAFETY: both are live objects and the GIL is held.
    match unsafe { pyo3::ffi::PyObject_RichCompareBool(a.as_ptr(), b.as_ptr(), pyo3::ffi::Py_EQ) } {
        -1 => Err(PyErr::fetch(a.py())),
        result => Ok(result == 1),
    }
}

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

    #[getter]
    fn max_bytes(&self) -> usize {
        self.lru.bounds.max_bytes
    }

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

    #[pyo3(signature = (key, *default))]
    fn pop(&self, key: &Bound<'_, PyAny>, default: &Bound<'_, PyTuple>) -> PyResult<Py<PyAny>> {
        if default.len() > 1 {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "pop expected at most 2 arguments",
            ));
        }
        match self.lru.remove(key, key.hash()?)? {
            Some(value) => Ok(value),
            None if default.len() == 1 => Ok(default.get_item(0)?.unbind()),
            None => Err(missing_key(key)),
        }
    }

    fn clear(&self) {
        self.lru.clear();
    }

    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.lru.items(py).into_iter().map(|(k, _)| k))
    }

    fn values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.lru.items(py).into_iter().map(|(_, v)| v))
    }

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

    /// Local counters: hits, misses, sets, evictions, expirations, size.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        lru_stats_dict(py, &self.lru)
    }

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
        let size = self.lru.estimate_size(value)?;
        let stored = Stored {
            size,
            expires_at,
            hit_counter: None,
        };
        self.lru.store(key, hash, value, stored)
    }
}

pub fn lru_stats_dict<'py>(py: Python<'py>, lru: &Lru) -> PyResult<Bound<'py, PyDict>> {
    let counters = lru.counters();
    let dict = PyDict::new(py);
    dict.set_item("entries", lru.len())?;
    dict.set_item("max_entries", lru.bounds.max_entries)?;
    dict.set_item("bytes", lru.total_bytes())?;
    dict.set_item("max_bytes", lru.bounds.max_bytes)?;
    dict.set_item("hits", counters.hits)?;
    dict.set_item("misses", counters.misses)?;
    dict.set_item("sets", counters.sets)?;
    dict.set_item("evictions", counters.evictions)?;
    dict.set_item("expirations", counters.expirations)?;
    Ok(dict)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyLru>()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyo3::types::PyString;

    fn lru(max_entries: usize, max_bytes: usize) -> Lru {
        Lru::new(Bounds {
            max_entries,
            max_bytes,
            default_ttl: None,
        })
        .unwrap()
    }

    fn put(lru: &Lru, py: Python<'_>, key: i64, size: usize, expires_at: u64) {
        let key = key.into_pyobject(py).unwrap().into_any();
        let value = PyString::new(py, "v").into_any();
        let stored = Stored {
            size,
            expires_at,
            hit_counter: None,
        };
        lru.store(&key, key.hash().unwrap(), &value, stored)
            .unwrap();
    }

    fn get(lru: &Lru, py: Python<'_>, key: i64) -> bool {
        let key = key.into_pyobject(py).unwrap().into_any();
        lru.lookup(&key, key.hash().unwrap()).unwrap().is_some()
    }

    fn keys(lru: &Lru, py: Python<'_>) -> Vec<i64> {
        lru.items(py)
            .into_iter()
            .map(|(k, _)| k.extract(py).unwrap())
            .collect()
    }

    #[test]
    fn evicts_the_least_recently_used() {
        Python::with_gil(|py| {
            let lru = lru(3, 0);
            for k in 1..=3 {
                put(&lru, py, k, 0, 0);
            }
            assert!(get(&lru, py, 1));
            put(&lru, py, 4, 0, 0);
            assert_eq!(keys(&lru, py), vec![3, 1, 4]);
            let counters = lru.counters();
            assert_eq!(
                (counters.hits, counters.evictions, counters.sets),
                (1, 1, 4)
            );
        });
    }

    #[test]
    fn byte_bound_and_slot_reuse() {
        Python::with_gil(|py| {
            let lru = lru(100, 250);
            for k in 0..10 {
                put(&lru, py, k, 100, 0);
            }
            assert_eq!(keys(&lru, py), vec![8, 9]);
            assert_eq!(lru.total_bytes(), 200);
            // Freed slots are reused: the slab does not grow past its peak.
            let peak = lru.lock().nodes.len();
            for k in 10..50 {
                put(&lru, py, k, 100, 0);
            }
            assert!(lru.lock().nodes.len() <= peak);
        });
    }

    #[test]
    fn expired_entries_are_misses() {
        Python::with_gil(|py| {
            let lru = lru(10, 0);
            put(&lru, py, 1, 0, now_ns()); // already due
            put(&lru, py, 2, 0, now_ns() + 60_000_000_000);
            assert!(!get(&lru, py, 1));
            assert!(get(&lru, py, 2));
            assert_eq!(lru.counters().expirations, 1);
            assert_eq!(lru.len(), 1);
        });
    }

    #[test]
    fn colliding_hashes_are_told_apart_by_equality() {
        Python::with_gil(|py| {
            // -1 and -2 share Python hash -2.
            let lru = lru(10, 0);
            put(&lru, py, -1, 0, 0);
            put(&lru, py, -2, 0, 0);
            assert_eq!(lru.len(), 2);
            assert!(get(&lru, py, -1) && get(&lru, py, -2));
            let minus_one = (-1i64).into_pyobject(py).unwrap().into_any();
            assert!(lru.remove(&minus_one, -2).unwrap().is_some());
            assert!(!get(&lru, py, -1) && get(&lru, py, -2));
        });
    }
}
