//! The thread-safe LRU and its locking rule: the mutex is never held
//! while Python code can run. Python's `__eq__` may release the GIL (or
//! re-enter this cache), so equality checks happen on candidates copied out
//! of the lock, and the slot is re-validated by its stamp afterwards. Keys
//! whose equality is the interpreter's own C code (tuples of str, int,
//! bytes, float, functions: nearly every cache key) are decided under the
//! lock in one pass (`equality`).
//! Reference drops (which can run `__del__`) are likewise deferred until
//! the lock is released. As a consequence a GIL holder never waits for this
//! lock while another GIL holder holds it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::{PyTraverseError, PyVisit};

use super::budget::{process_budget, MemoryBudget};
use super::core::{Core, Entry, Lookup, LruCounters, Stored, ENTRY_OVERHEAD};
use super::equality::sets_are_plain;
use super::held::{held_bytes, Reach};
use crate::clock::{deadline_after, now_ns};

/// Result of a key lookup under the lock.
enum Found<R> {
    Live(R),
    Expired(Entry),
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
    /// Shared with the budget, which evicts from every LRU drawing on it.
    core: Arc<Mutex<Core>>,
    budget: Arc<MemoryBudget>,
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
    /// An LRU drawing on the process's byte budget.
    pub fn new(bounds: Bounds) -> PyResult<Self> {
        Lru::with_budget(bounds, Arc::clone(process_budget()))
    }

    pub fn with_budget(bounds: Bounds, budget: Arc<MemoryBudget>) -> PyResult<Self> {
        if bounds.max_entries == 0 {
            return Err(PyValueError::new_err("LRU needs a positive count"));
        }
        deadline_after(bounds.default_ttl)?;
        let core = Arc::new(Mutex::new(Core::new(Arc::clone(&budget))));
        budget.join(&core);
        Ok(Lru {
            core,
            budget,
            bounds,
        })
    }

    /// Finds the live slot of `key` and runs `f` on it under the lock.
    fn with_slot<R>(
        &self,
        key: &Bound<'_, PyAny>,
        hash: isize,
        f: impl FnOnce(&mut Core, u32) -> R,
    ) -> PyResult<Option<R>> {
        // SAFETY: a live key and the GIL held; not under the lock.
        let sets_plain = unsafe { sets_are_plain(key.as_ptr(), 0) };
        self.with_slot_known(key, hash, sets_plain, f)
    }

    /// `with_slot`, told whether the key's frozensets are plain.
    fn with_slot_known<R>(
        &self,
        key: &Bound<'_, PyAny>,
        hash: isize,
        sets_plain: bool,
        f: impl FnOnce(&mut Core, u32) -> R,
    ) -> PyResult<Option<R>> {
        let py = key.py();
        let candidates = {
            let mut core = self.core.lock();
            match core.find_without_python(hash, key, sets_plain) {
                Lookup::Known(Some(slot)) => return Ok(Some(f(&mut core, slot))),
                Lookup::Known(None) => return Ok(None),
                Lookup::Unknown => core.candidates(py, hash),
            }
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
                // Every hit holds the GIL (the key is a Python object),
                // which serialises these: a load and a store, not a locked
                // add (a full barrier on x86, on every hit).
                counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            }
            entry.value.clone_ref(py)
        })?;
        if found.is_none() {
            self.core.lock().counters.misses += 1;
        }
        Ok(found)
    }

    /// A hit for the key `tuple(items)` (`hash`: that tuple's hash), known
    /// without building the tuple or running Python code, counted as
    /// `lookup` counts a hit. `None` is not a miss: absent, expired or
    /// undecidable here, the caller asks `lookup` with the tuple, which
    /// counts and decides.
    ///
    /// `marks`: None when the caller keeps no set of the keys it looks up;
    /// else the epoch (0: none) naming the set it records lookups in (Odoo
    /// 19's `_ormcache_lookups`), unique to that set while it lives: the
    /// hit says whether this entry was already found under the same epoch,
    /// so its key is known to be in the set without asking it, and marks
    /// it so. The stored key comes with the hit when the caller must ask.
    ///
    /// # Safety
    /// Every item is a live object and the GIL is held.
    pub unsafe fn hit_by_items(
        &self,
        py: Python<'_>,
        items: &[*mut ffi::PyObject],
        hash: isize,
        marks: Option<u64>,
    ) -> Option<ItemsHit> {
        // Walking the sets may run Python code (see `sets_are_plain`).
        let sets_plain = items.iter().all(|&item| sets_are_plain(item, 1));
        let mut core = self.core.lock();
        let Lookup::Known(Some(slot)) = core.find_items_without_python(hash, items, sets_plain)
        else {
            return None;
        };
        Self::hit_in(&mut core, py, slot, marks)
    }

    /// The hit `hit_by_items` found at `place` before, if that entry is
    /// still there (a stamp is never reused: the same stamp is the same
    /// key, its value whatever was stored last), counted and marked alike.
    pub fn hit_at(&self, py: Python<'_>, place: Place, marks: Option<u64>) -> Option<ItemsHit> {
        let mut core = self.core.lock();
        if core.stamp_of(place.slot) != Some(place.stamp) {
            return None;
        }
        Self::hit_in(&mut core, py, place.slot, marks)
    }

    /// `hit_by_items` or `hit_at`, as `probe` says.
    ///
    /// # Safety
    /// As `hit_by_items`: the items are live objects and the GIL is held.
    pub unsafe fn hit(
        &self,
        py: Python<'_>,
        probe: Probe<'_>,
        marks: Option<u64>,
    ) -> Option<ItemsHit> {
        match probe {
            Probe::Items(items, hash) => self.hit_by_items(py, items, hash, marks),
            Probe::At(place) => self.hit_at(py, place, marks),
        }
    }

    fn hit_in(core: &mut Core, py: Python<'_>, slot: u32, marks: Option<u64>) -> Option<ItemsHit> {
        if core.is_expired(slot) {
            return None;
        }
        core.touch(slot);
        core.counters.hits += 1;
        let entry = core.entry_mut(slot);
        if let Some(counter) = &entry.hit_counter {
            // As in `lookup`: the GIL serialises these.
            counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
        let epoch = marks.unwrap_or(0);
        let seen_in_epoch = epoch != 0 && entry.seen_in == epoch;
        if epoch != 0 {
            entry.seen_in = epoch;
        }
        let key = match marks {
            Some(_) if !seen_in_epoch => Some(entry.key.clone_ref(py)),
            _ => None,
        };
        Some(ItemsHit {
            value: entry.value.clone_ref(py),
            key,
            place: Place {
                slot,
                stamp: entry.stamp,
            },
        })
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
        if self.refuses(stored.size) {
            // Not kept; an older value of the key would now be stale.
            let stale = self.with_slot(key, hash, |core, slot| core.remove(slot))?;
            self.core.lock().counters.too_large += 1;
            self.budget.count_too_large();
            drop(stale);
            return Ok(());
        }
        let mut stored = Some(stored);
        // SAFETY: a live key and the GIL held; not under the lock.
        let sets_plain = unsafe { sets_are_plain(key.as_ptr(), 0) };
        let replaced = self.with_slot_known(key, hash, sets_plain, |core, slot| {
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
                let (key, value) = (key.clone().unbind(), value.clone().unbind());
                core.insert(key, hash, value, stored, sets_plain);
            }
            core.evict_over(self.bounds.max_entries, self.bounds.max_bytes, &mut garbage);
        }
        if self.budget.is_over() {
            self.budget.reclaim(&mut garbage);
        }
        drop(replaced);
        drop(garbage);
        self.budget.return_freed_memory(key.py());
        Ok(())
    }

    /// Whether a value of `size` bytes is larger than a bound: the LRU's
    /// own or the process's.
    fn refuses(&self, size: usize) -> bool {
        size > self.budget.max_bytes()
            || (self.bounds.max_bytes > 0 && size > self.bounds.max_bytes)
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
        let removed = garbage.len();
        drop(garbage);
        self.budget.return_freed_memory(py);
        removed
    }

    pub fn clear(&self, py: Python<'_>) {
        let nodes = self.core.lock().take_all();
        drop(nodes);
        self.budget.return_freed_memory(py);
    }

    /// Reports the keys and values held to the garbage collector: a value
    /// may hold the cache (through the object that owns it). Nothing while
    /// another thread holds the lock: they are then not reported, which
    /// only delays a collection.
    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self.core.try_lock() {
            Some(core) => core.traverse(visit),
            None => Ok(()),
        }
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

    /// Bytes an entry holds, as the byte bounds count it (see `held`).
    pub fn entry_size(key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> usize {
        ENTRY_OVERHEAD + held_bytes(key, Reach::PlainData) + held_bytes(value, Reach::References)
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

/// What `Lru::hit_by_items` found: the value; the stored key (equal to the
/// tuple of the items) when the caller must ask its set of lookups about
/// it (not found under the same epoch before); and where it was found.
pub struct ItemsHit {
    pub value: Py<PyAny>,
    pub key: Option<Py<PyAny>>,
    pub place: Place,
}

/// How a hit is looked for without the key tuple.
#[derive(Clone, Copy)]
pub enum Probe<'a> {
    /// By the key's items and the hash of their tuple (`Lru::hit_by_items`).
    Items(&'a [*mut ffi::PyObject], isize),
    /// Where an earlier hit of the same key was found (`Lru::hit_at`).
    At(Place),
}

/// Where a hit was found: the entry's slot and stamp.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Place {
    slot: u32,
    stamp: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyo3::types::{PyString, PyTuple};

    /// An LRU of its own budget (tests run in parallel, in one process).
    fn lru(max_entries: usize, max_bytes: usize) -> Lru {
        in_budget(
            max_entries,
            max_bytes,
            &Arc::new(MemoryBudget::new(1 << 30)),
        )
    }

    fn in_budget(max_entries: usize, max_bytes: usize, budget: &Arc<MemoryBudget>) -> Lru {
        let bounds = Bounds {
            max_entries,
            max_bytes,
            default_ttl: None,
        };
        Lru::with_budget(bounds, Arc::clone(budget)).unwrap()
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
    fn a_place_finds_its_entry_only_while_it_stands() {
        Python::attach(|py| {
            let lru = lru(2, 0);
            let item = |key: i64| PyTuple::new(py, [key]).unwrap().into_any();
            let put_tuple = |key: i64, value: &str| {
                let key = item(key);
                let value = PyString::new(py, value).into_any();
                lru.store(&key, key.hash().unwrap(), &value, Stored::default())
                    .unwrap();
            };
            let at = |place| lru.hit_at(py, place, Some(7));
            put_tuple(1, "one");
            let hit = hit_of_tuple(&lru, py, 1).expect("stored");
            assert!(
                hit.key.is_some(),
                "the caller's set is asked at the first hit"
            );
            let place = hit.place;
            let again = at(place).expect("still there");
            assert_eq!(again.value.extract::<String>(py).unwrap(), "one");
            assert!(
                again.key.is_none(),
                "found under the same epoch: no key needed"
            );
            put_tuple(1, "stored over");
            let again = at(place).expect("a value stored over it");
            assert_eq!(again.value.extract::<String>(py).unwrap(), "stored over");
            lru.remove(&item(1), item(1).hash().unwrap()).unwrap();
            put_tuple(2, "two"); // takes the freed slot
            assert!(at(place).is_none(), "another key in the slot");
            put_tuple(1, "back");
            let place = hit_of_tuple(&lru, py, 1).unwrap().place;
            put_tuple(3, "three"); // evicts 2, then 1 is the oldest
            put_tuple(4, "four");
            assert!(at(hit_of_tuple(&lru, py, 4).unwrap().place).is_some());
            assert!(at(place).is_none(), "evicted");
            let place = hit_of_tuple(&lru, py, 4).unwrap().place;
            lru.clear(py);
            assert!(at(place).is_none());
        });
    }

    /// The hit of the key `(key,)`, found by its items, and its place.
    fn hit_of_tuple(lru: &Lru, py: Python<'_>, key: i64) -> Option<ItemsHit> {
        let item = key.into_pyobject(py).unwrap().into_any();
        let hash = PyTuple::new(py, [key]).unwrap().hash().unwrap();
        // SAFETY: `item` is live; the GIL is held.
        unsafe { lru.hit(py, Probe::Items(&[item.as_ptr()], hash), Some(7)) }
    }

    #[test]
    fn an_expired_entry_is_not_found_at_its_place() {
        Python::attach(|py| {
            let lru = lru(4, 0);
            let key = PyTuple::new(py, [5]).unwrap().into_any();
            let value = PyString::new(py, "v").into_any();
            let stored = Stored {
                expires_at: now_ns() + 50_000_000,
                ..Stored::default()
            };
            lru.store(&key, key.hash().unwrap(), &value, stored)
                .unwrap();
            let place = hit_of_tuple(&lru, py, 5).expect("live").place;
            std::thread::sleep(std::time::Duration::from_millis(80));
            assert!(lru.hit_at(py, place, None).is_none());
        });
    }

    #[test]
    fn evicts_the_least_recently_used() {
        Python::attach(|py| {
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
        Python::attach(|py| {
            let lru = lru(100, 250);
            for k in 0..10 {
                put(&lru, py, k, 100, 0);
            }
            assert_eq!(keys(&lru, py), vec![8, 9]);
            assert_eq!(lru.total_bytes(), 200);
            // Freed slots are reused: the slab does not grow past its peak.
            let peak = lru.core.lock().slab_len();
            for k in 10..50 {
                put(&lru, py, k, 100, 0);
            }
            assert!(lru.core.lock().slab_len() <= peak);
        });
    }

    #[test]
    fn expired_entries_are_misses() {
        Python::attach(|py| {
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
        Python::attach(|py| {
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

    #[test]
    fn the_budget_evicts_the_least_recently_used_of_every_cache() {
        Python::attach(|py| {
            let budget = Arc::new(MemoryBudget::new(300));
            let (a, b) = (in_budget(10, 0, &budget), in_budget(10, 0, &budget));
            put(&a, py, 1, 100, 0);
            put(&b, py, 1, 100, 0);
            put(&a, py, 2, 100, 0);
            assert!(get(&a, py, 1)); // b's entry is now the oldest
            put(&b, py, 2, 100, 0);
            assert_eq!((keys(&a, py), keys(&b, py)), (vec![2, 1], vec![2]));
            put(&b, py, 3, 100, 0); // then a's 2, the oldest
            assert_eq!((keys(&a, py), keys(&b, py)), (vec![1], vec![2, 3]));
            assert_eq!(budget.held(), 300);
            let figures = budget.figures();
            assert_eq!((figures.byte_evictions, figures.caches), (2, 2));
            assert_eq!(a.counters().byte_evictions + b.counters().byte_evictions, 2);
        });
    }

    #[test]
    fn a_value_larger_than_a_bound_is_not_kept_nor_its_stale_copy() {
        Python::attach(|py| {
            let budget = Arc::new(MemoryBudget::new(1000));
            let (cache, own_bound) = (in_budget(10, 0, &budget), in_budget(10, 100, &budget));
            put(&cache, py, 1, 10, 0);
            put(&cache, py, 1, 1001, 0);
            put(&own_bound, py, 1, 101, 0);
            assert!(!get(&cache, py, 1) && !get(&own_bound, py, 1));
            assert_eq!(budget.figures().too_large, 2);
            assert_eq!((cache.counters().too_large, budget.held()), (1, 0));
        });
    }

    #[test]
    fn held_bytes_follow_every_change_back_to_zero() {
        Python::attach(|py| {
            let budget = Arc::new(MemoryBudget::new(1 << 20));
            let (a, b) = (in_budget(5, 0, &budget), in_budget(100, 0, &budget));
            for k in 0..20 {
                put(&a, py, k, 10 + k as usize, 0);
                put(&b, py, k, 7, 0);
                put(&b, py, k, 9, 0); // replaced
            }
            let one = 1i64.into_pyobject(py).unwrap().into_any();
            b.remove(&one, one.hash().unwrap()).unwrap();
            assert_eq!(budget.held(), a.total_bytes() + b.total_bytes());
            // Oldest first, from both: b's 0 to 14, then a's 15, b's 15, ...
            assert_eq!(budget.set_max_bytes(100).len(), 19);
            assert_eq!(
                (keys(&a, py), keys(&b, py)),
                (vec![18, 19], vec![17, 18, 19])
            );
            assert_eq!(budget.held(), (10 + 18) + (10 + 19) + 3 * 9);
            a.clear(py);
            drop(b);
            assert_eq!((budget.held(), budget.figures().caches), (0, 1));
        });
    }
}
