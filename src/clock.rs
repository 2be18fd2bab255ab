//! Monotonic deadlines for TTLs: one clock for every tier.

use std::sync::OnceLock;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// Monotonic nanoseconds since the first call in this process.
///
/// Every L1 hit on an entry with a TTL reads this clock, so on Linux it is
/// the kernel's coarse monotonic clock: read from the vDSO without the
/// TSC, several times cheaper than `CLOCK_MONOTONIC` (a tenth of a whole
/// native hit on a VM), with a resolution of one scheduler tick (1 to
/// 4 ms), which is what a TTL in seconds needs.
pub fn now_ns() -> u64 {
    static START: OnceLock<u64> = OnceLock::new();
    let now = coarse_monotonic_ns();
    now - *START.get_or_init(|| now) + 1
}

#[cfg(target_os = "linux")]
fn coarse_monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer; CLOCK_MONOTONIC_COARSE exists on every
    // Linux since 2.6.32 and cannot fail with it.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

#[cfg(not(target_os = "linux"))]
fn coarse_monotonic_ns() -> u64 {
    static ORIGIN: OnceLock<std::time::Instant> = OnceLock::new();
    ORIGIN
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
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
