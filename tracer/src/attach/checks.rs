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
    if tgid == 2 || parent_of(tgid) == 2 {
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

/// A thread of `tgid` that is not a zombie (the leader may have exited
/// while others run): the one to stop. The leader when it lives.
pub(crate) fn live_thread(tgid: i32) -> Option<i32> {
    if state(tgid).is_some_and(|s| s != 'Z' && s != 'X') {
        return Some(tgid);
    }
    let tasks = std::fs::read_dir(format!("/proc/{tgid}/task")).ok()?;
    tasks
        .flatten()
        .filter_map(|t| t.file_name().to_str()?.parse::<i32>().ok())
        .find(|&t| {
            std::fs::read_to_string(format!("/proc/{tgid}/task/{t}/stat"))
                .ok()
                .and_then(|s| {
                    let (_, rest) = s.rsplit_once(')')?;
                    rest.split_whitespace()
                        .next()
                        .map(|st| st != "Z" && st != "X")
                })
                .unwrap_or(false)
        })
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

pub(crate) fn parent_of(pid: i32) -> i32 {
    status_field(pid, "PPid:")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
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
    let mut p = parent_of(pid);
    for _ in 0..64 {
        if p <= 1 {
            return None;
        }
        if comm(p) == "appswitch" {
            return Some(format!("started by appswitch process {p}"));
        }
        p = parent_of(p);
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
