//! Ports the kernel chooses. A bind to port 0 and a listen() on an unbound
//! socket get a port of the kernel's choice, which the program can steer
//! (IP_LOCAL_PORT_RANGE, or by holding every other port): bind rules judge
//! the port actually chosen.
//!
//! - bind(port 0), allowed as asked: the tracer binds, reads the port, and
//!   asks the handler again with it; refused, the socket is unbound again
//!   (connect(AF_UNSPEC): UDP lets the port go; a TCP socket keeps it, so it
//!   is marked and every later listen() on it is refused too).
//! - listen() on an unbound IP socket: the tracer binds it to the wildcard
//!   address, port 0, first, so the handler decides on the chosen port
//!   (`Call::addr` of the listen), then carries out the listen on its own
//!   copy of the socket (the kernel would read the descriptor again).

use crate::call::{Call, NetHandler, SocketInfo, Verdict};
use crate::decode::Decoded;
use crate::emulate;
use crate::sockaddr::{RawAddr, SockAddr};
use crate::tracer::Tracer;
use nix::errno::Errno;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};

/// TCP sockets left bound to a refused port (by inode), at most this many.
const MAX_REFUSED: usize = 4096;

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

    /// listen() on an unbound IP socket: bind it first (see the module).
    pub(crate) fn autobind(&mut self, d: &mut Decoded, sock: &OwnedFd) {
        let unbound = d
            .call
            .local
            .as_ref()
            .and_then(SockAddr::ip)
            .is_some_and(|l| l.port() == 0);
        if !unbound {
            return;
        }
        let any = match d.call.local.as_ref().and_then(SockAddr::ip) {
            Some(SocketAddr::V6(_)) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
            _ => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        };
        let Some(raw) = RawAddr::of(&SockAddr::from(any)) else {
            return;
        };
        let b = raw.as_bytes();
        // SAFETY: b is a sockaddr of b.len() bytes; the socket is our copy.
        let r = unsafe {
            libc::bind(
                sock.as_raw_fd(),
                b.as_ptr().cast(),
                b.len() as libc::socklen_t,
            )
        };
        if r == 0 {
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
        let unspec = [0u8; 16];
        // SAFETY: a 16-byte AF_UNSPEC address (family 0).
        unsafe { libc::connect(sock.as_raw_fd(), unspec.as_ptr().cast(), 16) };
        if info.sotype == libc::SOCK_STREAM && self.refused_ports.len() < MAX_REFUSED {
            self.refused_ports.insert(info.inode);
        }
    }
}
