//! Access to a stopped tracee: its memory (process_vm_readv, bounded reads
//! only) and its descriptors (pidfd_getfd gives the tracer its own copy of the
//! tracee's open file: same socket, same file status flags).

use nix::errno::Errno;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Read exactly `buf.len()` bytes at `addr` in `pid`. A partial read is EFAULT,
/// which is what the kernel would have answered for the same buffer.
pub fn read_mem(pid: i32, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
    if buf.is_empty() {
        return Ok(());
    }
    if addr == 0 {
        return Err(Errno::EFAULT);
    }
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    crate::watchdog::begin(pid, addr);
    // SAFETY: both iovecs describe valid memory of the stated length; the
    // remote one is only read by the kernel on the tracee's side.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    crate::watchdog::end();
    match n {
        n if n as usize == buf.len() => Ok(()),
        n if n >= 0 => Err(Errno::EFAULT),
        _ => Err(match Errno::last() {
            Errno::ESRCH => Errno::ESRCH,
            _ => Errno::EFAULT,
        }),
    }
}

/// Write `buf` at `addr` in `pid` (answers to getpeername and the like).
pub fn write_mem(pid: i32, addr: u64, buf: &[u8]) -> Result<(), Errno> {
    let local = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    crate::watchdog::begin(pid, addr);
    // SAFETY: as in read_mem; the local buffer is only read.
    let n = unsafe { libc::process_vm_writev(pid, &local, 1, &remote, 1, 0) };
    crate::watchdog::end();
    if n as usize == buf.len() {
        Ok(())
    } else {
        Err(Errno::EFAULT)
    }
}

pub fn read_u32(pid: i32, addr: u64) -> Result<u32, Errno> {
    let mut b = [0u8; 4];
    read_mem(pid, addr, &mut b)?;
    Ok(u32::from_ne_bytes(b))
}

pub fn read_u64(pid: i32, addr: u64) -> Result<u64, Errno> {
    let mut b = [0u8; 8];
    read_mem(pid, addr, &mut b)?;
    Ok(u64::from_ne_bytes(b))
}

fn pidfd_open_flags(pid: i32, flags: libc::c_uint) -> Result<OwnedFd, Errno> {
    // SAFETY: plain syscall; on success the result is a new descriptor we own.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags) };
    if r < 0 {
        return Err(Errno::last());
    }
    // SAFETY: r is a fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// A pidfd for a thread-group leader.
pub fn pidfd_open(tgid: i32) -> Result<OwnedFd, Errno> {
    pidfd_open_flags(tgid, 0)
}

/// A pidfd for one thread (PIDFD_THREAD, Linux 6.9+): it still reaches the
/// process's descriptors after the thread-group leader has exited.
pub fn pidfd_open_thread(tid: i32) -> Result<OwnedFd, Errno> {
    const PIDFD_THREAD: libc::c_uint = libc::O_EXCL as libc::c_uint;
    pidfd_open_flags(tid, PIDFD_THREAD)
}

/// The tracer's own copy of descriptor `fd` of the process behind `pidfd`.
pub fn pidfd_getfd(pidfd: &OwnedFd, fd: i32) -> Result<OwnedFd, Errno> {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall; on success the result is a new descriptor we own.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if r < 0 {
        return Err(Errno::last());
    }
    // SAFETY: r is a fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// One field of /proc/TID/status (`key` with its colon), trimmed.
pub fn status_field(tid: i32, key: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_string())
}

/// Signals whose default action neither ends nor interrupts a process's
/// call: it ignores them, or stops the process (the call goes on after).
pub const NOT_ENDING: [i32; 8] = [
    libc::SIGCHLD,
    libc::SIGCONT,
    libc::SIGURG,
    libc::SIGWINCH,
    libc::SIGSTOP,
    libc::SIGTSTP,
    libc::SIGTTIN,
    libc::SIGTTOU,
];

/// Signal masks of a thread, from /proc/TID/status (bit N-1: signal N).
#[derive(Clone, Copy, Debug, Default)]
pub struct SigMasks {
    /// Pending for the thread, and for its process.
    pub pending: u64,
    pub shared: u64,
    pub blocked: u64,
    pub ignored: u64,
    pub caught: u64,
}

pub fn sig_masks(tid: i32) -> Option<SigMasks> {
    let s = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    let mask = |key: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    Some(SigMasks {
        pending: mask("SigPnd:"),
        shared: mask("ShdPnd:"),
        blocked: mask("SigBlk:"),
        ignored: mask("SigIgn:"),
        caught: mask("SigCgt:"),
    })
}

impl SigMasks {
    /// Whether a pending signal would interrupt a blocking call of the
    /// thread: not blocked, not ignored (explicitly, or by default:
    /// SIGCHLD, SIGCONT, SIGURG, SIGWINCH uncaught). A signal pending for
    /// the whole process counts too: its other threads may be waiting for
    /// the tracer themselves, and natively this one could take it.
    pub fn interrupting(&self) -> bool {
        let bit = |n: i32| 1u64 << (n - 1);
        let by_default = [libc::SIGCHLD, libc::SIGCONT, libc::SIGURG, libc::SIGWINCH]
            .iter()
            .fold(0u64, |m, &n| m | bit(n));
        let live = (self.pending | self.shared) & !self.blocked;
        live & !self.ignored & !(by_default & !self.caught) != 0
    }
}

/// The thread-group id of a thread, from /proc.
pub fn tgid_of(tid: i32) -> Option<i32> {
    status_field(tid, "Tgid:")?.parse().ok()
}

/// The parent process of `tid` (0 for none).
pub fn ppid_of(tid: i32) -> Option<i32> {
    status_field(tid, "PPid:")?.parse().ok()
}

/// The file-system uid of the task behind `pidfd` (PIDFD_GET_INFO, Linux
/// 6.13: one ioctl instead of reading /proc/PID/status); None on older
/// kernels.
pub fn pidfd_fsuid(pidfd: &OwnedFd) -> Option<u32> {
    use std::os::fd::AsRawFd;
    /// struct pidfd_info, its first version (64 bytes).
    #[repr(C)]
    #[derive(Default)]
    struct PidfdInfo {
        mask: u64,
        cgroupid: u64,
        pid: u32,
        tgid: u32,
        ppid: u32,
        ruid: u32,
        rgid: u32,
        euid: u32,
        egid: u32,
        suid: u32,
        sgid: u32,
        fsuid: u32,
        fsgid: u32,
        exit_code: i32,
    }
    const PIDFD_INFO_CREDS: u64 = 1 << 1;
    // _IOWR(PIDFS_IOCTL_MAGIC 0xFF, 11, struct pidfd_info), 64 bytes.
    const PIDFD_GET_INFO: libc::c_ulong = 0xC040_FF0B;
    let mut info = PidfdInfo {
        mask: PIDFD_INFO_CREDS,
        ..PidfdInfo::default()
    };
    // SAFETY: the kernel fills at most 64 bytes of a 64-byte local.
    let r = unsafe { libc::ioctl(pidfd.as_raw_fd(), PIDFD_GET_INFO, &mut info) };
    (r == 0 && info.mask & PIDFD_INFO_CREDS != 0).then_some(info.fsuid)
}

#[cfg(test)]
mod fsuid_tests {
    /// PIDFD_GET_INFO tells our own file-system uid (where the kernel has it).
    #[test]
    fn pidfd_fsuid_is_ours() {
        let me = super::pidfd_open(std::process::id() as i32).expect("pidfd_open");
        if let Some(uid) = super::pidfd_fsuid(&me) {
            // SAFETY: geteuid has no preconditions (fsuid follows euid here).
            assert_eq!(uid, unsafe { libc::geteuid() });
        }
        let thread = super::pidfd_open_thread(std::process::id() as i32);
        if let Ok(t) = thread {
            assert_eq!(super::pidfd_fsuid(&t), super::pidfd_fsuid(&me));
        }
    }
}
