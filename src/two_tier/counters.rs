//! What the cache counts, per cache and per method: each table is declared
//! once, and that declaration gives the struct, the figures `stats()`
//! reports and what `reset_stats()` zeroes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::flight::MethodCost;
use super::TwoTierCache;
use crate::naming::method_name;
use crate::stats::LatencyHistogram;

/// Declares a table of counters: the struct of atomics, its figures in
/// declaration order (the names `stats()` reports) and its reset.
macro_rules! counter_table {
    ($(#[$doc:meta])* $table:ident { $($(#[$field_doc:meta])* $field:ident,)* }) => {
        $(#[$doc])*
        #[derive(Default)]
        pub(super) struct $table {
            $($(#[$field_doc])* pub(super) $field: AtomicU64,)*
        }

        impl $table {
            /// `(name, value)` of every counter.
            pub(super) fn figures(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
                [$((stringify!($field), &self.$field)),*]
                    .into_iter()
                    .map(|(name, counter)| (name, counter.load(Ordering::Relaxed)))
            }

            pub(super) fn reset(&self) {
                $(self.$field.store(0, Ordering::Relaxed);)*
            }
        }
    };
}

counter_table! {
    /// The cache's own counters (the L1's come from the LRU).
    SharedCounters {
        /// Lookups that returned nothing (neither tier had the key).
        misses,
        l2_hits,
        /// Lookups Redis answered without a valid entry for the key
        /// (absent, rejected or forged).
        l2_misses,
        l2_errors,
        l2_skipped,
        gated,
        rejected_entries,
        forged_entries,
        /// Entries Redis announced above `max_value_bytes`: refused unread.
        oversized_entries,
        /// Values not shared because their entry would exceed `max_value_bytes`.
        oversized_values,
        /// Generation syncs refused: the hash had more fields than a
        /// namespace can (planted).
        oversized_generations,
        unencodable_values,
        unencodable_keys,
        secret_keys,
        writes_queued,
        writes_deferred,
        writes_dropped,
        bytes_read,
        bytes_written,
        /// Misses that took a single-flight lock and computed.
        flights_led,
        /// Misses that waited for another process's value.
        flights_waited,
        /// Waits that ran out (then the waiter computed).
        flights_timed_out,
        /// Locks found that no leader of this cache could have taken (no
        /// valid tag, no expiry, or an expiry beyond the wait): ignored.
        flights_planted_locks,
        /// Recorded compute times that did not verify: ignored.
        flights_planted_costs,
    }
}

counter_table! {
    /// One method's counters (its L1 hits are counted by its entries).
    MethodCounters {
        l2_hits,
        /// Lookups that returned nothing.
        misses,
        /// Lookups whose key could not be hashed (Odoo counts them as `err`).
        errors,
        redis_errors,
        rejected_entries,
        forged_entries,
        local_only,
        bytes_read,
        bytes_written,
        /// Values computed after a Redis miss and stored (timed for single flight).
        computations,
        /// Their compute time, microseconds.
        compute_us,
    }
}

pub(super) fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

pub(super) struct MethodEntry {
    /// Kept alive so its address cannot be reused by another function.
    _func: Py<PyAny>,
    /// Its qualified name, computed once (None: it has none).
    pub(super) name: Option<Arc<str>>,
    /// Carried by this method's L1 entries: an L1 hit costs one atomic add.
    pub(super) l1_hits: Arc<AtomicU64>,
    pub(super) counters: MethodCounters,
    pub(super) redis_latency: LatencyHistogram,
    pub(super) cost: MethodCost,
}

/// Methods seen by a cache, by function address.
pub(super) type Methods = HashMap<usize, Arc<MethodEntry>>;

/// Applies `update` to the counters of `method`, if any.
pub(super) fn count(method: Option<&MethodEntry>, update: impl FnOnce(&MethodCounters)) {
    if let Some(method) = method {
        update(&method.counters);
    }
}

impl TwoTierCache {
    /// The counters and name of the method of a key: one lock per access,
    /// the name computed only the first time a method is seen.
    pub(super) fn method_entry(
        &self,
        method: Option<&Bound<'_, PyAny>>,
    ) -> Option<Arc<MethodEntry>> {
        let method = method?;
        let address = method.as_ptr() as usize;
        if let Some(entry) = self.methods.lock().get(&address) {
            return Some(Arc::clone(entry));
        }
        // Named outside the lock: it runs Python code.
        let name = method_name(method).map(Arc::from);
        let mut methods = self.methods.lock();
        let entry = methods.entry(address).or_insert_with(|| {
            Arc::new(MethodEntry {
                _func: method.clone().unbind(),
                name,
                l1_hits: Arc::default(),
                counters: MethodCounters::default(),
                redis_latency: LatencyHistogram::default(),
                cost: MethodCost::default(),
            })
        });
        Some(Arc::clone(entry))
    }

    /// Adds the cache's own figures to `dict`.
    pub(super) fn put_figures(&self, dict: &Bound<'_, PyDict>) -> PyResult<()> {
        for (label, count) in self.counters.figures() {
            dict.set_item(label, count)?;
        }
        dict.set_item("redis_latency_p50_us", self.latency.quantile_micros(0.5))?;
        dict.set_item("redis_latency_p99_us", self.latency.quantile_micros(0.99))?;
        Ok(())
    }

    /// `{method name: figures}`.
    pub(super) fn method_figures<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        // Copied out first: building dicts allocates, and a garbage
        // collection may then run Python code, which must not happen under
        // the lock.
        let copies: Vec<MethodFigures> = self
            .methods
            .lock()
            .values()
            .map(|entry| MethodFigures {
                name: entry.name.clone(),
                l1_hits: entry.l1_hits.load(Ordering::Relaxed),
                counts: entry.counters.figures().collect(),
                p50: entry.redis_latency.quantile_micros(0.5),
                p99: entry.redis_latency.quantile_micros(0.99),
                latency_buckets: entry.redis_latency.nonempty_buckets(),
                latency_sum_us: entry.redis_latency.sum_micros(),
            })
            .collect();
        let methods = PyDict::new(py);
        for figures in copies {
            let name = figures.name.clone();
            methods.set_item(
                name.as_deref().unwrap_or("<unknown>"),
                figures.into_dict(py)?,
            )?;
        }
        Ok(methods)
    }

    pub(super) fn reset_counters(&self) {
        // Zeroed in place: live L1 entries keep counting into the same Arcs.
        for entry in self.methods.lock().values() {
            entry.l1_hits.store(0, Ordering::Relaxed);
            entry.counters.reset();
            entry.redis_latency.reset();
        }
        self.latency.reset();
        self.counters.reset();
    }
}

/// One method's figures, copied out of the lock.
struct MethodFigures {
    name: Option<Arc<str>>,
    l1_hits: u64,
    counts: Vec<(&'static str, u64)>,
    p50: Option<f64>,
    p99: Option<f64>,
    latency_buckets: Vec<(f64, u64)>,
    latency_sum_us: u64,
}

impl MethodFigures {
    fn count(&self, label: &str) -> u64 {
        self.counts
            .iter()
            .find(|(name, _)| *name == label)
            .map_or(0, |(_, count)| *count)
    }

    fn into_dict(self, py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
        let dict = PyDict::new(py);
        dict.set_item("l1_hits", self.l1_hits)?;
        for (label, count) in &self.counts {
            dict.set_item(*label, *count)?;
        }
        let hits = self.l1_hits + self.count("l2_hits");
        let lookups = hits + self.count("misses");
        let ratio = if lookups > 0 {
            hits as f64 / lookups as f64
        } else {
            0.0
        };
        dict.set_item("hit_ratio", ratio)?;
        dict.set_item("redis_latency_p50_us", self.p50)?;
        dict.set_item("redis_latency_p99_us", self.p99)?;
        dict.set_item("redis_latency_buckets_us", self.latency_buckets)?;
        dict.set_item("redis_latency_sum_us", self.latency_sum_us)?;
        Ok(dict)
    }
}
