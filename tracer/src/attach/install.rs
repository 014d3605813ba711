//! Putting the filter into every thread of a running program, by system
//! calls injected into one of its threads (inject.rs): a page for the
//! filter (mmap), no_new_privs if the program needs it, seccomp with
//! TSYNC (all threads at once), then the page unmapped. Under user
//! notification the listener comes back to us by pidfd_getfd and is closed
//! in the program; under ptrace every thread is seized first and stays so.

use super::checks::{self, needs_no_new_privs, seize_failed};
use super::inject::{StopError, Stopped};
use super::{AttachError, Attached};
use crate::arch::inject::{CLOSE, MMAP, MUNMAP, PRCTL, SECCOMP};
use crate::backend::Chosen;
use crate::filter::Program;
use nix::errno::Errno;
use nix::sys::ptrace;
use std::os::fd::OwnedFd;

const SECCOMP_SET_MODE_FILTER: u64 = 1;
const FLAG_TSYNC: u64 = 1;
const FLAG_NEW_LISTENER: u64 = 1 << 3;
const FLAG_TSYNC_ESRCH: u64 = 1 << 4;
const PAGE: u64 = 4096;

/// Under user notification: the filter is in every thread of `pid`, and
/// its listener is ours.
pub(crate) fn with_listener(
    pid: i32,
    program: &Program,
) -> Result<(OwnedFd, Attached), AttachError> {
    // pidfd_getfd needs the same permission as ptrace: if this fails after
    // seccomp worked, the listener would be stuck in the program.
    let pidfd = crate::remote::pidfd_open(pid).map_err(|e| match e {
        Errno::ESRCH => AttachError::NoProcess(pid),
        e => AttachError::Sys {
            pid,
            what: "pidfd_open",
            errno: e,
        },
    })?;
    let nnp = needs_no_new_privs(pid);
    let mut tries = 0;
    let mut t = loop {
        let tid = checks::live_thread(pid).ok_or(AttachError::NoProcess(pid))?;
        match stop(pid, tid, ptrace::Options::empty()) {
            Ok(t) => break t,
            // The thread chosen exited (a request thread, say): another.
            Err(AttachError::NoProcess(_)) if thread_gone(pid, &mut tries) => continue,
            Err(e) => return Err(e),
        }
    };
    let flags = FLAG_TSYNC | FLAG_TSYNC_ESRCH | FLAG_NEW_LISTENER;
    let fd = install(&mut t, pid, program, flags, nnp)?;
    let fd = fd as i32;
    let taken = crate::remote::pidfd_getfd(&pidfd, fd);
    // Closed in the program either way: should we not have it, every
    // trapped call fails (ENOSYS) rather than wait for an answer.
    let _ = t.syscall(CLOSE, [fd as u64, 0, 0, 0, 0, 0]);
    let stopped = t.release();
    let threads = checks::threads(pid).len();
    if let Ok(l) = &taken {
        // A child forked by another thread between the seccomp call and the
        // close holds the listener too: it could answer its own calls.
        close_leaked(pid, l);
    }
    let listener = taken.map_err(|e| {
        log::error!(
            "attach: the filter is in {pid} but its listener could not be taken ({e}): \
             its network calls now fail with ENOSYS"
        );
        AttachError::Sys {
            pid,
            what: "pidfd_getfd of the filter's listener",
            errno: e,
        }
    })?;
    Ok((
        listener,
        Attached {
            pid,
            backend: Chosen::Unotify,
            stopped,
            threads,
            set_no_new_privs: nnp,
        },
    ))
}

/// Under ptrace: every thread of `pid` seized (threads they create are
/// seized by the kernel from then on) and the filter in; the threads.
pub(crate) fn traced(pid: i32, program: &Program) -> Result<(Vec<i32>, Attached), AttachError> {
    // Threads seized stay seized from one try to the next (a running
    // seized thread cannot be detached without stopping it first): a new
    // try seizes only those it does not hold yet.
    let mut seized = Vec::new();
    let mut tries = 0;
    loop {
        match traced_once(pid, program, &mut seized) {
            // The thread chosen to stop exited (a request thread, say):
            // nothing was changed; again, with another.
            Err(AttachError::NoProcess(_)) if thread_gone(pid, &mut tries) => continue,
            Err(e) => {
                // Let every thread go as it was (what cannot be detached
                // while it runs is detached by the kernel when we exit).
                for &t in &seized {
                    let _ = ptrace::detach(nix::unistd::Pid::from_raw(t), None);
                }
                return Err(e);
            }
            ok => return ok,
        }
    }
}

/// Whether the process `pid` still lives after a thread of it vanished
/// under us, and another try is left (a few: threads that come and go).
fn thread_gone(pid: i32, tries: &mut u32) -> bool {
    *tries += 1;
    *tries < 8 && crate::remote::tgid_of(pid).is_some() && checks::live_thread(pid).is_some()
}

fn traced_once(
    pid: i32,
    program: &Program,
    seized: &mut Vec<i32>,
) -> Result<(Vec<i32>, Attached), AttachError> {
    let options = crate::spawn::PTRACE_OPTIONS.difference(ptrace::Options::PTRACE_O_EXITKILL);
    let tid = checks::live_thread(pid).ok_or(AttachError::NoProcess(pid))?;
    let nnp = needs_no_new_privs(pid);
    if !seized.contains(&tid) {
        ptrace::seize(nix::unistd::Pid::from_raw(tid), options)
            .map_err(|e| seize_failed(pid, e))?;
        seized.push(tid);
    }
    // The others, until no new one appears (those created by a seized
    // thread are seized by the kernel); they run on meanwhile.
    for _ in 0..100 {
        let mut new = false;
        for other in checks::threads(pid) {
            if seized.contains(&other) {
                continue;
            }
            match ptrace::seize(nix::unistd::Pid::from_raw(other), options) {
                Ok(()) => {}
                // Exited meanwhile, or already ours (auto-attached).
                Err(Errno::ESRCH | Errno::EPERM) => {}
                Err(e) => {
                    log::warn!("attach: PTRACE_SEIZE of thread {other}: {e}");
                }
            }
            seized.push(other);
            new = true;
        }
        if !new {
            break;
        }
    }
    // (On failure the caller lets the seized threads go, or tries again.)
    let mut t = Stopped::stop_seized(tid).map_err(|e| stop_failed(pid, e))?;
    t.keep();
    if let Err(e) = install(&mut t, pid, program, FLAG_TSYNC, nnp) {
        // Released as it was; the others by the caller.
        seized.retain(|&o| o != tid);
        t.unkeep();
        return Err(e);
    }
    let stopped = t.release();
    let threads = checks::threads(pid);
    Ok((
        threads.clone(),
        Attached {
            pid,
            backend: Chosen::Ptrace,
            stopped,
            threads: threads.len(),
            set_no_new_privs: nnp,
        },
    ))
}

/// Seize and stop thread `tid` of `pid`.
fn stop(pid: i32, tid: i32, options: ptrace::Options) -> Result<Stopped, AttachError> {
    Stopped::seize(tid, options).map_err(|e| stop_failed(pid, e))
}

fn stop_failed(pid: i32, e: StopError) -> AttachError {
    match e {
        StopError::Seize(e) => seize_failed(pid, e),
        StopError::GroupStopped => AttachError::Stopped { pid },
        StopError::Not64Bit => AttachError::Unsupported(format!(
            "{pid} is a 32-bit program: attach supports 64-bit programs only"
        )),
        StopError::Gone(Errno::ESRCH) => AttachError::NoProcess(pid),
        StopError::Gone(Errno::ENOENT | Errno::ETIMEDOUT | Errno::ECHILD) => {
            AttachError::Unsupported(format!(
                "{pid}: a thread could not be stopped (the program is exec'ing or exiting, or \
                 the thread is held in vfork): nothing was changed; try again"
            ))
        }
        StopError::Gone(e) => AttachError::Sys {
            pid,
            what: "stopping a thread",
            errno: e,
        },
    }
}

/// The injected sequence; the seccomp call's result (the listener's number
/// in the program under NEW_LISTENER) and whether no_new_privs was set.
/// On failure the page is unmapped: the program is as it was (but for
/// no_new_privs, set only when the program could not take a filter
/// without it; it cannot be unset, and a failure after it is said).
fn install(
    t: &mut Stopped,
    pid: i32,
    program: &Program,
    flags: u64,
    nnp: bool,
) -> Result<i64, AttachError> {
    let sys = |what: &'static str| {
        move |errno: Errno| match errno {
            // A SIGSYS for our call: the program's own filter traps it.
            Errno::EPERM => AttachError::Unsupported(format!(
                "{pid}'s own seccomp filter traps the calls attach injects ({what})"
            )),
            errno => AttachError::Sys { pid, what, errno },
        }
    };
    let insns = &program.insns;
    let bytes = std::mem::size_of_val(insns.as_slice());
    let len = (16 + bytes as u64).div_ceil(PAGE) * PAGE;
    const PROT_RW: u64 = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    const MAP: u64 = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
    let page = t
        .syscall(MMAP, [0, len, PROT_RW, MAP, u64::MAX, 0])
        .map_err(sys("injected mmap"))?;
    if page < 0 {
        return Err(sys("injected mmap")(Errno::from_raw(-page as i32)));
    }
    let page = page as u64;
    let r = install_at(t, pid, program, flags, page, nnp);
    let unmapped = t.syscall(MUNMAP, [page, len, 0, 0, 0, 0]);
    if let Ok(r) = unmapped.as_ref() {
        if *r < 0 {
            log::warn!("attach: munmap in {pid}: errno {}", -r);
        }
    }
    r
}

fn install_at(
    t: &mut Stopped,
    pid: i32,
    program: &Program,
    flags: u64,
    page: u64,
    nnp: bool,
) -> Result<i64, AttachError> {
    let insns = &program.insns;
    // struct sock_fprog { u16 len; (pad) ; sock_filter *filter } then the program.
    let mut buf = Vec::with_capacity(16 + insns.len() * 8);
    buf.extend_from_slice(&(insns.len() as u16).to_ne_bytes());
    buf.extend_from_slice(&[0u8; 6]);
    buf.extend_from_slice(&(page + 16).to_ne_bytes());
    for i in insns {
        buf.extend_from_slice(&i.code.to_ne_bytes());
        buf.push(i.jt);
        buf.push(i.jf);
        buf.extend_from_slice(&i.k.to_ne_bytes());
    }
    crate::remote::write_mem(t.tid(), page, &buf).map_err(|errno| AttachError::Sys {
        pid,
        what: "writing the filter into the program",
        errno,
    })?;
    if nnp {
        let r = t
            .syscall(PRCTL, [libc::PR_SET_NO_NEW_PRIVS as u64, 1, 0, 0, 0, 0])
            .map_err(|errno| AttachError::Sys {
                pid,
                what: "injected prctl",
                errno,
            })?;
        if r < 0 {
            return Err(AttachError::NoNewPrivs {
                pid,
                why: Errno::from_raw(-r as i32).desc().to_string(),
            });
        }
        log::info!("attach: set no_new_privs on {pid} (it lacks CAP_SYS_ADMIN); this is permanent");
    }
    let r = t
        .syscall(SECCOMP, [SECCOMP_SET_MODE_FILTER, flags, page, 0, 0, 0])
        .map_err(|errno| AttachError::Sys {
            pid,
            what: "injected seccomp",
            errno,
        })?;
    let err = |e: AttachError| {
        if nnp {
            log::warn!("attach: no_new_privs stays set on {pid} (it cannot be unset)");
        }
        e
    };
    if r > 0 && flags & FLAG_NEW_LISTENER == 0 {
        // TSYNC without ESRCH: the thread that could not take the filter.
        return Err(err(AttachError::DivergedFilters { pid }));
    }
    if r < 0 {
        let e = Errno::from_raw(-r as i32);
        return Err(err(match e {
            Errno::EBUSY => AttachError::AlreadySupervised { pid },
            Errno::ESRCH => AttachError::DivergedFilters { pid },
            Errno::EACCES => AttachError::NoNewPrivs {
                pid,
                why: "the kernel refused the filter without it".into(),
            },
            Errno::EINVAL => AttachError::Unsupported(format!(
                "this kernel refused the filter for {pid} (EINVAL): it lacks \
                 SECCOMP_FILTER_FLAG_TSYNC_ESRCH or user notification (Linux 5.7)"
            )),
            Errno::EPERM | Errno::ENOSYS => AttachError::Unsupported(format!(
                "{pid}'s own seccomp filter refused the seccomp call ({e})"
            )),
            e => AttachError::Sys {
                pid,
                what: "injected seccomp",
                errno: e,
            },
        }));
    }
    Ok(r)
}

/// Close the filter's listener `ours` in every descendant of `pid` that got
/// a copy (forked while it was open in the program), by the same injected
/// close; one that cannot be stopped is killed (fail closed).
fn close_leaked(pid: i32, ours: &OwnedFd) {
    use std::os::fd::AsRawFd;
    let mut stack = vec![pid];
    let mut seen = 0;
    while let Some(p) = stack.pop() {
        seen += 1;
        if seen > 4096 {
            break;
        }
        for t in checks::threads(p) {
            let kids =
                std::fs::read_to_string(format!("/proc/{p}/task/{t}/children")).unwrap_or_default();
            for c in kids
                .split_whitespace()
                .filter_map(|c| c.parse::<i32>().ok())
            {
                stack.push(c);
                for n in listener_copies(c, ours.as_raw_fd()) {
                    let closed = Stopped::seize(c, ptrace::Options::empty())
                        .ok()
                        .and_then(|mut s| {
                            let r = s.syscall(CLOSE, [n as u64, 0, 0, 0, 0, 0]).ok();
                            s.release();
                            r
                        })
                        .is_some_and(|r| r == 0);
                    if closed {
                        log::info!(
                            "attach: closed the listener a child ({c}) inherited during the attach"
                        );
                    } else {
                        log::warn!(
                            "attach: child {c} inherited the filter's listener during the attach and \
                             could not be stopped to close it: killed"
                        );
                        // SAFETY: kill on integers.
                        unsafe { libc::kill(c, libc::SIGKILL) };
                    }
                }
            }
        }
    }
}

/// The descriptors of process `c` that are the same open file as our `fd`.
fn listener_copies(c: i32, fd: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{c}/fd")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| {
            std::fs::read_link(e.path())
                .is_ok_and(|l| l.to_string_lossy().contains("seccomp notify"))
        })
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&n| {
            // SAFETY: kcmp on integers.
            unsafe { libc::syscall(libc::SYS_kcmp, c, libc::getpid(), 0, n, fd) == 0 }
        })
        .collect()
}
