//! Who may use Redis and where a key lives there: the cache's settings,
//! the gate's verdict, methods and key arguments kept local, addresses.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};

use super::counters::{bump, MethodEntry};
use super::flight::FlightSettings;
use super::unit::UnitOfWork;
use super::TwoTierCache;
use crate::crypto::{self, Mac};
use crate::entry;
use crate::keys::{canonical_method_key, key_digest};
use crate::naming::method_name;

/// Mutable settings, changed rarely (registry reload, cache clear).
pub(super) struct Settings {
    pub(super) namespace: Vec<u8>,
    /// The Redis hash of the namespace's method generations.
    pub(super) generations_key: Vec<u8>,
    pub(super) prefix: String,
    /// Redis Cluster hash tag of the generations key (see `generations_key`).
    pub(super) hash_tag: Option<String>,
    pub(super) ttl: u64,
    pub(super) shared: bool,
    pub(super) local_methods: HashSet<String>,
    /// Lower-case fragments that keep a key local when one of its string
    /// arguments contains them (`_get_param('database.secret')`).
    pub(super) secret_markers: Vec<String>,
    /// Authenticates entries; keyed by the caller's secret.
    pub(super) mac: Mac,
    /// Whether `mac` is keyed by a real secret (else: integrity only).
    pub(super) authenticated: bool,
    pub(super) flight: FlightSettings,
}

impl Settings {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        namespace: Vec<u8>,
        prefix: &str,
        hash_tag: Option<String>,
        ttl: u64,
        local_methods: HashSet<String>,
        secret_markers: Vec<String>,
        secret: Option<&[u8]>,
        flight: FlightSettings,
    ) -> Settings {
        Settings {
            generations_key: generations_key(prefix, hash_tag.as_deref(), &namespace),
            namespace,
            prefix: prefix.to_string(),
            hash_tag,
            ttl,
            shared: true,
            local_methods,
            secret_markers,
            mac: entry_mac(secret),
            authenticated: secret.is_some(),
            flight,
        }
    }

    pub(super) fn set_secret(&mut self, secret: Option<&[u8]>) {
        self.mac = entry_mac(secret);
        self.authenticated = secret.is_some();
    }

    pub(super) fn set_namespace(&mut self, namespace: Vec<u8>) {
        self.generations_key = generations_key(&self.prefix, self.hash_tag.as_deref(), &namespace);
        self.namespace = namespace;
    }
}

/// The key of a cache without a secret: detects corruption, not forgery.
fn entry_mac(secret: Option<&[u8]>) -> Mac {
    Mac::new(&crypto::derive_key(
        secret.unwrap_or_default(),
        "cache-entry",
    ))
}

/// The Redis hash holding the per-method generation tokens of a namespace.
/// Its Redis Cluster hash tag is `hash_tag` (`{prefix}{tag}:g:{hex}`), so
/// that it shares its slot with the caller's keys of the same tag (the
/// addon: every generations hash of a database, its methods-version key
/// and flush epochs, which transactions change together), else its own
/// digest (`{prefix}g:{hex}`, braces included). Either way the key a
/// clear moves next to it (`follow::clears_key`, this key plus a suffix)
/// is in its slot. Entries carry no tag: they spread over the cluster.
fn generations_key(prefix: &str, hash_tag: Option<&str>, namespace: &[u8]) -> Vec<u8> {
    let digest = key_digest(namespace, b"method-generations");
    match hash_tag {
        None => {
            let mut key = entry::redis_key(prefix, b"g:{", &digest);
            key.push(b'}');
            key
        }
        Some(tag) => entry::redis_key(&format!("{prefix}{{{tag}}}:"), entry::GENERATIONS, &digest),
    }
}

/// A hash tag as Redis Cluster reads one: what lies between the key's first
/// `{` and the next `}`, so neither may appear in it.
pub(super) fn checked_hash_tag(tag: Option<String>) -> PyResult<Option<String>> {
    match tag {
        Some(tag) if tag.is_empty() || tag.contains(['{', '}']) => Err(PyValueError::new_err(
            format!("hash_tag must be non-empty and hold no braces, got {tag:?}"),
        )),
        tag => Ok(tag),
    }
}

/// A secret from Python: non-empty str or bytes.
pub(super) fn checked_secret(secret: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let bytes = crypto::secret_bytes(secret)?;
    if bytes.is_empty() {
        return Err(PyValueError::new_err("secret must not be empty"));
    }
    Ok(bytes)
}

pub(super) fn lowercase(markers: Vec<String>) -> Vec<String> {
    markers
        .into_iter()
        .filter(|m| !m.is_empty())
        .map(|m| m.to_lowercase())
        .collect()
}

pub(super) fn validate_ttl(ttl: i64) -> PyResult<u64> {
    if ttl < 1 {
        return Err(PyValueError::new_err(format!(
            "ttl must be a whole number of seconds of at least 1, got {ttl}"
        )));
    }
    Ok(ttl as u64)
}

/// A positive number of seconds for option `name`.
pub(super) fn checked_interval(name: &str, seconds: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "{name} must be a positive number of seconds, got {seconds}"
            ))
        })
}

/// `single_flight_after` (0: every method with a measured cost) and
/// `single_flight_wait` checked and converted.
pub(super) fn flight_settings(after: Option<f64>, wait: f64) -> PyResult<FlightSettings> {
    let after = match after {
        Some(0.0) => Some(Duration::ZERO),
        Some(after) => Some(checked_interval("single_flight_after", after)?),
        None => None,
    };
    Ok(FlightSettings {
        after,
        wait: checked_interval("single_flight_wait", wait)?,
    })
}

/// A method given by its function or its `module.qualname` string.
pub(super) fn method_name_arg(method: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(name) = method.extract::<String>() {
        return Ok(name);
    }
    method_name(method)
        .ok_or_else(|| PyValueError::new_err("expected a function or its 'module.qualname' string"))
}

/// Whether a string argument of the key (after the model and the method)
/// contains one of the markers, case-insensitively.
fn names_a_secret(key: &Bound<'_, PyAny>, markers: &[String]) -> bool {
    let Ok(tuple) = key.cast::<PyTuple>() else {
        return false;
    };
    tuple.iter().skip(2).any(|item| {
        item.cast::<PyString>()
            .ok()
            .and_then(|text| text.to_str().ok().map(str::to_lowercase))
            .is_some_and(|text| markers.iter().any(|marker| text.contains(marker.as_str())))
    })
}

/// What the gate allows for one access of the shared tier.
pub(super) enum Access {
    Local,
    Shared,
    /// Read Redis; keep writes in this unit of work until it commits.
    Deferred(Py<UnitOfWork>),
}

/// One shared-tier address: everything needed to read or write an entry.
pub(super) struct Address {
    pub(super) digest: [u8; 32],
    pub(super) redis_key: Vec<u8>,
    pub(super) method_name: Option<Arc<str>>,
}

impl TwoTierCache {
    pub(super) fn access(&self, py: Python<'_>) -> PyResult<Access> {
        if !self.settings.read().shared {
            return Ok(Access::Local);
        }
        let Some(client) = &self.client else {
            return Ok(Access::Local);
        };
        if !client.get().pool().would_attempt() {
            // The breaker is open: do not even build the key.
            bump(&self.counters.l2_skipped, 1);
            return Ok(Access::Local);
        }
        let gate = self.gate.read().as_ref().map(|g| g.clone_ref(py));
        let Some(gate) = gate else {
            return Ok(Access::Shared);
        };
        let verdict = gate.bind(py).call0()?;
        if let Ok(unit) = verdict.cast::<UnitOfWork>() {
            return Ok(Access::Deferred(unit.clone().unbind()));
        }
        if verdict.is_truthy()? {
            Ok(Access::Shared)
        } else {
            bump(&self.counters.gated, 1);
            Ok(Access::Local)
        }
    }

    /// Computes where `key` lives in Redis; None when it must stay local.
    pub(super) fn address(
        &self,
        key: &Bound<'_, PyAny>,
        method: Option<&MethodEntry>,
    ) -> Option<Address> {
        let method_name = method.and_then(|m| m.name.clone());
        let settings = self.settings.read();
        if let Some(name) = &method_name {
            if settings.local_methods.contains(&**name) {
                return None;
            }
        }
        if !settings.secret_markers.is_empty() && names_a_secret(key, &settings.secret_markers) {
            bump(&self.counters.secret_keys, 1);
            return None;
        }
        let mut canonical = Vec::with_capacity(64);
        if let Err(err) = canonical_method_key(key, method_name.as_deref(), &mut canonical) {
            bump(&self.counters.unencodable_keys, 1);
            drop(settings);
            self.warn_once(
                key.py(),
                &self.warned_methods,
                "keys",
                method_name.as_deref(),
                &err,
            );
            return None;
        }
        let digest = key_digest(&settings.namespace, &canonical);
        let redis_key = entry::redis_key(&settings.prefix, entry::DATA, &digest);
        Some(Address {
            digest,
            redis_key,
            method_name,
        })
    }
}
