//! The two-tier cache: L1 (this process's LRU) in front of L2 (Redis,
//! shared by every worker and server).
//!
//! Lookup: L1, then Redis when this access may be shared, else `KeyError`.
//! Store: L1, plus a queued Redis write when the value is encodable.
//!
//! How entries are named and framed in Redis: see `entry`.

mod counters;
mod flight;
mod follow;
mod generations;
mod lease;
mod policy;
mod reports;
mod shared_entries;
mod shared_generations;
mod tiers;
pub mod unit;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use pyo3::{PyTraverseError, PyVisit};

use crate::codec::Codec;
use crate::lru::{lru_stats_dict, Bounds, Lru, PyLru, L1_LOOKUP_LABELS};
use crate::naming::{key_method, method_name};
use crate::redis::RedisClient;
use crate::settings::options;
use crate::stats::LatencyHistogram;
use counters::{Methods, SharedCounters};
use flight::PendingComputations;
use follow::Follower;
use generations::Generations;
use policy::{
    checked_interval, checked_secret, flight_settings, lowercase, method_name_arg, validate_ttl,
    Settings,
};
use reports::RateLimitedLog;

/// L1 (this process's LRU) in front of L2 (Redis, shared by every process).
///
/// Lookup: L1, then (when shared and Redis healthy) Redis, else KeyError.
/// Store: L1, plus a queued Redis write when the value is encodable.
/// `gate` (optional) is called on every L2 access: False/None keeps it
/// local, True reads and writes Redis now, a UnitOfWork reads Redis and
/// holds the writes until the caller commits it.
#[pyclass(module = "ormcache_redis._native", name = "TwoTierCache", extends = PyLru, frozen)]
pub struct TwoTierCache {
    name: String,
    client: Option<Py<RedisClient>>,
    codec: Py<Codec>,
    gate: RwLock<Option<Py<PyAny>>>,
    settings: RwLock<Settings>,
    methods: Mutex<Methods>,
    /// Generation tokens of this namespace's methods, as last read.
    generations: Mutex<Generations>,
    /// The client's outage count when the known tokens were read.
    tokens_outages: AtomicU64,
    /// The tokens in Redis at the last `sync_generations`.
    synced_generations: Mutex<HashMap<String, u64>>,
    /// The owner syncs at the start of every unit of work (the addon does,
    /// at Odoo's check_signaling): a token this process knows is then as
    /// fresh as its L1 copies, and a shared read needs no HGET of it.
    generations_synced: AtomicBool,
    /// When the generations hash's expiry was last pushed back.
    generations_refreshed: Mutex<Option<Instant>>,
    /// Methods whose unshareable keys were already reported.
    warned_methods: Mutex<HashSet<String>>,
    /// Methods whose unencodable values were already reported.
    warned_values: Mutex<HashSet<String>>,
    forged_log: Mutex<RateLimitedLog>,
    /// Computations started after a miss (see `flight`).
    pending: Mutex<PendingComputations>,
    /// Clears made elsewhere, for an owner that does not sync (see `follow`).
    follower: Option<Follower>,
    counters: SharedCounters,
    latency: LatencyHistogram,
}

impl TwoTierCache {
    pub fn cache_name(&self) -> &str {
        &self.name
    }

    pub fn namespace_now(&self) -> Vec<u8> {
        self.settings.read().namespace.clone()
    }

    pub fn is_shared(&self) -> bool {
        self.settings.read().shared
    }
}

#[pymethods]
impl TwoTierCache {
    #[new]
    #[pyo3(signature = (
        name, count, *, client, codec, namespace = None, prefix = options::PREFIX.default,
        hash_tag = None, ttl = options::EXPIRE.default as i64,
        local_methods = None, secret_markers = None, gate = None, max_bytes = 0, secret = None,
        single_flight_after = Some(0.02), single_flight_wait = 5.0, follow_clears = Some(0.025)
    ))]
    #[allow(clippy::too_many_arguments)]
    fn py_new(
        name: String,
        count: i64,
        client: Option<Py<RedisClient>>,
        codec: Py<Codec>,
        namespace: Option<Vec<u8>>,
        prefix: &str,
        hash_tag: Option<String>,
        ttl: i64,
        local_methods: Option<HashSet<String>>,
        secret_markers: Option<Vec<String>>,
        gate: Option<Py<PyAny>>,
        max_bytes: i64,
        secret: Option<&Bound<'_, PyAny>>,
        single_flight_after: Option<f64>,
        single_flight_wait: f64,
        follow_clears: Option<f64>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let lru = PyLru {
            lru: Lru::new(Bounds::from_args(count, max_bytes, None)?)?,
        };
        let secret = secret.map(checked_secret).transpose()?;
        let settings = Settings::new(
            namespace.unwrap_or_default(),
            prefix,
            policy::checked_hash_tag(hash_tag)?,
            validate_ttl(ttl)?,
            local_methods.unwrap_or_default(),
            lowercase(secret_markers.unwrap_or_default()),
            secret.as_deref(),
            flight_settings(single_flight_after, single_flight_wait)?,
        );
        let follower = match (&client, follow_clears) {
            (Some(_), Some(seconds)) => Some(Follower::new(
                checked_interval("follow_clears", seconds)?,
                &settings.generations_key,
            )),
            _ => None,
        };
        let this = TwoTierCache {
            name,
            client,
            codec,
            gate: RwLock::new(gate),
            settings: RwLock::new(settings),
            methods: Mutex::new(HashMap::new()),
            generations: Mutex::new(HashMap::new()),
            tokens_outages: AtomicU64::new(0),
            synced_generations: Mutex::new(HashMap::new()),
            generations_synced: AtomicBool::new(false),
            generations_refreshed: Mutex::new(None),
            warned_methods: Mutex::new(HashSet::new()),
            warned_values: Mutex::new(HashSet::new()),
            forged_log: Mutex::new(RateLimitedLog::new(Duration::from_secs(60))),
            pending: Mutex::new(HashMap::new()),
            follower,
            counters: SharedCounters::default(),
            latency: LatencyHistogram::default(),
        };
        Ok(PyClassInitializer::from(lru).add_subclass(this))
    }

    /// The cache's name (`default`, `stable`, ...).
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Part of every Redis key (database, registry, generation); changing it
    /// is the O(1) clear of the shared tier.
    #[getter]
    fn get_namespace<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.settings.read().namespace)
    }

    #[setter]
    fn set_namespace(&self, namespace: Vec<u8>) {
        let mut settings = self.settings.write();
        if settings.namespace != namespace {
            settings.set_namespace(namespace);
            if let Some(follower) = &self.follower {
                follower.set_generations_key(&settings.generations_key);
            }
            // Generations belong to a namespace.
            self.generations.lock().clear();
            self.synced_generations.lock().clear();
        }
    }

    /// Master switch of the shared tier for this cache.
    #[getter]
    fn get_shared(&self) -> bool {
        self.settings.read().shared
    }

    #[setter]
    fn set_shared(&self, shared: bool) {
        self.settings.write().shared = shared;
    }

    /// Seconds an entry lives in Redis.
    #[getter]
    fn get_ttl(&self) -> u64 {
        self.settings.read().ttl
    }

    #[setter]
    fn set_ttl(&self, ttl: i64) -> PyResult<()> {
        self.settings.write().ttl = validate_ttl(ttl)?;
        Ok(())
    }

    /// Prefix of every Redis key of this cache.
    #[getter]
    fn get_prefix(&self) -> String {
        self.settings.read().prefix.clone()
    }

    /// Qualified names (`module.Class.method`) whose entries never leave the
    /// process, sorted.
    #[getter]
    fn get_hash_tag(&self) -> Option<String> {
        self.settings.read().hash_tag.clone()
    }

    /// The Redis hash of this namespace's method generations.
    #[getter]
    fn get_generations_key<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.settings.read().generations_key)
    }

    #[getter]
    fn get_local_methods(&self) -> Vec<String> {
        let mut names: Vec<String> = self.settings.read().local_methods.iter().cloned().collect();
        names.sort();
        names
    }

    #[setter]
    fn set_local_methods(&self, names: HashSet<String>) {
        self.settings.write().local_methods = names;
    }

    /// Lower-case fragments: a key whose string argument contains one stays
    /// local.
    #[getter]
    fn get_secret_markers(&self) -> Vec<String> {
        self.settings.read().secret_markers.clone()
    }

    #[setter]
    fn set_secret_markers(&self, markers: Vec<String>) {
        self.settings.write().secret_markers = lowercase(markers);
    }

    /// Whether entries are authenticated with a secret (else: checked for
    /// corruption only).
    #[getter]
    fn authenticated(&self) -> bool {
        self.settings.read().authenticated
    }

    /// Sets the secret that authenticates this cache's entries (str or
    /// bytes); every server sharing the entries must use the same one.
    #[setter]
    fn set_secret(&self, secret: &Bound<'_, PyAny>) -> PyResult<()> {
        let secret = checked_secret(secret)?;
        self.settings.write().set_secret(Some(&secret));
        Ok(())
    }

    /// Called on every L2 access: False/None (local), True, or a UnitOfWork.
    #[getter]
    fn get_gate(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.gate.read().as_ref().map(|g| g.clone_ref(py))
    }

    #[setter]
    fn set_gate(&self, gate: Option<Py<PyAny>>) {
        *self.gate.write() = gate;
    }

    /// The entries are the LRU's to report; the gate is usually a closure
    /// over the object that holds this cache (the addon's shared tier).
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.client)?;
        visit.call(&self.codec)?;
        match self.gate.try_read() {
            Some(gate) => visit.call(gate.as_ref()),
            None => Ok(()),
        }
    }

    /// Breaks the cycles through the gate (the collector's clear).
    fn __clear__(&self) {
        let gate = self.gate.try_write().and_then(|mut gate| gate.take());
        drop(gate);
    }

    /// The Redis client, None for an L1-only cache.
    #[getter]
    fn client(&self, py: Python<'_>) -> Option<Py<RedisClient>> {
        self.client.as_ref().map(|c| c.clone_ref(py))
    }

    fn __getitem__(slf: &Bound<'_, Self>, key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        TwoTierCache::lookup(slf, key)?.ok_or_else(|| PyKeyError::new_err(key.clone().unbind()))
    }

    fn __setitem__(
        slf: &Bound<'_, Self>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        TwoTierCache::store(slf, key, value, None)
    }

    /// Stores with a TTL in seconds for both tiers (None: the cache's TTL in Redis).
    #[pyo3(signature = (key, value, ttl = None))]
    fn set(
        slf: &Bound<'_, Self>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: Option<f64>,
    ) -> PyResult<()> {
        TwoTierCache::store(slf, key, value, ttl)
    }

    /// The value from either tier, or `default`.
    #[pyo3(signature = (key, default = None))]
    fn get(
        slf: &Bound<'_, Self>,
        key: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        Ok(TwoTierCache::lookup(slf, key)?
            .unwrap_or_else(|| default.unwrap_or_else(|| slf.py().None())))
    }

    /// Drops the method's entries from L1 only.
    fn evict_method(slf: &Bound<'_, Self>, method: &Bound<'_, PyAny>) -> PyResult<usize> {
        let name = method_name_arg(method)?;
        let lru = &slf.as_super().get().lru;
        Ok(lru.remove_where(slf.py(), |key| {
            key_method(key).and_then(|m| method_name(&m)).as_deref() == Some(name.as_str())
        }))
    }

    /// Drops the method's entries here and gives it a fresh random
    /// generation token in Redis, so no process reads its old shared
    /// entries again. `with_commands` run in the same MULTI/EXEC: a reader
    /// sees both or neither (the addon moves its methods version with it).
    #[pyo3(signature = (method, *, with_commands = None))]
    fn clear_method(
        slf: &Bound<'_, Self>,
        method: &Bound<'_, PyAny>,
        with_commands: Option<Vec<Vec<Vec<u8>>>>,
    ) -> PyResult<usize> {
        let py = slf.py();
        let dropped = TwoTierCache::evict_method(slf, method)?;
        let this = slf.get();
        this.publish_clear(
            py,
            method_name_arg(method)?,
            with_commands.unwrap_or_default(),
        )?;
        Ok(dropped)
    }

    /// Per-method generation tokens stored in Redis for the current
    /// namespace (tokens that are not numbers are left out).
    fn method_generations(&self, py: Python<'_>) -> PyResult<HashMap<String, u64>> {
        self.read_generations(py)
    }

    /// Drops this process's copies of every method cleared by another
    /// process since the last sync: its token in Redis changed or vanished
    /// (evicted, flushed), or differs from the token this process computed
    /// its copies under. Returns the methods dropped; raises
    /// `RedisUnavailable` when Redis cannot tell (the caller then drops
    /// whatever a clear could have targeted).
    fn sync_generations(slf: &Bound<'_, Self>) -> PyResult<Vec<String>> {
        let this = slf.get();
        let tokens = this.read_generations(slf.py())?;
        let stale = generations::sync(
            tokens,
            &mut this.synced_generations.lock(),
            &mut this.generations.lock(),
        );
        this.generations_synced.store(true, Ordering::Relaxed);
        for name in &stale {
            TwoTierCache::evict_method(slf, &PyString::new(slf.py(), name))?;
        }
        Ok(stale)
    }

    /// The owner could not sync at the start of a unit of work: until the
    /// next `sync_generations`, every shared read asks Redis for the
    /// method's token along with the entry.
    fn mark_unsynced(&self) {
        self.generations_synced.store(false, Ordering::Relaxed);
    }

    /// Counters of both tiers, per method too (see the README's stats).
    fn stats<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyDict>> {
        let py = slf.py();
        let this = slf.get();
        let lru = &slf.as_super().get().lru;
        let dict = lru_stats_dict(py, lru, L1_LOOKUP_LABELS)?;
        dict.set_item("name", &this.name)?;
        this.put_figures(&dict)?;
        // Lookups that returned a value, from either tier.
        let l2_hits = this.counters.l2_hits.load(Ordering::Relaxed);
        dict.set_item("hits", lru.counters().hits + l2_hits)?;
        dict.set_item("shared", this.settings.read().shared)?;
        dict.set_item(
            "redis_healthy",
            this.client.as_ref().map(|c| c.get().pool().looks_healthy()),
        )?;
        dict.set_item("methods", this.method_figures(py)?)?;
        Ok(dict)
    }

    /// Zeroes every counter of both tiers.
    fn reset_stats(slf: &Bound<'_, Self>) {
        slf.as_super().get().lru.reset_counters();
        slf.get().reset_counters();
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        let lru = &slf.as_super().get().lru;
        format!(
            "<TwoTierCache {:?} {} of {} entries>",
            slf.get().name,
            lru.len(),
            lru.bounds.max_entries
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<TwoTierCache>()?;
    flight::register(m)?;
    unit::register(m)?;
    Ok(())
}
