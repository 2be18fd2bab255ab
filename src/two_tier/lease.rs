//! The leases of the single-flight locks this process holds: short, and
//! renewed by one background thread while the leader computes, so that a
//! leader that dies (a killed worker, a computation that raised) costs its
//! waiters about one lease, not the whole wait.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::redis::pool::Pool;

/// How long a lock lives without renewal: what waiters lose to a leader
/// that died.
pub(super) const LEASE: Duration = Duration::from_millis(500);
/// Renewed this often: three renewals may fail before the lease runs out.
const RENEW_EVERY: Duration = Duration::from_millis(150);

/// PEXPIRE, only while the lock still holds the leader's value.
const RENEW_SCRIPT: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then \
     return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0";

struct Lease {
    lock_key: Vec<u8>,
    value: Vec<u8>,
    pool: Weak<Pool>,
    /// Renewed until then at most: a waiter never waits longer anyway.
    until: Instant,
}

/// The leases held, with the process that holds them (a forked child
/// inherits the list, not the thread, nor the computations).
static LEASES: Mutex<Vec<Lease>> = Mutex::new(Vec::new());
static RENEWER_PROCESS: AtomicU32 = AtomicU32::new(0);

/// Renews `lock_key` (holding `value`) until `release` or `longest` from now.
pub(super) fn hold(lock_key: &[u8], value: &[u8], pool: &Arc<Pool>, longest: Duration) {
    let process = std::process::id();
    let mut leases = LEASES.lock();
    if RENEWER_PROCESS.swap(process, Ordering::AcqRel) != process {
        leases.clear();
        let spawned = std::thread::Builder::new()
            .name("ormcache_redis-leases".into())
            .spawn(renew_leases);
        if spawned.is_err() {
            // Without the thread, locks simply expire after one lease.
            RENEWER_PROCESS.store(0, Ordering::Release);
            return;
        }
    }
    leases.push(Lease {
        lock_key: lock_key.to_vec(),
        value: value.to_vec(),
        pool: Arc::downgrade(pool),
        until: Instant::now() + longest,
    });
}

/// The lock's release is on its way: no more renewal.
pub(super) fn released(lock_key: &[u8]) {
    LEASES.lock().retain(|lease| lease.lock_key != lock_key);
}

fn renew_leases() {
    let process = std::process::id();
    loop {
        std::thread::sleep(RENEW_EVERY);
        if RENEWER_PROCESS.load(Ordering::Acquire) != process {
            return;
        }
        let now = Instant::now();
        let due: Vec<(Vec<u8>, Vec<u8>, Arc<Pool>)> = {
            let mut leases = LEASES.lock();
            leases.retain(|lease| lease.until > now && lease.pool.strong_count() > 0);
            leases
                .iter()
                .filter_map(|lease| {
                    let pool = lease.pool.upgrade()?;
                    Some((lease.lock_key.clone(), lease.value.clone(), pool))
                })
                .collect()
        };
        for (lock_key, value, pool) in due {
            if !pool.looks_healthy() {
                // Redis is down: the lock goes with it or runs out; no
                // renewal should wait on it or count as another failure.
                continue;
            }
            // A failed renewal is no harm: the lease runs out and a waiter
            // takes the lead.
            let renewed = pool.call_in_background(0, |con| {
                redis::cmd("EVAL")
                    .arg(RENEW_SCRIPT)
                    .arg(1)
                    .arg(lock_key.as_slice())
                    .arg(value.as_slice())
                    .arg(LEASE.as_millis() as u64)
                    .query::<i64>(con)
            });
            if matches!(renewed, Ok(0)) {
                // Released (the value landed) or taken over: done.
                LEASES
                    .lock()
                    .retain(|lease| lease.lock_key != lock_key || lease.value != value);
            }
        }
    }
}
