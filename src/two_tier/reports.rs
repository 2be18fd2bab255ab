//! What the cache tells the operator through Python's `logging` (logger
//! `ormcache_redis.cache`): once per method, once per process, or at most
//! once a minute, never under a lock (logging runs Python code).

use std::collections::HashSet;
use std::sync::Once;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pyo3::prelude::*;

use super::TwoTierCache;

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
pub(super) struct RateLimitedLog {
    interval: Duration,
    last: Option<Instant>,
    unreported: u64,
}

impl RateLimitedLog {
    pub(super) fn new(interval: Duration) -> Self {
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
static NO_SECRET_WARNING: Once = Once::new();

impl TwoTierCache {
    /// Says once per method why its keys or values cannot be shared:
    /// otherwise the only trace is a counter, and a user wonders why
    /// nothing is shared.
    pub(super) fn warn_once(
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
    pub(super) fn report_forged(&self, py: Python<'_>) {
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

    pub(super) fn warn_no_secret(&self, py: Python<'_>) {
        NO_SECRET_WARNING.call_once(|| {
            log_warning(
                py,
                format!(
                    "cache {:?} has no secret: entries in Redis are checked for \
                     corruption, but anyone who can write to Redis can plant values; \
                     pass TwoTierCache(..., secret=...)",
                    self.name
                ),
            )
        });
    }
}
