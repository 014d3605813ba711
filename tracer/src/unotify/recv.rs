//! recvfrom/recvmsg on a datagram socket whose source address the handler
//! may show otherwise (replies from a UDP service's backend come from its
//! VIP), under user notification: the supervisor receives on its copy of
//! the socket and writes the data, the control messages and the address
//! to the program, as the kernel would. (Under ptrace the address is
//! rewritten at the call's exit stop; here there is none.)
//!
//! A blocking receive with nothing to read is parked (park.rs). i386
//! recvmsg (another control-message layout) runs as the program made it,
//! its source unchanged.

use crate::call::{NetHandler, Op, Outcome, Verdict};
use crate::decode::Decoded;
use crate::remote;
use crate::sockaddr::{SockAddr, MAX_ADDR_LEN};
use crate::tracer::Tracer;
use nix::errno::Errno;
use std::os::fd::{AsRawFd, OwnedFd};

/// Largest datagram (and control buffer) the supervisor takes at once.
const MAX_DGRAM: usize = 1 << 16;
/// Most buffers of a recvmsg the supervisor fills.
const MAX_IOV: u64 = 1024;

struct MsgHdr {
    iov: u64,
    iovlen: u64,
    control: u64,
    controllen: u64,
}

fn read_msghdr(tid: i32, at: u64) -> Result<MsgHdr, Errno> {
    let f = |off: u64| at.checked_add(off).ok_or(Errno::EFAULT);
    Ok(MsgHdr {
        iov: remote::read_u64(tid, f(16)?)?,
        iovlen: remote::read_u64(tid, f(24)?)?,
        control: remote::read_u64(tid, f(32)?)?,
        controllen: remote::read_u64(tid, f(40)?)?,
    })
}

/// Write `data` over the program's buffers `iovs` (as many bytes as fit).
fn scatter(tid: i32, iovs: &[(u64, u64)], data: &[u8]) -> Result<(), Errno> {
    let mut off = 0usize;
    for &(base, len) in iovs {
        if off >= data.len() {
            break;
        }
        let n = (len as usize).min(data.len() - off);
        if n > 0 {
            remote::write_mem(tid, base, &data[off..off + n])?;
        }
        off += n;
    }
    Ok(())
}

impl<H: NetHandler> Tracer<'_, H> {
    /// Whether this passed call is a receive the supervisor carries out.
    pub(crate) fn recv_wanted(&mut self, d: &Decoded) -> bool {
        matches!(d.call.op, Op::RecvFrom | Op::RecvMsg)
            && d.call.out_addr.is_some()
            && d.call.socket.is_some_and(|s| {
                s.sotype == libc::SOCK_DGRAM
                    && (s.domain == libc::AF_INET || s.domain == libc::AF_INET6)
            })
            && !(d.call.op == Op::RecvMsg && d.call.abi != crate::Abi::Native)
            && self.handler.wants_outcome(&d.call)
    }

    pub(crate) fn recv_notify(&mut self, tid: i32, d: Decoded, verdict: Verdict) {
        let (sock, info) = match self.borrow(d.call.pid, tid, d.call.fd.unwrap_or(-1)) {
            Ok(b) => b,
            Err(e) => return self.done(tid, &d.call, &verdict, -(e as i64)),
        };
        let blocking = !info.nonblocking && d.call.flags & libc::MSG_DONTWAIT == 0;
        if self
            .interrupted(tid, info.inode, None, crate::unotify::park::GONE_OTHER)
            .is_some()
            && crate::unotify::park::recv_timeout(&sock)
        {
            // Natively a receive with a timeout is never restarted.
            return self.done(tid, &d.call, &verdict, -(Errno::EINTR as i64));
        }
        match self.recv_now(tid, d, verdict, &sock) {
            None => {}
            Some((d, verdict)) if blocking => self.park_recv(tid, d, verdict, sock),
            Some((d, verdict)) => self.done(tid, &d.call, &verdict, -(Errno::EAGAIN as i64)),
        }
    }

    /// Receive without waiting. Some((d, verdict)) back when nothing was
    /// there (the call is not answered yet).
    pub(crate) fn recv_now(
        &mut self,
        tid: i32,
        mut d: Decoded,
        verdict: Verdict,
        sock: &OwnedFd,
    ) -> Option<(Decoded, Verdict)> {
        let inode = d.call.socket.map_or(0, |s| s.inode);
        let peek = d.call.flags & libc::MSG_PEEK != 0;
        let kept = if peek {
            self.st().parked.peek_datagram(inode)
        } else {
            self.st().parked.take_datagram(inode)
        };
        let got = match kept {
            Some(g) => Ok(Some(g)),
            None => {
                // The buffers of the last datagram delivered, reused.
                let spare = self.st().spare_datagram.take();
                fetch(tid, sock, &d, d.call.flags | libc::MSG_DONTWAIT, spare)
            }
        };
        let g = match got {
            Ok(Some(g)) => g,
            Ok(None) => return Some((d, verdict)),
            Err(e) => {
                self.done(tid, &d.call, &verdict, -(e as i64));
                return None;
            }
        };
        if g.n < 0 {
            self.done(tid, &d.call, &verdict, g.n);
            return None;
        }
        // A datagram taken from the socket must reach a caller: if this one
        // is gone (a signal), the next receive on the socket gets it.
        if !self.st().valid() {
            if !peek {
                self.st().parked.keep_datagram(inode, g);
            }
            return None;
        }
        if let Err(e) = deliver(tid, &d, &g) {
            self.done(tid, &d.call, &verdict, -(e as i64));
            return None;
        }
        d.call.peer = SockAddr::decode(&g.name[..g.namelen]);
        let shown = self.handler.received(&d.call);
        if let (Some((ptr, lenp, cap)), Some(a)) = (d.call.out_addr, shown.or(d.call.peer.clone()))
        {
            let _ = crate::netcall::write_addr_cap(tid, ptr, lenp, cap, &a);
        }
        let n = g.n;
        let st = self.st();
        st.reply(n);
        if st.lost && !peek {
            st.parked.keep_datagram(inode, g);
            return None;
        }
        st.spare_datagram = Some(g);
        self.handler.finished(&d.call, &verdict, Outcome::Ok(n));
        None
    }
}

/// A datagram received on the supervisor's copy of the socket.
#[derive(Clone)]
pub(crate) struct Datagram {
    /// What recvfrom/recvmsg returned (the datagram's length with MSG_TRUNC).
    n: i64,
    data: Vec<u8>,
    name: [u8; MAX_ADDR_LEN],
    namelen: usize,
    control: Vec<u8>,
    msg_flags: i32,
}

/// Receive one datagram without waiting, into buffers as large as the
/// program's. None: nothing there.
fn fetch(
    tid: i32,
    sock: &OwnedFd,
    d: &Decoded,
    flags: i32,
    spare: Option<Datagram>,
) -> Result<Option<Datagram>, Errno> {
    let (want, controllen) = match d.call.op {
        Op::RecvFrom => (d.args[2] as usize, 0),
        _ => {
            let h = read_msghdr(tid, d.args[1])?;
            let mut total = 0u64;
            for i in 0..h.iovlen.min(MAX_IOV) {
                let p = h.iov.checked_add(i * 16 + 8).ok_or(Errno::EFAULT)?;
                total = total.saturating_add(remote::read_u64(tid, p)?);
            }
            let c = if h.control != 0 {
                h.controllen as usize
            } else {
                0
            };
            (total as usize, c)
        }
    };
    let want = want.min(MAX_DGRAM);
    let mut g = spare.unwrap_or_else(|| Datagram {
        n: 0,
        data: Vec::new(),
        name: [0u8; MAX_ADDR_LEN],
        namelen: 0,
        control: Vec::new(),
        msg_flags: 0,
    });
    g.data.resize(want, 0);
    g.control.resize(controllen.min(MAX_DGRAM), 0);
    g.namelen = 0;
    g.msg_flags = 0;
    let mut iov = libc::iovec {
        iov_base: g.data.as_mut_ptr().cast(),
        iov_len: want,
    };
    // SAFETY: a zeroed msghdr, then filled with our own buffers.
    let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
    m.msg_name = g.name.as_mut_ptr().cast();
    m.msg_namelen = MAX_ADDR_LEN as u32;
    m.msg_iov = &mut iov;
    m.msg_iovlen = 1;
    if !g.control.is_empty() {
        m.msg_control = g.control.as_mut_ptr().cast();
        m.msg_controllen = g.control.len();
    }
    // SAFETY: m points at our buffers only.
    let r = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut m, flags) };
    if r < 0 {
        return match Errno::last() {
            Errno::EAGAIN => Ok(None),
            e => {
                g.n = -(e as i64);
                Ok(Some(g))
            }
        };
    }
    g.n = r as i64;
    g.data.truncate((r as usize).min(want));
    g.namelen = (m.msg_namelen as usize).min(MAX_ADDR_LEN);
    let clen = if m.msg_control.is_null() {
        0
    } else {
        m.msg_controllen
    };
    g.control.truncate(clen);
    g.msg_flags = m.msg_flags;
    Ok(Some(g))
}

/// Write a datagram to the program as its call would: recvfrom's buffer,
/// or recvmsg's buffers, control messages, msg_controllen and msg_flags.
fn deliver(tid: i32, d: &Decoded, g: &Datagram) -> Result<(), Errno> {
    if d.call.op == Op::RecvFrom {
        let n = g.data.len().min(d.args[2] as usize);
        return remote::write_mem(tid, d.args[1], &g.data[..n]);
    }
    let at = d.args[1];
    let h = read_msghdr(tid, at)?;
    if h.iovlen > MAX_IOV {
        return Err(Errno::EMSGSIZE);
    }
    let mut iovs = Vec::with_capacity(h.iovlen as usize);
    for i in 0..h.iovlen {
        let p = h.iov.checked_add(i * 16).ok_or(Errno::EFAULT)?;
        iovs.push((remote::read_u64(tid, p)?, remote::read_u64(tid, p + 8)?));
    }
    scatter(tid, &iovs, &g.data)?;
    let clen = if h.control != 0 {
        g.control.len().min(h.controllen as usize)
    } else {
        0
    };
    if clen > 0 {
        remote::write_mem(tid, h.control, &g.control[..clen])?;
    }
    remote::write_mem(tid, at + 40, &(clen as u64).to_ne_bytes())?;
    remote::write_mem(tid, at + 48, &(g.msg_flags as u32).to_ne_bytes())
}
