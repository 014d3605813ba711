//! Calls about other processes that the filter stops (see
//! `filter::process_rules`), recognised by ABI and syscall number:
//!
//! - `ptrace`: a traced process cannot trace what we trace (the kernel
//!   allows one tracer per process). PTRACE_TRACEME, and PTRACE_ATTACH or
//!   PTRACE_SEIZE of a process we trace, fail with EPERM (what the kernel
//!   says) and we say why on stderr, once per process. Other requests, and
//!   attaching to a process we do not trace, are left to the kernel.
//! - `kill`/`tkill`/`tgkill`/`rt_sigqueueinfo`/`rt_tgsigqueueinfo` aimed at
//!   the trace process (the program's `kill -USR1 $PPID`): without us, that
//!   signal would reach our parent, so the call is re-aimed there.

use crate::arch::{self, Abi};
use crate::decode::RawCall;
use std::cell::RefCell;
use std::collections::HashSet;

/// What a stopped call is, if it is one of ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProcCall {
    Ptrace,
    /// A signal call; the number of leading pid arguments to re-aim (1 or 2).
    Signal {
        pid_args: usize,
    },
}

pub(crate) fn classify(raw: &RawCall) -> Option<(Abi, ProcCall)> {
    let abi = arch::abi_of(raw.arch, raw.nr)?;
    let n = raw.nr & !arch::X32_SYSCALL_BIT;
    let sig1 = ProcCall::Signal { pid_args: 1 };
    let sig2 = ProcCall::Signal { pid_args: 2 };
    // x86_64 / i386 / x32 numbers (x32 has its own ptrace and sigqueueinfo).
    let c = match (abi, n) {
        (Abi::Native, 101) | (Abi::Compat32, 26) | (Abi::X32, 521) => ProcCall::Ptrace,
        (Abi::Native | Abi::X32, 62 | 200) | (Abi::Compat32, 37 | 238) => sig1,
        (Abi::Native, 129) | (Abi::Compat32, 178) | (Abi::X32, 524) => sig1,
        (Abi::Native | Abi::X32, 234) | (Abi::Compat32, 270) => sig2,
        (Abi::Native, 297) | (Abi::Compat32, 335) | (Abi::X32, 536) => sig2,
        _ => return None,
    };
    Some((abi, c))
}

const PTRACE_TRACEME: u64 = 0;
const PTRACE_ATTACH: u64 = 16;
const PTRACE_SEIZE: u64 = 0x4206;

/// Whether this ptrace call must fail (EPERM), and how to name it.
pub(crate) fn refused_ptrace(raw: &RawCall, abi: Abi) -> Option<&'static str> {
    let mask = if abi == Abi::Compat32 {
        0xffff_ffff
    } else {
        u64::MAX
    };
    let (request, target) = (raw.args[0] & mask, raw.args[1] as u32 as i32);
    match request {
        PTRACE_TRACEME => Some("PTRACE_TRACEME"),
        PTRACE_ATTACH if crate::signals::traced_by_us(target) => Some("PTRACE_ATTACH"),
        PTRACE_SEIZE if crate::signals::traced_by_us(target) => Some("PTRACE_SEIZE"),
        _ => None,
    }
}

thread_local! {
    /// Processes already told (tracer thread only).
    static TOLD: RefCell<HashSet<i32>> = RefCell::new(HashSet::new());
}

/// Say once per process why its ptrace call failed.
pub(crate) fn tell_once(tgid: i32, tid: i32, what: &str) {
    if !TOLD.with(|t| t.borrow_mut().insert(tgid)) {
        return;
    }
    let comm = std::fs::read_to_string(format!("/proc/{tid}/comm")).unwrap_or_default();
    log::warn!(
        "appswitch: {}[{tgid}] called ptrace({what}): programs traced with the ptrace backend \
         cannot trace the processes appswitch traces (one tracer per process); it fails with \
         EPERM. Run the debugger without appswitch, or under the user-notification backend \
         (--backend unotify)",
        comm.trim_end()
    );
}

/// A traced process exited: a new one with its pid is told again.
pub(crate) fn forget(tgid: i32) {
    TOLD.with(|t| t.borrow_mut().remove(&tgid));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(arch: u32, nr: u64, args: [u64; 6]) -> RawCall {
        RawCall { arch, nr, args }
    }

    #[test]
    fn recognises_calls_by_number() {
        let n = arch::AUDIT_ARCH_NATIVE;
        let c = arch::AUDIT_ARCH_COMPAT;
        let x = arch::X32_SYSCALL_BIT;
        assert_eq!(
            classify(&raw(n, 101, [0; 6])).map(|r| r.1),
            Some(ProcCall::Ptrace)
        );
        assert_eq!(
            classify(&raw(c, 26, [0; 6])).map(|r| r.1),
            Some(ProcCall::Ptrace)
        );
        assert_eq!(
            classify(&raw(n, x | 521, [0; 6])).map(|r| r.1),
            Some(ProcCall::Ptrace)
        );
        assert_eq!(
            classify(&raw(n, 62, [0; 6])).map(|r| r.1),
            Some(ProcCall::Signal { pid_args: 1 })
        );
        assert_eq!(
            classify(&raw(c, 270, [0; 6])).map(|r| r.1),
            Some(ProcCall::Signal { pid_args: 2 })
        );
        assert_eq!(classify(&raw(n, 42, [0; 6])), None);
        assert_eq!(classify(&raw(c, 101, [0; 6])), None);
        // TRACEME always refused; attaching to an untraced pid left to the kernel.
        assert!(refused_ptrace(&raw(n, 101, [0; 6]), Abi::Native).is_some());
        assert!(refused_ptrace(&raw(n, 101, [16, 1, 0, 0, 0, 0]), Abi::Native).is_none());
    }
}
