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
//!
//! Sentinel: connections go to the master the sentinels named
//! (`sentinel::MasterResolver`, asked within the call's deadline). A failed
//! call, a refused connection, a server that says it is a replica (ROLE at
//! connection, READONLY on a write) all make the next connection ask the
//! sentinels again; that is how a promotion is followed.
//!
//! Cluster: a pooled connection is a whole cluster connection (`Conn::Cluster`,
//! see `cluster`): the crate routes, redirects and reconnects nodes under
//! the call's deadline; one whose call could not reach the cluster is
//! dropped like a broken link.
//!
//! Here: `Pool` and a call's path through it. `call_errors` tells how a call
//! fails, `connect` opens connections, `probe` keeps the breaker and runs
//! the background probe; a pooled connection itself is `redis::conn`.

mod call_errors;
mod connect;
mod probe;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::{RedisError, RedisResult};

use super::breaker::{CircuitBreaker, State, Transition};
use super::budget::{self, Spent};
use super::cluster::NodeContext;
use super::config::RedisConfig;
use super::conn::Conn;
use super::link::{Endpoint, Failure, Handshake};
use super::reply_guard::ReplyLimits;
use super::sentinel::MasterResolver;
use crate::stats::LatencyHistogram;
pub use call_errors::CallError;
use call_errors::Failed;

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
    /// Calls not made (or cut short) because a lookup's or a unit of
    /// work's budget was spent.
    pub budget_skips: AtomicU64,
    /// Replies refused on their announced size (`max_value_bytes`).
    pub oversized_replies: AtomicU64,
}

/// Logs one line per breaker state change through Python's logging.
pub type TransitionLogger = fn(&str, Transition, &str);

/// Bytes per second a background write is allowed on top of its deadline,
/// so that a large batch on a slow link is not taken for an outage.
const BACKGROUND_BYTES_PER_SECOND: f64 = 8.0 * 1024.0 * 1024.0;

pub struct Pool {
    pub config: RedisConfig,
    endpoint: Endpoint,
    /// Sentinel set-ups: where the master is now.
    master: Option<Arc<MasterResolver>>,
    /// Redis Cluster: the crate's client, and how nodes are reached.
    cluster: Option<(redis::cluster::ClusterClient, Arc<NodeContext>)>,
    handshake: Handshake,
    /// Resolved once on the request path, refreshed by every probe.
    addresses: Mutex<Vec<SocketAddr>>,
    idle: Mutex<Vec<Conn>>,
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
        master: Option<Arc<MasterResolver>>,
        cluster: Option<redis::cluster::ClusterClient>,
        log_transition: TransitionLogger,
    ) -> Arc<Self> {
        let cluster = cluster.map(|client| {
            (
                client,
                NodeContext::new(endpoint.clone(), config.handshake()),
            )
        });
        let breaker = CircuitBreaker::new(
            config.failure_threshold,
            config.retry_initial,
            config.retry_max,
        );
        Arc::new_cyclic(|me| Pool {
            handshake: config.handshake(),
            config,
            endpoint,
            master,
            cluster,
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

    /// The server connections go to now (`host:port`); for Sentinel the
    /// master in use, None until the sentinels named one.
    pub fn node(&self) -> Option<String> {
        match (&self.master, &self.cluster) {
            (Some(master), _) => master.current(),
            // Every master answers: see `node_replies`.
            (None, Some(_)) => None,
            (None, None) => Some(self.endpoint.node()),
        }
    }

    /// Failovers followed: masters the sentinels newly named, or (Cluster)
    /// MOVED/ASK redirects (slots served by another node than expected).
    pub fn failovers(&self) -> u64 {
        if let Some((_, nodes)) = &self.cluster {
            return nodes.redirects.load(Ordering::Relaxed);
        }
        self.master
            .as_ref()
            .map_or(0, |master| master.switches.load(Ordering::Relaxed))
    }

    /// Cluster: replies per node (`host:port`).
    pub fn node_replies(&self) -> Option<std::collections::BTreeMap<String, u64>> {
        self.cluster.as_ref().map(|(_, nodes)| nodes.replies())
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

    /// Runs `f` for a request, within `socket_timeout` from now and what
    /// this thread's budgets have left (see `budget`); its replies may carry
    /// one value of `max_value_bytes`. `f` may run twice (see `attempt`).
    /// Must be called without the GIL.
    pub fn call<T>(&self, f: impl FnMut(&mut Conn) -> RedisResult<T>) -> Result<T, CallError> {
        self.call_limited(self.config.reply_limits(), f)
    }

    /// `call` with other bounds on what the replies may be.
    pub fn call_limited<T>(
        &self,
        limits: ReplyLimits,
        f: impl FnMut(&mut Conn) -> RedisResult<T>,
    ) -> Result<T, CallError> {
        let full = self.config.io_timeout;
        let allowed = match budget::allowance(self.budget_id(), full) {
            Ok(allowed) => allowed,
            Err(spent) => {
                self.counters.budget_skips.fetch_add(1, Ordering::Relaxed);
                if spent == Spent::Work {
                    // Normally checked before: no request waits on it.
                    self.would_attempt();
                }
                return Err(CallError::BudgetSpent);
            }
        };
        let started = Instant::now();
        let result = self.run(allowed, limits, true, f);
        budget::charge(self.budget_id(), started.elapsed());
        result
    }

    /// What this thread's budgets know this pool by.
    pub fn budget_id(&self) -> usize {
        self as *const Pool as usize
    }

    /// Runs `f` for background work sending `bytes` of arguments: the
    /// deadline is `connect_timeout` plus time for the bytes, and a success
    /// does not close the circuit (requests have a shorter deadline).
    pub fn call_in_background<T>(
        &self,
        bytes: usize,
        f: impl FnMut(&mut Conn) -> RedisResult<T>,
    ) -> Result<T, CallError> {
        let budget = self.config.connect_timeout
            + Duration::from_secs_f64(bytes as f64 / BACKGROUND_BYTES_PER_SECOND);
        self.run(budget, self.config.reply_limits(), false, f)
    }

    /// Drops every idle connection (they are opened again on demand).
    pub fn discard_idle(&self) {
        let stale = std::mem::take(&mut *self.idle.lock());
        self.counters
            .discarded_idle
            .fetch_add(stale.len() as u64, Ordering::Relaxed);
    }

    /// One call within `budget`. `vouches`: a request's call, whose success
    /// tells that Redis is healthy (background work has a longer deadline).
    /// A request's call whose budget a thread's budgets cut below
    /// `socket_timeout` and that ran out says nothing about Redis.
    fn run<T>(
        &self,
        budget: Duration,
        limits: ReplyLimits,
        vouches: bool,
        mut f: impl FnMut(&mut Conn) -> RedisResult<T>,
    ) -> Result<T, CallError> {
        if !self.breaker.lock().allows_requests() {
            self.counters.skipped_open.fetch_add(1, Ordering::Relaxed);
            // Normally already running (see `would_attempt`).
            self.start_probe();
            return Err(CallError::CircuitOpen);
        }
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        match self.attempt(started + budget, limits, &mut f) {
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
            Err(Failed::TooLarge(message)) => {
                self.counters
                    .oversized_replies
                    .fetch_add(1, Ordering::Relaxed);
                Err(CallError::TooLarge(message))
            }
            Err(Failed::Unreachable {
                failure: Failure::Deadline,
                ..
            }) if vouches && budget < self.config.io_timeout => {
                // Cut at what a thread's budget had left: no verdict.
                self.counters.budget_skips.fetch_add(1, Ordering::Relaxed);
                Err(CallError::BudgetSpent)
            }
            Err(Failed::Unreachable {
                failure, message, ..
            }) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                // After a failure the other idle connections are suspect
                // too (a restart closes them all): no request should find
                // out one by one.
                self.discard_idle();
                self.forget_master();
                let reason = match failure {
                    Failure::Deadline => {
                        format!("no answer within {:.2} s", budget.as_secs_f64())
                    }
                    Failure::Gone => format!("connection closed by the server ({message})"),
                    Failure::Other | Failure::TooLarge => message,
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
    ///
    /// Sentinel and Cluster add two cases of the same kind: a master that
    /// says READONLY ran nothing (it was demoted), and a cluster connection
    /// whose slot map names a master that refuses connections sent nothing
    /// there (unless that master died mid-reply, as above); the retry asks
    /// the sentinels, or the cluster, again.
    fn attempt<T>(
        &self,
        deadline: Instant,
        limits: ReplyLimits,
        f: &mut impl FnMut(&mut Conn) -> RedisResult<T>,
    ) -> Result<T, Failed> {
        let (link, pooled) = match self.checkout() {
            Some(link) => (link, true),
            None => (self.open(deadline, false)?, false),
        };
        match self.finish(link, deadline, limits, f) {
            // Sentinel: a fresh connection may also have reached a master
            // demoted since the sentinels named it; the next one asks again.
            Err(Failed::Unreachable {
                unanswered: true, ..
            }) if pooled || self.master.is_some() => {
                self.counters.retries.fetch_add(1, Ordering::Relaxed);
                self.discard_idle();
                self.forget_master();
                let fresh = self.open(deadline, false)?;
                self.finish(fresh, deadline, limits, f)
            }
            other => other,
        }
    }

    fn finish<T>(
        &self,
        mut link: Conn,
        deadline: Instant,
        limits: ReplyLimits,
        f: &mut impl FnMut(&mut Conn) -> RedisResult<T>,
    ) -> Result<T, Failed> {
        match &mut link {
            Conn::Node(node) => node.arm(deadline, limits),
            Conn::Cluster(cluster) => {
                if let Some((_, nodes)) = &self.cluster {
                    cluster.arm(nodes, deadline, limits);
                }
            }
        }
        let result = f(&mut link);
        match (result, link.failure()) {
            (Ok(value), None) => {
                self.checkin(link);
                Ok(value)
            }
            // A reply arrived but the link broke afterwards: keep the reply.
            (Ok(value), Some(_)) => Ok(value),
            // READONLY: this master was demoted. The command did not run
            // (a transaction is aborted whole), so it may be sent again.
            (Err(err), None) if self.master.is_some() && is_demoted(&err) => {
                Err(Failed::Unreachable {
                    failure: Failure::Gone,
                    unanswered: true,
                    message: err.to_string(),
                })
            }
            (Err(err), None) => {
                self.checkin(link);
                Err(Failed::Answered(err.to_string()))
            }
            (Err(err), Some(Failure::TooLarge)) => Err(Failed::TooLarge(err.to_string())),
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
    fn checkout(&self) -> Option<Conn> {
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

    fn checkin(&self, link: Conn) {
        let mut idle = self.idle.lock();
        if idle.len() < self.config.max_idle {
            idle.push(link);
        }
    }
}

/// A write refused by a replica: the server was demoted from master.
fn is_demoted(err: &RedisError) -> bool {
    err.code() == Some("READONLY")
}
