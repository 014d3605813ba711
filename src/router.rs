//! The tracer's side of services: a program traced with `--ip` has its
//! listening sockets really bound to a host port (and shown the address it
//! asked for); a connect to a virtual address goes straight to a backend.

use crate::client::Picker;
use crate::live::LiveNet;
use crate::protocol::ToDaemon;
use crate::routing::{
    canonical, canonical_addr, Balancer, Labels, Listener, NoBackend, Registry, VirtualHost,
};
use crate::services::Lb;
use std::collections::{HashMap, HashSet};
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
}

/// Sockets remembered at most (virtual local addresses).
const MAX_SOCKETS: usize = 65_536;

pub struct Router {
    net: Arc<LiveNet>,
    host: Option<HostIdentity>,
    /// The daemon's line for choices (None: standalone, choose here).
    picker: Option<Picker>,
    balancer: Balancer,
    /// Standalone: this program's own services.
    local: Option<(Registry, crate::services::ServiceTable)>,
    /// Socket inode -> the address the program bound (getsockname shows it).
    virtual_locals: HashMap<u64, SockAddr>,
    /// Threads whose bind() is a service bind in flight.
    binding: HashSet<i32>,
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
                Some((reg, Default::default()))
            }
            _ => None,
        };
        Router {
            net,
            host,
            picker,
            balancer: Balancer::default(),
            local,
            virtual_locals: HashMap::new(),
            binding: HashSet::new(),
        }
    }

    pub fn has_host(&self) -> bool {
        self.host.is_some()
    }

    /// bind() of a TCP socket to a non-zero port by a program with a virtual
    /// IP: the real socket goes to the configured address with a port the
    /// kernel chooses (or the --expose host port).
    pub fn bind(&mut self, call: &Call) -> Option<Verdict> {
        let h = self.host.as_ref()?;
        let asked = call.addr.as_ref()?.ip()?;
        if asked.port() == 0 || !is_tcp(call) {
            return None;
        }
        let real = match h.expose.iter().find(|(p, _)| *p == asked.port()) {
            Some(&(_, host_port)) => {
                SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), host_port)
            }
            None => SocketAddr::new(h.bind_ip, 0),
        };
        self.binding.insert(call.tid);
        Some(Verdict::Rewrite(real.into()))
    }

    /// getsockname() of a socket bound as a service: the address it asked for.
    pub fn sockname(&self, call: &Call) -> Option<Verdict> {
        let inode = call.socket?.inode;
        self.virtual_locals
            .get(&inode)
            .map(|a| Verdict::Answer(a.clone()))
    }

    /// connect() to a virtual address: the backend (or ECONNREFUSED).
    pub fn connect(&mut self, call: &Call, addr: SocketAddr, labels: &Labels) -> Option<Verdict> {
        let routes = self.net.routes();
        if routes.is_empty() || !is_tcp(call) || !routes.is_virtual(&addr) {
            return None;
        }
        let vip = canonical_addr(addr);
        let remote = self.picker.as_mut().and_then(|p| p.pick(vip, labels));
        let choice = match remote {
            Some(r) => r,
            // No daemon to ask: choose here from the last table.
            None => match routes.route(&vip) {
                Some(r) => self.balancer.pick(r, labels, |_| true, |_| 0),
                None => Err(NoBackend::NoneLive),
            },
        };
        Some(match choice {
            Ok(to) => Verdict::Rewrite(to.into()),
            Err(why) => {
                log::info!("connect to {vip} from pid {}: {}", call.pid, why.reason());
                Verdict::Fail(Errno::ECONNREFUSED)
            }
        })
    }

    /// After a call: remember service binds, register listeners. Returns the
    /// report for the daemon, if any.
    pub fn finished(
        &mut self,
        call: &Call,
        verdict: &Verdict,
        outcome: Outcome,
    ) -> Option<ToDaemon> {
        let ok = matches!(outcome, Outcome::Ok(_) | Outcome::Unknown);
        match call.op {
            tracer::Op::Bind => {
                let service_bind = self.binding.remove(&call.tid);
                let inode = call.socket?.inode;
                if service_bind && ok && matches!(verdict, Verdict::Rewrite(_)) {
                    if self.virtual_locals.len() >= MAX_SOCKETS {
                        self.virtual_locals.clear();
                    }
                    self.virtual_locals.insert(inode, call.addr.clone()?);
                } else {
                    self.virtual_locals.remove(&inode);
                }
                None
            }
            tracer::Op::Accept => {
                // An accepted connection's local address is the service's.
                let (listener, accepted) = (call.socket?.inode, call.accepted?.inode);
                let h = self.host.as_ref()?;
                let asked = self.virtual_locals.get(&listener)?.ip()?;
                let local = SocketAddr::new(h.ip, asked.port());
                self.virtual_locals.insert(accepted, local.into());
                None
            }
            tracer::Op::Listen if ok => {
                let h = self.host.as_ref()?;
                let inode = call.socket?.inode;
                let asked = self.virtual_locals.get(&inode)?.ip()?;
                let real = canonical_addr(call.local.as_ref()?.ip()?);
                let real = if real.ip().is_unspecified() {
                    SocketAddr::new(h.bind_ip, real.port())
                } else {
                    real
                };
                let l = Listener {
                    inode,
                    pid: call.pid,
                    service: SocketAddr::new(canonical(h.ip), asked.port()),
                    real,
                    netns: crate::daemon::state::netns_of(&call.pid.to_string()),
                };
                if let Some((reg, statics)) = &mut self.local {
                    reg.add_listener(0, l.clone());
                    self.net.set_routes(reg.table(statics));
                }
                Some(ToDaemon::Listen(l))
            }
            _ => None,
        }
    }
}
