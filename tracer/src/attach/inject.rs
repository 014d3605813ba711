//! Making a stopped thread of another process run system calls for us.
//!
//! The thread is seized and interrupted (PTRACE_SEIZE + PTRACE_INTERRUPT:
//! no SIGSTOP, nothing the program can see); its registers are saved. Each
//! injected call points the instruction pointer at a `syscall` instruction
//! found in the thread's own vDSO, with orig_rax = -1 so the kernel's
//! restart logic never touches these registers, and single-steps it. At
//! the end the saved registers go back while the thread sits in a
//! signal-delivery stop: when it is let go, the kernel restarts the call it
//! was interrupted in (or returns EINTR) exactly as after any signal that
//! is not delivered. Signals that arrived meanwhile are delivered then.
//!
//! Arch facts (registers, numbers) are in arch/.

use crate::arch::inject as arch;
use crate::arch::Regs;
use crate::wait::Stop;
use nix::errno::Errno;
use nix::sys::ptrace;
use nix::unistd::Pid;

const PTRACE_EVENT_STOP: i32 = 128;
/// -ERESTARTSYS .. -ERESTART_RESTARTBLOCK: an injected call interrupted
/// (for example seccomp's TSYNC while another thread execs) is made again.
const RESTARTS: std::ops::RangeInclusive<i64> = -516..=-512;
/// Bounds: stops waited for per injected call, and retries of a call.
const MAX_STOPS: usize = 1000;
const MAX_RETRIES: usize = 100;

/// Why the thread could not be stopped for injection.
#[derive(Debug)]
pub(crate) enum StopError {
    /// PTRACE_SEIZE failed (ESRCH, EPERM...).
    Seize(Errno),
    /// The process is in a group stop (SIGSTOP, ^Z): let go unchanged.
    GroupStopped,
    /// A 32-bit thread: no `syscall` instruction to borrow.
    Not64Bit,
    /// The thread exited meanwhile, or ptrace failed.
    Gone(Errno),
}

/// A seized, stopped thread; dropping it puts its registers back and lets
/// it go (or keeps it, see [`Stopped::keep`]).
pub(crate) struct Stopped {
    tid: i32,
    /// The registers as the thread stopped (None until read).
    saved: Option<Regs>,
    insn: u64,
    /// When the thread was stopped.
    since: std::time::Instant,
    /// Signals whose delivery stop we took (to be delivered at the end).
    signals: Vec<libc::siginfo_t>,
    /// Stay attached when done (ptrace backend): resume rather than detach.
    keep: bool,
    released: bool,
}

fn pid(tid: i32) -> Pid {
    Pid::from_raw(tid)
}

/// How long one stop may take to come (a thread held by an exec in
/// another, which waits for its siblings to die, never stops again).
const STOP_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Wait for the next stop of `tid` (other states: the thread is gone),
/// at most STOP_LIMIT (ETIMEDOUT).
fn wait_stop(tid: i32) -> Result<Stop, Errno> {
    let start = std::time::Instant::now();
    let mut pause = std::time::Duration::from_micros(50);
    loop {
        match crate::wait::wait(tid, libc::WNOHANG) {
            Err(Errno::EINTR) | Ok(Stop::Nothing) => {}
            Err(e) => return Err(e),
            Ok(s @ (Stop::Stopped(..) | Stop::Event(..))) => return Ok(s),
            Ok(_) => return Err(Errno::ESRCH),
        }
        let waited = start.elapsed();
        if waited > STOP_LIMIT {
            return Err(Errno::ETIMEDOUT);
        }
        // A step's stop comes within microseconds: yield first (the
        // program is stopped for as long as this takes), sleep later.
        if waited < std::time::Duration::from_millis(2) {
            std::thread::yield_now();
        } else {
            std::thread::sleep(pause);
            pause = (pause * 2).min(std::time::Duration::from_millis(2));
        }
    }
}

fn is_stop_signal(sig: i32) -> bool {
    matches!(
        sig,
        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
    )
}

/// The first `syscall` instruction in `tid`'s vDSO.
fn find_syscall_insn(tid: i32) -> Result<u64, Errno> {
    let maps = std::fs::read_to_string(format!("/proc/{tid}/maps")).map_err(|_| Errno::EACCES)?;
    let (lo, hi) = maps
        .lines()
        .filter(|l| l.ends_with("[vdso]"))
        .find_map(|l| {
            let (lo, hi) = l.split_whitespace().next()?.split_once('-')?;
            Some((
                u64::from_str_radix(lo, 16).ok()?,
                u64::from_str_radix(hi, 16).ok()?,
            ))
        })
        .ok_or(Errno::ENOENT)?;
    let len = usize::try_from(hi.saturating_sub(lo)).map_err(|_| Errno::E2BIG)?;
    if len == 0 || len > 1 << 20 {
        return Err(Errno::E2BIG);
    }
    let mut buf = vec![0u8; len];
    crate::remote::read_mem(tid, lo, &mut buf)?;
    buf.windows(2)
        .position(|w| w == arch::SYSCALL_INSN)
        .map(|i| lo + i as u64)
        .ok_or(Errno::ENOENT)
}

impl Stopped {
    /// Seize thread `tid` (with `options`: none to let it go after, the
    /// tracer's to keep it) and stop it.
    pub(crate) fn seize(tid: i32, options: ptrace::Options) -> Result<Stopped, StopError> {
        ptrace::seize(pid(tid), options).map_err(StopError::Seize)?;
        Stopped::stop_seized(tid)
    }

    /// Stop thread `tid`, seized already.
    pub(crate) fn stop_seized(tid: i32) -> Result<Stopped, StopError> {
        // Read while the thread still runs (and after the seize, whose
        // errno is the clearer one when we may not).
        let insn = find_syscall_insn(tid);
        let mut s = Stopped {
            tid,
            saved: None,
            insn: 0,
            since: std::time::Instant::now(),
            signals: Vec::new(),
            keep: false,
            released: false,
        };
        s.insn = insn.map_err(StopError::Gone)?;
        s.stop()?;
        Ok(s)
    }

    fn stop(&mut self) -> Result<(), StopError> {
        let tid = self.tid;
        self.since = std::time::Instant::now();
        ptrace::interrupt(pid(tid)).map_err(StopError::Gone)?;
        for _ in 0..MAX_STOPS {
            match wait_stop(tid).map_err(StopError::Gone)? {
                Stop::Event(_, sig, PTRACE_EVENT_STOP) if is_stop_signal(sig) => {
                    return Err(StopError::GroupStopped);
                }
                Stop::Event(_, _, PTRACE_EVENT_STOP) => break,
                Stop::Stopped(_, sig) => {
                    // A signal came first: its delivery stop serves as well;
                    // the signal is delivered when we let go.
                    if let Ok(info) = ptrace::getsiginfo(pid(tid)) {
                        self.signals.push(info);
                    } else {
                        log::debug!("attach: lost the siginfo of {sig:?} for {tid}");
                    }
                    break;
                }
                _ => {
                    // Another event: go on to the interrupt's stop.
                    ptrace::cont(pid(tid), None).map_err(StopError::Gone)?;
                }
            }
        }
        let saved = ptrace::getregs(pid(tid)).map_err(StopError::Gone)?;
        self.saved = Some(saved);
        if !arch::is_64bit(&saved) {
            return Err(StopError::Not64Bit);
        }
        Ok(())
    }

    pub(crate) fn tid(&self) -> i32 {
        self.tid
    }

    /// Stay attached when released (the ptrace backend traces it from now on).
    pub(crate) fn keep(&mut self) {
        self.keep = true;
    }

    /// Let it go when released after all (the attach failed).
    pub(crate) fn unkeep(&mut self) {
        self.keep = false;
    }

    /// Run system call `nr(args)` in the thread; its raw result (-errno on
    /// failure). Err: the thread is gone or ptrace failed.
    pub(crate) fn syscall(&mut self, nr: u64, args: [u64; 6]) -> Result<i64, Errno> {
        for _ in 0..MAX_RETRIES {
            let r = self.syscall_once(nr, args)?;
            if !RESTARTS.contains(&r) {
                return Ok(r);
            }
            // An exec under way in another thread holds what TSYNC needs.
            std::thread::sleep(std::time::Duration::from_micros(500));
        }
        Err(Errno::EINTR)
    }

    fn syscall_once(&mut self, nr: u64, args: [u64; 6]) -> Result<i64, Errno> {
        let tid = self.tid;
        let mut regs = self.saved.ok_or(Errno::ESRCH)?;
        arch::set_call(&mut regs, self.insn, nr, args);
        ptrace::setregs(pid(tid), regs)?;
        for _ in 0..MAX_STOPS {
            ptrace::step(pid(tid), None)?;
            let st = wait_stop(tid)?;
            let now = ptrace::getregs(pid(tid))?;
            let done = arch::pc(&now) == self.insn + arch::SYSCALL_INSN.len() as u64;
            if let Stop::Stopped(_, sig) = st {
                if sig == libc::SIGSYS && done {
                    // The program's own filter trapped our call (its
                    // SECCOMP_RET_TRAP): the call did not run.
                    return Err(Errno::EPERM);
                }
                if sig != libc::SIGTRAP {
                    // Someone's signal (a Go runtime's SIGURG): kept for later.
                    if let Ok(info) = ptrace::getsiginfo(pid(tid)) {
                        self.signals.push(info);
                    }
                }
            }
            if done {
                return Ok(arch::result(&now));
            }
            if arch::pc(&now) != self.insn {
                // Neither before nor after our instruction: never expected.
                return Err(Errno::EFAULT);
            }
            // Stopped before the instruction ran (a signal or the interrupt
            // came first): step again.
            ptrace::setregs(pid(tid), regs)?;
        }
        Err(Errno::ETIMEDOUT)
    }

    /// Put the registers back and let the thread go (or keep it), the
    /// signals taken meanwhile delivered; how long it was stopped. Errors
    /// are logged: by then the thread is as it was or gone.
    pub(crate) fn release(mut self) -> std::time::Duration {
        self.release_inner();
        self.since.elapsed()
    }

    fn release_inner(&mut self) {
        if std::mem::replace(&mut self.released, true) {
            return;
        }
        let p = pid(self.tid);
        if let Some(saved) = self.saved {
            if let Err(e) = ptrace::setregs(p, saved) {
                if e != Errno::ESRCH {
                    log::warn!("attach: restoring the registers of {}: {e}", self.tid);
                }
            }
        }
        // The first signal goes with the let-go (with its own siginfo); any
        // other is queued again (tgkill: its siginfo is then ours).
        let mut first = 0;
        for info in std::mem::take(&mut self.signals) {
            let sig = info.si_signo;
            if sig <= 0 {
                continue;
            }
            if first == 0 && ptrace::setsiginfo(p, &info).is_ok() {
                first = sig;
                continue;
            }
            // SAFETY: tgkill on integers.
            unsafe {
                libc::syscall(
                    libc::SYS_tgkill,
                    crate::remote::tgid_of(self.tid).unwrap_or(self.tid),
                    self.tid,
                    sig,
                )
            };
        }
        let r = if self.keep {
            crate::wait::cont(self.tid, first)
        } else {
            crate::wait::detach(self.tid, first)
        };
        if let Err(e) = r {
            if e != Errno::ESRCH {
                log::warn!("attach: letting {} go: {e}", self.tid);
            }
        }
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        self.release_inner();
    }
}
