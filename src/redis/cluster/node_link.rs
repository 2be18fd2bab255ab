//! One node connection of a cluster connection (`NodeLink`): a `Link`
//! that arms itself, before each read or write, with the deadline the
//! call being served published for this thread (`CallContext`), since the
//! crate's `Connect` trait carries none.

use std::cell::RefCell;
use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::cluster::Connect;
use redis::{
    ConnectionAddr, ConnectionLike, ErrorKind, IntoConnectionInfo, RedisError, RedisResult, Value,
};

use super::NodeContext;
use crate::redis::link::Link;
use crate::redis::reply_guard::ReplyLimits;

struct CallContext {
    deadline: Instant,
    limits: ReplyLimits,
    nodes: Arc<NodeContext>,
}

thread_local! {
    static CALL: RefCell<Option<CallContext>> = const { RefCell::new(None) };
    /// The node whose reply this thread's last request got: after the
    /// crate returns, the node it routed (or redirected) that request to.
    pub(super) static LAST_NODE: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
}

pub(super) fn current_call() -> RedisResult<(Instant, ReplyLimits, Arc<NodeContext>)> {
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
pub(super) fn enter(nodes: &Arc<NodeContext>, deadline: Instant, limits: ReplyLimits) {
    CALL.with(|call| {
        *call.borrow_mut() = Some(CallContext {
            deadline,
            limits,
            nodes: Arc::clone(nodes),
        })
    });
}
