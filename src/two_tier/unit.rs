//! A unit of work: the shared-tier writes of one Odoo request or cron job.
//!
//! Values computed inside a transaction may reflect uncommitted data, so
//! they reach Redis only once it committed, and never when it rolled back or
//! invalidated their cache. A cache's gate hands the current thread's
//! `UnitOfWork` to the engine, which collects the sealed entries in it; the
//! caller then commits or discards them per cache. Payloads stay in Rust
//! from encoding to the write queue.

use std::collections::HashMap;

use parking_lot::Mutex;
use pyo3::prelude::*;

use super::flight::HeldLock;
use crate::redis::writer::Command;
use crate::redis::RedisClient;
use crate::two_tier::TwoTierCache;

/// Writes kept per cache and unit: a long cron job that computes more
/// only shares the first ones (the rest are counted as overflow).
pub const MAX_PENDING_WRITES: usize = 2000;

#[derive(Default)]
struct UnitState {
    /// Sealed `SET` commands per cache name.
    pending: HashMap<String, Vec<Command>>,
    /// The namespace of each cache when the unit began; a cache missing
    /// here began no unit, and none of its writes is ever sent.
    namespaces: HashMap<String, Vec<u8>>,
    overflow: u64,
    /// Single-flight locks led for values waiting here, per cache name:
    /// released after the cache's writes, or at once when they are dropped
    /// (waiters then compute instead of waiting out the lease).
    locks: HashMap<String, Vec<(Py<RedisClient>, HeldLock)>>,
}

/// What happened to the writes of one cache when its unit ended.
#[derive(Clone, Copy, Default)]
pub struct Outcome {
    pub queued: u64,
    /// Dropped: the queue was full or Redis unavailable.
    pub dropped: u64,
    /// Dropped: the cache's namespace moved while the unit ran.
    pub raced: u64,
}

/// The shared-tier writes of one request or job, sent only once it commits
/// (at most 2000 waiting per cache); a cache's gate returns it.
#[pyclass(module = "ormcache_redis._native", frozen)]
pub struct UnitOfWork {
    state: Mutex<UnitState>,
}

impl UnitOfWork {
    /// Keeps one sealed write; false when the unit is full for this cache.
    pub fn defer(&self, cache_name: &str, command: Command) -> bool {
        let mut state = self.state.lock();
        let pending = state.pending.entry(cache_name.to_string()).or_default();
        if pending.len() >= MAX_PENDING_WRITES {
            state.overflow += 1;
            return false;
        }
        pending.push(command);
        true
    }

    /// Keeps the lock of a value deferred here until the value is sent or dropped.
    pub(super) fn defer_release(&self, cache_name: &str, client: Py<RedisClient>, lock: HeldLock) {
        let mut state = self.state.lock();
        state
            .locks
            .entry(cache_name.to_string())
            .or_default()
            .push((client, lock));
    }

    /// Releases the locks of `cache_name`'s values (every cache's: None).
    fn release_locks(&self, cache_name: Option<&str>) {
        let locks: Vec<_> = {
            let mut state = self.state.lock();
            match cache_name {
                Some(name) => state.locks.remove(name).unwrap_or_default(),
                None => state.locks.drain().flat_map(|(_, locks)| locks).collect(),
            }
        };
        for (client, lock) in locks {
            lock.release(client.get());
        }
    }

    fn take(&self, cache_name: &str) -> (Vec<Command>, Option<Vec<u8>>) {
        let mut state = self.state.lock();
        let writes = state.pending.remove(cache_name).unwrap_or_default();
        (writes, state.namespaces.get(cache_name).cloned())
    }
}

#[pymethods]
impl UnitOfWork {
    /// A unit beginning now over `caches`: their namespaces are remembered,
    /// so values computed from an older snapshot are never sent under a
    /// newer namespace. Without caches, nothing of it is ever sent.
    #[new]
    #[pyo3(signature = (caches = None))]
    fn py_new(caches: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let mut state = UnitState::default();
        if let Some(caches) = caches {
            for cache in caches.try_iter()? {
                let cache = cache?;
                let cache = cache.cast::<TwoTierCache>()?.get();
                state
                    .namespaces
                    .insert(cache.cache_name().to_string(), cache.namespace_now());
            }
        }
        Ok(UnitOfWork {
            state: Mutex::new(state),
        })
    }

    /// Writes waiting, per cache name.
    fn pending(&self) -> HashMap<String, usize> {
        self.state
            .lock()
            .pending
            .iter()
            .map(|(name, writes)| (name.clone(), writes.len()))
            .collect()
    }

    /// Writes refused because a cache had `MAX_PENDING_WRITES` waiting.
    #[getter]
    fn overflow(&self) -> u64 {
        self.state.lock().overflow
    }

    /// Drops the cache's waiting writes (its transaction invalidated it, or
    /// rolled back); returns how many.
    fn discard(&self, cache_name: &str) -> usize {
        let dropped = self.take(cache_name).0.len();
        self.release_locks(Some(cache_name));
        dropped
    }

    /// Drops every waiting write; returns how many.
    fn discard_all(&self) -> usize {
        let dropped = {
            let mut state = self.state.lock();
            state.pending.drain().map(|(_, writes)| writes.len()).sum()
        };
        self.release_locks(None);
        dropped
    }

    /// Sends the cache's waiting writes to its write queue, unless its
    /// namespace moved since the unit began (another thread of this
    /// process committed a change of it: values computed from the older
    /// snapshot may carry the newer namespace). Returns
    /// `(queued, dropped, raced)`.
    fn commit(&self, cache: &Bound<'_, TwoTierCache>) -> (u64, u64, u64) {
        let cache = cache.get();
        let (writes, began_in) = self.take(cache.cache_name());
        if writes.is_empty() {
            self.release_locks(Some(cache.cache_name()));
            return (0, 0, 0);
        }
        let outcome =
            if began_in.as_deref() == Some(cache.namespace_now().as_slice()) && cache.is_shared() {
                cache.send_committed(writes)
            } else {
                Outcome {
                    raced: writes.len() as u64,
                    ..Outcome::default()
                }
            };
        // After the writes, in the same queue.
        self.release_locks(Some(cache.cache_name()));
        (outcome.queued, outcome.dropped, outcome.raced)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<UnitOfWork>()?;
    Ok(())
}
