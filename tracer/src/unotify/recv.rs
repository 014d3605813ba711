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

/// What a receive gave: the count (or -errno), or nothing yet.
pub(crate) enum Got {
    /// The count (or -errno), and the length of the source address.
    Done(i64, usize),
    WouldBlock,
}

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
        let flags = d.call.flags | libc::MSG_DONTWAIT;
        let mut name = [0u8; MAX_ADDR_LEN];
        let mut data = std::mem::take(&mut self.st().recv_buf);
        let r = match d.call.op {
            Op::RecvFrom => self.recvfrom_now(sock, &d, flags, &mut data, &mut name),
            _ => self.recvmsg_now(tid, sock, &d, flags, &mut data, &mut name),
        };
        self.st().recv_buf = data;
        let (n, namelen) = match r {
            Ok(Got::WouldBlock) => return Some((d, verdict)),
            Ok(Got::Done(n, namelen)) => (n, namelen),
            Err(e) => {
                self.done(tid, &d.call, &verdict, -(e as i64));
                return None;
            }
        };
        if n < 0 {
            self.done(tid, &d.call, &verdict, n);
            return None;
        }
        let namelen = namelen.min(MAX_ADDR_LEN);
        d.call.peer = SockAddr::decode(&name[..namelen]);
        let shown = self.handler.received(&d.call);
        if let (Some((ptr, lenp, cap)), Some(a)) = (d.call.out_addr, shown.or(d.call.peer.clone()))
        {
            let _ = crate::netcall::write_addr_cap(tid, ptr, lenp, cap, &a);
        }
        let st = self.st();
        st.reply(n);
        self.handler.finished(&d.call, &verdict, Outcome::Ok(n));
        None
    }

    /// recvfrom on our copy; the data written to the program's buffer.
    /// (count or -errno, address length).
    fn recvfrom_now(
        &self,
        sock: &OwnedFd,
        d: &Decoded,
        flags: i32,
        data: &mut Vec<u8>,
        name: &mut [u8; MAX_ADDR_LEN],
    ) -> Result<Got, Errno> {
        let (buf, len) = (d.args[1], d.args[2]);
        let want = (len as usize).min(MAX_DGRAM);
        data.resize(want, 0);
        let mut alen = MAX_ADDR_LEN as libc::socklen_t;
        // SAFETY: data and name are ours, of the stated sizes.
        let r = unsafe {
            libc::recvfrom(
                sock.as_raw_fd(),
                data.as_mut_ptr().cast(),
                want,
                flags,
                name.as_mut_ptr().cast(),
                &mut alen,
            )
        };
        if r < 0 {
            return match Errno::last() {
                Errno::EAGAIN => Ok(Got::WouldBlock),
                e => Ok(Got::Done(-(e as i64), 0)),
            };
        }
        let copied = (r as usize).min(want);
        remote::write_mem(d.call.tid, buf, &data[..copied])?;
        Ok(Got::Done(r as i64, alen as usize))
    }

    /// recvmsg on our copy: data over the program's buffers, its control
    /// messages, msg_controllen and msg_flags.
    fn recvmsg_now(
        &self,
        tid: i32,
        sock: &OwnedFd,
        d: &Decoded,
        flags: i32,
        data: &mut Vec<u8>,
        name: &mut [u8; MAX_ADDR_LEN],
    ) -> Result<Got, Errno> {
        let at = d.args[1];
        let h = read_msghdr(tid, at)?;
        if h.iovlen > MAX_IOV {
            return Err(Errno::EMSGSIZE);
        }
        let mut iovs = Vec::with_capacity(h.iovlen as usize);
        let mut total = 0u64;
        for i in 0..h.iovlen {
            let p = h.iov.checked_add(i * 16).ok_or(Errno::EFAULT)?;
            let base = remote::read_u64(tid, p)?;
            let len = remote::read_u64(tid, p + 8)?;
            total = total.saturating_add(len);
            iovs.push((base, len));
        }
        let want = (total as usize).min(MAX_DGRAM);
        data.resize(want, 0);
        let mut ctl = vec![0u8; (h.controllen as usize).min(MAX_DGRAM)];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: want,
        };
        // SAFETY: a zeroed msghdr, then filled with our own buffers.
        let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
        m.msg_name = name.as_mut_ptr().cast();
        m.msg_namelen = MAX_ADDR_LEN as u32;
        m.msg_iov = &mut iov;
        m.msg_iovlen = 1;
        if h.control != 0 && !ctl.is_empty() {
            m.msg_control = ctl.as_mut_ptr().cast();
            m.msg_controllen = ctl.len();
        }
        // SAFETY: m points at our buffers only.
        let r = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut m, flags) };
        if r < 0 {
            return match Errno::last() {
                Errno::EAGAIN => Ok(Got::WouldBlock),
                e => Ok(Got::Done(-(e as i64), 0)),
            };
        }
        scatter(tid, &iovs, &data[..(r as usize).min(want)])?;
        let clen = if m.msg_control.is_null() {
            0
        } else {
            m.msg_controllen
        };
        if clen > 0 {
            remote::write_mem(tid, h.control, &ctl[..clen])?;
        }
        remote::write_mem(tid, at + 40, &(clen as u64).to_ne_bytes())?;
        remote::write_mem(tid, at + 48, &(m.msg_flags as u32).to_ne_bytes())?;
        Ok(Got::Done(r as i64, m.msg_namelen as usize))
    }
}
