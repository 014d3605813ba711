//! The pidfds through which the tracer borrows a calling thread's
//! descriptors (pidfd_getfd).
//!
//! Always through the calling thread's own pidfd (PIDFD_THREAD, Linux 6.9+):
//! a thread may have a descriptor table of its own (unshare(CLONE_FILES), or
//! cloned without CLONE_FILES), and the leader may have exited. pidfds are
//! cached per thread up to a budget of the tracer's descriptors; past it a
//! pidfd is opened for the call and closed after, so a program with many
//! threads never makes the tracer run out of descriptors.
//!
//! Kernels without PIDFD_THREAD: the process's pidfd, and a call from a
//! thread whose table is not the leader's (kcmp) fails closed with EPERM.

use crate::idmap::IdMap;
use crate::remote;
use nix::errno::Errno;
use std::os::fd::OwnedFd;

const KCMP_FILES: libc::c_int = 2;

pub(crate) struct Pidfds {
    by_tid: IdMap<i32, OwnedFd>,
    by_tgid: IdMap<i32, OwnedFd>,
    budget: usize,
    /// None until the first open tells whether the kernel has PIDFD_THREAD.
    thread_pidfds: Option<bool>,
}

/// The tracer's soft descriptor limit (1024 if unknown, at most 2^20).
pub(crate) fn soft_nofile() -> usize {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into rl.
    let cur = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0 {
        rl.rlim_cur
    } else {
        1024
    };
    cur.min(1 << 20) as usize
}

/// How many pidfds to keep open: half of what the tracer may open.
fn budget() -> usize {
    (soft_nofile() / 2).saturating_sub(64)
}

fn same_files(a: i32, b: i32) -> bool {
    // SAFETY: plain syscall, no pointers.
    unsafe { libc::syscall(libc::SYS_kcmp, a, b, KCMP_FILES, 0, 0) == 0 }
}

impl Pidfds {
    pub(crate) fn new() -> Pidfds {
        Pidfds {
            by_tid: IdMap::default(),
            by_tgid: IdMap::default(),
            budget: budget(),
            thread_pidfds: None,
        }
    }

    /// The file-system uid of thread `tid`, from its cached pidfd when the
    /// kernel tells (PIDFD_GET_INFO), else from /proc.
    pub(crate) fn fsuid(&self, tid: i32) -> Option<u32> {
        self.by_tid
            .get(&tid)
            .and_then(remote::pidfd_fsuid)
            .or_else(|| {
                remote::status_field(tid, "Uid:")?
                    .split_whitespace()
                    .nth(3)?
                    .parse()
                    .ok()
            })
    }

    /// The tracer's copy of descriptor `fd` as thread `tid` of `tgid` sees it.
    pub(crate) fn getfd(&mut self, tgid: i32, tid: i32, fd: i32) -> Result<OwnedFd, Errno> {
        match self.getfd_once(tgid, tid, fd) {
            // Our own table is full: let go of the cache and try once more.
            Err(Errno::EMFILE | Errno::ENFILE) => {
                self.by_tid.clear();
                self.by_tgid.clear();
                self.getfd_once(tgid, tid, fd)
            }
            r => r,
        }
    }

    fn getfd_once(&mut self, tgid: i32, tid: i32, fd: i32) -> Result<OwnedFd, Errno> {
        if self.thread_pidfds != Some(false) {
            if let Some(p) = self.by_tid.get(&tid) {
                return remote::pidfd_getfd(p, fd);
            }
            match remote::pidfd_open_thread(tid) {
                Ok(p) => {
                    self.thread_pidfds = Some(true);
                    let got = remote::pidfd_getfd(&p, fd);
                    if self.by_tid.len() < self.budget {
                        self.by_tid.insert(tid, p);
                    }
                    return got;
                }
                Err(Errno::EINVAL) if self.thread_pidfds.is_none() => {
                    self.thread_pidfds = Some(false);
                }
                Err(e) => return Err(e),
            }
        }
        if tid != tgid && !same_files(tgid, tid) {
            log::warn!("thread {tid} has a descriptor table of its own; this kernel has no PIDFD_THREAD: call refused");
            return Err(Errno::EPERM);
        }
        if let Some(p) = self.by_tgid.get(&tgid) {
            return remote::pidfd_getfd(p, fd);
        }
        let p = remote::pidfd_open(tgid)?;
        let got = remote::pidfd_getfd(&p, fd);
        if self.by_tgid.len() < self.budget {
            self.by_tgid.insert(tgid, p);
        }
        got
    }

    /// Drop the cached pidfds of threads that have exited (a PIDFD_THREAD
    /// pidfd is readable then), in one poll; their tids. Under user
    /// notification no exit is reported, so this runs with the process
    /// scans.
    pub(crate) fn prune_exited(&mut self) -> Vec<i32> {
        use std::os::fd::AsRawFd;
        let mut polled: Vec<(i32, libc::pollfd)> = self
            .by_tid
            .iter()
            .map(|(tid, fd)| {
                let p = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                (*tid, p)
            })
            .collect();
        let mut fds: Vec<libc::pollfd> = polled.iter().map(|p| p.1).collect();
        // SAFETY: fds is a valid array of pollfds; zero timeout.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
        if n <= 0 {
            return Vec::new();
        }
        for (p, f) in polled.iter_mut().zip(&fds) {
            p.1.revents = f.revents;
        }
        let gone: Vec<i32> = polled
            .iter()
            .filter(|p| p.1.revents != 0)
            .map(|p| p.0)
            .collect();
        for tid in &gone {
            self.by_tid.remove(tid);
        }
        gone
    }

    /// A thread exited or exec'd: its pidfd is no longer wanted.
    pub(crate) fn forget_thread(&mut self, tid: i32) {
        self.by_tid.remove(&tid);
        self.by_tgid.remove(&tid);
    }
}
