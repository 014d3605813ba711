//! The tracer's side of services: a program traced with `--ip` has its
//! listening sockets really bound to a host port (and shown the address it
//! asked for); a connect to a virtual address goes straight to a backend,
//! chosen here from the pushed route table and the shared balancing state
//! (services::shared): no message to the daemon on a connection's path.

use crate::protocol::ToDaemon;
use crate::services::balancer::{self, NoBackend, Rng};
use crate::services::routes::{
    canonical, canonical_addr, v4_loopback, Labels, Listener, Origin, Registry, Route, RouteTable,
    VirtualHost, NO_SLOT,
};
use crate::services::shared::{SharedTable, Slots};
use crate::services::static_table::Lb;
use crate::trace::snapshot::LiveNet;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tracer::idmap::IdMap;
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
    /// trace --isolate: the program's listeners are handed-over sockets, in
    /// our network namespace rather than the program's.
    pub isolated: bool,
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

/// Sockets remembered per map before the closed ones are looked for.
const MAX_SOCKETS: usize = 65_536;
/// UDP flows remembered per socket (a socket talking to more VIPs forgets
/// its oldest).
const MAX_FLOWS: usize = 32;

/// Insert into a per-socket map (keyed by socket inode), which cannot see
/// sockets close. When it is full, the sockets the kernel no longer has are
/// dropped (one sock_diag dump, at most once per MAX_SOCKETS / 2 new
/// sockets; a socket still open keeps its entry however many came after
/// it). Only a program holding more than MAX_SOCKETS / 2 of them open at
/// once (or a kernel that cannot be asked) makes it forget everything:
/// those sockets then show their real addresses.
pub(crate) fn insert_socket<V, S: std::hash::BuildHasher>(
    map: &mut HashMap<u64, V, S>,
    inode: u64,
    v: V,
) {
    if map.len() >= MAX_SOCKETS {
        match crate::sockdiag::dump() {
            Ok(live) => map.retain(|k, _| live.contains_key(k)),
            Err(_) => map.clear(),
        }
        if map.len() >= MAX_SOCKETS / 2 {
            map.clear();
        }
    }
    map.insert(inode, v);
}

/// Whether a connect() that was not sent to a backend left a socket that
/// has one (or shows a virtual peer) as it was, still connected or
/// connecting there: the kernel said it is connected or connecting already
/// (EISCONN, EALREADY), or, on TCP, that connection completed (0 from a
/// connect that found it pending: `Call::new_connection` is Some(false)).
/// Not a 0 that began a new connection (the socket was disconnected, by
/// shutdown() while connecting, say), not a disconnect (AF_UNSPEC), and
/// never on UDP, where a connect always moves the socket.
pub(crate) fn association_kept(call: &Call, outcome: Outcome) -> bool {
    let tcp = call.socket.is_some_and(|s| s.sotype == libc::SOCK_STREAM);
    match outcome {
        Outcome::Err(Errno::EISCONN | Errno::EALREADY) => true,
        Outcome::Ok(0) => {
            tcp && call.new_connection == Some(false)
                && !matches!(call.addr, Some(SockAddr::Unspec))
        }
        _ => false,
    }
}

/// A socket this router sent to a backend: a second connect() on it (to
/// check completion) goes to the same one, and a refusal tries the others.
#[derive(Clone, Copy, Debug)]
struct Routed {
    vip: SocketAddr,
    backend: SocketAddr,
    /// Backends (by position in the route) this connect already tried.
    tried: u64,
    /// The number of the route table those positions are in: a new table
    /// may order the backends differently.
    table: u64,
    /// The service had more than one backend: a refusal may fail over.
    alternatives: bool,
    /// The round-robin number of its pick: a failover reuses it, so a dead
    /// backend does not skew the rotation.
    ticket: u64,
}

/// A routed TCP connect in flight, by thread.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    backend: SocketAddr,
    slot: u32,
    /// The client has a VIP: Some(true) when it goes as the connect's real
    /// source address (servers see it from the kernel), Some(false) when
    /// it leaves a record that servers expect. None: no VIP.
    vip: Option<bool>,
}

/// How long a server waits for the record of a client with a virtual IP
/// that is connecting to it (the client's tracer writes it within
/// microseconds of the handshake).
const PEER_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

pub struct Router {
    net: Arc<LiveNet>,
    host: Option<HostIdentity>,
    /// Standalone (no daemon): this program's own services, their slots,
    /// and a balancing table private to this process.
    local: Option<(Registry, Slots)>,
    private: Option<Arc<SharedTable>>,
    made_private: bool,
    rng: Rng,
    /// Counter for routes without a slot in the shared table.
    unshared: u64,
    /// Socket inode -> where this router sent it.
    routed: IdMap<u64, Routed>,
    /// UDP socket inode -> its flows: (VIP:PORT, backend), a few per socket.
    udp: HashMap<u64, Vec<(SocketAddr, SocketAddr)>>,
    /// Socket inode -> the address the program bound (getsockname shows
    /// it), and whether listen() on it makes a backend.
    bound: HashMap<u64, (SockAddr, bool)>,
    /// Real port of a service's listener -> the port it asked for and the
    /// listener's inode: an accepted socket's getsockname shows VIP:that
    /// port (found from the socket's real local port, so accept() need not
    /// stop for it).
    service_ports: HashMap<u16, (u16, u64)>,
    /// Threads with a rewritten bind() in flight: whether it is a service bind.
    binding: HashMap<i32, bool>,
    /// Where the next search of the port range starts.
    next_port: u32,
    /// Threads with a routed TCP connect() in flight: the backend and its
    /// slot (the pick is settled, and a client with a VIP writes its
    /// record, once the connect has run).
    routing: IdMap<i32, InFlight>,
    /// A bound TCP port nobody listens on: a non-blocking connect with no
    /// backend is sent there, so the program sees what an untraced refused
    /// connect gives (EINPROGRESS, then ECONNREFUSED).
    refuser: Option<(std::os::fd::OwnedFd, SocketAddr)>,
    /// Listening service socket inode -> its real address.
    listening: HashMap<u64, SocketAddr>,
    /// Accepted socket inode -> the client's virtual address (getpeername).
    peers: HashMap<u64, SockAddr>,
    /// Whether the filter traps accept() (`traps_accept`, when it was made).
    accept_trapped: std::cell::Cell<Option<bool>>,
    /// A listener off IPv4 loopback with accept() not trapped was reported.
    told_untrapped: bool,
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

fn is_udp(call: &Call) -> bool {
    call.socket.is_some_and(|s| {
        (s.domain == libc::AF_INET || s.domain == libc::AF_INET6)
            && s.sotype == libc::SOCK_DGRAM
            && matches!(s.protocol, 0 | libc::IPPROTO_UDP)
    })
}

fn is_tcp(call: &Call) -> bool {
    call.socket.is_some_and(|s| {
        (s.domain == libc::AF_INET || s.domain == libc::AF_INET6)
            && s.sotype == libc::SOCK_STREAM
            && matches!(s.protocol, 0 | libc::IPPROTO_TCP)
    })
}

impl Router {
    /// Isolation: the program's socket `old` became `new` (a handover):
    /// where it was routed, its flows, its bound address and its listener
    /// move with it.
    pub fn socket_replaced(&mut self, old: u64, new: u64) {
        fn mv<V, S: std::hash::BuildHasher>(m: &mut HashMap<u64, V, S>, old: u64, new: u64) {
            if let Some(v) = m.remove(&old) {
                m.insert(new, v);
            }
        }
        mv(&mut self.routed, old, new);
        mv(&mut self.udp, old, new);
        mv(&mut self.bound, old, new);
        mv(&mut self.listening, old, new);
        mv(&mut self.peers, old, new);
        for (_, inode) in self.service_ports.values_mut() {
            if *inode == old {
                *inode = new;
            }
        }
    }

    /// `standalone`: no daemon pushes routes, this program's services are
    /// its own.
    pub fn new(net: Arc<LiveNet>, host: Option<HostIdentity>, standalone: bool) -> Router {
        let local = match (standalone, &host) {
            (true, Some(h)) => {
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
                let mut slots = Slots::default();
                let mut t = reg.table(&Default::default());
                slots.assign(&mut t, None);
                net.set_routes(t);
                Some((reg, slots))
            }
            _ => None,
        };
        Router {
            net,
            host,
            local,
            private: None,
            made_private: false,
            rng: Rng::default(),
            unshared: 0,
            routed: IdMap::default(),
            udp: HashMap::new(),
            bound: HashMap::new(),
            service_ports: HashMap::new(),
            binding: HashMap::new(),
            next_port: 0,
            routing: IdMap::default(),
            refuser: None,
            listening: HashMap::new(),
            peers: HashMap::new(),
            accept_trapped: std::cell::Cell::new(None),
            told_untrapped: false,
        }
    }

    /// The balancing table: the daemon's when it gave one, else our own
    /// (made on first use).
    fn table(&mut self) -> Option<Arc<SharedTable>> {
        if let Some(t) = self.net.shared() {
            return Some(t);
        }
        if !self.made_private {
            self.made_private = true;
            self.private = SharedTable::private()
                .map_err(|e| log::warn!("no balancing table ({e}): round robin per program"))
                .ok()
                .map(Arc::new);
        }
        self.private.clone()
    }

    /// Choose a backend of `route`, skipping the positions in `tried`;
    /// with `again`, reuse that round-robin number (a failover). The
    /// position chosen and the number used.
    #[allow(clippy::too_many_arguments)]
    fn choose(
        &mut self,
        call: &Call,
        route: &Route,
        labels: &Labels,
        tried: u64,
        again: Option<u64>,
        table: Option<&SharedTable>,
    ) -> Result<(usize, u64), NoBackend> {
        use crate::services::shared::Health;
        let health = |i: usize| table.map_or(Health::Unknown, |t| t.health(route.backends[i].slot));
        // Not tried yet, and in a family the client's socket can reach (an
        // IPv4 socket cannot reach a listener that takes IPv6 only).
        let (domain, v6only) = call
            .socket
            .map_or((libc::AF_INET6, false), |s| (s.domain, s.v6only));
        let open =
            |i: usize| tried & bit(i) == 0 && reachable(domain, v6only, route.backends[i].addr);
        let n = route.backends.len();
        // Up (or not checkable) first; when none is, a full one (its queue
        // may drain; the kernel queues one more than the backlog); when none
        // is, a static one that looks down (sock_diag may not see it).
        let any_up = (0..n).any(|i| open(i) && health(i).takes_connections());
        let any_full = (0..n).any(|i| open(i) && health(i) == Health::Full);
        let usable = |i: usize| {
            open(i)
                && match health(i) {
                    h if h.takes_connections() => true,
                    Health::Full => !any_up,
                    _ => !any_up && !any_full && route.backends[i].origin == Origin::Static,
                }
        };
        let load = |i: usize| table.map_or(0, |t| t.load(route.backends[i].slot));
        let unshared = &mut self.unshared;
        let used = std::cell::Cell::new(again.unwrap_or(0));
        let ticket = || {
            // (A failover takes no new number.)
            let n = match again.or_else(|| table.and_then(|t| t.ticket(route.slot))) {
                Some(n) => n,
                None => {
                    *unshared += 1;
                    *unshared - 1
                }
            };
            used.set(n);
            n
        };
        let i = balancer::pick(route, labels, usable, load, ticket, self.rng.draw())?;
        if let Some(t) = table {
            t.picked(route.backends[i].slot);
        }
        Ok((i, used.get()))
    }

    /// Where a non-blocking connect with no backend goes (see `refuser`).
    fn refuser(&mut self) -> Option<SocketAddr> {
        if self.refuser.is_none() {
            self.refuser = closed_port();
        }
        self.refuser.as_ref().map(|(_, a)| *a)
    }

    /// No backend: refused, as a connect to a host where nothing listens.
    fn no_backend(&mut self, call: &Call) -> Verdict {
        if is_tcp(call) && call.socket.is_some_and(|s| s.nonblocking) {
            if let Some(a) = self.refuser() {
                return Verdict::Rewrite(a.into());
            }
        }
        Verdict::Fail(Errno::ECONNREFUSED)
    }

    /// Whether any route (service VIP) exists now.
    pub fn has_routes(&self) -> bool {
        !self.net.routes().is_empty()
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
        let sock = call.socket?;
        let domain = sock.domain;
        // Where real sockets go, in a family this socket can take: an IPv6
        // socket that takes IPv6 only (redis, memcached and nginx listen on
        // [::] this way) gets the IPv6 form of [services] bind.
        let bind_ip = if sock.v6only {
            v6_form(h.bind_ip)
        } else {
            h.bind_ip
        };
        // A TCP socket becomes a backend at listen(), a UDP one once bound.
        let service = asked.port() != 0 && (is_tcp(call) || is_udp(call));
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
                        let p = free_port(bind_ip, lo, hi, self.next_port)?;
                        self.next_port = u32::from(p - lo) + 1;
                        Some(p)
                    });
                    SocketAddr::new(bind_ip, port.unwrap_or(0))
                }
            }
        } else if canonical(asked.ip()) == canonical(h.ip) {
            if v4_loopback(h.ip) && v4_loopback(h.bind_ip) && !sock.v6only && is_tcp(call) {
                // A loopback VIP is a real local address: a client that
                // binds it before connecting (curl --interface, Python's
                // source_address) connects from it, and is seen there.
                // (Only where [services] bind is loopback too: a source
                // there reaches no other host either way.)
                return None;
            }
            SocketAddr::new(bind_ip, asked.port())
        } else {
            return None;
        };
        self.binding.insert(call.tid, service);
        Some(Verdict::Rewrite(real.into()))
    }

    /// getsockname() of a socket bound or accepted as a service: the address
    /// it asked for (with the real port when it asked for port 0).
    pub fn sockname(&mut self, call: &Call) -> Option<Verdict> {
        let sock = call.socket?;
        let Some((asked, _)) = self.bound.get(&sock.inode) else {
            // An accepted connection's local address is the service's: a
            // TCP socket on the real port of a listener that is still a
            // backend (a port is reused once its listener is gone).
            let host_ip = self.host.as_ref()?.ip;
            let real = call.local.as_ref()?.ip()?;
            let (asked, listener) = *self.service_ports.get(&real.port())?;
            if !is_tcp(call) || !self.own_listener_live(real.port(), listener, false) {
                // The port's listener is gone and another socket has it.
                return None;
            }
            return Some(Verdict::Answer(in_family(host_ip, asked, sock.domain)?));
        };
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
        if let Some(own) = self.own_service(call, addr) {
            return Some(Verdict::Rewrite(own.into()));
        }
        let (routes, generation) = self.net.routes_numbered();
        let udp = is_udp(call);
        if routes.is_empty() || !(is_tcp(call) || udp) {
            return None;
        }
        if !routes.is_virtual(&addr) {
            // A connect elsewhere on a socket sent to a backend is carried
            // out (not passed): its outcome says whether the socket is
            // still the backend's (see `association_kept`).
            let inode = call.socket.map_or(0, |s| s.inode);
            return (!udp && self.routed.contains_key(&inode)).then_some(Verdict::Allow);
        }
        if udp {
            // connect() on a UDP socket only sets where datagrams go: the flow's backend.
            return self.send(call, addr, labels);
        }
        let vip = canonical_addr(addr);
        let inode = call.socket.map_or(0, |s| s.inode);
        // One pick per socket: a connect() again on a socket already sent
        // somewhere (hiredis and Perl check completion this way) goes to the
        // same backend, and the kernel answers as it would (EALREADY, EISCONN).
        // (Whatever it asks now: the kernel answers for the socket.)
        if let Some(r) = self.routed.get(&inode) {
            return Some(Verdict::Rewrite(r.backend.into()));
        }
        let Some(route) = routes.route_of(&vip, udp) else {
            log::info!(
                target: super::CALLS,
                "connect to {vip} from pid {}: nothing listens there",
                call.pid
            );
            return Some(self.no_backend(call));
        };
        let table = self.table();
        match self.choose(call, route, labels, 0, None, table.as_deref()) {
            Ok((i, ticket)) => {
                let b = &route.backends[i];
                let r = Routed {
                    vip,
                    backend: b.addr,
                    tried: bit(i),
                    table: generation,
                    alternatives: route.backends.len() > 1,
                    ticket,
                };
                // Every backend this socket could reach, the one picked and
                // any failover, on IPv4 loopback (a v4 source cannot reach
                // an IPv6 backend).
                let (domain, v6only) = call
                    .socket
                    .map_or((libc::AF_INET6, false), |s| (s.domain, s.v6only));
                let local = route
                    .backends
                    .iter()
                    .filter(|b| reachable(domain, v6only, b.addr))
                    .all(|b| v4_loopback(b.addr.ip()));
                self.sent(call, inode, r, b.slot, table.as_deref(), local);
                Some(Verdict::Rewrite(b.addr.into()))
            }
            Err(why) => {
                log::info!(
                    target: super::CALLS,
                    "connect to {vip} from pid {}: {}",
                    call.pid,
                    why.reason()
                );
                Some(self.no_backend(call))
            }
        }
    }

    /// A TCP connect of a program with a VIP to a loopback address, on a
    /// port one of its own services asked for: untraced, its own listener
    /// would answer there (it listens on that port), so it does: the
    /// connect goes to that listener's real address. (Processes of one
    /// program reach each other's services over 127.0.0.1, as in a
    /// container, isolated or not.) None when it is not such a connect.
    fn own_service(&mut self, call: &Call, addr: SocketAddr) -> Option<SocketAddr> {
        self.host.as_ref()?;
        let want = canonical(addr.ip());
        if !is_tcp(call) || !want.is_loopback() || self.service_ports.is_empty() {
            return None;
        }
        // The listener that answers, if it still listens; one found gone is
        // forgotten, and the next one looked at (each turn forgets one).
        // With more than one that would answer (it listened again), the
        // kernel is asked: the daemon's word may be 50 ms old, and a listener
        // just closed would take the connect from its successor.
        for _ in 0..=self.service_ports.len() {
            let ((port, inode, to), n) = self.own_listener_for(call, addr.port(), want)?;
            if self.own_listener_live(port, inode, n > 1) {
                return Some(to);
            }
        }
        None
    }

    /// The listener of the program that would answer `want`:`port` untraced
    /// (see [`Router::own_service`]): asked for that port, on every address
    /// of the destination's family (an IPv6 wildcard that is dual-stack
    /// takes IPv4 too) or on that address. The lowest real port, so that
    /// the choice does not depend on the map's order. Its real port, its
    /// inode and where to connect; and how many would answer.
    fn own_listener_for(
        &self,
        call: &Call,
        port: u16,
        want: IpAddr,
    ) -> Option<((u16, u64, SocketAddr), usize)> {
        let (domain, v6only) = call
            .socket
            .map_or((libc::AF_INET6, false), |s| (s.domain, s.v6only));
        self.service_ports
            .iter()
            .filter(|(_, (asked, _))| *asked == port)
            .filter_map(|(&real_port, &(_, inode))| {
                let asked = self.bound.get(&inode)?.0.ip()?;
                let real = *self.listening.get(&inode)?;
                let asked_ip = canonical(asked.ip());
                let serves = if asked_ip.is_unspecified() {
                    asked_ip.is_ipv4() == want.is_ipv4()
                        // Dual-stack: registered at the IPv4 address too.
                        || (want.is_ipv4() && canonical(real.ip()).is_ipv4())
                } else {
                    asked_ip == want
                };
                if !serves {
                    return None;
                }
                // A listener on a wildcard is reached on loopback, in its family.
                let ip = match real.ip() {
                    ip if !ip.is_unspecified() => ip,
                    IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                    IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
                };
                let to = SocketAddr::new(ip, real.port());
                reachable(domain, v6only, to).then_some((real_port, inode, to))
            })
            .fold(
                None,
                |best: Option<((u16, u64, SocketAddr), usize)>, c| match best {
                    Some((b, n)) if b.2.port() <= c.2.port() => Some((b, n + 1)),
                    Some((_, n)) => Some((c, n + 1)),
                    None => Some((c, 1)),
                },
            )
    }

    /// Whether this program's listening socket `inode` still holds real
    /// port `port` (once it is gone, the port may be given to another
    /// socket). Under a daemon, nothing is asked on the call's path: the
    /// daemon checks every traced listener by inode every 50 ms
    /// (daemon::health_watch) and publishes the answer in the shared table.
    /// Without one (standalone, a listener the daemon has not looked at
    /// yet, or one it dropped from the routes; or `ask_kernel`), one
    /// sock_diag query. A listener found gone is forgotten, so that it is not
    /// asked about again.
    fn own_listener_live(&mut self, port: u16, inode: u64, ask_kernel: bool) -> bool {
        use crate::services::shared::Health;
        let (routes, _) = self.net.routes_numbered();
        let slot = routes
            .routes
            .iter()
            .flat_map(|r| r.backends.iter())
            .find(|b| matches!(b.origin, Origin::Traced { inode: i, .. } if i == inode))
            .map(|b| b.slot);
        let published = match (slot, self.net.shared()) {
            (Some(slot), Some(t)) if slot != NO_SLOT && !ask_kernel => t.health(slot),
            _ => Health::Unknown,
        };
        let live = match published {
            Health::Up | Health::Full => true,
            Health::Down => false,
            Health::Unknown => {
                crate::sockdiag::tcp_listeners(&[port]).map_or(true, |l| l.contains_key(&inode))
            }
        };
        if !live {
            if self
                .service_ports
                .get(&port)
                .is_some_and(|&(_, i)| i == inode)
            {
                self.service_ports.remove(&port);
            }
            self.listening.remove(&inode);
        }
        live
    }

    /// Remember where a socket was sent; a client with a VIP binds it to
    /// that address when `local` (every backend of the route is on this
    /// host's loopback), else tells servers to expect its record.
    fn sent(
        &mut self,
        call: &Call,
        inode: u64,
        r: Routed,
        slot: u32,
        table: Option<&SharedTable>,
        local: bool,
    ) {
        let backend = r.backend;
        insert_socket(&mut self.routed, inode, r);
        let Some(t) = table else {
            return;
        };
        // Only a TCP connect() says when it has run (the daemon's count of
        // connections sees it from then on) and writes its record; a TCP
        // Fast Open send is taken as counted after a while.
        if call.op != tracer::Op::Connect {
            // A TCP Fast Open send connects in the same call, right after:
            // settled now (its connection is in the next count).
            if is_tcp(call) {
                t.settled(slot);
            }
            return;
        }
        if is_tcp(call) {
            // A failover: the same call tries again, from the same source.
            let old = self.routing.get(&call.tid).copied();
            let vip = match (&self.host, old) {
                (None, _) => None,
                (Some(_), Some(o)) => o.vip,
                (Some(h), None) => Some(local && v4_loopback(h.ip)),
            };
            let now = InFlight { backend, slot, vip };
            self.routing.insert(call.tid, now);
            if vip == Some(false) {
                t.expect_peer(slot);
            }
            // The first backend's connect has run (refused), and it
            // expects nothing any more.
            if let Some(o) = old {
                t.settled(o.slot);
                if o.vip == Some(false) {
                    t.peer_done(o.slot);
                }
            }
        }
    }

    /// Whether a refusal of this routed connect could be tried again on
    /// another backend: its service has more than one.
    pub fn may_fail_over(&self, call: &Call) -> bool {
        call.socket
            .and_then(|s| self.routed.get(&s.inode))
            .is_none_or(|r| r.alternatives)
    }

    /// The source a routed connect binds its socket to: the program's VIP,
    /// when it can be (see `sent`).
    pub fn connect_source(&self, call: &Call) -> Option<SockAddr> {
        let h = self.host.as_ref()?;
        let f = self.routing.get(&call.tid)?;
        (f.vip == Some(true)).then(|| SocketAddr::new(canonical(h.ip), 0).into())
    }

    /// The socket could not be bound to the VIP (the program bound it
    /// already): the client leaves a record instead, and servers expect it.
    pub fn connect_source_bound(&mut self, call: &Call, bound: bool) {
        if bound {
            return;
        }
        let Some(f) = self.routing.get_mut(&call.tid) else {
            return;
        };
        if f.vip == Some(true) {
            f.vip = Some(false);
            let slot = f.slot;
            if let Some(t) = self.table() {
                t.expect_peer(slot);
            }
        }
    }

    /// The connect this router sent to `tried` was refused at once: the
    /// next backend of the same service, if one is left (failover inside
    /// the call).
    pub fn refused(&mut self, call: &Call, labels: &Labels) -> Option<SockAddr> {
        let inode = call.socket?.inode;
        let r = *self.routed.get(&inode)?;
        // Only a connect this router sent (not a redirect rule's).
        let asked = call
            .addr
            .as_ref()
            .and_then(SockAddr::ip)
            .map(canonical_addr);
        if asked != Some(r.vip) {
            return None;
        }
        let (routes, now) = self.net.routes_numbered();
        let route = routes.route_of(&r.vip, is_udp(call))?;
        // The table changed since (a backend left or came): positions moved,
        // so what was tried is found again by address (the one just refused;
        // one refused earlier refuses again, and the tries are bounded).
        let tried = if r.table == now {
            r.tried
        } else {
            (0..route.backends.len().min(64))
                .filter(|&i| route.backends[i].addr == r.backend)
                .fold(0, |m, i| m | bit(i))
        };
        let table = self.table();
        let (i, _) = self
            .choose(call, route, labels, tried, Some(r.ticket), table.as_deref())
            .ok()?;
        let b = &route.backends[i];
        log::info!(
            target: super::CALLS,
            "connect to {} from pid {}: {} refused, trying {}",
            r.vip,
            call.pid,
            r.backend,
            b.addr
        );
        let next = Routed {
            backend: b.addr,
            tried: tried | bit(i),
            table: now,
            ..r
        };
        // (The source stays what the first try chose.)
        self.sent(call, inode, next, b.slot, table.as_deref(), false);
        Some(b.addr.into())
    }

    /// A datagram sent to a virtual address (sendto, sendmsg, sendmmsg on a
    /// UDP socket): to a backend of the UDP service. A flow keeps its
    /// backend: the same socket sending to the same VIP:PORT lands on the
    /// same one.
    pub fn send(&mut self, call: &Call, addr: SocketAddr, labels: &Labels) -> Option<Verdict> {
        let routes = self.net.routes();
        if routes.is_empty() || !is_udp(call) || !routes.is_virtual(&addr) {
            return None;
        }
        let vip = canonical_addr(addr);
        let inode = call.socket.map_or(0, |s| s.inode);
        let Some(route) = routes.route_of(&vip, true) else {
            return Some(Verdict::Fail(Errno::ECONNREFUSED));
        };
        // The flow's backend, while it is still one of the service's.
        let flow = self
            .udp
            .get(&inode)
            .and_then(|f| f.iter().find(|(v, _)| *v == vip))
            .map(|(_, b)| *b)
            .filter(|b| route.backends.iter().any(|x| x.addr == *b));
        if let Some(b) = flow {
            return Some(Verdict::Rewrite(b.into()));
        }
        let table = self.table();
        let Ok((i, _)) = self.choose(call, route, labels, 0, None, table.as_deref()) else {
            return Some(Verdict::Fail(Errno::ECONNREFUSED));
        };
        let backend = route.backends[i].addr;
        let flows = match self.udp.get_mut(&inode) {
            Some(f) => f,
            None => {
                insert_socket(&mut self.udp, inode, Vec::new());
                self.udp.entry(inode).or_default()
            }
        };
        flows.retain(|(v, _)| *v != vip);
        if flows.len() >= MAX_FLOWS {
            flows.remove(0);
        }
        flows.push((vip, backend));
        Some(Verdict::Rewrite(backend.into()))
    }

    /// Whether a datagram received on this socket may need its source
    /// shown as a VIP (it was sent to a UDP service).
    pub fn wants_recv(&self, call: &Call) -> bool {
        is_udp(call) && call.socket.is_some_and(|s| self.udp.contains_key(&s.inode))
    }

    /// Whether this program must be able to show datagrams' sources as
    /// VIPs: a UDP service existed when it started. (The seccomp filter is
    /// fixed then: a program started earlier sees its replies come from the
    /// backend's real address.)
    pub fn wants_recv_at_start(&self) -> bool {
        self.net.routes().routes.iter().any(|r| r.udp)
    }

    /// A datagram from the backend of one of this socket's flows: the
    /// program sees it come from that flow's VIP:PORT. (When the program's
    /// buffer cut the source short, the bytes it got are matched.)
    pub fn received(&self, call: &Call) -> Option<SockAddr> {
        let sock = call.socket?;
        let flows = self.udp.get(&sock.inode)?;
        let vip = match (call.peer.as_ref().and_then(SockAddr::ip), &call.peer_prefix) {
            (Some(from), _) => {
                let from = canonical_addr(from);
                flows.iter().find(|(_, b)| canonical_addr(*b) == from)?.0
            }
            (None, Some(prefix)) => {
                let shown = |b: SocketAddr| in_family(b.ip(), b.port(), sock.domain);
                let mut hits = flows
                    .iter()
                    .filter(|(_, b)| shown(*b).is_some_and(|a| prefix.matches(&a)));
                let hit = hits.next()?.0;
                if hits.next().is_some() {
                    return None;
                }
                hit
            }
            _ => return None,
        };
        in_family(vip.ip(), vip.port(), sock.domain)
    }

    /// getpeername() of a connection a service accepted from a client with
    /// a virtual IP: that address.
    pub fn peername(&self, call: &Call) -> Option<Verdict> {
        let inode = call.socket?.inode;
        self.peers.get(&inode).map(|a| Verdict::Answer(a.clone()))
    }

    /// Whether an accept() on `call`'s socket must be seen returning: only
    /// a service's, and only when its client may have a virtual IP: another
    /// program of this daemon has one (only those leave records), or one is
    /// connecting now (the new table may not have reached us yet). A
    /// blocking accept may wait for anything: always.
    pub fn accept_needs_exit(&mut self, call: &Call) -> bool {
        let (Some(h), Some(s)) = (self.host.as_ref(), call.socket) else {
            return false;
        };
        let Some(&real) = self.listening.get(&s.inode) else {
            return false;
        };
        if !s.nonblocking {
            return true;
        }
        let routes = self.net.routes();
        if records_possible(&routes, h) {
            return true;
        }
        let slot = backend_slot(&routes, real);
        match (self.table(), slot) {
            (Some(t), Some(slot)) => t.peer_expected(slot),
            _ => false,
        }
    }

    /// Whether this program's accept() is trapped at all (decided once,
    /// when its filter is made): it has a VIP, and clients may have VIPs
    /// the kernel would not show it: its own cannot be a connect's source
    /// (then, presumably, neither can its clients'), or another program's
    /// cannot, or its listeners are not on IPv4 loopback (clients then
    /// leave records). A client with such a VIP that starts later is seen
    /// by this program at its real address (docs/SERVICES.md).
    pub fn traps_accept(&self) -> bool {
        let Some(h) = self.host.as_ref() else {
            return false;
        };
        let trap = !v4_loopback(h.ip) || records_possible(&self.net.routes(), h);
        self.accept_trapped.set(Some(trap));
        trap
    }

    /// A service accepted a connection: if the client has a virtual IP, the
    /// program sees that as its peer (accept's output, later getpeername).
    /// Found in the shared table, where the client's tracer recorded it.
    pub fn accepted(&mut self, call: &Call) -> Option<SockAddr> {
        let listener = call.socket?.inode;
        let accepted = call.accepted?;
        let backend = *self.listening.get(&listener)?;
        let table = self.table()?;
        let h = self.host.as_ref()?;
        // Only clients that cannot carry their VIP as their source leave
        // records: look only when such a client may exist, or one has just
        // connected or left a record not yet taken.
        let routes = self.net.routes();
        if !records_possible(&routes, h) && !table.any_peer_expected() {
            return None;
        }
        let peer = canonical_addr(call.peer.as_ref()?.ip()?);
        let vip = match table.take_peer(peer, backend.port()) {
            Some(v) => v,
            None => {
                // The client's tracer may not have written it yet.
                let slot = backend_slot(&routes, backend)?;
                let end = std::time::Instant::now() + PEER_WAIT;
                loop {
                    if !table.peer_expected(slot) || std::time::Instant::now() >= end {
                        return None;
                    }
                    std::thread::sleep(std::time::Duration::from_micros(50));
                    if let Some(v) = table.take_peer(peer, backend.port()) {
                        break v;
                    }
                }
            }
        };
        let shown = in_family(vip.ip(), vip.port(), accepted.domain)?;
        insert_socket(&mut self.peers, accepted.inode, shown.clone());
        Some(shown)
    }

    /// A service socket (TCP once listening, UDP once bound) becomes a
    /// backend: the report for the daemon (or this program's own table).
    fn register(&mut self, call: &Call, inode: u64, udp: bool) -> Option<ToDaemon> {
        let h = self.host.as_ref()?;
        let (asked, true) = self.bound.get(&inode)? else {
            return None;
        };
        let asked = asked.ip()?;
        let real = canonical_addr(call.local.as_ref()?.ip()?);
        // A wildcard socket is reached at [services] bind (in the socket's
        // family: the daemon names the host otherwise).
        // A dual-stack IPv6 wildcard (--expose of a `::` listener) takes
        // IPv4 too: reached at an IPv4 [services] bind as well.
        let dual = call
            .socket
            .is_some_and(|s| s.domain == libc::AF_INET6 && !s.v6only);
        let same_family = real.is_ipv4() == h.bind_ip.is_ipv4() || (dual && h.bind_ip.is_ipv4());
        let real = if real.ip().is_unspecified() && same_family {
            SocketAddr::new(h.bind_ip, real.port())
        } else {
            real
        };
        if !udp {
            insert_socket(&mut self.listening, inode, real);
            self.service_ports
                .insert(real.port(), (asked.port(), inode));
            if self.accept_trapped.get() == Some(false)
                && !v4_loopback(real.ip())
                && !self.told_untrapped
            {
                // Clients cannot carry a loopback VIP as the source of a
                // connection to this listener, and accept() does not stop.
                self.told_untrapped = true;
                log::warn!(
                    "appswitch: pid {}: the listener at {real} (VIP {}:{}) is not on IPv4 loopback: \
                     clients with VIPs are shown to the program at their real addresses \
                     (docs/SERVICES.md, clients with a VIP)",
                    call.pid,
                    h.ip,
                    asked.port()
                );
            }
        }
        let l = Listener {
            inode,
            pid: call.pid,
            service: SocketAddr::new(canonical(h.ip), asked.port()),
            real,
            netns: crate::procfs::netns((!h.isolated).then_some(call.pid)),
            udp,
        };
        if let Some((reg, slots)) = &mut self.local {
            reg.add_listener(0, l.clone());
            let mut t = reg.table(&Default::default());
            slots.assign(&mut t, None);
            self.net.set_routes(t);
        }
        Some(ToDaemon::Listen(l))
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
                let failed = matches!(outcome, Outcome::Err(e) if !matches!(e, Errno::EINPROGRESS | Errno::EALREADY | Errno::EISCONN | Errno::EINTR));
                let kept = match verdict {
                    Verdict::Rewrite(_) => !failed,
                    // Refused here: the kernel never saw it.
                    Verdict::Fail(_) => true,
                    _ => association_kept(call, outcome),
                };
                // Not connected nor connecting, or connected elsewhere (a
                // rule, AF_UNSPEC): a later connect picks again.
                if !kept {
                    if let Some(s) = call.socket {
                        self.routed.remove(&s.inode);
                    }
                }
                let InFlight { backend, slot, vip } = self.routing.remove(&call.tid)?;
                let t = self.table()?;
                t.settled(slot);
                // Only a client that could not carry its VIP as its source
                // leaves a record.
                if vip != Some(false) {
                    return None;
                }
                let h = self.host.as_ref()?;
                // Whatever the outcome (an EINTR connect still completes in
                // the kernel): servers may wait for the record.
                let local = call.local.as_ref().and_then(SockAddr::ip);
                if let Some(local) = local.filter(|l| l.port() != 0) {
                    let local = canonical_addr(local);
                    let vip = SocketAddr::new(canonical(h.ip), local.port());
                    t.put_peer(local, backend.port(), vip);
                }
                t.peer_done(slot);
                None
            }
            tracer::Op::Bind => {
                let service = self.binding.remove(&call.tid);
                let inode = call.socket?.inode;
                let ok = matches!(outcome, Outcome::Ok(_) | Outcome::Unknown);
                match service {
                    Some(service) if ok && matches!(verdict, Verdict::Rewrite(_)) => {
                        insert_socket(&mut self.bound, inode, (call.addr.clone()?, service));
                        // A UDP service socket is a backend once bound.
                        if service && is_udp(call) {
                            return self.register(call, inode, true);
                        }
                    }
                    _ => {
                        self.bound.remove(&inode);
                    }
                }
                None
            }
            tracer::Op::Listen if matches!(outcome, Outcome::Ok(_)) => {
                let inode = call.socket?.inode;
                self.register(call, inode, false)
            }
            _ => None,
        }
    }
}

/// Whether clients of this program's services may leave records: another
/// program has a VIP that cannot be a connect's source, or this program's
/// listeners are not on IPv4 loopback (`[services] bind`, cluster mode:
/// clients bind their VIP only when every backend is on loopback).
fn records_possible(routes: &RouteTable, h: &HostIdentity) -> bool {
    other_unbindable(routes, canonical(h.ip)) || !v4_loopback(h.bind_ip)
}

/// Another program of this daemon (not `own`) has a VIP that cannot be its
/// connects' source: its servers must look for its records.
fn other_unbindable(routes: &RouteTable, own: IpAddr) -> bool {
    routes
        .local_hosts
        .iter()
        .any(|ip| *ip != own && !v4_loopback(*ip))
}

fn bit(i: usize) -> u64 {
    if i < 64 {
        1 << i
    } else {
        0
    }
}

/// The shared-table slot of the backend at `addr`.
fn backend_slot(routes: &RouteTable, addr: SocketAddr) -> Option<u32> {
    routes
        .routes
        .iter()
        .flat_map(|r| r.backends.iter())
        .find(|b| b.addr == addr)
        .map(|b| b.slot)
}

/// A TCP socket bound to a free loopback port and never listening: every
/// connect to it is refused (RST) by the kernel.
fn closed_port() -> Option<(std::os::fd::OwnedFd, SocketAddr)> {
    use std::os::fd::FromRawFd;
    // SAFETY: a new socket; the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: fd is ours.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    use std::os::fd::AsRawFd;
    // SAFETY: sa is a valid sockaddr_in of `len` bytes.
    let ok = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            len,
        ) == 0
            && libc::getsockname(
                fd.as_raw_fd(),
                (&mut sa as *mut libc::sockaddr_in).cast(),
                &mut len,
            ) == 0
    };
    ok.then(|| {
        let port = u16::from_be(sa.sin_port);
        (
            fd,
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), port),
        )
    })
}

/// The IPv6 address that stands for `ip` on a socket that takes IPv6 only:
/// loopback for loopback, the wildcard for the wildcard or an IPv4 address.
fn v6_form(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(_) => ip,
        IpAddr::V4(v4) if v4.is_loopback() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        IpAddr::V4(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

/// Whether a socket of `domain` (`v6only`) can connect to `addr`.
fn reachable(domain: i32, v6only: bool, addr: SocketAddr) -> bool {
    let v4 = canonical(addr.ip()).is_ipv4();
    match domain {
        libc::AF_INET => v4,
        libc::AF_INET6 => !(v6only && v4),
        _ => false,
    }
}

#[cfg(test)]
#[path = "vip_router_tests.rs"]
mod tests;
