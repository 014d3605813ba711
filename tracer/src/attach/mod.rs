//! Attach: put a program that is already running under the tracer.
//!
//! Under user notification one thread of the program is seized and made to
//! install the filter itself in all its threads at once
//! (SECCOMP_FILTER_FLAG_TSYNC | NEW_LISTENER, by injected system calls:
//! inject.rs); the listener is taken out with pidfd_getfd and the thread is
//! let go. Under ptrace every thread is seized, the filter is installed the
//! same way (without a listener: its stops come to us) and we stay attached.
//! Either way, children the program creates from then on inherit the filter.
//! See docs/ATTACH.md.

use crate::backend::Chosen;
use crate::filter;
use crate::tracer::Tracer;

mod checks;
mod inject;
mod install;
use std::time::Duration;

/// What an attach did, for the caller to report once the program is under
/// the tracer (before supervising it).
#[derive(Clone, Debug)]
pub struct Attached {
    pub pid: i32,
    pub backend: Chosen,
    /// How long the program's seized thread was stopped.
    pub stopped: Duration,
    /// How many threads the program had when the filter went in.
    pub threads: usize,
    /// no_new_privs was set on the program (it lacked CAP_SYS_ADMIN).
    pub set_no_new_privs: bool,
}

/// Why an attach did not happen. In every case the program was left as it
/// was (no filter, no_new_privs unchanged, registers restored, let go).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AttachError {
    #[error("no process {0}")]
    NoProcess(i32),
    #[error("{pid}: not permitted ({why})")]
    NotPermitted { pid: i32, why: String },
    #[error("{pid} is already under appswitch ({how})")]
    AlreadyUnderAppswitch { pid: i32, how: String },
    #[error("{pid} is already traced by {tracer} ({comm}): only one tracer at a time")]
    AlreadyTraced { pid: i32, tracer: i32, comm: String },
    #[error("{pid} is already under a seccomp supervisor (another listener holds its filters: appswitch, syd, LXD...)")]
    AlreadySupervised { pid: i32 },
    #[error("{pid} cannot take a filter: it lacks CAP_SYS_ADMIN and no_new_privs could not be set ({why})")]
    NoNewPrivs { pid: i32, why: String },
    #[error("{pid}: its threads do not share one seccomp filter (one installed its own): the filter cannot go into all of them")]
    DivergedFilters { pid: i32 },
    #[error("{pid} is stopped (SIGSTOP, ^Z): continue it first (kill -CONT {pid})")]
    Stopped { pid: i32 },
    #[error("{0}")]
    Unsupported(String),
    #[error("{pid}: {what}: {errno}")]
    Sys {
        pid: i32,
        what: &'static str,
        errno: nix::errno::Errno,
    },
}

/// Set once the supervisor detaches (see [`detach`]).
static DETACHED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Detach: from now on every trapped call of the attached program passes
/// as it was made, with no decision and nothing recorded. The filter cannot
/// be removed from a running program, and the supervisor must stay until
/// the program exits: were it to go, the kernel would fail every trapped
/// call with ENOSYS (under ptrace, likewise). Async-signal-safe.
pub fn detach() {
    DETACHED.store(true, std::sync::atomic::Ordering::Release);
}

/// Whether [`detach`] was called.
pub fn detached() -> bool {
    DETACHED.load(std::sync::atomic::Ordering::Acquire)
}

/// Attach to process `pid` with `backend` and supervise it, as `run` does a
/// program it started, until it and every process it creates from now on
/// have exited. `ready` is called once the filter is in all its threads;
/// an error before that ([`crate::TraceError::Attach`]) left the program
/// unchanged.
pub fn attach<H: crate::NetHandler>(
    pid: i32,
    backend: Chosen,
    handler: &mut H,
    ready: &mut dyn FnMut(&Attached),
) -> Result<(), crate::TraceError> {
    let pid = checks::process(pid)?;
    // One supervisor per program, across network namespaces too (two
    // filters would be stacked, and the first listener's answers win).
    let _lock = checks::lock(pid)?;
    let interests = handler.interests();
    crate::watchdog::start();
    match backend {
        Chosen::Unotify => {
            let program = filter::build_attached(&interests, filter::Mode::Notify)?;
            let signals = crate::unotify::signal_pipe()?;
            crate::tracer::raise_nofile();
            let (listener, done) = install::with_listener(pid, &program)?;
            ready(&done);
            let mut t = Tracer::new(handler, interests, pid, None);
            t.attached = true;
            crate::unotify::serve(
                &mut t,
                listener,
                signals,
                crate::remote::ppid_of(pid).unwrap_or(0),
            )
        }
        Chosen::Ptrace => {
            let program = filter::build_attached(&interests, filter::Mode::Trace)?;
            crate::tracer::raise_nofile();
            let (threads, done) = install::traced(pid, &program)?;
            ready(&done);
            crate::tracer::run_attached(
                handler,
                interests,
                pid,
                &threads,
                crate::remote::ppid_of(pid).unwrap_or(0),
            )
        }
    }
}
