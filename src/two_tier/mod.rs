//! The two-tier cache: L1 (this process's LRU) in front of L2 (Redis,
//! shared by every worker and server).
//!
//! Lookup: L1, then Redis when this access may be shared, else `KeyError`.
//! Store: L1, plus a queued Redis write when the value is encodable.
//!
//! How entries are named and framed in Redis: see `entry`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};

use crate::codec::Codec;
use crate::crypto::{self, Mac};
use crate::entry::{self, Rejection};
use crate::keys::{canonical_key, key_digest};
use crate::lru::{deadline_after, lru_stats_dict, Bounds, Lru, PyLru, Stored};
use crate::naming::{key_method, method_name};
use crate::redis::writer::Command;
use crate::redis::{call_error_to_py, RedisClient};
use crate::stats::LatencyHistogram;
pub mod unit;

use unit::{Outcome, UnitOfWork};

/// What the gate allows for one access of the shared tier.
enum Access {
    Local,
    Shared,
    /// Read Redis; keep writes in this unit of work until it commits.
    Deferred(Py<UnitOfWork>),
}

/// The outcome of one read of the shared tier.
enum SharedRead {
    /// Not asked (local access, unshareable key, no client).
    Skipped,
    /// Redis failed or the circuit is open.
    Failed,
    Absent(Duration),
    /// Something was stored but it is not a valid entry for this key now.
    Rejected(Duration),
    /// A stored value failed authentication: written without the key.
    Forged(Duration),
    Found(Py<PyAny>, usize, Duration),
}

/// Mutable settings, changed rarely (registry reload, cache clear).
struct Settings {
    namespace: Vec<u8>,
    /// The Redis hash of the namespace's method generations.
    generations_key: Vec<u8>,
    prefix: String,
    ttl: u64,
    shared: bool,
    local_methods: HashSet<String>,
    /// Lower-case fragments that keep a key local when one of its string
    /// arguments contains them (`_get_param('database.secret')`).
    secret_markers: Vec<String>,
    /// Authenticates entries; keyed by the caller's secret.
    mac: Mac,
    /// Whether `mac` is keyed by a real secret (else: integrity only).
    authenticated: bool,
}

/// The key of a cache without a secret: detects corruption, not forgery.
fn entry_mac(secret: Option<&[u8]>) -> Mac {
    Mac::new(&crypto::derive_key(
        secret.unwrap_or_default(),
        "cache-entry",
    ))
}

/// What this process knows of one method's generation in Redis.
#[derive(Default)]
struct MethodGeneration {
    /// The token last read or written; stamped on this process's writes.
    current: Option<u64>,
    /// Tokens seen and then replaced: random tokens are never reused, so
    /// one coming back means someone rolled the bookkeeping back to make
    /// old entries valid again.
    retired: Vec<u64>,
}

/// Retired tokens remembered per method.
const RETIRED_TOKENS: usize = 16;

impl MethodGeneration {
    fn forget(&mut self) {
        if let Some(previous) = self.current.take() {
            self.retire(previous);
        }
    }

    fn retire(&mut self, token: u64) {
        if self.retired.len() == RETIRED_TOKENS {
            self.retired.remove(0);
        }
        self.retired.push(token);
    }

    fn adopt(&mut self, token: u64) {
        if let Some(previous) = self.current.replace(token) {
            if previous != token {
                self.retire(previous);
            }
        }
    }
}

#[derive(Default)]
struct MethodCounters {
    /// Lookups whose key could not be hashed (Odoo counts them as `err`).
    errors: u64,
    redis_errors: u64,
    rejected_entries: u64,
    forged_entries: u64,
    l2_hits: u64,
    misses: u64,
    local_only: u64,
    bytes_read: u64,
    bytes_written: u64,
}

struct MethodEntry {
    /// Kept alive so its address cannot be reused by another function.
    func: Py<PyAny>,
    /// Carried by this method's L1 entries: an L1 hit costs one atomic add.
    l1_hits: Arc<AtomicU64>,
    counters: MethodCounters,
    redis_latency: LatencyHistogram,
}

#[derive(Default)]
struct SharedCounters {
    l2_hits: AtomicU64,
    l2_misses: AtomicU64,
    l2_errors: AtomicU64,
    l2_skipped: AtomicU64,
    gated: AtomicU64,
    rejected_entries: AtomicU64,
    forged_entries: AtomicU64,
    unencodable_values: AtomicU64,
    unencodable_keys: AtomicU64,
    secret_keys: AtomicU64,
    writes_queued: AtomicU64,
    writes_deferred: AtomicU64,
    writes_dropped: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
}

fn method_name_arg(method: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(name) = method.extract::<String>() {
        return Ok(name);
    }
    method_name(method)
        .ok_or_else(|| PyValueError::new_err("expected a function or its 'module.qualname' string"))
}

/// Whether a string argument of the key (after the model and the method)
/// contains one of the markers, case-insensitively.
fn names_a_secret(key: &Bound<'_, PyAny>, markers: &[String]) -> bool {
    let Ok(tuple) = key.downcast::<PyTuple>() else {
        return false;
    };
    tuple.iter().skip(2).any(|item| {
        item.downcast::<PyString>()
            .ok()
            .and_then(|text| text.to_str().ok().map(str::to_lowercase))
            .is_some_and(|text| markers.iter().any(|marker| text.contains(marker.as_str())))
    })
}

/// The Redis hash holding the per-method generation tokens of a namespace.
fn generations_key(prefix: &str, namespace: &[u8]) -> Vec<u8> {
    let digest = key_digest(namespace, b"method-generations");
    entry::redis_key(prefix, entry::GENERATIONS, &digest)
}

/// The generation token of a method after its bookkeeping was missing
/// (first use, evicted, flushed, lost in a failover) or rolled back: a
/// fresh random one, never an old one. HSETNX keeps the token a concurrent
/// process may have just created; a rolled-back token is overwritten.
fn fresh_token(
    con: &mut impl redis::ConnectionLike,
    generations_key: &[u8],
    method_name: &str,
    overwrite: bool,
    bookkeeping_ttl: u64,
) -> redis::RedisResult<u64> {
    let mut pipe = redis::pipe();
    pipe.cmd(if overwrite { "HSET" } else { "HSETNX" })
        .arg(generations_key)
        .arg(method_name)
        .arg(entry::new_token())
        .ignore()
        .cmd("HGET")
        .arg(generations_key)
        .arg(method_name)
        .cmd("EXPIRE")
        .arg(generations_key)
        .arg(bookkeeping_ttl)
        .ignore();
    let (token,) = pipe.query::<(u64,)>(con)?;
    Ok(token)
}

/// Logs through Python's `logging` (logger `ormcache_redis.cache`).
fn log_warning(py: Python<'_>, message: String) {
    let log = || -> PyResult<()> {
        py.import("logging")?
            .call_method1("getLogger", ("ormcache_redis.cache",))?
            .call_method1("warning", (message,))?;
        Ok(())
    };
    if let Err(log_error) = log() {
        log_error.write_unraisable(py, None);
    }
}

/// Counts events and lets one log line through per interval.
struct RateLimitedLog {
    interval: Duration,
    last: Option<Instant>,
    unreported: u64,
}

impl RateLimitedLog {
    fn new(interval: Duration) -> Self {
        RateLimitedLog {
            interval,
            last: None,
            unreported: 0,
        }
    }

    /// Notes one event; returns how many to report when a line is due.
    fn note(&mut self, now: Instant) -> Option<u64> {
        self.unreported += 1;
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < self.interval)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unreported))
    }
}

/// A cache without a secret says so once per process.
static NO_SECRET_WARNING: std::sync::Once = std::sync::Once::new();

/// One shared-tier address: everything needed to read or write an entry.
struct Address {
    digest: [u8; 32],
    redis_key: Vec<u8>,
    method_name: Option<String>,
}

#[pyclass(module = "ormcache_redis._native", name = "TwoTierCache", extends = PyLru, frozen)]
pub struct TwoTierCache {
    name: String,
    client: Option<Py<RedisClient>>,
    codec: Py<Codec>,
    gate: RwLock<Option<Py<PyAny>>>,
    settings: RwLock<Settings>,
    methods: Mutex<HashMap<usize, MethodEntry>>,
    /// Generation tokens of this namespace's methods, as last read.
    generations: Mutex<HashMap<String, MethodGeneration>>,
    /// The client's outage count when the known tokens were read.
    tokens_outages: AtomicU64,
    /// The tokens in Redis at the last `sync_generations`.
    synced_generations: Mutex<HashMap<String, u64>>,
    /// When the generations hash's expiry was last pushed back.
    generations_refreshed: Mutex<Option<Instant>>,
    /// Methods whose unshareable keys were already reported.
    warned_methods: Mutex<HashSet<String>>,
    /// Methods whose unencodable values were already reported.
    warned_values: Mutex<HashSet<String>>,
    forged_log: Mutex<RateLimitedLog>,
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

    /// Queues the writes of a committed unit of work.
    pub fn send_committed(&self, writes: Vec<Command>) -> Outcome {
        let mut outcome = Outcome::default();
        let Some(client) = &self.client else {
            outcome.dropped = writes.len() as u64;
            return outcome;
        };
        for command in writes {
            if client.get().enqueue_command(command) {
                outcome.queued += 1;
            } else {
                outcome.dropped += 1;
            }
        }
        self.counters
            .writes_queued
            .fetch_add(outcome.queued, Ordering::Relaxed);
        self.counters
            .writes_dropped
            .fetch_add(outcome.dropped, Ordering::Relaxed);
        outcome
    }

    /// Updates the method's counters; returns its L1 hit counter.
    fn count_method(
        &self,
        method: Option<&Bound<'_, PyAny>>,
        update: impl FnOnce(&mut MethodCounters),
    ) -> Option<Arc<AtomicU64>> {
        let method = method?;
        let mut methods = self.methods.lock();
        let entry = methods
            .entry(method.as_ptr() as usize)
            .or_insert_with(|| MethodEntry {
                func: method.clone().unbind(),
                l1_hits: Arc::default(),
                counters: MethodCounters::default(),
                redis_latency: LatencyHistogram::default(),
            });
        update(&mut entry.counters);
        Some(Arc::clone(&entry.l1_hits))
    }

    fn record_method_latency(&self, method: Option<&Bound<'_, PyAny>>, elapsed: Duration) {
        if let Some(method) = method {
            if let Some(entry) = self.methods.lock().get(&(method.as_ptr() as usize)) {
                entry.redis_latency.record(elapsed);
            }
        }
    }

    fn access(&self, py: Python<'_>) -> PyResult<Access> {
        if !self.settings.read().shared {
            return Ok(Access::Local);
        }
        let Some(client) = &self.client else {
            return Ok(Access::Local);
        };
        if !client.get().pool().would_attempt() {
            // The breaker is open: do not even build the key.
            self.counters.l2_skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(Access::Local);
        }
        let gate = self.gate.read().as_ref().map(|g| g.clone_ref(py));
        let Some(gate) = gate else {
            return Ok(Access::Shared);
        };
        let verdict = gate.bind(py).call0()?;
        if let Ok(unit) = verdict.downcast::<UnitOfWork>() {
            return Ok(Access::Deferred(unit.clone().unbind()));
        }
        if verdict.is_truthy()? {
            Ok(Access::Shared)
        } else {
            self.counters.gated.fetch_add(1, Ordering::Relaxed);
            Ok(Access::Local)
        }
    }

    /// Computes where `key` lives in Redis; None when it must stay local.
    fn address(
        &self,
        key: &Bound<'_, PyAny>,
        method: Option<&Bound<'_, PyAny>>,
    ) -> Option<Address> {
        let method_name = method.and_then(|m| crate::naming::method_name(m));
        let settings = self.settings.read();
        if let Some(name) = &method_name {
            if settings.local_methods.contains(name) {
                return None;
            }
        }
        if !settings.secret_markers.is_empty() && names_a_secret(key, &settings.secret_markers) {
            self.counters.secret_keys.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let mut canonical = Vec::with_capacity(64);
        if let Err(err) = canonical_key(key, &mut canonical) {
            self.counters
                .unencodable_keys
                .fetch_add(1, Ordering::Relaxed);
            drop(settings);
            self.warn_once(
                key.py(),
                &self.warned_methods,
                "keys",
                method_name.as_deref(),
                &err,
            );
            return None;
        }
        let digest = key_digest(&settings.namespace, &canonical);
        let redis_key = entry::redis_key(&settings.prefix, entry::DATA, &digest);
        Some(Address {
            digest,
            redis_key,
            method_name,
        })
    }

    /// Says once per method why its keys or values cannot be shared:
    /// otherwise the only trace is a counter, and a user wonders why
    /// nothing is shared.
    fn warn_once(
        &self,
        py: Python<'_>,
        seen: &Mutex<HashSet<String>>,
        what: &str,
        method_name: Option<&str>,
        err: &PyErr,
    ) {
        let name = method_name.unwrap_or("<no method>").to_string();
        if !seen.lock().insert(name.clone()) {
            return;
        }
        let reason = err
            .value(py)
            .str()
            .map(|text| text.to_string())
            .unwrap_or_default();
        log_warning(
            py,
            format!(
                "cache {:?}: {what} of {name} stay in this process: {reason}",
                self.name
            ),
        );
    }

    /// One warning a minute at most, however many forged entries come by.
    fn report_forged(&self, py: Python<'_>) {
        let Some(count) = self.forged_log.lock().note(Instant::now()) else {
            return;
        };
        log_warning(
            py,
            format!(
                "cache {:?}: {count} value(s) in Redis failed authentication and were \
                 ignored: someone without the key wrote to Redis, or servers of this \
                 deployment use different secrets (database.secret, ormcache_redis_secret)",
                self.name
            ),
        );
    }

    /// The generation tokens of this namespace's methods in Redis.
    fn read_generations(&self, py: Python<'_>) -> PyResult<HashMap<String, u64>> {
        let Some(client) = &self.client else {
            return Ok(HashMap::new());
        };
        let key = self.generations_key();
        let pairs = client
            .get()
            .call(py, move |con| {
                redis::cmd("HGETALL")
                    .arg(key.as_slice())
                    .query::<Vec<(String, Vec<u8>)>>(con)
            })
            .map_err(call_error_to_py)?;
        Ok(pairs
            .into_iter()
            .filter_map(|(name, token)| {
                let token = std::str::from_utf8(&token).ok()?.parse::<u64>().ok()?;
                Some((name, token))
            })
            .collect())
    }

    /// The Redis hash holding per-method generations of this namespace.
    fn generations_key(&self) -> Vec<u8> {
        self.settings.read().generations_key.clone()
    }

    /// Seconds the generations hash outlives the entries stamped from it.
    fn bookkeeping_ttl(&self) -> u64 {
        self.settings.read().ttl.saturating_mul(2)
    }

    fn read_shared(&self, py: Python<'_>, client: &RedisClient, address: &Address) -> SharedRead {
        let data_key = address.redis_key.clone();
        let generations = address
            .method_name
            .as_ref()
            .map(|name| (self.generations_key(), name.clone()));
        let bookkeeping_ttl = self.bookkeeping_ttl();
        // A token this process saw replaced is never valid again: one
        // coming back means the bookkeeping was rolled back in Redis.
        let retired: Vec<u64> = address
            .method_name
            .as_ref()
            .and_then(|name| self.generations.lock().get(name).map(|g| g.retired.clone()))
            .unwrap_or_default();
        let started = Instant::now();
        let reply = client.call(py, move |con| {
            let Some((generations_key, name)) = &generations else {
                let value = redis::cmd("GET")
                    .arg(data_key.as_slice())
                    .query::<Option<Vec<u8>>>(con)?;
                return Ok((entry::NO_METHOD, value, false));
            };
            let (token, value) = redis::pipe()
                .cmd("HGET")
                .arg(generations_key.as_slice())
                .arg(name.as_str())
                .cmd("GET")
                .arg(data_key.as_slice())
                .query::<(Option<u64>, Option<Vec<u8>>)>(con)?;
            match token {
                Some(token) if !retired.contains(&token) => Ok((token, value, false)),
                rolled_back => {
                    let token = fresh_token(
                        con,
                        generations_key,
                        name,
                        rolled_back.is_some(),
                        bookkeeping_ttl,
                    )?;
                    Ok((token, value, true))
                }
            }
        });
        let elapsed = started.elapsed();
        self.latency.record(elapsed);
        let (token, payload, refreshed) = match reply {
            Ok(reply) => reply,
            Err(_) => {
                self.counters.l2_errors.fetch_add(1, Ordering::Relaxed);
                return SharedRead::Failed;
            }
        };
        if let Some(name) = &address.method_name {
            self.generations
                .lock()
                .entry(name.clone())
                .or_default()
                .adopt(token);
            self.keep_generations_alive(client, refreshed);
        }
        let Some(payload) = payload else {
            return SharedRead::Absent(elapsed);
        };
        match self.open_entry(py, &payload, &address.digest, token) {
            Ok(value) => SharedRead::Found(value, payload.len(), elapsed),
            Err(Rejection::Forged) => {
                self.counters.forged_entries.fetch_add(1, Ordering::Relaxed);
                self.report_forged(py);
                SharedRead::Forged(elapsed)
            }
            Err(_) => {
                self.counters
                    .rejected_entries
                    .fetch_add(1, Ordering::Relaxed);
                SharedRead::Rejected(elapsed)
            }
        }
    }

    /// The token to stamp a write with: the one last read, or (a store
    /// without a lookup before it, e.g. priming) read from Redis now.
    fn token_for_write(&self, py: Python<'_>, client: &RedisClient, name: &str) -> Option<u64> {
        self.forget_tokens_after_outage(client);
        if let Some(token) = self.generations.lock().get(name).and_then(|g| g.current) {
            return Some(token);
        }
        let generations_key = self.generations_key();
        let bookkeeping_ttl = self.bookkeeping_ttl();
        let owned_name = name.to_string();
        let token = client
            .call(py, move |con| {
                fresh_token(con, &generations_key, &owned_name, false, bookkeeping_ttl)
            })
            .ok()?;
        self.generations
            .lock()
            .entry(name.to_string())
            .or_default()
            .adopt(token);
        Some(token)
    }

    /// Tokens read before an outage may be gone with the Redis that held
    /// them (a restart without persistence, a failover): stamping writes
    /// with them would only store entries nobody accepts. Forgotten, not
    /// retired: after a mere network cut they are still valid.
    fn forget_tokens_after_outage(&self, client: &RedisClient) {
        let outages = client.pool().breaker_opened_count();
        if self.tokens_outages.swap(outages, Ordering::Relaxed) != outages {
            for known in self.generations.lock().values_mut() {
                known.current = None;
            }
        }
    }

    /// Pushes the generations hash's expiry back, at most every quarter of
    /// the cache's TTL, off the request path: its tokens must outlive the
    /// entries stamped with them while the method is in use.
    fn keep_generations_alive(&self, client: &RedisClient, just_refreshed: bool) {
        let now = Instant::now();
        let interval = Duration::from_secs(self.settings.read().ttl / 4);
        {
            let mut refreshed = self.generations_refreshed.lock();
            if !just_refreshed && refreshed.is_some_and(|at| now.duration_since(at) < interval) {
                return;
            }
            *refreshed = Some(now);
        }
        if !just_refreshed {
            client.enqueue_command(entry::expire_command(
                self.generations_key(),
                self.bookkeeping_ttl(),
            ));
        }
    }

    /// Verifies and decodes a framed entry; undecodable bytes are foreign.
    fn open_entry(
        &self,
        py: Python<'_>,
        payload: &[u8],
        digest: &[u8; 32],
        token: u64,
    ) -> Result<Py<PyAny>, Rejection> {
        let mac = self.settings.read().mac.clone();
        let codec_bytes = entry::open(payload, &mac, digest, token)?;
        self.codec
            .get()
            .decode(py, codec_bytes)
            .map_err(|_| Rejection::Foreign)
    }

    /// Encodes and seals a value for `address`; None (counted, and said
    /// once per method) when it cannot be shared.
    fn frame_entry(
        &self,
        value: &Bound<'_, PyAny>,
        client: &RedisClient,
        address: &Address,
    ) -> Option<Vec<u8>> {
        let mut payload = entry::start_value();
        if let Err(err) = self.codec.get().encode_into(value, &mut payload) {
            self.counters
                .unencodable_values
                .fetch_add(1, Ordering::Relaxed);
            self.warn_once(
                value.py(),
                &self.warned_values,
                "values",
                address.method_name.as_deref(),
                &err,
            );
            return None;
        }
        // Copied out: logging runs Python code, never under the lock.
        let (mac, authenticated) = {
            let settings = self.settings.read();
            (settings.mac.clone(), settings.authenticated)
        };
        if !authenticated {
            NO_SECRET_WARNING.call_once(|| {
                log_warning(
                    value.py(),
                    format!(
                        "cache {:?} has no secret: entries in Redis are checked for \
                         corruption, but anyone who can write to Redis can plant values; \
                         pass TwoTierCache(..., secret=...)",
                        self.name
                    ),
                )
            });
        }
        let token = match &address.method_name {
            None => entry::NO_METHOD,
            // Without a token (Redis failed) nothing a reader would accept
            // can be written.
            Some(name) => self.token_for_write(value.py(), client, name)?,
        };
        entry::seal(&mut payload, token, &mac, &address.digest);
        Some(payload)
    }

    /// L1 then L2; counts per method.
    pub fn lookup(slf: &Bound<'_, Self>, key: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        let py = slf.py();
        let this = slf.get();
        let lru = &slf.as_super().get().lru;
        let hash = match key.hash() {
            Ok(hash) => hash,
            Err(err) => {
                this.count_method(key_method(key).as_ref(), |c| c.errors += 1);
                return Err(err);
            }
        };
        if let Some(value) = lru.lookup(key, hash)? {
            // Counted per method by the entry's own hit counter.
            return Ok(Some(value));
        }
        let method = key_method(key);
        let read = match this.access(py)? {
            Access::Local => SharedRead::Skipped,
            Access::Shared | Access::Deferred(_) => {
                match (&this.client, this.address(key, method.as_ref())) {
                    (Some(client), Some(address)) => this.read_shared(py, client.get(), &address),
                    _ => SharedRead::Skipped,
                }
            }
        };
        let found = match read {
            SharedRead::Found(value, size, elapsed) => Some((value, size, elapsed)),
            SharedRead::Failed => {
                this.count_method(method.as_ref(), |c| c.redis_errors += 1);
                None
            }
            SharedRead::Rejected(elapsed) => {
                this.count_method(method.as_ref(), |c| c.rejected_entries += 1);
                this.record_method_latency(method.as_ref(), elapsed);
                None
            }
            SharedRead::Forged(elapsed) => {
                this.count_method(method.as_ref(), |c| c.forged_entries += 1);
                this.record_method_latency(method.as_ref(), elapsed);
                None
            }
            SharedRead::Absent(elapsed) => {
                this.count_method(method.as_ref(), |_| ());
                this.record_method_latency(method.as_ref(), elapsed);
                None
            }
            SharedRead::Skipped => None,
        };
        match found {
            Some((value, size, elapsed)) => {
                this.counters.l2_hits.fetch_add(1, Ordering::Relaxed);
                this.counters
                    .bytes_read
                    .fetch_add(size as u64, Ordering::Relaxed);
                let hit_counter = this.count_method(method.as_ref(), |c| {
                    c.l2_hits += 1;
                    c.bytes_read += size as u64;
                });
                this.record_method_latency(method.as_ref(), elapsed);
                let stored = Stored {
                    size: if lru.bounds.max_bytes > 0 { size } else { 0 },
                    expires_at: 0,
                    hit_counter,
                };
                lru.store(key, hash, value.bind(py), stored)?;
                Ok(Some(value))
            }
            None => {
                this.counters.l2_misses.fetch_add(1, Ordering::Relaxed);
                this.count_method(method.as_ref(), |c| c.misses += 1);
                Ok(None)
            }
        }
    }

    /// Stores in L1 and, when allowed and encodable, in Redis.
    pub fn store(
        slf: &Bound<'_, Self>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: Option<f64>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let lru = &slf.as_super().get().lru;
        let hash = key.hash()?;
        let method = key_method(key);
        let access = this.access(py)?;
        let shared = match (&access, &this.client) {
            (Access::Local, _) | (_, None) => None,
            (_, Some(client)) => this.address(key, method.as_ref()).and_then(|address| {
                this.frame_entry(value, client.get(), &address)
                    .map(|p| (client, address, p))
            }),
        };
        let l1_size = match &shared {
            Some((_, _, payload)) if lru.bounds.max_bytes > 0 => payload.len(),
            _ => lru.estimate_size(value)?,
        };
        let local_only = shared.is_none() && !matches!(access, Access::Local);
        let hit_counter = this.count_method(method.as_ref(), |c| {
            if local_only {
                c.local_only += 1;
            }
        });
        let stored = Stored {
            size: l1_size,
            expires_at: deadline_after(ttl)?,
            hit_counter,
        };
        lru.store(key, hash, value, stored)?;
        let Some((client, address, payload)) = shared else {
            return Ok(());
        };
        let ttl_seconds = match ttl {
            Some(t) => (t.ceil() as u64).max(1),
            None => this.settings.read().ttl,
        };
        let written = payload.len() as u64;
        let command = entry::set_command(address.redis_key, payload, ttl_seconds);
        match access {
            Access::Deferred(unit) => {
                if !unit.get().defer(&this.name, command) {
                    return Ok(());
                }
                this.counters
                    .writes_deferred
                    .fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                if client.get().enqueue_command(command) {
                    this.counters.writes_queued.fetch_add(1, Ordering::Relaxed);
                } else {
                    this.counters.writes_dropped.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
            }
        }
        this.counters
            .bytes_written
            .fetch_add(written, Ordering::Relaxed);
        this.count_method(method.as_ref(), |c| c.bytes_written += written);
        Ok(())
    }
}

/// A secret from Python: non-empty str or bytes.
fn checked_secret(secret: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let bytes = crypto::secret_bytes(secret)?;
    if bytes.is_empty() {
        return Err(PyValueError::new_err("secret must not be empty"));
    }
    Ok(bytes)
}

fn lowercase(markers: Vec<String>) -> Vec<String> {
    markers
        .into_iter()
        .filter(|m| !m.is_empty())
        .map(|m| m.to_lowercase())
        .collect()
}

fn validate_ttl(ttl: i64) -> PyResult<u64> {
    if ttl < 1 {
        return Err(PyValueError::new_err(format!(
            "ttl must be a whole number of seconds of at least 1, got {ttl}"
        )));
    }
    Ok(ttl as u64)
}

#[pymethods]
impl TwoTierCache {
    #[new]
    #[pyo3(signature = (
        name, count, *, client, codec, namespace = None, prefix = "ormcache:", ttl = 3600,
        local_methods = None, secret_markers = None, gate = None, max_bytes = 0, secret = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn py_new(
        name: String,
        count: i64,
        client: Option<Py<RedisClient>>,
        codec: Py<Codec>,
        namespace: Option<Vec<u8>>,
        prefix: &str,
        ttl: i64,
        local_methods: Option<HashSet<String>>,
        secret_markers: Option<Vec<String>>,
        gate: Option<Py<PyAny>>,
        max_bytes: i64,
        secret: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let lru = PyLru {
            lru: Lru::new(Bounds::from_args(count, max_bytes, None)?)?,
        };
        let secret = secret.map(checked_secret).transpose()?;
        let this = TwoTierCache {
            name,
            client,
            codec,
            gate: RwLock::new(gate),
            settings: RwLock::new(Settings {
                generations_key: generations_key(prefix, namespace.as_deref().unwrap_or_default()),
                namespace: namespace.unwrap_or_default(),
                prefix: prefix.to_string(),
                ttl: validate_ttl(ttl)?,
                shared: true,
                local_methods: local_methods.unwrap_or_default(),
                secret_markers: lowercase(secret_markers.unwrap_or_default()),
                mac: entry_mac(secret.as_deref()),
                authenticated: secret.is_some(),
            }),
            methods: Mutex::new(HashMap::new()),
            generations: Mutex::new(HashMap::new()),
            tokens_outages: AtomicU64::new(0),
            synced_generations: Mutex::new(HashMap::new()),
            generations_refreshed: Mutex::new(None),
            warned_methods: Mutex::new(HashSet::new()),
            warned_values: Mutex::new(HashSet::new()),
            forged_log: Mutex::new(RateLimitedLog::new(Duration::from_secs(60))),
            counters: SharedCounters::default(),
            latency: LatencyHistogram::default(),
        };
        Ok(PyClassInitializer::from(lru).add_subclass(this))
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    #[getter]
    fn get_namespace<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.settings.read().namespace)
    }

    #[setter]
    fn set_namespace(&self, namespace: Vec<u8>) {
        let mut settings = self.settings.write();
        if settings.namespace != namespace {
            settings.generations_key = generations_key(&settings.prefix, &namespace);
            settings.namespace = namespace;
            // Generations belong to a namespace.
            self.generations.lock().clear();
            self.synced_generations.lock().clear();
        }
    }

    #[getter]
    fn get_shared(&self) -> bool {
        self.settings.read().shared
    }

    #[setter]
    fn set_shared(&self, shared: bool) {
        self.settings.write().shared = shared;
    }

    #[getter]
    fn get_ttl(&self) -> u64 {
        self.settings.read().ttl
    }

    #[setter]
    fn set_ttl(&self, ttl: i64) -> PyResult<()> {
        self.settings.write().ttl = validate_ttl(ttl)?;
        Ok(())
    }

    #[getter]
    fn get_prefix(&self) -> String {
        self.settings.read().prefix.clone()
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
        let mut settings = self.settings.write();
        settings.mac = entry_mac(Some(&secret));
        settings.authenticated = true;
        Ok(())
    }

    #[getter]
    fn get_gate(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.gate.read().as_ref().map(|g| g.clone_ref(py))
    }

    #[setter]
    fn set_gate(&self, gate: Option<Py<PyAny>>) {
        *self.gate.write() = gate;
    }

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
    /// generation token in Redis (one HSET), so no process reads its old
    /// shared entries again.
    fn clear_method(slf: &Bound<'_, Self>, method: &Bound<'_, PyAny>) -> PyResult<usize> {
        let py = slf.py();
        let dropped = TwoTierCache::evict_method(slf, method)?;
        let this = slf.get();
        let name = method_name_arg(method)?;
        if let Some(client) = &this.client {
            let key = this.generations_key();
            let field = name.clone();
            let token = entry::new_token();
            let bookkeeping_ttl = this.bookkeeping_ttl();
            client
                .get()
                .call(py, move |con| {
                    redis::pipe()
                        .cmd("HSET")
                        .arg(key.as_slice())
                        .arg(field.as_str())
                        .arg(token)
                        .ignore()
                        .cmd("EXPIRE")
                        .arg(key.as_slice())
                        .arg(bookkeeping_ttl)
                        .ignore()
                        .query::<()>(con)
                })
                .map_err(call_error_to_py)?;
            this.generations
                .lock()
                .entry(name)
                .or_default()
                .adopt(token);
        }
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
        let stale: Vec<String> = {
            let mut synced = this.synced_generations.lock();
            let mut mine = this.generations.lock();
            let names: HashSet<&String> = tokens
                .keys()
                .chain(synced.keys())
                .chain(mine.keys())
                .collect();
            let stale: Vec<String> = names
                .into_iter()
                .filter(|name| {
                    let now = tokens.get(*name);
                    synced.get(*name) != now
                        || mine
                            .get(*name)
                            .and_then(|known| known.current)
                            .is_some_and(|token| Some(&token) != now)
                })
                .cloned()
                .collect();
            // From now on this process computes under Redis's tokens (a
            // vanished one is recreated fresh on the next use).
            for name in &stale {
                let known = mine.entry(name.clone()).or_default();
                match tokens.get(name) {
                    Some(token) => known.adopt(*token),
                    None => known.forget(),
                }
            }
            *synced = tokens;
            stale
        };
        for name in &stale {
            TwoTierCache::evict_method(slf, &PyString::new(slf.py(), name))?;
        }
        Ok(stale)
    }

    fn stats<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyDict>> {
        let py = slf.py();
        let this = slf.get();
        let lru = &slf.as_super().get().lru;
        let dict = lru_stats_dict(py, lru)?;
        let l1 = lru.counters();
        dict.set_item("name", &this.name)?;
        dict.set_item("l1_hits", l1.hits)?;
        let c = &this.counters;
        for (label, counter) in [
            ("l2_hits", &c.l2_hits),
            ("l2_misses", &c.l2_misses),
            ("l2_errors", &c.l2_errors),
            ("l2_skipped", &c.l2_skipped),
            ("gated", &c.gated),
            ("rejected_entries", &c.rejected_entries),
            ("forged_entries", &c.forged_entries),
            ("unencodable_values", &c.unencodable_values),
            ("unencodable_keys", &c.unencodable_keys),
            ("secret_keys", &c.secret_keys),
            ("writes_queued", &c.writes_queued),
            ("writes_deferred", &c.writes_deferred),
            ("writes_dropped", &c.writes_dropped),
            ("bytes_read", &c.bytes_read),
            ("bytes_written", &c.bytes_written),
        ] {
            dict.set_item(label, counter.load(Ordering::Relaxed))?;
        }
        // A lookup that fell through L1 is either an L2 hit or a real miss.
        dict.set_item("misses", c.l2_misses.load(Ordering::Relaxed))?;
        dict.set_item("redis_latency_p50_us", this.latency.quantile_micros(0.5))?;
        dict.set_item("redis_latency_p99_us", this.latency.quantile_micros(0.99))?;
        dict.set_item("shared", this.settings.read().shared)?;
        dict.set_item(
            "redis_healthy",
            this.client.as_ref().map(|c| c.get().pool().looks_healthy()),
        )?;
        let methods = PyDict::new(py);
        // Copied out first: naming a function runs Python code, which must
        // not happen under the lock.
        struct MethodFigures {
            func: Py<PyAny>,
            counts: [(&'static str, u64); 10],
            p50: Option<f64>,
            p99: Option<f64>,
        }
        let figures: Vec<MethodFigures> = this
            .methods
            .lock()
            .values()
            .map(|entry| {
                let c = &entry.counters;
                MethodFigures {
                    func: entry.func.clone_ref(py),
                    counts: [
                        ("l1_hits", entry.l1_hits.load(Ordering::Relaxed)),
                        ("l2_hits", c.l2_hits),
                        ("misses", c.misses),
                        ("errors", c.errors),
                        ("redis_errors", c.redis_errors),
                        ("rejected_entries", c.rejected_entries),
                        ("forged_entries", c.forged_entries),
                        ("local_only", c.local_only),
                        ("bytes_read", c.bytes_read),
                        ("bytes_written", c.bytes_written),
                    ],
                    p50: entry.redis_latency.quantile_micros(0.5),
                    p99: entry.redis_latency.quantile_micros(0.99),
                }
            })
            .collect();
        for figure in figures {
            let name = method_name(figure.func.bind(py)).unwrap_or_else(|| "<unknown>".to_string());
            let m = PyDict::new(py);
            for (label, count) in figure.counts {
                m.set_item(label, count)?;
            }
            let [l1_hits, l2_hits, misses] = [0, 1, 2].map(|i| figure.counts[i].1);
            let lookups = l1_hits + l2_hits + misses;
            let ratio = if lookups > 0 {
                (l1_hits + l2_hits) as f64 / lookups as f64
            } else {
                0.0
            };
            m.set_item("hit_ratio", ratio)?;
            m.set_item("redis_latency_p50_us", figure.p50)?;
            m.set_item("redis_latency_p99_us", figure.p99)?;
            methods.set_item(name, m)?;
        }
        dict.set_item("methods", methods)?;
        Ok(dict)
    }

    fn reset_stats(slf: &Bound<'_, Self>) {
        slf.as_super().get().lru.reset_counters();
        let this = slf.get();
        // Zeroed in place: live L1 entries keep counting into the same Arcs.
        for entry in this.methods.lock().values_mut() {
            entry.l1_hits.store(0, Ordering::Relaxed);
            entry.counters = MethodCounters::default();
            entry.redis_latency.reset();
        }
        this.latency.reset();
        let c = &this.counters;
        for counter in [
            &c.l2_hits,
            &c.l2_misses,
            &c.l2_errors,
            &c.l2_skipped,
            &c.gated,
            &c.rejected_entries,
            &c.forged_entries,
            &c.unencodable_values,
            &c.unencodable_keys,
            &c.secret_keys,
            &c.writes_queued,
            &c.writes_deferred,
            &c.writes_dropped,
            &c.bytes_read,
            &c.bytes_written,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
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
    unit::register(m)?;
    Ok(())
}
