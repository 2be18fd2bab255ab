//! The Redis connection pool of one process, with timeouts and a circuit
//! breaker. Request threads borrow an idle connection (or open one), so a
//! threaded Odoo server does not serialise on one socket. Fork safety comes
//! from the owner: a pool belongs to one process image (`fork::ProcessLocal`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use redis::{Connection, RedisError};

use super::breaker::{CircuitBreaker, State, Transition};
use super::config::RedisConfig;
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
pub type TransitionLogger = fn(&str, Transition, &str);

pub struct Pool {
    pub config: RedisConfig,
    client: redis::Client,
    idle: Mutex<Vec<Connection>>,
    breaker: Mutex<CircuitBreaker>,
    pub counters: ClientCounters,
    pub latency: LatencyHistogram,
    log_transition: TransitionLogger,
}

impl Pool {
    pub fn new(
        config: RedisConfig,
        client: redis::Client,
        log_transition: TransitionLogger,
    ) -> Self {
        let breaker = CircuitBreaker::new(
            config.failure_threshold,
            config.retry_initial,
            config.retry_max,
        );
        Pool {
            config,
            client,
            idle: Mutex::new(Vec::new()),
            breaker: Mutex::new(breaker),
            counters: ClientCounters::default(),
            latency: LatencyHistogram::default(),
            log_transition,
        }
    }

    pub fn breaker_state(&self) -> State {
        self.breaker.lock().state()
    }

    pub fn breaker_opened_count(&self) -> u64 {
        self.breaker.lock().opened_count
    }

    /// Whether the circuit is closed (Redis considered up).
    pub fn looks_healthy(&self) -> bool {
        self.breaker.lock().state() == State::Closed
    }

    /// Whether a call would be attempted now: closed, or time for a probe.
    pub fn would_attempt(&self) -> bool {
        self.breaker.lock().would_allow(Instant::now())
    }

    fn checkout(&self) -> Option<Connection> {
        self.idle.lock().pop()
    }

    fn checkin(&self, con: Connection) {
        let mut idle = self.idle.lock();
        if idle.len() < self.config.max_idle {
            idle.push(con);
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
        let started = Instant::now();
        let result = match self.checkout() {
            Some(con) => Ok(con),
            None => self.connect(),
        }
        .and_then(|mut con| f(&mut con).map(|value| (value, con)));
        match result {
            Ok((value, con)) => {
                self.latency.record(started.elapsed());
                self.checkin(con);
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
                let reason = err.to_string();
                if let Some(transition) = transition {
                    (self.log_transition)(&self.config.display_address(), transition, &reason);
                }
                Err(CallError::Unavailable(reason))
            }
        }
    }

    fn record_success(&self) {
        let transition = self.breaker.lock().on_success();
        if let Some(transition) = transition {
            (self.log_transition)(&self.config.display_address(), transition, "");
        }
    }
}
