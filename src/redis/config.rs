//! Redis connection settings, validated once at construction.

use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo};
use rustls::pki_types::ServerName;

use super::link::{Endpoint, Handshake};
use super::reply_guard::ReplyLimits;
use super::tls::{self, TlsFiles};
use super::url::Topology;
use crate::settings::options;

/// Everything needed to open and supervise connections to one Redis server,
/// a Sentinel-managed master, or a Redis Cluster.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// Settings every server shares; the address is the first host's.
    pub info: ConnectionInfo,
    pub topology: Topology,
    /// Deadline of background work: a probe opening its connection, and
    /// each write-behind batch (plus time for its bytes, see `writer.rs`).
    pub connect_timeout: Duration,
    /// Deadline of every call made for a request (`socket_timeout`): from
    /// the call's start to its last reply byte, connecting included.
    pub io_timeout: Duration,
    /// Idle connections kept per process for request threads.
    pub max_idle: usize,
    /// Capacity of the write-behind queue in commands; a full queue drops
    /// (and counts).
    pub write_queue: usize,
    /// Capacity of the write-behind queue in bytes of command arguments.
    pub write_queue_bytes: usize,
    /// Consecutive failures that open the circuit breaker.
    pub failure_threshold: u32,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// The largest value a reply may carry (`max_value_bytes`): a larger
    /// one is refused on its length prefix, unread (`reply_guard`).
    pub max_value_bytes: u64,
}

fn positive_duration(option: &str, seconds: f64) -> Result<Duration, String> {
    if seconds.is_finite() && seconds > 0.0 && seconds <= 3600.0 {
        Ok(Duration::from_secs_f64(seconds))
    } else {
        Err(format!(
            "{option} must be a number of seconds between 0 and 3600, got {seconds}"
        ))
    }
}

impl RedisConfig {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        url: &str,
        connect_timeout: f64,
        io_timeout: f64,
        max_idle: usize,
        write_queue: usize,
        write_queue_bytes: usize,
        failure_threshold: u32,
        retry_initial: f64,
        retry_max: f64,
    ) -> Result<Self, String> {
        let super::url::Target { info, topology } = super::url::parse("url", url)?;
        let retry_initial = positive_duration("retry_initial", retry_initial)?;
        let retry_max = positive_duration("retry_max", retry_max)?;
        if retry_max < retry_initial {
            return Err("retry_max must not be smaller than retry_initial".to_string());
        }
        if failure_threshold == 0 {
            return Err("failure_threshold must be at least 1".to_string());
        }
        if write_queue == 0 {
            return Err("write_queue must be at least 1".to_string());
        }
        if write_queue_bytes == 0 {
            return Err("write_queue_bytes must be at least 1".to_string());
        }
        Ok(RedisConfig {
            info,
            topology,
            connect_timeout: positive_duration("connect_timeout", connect_timeout)?,
            io_timeout: positive_duration("socket_timeout", io_timeout)?,
            max_idle,
            write_queue,
            write_queue_bytes,
            failure_threshold,
            retry_initial,
            retry_max,
            max_value_bytes: options::MAX_VALUE_BYTES,
        })
    }

    /// The same settings with another `max_value_bytes` (1 KiB to 512 MiB,
    /// Redis's own limit on a string).
    pub fn with_max_value_bytes(mut self, max_value_bytes: u64) -> Result<Self, String> {
        if !(1024..=512 << 20).contains(&max_value_bytes) {
            return Err(format!(
                "max_value_bytes must be between 1024 and {} (512 MiB), got {max_value_bytes}",
                512u64 << 20
            ));
        }
        self.max_value_bytes = max_value_bytes;
        Ok(self)
    }

    /// What one call may receive: one value of `max_value_bytes` and the
    /// small replies around it.
    pub fn reply_limits(&self) -> ReplyLimits {
        ReplyLimits::for_values(self.max_value_bytes, "max_value_bytes")
    }

    /// Where to connect; TLS settings are read from `files` for `rediss://`.
    pub fn endpoint(&self, files: &TlsFiles<'_>) -> Result<Endpoint, String> {
        match self.info.addr() {
            ConnectionAddr::Tcp(host, port) if !files.any() => Ok(Endpoint::Tcp {
                host: host.clone(),
                port: *port,
            }),
            ConnectionAddr::Unix(path) if !files.any() => Ok(Endpoint::Unix(path.clone())),
            ConnectionAddr::TcpTls {
                host,
                port,
                insecure,
                ..
            } => {
                if *insecure {
                    return Err(format!(
                        "{}: certificate checks cannot be switched off (#insecure); \
                         give the server's CA with tls_ca_file",
                        self.display_address()
                    ));
                }
                let server_name = ServerName::try_from(host.clone()).map_err(|err| {
                    format!("{}: not a TLS server name: {err}", self.display_address())
                })?;
                Ok(Endpoint::Tls {
                    host: host.clone(),
                    port: *port,
                    config: tls::client_config(files)?,
                    server_name,
                })
            }
            ConnectionAddr::Tcp(..) | ConnectionAddr::Unix(_) => Err(format!(
                "tls_ca_file, tls_cert_file and tls_key_file need a rediss:// URL, got {}",
                self.display_address()
            )),
            _ => Err(format!(
                "unsupported Redis address {}",
                self.display_address()
            )),
        }
    }

    /// What every new connection says first (credentials, database, protocol).
    pub fn handshake(&self) -> Handshake {
        let settings = self.info.redis_settings();
        Handshake {
            username: settings.username().map(str::to_string),
            password: settings.password().map(str::to_string),
            db: settings.db(),
            resp3: settings.protocol().supports_resp3(),
            // What sentinels name may have been demoted since they answered.
            expect_master: matches!(self.topology, Topology::Sentinel { .. }),
            reply_limits: self.reply_limits(),
        }
    }

    /// The server address without credentials, for logs and reprs.
    pub fn display_address(&self) -> String {
        let db = self.info.redis_settings().db();
        let tls = matches!(self.info.addr(), ConnectionAddr::TcpTls { .. });
        let base = if tls { "rediss" } else { "redis" };
        let list = |hosts: &[(String, u16)]| {
            hosts
                .iter()
                .map(|(host, port)| match host.contains(':') {
                    true => format!("[{host}]:{port}"),
                    false => format!("{host}:{port}"),
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        match &self.topology {
            Topology::Sentinel { sentinels, service } => {
                return format!("{base}+sentinel://{}/{service}/{db}", list(sentinels));
            }
            Topology::Cluster { nodes } => return format!("{base}+cluster://{}", list(nodes)),
            Topology::Single => {}
        }
        match self.info.addr() {
            ConnectionAddr::Tcp(host, port) => format!("redis://{host}:{port}/{db}"),
            ConnectionAddr::TcpTls { host, port, .. } => format!("rediss://{host}:{port}/{db}"),
            // The path is decoded: redacted again in case it held `&pass=`.
            ConnectionAddr::Unix(path) => {
                super::url::redact(&format!("unix://{}?db={db}", path.display()))
            }
            _ => "redis://?".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> Result<RedisConfig, String> {
        RedisConfig::new(url, 1.0, 0.25, 8, 100, 1 << 20, 2, 0.5, 30.0)
    }

    #[test]
    fn display_address_has_no_credentials() {
        let cfg = config("redis://user:hunter2@example.org:6390/4").unwrap();
        assert_eq!(cfg.display_address(), "redis://example.org:6390/4");
    }

    #[test]
    fn multi_host_addresses_have_no_credentials() {
        let cfg = config("redis+sentinel://u:hunter2@a:1,b:2/svc/3").unwrap();
        assert_eq!(cfg.display_address(), "redis+sentinel://a:1,b:2/svc/3");
        let cfg = config("rediss+cluster://u:hunter2@a:1,[::1]:2").unwrap();
        assert_eq!(cfg.display_address(), "rediss+cluster://a:1,[::1]:2");
    }

    #[test]
    fn rejects_bad_timeouts() {
        let new = |connect, io, initial, max| {
            RedisConfig::new("redis://h", connect, io, 8, 100, 1 << 20, 2, initial, max)
        };
        assert!(new(0.0, 0.25, 0.5, 30.0).is_err());
        assert!(new(1.0, f64::NAN, 0.5, 30.0).is_err());
        assert!(new(1.0, 0.25, 5.0, 1.0).is_err());
    }

    #[test]
    fn rejects_an_empty_write_queue() {
        let err = RedisConfig::new("redis://h", 1.0, 0.25, 8, 100, 0, 2, 0.5, 30.0).unwrap_err();
        assert!(err.contains("write_queue_bytes"), "{err}");
    }
}
