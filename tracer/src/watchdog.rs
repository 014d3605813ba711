//! Reads of a program's memory that block must not freeze the tracer.
//!
//! The tracer reads a call's arguments with process_vm_readv, which faults
//! the pages in: memory backed by a FUSE file whose server never answers
//! (possibly the program itself) would hold the tracer thread, and with it
//! every traced process. (userfaultfd, the other way to make memory block,
//! is refused by the filter.) Every read and write of program memory
//! announces itself here with two atomic stores; a watchdog thread that
//! sees the same access outstanding for [`LIMIT`] unblocks it:
//! 1. the FUSE connection behind the address is aborted through fusectl
//!    (N/abort, mounted by a child in a mount namespace of its own, so
//!    nothing stays mounted), so the read fails and the call gets EFAULT;
//! 2. if that was not possible or did not help within another LIMIT, the
//!    process whose memory blocks is killed (SIGKILL): fail closed;
//! 3. if the process was already gone (its memory map with it) and the read
//!    still blocks a LIMIT later, every FUSE connection with requests
//!    waiting is aborted.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

/// How long one access may take before the watchdog steps in.
pub const LIMIT: Duration = Duration::from_millis(1000);
const TICK: Duration = Duration::from_millis(100);

/// Odd while an access is in progress; bumped at its start and end.
static SEQ: AtomicU64 = AtomicU64::new(0);
static TID: AtomicI32 = AtomicI32::new(0);
static ADDR: AtomicU64 = AtomicU64::new(0);
/// Set when an access was held for [`LIMIT`]: signals sent meanwhile are
/// waiting in stops the tracer has not seen (see [`take_held`]).
static HELD: AtomicBool = AtomicBool::new(false);

/// An access of thread `tid`'s memory at `addr` starts.
#[inline]
pub fn begin(tid: i32, addr: u64) {
    TID.store(tid, Ordering::Relaxed);
    ADDR.store(addr, Ordering::Relaxed);
    SEQ.fetch_add(1, Ordering::Release);
}

/// The access ended.
#[inline]
pub fn end() {
    SEQ.fetch_add(1, Ordering::Release);
}

/// Whether an access is in progress (the tracer thread may be held).
/// Async-signal-safe.
#[inline]
pub fn busy() -> bool {
    SEQ.load(Ordering::Acquire) % 2 == 1
}

/// Whether an access was held since the last call (and clear it). The
/// ptrace tracer asks before resuming a thread: while it was held, other
/// threads may have stopped with a signal (a SIGTERM the user sent), and
/// those must reach the program before the held thread runs on (it would
/// otherwise race the signal: `tracer.rs`, `deliver_held_signals`).
#[inline]
pub fn take_held() -> bool {
    HELD.load(Ordering::Relaxed) && HELD.swap(false, Ordering::AcqRel)
}

/// Start the watchdog thread (once per process).
pub fn start() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("appswitch-watchdog".into())
            .spawn(watch);
        if let Err(e) = spawned {
            log::warn!("no watchdog for blocking memory reads: {e}");
        }
    });
}

fn watch() {
    let ticks = (LIMIT.as_millis() / TICK.as_millis()) as u32;
    let (mut last, mut held) = (0u64, 0u32);
    // Where the held address lives, looked up early: the process may be
    // gone from /proc by the time the limit is reached.
    let mut place: Option<(String, (u32, u32))> = None;
    loop {
        std::thread::sleep(TICK);
        let seq = SEQ.load(Ordering::Acquire);
        if seq.is_multiple_of(2) || seq != last {
            (last, held, place) = (seq, 0, None);
            continue;
        }
        held += 1;
        let (tid, addr) = (TID.load(Ordering::Relaxed), ADDR.load(Ordering::Relaxed));
        if place.is_none() {
            place = mapping(tid, addr);
        }
        if held == ticks {
            HELD.store(true, Ordering::Release);
            let aborted = abort_fuse(place.as_ref());
            log::warn!(
                "reading the arguments of thread {tid}'s call blocked for {} ms (address {addr:#x}{}); {}",
                LIMIT.as_millis(),
                place.as_ref().map_or(String::new(), |(p, _)| format!(" in {p}")),
                if aborted {
                    "aborted that FUSE connection"
                } else {
                    "the process will be killed if it stays blocked"
                }
            );
        } else if held == 2 * ticks {
            let tgid = crate::remote::tgid_of(tid).unwrap_or(tid);
            log::warn!("killing process {tgid}: its memory blocks the tracer");
            // SAFETY: plain syscall; tgid is a traced process, not yet reaped
            // (the tracer thread, the only one that reaps, is blocked on it).
            unsafe { libc::kill(tgid, libc::SIGKILL) };
        } else if held == 3 * ticks && place.is_none() {
            // The process is gone and took its memory map with it: whatever
            // FUSE connection has requests waiting is the one holding us.
            if abort_waiting_fuse() {
                log::warn!(
                    "aborted the FUSE connections with requests waiting: the tracer was held"
                );
            }
        }
    }
}

/// The mapping holding `addr` in `tid`'s address space: (path, device).
fn mapping(tid: i32, addr: u64) -> Option<(String, (u32, u32))> {
    let maps = std::fs::read_to_string(format!("/proc/{tid}/maps")).ok()?;
    maps.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (lo, hi) = f.next()?.split_once('-')?;
        let (lo, hi) = (
            u64::from_str_radix(lo, 16).ok()?,
            u64::from_str_radix(hi, 16).ok()?,
        );
        if addr < lo || addr >= hi {
            return None;
        }
        let dev = f.nth(2)?;
        let (maj, min) = dev.split_once(':')?;
        let dev = (
            u32::from_str_radix(maj, 16).ok()?,
            u32::from_str_radix(min, 16).ok()?,
        );
        let path = f.nth(1).unwrap_or("").to_string();
        Some((path, dev))
    })
}

/// Abort the FUSE connection of `place`, if it is one. Whether it was.
fn abort_fuse(place: Option<&(String, (u32, u32))>) -> bool {
    // FUSE devices are anonymous (major 0); fusectl names them by minor.
    let Some((_, (0, minor))) = place else {
        return false;
    };
    in_private_fusectl(Some(*minor))
}

/// Abort every FUSE connection that has requests waiting.
fn abort_waiting_fuse() -> bool {
    in_private_fusectl(None)
}

/// In a child with a mount namespace of its own (so nothing is left mounted
/// whatever happens), mount fusectl and abort connection `minor`, or every
/// connection with requests waiting. Root only; true if the child says it
/// aborted something. Only async-signal-safe calls between fork and _exit.
fn in_private_fusectl(minor: Option<u32>) -> bool {
    let dir = c"/sys/fs/fuse/connections";
    let mut name = [0u8; 16];
    let n = minor.map_or(0, |m| {
        let s = m.to_string();
        name[..s.len()].copy_from_slice(s.as_bytes());
        s.len()
    });
    // SAFETY: fork; the child makes only raw system calls on stack buffers
    // prepared before it, then _exits.
    unsafe {
        let pid = libc::fork();
        if pid < 0 {
            return false;
        }
        if pid == 0 {
            let ok = libc::unshare(libc::CLONE_NEWNS) == 0
                && libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) == 0
                && libc::mount(
                    c"fusectl".as_ptr(),
                    dir.as_ptr(),
                    c"fusectl".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    std::ptr::null(),
                ) == 0;
            if !ok {
                libc::_exit(1);
            }
            let d = libc::open(dir.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
            let aborted = if n > 0 {
                abort_one(d, &name[..n])
            } else {
                abort_all_waiting(d)
            };
            libc::_exit(if aborted { 0 } else { 1 });
        }
        let mut status = 0;
        // The tracer thread's waitpid(__WALL) may reap the child first.
        let r = libc::waitpid(pid, &mut status, libc::__WALL);
        r == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
    }
}

/// `conn` then `suffix` (NUL-terminated) into `path`; false if too long.
fn join(path: &mut [u8; 64], conn: &[u8], suffix: &[u8]) -> bool {
    if conn.len() + suffix.len() > path.len() {
        return false;
    }
    path[..conn.len()].copy_from_slice(conn);
    path[conn.len()..conn.len() + suffix.len()].copy_from_slice(suffix);
    true
}

/// Write "1" to `<conn>/abort` under directory fd `d`. Async-signal-safe.
unsafe fn abort_one(d: i32, conn: &[u8]) -> bool {
    let mut path = [0u8; 64];
    if !join(&mut path, conn, b"/abort\0") {
        return false;
    }
    let fd = libc::openat(d, path.as_ptr().cast(), libc::O_WRONLY);
    if fd < 0 {
        return false;
    }
    let ok = libc::write(fd, b"1".as_ptr().cast(), 1) == 1;
    libc::close(fd);
    ok
}

/// Abort each connection under `d` whose `waiting` count is not zero.
/// Async-signal-safe (getdents64 on a stack buffer).
unsafe fn abort_all_waiting(d: i32) -> bool {
    let mut buf = [0u8; 4096];
    let mut any = false;
    loop {
        let n = libc::syscall(libc::SYS_getdents64, d, buf.as_mut_ptr(), buf.len());
        if n <= 0 {
            return any;
        }
        let mut at = 0usize;
        while at + 19 < n as usize {
            let reclen = u16::from_ne_bytes([buf[at + 16], buf[at + 17]]) as usize;
            if reclen == 0 {
                break;
            }
            let name = &buf[at + 19..at + reclen];
            let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            let name = &name[..len];
            if !name.is_empty() && name.iter().all(u8::is_ascii_digit) && waiting(d, name) {
                any |= abort_one(d, name);
            }
            at += reclen;
        }
    }
}

/// Whether `<conn>/waiting` under `d` is above zero. Async-signal-safe.
unsafe fn waiting(d: i32, conn: &[u8]) -> bool {
    let mut path = [0u8; 64];
    if !join(&mut path, conn, b"/waiting\0") {
        return false;
    }
    let fd = libc::openat(d, path.as_ptr().cast(), libc::O_RDONLY);
    if fd < 0 {
        return false;
    }
    let mut v = [0u8; 16];
    let r = libc::read(fd, v.as_mut_ptr().cast(), v.len());
    libc::close(fd);
    r > 0 && v[..r as usize].iter().any(|b| (b'1'..=b'9').contains(b))
}
