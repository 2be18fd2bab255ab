//! A pooled connection (`Conn`): to one server (a deadline-bound `Link`),
//! or to a whole Redis Cluster (`Cluster`); and the wait for a replica to
//! hold what a connection wrote.

use redis::{ConnectionLike, RedisResult, Value};
use std::time::Duration;

use super::cluster::Cluster;
use super::link::{replicas_in_role, Failure, Link};

/// A pooled connection: to one server, or to a whole cluster.
pub enum Conn {
    /// Boxed: a link holds its stream, parser and reply guard, and idle
    /// connections move in and out of the pool.
    Node(Box<Link>),
    Cluster(Box<Cluster>),
}

/// Room left for WAIT's reply before the call's deadline: Redis checks the
/// timeouts of blocked clients once per `serverCron` tick (100 ms at the
/// default `hz 10`), so WAIT answers up to a tick after its timeout.
const WAIT_REPLY_MARGIN: Duration = Duration::from_millis(105);

/// `WAIT 1 <ms>`, its reply due before a deadline `time_left` away.
pub fn wait_for_one_replica(time_left: Duration) -> redis::Cmd {
    // WAIT's timeout 0 would mean "forever".
    let wait_ms = time_left
        .saturating_sub(WAIT_REPLY_MARGIN)
        .as_millis()
        .max(1);
    let mut wait = redis::cmd("WAIT");
    wait.arg(1).arg(wait_ms as u64);
    wait
}

impl Conn {
    /// Waits, within the call's deadline, until a replica holds every write
    /// sent on this connection, when its master has replicas: for a write a
    /// failover must not lose (asynchronous replication would, if the master
    /// died before passing it on). The master's `ROLE` names the replicas
    /// it streams to now; in a cluster, the master that ran the last
    /// request is asked. True when a replica confirmed, when there is none,
    /// or when an ACL refuses `ROLE` (nothing to wait with); false when
    /// none confirmed in time.
    pub fn confirm_replicated(&mut self) -> RedisResult<bool> {
        let link = match self {
            Conn::Node(link) => link,
            Conn::Cluster(cluster) => return cluster.confirm_replicated(),
        };
        let replicas = match redis::cmd("ROLE").query::<Value>(link) {
            Ok(Value::Array(parts)) => replicas_in_role(&parts),
            Ok(_) => 0,
            // An error reply (NOPERM): the link is still in step.
            Err(_) if link.failure().is_none() => return Ok(true),
            Err(err) => return Err(err),
        };
        if replicas == 0 {
            return Ok(true);
        }
        let acknowledged: i64 = wait_for_one_replica(link.time_left()).query(link)?;
        Ok(acknowledged >= 1)
    }

    pub(super) fn still_idle(&self) -> bool {
        match self {
            Conn::Node(link) => link.still_idle(),
            // Node connections the servers closed are reopened by the crate.
            Conn::Cluster(_) => true,
        }
    }

    pub(super) fn failure(&self) -> Option<Failure> {
        match self {
            Conn::Node(link) => link.failure(),
            Conn::Cluster(cluster) => cluster.failure(),
        }
    }

    pub(super) fn went_away_unanswered(&self) -> bool {
        match self {
            Conn::Node(link) => link.went_away_unanswered(),
            // The crate already retried on that slot map; a new one (a new
            // connection) knows the promoted master.
            Conn::Cluster(cluster) => cluster.refused(),
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        match self {
            Conn::Node(link) => link.req_packed_command(cmd),
            Conn::Cluster(cluster) => cluster.req_packed_command(cmd),
        }
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        match self {
            Conn::Node(link) => link.req_packed_commands(cmd, offset, count),
            Conn::Cluster(cluster) => cluster.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Node(link) => link.get_db(),
            Conn::Cluster(cluster) => cluster.get_db(),
        }
    }

    fn check_connection(&mut self) -> bool {
        match self {
            Conn::Node(link) => link.check_connection(),
            Conn::Cluster(cluster) => cluster.check_connection(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            Conn::Node(link) => link.is_open(),
            Conn::Cluster(cluster) => cluster.is_open(),
        }
    }
}
