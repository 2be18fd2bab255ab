//! The per-process Redis connection pool with timeouts, circuit breaker and
//! fork safety. Request threads borrow an idle connection (or open one), so
//! a threaded Odoo server does not serialise on one socket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use redis::{Connection, RedisError};

use super::breaker::{CircuitBreaker, State, Transition};
use super::config::RedisConfig;
use crate::fork;
use crate::stats::LatencyHistogram;

/// Why a Redis call did not produce a reply.
#[derive(Debug)]
pub enum CallError {
    /// The breaker is open: Redis was not contacted.
    CircuitOpen,
    /// Connecting, writing or reading failed or timed out.
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

fn is_connection_failure(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_unrecoverable_error()
}

#[derive(Default)]
pub struct ClientCounters {
    pub calls: AtomicU64,
    pub errors: AtomicU64,
    pub skipped_open: AtomicU64,
    pub connects: AtomicU64,
}

/// Logs one line per breaker state change through Python's logging.
pub type TransitionLogger = fn(&str, Transition);

pub struct Pool {
    pub config: RedisConfig,
    client: redis::Client,
    idle: Mutex<(u64, Vec<Connection>)>,
    breaker: Mutex<CircuitBreaker>,
    pub counters: ClientCounters,
    pub latency: LatencyHistogram,
    log_transition: TransitionLogger,
}

impl Pool {
    pub fn new(config: RedisConfig, log_transition: TransitionLogger) -> Result<Arc<Self>, String> {
        let client = redis::Client::open(config.info.clone())
            .map_err(|err| format!("invalid Redis settings: {err}"))?;
        let breaker = CircuitBreaker::new(
            config.failure_threshold,
            config.retry_initial,
            config.retry_max,
        );
        Ok(Arc::new(Pool {
            config,
            client,
            idle: Mutex::new((fork::epoch(), Vec::new())),
            breaker: Mutex::new(breaker),
            counters: ClientCounters::default(),
            latency: LatencyHistogram::default(),
            log_transition,
        }))
    }

    pub fn breaker_state(&self) -> State {
        self.breaker.lock().state()
    }

    pub fn breaker_opened_count(&self) -> u64 {
        self.breaker.lock().opened_count
    }

    /// Whether a call would be attempted now (without claiming a probe).
    pub fn looks_healthy(&self) -> bool {
        self.breaker.lock().state() == State::Closed
    }

    fn checkout(&self) -> Option<Connection> {
        let mut idle = self.idle.lock();
        let epoch = fork::epoch();
        if idle.0 != epoch {
            // Inherited from the parent process: the sockets are shared with
            // it (and TLS state too), so they must be neither used nor shut
            // down here. Leaking them is the only safe choice.
            for con in idle.1.drain(..) {
                std::mem::forget(con);
            }
            idle.0 = epoch;
        }
        idle.1.pop()
    }

    fn checkin(&self, con: Connection, epoch: u64) {
        let mut idle = self.idle.lock();
        if idle.0 == epoch && idle.1.len() < self.config.max_idle {
            idle.1.push(con);
        }
    }

    fn connect(&self) -> Result<Connection, RedisError> {
        self.counters.connects.fetch_add(1, Ordering::Relaxed);
        let con = self
            .client
            .get_connection_with_timeout(self.config.connect_timeout)?;
        con.set_read_timeout(Some(self.config.io_timeout))?;
        con.set_write_timeout(Some(self.config.io_timeout))?;
        Ok(con)
    }

    /// Runs `f` on a pooled connection, through the circuit breaker.
    /// Must be called without the GIL held.
    pub fn call<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<T, CallError> {
        if !self.breaker.lock().allow(Instant::now()) {
            self.counters.skipped_open.fetch_add(1, Ordering::Relaxed);
            return Err(CallError::CircuitOpen);
        }
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let epoch = fork::epoch();
        let started = Instant::now();
        let result = match self.checkout() {
            Some(con) => Ok(con),
            None => self.connect(),
        }
        .and_then(|mut con| f(&mut con).map(|value| (value, con)));
        match result {
            Ok((value, con)) => {
                self.latency.record(started.elapsed());
                self.checkin(con, epoch);
                self.record_success();
                Ok(value)
            }
            Err(err) if !is_connection_failure(&err) => {
                // The server answered: the connection is healthy, the
                // request was not. The connection is dropped anyway because
                // `f` consumed it on the error path.
                self.record_success();
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                Err(CallError::Server(err.to_string()))
            }
            Err(err) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                let transition = self.breaker.lock().on_failure(Instant::now());
                if let Some(transition) = transition {
                    (self.log_transition)(&self.config.display_address(), transition);
                }
                Err(CallError::Unavailable(err.to_string()))
            }
        }
    }

    fn record_success(&self) {
        let transition = self.breaker.lock().on_success();
        if let Some(transition) = transition {
            (self.log_transition)(&self.config.display_address(), transition);
        }
    }
}
