//! What a method's computation costs: this process's moving average of
//! its own computations, else another process's record read from Redis
//! (tagged, or ignored and counted); recorded in Redis when the verdict
//! changes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::{opened, tagged};
use crate::entry;
use crate::redis::RedisClient;
use crate::two_tier::counters::MethodEntry;
use crate::two_tier::TwoTierCache;

/// What is known of a method's compute time.
#[derive(Default)]
pub(in crate::two_tier) struct MethodCost {
    /// This process's own measure: a moving average of its computations,
    /// in microseconds (0: none yet).
    pub(super) micros: AtomicU64,
    /// Another process's measure read from Redis (0: none), used until
    /// this process has its own.
    pub(super) recorded: AtomicU64,
    /// Whether Redis was asked for another process's measure.
    pub(super) asked_redis: AtomicBool,
}

impl MethodCost {
    /// The cost that decides, in microseconds: own, else recorded (0: unknown).
    pub(super) fn known(&self) -> u64 {
        match self.micros.load(Ordering::Relaxed) {
            0 => self.recorded.load(Ordering::Relaxed),
            own => own,
        }
    }
}

impl TwoTierCache {
    pub(super) fn record_cost(
        &self,
        client: &RedisClient,
        method: &MethodEntry,
        elapsed: Duration,
    ) {
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
    pub(super) fn open_cost(&self, name: &str, record: &[u8]) -> Option<u64> {
        let key = self.costs_key();
        let mac = self.settings.read().mac.clone();
        opened(&mac, b"flight-cost", &[&key, name.as_bytes()], record)
    }

    /// Where processes record the compute times of this cache's methods
    /// (a hint: a wrong figure only changes who waits).
    pub(super) fn costs_key(&self) -> Vec<u8> {
        let settings = self.settings.read();
        let mut key = settings.prefix.as_bytes().to_vec();
        key.extend_from_slice(b"flight-costs:");
        key.extend_from_slice(self.name.as_bytes());
        key
    }
}
