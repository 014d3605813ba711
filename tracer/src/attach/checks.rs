//! What is checked before a program is touched, and what a failure of the
//! injection means (each an [`AttachError`] that left it unchanged).

use super::AttachError;
use crate::remote::status_field;
use nix::errno::Errno;

/// The process `pid` names (a thread id names its process), if it may be
/// attached as far as /proc tells: alive, not traced, not already under
/// appswitch, not in seccomp strict mode.
pub(crate) fn process(pid: i32) -> Result<i32, AttachError> {
    if pid <= 0 {
        return Err(AttachError::NoProcess(pid));
    }
    let tgid = crate::remote::tgid_of(pid).ok_or(AttachError::NoProcess(pid))?;
    if tgid == std::process::id() as i32 {
        return Err(AttachError::Unsupported(format!(
            "{pid} is this appswitch process itself"
        )));
    }
    if tgid == 2 || crate::remote::ppid_of(tgid).unwrap_or(0) == 2 {
        return Err(AttachError::Unsupported(format!(
            "{pid} is a kernel thread: it makes no system calls of its own"
        )));
    }
    if state(tgid) == Some('Z') && live_thread(tgid).is_none() {
        return Err(AttachError::NoProcess(pid));
    }
    if let Some(tracer) = tracer_of(tgid) {
        return Err(traced_by(tgid, tracer));
    }
    if let Some(how) = under_appswitch(tgid) {
        return Err(AttachError::AlreadyUnderAppswitch { pid: tgid, how });
    }
    let rings = io_urings(tgid);
    if rings > 0 {
        return Err(AttachError::Unsupported(format!(
            "{tgid} has {rings} io_uring instance(s) open: their operations are made by the \
             kernel, unseen by seccomp, so its network calls could not all be decided \
             (appswitch trace refuses io_uring_setup from the start instead)"
        )));
    }
    if status_field(tgid, "Seccomp:").as_deref() == Some("1") {
        return Err(AttachError::Unsupported(format!(
            "{tgid} is in seccomp strict mode: it can make no other system call"
        )));
    }
    Ok(tgid)
}

fn state(pid: i32) -> Option<char> {
    status_field(pid, "State:")?.chars().next()
}

/// Calls that return EINTR, not a restart, when their thread is stopped by
/// PTRACE_INTERRUPT with no signal to deliver (x86_64 numbers): the thread
/// to stop should not be in one (the program would see an EINTR untraced
/// it would not). Socket calls may have a timeout (SO_RCVTIMEO/SNDTIMEO)
/// and then behave the same.
const NO_RESTART: [u64; 22] = [
    232, 281, 441, // epoll_wait, epoll_pwait, epoll_pwait2
    128, // rt_sigtimedwait
    220, 65, // semtimedop, semop
    208, 333, // io_getevents, io_pgetevents
    242, 243, // mq_timedsend, mq_timedreceive
    69, 70,  // msgsnd, msgrcv
    299, // recvmmsg
    42, 43, 288, 44, 45, 46,
    47,  // connect, accept, accept4, sendto, recvfrom, sendmsg, recvmsg
    426, // io_uring_enter
    0,   // read (of a socket with a timeout)
];

/// Calls that restart as if nothing happened: the best threads to stop.
const RESTARTS: [u64; 10] = [202, 7, 271, 23, 270, 35, 230, 34, 61, 247];

/// A thread of `tgid` that is not a zombie (the leader may have exited
/// while others run): the one to stop. Preferred: one running in user
/// space, then one in a call that restarts (futex, poll, nanosleep...),
/// then any other not in a call that would return EINTR, then any; the
/// leader first among equals.
pub(crate) fn live_thread(tgid: i32) -> Option<i32> {
    let mut tids = threads(tgid);
    tids.sort_by_key(|&t| t != tgid);
    tids.into_iter()
        .filter_map(|t| {
            let stat = std::fs::read_to_string(format!("/proc/{tgid}/task/{t}/stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            let st = rest.split_whitespace().next()?;
            if st == "Z" || st == "X" {
                return None;
            }
            let call = std::fs::read_to_string(format!("/proc/{tgid}/task/{t}/syscall"))
                .unwrap_or_default();
            let first = call.split_whitespace().next().unwrap_or("");
            let rank = match first.parse::<i64>() {
                _ if first == "running" => 0,
                Ok(-1) => 0,
                Ok(n) if RESTARTS.contains(&(n as u64)) => 1,
                Ok(n) if NO_RESTART.contains(&(n as u64)) => 3,
                _ => 2,
            };
            Some((rank, t))
        })
        .min_by_key(|&(rank, _)| rank)
        .map(|(_, t)| t)
}

/// The threads of `tgid` now.
pub(crate) fn threads(tgid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{tgid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| t.file_name().to_str()?.parse::<i32>().ok())
        .collect()
}

/// The tracer of any thread of `tgid` (TracerPid), if traced.
fn tracer_of(tgid: i32) -> Option<i32> {
    std::iter::once(tgid).chain(threads(tgid)).find_map(|t| {
        status_field(t, "TracerPid:")?
            .parse::<i32>()
            .ok()
            .filter(|&p| p > 0)
    })
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

fn traced_by(pid: i32, tracer: i32) -> AttachError {
    let comm = comm(tracer);
    if comm == "appswitch" {
        AttachError::AlreadyUnderAppswitch {
            pid,
            how: format!("traced by appswitch process {tracer}"),
        }
    } else {
        AttachError::AlreadyTraced { pid, tracer, comm }
    }
}

/// Whether `pid` runs under a filter of an `appswitch trace` (user
/// notification: no TracerPid; the trace is an ancestor) or an attach.
fn under_appswitch(pid: i32) -> Option<String> {
    let filters: u32 = status_field(pid, "Seccomp_filters:")?.parse().ok()?;
    if filters == 0 {
        return None;
    }
    let mut p = crate::remote::ppid_of(pid).unwrap_or(0);
    for _ in 0..64 {
        if p <= 1 {
            return None;
        }
        if comm(p) == "appswitch" {
            return Some(format!("started by appswitch process {p}"));
        }
        p = crate::remote::ppid_of(p).unwrap_or(0);
    }
    None
}

/// A failed PTRACE_SEIZE of `pid`.
pub(crate) fn seize_failed(pid: i32, e: Errno) -> AttachError {
    match e {
        Errno::ESRCH => AttachError::NoProcess(pid),
        Errno::EPERM => {
            // Raced with another tracer?
            if let Some(tracer) = tracer_of(pid) {
                return traced_by(pid, tracer);
            }
            let yama = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
                .ok()
                .and_then(|v| v.trim().parse::<u32>().ok())
                .filter(|&v| v > 0);
            let why = match yama {
                Some(3) => "Yama ptrace_scope=3 forbids attaching to any process".to_string(),
                Some(v) => format!(
                    "Yama ptrace_scope={v} forbids it unless appswitch has CAP_SYS_PTRACE{}",
                    if v == 1 { " or is its ancestor" } else { "" }
                ),
                // SAFETY: geteuid has no preconditions.
                None if unsafe { libc::geteuid() } == 0 => "the kernel refused even root: \
                     the program is exec'ing or exiting right now; try again"
                    .to_string(),
                None => "it belongs to another user, or is not dumpable: attaching needs \
                         CAP_SYS_PTRACE (run as root)"
                    .to_string(),
            };
            AttachError::NotPermitted { pid, why }
        }
        e => AttachError::Sys {
            pid,
            what: "PTRACE_SEIZE",
            errno: e,
        },
    }
}

/// Whether `pid` needs no_new_privs set to take a filter: it lacks
/// CAP_SYS_ADMIN (bit 21 of CapEff) and has not set it itself.
pub(crate) fn needs_no_new_privs(pid: i32) -> bool {
    let nnp = status_field(pid, "NoNewPrivs:").as_deref() == Some("1");
    let admin = status_field(pid, "CapEff:")
        .and_then(|c| u64::from_str_radix(&c, 16).ok())
        .is_some_and(|c| c & (1 << 21) != 0);
    !nnp && !admin
}

/// How many io_uring instances process `pid` holds.
fn io_urings(pid: i32) -> usize {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    dir.flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().contains("io_uring"))
        })
        .count()
}

/// The host-wide claim on attaching `pid` (a lock file named by its pid and
/// start time, held while the supervisor lives; removed when dropped).
pub(crate) struct Lock {
    path: std::path::PathBuf,
    _file: std::fs::File,
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Claim `pid`, or say which appswitch holds it.
pub(crate) fn lock(pid: i32) -> Result<Option<Lock>, AttachError> {
    use std::os::fd::AsRawFd;
    let start = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(19)
                .map(str::to_string)
        })
        .ok_or(AttachError::NoProcess(pid))?;
    let dir = std::path::Path::new("/run/appswitch");
    let _ = std::fs::create_dir_all(dir);
    let path = dir.join(format!("attach-{pid}-{start}.lock"));
    let file = match std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) => {
            // Not root: the claim is the listener alone (EBUSY), per
            // namespace the detach socket.
            log::debug!("attach: no lock file {}: {e}", path.display());
            return Ok(None);
        }
    };
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        return Err(AttachError::AlreadyUnderAppswitch {
            pid,
            how: format!("attached by appswitch supervisor {}", holder.trim()),
        });
    }
    let _ = std::fs::write(&path, std::process::id().to_string());
    Ok(Some(Lock { path, _file: file }))
}
