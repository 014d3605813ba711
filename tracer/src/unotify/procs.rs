//! The processes of the program under user notification. There are no
//! fork or exec events, so a process is known:
//! - from its first trapped call (its parent read from /proc then), or
//! - from a scan of /proc for our descendants (trace is a subreaper, so
//!   orphans stay in the tree): once a second, and when the main program
//!   exits (signals for the program then go to every process left).
//!
//! A known process is watched through a pidfd until it exits (within a
//! budget of descriptors; past it, the scans notice its exit). Its exec is
//! known from the execve notification (answered CONTINUE) and reported once
//! it has happened: at the next call from that process (or its
//! prctl(PR_SET_NAME)) that finds its auxiliary vector changed (a new image
//! has a new one). Until then the old name stands: a sibling thread's call
//! while the exec is under way does not count, and an exec that failed is
//! known when the thread that made it calls again.

use super::TAG_PROC;
use crate::call::{NetHandler, ProcessEvent};
use crate::idmap::IdMap;
use crate::remote;
use crate::signals;
use crate::tracer::{ExitStatus, Tracer};
use std::collections::HashSet;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// How often /proc is scanned for processes no call made known.
const SCAN: Duration = Duration::from_secs(1);

#[derive(Default)]
pub(crate) struct Procs {
    /// Known processes, with their pidfd when watched.
    known: IdMap<i32, Option<OwnedFd>>,
    watched: usize,
    /// Execs under way: process -> (the thread that called it, its
    /// auxiliary vector's hash then).
    exec: IdMap<i32, (i32, u64)>,
    last_scan: Option<Instant>,
    /// Attached (attach.rs): the program's main process, whose subtree is
    /// scanned instead of ours, and how many seccomp filters a process of
    /// it has at least once under ours (children it had before the attach
    /// have fewer: they are not under the filter, so not ours).
    root: Option<(i32, u32)>,
}

/// How many seccomp filters process `pid` has (/proc/PID/status).
pub(crate) fn filter_count(pid: i32) -> Option<u32> {
    remote::status_field(pid, "Seccomp_filters:")?.parse().ok()
}

impl Procs {
    /// Scan below the attached program `main` rather than below us.
    pub(crate) fn root_at(&mut self, main: i32) {
        self.root = Some((main, filter_count(main).unwrap_or(1)));
    }

    pub(crate) fn exec_pending(&mut self, tgid: i32, tid: i32) {
        self.exec.insert(tgid, (tid, auxv_hash(tgid)));
    }
}

/// A hash of /proc/PID/auxv (0 if unreadable): it changes with every exec.
fn auxv_hash(pid: i32) -> u64 {
    let Ok(b) = std::fs::read(format!("/proc/{pid}/auxv")) else {
        return 0;
    };
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// How many processes may be watched by pidfd: a quarter of our soft
/// descriptor limit (thread pidfds and borrowed sockets need the rest).
fn watch_budget() -> usize {
    crate::pidfds::soft_nofile() / 4
}

/// pid and parent of /proc/PID/stat ("pid (name) state ppid ...").
fn stat_of(pid: i32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name may hold spaces and parentheses: skip past the last ')'.
    let (_, rest) = s.rsplit_once(')')?;
    let mut f = rest.split_whitespace();
    let state = f.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    f.next()?.parse().ok()
}

/// The parent of `pid`, or 0.
fn parent_of(pid: i32) -> i32 {
    stat_of(pid).unwrap_or(0)
}

/// The children of `pid` (every thread's: /proc/PID/task/TID/children).
fn children_of(pid: i32, out: &mut Vec<i32>) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for t in tasks.flatten() {
        let mut path = t.path();
        path.push("children");
        if let Ok(list) = std::fs::read_to_string(&path) {
            out.extend(
                list.split_whitespace()
                    .filter_map(|c| c.parse::<i32>().ok()),
            );
        }
    }
}

/// Every live process below us (pid, parent), parents first. Only our
/// subtree is read (not all of /proc), so the cost follows the program's
/// size, not the machine's.
fn descendants(root: Option<(i32, u32)>) -> Vec<(i32, i32)> {
    let me = root.map_or(std::process::id() as i32, |r| r.0);
    let mut out = Vec::new();
    let mut stack = vec![me];
    let mut kids = Vec::new();
    // Bounded: a tree larger than this is scanned in part (the rest is
    // found by its calls).
    while let Some(p) = stack.pop() {
        if out.len() > 1 << 16 {
            break;
        }
        kids.clear();
        children_of(p, &mut kids);
        for &c in &kids {
            if root.is_some_and(|(_, n)| filter_count(c).is_none_or(|m| m < n)) {
                // Started before the attach: not under our filter.
                continue;
            }
            out.push((c, p));
            stack.push(c);
        }
    }
    out
}

fn status_of(raw: i32) -> ExitStatus {
    if libc::WIFSIGNALED(raw) {
        ExitStatus::Signal(libc::WTERMSIG(raw))
    } else {
        ExitStatus::Code(libc::WEXITSTATUS(raw))
    }
}

impl<H: NetHandler> Tracer<'_, H> {
    /// Watch `pid` until it exits.
    pub(crate) fn known_process(&mut self, pid: i32) {
        let st = self.st();
        let mut fd = None;
        if st.procs.watched < watch_budget() {
            if let Ok(p) = remote::pidfd_open(pid) {
                let token = TAG_PROC | pid as u32 as u64;
                if st.watch(p.as_raw_fd(), libc::EPOLLIN as u32, token).is_ok() {
                    st.procs.watched += 1;
                    fd = Some(p);
                }
            }
        }
        st.procs.known.insert(pid, fd);
        signals::track(pid);
    }

    /// The nearest ancestor of a process whose parent is `parent` that we
    /// know (processes that make no trapped call are not known yet).
    fn known_ancestor(&mut self, parent: i32) -> Option<i32> {
        let me = std::process::id() as i32;
        let mut p = parent;
        for _ in 0..64 {
            if self.st().procs.known.contains_key(&p) {
                return Some(p);
            }
            if p <= 1 || p == me {
                return None;
            }
            p = parent_of(p);
        }
        None
    }

    /// A process new to us (from a call or a scan).
    fn new_process(&mut self, pid: i32, parent: i32) {
        // Its Landlock domain is its nearest known ancestor's.
        match self.known_ancestor(parent) {
            Some(a) => self.landlock.fork(a, pid),
            None => self.landlock.orphan(pid),
        }
        self.handler.process(ProcessEvent::Spawned { pid, parent });
        self.known_process(pid);
    }

    /// A trapped call from process `tgid`: a process new to us, or the
    /// first call after its exec.
    pub(crate) fn seen(&mut self, tgid: i32, tid: i32) {
        let st = self.st();
        if !st.procs.known.contains_key(&tgid) {
            let parent = parent_of(tgid);
            return self.new_process(tgid, parent);
        }
        let Some(&(exec_tid, before)) = st.procs.exec.get(&tgid) else {
            return;
        };
        let done = auxv_hash(tgid) != before;
        if !done {
            if tid == exec_tid {
                // The thread that called exec is back: it failed.
                st.procs.exec.remove(&tgid);
            }
            return;
        }
        st.procs.exec.remove(&tgid);
        {
            // The exec'd image runs with one thread, the leader.
            let gone: Vec<i32> = self
                .tasks
                .iter()
                .filter(|(tid, t)| t.tgid == Some(tgid) && **tid != tgid)
                .map(|(tid, _)| *tid)
                .collect();
            for tid in gone {
                self.tasks.remove(&tid);
                self.pidfds.forget_thread(tid);
            }
            self.pidfds.forget_thread(tgid);
            if tgid == self.main {
                self.main_exec = true;
            }
            self.handler.process(ProcessEvent::Exec { pid: tgid });
        }
    }

    /// Scan /proc when due (or now, `force`): processes no call made
    /// known, and exits the pidfds do not watch.
    pub(crate) fn scan_processes(&mut self, force: bool) {
        let now = Instant::now();
        let st = self.st();
        if !force && st.procs.last_scan.is_some_and(|t| now - t < SCAN) {
            return;
        }
        st.procs.last_scan = Some(now);
        // Threads that exited: their cached pidfd and tgid go (a tid may be
        // reused by another process's thread).
        for tid in self.pidfds.prune_exited() {
            self.tasks.remove(&tid);
        }
        if self.tasks.len() > 1 << 16 {
            // Only a cache of thread -> process here: start afresh.
            self.tasks.clear();
        }
        let live = descendants(self.st().procs.root);
        for &(pid, parent) in &live {
            if !self.st().procs.known.contains_key(&pid) {
                self.new_process(pid, parent);
            }
        }
        let st = self.st();
        if st.procs.known.len() > st.procs.watched {
            let alive: HashSet<i32> = live.iter().map(|p| p.0).collect();
            let gone: Vec<i32> = st
                .procs
                .known
                .iter()
                .filter(|(pid, fd)| fd.is_none() && !alive.contains(pid))
                .map(|(pid, _)| *pid)
                .collect();
            for pid in gone {
                self.process_gone(pid);
            }
        }
    }

    /// A known process exited.
    pub(crate) fn process_gone(&mut self, pid: i32) {
        let st = self.st();
        match st.procs.known.remove(&pid) {
            Some(Some(fd)) => {
                st.unwatch(fd.as_raw_fd());
                st.procs.watched -= 1;
            }
            Some(None) => {}
            None => return,
        }
        st.procs.exec.remove(&pid);
        let threads: Vec<i32> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.tgid == Some(pid))
            .map(|(tid, _)| *tid)
            .collect();
        for tid in threads {
            self.tasks.remove(&tid);
            self.pidfds.forget_thread(tid);
        }
        self.pidfds.forget_thread(pid);
        self.landlock.exited(pid);
        signals::untrack(pid);
        self.handler.process(ProcessEvent::Exited { pid });
        // Ours to reap if it is our child (the program, or an orphan).
        self.reap(pid, libc::WNOHANG);
        if pid == self.main {
            // Signals for the program now go to every process left: know them all.
            self.scan_processes(true);
        }
    }

    /// Signals sent to trace (signals.rs): to the main program while it
    /// lives, then to every process of the program left (all known: a scan
    /// first).
    pub(crate) fn forward_signals(&mut self) {
        let mut buf = [0u8; 64];
        let fd = self.st().signals.as_raw_fd();
        // SAFETY: reading into a local buffer.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return;
        }
        let main = self.main;
        let main_gone = match self.st().procs.known.get(&main) {
            Some(Some(pidfd)) => {
                let mut p = libc::pollfd {
                    fd: pidfd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd, zero timeout.
                unsafe { libc::poll(&mut p, 1, 0) == 1 }
            }
            Some(None) => stat_of(main).is_none(),
            None => true,
        };
        if main_gone && self.st().procs.known.contains_key(&main) {
            self.process_gone(main);
        } else if main_gone {
            self.scan_processes(true);
        }
        for &sig in &buf[..n as usize] {
            let sig = i32::from(sig);
            if !main_gone {
                signals::send_to_tracee(main, sig);
                continue;
            }
            let pids: Vec<i32> = self.st().procs.known.keys().copied().collect();
            for pid in pids {
                signals::send_to_tracee(pid, sig);
            }
        }
    }

    /// waitpid(pid, flags); records the program's status. False when
    /// nothing (more) is to be reaped.
    fn reap(&mut self, pid: i32, flags: i32) -> bool {
        let mut raw = 0;
        // SAFETY: waitpid writes the status into a local.
        let r = unsafe { libc::waitpid(pid, &mut raw, flags | libc::__WALL) };
        if r <= 0 {
            return false;
        }
        if r == self.main {
            self.main_status = Some(status_of(raw));
        }
        true
    }

    /// Reap exited orphans without waiting.
    pub(crate) fn reap_some(&mut self) {
        for _ in 0..4096 {
            if !self.reap(-1, libc::WNOHANG) {
                break;
            }
        }
    }

    /// The filter has no users left: reap everything, report what is gone.
    pub(crate) fn reap_all(&mut self) {
        loop {
            let mut raw = 0;
            // SAFETY: waitpid writes the status into a local.
            let r = unsafe { libc::waitpid(-1, &mut raw, libc::__WALL) };
            if r < 0 {
                if nix::errno::Errno::last() == nix::errno::Errno::EINTR {
                    continue;
                }
                break;
            }
            if r == self.main {
                self.main_status = Some(status_of(raw));
            }
        }
        let left: Vec<i32> = self.st().procs.known.keys().copied().collect();
        for pid in left {
            self.process_gone(pid);
        }
    }
}
