//! The Redis connection pool of one process: deadlines, stale-connection
//! handling, circuit breaker and background probe. Request threads borrow an
//! idle connection (or open one), so a threaded Odoo server does not
//! serialise on one socket. Fork safety comes from the owner: a pool belongs
//! to one process image (`fork::ProcessLocal`), and so do its probe threads.
//!
//! Time bounds:
//! - A request's call (`Pool::call`) has one deadline, `socket_timeout`
//!   after it starts, covering everything it does: opening a connection
//!   when none is idle (TCP, TLS, AUTH/HELLO/SELECT), every command, and the
//!   one retry described in `attempt`.
//! - Background work has `connect_timeout`: a probe opening its connection,
//!   and each write-behind batch (plus time for its bytes).
//! - While the circuit is open, requests never contact Redis; a background
//!   probe opens a fresh connection, PINGs it within `socket_timeout` (what
//!   a request would be given), and closes the circuit when it answers.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::{RedisError, RedisResult};

use super::breaker::{CircuitBreaker, State, Transition};
use super::config::RedisConfig;
use super::link::{Endpoint, Failure, Handshake, Link};
use crate::stats::LatencyHistogram;

/// Why a Redis call did not produce a reply.
#[derive(Debug)]
pub enum CallError {
    /// The breaker is open: Redis was not contacted.
    CircuitOpen,
    /// Connecting, writing or reading failed or missed the deadline.
    Unavailable(String),
    /// Redis answered with an error reply (bad command, wrong type...).
    Server(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::CircuitOpen => write!(f, "Redis circuit breaker is open"),
            CallError::Unavailable(msg) => write!(f, "Redis unavailable: {msg}"),
            CallError::Server(msg) => write!(f, "Redis error reply: {msg}"),
        }
    }
}

#[derive(Default)]
pub struct ClientCounters {
    pub calls: AtomicU64,
    pub errors: AtomicU64,
    pub skipped_open: AtomicU64,
    pub connects: AtomicU64,
    /// Calls retried on a fresh connection after a pooled one turned out dead.
    pub retries: AtomicU64,
    /// Idle connections dropped because the server had closed them or a
    /// call failed.
    pub discarded_idle: AtomicU64,
    pub probes: AtomicU64,
}

/// Logs one line per breaker state change through Python's logging.
pub type TransitionLogger = fn(&str, Transition, &str);

/// Bytes per second a background write is allowed on top of its deadline,
/// so that a large batch on a slow link is not taken for an outage.
const BACKGROUND_BYTES_PER_SECOND: f64 = 8.0 * 1024.0 * 1024.0;

/// How a call ended when it got no usable reply.
enum Failed {
    /// The server answered (an error reply, or a reply of the wrong shape):
    /// the connection is fine and went back to the pool.
    Answered(String),
    /// No answer: the connection is gone.
    Unreachable {
        failure: Failure,
        /// The server went away before any reply byte (see `attempt`).
        unanswered: bool,
        message: String,
    },
}

impl Failed {
    fn connecting(err: RedisError) -> Failed {
        Failed::Unreachable {
            failure: if err.is_timeout() {
                Failure::Deadline
            } else {
                Failure::Other
            },
            unanswered: false,
            message: err.to_string(),
        }
    }
}

pub struct Pool {
    pub config: RedisConfig,
    endpoint: Endpoint,
    handshake: Handshake,
    /// Resolved once on the request path, refreshed by every probe.
    addresses: Mutex<Vec<SocketAddr>>,
    idle: Mutex<Vec<Link>>,
    breaker: Mutex<CircuitBreaker>,
    me: Weak<Pool>,
    pub counters: ClientCounters,
    pub latency: LatencyHistogram,
    log_transition: TransitionLogger,
}

impl Pool {
    pub fn new(
        config: RedisConfig,
        endpoint: Endpoint,
        log_transition: TransitionLogger,
    ) -> Arc<Self> {
        let breaker = CircuitBreaker::new(
            config.failure_threshold,
            config.retry_initial,
            config.retry_max,
        );
        Arc::new_cyclic(|me| Pool {
            handshake: config.handshake(),
            config,
            endpoint,
            addresses: Mutex::new(Vec::new()),
            idle: Mutex::new(Vec::new()),
            breaker: Mutex::new(breaker),
            me: me.clone(),
            counters: ClientCounters::default(),
            latency: LatencyHistogram::default(),
            log_transition,
        })
    }

    pub fn breaker_state(&self) -> State {
        self.breaker.lock().state()
    }

    pub fn breaker_opened_count(&self) -> u64 {
        self.breaker.lock().opened_count
    }

    /// Whether the circuit is closed (Redis considered up).
    pub fn looks_healthy(&self) -> bool {
        self.breaker.lock().allows_requests()
    }

    /// Whether a request's call would be attempted now (circuit closed).
    /// Callers that skip Redis on false never reach `run`: restart the
    /// probe here too if the OS refused its thread earlier.
    pub fn would_attempt(&self) -> bool {
        let healthy = self.looks_healthy();
        if !healthy {
            self.start_probe();
        }
        healthy
    }

    /// Runs `f` for a request, within `socket_timeout` from now.
    /// `f` may run twice (see `attempt`). Must be called without the GIL.
    pub fn call<T>(&self, f: impl FnMut(&mut Link) -> RedisResult<T>) -> Result<T, CallError> {
        self.run(self.config.io_timeout, true, f)
    }

    /// Runs `f` for background work sending `bytes` of arguments: the
    /// deadline is `connect_timeout` plus time for the bytes, and a success
    /// does not close the circuit (requests have a shorter deadline).
    pub fn call_in_background<T>(
        &self,
        bytes: usize,
        f: impl FnMut(&mut Link) -> RedisResult<T>,
    ) -> Result<T, CallError> {
        let budget = self.config.connect_timeout
            + Duration::from_secs_f64(bytes as f64 / BACKGROUND_BYTES_PER_SECOND);
        self.run(budget, false, f)
    }

    /// Drops every idle connection (they are opened again on demand).
    pub fn discard_idle(&self) {
        let stale = std::mem::take(&mut *self.idle.lock());
        self.counters
            .discarded_idle
            .fetch_add(stale.len() as u64, Ordering::Relaxed);
    }

    fn run<T>(
        &self,
        budget: Duration,
        vouches: bool,
        mut f: impl FnMut(&mut Link) -> RedisResult<T>,
    ) -> Result<T, CallError> {
        if !self.breaker.lock().allows_requests() {
            self.counters.skipped_open.fetch_add(1, Ordering::Relaxed);
            // Normally already running (see `would_attempt`).
            self.start_probe();
            return Err(CallError::CircuitOpen);
        }
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        match self.attempt(started + budget, &mut f) {
            Ok(value) => {
                self.latency.record(started.elapsed());
                if vouches {
                    self.record_success();
                }
                Ok(value)
            }
            Err(Failed::Answered(message)) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                if vouches {
                    self.record_success();
                }
                Err(CallError::Server(message))
            }
            Err(Failed::Unreachable {
                failure, message, ..
            }) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                // After a failure the other idle connections are suspect
                // too (a restart closes them all): no request should find
                // out one by one.
                self.discard_idle();
                let reason = match failure {
                    Failure::Deadline => {
                        format!("no answer within {:.2} s", budget.as_secs_f64())
                    }
                    Failure::Gone => format!("connection closed by the server ({message})"),
                    Failure::Other => message,
                };
                self.record_failure(&reason);
                Err(CallError::Unavailable(reason))
            }
        }
    }

    /// One call on a pooled (or new) connection, retried once on a fresh
    /// connection within the same deadline when the pooled one turned out
    /// dead.
    ///
    /// Why the retry is safe, for non-idempotent commands too (INCR,
    /// HINCRBY, MULTI/EXEC...): it happens only when the connection came
    /// from the idle pool and the server closed or reset it before sending
    /// a single byte of the reply. A pooled connection the server had closed
    /// while idle (restart, failover, `timeout`, CLIENT KILL) is normally
    /// caught before anything is sent (`Link::still_idle`); what reaches
    /// this retry is the race where it closes just as the command leaves,
    /// and a server that closes an idle connection does not run what
    /// arrives on it. The one case where the command could have run is a
    /// server dying between running it and writing its reply; without the
    /// retry the caller would not know whether it ran either. The commands
    /// this project sends tolerate that: SET/GET/DEL/EXPIRE are idempotent,
    /// and a generation counter bumped twice is still newer than before.
    fn attempt<T>(
        &self,
        deadline: Instant,
        f: &mut impl FnMut(&mut Link) -> RedisResult<T>,
    ) -> Result<T, Failed> {
        let (link, pooled) = match self.checkout() {
            Some(link) => (link, true),
            None => (self.open(deadline, false)?, false),
        };
        match self.finish(link, deadline, f) {
            Err(Failed::Unreachable {
                unanswered: true, ..
            }) if pooled => {
                self.counters.retries.fetch_add(1, Ordering::Relaxed);
                self.discard_idle();
                let fresh = self.open(deadline, false)?;
                self.finish(fresh, deadline, f)
            }
            other => other,
        }
    }

    fn finish<T>(
        &self,
        mut link: Link,
        deadline: Instant,
        f: &mut impl FnMut(&mut Link) -> RedisResult<T>,
    ) -> Result<T, Failed> {
        link.arm(deadline);
        let result = f(&mut link);
        match (result, link.failure()) {
            (Ok(value), None) => {
                self.checkin(link);
                Ok(value)
            }
            // A reply arrived but the link broke afterwards: keep the reply.
            (Ok(value), Some(_)) => Ok(value),
            (Err(err), None) => {
                self.checkin(link);
                Err(Failed::Answered(err.to_string()))
            }
            (Err(err), Some(failure)) => Err(Failed::Unreachable {
                failure,
                unanswered: link.went_away_unanswered(),
                message: err.to_string(),
            }),
        }
    }

    /// The most recently used idle connection, unless the server closed it:
    /// then every idle connection goes (they were all opened to the same
    /// server, which most likely restarted).
    fn checkout(&self) -> Option<Link> {
        let mut idle = self.idle.lock();
        let link = idle.pop()?;
        if link.still_idle() {
            return Some(link);
        }
        let stale = std::mem::take(&mut *idle);
        drop(idle);
        self.counters
            .discarded_idle
            .fetch_add(stale.len() as u64 + 1, Ordering::Relaxed);
        None
    }

    fn checkin(&self, link: Link) {
        let mut idle = self.idle.lock();
        if idle.len() < self.config.max_idle {
            idle.push(link);
        }
    }

    /// The server's addresses: resolved on first use, and again by every
    /// probe, so that a DNS lookup is not on the request path after that.
    fn addresses(&self, refresh: bool) -> RedisResult<Vec<SocketAddr>> {
        let (Endpoint::Tcp { host, port } | Endpoint::Tls { host, port, .. }) = &self.endpoint
        else {
            return Ok(Vec::new());
        };
        if !refresh {
            let cached = self.addresses.lock();
            if !cached.is_empty() {
                return Ok(cached.clone());
            }
        }
        let resolved: Vec<SocketAddr> = (host.as_str(), *port).to_socket_addrs()?.collect();
        *self.addresses.lock() = resolved.clone();
        Ok(resolved)
    }

    fn open(&self, deadline: Instant, refresh_addresses: bool) -> Result<Link, Failed> {
        self.counters.connects.fetch_add(1, Ordering::Relaxed);
        self.addresses(refresh_addresses)
            .and_then(|addresses| Link::open(&self.endpoint, &addresses, &self.handshake, deadline))
            .map_err(Failed::connecting)
    }

    fn record_success(&self) {
        let transition = self.breaker.lock().on_success();
        if let Some(transition) = transition {
            (self.log_transition)(&self.config.display_address(), transition, "");
        }
    }

    fn record_failure(&self, reason: &str) {
        let transition = self.breaker.lock().on_failure(Instant::now());
        if let Some(transition) = transition {
            self.start_probe();
            (self.log_transition)(&self.config.display_address(), transition, reason);
        }
    }

    /// Starts the background probe of this outage unless it runs already.
    fn start_probe(&self) {
        let first = {
            let mut breaker = self.breaker.lock();
            if !breaker.claim_probe() {
                return;
            }
            breaker.first_probe_in()
        };
        let pool = self.me.clone();
        let spawned = std::thread::Builder::new()
            .name("ormcache-redis-probe".into())
            .spawn(move || probe_until_recovered(&pool, first));
        if spawned.is_err() {
            // Requests keep being answered locally; the next refused call
            // tries again.
            self.breaker.lock().release_probe();
        }
    }

    /// Opens a fresh connection (within `connect_timeout`) and PINGs it
    /// (within `socket_timeout`, as a request would be given).
    fn probe(&self) -> Result<(), Failed> {
        self.counters.probes.fetch_add(1, Ordering::Relaxed);
        let link = self.open(Instant::now() + self.config.connect_timeout, true)?;
        let deadline = Instant::now() + self.config.io_timeout;
        self.finish(link, deadline, &mut |link: &mut Link| {
            redis::cmd("PING").query::<()>(link)
        })
    }
}

/// The probe thread: sleeps, probes, and closes the circuit once Redis
/// answers. It holds no reference to the pool while sleeping, so a dropped
/// client ends it.
fn probe_until_recovered(pool: &Weak<Pool>, first_wait: Duration) {
    let mut wait = first_wait;
    loop {
        std::thread::sleep(wait);
        let Some(pool) = pool.upgrade() else {
            return;
        };
        {
            // Decided under the breaker's lock: an outage that starts right
            // after this sees no probe running and starts one.
            let mut breaker = pool.breaker.lock();
            if breaker.allows_requests() {
                breaker.release_probe();
                return;
            }
        }
        match pool.probe() {
            Ok(()) => {
                let transition = {
                    let mut breaker = pool.breaker.lock();
                    breaker.release_probe();
                    breaker.on_success()
                };
                if let Some(transition) = transition {
                    (pool.log_transition)(&pool.config.display_address(), transition, "");
                }
                return;
            }
            Err(_) => wait = pool.breaker.lock().on_probe_failure(Instant::now()),
        }
    }
}
