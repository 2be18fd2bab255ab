//! The walk through both tiers: a lookup tries L1, then Redis when this
//! access may be shared; a store fills L1 and sends (or defers) a write.

use std::sync::Arc;

use pyo3::prelude::*;

use super::counters::{bump, count};
use super::policy::Access;
use super::shared::SharedRead;
use super::TwoTierCache;
use crate::clock::deadline_after;
use crate::entry;
use crate::lru::Stored;
use crate::naming::key_method;

impl TwoTierCache {
    /// L1 then L2; counts per method.
    pub fn lookup(slf: &Bound<'_, Self>, key: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        let py = slf.py();
        let this = slf.get();
        let lru = &slf.as_super().get().lru;
        let hash = match key.hash() {
            Ok(hash) => hash,
            Err(err) => {
                let method = this.method_entry(key_method(key).as_ref());
                count(method.as_deref(), |c| bump(&c.errors, 1));
                return Err(err);
            }
        };
        if let Some(value) = lru.lookup(key, hash)? {
            // Counted per method by the entry's own hit counter.
            return Ok(Some(value));
        }
        let method = this.method_entry(key_method(key).as_ref());
        let method = method.as_deref();
        let read = match this.access(py)? {
            Access::Local => SharedRead::Skipped,
            Access::Shared | Access::Deferred(_) => {
                match (&this.client, this.address(key, method)) {
                    (Some(client), Some(address)) => this.read_shared(py, client.get(), &address),
                    _ => SharedRead::Skipped,
                }
            }
        };
        let record_latency = |elapsed| {
            if let Some(method) = method {
                method.redis_latency.record(elapsed);
            }
        };
        let found = match read {
            SharedRead::Found(value, size, elapsed) => Some((value, size, elapsed)),
            SharedRead::Failed => {
                count(method, |c| bump(&c.redis_errors, 1));
                None
            }
            SharedRead::Rejected(elapsed) => {
                bump(&this.counters.l2_misses, 1);
                count(method, |c| bump(&c.rejected_entries, 1));
                record_latency(elapsed);
                None
            }
            SharedRead::Forged(elapsed) => {
                bump(&this.counters.l2_misses, 1);
                count(method, |c| bump(&c.forged_entries, 1));
                record_latency(elapsed);
                None
            }
            SharedRead::Absent(elapsed) => {
                bump(&this.counters.l2_misses, 1);
                record_latency(elapsed);
                None
            }
            SharedRead::Skipped => None,
        };
        match found {
            Some((value, size, elapsed)) => {
                bump(&this.counters.l2_hits, 1);
                bump(&this.counters.bytes_read, size as u64);
                count(method, |c| {
                    bump(&c.l2_hits, 1);
                    bump(&c.bytes_read, size as u64);
                });
                record_latency(elapsed);
                let stored = Stored {
                    size: if lru.bounds.max_bytes > 0 { size } else { 0 },
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
        let shared = match (&access, &this.client) {
            (Access::Local, _) | (_, None) => None,
            (_, Some(client)) => this.address(key, method).and_then(|address| {
                this.frame_entry(value, client.get(), &address)
                    .map(|p| (client, address, p))
            }),
        };
        let l1_size = match &shared {
            Some((_, _, payload)) if lru.bounds.max_bytes > 0 => payload.len(),
            _ => lru.estimate_size(value)?,
        };
        let local_only = shared.is_none() && !matches!(access, Access::Local);
        if local_only {
            count(method, |c| bump(&c.local_only, 1));
        }
        let stored = Stored {
            size: l1_size,
            expires_at: deadline_after(ttl)?,
            hit_counter: method.map(|m| Arc::clone(&m.l1_hits)),
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
                bump(&this.counters.writes_deferred, 1);
            }
            _ => {
                if client.get().enqueue_command(command) {
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
