//! The addon's options, parsed once, with every rule and error sentence.
//!
//! Python gathers the raw strings (odoo.conf first, the environment second:
//! `ormcache_redis.config.OptionSource`) into a mapping; `pythonize` fills
//! the serde-derived `RawOptions` from it, and each value is checked here.
//! A bad value is a `ConfigError` of one sentence naming the option, which
//! is what start-up shows the operator. See docs/decisions/serde.md for
//! why serde is used here and not in the codec.

use pyo3::prelude::*;
use serde::Deserialize;

use crate::errors::ConfigError;
use crate::redis::config::DEFAULT_MAX_VALUE_BYTES;
use crate::redis::url;

/// Caches whose values are plain data that every process computes alike.
/// `templates` holds views ready for the web client (`get_views`) and
/// template ids, shared, next to compiled QWeb code, which cannot be
/// encoded and stays in the process (and is listed below so that it is not
/// even tried). routing* (werkzeug maps, endpoints), templates.cached_values
/// and groups (SetDefinitions) hold process-bound objects: they stay local.
pub const DEFAULT_SHARED_CACHES: [&str; 4] = ["default", "stable", "assets", "templates"];

/// Methods that never leave the process, in Odoo's own words
/// (model.method): those keyed on secrets (a cache key never leaves the
/// process when it holds a password or a session id, hashed or not: a fast
/// hash of a password is guessable offline), and those whose values are
/// bound to the process.
pub const DEFAULT_LOCAL_METHODS: [&str; 6] = [
    "res.users.check",                  // 17.0, 18.0: keyed on (uid, passwd)
    "res.users._check_uid_passwd",      // 19.0: keyed on (uid, passwd)
    "res.users._compute_session_token", // keyed on the session id
    "res.users._crypt_context",         // a passlib CryptContext: process-bound
    // 19.0: compiled QWeb functions, process-bound.
    "ir.qweb._generate_code_cached",
    // 19.0: cached for its side effect (it clears the cursor's preloaded
    // views once per clear of `templates` in this process): a value from
    // another process would skip it.
    "ir.ui.view._clear_preload_views_cache_if_needed",
];

/// The raw option strings, absent when unset.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawOptions {
    ormcache_redis_url: Option<String>,
    ormcache_redis_expire: Option<String>,
    ormcache_redis_prefix: Option<String>,
    ormcache_redis_shared_caches: Option<String>,
    ormcache_redis_local_methods: Option<String>,
    ormcache_redis_connect_timeout: Option<String>,
    ormcache_redis_socket_timeout: Option<String>,
    ormcache_redis_write_queue: Option<String>,
    ormcache_redis_write_queue_mb: Option<String>,
    ormcache_redis_max_value_mb: Option<String>,
    ormcache_redis_native_lookup: Option<String>,
}

/// The shared tier's settings, valid by construction.
#[pyclass(module = "ormcache_redis._native", frozen, get_all)]
pub struct CacheSettings {
    /// None: caches stay in the process (L1 only).
    pub url: Option<String>,
    pub expire: u64,
    pub prefix: String,
    pub shared_caches: Vec<String>,
    /// The built-in secret-keyed methods, then the option's.
    pub local_methods: Vec<String>,
    pub connect_timeout: f64,
    pub socket_timeout: f64,
    pub write_queue: u64,
    pub write_queue_bytes: u64,
    /// The largest entry read from or written to Redis: a larger one is
    /// refused on its announced length, unread.
    pub max_value_bytes: u64,
    /// Cached methods' hit path in Rust (`native_lookup.py`).
    pub native_lookup: bool,
}

/// Python's repr of a string, as the operator wrote it.
fn quoted(raw: &str) -> String {
    format!("'{}'", raw.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Seconds in (`above`, `at_most`].
pub fn seconds(
    option: &str,
    raw: Option<&str>,
    default: f64,
    above: f64,
    at_most: f64,
) -> Result<f64, String> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    let value: f64 = raw
        .trim()
        .parse()
        .map_err(|_| format!("{option} must be a number of seconds, got {}.", quoted(raw)))?;
    if !value.is_finite() || value <= above || value > at_most {
        return Err(format!(
            "{option} must be a number of seconds above {above} and at most {at_most}, got {}.",
            quoted(raw)
        ));
    }
    Ok(value)
}

/// A yes/no option, written as Odoo writes its own booleans.
pub fn switch(option: &str, raw: Option<&str>, default: bool) -> Result<bool, String> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!(
            "{option} must be True or False, got {}.",
            quoted(raw)
        )),
    }
}

/// A whole number in [`minimum`, `maximum`].
pub fn whole(
    option: &str,
    raw: Option<&str>,
    default: u64,
    minimum: u64,
    maximum: u64,
) -> Result<u64, String> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    let value: i128 = raw
        .trim()
        .parse()
        .map_err(|_| format!("{option} must be a whole number, got {}.", quoted(raw)))?;
    if value < minimum as i128 || value > maximum as i128 {
        return Err(format!(
            "{option} must be between {minimum} and {maximum}, got {}.",
            quoted(raw)
        ));
    }
    Ok(value as u64)
}

/// A comma-separated list of names (cache names, method names).
pub fn names(option: &str, raw: Option<&str>) -> Result<Option<Vec<String>>, String> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let names: Vec<String> = raw
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_string)
        .collect();
    if names.iter().any(|name| name.contains(char::is_whitespace)) {
        return Err(format!(
            "{option} must be a comma-separated list of names, got {}.",
            quoted(raw)
        ));
    }
    Ok(Some(names))
}

impl CacheSettings {
    fn from_raw(raw: RawOptions, known_caches: &[String]) -> Result<CacheSettings, String> {
        let url = raw
            .ormcache_redis_url
            .map(|url| url::parse("ormcache_redis_url", &url).map(|_| url))
            .transpose()?;
        let prefix = raw
            .ormcache_redis_prefix
            .unwrap_or_else(|| "ormcache:".to_string());
        if prefix.contains(char::is_whitespace) || prefix.chars().count() > 64 {
            return Err(format!(
                "ormcache_redis_prefix must be at most 64 characters without spaces, got {}.",
                quoted(&prefix)
            ));
        }
        // The default names only those of this Odoo (17.0 has no 'stable');
        // a name the operator wrote must exist.
        let shared_caches = match names(
            "ormcache_redis_shared_caches",
            raw.ormcache_redis_shared_caches.as_deref(),
        )? {
            Some(written) => {
                if let Some(unknown) = written.iter().find(|name| !known_caches.contains(name)) {
                    return Err(format!(
                        "ormcache_redis_shared_caches names unknown cache {} (this Odoo has: {}).",
                        quoted(unknown),
                        known_caches.join(", ")
                    ));
                }
                written
            }
            None => DEFAULT_SHARED_CACHES
                .iter()
                .filter(|name| known_caches.iter().any(|known| known == *name))
                .map(|name| name.to_string())
                .collect(),
        };
        // The built-in secret list always applies: an option can add
        // methods, never make a password-keyed method shared.
        let mut local_methods: Vec<String> = DEFAULT_LOCAL_METHODS
            .iter()
            .map(|name| name.to_string())
            .collect();
        local_methods.extend(
            names(
                "ormcache_redis_local_methods",
                raw.ormcache_redis_local_methods.as_deref(),
            )?
            .unwrap_or_default(),
        );
        let write_queue_mb = whole(
            "ormcache_redis_write_queue_mb",
            raw.ormcache_redis_write_queue_mb.as_deref(),
            64,
            1,
            64 * 1024,
        )?;
        Ok(CacheSettings {
            url,
            expire: whole(
                "ormcache_redis_expire",
                raw.ormcache_redis_expire.as_deref(),
                3600,
                1,
                365 * 86400,
            )?,
            prefix,
            shared_caches,
            local_methods,
            // Bounds background work only (a probe's new connection, write
            // batches): a request never waits for it.
            connect_timeout: seconds(
                "ormcache_redis_connect_timeout",
                raw.ormcache_redis_connect_timeout.as_deref(),
                0.5,
                0.0,
                60.0,
            )?,
            socket_timeout: seconds(
                "ormcache_redis_socket_timeout",
                raw.ormcache_redis_socket_timeout.as_deref(),
                0.25,
                0.0,
                60.0,
            )?,
            write_queue: whole(
                "ormcache_redis_write_queue",
                raw.ormcache_redis_write_queue.as_deref(),
                10_000,
                1,
                10_000_000,
            )?,
            write_queue_bytes: write_queue_mb * 1024 * 1024,
            max_value_bytes: whole(
                "ormcache_redis_max_value_mb",
                raw.ormcache_redis_max_value_mb.as_deref(),
                DEFAULT_MAX_VALUE_BYTES >> 20,
                1,
                512,
            )? << 20,
            native_lookup: switch(
                "ormcache_redis_native_lookup",
                raw.ormcache_redis_native_lookup.as_deref(),
                true,
            )?,
        })
    }
}

#[pymethods]
impl CacheSettings {
    /// Reads the options from `options` (name -> raw string or None) for an
    /// Odoo whose registry has `known_caches`; raises ConfigError.
    #[staticmethod]
    fn parse(options: &Bound<'_, PyAny>, known_caches: Vec<String>) -> PyResult<CacheSettings> {
        let raw: RawOptions = pythonize::depythonize(options).map_err(|err| {
            ConfigError::new_err(format!("ormcache_redis options are not text: {err}."))
        })?;
        CacheSettings::from_raw(raw, &known_caches).map_err(ConfigError::new_err)
    }

    /// Whether a Redis URL is set (else: L1 only).
    #[getter]
    fn enabled(&self) -> bool {
        self.url.is_some()
    }

    fn __repr__(&self) -> String {
        format!(
            "<CacheSettings url={:?} shared={:?} expire={}>",
            self.url.as_deref().map(url::redact),
            self.shared_caches,
            self.expire
        )
    }
}

/// The raw `session_store*` option strings.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawSessionOptions {
    session_store: Option<String>,
    session_store_url: Option<String>,
    session_store_prefix: Option<String>,
    session_store_anonymous_ttl: Option<String>,
    session_store_timeout: Option<String>,
    session_store_secret: Option<String>,
}

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

const SESSION_PREFIX: &str = "odoo:session:";
const SESSION_ANONYMOUS_TTL: f64 = 4.0 * 3600.0;
const SESSION_TIMEOUT: f64 = 1.0;

impl SessionSettings {
    /// None: Odoo's filesystem store stays.
    fn from_raw(raw: RawSessionOptions) -> Result<Option<SessionSettings>, String> {
        let kind = raw
            .session_store
            .unwrap_or_else(|| "filesystem".to_string())
            .to_lowercase();
        if matches!(kind.as_str(), "filesystem" | "file" | "files" | "fs") {
            return Ok(None);
        }
        if kind != "redis" {
            return Err(format!(
                "session_store must be 'redis' or 'filesystem', got {}.",
                quoted(&kind)
            ));
        }
        let Some(url) = raw.session_store_url else {
            return Err("session_store = redis needs session_store_url \
                        (e.g. redis://localhost:6379/0), in odoo.conf, SESSION_STORE_URL or REDIS_URL."
                .to_string());
        };
        url::parse("session_store_url", &url)?;
        let prefix = raw
            .session_store_prefix
            .unwrap_or_else(|| SESSION_PREFIX.to_string());
        if prefix.contains(char::is_whitespace) {
            return Err(format!(
                "session_store_prefix must not contain spaces, got {}.",
                quoted(&prefix)
            ));
        }
        let anonymous_ttl = seconds(
            "session_store_anonymous_ttl",
            raw.session_store_anonymous_ttl.as_deref(),
            SESSION_ANONYMOUS_TTL,
            0.0,
            1e9,
        )?;
        Ok(Some(SessionSettings {
            url,
            prefix,
            anonymous_ttl: (anonymous_ttl.round() as u64).max(1),
            timeout: seconds(
                "session_store_timeout",
                raw.session_store_timeout.as_deref(),
                SESSION_TIMEOUT,
                0.0,
                60.0,
            )?,
            secret: raw.session_store_secret,
        }))
    }
}

#[pymethods]
impl SessionSettings {
    /// Reads the `session_store*` options from `options` (name -> raw
    /// string or None); None for Odoo's filesystem store; raises
    /// ConfigError.
    #[staticmethod]
    fn parse(options: &Bound<'_, PyAny>) -> PyResult<Option<SessionSettings>> {
        let raw: RawSessionOptions = pythonize::depythonize(options).map_err(|err| {
            ConfigError::new_err(format!("session_store options are not text: {err}."))
        })?;
        SessionSettings::from_raw(raw).map_err(ConfigError::new_err)
    }

    #[new]
    #[pyo3(signature = (url, *, prefix = SESSION_PREFIX.to_string(), anonymous_ttl = SESSION_ANONYMOUS_TTL as u64, timeout = SESSION_TIMEOUT, secret = None))]
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

/// The option names `SessionSettings.parse` reads.
#[pyfunction]
fn session_option_names() -> Vec<&'static str> {
    vec![
        "session_store",
        "session_store_url",
        "session_store_prefix",
        "session_store_anonymous_ttl",
        "session_store_timeout",
        "session_store_secret",
    ]
}

/// Seconds option, for the Python side's other options.
#[pyfunction]
#[pyo3(signature = (option, raw, default, *, above = 0.0, at_most = 1e9))]
fn parse_seconds(
    option: &str,
    raw: Option<&str>,
    default: f64,
    above: f64,
    at_most: f64,
) -> PyResult<f64> {
    seconds(option, raw, default, above, at_most).map_err(ConfigError::new_err)
}

/// The option names `CacheSettings.parse` reads.
#[pyfunction]
fn cache_option_names() -> Vec<&'static str> {
    vec![
        "ormcache_redis_url",
        "ormcache_redis_expire",
        "ormcache_redis_prefix",
        "ormcache_redis_shared_caches",
        "ormcache_redis_local_methods",
        "ormcache_redis_connect_timeout",
        "ormcache_redis_socket_timeout",
        "ormcache_redis_write_queue",
        "ormcache_redis_write_queue_mb",
        "ormcache_redis_max_value_mb",
        "ormcache_redis_native_lookup",
    ]
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<CacheSettings>()?;
    m.add_class::<SessionSettings>()?;
    // The session defaults, for the record layout and the migration command.
    m.add("SESSION_PREFIX", SESSION_PREFIX)?;
    m.add("SESSION_ANONYMOUS_TTL", SESSION_ANONYMOUS_TTL as u64)?;
    m.add_function(wrap_pyfunction!(session_option_names, m)?)?;
    m.add_function(wrap_pyfunction!(parse_seconds, m)?)?;
    m.add_function(wrap_pyfunction!(cache_option_names, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<String> {
        ["default", "assets", "templates"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn defaults() {
        let settings = CacheSettings::from_raw(RawOptions::default(), &known()).unwrap();
        assert_eq!(settings.url, None);
        assert_eq!(settings.shared_caches, ["default", "assets", "templates"]);
        assert_eq!(
            (settings.socket_timeout, settings.connect_timeout),
            (0.25, 0.5)
        );
        assert_eq!(settings.write_queue_bytes, 64 << 20);
        assert!(settings.native_lookup);
        assert!(settings
            .local_methods
            .contains(&"res.users.check".to_string()));
    }

    #[test]
    fn every_error_is_one_sentence_naming_the_option() {
        type SetOption = fn(&mut RawOptions, String);
        let cases: [(SetOption, &str, &str); 7] = [
            (
                |r, v| r.ormcache_redis_native_lookup = Some(v),
                "ormcache_redis_native_lookup",
                "maybe",
            ),
            (
                |r, v| r.ormcache_redis_expire = Some(v),
                "ormcache_redis_expire",
                "soon",
            ),
            (
                |r, v| r.ormcache_redis_expire = Some(v),
                "ormcache_redis_expire",
                "0",
            ),
            (
                |r, v| r.ormcache_redis_socket_timeout = Some(v),
                "ormcache_redis_socket_timeout",
                "nan",
            ),
            (
                |r, v| r.ormcache_redis_prefix = Some(v),
                "ormcache_redis_prefix",
                "a b",
            ),
            (
                |r, v| r.ormcache_redis_shared_caches = Some(v),
                "ormcache_redis_shared_caches",
                "stable",
            ),
            (
                |r, v| r.ormcache_redis_url = Some(v),
                "ormcache_redis_url",
                "http://u:hunter2@h",
            ),
        ];
        for (set, option, value) in cases {
            let mut raw = RawOptions::default();
            set(&mut raw, value.to_string());
            let err = CacheSettings::from_raw(raw, &known()).err().unwrap();
            assert!(err.starts_with(option), "{err}");
            assert!(err.ends_with('.') && !err.contains('\n'), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }
}
