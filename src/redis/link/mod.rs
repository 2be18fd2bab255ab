//! One Redis connection whose every socket operation is bounded by the
//! deadline of the call it serves.
//!
//! redis-rs's synchronous `Connection` only offers per-read socket timeouts:
//! a reply dripping one byte at a time never trips them, and opening a
//! connection stacks a connect timeout on top of setup timeouts. So a link
//! owns its socket (TCP, TLS over TCP, or unix; see `timed_stream`), keeps
//! it non-blocking and, before each read or write that would block, waits
//! with `poll(2)` for at most the time left before the deadline. Replies are
//! parsed by redis-rs's own `Parser`, and `Link` implements redis-rs's
//! `ConnectionLike`, so `Cmd::query` and `Pipeline::query` work unchanged.

mod timed_stream;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use redis::{ConnectionLike, ErrorKind, RedisError, RedisResult, Value};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;

use super::reply_guard::{ReplyGuard, ReplyLimits};
use timed_stream::{readable_now, Stream};

/// How a link stopped being usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The deadline passed before the operation completed.
    Deadline,
    /// The server closed or reset the connection (EOF, reset, broken pipe).
    Gone,
    /// Anything else: a protocol error, a TLS alert, a local socket error.
    Other,
    /// The server announced a reply larger than the call may receive
    /// (`reply_guard`): it answered, but the rest of the reply is unread.
    TooLarge,
}

impl Failure {
    fn of(err: &io::Error) -> Failure {
        match err.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Failure::Deadline,
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected => Failure::Gone,
            _ => Failure::Other,
        }
    }
}
/// The replicas a master's `ROLE` reply lists:
/// `["master", offset, [[ip, port, offset], ...]]`; 0 for any other reply.
pub fn replicas_in_role(parts: &[Value]) -> usize {
    match parts.get(2) {
        Some(Value::Array(replicas)) => replicas.len(),
        _ => 0,
    }
}
/// Where and how to connect: resolved once per client from its URL.
#[derive(Clone)]
pub enum Endpoint {
    Tcp {
        host: String,
        port: u16,
    },
    Tls {
        host: String,
        port: u16,
        config: Arc<ClientConfig>,
        server_name: ServerName<'static>,
    },
    Unix(std::path::PathBuf),
}

impl Endpoint {
    /// The same kind of endpoint, TLS settings included, at another server
    /// (a promoted master, a cluster node).
    pub fn at(&self, host: &str, port: u16) -> Result<Endpoint, String> {
        match self {
            Endpoint::Tcp { .. } => Ok(Endpoint::Tcp {
                host: host.to_string(),
                port,
            }),
            Endpoint::Tls { config, .. } => Ok(Endpoint::Tls {
                host: host.to_string(),
                port,
                config: Arc::clone(config),
                server_name: ServerName::try_from(host.to_string())
                    .map_err(|err| format!("{host}: not a TLS server name: {err}"))?,
            }),
            Endpoint::Unix(_) => Err("a unix socket has no other servers".to_string()),
        }
    }

    /// `host:port` (or the socket path), for stats and logs.
    pub fn node(&self) -> String {
        match self {
            Endpoint::Tcp { host, port } | Endpoint::Tls { host, port, .. } => {
                match host.contains(':') {
                    true => format!("[{host}]:{port}"),
                    false => format!("{host}:{port}"),
                }
            }
            Endpoint::Unix(path) => path.display().to_string(),
        }
    }
}

/// What a fresh connection says before its first command.
#[derive(Clone)]
pub struct Handshake {
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: i64,
    pub resp3: bool,
    /// Refuse a server whose ROLE is not master (Sentinel: the master named
    /// a moment ago may have been demoted since).
    pub expect_master: bool,
    /// What the handshake's replies may be, until the first `arm`.
    pub reply_limits: ReplyLimits,
}
/// One connection to Redis. Every operation is bounded by the deadline set
/// with [`Link::arm`]; after any I/O or protocol failure the link is out of
/// step with the server and must be dropped ([`Link::failure`]).
pub struct Link {
    stream: Stream,
    parser: redis::Parser,
    guard: ReplyGuard,
    db: i64,
    failure: Option<Failure>,
    /// Reply bytes received since the last `arm`: zero means the server
    /// answered nothing to this call.
    reply_bytes: usize,
}

impl Link {
    /// Opens, secures and sets up a connection, all before `deadline`.
    /// `addresses` are the resolved TCP addresses (unused for unix sockets).
    pub fn open(
        endpoint: &Endpoint,
        addresses: &[SocketAddr],
        handshake: &Handshake,
        deadline: Instant,
    ) -> RedisResult<Link> {
        let stream = Stream::open(endpoint, addresses, deadline)?;
        let mut link = Link {
            stream,
            parser: redis::Parser::new(),
            guard: ReplyGuard::new(handshake.reply_limits),
            db: handshake.db,
            failure: None,
            reply_bytes: 0,
        };
        link.greet(handshake, true)?;
        Ok(link)
    }

    /// AUTH (or HELLO 3) and SELECT, pipelined in one round trip.
    fn greet(&mut self, handshake: &Handshake, with_username: bool) -> RedisResult<()> {
        let mut pipe = redis::pipe();
        let username = handshake.username.as_deref().filter(|_| with_username);
        if handshake.resp3 {
            let hello = pipe.cmd("HELLO").arg(3);
            if let Some(password) = &handshake.password {
                hello
                    .arg("AUTH")
                    .arg(username.unwrap_or("default"))
                    .arg(password.as_bytes());
            }
        } else if let Some(password) = &handshake.password {
            let auth = pipe.cmd("AUTH");
            if let Some(username) = username {
                auth.arg(username);
            }
            auth.arg(password.as_bytes());
        }
        if handshake.db != 0 {
            pipe.cmd("SELECT").arg(handshake.db);
        }
        if handshake.expect_master {
            pipe.cmd("ROLE");
        }
        if pipe.is_empty() {
            return Ok(());
        }
        let authenticating = handshake.resp3 || handshake.password.is_some();
        let mut replies = self.exchange(&pipe.get_packed_pipeline(), pipe.len())?;
        let role = match handshake.expect_master {
            true => replies.pop(),
            false => None,
        };
        for (index, reply) in replies.into_iter().enumerate() {
            let Value::ServerError(err) = reply else {
                continue;
            };
            let detail = err.details().unwrap_or_default().to_string();
            if index == 0 && authenticating {
                // Redis 5 knows no users: retry with the password alone.
                if username.is_some() && detail.contains("wrong number of arguments for 'auth'") {
                    return self.greet(handshake, false);
                }
                return Err(RedisError::from((
                    ErrorKind::AuthenticationFailed,
                    "Redis refused the credentials",
                    format!("{} {detail}", err.code()),
                )));
            }
            return Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "Redis refused to switch database",
                format!("{} {detail}", err.code()),
            )));
        }
        if let Some(role) = role {
            let parts = match role {
                Value::Array(parts) => parts,
                _ => Vec::new(),
            };
            let is_master =
                matches!(parts.first(), Some(Value::BulkString(name)) if name == b"master");
            if !is_master {
                // Not a connection failure: the caller forgets this address.
                self.failure = Some(Failure::Other);
                return Err(RedisError::from((
                    ErrorKind::Io,
                    "the server named as master is not (or no longer) the master",
                )));
            }
        }
        Ok(())
    }

    /// Bounds every operation of the next call by `deadline`, and what it
    /// may receive by `limits`.
    pub fn arm(&mut self, deadline: Instant, limits: ReplyLimits) {
        self.stream.set_deadline(deadline);
        self.guard.arm(limits);
        self.reply_bytes = 0;
    }

    /// What is left of the current call's deadline.
    pub fn time_left(&self) -> std::time::Duration {
        self.stream
            .deadline()
            .saturating_duration_since(Instant::now())
    }

    /// Whether an idle link is still usable: nothing may arrive on a
    /// connection nobody asked anything of, so data, EOF or an error there
    /// all mean the server closed it (restart, idle timeout, CLIENT KILL).
    pub fn still_idle(&self) -> bool {
        self.failure.is_none() && !readable_now(self.stream.raw_fd())
    }

    /// Why the link became unusable, if it did.
    pub fn failure(&self) -> Option<Failure> {
        self.failure
    }

    /// Whether the server went away before sending any byte of a reply to
    /// this call (see `Pool::attempt` for why such a call may be retried).
    pub fn went_away_unanswered(&self) -> bool {
        self.failure == Some(Failure::Gone) && self.reply_bytes == 0
    }

    fn fail(&mut self, err: io::Error) -> RedisError {
        self.failure.get_or_insert(Failure::of(&err));
        err.into()
    }

    fn send(&mut self, bytes: &[u8]) -> RedisResult<()> {
        if self.failure.is_some() {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "connection broken").into());
        }
        match self
            .stream
            .write_all(bytes)
            .and_then(|()| self.stream.flush())
        {
            Ok(()) => Ok(()),
            Err(err) => Err(self.fail(err)),
        }
    }

    /// Reads the next reply, skipping RESP3 push messages.
    fn receive(&mut self) -> RedisResult<Value> {
        loop {
            let mut reader = Counting {
                inner: &mut self.stream,
                guard: &mut self.guard,
                count: &mut self.reply_bytes,
                eof: false,
                refused: false,
            };
            let result = self.parser.parse_value(&mut reader);
            let (hit_eof, refused) = (reader.eof, reader.refused);
            match result {
                Ok(Value::Push { .. }) => continue,
                Ok(value) => return Ok(value),
                Err(err) => {
                    let failure = if refused {
                        Failure::TooLarge
                    } else if hit_eof || err.is_connection_dropped() {
                        Failure::Gone
                    } else if err.is_timeout() {
                        Failure::Deadline
                    } else {
                        Failure::Other
                    };
                    self.failure.get_or_insert(failure);
                    return Err(err);
                }
            }
        }
    }

    /// Sends packed commands without reading (their replies come with
    /// [`Link::recv`]).
    pub fn send_packed(&mut self, bytes: &[u8]) -> RedisResult<()> {
        self.send(bytes)
    }

    /// The next reply.
    pub fn recv(&mut self) -> RedisResult<Value> {
        self.receive()
    }

    /// Sends `bytes` and reads `count` replies, stopping at the first
    /// failure (the link is dropped then, so nothing is left unread).
    fn exchange(&mut self, bytes: &[u8], count: usize) -> RedisResult<Vec<Value>> {
        self.send(bytes)?;
        let replies = (0..count).map(|_| self.receive()).collect();
        self.shrink_after_large_reply();
        replies
    }

    /// The parser keeps a buffer as large as the largest reply it read: a
    /// link that once read a 16 MB entry would hold 16 MB for its life.
    /// Between calls it holds nothing (every reply asked for was read, and
    /// the server sends nothing unasked: no subscription, no tracking), so
    /// after a large reply it starts afresh.
    fn shrink_after_large_reply(&mut self) {
        if self.reply_bytes >= LARGE_REPLY && self.failure.is_none() {
            self.parser = redis::Parser::new();
        }
    }
}

/// Replies above this leave a parser buffer worth freeing.
const LARGE_REPLY: usize = 1 << 20;

/// Counts the reply bytes handed to the parser, checks them against the
/// call's limits before the parser sees them, and notices EOF.
struct Counting<'a> {
    inner: &'a mut Stream,
    guard: &'a mut ReplyGuard,
    count: &'a mut usize,
    eof: bool,
    refused: bool,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        if read == 0 && !buf.is_empty() {
            self.eof = true;
        }
        *self.count += read;
        if let Err(refused) = self.guard.feed(&buf[..read]) {
            self.refused = true;
            return Err(io::Error::new(io::ErrorKind::InvalidData, refused));
        }
        Ok(read)
    }
}

impl ConnectionLike for Link {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        self.send(cmd)?;
        let reply = self.receive();
        self.shrink_after_large_reply();
        reply
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let mut replies = self.exchange(cmd, offset + count)?;
        // In a transaction the first `offset` replies are MULTI's and the
        // QUEUED acknowledgements: an error there aborted the transaction.
        if let Some(err) = replies[..offset].iter().find_map(|reply| match reply {
            Value::ServerError(err) => Some(err.clone()),
            _ => None,
        }) {
            return Err(err.into());
        }
        Ok(replies.split_off(offset))
    }

    fn get_db(&self) -> i64 {
        self.db
    }

    fn check_connection(&mut self) -> bool {
        redis::cmd("PING").query::<String>(self).is_ok()
    }

    fn is_open(&self) -> bool {
        self.failure.is_none()
    }
}
