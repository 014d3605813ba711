//! waitpid for traced threads, with signal numbers as plain integers: a
//! real-time signal (32 and up) is a signal like any other here (nix's
//! WaitStatus cannot name one and fails with EINVAL, after the stop was
//! already taken from the kernel).

use nix::errno::Errno;

/// What waitpid reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    Exited(i32, i32),
    Signaled(i32, i32),
    /// A signal-delivery stop: thread, signal.
    Stopped(i32, i32),
    /// A ptrace event stop: thread, signal, event.
    Event(i32, i32, i32),
    /// A syscall stop (PTRACE_O_TRACESYSGOOD).
    Syscall(i32),
    /// WNOHANG and nothing to report (or a continue report).
    Nothing,
}

/// waitpid(pid, flags | __WALL).
pub(crate) fn wait(pid: i32, flags: i32) -> Result<Stop, Errno> {
    let mut st = 0;
    // SAFETY: waitpid writes the status into a local.
    let r = unsafe { libc::waitpid(pid, &mut st, flags | libc::__WALL) };
    if r < 0 {
        return Err(Errno::last());
    }
    if r == 0 {
        return Ok(Stop::Nothing);
    }
    Ok(if libc::WIFEXITED(st) {
        Stop::Exited(r, libc::WEXITSTATUS(st))
    } else if libc::WIFSIGNALED(st) {
        Stop::Signaled(r, libc::WTERMSIG(st))
    } else if libc::WIFSTOPPED(st) {
        let sig = libc::WSTOPSIG(st);
        let event = (st >> 16) & 0xff;
        if sig == libc::SIGTRAP | 0x80 {
            Stop::Syscall(r)
        } else if event != 0 {
            Stop::Event(r, sig, event)
        } else {
            Stop::Stopped(r, sig)
        }
    } else {
        Stop::Nothing
    })
}

/// PTRACE_CONT with signal `sig` (0: none). ESRCH is normal (killed meanwhile).
pub(crate) fn cont(tid: i32, sig: i32) -> Result<(), Errno> {
    // SAFETY: PTRACE_CONT takes the signal as data, no pointers.
    let r = unsafe { libc::ptrace(libc::PTRACE_CONT, tid, 0usize, sig as usize) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// PTRACE_DETACH with signal `sig` (0: none).
pub(crate) fn detach(tid: i32, sig: i32) -> Result<(), Errno> {
    // SAFETY: PTRACE_DETACH takes the signal as data, no pointers.
    let r = unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0usize, sig as usize) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}
