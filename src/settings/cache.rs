//! `CacheSettings`: the shared cache's options, checked together.

use pyo3::prelude::*;

use super::options::*;
use super::rules::quoted;
use super::{Raw, CACHE};
use crate::errors::ConfigError;
use crate::redis::url;

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
    /// Every L1 of the process together, in bytes (`l1_bound`).
    pub l1_max_bytes: u64,
    /// Where that bound comes from: the option's name,
    /// `limit_memory_soft`, or `default`.
    pub l1_max_bytes_from: String,
    /// Cached methods' hit path in Rust (`native_lookup.py`).
    pub native_lookup: bool,
}

/// The process's L1 bound in bytes, and where it comes from: the option
/// when written; else, under Odoo, `L1_SHARE_OF_MEMORY_SOFT` of
/// `limit_memory_soft` (bytes; 0 or unset is Odoo's "no limit"), at least
/// the option's minimum; else the option's default.
fn l1_bound(raw: &Raw, memory_soft_limit: Option<i64>) -> Result<(u64, &'static str), String> {
    if raw.raw(L1_MAX_MB.name).is_some() {
        return Ok((raw.get(&L1_MAX_MB)? << 20, L1_MAX_MB.name));
    }
    Ok(
        match memory_soft_limit.and_then(|limit| u64::try_from(limit).ok()) {
            Some(limit) if limit > 0 => (
                (limit / L1_SHARE_OF_MEMORY_SOFT).max(L1_MAX_MB.minimum << 20),
                "limit_memory_soft",
            ),
            _ => (L1_MAX_BYTES, "default"),
        },
    )
}

impl CacheSettings {
    fn from_raw(
        raw: &Raw,
        known_caches: &[String],
        memory_soft_limit: Option<i64>,
    ) -> Result<CacheSettings, String> {
        let url = raw.get(&URL)?;
        let prefix = raw.get(&PREFIX)?;
        // The default names only those of this Odoo (17.0 has no 'stable');
        // a name the operator wrote must exist.
        let mut shared_caches = raw.get(&SHARED_CACHES)?;
        if raw.raw(SHARED_CACHES.name).is_some() {
            if let Some(unknown) = shared_caches
                .iter()
                .find(|name| !known_caches.contains(name))
            {
                return Err(format!(
                    "{} names unknown cache {} (this Odoo has: {}).",
                    raw.label(SHARED_CACHES.name),
                    quoted(unknown),
                    known_caches.join(", ")
                ));
            }
        } else {
            shared_caches.retain(|name| known_caches.contains(name));
        }
        // The built-in secret list always applies: an option can add
        // methods, never make a password-keyed method shared.
        let mut local_methods: Vec<String> = BUILT_IN_LOCAL_METHODS
            .iter()
            .map(|name| name.to_string())
            .collect();
        local_methods.extend(raw.get(&LOCAL_METHODS)?);
        let write_queue_mb = raw.get(&WRITE_QUEUE_MB)?;
        let (l1_max_bytes, l1_max_bytes_from) = l1_bound(raw, memory_soft_limit)?;
        Ok(CacheSettings {
            url,
            expire: raw.get(&EXPIRE)?,
            prefix,
            shared_caches,
            local_methods,
            connect_timeout: raw.get(&CONNECT_TIMEOUT)?,
            socket_timeout: raw.get(&SOCKET_TIMEOUT)?,
            write_queue: raw.get(&WRITE_QUEUE)?,
            write_queue_bytes: write_queue_mb << 20,
            max_value_bytes: raw.get(&MAX_VALUE_MB)? << 20,
            l1_max_bytes,
            l1_max_bytes_from: l1_max_bytes_from.to_string(),
            native_lookup: raw.get(&NATIVE_LOOKUP)?,
        })
    }
}

#[pymethods]
impl CacheSettings {
    /// Reads the options from `options` (a mapping of name -> raw string or
    /// None, or an `OptionSource`) for an Odoo whose registry has
    /// `known_caches` and whose `limit_memory_soft` is `memory_soft_limit`
    /// (bytes; None outside Odoo); raises ConfigError.
    #[staticmethod]
    #[pyo3(signature = (options, known_caches, memory_soft_limit = None))]
    fn parse(
        options: &Bound<'_, PyAny>,
        known_caches: Vec<String>,
        memory_soft_limit: Option<i64>,
    ) -> PyResult<CacheSettings> {
        let raw = Raw::read(options, &CACHE, Default::default())?;
        CacheSettings::from_raw(&raw, &known_caches, memory_soft_limit)
            .map_err(ConfigError::new_err)
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
        let settings = CacheSettings::from_raw(&Raw::default(), &known(), None).unwrap();
        assert_eq!(settings.url, None);
        assert_eq!(settings.prefix, "ormcache:");
        assert_eq!(settings.shared_caches, ["default", "assets", "templates"]);
        assert_eq!(
            (settings.socket_timeout, settings.connect_timeout),
            (0.25, 0.5)
        );
        assert_eq!(settings.write_queue_bytes, 64 << 20);
        assert_eq!(settings.write_queue_bytes, WRITE_QUEUE_BYTES);
        assert_eq!(settings.max_value_bytes, MAX_VALUE_BYTES);
        assert_eq!(settings.l1_max_bytes, L1_MAX_BYTES);
        assert!(settings.native_lookup);
        assert!(settings
            .local_methods
            .contains(&"res.users.check".to_string()));
    }

    #[test]
    fn every_error_is_one_sentence_naming_the_option() {
        let cases = [
            (NATIVE_LOOKUP.name, "maybe"),
            (EXPIRE.name, "soon"),
            (EXPIRE.name, "0"),
            (SOCKET_TIMEOUT.name, "nan"),
            (PREFIX.name, "a b"),
            (SHARED_CACHES.name, "stable"),
            (URL.name, "http://u:hunter2@h"),
            (L1_MAX_MB.name, "0"),
            (L1_MAX_MB.name, "half"),
        ];
        for (option, value) in cases {
            let err = CacheSettings::from_raw(&Raw::with(&[(option, value)]), &known(), None)
                .err()
                .unwrap();
            assert!(err.starts_with(option), "{err}");
            assert!(err.ends_with('.') && !err.contains('\n'), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn the_l1_bound_is_the_option_else_a_share_of_odoos_soft_limit() {
        let bound = |pairs: &[(&'static str, &str)], soft: Option<i64>| {
            let settings = CacheSettings::from_raw(&Raw::with(pairs), &known(), soft).unwrap();
            (settings.l1_max_bytes, settings.l1_max_bytes_from)
        };
        let odoo_default = 2048 << 20;
        assert_eq!(
            bound(&[], Some(odoo_default)),
            (512 << 20, "limit_memory_soft".into())
        );
        assert_eq!(
            bound(&[], Some(6 << 30)),
            (1536 << 20, "limit_memory_soft".into())
        );
        let written = (300 << 20, L1_MAX_MB.name.into());
        assert_eq!(
            bound(&[(L1_MAX_MB.name, "300")], Some(odoo_default)),
            written
        );
        // Odoo's 0 is "no limit": the default bound stays.
        for soft in [None, Some(0), Some(-1)] {
            assert_eq!(bound(&[], soft), (L1_MAX_BYTES, "default".into()));
        }
        assert_eq!(
            bound(&[], Some(1000)),
            (1 << 20, "limit_memory_soft".into())
        );
    }
}
