//! The processes of the program under user notification. There are no
//! fork or exec events: a process is known from its first trapped call
//! (its parent read from /proc then), watched through a pidfd until it
//! exits, and its exec is known from the execve notification (answered
//! CONTINUE): the next call from that process reports the exec first.
//! Orphans are reparented to us (PR_SET_CHILD_SUBREAPER) and reaped.

use super::TAG_PROC;
use crate::call::{NetHandler, ProcessEvent};
use crate::remote;
use crate::signals;
use crate::tracer::{ExitStatus, Tracer};
use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, OwnedFd};

#[derive(Default)]
pub(crate) struct Procs {
    pidfds: HashMap<i32, OwnedFd>,
    exec: HashSet<i32>,
}

impl Procs {
    pub(crate) fn exec_pending(&mut self, tgid: i32) {
        self.exec.insert(tgid);
    }
}

/// The parent of `pid` (/proc/PID/stat, field 4), read once per process.
fn parent_of(pid: i32) -> i32 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // The name (field 2) may hold spaces and parentheses: skip past the last ')'.
    s.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
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
        let fd = match remote::pidfd_open(pid) {
            Ok(fd) => fd,
            Err(_) => return,
        };
        let st = self.st();
        if st
            .watch(
                fd.as_raw_fd(),
                libc::EPOLLIN as u32,
                TAG_PROC | pid as u32 as u64,
            )
            .is_ok()
        {
            st.procs.pidfds.insert(pid, fd);
        }
        signals::track(pid);
    }

    /// A trapped call from process `tgid`: a process new to us, or the
    /// first call after its exec.
    pub(crate) fn seen(&mut self, tgid: i32) {
        let st = self.st();
        if !st.procs.pidfds.contains_key(&tgid) {
            let parent = parent_of(tgid);
            self.landlock.fork(parent, tgid);
            self.handler
                .process(ProcessEvent::Spawned { pid: tgid, parent });
            self.known_process(tgid);
            return;
        }
        if !st.procs.exec.is_empty() && st.procs.exec.remove(&tgid) {
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

    /// A watched process exited.
    pub(crate) fn process_gone(&mut self, pid: i32) {
        let st = self.st();
        if let Some(fd) = st.procs.pidfds.remove(&pid) {
            st.unwatch(fd.as_raw_fd());
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
        let left: Vec<i32> = self.st().procs.pidfds.keys().copied().collect();
        for pid in left {
            self.process_gone(pid);
        }
    }
}
