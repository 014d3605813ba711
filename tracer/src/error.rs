use nix::errno::Errno;

/// Errors the tracer reports to its caller. Errors about one traced call never
/// end up here: they become that call's errno.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("building the seccomp filter: {0}")]
    Filter(String),
    #[error("{what}: {errno}")]
    Sys { what: &'static str, errno: Errno },
    #[error("cannot execute {program}: {errno}")]
    Exec { program: String, errno: Errno },
    #[error("{program}: command not found")]
    NotFound { program: String },
    #[error("installing the seccomp filter in the child: {0}")]
    InstallFilter(Errno),
    #[error("switching to the program's user (--user): {0}")]
    SetUser(Errno),
    #[error(
        "--isolate: setting up the program's network namespace: {0} (needs root: CAP_SYS_ADMIN)"
    )]
    Isolate(Errno),
    #[error("--isolate needs the user-notification backend (ptrace cannot put a socket into the program)")]
    IsolateNeedsUnotify,
    #[error("attach: {0}")]
    Attach(#[from] crate::attach::AttachError),
}

impl TraceError {
    pub fn sys(what: &'static str) -> impl FnOnce(Errno) -> TraceError {
        move |errno| TraceError::Sys { what, errno }
    }
}
