//! A blocking send on a stream socket that did not fit goes on as room
//! comes (park.rs parks it, this carries it on): the rest of one message
//! (sendto, sendmsg), or of each message of a sendmmsg in turn.
//!
//! A sendmmsg on TCP goes as untraced: each message is sent whole, waiting
//! for room, its msg_len written as it completes; the count of messages is
//! returned. A message cut short (an error after some of it, the socket's
//! send timeout, a signal) counts, and ends the call; one that fails with
//! nothing sent ends it without counting (the call fails if it was the
//! first). The next message is read only when its turn comes, as the
//! kernel reads it: data and lengths, never an address (TCP ignores them).

use super::park::{Kind, Wait};
use crate::call::NetHandler;
use crate::msg;
use crate::remote;
use crate::tracer::Tracer;
use nix::errno::Errno;

/// Where a parked sendmmsg stands: message `index` of `vlen` in the array
/// at `base` (the ones before it were sent whole, `lens` long).
#[derive(Clone, Debug)]
pub(crate) struct Mmsg {
    pub(crate) base: u64,
    pub(crate) vlen: u64,
    pub(crate) index: u64,
    pub(crate) compat: bool,
    pub(crate) lens: Vec<u32>,
}

impl Mmsg {
    fn header(&self, i: u64) -> u64 {
        self.base + i * msg::mmsghdr_layout(self.compat).0
    }

    /// Write message `i`'s msg_len, as the kernel does once it is sent.
    fn write_len(&self, tid: i32, i: u64, len: u32) {
        let at = self.header(i) + msg::mmsghdr_layout(self.compat).1;
        let _ = remote::write_mem(tid, at, &len.to_ne_bytes());
    }

    /// Message `index` went whole (`len` bytes): on to the next.
    fn completed(&mut self, tid: i32, len: u64) {
        self.write_len(tid, self.index, len as u32);
        self.lens.push(len as u32);
        self.index += 1;
    }

    /// The call's answer once message `index` ended with `sent` of its
    /// bytes gone (`err`: what it failed with, if it did; -errno).
    pub(crate) fn answer(&self, tid: i32, sent: u64, err: Option<i64>) -> i64 {
        if sent > 0 {
            self.write_len(tid, self.index, sent as u32);
            return (self.index + 1) as i64;
        }
        match err {
            Some(e) if self.index == 0 => e,
            _ => self.index as i64,
        }
    }

    /// The count a restart after a signal gets (0: none, the call starts
    /// afresh), message `index` having `sent` bytes gone, and the msg_len
    /// of each message counted. The partial one's is written now.
    pub(crate) fn interrupted(&self, tid: i32, sent: u64) -> (u64, Vec<u32>) {
        let mut lens = self.lens.clone();
        if sent > 0 {
            self.write_len(tid, self.index, sent as u32);
            lens.push(sent as u32);
        }
        (lens.len() as u64, lens)
    }

    /// Write the msg_len of each message a restart is told of again.
    pub(crate) fn rewrite_lens(tid: i32, base: u64, compat: bool, lens: &[u32]) {
        let (stride, off) = msg::mmsghdr_layout(compat);
        for (i, &l) in lens.iter().enumerate() {
            let _ = remote::write_mem(tid, base + i as u64 * stride + off, &l.to_ne_bytes());
        }
    }
}

impl<H: NetHandler> Tracer<'_, H> {
    /// A parked stream send whose socket has room: send what fits, park
    /// again if that was not all, else answer (for a sendmmsg, go on with
    /// the next message while they fit).
    pub(crate) fn send_more(&mut self, w: Wait) {
        let Wait {
            tid,
            sock,
            inode,
            call,
            verdict,
            mut deadline,
            kind: Kind::Send(mut s),
            ..
        } = w
        else {
            return;
        };
        // Bounded: each turn ends a message, and there are at most 1024.
        loop {
            // Natively the send that waited returns the count once some of
            // its message went and the socket failed (a reset), leaving
            // the error for the next call: not consumed by sending again.
            let r = if s.sent > 0 && crate::stream::error_pending(&sock) {
                -(Errno::EPIPE as i64)
            } else {
                let rest = crate::netcall::rest_of(&s.iovs, s.sent);
                crate::stream::send_all(tid, &sock, &rest, &s.control, s.flags, false, false)
            };
            if r > 0 {
                s.sent += r as u64;
                s.control.clear();
            }
            // (EAGAIN with nothing left: a send of no bytes that must wait.)
            let again = r == -(Errno::EAGAIN as i64) || (r >= 0 && s.sent < s.total);
            if again {
                return self.park(tid, call, verdict, sock, inode, deadline, Kind::Send(s));
            }
            let err = (r < 0).then_some(r);
            let Some(mut m) = s.mmsg.take() else {
                let ret = if r < 0 && s.sent == 0 {
                    r
                } else {
                    s.sent as i64
                };
                return self.done(tid, &call, &verdict, ret);
            };
            if err.is_some() || s.sent < s.total {
                let ret = m.answer(tid, s.sent, err);
                return self.done(tid, &call, &verdict, ret);
            }
            m.completed(tid, s.sent);
            if m.index >= m.vlen {
                return self.done(tid, &call, &verdict, m.vlen as i64);
            }
            // A signal took the thread meanwhile: no more messages for it;
            // its restart gets the count.
            if !self.st().valid() {
                let (sent, lens) = m.interrupted(tid, 0);
                let gone = super::park::Gone {
                    inode,
                    tid,
                    first: false,
                    sent,
                    key: Some(s.key),
                    kind: super::park::GONE_MMSG,
                    lens,
                };
                return self.st().parked.push_gone(gone);
            }
            // The next message, read now (the kernel reads each in turn),
            // with a send timeout of its own.
            let next = msg::read_message(tid, m.header(m.index), m.compat)
                .and_then(|n| crate::privs::check_control(tid, &n.control).map(|()| n));
            let n = match next {
                Ok(n) => n,
                Err(_) => return self.done(tid, &call, &verdict, m.index as i64),
            };
            deadline = crate::emulate::sock_timeout(&sock, libc::SO_SNDTIMEO)
                .map(|d| std::time::Instant::now() + d);
            s.iovs = n.iovs;
            s.total = n.total;
            s.sent = 0;
            s.control = n.control;
            s.mmsg = Some(m);
        }
    }
}
