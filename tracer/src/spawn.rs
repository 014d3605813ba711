//! Starting the program: fork, wait in the child until the parent has seized
//! it (so the filter never runs without a tracer), install the filter, exec.
//!
//! Between fork and exec the child only makes async-signal-safe system calls
//! on memory prepared before the fork.

use crate::error::TraceError;
use crate::filter::Program;
use nix::errno::Errno;
use nix::sys::ptrace::{self, Options};
use nix::unistd::Pid;
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub const PTRACE_OPTIONS: Options = Options::PTRACE_O_TRACESYSGOOD
    .union(Options::PTRACE_O_TRACEFORK)
    .union(Options::PTRACE_O_TRACEVFORK)
    .union(Options::PTRACE_O_TRACECLONE)
    .union(Options::PTRACE_O_TRACEEXEC)
    .union(Options::PTRACE_O_TRACESECCOMP)
    .union(Options::PTRACE_O_EXITKILL);

/// A started, seized child.
pub struct Child {
    pub pid: Pid,
    /// Read end of the exec-status pipe: EOF when exec succeeded, otherwise a
    /// stage byte and an errno (see [`Child::exec_error`]).
    status: OwnedFd,
    program: String,
}

impl Child {
    /// After the child exited without exec'ing: why.
    pub fn exec_error(&self) -> Option<TraceError> {
        let mut b = [0u8; 5];
        // SAFETY: reading into a local buffer.
        let n = unsafe { libc::read(self.status.as_raw_fd(), b.as_mut_ptr().cast(), 5) };
        if n != 5 {
            return None;
        }
        let errno = Errno::from_raw(i32::from_ne_bytes([b[1], b[2], b[3], b[4]]));
        Some(match b[0] {
            b'F' => TraceError::InstallFilter(errno),
            b'U' => TraceError::SetUser(errno),
            b'N' => TraceError::Isolate(errno),
            _ => TraceError::Exec {
                program: self.program.clone(),
                errno,
            },
        })
    }
}

/// Find `program` the way execvp would: as given when it contains a slash,
/// else the first executable regular file of that name in $PATH.
pub fn resolve(program: &OsStr) -> Result<PathBuf, TraceError> {
    let p = Path::new(program);
    if program.as_bytes().contains(&b'/') {
        return Ok(p.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    for dir in std::env::split_paths(&path) {
        let cand = dir.join(p);
        if let Ok(meta) = std::fs::metadata(&cand) {
            use std::os::unix::fs::PermissionsExt;
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(cand);
            }
        }
    }
    Err(TraceError::NotFound {
        program: program.to_string_lossy().into_owned(),
    })
}

fn cstring(s: &OsStr) -> Result<CString, TraceError> {
    CString::new(s.as_bytes()).map_err(|_| TraceError::Exec {
        program: s.to_string_lossy().into_owned(),
        errno: Errno::EINVAL,
    })
}

fn pipe() -> Result<(OwnedFd, OwnedFd), TraceError> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(TraceError::sys("pipe2")(Errno::last()));
    }
    // SAFETY: both are fresh descriptors we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// In the child: report `stage` and errno on the status pipe, then exit 127.
fn child_fail(fd: i32, stage: u8, errno: i32) -> ! {
    let e = errno.to_ne_bytes();
    let b = [stage, e[0], e[1], e[2], e[3]];
    // SAFETY: write and _exit are async-signal-safe.
    unsafe {
        libc::write(fd, b.as_ptr().cast(), 5);
        libc::_exit(127)
    }
}

/// In the child: a private mount namespace with each (source, target) bind
/// mounted. Only async-signal-safe calls. False if any step failed.
///
/// # Safety
/// The pointers must be valid NUL-terminated strings.
unsafe fn private_binds(
    binds: &[(CString, CString)],
    root: *const libc::c_char,
    none: *const libc::c_char,
) -> bool {
    if libc::unshare(libc::CLONE_NEWNS) != 0 {
        return false;
    }
    // Mounts made here must not propagate back to the host; the host's
    // later mounts still reach the program (slave, not private).
    if libc::mount(
        none,
        root,
        std::ptr::null(),
        libc::MS_REC | libc::MS_SLAVE,
        std::ptr::null(),
    ) != 0
    {
        return false;
    }
    let mut ok = true;
    for (src, dst) in binds {
        ok &= libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        ) == 0;
    }
    ok
}

/// How the supervisor takes hold of the child before it execs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handoff {
    /// ptrace: the child waits until the calling thread has seized it, then
    /// installs a RET_TRACE filter.
    Seize,
    /// User notification: the child installs the filter with a listener,
    /// writes the listener's number to a pipe (write is never trapped; a
    /// sendmsg would be, and would wait for a listener nobody reads yet),
    /// waits until the parent has taken a copy with pidfd_getfd, closes its
    /// own and execs.
    Listener,
}

/// Fork and exec `cmd` under `filter`; `Seize`: seized by the calling
/// thread; `Listener`: the filter's listener is returned.
/// `nofile`: the RLIMIT_NOFILE to give the program (the tracer raised its own).
pub fn spawn(
    cmd: &crate::tracer::Command,
    filter: &Program,
    nofile: Option<libc::rlimit>,
    handoff: Handoff,
) -> Result<(Child, Option<OwnedFd>), TraceError> {
    let (program, args, bind_files) = (cmd.program.as_os_str(), &cmd.args, &cmd.bind_files);
    let path = cstring(resolve(program)?.as_os_str())?;
    // The environment, with the user's values when --user (execve's envp).
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    if let Some(u) = &cmd.user {
        for (k, v) in &u.env {
            env.retain(|(x, _)| x != k);
            env.push((k.clone(), v.clone()));
        }
    }
    let env_c = env
        .iter()
        .map(|(k, v)| {
            let mut kv = k.clone();
            kv.push("=");
            kv.push(v);
            cstring(&kv)
        })
        .collect::<Result<Vec<_>, TraceError>>()?;
    let mut envp: Vec<*const libc::c_char> = env_c.iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());
    let user = cmd.user.clone();
    let groups: Vec<libc::gid_t> = user.as_ref().map_or(Vec::new(), |u| u.groups.clone());
    let binds = bind_files
        .iter()
        .map(|(s, t)| Ok((cstring(s.as_os_str())?, cstring(t.as_os_str())?)))
        .collect::<Result<Vec<_>, TraceError>>()?;
    let isolation = cmd.isolate.as_ref().map(crate::netns::Prepared::new);
    let root = c"/";
    let none = c"none";
    let warn: &[u8] =
        b"warning: could not set up the program's private bind mounts (mount namespace): it sees the host's files\n";
    let mut argv_c = vec![cstring(program)?];
    for a in args {
        argv_c.push(cstring(a)?);
    }
    let mut argv: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let prog = libc::sock_fprog {
        len: filter.insns.len() as u16,
        filter: filter.insns.as_ptr() as *mut libc::sock_filter,
    };
    // Without CAP_SYS_ADMIN the kernel accepts a filter only with no_new_privs.
    // SAFETY: geteuid has no preconditions.
    let need_nnp = unsafe { libc::geteuid() } != 0;
    let (go_r, go_w) = pipe()?;
    let (st_r, st_w) = pipe()?;
    let (ln_r, ln_w) = pipe()?;
    let notify = handoff == Handoff::Listener;
    let filter_flags: libc::c_ulong = if notify {
        crate::unotify::notif::SECCOMP_FILTER_FLAG_NEW_LISTENER
    } else {
        0
    };

    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the child only calls async-signal-safe functions on memory
    // prepared above, then execs or _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(TraceError::sys("fork")(Errno::last()));
    }
    if pid == 0 {
        // SAFETY: all calls below are async-signal-safe; pointers are valid.
        unsafe {
            let st = st_w.as_raw_fd();
            libc::close(go_w.as_raw_fd());
            libc::close(ln_r.as_raw_fd());
            let mut b = 0u8;
            // Wait until the parent has seized us (EOF: the parent died).
            if !notify && libc::read(go_r.as_raw_fd(), (&mut b as *mut u8).cast(), 1) != 1 {
                libc::_exit(127);
            }
            // Dispositions and mask as we inherited them (the Rust runtime
            // ignores SIGPIPE; the tracer handles the signals it forwards).
            crate::inherited::restore_signals_in_child();
            if !binds.is_empty() && !private_binds(&binds, root.as_ptr(), none.as_ptr()) {
                libc::write(2, warn.as_ptr().cast(), warn.len());
            }
            if let Some(iso) = &isolation {
                if let Err(e) = iso.apply() {
                    child_fail(st, b'N', e);
                }
            }
            if need_nnp && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                child_fail(st, b'F', *libc::__errno_location());
            }
            let lfd = libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                filter_flags,
                &prog as *const libc::sock_fprog,
            );
            if lfd < 0 {
                child_fail(st, b'F', *libc::__errno_location());
            }
            if notify {
                // The listener's number to the parent; go on once it holds a copy.
                let n = (lfd as i32).to_ne_bytes();
                if libc::write(ln_w.as_raw_fd(), n.as_ptr().cast(), 4) != 4
                    || libc::read(go_r.as_raw_fd(), (&mut b as *mut u8).cast(), 1) != 1
                {
                    libc::_exit(127);
                }
                libc::close(lfd as i32);
            }
            libc::close(ln_w.as_raw_fd());
            // --user: drop to the user now, with the filter in place (installing
            // it needed root's CAP_SYS_ADMIN or no_new_privs).
            if let Some(u) = &user {
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(u.gid) != 0
                    || libc::setuid(u.uid) != 0
                {
                    child_fail(st, b'U', *libc::__errno_location());
                }
            }
            if let Some(rl) = &nofile {
                libc::setrlimit(libc::RLIMIT_NOFILE, rl);
            }
            // User notification: the program dies with trace, as under
            // ptrace (PTRACE_O_EXITKILL). Set after the user change, which
            // clears it. Its descendants fail closed instead (ENOSYS).
            if notify {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                if libc::getppid() != parent {
                    libc::_exit(127);
                }
            }
            crate::inherited::close_std_fds_in_child();
            libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
            child_fail(st, b'E', *libc::__errno_location());
        }
    }
    drop(go_r);
    drop(st_w);
    drop(ln_w);
    let pid = Pid::from_raw(pid);
    let program = program.to_string_lossy().into_owned();
    if notify {
        let listener = take_listener(pid, &ln_r);
        let child = Child {
            pid,
            status: st_r,
            program,
        };
        return match listener {
            Ok(l) => {
                // SAFETY: writing one byte from a local.
                let wrote = unsafe { libc::write(go_w.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
                if wrote != 1 {
                    return Err(TraceError::sys("starting the child")(Errno::last()));
                }
                Ok((child, Some(l)))
            }
            Err(e) => {
                // SAFETY: the child is ours and has not exec'd.
                unsafe { libc::kill(pid.as_raw(), libc::SIGKILL) };
                let _ = nix::sys::wait::waitpid(pid, None);
                Err(child.exec_error().unwrap_or(e))
            }
        };
    }
    if let Err(e) = ptrace::seize(pid, PTRACE_OPTIONS) {
        // SAFETY: the child is ours and has not exec'd.
        unsafe { libc::kill(pid.as_raw(), libc::SIGKILL) };
        let _ = nix::sys::wait::waitpid(pid, None);
        return Err(TraceError::sys("PTRACE_SEIZE")(e));
    }
    // SAFETY: writing one byte from a local.
    let wrote = unsafe { libc::write(go_w.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
    if wrote != 1 {
        return Err(TraceError::sys("starting the child")(Errno::last()));
    }
    Ok((
        Child {
            pid,
            status: st_r,
            program,
        },
        None,
    ))
}

/// Read the listener's number from the child and take a copy of it.
fn take_listener(pid: Pid, ln_r: &OwnedFd) -> Result<OwnedFd, TraceError> {
    let mut n = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        // SAFETY: reading into a local buffer.
        let r = unsafe { libc::read(ln_r.as_raw_fd(), n[got..].as_mut_ptr().cast(), 4 - got) };
        if r < 0 && Errno::last() == Errno::EINTR {
            continue;
        }
        if r <= 0 {
            return Err(TraceError::sys("receiving the filter's listener")(
                Errno::EPIPE,
            ));
        }
        got += r as usize;
    }
    let num = i32::from_ne_bytes(n);
    let pidfd = crate::remote::pidfd_open(pid.as_raw())
        .map_err(TraceError::sys("pidfd_open of the program"))?;
    crate::remote::pidfd_getfd(&pidfd, num).map_err(TraceError::sys("taking the filter's listener"))
}
