//! The route table: every service's virtual address and its backends, and
//! the virtual IPs of traced programs. Built by the daemon from static
//! services (/appswitch/services) and the [`Registry`] of traced programs
//! listening under `--ip`, and pushed to every tracer. The choice among a
//! route's backends is services::balancer's.

use crate::services::static_table::{Lb, ServiceTable};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};

pub type Labels = Vec<(String, String)>;

/// Where a backend came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// A static service's backend (/appswitch/services).
    Static,
    /// A backend on another host (cluster mode), as that host published it.
    Remote { node: String },
    /// A traced program's listening socket.
    Traced {
        app: u32,
        pid: i32,
        /// The listening socket's inode (liveness: the kernel still has it).
        inode: u64,
        /// Inode of the program's network namespace (liveness can be
        /// checked only from the same one).
        #[serde(default)]
        netns: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    /// The real address a client is connected to.
    pub addr: SocketAddr,
    pub labels: Labels,
    pub origin: Origin,
    /// Its health and load in the shared table (services::shared).
    #[serde(default = "no_slot")]
    pub slot: u32,
}

/// No slot in the shared table (it was full): that route or backend is
/// balanced by each trace process alone.
pub const NO_SLOT: u32 = u32::MAX;

fn no_slot() -> u32 {
    NO_SLOT
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub name: String,
    pub vip: SocketAddr,
    pub lb: Lb,
    pub backends: Vec<Backend>,
    /// Its round-robin counter in the shared table (services::shared).
    #[serde(default = "no_slot")]
    pub slot: u32,
    /// A UDP service (its backends are UDP sockets).
    #[serde(default)]
    pub udp: bool,
}

/// Every service and every virtual host (an `--ip` some traced program has).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTable {
    pub routes: Vec<Route>,
    /// Virtual IPs of traced programs: a TCP connect to any port of one is
    /// routed (or refused when nothing listens there), never sent out.
    pub hosts: Vec<IpAddr>,
    /// Service names (static and traced) and their virtual IPs, for DNS and rules.
    pub names: Vec<(String, IpAddr)>,
    /// Virtual IPs of programs running under this daemon now (not merged
    /// from other nodes): clients that may announce their connections.
    #[serde(default)]
    pub local_hosts: Vec<IpAddr>,
}

impl RouteTable {
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty() && self.hosts.is_empty()
    }

    /// Whether a connect to `addr` is the routing's business.
    pub fn is_virtual(&self, addr: &SocketAddr) -> bool {
        let ip = canonical(addr.ip());
        self.hosts.contains(&ip)
            || self
                .routes
                .iter()
                .any(|r| r.vip.ip() == ip && r.vip.port() == addr.port())
    }

    /// The TCP service at `vip`.
    pub fn route(&self, vip: &SocketAddr) -> Option<&Route> {
        self.route_of(vip, false)
    }

    /// The service at `vip` for TCP or (`udp`) UDP.
    pub fn route_of(&self, vip: &SocketAddr, udp: bool) -> Option<&Route> {
        let ip = canonical(vip.ip());
        self.routes
            .iter()
            .find(|r| r.vip.ip() == ip && r.vip.port() == vip.port() && r.udp == udp)
    }

    /// The virtual IPs a name stands for (`name` or `name.<domain>`).
    pub fn lookup(&self, name: &str) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = self
            .names
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, ip)| *ip)
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

impl RouteTable {
    /// Add another table (another node's, in cluster mode): backends of the
    /// same VIP:PORT join this one's; virtual hosts and names are united.
    pub fn merge(&mut self, other: &RouteTable) {
        for r in &other.routes {
            match self
                .routes
                .iter_mut()
                .find(|x| x.vip == r.vip && x.udp == r.udp)
            {
                Some(x) => x.backends.extend(r.backends.iter().cloned()),
                None => self.routes.push(r.clone()),
            }
        }
        for h in &other.hosts {
            if !self.hosts.contains(h) {
                self.hosts.push(*h);
            }
        }
        self.names.extend(other.names.iter().cloned());
        self.names.sort();
        self.names.dedup();
    }
}

/// Whether `ip` is an IPv4 loopback address (127.0.0.0/8, v4-mapped
/// too). Such an address is local on every host's `lo`: a program with
/// such a VIP has its routed TCP connects carry it as their real source
/// (its tracer binds the socket to it first), so a server sees the client's
/// VIP from the kernel and needs no record; and a backend there is one
/// such a source can reach.
pub fn v4_loopback(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(_) => false,
    }
}

/// An IPv4-mapped IPv6 address as its IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

pub fn canonical_addr(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(canonical(a.ip()), a.port())
}

/// One traced program that declared a virtual IP (`trace --ip`).
#[derive(Clone, Debug)]
pub struct VirtualHost {
    pub ip: IpAddr,
    pub name: Option<String>,
    pub labels: Labels,
    pub lb: Lb,
    pub pid: i32,
}

/// A traced program's listening socket, registered as a backend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    pub inode: u64,
    pub pid: i32,
    /// The address the program asked for (its VIP and port).
    pub service: SocketAddr,
    /// Where the socket really listens.
    pub real: SocketAddr,
    /// Inode of the program's network namespace.
    #[serde(default)]
    pub netns: u64,
    /// A UDP socket (bound, not listening): a backend of the UDP service.
    #[serde(default)]
    pub udp: bool,
}

/// Virtual addresses remembered after their programs are gone, at most.
const MAX_PAST: usize = 4096;

/// The daemon's table of traced services, per app.
#[derive(Debug, Default)]
pub struct Registry {
    pub hosts: std::collections::BTreeMap<u32, VirtualHost>,
    /// app -> its listeners, in registration order.
    pub listeners: std::collections::BTreeMap<u32, Vec<Listener>>,
    /// Virtual IPs whose programs are gone. Their services and names leave
    /// at once (`services`, DNS), but the address stays known, so a connect
    /// to it is refused (ECONNREFUSED, as for a host where nothing listens)
    /// rather than sent out to an address that exists nowhere.
    past_hosts: std::collections::BTreeSet<IpAddr>,
}

impl Registry {
    pub fn add_host(&mut self, app: u32, host: VirtualHost) {
        self.hosts.insert(app, host);
    }

    pub fn add_listener(&mut self, app: u32, l: Listener) {
        let v = self.listeners.entry(app).or_default();
        v.retain(|x| x.inode != l.inode);
        v.push(l);
    }

    fn remember(&mut self, app: u32) {
        let Some(h) = self.hosts.get(&app) else {
            return;
        };
        if self.past_hosts.len() >= MAX_PAST {
            self.past_hosts.clear();
        }
        self.past_hosts.insert(canonical(h.ip));
    }

    /// Forget an app (its tracer is gone): its backends leave at once.
    pub fn remove_app(&mut self, app: u32) -> bool {
        let gone = self.listeners.remove(&app).unwrap_or_default();
        self.remember(app);
        let a = self.hosts.remove(&app).is_some();
        a || !gone.is_empty()
    }

    /// Forget listeners the kernel no longer has.
    pub fn retain_listeners(&mut self, mut live: impl FnMut(&Listener) -> bool) -> bool {
        let mut gone = Vec::new();
        for (app, v) in self.listeners.iter_mut() {
            let before = v.len();
            v.retain(|l| live(l));
            if v.len() != before {
                gone.push(*app);
            }
        }
        self.listeners.retain(|_, v| !v.is_empty());
        for app in &gone {
            self.remember(*app);
        }
        !gone.is_empty()
    }

    /// The whole table: static services, then traced ones (a static service
    /// at the same address gains the traced backends and keeps its lb).
    pub fn table(&self, statics: &ServiceTable) -> RouteTable {
        let mut t = RouteTable::default();
        for (name, s) in statics.iter() {
            t.routes.push(Route {
                name: name.clone(),
                vip: canonical_addr(s.vip),
                lb: s.lb,
                backends: s
                    .backends
                    .iter()
                    .map(|b| Backend {
                        addr: *b,
                        labels: s.labels.clone(),
                        origin: Origin::Static,
                        slot: no_slot(),
                    })
                    .collect(),
                slot: no_slot(),
                udp: false,
            });
            t.names.push((name.clone(), canonical(s.vip.ip())));
        }
        for (app, h) in &self.hosts {
            let ip = canonical(h.ip);
            if !t.hosts.contains(&ip) {
                t.hosts.push(ip);
            }
            if !t.local_hosts.contains(&ip) {
                t.local_hosts.push(ip);
            }
            if let Some(n) = &h.name {
                t.names.push((n.clone(), ip));
            }
            for l in self.listeners.get(app).into_iter().flatten() {
                let vip = canonical_addr(l.service);
                let backend = Backend {
                    addr: l.real,
                    labels: h.labels.clone(),
                    origin: Origin::Traced {
                        app: *app,
                        pid: l.pid,
                        inode: l.inode,
                        netns: l.netns,
                    },
                    slot: no_slot(),
                };
                match t.routes.iter_mut().find(|r| r.vip == vip && r.udp == l.udp) {
                    Some(r) => r.backends.push(backend),
                    None => t.routes.push(Route {
                        name: h.name.clone().unwrap_or_else(|| ip.to_string()),
                        vip,
                        lb: h.lb,
                        backends: vec![backend],
                        slot: no_slot(),
                        udp: l.udp,
                    }),
                }
            }
        }
        for ip in &self.past_hosts {
            if !t.hosts.contains(ip) {
                t.hosts.push(*ip);
            }
        }
        t.names.sort();
        t.names.dedup();
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_merges_static_and_traced() {
        let mut statics = ServiceTable::default();
        statics
            .apply("add web 10.1.0.1:80 -> 127.0.0.1:8080 lb=leastconn\n")
            .unwrap();
        let mut reg = Registry::default();
        reg.add_host(
            7,
            VirtualHost {
                ip: "10.1.0.1".parse().unwrap(),
                name: Some("web".into()),
                labels: vec![],
                lb: Lb::RoundRobin,
                pid: 1,
            },
        );
        reg.add_listener(
            7,
            Listener {
                inode: 42,
                pid: 1,
                service: "[::ffff:10.1.0.1]:80".parse().unwrap(),
                real: "127.0.0.1:40000".parse().unwrap(),
                netns: 0,
                udp: false,
            },
        );
        let t = reg.table(&statics);
        assert_eq!(t.routes.len(), 1);
        assert_eq!(t.routes[0].lb, Lb::LeastConn);
        assert_eq!(t.routes[0].backends.len(), 2);
        assert!(t.is_virtual(&"10.1.0.1:9".parse().unwrap()));
        assert!(!t.is_virtual(&"10.1.0.2:80".parse().unwrap()));
        assert_eq!(t.lookup("WEB"), vec!["10.1.0.1".parse::<IpAddr>().unwrap()]);
        assert!(reg.remove_app(7));
        let t = reg.table(&statics);
        assert_eq!(t.routes[0].backends.len(), 1);
        // The virtual IP stays known: connects to it are refused, not sent out.
        assert!(t.is_virtual(&"10.1.0.1:9".parse().unwrap()));
    }
}
