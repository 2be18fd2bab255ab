//! The master of a Sentinel set-up: asked of the sentinels with the redis
//! crate's `SentinelClient`, remembered until a connection to it fails or
//! finds it demoted, then asked again.
//!
//! The crate's synchronous Sentinel API has no deadlines (its connections
//! block until the OS gives up), so each lookup runs on a short-lived thread
//! and callers wait for it at most until their own deadline: a call's
//! promised timeout bounds what the caller sees, sentinels included. A
//! lookup still running when the next caller comes is joined, not repeated;
//! one stuck longer than `stuck_after` is given up for a fresh one. Before
//! each lookup every sentinel must accept a TCP connection within
//! `connect_timeout` (a host that is down would otherwise hold the crate's
//! connect for minutes), and each lookup starts with the next sentinel in
//! the list, so one that accepts but never answers cannot stall them all.
//! (A TLS sentinel logs that check as a connection closed before its
//! handshake: once per sentinel and lookup, i.e. at start and failovers.)

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use redis::{ClientTlsConfig, ConnectionAddr, ConnectionInfo, TlsCertificates, TlsMode};

use super::link::Endpoint;
use super::tls::TlsFiles;

/// How to ask the sentinels: everything but the answer. Built once per
/// client (TLS files are read then); each process image gets its resolver.
#[derive(Clone)]
pub struct Question {
    sentinels: Vec<(String, u16)>,
    service: String,
    info: ConnectionInfo,
    certificates: Option<TlsCertificates>,
}

#[derive(Default)]
struct State {
    /// The master last named, until a connection to it fails.
    master: Option<Endpoint>,
    /// The last master ever named, to count switches.
    last_node: Option<String>,
    lookup_started: Option<Instant>,
    /// Lookups started: each starts with the next sentinel.
    attempts: usize,
    /// Lookups finished: a waiter knows its lookup ended when this moves.
    lookups: u64,
    last_error: String,
}

pub struct MasterResolver {
    question: Question,
    template: Endpoint,
    connect_timeout: Duration,
    stuck_after: Duration,
    state: Mutex<State>,
    finished: Condvar,
    /// Times the sentinels named another master than the one before.
    pub switches: AtomicU64,
    /// Whether the sentinels take the URL's credentials (see
    /// `SentinelAuth`), learnt from the first lookup that succeeds.
    sentinel_auth: AtomicU8,
}

/// Sentinels protected with `requirepass` (or an ACL user) need the URL's
/// credentials; sentinels without a password refuse an AUTH. The URL has
/// one set of credentials, so a lookup tries both and remembers which one
/// the sentinels answered.
#[derive(Clone, Copy, PartialEq)]
#[repr(u8)]
enum SentinelAuth {
    Unknown = 0,
    WithCredentials = 1,
    WithoutCredentials = 2,
}

fn tls_certificates(files: &TlsFiles<'_>) -> Result<Option<TlsCertificates>, String> {
    if !files.any() {
        return Ok(None);
    }
    let read = |option: &str, path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|err| format!("{option}: cannot read {}: {err}", path.display()))
    };
    let root_cert = files
        .ca_file
        .map(|path| read("tls_ca_file", path))
        .transpose()?;
    let client_tls = match (files.cert_file, files.key_file) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read("tls_cert_file", cert)?,
            client_key: read("tls_key_file", key)?,
        }),
        _ => None,
    };
    Ok(Some(TlsCertificates {
        client_tls,
        root_cert,
    }))
}

impl Question {
    pub fn new(
        sentinels: Vec<(String, u16)>,
        service: String,
        info: ConnectionInfo,
        files: &TlsFiles<'_>,
    ) -> Result<Question, String> {
        Ok(Question {
            sentinels,
            service,
            info,
            certificates: tls_certificates(files)?,
        })
    }
}

impl MasterResolver {
    pub fn new(
        question: Question,
        template: Endpoint,
        connect_timeout: Duration,
        stuck_after: Duration,
    ) -> Arc<Self> {
        Arc::new(MasterResolver {
            question,
            template,
            connect_timeout,
            stuck_after,
            state: Mutex::new(State::default()),
            finished: Condvar::new(),
            switches: AtomicU64::new(0),
            sentinel_auth: AtomicU8::new(SentinelAuth::Unknown as u8),
        })
    }

    /// The master's endpoint: the one known (`true`: remembered, maybe
    /// stale), or the sentinels' answer if it comes before `deadline`.
    pub fn master(self: &Arc<Self>, deadline: Instant) -> Result<(Endpoint, bool), String> {
        let mut state = self.state.lock();
        if let Some(master) = &state.master {
            return Ok((master.clone(), true));
        }
        let stuck = state
            .lookup_started
            .is_some_and(|started| started.elapsed() >= self.stuck_after);
        if state.lookup_started.is_none() || stuck {
            state.lookup_started = Some(Instant::now());
            let first = state.attempts;
            state.attempts = state.attempts.wrapping_add(1);
            let resolver = Arc::clone(self);
            let spawned = std::thread::Builder::new()
                .name("ormcache-redis-sentinel".into())
                .spawn(move || resolver.look_up(first));
            if let Err(err) = spawned {
                state.lookup_started = None;
                return Err(format!("cannot start a Sentinel lookup: {err}"));
            }
        }
        let seen = state.lookups;
        while state.lookups == seen {
            if self.finished.wait_until(&mut state, deadline).timed_out() {
                return Err("the sentinels named no master in time".to_string());
            }
        }
        match &state.master {
            Some(master) => Ok((master.clone(), false)),
            None => Err(state.last_error.clone()),
        }
    }

    /// Forgets `node` as the master (a connection to it failed, or it said
    /// it is a replica): the next connection asks the sentinels again.
    pub fn forget(&self, node: &str) {
        let mut state = self.state.lock();
        if state.master.as_ref().is_some_and(|m| m.node() == node) {
            state.master = None;
        }
    }

    /// The master in use, as `host:port`, if known.
    pub fn current(&self) -> Option<String> {
        self.state.lock().master.as_ref().map(Endpoint::node)
    }

    fn look_up(&self, first: usize) {
        let answer = self.ask_sentinels(first);
        let mut state = self.state.lock();
        match answer {
            Ok(master) => {
                let node = master.node();
                if state.last_node.as_ref().is_some_and(|last| *last != node) {
                    self.switches.fetch_add(1, Ordering::Relaxed);
                }
                state.last_node = Some(node);
                state.master = Some(master);
            }
            Err(err) => state.last_error = err,
        }
        state.lookups += 1;
        state.lookup_started = None;
        self.finished.notify_all();
    }

    /// The sentinels that accept a connection now, starting with the
    /// `first`-th (modulo their number).
    fn reachable_sentinels(&self, first: usize) -> Vec<(String, u16)> {
        let sentinels = &self.question.sentinels;
        (0..sentinels.len())
            .map(|offset| &sentinels[(first + offset) % sentinels.len()])
            .filter(|(host, port)| {
                (host.as_str(), *port)
                    .to_socket_addrs()
                    .is_ok_and(|addresses| {
                        addresses.into_iter().any(|address| {
                            TcpStream::connect_timeout(&address, self.connect_timeout).is_ok()
                        })
                    })
            })
            .cloned()
            .collect()
    }

    fn ask_sentinels(&self, first: usize) -> Result<Endpoint, String> {
        let question = &self.question;
        let reachable = self.reachable_sentinels(first);
        if reachable.is_empty() {
            return Err(format!(
                "no sentinel accepts connections (asked for {:?})",
                question.service
            ));
        }
        let has_credentials = question.info.redis_settings().password().is_some();
        let modes = match self.sentinel_auth.load(Ordering::Relaxed) {
            x if x == SentinelAuth::WithCredentials as u8 => vec![SentinelAuth::WithCredentials],
            x if x == SentinelAuth::WithoutCredentials as u8 => {
                vec![SentinelAuth::WithoutCredentials]
            }
            _ if has_credentials => vec![
                SentinelAuth::WithoutCredentials,
                SentinelAuth::WithCredentials,
            ],
            _ => vec![SentinelAuth::WithoutCredentials],
        };
        let mut failure = String::new();
        for mode in modes {
            match self.ask_sentinels_with(&reachable, mode) {
                Ok(endpoint) => {
                    self.sentinel_auth.store(mode as u8, Ordering::Relaxed);
                    return Ok(endpoint);
                }
                Err(err) => failure = err,
            }
        }
        Err(failure)
    }

    fn ask_sentinels_with(
        &self,
        reachable: &[(String, u16)],
        auth: SentinelAuth,
    ) -> Result<Endpoint, String> {
        let question = &self.question;
        let tls = matches!(question.info.addr(), ConnectionAddr::TcpTls { .. });
        let sentinels = reachable.iter().map(|(host, port)| match tls {
            true => ConnectionAddr::TcpTls {
                host: host.clone(),
                port: *port,
                insecure: false,
                tls_params: None,
            },
            false => ConnectionAddr::Tcp(host.clone(), *port),
        });
        let settings = question.info.redis_settings();
        let mut builder =
            SentinelClientBuilder::new(sentinels, &question.service, SentinelServerType::Master)
                .map_err(|err| format!("Sentinel settings refused: {err}"))?
                .set_client_to_redis_db(settings.db())
                .set_client_to_redis_protocol(settings.protocol());
        if let Some(username) = settings.username() {
            builder = builder.set_client_to_redis_username(username);
        }
        if let Some(password) = settings.password() {
            builder = builder.set_client_to_redis_password(password);
        }
        if auth == SentinelAuth::WithCredentials {
            if let Some(username) = settings.username() {
                builder = builder.set_client_to_sentinel_username(username);
            }
            if let Some(password) = settings.password() {
                builder = builder.set_client_to_sentinel_password(password);
            }
        }
        if tls {
            builder = builder
                .set_client_to_redis_tls_mode(TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(TlsMode::Secure);
            if let Some(certificates) = &question.certificates {
                builder = builder
                    .set_client_to_redis_certificates(certificates.clone())
                    .set_client_to_sentinel_certificates(certificates.clone());
            }
        }
        let client = builder
            .build()
            .and_then(|mut client| client.get_client())
            .map_err(|err| {
                format!(
                    "no sentinel named a reachable master for {:?} ({err})",
                    question.service
                )
            })?;
        match client.get_connection_info().addr() {
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                self.template.at(host, *port)
            }
            other => Err(format!("the sentinels named an unusable address {other}")),
        }
    }
}
