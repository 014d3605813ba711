//! Closing a descriptor can block: the last close of a file on a FUSE
//! mount sends FLUSH and waits for the server's answer, and the server may
//! be the program itself. Copies the tracer took of descriptors that turned
//! out not to be sockets (a network call on a file) are closed here, on a
//! thread of their own, so the tracer thread never waits for one. So are
//! TCP sockets with SO_LINGER set (the last close of one with data unsent
//! waits up to its linger time): see [`release`]. Other sockets are closed
//! where they are dropped.

use std::os::fd::OwnedFd;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::OnceLock;

/// Closes waiting at most; past it a copy is kept open (leaked) rather
/// than closed on the tracer thread.
const QUEUE: usize = 256;

fn queue() -> Option<&'static SyncSender<OwnedFd>> {
    static TX: OnceLock<Option<SyncSender<OwnedFd>>> = OnceLock::new();
    TX.get_or_init(|| {
        let (tx, rx) = sync_channel::<OwnedFd>(QUEUE);
        std::thread::Builder::new()
            .name("appswitch-closer".into())
            .spawn(move || {
                for fd in rx {
                    drop(fd);
                }
            })
            .ok()
            .map(|_| tx)
    })
    .as_ref()
}

/// Close the tracer's copy of a socket that may have data queued: off
/// this thread when its close could wait (SO_LINGER on, or not a socket).
pub(crate) fn release(fd: OwnedFd) {
    use std::os::fd::AsRawFd;
    let mut l = libc::linger {
        l_onoff: 0,
        l_linger: 0,
    };
    let mut len = std::mem::size_of::<libc::linger>() as libc::socklen_t;
    // SAFETY: l and len are valid for the kernel to write.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&mut l as *mut libc::linger).cast(),
            &mut len,
        )
    };
    if r != 0 || (l.l_onoff != 0 && l.l_linger > 0) {
        close_later(fd);
    }
}

/// Close `fd` off the calling thread.
pub(crate) fn close_later(fd: OwnedFd) {
    match queue() {
        Some(tx) => {
            if let Err(e) = tx.try_send(fd) {
                log::warn!("too many blocked closes of program files: one descriptor is kept open");
                let fd = match e {
                    std::sync::mpsc::TrySendError::Full(fd) => fd,
                    std::sync::mpsc::TrySendError::Disconnected(fd) => fd,
                };
                std::mem::forget(fd);
            }
        }
        None => std::mem::forget(fd),
    }
}
