//! Which interception backend runs a program, and whether this kernel has
//! what seccomp user notification needs (probed once per process).
//!
//! `Auto` picks user notification when every probe passes, else ptrace. The
//! probes, in order (any failure means ptrace):
//! 1. SECCOMP_GET_ACTION_AVAIL(RET_USER_NOTIF);
//! 2. GET_NOTIF_SIZES at least our structures;
//! 3. a forked child can install a NEW_LISTENER filter (EBUSY: this process
//!    is already under a listener: nested appswitch, LXD, syd);
//! 4. SET_FLAGS(SYNC_WAKE_UP) (Linux 6.6) on that listener;
//! 5. ADDFD_FLAG_SEND (Linux 5.14): an ADDFD for no notification gives ENOENT;
//! 6. PIDFD_THREAD pidfds (Linux 6.9).

use crate::unotify::notif;
use nix::errno::Errno;
use std::sync::OnceLock;

/// What the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Backend {
    #[default]
    Auto,
    Unotify,
    Ptrace,
}

/// What runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chosen {
    Unotify,
    Ptrace,
}

impl Chosen {
    pub fn name(self) -> &'static str {
        match self {
            Chosen::Unotify => "unotify",
            Chosen::Ptrace => "ptrace",
        }
    }
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Unotify => "unotify",
            Backend::Ptrace => "ptrace",
        }
    }

    /// Parse `auto`, `unotify` (or `user-notification`), `ptrace`.
    pub fn parse(s: &str) -> Option<Backend> {
        match s {
            "auto" => Some(Backend::Auto),
            "unotify" | "user-notification" | "user-notif" => Some(Backend::Unotify),
            "ptrace" => Some(Backend::Ptrace),
            _ => None,
        }
    }

    /// The backend that runs: `Auto` probes the kernel; `Unotify` fails
    /// with the reason when the kernel lacks something it needs.
    pub fn choose(self) -> Result<Chosen, String> {
        match self {
            Backend::Ptrace => Ok(Chosen::Ptrace),
            Backend::Auto => Ok(match unotify_support() {
                Ok(()) => Chosen::Unotify,
                Err(why) => {
                    log::info!("user notification unavailable ({why}): using ptrace");
                    Chosen::Ptrace
                }
            }),
            Backend::Unotify => unotify_support().map(|()| Chosen::Unotify).map_err(|why| {
                format!(
                    "the user-notification backend cannot run here: {why} (use --backend ptrace)"
                )
            }),
        }
    }
}

/// Whether seccomp user notification works here, or why not (cached).
pub fn unotify_support() -> Result<(), String> {
    static SUPPORT: OnceLock<Result<(), String>> = OnceLock::new();
    SUPPORT.get_or_init(probe).clone()
}

fn probe() -> Result<(), String> {
    if !notif::user_notif_available() {
        return Err("SECCOMP_RET_USER_NOTIF is not available (Linux 5.0)".into());
    }
    match notif::sizes() {
        Ok(s) if notif::struct_sizes_fit(&s) => {}
        Ok(s) => return Err(format!("unexpected notification sizes {s:?}")),
        Err(e) => return Err(format!("SECCOMP_GET_NOTIF_SIZES: {e}")),
    }
    probe_listener()?;
    // SAFETY: plain syscalls; the pidfd is closed at once.
    unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, libc::gettid(), libc::O_EXCL);
        if fd < 0 {
            return Err("PIDFD_THREAD pidfds are not supported (Linux 6.9)".into());
        }
        libc::close(fd as i32);
    }
    Ok(())
}

/// Exit codes of the probe child.
const OK: i32 = 0;
const NO_FILTER: i32 = 10;
const NESTED: i32 = 11;
const NO_SYNC: i32 = 12;
const NO_SEND: i32 = 13;

/// Fork a child that installs a listener filter on a call nobody makes and
/// tries the ioctls we need on it.
fn probe_listener() -> Result<(), String> {
    // A filter that never notifies: arch check, nr 1023 (unused) notifies.
    let insns = [
        bpf_stmt(BPF_LD | BPF_W | BPF_ABS, 0),
        bpf_jump(BPF_JMP | BPF_JEQ | BPF_K, 1023, 0, 1),
        bpf_stmt(BPF_RET | BPF_K, notif::SECCOMP_RET_USER_NOTIF),
        bpf_stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: insns.len() as u16,
        filter: insns.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: the child makes only async-signal-safe system calls on memory
    // prepared before the fork, then _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", Errno::last()));
    }
    if pid == 0 {
        // SAFETY: as above.
        unsafe {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            let fd = libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                notif::SECCOMP_FILTER_FLAG_NEW_LISTENER,
                &prog as *const libc::sock_fprog,
            );
            if fd < 0 {
                let busy = *libc::__errno_location() == libc::EBUSY;
                libc::_exit(if busy { NESTED } else { NO_FILTER });
            }
            let l = notif::Listener(std::os::fd::FromRawFd::from_raw_fd(fd as i32));
            if l.set_sync_wake_up(true).is_err() {
                libc::_exit(NO_SYNC);
            }
            if !l.addfd_send_known() {
                libc::_exit(NO_SEND);
            }
            libc::_exit(OK);
        }
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    let r = loop {
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r < 0 && Errno::last() == Errno::EINTR {
            continue;
        }
        break r;
    };
    if r != pid || !libc::WIFEXITED(status) {
        return Err("the probe process did not finish".into());
    }
    match libc::WEXITSTATUS(status) {
        OK => Ok(()),
        NESTED => Err("this process already runs under a user-notification listener (nested appswitch, LXD, syd...)".into()),
        NO_FILTER => Err("a filter with a listener cannot be installed".into()),
        NO_SYNC => Err("SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP is not supported (Linux 6.6)".into()),
        NO_SEND => Err("SECCOMP_ADDFD_FLAG_SEND is not supported (Linux 5.14)".into()),
        c => Err(format!("the probe process exited with {c}")),
    }
}

const BPF_LD: u16 = 0x00;
const BPF_W: u16 = 0x00;
const BPF_ABS: u16 = 0x20;
const BPF_JMP: u16 = 0x05;
const BPF_JEQ: u16 = 0x10;
const BPF_K: u16 = 0x00;
const BPF_RET: u16 = 0x06;

fn bpf_stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn bpf_jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names() {
        assert_eq!(Backend::parse("auto"), Some(Backend::Auto));
        assert_eq!(Backend::parse("unotify"), Some(Backend::Unotify));
        assert_eq!(Backend::parse("ptrace"), Some(Backend::Ptrace));
        assert_eq!(Backend::parse("bogus"), None);
    }

    #[test]
    fn ptrace_is_always_chosen_when_asked() {
        assert_eq!(Backend::Ptrace.choose(), Ok(Chosen::Ptrace));
    }

    #[test]
    fn auto_agrees_with_the_probe() {
        let want = match unotify_support() {
            Ok(()) => Chosen::Unotify,
            Err(_) => Chosen::Ptrace,
        };
        assert_eq!(Backend::Auto.choose(), Ok(want));
    }
}
