//! The seccomp user-notification backend: one supervisor thread answers the
//! program's trapped calls through the filter's listener; no stops, no ptrace.
//!
//! The supervisor blocks only in epoll_wait, on the listener, the sockets of
//! parked waits (park.rs) and the pidfds of the processes it knows
//! (procs.rs). Each notification is decoded and decided by the same code as
//! under ptrace (netcall.rs); what differs is how a call is answered
//! ([`State::reply`], [`State::continue_call`], ADDFD) and that nothing can
//! run "from registers": a blocking connect is parked, sends are carried
//! out whole by the supervisor.
//!
//! If the supervisor dies, every trapped call of the program (the one held
//! and all later ones) fails with ENOSYS: it fails closed.

pub(crate) mod notif;
pub(crate) mod park;
mod procs;
mod recv;
pub(crate) mod sends;
mod special;
mod wake;

use crate::call::{NetHandler, ProcessEvent};
use crate::decode::{self, DecodeError, RawCall};
use crate::error::TraceError;
use crate::filter;
use crate::signals;
use crate::spawn;
use crate::tracer::{raise_nofile, Command, ExitStatus, Tracer};
use crate::watchdog;
use nix::errno::Errno;
use notif::{Listener, Notif};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// epoll tokens: the listener, parked waits (slot), processes (pid).
const TOKEN_LISTENER: u64 = 0;
const TAG_PARK: u64 = 1 << 62;
const TAG_PROC: u64 = 1 << 61;
const TOKEN_SIGNALS: u64 = 1;

/// The supervisor's state beside the shared tracer state.
pub(crate) struct State {
    pub(crate) listener: Listener,
    /// The notification being handled, and whether it has been answered
    /// (or parked) yet.
    pub(crate) id: u64,
    pub(crate) answered: bool,
    /// The last answer found its thread gone (a signal came first).
    pub(crate) lost: bool,
    epoll: OwnedFd,
    pub(crate) parked: park::Parked,
    pub(crate) procs: procs::Procs,
    /// Read end of the pipe forwarded signals arrive on.
    pub(crate) signals: OwnedFd,
    /// Buffers of the last datagram delivered (recv.rs), so a receive
    /// allocates nothing once they have grown.
    pub(crate) spare_datagram: Option<recv::Datagram>,
    /// Where the supervisor is woken (wake.rs).
    wake: Option<wake::WakeMode>,
}

impl State {
    /// Answer the current notification with `ret` (value or -errno).
    pub(crate) fn reply(&mut self, ret: i64) {
        self.answered = true;
        self.lost = false;
        if let Err(e) = self.listener.reply(self.id, ret) {
            // ENOENT: the thread was interrupted or killed meanwhile.
            self.lost = e == Errno::ENOENT;
            log::debug!("answer {ret} lost: {e}");
            if e != Errno::ENOENT {
                log::warn!("answering a trapped call: {e}");
            }
        }
    }

    /// Let the current call run as the program made it.
    pub(crate) fn continue_call(&mut self) {
        self.answered = true;
        if let Err(e) = self.listener.continue_call(self.id) {
            if e != Errno::ENOENT {
                log::warn!("continuing a trapped call: {e}");
            }
        }
    }

    /// Whether the current notification still waits for an answer.
    pub(crate) fn valid(&self) -> bool {
        self.listener.valid(self.id)
    }

    pub(crate) fn watch(&self, fd: i32, events: u32, token: u64) -> Result<(), Errno> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: a valid epoll descriptor and event.
        let r =
            unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if r < 0 {
            Err(Errno::last())
        } else {
            Ok(())
        }
    }

    pub(crate) fn unwatch(&self, fd: i32) {
        // SAFETY: a valid epoll descriptor; the event may be null for DEL.
        unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        };
    }
}

/// Run `cmd` under the user-notification supervisor until it and all its
/// descendants have exited.
pub fn run<H: NetHandler>(cmd: &Command, handler: &mut H) -> Result<ExitStatus, TraceError> {
    let mut interests = handler.interests();
    if cmd.isolate.is_some() {
        // Every connect, bind and addressed send may leave the namespace.
        crate::handover::widen(&mut interests);
    }
    let program = filter::build_for(&interests, filter::Mode::Notify)?;
    watchdog::start();
    let signals = signal_pipe()?;
    signals::install_forwarding();
    signals::keep_off_this_thread();
    let nofile = raise_nofile();
    // Orphaned descendants are reparented to us, so we learn when the
    // whole tree is gone and reap it.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let (child, listener) = spawn::spawn(cmd, &program, nofile, spawn::Handoff::Listener)?;
    let listener =
        listener.ok_or_else(|| TraceError::sys("receiving the filter's listener")(Errno::EPIPE))?;
    let main = child.pid.as_raw();
    let mut t = Tracer::new(handler, interests, main, None);
    t.isolate = cmd.isolate.clone();
    serve(&mut t, listener, signals, std::process::id() as i32)?;
    if t.main_status.is_none() || t.main_status == Some(ExitStatus::Code(127)) {
        if let Some(e) = child.exec_error() {
            return Err(e);
        }
    }
    t.main_status
        .ok_or_else(|| TraceError::sys("waiting for the program")(Errno::ECHILD))
}

/// The pipe forwarded signals arrive on (its read end; the write end is
/// the signal handler's for the life of the process).
pub(crate) fn signal_pipe() -> Result<OwnedFd, TraceError> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
        return Err(TraceError::sys("pipe2")(Errno::last()));
    }
    // SAFETY: fresh descriptors we own; the write end lives as long as the
    // process (the signal handler may write to it at any time).
    let (sig_r, sig_w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    signals::route_to(std::os::fd::IntoRawFd::into_raw_fd(sig_w));
    signals::set_notify_backend();
    Ok(sig_r)
}

/// Supervise the program whose main process is `t.main` through its
/// filter's `listener` until the filter has no users left. `parent`: the
/// main process's parent (us, or its own when attached).
pub(crate) fn serve<H: NetHandler>(
    t: &mut Tracer<'_, H>,
    listener: OwnedFd,
    signals: OwnedFd,
    parent: i32,
) -> Result<(), TraceError> {
    // Only now (after the fork, so the program is not affected): a program
    // of the same user must not take our listener or trace us.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let listener = Listener(listener);
    // The synchronous wake-up while one thread traps (wake.rs).
    let wake = match listener.set_sync_wake_up(true) {
        Ok(()) => Some(wake::WakeMode::new()),
        Err(e) => {
            log::debug!("SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: {e}");
            None
        }
    };
    // SAFETY: epoll_create1 returns a fresh descriptor we own.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        return Err(TraceError::sys("epoll_create1")(Errno::last()));
    }
    // SAFETY: ep is a fresh descriptor we own.
    let epoll = unsafe { OwnedFd::from_raw_fd(ep) };
    let main = t.main;
    signals::set_main(main);
    let mut procs = procs::Procs::default();
    if t.attached {
        procs.root_at(main);
    }
    let state = State {
        listener,
        id: 0,
        answered: true,
        lost: false,
        epoll,
        parked: park::Parked::default(),
        procs,
        signals,
        spare_datagram: None,
        wake,
    };
    state
        .watch(state.listener.raw(), libc::EPOLLIN as u32, TOKEN_LISTENER)
        .map_err(TraceError::sys("epoll_ctl on the listener"))?;
    state
        .watch(
            state.signals.as_raw_fd(),
            libc::EPOLLIN as u32,
            TOKEN_SIGNALS,
        )
        .map_err(TraceError::sys("epoll_ctl on the signal pipe"))?;
    t.notify = Some(state);
    t.tasks.entry(main).or_default().tgid = Some(main);
    t.handler
        .process(ProcessEvent::Spawned { pid: main, parent });
    t.known_process(main);
    let r = t.supervise();
    t.reap_all();
    signals::untrack(main);
    r
}

impl<H: NetHandler> Tracer<'_, H> {
    pub(crate) fn st(&mut self) -> &mut State {
        self.notify
            .as_mut()
            .expect("user-notification state exists under this backend")
    }

    /// The loop: until the listener hangs up (the filter has no users left).
    fn supervise(&mut self) -> Result<(), TraceError> {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 32];
        loop {
            let timeout = self.st().parked.timeout_ms();
            let ep = self.st().epoll.as_raw_fd();
            // SAFETY: events is a valid buffer of 32 entries.
            let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), 32, timeout) };
            if n < 0 {
                match Errno::last() {
                    Errno::EINTR => continue,
                    e => return Err(TraceError::sys("epoll_wait")(e)),
                }
            }
            let mut hangup = false;
            for ev in &events[..n as usize] {
                let (token, bits) = (ev.u64, ev.events);
                if token == TOKEN_LISTENER {
                    if bits & libc::EPOLLIN as u32 != 0 {
                        self.receive();
                    } else if bits & (libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
                        hangup = true;
                    }
                } else if token == TOKEN_SIGNALS {
                    self.forward_signals();
                } else if token & TAG_PARK != 0 {
                    self.parked_ready((token & !TAG_PARK) as usize);
                } else if token & TAG_PROC != 0 {
                    self.process_gone((token & !TAG_PROC) as i32);
                }
            }
            if n == 0 && self.st().parked.is_empty() {
                // Nothing parked and a second of quiet: reap orphans.
                self.reap_some();
            }
            self.scan_processes(false);
            self.sweep_parked();
            if hangup {
                return Ok(());
            }
        }
    }

    /// Take one notification and answer it.
    fn receive(&mut self) {
        let n = match self.st().listener.recv() {
            Ok(n) => n,
            // ENOENT: the caller was interrupted before we read it.
            Err(Errno::ENOENT | Errno::EINTR | Errno::EAGAIN) => return,
            Err(e) => {
                log::warn!("SECCOMP_IOCTL_NOTIF_RECV: {e}");
                return;
            }
        };
        {
            let st = self.st();
            st.id = n.id;
            st.answered = false;
            if let Some(w) = st.wake.as_mut() {
                w.follow(n.pid as i32, &st.listener);
            }
        }
        self.on_notif(&n);
        let st = self.st();
        if !st.answered && st.valid() {
            // Every path answers; should one not, fail closed rather than hang.
            log::warn!(
                "internal: a trapped call left unanswered (nr {}): ENOSYS",
                n.data.nr
            );
            st.reply(-(Errno::ENOSYS as i64));
        }
    }

    fn on_notif(&mut self, n: &Notif) {
        let tid = n.pid as i32;
        let raw = RawCall {
            arch: n.data.arch,
            nr: n.data.nr as u32 as u64,
            args: n.data.args,
        };
        if crate::attach::detached() {
            // Detached (attach.rs): every call passes as it was made.
            return self.st().continue_call();
        }
        let tgid = self.tgid(tid);
        self.seen(tgid, tid);
        if special::is_exec(&raw) {
            self.st().procs.exec_pending(tgid, tid);
            return self.st().continue_call();
        }
        if special::is_set_name(&raw) {
            // seen() above reported a pending exec with the name as it
            // was: the rename runs only now.
            return self.st().continue_call();
        }
        if let Some((abi, c)) = crate::proc_calls::classify(&raw) {
            return match c {
                // Attached, the supervisor is not the program's parent:
                // nothing to re-aim, and not a process it may signal.
                crate::proc_calls::ProcCall::Signal { .. } if self.attached => {
                    self.st().reply(-(Errno::EPERM as i64))
                }
                crate::proc_calls::ProcCall::Signal { pid_args } => {
                    special::reaim_signal(self.st(), tid, &raw, abi, pid_args)
                }
                crate::proc_calls::ProcCall::Ptrace => self.st().continue_call(),
            };
        }
        if let Some(restrict) = crate::tracer::landlock_call(&raw) {
            return self.landlock_notify(tid, tgid, &raw, restrict);
        }
        let decoded = match decode::decode(tgid, tid, &raw) {
            Ok(d) => d,
            Err(DecodeError::Ignore) => return self.st().continue_call(),
            Err(DecodeError::Fail(e)) => {
                if !self.still_waiting() {
                    return;
                }
                self.handler
                    .refused(tgid, tid, "unreadable or invalid call arguments", e);
                return self.skip_call(tid, -(e as i64));
            }
        };
        if decoded.call.abi == crate::Abi::X32 {
            self.handler
                .refused(tgid, tid, "x32 network call", Errno::ENOSYS);
            return self.skip_call(tid, -(Errno::ENOSYS as i64));
        }
        self.on_net(tid, decoded);
    }
}
