//! The one home of what a Redis URL may be and how it is shown.
//!
//! Every URL option (`ormcache_redis_url`, `session_store_url`, the command
//! line's `--url`, `RedisClient(url)`) is checked here, with errors that name
//! the option in one sentence and never show a password.
//!
//! Besides one server (`redis://`, `rediss://`, `unix://`, `valkey://`), a
//! URL may name a Sentinel set-up or a Redis Cluster by several hosts:
//! `redis+sentinel://[user:password@]h1:26379,h2:26379/SERVICE[/DB]` and
//! `redis+cluster://[user:password@]h1:7000,h2:7001` (and `rediss+...` for
//! TLS). Their credentials, TLS and protocol options are those of a
//! one-server URL on the first host, so they are checked by the same code.
//!
//! Here: parsing and checking (`parse`, `credentials`); `redact` shows a
//! URL without its secrets.

mod redact;

use pyo3::prelude::*;
use redis::{ConnectionInfo, IntoConnectionInfo};

use crate::errors::ConfigError;
pub use redact::redact;
use redact::{is_secret_name, mask_parameters};

/// Schemes of one server (Valkey speaks the same protocol).
pub const SCHEMES: [&str; 6] = ["redis", "rediss", "unix", "redis+unix", "valkey", "valkeys"];

/// Where the data lives, beyond the server named by [`Target::info`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topology {
    /// The one server of `info`.
    Single,
    /// The sentinels asked for the master of `service`.
    Sentinel {
        sentinels: Vec<(String, u16)>,
        service: String,
    },
    /// Seed nodes of a Redis Cluster: the client learns the others.
    Cluster { nodes: Vec<(String, u16)> },
}

/// A parsed Redis URL: the connection settings every server of it shares
/// (credentials, database, TLS, protocol; the address of the first host),
/// and how the servers are found.
#[derive(Clone, Debug)]
pub struct Target {
    pub info: ConnectionInfo,
    pub topology: Topology,
}

fn is_socket_path(scheme: &str) -> bool {
    matches!(scheme, "unix" | "redis+unix")
}

const SENTINEL_PORT: u16 = 26379;
const CLUSTER_PORT: u16 = 6379;

/// The connection settings of `url`, or one sentence naming `option`.
pub fn parse(option: &str, url: &str) -> Result<Target, String> {
    let shown = redact(url);
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    if let Some((base, kind)) = scheme.and_then(|scheme| scheme.split_once('+')) {
        if matches!(base, "redis" | "rediss") && matches!(kind, "sentinel" | "cluster") {
            return parse_multi_host(option, url, base, kind == "sentinel", &shown);
        }
    }
    let Some(scheme) = scheme.filter(|scheme| SCHEMES.contains(scheme)) else {
        return Err(format!(
            "{option} must be a redis://, rediss://, redis+sentinel://, redis+cluster://, \
             unix:// or valkey:// URL, got {shown:?}."
        ));
    };
    if !is_socket_path(scheme) {
        let parsed = ::url::Url::parse(url).map_err(|err| syntax_error(option, err, &shown))?;
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(format!("{option} has no host: {shown:?}."));
        }
        let db = parsed.path().trim_start_matches('/');
        if !db.is_empty() && !db.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(format!(
                "{option} must name the database by number (e.g. /0), got {shown:?}."
            ));
        }
    } else {
        // `unix:///r.sock&pass=...`: an `&` typed for the `?` puts the
        // password in the socket path, which is shown in every error.
        let path = url.split(['?', '#']).next().unwrap_or_default();
        if mask_parameters(path) != path {
            return Err(format!(
                "{option} has a credential in its socket path: parameters follow a '?' \
                 (unix:///path/redis.sock?pass=...), got {shown:?}."
            ));
        }
    }
    let info = url
        .into_connection_info()
        .map_err(|err| format!("{option} is not a valid Redis URL ({err}): {shown:?}."))?;
    Ok(Target {
        info,
        topology: Topology::Single,
    })
}

fn syntax_error(option: &str, err: ::url::ParseError, shown: &str) -> String {
    match err {
        ::url::ParseError::InvalidPort => format!("{option} has an invalid port: {shown:?}."),
        ::url::ParseError::EmptyHost => format!("{option} has no host: {shown:?}."),
        other => format!("{option} is not a valid URL ({other}): {shown:?}."),
    }
}

/// `redis+sentinel://` and `redis+cluster://`: a comma-separated host list,
/// then (Sentinel) the service name and the database.
fn parse_multi_host(
    option: &str,
    url: &str,
    base: &str,
    sentinel: bool,
    shown: &str,
) -> Result<Target, String> {
    let rest = &url[url.find("://").map_or(0, |at| at + 3)..];
    // The fragment (`#insecure`) is the first host's, as on one server.
    let (rest, fragment) = match rest.split_once('#') {
        Some((rest, fragment)) => (rest, Some(fragment)),
        None => (rest, None),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, authority),
    };
    let default_port = if sentinel {
        SENTINEL_PORT
    } else {
        CLUSTER_PORT
    };
    let mut addresses = Vec::new();
    for host in hosts.split(',') {
        if host.is_empty() {
            return Err(format!(
                "{option} has an empty host in its list: {shown:?}."
            ));
        }
        let parsed = ::url::Url::parse(&format!("redis://{host}"))
            .map_err(|err| syntax_error(option, err, shown))?;
        let name = parsed.host_str().unwrap_or_default();
        if name.is_empty() || !parsed.path().trim_start_matches('/').is_empty() {
            let host = redact(&format!("redis://{host}")).split_off("redis://".len());
            return Err(format!("{option} has an invalid host {host:?}: {shown:?}."));
        }
        // The bracketless form of an IPv6 address, as sockets want it.
        let name = name.trim_start_matches('[').trim_end_matches(']');
        addresses.push((name.to_string(), parsed.port().unwrap_or(default_port)));
    }
    let mut segments = path.trim_start_matches('/').split('/');
    let service = if sentinel {
        let service = segments.next().unwrap_or_default();
        if service.is_empty() {
            return Err(format!(
                "{option} must name the Sentinel service after the hosts \
                 (redis+sentinel://host:26379/SERVICE), got {shown:?}."
            ));
        }
        Some(service.to_string())
    } else {
        None
    };
    let db = segments.next().unwrap_or_default();
    if segments.next().is_some() || (!db.is_empty() && !db.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!(
            "{option} must name the database by number (e.g. /0), got {shown:?}."
        ));
    }
    if !sentinel && !db.trim_start_matches('0').is_empty() {
        return Err(format!(
            "{option} names database {db}, but a Redis Cluster has only database 0: {shown:?}."
        ));
    }
    // Credentials, TLS and protocol: those of a one-server URL on the first host.
    let (first_host, first_port) = &addresses[0];
    let host = if first_host.contains(':') {
        format!("[{first_host}]")
    } else {
        first_host.clone()
    };
    let single = format!(
        "{base}://{}{host}:{first_port}/{}{}",
        userinfo.map(|u| format!("{u}@")).unwrap_or_default(),
        if db.is_empty() { "0" } else { db },
        query.map(|q| format!("?{q}")).unwrap_or_default(),
    ) + &fragment.map(|f| format!("#{f}")).unwrap_or_default();
    let info = single
        .as_str()
        .into_connection_info()
        .map_err(|err| format!("{option} is not a valid Redis URL ({err}): {shown:?}."))?;
    let topology = match service {
        Some(service) => Topology::Sentinel {
            sentinels: addresses,
            service,
        },
        None => Topology::Cluster { nodes: addresses },
    };
    Ok(Target { info, topology })
}
/// What a valid URL authenticates with, as the client reads it: whether it
/// sends a password, and the credential-like parts it does not read (e.g.
/// `?password=` on any URL, `?pass=` on a `redis://` one), named without
/// their values.
pub fn credentials(url: &str) -> Result<(bool, Vec<String>), String> {
    let target = parse("url", url)?;
    let sends_password = target.info.redis_settings().password().is_some();
    let socket = url
        .split_once("://")
        .is_some_and(|(scheme, _)| is_socket_path(scheme));
    let mut ignored = Vec::new();
    let query = url.split_once('?').map_or("", |(_, query)| query);
    let query = query.split_once('#').map_or(query, |(query, _)| query);
    for (name, _) in ::url::form_urlencoded::parse(query.as_bytes()) {
        let read = socket && matches!(name.as_ref(), "user" | "pass");
        let shown = format!("?{name}=");
        if !read && is_secret_name(&name) && !ignored.contains(&shown) {
            ignored.push(shown);
        }
    }
    if socket {
        if let Ok(parsed) = ::url::Url::parse(url) {
            if !parsed.username().is_empty() || parsed.password().is_some() {
                ignored.push("user:password@".to_string());
            }
        }
    }
    Ok((sends_password, ignored))
}

/// Checks a Redis URL option; returns it, or raises ConfigError naming
/// the option.
#[pyfunction]
fn check_redis_url(option: &str, url: &str) -> PyResult<String> {
    parse(option, url).map_err(ConfigError::new_err)?;
    Ok(url.to_string())
}

/// The URL without its credentials.
#[pyfunction]
fn redact_url(url: &str) -> String {
    redact(url)
}

/// `(sends_password, ignored)`: see [`credentials`]; ConfigError when the
/// URL is not valid.
#[pyfunction]
fn url_credentials(url: &str) -> PyResult<(bool, Vec<String>)> {
    credentials(url).map_err(ConfigError::new_err)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(check_redis_url, m)?)?;
    m.add_function(wrap_pyfunction!(redact_url, m)?)?;
    m.add_function(wrap_pyfunction!(url_credentials, m)?)?;
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
            "redis+sentinel://h1:26379,h2:26380,h3/mymaster",
            "rediss+sentinel://user:secret@h1,h2/mymaster/3",
            "redis+cluster://h1:7000,h2:7001,h3:7002",
            "redis+cluster://:secret@h1:7000/0",
            "redis+cluster://[::1]:7000,127.0.0.1:7001",
        ] {
            assert!(parse("url", url).is_ok(), "{url}");
        }
    }
    #[test]
    fn sentinel_urls_name_every_sentinel_the_service_and_the_database() {
        let target = parse("url", "redis+sentinel://u:pw@h1:26379,h2/cache/3").unwrap();
        assert_eq!(
            target.topology,
            Topology::Sentinel {
                sentinels: vec![("h1".into(), 26379), ("h2".into(), 26379)],
                service: "cache".into(),
            }
        );
        let settings = target.info.redis_settings();
        assert_eq!(settings.db(), 3);
        assert_eq!(settings.username(), Some("u"));
        assert_eq!(settings.password(), Some("pw"));
    }

    #[test]
    fn cluster_urls_keep_tls_and_ipv6_hosts() {
        let target = parse("url", "rediss+cluster://[::1]:7000,h2:7001").unwrap();
        assert_eq!(
            target.topology,
            Topology::Cluster {
                nodes: vec![("::1".into(), 7000), ("h2".into(), 7001)]
            }
        );
        assert!(matches!(
            target.info.addr(),
            redis::ConnectionAddr::TcpTls { .. }
        ));
    }

    #[test]
    fn errors_name_the_option_and_never_the_password() {
        for (url, expected) in [
            ("http://user:hunter2@h", "must be a redis://"),
            ("redis://", "has no host"),
            ("redis://user:hunter2@h:notaport/0", "invalid port"),
            ("redis://user:hunter2@h/zero", "by number"),
            ("no url at all", "must be a redis://"),
            (
                "redis+sentinel://user:hunter2@h1,h2",
                "must name the Sentinel service",
            ),
            (
                "redis+sentinel://user:hunter2@h1,h2/",
                "must name the Sentinel service",
            ),
            ("redis+sentinel://user:hunter2@h1:x,h2/s", "invalid port"),
            ("redis+sentinel://user:hunter2@/s", "empty host"),
            ("redis+sentinel://user:hunter2@h1,,h2/s", "empty host"),
            ("redis+sentinel://user:hunter2@h1/s/db", "by number"),
            (
                "redis+cluster://user:hunter2@h1:7000,h2:99999",
                "invalid port",
            ),
            ("redis+cluster://user:hunter2@h1:7000/2", "only database 0"),
            ("redis+cluster://user:hunter2@", "empty host"),
            ("unix:///r.sock&pass=hunter2", "in its socket path"),
            ("redis+nothing://user:hunter2@h", "must be a redis://"),
        ] {
            let err = parse("session_store_url", url).unwrap_err();
            assert!(err.starts_with("session_store_url "), "{err}");
            assert!(err.contains(expected), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
            assert!(err.ends_with('.') && !err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn credentials_are_what_the_client_reads() {
        let check = |url: &str| credentials(url).unwrap();
        assert_eq!(check("redis://:pw@h/0"), (true, vec![]));
        assert_eq!(check("redis://h/0"), (false, vec![]));
        assert_eq!(check("unix:///r.sock?pass=pw&db=1"), (true, vec![]));
        assert_eq!(check("unix:///r.sock?p%61ss=pw"), (true, vec![]));
        assert_eq!(check("redis+sentinel://u:pw@a,b/m"), (true, vec![]));
        assert_eq!(
            check("unix:///r.sock?username=u&password=pw"),
            (
                false,
                vec!["?username=".to_string(), "?password=".to_string()]
            )
        );
        assert_eq!(
            check("redis://h/0?pass=pw&password=pw"),
            (false, vec!["?pass=".to_string(), "?password=".to_string()])
        );
        assert_eq!(
            check("redis+cluster://a,b?password=pw"),
            (false, vec!["?password=".to_string()])
        );
        assert!(credentials("redis://h/zero").is_err());
    }
}
