//! `SessionSettings`: where HTTP sessions go, checked together; the
//! session store and the migration command read them alike.

use std::collections::HashMap;

use pyo3::prelude::*;

use super::options::*;
use super::{Raw, SESSIONS};
use crate::errors::ConfigError;
use crate::redis::url;

/// Where HTTP sessions go when `session_store = redis`.
#[pyclass(module = "ormcache_redis._native", frozen, get_all, eq)]
#[derive(PartialEq, Debug)]
pub struct SessionSettings {
    pub url: String,
    pub prefix: String,
    /// Seconds an anonymous session lives (never above Odoo's lifetime).
    pub anonymous_ttl: u64,
    /// The deadline of one Redis call for a session.
    pub timeout: f64,
    /// `session_store_secret`: seals session ids so `to-files` can name
    /// the files again.
    pub secret: Option<String>,
}

impl SessionSettings {
    /// None: Odoo's filesystem store stays.
    fn from_raw(raw: &Raw) -> Result<Option<SessionSettings>, String> {
        if raw.get(&SESSION_STORE)? != "redis" {
            return Ok(None);
        }
        let Some(url) = raw.get(&SESSION_URL)? else {
            return Err("session_store = redis needs session_store_url \
                        (e.g. redis://localhost:6379/0), in odoo.conf, SESSION_STORE_URL or REDIS_URL."
                .to_string());
        };
        let prefix = raw.get(&SESSION_PREFIX)?;
        let anonymous_ttl = raw.get(&SESSION_ANONYMOUS_TTL)?;
        Ok(Some(SessionSettings {
            url,
            prefix,
            anonymous_ttl: (anonymous_ttl.round() as u64).max(1),
            timeout: raw.get(&SESSION_TIMEOUT)?,
            secret: raw.get(&SESSION_SECRET)?,
        }))
    }
}

#[pymethods]
impl SessionSettings {
    /// Reads the `session_store*` options from `options` (a mapping of
    /// name -> raw string or None, or an `OptionSource`); None for Odoo's
    /// filesystem store; raises ConfigError. `labels` names in the error
    /// sentences the options a command line gave (option -> flag).
    #[staticmethod]
    #[pyo3(signature = (options, labels = None))]
    fn parse(
        options: &Bound<'_, PyAny>,
        labels: Option<HashMap<String, String>>,
    ) -> PyResult<Option<SessionSettings>> {
        let raw = Raw::read(options, &SESSIONS, labels.unwrap_or_default())?;
        SessionSettings::from_raw(&raw).map_err(ConfigError::new_err)
    }

    #[new]
    #[pyo3(signature = (
        url, *, prefix = SESSION_PREFIX.default.to_string(),
        anonymous_ttl = SESSION_ANONYMOUS_TTL.default as u64, timeout = SESSION_TIMEOUT.default,
        secret = None
    ))]
    fn py_new(
        url: String,
        prefix: String,
        anonymous_ttl: u64,
        timeout: f64,
        secret: Option<String>,
    ) -> SessionSettings {
        SessionSettings {
            url,
            prefix,
            anonymous_ttl,
            timeout,
            secret,
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "<SessionSettings url={:?} prefix={:?} anonymous_ttl={}>",
            url::redact(&self.url),
            self.prefix,
            self.anonymous_ttl
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filesystem_unless_redis() {
        assert_eq!(SessionSettings::from_raw(&Raw::default()), Ok(None));
        let raw = Raw::with(&[(SESSION_STORE.name, "FS")]);
        assert_eq!(SessionSettings::from_raw(&raw), Ok(None));
        let raw = Raw::with(&[(SESSION_STORE.name, "memcached")]);
        assert_eq!(
            SessionSettings::from_raw(&raw).unwrap_err(),
            "session_store must be 'redis' or 'filesystem', got 'memcached'."
        );
    }

    #[test]
    fn defaults() {
        let raw = Raw::with(&[
            (SESSION_STORE.name, "redis"),
            (SESSION_URL.name, "redis://h"),
        ]);
        let settings = SessionSettings::from_raw(&raw).unwrap().unwrap();
        assert_eq!(settings.prefix, "odoo:session:");
        assert_eq!((settings.anonymous_ttl, settings.timeout), (14400, 1.0));
        assert_eq!(settings.secret, None);
    }
}
