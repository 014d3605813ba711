//! Signals sent to the trace process, passed on to the traced programs.
//!
//! - Only signals a user sent (kill, sigqueue): a terminal's ^C or ^\
//!   already reaches the program through its process group.
//! - Not for a signal that was ignored when we started (`nohup`, a shell's
//!   background job): it stays ignored, and the program inherits that.
//! - Not for a signal sent by a traced process: the program's direct
//!   `kill $PPID` is redirected to our parent at the call (see
//!   `proc_calls`), so one arriving here was sent to a process group the
//!   program is in, and reached everyone natively.
//! - To the main program while it lives; after it exited, to every live
//!   traced process. A target must be traced by us at the moment of the
//!   send: it is pinned with a pidfd, then its TracerPid checked, so a pid
//!   reused by another process is never signalled.
//!
//! The list of traced processes is written by the tracer thread (slots
//! claimed by compare-and-swap) and read lock-free by the handler (any thread).

use std::sync::atomic::{AtomicI32, AtomicPtr, Ordering};

/// The signals forwarded.
pub const FORWARDED: [i32; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// The main program's pid while it lives (0 otherwise).
static MAIN: AtomicI32 = AtomicI32::new(0);

/// Forwarded signals that arrived before the program existed (while it was
/// being started): one bit per signal number, delivered by [`set_main`].
static EARLY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Set once the program exists (MAIN goes back to 0 when it exits, while
/// other processes of it may live on).
static STARTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

const CHUNK: usize = 256;

/// A fixed block of slots (0 = free); more are chained as needed and never freed.
struct Chunk {
    slots: [AtomicI32; CHUNK],
    next: AtomicPtr<Chunk>,
}

impl Chunk {
    const fn new() -> Chunk {
        Chunk {
            slots: [const { AtomicI32::new(0) }; CHUNK],
            next: AtomicPtr::new(std::ptr::null_mut()),
        }
    }
}

static LIVE: Chunk = Chunk::new();

fn chunks() -> impl Iterator<Item = &'static Chunk> {
    let mut cur: Option<&'static Chunk> = Some(&LIVE);
    std::iter::from_fn(move || {
        let c = cur?;
        let next = c.next.load(Ordering::Acquire);
        // SAFETY: chunks are leaked boxes, never freed.
        cur = unsafe { next.as_ref() };
        Some(c)
    })
}

/// A traced process (thread-group leader) started. Written by the tracer
/// thread; a slot is claimed by compare-and-swap all the same, so a second
/// writer (tests run in parallel, an attach thread) never overwrites a pid.
pub(crate) fn track(pid: i32) {
    if pid <= 0 {
        return;
    }
    loop {
        let mut last = &LIVE;
        for c in chunks() {
            for s in &c.slots {
                if s.load(Ordering::Relaxed) == 0
                    && s.compare_exchange(0, pid, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                {
                    return;
                }
            }
            last = c;
        }
        let fresh = Box::into_raw(Box::new(Chunk::new()));
        // SAFETY: `fresh` was just allocated and is not shared yet.
        unsafe { (*fresh).slots[0].store(pid, Ordering::Relaxed) };
        match last.next.compare_exchange(
            std::ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return,
            // Another writer chained one first: ours was never shared.
            // SAFETY: `fresh` came from Box::into_raw above.
            Err(_) => drop(unsafe { Box::from_raw(fresh) }),
        }
    }
}

/// A traced thread exited (if it led a tracked process, it is gone). Tracer thread only.
pub(crate) fn untrack(pid: i32) {
    let _ = MAIN.compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Relaxed);
    for c in chunks() {
        for s in &c.slots {
            if s.load(Ordering::Relaxed) == pid {
                let _ = s.compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Relaxed);
            }
        }
    }
}

/// The processes in the list now (for tests and diagnostics).
#[cfg(test)]
pub(crate) fn tracked() -> Vec<i32> {
    chunks()
        .flat_map(|c| c.slots.iter().map(|s| s.load(Ordering::Acquire)))
        .filter(|&p| p > 0)
        .collect()
}

pub(crate) fn set_main(pid: i32) {
    // Listed first: a handler that sees STARTED finds it in the list.
    track(pid);
    MAIN.store(pid, Ordering::Release);
    STARTED.store(true, Ordering::Release);
    // A signal sent to trace while the program was being started goes to
    // it now, as it would have had it arrived a moment later.
    let early = EARLY.swap(0, Ordering::AcqRel);
    for sig in 1..64 {
        if early & (1 << sig) != 0 {
            send_to_tracee(pid, sig);
        }
    }
}

/// Set when the user-notification backend runs: there is no TracerPid,
/// and a process is ours when it is in the list (kept by the supervisor
/// from the pidfds it watches).
static NOTIFY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub(crate) fn set_notify_backend() {
    NOTIFY.store(true, Ordering::Release);
}

fn listed(pid: i32) -> bool {
    chunks().any(|c| c.slots.iter().any(|s| s.load(Ordering::Acquire) == pid))
}

/// Whether `pid` is traced by this process now: its /proc status says
/// TracerPid is us (under user notification: it is in our list).
/// Async-signal-safe (open/read/close on stack buffers).
pub fn traced_by_us(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    if NOTIFY.load(Ordering::Acquire) {
        // SAFETY: getpid has no preconditions.
        return pid != unsafe { libc::getpid() } && listed(pid);
    }
    let mut path = [0u8; 32];
    let mut n = 0;
    for b in b"/proc/" {
        path[n] = *b;
        n += 1;
    }
    n += write_decimal(&mut path[n..], pid as u32);
    for b in b"/status\0" {
        path[n] = *b;
        n += 1;
    }
    let mut buf = [0u8; 1024];
    // SAFETY: open/read/close are async-signal-safe; buffers are locals.
    let len = unsafe {
        let fd = libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return false;
        }
        let mut len = 0usize;
        while len < buf.len() {
            let r = libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len);
            if r <= 0 {
                break;
            }
            len += r as usize;
        }
        libc::close(fd);
        len
    };
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    tracer_pid(&buf[..len]) == Some(me)
}

/// The TracerPid field of a /proc/PID/status text.
fn tracer_pid(status: &[u8]) -> Option<i32> {
    const KEY: &[u8] = b"\nTracerPid:";
    let at = status.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let mut v: i32 = 0;
    let mut seen = false;
    for &b in &status[at..] {
        match b {
            b' ' | b'\t' if !seen => {}
            b'0'..=b'9' => {
                v = v.checked_mul(10)?.checked_add(i32::from(b - b'0'))?;
                seen = true;
            }
            _ => break,
        }
    }
    seen.then_some(v)
}

fn write_decimal(out: &mut [u8], mut v: u32) -> usize {
    let mut tmp = [0u8; 10];
    let mut n = 0;
    loop {
        tmp[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for i in 0..n {
        out[i] = tmp[n - 1 - i];
    }
    n
}

/// Send `sig` to `pid` only if it is, at the moment of sending, a process
/// we trace. Async-signal-safe. True if sent.
pub fn send_to_tracee(pid: i32, sig: i32) -> bool {
    // SAFETY: raw system calls on integers; the pidfd is closed here.
    unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
        if fd < 0 {
            // Kernels before 5.3: the check alone.
            return *libc::__errno_location() == libc::ENOSYS
                && traced_by_us(pid)
                && libc::kill(pid, sig) == 0;
        }
        // The pidfd pins the process: if it is ours now, the signal goes to
        // it (or nowhere, had it died meanwhile), never to a successor.
        let ok = traced_by_us(pid)
            && libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd,
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            ) == 0;
        libc::close(fd);
        ok
    }
}

extern "C" fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to SA_SIGINFO handlers;
    // errno is saved and restored around the calls below.
    unsafe {
        let errno = *libc::__errno_location();
        let (code, sender) = ((*info).si_code, (*info).si_pid());
        if code <= 0 && !(sender > 0 && sender != libc::getpid() && traced_by_us(sender)) {
            deliver(sig);
        }
        *libc::__errno_location() = errno;
    }
}

/// Under user notification: the pipe the handler writes each forwarded
/// signal to, for the supervisor to deliver (it knows when the main program
/// has gone and which processes are left; see unotify/procs.rs).
static ROUTE: AtomicI32 = AtomicI32::new(-1);

pub(crate) fn route_to(fd: i32) {
    ROUTE.store(fd, Ordering::Release);
}

/// To the main program, or once it has gone, to every live traced process.
fn deliver(sig: i32) {
    let route = ROUTE.load(Ordering::Acquire);
    // The supervisor delivers, unless it is in the middle of reading a
    // program's memory (which may block: watchdog.rs): then here, at once.
    if route >= 0 && !crate::watchdog::busy() {
        let b = [sig as u8];
        // SAFETY: write is async-signal-safe; a one-byte local buffer.
        unsafe { libc::write(route, b.as_ptr().cast(), 1) };
        return;
    }
    let main = MAIN.load(Ordering::Acquire);
    if main > 0 && send_to_tracee(main, sig) {
        return;
    }
    if main == 0 && !STARTED.load(Ordering::Acquire) && (1..64).contains(&sig) {
        // No program yet: kept for it.
        EARLY.fetch_or(1 << sig, Ordering::AcqRel);
        if !STARTED.load(Ordering::Acquire) {
            return;
        }
        // It appeared meanwhile: whoever takes the bit back delivers it
        // (set_main, or here), once.
        if EARLY.fetch_and(!(1 << sig), Ordering::AcqRel) & (1 << sig) == 0
            || send_to_tracee(MAIN.load(Ordering::Acquire), sig)
        {
            return;
        }
    }
    for c in chunks() {
        for s in &c.slots {
            let pid = s.load(Ordering::Acquire);
            if pid > 0 {
                send_to_tracee(pid, sig);
            }
        }
    }
}

/// Install the forwarding handler for each forwarded signal that was not
/// ignored when this process started.
pub(crate) fn install_forwarding() {
    for sig in FORWARDED {
        if crate::inherited::was_ignored(sig) {
            continue;
        }
        // SAFETY: installing a handler that only calls async-signal-safe code.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = forward as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Block the forwarded signals in the calling thread (the tracer's), so
/// their handler runs on another thread: one whose access to a program's
/// memory blocks (watchdog.rs) must not hold SIGTERM back. Call after the
/// watchdog thread exists; the program's mask is restored before exec
/// (inherited.rs).
pub(crate) fn keep_off_this_thread() {
    // SAFETY: a local sigset, filled and passed by pointer.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in FORWARDED {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn parses_tracer_pid() {
        let s = b"Name:\tsh\nState:\tS\nTracerPid:\t4242\nUid:\t0\n";
        assert_eq!(tracer_pid(s), Some(4242));
        assert_eq!(tracer_pid(b"Name:\tx\nTracerPid:\t0\n"), Some(0));
        assert_eq!(tracer_pid(b"Name:\tx\n"), None);
        let mut b = [0u8; 10];
        let n = write_decimal(&mut b, 4_194_304);
        assert_eq!(&b[..n], b"4194304");
    }

    /// A stale entry (a pid that is now some other, untraced process) is
    /// never signalled, whether it is the main program or in the list.
    #[test]
    fn stale_pid_is_never_signalled() {
        let mut sleeper = Command::new("sleep").arg("30").spawn().expect("sleep");
        let pid = sleeper.id() as i32;
        assert!(!traced_by_us(pid));
        assert!(!send_to_tracee(pid, libc::SIGTERM));
        track(pid);
        MAIN.store(pid, Ordering::Release);
        deliver(libc::SIGTERM);
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(
            sleeper.try_wait().expect("try_wait").is_none(),
            "an untraced process got the signal"
        );
        assert!(tracked().contains(&pid));
        untrack(pid);
        assert!(!tracked().contains(&pid));
        assert_eq!(MAIN.load(Ordering::Acquire), 0);
        let _ = sleeper.kill();
        let _ = sleeper.wait();
    }

    #[test]
    fn list_grows_past_a_chunk() {
        let base = 1 << 30;
        for i in 0..(CHUNK as i32 + 10) {
            track(base + i);
        }
        let t = tracked();
        assert!((0..(CHUNK as i32 + 10)).all(|i| t.contains(&(base + i))));
        for i in 0..(CHUNK as i32 + 10) {
            untrack(base + i);
        }
        assert!(!tracked().iter().any(|&p| p >= base));
    }
}
