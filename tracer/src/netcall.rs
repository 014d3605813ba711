//! Carrying out a handler's verdict on a trapped network call.
//!
//! Pass: the kernel runs the program's own call. Fail: the call is skipped
//! with an errno. Allow/Rewrite: the tracer performs the call on its borrowed
//! copy of the socket with its private copy of the address (and data), so a
//! sibling thread changing the program's memory after the check changes
//! nothing. Answer: the tracer writes the given address to the program's
//! getpeername/getsockname output, as the kernel would.

use crate::arch::{self, nr, nr32, Abi, Regs};
use crate::call::{Call, NetHandler, Op, Outcome, SocketInfo, Verdict};
use crate::decode::{ArgSource, Decoded};
use crate::emulate::{self, is_ip, Emulated};
use crate::msg;
use crate::privs;
use crate::remote;
use crate::sockaddr::{
    kernel_view, unspecified_destination, AddrUse, RawAddr, SockAddr, MAX_ADDR_LEN,
};
use crate::stream;
use crate::tracer::{pid, resume, resume_to_exit, Pending, Tracer};
use nix::errno::Errno;
use nix::sys::ptrace;
use std::os::fd::OwnedFd;

/// Addresses a refused connect tries after the first, at most.
const MAX_FAILOVER: usize = 16;

fn neg(e: Errno) -> i64 {
    -(e as i64)
}

impl<H: NetHandler> Tracer<'_, H> {
    /// The tracer's copy of `fd` of the process `tgid`, seen from thread `tid`.
    pub(crate) fn borrow(
        &mut self,
        tgid: i32,
        tid: i32,
        fd: i32,
    ) -> Result<(OwnedFd, SocketInfo), Errno> {
        let fd = match self.pidfds.getfd(tgid, tid, fd) {
            // User notification reports no thread exits: a cached pidfd
            // may be of a thread that has gone (its tid now another's).
            Err(Errno::ESRCH) if self.notify.is_some() => {
                self.pidfds.forget_thread(tid);
                self.tasks.remove(&tid);
                let tgid = self.tgid(tid);
                self.pidfds.getfd(tgid, tid, fd)?
            }
            r => r?,
        };
        match emulate::socket_info_in(&fd, Some(&mut self.kinds)) {
            Ok(info) => Ok((fd, info)),
            Err(e) => {
                // Not a socket: its close may wait (closer.rs).
                crate::closer::close_later(fd);
                Err(e)
            }
        }
    }

    pub(crate) fn on_net(&mut self, tid: i32, mut d: Decoded) {
        // Nothing can depend on this call now: it runs unread.
        if self.isolate.is_none() && self.handler.passes_unseen(&d.call) {
            return self.pass_decoded(tid, d, Verdict::Pass);
        }
        let mut borrowed = None;
        if self.interests.socket_info {
            if let Some(fd) = d.call.fd {
                match self.borrow(d.call.pid, tid, fd) {
                    Ok((f, info)) => {
                        d.call.socket = Some(info);
                        let local = d.call.op == Op::Listen
                            || (d.call.op == Op::GetSockName && self.interests.addresses);
                        if local {
                            d.call.local = emulate::local_addr(&f);
                        }
                        if d.call.op == Op::Listen && is_ip(&info) {
                            self.autobind(&mut d, &f, &info);
                        }
                        if d.call.op == Op::GetPeerName {
                            d.call.peer = emulate::peer_addr(&f);
                        }
                        borrowed = Some((f, info));
                    }
                    // Fail closed: a call the handler cannot see the socket of
                    // gets what the kernel says now (EBADF, ENOTSOCK, ...); passing
                    // it would let the kernel act on whatever the fd is later.
                    Err(e) if d.call.op.takes_address() => {
                        let v = Verdict::Fail(e);
                        return self.done(tid, &d.call, &v, neg(e));
                    }
                    Err(_) => {}
                }
            }
        }
        // User notification: the same call again after a signal took the
        // answer of one carried out (its restart): that answer, not a
        // second bind or datagram.
        if let (Some(st), Some((_, info))) = (self.notify.as_mut(), &borrowed) {
            if let Some(r) = st.parked.take_lost(tid, &d.call, info.inode) {
                let v = Verdict::Allow;
                return self.done(tid, &d.call, &v, r);
            }
            // A disconnect: a connect parked on the socket ends with EPIPE.
            let unspec = d
                .raw
                .as_ref()
                .is_some_and(|r| r.as_bytes().len() >= 2 && r.family() == libc::AF_UNSPEC);
            if d.call.op == Op::Connect && unspec {
                st.parked.note_disconnect(info.inode);
            }
        }
        // Rules judge the address as the kernel will read it on this socket.
        if let (Some(raw), Some((_, info))) = (&d.raw, &borrowed) {
            let kind = match d.call.op {
                Op::Connect => Some(AddrUse::Connect),
                Op::Bind => Some(AddrUse::Bind),
                Op::SendTo | Op::SendMsg | Op::SendMmsg => Some(AddrUse::Send),
                _ => None,
            };
            if let Some(view) = kind.and_then(|k| kernel_view(raw, info.domain, info.sotype, k)) {
                d.call.addr = view;
            }
            if kind.is_some_and(|k| k != AddrUse::Bind) {
                if let (Some(a), Some((f, _))) = (&d.call.addr, &borrowed) {
                    if let Some(to) = destination_of_unspecified(a, f) {
                        d.call.addr = Some(to);
                    }
                }
            }
        }
        if d.call.op == Op::SendMmsg {
            return self.sendmmsg(tid, d, borrowed);
        }
        // The buffer accept() will write the peer to: its size as passed
        // (an unreadable length makes the kernel fail the call with EFAULT).
        let write_peer = self.interests.addresses || self.notify.is_some();
        if d.call.op == Op::Accept && write_peer && d.args[1] != 0 {
            match remote::read_u32(tid, d.args[2]) {
                Ok(cap) => d.call.out_addr = Some((d.args[1], d.args[2], cap)),
                // The supervisor carries accept out: what the kernel says
                // of an address buffer whose length cannot be read.
                Err(_) if self.notify.is_some() => {
                    let v = Verdict::Fail(Errno::EFAULT);
                    return self.done(tid, &d.call, &v, neg(Errno::EFAULT));
                }
                Err(_) => {}
            }
        }
        // The buffer a datagram's source address will be written to.
        match d.call.op {
            Op::RecvFrom if d.args[4] != 0 => {
                if let Ok(cap) = remote::read_u32(tid, d.args[5]) {
                    d.call.out_addr = Some((d.args[4], d.args[5], cap));
                }
            }
            Op::RecvMsg => {
                let compat = d.call.abi != Abi::Native;
                let (name, lenp) = if compat {
                    (
                        remote::read_u32(tid, d.args[1]).map(u64::from),
                        d.args[1] + 4,
                    )
                } else {
                    (remote::read_u64(tid, d.args[1]), d.args[1] + 8)
                };
                if let (Ok(name), Ok(cap)) = (name, remote::read_u32(tid, lenp)) {
                    if name != 0 {
                        d.call.out_addr = Some((name, lenp, cap));
                    }
                }
            }
            _ => {}
        }
        // User notification: what was read came from the thread still
        // waiting in this call (not a reused id), checked once after all reads.
        if !self.still_waiting() {
            return;
        }
        let verdict = self.handler.decide(&d.call);
        self.apply(tid, d, borrowed, verdict);
    }

    pub(crate) fn done(&mut self, tid: i32, call: &Call, verdict: &Verdict, ret: i64) {
        if self.notify.is_some() && !sigpipe_kills(call, tid, ret) {
            // A signal raised while the thread waits for our answer would
            // interrupt the wait (and a handled one restart the call):
            // answer first. A SIGPIPE that kills goes first (as natively,
            // nothing after the call runs).
            self.skip_call(tid, ret);
            raise_sigpipe(call, tid, ret);
            if let (Some(s), Some(st)) = (call.socket, self.notify.as_mut()) {
                if st.lost {
                    st.parked.note_lost(tid, call, s.inode, ret);
                }
            }
        } else {
            raise_sigpipe(call, tid, ret);
            self.skip_call(tid, ret);
        }
        self.handler.finished(call, verdict, Outcome::from_raw(ret));
    }

    fn apply(
        &mut self,
        tid: i32,
        mut d: Decoded,
        borrowed: Option<(OwnedFd, SocketInfo)>,
        mut verdict: Verdict,
    ) {
        let op = d.call.op;
        if op == Op::Listen {
            if let Some((sock, info)) = borrowed.as_ref().filter(|(_, i)| is_ip(i)) {
                if let Err(e) = self.leaves_namespace(op, info, false, false, None, sock) {
                    // Isolated: a socket of ours may not listen (handover.rs).
                    return self.done(tid, &d.call, &verdict, neg(e));
                }
                return self.listen(tid, &d, sock, info, verdict);
            }
        }
        // An IP address on a socket that is not IP: refused on our copy,
        // never passed (see emulate::foreign_ip_address).
        if let (Some((sock, info)), Some(raw), false) = (
            borrowed.as_ref(),
            d.raw.as_ref(),
            matches!(verdict, Verdict::Fail(_)),
        ) {
            if let Some(r) = emulate::foreign_ip_address(sock, info, op, raw) {
                return self.done(tid, &d.call, &verdict, r);
            }
        }
        // None: carry out the program's own address (the tracer's copy).
        let target = match &verdict {
            Verdict::Fail(e) => {
                let e = *e;
                return self.done(tid, &d.call, &verdict, neg(e));
            }
            // User notification sees no result of a call it lets run, and
            // an i386 socketcall it lets run has its argument array read
            // again by the kernel (a sibling may change the descriptor, the
            // address or the flags): where the result is wanted (the event
            // log), and for every socketcall, the program's own address is
            // carried out from the tracer's copy, as for Allow.
            // Isolated, a call may have to leave the program's namespace
            // (handover.rs): carried out too.
            Verdict::Pass
                if self.notify.is_some()
                    && (self.interests.outcomes
                        || d.source == ArgSource::SocketcallArray
                        || self.isolate.is_some())
                    && matches!(op, Op::Connect | Op::Bind | Op::SendTo | Op::SendMsg) =>
            {
                None
            }
            Verdict::Pass => return self.pass_decoded(tid, d, verdict),
            Verdict::Answer(a) if matches!(op, Op::GetPeerName | Op::GetSockName) => {
                let r = answer(tid, &d, a);
                return self.done(tid, &d.call, &verdict, r);
            }
            Verdict::Answer(_) => return self.pass_decoded(tid, d, verdict),
            Verdict::Rewrite(a) => Some(a.clone()),
            Verdict::Allow => None,
        };
        if !matches!(op, Op::Connect | Op::Bind | Op::SendTo | Op::SendMsg) {
            return self.pass_decoded(tid, d, verdict);
        }
        // A rewritten connect may be offered another address when refused.
        let routed = target.is_some();
        let (mut sock, info) = match borrowed {
            Some(b) => b,
            None => match self.borrow(d.call.pid, tid, d.call.fd.unwrap_or(-1)) {
                Ok(b) => b,
                Err(e) => return self.done(tid, &d.call, &verdict, neg(e)),
            },
        };
        if !is_ip(&info) {
            // Not emulated (docs/RULES.md, known limits).
            return self.pass_decoded(tid, d, verdict);
        }
        // What runs: the address the handler chose, in the socket's family,
        // or exactly the bytes the program passed (so the kernel judges the
        // program's own address, errnos included).
        let raw = match &target {
            Some(a) => {
                let a = emulate::fit_family(&info, a.clone());
                match RawAddr::of(&a) {
                    Some(r) => Some(r),
                    None => {
                        let r = emulate::unusable(&a);
                        return self.done(tid, &d.call, &verdict, r);
                    }
                }
            }
            None => d.raw,
        };
        let stream = info.sotype == libc::SOCK_STREAM;
        if stream && matches!(op, Op::Connect | Op::Bind) && self.landlock.restricted(d.call.pid) {
            // A call carried out only to learn its outcome passes (the
            // kernel applies the program's Landlock rules), except isolated,
            // where the kernel would act on a socket of ours.
            if matches!(verdict, Verdict::Allow)
                && self.isolate.is_none()
                && self.handler.may_pass(&d.call)
            {
                return self.pass_decoded(tid, d, Verdict::Pass);
            }
            // The program's own Landlock rules cannot be applied to a call
            // the tracer makes (landlock.rs): refused, never widened.
            return self.done(tid, &d.call, &verdict, neg(Errno::EACCES));
        }
        // Isolated, a connect elsewhere on a connected socket of ours runs
        // with the socket's own peer (handover.rs: connected_elsewhere).
        let at_peer = (op == Op::Connect && !routed)
            .then(|| self.connected_elsewhere(&info, &sock, d.call.addr.as_ref()))
            .flatten();
        let crossing = match at_peer {
            Some(_) => Ok(None),
            None => self.leaves_namespace(
                op,
                &info,
                routed,
                d.call.flags & libc::MSG_FASTOPEN != 0,
                target.as_ref().or(d.call.addr.as_ref()),
                &sock,
            ),
        };
        let raw = at_peer.or(raw);
        let net = match crossing {
            Err(e) => return self.done(tid, &d.call, &verdict, neg(e)),
            Ok(net) => net,
        };
        if let Some(net) = net {
            // Isolated: carried out on a socket of ours, which becomes the
            // program's from now on (handover.rs).
            match self.hand_over(tid, &mut d.call, &sock, &info, net) {
                Ok(ours) => sock = ours,
                Err(e) => return self.done(tid, &d.call, &verdict, neg(e)),
            }
        }
        // A routed connect may carry a source address of the handler's
        // choosing (bound now, on the socket that connects).
        if op == Op::Connect && routed && raw.is_some() {
            if let Some(src) = self.handler.connect_source(&d.call) {
                let bound = emulate::bind_source(&sock, &info, src);
                self.handler.connect_source_bound(&d.call, bound);
            }
        }
        let mut result = match (op, raw.as_ref()) {
            (Op::Connect | Op::Bind, None) => {
                Emulated::Done(emulate::null_address(&sock, op == Op::Bind, d.args[2]))
            }
            (Op::Connect, Some(r)) => {
                let settle = routed && self.handler.may_fail_over(&d.call);
                let (result, began) = emulate::connect_began(&sock, &info, r, settle);
                d.call.new_connection = Some(began);
                result
            }
            (Op::Bind, Some(r)) => {
                let seen = target.as_ref().or(d.call.addr.as_ref());
                match emulate::bind(&sock, &info, seen, r, tid) {
                    Emulated::Done(0) if target.is_none() => {
                        let chosen = self.check_chosen_port(&d.call, &sock, &info);
                        if let Some(e) = chosen {
                            verdict = Verdict::Fail(e);
                        }
                        Emulated::Done(chosen.map_or(0, neg))
                    }
                    e => e,
                }
            }
            (_, Some(r)) if stream && d.call.flags & libc::MSG_FASTOPEN != 0 => {
                match emulate::connect(&sock, &info, r, false) {
                    Emulated::Done(e) if e < 0 => Emulated::Done(e),
                    _ => return self.stream_send(tid, d, verdict, &sock, &info),
                }
            }
            // TCP ignores a send's address (the destination was decided at
            // connect), but the kernel would read the program's memory and
            // descriptor again: the tracer sends its own copy.
            _ if stream => return self.stream_send(tid, d, verdict, &sock, &info),
            // A datagram without an address goes to the connected peer,
            // decided at connect: sent like a TCP send (it may wait in the kernel).
            (_, None) => return self.stream_send(tid, d, verdict, &sock, &info),
            (_, Some(r)) => {
                let ret = self.send_one(tid, &d, &sock, &info, r);
                let waits = !info.nonblocking && d.call.flags & libc::MSG_DONTWAIT == 0;
                if self.notify.is_some() && waits && ret == neg(Errno::EAGAIN) {
                    // User notification: nothing was sent; the call is
                    // decided and tried again when there is room.
                    return self.park_again(tid, d, verdict, &sock);
                }
                Emulated::Done(ret)
            }
        };
        // The address the kernel was last given (the one a parked connect
        // settles with).
        let mut tried = raw;
        // A rewritten connect refused at once leaves the socket unconnected:
        // the handler may name another address to try on it (failover).
        if op == Op::Connect && routed {
            for _ in 0..MAX_FAILOVER {
                let refused = matches!(result, Emulated::RefusedNow)
                    || result == Emulated::Done(neg(Errno::ECONNREFUSED));
                if !refused {
                    break;
                }
                let Some(next) = self.handler.connect_refused(&d.call) else {
                    break;
                };
                let next = emulate::fit_family(&info, next);
                let Some(r) = RawAddr::of(&next) else {
                    break;
                };
                let (next_result, began) = emulate::connect_began(&sock, &info, &r, true);
                result = next_result;
                d.call.new_connection = Some(began);
                tried = Some(r);
                verdict = Verdict::Rewrite(next);
            }
            if let (Emulated::RefusedNow, Some(r)) = (&result, tried) {
                result = Emulated::Done(emulate::refuse_later(&sock, &r));
            }
        }
        // The local address a connect got (only a started connection has one).
        let started = matches!(result, Emulated::Done(0) | Emulated::WaitInKernel { .. })
            || result == Emulated::Done(-(Errno::EINPROGRESS as i64));
        if op == Op::Connect && self.interests.addresses && started {
            d.call.local = emulate::local_addr(&sock);
        }
        // The address a bind got (its port, when it asked for the kernel's).
        if op == Op::Bind && self.interests.addresses && result == Emulated::Done(0) {
            d.call.local = emulate::local_addr(&sock);
        }
        match result {
            Emulated::Done(r) => {
                // Our copy goes before the answer: a program that closes
                // its socket at once then tears the connection down itself,
                // not on the tracer's thread. (After a send, one whose close
                // could linger is closed off this thread: closer.rs.)
                if op == Op::Connect {
                    drop(sock);
                } else {
                    crate::closer::release(sock);
                }
                self.done(tid, &d.call, &verdict, r)
            }
            Emulated::NotIp => self.pass_decoded(tid, d, verdict),
            // Not left by the failover above; kept total.
            Emulated::RefusedNow => {
                drop(sock);
                self.done(tid, &d.call, &verdict, neg(Errno::ECONNREFUSED))
            }
            Emulated::WaitInKernel { started } if self.notify.is_some() => {
                // User notification: the answer waits for the handshake,
                // with no thread held (unotify/park.rs).
                self.park_connect(tid, d.call, verdict, sock, started, tried);
            }
            Emulated::WaitInKernel { started } => {
                // Phase two of a blocking connect (emulate.rs): the program's
                // own connect() waits for the handshake, with addrlen 2.
                let fd = d.call.fd.unwrap_or(-1);
                let a = [fd as u32 as u64, d.args[1], 2, 0, 0, 0];
                self.rerun_as(tid, &d, verdict, started, nr::CONNECT, nr32::CONNECT, a, 0);
            }
        }
    }

    /// accept() returned `fd` (at its exit stop, the program still stopped):
    /// the new socket's details and, when wanted, its peer, and the peer
    /// address the handler shows the program instead.
    pub(crate) fn accept_exit(&mut self, tid: i32, call: &mut Call, fd: i32) {
        if !self.interests.socket_info {
            return;
        }
        let Ok((f, info)) = self.borrow(call.pid, tid, fd) else {
            return;
        };
        call.accepted = Some(info);
        if !self.interests.addresses {
            return;
        }
        // A connection reset while it waited in the queue has no peer for
        // getpeername; the address the kernel wrote at accept still names it.
        call.peer = emulate::peer_addr(&f).or_else(|| accepted_peer(tid, call.out_addr?));
        if let (Some(a), Some((ptr, lenp, cap))) = (self.handler.accepted(call), call.out_addr) {
            let _ = write_addr_cap(tid, ptr, lenp, cap, &a);
        }
    }

    /// recvfrom/recvmsg returned a datagram (at its exit stop, the program
    /// still stopped): its source address, and the one the handler shows
    /// the program instead.
    pub(crate) fn recv_exit(&mut self, tid: i32, call: &mut Call) {
        let Some((ptr, lenp, cap)) = call.out_addr else {
            return;
        };
        let Ok(len) = remote::read_u32(tid, lenp) else {
            return;
        };
        let mut buf = [0u8; MAX_ADDR_LEN];
        let n = (len.min(cap) as usize).min(MAX_ADDR_LEN);
        if n == 0 || remote::read_mem(tid, ptr, &mut buf[..n]).is_err() {
            return;
        }
        call.peer = SockAddr::decode(&buf[..n]);
        if len > cap || call.peer.is_none() {
            // Cut short by the program's buffer: what it got is a prefix.
            call.peer = None;
            call.peer_prefix = Some(crate::call::SockPrefix {
                len: n as u8,
                bytes: buf,
            });
        }
        if let Some(a) = self.handler.received(call) {
            let _ = write_addr_cap(tid, ptr, lenp, cap, &a);
        }
    }

    /// The message of a sendto/sendmsg, read once (the tracer's copy).
    fn read_send(&self, tid: i32, d: &Decoded) -> Result<msg::Message, Errno> {
        let compat = d.call.abi != Abi::Native;
        if d.call.op == Op::SendTo {
            msg::read_buffer(tid, d.args[1], d.args[2])
        } else {
            msg::read_message(tid, d.args[1], compat)
        }
    }

    /// sendto/sendmsg of one datagram to `addr`, emulated.
    fn send_one(
        &mut self,
        tid: i32,
        d: &Decoded,
        sock: &OwnedFd,
        info: &SocketInfo,
        addr: &RawAddr,
    ) -> i64 {
        match self.read_send(tid, d) {
            Ok(m) if m.truncated => neg(Errno::EMSGSIZE),
            Ok(m) => match self.pktinfo_refused(d, &m, addr) {
                Some(e) => neg(e),
                None => self.send_checked(tid, d, sock, info, addr, &m),
            },
            Err(e) => neg(e),
        }
    }

    /// send_one once the destination is settled: the program's rights, then the send.
    fn send_checked(
        &self,
        tid: i32,
        d: &Decoded,
        sock: &OwnedFd,
        info: &SocketInfo,
        addr: &RawAddr,
        m: &msg::Message,
    ) -> i64 {
        match privs::check_control(tid, &m.control) {
            Ok(()) => {
                let flags = d.call.flags | self.dontwait();
                emulate::send_datagram(sock, info, Some(addr), &m.data, &m.control, flags)
            }
            Err(e) => neg(e),
        }
    }

    /// A datagram to 0.0.0.0 or ::ffff:0.0.0.0 goes to its source address,
    /// which a PKTINFO control message may set: judge that destination too.
    fn pktinfo_refused(&mut self, d: &Decoded, m: &msg::Message, addr: &RawAddr) -> Option<Errno> {
        let src = msg::pktinfo_source(&m.control)?;
        let face = SockAddr::decode(addr.as_bytes())?;
        let to = unspecified_destination(&face, Some(src))?;
        if d.call.addr.as_ref() == Some(&to) {
            return None;
        }
        let mut again = d.call.clone();
        again.addr = Some(to);
        match self.handler.decide(&again) {
            Verdict::Fail(e) => Some(e),
            _ => None,
        }
    }

    /// A send on a TCP socket (or the data of a Fast Open connect, after the
    /// tracer's connect), or a datagram to the connected peer: the tracer
    /// sends its copy without waiting. Only
    /// when a blocking socket's buffer is full does the program's own call
    /// wait in the kernel, rewritten to take its arguments from registers
    /// alone: sendto(fd, first buffer, its length, flags, NULL, 0). A short
    /// count is what a stream socket may return.
    fn stream_send(
        &mut self,
        tid: i32,
        d: Decoded,
        verdict: Verdict,
        sock: &OwnedFd,
        info: &SocketInfo,
    ) {
        let flags = d.call.flags & !libc::MSG_FASTOPEN;
        let m = match self.read_send(tid, &d) {
            Ok(m) => m,
            Err(e) => return self.done(tid, &d.call, &verdict, neg(e)),
        };
        if !self.still_waiting() {
            return;
        }
        if self.notify.is_some() {
            let key = Some((d.args[1], m.total));
            if let Some(g) = self.interrupted(tid, info.inode, key, crate::unotify::park::GONE_SEND)
            {
                // The same send again after a signal interrupted it:
                // natively it returned the count sent, or EINTR when
                // nothing was and the socket has a timeout (no restart).
                let timed = crate::unotify::park::send_timeout(sock);
                if g.sent > 0 || timed {
                    let r = if g.sent > 0 {
                        g.sent as i64
                    } else {
                        neg(Errno::EINTR)
                    };
                    return self.done(tid, &d.call, &verdict, r);
                }
            }
        }
        if let Err(e) = privs::check_control(tid, &m.control) {
            return self.done(tid, &d.call, &verdict, neg(e));
        }
        if m.truncated && info.sotype != libc::SOCK_STREAM {
            return self.done(tid, &d.call, &verdict, neg(Errno::EMSGSIZE));
        }
        let waits = !info.nonblocking && flags & libc::MSG_DONTWAIT == 0;
        let stream = info.sotype == libc::SOCK_STREAM;
        let fd = d.call.fd.unwrap_or(-1) as u32 as u64;
        let (iov, count) = m.iov_array;
        // A blocking send of several buffers on a stream socket runs in the
        // kernel as writev (sendmsg without address or control) from
        // registers: it blocks until all is sent, as untraced. MSG_NOSIGNAL
        // is kept by dropping the SIGPIPE writev raises.
        let nosignal = flags & libc::MSG_NOSIGNAL != 0;
        // With SIGPIPE blocked in the thread, writev's SIGPIPE would stay
        // pending (and be seen): then the tracer sends instead.
        // (User notification cannot run a call from registers: the
        // supervisor sends it all, below.)
        let writev_ok = self.notify.is_none()
            && flags & !libc::MSG_NOSIGNAL == 0
            && m.control.is_empty()
            && !(nosignal && sigpipe_blocked(tid));
        if waits && stream && m.iovs.len() > 1 && writev_ok && count > 0 {
            let a = [fd, iov, count, 0, 0, 0];
            return self.rerun_writev(tid, &d, verdict, a, flags & libc::MSG_NOSIGNAL != 0);
        }
        let r = emulate::send_now(sock, &m.data, &m.control, flags);
        if self.notify.is_some() && !stream && waits && r == neg(Errno::EAGAIN) {
            return self.park_again(tid, d, verdict, sock);
        }
        let sent = r.max(0) as u64;
        if !waits || (r < 0 && r != neg(Errno::EAGAIN)) || (r >= 0 && sent == m.total) {
            return self.done(tid, &d.call, &verdict, r);
        }
        // A blocking send of one buffer that did not fit whole: the rest
        // waits in the kernel, as untraced, from registers alone.
        let flags64 = flags as u32 as u64;
        // Control data goes with the first byte sent: only a rest without it
        // can be left to a plain sendto.
        let control_left = sent == 0 && !m.control.is_empty();
        if self.notify.is_some() && stream {
            // User notification: the rest is sent as room comes, with no
            // thread held (unotify/park.rs).
            let key = (d.args[1], m.total);
            let control = if sent == 0 { m.control } else { Vec::new() };
            let send = crate::unotify::park::Send {
                iovs: m.iovs,
                total: m.total,
                sent,
                control,
                flags,
                key,
                mmsg: None,
            };
            return self.park_send(tid, d.call, verdict, sock, send);
        }
        if m.iovs.len() == 1 && !control_left && self.notify.is_none() {
            let (base, len) = m.iovs[0];
            let a = [fd, base + sent, len - sent, flags64, 0, 0];
            return self.rerun_as(tid, &d, verdict, false, nr::SENDTO, nr32::SENDTO, a, sent);
        }
        // Several buffers with flags or control data: the tracer sends the
        // rest itself, waiting for room (stream.rs; docs/RULES.md, limits).
        let control = if sent == 0 { &m.control[..] } else { &[] };
        let more = if stream {
            let rest = rest_of(&m.iovs, sent);
            stream::send_all(tid, sock, &rest, control, flags, waits, false)
        } else {
            let rest = &m.data[(sent as usize).min(m.data.len())..];
            emulate::send_datagram(sock, info, None, rest, control, flags | self.dontwait())
        };
        let r = match (more, sent) {
            (m, 0) => m,
            (m, s) if m < 0 => s as i64,
            (m, s) => s as i64 + m,
        };
        self.done(tid, &d.call, &verdict, r)
    }

    /// rerun_as writev, remembering MSG_NOSIGNAL.
    fn rerun_writev(
        &mut self,
        tid: i32,
        d: &Decoded,
        verdict: Verdict,
        a: [u64; 6],
        nosignal: bool,
    ) {
        self.rerun_as(tid, d, verdict, false, nr::WRITEV, nr32::WRITEV, a, 0);
        if let Some(p) = self.tasks.get_mut(&tid).and_then(|t| t.pending.as_mut()) {
            p.nosignal = nosignal;
        }
    }

    /// Let the program's own call run as call `native` (i386: `nr32`) with
    /// arguments `args`, all in registers: the kernel reads no argument from
    /// the program's memory that the tracer did not choose. The original
    /// registers come back at the exit stop; the result stays.
    #[allow(clippy::too_many_arguments)]
    fn rerun_as(
        &mut self,
        tid: i32,
        d: &Decoded,
        verdict: Verdict,
        first_connect: bool,
        native: u64,
        nr32: u64,
        args: [u64; 6],
        sent: u64,
    ) {
        if self.notify.is_some() {
            // Never reached under user notification (no call runs from
            // registers there); fail closed should that change.
            log::warn!("internal: a call to rerun under user notification");
            let v = Verdict::Fail(Errno::ENOSYS);
            return self.done(tid, &d.call, &v, neg(Errno::ENOSYS));
        }
        let Ok(saved) = ptrace::getregs(pid(tid)) else {
            return resume(tid, None);
        };
        let mut regs: Regs = saved;
        let abi = if d.call.abi == Abi::Native {
            regs.orig_rax = native;
            Abi::Native
        } else {
            regs.orig_rax = nr32;
            Abi::Compat32
        };
        for (i, v) in args.iter().enumerate() {
            *arch::arg_mut(&mut regs, abi, i) = *v;
        }
        if let Err(e) = ptrace::setregs(pid(tid), regs) {
            log::warn!("PTRACE_SETREGS {tid}: {e}");
        }
        let mut call = d.call.clone();
        if call.op == Op::Connect {
            call.new_connection = Some(first_connect);
        }
        self.tasks.entry(tid).or_default().pending = Some(Pending {
            call,
            verdict,
            restore: Some(saved),
            first_connect,
            sent,
            nosignal: false,
        });
        resume_to_exit(tid);
    }

    /// Let the kernel run the program's own call. An i386 socketcall would
    /// read its argument array again: it runs as the direct i386 call with
    /// the arguments the tracer read.
    fn pass_decoded(&mut self, tid: i32, d: Decoded, verdict: Verdict) {
        if self.notify.is_some() && self.recv_wanted(&d) {
            return self.recv_notify(tid, d, verdict);
        }
        if d.source == ArgSource::SocketcallArray && self.notify.is_none() {
            let direct = direct32(d.call.op);
            return self.rerun_as(tid, &d, verdict, false, direct, direct, d.args, 0);
        }
        if d.source == ArgSource::SocketcallArray
            && d.call.op.takes_address()
            && self.handler.could_refuse(d.call.op)
        {
            // User notification, an i386 socketcall the tracer cannot carry
            // out (a non-IP socket): let run, the kernel would read its
            // argument array again, where a sibling can put another socket
            // and address. Refused (docs/RULES.md).
            static TOLD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            if !TOLD.swap(true, std::sync::atomic::Ordering::Relaxed) {
                log::warn!(
                    "appswitch: pid {}: an i386 socketcall {} on a non-IP socket is refused (EACCES) \
                     under the user-notification backend, which cannot pin its arguments; run \
                     i386 programs that need it with --backend ptrace",
                    d.call.pid,
                    d.call.op.name()
                );
            }
            let v = Verdict::Fail(Errno::EACCES);
            return self.done(tid, &d.call, &v, neg(Errno::EACCES));
        }
        self.pass(tid, d.call, verdict)
    }

    /// Let the kernel run the program's own call.
    pub(crate) fn pass(&mut self, tid: i32, call: Call, verdict: Verdict) {
        if self.notify.is_some() {
            return self.pass_notify(tid, call, verdict);
        }
        let recv = matches!(call.op, Op::RecvFrom | Op::RecvMsg);
        let wanted = self.interests.outcomes
            || (call.op == Op::Accept
                && self.interests.accept_outcomes
                && self.handler.wants_outcome(&call))
            || (recv && call.out_addr.is_some() && self.handler.wants_outcome(&call))
            || (call.op == Op::Listen && self.interests.listen_outcomes);
        if wanted {
            self.tasks.entry(tid).or_default().pending = Some(Pending {
                call,
                verdict,
                restore: None,
                first_connect: false,
                sent: 0,
                nosignal: false,
            });
            resume_to_exit(tid);
        } else {
            // Resume first: the handler's bookkeeping overlaps the program.
            resume(tid, None);
            self.handler.finished(&call, &verdict, Outcome::Unknown);
        }
    }

    /// sendmmsg: each message is decided on its own and, on datagram sockets,
    /// sent by emulation; the call stops at the first refused or failed
    /// message and returns how many were sent (or that message's errno when
    /// it is the first), as the kernel does.
    fn sendmmsg(&mut self, tid: i32, mut d: Decoded, borrowed: Option<(OwnedFd, SocketInfo)>) {
        let (mut sock, mut info) = match borrowed {
            Some(b) => b,
            None => match self.borrow(d.call.pid, tid, d.call.fd.unwrap_or(-1)) {
                Ok(b) => b,
                Err(e) => {
                    let v = Verdict::Fail(e);
                    return self.done(tid, &d.call, &v, neg(e));
                }
            },
        };
        let stream = info.sotype == libc::SOCK_STREAM;
        if !is_ip(&info) || d.args[2] == 0 {
            let verdict = self.handler.decide(&d.call);
            return match verdict {
                Verdict::Fail(e) => self.done(tid, &d.call, &verdict, neg(e)),
                // No message: sent here (a socketcall let run would be read
                // again, its count among what a sibling can change).
                v if is_ip(&info) && self.notify.is_some() => self.done(tid, &d.call, &v, 0),
                v => self.pass_decoded(tid, d, v),
            };
        }
        if stream && d.call.flags & libc::MSG_FASTOPEN != 0 {
            // A TCP Fast Open connect through sendmmsg: refused whatever
            // the rules say, since its address is not carried out by the
            // tracer (use sendto or connect).
            let verdict = Verdict::Fail(Errno::EOPNOTSUPP);
            log::warn!("sendmmsg with MSG_FASTOPEN is refused (use sendto or connect)");
            return self.done(tid, &d.call, &verdict, neg(Errno::EOPNOTSUPP));
        }
        let compat = d.call.abi != Abi::Native;
        let (stride, len_off) = msg::mmsghdr_layout(compat);
        let vlen = d.args[2].min(1024);
        let flags = d.call.flags;
        let waits = !info.nonblocking && flags & libc::MSG_DONTWAIT == 0;
        // User notification: a blocking sendmmsg on TCP that does not fit
        // goes on as room comes (unotify/sends.rs); its restart after a
        // signal gets the count it had reached.
        let parks = stream && waits && self.notify.is_some();
        if d.call.socket.is_none() {
            d.call.socket = Some(info);
        }
        let key = (d.args[1], vlen);
        if stream && self.notify.is_some() {
            let gone = crate::unotify::park::GONE_MMSG;
            if let Some(g) = self.interrupted(tid, info.inode, Some(key), gone) {
                let timed = crate::unotify::park::send_timeout(&sock);
                if g.sent > 0 || timed {
                    let base = d.args[1];
                    crate::unotify::sends::Mmsg::rewrite_lens(tid, base, compat, &g.lens);
                    let r = if g.sent > 0 {
                        g.sent as i64
                    } else {
                        neg(Errno::EINTR)
                    };
                    let v = Verdict::Allow;
                    return self.done(tid, &d.call, &v, r);
                }
            }
        }
        let mut sent = 0i64;
        let mut error = None;
        // The msg_len of each message sent, kept for a parked call.
        let mut lens = Vec::new();
        // One Call for every message: only its index and address change.
        let mut call = d.call.clone();
        for i in 0..vlen {
            let hdr = d.args[1] + i * stride;
            let mut m = match msg::read_message(tid, hdr, compat) {
                Ok(m) => m,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            };
            // User notification: what was read came from the thread still
            // waiting in this call. Gone after some messages went: their
            // count is the answer a restart gets (the answer is lost).
            if !self.still_waiting() {
                if sent == 0 {
                    return;
                }
                break;
            }
            call.index = i as usize;
            call.addr = m.name.take();
            if let Some(raw) = &m.raw {
                if let Some(view) = kernel_view(raw, info.domain, info.sotype, AddrUse::Send) {
                    call.addr = view;
                }
            }
            if let Some(to) = call
                .addr
                .as_ref()
                .and_then(|a| destination_of_unspecified(a, &sock))
            {
                call.addr = Some(to);
            }
            // A PKTINFO source sets where 0.0.0.0 goes.
            let face = m.raw.and_then(|r| SockAddr::decode(r.as_bytes()));
            let pktinfo = msg::pktinfo_source(&m.control);
            if let Some(to) = face
                .zip(pktinfo)
                .and_then(|(f, s)| unspecified_destination(&f, Some(s)))
            {
                call.addr = Some(to);
            }
            // TCP ignores the addresses: nothing to decide, the data is sent.
            let verdict = if stream {
                Verdict::Allow
            } else {
                self.handler.decide(&call)
            };
            let dest = match &verdict {
                Verdict::Fail(e) => {
                    self.handler.finished(&call, &verdict, Outcome::Err(*e));
                    error = Some(*e);
                    break;
                }
                Verdict::Rewrite(a) => RawAddr::of(&emulate::fit_family(&info, a.clone())),
                _ if stream => None,
                _ => m.raw,
            };
            if !stream && self.isolate.is_some() {
                // Isolated: this datagram may leave the program's namespace,
                // or may not be sent from where its socket is (handover.rs).
                let routed = matches!(verdict, Verdict::Rewrite(_));
                let to = match &verdict {
                    Verdict::Rewrite(a) => Some(a),
                    _ => call.addr.as_ref(),
                };
                let crossing = self.leaves_namespace(Op::SendMmsg, &info, routed, false, to, &sock);
                let handed = match crossing {
                    Ok(Some(net)) => self
                        .hand_over(tid, &mut d.call, &sock, &info, net)
                        .map(Some),
                    Ok(None) => Ok(None),
                    Err(e) => Err(e),
                };
                match handed {
                    Ok(Some(ours)) => {
                        if let Some(s) = d.call.socket {
                            info.inode = s.inode;
                            call.socket = Some(s);
                        }
                        sock = ours;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        self.handler.finished(&call, &verdict, Outcome::Err(e));
                        error = Some(e);
                        break;
                    }
                }
            }
            let r = if let Err(e) = privs::check_control(tid, &m.control) {
                neg(e)
            } else if stream {
                let blocking = waits && self.notify.is_none();
                stream::send_all(tid, &sock, &m.iovs, &m.control, flags, blocking, sent > 0)
            } else if m.truncated {
                neg(Errno::EMSGSIZE)
            } else {
                let flags = flags | self.dontwait();
                emulate::send_datagram(&sock, &info, dest.as_ref(), &m.data, &m.control, flags)
            };
            let short = r == neg(Errno::EAGAIN) || (r >= 0 && (r as u64) < m.total);
            if parks && short {
                let part = r.max(0) as u64;
                let send = crate::unotify::park::Send {
                    iovs: m.iovs,
                    total: m.total,
                    sent: part,
                    control: if part == 0 { m.control } else { Vec::new() },
                    flags,
                    key,
                    mmsg: Some(crate::unotify::sends::Mmsg {
                        base: d.args[1],
                        vlen,
                        index: i,
                        compat,
                        lens: std::mem::take(&mut lens),
                    }),
                };
                return self.park_send(tid, d.call, Verdict::Allow, &sock, send);
            }
            self.handler.finished(&call, &verdict, Outcome::from_raw(r));
            if r < 0 {
                error = Some(Errno::from_raw(-r as i32));
                break;
            }
            let _ = remote::write_mem(tid, hdr + len_off, &(r as u32).to_ne_bytes());
            if parks {
                lens.push(r as u32);
            }
            sent += 1;
            if (r as u64) < m.total {
                // A message cut short ends the call, as in the kernel.
                break;
            }
        }
        if self.notify.is_some() && waits && sent == 0 && error == Some(Errno::EAGAIN) {
            // Nothing went: tried again when there is room (park.rs).
            return self.park_again(tid, d, Verdict::Allow, &sock);
        }
        let ret = match (sent, error) {
            (0, Some(e)) => neg(e),
            (n, _) => n,
        };
        if self.notify.is_some() && !sigpipe_kills(&call, tid, ret) {
            self.skip_call(tid, ret);
            raise_sigpipe(&call, tid, ret);
            if let (Some(s), Some(st)) = (call.socket, self.notify.as_mut()) {
                if st.lost {
                    st.parked.note_lost(tid, &d.call, s.inode, ret);
                }
            }
        } else {
            raise_sigpipe(&call, tid, ret);
            self.skip_call(tid, ret);
        }
    }
}

/// The peer address accept() wrote to the program's buffer `(ptr, lenp,
/// cap)` (the kernel's own write, read back at the exit stop).
fn accepted_peer(tid: i32, (ptr, lenp, cap): (u64, u64, u32)) -> Option<SockAddr> {
    let len = remote::read_u32(tid, lenp).ok()?.min(cap) as usize;
    let mut buf = [0u8; crate::sockaddr::MAX_ADDR_LEN];
    let buf = buf.get_mut(..len)?;
    remote::read_mem(tid, ptr, buf).ok()?;
    SockAddr::decode(buf)
}

/// Where a connect or send to 0.0.0.0 / :: on `sock` goes (the socket's
/// bound address, else loopback); None for any other address. The bound
/// address is read only for such a destination.
fn destination_of_unspecified(addr: &SockAddr, sock: &OwnedFd) -> Option<SockAddr> {
    let ip = addr.ip()?.ip();
    let unspecified = match ip {
        std::net::IpAddr::V4(v4) => v4.is_unspecified(),
        std::net::IpAddr::V6(v6) => {
            v6.is_unspecified() || v6.to_ipv4_mapped().is_some_and(|v| v.is_unspecified())
        }
    };
    if !unspecified {
        return None;
    }
    let bound = emulate::local_addr(sock)
        .and_then(|b| b.ip())
        .map(|b| b.ip());
    unspecified_destination(addr, bound)
}

/// The buffers after the first `sent` bytes.
pub(crate) fn rest_of(iovs: &[(u64, u64)], sent: u64) -> Vec<(u64, u64)> {
    let mut skip = sent;
    let mut out = Vec::with_capacity(iovs.len());
    for &(base, len) in iovs {
        if skip >= len {
            skip -= len;
            continue;
        }
        out.push((base + skip, len - skip));
        skip = 0;
    }
    out
}

/// A send the tracer carried out failed with EPIPE: the kernel would have
/// sent the calling thread SIGPIPE unless it asked MSG_NOSIGNAL.
fn raise_sigpipe(call: &Call, tid: i32, ret: i64) {
    let send = matches!(call.op, Op::SendTo | Op::SendMsg | Op::SendMmsg);
    if send && ret == neg(Errno::EPIPE) && call.flags & libc::MSG_NOSIGNAL == 0 {
        // SAFETY: plain syscall; the thread is our stopped tracee.
        unsafe { libc::syscall(libc::SYS_tgkill, call.pid, tid, libc::SIGPIPE) };
    }
}

/// Whether the SIGPIPE a failed send raises would end the process
/// (default action, not blocked in the thread): /proc/TID/status, read
/// only on that failure.
fn sigpipe_kills(call: &Call, tid: i32, ret: i64) -> bool {
    let send = matches!(call.op, Op::SendTo | Op::SendMsg | Op::SendMmsg);
    if !send || ret != neg(Errno::EPIPE) || call.flags & libc::MSG_NOSIGNAL != 0 {
        return false;
    }
    let Some(m) = remote::sig_masks(tid) else {
        return false;
    };
    let bit = 1u64 << (libc::SIGPIPE - 1);
    (m.blocked | m.ignored | m.caught) & bit == 0
}

/// Whether SIGPIPE is blocked in thread `tid` (PTRACE_GETSIGMASK).
fn sigpipe_blocked(tid: i32) -> bool {
    const PTRACE_GETSIGMASK: libc::c_uint = 0x420a;
    let mut mask: u64 = 0;
    // SAFETY: the kernel writes 8 bytes into mask.
    let r = unsafe { libc::ptrace(PTRACE_GETSIGMASK, tid, 8usize, &mut mask as *mut u64) };
    r != 0 || mask & (1 << (libc::SIGPIPE - 1)) != 0
}

/// The direct i386 call for a socketcall sub-call.
fn direct32(op: Op) -> u64 {
    match op {
        Op::Socket => nr32::SOCKET,
        Op::Connect => nr32::CONNECT,
        Op::Bind => nr32::BIND,
        Op::Listen => nr32::LISTEN,
        // accept(a, b, c) is accept4(a, b, c, 0); decode set the flags to 0.
        Op::Accept => nr32::ACCEPT4,
        Op::SendTo => nr32::SENDTO,
        Op::SendMsg => nr32::SENDMSG,
        Op::SendMmsg => nr32::SENDMMSG,
        Op::GetSockName => nr32::GETSOCKNAME,
        Op::GetPeerName => nr32::GETPEERNAME,
        Op::RecvFrom => nr32::RECVFROM,
        Op::RecvMsg => nr32::RECVMSG,
    }
}

/// Write `addr` to a getpeername/getsockname output buffer: copy at most the
/// caller's *addrlen bytes and store the full length, as the kernel does.
fn answer(tid: i32, d: &Decoded, addr: &SockAddr) -> i64 {
    write_addr(tid, d.args[1], d.args[2], addr)
}

/// Write `addr` to an (address, length) output pair of the program's, with
/// the kernel's truncation rules. 0 on success, else -errno.
fn write_addr(tid: i32, ptr: u64, lenp: u64, addr: &SockAddr) -> i64 {
    let Ok(cap) = remote::read_u32(tid, lenp) else {
        return neg(Errno::EFAULT);
    };
    write_addr_cap(tid, ptr, lenp, cap, addr)
}

/// Like [`write_addr`], with the buffer's size `cap` known (as the program
/// passed it): copy at most `cap` bytes, store the full length.
pub(crate) fn write_addr_cap(tid: i32, ptr: u64, lenp: u64, cap: u32, addr: &SockAddr) -> i64 {
    if (cap as i32) < 0 {
        return neg(Errno::EINVAL);
    }
    let mut buf = [0u8; MAX_ADDR_LEN];
    let Some(n) = addr.encode(&mut buf) else {
        return neg(Errno::EINVAL);
    };
    let copy = n.min(cap as usize);
    if remote::write_mem(tid, ptr, &buf[..copy]).is_err()
        || remote::write_mem(tid, lenp, &(n as u32).to_ne_bytes()).is_err()
    {
        return neg(Errno::EFAULT);
    }
    0
}
