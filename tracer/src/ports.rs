//! Ports the kernel chooses. A bind to port 0 and a listen() on an unbound
//! socket get a port of the kernel's choice, which the program can steer
//! (IP_LOCAL_PORT_RANGE, or by holding every other port): bind rules judge
//! the port actually chosen.
//!
//! - bind(port 0), allowed as asked: the tracer binds, reads the port, and
//!   asks the handler again with it; refused, the socket is unbound again.
//!   UDP: connect(AF_UNSPEC) lets the port go. TCP keeps a port through
//!   that, but not through a refused connect: the tracer connects its copy
//!   to a loopback port of its own that does not listen (the kernel answers
//!   the SYN with a RST at once and releases a port the program did not
//!   ask for by number), then clears the error with connect(AF_UNSPEC).
//! - listen() on a TCP socket: the tracer first tries to bind it to the
//!   wildcard address, port 0. If that works the socket was unbound (its
//!   getsockname may still show a released port), and the handler decides
//!   on the chosen port (`Call::addr` of the listen). The listen itself is
//!   carried out on the tracer's copy of the socket (the kernel would read
//!   the descriptor again).

use crate::call::{Call, NetHandler, SocketInfo, Verdict};
use crate::decode::Decoded;
use crate::emulate;
use crate::sockaddr::{RawAddr, SockAddr};
use crate::tracer::Tracer;
use nix::errno::Errno;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};

impl<H: NetHandler> Tracer<'_, H> {
    /// After an allowed bind: the port the kernel chose, when the program
    /// asked for port 0, judged again. Some(errno) when refused.
    pub(crate) fn check_chosen_port(
        &mut self,
        call: &Call,
        sock: &OwnedFd,
        info: &SocketInfo,
    ) -> Option<Errno> {
        let asked = call.addr.as_ref().and_then(SockAddr::ip)?;
        if asked.port() != 0 {
            return None;
        }
        let chosen = emulate::local_addr(sock)?;
        if chosen.ip().is_none_or(|c| c.port() == 0) {
            return None;
        }
        let mut again = call.clone();
        again.addr = Some(chosen);
        match self.handler.decide(&again) {
            Verdict::Fail(e) => {
                self.unbind(sock, info);
                Some(e)
            }
            _ => None,
        }
    }

    /// listen() on a TCP socket: bind it first if it is unbound (see the module).
    pub(crate) fn autobind(&mut self, d: &mut Decoded, sock: &OwnedFd, info: &SocketInfo) {
        if info.sotype != libc::SOCK_STREAM {
            return;
        }
        let any = match d.call.local.as_ref().and_then(SockAddr::ip) {
            Some(SocketAddr::V6(_)) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
            _ => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        };
        let Some(raw) = RawAddr::of(&SockAddr::from(any)) else {
            return;
        };
        let r = emulate::raw_bind(sock, &raw);
        if r.is_ok() {
            d.autobound = true;
            d.call.local = emulate::local_addr(sock);
            d.call.addr = d.call.local.clone();
        }
    }

    /// Carry out a listen() on the tracer's copy of the socket.
    pub(crate) fn listen(
        &mut self,
        tid: i32,
        d: &Decoded,
        sock: &OwnedFd,
        info: &SocketInfo,
        verdict: Verdict,
    ) {
        let refused = |e: Errno| -(e as i64);
        if self.refused_ports.contains(&info.inode) {
            let v = Verdict::Fail(Errno::EACCES);
            return self.done(tid, &d.call, &v, refused(Errno::EACCES));
        }
        if let Verdict::Fail(e) = verdict {
            if d.autobound {
                self.unbind(sock, info);
            }
            return self.done(tid, &d.call, &verdict, refused(e));
        }
        // SAFETY: listen on our copy of the socket; the backlog as passed.
        let r = unsafe { libc::listen(sock.as_raw_fd(), d.args[1] as i32) };
        let r = if r < 0 { refused(Errno::last()) } else { 0 };
        self.done(tid, &d.call, &verdict, r)
    }

    /// Undo a bind to a refused port (see the module).
    fn unbind(&mut self, sock: &OwnedFd, info: &SocketInfo) {
        if info.sotype == libc::SOCK_STREAM {
            self.release_tcp_port(sock, info);
        }
        let unspec = [0u8; 16];
        // SAFETY: a 16-byte AF_UNSPEC address (family 0).
        unsafe { libc::connect(sock.as_raw_fd(), unspec.as_ptr().cast(), 16) };
    }

    /// A refused connect to our own non-listening loopback port moves the
    /// socket through SYN_SENT back to CLOSE, which releases its port.
    fn release_tcp_port(&mut self, sock: &OwnedFd, info: &SocketInfo) {
        // A socket bound to a v4-mapped address can reach only IPv4: its
        // refuser is the IPv4 one, as ::ffff:127.0.0.1.
        let mapped = matches!(
            emulate::local_addr(sock),
            Some(SockAddr::Inet6(a)) if a.ip().to_ipv4_mapped().is_some()
        );
        let family = if mapped { libc::AF_INET } else { info.domain };
        let to = self.refuser(family).map(|a| match a {
            SockAddr::Inet(v4) if info.domain == libc::AF_INET6 => SockAddr::Inet6(
                std::net::SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0),
            ),
            a => a,
        });
        let released = to
            .as_ref()
            .and_then(RawAddr::of)
            .is_some_and(|raw| refused_connect(sock, &raw));
        if !released && !self.refused_ports.insert(info.inode) {
            log::warn!("a socket bound to a refused port could not be unbound: its listen() will be refused");
        }
    }

    /// A loopback address of ours that refuses connections (bound, never
    /// listening), per family, made on first use.
    fn refuser(&mut self, domain: i32) -> Option<SockAddr> {
        let v6 = domain == libc::AF_INET6;
        if let Some((_, a)) = self.refusers.iter().find(|(d, _)| *d == domain) {
            return Some(a.clone());
        }
        let any = if v6 {
            SocketAddr::from((Ipv6Addr::LOCALHOST, 0))
        } else {
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
        };
        let s = nonlistening(any)?;
        let addr = emulate::local_addr(&s)?.ip()?;
        let a = SockAddr::from(addr);
        self.refusers.push((domain, a.clone()));
        self.refuser_socks.push(s);
        Some(a)
    }
}

/// Connect `sock` (our copy; the tracee is stopped) to `to`, a port that
/// refuses, and wait for the refusal: SYN_SENT back to CLOSE releases a port
/// the program did not bind by number. True when refused as expected.
fn refused_connect(sock: &OwnedFd, to: &RawAddr) -> bool {
    let fd = sock.as_raw_fd();
    crate::emulate::while_nonblocking(sock, || {
        // SAFETY: connect/poll/getsockopt on our own descriptor and locals.
        unsafe {
            let b = to.as_bytes();
            let r = libc::connect(fd, b.as_ptr().cast(), b.len() as libc::socklen_t);
            let mut refused = r < 0 && *libc::__errno_location() == libc::ECONNREFUSED;
            if r < 0 && *libc::__errno_location() == libc::EINPROGRESS {
                let mut p = libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                libc::poll(&mut p, 1, 100);
                let mut err: libc::c_int = 0;
                let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
                libc::getsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_ERROR,
                    (&mut err as *mut libc::c_int).cast(),
                    &mut len,
                );
                refused = err == libc::ECONNREFUSED;
            }
            refused
        }
    })
}

/// A TCP socket bound to `addr` that never listens.
fn nonlistening(addr: SocketAddr) -> Option<OwnedFd> {
    use std::os::fd::FromRawFd;
    let domain = if addr.is_ipv6() {
        libc::AF_INET6
    } else {
        libc::AF_INET
    };
    let raw = RawAddr::of(&SockAddr::from(addr))?;
    // SAFETY: socket() returns a fresh descriptor we own.
    let s = unsafe {
        let fd = libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        OwnedFd::from_raw_fd(fd)
    };
    emulate::raw_bind(&s, &raw).ok().map(|()| s)
}

/// A set of socket inodes with a size bound: insert says false when full.
#[derive(Default)]
pub(crate) struct BoundedSet(std::collections::HashSet<u64>);

impl BoundedSet {
    const MAX: usize = 65536;

    pub(crate) fn insert(&mut self, inode: u64) -> bool {
        if self.0.len() >= Self::MAX {
            return false;
        }
        self.0.insert(inode);
        true
    }

    pub(crate) fn contains(&self, inode: &u64) -> bool {
        self.0.contains(inode)
    }
}
