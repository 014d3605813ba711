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

/// Whether thread `s` names is still in the stop `s` reports (checked
/// before a stop taken from waitpid earlier is handled: meanwhile the
/// thread may have been killed, or, a process's leader, replaced by a
/// thread that exec'd and now waits in its exec stop under the same id;
/// handling the old stop there would resume it or rewrite its registers).
/// The stop's siginfo says which stop it is (for a signal's stop, which
/// signal). When it cannot be read the thread is gone (ESRCH: nothing to
/// handle) or the stop has none (kept).
pub(crate) fn still_in(s: &Stop) -> bool {
    let (tid, signo, code) = match *s {
        Stop::Syscall(p) => (p, libc::SIGTRAP, Some(libc::SIGTRAP | 0x80)),
        Stop::Event(p, sig, ev) => (p, sig, Some((ev << 8) | sig)),
        Stop::Stopped(p, sig) => (p, sig, None),
        Stop::Exited(..) | Stop::Signaled(..) | Stop::Nothing => return true,
    };
    match nix::sys::ptrace::getsiginfo(nix::unistd::Pid::from_raw(tid)) {
        // A signal's code is not compared: a process may queue itself a
        // signal with any code (rt_sigqueueinfo), an event's among them,
        // and a genuine stop judged stale would hold its thread for ever.
        Ok(si) => si.si_signo == signo && code.is_none_or(|c| si.si_code == c),
        Err(Errno::ESRCH) => false,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stop is recognised by its siginfo: the one the thread is in, not
    /// another kind, and nothing once the thread is gone. A signal the
    /// program queued itself with an event's code is still its signal.
    #[test]
    fn a_stop_is_still_there_only_as_the_kind_it_was() {
        let mut fds = [0; 2];
        // SAFETY: pipe writes two descriptors into the array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the child reads a byte, queues itself a signal, pauses.
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork");
        if child == 0 {
            // SAFETY: async-signal-safe calls on locals only, then _exit.
            unsafe {
                let mut b = 0u8;
                if libc::read(fds[0], (&mut b as *mut u8).cast(), 1) != 1 {
                    libc::_exit(1);
                }
                let mut si: libc::siginfo_t = std::mem::zeroed();
                si.si_signo = libc::SIGUSR1;
                si.si_code = (libc::PTRACE_EVENT_SECCOMP << 8) | libc::SIGTRAP;
                libc::syscall(
                    libc::SYS_rt_sigqueueinfo,
                    libc::getpid(),
                    libc::SIGUSR1,
                    &si,
                );
                loop {
                    libc::pause();
                }
            }
        }
        /// Kills the child should an assertion fail first.
        struct Kill(i32);
        impl Drop for Kill {
            fn drop(&mut self) {
                // SAFETY: kill and waitpid on our own child.
                unsafe {
                    libc::kill(self.0, libc::SIGKILL);
                    libc::waitpid(self.0, std::ptr::null_mut(), libc::__WALL | libc::WNOHANG);
                }
            }
        }
        let _guard = Kill(child);
        let pid = nix::unistd::Pid::from_raw(child);
        nix::sys::ptrace::seize(pid, nix::sys::ptrace::Options::empty()).expect("seize");
        // SAFETY: a one-byte write to our pipe.
        assert_eq!(unsafe { libc::write(fds[1], b"g".as_ptr().cast(), 1) }, 1);
        let stop = wait(child, 0).expect("waitpid");
        assert_eq!(stop, Stop::Stopped(child, libc::SIGUSR1));
        assert!(still_in(&stop), "a signal with an event's code");
        assert!(!still_in(&Stop::Stopped(child, libc::SIGUSR2)));
        assert!(!still_in(&Stop::Syscall(child)));
        let seccomp = libc::PTRACE_EVENT_SECCOMP;
        assert!(!still_in(&Stop::Event(child, libc::SIGTRAP, seccomp)));
        // SAFETY: kill on our own child; closing our pipe ends.
        unsafe {
            assert_eq!(libc::kill(child, libc::SIGKILL), 0);
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        let mut st = 0;
        // SAFETY: waitpid on our own child, status into a local.
        while unsafe { libc::waitpid(child, &mut st, libc::__WALL) } == child
            && !libc::WIFSIGNALED(st)
        {}
        assert!(!still_in(&stop));
    }
}
