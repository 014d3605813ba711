//! The seccomp-BPF program installed in the child before exec.
//!
//! Built with libseccomp (which knows the syscall tables of x86_64, i386 and
//! x32, and splits i386 `socketcall` by sub-call), then exported as raw BPF in
//! the parent, so the child only makes one async-signal-safe seccomp() call.
//!
//! Network calls named by the handler's [`Interests`] return SECCOMP_RET_TRACE
//! (a ptrace stop); everything else is allowed in the kernel. i386 calls are
//! trapped like native ones; x32 network calls are trapped and refused by the
//! tracer. `clone` with CLONE_UNTRACED is trapped too (the tracer clears the
//! flag in the register), and `clone3` fails with ENOSYS: its flags live in
//! memory the tracer cannot always read or pin, and every libc falls back to
//! `clone` (Docker's default profile does the same). So no child can leave
//! the tracer's watch.
//!
//! The tracer identifies a stop by the call's number and architecture, never
//! by the filter's RET_TRACE data: a program may install filters of its own
//! that return SECCOMP_RET_TRACE with any data. A filter of its own with a
//! user-notification listener (SECCOMP_RET_USER_NOTIF outranks RET_TRACE) is
//! refused when installed: seccomp(SECCOMP_FILTER_FLAG_NEW_LISTENER) fails
//! with EBUSY, as it does for any process already under a listener.
//! userfaultfd (the syscall and /dev/userfaultfd's USERFAULTFD_IOC_NEW) fails
//! with EPERM: memory that blocks on access could freeze the tracer while it
//! reads a call's arguments.

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

/// RET_TRACE data. Informational only: a program's own filter can return
/// RET_TRACE with any data, so stops are told apart by syscall number.
pub const TAG_NET: u16 = 1;
pub const TAG_CLONE: u16 = 2;

const CLONE_UNTRACED: u64 = 0x0080_0000;
const SECCOMP_SET_MODE_FILTER: u64 = 1;
const SECCOMP_FILTER_FLAG_NEW_LISTENER: u64 = 1 << 3;
/// _IO(0xAA, 0x00): /dev/userfaultfd's ioctl that makes a userfaultfd.
const USERFAULTFD_IOC_NEW: u64 = 0xAA00;
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

/// Which backend the filter serves: RET_TRACE stops for ptrace, or
/// RET_USER_NOTIF for the user-notification supervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Trace,
    Notify,
}

/// Build the ptrace filter for `interests`.
pub fn build(interests: &Interests) -> Result<Program, TraceError> {
    build_for(interests, Mode::Trace)
}

/// Build the filter for `interests` under `mode`. Under `Notify`:
/// - clone is not trapped and clone3 is allowed: a filter is inherited by
///   every child whatever its flags (CLONE_UNTRACED is a ptrace matter);
/// - ptrace is not trapped: programs may trace (strace, gdb);
/// - execve/execveat notify (answered CONTINUE) so a process's name at exec
///   is known, and so does prctl(PR_SET_NAME), the one call that changes it
///   (the exec is reported before the rename runs).
pub fn build_for(interests: &Interests, mode: Mode) -> Result<Program, TraceError> {
    build_with(interests, mode, true)
}

/// The filter for an attached program (attach/): signals aimed at us are
/// not trapped. We are not its parent, so there is nothing to re-aim, and
/// our pid number may be one of its own in a PID namespace of its own;
/// the supervisor ignores what the program's processes send it, and one
/// that kills it makes its trapped calls fail (ENOSYS).
pub(crate) fn build_attached(interests: &Interests, mode: Mode) -> Result<Program, TraceError> {
    build_with(interests, mode, false)
}

fn build_with(interests: &Interests, mode: Mode, signals: bool) -> Result<Program, TraceError> {
    let f = |e: libseccomp::error::SeccompError| TraceError::Filter(e.to_string());
    let notify = mode == Mode::Notify;
    let trace_net = if notify {
        ScmpAction::Notify
    } else {
        ScmpAction::Trace(TAG_NET)
    };
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
    if interests.raw_sockets && !interests.socket {
        raw_socket_rules(&mut native, &mut compat, &mut x32, trace_net)?;
    }
    let new_listener = [
        ScmpArgCompare::new(0, ScmpCompareOp::Equal, SECCOMP_SET_MODE_FILTER),
        ScmpArgCompare::new(
            1,
            ScmpCompareOp::MaskedEqual(SECCOMP_FILTER_FLAG_NEW_LISTENER),
            SECCOMP_FILTER_FLAG_NEW_LISTENER,
        ),
    ];
    let uffd_new = ScmpArgCompare::new(
        1,
        ScmpCompareOp::MaskedEqual(0xffff_ffff),
        USERFAULTFD_IOC_NEW,
    );
    for ctx in [&mut native, &mut compat, &mut x32] {
        if notify {
            ctx.add_rule(trace_net, sys("execve")?).map_err(f)?;
            ctx.add_rule(trace_net, sys("execveat")?).map_err(f)?;
            // A rename (PR_SET_NAME) is the name at exec's last moment.
            let set_name = ScmpArgCompare::new(
                0,
                ScmpCompareOp::MaskedEqual(0xffff_ffff),
                libc::PR_SET_NAME as u64,
            );
            ctx.add_rule_conditional(trace_net, sys("prctl")?, &[set_name])
                .map_err(f)?;
        } else {
            ctx.add_rule_conditional(trace_clone, sys("clone")?, &[untraced])
                .map_err(f)?;
            ctx.add_rule(ScmpAction::Errno(libc::ENOSYS), sys("clone3")?)
                .map_err(f)?;
        }
        ctx.add_rule_conditional(
            ScmpAction::Errno(libc::EBUSY),
            sys("seccomp")?,
            &new_listener,
        )
        .map_err(f)?;
        ctx.add_rule(ScmpAction::Errno(libc::EPERM), sys("userfaultfd")?)
            .map_err(f)?;
        // Landlock rulesets that restrict the network (see landlock.rs).
        ctx.add_rule(trace_net, sys("landlock_create_ruleset")?)
            .map_err(f)?;
        ctx.add_rule(trace_net, sys("landlock_restrict_self")?)
            .map_err(f)?;
        ctx.add_rule_conditional(ScmpAction::Errno(libc::EPERM), sys("ioctl")?, &[uffd_new])
            .map_err(f)?;
        process_rules(ctx, mode, signals)?;
        if interests.deny_io_uring {
            ctx.add_rule(ScmpAction::Errno(libc::ENOSYS), sys("io_uring_setup")?)
                .map_err(f)?;
        }
    }
    native.merge(compat).map_err(f)?;
    native.merge(x32).map_err(f)?;
    export(&native)
}

/// Trap socket() only when it would create a raw IP or packet socket
/// (`call::is_raw_socket`): ordinary sockets never stop. The kernel reads
/// domain and type as ints, so the upper half of each register is masked
/// off (a program could set it to slip past an exact 64-bit compare), and
/// only the type bits of `type` count (SOCK_NONBLOCK|SOCK_CLOEXEC ignored).
/// i386 socket() may come through socketcall, whose arguments are in
/// memory: every i386 socket() stops and the handler decides.
fn raw_socket_rules(
    native: &mut ScmpFilterContext,
    compat: &mut ScmpFilterContext,
    x32: &mut ScmpFilterContext,
    trace_net: ScmpAction,
) -> Result<(), TraceError> {
    const AF_XDP: u64 = 44;
    const SOCK_PACKET: u64 = 10;
    let f = |e: libseccomp::error::SeccompError| TraceError::Filter(e.to_string());
    let domain = |d: i32| ScmpArgCompare::new(0, ScmpCompareOp::MaskedEqual(0xffff_ffff), d as u64);
    let sotype = |t: u64| {
        let mask = crate::call::SOCK_TYPE_MASK as u64;
        ScmpArgCompare::new(1, ScmpCompareOp::MaskedEqual(mask), t)
    };
    let raw = libc::SOCK_RAW as u64;
    let cases = [
        vec![domain(libc::AF_PACKET)],
        vec![domain(AF_XDP as i32)],
        vec![domain(libc::AF_INET), sotype(raw)],
        vec![domain(libc::AF_INET), sotype(SOCK_PACKET)],
        vec![domain(libc::AF_INET6), sotype(raw)],
    ];
    for ctx in [native, x32] {
        for conds in &cases {
            ctx.add_rule_conditional(trace_net, sys("socket")?, conds)
                .map_err(f)?;
        }
    }
    compat.add_rule(trace_net, sys("socket")?).map_err(f)?;
    Ok(())
}

/// RET_TRACE data for `process_rules` (the tracer dispatches on the call's
/// number, not on this).
pub const TAG_PROC: u16 = 3;

/// Calls about other processes, handled in tracer/src/proc_calls.rs: every
/// `ptrace`, and signal calls aimed at the trace process itself (pid
/// argument equal to ours, low 32 bits as the kernel reads an int).
fn process_rules(ctx: &mut ScmpFilterContext, mode: Mode, signals: bool) -> Result<(), TraceError> {
    let f = |e: libseccomp::error::SeccompError| TraceError::Filter(e.to_string());
    let trace = match mode {
        Mode::Trace => ScmpAction::Trace(TAG_PROC),
        Mode::Notify => ScmpAction::Notify,
    };
    if mode == Mode::Trace {
        ctx.add_rule(trace, sys("ptrace")?).map_err(f)?;
    }
    if !signals {
        return Ok(());
    }
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
