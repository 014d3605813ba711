//! Calls whose answer waits (user-notification backend), with no thread
//! held: a blocking connect whose handshake is under way, a blocking
//! accept with nothing to accept yet. The borrowed socket is watched in
//! epoll (one shot); the answer goes when it is ready, at the socket's
//! timeout (SO_SNDTIMEO for connect, SO_RCVTIMEO for accept), or never
//! when the program's thread was interrupted.
//!
//! Signals: a signal ends the program's wait for our answer (the kernel
//! drops the notification and, with SA_RESTART and no timeout set, restarts
//! the call, which comes back as a new notification). A sweep every 50 ms
//! finds waits whose notification is gone and keeps a note {inode, tid};
//! a later connect on that socket from that thread is the restart. A
//! connect with SO_SNDTIMEO set is never restarted natively (EINTR), so
//! its restart is answered EINTR.
//!
//! A reply lost to a signal after the side effect (an accepted connection)
//! is kept and given to the same thread's next accept on that socket.

use super::TAG_PARK;
use crate::call::{Call, NetHandler, Op, Outcome, Verdict};
use crate::emulate;
use crate::sockaddr::RawAddr;
use crate::sockaddr::SockAddr;
use crate::tracer::Tracer;
use nix::errno::Errno;
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// How often parked waits are checked for interrupted threads.
const SWEEP: Duration = Duration::from_millis(50);
/// How soon a parked call whose readiness says nothing new is looked at
/// again (Wait::retry_at).
const RETRY: Duration = Duration::from_millis(5);
/// Notes of interrupted connects, and kept accepted sockets, at most.
const NOTES: usize = 256;

pub(crate) enum Kind {
    /// `first`: the program's call started the handshake (a timeout then
    /// reports EINPROGRESS, else EALREADY).
    /// `disconnected`: a sibling's connect(AF_UNSPEC) on the socket came
    /// meanwhile; natively the wait then ends with EPIPE, the socket's
    /// error left for SO_ERROR.
    /// `to`: the address the socket is connecting to (the one the
    /// supervisor gave the kernel), for the connect that settles it.
    Connect {
        first: bool,
        disconnected: bool,
        to: Option<RawAddr>,
    },
    Accept,
    Send(Send),
    /// A receive whose source address is shown (recv.rs).
    Recv(Box<crate::decode::Decoded>),
    /// A datagram send that found no room, nothing sent: decided and
    /// carried out again when the socket is writable.
    Again(Box<crate::decode::Decoded>),
}

/// A blocking send on a stream socket that did not fit: the rest goes as
/// room comes (the program's buffers are read again: data, never an
/// address). Partial progress is never undone: a thread interrupted after
/// some of it was sent gets that count when its call restarts (or when it
/// sends the same buffer again), as natively an interrupted send returns
/// the count sent.
pub(crate) struct Send {
    pub(crate) iovs: Vec<(u64, u64)>,
    pub(crate) total: u64,
    pub(crate) sent: u64,
    /// Goes with the first byte (empty once something was sent).
    pub(crate) control: Vec<u8>,
    pub(crate) flags: i32,
    /// (buffer argument, total length): what a restart looks like; for a
    /// sendmmsg (message array, count).
    pub(crate) key: (u64, u64),
    /// A sendmmsg: which message this is (sends.rs).
    pub(crate) mmsg: Option<super::sends::Mmsg>,
}

/// A parked wait's copy of the socket: the program may have closed its own
/// meanwhile, making ours the last, whose close can linger (closer.rs).
pub(crate) struct Sock(Option<OwnedFd>);

impl std::ops::Deref for Sock {
    type Target = OwnedFd;
    fn deref(&self) -> &OwnedFd {
        self.0
            .as_ref()
            .expect("a parked socket is present until dropped")
    }
}

impl From<OwnedFd> for Sock {
    fn from(fd: OwnedFd) -> Sock {
        Sock(Some(fd))
    }
}

impl Drop for Sock {
    fn drop(&mut self) {
        if let Some(fd) = self.0.take() {
            crate::closer::release(fd);
        }
    }
}

/// Kinds of interrupted waits ([`Gone`]).
pub(crate) const GONE_CONNECT: u8 = 0;
pub(crate) const GONE_SEND: u8 = 1;
pub(crate) const GONE_OTHER: u8 = 2;
pub(crate) const GONE_MMSG: u8 = 3;

/// A wait whose thread was interrupted by a signal (its notification
/// gone). Natively the call then returns EINTR, or the count sent for a
/// send with progress; with no timeout set on the socket the kernel
/// restarts it (SA_RESTART), and here the restart arrives as a new call.
pub(crate) struct Gone {
    pub(crate) inode: u64,
    pub(crate) tid: i32,
    /// A connect that started the handshake.
    pub(crate) first: bool,
    /// A send: what had gone out (a sendmmsg: the messages it counts).
    pub(crate) sent: u64,
    pub(crate) key: Option<(u64, u64)>,
    /// Which kind of call was interrupted: 0 connect, 1 send, 2 other, 3
    /// sendmmsg.
    pub(crate) kind: u8,
    /// A sendmmsg: the msg_len of each message it counts (written again
    /// when the count is given, in case the program changed them).
    pub(crate) lens: Vec<u32>,
}

pub(crate) struct Wait {
    id: u64,
    pub(super) tid: i32,
    pub(super) sock: Sock,
    pub(super) inode: u64,
    pub(super) call: Call,
    pub(super) verdict: Verdict,
    pub(super) deadline: Option<Instant>,
    pub(super) kind: Kind,
    /// A call whose socket's readiness says nothing new (a send's error
    /// queue alone: TX timestamps, zerocopy notes; a connect still under
    /// way with an error or hang-up reported: see finish_wait), which
    /// epoll would report at once again and again: not watched, tried
    /// again at this time rather than spun on.
    retry_at: Option<Instant>,
}

#[derive(Default)]
pub(crate) struct Parked {
    slots: Vec<Option<Wait>>,
    count: usize,
    /// Interrupted connects: (inode, tid, first).
    gone: VecDeque<Gone>,
    /// Datagrams taken from a socket that no caller got (a signal): the
    /// next receive on that socket gets them.
    datagrams: VecDeque<(u64, super::recv::Datagram)>,
    /// Calls carried out whose answer a signal took: (tid, op, inode,
    /// arguments, answer).
    lost: VecDeque<(i32, Op, u64, [u64; 3], i64)>,
    /// Accepted sockets whose answer was lost: (listener inode, socket,
    /// the peer address accept gave).
    replay: VecDeque<(u64, OwnedFd, Option<SockAddr>)>,
    last_sweep: Option<Instant>,
}

impl Parked {
    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// How long epoll may wait: a second when nothing is parked (for
    /// reaping), else until the next sweep or deadline.
    pub(crate) fn timeout_ms(&self) -> i32 {
        if self.count == 0 {
            return 1000;
        }
        let now = Instant::now();
        let mut t = SWEEP;
        for w in self.slots.iter().flatten() {
            for d in [w.deadline, w.retry_at].into_iter().flatten() {
                t = t.min(d.saturating_duration_since(now));
            }
        }
        t.as_millis() as i32 + 1
    }

    fn insert(&mut self, w: Wait) -> usize {
        self.count += 1;
        if let Some(i) = self.slots.iter().position(Option::is_none) {
            self.slots[i] = Some(w);
            return i;
        }
        self.slots.push(Some(w));
        self.slots.len() - 1
    }

    fn take(&mut self, slot: usize) -> Option<Wait> {
        let w = self.slots.get_mut(slot)?.take()?;
        self.count -= 1;
        Some(w)
    }

    /// A note of an interrupted connect of `tid` on `inode`, taken.
    /// The note of an interrupted wait of `tid` on `inode` (of a send:
    /// of the same buffer, `key`), taken.
    fn take_gone(
        &mut self,
        inode: u64,
        tid: i32,
        key: Option<(u64, u64)>,
        kind: u8,
    ) -> Option<Gone> {
        if self.gone.is_empty() {
            return None;
        }
        let i = self.gone.iter().position(|g| {
            let keyed = kind == GONE_SEND || kind == GONE_MMSG;
            g.inode == inode && g.tid == tid && g.kind == kind && (!keyed || g.key == key)
        })?;
        self.gone.remove(i)
    }

    fn note_gone(&mut self, w: &Wait) {
        let (first, sent, key, kind, lens) = match &w.kind {
            Kind::Connect { first, .. } => (*first, 0, None, GONE_CONNECT, Vec::new()),
            Kind::Send(s) => match &s.mmsg {
                Some(m) => {
                    let (n, lens) = m.interrupted(w.tid, s.sent);
                    (false, n, Some(s.key), GONE_MMSG, lens)
                }
                None => (false, s.sent, Some(s.key), GONE_SEND, Vec::new()),
            },
            _ => (false, 0, None, GONE_OTHER, Vec::new()),
        };
        self.push_gone(Gone {
            inode: w.inode,
            tid: w.tid,
            first,
            sent,
            key,
            kind,
            lens,
        });
    }

    /// Keep a note of an interrupted wait (the oldest goes past NOTES).
    pub(crate) fn push_gone(&mut self, g: Gone) {
        if self.gone.len() >= NOTES {
            self.gone.pop_front();
        }
        self.gone.push_back(g);
    }

    /// A call with side effects (connect, bind, listen, a send) was carried
    /// out and its answer lost to a signal: the same call again from that
    /// thread (its restart, or a retry after EINTR) gets that answer.
    pub(crate) fn note_lost(&mut self, tid: i32, call: &Call, inode: u64, ret: i64) {
        // A datagram is not replayed: a program told EINTR may move on to
        // another one from the same buffer, which a replay would swallow;
        // a restart sends it twice instead (a datagram may arrive twice).
        // Bytes of a stream must never go twice.
        let stream = call.socket.is_some_and(|s| s.sotype == libc::SOCK_STREAM);
        let effects = match call.op {
            Op::Connect | Op::Bind | Op::Listen => true,
            Op::SendTo | Op::SendMsg | Op::SendMmsg => stream,
            _ => false,
        };
        if !effects {
            return;
        }
        if self.lost.len() >= NOTES {
            self.lost.pop_front();
        }
        log::debug!(
            "lost answer {ret} of {} by {tid} on {inode}",
            call.op.name()
        );
        self.lost
            .push_back((tid, call.op, inode, call_key(call), ret));
    }

    /// A connect(AF_UNSPEC) on `inode`: connects parked there end with
    /// EPIPE (see [`Kind::Connect`]).
    pub(crate) fn note_disconnect(&mut self, inode: u64) {
        if self.count == 0 {
            return;
        }
        for w in self.slots.iter_mut().flatten() {
            if let (true, Kind::Connect { disconnected, .. }) = (w.inode == inode, &mut w.kind) {
                *disconnected = true;
            }
        }
    }

    pub(crate) fn take_lost(&mut self, tid: i32, call: &Call, inode: u64) -> Option<i64> {
        if self.lost.is_empty() {
            return None;
        }
        let key = call_key(call);
        let i = self
            .lost
            .iter()
            .position(|l| l.0 == tid && l.1 == call.op && l.2 == inode && l.3 == key)?;
        self.lost.remove(i).map(|l| l.4)
    }

    pub(crate) fn keep_datagram(&mut self, inode: u64, g: super::recv::Datagram) {
        if self.datagrams.len() >= NOTES {
            self.datagrams.pop_front();
        }
        self.datagrams.push_back((inode, g));
    }

    /// A copy of the datagram kept for `inode`, left in place (MSG_PEEK).
    pub(crate) fn peek_datagram(&self, inode: u64) -> Option<super::recv::Datagram> {
        self.datagrams
            .iter()
            .find(|g| g.0 == inode)
            .map(|g| g.1.clone())
    }

    pub(crate) fn take_datagram(&mut self, inode: u64) -> Option<super::recv::Datagram> {
        if self.datagrams.is_empty() {
            return None;
        }
        let i = self.datagrams.iter().position(|g| g.0 == inode)?;
        self.datagrams.remove(i).map(|g| g.1)
    }

    /// A connection accepted on listener `inode` that no caller got (its
    /// thread was interrupted, or the program's table was full): the next
    /// accept on that listener, by any thread, gets it, as natively it
    /// would have stayed queued.
    pub(crate) fn take_replay(&mut self, inode: u64) -> Option<(OwnedFd, Option<SockAddr>)> {
        if self.replay.is_empty() {
            return None;
        }
        let i = self.replay.iter().position(|r| r.0 == inode)?;
        self.replay.remove(i).map(|r| (r.1, r.2))
    }

    fn keep_replay(&mut self, inode: u64, fd: OwnedFd, peer: Option<SockAddr>) {
        if self.replay.len() >= NOTES {
            self.replay.pop_front();
        }
        self.replay.push_back((inode, fd, peer));
    }
}

/// What tells one call from another of the same op on the same socket:
/// its flags, index, address (the ones the tracer read), and its buffer
/// and length arguments.
fn call_key(call: &Call) -> [u64; 3] {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    if let Some(a) = &call.addr {
        for b in format_addr(a) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    let h = call
        .args_key
        .iter()
        .fold(h, |h, &a| (h ^ a).wrapping_mul(0x0100_0000_01b3));
    [call.flags as u32 as u64, call.index as u64, h]
}

/// The bytes of an address (for [`call_key`]).
fn format_addr(a: &crate::sockaddr::SockAddr) -> impl Iterator<Item = u8> {
    let mut buf = [0u8; crate::sockaddr::MAX_ADDR_LEN];
    let n = a.encode(&mut buf).unwrap_or(0);
    buf.into_iter().take(n)
}

/// Whether the socket has SO_RCVTIMEO set.
pub(crate) fn recv_timeout(fd: &OwnedFd) -> bool {
    emulate::sock_timeout(fd, libc::SO_RCVTIMEO).is_some()
}

/// Whether the socket has SO_SNDTIMEO set.
pub(crate) fn send_timeout(fd: &OwnedFd) -> bool {
    emulate::sock_timeout(fd, libc::SO_SNDTIMEO).is_some()
}

fn readable_now(fd: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    r == 1 && p.revents != 0
}

/// accept4 on the borrowed listening socket without waiting: the new
/// socket (it gets the program's SOCK_NONBLOCK; close-on-exec is set on our
/// descriptor and, as asked, on the program's: ADDFD) and the peer address
/// the kernel gave (it gives one even for a connection reset while it
/// waited in the queue, which getpeername then refuses).
fn accept_now(
    sock: &OwnedFd,
    nonblocking: bool,
    flags: i32,
) -> Result<(OwnedFd, Option<SockAddr>), Errno> {
    let f = (flags & libc::SOCK_NONBLOCK) | libc::SOCK_CLOEXEC;
    let accept = || {
        let mut buf = [0u8; crate::sockaddr::MAX_ADDR_LEN];
        let mut len = buf.len() as libc::socklen_t;
        // SAFETY: buf/len describe a writable buffer of its size.
        let r = unsafe { libc::accept4(sock.as_raw_fd(), buf.as_mut_ptr().cast(), &mut len, f) };
        if r < 0 {
            Err(Errno::last())
        } else {
            // SAFETY: a fresh descriptor we own.
            let fd = unsafe { std::os::fd::FromRawFd::from_raw_fd(r) };
            Ok((fd, SockAddr::decode(&buf[..(len as usize).min(buf.len())])))
        }
    };
    if nonblocking {
        return accept();
    }
    if !readable_now(sock) {
        return Err(Errno::EAGAIN);
    }
    // The listening file is blocking (shared with the program): non-blocking
    // for our one call only, as emulate::connect does.
    emulate::while_nonblocking(sock, accept)
}

impl<H: NetHandler> Tracer<'_, H> {
    /// A passed call under user notification: accept() is carried out by
    /// the supervisor when its result matters (the new socket, the peer
    /// the program is shown); anything else runs as the program made it.
    pub(crate) fn pass_notify(&mut self, tid: i32, call: Call, verdict: Verdict) {
        let wanted = call.op == Op::Accept
            && (self.interests.outcomes
                || (self.interests.accept_outcomes && self.handler.wants_outcome(&call)));
        if wanted {
            return self.accept_notify(tid, call, verdict);
        }
        self.let_run(tid);
        self.handler.finished(&call, &verdict, Outcome::Unknown);
    }

    fn accept_notify(&mut self, tid: i32, call: Call, verdict: Verdict) {
        let (sock, info) = match self.borrow(call.pid, tid, call.fd.unwrap_or(-1)) {
            Ok(b) => b,
            Err(e) => return self.done(tid, &call, &verdict, -(e as i64)),
        };
        if !emulate::is_ip(&info) {
            self.let_run(tid);
            return self.handler.finished(&call, &verdict, Outcome::Unknown);
        }
        if call.flags & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) != 0 {
            return self.done(tid, &call, &verdict, -(Errno::EINVAL as i64));
        }
        if let Some((_, _, cap)) = call.out_addr {
            if (cap as i32) < 0 {
                return self.done(tid, &call, &verdict, -(Errno::EINVAL as i64));
            }
        }
        let timed = emulate::sock_timeout(&sock, libc::SO_RCVTIMEO).is_some();
        if self
            .interrupted(tid, info.inode, None, GONE_OTHER)
            .is_some()
            && timed
        {
            // Natively an accept with a timeout is never restarted.
            return self.done(tid, &call, &verdict, -(Errno::EINTR as i64));
        }
        if let Some((fd, peer)) = self.st().parked.take_replay(info.inode) {
            // Accepted for another call: this one's SOCK_NONBLOCK.
            let nb = call.flags & libc::SOCK_NONBLOCK != 0;
            // SAFETY: fcntl on a descriptor we own.
            unsafe {
                let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
                if fl >= 0 {
                    let want = if nb {
                        fl | libc::O_NONBLOCK
                    } else {
                        fl & !libc::O_NONBLOCK
                    };
                    libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, want);
                }
            }
            return self.deliver_accepted(tid, call, verdict, info.inode, (fd, peer));
        }
        match accept_now(&sock, info.nonblocking, call.flags) {
            Ok(got) => self.deliver_accepted(tid, call, verdict, info.inode, got),
            Err(Errno::EAGAIN) if !info.nonblocking => {
                let deadline =
                    emulate::sock_timeout(&sock, libc::SO_RCVTIMEO).map(|d| Instant::now() + d);
                self.park(tid, call, verdict, sock, info.inode, deadline, Kind::Accept);
            }
            Err(e) => self.done(tid, &call, &verdict, -(e as i64)),
        }
    }

    /// Give the program the accepted socket: the peer address written as
    /// the kernel would (or the one the handler shows), then the descriptor
    /// installed and the call answered with its number in one step.
    /// `(fd, peer)`: the socket and the address accept gave.
    fn deliver_accepted(
        &mut self,
        tid: i32,
        mut call: Call,
        verdict: Verdict,
        inode: u64,
        (fd, peer): (OwnedFd, Option<SockAddr>),
    ) {
        if self.interests.socket_info {
            call.accepted = emulate::socket_info(&fd).ok();
        }
        if self.interests.addresses {
            call.peer = peer.clone();
        }
        let shown = if self.interests.addresses {
            self.handler.accepted(&call)
        } else {
            None
        };
        if let (Some((ptr, lenp, cap)), Some(a)) = (call.out_addr, shown.as_ref().or(peer.as_ref()))
        {
            let _ = crate::netcall::write_addr_cap(tid, ptr, lenp, cap, a);
        }
        let cloexec = call.flags & libc::SOCK_CLOEXEC != 0;
        let st = self.st();
        st.answered = true;
        match st.listener.add_fd_and_reply(st.id, fd.as_raw_fd(), cloexec) {
            Ok(n) => self
                .handler
                .finished(&call, &verdict, Outcome::Ok(i64::from(n))),
            Err(Errno::ENOENT) => st.parked.keep_replay(inode, fd, peer),
            Err(e) => {
                // EMFILE and the like: natively the connection would stay
                // queued; it is kept for the next accept.
                st.parked.keep_replay(inode, fd, peer);
                st.reply(-(e as i64));
                self.handler.finished(&call, &verdict, Outcome::Err(e));
            }
        }
    }

    /// A blocking datagram send with no room yet (see [`Kind::Again`]).
    pub(crate) fn park_again(
        &mut self,
        tid: i32,
        d: crate::decode::Decoded,
        verdict: Verdict,
        sock: &OwnedFd,
    ) {
        let sock = match sock.try_clone() {
            Ok(s) => s,
            Err(_) => return self.done(tid, &d.call, &verdict, -(Errno::EAGAIN as i64)),
        };
        self.park_decoded(tid, d, verdict, sock, false);
    }

    /// Park a call kept whole (`Kind::Recv` when `recv`, else `Kind::Again`),
    /// with the socket's receive or send timeout.
    fn park_decoded(
        &mut self,
        tid: i32,
        d: crate::decode::Decoded,
        verdict: Verdict,
        sock: OwnedFd,
        recv: bool,
    ) {
        let inode = d.call.socket.map_or(0, |s| s.inode);
        let opt = if recv {
            libc::SO_RCVTIMEO
        } else {
            libc::SO_SNDTIMEO
        };
        let deadline = emulate::sock_timeout(&sock, opt).map(|t| Instant::now() + t);
        let call = d.call.clone();
        let kind = if recv {
            Kind::Recv(Box::new(d))
        } else {
            Kind::Again(Box::new(d))
        };
        self.park(tid, call, verdict, sock, inode, deadline, kind);
    }

    /// A blocking receive with nothing to read yet.
    pub(crate) fn park_recv(
        &mut self,
        tid: i32,
        d: crate::decode::Decoded,
        verdict: Verdict,
        sock: OwnedFd,
    ) {
        self.park_decoded(tid, d, verdict, sock, true);
    }

    /// A blocking send that must wait for room (see [`Send`]).
    pub(crate) fn park_send(
        &mut self,
        tid: i32,
        call: Call,
        verdict: Verdict,
        sock: &OwnedFd,
        send: Send,
    ) {
        let inode = call.socket.map_or(0, |s| s.inode);
        let sock = match sock.try_clone() {
            Ok(s) => s,
            Err(e) => {
                let r = if send.sent > 0 {
                    send.sent as i64
                } else {
                    -(e.raw_os_error().unwrap_or(libc::EMFILE) as i64)
                };
                return self.done(tid, &call, &verdict, r);
            }
        };
        let deadline = emulate::sock_timeout(&sock, libc::SO_SNDTIMEO).map(|d| Instant::now() + d);
        self.park(tid, call, verdict, sock, inode, deadline, Kind::Send(send));
    }

    /// Whether a call of `tid` on `inode` comes after one of its waits there
    /// was interrupted (the restart, or the next call after EINTR): the
    /// interrupted wait, taken out. Waits still parked whose notification
    /// is gone count too (the sweep may not have seen them yet).
    pub(crate) fn interrupted(
        &mut self,
        tid: i32,
        inode: u64,
        key: Option<(u64, u64)>,
        kind: u8,
    ) -> Option<Gone> {
        let st = self.st();
        if st.parked.count > 0 {
            let stale: Vec<usize> = st
                .parked
                .slots
                .iter()
                .enumerate()
                .filter(|(_, w)| {
                    w.as_ref().is_some_and(|w| {
                        w.inode == inode && w.tid == tid && !st.listener.valid(w.id)
                    })
                })
                .map(|(i, _)| i)
                .collect();
            for slot in stale {
                if let Some(w) = st.parked.take(slot) {
                    st.unwatch(w.sock.as_raw_fd());
                    st.parked.note_gone(&w);
                }
            }
        }
        st.parked.take_gone(inode, tid, key, kind)
    }

    /// A blocking connect whose handshake is under way (see the module).
    pub(crate) fn park_connect(
        &mut self,
        tid: i32,
        call: Call,
        verdict: Verdict,
        sock: OwnedFd,
        started: bool,
        to: Option<RawAddr>,
    ) {
        let inode = call.socket.map_or(0, |s| s.inode);
        let timeo = emulate::sock_timeout(&sock, libc::SO_SNDTIMEO);
        let mut first = started;
        if !started {
            // A connect on a socket already connecting: the restart of one
            // we let go (a note), or of one parked whose thread was
            // interrupted and not yet swept.
            let restart = self
                .interrupted(tid, inode, None, GONE_CONNECT)
                .map(|g| g.first);
            if let Some(f) = restart {
                if timeo.is_some() {
                    // Natively a connect with a timeout is never restarted.
                    let e = -(Errno::EINTR as i64);
                    return self.done(tid, &call, &verdict, e);
                }
                first = f;
            }
        }
        let deadline = timeo.map(|d| Instant::now() + d);
        self.park(
            tid,
            call,
            verdict,
            sock,
            inode,
            deadline,
            Kind::Connect {
                first,
                disconnected: false,
                to,
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn park(
        &mut self,
        tid: i32,
        call: Call,
        verdict: Verdict,
        sock: impl Into<Sock>,
        inode: u64,
        deadline: Option<Instant>,
        kind: Kind,
    ) {
        let sock: Sock = sock.into();
        let quiet = matches!(kind, Kind::Send(_)) && crate::stream::error_queue_only(&sock);
        self.park_with(tid, call, verdict, sock, inode, deadline, kind, quiet);
    }

    /// [`Self::park`]; `unwatched`: the socket's readiness says nothing new
    /// (a send's error queue, a connect's kept error: see finish_wait), so
    /// it is not watched but tried again after RETRY (sweep_parked).
    #[allow(clippy::too_many_arguments)]
    fn park_with(
        &mut self,
        tid: i32,
        call: Call,
        verdict: Verdict,
        sock: Sock,
        inode: u64,
        deadline: Option<Instant>,
        kind: Kind,
        unwatched: bool,
    ) {
        let events = match kind {
            Kind::Connect { .. } | Kind::Send(_) | Kind::Again(_) => libc::EPOLLOUT,
            Kind::Accept | Kind::Recv(_) => libc::EPOLLIN,
        } as u32
            | libc::EPOLLONESHOT as u32;
        let st = self.st();
        let raw = sock.as_raw_fd();
        let id = st.id;
        let slot = st.parked.insert(Wait {
            id,
            tid,
            sock,
            inode,
            call,
            verdict,
            deadline,
            kind,
            retry_at: unwatched.then(|| Instant::now() + RETRY),
        });
        if !unwatched {
            if let Err(e) = st.watch(raw, events, TAG_PARK | slot as u64) {
                log::warn!("watching a parked call: {e}");
                if let Some(w) = st.parked.take(slot) {
                    return self.done(tid, &w.call, &w.verdict, -(e as i64));
                }
            }
        }
        st.answered = true;
    }

    /// A parked socket is ready.
    pub(crate) fn parked_ready(&mut self, slot: usize) {
        let st = self.st();
        let Some(w) = st.parked.take(slot) else {
            return;
        };
        st.unwatch(w.sock.as_raw_fd());
        self.finish_wait(w, false);
    }

    fn finish_wait(&mut self, w: Wait, timed_out: bool) {
        {
            let st = self.st();
            st.id = w.id;
            st.answered = false;
        }
        if matches!(w.kind, Kind::Send(_)) && !timed_out && self.st().valid() {
            return self.send_more(w);
        }
        match w.kind {
            Kind::Connect {
                disconnected: true,
                first,
                ..
            } => {
                // As the kernel's wait ends after a disconnect: EPIPE, the
                // socket left as the disconnect left it (no settle), its
                // error for SO_ERROR.
                let mut call = w.call;
                call.new_connection = Some(first);
                self.done(w.tid, &call, &w.verdict, -(Errno::EPIPE as i64));
            }
            Kind::Connect { first, to, .. } => {
                let mut call = w.call;
                call.new_connection = Some(first);
                let state = call.socket.and(emulate::tcp_state(&w.sock));
                let under_way =
                    matches!(state, Some(emulate::TCP_SYN_SENT | emulate::TCP_SYN_RECV));
                // None: still under way.
                let outcome = match (timed_out, call.socket) {
                    (true, _) if first => Some(libc::EINPROGRESS),
                    (true, _) => Some(libc::EALREADY),
                    (false, Some(_)) if under_way => None,
                    // Over: one more connect learns the outcome and leaves
                    // the socket as the program's own blocking connect
                    // would (emulate::connect_in_state). EALREADY: still under
                    // way after all (no TCP state to read).
                    (false, Some(info)) => {
                        match emulate::settle_connected(&w.sock, info.domain, to.as_ref(), state) {
                            0 | libc::EISCONN => Some(0),
                            libc::EALREADY => None,
                            // Disconnected under us, unseen.
                            libc::EINVAL => Some(emulate::disconnected_errno(&w.sock)),
                            e => Some(e),
                        }
                    }
                    (false, None) => Some(emulate::so_error(&w.sock)),
                };
                // Woken while the handshake is still under way: by an error
                // or hang-up that stays reported meanwhile (an ICMP error
                // kept as a soft error, an old error-queue entry, a shutdown
                // before the connect). The program's connect waits on, as
                // natively: looked at again shortly (its TCP state alone,
                // nothing done to the socket), not watched (epoll would
                // report the same at once, again and again).
                let Some(e) = outcome else {
                    let (tid, inode, deadline) = (w.tid, w.inode, w.deadline);
                    let kind = Kind::Connect {
                        first,
                        disconnected: false,
                        to,
                    };
                    return self
                        .park_with(tid, call, w.verdict, w.sock, inode, deadline, kind, true);
                };
                if e != 0 && !timed_out {
                    // A failed connect disconnects the socket: other
                    // waiters on it end with EPIPE, as natively.
                    self.st().parked.note_disconnect(w.inode);
                }
                if e == 0 && self.interests.addresses {
                    call.local = emulate::local_addr(&w.sock);
                }
                self.done(w.tid, &call, &w.verdict, -(e as i64));
            }
            Kind::Send(s) if timed_out => {
                let eagain = -(Errno::EAGAIN as i64);
                let r = match s.mmsg {
                    Some(m) => m.answer(w.tid, s.sent, Some(eagain)),
                    None if s.sent > 0 => s.sent as i64,
                    None => eagain,
                };
                self.done(w.tid, &w.call, &w.verdict, r);
            }
            Kind::Send(_) => {
                // Interrupted meanwhile (a send with room went on above):
                // nothing more is sent for it.
                self.st().parked.note_gone(&w);
            }
            Kind::Again(_) if timed_out => {
                self.done(w.tid, &w.call, &w.verdict, -(Errno::EAGAIN as i64));
            }
            Kind::Again(d) => {
                drop(w.sock);
                self.on_net(w.tid, *d);
            }
            Kind::Recv(_) if timed_out => {
                self.done(w.tid, &w.call, &w.verdict, -(Errno::EAGAIN as i64));
            }
            Kind::Recv(_) if !self.st().valid() => {
                // Its thread was interrupted: take nothing from the socket.
                self.st().parked.note_gone(&w);
            }
            Kind::Recv(d) => {
                if let Some((d, verdict)) = self.recv_now(w.tid, *d, w.verdict, &w.sock) {
                    // Taken by another reader first: wait again.
                    let (tid, inode, deadline) = (w.tid, w.inode, w.deadline);
                    let call = d.call.clone();
                    self.park(
                        tid,
                        call,
                        verdict,
                        w.sock,
                        inode,
                        deadline,
                        Kind::Recv(Box::new(d)),
                    );
                }
            }
            Kind::Accept if timed_out => {
                self.done(w.tid, &w.call, &w.verdict, -(Errno::EAGAIN as i64));
            }
            Kind::Accept if !self.st().valid() => {
                // Its thread was interrupted or killed: accept nothing for it.
                self.st().parked.note_gone(&w);
            }
            Kind::Accept => {
                let flags = w.call.flags;
                match accept_now(&w.sock, false, flags) {
                    Ok(got) => self.deliver_accepted(w.tid, w.call, w.verdict, w.inode, got),
                    // Taken by another thread or process first: wait again.
                    Err(Errno::EAGAIN) => self.park(
                        w.tid,
                        w.call,
                        w.verdict,
                        w.sock,
                        w.inode,
                        w.deadline,
                        Kind::Accept,
                    ),
                    Err(e) => self.done(w.tid, &w.call, &w.verdict, -(e as i64)),
                }
            }
        }
    }

    /// Deadlines, and waits whose thread was interrupted (at most every 50 ms).
    pub(crate) fn sweep_parked(&mut self) {
        if self.st().parked.count == 0 {
            return;
        }
        let now = Instant::now();
        let st = self.st();
        let check = st.parked.last_sweep.is_none_or(|t| now - t >= SWEEP);
        if check {
            st.parked.last_sweep = Some(now);
        }
        for slot in 0..st.parked.slots.len() {
            let st = self.st();
            let (expired, valid, retry) = match &st.parked.slots[slot] {
                Some(w) => (
                    w.deadline.is_some_and(|d| now >= d),
                    !check || st.listener.valid(w.id),
                    w.retry_at.is_some_and(|t| now >= t),
                ),
                None => continue,
            };
            if valid && !expired && !retry {
                continue;
            }
            let Some(w) = st.parked.take(slot) else {
                continue;
            };
            st.unwatch(w.sock.as_raw_fd());
            if !valid {
                st.parked.note_gone(&w);
                continue;
            }
            // A call's time to be looked at again (not watched meanwhile).
            self.finish_wait(w, expired);
        }
    }
}
