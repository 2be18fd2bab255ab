//! Single flight across processes: when a shared entry of an expensive
//! method misses, one process computes it and the others wait for its value
//! instead of computing it too.
//!
//! The leader holds `SET <lock> <value> NX PX <lease>` from its miss until
//! its value is written (after the SET in the same write queue, so a waiter
//! that sees the lock gone finds the value), released by a Lua
//! compare-and-delete: only by its owner. The lease is short and renewed
//! while the leader computes (`lease`): a leader that died costs its
//! waiters about one lease. Waiters poll the entry with a backoff (a
//! bounded number of calls), take the lead if the lock vanished without a
//! value (the leader failed or rolled back), and compute themselves once
//! `wait` has passed.
//!
//! Redis is untrusted: a lock's value carries a tag of the cache's entry
//! key (`lock_value`), and a lock without one, without an expiry, or with an
//! expiry no leader sets (beyond a lease) was planted: the miss computes at
//! once (counted), instead of waiting on it.
//!
//! Which methods fly: those switched on per method, and (unless switched
//! off) those whose compute time is at least `single_flight_after` or still
//! unknown: a method flies from its first miss in the cluster, and stops
//! once it is measured cheap. A cost is this process's own measure (the
//! mean of its computations), or before it has one, the last measure
//! another process recorded in Redis, tagged like a lock: an untagged or
//! wrongly tagged record is ignored (counted), and a record never blends
//! into this process's own measures. Cheap lookups never pay a lock round
//! trip once measured.
//!
//! Here: which misses fly, the computations pending, the lock a leader
//! holds until its value is written; `join` takes the lead or waits for
//! the leader's value, `cost` measures and records compute times.

mod cost;
mod join;

pub(super) use cost::MethodCost;

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use pyo3::prelude::*;

use super::counters::{bump, MethodEntry};
use super::lease;
use super::policy::{method_name_arg, Address};
use super::shared_entries::SharedRead;
use super::TwoTierCache;
use crate::crypto::{Mac, SHORT_TAG_LEN};
use crate::redis::writer::Command;
use crate::redis::RedisClient;

/// Computations this process has started and not stored yet, per cache; a
/// computation that raised never stores, so old ones are pruned.
const MAX_PENDING: usize = 4096;
const PENDING_MAX_AGE: Duration = Duration::from_secs(600);
const RELEASE_SCRIPT: &str =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0";

/// How flights are decided for one cache.
pub(super) struct FlightSettings {
    /// Methods whose measured compute time reaches this fly (None: only
    /// the methods switched on).
    pub(super) after: Option<Duration>,
    /// The longest a waiter waits, and the lock's lease.
    pub(super) wait: Duration,
}

/// Per-method switches by qualified name, set where methods are decorated
/// (`@ormcache(..., single_flight=True)`): on, or off whatever the cost.
static SWITCHES: RwLock<Option<HashMap<String, bool>>> = RwLock::new(None);

/// Switches single flight on or off for one method in every cache of this
/// process, whatever its measured cost; None decides by cost again.
#[pyfunction]
#[pyo3(signature = (method, enabled))]
fn set_single_flight(method: &Bound<'_, PyAny>, enabled: Option<bool>) -> PyResult<()> {
    let name = method_name_arg(method)?;
    let mut switches = SWITCHES.write();
    let switches = switches.get_or_insert_with(HashMap::new);
    match enabled {
        Some(enabled) => switches.insert(name, enabled),
        None => switches.remove(&name),
    };
    Ok(())
}

fn switch_of(name: &str) -> Option<bool> {
    SWITCHES.read().as_ref()?.get(name).copied()
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(set_single_flight, m)?)
}

/// A computation started after a miss, until its value is stored.
pub(super) struct Pending {
    started: Instant,
    /// The thread computing: when it misses the same key again, its
    /// computation was abandoned (it raised) and it leads again.
    thread: std::thread::ThreadId,
    /// The lock this process holds as the flight's leader, and its value.
    lock: Option<(Vec<u8>, Vec<u8>)>,
}

pub(super) type PendingComputations = HashMap<[u8; 32], Pending>;

/// What a miss became.
pub(super) enum Flight {
    /// Compute (as the leader, or alone).
    Compute,
    /// Another process's value arrived while waiting.
    Landed(SharedRead),
}

impl TwoTierCache {
    /// After a shared miss: lead the flight, or wait for the leader's value;
    /// the computation that follows is timed either way.
    pub(super) fn after_shared_miss(
        &self,
        py: Python<'_>,
        client: &RedisClient,
        address: &Address,
        method: Option<&MethodEntry>,
    ) -> Flight {
        let thread = std::thread::current().id();
        if let Some(abandoned) = self
            .pending
            .lock()
            .get_mut(&address.digest)
            .filter(|p| p.thread == thread && p.lock.is_some())
        {
            // This thread holds the key's lock from a computation that
            // never stored: it computes again under it, instead of waiting
            // on itself.
            abandoned.started = Instant::now();
            return Flight::Compute;
        }
        let lock = match method {
            Some(method) if self.flies(py, client, method) => {
                match self.join_flight(py, client, address) {
                    Ok(landed) => return Flight::Landed(landed),
                    Err(lock) => lock,
                }
            }
            _ => None,
        };
        let mut pending = self.pending.lock();
        if pending.len() >= MAX_PENDING {
            pending.retain(|_, p| p.started.elapsed() < PENDING_MAX_AGE);
        }
        if pending.len() < MAX_PENDING {
            let computation = Pending {
                started: Instant::now(),
                thread,
                lock,
            };
            match pending.entry(address.digest) {
                // Another thread of this process leads this key's flight:
                // its lock is released by its own store, not lost here.
                Entry::Occupied(mut led)
                    if computation.lock.is_some() || led.get().lock.is_none() =>
                {
                    led.insert(computation);
                }
                Entry::Occupied(_) => {}
                Entry::Vacant(slot) => {
                    slot.insert(computation);
                }
            }
        }
        Flight::Compute
    }

    /// Whether a miss of `method` takes part in a flight.
    fn flies(&self, py: Python<'_>, client: &RedisClient, method: &MethodEntry) -> bool {
        let Some(name) = &method.name else {
            return false;
        };
        if let Some(switch) = switch_of(name) {
            return switch;
        }
        let Some(after) = self.settings.read().flight.after else {
            return false;
        };
        let cost = &method.cost;
        if cost.known() == 0 && !cost.asked_redis.swap(true, Ordering::Relaxed) {
            // First miss of a method this process never computed: another
            // process may have measured it.
            let key = self.costs_key();
            let field = name.to_string();
            let recorded = client
                .call(py, move |con| {
                    redis::cmd("HGET")
                        .arg(key.as_slice())
                        .arg(field.as_str())
                        .query::<Option<Vec<u8>>>(con)
                })
                .ok()
                .flatten();
            if let Some(record) = recorded {
                match self.open_cost(name, &record) {
                    Some(micros) => cost.recorded.store(micros.max(1), Ordering::Relaxed),
                    None => bump(&self.counters.flights_planted_costs, 1),
                }
            }
        }
        // Unknown: fly, until measured.
        match cost.known() {
            0 => true,
            micros => Duration::from_micros(micros) >= after,
        }
    }

    /// The store of a value computed after a miss: times the computation
    /// (recording its cost in Redis for the other processes) and returns
    /// the flight's lock this process leads, to release after the value.
    pub(super) fn computation_stored(
        &self,
        client: &RedisClient,
        digest: &[u8; 32],
        method: Option<&MethodEntry>,
    ) -> Option<HeldLock> {
        let pending = self.pending.lock().remove(digest)?;
        let mut worth_waiting_for = true;
        if let Some(method) = method {
            let elapsed = pending.started.elapsed();
            bump(&method.counters.computations, 1);
            bump(&method.counters.compute_us, elapsed.as_micros() as u64);
            self.record_cost(client, method, elapsed);
            worth_waiting_for = self.worth_waiting_for(method);
        }
        let (lock_key, value) = pending.lock?;
        Some(HeldLock {
            lock_key,
            value,
            worth_waiting_for,
        })
    }

    /// Whether waiters should wait for this method's value until its
    /// transaction commits: switched on, or measured expensive. A method
    /// that flew only because its cost was unknown and turned out cheap
    /// releases its lock at once: its waiters compute rather than wait
    /// for a transaction that may run for long.
    fn worth_waiting_for(&self, method: &MethodEntry) -> bool {
        if let Some(switch) = method.name.as_deref().and_then(switch_of) {
            return switch;
        }
        match self.settings.read().flight.after {
            Some(after) => Duration::from_micros(method.cost.known()) >= after,
            None => false,
        }
    }
}

/// `number` in decimal, then a short tag of it under `purpose` and
/// `context` (what the record is about: its key, its method).
fn tagged(mac: &Mac, purpose: &[u8], context: &[&[u8]], number: u64) -> Vec<u8> {
    let mut record = number.to_string().into_bytes();
    let tag = mac.tag(&[&[purpose], context, &[&record]].concat());
    record.extend_from_slice(&tag[..SHORT_TAG_LEN]);
    record
}

/// The number of a `tagged` record, if its tag verifies.
fn opened(mac: &Mac, purpose: &[u8], context: &[&[u8]], record: &[u8]) -> Option<u64> {
    let split = record.len().checked_sub(SHORT_TAG_LEN)?;
    let (number, tag) = record.split_at(split);
    // u64's 20 digits at most: nothing longer is hashed.
    if number.is_empty() || number.len() > 20 {
        return None;
    }
    if !mac.verify_short(&[&[purpose], context, &[number]].concat(), tag) {
        return None;
    }
    std::str::from_utf8(number).ok()?.parse().ok()
}

/// A single-flight lock this process leads, its lease renewed until it is
/// released: after the value's write (the same queue, so a waiter that sees
/// the lock gone finds the value), at the unit's commit, or at once when
/// the value will not be written.
pub(super) struct HeldLock {
    lock_key: Vec<u8>,
    value: Vec<u8>,
    /// Whether it is held until a transaction's commit (see
    /// `worth_waiting_for`), or released as soon as the value is stored.
    pub(super) worth_waiting_for: bool,
}

impl HeldLock {
    /// Stops renewing and queues the compare-and-delete.
    pub(super) fn release(self, client: &RedisClient) {
        lease::released(&self.lock_key);
        client.enqueue_command(release_command(self.lock_key, self.value));
    }
}

/// Deletes the lock only while it still holds the leader's value.
fn release_command(lock_key: Vec<u8>, value: Vec<u8>) -> Command {
    vec![
        b"EVAL".to_vec(),
        RELEASE_SCRIPT.as_bytes().to_vec(),
        b"1".to_vec(),
        lock_key,
        value,
    ]
}
