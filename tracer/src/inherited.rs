//! What this process inherited from whoever started it, recorded before the
//! Rust runtime changes it, so the program gets exactly that.
//!
//! Rust's runtime sets SIGPIPE to SIG_IGN and reopens closed descriptors
//! 0-2 on /dev/null before `main`; the tracer installs handlers for the
//! signals it forwards. Without this record, `trap '' PIPE`, `nohup`, the
//! SIGINT/SIGQUIT a shell ignores for background jobs, the signal mask and
//! `2>&-` would all be lost for the program. A function in `.init_array`
//! runs before any of that (glibc calls it before Rust's `main` machinery).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Bit N-1: signal N was SIG_IGN at start (signals 1..=64).
static IGNORED: AtomicU64 = AtomicU64::new(0);
/// Bit N-1: signal N was blocked at start.
static BLOCKED: AtomicU64 = AtomicU64::new(0);
/// Bit F: descriptor F (0, 1 or 2) was closed at start.
static CLOSED: AtomicU32 = AtomicU32::new(0);
static RECORDED: AtomicBool = AtomicBool::new(false);

const MAX_SIG: i32 = 64;

#[used]
#[link_section = ".init_array"]
static RECORD_AT_START: extern "C" fn() = record;

extern "C" fn record() {
    let (mut ignored, mut blocked, mut closed) = (0u64, 0u64, 0u32);
    // SAFETY: querying dispositions, the mask and descriptor flags; all
    // out-pointers are locals.
    unsafe {
        for sig in 1..=MAX_SIG {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_IGN
            {
                ignored |= 1 << (sig - 1);
            }
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        if libc::pthread_sigmask(libc::SIG_SETMASK, std::ptr::null(), &mut set) == 0 {
            for sig in 1..=MAX_SIG {
                if libc::sigismember(&set, sig) == 1 {
                    blocked |= 1 << (sig - 1);
                }
            }
        }
        for fd in 0..3 {
            if libc::fcntl(fd, libc::F_GETFD) < 0 {
                closed |= 1 << fd;
            }
        }
    }
    IGNORED.store(ignored, Ordering::Relaxed);
    BLOCKED.store(blocked, Ordering::Relaxed);
    CLOSED.store(closed, Ordering::Relaxed);
    RECORDED.store(true, Ordering::Release);
}

/// Whether `sig` was ignored when this process started.
pub fn was_ignored(sig: i32) -> bool {
    if !(1..=MAX_SIG).contains(&sig) {
        return false;
    }
    if RECORDED.load(Ordering::Acquire) {
        return IGNORED.load(Ordering::Relaxed) & (1 << (sig - 1)) != 0;
    }
    // Not recorded (an unusual loader): what we see now, SIGPIPE aside
    // (Rust's runtime ignores it for itself).
    if sig == libc::SIGPIPE {
        return false;
    }
    // SAFETY: querying a disposition into a local.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

/// In the forked child before exec: every signal's disposition back to what
/// this process started with (ignored, or default: a handler would become
/// the default at exec anyway), and the signal mask likewise.
/// Only async-signal-safe calls.
pub fn restore_signals_in_child() {
    let recorded = RECORDED.load(Ordering::Acquire);
    let ignored = IGNORED.load(Ordering::Relaxed);
    // SAFETY: sigaction/sigprocmask on locals; async-signal-safe.
    unsafe {
        for sig in 1..=MAX_SIG {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            let mut cur: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut cur) != 0 {
                continue; // glibc's internal signals (32, 33)
            }
            let keep_ignored = if recorded {
                ignored & (1 << (sig - 1)) != 0
            } else {
                sig != libc::SIGPIPE && cur.sa_sigaction == libc::SIG_IGN
            };
            let want = if keep_ignored {
                libc::SIG_IGN
            } else {
                libc::SIG_DFL
            };
            if cur.sa_sigaction != want {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = want;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
        if recorded {
            let blocked = BLOCKED.load(Ordering::Relaxed);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for sig in 1..=MAX_SIG {
                if blocked & (1 << (sig - 1)) != 0 {
                    libc::sigaddset(&mut set, sig);
                }
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        }
    }
}

/// In the forked child, just before exec: close again the standard
/// descriptors that were closed when this process started (the runtime put
/// /dev/null there). Async-signal-safe.
pub fn close_std_fds_in_child() {
    let closed = CLOSED.load(Ordering::Relaxed);
    for fd in 0..3 {
        if closed & (1 << fd) != 0 {
            // SAFETY: closing our own descriptor in the child.
            unsafe { libc::close(fd) };
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn recorded_before_main() {
        assert!(super::RECORDED.load(std::sync::atomic::Ordering::Acquire));
    }
}
