//! The seccomp-BPF program installed in the child before exec.
//!
//! Built with libseccomp (which knows the syscall tables of x86_64, i386 and
//! x32, and splits i386 `socketcall` by sub-call), then exported as raw BPF in
//! the parent, so the child only makes one async-signal-safe seccomp() call.
//!
//! Network calls named by the handler's [`Interests`] return SECCOMP_RET_TRACE
//! (a ptrace stop); everything else is allowed in the kernel. i386 calls are
//! trapped like native ones; x32 network calls are trapped and refused by the
//! tracer. `clone` with CLONE_UNTRACED and every `clone3` are trapped too, so
//! no child can leave the tracer's watch.

use crate::call::Interests;
use crate::error::TraceError;
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::FromRawFd;

/// A compiled filter, ready for `seccomp(SECCOMP_SET_MODE_FILTER)`.
pub struct Program {
    pub insns: Vec<libc::sock_filter>,
}

/// RET_TRACE data: why the filter stopped the call.
pub const TAG_NET: u16 = 1;
pub const TAG_CLONE: u16 = 2;

const CLONE_UNTRACED: u64 = 0x0080_0000;
const MSG_FASTOPEN: u64 = 0x2000_0000;

fn names(i: &Interests) -> Vec<&'static str> {
    let mut v = Vec::new();
    if i.socket {
        v.push("socket");
    }
    if i.connect {
        v.push("connect");
    }
    if i.bind {
        v.push("bind");
    }
    if i.listen {
        v.push("listen");
    }
    if i.accept {
        v.extend(["accept", "accept4"]);
    }
    if i.names {
        v.extend(["getsockname", "getpeername"]);
    }
    if i.recv {
        // recvfrom only with an address buffer: see build().
        v.push("recvmsg");
    }
    if i.send {
        v.extend(["sendmsg", "sendmmsg"]);
    }
    v
}

fn sys(name: &str) -> Result<ScmpSyscall, TraceError> {
    ScmpSyscall::from_name(name).map_err(|e| TraceError::Filter(format!("{name}: {e}")))
}

fn ctx_for(arch: ScmpArch) -> Result<ScmpFilterContext, TraceError> {
    let f = |e: libseccomp::error::SeccompError| TraceError::Filter(e.to_string());
    let mut ctx = ScmpFilterContext::new(ScmpAction::Allow).map_err(f)?;
    if arch != ScmpArch::native() {
        ctx.add_arch(arch).map_err(f)?;
        ctx.remove_arch(ScmpArch::native()).map_err(f)?;
    }
    // Calls from an architecture no context covers are impossible on x86_64;
    // should one appear, kill rather than let it through unseen.
    ctx.set_act_badarch(ScmpAction::KillProcess).map_err(f)?;
    // The tracer needs no_new_privs only when unprivileged; see spawn.rs.
    ctx.set_ctl_nnp(false).map_err(f)?;
    Ok(ctx)
}

/// Build the filter for `interests`.
pub fn build(interests: &Interests) -> Result<Program, TraceError> {
    let f = |e: libseccomp::error::SeccompError| TraceError::Filter(e.to_string());
    let trace_net = ScmpAction::Trace(TAG_NET);
    let trace_clone = ScmpAction::Trace(TAG_CLONE);
    let untraced = ScmpArgCompare::new(
        0,
        ScmpCompareOp::MaskedEqual(CLONE_UNTRACED),
        CLONE_UNTRACED,
    );

    let mut native = ctx_for(ScmpArch::X8664)?;
    let mut compat = ctx_for(ScmpArch::X86)?;
    let mut x32 = ctx_for(ScmpArch::X32)?;
    for name in names(interests) {
        native.add_rule(trace_net, sys(name)?).map_err(f)?;
        compat.add_rule(trace_net, sys(name)?).map_err(f)?;
        x32.add_rule(trace_net, sys(name)?).map_err(f)?;
    }
    if interests.connect && !interests.send {
        // sendto/sendmsg/sendmmsg with MSG_FASTOPEN connect a TCP socket:
        // policed as connects. (i386 socketcall cannot be split by flags.)
        let fastopen =
            |arg| ScmpArgCompare::new(arg, ScmpCompareOp::MaskedEqual(MSG_FASTOPEN), MSG_FASTOPEN);
        for (name, arg) in [("sendto", 3), ("sendmsg", 2), ("sendmmsg", 3)] {
            native
                .add_rule_conditional(trace_net, sys(name)?, &[fastopen(arg)])
                .map_err(f)?;
            compat.add_rule(trace_net, sys(name)?).map_err(f)?;
            x32.add_rule(trace_net, sys(name)?).map_err(f)?;
        }
    }
    if interests.send {
        // A sendto without an address (send() on a connected socket) is data
        // path: never stop it. i386 socketcall cannot be split by argument,
        // so there every sendto stops.
        let has_addr = ScmpArgCompare::new(4, ScmpCompareOp::NotEqual, 0);
        native
            .add_rule_conditional(trace_net, sys("sendto")?, &[has_addr])
            .map_err(f)?;
        compat.add_rule(trace_net, sys("sendto")?).map_err(f)?;
        x32.add_rule(trace_net, sys("sendto")?).map_err(f)?;
    }
    if interests.recv {
        // recv()/recvfrom without an address buffer is data path: never stop it.
        let wants_addr = ScmpArgCompare::new(4, ScmpCompareOp::NotEqual, 0);
        native
            .add_rule_conditional(trace_net, sys("recvfrom")?, &[wants_addr])
            .map_err(f)?;
        compat.add_rule(trace_net, sys("recvfrom")?).map_err(f)?;
        x32.add_rule(trace_net, sys("recvfrom")?).map_err(f)?;
    }
    for ctx in [&mut native, &mut compat, &mut x32] {
        ctx.add_rule_conditional(trace_clone, sys("clone")?, &[untraced])
            .map_err(f)?;
        ctx.add_rule(trace_clone, sys("clone3")?).map_err(f)?;
        process_rules(ctx)?;
        if interests.deny_io_uring {
            ctx.add_rule(ScmpAction::Errno(libc::ENOSYS), sys("io_uring_setup")?)
                .map_err(f)?;
        }
    }
    native.merge(compat).map_err(f)?;
    native.merge(x32).map_err(f)?;
    export(&native)
}

/// RET_TRACE data for `process_rules` (the tracer dispatches on the call's
/// number, not on this).
pub const TAG_PROC: u16 = 3;

/// Calls about other processes, handled in tracer/src/proc_calls.rs: every
/// `ptrace`, and signal calls aimed at the trace process itself (pid
/// argument equal to ours, low 32 bits as the kernel reads an int).
fn process_rules(ctx: &mut ScmpFilterContext) -> Result<(), TraceError> {
    let f = |e: libseccomp::error::SeccompError| TraceError::Filter(e.to_string());
    let trace = ScmpAction::Trace(TAG_PROC);
    ctx.add_rule(trace, sys("ptrace")?).map_err(f)?;
    let me = u64::from(std::process::id());
    let to_me = ScmpArgCompare::new(0, ScmpCompareOp::MaskedEqual(0xffff_ffff), me);
    for name in [
        "kill",
        "tkill",
        "tgkill",
        "rt_sigqueueinfo",
        "rt_tgsigqueueinfo",
    ] {
        ctx.add_rule_conditional(trace, sys(name)?, &[to_me])
            .map_err(f)?;
    }
    Ok(())
}

fn export(ctx: &ScmpFilterContext) -> Result<Program, TraceError> {
    let io = |e: std::io::Error| TraceError::Filter(format!("exporting BPF: {e}"));
    // SAFETY: memfd_create returns a fresh descriptor we own.
    let fd = unsafe { libc::memfd_create(c"appswitch-bpf".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io(std::io::Error::last_os_error()));
    }
    // SAFETY: fd is valid and owned by nobody else.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    ctx.export_bpf(&file)
        .map_err(|e| TraceError::Filter(e.to_string()))?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut raw = Vec::new();
    file.read_to_end(&mut raw).map_err(io)?;
    let insns = raw
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect::<Vec<_>>();
    if insns.is_empty() || raw.len() % 8 != 0 {
        return Err(TraceError::Filter(
            "libseccomp exported an empty program".into(),
        ));
    }
    Ok(Program { insns })
}
