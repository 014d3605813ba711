//! Calls other than network ones that the user-notification filter traps:
//! exec (to know a process's name at exec), signals aimed at the trace
//! process (re-aimed at our parent, as under ptrace: see proc_calls.rs),
//! and Landlock rulesets (created by the supervisor, so it keeps a copy:
//! see landlock.rs).

use super::State;
use crate::arch::{self, nr, nr32, Abi};
use crate::call::NetHandler;
use crate::decode::RawCall;
use crate::landlock::Landlock;
use crate::remote;
use crate::tracer::Tracer;
use nix::errno::Errno;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub(crate) fn is_exec(raw: &RawCall) -> bool {
    match arch::abi_of(raw.arch, raw.nr) {
        Some(Abi::Compat32) => raw.nr == nr32::EXECVE || raw.nr == nr32::EXECVEAT,
        Some(_) => {
            let n = raw.nr & !arch::X32_SYSCALL_BIT;
            n == nr::EXECVE || n == nr::EXECVEAT || n == 520 || n == 545
        }
        None => false,
    }
}

/// prctl(PR_SET_NAME, ...) (native, x32 or i386).
pub(crate) fn is_set_name(raw: &RawCall) -> bool {
    let prctl = match arch::abi_of(raw.arch, raw.nr) {
        Some(Abi::Compat32) => raw.nr == 172,
        Some(_) => raw.nr & !arch::X32_SYSCALL_BIT == 157,
        None => false,
    };
    prctl && raw.args[0] as u32 == libc::PR_SET_NAME as u32
}

/// The native call for a signal call of `abi` number `n`, and where its
/// siginfo pointer is (sigqueueinfo calls). None: not re-aimed (i386 and
/// x32 sigqueueinfo, whose siginfo layout differs): refused with EPERM.
fn native_signal_call(abi: Abi, n: u64) -> Option<(i64, Option<usize>)> {
    match (abi, n) {
        (Abi::Native | Abi::X32, 62) | (Abi::Compat32, 37) => Some((libc::SYS_kill, None)),
        (Abi::Native | Abi::X32, 200) | (Abi::Compat32, 238) => Some((libc::SYS_tkill, None)),
        (Abi::Native | Abi::X32, 234) | (Abi::Compat32, 270) => Some((libc::SYS_tgkill, None)),
        (Abi::Native, 129) => Some((libc::SYS_rt_sigqueueinfo, Some(2))),
        (Abi::Native, 297) => Some((libc::SYS_rt_tgsigqueueinfo, Some(3))),
        _ => None,
    }
}

/// Real, effective and saved uid of `pid` (/proc/PID/status).
fn uids(pid: i32) -> Option<[u32; 3]> {
    let line = remote::status_field(pid, "Uid:")?;
    let mut f = line.split_whitespace().map(|v| v.parse::<u32>().ok());
    Some([f.next()??, f.next()??, f.next()??])
}

/// Whether thread `tid` may signal `target` by the kernel's rule
/// (kill_ok_by_cred): its real or effective uid is the target's real or
/// saved uid, or it holds CAP_KILL (in our user namespace). The supervisor
/// sends with its own credentials, so it must never lend them.
fn may_signal(tid: i32, target: i32) -> bool {
    const CAP_KILL: u32 = 5;
    if crate::privs::has_net_cap(tid, CAP_KILL) {
        return true;
    }
    match (uids(tid), uids(target)) {
        (Some([ruid, euid, _]), Some([truid, _, tsuid])) => {
            euid == tsuid || euid == truid || ruid == tsuid || ruid == truid
        }
        _ => false,
    }
}

/// A signal call aimed at the trace process: sent to our parent instead,
/// which it would have reached without us, if the program may signal it;
/// the program gets the result.
pub(crate) fn reaim_signal(st: &mut State, tid: i32, raw: &RawCall, abi: Abi, pid_args: usize) {
    let n = raw.nr & !arch::X32_SYSCALL_BIT;
    let Some((call, info_arg)) = native_signal_call(abi, n) else {
        return st.reply(-(Errno::EPERM as i64));
    };
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() } as i64;
    // Signal 0 only checks; others too need the program's right to signal.
    if !may_signal(tid, parent as i32) {
        return st.reply(-(Errno::EPERM as i64));
    }
    let mut a = [0i64; 4];
    for (i, v) in a.iter_mut().enumerate() {
        *v = if i < pid_args {
            parent
        } else {
            raw.args[i] as i32 as i64
        };
    }
    let mut info = [0u8; 128];
    if let Some(i) = info_arg {
        if let Err(e) = remote::read_mem(tid, raw.args[i], &mut info) {
            return st.reply(-(e as i64));
        }
        if !st.valid() {
            return;
        }
        a[i] = info.as_ptr() as i64;
    }
    // SAFETY: a signal system call with integer arguments (and our own
    // copy of the siginfo).
    let r = unsafe { libc::syscall(call, a[0], a[1], a[2], a[3]) };
    st.reply(if r < 0 { -(Errno::last() as i64) } else { 0 });
}

/// Largest Landlock ruleset attribute the supervisor copies.
const MAX_ATTR: usize = 256;

impl<H: NetHandler> Tracer<'_, H> {
    /// landlock_restrict_self: recorded, then run by the kernel.
    /// landlock_create_ruleset of a ruleset: created by the supervisor from
    /// its copy of the attribute, given to the program with ADDFD, a copy
    /// kept (so a later restrict_self is recognised, as under ptrace).
    pub(crate) fn landlock_notify(&mut self, tid: i32, tgid: i32, raw: &RawCall, restrict: bool) {
        if restrict {
            self.landlock.restrict_self(tgid, tid, raw.args[0] as i32);
            return self.st().continue_call();
        }
        let Some(net) = Landlock::creating(tid, &raw.args) else {
            return self.st().continue_call();
        };
        let (attr, size, flags) = (raw.args[0], raw.args[1] as usize, raw.args[2]);
        if attr == 0 || size == 0 {
            return self.st().continue_call();
        }
        if size > MAX_ATTR {
            return self.st().reply(-(Errno::E2BIG as i64));
        }
        let mut buf = [0u8; MAX_ATTR];
        if let Err(e) = remote::read_mem(tid, attr, &mut buf[..size]) {
            return self.st().reply(-(e as i64));
        }
        if !self.st().valid() {
            return;
        }
        // SAFETY: the attribute is our own buffer of `size` bytes.
        let r = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                buf.as_ptr(),
                size,
                flags as u32,
            )
        };
        if r < 0 {
            return self.st().reply(-(Errno::last() as i64));
        }
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(r as i32) };
        if let Ok(copy) = fd.try_clone() {
            self.landlock.created(copy, net);
        }
        let st = self.st();
        st.answered = true;
        match st.listener.add_fd_and_reply(st.id, fd.as_raw_fd(), true) {
            Ok(_) | Err(Errno::ENOENT) => {}
            Err(e) => st.reply(-(e as i64)),
        }
    }
}
