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

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::net::ToSocketAddrs;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConnection, Connect};
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo, Slot};
use redis::{
    ConnectionAddr, ConnectionLike, ErrorKind, IntoConnectionInfo, RedisError, RedisResult,
    ServerErrorKind, Value,
};

use super::conn::wait_for_one_replica;
use super::link::{replicas_in_role, Endpoint, Failure, Handshake, Link};
use super::reply_guard::{ReplyLimits, TOO_LARGE};

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

struct CallContext {
    deadline: Instant,
    limits: ReplyLimits,
    nodes: Arc<NodeContext>,
}

thread_local! {
    static CALL: RefCell<Option<CallContext>> = const { RefCell::new(None) };
    /// The node whose reply this thread's last request got: after the
    /// crate returns, the node it routed (or redirected) that request to.
    static LAST_NODE: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
}

fn current_call() -> RedisResult<(Instant, ReplyLimits, Arc<NodeContext>)> {
    CALL.with(|call| {
        call.borrow()
            .as_ref()
            .map(|call| (call.deadline, call.limits, Arc::clone(&call.nodes)))
    })
    .ok_or_else(|| {
        RedisError::from((
            ErrorKind::Client,
            "a cluster node was used outside of a call",
        ))
    })
}

/// One node connection of a cluster connection.
pub struct NodeLink {
    link: Link,
    node: Arc<str>,
    nodes: Arc<NodeContext>,
}

impl NodeLink {
    /// Bounds the next operation by the deadline of the call being served.
    fn arm(&mut self) -> RedisResult<()> {
        let (deadline, limits, _) = current_call()?;
        self.link.arm(deadline, limits);
        Ok(())
    }

    fn seen(&self, value: RedisResult<Value>) -> RedisResult<Value> {
        if let Ok(value) = &value {
            self.nodes.saw(&self.node, value);
            LAST_NODE.with(|last| *last.borrow_mut() = Some(Arc::clone(&self.node)));
        }
        value
    }
}

impl Connect for NodeLink {
    fn connect<T: IntoConnectionInfo>(info: T, _timeout: Option<Duration>) -> RedisResult<Self> {
        let info = info.into_connection_info()?;
        let (ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. }) =
            info.addr()
        else {
            return Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "cluster nodes are reached over TCP",
            )));
        };
        let (deadline, _, nodes) = current_call()?;
        let endpoint = nodes.template.at(host, *port).map_err(|err| {
            RedisError::from((ErrorKind::InvalidClientConfig, "unusable cluster node", err))
        })?;
        let addresses: Vec<_> = (host.as_str(), *port).to_socket_addrs()?.collect();
        let link = Link::open(&endpoint, &addresses, &nodes.handshake, deadline)?;
        Ok(NodeLink {
            link,
            node: endpoint.node().into(),
            nodes,
        })
    }

    fn send_packed_command(&mut self, cmd: &[u8]) -> RedisResult<()> {
        self.arm()?;
        self.link.send_packed(cmd)
    }

    fn set_write_timeout(&self, _: Option<Duration>) -> RedisResult<()> {
        Ok(())
    }

    fn set_read_timeout(&self, _: Option<Duration>) -> RedisResult<()> {
        Ok(())
    }

    fn recv_response(&mut self) -> RedisResult<Value> {
        self.arm()?;
        let value = self.link.recv();
        self.seen(value)
    }
}

impl ConnectionLike for NodeLink {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        self.arm()?;
        let value = self.link.req_packed_command(cmd);
        self.seen(value)
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        self.arm()?;
        let values = self.link.req_packed_commands(cmd, offset, count)?;
        for value in &values {
            self.nodes.saw(&self.node, value);
        }
        LAST_NODE.with(|last| *last.borrow_mut() = Some(Arc::clone(&self.node)));
        Ok(values)
    }

    fn get_db(&self) -> i64 {
        0
    }

    fn check_connection(&mut self) -> bool {
        self.arm().is_ok() && self.link.check_connection()
    }

    fn is_open(&self) -> bool {
        self.link.is_open()
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

    /// A pipeline over several slots (see the module's comment): the
    /// replies in the order of the commands.
    fn split_pipeline(&mut self, packed: &[u8], count: usize) -> RedisResult<Vec<Value>> {
        let commands = split_packed(packed, count).ok_or_else(|| {
            RedisError::from((ErrorKind::Client, "a pipeline that is not RESP arrays"))
        })?;
        let mut groups: Vec<SlotGroup> = Vec::new();
        for (index, (_, key)) in commands.iter().enumerate() {
            let slot = key.map(Slot::for_key);
            match groups
                .iter_mut()
                .find(|(known, _)| slot.is_some() && *known == slot)
            {
                Some((_, members)) => members.push(index),
                None => groups.push((slot, vec![index])),
            }
        }
        // Slots last served by the same node travel together.
        let mut parts: Vec<(Option<Arc<str>>, Vec<SlotGroup>)> = Vec::new();
        {
            let learned = self.nodes.slot_nodes.lock();
            for (slot, members) in groups {
                let node = slot.and_then(|slot| learned.get(&slot).cloned());
                match parts
                    .iter_mut()
                    .find(|(known, _)| node.is_some() && *known == node)
                {
                    Some((_, slots)) => slots.push((slot, members)),
                    None => parts.push((node, vec![(slot, members)])),
                }
            }
        }
        let mut replies = vec![Value::Nil; count];
        for (_, slots) in parts {
            if slots.len() > 1 {
                let members: Vec<usize> = slots.iter().flat_map(|(_, m)| m.clone()).collect();
                let values = self.send_part(packed, &commands, &members);
                match values {
                    Ok(values) => {
                        for (index, value) in members.into_iter().zip(values) {
                            replies[index] = value;
                        }
                        continue;
                    }
                    // A slot moved since it was learned: forget them all and
                    // send one slot at a time (what ran is sent again: the
                    // commands this project pipelines are idempotent).
                    Err(err) if err.is_cluster_error() => {
                        let mut learned = self.nodes.slot_nodes.lock();
                        for slot in slots.iter().filter_map(|(slot, _)| slot.as_ref()) {
                            learned.remove(slot);
                        }
                    }
                    Err(err) => return self.note(Err(err)),
                }
            }
            for (slot, members) in slots {
                LAST_NODE.with(|last| *last.borrow_mut() = None);
                let values = self.send_part(packed, &commands, &members);
                let values = self.note(values)?;
                if let (Some(slot), Some(node)) = (slot, LAST_NODE.with(|last| last.take())) {
                    self.nodes.slot_nodes.lock().insert(slot, node);
                }
                for (index, value) in members.into_iter().zip(values) {
                    replies[index] = value;
                }
            }
        }
        Ok(replies)
    }

    /// `members` of the packed `commands` as one request the crate routes.
    fn send_part(
        &mut self,
        packed: &[u8],
        commands: &[PackedCommand<'_>],
        members: &[usize],
    ) -> RedisResult<Vec<Value>> {
        if let [only] = members[..] {
            let reply = self
                .connection
                .req_packed_command(&packed[commands[only].0.clone()]);
            return reply.map(|value| vec![value]);
        }
        let mut part = Vec::new();
        for &index in members {
            part.extend_from_slice(&packed[commands[index].0.clone()]);
        }
        self.connection.req_packed_commands(&part, 0, members.len())
    }
}

fn enter(nodes: &Arc<NodeContext>, deadline: Instant, limits: ReplyLimits) {
    CALL.with(|call| {
        *call.borrow_mut() = Some(CallContext {
            deadline,
            limits,
            nodes: Arc::clone(nodes),
        })
    });
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

/// The indexes of a pipeline's commands on one slot (None: keyless).
type SlotGroup = (Option<Slot>, Vec<usize>);

/// Where one packed command lies, and its first key: the argument after
/// the name, or for `EVAL`/`EVALSHA` (the single-flight lock release) the
/// first one after the key count.
type PackedCommand<'a> = (Range<usize>, Option<&'a [u8]>);

/// Each of `count` packed commands; None unless `packed` is exactly that.
fn split_packed(packed: &[u8], count: usize) -> Option<Vec<PackedCommand<'_>>> {
    fn number(bytes: &[u8], at: &mut usize, marker: u8) -> Option<usize> {
        if bytes.get(*at) != Some(&marker) {
            return None;
        }
        let end = *at + bytes[*at..].windows(2).position(|w| w == b"\r\n")?;
        let value = std::str::from_utf8(&bytes[*at + 1..end])
            .ok()?
            .parse()
            .ok()?;
        *at = end + 2;
        Some(value)
    }
    let mut commands = Vec::with_capacity(count);
    let mut at = 0;
    for _ in 0..count {
        let start = at;
        let count = number(packed, &mut at, b'*')?;
        let mut args = Vec::with_capacity(count);
        for _ in 0..count {
            let len = number(packed, &mut at, b'$')?;
            args.push(packed.get(at..at + len)?);
            at += len + 2;
        }
        let script = args.first().is_some_and(|name| {
            name.eq_ignore_ascii_case(b"EVAL") || name.eq_ignore_ascii_case(b"EVALSHA")
        });
        let key = match script {
            true => (args.get(2).copied() != Some(&b"0"[..]))
                .then(|| args.get(3).copied())
                .flatten(),
            false => args.get(1).copied(),
        };
        commands.push((start..at, key));
    }
    (at == packed.len()).then_some(commands)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_pipelines_split_into_commands_and_keys() {
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg("a").cmd("PING");
        pipe.cmd("SET").arg("b\r\n").arg("x");
        pipe.cmd("EVAL").arg("return 1").arg(1).arg("lock").arg(7);
        pipe.cmd("EVAL").arg("return 1").arg(0);
        let packed = pipe.get_packed_pipeline();
        let commands = split_packed(&packed, 5).unwrap();
        let keys: Vec<_> = commands.iter().map(|(_, key)| *key).collect();
        let expected: [Option<&[u8]>; 5] = [Some(b"a"), None, Some(b"b\r\n"), Some(b"lock"), None];
        assert_eq!(keys, expected);
        let rejoined: Vec<u8> = commands
            .iter()
            .flat_map(|(range, _)| packed[range.clone()].to_vec())
            .collect();
        assert_eq!(rejoined, packed);
        assert!(split_packed(&packed, 6).is_none());
        assert!(split_packed(&packed[..packed.len() - 1], 5).is_none());
    }
}
