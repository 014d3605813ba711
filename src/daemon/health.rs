//! Whether backends can take connections, from the kernel's socket tables
//! (sock_diag): a traced backend is up while its listening socket exists,
//! a static one on a local address while something listens on its port;
//! either is full while its accept queue is. The queries run without the
//! daemon's state lock held: a [`Probe`] holds what they need.

use crate::services::routes::{Backend, Origin, Route};
use crate::services::shared::Health;
use crate::sockdiag::{self, SockState};
use std::collections::HashMap;
use std::net::IpAddr;

/// What deciding checkability needs from the daemon.
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    /// The daemon's network namespace inode.
    pub netns: u64,
    /// Where traced services listen.
    pub bind_ip: IpAddr,
}

/// One query's answer: listening sockets, and (when asked) the count of
/// connections on each port.
pub struct Sockets {
    listeners: HashMap<u64, SockState>,
    connections: HashMap<u16, usize>,
    ok: bool,
}

impl Probe {
    fn checkable(&self, b: &Backend) -> bool {
        match b.origin {
            Origin::Traced { netns, .. } => netns == 0 || netns == self.netns,
            Origin::Static => {
                let ip = b.addr.ip();
                ip.is_loopback() || ip.is_unspecified() || ip == self.bind_ip
            }
            Origin::Remote { .. } => false,
        }
    }

    /// One query for the checkable backends of `routes`: listeners (cheap:
    /// only the kernel's listening hash), and connections per port when
    /// `with_load` (a walk of every connection).
    pub fn query<'a>(
        &self,
        routes: impl IntoIterator<Item = &'a Route>,
        with_load: bool,
    ) -> Sockets {
        let mut ports: Vec<u16> = routes
            .into_iter()
            .flat_map(|r| r.backends.iter())
            .filter(|b| self.checkable(b))
            .map(|b| b.addr.port())
            .collect();
        ports.sort_unstable();
        ports.dedup();
        // Said once when it starts failing, not every period.
        static FAILING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        let (listeners, ok) = match sockdiag::tcp_listeners(&ports) {
            Ok(s) => {
                FAILING.store(false, std::sync::atomic::Ordering::Relaxed);
                (s, true)
            }
            Err(e) => {
                if !FAILING.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    log::warn!("sock_diag: {e}: backends taken as live");
                }
                (HashMap::new(), false)
            }
        };
        let connections = if with_load && ok {
            sockdiag::tcp_connections(&ports).unwrap_or_default()
        } else {
            HashMap::new()
        };
        Sockets {
            listeners,
            connections,
            ok,
        }
    }

    /// Health and connection count of each backend of `route`, by position.
    pub fn assess(&self, route: &Route, s: &Sockets) -> Vec<(Health, usize)> {
        route
            .backends
            .iter()
            .map(|b| {
                let port = b.addr.port();
                let load = s.connections.get(&port).copied().unwrap_or(0);
                let up = |yes: bool| if yes { Health::Up } else { Health::Down };
                // The kernel queues one more than the backlog (it refuses
                // when the queue is longer than the backlog).
                let full = |l: &SockState| l.rqueue > l.wqueue;
                let health = match b.origin {
                    // UDP sockets do not listen: a UDP backend leaves when
                    // its trace ends.
                    _ if !s.ok || !self.checkable(b) || route.udp => Health::Unknown,
                    Origin::Traced { inode, .. } => match s.listeners.get(&inode) {
                        Some(l) if full(l) => Health::Full,
                        l => up(l.is_some()),
                    },
                    Origin::Static => {
                        let mut on_port = s.listeners.values().filter(|x| x.local.port() == port);
                        match on_port.next() {
                            Some(l) if full(l) => Health::Full,
                            l => up(l.is_some()),
                        }
                    }
                    Origin::Remote { .. } => Health::Unknown,
                };
                (health, load)
            })
            .collect()
    }
}
