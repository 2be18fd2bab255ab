//! `MetricsSettings`: who may read the metrics route, how often processes
//! publish (`ormcache_redis_metrics_*`).

use pyo3::prelude::*;

use super::options::*;
use super::{Raw, METRICS};
use crate::errors::ConfigError;

/// The metrics options, checked. The route is closed unless `allow` or
/// `token` is set.
#[pyclass(module = "ormcache_redis._native", frozen, get_all)]
pub struct MetricsSettings {
    /// Networks allowed to read the route, as `address/prefix length`.
    pub allow: Vec<String>,
    /// A scraper sending `Authorization: Bearer <token>` may read it.
    pub token: Option<String>,
    /// Seconds between two publications of a process's figures.
    pub interval: f64,
}

impl MetricsSettings {
    fn from_raw(raw: &Raw) -> Result<MetricsSettings, String> {
        Ok(MetricsSettings {
            allow: raw.get(&METRICS_ALLOW)?,
            token: raw.get(&METRICS_TOKEN)?,
            interval: raw.get(&METRICS_INTERVAL)?,
        })
    }
}

#[pymethods]
impl MetricsSettings {
    /// Reads the options from `options` (a mapping of name -> raw string
    /// or None, or an `OptionSource`); raises ConfigError.
    #[staticmethod]
    fn parse(options: &Bound<'_, PyAny>) -> PyResult<MetricsSettings> {
        let raw = Raw::read(options, &METRICS, Default::default())?;
        MetricsSettings::from_raw(&raw).map_err(ConfigError::new_err)
    }

    fn __repr__(&self) -> String {
        // The token is a secret: never shown.
        format!(
            "<MetricsSettings allow={:?} token={} interval={}>",
            self.allow,
            if self.token.is_some() { "set" } else { "unset" },
            self.interval
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_by_default() {
        let settings = MetricsSettings::from_raw(&Raw::default()).unwrap();
        assert!(settings.allow.is_empty() && settings.token.is_none());
        assert_eq!(settings.interval, 15.0);
    }

    #[test]
    fn every_error_names_the_option() {
        for (option, value) in [
            (METRICS_ALLOW.name, "127.0.0.1, example.com"),
            (METRICS_TOKEN.name, "short"),
            (METRICS_INTERVAL.name, "7200"),
        ] {
            let err = MetricsSettings::from_raw(&Raw::with(&[(option, value)]))
                .err()
                .unwrap();
            assert!(err.starts_with(option) && err.ends_with('.'), "{err}");
        }
    }
}
