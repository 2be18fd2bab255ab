//! Python exception types raised by the engine.

use pyo3::create_exception;
use pyo3::exceptions::{PyConnectionError, PyTypeError, PyValueError};
use pyo3::prelude::*;

// A value of a type outside the closed set: the caller keeps it in L1 only.
create_exception!(
    _native,
    EncodeError,
    PyTypeError,
    "A value (or key) cannot be encoded by the safe codec."
);
// Bytes that are not a valid encoding: callers of the cache see a miss.
create_exception!(
    _native,
    DecodeError,
    PyValueError,
    "Bytes are not a valid ormcache_redis encoding."
);
// Redis could not be reached or answered an error within the timeouts.
create_exception!(
    _native,
    RedisUnavailable,
    PyConnectionError,
    "Redis is unreachable, timed out, or the circuit breaker is open."
);
// Redis answered with an error reply (wrong type, unknown command...).
create_exception!(
    _native,
    RedisReplyError,
    pyo3::exceptions::PyException,
    "Redis answered a command with an error reply."
);
// A configuration value (URL, timeout, size) is invalid.
create_exception!(
    _native,
    ConfigError,
    PyValueError,
    "An ormcache_redis configuration value is invalid."
);

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("EncodeError", py.get_type::<EncodeError>())?;
    m.add("DecodeError", py.get_type::<DecodeError>())?;
    m.add("RedisUnavailable", py.get_type::<RedisUnavailable>())?;
    m.add("RedisReplyError", py.get_type::<RedisReplyError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    Ok(())
}

/// Shown in tracebacks and reprs: the public module (`ormcache_redis`), where
/// the package re-exports them, not the extension's file name.
pub fn set_public_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    for name in [
        "EncodeError",
        "DecodeError",
        "FormatVersionError",
        "RedisUnavailable",
        "RedisReplyError",
        "ConfigError",
    ] {
        m.getattr(name)?.setattr("__module__", "ormcache_redis")?;
    }
    Ok(())
}
