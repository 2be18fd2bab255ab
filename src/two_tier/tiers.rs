//! The walk through both tiers: a lookup tries L1, then Redis when this
//! access may be shared; a store fills L1 and sends (or defers) a write.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;

use super::counters::MethodEntry;
use super::counters::{bump, count};
use super::flight::Flight;
use super::policy::Access;
use super::shared_entries::SharedRead::{
    self, Absent, Failed, Forged, Found, OutOfBudget, Rejected, Skipped,
};
use super::shared_entries::Tally;
use super::TwoTierCache;
use crate::clock::deadline_after;
use crate::entry;
use crate::lru::{ItemsHit, Lru, Probe, Stored};
use crate::naming::key_method;
use crate::redis::budget::LookupBudget;

impl TwoTierCache {
    /// L1 then L2; counts per method.
    pub fn lookup(slf: &Bound<'_, Self>, key: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        match key.hash() {
            Ok(hash) => TwoTierCache::lookup_hashed(slf, key, hash),
            Err(err) => {
                let this = slf.get();
                let method = this.method_entry(key_method(key).as_ref());
                count(method.as_deref(), |c| bump(&c.errors, 1));
                Err(err)
            }
        }
    }

    /// An L1 hit found without the key tuple (see `Lru::hit`), after
    /// following other processes' clears as every lookup does. `None`: ask
    /// `lookup_hashed` with the tuple.
    ///
    /// # Safety
    /// The probe's items are live objects and the GIL is held.
    pub unsafe fn l1_hit(
        slf: &Bound<'_, Self>,
        probe: Probe<'_>,
        marks: Option<u64>,
    ) -> Option<ItemsHit> {
        let _budget = slf.get().follow_clears(slf);
        slf.as_super().get().lru.hit(slf.py(), probe, marks)
    }

    /// `lookup` of a key whose hash the caller already computed.
    pub fn lookup_hashed(
        slf: &Bound<'_, Self>,
        key: &Bound<'_, PyAny>,
        hash: isize,
    ) -> PyResult<Option<Py<PyAny>>> {
        let py = slf.py();
        let this = slf.get();
        let lru = &slf.as_super().get().lru;
        // One budget for the lookup's calls together (sync, read, flight).
        let budget = this.follow_clears(slf);
        if let Some(value) = lru.lookup(key, hash)? {
            // Counted per method by the entry's own hit counter.
            return Ok(Some(value));
        }
        let method = this.method_entry(key_method(key).as_ref());
        let method = method.as_deref();
        let shared = match (this.access(py)?, &this.client) {
            (Access::Local, _) | (_, None) => None,
            (_, Some(client)) => this.address(key, method).map(|a| (client.get(), a)),
        };
        let _budget = match (budget, &shared) {
            (Some(budget), _) => Some(budget),
            (None, Some((client, _))) => Some(client.lookup_budget()),
            (None, None) => None,
        };
        let mut read = match &shared {
            Some((client, address)) => this.read_shared(py, client, address, Tally::Counted),
            None => SharedRead::Skipped,
        };
        if let (Some((client, address)), Absent(_) | Rejected(_) | Forged(_)) = (&shared, &read) {
            // Counted as the miss it was; a value that lands while waiting
            // is the hit that follows.
            this.count_shared_miss(&read, method);
            read = match this.after_shared_miss(py, client, address, method) {
                Flight::Landed(landed) => landed,
                Flight::Compute => SharedRead::Skipped,
            };
        }
        let found = match read {
            Found(value, size, elapsed) => Some((value, size, elapsed)),
            Failed => {
                count(method, |c| bump(&c.redis_errors, 1));
                None
            }
            Rejected(_) | Forged(_) | Absent(_) => {
                this.count_shared_miss(&read, method);
                None
            }
            Skipped | OutOfBudget => None,
        };
        match found {
            Some((value, size, elapsed)) => {
                bump(&this.counters.l2_hits, 1);
                bump(&this.counters.bytes_read, size as u64);
                count(method, |c| {
                    bump(&c.l2_hits, 1);
                    bump(&c.bytes_read, size as u64);
                });
                record_latency(method, elapsed);
                let stored = Stored {
                    size: Lru::entry_size(key, value.bind(py)),
                    expires_at: 0,
                    hit_counter: method.map(|m| Arc::clone(&m.l1_hits)),
                };
                lru.store(key, hash, value.bind(py), stored)?;
                Ok(Some(value))
            }
            None => {
                bump(&this.counters.misses, 1);
                count(method, |c| bump(&c.misses, 1));
                Ok(None)
            }
        }
    }

    /// Another process cleared something since the last lookup: drop the
    /// L1 copies it made stale before answering (see `follow`). Returns the
    /// lookup's budget when the sync opened it.
    fn follow_clears(&self, slf: &Bound<'_, Self>) -> Option<LookupBudget> {
        let (Some(follower), Some(client)) = (&self.follower, &self.client) else {
            return None;
        };
        let generations_key = || self.settings.read().generations_key.clone();
        let pool = || Arc::clone(&client.get().process().pool);
        if !follower.take_moved(pool, generations_key) {
            return None;
        }
        let budget = client.get().lookup_budget();
        let oversized = self.counters.oversized_generations.load(Ordering::Relaxed);
        if TwoTierCache::sync_generations(slf).is_err() {
            self.mark_unsynced();
            // A planted hash stays planted: the poller raises the flag again
            // when the clears key moves, not every lookup until then.
            if self.counters.oversized_generations.load(Ordering::Relaxed) == oversized {
                follower.retry(generations_key);
            }
        }
        Some(budget)
    }

    /// Counts a read that reached Redis without finding a valid entry.
    fn count_shared_miss(&self, read: &SharedRead, method: Option<&MethodEntry>) {
        let elapsed = match read {
            Rejected(elapsed) => {
                count(method, |c| bump(&c.rejected_entries, 1));
                elapsed
            }
            Forged(elapsed) => {
                count(method, |c| bump(&c.forged_entries, 1));
                elapsed
            }
            Absent(elapsed) => elapsed,
            _ => return,
        };
        bump(&self.counters.l2_misses, 1);
        record_latency(method, *elapsed);
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
        let method = this.method_entry(key_method(key).as_ref());
        let method = method.as_deref();
        let access = this.access(py)?;
        let addressed = match (&access, &this.client) {
            (Access::Local, _) | (_, None) => None,
            (_, Some(client)) => this.address(key, method).map(|a| (client.get(), a)),
        };
        // The lock of a flight this process leads goes after the value.
        let held = addressed
            .as_ref()
            .and_then(|(client, address)| this.computation_stored(client, &address.digest, method));
        let shared = addressed.and_then(|(client, address)| {
            this.frame_entry(value, client, &address)
                .map(|p| (client, address, p))
        });
        let local_only = shared.is_none() && !matches!(access, Access::Local);
        if local_only {
            count(method, |c| bump(&c.local_only, 1));
        }
        let stored = Stored {
            size: Lru::entry_size(key, value),
            expires_at: deadline_after(ttl)?,
            hit_counter: method.map(|m| Arc::clone(&m.l1_hits)),
        };
        lru.store(key, hash, value, stored)?;
        let Some((client, address, payload)) = shared else {
            if let (Some(held), Some(client)) = (held, &this.client) {
                // Nothing to wait for: waiters compute now.
                held.release(client.get());
            }
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
                // Sent when the transaction commits, the lock released
                // after it; released at once if the write is dropped.
                let deferred = unit.get().defer(&this.name, command);
                if let Some(held) = held {
                    match (deferred, &this.client) {
                        (true, Some(owner)) if held.worth_waiting_for => {
                            unit.get()
                                .defer_release(&this.name, owner.clone_ref(py), held)
                        }
                        _ => held.release(client),
                    }
                }
                if !deferred {
                    return Ok(());
                }
                bump(&this.counters.writes_deferred, 1);
            }
            _ => {
                let queued = client.enqueue_command(command);
                if let Some(held) = held {
                    held.release(client);
                }
                if queued {
                    bump(&this.counters.writes_queued, 1);
                } else {
                    bump(&this.counters.writes_dropped, 1);
                    return Ok(());
                }
            }
        }
        bump(&this.counters.bytes_written, written);
        count(method, |c| bump(&c.bytes_written, written));
        Ok(())
    }
}

fn record_latency(method: Option<&MethodEntry>, elapsed: Duration) {
    if let Some(method) = method {
        method.redis_latency.record(elapsed);
    }
}
