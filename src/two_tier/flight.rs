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

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use pyo3::prelude::*;

use super::counters::{bump, MethodEntry};
use super::lease::{self, LEASE};
use super::policy::{method_name_arg, Address};
use super::shared_entries::{SharedRead, Tally};
use super::TwoTierCache;
use crate::crypto::{Mac, SHORT_TAG_LEN};
use crate::entry;
use crate::redis::pool::CallError;
use crate::redis::writer::Command;
use crate::redis::RedisClient;

/// Computations this process has started and not stored yet, per cache; a
/// computation that raised never stores, so old ones are pruned.
const MAX_PENDING: usize = 4096;
const PENDING_MAX_AGE: Duration = Duration::from_secs(600);
/// Polling backoff of a waiter, and the most polls of one wait (each one
/// round trip for the lock, one for the entry).
const FIRST_POLL: Duration = Duration::from_millis(2);
const LONGEST_POLL: Duration = Duration::from_millis(100);
const MOST_POLLS: u32 = 64;

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

/// What is known of a method's compute time.
#[derive(Default)]
pub(super) struct MethodCost {
    /// This process's own measure: a moving average of its computations,
    /// in microseconds (0: none yet).
    micros: AtomicU64,
    /// Another process's measure read from Redis (0: none), used until
    /// this process has its own.
    recorded: AtomicU64,
    /// Whether Redis was asked for another process's measure.
    asked_redis: AtomicBool,
}

impl MethodCost {
    /// The cost that decides, in microseconds: own, else recorded (0: unknown).
    fn known(&self) -> u64 {
        match self.micros.load(Ordering::Relaxed) {
            0 => self.recorded.load(Ordering::Relaxed),
            own => own,
        }
    }
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

    /// Takes the lead (Err with the lock held, or None when Redis failed,
    /// the lock was planted or the wait ran out), or returns the leader's
    /// value.
    #[allow(clippy::type_complexity)]
    fn join_flight(
        &self,
        py: Python<'_>,
        client: &RedisClient,
        address: &Address,
    ) -> Result<SharedRead, Option<(Vec<u8>, Vec<u8>)>> {
        let (prefix, wait, mac) = {
            let settings = self.settings.read();
            (
                settings.prefix.clone(),
                settings.flight.wait,
                settings.mac.clone(),
            )
        };
        let lock_key = entry::redis_key(&prefix, entry::LOCK, &address.digest);
        let value = lock_value(&mac, &lock_key, entry::new_token());
        let lease = LEASE.min(wait);
        let lease_millis = lease.as_millis().max(1) as u64;
        let deadline = Instant::now() + wait;
        let mut poll = FIRST_POLL;
        let mut waited = false;
        // Asked for the lock only while it looks free: a waiter's polls read
        // its state, and the entry.
        let mut lock_looks_free = true;
        for _ in 0..MOST_POLLS {
            let key = lock_key.as_slice();
            let state = if lock_looks_free {
                client.call(py, |con| {
                    redis::pipe()
                        .cmd("SET")
                        .arg(key)
                        .arg(value.as_slice())
                        .arg("NX")
                        .arg("PX")
                        .arg(lease_millis)
                        .cmd("GET")
                        .arg(key)
                        .cmd("PTTL")
                        .arg(key)
                        .query::<(Option<String>, Option<Vec<u8>>, i64)>(con)
                })
            } else {
                client
                    .call(py, |con| {
                        redis::pipe()
                            .cmd("GET")
                            .arg(key)
                            .cmd("PTTL")
                            .arg(key)
                            .query::<(Option<Vec<u8>>, i64)>(con)
                    })
                    .map(|(held, ttl)| (None, held, ttl))
            };
            match state {
                Ok((Some(_), _, _)) => {
                    // The leader may have stored its value and released the
                    // lock between this process's read and its SET: read
                    // again before computing it a second time.
                    if let found @ SharedRead::Found(..) =
                        self.read_shared(py, client, address, Tally::Quiet)
                    {
                        client.enqueue_command(release_command(lock_key, value));
                        return Ok(found);
                    }
                    bump(&self.counters.flights_led, 1);
                    lease::hold(&lock_key, &value, &client.process().pool, wait);
                    return Err(Some((lock_key, value)));
                }
                Ok((None, Some(held), ttl)) => {
                    // A leader's lock verifies and lives at most a lease;
                    // anything else would make every miss wait for nothing.
                    let planted = !lock_verifies(&mac, &lock_key, &held)
                        || !(0..=LEASE.as_millis() as i64).contains(&ttl);
                    if planted {
                        bump(&self.counters.flights_planted_locks, 1);
                        return Err(None);
                    }
                    lock_looks_free = false;
                }
                // Released meanwhile (or between the SET and the GET): ask
                // for it at once.
                Ok((None, None, _)) => {
                    lock_looks_free = true;
                    continue;
                }
                Err(CallError::TooLarge(_)) => {
                    bump(&self.counters.flights_planted_locks, 1);
                    return Err(None);
                }
                Err(_) => return Err(None),
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let nap = poll.min(deadline - now);
            py.detach(|| std::thread::sleep(nap));
            poll = (poll * 2).min(LONGEST_POLL);
            if !waited {
                waited = true;
                bump(&self.counters.flights_waited, 1);
            }
            match self.read_shared(py, client, address, Tally::Counted) {
                found @ SharedRead::Found(..) => return Ok(found),
                SharedRead::Failed | SharedRead::OutOfBudget => return Err(None),
                _ => {}
            }
        }
        bump(&self.counters.flights_timed_out, 1);
        Err(None)
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

    fn record_cost(&self, client: &RedisClient, method: &MethodEntry, elapsed: Duration) {
        let measured = (elapsed.as_micros() as u64).max(1);
        let cost = &method.cost;
        let previous = cost.micros.load(Ordering::Relaxed);
        // Of this process's own computations only: a figure read from
        // Redis never enters it (a planted one would take many to wash out).
        let mean = match previous {
            0 => measured,
            _ => (previous.saturating_mul(3).saturating_add(measured) / 4).max(1),
        };
        cost.micros.store(mean, Ordering::Relaxed);
        let Some(after) = self.settings.read().flight.after else {
            return;
        };
        let Some(name) = &method.name else {
            return;
        };
        let slow = Duration::from_micros(mean) >= after;
        let was_slow = Duration::from_micros(previous) >= after;
        let recorded = cost.recorded.load(Ordering::Relaxed);
        // Written at the first measure (unless another process's record
        // already says the same), when the verdict changes, or when a slow
        // cost doubles or halves: rare, and off the request path.
        let first =
            previous == 0 && (recorded == 0 || (Duration::from_micros(recorded) >= after) != slow);
        let moved = mean > previous.saturating_mul(2) || mean.saturating_mul(2) < previous;
        if first || (previous != 0 && (slow != was_slow || (slow && moved))) {
            let key = self.costs_key();
            let record = self.seal_cost(name, mean);
            client.enqueue_command(vec![
                b"HSET".to_vec(),
                key.clone(),
                name.as_bytes().to_vec(),
                record,
            ]);
            client.enqueue_command(entry::expire_command(key, self.bookkeeping_ttl()));
        }
    }

    /// The decimal micros, then a short tag of them, the record's key and
    /// the method: a compute time another process can trust.
    fn seal_cost(&self, name: &str, micros: u64) -> Vec<u8> {
        let key = self.costs_key();
        let mac = self.settings.read().mac.clone();
        tagged(&mac, b"flight-cost", &[&key, name.as_bytes()], micros)
    }

    /// The compute time in a record, if it verifies.
    fn open_cost(&self, name: &str, record: &[u8]) -> Option<u64> {
        let key = self.costs_key();
        let mac = self.settings.read().mac.clone();
        opened(&mac, b"flight-cost", &[&key, name.as_bytes()], record)
    }

    /// Where processes record the compute times of this cache's methods
    /// (a hint: a wrong figure only changes who waits).
    fn costs_key(&self) -> Vec<u8> {
        let settings = self.settings.read();
        let mut key = settings.prefix.as_bytes().to_vec();
        key.extend_from_slice(b"flight-costs:");
        key.extend_from_slice(self.name.as_bytes());
        key
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

/// A leader's lock value: a random token, tagged with the lock's key.
fn lock_value(mac: &Mac, lock_key: &[u8], token: u64) -> Vec<u8> {
    tagged(mac, b"flight-lock", &[lock_key], token)
}

/// Whether a lock's value was set by a leader of a cache with this key.
fn lock_verifies(mac: &Mac, lock_key: &[u8], value: &[u8]) -> bool {
    opened(mac, b"flight-lock", &[lock_key], value).is_some()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::derive_key;

    #[test]
    fn a_lock_verifies_only_under_its_key_and_name() {
        let mac = Mac::new(&derive_key(b"secret", "cache-entry"));
        let value = lock_value(&mac, b"p:l:aa", 42);
        assert!(lock_verifies(&mac, b"p:l:aa", &value));
        assert!(!lock_verifies(&mac, b"p:l:bb", &value));
        let other = Mac::new(&derive_key(b"other", "cache-entry"));
        assert!(!lock_verifies(&other, b"p:l:aa", &value));
        assert!(!lock_verifies(&mac, b"p:l:aa", b"42"));
        assert!(!lock_verifies(&mac, b"p:l:aa", &value[1..]));
        let mut flipped = value.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(!lock_verifies(&mac, b"p:l:aa", &flipped));
    }
}
