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
//!    (/sys/fs/fuse/connections/N/abort), so the read fails and the call
//!    gets EFAULT;
//! 2. if that was not possible or did not help within another LIMIT, the
//!    process whose memory blocks is killed (SIGKILL): fail closed.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

/// How long one access may take before the watchdog steps in.
pub const LIMIT: Duration = Duration::from_millis(1000);
const TICK: Duration = Duration::from_millis(100);

/// Odd while an access is in progress; bumped at its start and end.
static SEQ: AtomicU64 = AtomicU64::new(0);
static TID: AtomicI32 = AtomicI32::new(0);
static ADDR: AtomicU64 = AtomicU64::new(0);

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
    loop {
        std::thread::sleep(TICK);
        let seq = SEQ.load(Ordering::Acquire);
        if seq.is_multiple_of(2) || seq != last {
            (last, held) = (seq, 0);
            continue;
        }
        held += 1;
        let (tid, addr) = (TID.load(Ordering::Relaxed), ADDR.load(Ordering::Relaxed));
        if held == ticks {
            let how = abort_fuse(tid, addr);
            log::warn!(
                "reading the arguments of thread {tid}'s call blocked for {} ms (address {addr:#x}{}); {}",
                LIMIT.as_millis(),
                how.as_ref().map_or(String::new(), |(p, _)| format!(" in {p}")),
                match how {
                    Some((_, true)) => "aborted that FUSE connection",
                    _ => "the process will be killed if it stays blocked",
                }
            );
        } else if held == 2 * ticks {
            let tgid = crate::remote::tgid_of(tid).unwrap_or(tid);
            log::warn!("killing process {tgid}: its memory blocks the tracer");
            // SAFETY: plain syscall; tgid is a traced process, not yet reaped
            // (the tracer thread, the only one that reaps, is blocked on it).
            unsafe { libc::kill(tgid, libc::SIGKILL) };
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

/// Abort the FUSE connection behind `addr`, if it is one. (path, aborted).
/// fusectl names connections by the device's minor number; when it is not
/// mounted at its usual place, it is mounted on a private directory for the
/// moment it takes (root only) and unmounted again.
fn abort_fuse(tid: i32, addr: u64) -> Option<(String, bool)> {
    let (path, (major, minor)) = mapping(tid, addr)?;
    // FUSE devices are anonymous (major 0).
    if major != 0 {
        return Some((path, false));
    }
    let usual = format!("/sys/fs/fuse/connections/{minor}/abort");
    if std::fs::write(&usual, b"1").is_ok() {
        return Some((path, true));
    }
    Some((path, abort_through_private_fusectl(minor)))
}

fn abort_through_private_fusectl(minor: u32) -> bool {
    let Ok(dir) = tempfile_dir() else {
        return false;
    };
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: valid NUL-terminated strings; a pseudo filesystem with no data.
    let mounted = unsafe {
        libc::mount(
            c"fusectl".as_ptr(),
            c.as_ptr(),
            c"fusectl".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        )
    } == 0;
    let done = mounted && std::fs::write(dir.join(format!("{minor}/abort")), b"1").is_ok();
    if mounted {
        // SAFETY: unmounting what we just mounted.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
    let _ = std::fs::remove_dir(&dir);
    done
}

/// A fresh private directory for fusectl.
fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    for i in 0..16u32 {
        let d = base.join(format!("appswitch-fusectl-{}-{i}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&d) {
            Ok(()) => return Ok(d),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::ErrorKind::AlreadyExists.into())
}
