//! The one home of what a Redis URL may be and how it is shown.
//!
//! Every URL option (`ormcache_redis_url`, `session_store_url`, the command
//! line's `--url`, `RedisClient(url)`) is checked here, with errors that name
//! the option in one sentence and never show a password.

use pyo3::prelude::*;
use redis::{ConnectionInfo, IntoConnectionInfo};

use crate::errors::ConfigError;

/// Schemes accepted (Valkey speaks the same protocol).
pub const SCHEMES: [&str; 6] = ["redis", "rediss", "unix", "redis+unix", "valkey", "valkeys"];

fn is_socket_path(scheme: &str) -> bool {
    matches!(scheme, "unix" | "redis+unix")
}

/// The connection settings of `url`, or one sentence naming `option`.
pub fn parse(option: &str, url: &str) -> Result<ConnectionInfo, String> {
    let shown = redact(url);
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    let Some(scheme) = scheme.filter(|scheme| SCHEMES.contains(scheme)) else {
        return Err(format!(
            "{option} must be a redis://, rediss://, unix:// or valkey:// URL, got {shown:?}."
        ));
    };
    if !is_socket_path(scheme) {
        let parsed = ::url::Url::parse(url).map_err(|err| match err {
            ::url::ParseError::InvalidPort => format!("{option} has an invalid port: {shown:?}."),
            ::url::ParseError::EmptyHost => format!("{option} has no host: {shown:?}."),
            other => format!("{option} is not a valid URL ({other}): {shown:?}."),
        })?;
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(format!("{option} has no host: {shown:?}."));
        }
        let db = parsed.path().trim_start_matches('/');
        if !db.is_empty() && !db.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(format!(
                "{option} must name the database by number (e.g. /0), got {shown:?}."
            ));
        }
    }
    url.into_connection_info()
        .map_err(|err| format!("{option} is not a valid Redis URL ({err}): {shown:?}."))
}

/// `url` without its user and password, for logs and error messages.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => format!("{scheme}://{rest}"),
        },
        None => "<not a URL>".to_string(),
    }
}

/// Checks a Redis URL option; returns it, or raises ConfigError naming
/// the option.
#[pyfunction]
fn check_redis_url(option: &str, url: &str) -> PyResult<String> {
    parse(option, url).map_err(ConfigError::new_err)?;
    Ok(url.to_string())
}

/// The URL without its user and password.
#[pyfunction]
fn redact_url(url: &str) -> String {
    redact(url)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(check_redis_url, m)?)?;
    m.add_function(wrap_pyfunction!(redact_url, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_schemes() {
        for url in [
            "redis://127.0.0.1:6379/0",
            "redis://user:secret@host:6380/3",
            "rediss://host:6380/1",
            "unix:///var/run/redis.sock",
            "valkey://host/2",
            "redis://h",
        ] {
            assert!(parse("url", url).is_ok(), "{url}");
        }
    }

    #[test]
    fn errors_name_the_option_and_never_the_password() {
        for (url, expected) in [
            ("http://user:hunter2@h", "must be a redis://"),
            ("redis://", "has no host"),
            ("redis://user:hunter2@h:notaport/0", "invalid port"),
            ("redis://user:hunter2@h/zero", "by number"),
            ("no url at all", "must be a redis://"),
        ] {
            let err = parse("session_store_url", url).unwrap_err();
            assert!(err.starts_with("session_store_url "), "{err}");
            assert!(err.contains(expected), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
            assert!(err.ends_with('.') && !err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn redaction() {
        assert_eq!(redact("redis://user:hunter2@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact("redis://h:1/0"), "redis://h:1/0");
        assert_eq!(redact("nonsense"), "<not a URL>");
    }
}
