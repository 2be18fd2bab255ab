//! Redis Cluster through the redis crate's `ClusterConnection`, which owns
//! the slot map and follows MOVED/ASK, TRYAGAIN and failovers, over this
//! project's deadline-bound `Link`s.
//!
//! The crate opens node connections through its `Connect` trait, which
//! carries no deadline; so the call being served publishes its deadline
//! (and how to reach and greet a node) in a thread-local `CallContext`
//! before it touches the cluster connection, and every node connection
//! arms itself with it before each read or write. A call's deadline thus
//! bounds connecting to nodes, slot refreshes and redirects alike; only the
//! crate's own waits between retries (at most `RETRIES` ×
//! `MAX_RETRY_WAIT_MS`) can run past it.
//!
//! A pipeline whose keys lie in several slots is split here into parts the
//! crate routes and redirects as a whole (its own cross-node pipeline only
//! runs on its own connection type): one part per node that, the last time
//! the crate routed them, answered for the slots in it (learned from the
//! crate's routing, never computed here), one per slot not seen yet. When
//! a merged part meets a slot that moved, its slots are forgotten and sent
//! one slot at a time.
//! Transactions are passed on whole: their keys must share a slot (hash
//! tags, see docs/ARCHITECTURE.md "Key layout").
//!
//! Here: the cluster connection (`Cluster`) and what all nodes share
//! (`NodeContext`); `node_link` is one node's connection under the call's
//! deadline, `pipeline_split` the split of a pipeline over several slots.

mod node_link;
mod pipeline_split;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConnection};
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo, Slot};
use redis::{
    ConnectionAddr, ConnectionLike, ErrorKind, RedisError, RedisResult, ServerErrorKind, Value,
};

use super::conn::wait_for_one_replica;
use super::link::{replicas_in_role, Endpoint, Failure, Handshake};
use super::reply_guard::{ReplyLimits, TOO_LARGE};
use node_link::{current_call, enter, NodeLink, LAST_NODE};

/// Retries the crate makes for one command (redirects, TRYAGAIN, a node
/// reconnected), and the longest wait between two: small, since the call's
/// deadline bounds everything else and a caller would rather compute.
const RETRIES: u32 = 3;
const MIN_RETRY_WAIT_MS: u64 = 1;
const MAX_RETRY_WAIT_MS: u64 = 5;

/// How to reach and greet any node, and what the nodes answered.
pub struct NodeContext {
    template: Endpoint,
    handshake: Handshake,
    /// Replies per node (`host:port`): which nodes serve this client.
    replies: Mutex<BTreeMap<String, u64>>,
    /// MOVED and ASK replies: slots that moved (a failover, a resharding).
    pub redirects: AtomicU64,
    /// The node that last answered for a slot, as the crate routed it.
    slot_nodes: Mutex<HashMap<Slot, Arc<str>>>,
}

impl NodeContext {
    pub fn new(template: Endpoint, handshake: Handshake) -> Arc<NodeContext> {
        Arc::new(NodeContext {
            template,
            handshake,
            replies: Mutex::new(BTreeMap::new()),
            redirects: AtomicU64::new(0),
            slot_nodes: Mutex::new(HashMap::new()),
        })
    }

    pub fn replies(&self) -> BTreeMap<String, u64> {
        self.replies.lock().clone()
    }

    fn saw(&self, node: &str, value: &Value) {
        {
            let mut replies = self.replies.lock();
            match replies.get_mut(node) {
                Some(count) => *count += 1,
                None => {
                    replies.insert(node.to_string(), 1);
                }
            }
        }
        let redirected = |value: &Value| matches!(value, Value::ServerError(err) if matches!(err.code(), "MOVED" | "ASK"));
        let redirects = match value {
            Value::Array(values) => values.iter().filter(|value| redirected(value)).count(),
            value => usize::from(redirected(value)),
        };
        if redirects > 0 {
            self.redirects
                .fetch_add(redirects as u64, Ordering::Relaxed);
        }
    }
}
/// The crate's cluster client: seed nodes and retry policy. Connections
/// are made per process (see `Pool`).
pub fn client(nodes: &[(String, u16)]) -> Result<ClusterClient, String> {
    let seeds: Vec<ConnectionAddr> = nodes
        .iter()
        .map(|(host, port)| ConnectionAddr::Tcp(host.clone(), *port))
        .collect();
    ClusterClientBuilder::new(seeds)
        .retries(RETRIES)
        .min_retry_wait(MIN_RETRY_WAIT_MS)
        .max_retry_wait(MAX_RETRY_WAIT_MS)
        .build()
        .map_err(|err| format!("Redis Cluster settings refused: {err}"))
}

/// A cluster connection of one thread at a time, with what its last call
/// says about the cluster's reachability.
pub struct Cluster {
    connection: ClusterConnection<NodeLink>,
    nodes: Arc<NodeContext>,
    failure: Option<Failure>,
    /// The last call ended on a node that refused connections: the slot
    /// map names a dead master (the crate only refreshes it on MOVED).
    refused: bool,
}

impl Cluster {
    /// Connects to the first seed that answers and learns the slot map,
    /// within the call's deadline.
    pub fn open(
        client: &ClusterClient,
        nodes: &Arc<NodeContext>,
        deadline: Instant,
    ) -> RedisResult<Cluster> {
        enter(nodes, deadline, nodes.handshake.reply_limits);
        Ok(Cluster {
            connection: client.get_generic_connection()?,
            nodes: Arc::clone(nodes),
            failure: None,
            refused: false,
        })
    }

    /// Bounds the next call by `deadline`.
    pub fn arm(&mut self, nodes: &Arc<NodeContext>, deadline: Instant, limits: ReplyLimits) {
        enter(nodes, deadline, limits);
        self.failure = None;
        self.refused = false;
    }

    /// Whether the last call failed only because a node the slot map names
    /// refused to connect: a fresh connection (a fresh slot map) may
    /// succeed at once after a failover.
    pub fn refused(&self) -> bool {
        self.refused
    }

    /// Why the last call could not reach the cluster, if it could not.
    pub fn failure(&self) -> Option<Failure> {
        self.failure
    }

    fn note<T>(&mut self, result: RedisResult<T>) -> RedisResult<T> {
        if let Err(err) = &result {
            if let Some(failure) = unreachable(err) {
                self.failure.get_or_insert(failure);
            }
            self.refused =
                err.is_connection_refusal() || err.kind() == ErrorKind::ClusterConnectionNotFound;
        }
        result
    }

    /// Waits, within the call's deadline, until a replica of the master
    /// that answered this thread's last request holds every write sent to
    /// it (see `Conn::confirm_replicated`). True when one confirmed, or
    /// when that master has no replica or does not let this user ask
    /// (`ROLE` refused by an ACL); false when none confirmed in time.
    pub fn confirm_replicated(&mut self) -> RedisResult<bool> {
        let Some(node) = LAST_NODE.with(|last| last.borrow().clone()) else {
            return Ok(true);
        };
        let Some((host, port)) = node
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host.trim_matches(['[', ']']), port.parse().ok()?)))
        else {
            return Ok(true);
        };
        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: host.to_string(),
            port,
        });
        let role = self
            .connection
            .route_command(&redis::cmd("ROLE"), route.clone());
        let replicas = match role {
            Ok(Value::Array(parts)) => replicas_in_role(&parts),
            Ok(_) => 0,
            Err(err) if unreachable(&err).is_none() => return Ok(true),
            Err(err) => return self.note(Err(err)),
        };
        if replicas == 0 {
            return Ok(true);
        }
        let (deadline, _, _) = current_call()?;
        let time_left = deadline.saturating_duration_since(Instant::now());
        let acknowledged = self
            .connection
            .route_command(&wait_for_one_replica(time_left), route);
        Ok(matches!(self.note(acknowledged)?, Value::Int(count) if count >= 1))
    }
}

/// Whether an error means the cluster (or part of it) could not be reached
/// in time, as opposed to an answer (a wrong type, a syntax error).
fn unreachable(err: &RedisError) -> Option<Failure> {
    match err.kind() {
        ErrorKind::Server(kind) => matches!(
            kind,
            ServerErrorKind::Moved
                | ServerErrorKind::Ask
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ReadOnly
                | ServerErrorKind::BusyLoading
        )
        .then_some(Failure::Other),
        _ if err.to_string().contains(TOO_LARGE) => Some(Failure::TooLarge),
        _ if err.is_timeout() => Some(Failure::Deadline),
        _ if err.is_connection_dropped() => Some(Failure::Gone),
        _ => Some(Failure::Other),
    }
}

impl ConnectionLike for Cluster {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        let reply = self.connection.req_packed_command(cmd);
        self.note(reply)
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        if offset > 0 {
            // MULTI/EXEC: routed whole by its first key.
            let replies = self.connection.req_packed_commands(cmd, offset, count);
            return self.note(replies);
        }
        self.split_pipeline(cmd, count)
    }

    fn get_db(&self) -> i64 {
        0
    }

    fn check_connection(&mut self) -> bool {
        self.connection.check_connection()
    }

    fn is_open(&self) -> bool {
        self.connection.is_open()
    }
}
