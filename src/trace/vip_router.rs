//! The tracer's side of services: a program traced with `--ip` has its
//! listening sockets really bound to a host port (and shown the address it
//! asked for); a connect to a virtual address goes straight to a backend.

use super::picker::Picker;
use crate::protocol::ToDaemon;
use crate::services::balancer::{Balancer, NoBackend};
use crate::services::routes::{canonical, canonical_addr, Labels, Listener, Registry, VirtualHost};
use crate::services::static_table::Lb;
use crate::trace::snapshot::LiveNet;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tracer::{Call, Errno, Outcome, SockAddr, Verdict};

/// What `trace --ip` says about this program.
#[derive(Clone, Debug)]
pub struct HostIdentity {
    pub ip: IpAddr,
    pub name: Option<String>,
    pub lb: Lb,
    /// Where listening sockets really go ([services] bind).
    pub bind_ip: IpAddr,
    /// --expose PORT:HOSTPORT: the socket for PORT listens on HOSTPORT (all interfaces).
    pub expose: Vec<(u16, u16)>,
    /// [services] ports: real ports from this range (None: the kernel's choice).
    pub ports: Option<(u16, u16)>,
}

/// A port of `lo..=hi` free for a TCP socket on `ip` (tried from `start`),
/// found by binding a probe socket. None when all are taken.
fn free_port(ip: IpAddr, lo: u16, hi: u16, start: u32) -> Option<u16> {
    let n = u32::from(hi - lo) + 1;
    (0..n).find_map(|k| {
        let port = lo + ((start + k) % n) as u16;
        std::net::TcpListener::bind(SocketAddr::new(ip, port))
            .ok()
            .map(|_| port)
    })
}

/// Sockets remembered at most per map (closed sockets are not seen).
const MAX_SOCKETS: usize = 65_536;

/// Insert into a per-socket map that cannot see sockets close: when full, it
/// forgets everything (those sockets then show their real addresses).
pub(crate) fn insert_bounded<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>, k: K, v: V) {
    if map.len() >= MAX_SOCKETS {
        map.clear();
    }
    map.insert(k, v);
}

pub struct Router {
    net: Arc<LiveNet>,
    host: Option<HostIdentity>,
    /// The daemon's line for choices (None: standalone, choose here).
    picker: Option<Picker>,
    balancer: Balancer,
    /// Standalone: this program's own services.
    local: Option<Registry>,
    /// Socket inode -> the address the program bound (getsockname shows
    /// it), and whether listen() on it makes a backend.
    bound: HashMap<u64, (SockAddr, bool)>,
    /// Accepted socket inode -> its virtual local address (VIP:PORT).
    accepted: HashMap<u64, SockAddr>,
    /// Threads with a rewritten bind() in flight: whether it is a service bind.
    binding: HashMap<i32, bool>,
    /// Where the next search of the port range starts.
    next_port: u32,
    /// Threads with a routed connect() in flight: the backend.
    routing: HashMap<i32, SocketAddr>,
    /// Listening service socket inode -> its real address.
    listening: HashMap<u64, SocketAddr>,
    /// Accepted socket inode -> the client's virtual address (getpeername).
    peers: HashMap<u64, SockAddr>,
}

/// `ip:port` in the family of a socket of `domain` (None: IPv6 on an IPv4 socket).
fn in_family(ip: IpAddr, port: u16, domain: i32) -> Option<SockAddr> {
    match (ip, domain) {
        (IpAddr::V4(v4), libc::AF_INET6) => {
            Some(SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), port).into())
        }
        (IpAddr::V6(_), libc::AF_INET) => None,
        _ => Some(SocketAddr::new(ip, port).into()),
    }
}

fn is_tcp(call: &Call) -> bool {
    call.socket.is_some_and(|s| {
        (s.domain == libc::AF_INET || s.domain == libc::AF_INET6)
            && s.sotype == libc::SOCK_STREAM
            && matches!(s.protocol, 0 | libc::IPPROTO_TCP)
    })
}

impl Router {
    pub fn new(net: Arc<LiveNet>, host: Option<HostIdentity>, picker: Option<Picker>) -> Router {
        let local = match (&picker, &host) {
            (None, Some(h)) => {
                let mut reg = Registry::default();
                reg.add_host(
                    0,
                    VirtualHost {
                        ip: h.ip,
                        name: h.name.clone(),
                        labels: Vec::new(),
                        lb: h.lb,
                        pid: std::process::id() as i32,
                    },
                );
                net.set_routes(reg.table(&Default::default()));
                Some(reg)
            }
            _ => None,
        };
        Router {
            net,
            host,
            picker,
            balancer: Balancer::default(),
            local,
            bound: HashMap::new(),
            accepted: HashMap::new(),
            binding: HashMap::new(),
            next_port: 0,
            routing: HashMap::new(),
            listening: HashMap::new(),
            peers: HashMap::new(),
        }
    }

    pub fn has_host(&self) -> bool {
        self.host.is_some()
    }

    /// bind() by a program with a virtual IP. A TCP socket bound to a
    /// non-zero port (on any address) is a service: its real socket goes to
    /// the configured address with a port the kernel chooses (or the
    /// --expose host port). Any other bind to the VIP itself (UDP, port 0)
    /// goes to the configured address with the port asked for.
    pub fn bind(&mut self, call: &Call) -> Option<Verdict> {
        let h = self.host.as_ref()?;
        let asked = call.addr.as_ref()?.ip()?;
        let domain = call.socket?.domain;
        let service = asked.port() != 0 && is_tcp(call);
        let real = if service {
            match h.expose.iter().find(|(p, _)| *p == asked.port()) {
                // The host port, on every interface of the socket's family.
                Some(&(_, host_port)) => match domain {
                    libc::AF_INET6 => {
                        SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), host_port)
                    }
                    _ => SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), host_port),
                },
                None => {
                    // From the configured range (a taken port is skipped;
                    // all taken: the kernel chooses).
                    let port = h.ports.and_then(|(lo, hi)| {
                        let p = free_port(h.bind_ip, lo, hi, self.next_port)?;
                        self.next_port = u32::from(p - lo) + 1;
                        Some(p)
                    });
                    SocketAddr::new(h.bind_ip, port.unwrap_or(0))
                }
            }
        } else if canonical(asked.ip()) == canonical(h.ip) {
            SocketAddr::new(h.bind_ip, asked.port())
        } else {
            return None;
        };
        self.binding.insert(call.tid, service);
        Some(Verdict::Rewrite(real.into()))
    }

    /// getsockname() of a socket bound or accepted as a service: the address
    /// it asked for (with the real port when it asked for port 0).
    pub fn sockname(&self, call: &Call) -> Option<Verdict> {
        let inode = call.socket?.inode;
        if let Some(a) = self.accepted.get(&inode) {
            return Some(Verdict::Answer(a.clone()));
        }
        let (asked, _) = self.bound.get(&inode)?;
        let ip = asked.ip()?;
        if ip.port() != 0 {
            return Some(Verdict::Answer(asked.clone()));
        }
        let real = call.local.as_ref()?.ip()?;
        Some(Verdict::Answer(
            SocketAddr::new(ip.ip(), real.port()).into(),
        ))
    }

    /// connect() to a virtual address: the backend (or ECONNREFUSED).
    pub fn connect(&mut self, call: &Call, addr: SocketAddr, labels: &Labels) -> Option<Verdict> {
        let routes = self.net.routes();
        if routes.is_empty() || !is_tcp(call) || !routes.is_virtual(&addr) {
            return None;
        }
        let vip = canonical_addr(addr);
        // Only a connect() announces itself afterwards (a TCP Fast Open
        // send does not): only then is the server told to expect it.
        let connect = call.op == tracer::Op::Connect;
        let from = self.host.as_ref().map(|h| h.ip).filter(|_| connect);
        let remote = self.picker.as_mut().and_then(|p| p.pick(vip, labels, from));
        let choice = match remote {
            Some(r) => r,
            // No daemon to ask: choose here from the last table.
            None => match routes.route(&vip) {
                Some(r) => self.balancer.pick(r, labels, |_| true, |_| 0),
                None => Err(NoBackend::NoneLive),
            },
        };
        Some(match choice {
            Ok(to) => {
                if from.is_some() {
                    self.routing.insert(call.tid, to);
                }
                Verdict::Rewrite(to.into())
            }
            Err(why) => {
                log::info!("connect to {vip} from pid {}: {}", call.pid, why.reason());
                Verdict::Fail(Errno::ECONNREFUSED)
            }
        })
    }

    /// getpeername() of a connection a service accepted from a client with
    /// a virtual IP: that address.
    pub fn peername(&self, call: &Call) -> Option<Verdict> {
        let inode = call.socket?.inode;
        self.peers.get(&inode).map(|a| Verdict::Answer(a.clone()))
    }

    /// A service accepted a connection: if the client has a virtual IP, the
    /// program sees that as its peer (accept's output, later getpeername).
    pub fn accepted(&mut self, call: &Call) -> Option<SockAddr> {
        let h = self.host.as_ref()?;
        let listener = call.socket?.inode;
        let accepted = call.accepted?;
        let backend = *self.listening.get(&listener)?;
        // Only programs with a virtual IP announce themselves: ask only when
        // another running program of this daemon has one.
        let own = canonical(h.ip);
        if !self.net.routes().local_hosts.iter().any(|ip| *ip != own) {
            return None;
        }
        let peer = call.peer.as_ref()?.ip()?;
        let vip = self.picker.as_mut()?.who(peer, backend)?;
        let shown = in_family(vip.ip(), vip.port(), accepted.domain)?;
        insert_bounded(&mut self.peers, accepted.inode, shown.clone());
        Some(shown)
    }

    /// After a call: remember rewritten binds, register listeners, announce
    /// routed connects. Returns the report for the daemon, if any.
    pub fn finished(
        &mut self,
        call: &Call,
        verdict: &Verdict,
        outcome: Outcome,
    ) -> Option<ToDaemon> {
        match call.op {
            tracer::Op::Connect => {
                let backend = self.routing.remove(&call.tid)?;
                let h = self.host.as_ref()?;
                // Whatever the outcome (an EINTR connect still completes in
                // the kernel): the daemon expects the announcement.
                let local = call.local.as_ref().and_then(SockAddr::ip);
                if let Some(local) = local.filter(|l| l.port() != 0) {
                    let local = canonical_addr(local);
                    let vip = SocketAddr::new(canonical(h.ip), local.port());
                    if let Some(p) = self.picker.as_mut() {
                        p.announce(local, vip, backend);
                    }
                }
                None
            }
            tracer::Op::Bind => {
                let service = self.binding.remove(&call.tid);
                let inode = call.socket?.inode;
                let ok = matches!(outcome, Outcome::Ok(_) | Outcome::Unknown);
                match service {
                    Some(service) if ok && matches!(verdict, Verdict::Rewrite(_)) => {
                        insert_bounded(&mut self.bound, inode, (call.addr.clone()?, service));
                    }
                    _ => {
                        self.bound.remove(&inode);
                    }
                }
                None
            }
            tracer::Op::Accept => {
                // An accepted connection's local address is the service's.
                let (listener, accepted) = (call.socket?.inode, call.accepted?);
                let h = self.host.as_ref()?;
                let (asked, true) = self.bound.get(&listener)? else {
                    return None;
                };
                let local = in_family(h.ip, asked.ip()?.port(), accepted.domain)?;
                // Closed sockets are not seen: forget them all now and then
                // (their getsockname then shows the real address).
                insert_bounded(&mut self.accepted, accepted.inode, local);
                None
            }
            tracer::Op::Listen if matches!(outcome, Outcome::Ok(_)) => {
                let h = self.host.as_ref()?;
                let inode = call.socket?.inode;
                let (asked, true) = self.bound.get(&inode)? else {
                    return None;
                };
                let asked = asked.ip()?;
                let real = canonical_addr(call.local.as_ref()?.ip()?);
                let real = if real.ip().is_unspecified() {
                    SocketAddr::new(h.bind_ip, real.port())
                } else {
                    real
                };
                insert_bounded(&mut self.listening, inode, real);
                let l = Listener {
                    inode,
                    pid: call.pid,
                    service: SocketAddr::new(canonical(h.ip), asked.port()),
                    real,
                    netns: crate::procfs::netns(Some(call.pid)),
                };
                if let Some(reg) = &mut self.local {
                    reg.add_listener(0, l.clone());
                    self.net.set_routes(reg.table(&Default::default()));
                }
                Some(ToDaemon::Listen(l))
            }
            _ => None,
        }
    }
}
