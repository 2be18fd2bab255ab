//! Every option, parsed once, with every rule and error sentence.
//!
//! `options.rs` holds each option's name, default and bounds (and nothing
//! else: the engine's own defaults are read from there), `rules.rs` how
//! each kind of option reads its raw string, and the groups below which
//! options each reader parses together: the cache (`CacheSettings`), the
//! secret, the metrics (`MetricsSettings`), the sessions
//! (`SessionSettings`). Every list of option names is derived from these
//! groups. Python gathers the raw strings (odoo.conf first, the
//! environment second: `ormcache_redis.config.OptionSource`); a bad value
//! is a `ConfigError` of one sentence naming the option, which is what
//! start-up shows the operator.

use std::collections::HashMap;

use pyo3::prelude::*;

use crate::errors::ConfigError;

mod cache;
mod metrics;
pub mod options;
pub mod rules;
mod sessions;

pub use cache::CacheSettings;
pub use metrics::MetricsSettings;
use options::*;
use rules::{Rule, Spec};
pub use sessions::SessionSettings;

/// The `ormcache_redis_*` options of the shared cache.
static CACHE: [&dyn Rule; 12] = [
    &URL,
    &EXPIRE,
    &PREFIX,
    &SHARED_CACHES,
    &LOCAL_METHODS,
    &CONNECT_TIMEOUT,
    &SOCKET_TIMEOUT,
    &WRITE_QUEUE,
    &WRITE_QUEUE_MB,
    &MAX_VALUE_MB,
    &L1_MAX_MB,
    &NATIVE_LOOKUP,
];
/// The secret that keys the cache entries and the session records.
static SECRETS: [&dyn Rule; 1] = [&SECRET];
/// Who may read the metrics route, how often processes publish.
static METRICS: [&dyn Rule; 3] = [&METRICS_ALLOW, &METRICS_TOKEN, &METRICS_INTERVAL];
/// The `session_store*` options.
static SESSIONS: [&dyn Rule; 6] = [
    &SESSION_STORE,
    &SESSION_URL,
    &SESSION_PREFIX,
    &SESSION_ANONYMOUS_TTL,
    &SESSION_TIMEOUT,
    &SESSION_SECRET,
];

/// Every option, by group, in the order of the documentation.
pub static GROUPS: [(&str, &[&dyn Rule]); 4] = [
    ("cache", &CACHE),
    ("secret", &SECRETS),
    ("metrics", &METRICS),
    ("sessions", &SESSIONS),
];

/// The raw strings of one group of options (absent when unset), and how
/// an error sentence names each: the option, or the command-line flag
/// that gave its value.
#[derive(Default)]
pub struct Raw {
    values: HashMap<&'static str, String>,
    labels: HashMap<String, String>,
}

impl Raw {
    /// Reads the options of `group` from `options`: a mapping, or anything
    /// with `get(name)` (`OptionSource`), whose errors pass through.
    pub fn read(
        options: &Bound<'_, PyAny>,
        group: &[&dyn Rule],
        labels: HashMap<String, String>,
    ) -> PyResult<Raw> {
        let mut raw = Raw {
            values: HashMap::new(),
            labels,
        };
        for rule in group {
            let name = rule.name();
            let value = options.call_method1("get", (name,))?;
            if value.is_none() {
                continue;
            }
            let text = value.extract::<String>().map_err(|_| {
                ConfigError::new_err(format!(
                    "{} must be text, got {}.",
                    raw.label(name),
                    value
                        .get_type()
                        .name()
                        .map_or("?".into(), |n| n.to_string())
                ))
            })?;
            raw.values.insert(name, text);
        }
        Ok(raw)
    }

    /// What the operator wrote for `name`, None when unset.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// How error sentences name the option `name`.
    pub fn label<'a>(&'a self, name: &'a str) -> &'a str {
        self.labels.get(name).map_or(name, String::as_str)
    }

    /// The option's value, checked by its rule.
    pub fn get<S: Spec>(&self, spec: &S) -> Result<S::Value, String> {
        spec.parse_as(self.label(spec.name()), self.raw(spec.name()))
    }

    #[cfg(test)]
    pub fn with(pairs: &[(&'static str, &str)]) -> Raw {
        Raw {
            values: pairs.iter().map(|(n, v)| (*n, v.to_string())).collect(),
            labels: HashMap::new(),
        }
    }
}

/// One option as Python sees it: `ormcache_redis.config.OPTIONS[name]`.
#[pyclass(module = "ormcache_redis._native", frozen)]
pub struct OptionSpec {
    rule: &'static dyn Rule,
    group: &'static str,
}

#[pymethods]
impl OptionSpec {
    #[getter]
    fn name(&self) -> &'static str {
        self.rule.name()
    }

    /// Its kind of value: url, text, prefix, names, seconds, whole, switch,
    /// choice, secret, token or networks.
    #[getter]
    fn kind(&self) -> &'static str {
        self.rule.kind()
    }

    /// Numbers only: (above, at most] for seconds, [minimum, maximum] for
    /// whole numbers; None for other kinds.
    #[getter]
    fn bounds(&self) -> Option<(f64, f64)> {
        self.rule.bounds()
    }

    /// Which reader parses it: cache, secret, metrics or sessions.
    #[getter]
    fn group(&self) -> &'static str {
        self.group
    }

    /// Its value when unset (None: unset means off, or required).
    #[getter]
    fn default(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.rule.default_py(py)
    }

    /// `raw` checked by the option's rule (None: the default); ConfigError,
    /// one sentence naming `label` (default: the option), when bad.
    #[pyo3(signature = (raw, label = None))]
    fn parse(&self, py: Python<'_>, raw: Option<&str>, label: Option<&str>) -> PyResult<Py<PyAny>> {
        self.rule
            .parse_py(py, label.unwrap_or(self.rule.name()), raw)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let default = self.rule.default_py(py)?;
        Ok(format!(
            "<OptionSpec {} default={}>",
            self.rule.name(),
            default.bind(py).repr()?
        ))
    }
}

/// Every option the project reads, by group.
#[pyfunction]
fn option_specs() -> Vec<OptionSpec> {
    GROUPS
        .iter()
        .flat_map(|(group, rules)| rules.iter().map(|rule| OptionSpec { rule: *rule, group }))
        .collect()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<CacheSettings>()?;
    m.add_class::<SessionSettings>()?;
    m.add_class::<MetricsSettings>()?;
    m.add_class::<OptionSpec>()?;
    m.add_function(wrap_pyfunction!(option_specs, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_has_one_name_in_its_groups_family() {
        let mut seen = std::collections::HashSet::new();
        for (group, rules) in &GROUPS {
            for rule in rules.iter() {
                let name = rule.name();
                assert!(seen.insert(name), "{name} twice");
                let family = if *group == "sessions" {
                    "session_store"
                } else {
                    "ormcache_redis_"
                };
                assert!(name.starts_with(family), "{name} in {group}");
            }
        }
    }

    #[test]
    fn defaults_are_within_their_bounds() {
        for seconds in [
            CONNECT_TIMEOUT,
            SOCKET_TIMEOUT,
            METRICS_INTERVAL,
            SESSION_ANONYMOUS_TTL,
            SESSION_TIMEOUT,
        ] {
            let written = seconds.default.to_string();
            assert_eq!(seconds.parse(Some(&written)), Ok(seconds.default));
        }
        for whole in [EXPIRE, WRITE_QUEUE, WRITE_QUEUE_MB, MAX_VALUE_MB, L1_MAX_MB] {
            let written = whole.default.to_string();
            assert_eq!(whole.parse(Some(&written)), Ok(whole.default));
        }
        for prefix in [PREFIX, SESSION_PREFIX] {
            assert_eq!(
                prefix.parse(Some(prefix.default)).as_deref(),
                Ok(prefix.default)
            );
        }
        assert_eq!(SESSION_STORE.parse(None).as_deref(), Ok("filesystem"));
    }
}
