//! Opening a pool's connections: the server's addresses (resolved once,
//! refreshed by each probe), Sentinel's current master, or a whole cluster
//! connection.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::time::Instant;

use redis::RedisResult;

use super::{Failed, Pool};
use crate::redis::cluster::Cluster;
use crate::redis::conn::Conn;
use crate::redis::link::{Endpoint, Failure, Link};

impl Pool {
    /// The server's addresses: resolved on first use, and again by every
    /// probe, so that a DNS lookup is not on the request path after that.
    pub(super) fn addresses(
        &self,
        endpoint: &Endpoint,
        refresh: bool,
    ) -> RedisResult<Vec<SocketAddr>> {
        let (Endpoint::Tcp { host, port } | Endpoint::Tls { host, port, .. }) = endpoint else {
            return Ok(Vec::new());
        };
        if self.master.is_some() {
            // Sentinels name masters by IP (or by a name each lookup may
            // change): nothing to cache.
            return Ok((host.as_str(), *port).to_socket_addrs()?.collect());
        }
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

    pub(super) fn open(&self, deadline: Instant, refresh_addresses: bool) -> Result<Conn, Failed> {
        self.counters.connects.fetch_add(1, Ordering::Relaxed);
        if let Some((client, nodes)) = &self.cluster {
            return Cluster::open(client, nodes, deadline)
                .map(|cluster| Conn::Cluster(Box::new(cluster)))
                .map_err(Failed::connecting);
        }
        let Some(master) = &self.master else {
            return self
                .addresses(&self.endpoint, refresh_addresses)
                .and_then(|addresses| {
                    Link::open(&self.endpoint, &addresses, &self.handshake, deadline)
                })
                .map(|link| Conn::Node(Box::new(link)))
                .map_err(Failed::connecting);
        };
        // A remembered master that refuses is asked for again at once: after
        // a promotion the first request then already reaches the new one.
        loop {
            let (endpoint, remembered) =
                master
                    .master(deadline)
                    .map_err(|message| Failed::Unreachable {
                        failure: if Instant::now() >= deadline {
                            Failure::Deadline
                        } else {
                            Failure::Other
                        },
                        unanswered: false,
                        message,
                    })?;
            let opened = self
                .addresses(&endpoint, refresh_addresses)
                .and_then(|addresses| Link::open(&endpoint, &addresses, &self.handshake, deadline));
            match opened {
                Ok(link) => return Ok(Conn::Node(Box::new(link))),
                Err(err) => {
                    master.forget(&endpoint.node());
                    if !remembered {
                        return Err(Failed::connecting(err));
                    }
                }
            }
        }
    }

    /// Sentinel: the next connection asks the sentinels where the master is.
    pub(super) fn forget_master(&self) {
        if let (Some(master), Some(node)) = (&self.master, self.node()) {
            master.forget(&node);
        }
    }
}
