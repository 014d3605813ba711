//! `appswitch attach PID` and `appswitch detach PID`: put a program that is
//! already running under appswitch ([`tracer::attach`]), with the policy,
//! handler, daemon link and control files `trace` uses (command.rs), and
//! supervise it until it and every process it creates have exited.
//!
//! By default the supervisor is a child forked before any thread exists
//! (the config, the backend, the policy and the checks on the target are
//! done first, their log lines held: src/stderr.rs); it reports through a
//! pipe either the `attached ...` line or why it could not attach, and the
//! command returns. `--foreground` supervises from this process.
//!
//! Detach ([`tracer::detach`]: every later call passes undecided) comes
//! from SIGTERM/SIGINT/SIGHUP to the supervisor (a thread waits for them:
//! they are blocked everywhere else), from `appswitch detach PID` through
//! the abstract socket @appswitch-attach-PID, or from the daemon
//! (apps/ID/ctl, daemon_link.rs). docs/ATTACH.md.

use super::command::{self, Common, Prepared};
use super::report::Report;
use crate::cli::{load_config, AttachArgs, DetachArgs};
use crate::config::Config;
use crate::protocol::ToDaemon;
use crate::stderr;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::Path;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;

/// Exit status when the program was not attached, whatever the reason
/// (bad usage, no such process, not permitted, already attached, --mount
/// failed...): the program was left as it was.
const NOT_ATTACHED: u8 = 2;
/// Exit status when supervising failed after the attach (--foreground), or
/// `detach` could not talk to the supervisor.
const FAILED: u8 = 1;

/// What the user is told: `appswitch: attach: MSG`, exit status `code`.
#[derive(Debug, PartialEq, Eq)]
struct Failure {
    code: u8,
    msg: String,
}

impl Failure {
    fn not_attached(msg: impl Into<String>) -> Failure {
        Failure {
            code: NOT_ATTACHED,
            msg: msg.into(),
        }
    }

    fn failed(msg: impl Into<String>) -> Failure {
        Failure {
            code: FAILED,
            msg: msg.into(),
        }
    }

    /// A failure before the attach (the program unchanged): an attach error
    /// says what it is without tracer's "attach: " (ours says it).
    fn of(e: anyhow::Error) -> Failure {
        if let Some(tracer::TraceError::Attach(a)) = e.downcast_ref::<tracer::TraceError>() {
            return Failure::not_attached(a.to_string());
        }
        Failure::not_attached(format!("{e:#}"))
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::of(e)
    }
}

/// `appswitch attach`: the exit status.
pub fn run(args: AttachArgs) -> i32 {
    // The supervisor's signals are waited for by a thread of its own
    // (signal_thread): blocked from now on, in every thread to come.
    let set = signal_set();
    // SAFETY: changes this thread's signal mask only.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    // Nothing may start a thread before the fork: lines wait in memory.
    stderr::hold();
    let r = attach(args);
    stderr::release();
    match r {
        Ok(code) => code,
        Err(f) => {
            stderr::say(format_args!("attach: {}", f.msg));
            i32::from(f.code)
        }
    }
}

/// The program attached to, as read before touching it.
struct Target {
    pid: i32,
    comm: String,
    cmdline: Vec<String>,
}

fn attach(mut args: AttachArgs) -> Result<i32, Failure> {
    let pid = args.pid;
    let config = load_config(args.program.config.as_deref())?;
    if !args.foreground && args.log_file.is_none() && args.events.as_deref() == Some(Path::new("-"))
    {
        return Err(Failure::not_attached(
            "--events -: in the background the supervisor's stderr is /dev/null: give a file, \
             --log-file FILE (events then go there), or --foreground",
        ));
    }
    if !args.foreground {
        // The supervisor leaves the working directory (it would keep its
        // filesystem busy): paths it uses later must not be relative.
        for p in [&mut args.mount, &mut args.log_file].into_iter().flatten() {
            if let Ok(abs) = std::path::absolute(&*p) {
                *p = abs;
            }
        }
    }
    let target = target(pid)?;
    let common = Common {
        policy: args.policy.as_deref(),
        mode: args.program.mode,
        backend: args.program.backend,
        labels: args.program.labels.clone().unwrap_or_default(),
        events: args.events.as_deref(),
        mount: args.mount.as_deref(),
        no_daemon: args.no_daemon,
    };
    let prepared = command::prepare(&common, &config)?;
    // Last: taken, it says another supervisor has the program.
    let control = bind_control(pid)?;
    let s = Supervisor {
        common: &common,
        config: &config,
        target: &target,
    };
    if args.foreground {
        stderr::release();
        let mut tell = |r: Result<String, Failure>| match r {
            Ok(line) => print_line(&line),
            Err(f) => stderr::say(format_args!("attach: {}", f.msg)),
        };
        return Ok(s.supervise(prepared, control, &mut tell));
    }
    s.background(prepared, control, args.log_file.as_deref())
}

/// `line` on stdout, at once.
fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Checks on PID that need no ptrace: a live process (not a thread of one,
/// not this one), and what the daemon is told of it.
fn target(pid: i32) -> Result<Target, Failure> {
    if pid == std::process::id() as i32 {
        return Err(Failure::not_attached(format!(
            "{pid} is this appswitch process"
        )));
    }
    let status = match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Failure::not_attached(
                tracer::AttachError::NoProcess(pid).to_string(),
            ))
        }
        Err(e) => return Err(Failure::failed(format!("/proc/{pid}/status: {e}"))),
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    // Gone, all but its exit status (a leader that exited while other
    // threads run is a zombie too, with Threads above 1: still alive).
    let threads = field("Threads:")
        .and_then(|t| t.parse::<u32>().ok())
        .unwrap_or(0);
    if threads <= 1 && field("State:").is_some_and(|s| s.starts_with('Z') || s.starts_with('X')) {
        return Err(Failure::not_attached(
            tracer::AttachError::NoProcess(pid).to_string(),
        ));
    }
    match field("Tgid:").and_then(|t| t.parse::<i32>().ok()) {
        Some(tgid) if tgid != pid => {
            return Err(Failure::not_attached(format!(
            "{pid} is a thread of process {tgid}: attach to {tgid} (all its threads are covered)"
        )))
        }
        _ => {}
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Ok(Target {
        pid,
        comm: crate::procfs::comm(pid),
        cmdline,
    })
}

/// The abstract socket name of PID's supervisor.
fn control_name(pid: i32) -> String {
    format!("appswitch-attach-{pid}")
}

fn control_addr(pid: i32) -> Result<SocketAddr, Failure> {
    SocketAddr::from_abstract_name(control_name(pid).as_bytes())
        .map_err(|e| Failure::failed(format!("@{}: {e}", control_name(pid))))
}

/// @appswitch-attach-PID, bound (the name is ours: one supervisor per
/// program) but not yet listening: the supervisor listens, so that a
/// client's SO_PEERCRED names it (listen() records the credentials), not
/// the process that forked it.
#[derive(Debug)]
struct Control(OwnedFd);

impl Control {
    fn listen(self) -> std::io::Result<UnixListener> {
        // SAFETY: listen on a socket we own.
        if unsafe { libc::listen(self.0.as_raw_fd(), 16) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(UnixListener::from(self.0))
    }
}

/// Bind @appswitch-attach-PID. Taken means another appswitch attached the
/// program (its supervisor is named).
fn bind_control(pid: i32) -> Result<Control, Failure> {
    let addr = control_addr(pid)?;
    let name = control_name(pid);
    let io = |e: std::io::Error| Failure::failed(format!("binding @{name}: {e}"));
    // SAFETY: a new socket, owned from here on.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io(std::io::Error::last_os_error()));
    }
    // SAFETY: just created, ours alone.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_un is plain data; an abstract name is a NUL then
    // the name's bytes, its length given by addrlen.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = name.as_bytes();
    if bytes.len() + 1 > sa.sun_path.len() {
        return Err(io(std::io::Error::from_raw_os_error(libc::ENAMETOOLONG)));
    }
    for (d, b) in sa.sun_path[1..].iter_mut().zip(bytes) {
        *d = *b as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + 1 + bytes.len();
    // SAFETY: binds our socket to the address built above, of length `len`.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_un).cast(),
            len as libc::socklen_t,
        )
    };
    if r == 0 {
        return Ok(Control(fd));
    }
    match std::io::Error::last_os_error() {
        e if e.raw_os_error() == Some(libc::EADDRINUSE) => {
            let holder = UnixStream::connect_addr(&addr)
                .ok()
                .and_then(|s| peer_cred(&s))
                .map(|c| c.pid);
            Err(Failure::not_attached(match holder {
                Some(s) => format!("{pid} is already attached by appswitch (supervisor {s})"),
                None => format!("{pid} is already attached by appswitch"),
            }))
        }
        e => Err(io(e)),
    }
}

/// The credentials of the process at the other end of `s`.
fn peer_cred(s: &UnixStream) -> Option<libc::ucred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED fills a ucred of the given length.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(cred)
}

/// What attach and the supervisor share.
struct Supervisor<'a> {
    common: &'a Common<'a>,
    config: &'a Config,
    target: &'a Target,
}

impl Supervisor<'_> {
    /// Fork the supervisor (this process has one thread: checked), which
    /// reports through a pipe; say what it said. Returns in the child too,
    /// once it is done supervising.
    fn background(
        &self,
        prepared: Prepared,
        control: Control,
        log_file: Option<&Path>,
    ) -> Result<i32, Failure> {
        match threads() {
            Some(1) => {}
            n => {
                return Err(Failure::failed(format!(
                    "internal error: {} threads before forking the supervisor (it must be forked \
                     with one); use --foreground",
                    n.map_or("?".to_string(), |n| n.to_string())
                )))
            }
        }
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two descriptors, which we own from here on.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(Failure::failed(format!(
                "pipe: {}",
                std::io::Error::last_os_error()
            )));
        }
        // SAFETY: both are open and ours alone.
        let (rx, tx) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: one thread (checked above): the child may do anything the
        // parent could.
        let child = unsafe { libc::fork() };
        if child < 0 {
            return Err(Failure::failed(format!(
                "fork: {}",
                std::io::Error::last_os_error()
            )));
        }
        if child == 0 {
            drop(rx);
            return Ok(self.child(prepared, control, tx, log_file));
        }
        drop((tx, control, prepared));
        let set = signal_set();
        // SAFETY: changes this thread's signal mask only: ^C may end the
        // wait (the supervisor, in its own session, goes on).
        unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
        stderr::release();
        match read_report(std::fs::File::from(rx)) {
            Some(Ok(line)) => {
                print_line(&line);
                Ok(0)
            }
            Some(Err(f)) => Err(f),
            None => Err(Failure::not_attached(format!(
                "the supervisor (pid {child}) ended before attaching{}",
                ended(child)
            ))),
        }
    }

    /// The forked supervisor: its own session, no terminal, stderr to
    /// --log-file or nowhere; tells the parent through `pipe`.
    fn child(
        &self,
        prepared: Prepared,
        control: Control,
        pipe: OwnedFd,
        log_file: Option<&Path>,
    ) -> i32 {
        detach_from_terminal(log_file);
        stderr::release();
        let mut pipe = Some(std::fs::File::from(pipe));
        let mut tell = |r: Result<String, Failure>| {
            // Once: the parent reads one report, then returns.
            if let Some(mut p) = pipe.take() {
                let _ = p.write_all(report_line(&r).as_bytes());
            }
        };
        self.supervise(prepared, control, &mut tell)
    }

    /// Join the daemon (or mount --mount), attach, and supervise until the
    /// program and its processes are gone. `tell` hears once: the attached
    /// line, or why not. Returns the exit status.
    fn supervise(
        &self,
        prepared: Prepared,
        control: Control,
        tell: &mut dyn FnMut(Result<String, Failure>),
    ) -> i32 {
        let pid = self.target.pid;
        let me = std::process::id() as i32;
        signal_thread(pid);
        match control.listen() {
            Ok(l) => {
                let _ = std::thread::Builder::new()
                    .name("appswitch-control".into())
                    .spawn(move || serve_control(l, pid));
            }
            Err(e) => log::warn!(
                "@{}: listen: {e}: `appswitch detach {pid}` will not reach this supervisor \
                 (signals and apps/ID/ctl still detach)",
                control_name(pid)
            ),
        }
        let chosen = prepared.chosen;
        let hello = ToDaemon::Hello {
            pid,
            comm: self.target.comm.clone(),
            cmdline: self.target.cmdline.clone(),
            labels: self.common.labels.clone(),
            local_policy: prepared.local.render(),
            host: None,
            backend: chosen.name().into(),
            attached: true,
            supervisor: Some(me),
        };
        let mut linked = match command::link(self.common, self.config, prepared, hello) {
            Ok(l) => l,
            Err(e) => {
                let f = Failure::of(e);
                let code = i32::from(f.code);
                tell(Err(f));
                return code;
            }
        };
        // No --ip: an attached program is no service, but reaches them.
        linked.route(None);
        let reporter = linked
            .handler
            .reporter()
            .map(|r| (r.tx.clone(), r.pids.clone()));
        if let Some((_, pids)) = &reporter {
            // apps/ID/ctl kill signals the program, which no fork reported.
            if let Ok(mut p) = pids.lock() {
                p.live.insert(pid);
            }
        }
        let (stop, stopped) = channel::<()>();
        let watcher = reporter.as_ref().and_then(|(tx, _)| {
            let tx = tx.clone();
            std::thread::Builder::new()
                .name("appswitch-detach".into())
                .spawn(move || watch_detach(tx, stopped))
                .ok()
        });
        let mut ready = false;
        let mut scan = None;
        let r = tracer::attach(pid, chosen, &mut linked.handler, &mut |a| {
            ready = true;
            if let Some(n) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("Seccomp_filters:"))
                        .and_then(|v| v.trim().parse::<u32>().ok())
                })
            {
                ATTACHED_FILTERS.store(n, std::sync::atomic::Ordering::Relaxed);
            }
            let line = attached_line(a, me);
            log::info!("{line}");
            if a.set_no_new_privs {
                log::warn!(
                    "{pid} lacked CAP_SYS_ADMIN: no_new_privs was set on it to take the filter; \
                     it is permanent (its later execs of setuid programs gain no privileges)"
                );
            }
            tell(Ok(line));
            // What it had before: its sockets, as the kernel has them.
            if let Some((tx, _)) = &reporter {
                let (tx, comm) = (tx.clone(), self.target.comm.clone());
                scan = std::thread::Builder::new()
                    .name("appswitch-sockets".into())
                    .spawn(move || report_existing(&tx, pid, comm))
                    .ok();
            }
        });
        drop(stop);
        for t in watcher.into_iter().chain(scan) {
            let _ = t.join();
        }
        drop(reporter);
        let code = match r {
            Ok(()) => {
                log::info!("{pid} and the processes it created have exited");
                0
            }
            Err(e) if !ready => {
                let f = Failure::of(e.into());
                let code = i32::from(f.code);
                tell(Err(f));
                code
            }
            Err(e) => {
                log::error!("supervising {pid}: {e}");
                i32::from(FAILED)
            }
        };
        linked.finish();
        code
    }
}

/// `attached pid=PID backend=B threads=N stopped_us=U supervisor=SPID [no_new_privs=set]`
fn attached_line(a: &tracer::Attached, supervisor: i32) -> String {
    format!(
        "attached pid={} backend={} threads={} stopped_us={} supervisor={supervisor}{}",
        a.pid,
        a.backend.name(),
        a.threads,
        a.stopped.as_micros(),
        if a.set_no_new_privs {
            " no_new_privs=set"
        } else {
            ""
        }
    )
}

/// The supervisor's one report to the parent, one line.
fn report_line(r: &Result<String, Failure>) -> String {
    let one = |s: &str| s.replace('\n', "; ");
    match r {
        Ok(line) => format!("ok {}\n", one(line)),
        Err(f) => format!("err {} {}\n", f.code, one(&f.msg)),
    }
}

/// The report read back (None: the supervisor said nothing).
fn parse_report(text: &str) -> Option<Result<String, Failure>> {
    let line = text.lines().next()?;
    if let Some(ok) = line.strip_prefix("ok ") {
        return Some(Ok(ok.to_string()));
    }
    let (code, msg) = line.strip_prefix("err ")?.split_once(' ')?;
    Some(Err(Failure {
        code: code.parse().unwrap_or(FAILED),
        msg: msg.to_string(),
    }))
}

/// Read the supervisor's report: up to its newline, or the end (it died).
fn read_report(mut f: std::fs::File) -> Option<Result<String, Failure>> {
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    while !text.contains(&b'\n') && text.len() < 64 * 1024 {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    parse_report(&String::from_utf8_lossy(&text))
}

/// How the child `pid` ended (reaped here), as ": killed by signal N".
fn ended(pid: i32) -> String {
    for _ in 0..100 {
        let mut status = 0;
        // SAFETY: reaps our own child, if it is done.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            if libc::WIFSIGNALED(status) {
                return format!(": killed by signal {}", libc::WTERMSIG(status));
            }
            if libc::WIFEXITED(status) {
                return format!(": exit status {}", libc::WEXITSTATUS(status));
            }
        }
        if r < 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    String::new()
}

/// The threads of this process (/proc/self/status).
fn threads() -> Option<usize> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}

/// The forked supervisor leaves the terminal and its session: stdin and
/// stdout on /dev/null, stderr on `log_file` (appended) or /dev/null, and
/// the working directory is /.
fn detach_from_terminal(log_file: Option<&Path>) {
    // SAFETY: setsid and chdir on this process; the descriptors duplicated
    // are open (or the dup2 fails harmlessly).
    unsafe {
        libc::setsid();
        libc::chdir(c"/".as_ptr());
    }
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null");
    let err = log_file.and_then(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .ok()
    });
    if let Ok(null) = &null {
        // SAFETY: as above.
        unsafe {
            libc::dup2(null.as_raw_fd(), 0);
            libc::dup2(null.as_raw_fd(), 1);
        }
    }
    match (&err, &null) {
        // SAFETY: as above.
        (Some(f), _) => unsafe {
            libc::dup2(f.as_raw_fd(), 2);
        },
        (None, Ok(null)) => unsafe {
            libc::dup2(null.as_raw_fd(), 2);
        },
        (None, Err(_)) => {}
    }
}

/// SIGTERM, SIGINT, SIGHUP: the supervisor's detach.
fn signal_set() -> libc::sigset_t {
    // SAFETY: plain operations on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGINT => "SIGINT".into(),
        libc::SIGHUP => "SIGHUP".into(),
        n => format!("signal {n}"),
    }
}

/// A thread that takes SIGTERM, SIGINT and SIGHUP (blocked in every other
/// thread since `run`): each detaches. The program is not our child and is
/// never signalled.
fn signal_thread(pid: i32) {
    let set = signal_set();
    let _ = std::thread::Builder::new()
        .name("appswitch-signals".into())
        .spawn(move || loop {
            // SAFETY: a zeroed siginfo is valid for sigwaitinfo to fill.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: waits for one of the signals blocked in every thread.
            let sig = unsafe { libc::sigwaitinfo(&set, &mut info) };
            if sig <= 0 {
                continue;
            }
            // SAFETY: si_pid is valid for signals sent by a process.
            let sender = unsafe { info.si_pid() };
            if info.si_code <= 0 && sender > 0 && of_program(sender, pid) {
                log::warn!(
                    "{} from {sender}, a process of the attached program: ignored (the \
                     program may not detach itself)",
                    signal_name(sig)
                );
                continue;
            }
            detach_now(pid, &signal_name(sig));
        });
}

/// Whether process `p` is the attached program `pid` or one of its
/// descendants, or carries the filter (at least as many seccomp filters as
/// the program had once attached, and an ancestor chain we cannot follow:
/// an orphan reparented away). Such a process may not detach its own
/// supervisor.
fn of_program(p: i32, pid: i32) -> bool {
    let field = |q: i32, key: &str| -> Option<String> {
        std::fs::read_to_string(format!("/proc/{q}/status"))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
    };
    let mut q = p;
    for _ in 0..64 {
        if q == pid {
            return true;
        }
        match field(q, "PPid:").and_then(|v| v.parse::<i32>().ok()) {
            Some(pp) if pp > 1 => q = pp,
            _ => break,
        }
    }
    let filters = |q: i32| field(q, "Seccomp_filters:").and_then(|v| v.parse::<u32>().ok());
    matches!((filters(p), ATTACHED_FILTERS.load(std::sync::atomic::Ordering::Relaxed)), (Some(n), m) if m > 0 && n >= m)
}

/// How many seccomp filters the attached program had once attached.
static ATTACHED_FILTERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Detach (once), saying why and what it means.
fn detach_now(pid: i32, why: &str) {
    let me = std::process::id();
    if tracer::detached() {
        log::warn!("{why}: already detached; this supervisor (pid {me}) stays until {pid} exits");
        return;
    }
    tracer::detach();
    log::warn!(
        "{why}: detached: {pid}'s network calls now pass undecided and unrecorded; this \
         supervisor (pid {me}) stays until {pid} exits (without it, the kernel would fail \
         {pid}'s trapped calls with ENOSYS)"
    );
}

/// Serve `appswitch detach PID` on @appswitch-attach-PID: "detach\n" from
/// root or this process's user detaches; the answer is "ok\n" or
/// "error: WHY\n".
fn serve_control(listener: UnixListener, pid: i32) {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
        let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
        let cred = peer_cred(&conn);
        let mut asked = Vec::new();
        let mut buf = [0u8; 64];
        while !asked.contains(&b'\n') && asked.len() < 256 {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => asked.extend_from_slice(&buf[..n]),
            }
        }
        let asked = String::from_utf8_lossy(&asked);
        let answer = match cred {
            None => "error: no peer credentials\n".to_string(),
            Some(c) if c.uid != 0 && c.uid != me => format!(
                "error: not permitted: uid {} is neither root nor the supervisor's ({me})\n",
                c.uid
            ),
            Some(c) if of_program(c.pid, pid) => format!(
                "error: not permitted: {} is a process of the attached program, which may not \
                 detach itself\n",
                c.pid
            ),
            Some(c) if asked.trim() == "detach" => {
                detach_now(pid, &format!("appswitch detach (pid {})", c.pid));
                "ok\n".to_string()
            }
            Some(_) => format!("error: '{}': expected detach\n", asked.trim()),
        };
        let _ = conn.write_all(answer.as_bytes());
    }
}

/// Tell the daemon once the supervisor detached, however it happened.
fn watch_detach(tx: SyncSender<Report>, stop: Receiver<()>) {
    loop {
        match stop.recv_timeout(Duration::from_millis(100)) {
            Err(RecvTimeoutError::Timeout) if tracer::detached() => {
                let _ = tx.send(Report::Msg(ToDaemon::Detached));
                return;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Report the sockets the program had when attached (no call reported
/// them): its descriptors' inodes, as the kernel has them.
fn report_existing(tx: &SyncSender<Report>, pid: i32, comm: String) {
    let found = match super::open_sockets::open_sockets(&[pid], |_| comm.clone()) {
        Ok(r) => r,
        Err(e) => {
            log::warn!("the sockets {pid} had before the attach are not listed: sock_diag: {e}");
            return;
        }
    };
    for r in found {
        if tx.send(Report::Msg(ToDaemon::Conn(r))).is_err() {
            return;
        }
    }
}

/// `appswitch detach PID`: the exit status.
pub fn detach_cmd(args: DetachArgs) -> i32 {
    match detach(args.pid) {
        Ok(line) => {
            print_line(&line);
            0
        }
        Err(f) => {
            stderr::say(format_args!("detach: {}", f.msg));
            i32::from(f.code)
        }
    }
}

fn detach(pid: i32) -> Result<String, Failure> {
    let addr = control_addr(pid)?;
    let mut s = match UnixStream::connect_addr(&addr) {
        Ok(s) => s,
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
            let why = if Path::new(&format!("/proc/{pid}")).exists() {
                format!(
                    "no supervisor answers at @{} in this network namespace",
                    control_name(pid)
                )
            } else {
                format!("no process {pid}")
            };
            return Err(Failure::not_attached(format!(
                "{pid} is not attached by appswitch ({why})"
            )));
        }
        Err(e) => {
            return Err(Failure::failed(format!("@{}: {e}", control_name(pid))));
        }
    };
    let supervisor = peer_cred(&s).map_or("?".to_string(), |c| c.pid.to_string());
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    let talk = |s: &mut UnixStream| -> std::io::Result<String> {
        s.write_all(b"detach\n")?;
        let mut answer = String::new();
        s.take(4096).read_to_string(&mut answer)?;
        Ok(answer)
    };
    let answer = talk(&mut s)
        .map_err(|e| Failure::failed(format!("the supervisor of {pid} (pid {supervisor}): {e}")))?;
    match answer.trim() {
        "ok" => Ok(format!("detached pid={pid} supervisor={supervisor}")),
        a => Err(Failure::failed(format!(
            "the supervisor of {pid} (pid {supervisor}) answered: {}",
            a.strip_prefix("error: ").unwrap_or(a)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::UsageError;

    #[test]
    fn the_report_through_the_pipe_reads_back() {
        let ok: Result<String, Failure> = Ok("attached pid=1 backend=unotify".into());
        assert_eq!(parse_report(&report_line(&ok)), Some(ok));
        let err: Result<String, Failure> = Err(Failure::not_attached("no process 7\nsecond"));
        assert_eq!(
            parse_report(&report_line(&err)),
            Some(Err(Failure::not_attached("no process 7; second")))
        );
        assert_eq!(parse_report(""), None);
    }

    #[test]
    fn the_attached_line() {
        let a = tracer::Attached {
            pid: 4242,
            backend: tracer::Chosen::Unotify,
            stopped: Duration::from_micros(163),
            threads: 4,
            set_no_new_privs: false,
        };
        assert_eq!(
            attached_line(&a, 4300),
            "attached pid=4242 backend=unotify threads=4 stopped_us=163 supervisor=4300"
        );
        let a = tracer::Attached {
            set_no_new_privs: true,
            backend: tracer::Chosen::Ptrace,
            ..a
        };
        assert!(attached_line(&a, 1)
            .ends_with("backend=ptrace threads=4 stopped_us=163 supervisor=1 no_new_privs=set"));
    }

    #[test]
    fn attach_errors_are_not_attached() {
        let e: anyhow::Error = tracer::TraceError::Attach(tracer::AttachError::NoProcess(9)).into();
        assert_eq!(Failure::of(e), Failure::not_attached("no process 9"));
        let e: anyhow::Error = UsageError("bad".into()).into();
        assert_eq!(Failure::of(e), Failure::not_attached("bad"));
        let e = anyhow::anyhow!("mount").context("mounting /x");
        assert_eq!(Failure::of(e), Failure::not_attached("mounting /x: mount"));
    }

    #[test]
    fn one_supervisor_per_program_and_detach_through_its_socket() {
        // A pid no program has: the socket is what is tested.
        let pid = i32::MAX - 7;
        let control = bind_control(pid).unwrap();
        // Bound, not yet listening (the supervisor listens): taken all the same.
        let early = bind_control(pid).unwrap_err();
        assert_eq!(
            early,
            Failure::not_attached(format!("{pid} is already attached by appswitch"))
        );
        let control = control.listen().unwrap();
        let again = bind_control(pid).unwrap_err();
        assert_eq!(again.code, NOT_ATTACHED);
        assert_eq!(
            again.msg,
            format!(
                "{pid} is already attached by appswitch (supervisor {})",
                std::process::id()
            )
        );
        // (The connect that found the holder, closed, is served first.)
        std::thread::spawn(move || serve_control(control, pid));
        let line = detach(pid).unwrap();
        assert_eq!(
            line,
            format!("detached pid={pid} supervisor={}", std::process::id())
        );
        assert!(tracer::detached());
        let none = detach(pid - 1).unwrap_err();
        assert_eq!(none.code, NOT_ATTACHED);
        assert!(none.msg.contains("is not attached"), "{}", none.msg);
    }
}
