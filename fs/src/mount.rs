//! Mounting, unmounting, the reaper of parked reads of dying readers, and `detach_stale`.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fuser::{MountOption, SessionACL};
use log::{debug, warn};
use nix::errno::Errno;
use nix::mount::{umount2, MntFlags};

use crate::fs::{Fs, Shared};
use crate::{Provider, SUBTYPE};

/// How often parked stream reads are checked for readers that are being killed.
const REAP_EVERY: Duration = Duration::from_millis(50);
/// How long `unmount` retries while files are open before it aborts the connection.
const UMOUNT_GRACE: Duration = Duration::from_millis(500);
/// How long `unmount` waits for the session thread to end.
const JOIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Options of [`mount`].
#[derive(Clone, Debug)]
pub struct MountOptions {
    /// Let users other than the mounting one see the mount (`allow_other`); the kernel
    /// still checks each file's mode and owner (`default_permissions`).
    pub allow_other: bool,
    /// Source name shown in /proc/mounts (no ',' or whitespace; empty => "controlfs").
    pub fsname: String,
}

/// A mounted filesystem, served by a background thread. Unmounts when dropped.
#[derive(Debug)]
pub struct Mounted {
    dir: PathBuf,
    dev: u64,
    shared: Arc<Shared>,
    unmounter: fuser::SessionUnmounter,
    session: Option<JoinHandle<io::Result<()>>>,
    session_done: mpsc::Receiver<()>,
    reaper: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

/// Mount `provider` at `dir` (created if missing) and serve it in a background thread.
pub fn mount(provider: Arc<dyn Provider>, dir: &Path, opts: MountOptions) -> io::Result<Mounted> {
    let fsname = if opts.fsname.is_empty() {
        SUBTYPE.to_string()
    } else {
        opts.fsname
    };
    if fsname.contains(|c: char| c == ',' || c.is_whitespace()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "fsname must not contain ',' or whitespace",
        ));
    }
    std::fs::create_dir_all(dir)?;
    let dir = dir.canonicalize()?;
    let shared = Arc::new(Shared::default());
    let fs = Fs::new(provider, shared.clone(), Arc::new(AtomicUsize::new(0)));
    let mut cfg = fuser::Config::default();
    cfg.mount_options = vec![
        MountOption::FSName(fsname),
        MountOption::CUSTOM(format!("subtype={SUBTYPE}")),
        MountOption::DefaultPermissions,
        MountOption::NoExec,
    ];
    cfg.acl = if opts.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    // As root, fuser opens /dev/fuse and calls mount(2) itself; it runs fusermount3 only
    // if mount(2) fails with EPERM. Session::new also completes the INIT handshake.
    let mut session = fuser::Session::new(fs, &dir, &cfg)?;
    let unmounter = session.unmount_callable();
    let (done_tx, session_done) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("controlfs".into())
        .spawn(move || {
            let r = session.run();
            let _ = done_tx.send(());
            r
        })?;
    let mut m = Mounted {
        dev: 0,
        dir,
        shared: shared.clone(),
        unmounter,
        session: Some(thread),
        session_done,
        reaper: None,
    };
    // Errors from here on drop `m`, which unmounts.
    m.dev = nix::sys::stat::stat(&m.dir)
        .map_err(io::Error::from)?
        .st_dev;
    m.reaper = Some(
        std::thread::Builder::new()
            .name("controlfs-reaper".into())
            .spawn(move || reap(&shared))?,
    );
    Ok(m)
}

impl Mounted {
    /// The (canonical) mount point.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Unmount and wait for the serving thread to end. Stream reads in progress get
    /// end-of-file; if files are still open the mount is aborted and detached.
    pub fn unmount(mut self) -> io::Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> io::Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        self.shared.shutdown();
        let mut result = self.umount();
        if let Some(r) = self.reaper.take() {
            let _ = r.join();
        }
        match self.session_done.recv_timeout(JOIN_TIMEOUT) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                let r = session
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("controlfs session panicked")));
                if let Err(e) = r {
                    debug!("controlfs: session ended with {e}");
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if result.is_ok() {
                    result = Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "controlfs session did not end after unmount",
                    ));
                }
            }
        }
        result
    }

    fn umount(&mut self) -> io::Result<()> {
        match nix::sys::stat::stat(&self.dir) {
            Ok(st) if st.st_dev == self.dev || self.dev == 0 => {}
            // Not ours any more (someone unmounted it): nothing to unmount here.
            Ok(_) | Err(Errno::ENOENT) => return Ok(()),
            Err(Errno::ENOTCONN) => {
                return umount2(&self.dir, MntFlags::MNT_DETACH).map_err(io::Error::from)
            }
            Err(e) => return Err(e.into()),
        }
        // fuser's own unmount first: it also disarms its unmount-on-drop,
        // which would otherwise try again when the session ends and warn
        // ("Failed to umount filesystem"). When it cannot (files still
        // open), ours below retries and then aborts.
        if self.unmounter.unmount().is_ok() {
            return Ok(());
        }
        let t = Instant::now();
        let r = loop {
            match umount2(&self.dir, MntFlags::empty()) {
                // Files still open: readers just told end-of-file are probably closing.
                Err(Errno::EBUSY) if t.elapsed() < UMOUNT_GRACE => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                r => break r,
            }
        }
        .or_else(|e| match e {
            // Still open: abort the connection (those files get ENOTCONN) and detach.
            Errno::EBUSY => umount2(&self.dir, MntFlags::MNT_FORCE | MntFlags::MNT_DETACH),
            e => Err(e),
        });
        match r {
            Ok(()) => Ok(()),
            // Not root: fuser unmounts through fusermount3.
            Err(Errno::EPERM) => self.unmounter.unmount(),
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            warn!("controlfs: unmount of {} failed: {e}", self.dir.display());
        }
    }
}

/// Answer, with EINTR, parked stream reads whose reader has a signal pending that it must
/// act on (a killing one, or one it handles): the kernel would otherwise keep such a
/// reader waiting (unkillable) until the next publish(). fuser answers FUSE_INTERRUPT with
/// ENOSYS, after which the kernel sends none, so this polls /proc instead.
fn reap(shared: &Shared) {
    let mut h = shared.lock();
    loop {
        if h.shutdown {
            return;
        }
        let readers = Shared::stream_readers(&h);
        if readers.is_empty() {
            h = shared.wake.wait(h).unwrap_or_else(|e| e.into_inner());
            continue;
        }
        drop(h);
        for (fh, hub) in readers {
            for p in hub.parked(fh) {
                if must_wake(p.pid) {
                    debug!(
                        "controlfs: reader {} signalled: its read ends with EINTR",
                        p.pid
                    );
                    hub.cancel(fh, p.unique, fuser::Errno::EINTR);
                }
            }
        }
        h = shared.lock();
        if h.shutdown {
            return;
        }
        h = match shared.wake.wait_timeout(h, REAP_EVERY) {
            Ok((h, _)) => h,
            Err(e) => e.into_inner().0,
        };
    }
}

/// Signals whose default action ends the process (term or core).
const FATAL_BY_DEFAULT: u64 = {
    let ignore_or_stop = [17u32, 18, 19, 20, 21, 22, 23, 28]; // CHLD CONT STOP TSTP TTIN TTOU URG WINCH
    let mut m = u64::MAX;
    let mut i = 0;
    while i < ignore_or_stop.len() {
        m &= !(1u64 << (ignore_or_stop[i] - 1));
        i += 1;
    }
    m
};

/// Whether thread `pid` has a pending, unblocked signal that it would act on if its read
/// returned: SIGKILL (also set by the kernel for any fatal signal), or, unless it is
/// ptraced, a signal that it handles or whose default action kills it.
fn must_wake(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    let status = match std::fs::read(format!("/proc/{pid}/status")) {
        Ok(s) => s,
        Err(e) => return e.kind() == io::ErrorKind::NotFound,
    };
    let field = |name: &str| -> u64 {
        status
            .split(|&b| b == b'\n')
            .find_map(|l| l.strip_prefix(name.as_bytes()))
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::trim)
            .and_then(|v| {
                if name == "TracerPid:" {
                    v.parse().ok()
                } else {
                    u64::from_str_radix(v, 16).ok()
                }
            })
            .unwrap_or(0)
    };
    let pending = field("SigPnd:") | field("ShdPnd:");
    let sigkill = 1u64 << (libc::SIGKILL - 1);
    if pending & sigkill != 0 {
        return true;
    }
    if field("TracerPid:") != 0 {
        return false;
    }
    let deliverable = pending & !field("SigBlk:") & !field("SigIgn:");
    deliverable & (field("SigCgt:") | FATAL_BY_DEFAULT) != 0
}

/// If `dir` is a dead FUSE mount (stat gives ENOTCONN) or a mount of this crate
/// (type fuse.controlfs, live or not), detach it (umount2 MNT_DETACH), repeatedly for
/// stacked mounts. Ok(true) if something was detached.
pub fn detach_stale(dir: &Path) -> io::Result<bool> {
    let mut detached = false;
    for _ in 0..16 {
        match nix::sys::stat::stat(dir) {
            Err(Errno::ENOTCONN) => {}
            Err(Errno::ENOENT) => return Ok(detached),
            Err(e) => return Err(e.into()),
            Ok(_) => {
                if !top_mount_is_ours(&dir.canonicalize()?)? {
                    return Ok(detached);
                }
            }
        }
        debug!("controlfs: detaching stale mount at {}", dir.display());
        umount2(dir, MntFlags::MNT_DETACH)?;
        detached = true;
    }
    Ok(detached)
}

/// Whether a live controlfs mount (its server answering) is at `dir`.
pub fn serving(dir: &Path) -> io::Result<bool> {
    match nix::sys::stat::stat(dir) {
        Ok(_) => top_mount_is_ours(&dir.canonicalize()?),
        Err(_) => Ok(false),
    }
}

/// Whether the topmost mount at `dir` (canonical) has type fuse.controlfs.
fn top_mount_is_ours(dir: &Path) -> io::Result<bool> {
    let info = std::fs::read("/proc/self/mountinfo")?;
    let want = dir.as_os_str().as_bytes();
    let mut ours = false;
    for line in info.split(|&b| b == b'\n') {
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == b"-") else {
            continue;
        };
        if fields.len() < 5 || fields.len() <= sep + 1 {
            continue;
        }
        if unescape(fields[4]) == want {
            ours = fields[sep + 1] == format!("fuse.{SUBTYPE}").as_bytes();
        }
    }
    Ok(ours)
}

/// Undo mountinfo's octal escapes (\040 for space, ...).
fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\'
            && i + 3 < s.len()
            && s[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((s[i + 1] - b'0') * 64 + (s[i + 2] - b'0') * 8 + (s[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}
