//! Single flight across processes: when a shared entry of an expensive
//! method misses, one process computes it and the others wait for its value
//! instead of computing it too.
//!
//! The leader holds `SET <lock> <random token> NX PX <wait>` from its miss
//! until its value is written (after the SET in the same write queue, so a
//! waiter that sees the lock gone finds the value), released by a Lua
//! compare-and-delete: only by its owner. Waiters poll the entry with a
//! backoff, take the lead if the lock vanished without a value (the leader
//! failed or rolled back), and compute themselves once `wait` has passed.
//!
//! Which methods fly: those switched on per method, and (unless switched
//! off) those whose measured compute time is at least `single_flight_after`,
//! measured here between a miss and the store of the same key, or learnt
//! from Redis where another process recorded it. Cheap lookups never pay a
//! lock round trip.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use pyo3::prelude::*;

use super::counters::{bump, MethodEntry};
use super::policy::{method_name_arg, Address};
use super::shared::SharedRead;
use super::TwoTierCache;
use crate::entry;
use crate::redis::writer::Command;
use crate::redis::RedisClient;

/// Computations this process has started and not stored yet, per cache; a
/// computation that raised never stores, so old ones are pruned.
const MAX_PENDING: usize = 4096;
const PENDING_MAX_AGE: Duration = Duration::from_secs(600);
/// Polling backoff of a waiter.
const FIRST_POLL: Duration = Duration::from_millis(2);
const LONGEST_POLL: Duration = Duration::from_millis(40);

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

/// What this process measured of a method's computations.
#[derive(Default)]
pub(super) struct MethodCost {
    /// Moving average of the compute time, in microseconds (0: unknown).
    micros: AtomicU64,
    /// Whether Redis was asked for another process's measure.
    asked_redis: AtomicBool,
}

/// A computation started after a miss, until its value is stored.
pub(super) struct Pending {
    started: Instant,
    /// The lock this process holds as the flight's leader, and its token.
    lock: Option<(Vec<u8>, u64)>,
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
        if cost.micros.load(Ordering::Relaxed) == 0
            && !cost.asked_redis.swap(true, Ordering::Relaxed)
        {
            // First miss of a method this process never computed: another
            // process may have measured it.
            let key = self.costs_key();
            let field = name.to_string();
            let recorded = client
                .call(py, move |con| {
                    redis::cmd("HGET")
                        .arg(key.as_slice())
                        .arg(field.as_str())
                        .query::<Option<u64>>(con)
                })
                .ok()
                .flatten();
            if let Some(micros) = recorded {
                let _ = cost.micros.compare_exchange(
                    0,
                    micros.max(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
        }
        Duration::from_micros(cost.micros.load(Ordering::Relaxed)) >= after
    }

    /// Takes the lead (Err with the lock held, or None when Redis failed or
    /// the wait ran out), or returns the leader's value.
    fn join_flight(
        &self,
        py: Python<'_>,
        client: &RedisClient,
        address: &Address,
    ) -> Result<SharedRead, Option<(Vec<u8>, u64)>> {
        let (prefix, wait) = {
            let settings = self.settings.read();
            (settings.prefix.clone(), settings.flight.wait)
        };
        let lock_key = entry::redis_key(&prefix, entry::LOCK, &address.digest);
        let token = entry::new_token();
        let lease_millis = wait.as_millis().max(1) as u64;
        let deadline = Instant::now() + wait;
        let mut poll = FIRST_POLL;
        let mut waited = false;
        loop {
            let key = lock_key.as_slice();
            let taken = client.call(py, |con| {
                redis::cmd("SET")
                    .arg(key)
                    .arg(token)
                    .arg("NX")
                    .arg("PX")
                    .arg(lease_millis)
                    .query::<Option<String>>(con)
            });
            match taken {
                Ok(Some(_)) => {
                    bump(&self.counters.flights_led, 1);
                    return Err(Some((lock_key, token)));
                }
                Ok(None) => {}
                Err(_) => return Err(None),
            }
            let now = Instant::now();
            if now >= deadline {
                bump(&self.counters.flights_timed_out, 1);
                return Err(None);
            }
            let nap = poll.min(deadline - now);
            py.detach(|| std::thread::sleep(nap));
            poll = (poll * 2).min(LONGEST_POLL);
            if !waited {
                waited = true;
                bump(&self.counters.flights_waited, 1);
            }
            match self.read_shared(py, client, address) {
                found @ SharedRead::Found(..) => return Ok(found),
                SharedRead::Failed => return Err(None),
                _ => {}
            }
        }
    }

    /// The store of a value computed after a miss: times the computation
    /// (recording slow ones in Redis for the other processes) and returns
    /// the command releasing the flight's lock, to send after the value.
    pub(super) fn computation_stored(
        &self,
        client: &RedisClient,
        digest: &[u8; 32],
        method: Option<&MethodEntry>,
    ) -> Option<Command> {
        let pending = self.pending.lock().remove(digest)?;
        if let Some(method) = method {
            let elapsed = pending.started.elapsed();
            bump(&method.counters.computations, 1);
            bump(&method.counters.compute_us, elapsed.as_micros() as u64);
            self.record_cost(client, method, elapsed);
        }
        let (lock_key, token) = pending.lock?;
        Some(release_command(lock_key, token))
    }

    fn record_cost(&self, client: &RedisClient, method: &MethodEntry, elapsed: Duration) {
        let measured = (elapsed.as_micros() as u64).max(1);
        let previous = method.cost.micros.load(Ordering::Relaxed);
        let average = if previous == 0 {
            measured
        } else {
            (previous * 3 + measured) / 4
        };
        method.cost.micros.store(average, Ordering::Relaxed);
        let Some(after) = self.settings.read().flight.after else {
            return;
        };
        let slow = Duration::from_micros(average) >= after;
        let was_slow = Duration::from_micros(previous) >= after;
        // Written when the verdict changes or the cost doubles or halves:
        // rare, and off the request path.
        let moved = previous == 0 || average > previous * 2 || average * 2 < previous;
        if let Some(name) = &method.name {
            if slow != was_slow || (slow && moved) {
                let key = self.costs_key();
                client.enqueue_command(vec![
                    b"HSET".to_vec(),
                    key.clone(),
                    name.as_bytes().to_vec(),
                    average.to_string().into_bytes(),
                ]);
                client.enqueue_command(entry::expire_command(key, self.bookkeeping_ttl()));
            }
        }
    }

    /// Where processes record the compute times of this cache's slow
    /// methods (a hint: a wrong figure only changes who waits).
    fn costs_key(&self) -> Vec<u8> {
        let settings = self.settings.read();
        let mut key = settings.prefix.as_bytes().to_vec();
        key.extend_from_slice(b"flight-costs:");
        key.extend_from_slice(self.name.as_bytes());
        key
    }
}

/// Deletes the lock only while it still holds `token`.
pub(super) fn release_command(lock_key: Vec<u8>, token: u64) -> Command {
    vec![
        b"EVAL".to_vec(),
        RELEASE_SCRIPT.as_bytes().to_vec(),
        b"1".to_vec(),
        lock_key,
        token.to_string().into_bytes(),
    ]
}
