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
    let mut room = RoomWait {
        tid,
        blocking,
        earlier,
        waited: 0,
        deadline: None,
    };
    if iovs.iter().all(|&(_, len)| len == 0) {
        // Nothing to send: the kernel's answer all the same (0, EPIPE on a
        // socket shut down for writing, or a wait while it is connecting).
        loop {
            let r = crate::emulate::send_now(sock, &[], control, flags);
            if r >= 0 {
                return r;
            }
            if let Some(answer) = room.wait(sock, 0, r) {
                return answer;
            }
        }
    }
    let mut sent: u64 = 0;
    let mut chunk = Vec::with_capacity(MAX_DATA.min(1 << 16));
    for &(base, len) in iovs {
        let mut off = 0u64;
        while off < len {
            let take = (len - off).min(MAX_DATA as u64);
            if msg::read_into(tid, base + off, take, &mut chunk).is_err() {
                return if sent > 0 {
                    sent as i64
                } else {
                    -(Errno::EFAULT as i64)
                };
            }
            let mut done = 0usize;
            while done < chunk.len() {
                let ctl = if sent == 0 && done == 0 { control } else { &[] };
                let r = crate::emulate::send_now(sock, &chunk[done..], ctl, flags);
                if r >= 0 {
                    done += r as usize;
                    sent += r as u64;
                    continue;
                }
                if let Some(answer) = room.wait(sock, sent, r) {
                    return answer;
                }
            }
            off += take;
        }
    }
    sent as i64
}

/// Waiting for room in a send buffer as the program's blocking call would.
struct RoomWait {
    tid: i32,
    blocking: bool,
    earlier: bool,
    waited: u32,
    /// The socket's send timeout, looked up on the first wait.
    deadline: Option<Option<std::time::Instant>>,
}

impl RoomWait {
    /// A send failed with `r` (-errno), `sent` of the call's bytes gone:
    /// None when it waited for room (try again), else the call's answer.
    fn wait(&mut self, sock: &OwnedFd, sent: u64, r: i64) -> Option<i64> {
        let answer = Some(if sent > 0 { sent as i64 } else { r });
        if r != -(Errno::EAGAIN as i64) || !self.blocking || self.waited >= WAIT_SLICES {
            return answer;
        }
        let until = *self.deadline.get_or_insert_with(|| {
            crate::emulate::sock_timeout(sock, libc::SO_SNDTIMEO)
                .map(|d| std::time::Instant::now() + d)
        });
        let left = until.map_or(SLICE_MS, |u| {
            let ms = u
                .saturating_duration_since(std::time::Instant::now())
                .as_millis();
            ms.min(SLICE_MS as u128) as i32
        });
        if left <= 0 {
            return answer;
        }
        let signalled = (sent > 0 || self.earlier)
            && crate::remote::sig_masks(self.tid).is_some_and(|m| m.interrupting());
        if signalled {
            // Interrupted: the count, or EINTR before any of this message
            // went (the call's earlier messages are its answer).
            return Some(if sent > 0 {
                sent as i64
            } else {
                -(Errno::EINTR as i64)
            });
        }
        self.waited += 1;
        let mut p = libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, left) };
        if sent > 0 && reset(p.revents) {
            // The socket failed (a reset) after some of it went: that
            // count, the error left for the next call, as the kernel's own
            // wait would.
            return Some(sent as i64);
        }
        if p.revents & (libc::POLLOUT | libc::POLLHUP) == 0 {
            // Woken by the error queue alone (timestamps, zerocopy notes):
            // still no room; the slice is waited out rather than spun.
            std::thread::sleep(std::time::Duration::from_millis(left as u64));
        }
        None
    }
}

/// A reset (or any failure that ended the connection) in poll's answer:
/// an error and a hang-up together. An error alone may be the error
/// queue's (timestamps, zerocopy notes) on a healthy connection.
fn reset(revents: i16) -> bool {
    revents & libc::POLLERR != 0 && revents & libc::POLLHUP != 0
}

/// Whether `sock`'s connection has failed (a reset), its error left unread.
pub fn error_pending(sock: &OwnedFd) -> bool {
    reset(crate::emulate::ready_now(sock))
}

/// Whether `sock` polls with an error but neither room nor a hang-up: its
/// error queue has entries (timestamps, zerocopy notes) while the send
/// buffer is full.
pub fn error_queue_only(sock: &OwnedFd) -> bool {
    let r = crate::emulate::ready_now(sock);
    r & libc::POLLERR != 0 && r & (libc::POLLOUT | libc::POLLHUP) == 0
}
