//! Sends on stream sockets that the kernel cannot be left to finish from
//! registers alone (several buffers with flags or control data, sendmmsg):
//! the tracer sends the whole message itself, reading the program's buffers
//! in pieces of at most MAX_DATA, so a blocking send returns the full count
//! as untraced. Only data is read again, never an address. A full send
//! buffer is waited out with poll in 20 ms slices, for at most a minute in
//! all, or the socket's SO_SNDTIMEO; a signal that would interrupt the
//! program ends the wait once some of the message went (docs/RULES.md, known
//! limits: under ptrace other traced threads wait meanwhile).

use crate::msg::{self, MAX_DATA};
use nix::errno::Errno;
use std::os::fd::{AsRawFd, OwnedFd};

/// Slices of 20 ms the tracer waits, in all, for room in a send buffer
/// (a minute; less when the socket has a send timeout: then that). Between
/// slices, a signal that would interrupt the program's own wait ends the
/// send once some of it went (the count is the answer, as natively).
const WAIT_SLICES: u32 = 3000;
const SLICE_MS: i32 = 20;

/// Send all of `iovs` (the program's buffers) on the stream socket `sock`
/// with `flags`, `control` going with the first byte. `blocking`: wait for
/// room as the program's blocking call would; `earlier`: the call sent
/// something before these buffers (a sendmmsg's earlier messages), so a
/// signal ends the wait even before any of them went (-EINTR). The count
/// sent, or -errno when nothing was.
pub fn send_all(
    tid: i32,
    sock: &OwnedFd,
    iovs: &[(u64, u64)],
    control: &[u8],
    flags: i32,
    blocking: bool,
    earlier: bool,
) -> i64 {
    let empty = iovs.iter().all(|&(_, len)| len == 0);
    // Nothing to send: the kernel's answer all the same (0, EPIPE on a
    // socket shut down for writing, or a wait while it is connecting).
    let iovs: &[(u64, u64)] = if empty { &[(0, 0)] } else { iovs };
    let mut sent: u64 = 0;
    let mut waited = 0;
    // The socket's send timeout, as the kernel's own wait would keep it:
    // looked up on the first wait.
    let mut deadline: Option<Option<std::time::Instant>> = None;
    let mut chunk = Vec::with_capacity(MAX_DATA.min(1 << 16));
    for &(base, len) in iovs {
        let mut off = 0u64;
        while off < len || (empty && off == 0) {
            let take = (len - off).min(MAX_DATA as u64);
            if take > 0 && msg::read_into(tid, base + off, take, &mut chunk).is_err() {
                return if sent > 0 {
                    sent as i64
                } else {
                    -(Errno::EFAULT as i64)
                };
            }
            let mut done = 0usize;
            let mut once = empty;
            while done < chunk.len() || std::mem::take(&mut once) {
                let ctl = if sent == 0 && done == 0 { control } else { &[] };
                let r = crate::emulate::send_now(sock, &chunk[done..], ctl, flags);
                if r >= 0 {
                    done += r as usize;
                    sent += r as u64;
                    if empty {
                        return r;
                    }
                    continue;
                }
                let until = *deadline.get_or_insert_with(|| {
                    crate::emulate::sock_timeout(sock, libc::SO_SNDTIMEO)
                        .map(|d| std::time::Instant::now() + d)
                });
                let left = until.map_or(SLICE_MS, |u| {
                    let ms = u
                        .saturating_duration_since(std::time::Instant::now())
                        .as_millis();
                    ms.min(SLICE_MS as u128) as i32
                });
                let signalled = || {
                    (sent > 0 || earlier)
                        && crate::remote::sig_masks(tid).is_some_and(|m| m.interrupting())
                };
                let wait = r == -(Errno::EAGAIN as i64) && blocking && waited < WAIT_SLICES;
                if wait && left > 0 && !signalled() {
                    waited += 1;
                    let mut p = libc::pollfd {
                        fd: sock.as_raw_fd(),
                        events: libc::POLLOUT,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd.
                    unsafe { libc::poll(&mut p, 1, left) };
                    if sent > 0 && reset(p.revents) {
                        // The socket failed (a reset) after some of it
                        // went: that count, the error left for the next
                        // call, as the kernel's own wait would.
                        return sent as i64;
                    }
                    if p.revents & (libc::POLLOUT | libc::POLLHUP) == 0 {
                        // Woken by the error queue alone (timestamps,
                        // zerocopy notes): still no room; the slice is
                        // waited out rather than spun.
                        let ms = std::time::Duration::from_millis(left as u64);
                        std::thread::sleep(ms);
                    }
                    continue;
                }
                if wait && sent == 0 && earlier && left > 0 {
                    // Interrupted before any of this message went.
                    return -(Errno::EINTR as i64);
                }
                return if sent > 0 { sent as i64 } else { r };
            }
            off += take;
        }
    }
    sent as i64
}

/// A reset (or any failure that ended the connection) in poll's answer:
/// an error and a hang-up together. An error alone may be the error
/// queue's (timestamps, zerocopy notes) on a healthy connection.
fn reset(revents: i16) -> bool {
    revents & libc::POLLERR != 0 && revents & libc::POLLHUP != 0
}

/// What poll says of `sock` now (POLLOUT asked), without waiting.
fn poll_now(sock: &OwnedFd) -> i16 {
    let mut p = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd; no wait.
    unsafe { libc::poll(&mut p, 1, 0) };
    p.revents
}

/// Whether `sock`'s connection has failed (a reset), its error left unread.
pub fn error_pending(sock: &OwnedFd) -> bool {
    reset(poll_now(sock))
}

/// Whether `sock` polls with an error but neither room nor a hang-up: its
/// error queue has entries (timestamps, zerocopy notes) while the send
/// buffer is full.
pub fn error_queue_only(sock: &OwnedFd) -> bool {
    let r = poll_now(sock);
    r & libc::POLLERR != 0 && r & (libc::POLLOUT | libc::POLLHUP) == 0
}
