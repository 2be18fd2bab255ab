//! Monotonic deadlines for TTLs: one clock for every tier.

use std::sync::OnceLock;
use std::time::Instant;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// Monotonic nanoseconds since the first call in this process.
pub fn now_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64 + 1
}

/// Converts a TTL in seconds into an absolute deadline (0 = never expires).
pub fn deadline_after(ttl_seconds: Option<f64>) -> PyResult<u64> {
    match ttl_seconds {
        None => Ok(0),
        Some(ttl) if ttl.is_finite() && ttl > 0.0 => Ok(now_ns() + (ttl * 1e9) as u64),
        Some(ttl) => Err(PyValueError::new_err(format!(
            "ttl must be a positive number of seconds, got {ttl}"
        ))),
    }
}
