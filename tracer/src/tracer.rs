//! The ptrace loop. One thread owns every ptrace call: it blocks in waitpid,
//! handles one stop at a time and resumes the stopped thread.
//!
//! Stops and what they cost:
//! - seccomp stop for a trapped call: decode, ask the handler, then either
//!   PTRACE_CONT (pass, or skip the call with a result set) or PTRACE_SYSCALL
//!   when the result must be seen (outcomes wanted, or a blocking connect
//!   finishing in the kernel);
//! - signal-delivery stop: re-inject the signal, nothing else;
//! - fork/vfork/clone/exec events, group-stops (PTRACE_LISTEN), exits.

use crate::arch::{self, nr, nr32, Abi, Regs};
use crate::call::{Call, Interests, NetHandler, Outcome, ProcessEvent, Verdict};
use crate::decode::{self, DecodeError, RawCall};
use crate::error::TraceError;
use crate::filter;
use crate::idmap::IdMap;
use crate::landlock::Landlock;
use crate::pidfds::Pidfds;
use crate::ports::BoundedSet;
use crate::proc_calls::{self, ProcCall};
use crate::remote;
use crate::signals;
use crate::spawn;
use crate::wait::Stop;
use crate::watchdog;
use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::ffi::OsString;

/// The program to run.
#[derive(Clone, Debug)]
pub struct Command {
    pub program: OsString,
    pub args: Vec<OsString>,
    /// Files to show the program in place of others: (source, target). The
    /// program gets a private mount namespace with each source bind-mounted
    /// on its target; the host's files are untouched.
    pub bind_files: Vec<(std::path::PathBuf, std::path::PathBuf)>,
    /// Run the program as this user (set after the filter is installed,
    /// just before exec): its groups, group and user ids, and the
    /// environment values to set (HOME, USER, LOGNAME).
    pub user: Option<Credentials>,
    /// The backend that runs it ([`crate::Backend::choose`]).
    pub backend: crate::Chosen,
    /// `--isolate`: the program gets a network namespace of its own, and
    /// sockets made in ours for what it reaches outside (netns.rs,
    /// handover.rs). User notification only.
    pub isolate: Option<crate::netns::Isolation>,
}

/// Who the program runs as (`--user`).
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (as initgroups(3) would give).
    pub groups: Vec<u32>,
    /// Environment variables to set for the program.
    pub env: Vec<(OsString, OsString)>,
}

/// How the traced program ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    /// The shell convention: the exit code, or 128+N for death by signal N.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }
}

const CLONE_UNTRACED: u64 = 0x0080_0000;
const PTRACE_EVENT_STOP: i32 = 128;
const PTRACE_GET_SYSCALL_INFO: libc::c_uint = 0x420e;
const PTRACE_SYSCALL_INFO_SECCOMP: u8 = 3;

/// struct ptrace_syscall_info, seccomp variant.
#[repr(C)]
#[derive(Default)]
struct SyscallInfo {
    op: u8,
    reserved: u8,
    flags: u16,
    arch: u32,
    instruction_pointer: u64,
    stack_pointer: u64,
    nr: u64,
    args: [u64; 6],
    ret_data: u32,
    pad: u32,
}

/// A call whose result arrives at its syscall-exit stop.
pub(crate) struct Pending {
    pub(crate) call: Call,
    pub(crate) verdict: Verdict,
    /// Registers to put back at the exit stop (phase two of a blocking
    /// connect changed the arguments), keeping the result.
    pub(crate) restore: Option<Regs>,
    /// Report EALREADY as EINPROGRESS (see `Emulated::WaitInKernel`).
    pub(crate) first_connect: bool,
    /// Bytes the tracer already sent for this call: added to the kernel's
    /// count at the exit stop (and returned alone if the rest failed).
    pub(crate) sent: u64,
    /// The program asked MSG_NOSIGNAL of a call run as writev.
    pub(crate) nosignal: bool,
}

#[derive(Default)]
pub(crate) struct Task {
    pub(crate) tgid: Option<i32>,
    /// Seen its first stop (auto-attached children start in a stop).
    started: bool,
    pub(crate) pending: Option<Pending>,
    /// At landlock_create_ruleset's exit stop: whether it handles the network.
    ruleset_net: Option<bool>,
    /// Its parent's fork event was read.
    forked: bool,
    /// A send the tracer ran as writev for a program that asked
    /// MSG_NOSIGNAL failed with EPIPE: the SIGPIPE writev raised is dropped.
    drop_sigpipe: bool,
}

/// Raise the soft RLIMIT_NOFILE to the hard limit; the limit as it was.
pub(crate) fn raise_nofile() -> Option<libc::rlimit> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return None;
        }
        let raised = libc::rlimit {
            rlim_cur: rl.rlim_max,
            rlim_max: rl.rlim_max,
        };
        if rl.rlim_cur < rl.rlim_max && libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            return None;
        }
    }
    Some(rl)
}

/// Run `cmd` under the tracer until it and all its descendants have exited.
/// Must be called on the thread that will own the tracees; ptrace ties them to it.
pub fn run<H: NetHandler>(cmd: &Command, handler: &mut H) -> Result<ExitStatus, TraceError> {
    if cmd.backend == crate::Chosen::Unotify {
        return crate::unotify::run(cmd, handler);
    }
    if cmd.isolate.is_some() {
        return Err(TraceError::IsolateNeedsUnotify);
    }
    let interests = handler.interests();
    let program = filter::build(&interests)?;
    watchdog::start();
    signals::install_forwarding();
    signals::keep_off_this_thread();
    // The tracer's own descriptors (pidfds, borrowed sockets) must never cost
    // the program an EMFILE: raise our soft limit to the hard one, and give
    // the program the limit it would have had.
    let nofile = raise_nofile();
    let (child, _) = spawn::spawn(cmd, &program, nofile, spawn::Handoff::Seize)?;
    signals::set_main(child.pid.as_raw());
    let mut t = Tracer::new(handler, interests, child.pid.as_raw(), None);
    t.tasks.insert(
        t.main,
        Task {
            tgid: Some(t.main),
            started: true,
            ..Task::default()
        },
    );
    t.handler.process(ProcessEvent::Spawned {
        pid: t.main,
        parent: std::process::id() as i32,
    });
    let r = t.event_loop();
    signals::untrack(t.main);
    r?;
    if !t.main_exec {
        if let Some(e) = child.exec_error() {
            return Err(e);
        }
    }
    t.main_status
        .ok_or_else(|| TraceError::sys("waiting for the program")(Errno::ECHILD))
}

/// Trace the attached program `main` (attach.rs), whose `threads` are
/// seized with the filter in, until it and its descendants have exited.
pub(crate) fn run_attached<H: NetHandler>(
    handler: &mut H,
    interests: Interests,
    main: i32,
    threads: &[i32],
    parent: i32,
) -> Result<(), TraceError> {
    let mut t = Tracer::new(handler, interests, main, None);
    t.attached = true;
    for &tid in threads {
        t.tasks.insert(
            tid,
            Task {
                tgid: Some(main),
                started: true,
                ..Task::default()
            },
        );
    }
    signals::set_main(main);
    t.handler
        .process(ProcessEvent::Spawned { pid: main, parent });
    let r = t.event_loop();
    signals::untrack(main);
    r
}

pub(crate) struct Tracer<'h, H: NetHandler> {
    pub(crate) handler: &'h mut H,
    pub(crate) interests: Interests,
    pub(crate) tasks: IdMap<i32, Task>,
    /// The pidfds descriptors are borrowed through.
    pub(crate) pidfds: Pidfds,
    /// The kinds of the sockets borrowed so far.
    pub(crate) kinds: crate::emulate::Kinds,
    /// Processes under a Landlock network restriction of their own.
    pub(crate) landlock: Landlock,
    /// Loopback TCP addresses of ours that refuse connections, per family,
    /// and their sockets (ports.rs).
    pub(crate) refusers: Vec<(i32, crate::sockaddr::SockAddr)>,
    /// TCP sockets (inodes) a refused port could not be taken back from
    /// (ports.rs): their listen() is refused.
    pub(crate) refused_ports: BoundedSet,
    pub(crate) refuser_socks: Vec<std::os::fd::OwnedFd>,
    pub(crate) main: i32,
    pub(crate) main_exec: bool,
    pub(crate) main_status: Option<ExitStatus>,
    /// The user-notification backend's state; None under ptrace.
    pub(crate) notify: Option<crate::unotify::State>,
    /// The program was attached (attach.rs), not started by us.
    pub(crate) attached: bool,
    /// The program is isolated (netns.rs): what it reaches outside its
    /// namespace goes through sockets made in ours (handover.rs).
    pub(crate) isolate: Option<crate::netns::Isolation>,
    /// Isolation: fresh sockets of the program's namespace (handover.rs).
    pub(crate) templates: crate::handover::Templates,
    /// ptrace: processes that exited before their parent's fork event was
    /// read (the event then registers nothing: the pid stays a zombie, not
    /// reusable, until that parent reaps it). A few at a time; bounded.
    exited_unforked: std::collections::VecDeque<i32>,
}

impl<'h, H: NetHandler> Tracer<'h, H> {
    /// The state for the program whose main process is `main`; `notify`:
    /// the user-notification backend's, None under ptrace.
    pub(crate) fn new(
        handler: &'h mut H,
        interests: Interests,
        main: i32,
        notify: Option<crate::unotify::State>,
    ) -> Tracer<'h, H> {
        Tracer {
            handler,
            interests,
            tasks: IdMap::default(),
            pidfds: Pidfds::new(),
            kinds: crate::emulate::Kinds::default(),
            landlock: Landlock::default(),
            refusers: Vec::new(),
            refused_ports: BoundedSet::default(),
            refuser_socks: Vec::new(),
            main,
            main_exec: false,
            main_status: None,
            notify,
            attached: false,
            isolate: None,
            templates: Default::default(),
            exited_unforked: std::collections::VecDeque::new(),
        }
    }
}

pub(crate) fn pid(tid: i32) -> Pid {
    Pid::from_raw(tid)
}

/// Resume a stopped thread. ESRCH (killed meanwhile) is normal: its exit
/// will be reported by waitpid.
pub(crate) fn resume(tid: i32, sig: Option<Signal>) {
    if deliver_held_signals(tid) {
        return;
    }
    if let Err(e) = ptrace::cont(pid(tid), sig) {
        if e != Errno::ESRCH {
            log::warn!("PTRACE_CONT {tid}: {e}");
        }
    }
}

pub(crate) fn resume_to_exit(tid: i32) {
    if deliver_held_signals(tid) {
        return;
    }
    if let Err(e) = ptrace::syscall(pid(tid), None) {
        if e != Errno::ESRCH {
            log::warn!("PTRACE_SYSCALL {tid}: {e}");
        }
    }
}

thread_local! {
    /// Stops taken from waitpid early (see `deliver_held_signals` and
    /// `next_stop`), for the event loop to handle, in order, before it
    /// waits again; filled through `queue`. Tracer thread only.
    static DEFERRED: std::cell::RefCell<std::collections::VecDeque<crate::wait::Stop>> =
        const { std::cell::RefCell::new(std::collections::VecDeque::new()) };
}

/// After a read of program memory that blocked (watchdog.rs), before
/// thread `next` runs on: signals that arrived while the tracer was held (a
/// user's SIGTERM) wait in signal-delivery stops of other threads. They go
/// on now, in front of whatever `next` would do (untraced, the signal would
/// have ended a program stuck in that fault). One sent to the process that
/// will end it (default action, not caught or ignored) is moved onto
/// `next`, which takes it before running any of its own code: left on the
/// other thread, `next` could die first of a later SIGPIPE, or exit 0.
/// Other stops are kept for the event loop, in order.
/// True if an exec stop under `next`'s id was taken meanwhile: the stop
/// being handled was the old leader's, and `next` must not be resumed.
fn deliver_held_signals(next: i32) -> bool {
    if !crate::watchdog::take_held() {
        return false;
    }
    let mut replaced = false;
    let next_tgid = crate::remote::tgid_of(next);
    for _ in 0..4096 {
        match crate::wait::wait(-1, libc::WNOHANG) {
            Ok(crate::wait::Stop::Nothing) | Err(_) => break,
            // SIGPIPE may be one to drop (on_signal): left to the loop.
            Ok(crate::wait::Stop::Stopped(p, sig)) if sig != libc::SIGPIPE => {
                let moved = next_tgid.is_some_and(|g| ends_process_on(p, g, next, sig))
                    // SAFETY: tgkill on integers.
                    && unsafe { libc::syscall(libc::SYS_tgkill, next_tgid.unwrap_or(0), next, sig) } == 0;
                let inject = if moved { 0 } else { sig };
                if let Err(e) = crate::wait::cont(p, inject) {
                    if e != Errno::ESRCH {
                        log::warn!("PTRACE_CONT {p}: {e}");
                    }
                }
            }
            Ok(other) => {
                replaced |=
                    matches!(other, Stop::Event(p, _, libc::PTRACE_EVENT_EXEC) if p == next);
                queue(other);
            }
        }
    }
    replaced
}

/// The thread a stop is of.
fn stop_tid(s: &Stop) -> Option<i32> {
    match *s {
        Stop::Exited(p, _)
        | Stop::Signaled(p, _)
        | Stop::Stopped(p, _)
        | Stop::Event(p, ..)
        | Stop::Syscall(p) => Some(p),
        Stop::Nothing => None,
    }
}

/// Queue a stop taken from waitpid. An exec stop under id `p` means any
/// stop of `p` taken before it was the old leader's, which the exec killed
/// (de_thread): `p` now names the thread that exec'd, in its exec stop.
fn queue(s: Stop) {
    DEFERRED.with(|d| {
        let mut d = d.borrow_mut();
        if let Stop::Event(p, _, libc::PTRACE_EVENT_EXEC) = s {
            d.retain(|q| stop_tid(q) != Some(p));
        }
        d.push_back(s);
    });
}

/// Whether the signal `sig` that stopped thread `tid` was sent to its
/// process `tgid` (kill, not tgkill or the kernel), will end it (default
/// action terminate or core; not caught, not ignored) and is not blocked
/// in thread `next` of the same process.
fn ends_process_on(tid: i32, tgid: i32, next: i32, sig: i32) -> bool {
    if crate::remote::NOT_ENDING.contains(&sig) || crate::remote::tgid_of(tid) != Some(tgid) {
        return false;
    }
    let to_process = ptrace::getsiginfo(pid(tid)).is_ok_and(|i| i.si_code == libc::SI_USER);
    let mask = |who: i32, key: &str| {
        crate::remote::status_field(who, key)
            .and_then(|v| u64::from_str_radix(&v, 16).ok())
            .unwrap_or(u64::MAX)
    };
    let bit = 1u64.checked_shl((sig - 1) as u32).unwrap_or(0);
    to_process && (mask(tgid, "SigCgt:") | mask(tgid, "SigIgn:") | mask(next, "SigBlk:")) & bit == 0
}

thread_local! {
    /// Whether the last look for more waiting stops found any, and the
    /// blocking waits since it (see `next_stop`). Tracer thread only.
    static DRAIN: std::cell::Cell<(bool, u32)> = const { std::cell::Cell::new((false, 0)) };
}

/// Blocking waits between two looks for more waiting stops while the last
/// look found none.
const DRAIN_EVERY: u32 = 16;

/// The next stop to handle. With several threads traced (`many`), every
/// stop already waiting is taken at once and queued in the order found, and
/// the queue is served before waitpid is asked again: waitpid reports stops
/// in the kernel's list order, so under load the threads at the front of it
/// were served again and again while the others waited in their stops (50
/// threads connecting in a loop: some made 8 connects in 60 s while the
/// rest made hundreds). The look costs a waitpid; it is made after every
/// wait while stops come together, else every DRAIN_EVERY waits, so a
/// program whose threads stop one at a time pays almost nothing (and one
/// thread nothing).
fn next_stop(many: bool) -> Result<crate::wait::Stop, Errno> {
    if let Some(s) = DEFERRED.with(|d| d.borrow_mut().pop_front()) {
        return Ok(s);
    }
    let first = crate::wait::wait(-1, 0)?;
    if !many {
        return Ok(first);
    }
    let (busy, waits) = DRAIN.get();
    if !busy && waits + 1 < DRAIN_EVERY {
        DRAIN.set((false, waits + 1));
        return Ok(first);
    }
    queue(first);
    let mut found = false;
    for _ in 0..4096 {
        match crate::wait::wait(-1, libc::WNOHANG) {
            Ok(crate::wait::Stop::Nothing) | Err(_) => break,
            Ok(s) => {
                found = true;
                queue(s);
            }
        }
    }
    DRAIN.set((found, 0));
    // Never empty: the last stop queued stays.
    Ok(DEFERRED
        .with(|d| d.borrow_mut().pop_front())
        .unwrap_or(crate::wait::Stop::Nothing))
}

fn syscall_info(tid: i32) -> Result<SyscallInfo, Errno> {
    let mut info = SyscallInfo::default();
    // SAFETY: the kernel writes at most size_of::<SyscallInfo>() bytes.
    let r = unsafe {
        libc::ptrace(
            PTRACE_GET_SYSCALL_INFO,
            tid,
            std::mem::size_of::<SyscallInfo>(),
            &mut info as *mut SyscallInfo,
        )
    };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(info)
    }
}

/// Skip the stopped call; the program sees `ret` (a value or -errno).
pub(crate) fn skip(tid: i32, ret: i64) {
    match ptrace::getregs(pid(tid)) {
        Ok(mut regs) => {
            arch::skip_with_result(&mut regs, ret);
            if let Err(e) = ptrace::setregs(pid(tid), regs) {
                if e != Errno::ESRCH {
                    log::warn!("PTRACE_SETREGS {tid}: {e}");
                }
            }
        }
        // ESRCH: killed meanwhile (its exit is reported by waitpid).
        Err(Errno::ESRCH) => {}
        Err(e) => log::warn!("PTRACE_GETREGS {tid}: {e}"),
    }
    resume(tid, None);
}

/// Some(true) for landlock_restrict_self, Some(false) for
/// landlock_create_ruleset (the same numbers in every ABI).
pub(crate) fn landlock_call(raw: &RawCall) -> Option<bool> {
    arch::abi_of(raw.arch, raw.nr)?;
    match raw.nr & !arch::X32_SYSCALL_BIT {
        nr::LANDLOCK_RESTRICT_SELF => Some(true),
        nr::LANDLOCK_CREATE_RULESET => Some(false),
        _ => None,
    }
}

/// Whether a seccomp stop is for clone (native, x32 or i386).
fn is_clone(raw: &RawCall) -> bool {
    match arch::abi_of(raw.arch, raw.nr) {
        Some(Abi::Compat32) => raw.nr == nr32::CLONE,
        Some(_) => raw.nr & !arch::X32_SYSCALL_BIT == nr::CLONE,
        None => false,
    }
}

fn is_stop_signal(sig: i32) -> bool {
    matches!(
        sig,
        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
    )
}

impl<H: NetHandler> Tracer<'_, H> {
    fn event_loop(&mut self) -> Result<(), TraceError> {
        loop {
            let status = match next_stop(self.tasks.len() > 1) {
                Ok(s) => s,
                Err(Errno::EINTR) => continue,
                Err(Errno::ECHILD) => return Ok(()),
                Err(e) => return Err(TraceError::sys("waitpid")(e)),
            };
            match status {
                Stop::Exited(p, code) => self.on_exit(p, ExitStatus::Code(code)),
                Stop::Signaled(p, sig) => self.on_exit(p, ExitStatus::Signal(sig)),
                Stop::Event(p, sig, ev) => self.on_event(p, sig, ev),
                Stop::Syscall(p) => self.on_syscall_exit(p),
                Stop::Stopped(p, sig) => self.on_signal(p, sig),
                Stop::Nothing => {}
            }
        }
    }

    fn on_exit(&mut self, tid: i32, status: ExitStatus) {
        self.pidfds.forget_thread(tid);
        signals::untrack(tid);
        proc_calls::forget(tid);
        if let Some(task) = self.tasks.remove(&tid) {
            if let Some(p) = task.pending {
                self.handler.finished(&p.call, &p.verdict, Outcome::Unknown);
            }
            if task.tgid == Some(tid) {
                if !task.forked && tid != self.main {
                    if self.exited_unforked.len() >= 256 {
                        self.exited_unforked.pop_front();
                    }
                    self.exited_unforked.push_back(tid);
                }
                self.landlock.exited(tid);
                self.handler.process(ProcessEvent::Exited { pid: tid });
            }
        }
        if tid == self.main {
            self.main_status = Some(status);
        }
    }

    fn on_event(&mut self, tid: i32, sig: i32, ev: i32) {
        match ev {
            libc::PTRACE_EVENT_SECCOMP => return self.on_seccomp(tid),
            libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK | libc::PTRACE_EVENT_CLONE => {
                if let Ok(new) = ptrace::getevent(pid(tid)) {
                    let new = new as i32;
                    let tgid = if ev == libc::PTRACE_EVENT_CLONE {
                        remote::tgid_of(new)
                    } else {
                        Some(new)
                    };
                    if let Some(i) = self.exited_unforked.iter().position(|&p| p == new) {
                        // Ran, and exited, before this event: nothing to register.
                        self.exited_unforked.remove(i);
                        return resume(tid, None);
                    }
                    let task = self.tasks.entry(new).or_default();
                    // Its first stop came first and registered it already.
                    let told = task.started;
                    task.tgid = tgid;
                    task.forked = true;
                    if tgid == Some(new) {
                        // The creator's domain, whoever the first stop
                        // judged it by (CLONE_PARENT makes its PPid the
                        // creator's parent): it only ever restricts.
                        let parent = self.tgid(tid);
                        self.landlock.fork(parent, new);
                        if !told {
                            signals::track(new);
                            self.handler
                                .process(ProcessEvent::Spawned { pid: new, parent });
                        }
                    }
                }
            }
            libc::PTRACE_EVENT_EXEC => {
                // A non-leader thread that exec'd has taken over the leader's id.
                if let Ok(former) = ptrace::getevent(pid(tid)) {
                    let former = former as i32;
                    if former != tid {
                        self.tasks.remove(&former);
                        self.pidfds.forget_thread(former);
                    }
                }
                self.pidfds.forget_thread(tid);
                let task = self.tasks.entry(tid).or_default();
                task.tgid = Some(tid);
                task.started = true;
                // A call the old leader had pending ended with the old image.
                if let Some(p) = task.pending.take() {
                    self.handler.finished(&p.call, &p.verdict, Outcome::Unknown);
                }
                if tid == self.main {
                    self.main_exec = true;
                }
                self.handler.process(ProcessEvent::Exec { pid: tid });
            }
            PTRACE_EVENT_STOP => {
                let task = self.tasks.entry(tid).or_default();
                if !task.started {
                    // An auto-attached child's first stop.
                    task.started = true;
                    self.first_stop(tid);
                } else if is_stop_signal(sig) {
                    // Group-stop: stay stopped, but let SIGCONT through.
                    // SAFETY: PTRACE_LISTEN takes no pointers.
                    unsafe { libc::ptrace(libc::PTRACE_LISTEN, tid, 0, 0) };
                    return;
                }
            }
            _ => {}
        }
        resume(tid, None);
    }

    /// A new process's first stop. Its parent's fork event registers it
    /// (Landlock domain, signals, Spawned), but that event may come after
    /// this stop, or never: it is lost if the parent is killed before it is
    /// read (GETEVENTMSG fails), and the process would then be left out of
    /// signal forwarding and of a kill of the program from the daemon, and
    /// count as unrestricted. So a process its fork event has not
    /// registered yet is registered here (the event, if it comes, finds it
    /// done, and adds its creator's Landlock domain), judged by its parent,
    /// or, if that is not a process we trace (it died and the child was
    /// reparented), as an orphan (restricted). (A child its fork event
    /// registered costs nothing; else two reads of /proc/PID/status.)
    fn first_stop(&mut self, tid: i32) {
        // A pid that exited earlier is back: a new process.
        self.exited_unforked.retain(|&p| p != tid);
        let registered = self.tasks.get(&tid).is_some_and(|t| t.tgid.is_some());
        if registered || self.tgid(tid) != tid {
            return;
        }
        let ppid = remote::ppid_of(tid);
        let parent = ppid.filter(|&p| self.tasks.contains_key(&p) || signals::traced_by_us(p));
        match parent {
            Some(p) => self.landlock.fork(p, tid),
            None => self.landlock.orphan(tid),
        }
        signals::track(tid);
        self.handler.process(ProcessEvent::Spawned {
            pid: tid,
            parent: ppid.unwrap_or(0),
        });
    }

    /// The stopped call returns `ret` (a value or -errno) without running.
    pub(crate) fn skip_call(&mut self, tid: i32, ret: i64) {
        match &mut self.notify {
            Some(n) => n.reply(ret),
            None => skip(tid, ret),
        }
    }

    /// Whether the call being handled still waits for us (user
    /// notification: its id is still valid; under ptrace the thread is
    /// stopped, so always).
    pub(crate) fn still_waiting(&self) -> bool {
        self.notify.as_ref().is_none_or(|n| n.valid())
    }

    /// MSG_DONTWAIT under user notification (the supervisor never waits in
    /// a send: a blocked call is parked), else 0.
    pub(crate) fn dontwait(&self) -> i32 {
        if self.notify.is_some() {
            libc::MSG_DONTWAIT
        } else {
            0
        }
    }

    /// The stopped call runs in the kernel as the program made it.
    pub(crate) fn let_run(&mut self, tid: i32) {
        match &mut self.notify {
            Some(n) => n.continue_call(),
            None => resume(tid, None),
        }
    }

    pub(crate) fn tgid(&mut self, tid: i32) -> i32 {
        let task = self.tasks.entry(tid).or_default();
        if let Some(t) = task.tgid {
            return t;
        }
        let t = remote::tgid_of(tid).unwrap_or(tid);
        task.tgid = Some(t);
        t
    }

    fn on_seccomp(&mut self, tid: i32) {
        let info = match syscall_info(tid) {
            Ok(i) if i.op == PTRACE_SYSCALL_INFO_SECCOMP => i,
            Ok(_) => return resume(tid, None),
            Err(e) => {
                if e != Errno::ESRCH {
                    log::warn!("PTRACE_GET_SYSCALL_INFO {tid}: {e}");
                }
                return resume(tid, None);
            }
        };
        // A dropped-SIGPIPE mark lives only until the thread's next call.
        if let Some(t) = self.tasks.get_mut(&tid) {
            t.drop_sigpipe = false;
        }
        let raw = RawCall {
            arch: info.arch,
            nr: info.nr,
            args: info.args,
        };
        if let Some((abi, c)) = proc_calls::classify(&raw) {
            return match c {
                ProcCall::Ptrace => self.on_ptrace(tid, &raw, abi),
                // Attached, we are not the program's parent: nothing to re-aim.
                ProcCall::Signal { .. } if self.attached => skip(tid, -(Errno::EPERM as i64)),
                ProcCall::Signal { pid_args } => on_kill(tid, abi, pid_args),
            };
        }
        // By number, never by ret_data (see filter.rs): clone is the only
        // non-network call the filter traps.
        if is_clone(&raw) {
            self.on_clone(tid, &raw);
            return resume(tid, None);
        }
        if crate::attach::detached() {
            // Detached (attach.rs): every call passes as it was made.
            return resume(tid, None);
        }
        if let Some(restrict) = landlock_call(&raw) {
            let tgid = self.tgid(tid);
            if restrict {
                self.landlock.restrict_self(tgid, tid, raw.args[0] as i32);
                return resume(tid, None);
            }
            // A creation: its descriptor is known at the exit stop.
            let net = Landlock::creating(tid, &raw.args);
            self.tasks.entry(tid).or_default().ruleset_net = net;
            return match net {
                Some(_) => resume_to_exit(tid),
                None => resume(tid, None),
            };
        }
        let tgid = self.tgid(tid);
        let decoded = match decode::decode(tgid, tid, &raw) {
            Ok(d) => d,
            Err(DecodeError::Ignore) => return resume(tid, None),
            Err(DecodeError::Fail(e)) => {
                self.handler
                    .refused(tgid, tid, "unreadable or invalid call arguments", e);
                return skip(tid, -(e as i64));
            }
        };
        if decoded.call.abi == Abi::X32 {
            // Not enabled on most kernels (ENOSYS there too); never let it through unseen.
            self.handler
                .refused(tgid, tid, "x32 network call", Errno::ENOSYS);
            return skip(tid, -(Errno::ENOSYS as i64));
        }
        self.on_net(tid, decoded);
    }

    fn on_syscall_exit(&mut self, tid: i32) {
        if let Some(net) = self.tasks.get_mut(&tid).and_then(|t| t.ruleset_net.take()) {
            return self.ruleset_created(tid, net);
        }
        let pending = self.tasks.get_mut(&tid).and_then(|t| t.pending.take());
        let Some(mut p) = pending else {
            return resume(tid, None);
        };
        let ealready = -(Errno::EALREADY as i64);
        let ret = match ptrace::getregs(pid(tid)) {
            Ok(mut regs) => {
                if p.first_connect && arch::return_value(&regs) == ealready {
                    regs.rax = -(Errno::EINPROGRESS as i64) as u64;
                }
                if p.sent > 0 {
                    let r = arch::return_value(&regs);
                    let total = if r >= 0 { r as u64 + p.sent } else { p.sent };
                    regs.rax = total;
                }
                if let Some(mut saved) = p.restore {
                    saved.rax = regs.rax;
                    if let Err(e) = ptrace::setregs(pid(tid), saved) {
                        log::warn!("PTRACE_SETREGS {tid}: {e}");
                    }
                }
                arch::return_value(&regs)
            }
            Err(_) => return resume(tid, None),
        };
        // -ERESTART*: interrupted by a signal; it restarts (and stops again) or becomes EINTR.
        let outcome = if (-516..=-512).contains(&ret) {
            Outcome::Err(Errno::EINTR)
        } else {
            Outcome::from_raw(ret)
        };
        if let (crate::call::Op::Accept, Outcome::Ok(fd)) = (p.call.op, outcome) {
            self.accept_exit(tid, &mut p.call, fd as i32);
        }
        if let (crate::call::Op::RecvFrom | crate::call::Op::RecvMsg, Outcome::Ok(_)) =
            (p.call.op, outcome)
        {
            self.recv_exit(tid, &mut p.call);
        }
        if p.nosignal && outcome == Outcome::Err(Errno::EPIPE) {
            self.tasks.entry(tid).or_default().drop_sigpipe = true;
        }
        // Resume first: the handler's bookkeeping overlaps the program.
        resume(tid, None);
        self.handler.finished(&p.call, &p.verdict, outcome);
    }

    /// landlock_create_ruleset returned: keep our copy of the new ruleset.
    fn ruleset_created(&mut self, tid: i32, net: bool) {
        if let Ok(regs) = ptrace::getregs(pid(tid)) {
            let fd = arch::return_value(&regs);
            if fd >= 0 {
                let tgid = self.tgid(tid);
                if let Ok(copy) = self.pidfds.getfd(tgid, tid, fd as i32) {
                    self.landlock.created(copy, net);
                }
            }
        }
        resume(tid, None)
    }

    /// A signal-delivery stop: the signal goes on, but for the SIGPIPE of a
    /// writev that stood in for a MSG_NOSIGNAL send.
    fn on_signal(&mut self, tid: i32, sig: i32) {
        if sig == libc::SIGPIPE {
            if let Some(t) = self.tasks.get_mut(&tid) {
                if std::mem::take(&mut t.drop_sigpipe) {
                    return resume(tid, None);
                }
            }
        }
        if deliver_held_signals(tid) {
            return;
        }
        if let Err(e) = crate::wait::cont(tid, sig) {
            if e != Errno::ESRCH {
                log::warn!("PTRACE_CONT {tid}: {e}");
            }
        }
    }

    /// ptrace from a traced process: see proc_calls.
    fn on_ptrace(&mut self, tid: i32, raw: &RawCall, abi: Abi) {
        match proc_calls::refused_ptrace(raw, abi) {
            Some(what) => {
                let tgid = self.tgid(tid);
                proc_calls::tell_once(tgid, tid, what);
                skip(tid, -(Errno::EPERM as i64));
            }
            None => resume(tid, None),
        }
    }

    /// clone with CLONE_UNTRACED: clear the flag (in a register, which no
    /// sibling can change) so the child stays traced. clone3 never gets here:
    /// the filter fails it with ENOSYS.
    fn on_clone(&mut self, tid: i32, raw: &RawCall) {
        let Some(abi) = arch::abi_of(raw.arch, raw.nr) else {
            return;
        };
        if raw.args[0] & CLONE_UNTRACED != 0 {
            if let Ok(mut regs) = ptrace::getregs(pid(tid)) {
                *arch::arg_mut(&mut regs, abi, 0) &= !CLONE_UNTRACED;
                let _ = ptrace::setregs(pid(tid), regs);
            }
        }
    }
}

/// A signal call aimed at the trace process (the filter stops only those):
/// aim it at our parent, which it would have reached without us.
fn on_kill(tid: i32, abi: Abi, pid_args: usize) {
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() } as u32 as u64;
    match ptrace::getregs(pid(tid)) {
        Ok(mut regs) => {
            for i in 0..pid_args {
                *arch::arg_mut(&mut regs, abi, i) = parent;
            }
            if let Err(e) = ptrace::setregs(pid(tid), regs) {
                log::warn!("PTRACE_SETREGS {tid}: {e}");
            }
        }
        Err(e) if e != Errno::ESRCH => log::warn!("PTRACE_GETREGS {tid}: {e}"),
        Err(_) => {}
    }
    resume(tid, None);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An exec stop under an id means the stops of that id taken before it
    /// were the old leader's (killed by the exec): they are dropped, the
    /// rest keep their order.
    #[test]
    fn an_exec_stop_drops_the_earlier_stops_of_its_id() {
        let (trap, exec) = (libc::SIGTRAP, libc::PTRACE_EVENT_EXEC);
        queue(Stop::Event(5, trap, libc::PTRACE_EVENT_SECCOMP));
        queue(Stop::Syscall(6));
        queue(Stop::Stopped(5, libc::SIGUSR1));
        queue(Stop::Exited(7, 0));
        queue(Stop::Event(5, trap, exec));
        queue(Stop::Syscall(5));
        let left: Vec<Stop> = DEFERRED.with(|d| d.borrow_mut().drain(..).collect());
        assert_eq!(
            left,
            vec![
                Stop::Syscall(6),
                Stop::Exited(7, 0),
                Stop::Event(5, trap, exec),
                Stop::Syscall(5)
            ]
        );
    }
}
