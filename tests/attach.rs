//! Issue 15: `appswitch attach PID` puts a program that is already running
//! under appswitch without restarting it; `appswitch detach PID` (or SIGTERM
//! to the supervisor) lets its calls pass undecided from then on.
//!
//! Backends: no test here is about one backend only. Every test runs under
//! the backend this pass selects (APPSWITCH_BACKEND, as scripts/test.sh
//! sets it: attach follows the same precedence as trace), and the attached
//! line must name that backend. The one assertion that differs by backend
//! is where the program's TracerPid points after an attach: under ptrace
//! at the supervisor (it stays attached), under user notification nowhere.
//!
//! What the tests assume of the CLI (beyond the usage in the issue):
//! - background `attach` prints exactly one stdout line,
//!   `attached pid=PID backend=B threads=N stopped_us=U supervisor=SPID`
//!   (optionally ` no_new_privs=set`), and exits 0 once the filter is in
//!   every thread; the supervisor does not hold attach's stdout or stderr
//!   open (the tests send both to files, so a supervisor that did would
//!   not hang them, but `$(appswitch attach PID)` in a shell would), is in
//!   a session of its own, and exits by itself once the program and all its
//!   descendants have exited (the tests reap the program first: it is
//!   their child);
//! - `--foreground`: the same line, supervisor= its own pid, exit 0 after
//!   the program has exited;
//! - errors: exit status 2, a stderr line starting `appswitch: attach: `;
//!   a failed attach leaves no process behind;
//! - `--log-file` and `--events` work as under trace (events are flushed
//!   line by line, so the tests read them while the supervisor runs).
//!
//! Every process a test starts is stopped by it: the program (its whole
//! tree), then the supervisor must be gone within a bounded time. Waits are
//! readiness checks with a bound, never sleeps.

mod common;
use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// How long any one thing may take before a test gives up on it.
const LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Processes seen in /proc.

/// Field `n` (1-based, as in proc(5)) of /proc/PID/stat.
fn stat_field(pid: i32, n: usize) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the comm, which may hold spaces and parentheses.
    let rest = &s[s.rfind(')')? + 2..];
    rest.split_whitespace().nth(n - 3).map(str::to_string)
}

/// A process by pid and start time, so that a reused pid is never taken
/// for it.
#[derive(Clone, Copy, Debug)]
struct Seen {
    pid: i32,
    start: u64,
}

impl Seen {
    fn of(pid: i32) -> Option<Seen> {
        let start = stat_field(pid, 22)?.parse().ok()?;
        Some(Seen { pid, start })
    }
    /// Still there and not a zombie.
    fn alive(&self) -> bool {
        let same = stat_field(self.pid, 22).and_then(|s| s.parse::<u64>().ok()) == Some(self.start);
        let state = stat_field(self.pid, 3).unwrap_or_default();
        same && state != "Z" && state != "X"
    }
    fn kill(&self) {
        if self.alive() {
            // SAFETY: plain kill of a process this test started (checked
            // by its start time).
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }
    /// Kill it and every process below it.
    fn kill_tree(&self) {
        if !self.alive() {
            return;
        }
        for p in descendants_of(self.pid) {
            // SAFETY: a process in the tree of one this test started.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        self.kill();
    }
}

/// Wait until `p` is gone (bounded by `limit`); whether it went.
fn gone_within(p: &Seen, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while p.alive() {
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// What /proc/PID/status says about a program's interception.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Status {
    seccomp: String,
    filters: u32,
    no_new_privs: String,
    tracer: i32,
    state: String,
}

fn status(pid: i32) -> Status {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    Status {
        seccomp: field("Seccomp:"),
        filters: field("Seccomp_filters:").parse().expect("Seccomp_filters"),
        no_new_privs: field("NoNewPrivs:"),
        tracer: field("TracerPid:").parse().expect("TracerPid"),
        state: field("State:"),
    }
}

/// The process (thread group) a thread id belongs to.
fn tgid_of(tid: i32) -> i32 {
    std::fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("Tgid:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Processes whose command line mentions `marker` (a test's own temporary
/// directory, passed to every attach it runs): what a failed attach must
/// not leave behind.
fn processes_mentioning(marker: &Path) -> Vec<i32> {
    let marker = marker.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmd).contains(&marker)
        })
        .collect()
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

// ---------------------------------------------------------------------------
// The program under test: a child whose stdout lines are read as they come
// and whose stdin takes commands.

/// The lines a process prints, read by a thread as they come.
struct Lines {
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn new(r: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(r).lines() {
                match l {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// The next line for which `want` holds (lines before it are kept in
    /// `seen`); panics after LIMIT or at EOF.
    fn expect(&mut self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + LIMIT;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if want(&l) {
                        return l;
                    }
                }
                Err(e) => panic!(
                    "waiting for {what}: {e:?}; the program printed: {:#?}",
                    self.seen
                ),
            }
        }
    }
}

struct Target {
    proc: Proc,
    stdin: Option<ChildStdin>,
    out: Lines,
    /// The program's pid (the child's, unless it runs under a wrapper).
    pid: i32,
}

impl Target {
    fn start(cmd: &mut Command) -> Target {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
        let stdin = child.stdin.take();
        let out = Lines::new(child.stdout.take().expect("stdout"));
        let proc = Proc(child);
        let pid = proc.pid();
        Target {
            proc,
            stdin,
            out,
            pid,
        }
    }

    /// attach_cmd (tests/progs/attach_cmd.c), once it is ready.
    fn cmd() -> Target {
        let mut t = Target::start(&mut Command::new(c_prog("attach_cmd", &[])));
        t.out.expect("ready", |l| l.starts_with("ready pid="));
        t
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("sending {line:?}: {e}"));
    }

    /// Send `line`, return the first answer starting with `prefix`.
    fn ask(&mut self, line: &str, prefix: &str) -> String {
        self.send(line);
        self.out
            .expect(&format!("{prefix}... (after {line:?})"), |l| {
                l.starts_with(prefix)
            })
    }

    /// `connect PORT` (attach_cmd): "ok" or "err ERRNAME".
    fn connect(&mut self, port: u16) -> String {
        let p = format!("connect {port} ");
        let l = self.ask(&format!("connect {port}"), &p);
        l[p.len()..].to_string()
    }

    /// `dial PORT` (the python3, Go and C clients): "ok" or "err ERRNAME".
    fn dial(&mut self, port: u16) -> String {
        let p = format!("dial {port} ");
        let l = self.ask(&format!("dial {port}"), &p);
        l[p.len()..].to_string()
    }

    /// Kill the program (its whole tree) and reap it.
    fn stop(mut self) {
        if let Some(s) = Seen::of(self.pid) {
            s.kill_tree();
        }
        drop(self.stdin.take());
        self.proc.signal(libc::SIGKILL);
        self.proc
            .wait_timeout(LIMIT)
            .expect("the killed program was reaped");
    }
}

// ---------------------------------------------------------------------------
// Running attach.

/// What one `appswitch attach` run left.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    log: String,
}

/// `[wrap...] appswitch attach --no-daemon --log-file DIR/log --events
/// DIR/events.jsonl OPTS PID`, stdout and stderr to files in `dir` (a
/// supervisor holding them cannot hang the test); waits for it to exit.
fn attach_in(dir: &Path, wrap: &[&OsStr], opts: &[&OsStr], pid: i32) -> Run {
    let out = dir.join("stdout");
    let err = dir.join("stderr");
    let log = dir.join("log");
    let mut cmd = match wrap.split_first() {
        Some((w, rest)) => {
            let mut c = Command::new(w);
            c.args(rest).arg(appswitch());
            c
        }
        None => Command::new(appswitch()),
    };
    cmd.args(["attach", "--no-daemon", "--log-file"])
        .arg(&log)
        .arg("--events")
        .arg(dir.join("events.jsonl"))
        .args(opts)
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"));
    let mut p = Proc(cmd.spawn().expect("spawn appswitch attach"));
    let code = p.wait_timeout(Duration::from_secs(60));
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    Run {
        code,
        stdout: read(&out),
        stderr: read(&err),
        log: read(&log),
    }
}

/// The line attach prints once the program is under it.
#[derive(Clone, Debug)]
struct Line {
    pid: i32,
    backend: String,
    threads: usize,
    stopped_us: u64,
    supervisor: i32,
    no_new_privs: bool,
}

fn parse_line(text: &str) -> Line {
    let rest = text
        .strip_prefix("attached ")
        .unwrap_or_else(|| panic!("not an attached line: {text:?}"));
    let kv: BTreeMap<&str, &str> = rest
        .split_whitespace()
        .map(|w| {
            w.split_once('=')
                .unwrap_or_else(|| panic!("{w:?} in {text:?}"))
        })
        .collect();
    let get = |k: &str| *kv.get(k).unwrap_or_else(|| panic!("no {k}= in {text:?}"));
    let known = [
        "pid",
        "backend",
        "threads",
        "stopped_us",
        "supervisor",
        "no_new_privs",
    ];
    for k in kv.keys() {
        assert!(known.contains(k), "unknown key {k} in {text:?}");
    }
    if let Some(v) = kv.get("no_new_privs") {
        assert_eq!(*v, "set", "{text:?}");
    }
    Line {
        pid: get("pid").parse().expect("pid="),
        backend: get("backend").to_string(),
        threads: get("threads").parse().expect("threads="),
        stopped_us: get("stopped_us").parse().expect("stopped_us="),
        supervisor: get("supervisor").parse().expect("supervisor="),
        no_new_privs: kv.contains_key("no_new_privs"),
    }
}

/// The one line of a successful attach's stdout, checked against the pass.
fn the_line(run: &Run, pid: i32) -> Line {
    assert_eq!(run.code, Some(0), "attach {pid} failed: {run:#?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "attach must print one line: {run:#?}");
    let line = parse_line(lines[0]);
    assert_eq!(line.pid, pid, "{run:#?}");
    assert_eq!(line.backend, backend(), "attach runs this pass's backend");
    assert!(line.threads >= 1, "{line:?}");
    assert!(
        line.stopped_us < 10_000_000,
        "the program was stopped for {} µs",
        line.stopped_us
    );
    println!("{}", lines[0]);
    line
}

/// A program under appswitch by `attach` (in the background).
struct Attachment {
    line: Line,
    target: Seen,
    supervisor: Seen,
    dir: tempfile::TempDir,
    finished: bool,
}

/// Attach to `pid` with `opts` (besides --no-daemon, --log-file, --events);
/// checks the line, the supervisor and what /proc says of the program.
fn attach(pid: i32, opts: &[&OsStr]) -> Attachment {
    let target = Seen::of(pid).unwrap_or_else(|| panic!("no program {pid} to attach"));
    let before = status(pid);
    let dir = tempfile::tempdir().expect("tempdir");
    let run = attach_in(dir.path(), &[], opts, pid);
    let line = the_line(&run, pid);
    let supervisor = Seen::of(line.supervisor).unwrap_or_else(|| {
        panic!(
            "supervisor {} not running; its log: {}",
            line.supervisor, run.log
        )
    });
    let att = Attachment {
        line,
        target,
        supervisor,
        dir,
        finished: false,
    };
    assert!(att.supervisor.alive(), "supervisor gone: {run:#?}");
    let mine = stat_field(std::process::id() as i32, 6);
    assert_ne!(
        stat_field(att.line.supervisor, 6),
        mine,
        "the supervisor runs in a session of its own"
    );
    let after = status(pid);
    assert_eq!(
        after.seccomp, "2",
        "the program is under a filter: {after:?}"
    );
    assert!(
        after.filters > before.filters,
        "the filter went in: before {before:?}, after {after:?}"
    );
    if att.line.backend == "ptrace" {
        assert_eq!(
            tgid_of(after.tracer),
            att.line.supervisor,
            "under ptrace the supervisor traces the program: {after:?}"
        );
    } else {
        assert_eq!(after.tracer, before.tracer, "user notification: no tracer");
    }
    let sets = before.no_new_privs == "0" && after.no_new_privs == "1";
    assert_eq!(
        att.line.no_new_privs, sets,
        "no_new_privs=set iff attach set it: before {before:?}, after {after:?}"
    );
    att
}

impl Attachment {
    fn events_path(&self) -> PathBuf {
        self.dir.path().join("events.jsonl")
    }

    /// The events so far (a line being written is left out).
    fn events(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.events_path()).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Wait (bounded) until the events satisfy `f`; returns them.
    fn wait_events(&self, what: &str, f: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let end = Instant::now() + LIMIT;
        loop {
            let ev = self.events();
            if f(&ev) {
                return ev;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for events: {what}; {} events, log: {}",
                ev.len(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// The supervisor must exit by itself once the program has gone
    /// (bounded: 10 s).
    fn supervisor_exits(&mut self) {
        self.finished = true;
        if !gone_within(&self.supervisor, Duration::from_secs(10)) {
            self.supervisor.kill();
            panic!(
                "supervisor {} still running 10 s after its program exited; log: {}",
                self.supervisor.pid,
                self.log()
            );
        }
    }

    /// Stop the program, then the supervisor must go by itself.
    fn finish(mut self, t: Target) {
        t.stop();
        self.supervisor_exits();
    }
}

impl Drop for Attachment {
    /// On a failed test: stop the program and the supervisor.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.target.kill_tree();
        if !gone_within(&self.supervisor, Duration::from_secs(5)) {
            self.supervisor.kill();
        }
    }
}

/// An attach that must fail: exit status 2, a stderr line starting
/// `appswitch: attach: ` and containing one of `want`, no process left.
fn attach_fails(wrap: &[&OsStr], pid: i32, want: &[&str]) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    // The attacher may be another user: let it write its log there.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
        .expect("chmod tempdir");
    let run = attach_in(dir.path(), wrap, &[], pid);
    println!("attach {pid}: {run:?}");
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with("appswitch: attach: ") && want.iter().any(|w| l.contains(w))),
        "want a line `appswitch: attach: ...{want:?}...`: {run:#?}"
    );
    assert!(run.stdout.is_empty(), "{run:#?}");
    let left = processes_mentioning(dir.path());
    assert!(left.is_empty(), "a failed attach left {left:?} running");
    run
}

// ---------------------------------------------------------------------------
// Peers in the test process.

/// A TCP listener that echoes every line back, one thread per connection.
struct Echo {
    port: u16,
}

impl Echo {
    fn start() -> Echo {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind echo");
        let port = l.local_addr().expect("local addr").port();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut w = match s.try_clone() {
                        Ok(w) => w,
                        Err(_) => return,
                    };
                    for line in BufReader::new(s).lines() {
                        let Ok(line) = line else { break };
                        if writeln!(w, "{line}").is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Echo { port }
    }
}

/// A policy that refuses connects to 127.0.0.1:port with EACCES (no real
/// refusal looks like that here: the peers listen).
fn deny_policy(port: u16) -> (tempfile::TempDir, PathBuf) {
    policy_file(&format!("deny connect 127.0.0.1:{port} errno=EACCES\n"))
}

/// `appswitch trace --no-daemon --policy POLICY -- tests/progs/PROG`.
fn traced_under(policy: &Path, prog: &str) -> Command {
    let mut c = Command::new(appswitch());
    c.args(["trace", "--no-daemon", "--policy"])
        .arg(policy)
        .arg("--")
        .arg(c_prog(prog, &[]));
    c
}

fn policy_opts(p: &Path) -> Vec<&OsStr> {
    vec!["--policy".as_ref(), p.as_os_str()]
}

/// Events for connects from process `pid` to 127.0.0.1:port.
fn connects_from(ev: &[Value], pid: i32, port: u16) -> Vec<&Value> {
    calls(ev, "connect", Some(&format!("127.0.0.1:{port}")))
        .into_iter()
        .filter(|e| e["pid"] == pid)
        .collect()
}

/// Whether some connect from `pid` to port got `result`.
fn has_connect(ev: &[Value], pid: i32, port: u16, result: &str) -> bool {
    connects_from(ev, pid, port)
        .iter()
        .any(|e| e["result"] == result)
}

// ---------------------------------------------------------------------------
// 1. Servers keep serving across the attach.

/// One HTTP/1.0 GET of `path` on 127.0.0.1:port: Ok if the answer is 200
/// and holds `want`.
fn get(port: u16, path: &str, want: &str) -> Result<(), String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    let head = answer.lines().next().unwrap_or_default();
    if !head.contains(" 200 ") || !answer.contains(want) {
        return Err(format!("bad answer: {answer:?}"));
    }
    Ok(())
}

/// An untraced client in the test process fetching in a loop (every 2 ms,
/// at most 10000 requests or 90 s) until stopped.
struct Clients {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    errors: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Clients {
    fn start(port: u16, path: &'static str, want: &'static str) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let (s, d, e) = (stop.clone(), done.clone(), errors.clone());
        let thread = std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(90);
            for i in 0..10_000 {
                if s.load(Ordering::Acquire) || Instant::now() > end {
                    break;
                }
                if let Err(err) = get(port, path, want) {
                    e.lock().unwrap().push(format!("request {i}: {err}"));
                }
                d.fetch_add(1, Ordering::AcqRel);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Clients {
            stop,
            done,
            errors,
            thread: Some(thread),
        }
    }

    fn done(&self) -> usize {
        self.done.load(Ordering::Acquire)
    }

    /// Stop the loop; the requests made and the errors seen.
    fn stop(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.join().expect("client thread");
        }
        (self.done(), self.errors.lock().unwrap().clone())
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// The server `t` (listening on port, answering `want` at `path`) is
/// attached while a client loop runs: no request fails, before, during or
/// after, and requests keep being served after the attach (their accepts
/// are intercepted: they are in the events).
fn serves_across_the_attach(t: Target, port: u16, path: &'static str, want: &'static str) {
    wait_port(port);
    get(port, path, want).expect("the server answers before the attach");
    let clients = Clients::start(port, path, want);
    wait_until("20 requests before the attach", LIMIT, || {
        clients.done() >= 20
    });
    let att = attach(t.pid, &[]);
    let at_attach = clients.done();
    wait_until(
        "100 requests after the attach",
        Duration::from_secs(60),
        || clients.done() >= at_attach + 100,
    );
    let (total, errors) = clients.stop();
    println!(
        "{total} requests, {at_attach} before the attach returned, {} errors",
        errors.len()
    );
    assert!(
        errors.is_empty(),
        "requests failed across the attach: {errors:#?}"
    );
    att.wait_events("the server's accepts", |ev| {
        ev.iter()
            .any(|e| e["call"] == "accept" && e["pid"] == t.pid)
    });
    att.finish(t);
}

#[test]
fn a_python_http_server_keeps_serving_across_the_attach() {
    let python = require("python3");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("index.html"), "attach-python\n").expect("index.html");
    let mut t = Target::start(
        Command::new(python)
            .args([
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir.path())
            // It logs every request there.
            .stderr(Stdio::null()),
    );
    // "Serving HTTP on 127.0.0.1 port N (http://127.0.0.1:N/) ..."
    let l = t
        .out
        .expect("the server's port", |l| l.starts_with("Serving HTTP on"));
    let port: u16 = l
        .split_whitespace()
        .skip_while(|w| *w != "port")
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {l:?}"));
    serves_across_the_attach(t, port, "/", "attach-python");
}

#[test]
fn a_go_http_server_keeps_serving_across_the_attach() {
    let mut t = Target::start(
        Command::new(go_named("goattach"))
            .arg("serve")
            .env("GOMAXPROCS", "4"),
    );
    let l = t.out.expect("listening", |l| l.starts_with("listening "));
    assert!(l.ends_with("gomaxprocs=4"), "{l}");
    let port: u16 = l
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {l:?}"));
    serves_across_the_attach(t, port, "/attach-go", "hello /attach-go");
}

// ---------------------------------------------------------------------------
// 2. A deny rule refuses new connects; a connection made before stays.

/// A client on the dial/echo protocol (python3, Go or C): before the
/// attach, dials to the echo server work and the first one is kept; after
/// `attach --policy` refusing the echo port, a new dial there fails with
/// EACCES (and is in the events), the kept connection still echoes, and a
/// dial elsewhere still works.
fn new_refused_established_kept(mut t: Target) {
    let echo = Echo::start();
    let other = Banner::start("hi\n");
    let (_pdir, policy) = deny_policy(echo.port);
    assert_eq!(t.dial(echo.port), "ok", "the kept connection");
    assert_eq!(t.ask("echo before", "echo "), "echo ok before");
    assert_eq!(t.dial(echo.port), "ok", "a new connect before the attach");

    let att = attach(t.pid, &policy_opts(&policy));
    assert_eq!(
        t.dial(echo.port),
        "err EACCES",
        "a new connect after the attach"
    );
    assert_eq!(
        t.ask("echo after", "echo "),
        "echo ok after",
        "the connection made before the attach"
    );
    assert_eq!(t.dial(other.port), "ok", "a connect the rule does not name");
    assert_eq!(t.ask("echo again", "echo "), "echo ok again");
    let pid = t.pid;
    att.wait_events("the refused connect and the allowed one", |ev| {
        has_connect(ev, pid, echo.port, "EACCES") && !connects_from(ev, pid, other.port).is_empty()
    });
    att.finish(t);
}

/// The dial/echo client in python3 (see tests/progs/attach_cmd.c).
const PY_CLIENT: &str = r#"
import errno, os, socket, sys
def name(e):
    return errno.errorcode.get(e.errno, str(e).replace(" ", "_")) if e.errno else type(e).__name__
print("ready pid=%d" % os.getpid(), flush=True)
kept = None
while True:
    line = sys.stdin.readline()
    if not line:
        break
    f = line.split()
    if len(f) == 2 and f[0] == "dial":
        try:
            s = socket.create_connection(("127.0.0.1", int(f[1])), timeout=10)
        except OSError as e:
            print("dial %s err %s" % (f[1], name(e)), flush=True)
            continue
        if kept is None:
            kept, kf = s, s.makefile("rb")
        else:
            s.close()
        print("dial %s ok" % f[1], flush=True)
    elif len(f) == 2 and f[0] == "echo":
        try:
            kept.sendall((f[1] + "\n").encode())
            r = kf.readline().decode().strip()
            print("echo ok %s" % r if r else "echo err eof", flush=True)
        except OSError as e:
            print("echo err %s" % name(e), flush=True)
    elif f and f[0] == "exit":
        break
    else:
        print("what %s" % line.strip(), flush=True)
"#;

#[test]
fn python_new_connects_are_refused_and_an_established_one_kept() {
    let mut t = Target::start(Command::new(require("python3")).args(["-c", PY_CLIENT]));
    t.out.expect("ready", |l| l.starts_with("ready pid="));
    new_refused_established_kept(t);
}

#[test]
fn go_new_connects_are_refused_and_an_established_one_kept() {
    let mut t = Target::start(
        Command::new(go_named("goattach"))
            .arg("client")
            .env("GOMAXPROCS", "4"),
    );
    let l = t.out.expect("ready", |l| l.starts_with("ready pid="));
    assert!(l.ends_with("gomaxprocs=4"), "{l}");
    new_refused_established_kept(t);
}

#[test]
fn c_new_connects_are_refused_and_an_established_one_kept() {
    new_refused_established_kept(Target::cmd());
}

// ---------------------------------------------------------------------------
// 3. 50 threads connecting while attached.

/// Until the fewest rounds (`what` "rounds") or post rounds ("post") any
/// thread of attach_threads has finished reaches `n`; a thread stuck or
/// starved fails the test after `limit`.
fn wait_rounds(t: &mut Target, what: &str, n: i64, limit: Duration) {
    let started = Instant::now();
    let prefix = format!("{what} min=");
    loop {
        let l = t.ask(what, &prefix);
        let min: i64 = l[prefix.len()..].parse().expect("min=");
        if min >= n {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "a thread stuck or starved: {l} after {:?}",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One "thread I tid=T k=v ..." line of attach_threads.
fn thread_summary(l: &str) -> BTreeMap<String, String> {
    l.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn fifty_threads_connecting_are_attached_and_every_later_connect_decided() {
    const THREADS: usize = 50;
    // Rounds each thread makes before the attach, and after it.
    const ROUNDS: i64 = 10;
    let a = Banner::start("a\n");
    let b = Banner::start("b\n");
    let (_pdir, policy) = deny_policy(b.port);
    let mut t = Target::start(Command::new(c_prog("attach_threads", &[])).args([
        THREADS.to_string(),
        a.port.to_string(),
        b.port.to_string(),
        // Short pauses: connects are in flight at the attach.
        "10".into(),
    ]));
    t.out.expect("ready", |l| l.starts_with("ready pid="));
    let tids: HashSet<i64> = t
        .out
        .expect("tids", |l| l.starts_with("tids "))
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().expect("tid"))
        .collect();
    assert_eq!(tids.len(), THREADS);
    let rounds = |t: &mut Target, what: &str, n: i64| {
        wait_rounds(t, what, n, Duration::from_secs(60));
    };
    rounds(&mut t, "rounds", ROUNDS);

    let mut att = attach(t.pid, &policy_opts(&policy));
    assert_eq!(att.line.threads, THREADS + 1, "the threads and main");
    assert_eq!(t.ask("mark", "marked"), "marked");
    // Rounds begun after the attach returned.
    rounds(&mut t, "post", ROUNDS);
    t.send("stop");
    let mut summaries = Vec::new();
    for _ in 0..THREADS {
        let l = t
            .out
            .expect("a thread's summary", |l| l.starts_with("thread "));
        println!("{l}");
        summaries.push(thread_summary(&l));
    }
    t.out.expect("done", |l| l == "done");
    let code = t.proc.wait_timeout(LIMIT);
    assert_eq!(code, Some(0), "attach_threads exit status");

    let n = |s: &BTreeMap<String, String>, k: &str| -> usize {
        s.get(k)
            .unwrap_or_else(|| panic!("no {k} in {s:?}"))
            .parse()
            .unwrap_or_else(|_| panic!("{k} in {s:?}"))
    };
    // Every denial the threads saw is in the events (written as the
    // supervisor answers: wait for the last ones).
    let pid = t.pid;
    let denied: usize = summaries.iter().map(|s| n(s, "b_eacces")).sum();
    let ev = att.wait_events("every denial", |ev| {
        connects_from(ev, pid, b.port)
            .iter()
            .filter(|e| e["result"] == "EACCES")
            .count()
            >= denied
    });
    let mut failures = Vec::new();
    for s in &summaries {
        let tid: i64 = n(s, "tid") as i64;
        let mine = |port: u16| -> Vec<&Value> {
            connects_from(&ev, pid, port)
                .into_iter()
                .filter(|e| e["tid"] == tid)
                .collect()
        };
        let (ev_a, ev_b) = (mine(a.port), mine(b.port));
        let ev_b_denied = ev_b.iter().filter(|e| e["result"] == "EACCES").count();
        let checks = [
            (n(s, "other") == 0, "no unexpected errno, before or after"),
            (
                n(s, "b_ok") >= ROUNDS as usize,
                "B connected before the attach",
            ),
            (
                n(s, "b_ok_after_eacces") == 0,
                "no B connect worked once denied",
            ),
            (n(s, "post_b") >= ROUNDS as usize, "rounds after the attach"),
            (
                n(s, "post_b_eacces") == n(s, "post_b"),
                "every B after the attach denied",
            ),
            (
                n(s, "post_a_ok") == n(s, "post_a"),
                "every A after the attach worked",
            ),
            (
                ev_a.len() >= n(s, "post_a"),
                "every A after the attach in the events",
            ),
            (
                ev_b_denied == n(s, "b_eacces"),
                "each denial in the events, once",
            ),
            (ev_b.len() == ev_b_denied, "every B event a denial"),
            (
                ev_a.iter().all(|e| e["result"] == 0),
                "every A event a success",
            ),
        ];
        for (ok, what) in checks {
            if !ok {
                failures.push(format!(
                    "{what}: {s:?}; events A {} B {} (denied {ev_b_denied})",
                    ev_a.len(),
                    ev_b.len()
                ));
            }
        }
    }
    let seen: HashSet<i64> = calls(&ev, "connect", None)
        .iter()
        .filter(|e| e["pid"] == pid)
        .filter_map(|e| e["tid"].as_i64())
        .collect();
    assert_eq!(
        seen, tids,
        "connect events come from exactly the 50 threads"
    );
    assert!(failures.is_empty(), "{failures:#?}");
    // The program exited (above): the supervisor goes by itself.
    att.supervisor_exits();
}

/// Traced from the start (not attached), 50 threads connecting flat out
/// each get their turn: the supervisor serves the stops waiting in the
/// order they came, not the kernel's list order again and again (under
/// ptrace the threads at the back of that list waited in their stops while
/// those at the front went round: 8 rounds in 60 s for some).
#[test]
fn fifty_threads_connecting_flat_out_under_trace_each_get_their_turn() {
    const THREADS: usize = 50;
    const ROUNDS: i64 = 20;
    let a = Banner::start("a\n");
    let b = Banner::start("b\n");
    let (_pdir, policy) = deny_policy(b.port);
    let mut t = Target::start(
        traced_under(&policy, "attach_threads")
            .args([THREADS.to_string(), a.port.to_string(), b.port.to_string()])
            // No pause: every thread is back in a connect at once.
            .arg("0"),
    );
    t.out.expect("ready", |l| l.starts_with("ready pid="));
    assert_eq!(t.ask("mark", "marked"), "marked");
    wait_rounds(&mut t, "post", ROUNDS, Duration::from_secs(30));
    t.send("stop");
    for _ in 0..THREADS {
        let l = t
            .out
            .expect("a thread's summary", |l| l.starts_with("thread "));
        let s = thread_summary(&l);
        assert_eq!(s.get("other").map(String::as_str), Some("0"), "{l}");
        assert_eq!(s.get("post_b"), s.get("post_b_eacces"), "{l}");
    }
    t.out.expect("done", |l| l == "done");
    assert_eq!(
        t.proc.wait_timeout(LIMIT),
        Some(0),
        "attach_threads exit status"
    );
}

// ---------------------------------------------------------------------------
// 4. Children created after the attach are under it; the supervisor stays
// while a descendant lives.

#[test]
fn children_forked_after_the_attach_are_decided_and_kept_the_supervisor() {
    let b = Banner::start("hi\n");
    let (_pdir, policy) = deny_policy(b.port);
    let check = c_prog("connect_check", &[]);
    let check = check.to_str().expect("utf-8 path");
    let looper = c_prog("connect_loop", &[]);
    let looper = looper.to_str().expect("utf-8 path");
    let run_check = format!("run {check} 127.0.0.1 {}", b.port);
    let mut t = Target::cmd();

    // Before: the child connects.
    t.send(&run_check);
    t.out.expect("the child's result", |l| l == "result=ok");
    t.out.expect("ran", |l| {
        l.starts_with("ran pid=") && l.ends_with(" exit=0")
    });

    let mut att = attach(t.pid, &policy_opts(&policy));
    t.send(&run_check);
    let r = t.out.expect("the child's result", |l| {
        l.starts_with("errno=") || l.starts_with("result=")
    });
    assert_eq!(
        r, "errno=EACCES",
        "a child forked after the attach is refused"
    );
    let ran = t.out.expect("ran", |l| l.starts_with("ran pid="));
    let child: i32 = ran["ran pid=".len()..]
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("child pid");
    att.wait_events("the child's refused connect", |ev| {
        has_connect(ev, child, b.port, "EACCES")
    });

    // A background child outlives the program: the supervisor stays and
    // goes on deciding for it.
    let bg = t.ask(&format!("bg {looper} {} 600 50", b.port), "bg pid=");
    let bg_pid: i32 = bg["bg pid=".len()..].parse().expect("bg pid");
    let bg_seen = Seen::of(bg_pid).expect("the background child runs");
    struct KillOnDrop(Seen);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            self.0.kill();
        }
    }
    let bg_guard = KillOnDrop(bg_seen);
    t.send("exit");
    let code = t.proc.wait_timeout(LIMIT);
    assert_eq!(code, Some(0), "the program exits");
    let exited = monotonic_ns();
    // connect_loop prints "NS ok|ERRNAME" per connect.
    let l = t
        .out
        .expect("a connect of the orphan after its parent exited", |l| {
            l.split_once(' ')
                .and_then(|(ns, _)| ns.parse::<i64>().ok())
                .is_some_and(|ns| ns > exited)
        });
    assert!(l.ends_with(" EACCES"), "the orphan is still decided: {l}");
    assert!(
        att.supervisor.alive(),
        "the supervisor stays while a descendant runs"
    );
    att.wait_events("the orphan's refused connects", |ev| {
        has_connect(ev, bg_pid, b.port, "EACCES")
    });
    bg_seen.kill();
    drop(bg_guard);
    att.supervisor_exits();
}

// ---------------------------------------------------------------------------
// 5. Errors: each leaves the program as it was.

/// What an error must leave unchanged (the state, and whatever the test
/// changes itself, is compared by the caller).
fn unchanged(before: &Status, after: &Status) {
    assert_eq!(
        (
            &after.seccomp,
            after.filters,
            &after.no_new_privs,
            after.tracer
        ),
        (
            &before.seccomp,
            before.filters,
            &before.no_new_privs,
            before.tracer
        ),
        "the failed attach changed the program: before {before:?}, after {after:?}"
    );
}

/// attach_cmd still connects (to a listener that counts it).
fn still_works(t: &mut Target, banner: &Banner) {
    let n = banner.count();
    assert_eq!(t.connect(banner.port), "ok", "the program still connects");
    assert_eq!(banner.count(), n + 1);
}

#[test]
fn attach_to_no_process_is_an_error() {
    // A pid that was ours and is gone (reaped).
    let mut p = Proc(Command::new("true").spawn().expect("spawn true"));
    let pid = p.pid();
    p.wait_timeout(LIMIT).expect("true exits");
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    attach_fails(&[], pid, &[format!("no process {pid}").as_str()]);
}

#[test]
fn attach_by_another_user_is_not_permitted() {
    let setpriv = require("setpriv");
    let banner = Banner::start("hi\n");
    let mut t = Target::cmd();
    let before = status(t.pid);
    let nobody: [&OsStr; 4] = [
        setpriv.as_os_str(),
        "--reuid=65534".as_ref(),
        "--regid=65534".as_ref(),
        "--clear-groups".as_ref(),
    ];
    attach_fails(&nobody, t.pid, &["not permitted"]);
    unchanged(&before, &status(t.pid));
    still_works(&mut t, &banner);
    t.stop();
}

#[test]
fn attach_to_a_program_under_appswitch_trace_says_so() {
    let banner = Banner::start("hi\n");
    let denied = Banner::start("no\n");
    let (_pdir, policy) = deny_policy(denied.port);
    let mut t = Target::start(&mut traced_under(&policy, "attach_cmd"));
    let ready = t.out.expect("ready", |l| l.starts_with("ready pid="));
    t.pid = ready["ready pid=".len()..].parse().expect("pid");
    assert_eq!(t.connect(denied.port), "err EACCES", "traced");
    let before = status(t.pid);
    attach_fails(
        &[],
        t.pid,
        &["already under appswitch", "already attached by appswitch"],
    );
    unchanged(&before, &status(t.pid));
    still_works(&mut t, &banner);
    assert_eq!(
        t.connect(denied.port),
        "err EACCES",
        "still under its trace"
    );
    t.stop();
}

#[test]
fn attach_twice_says_already_attached() {
    let banner = Banner::start("hi\n");
    let denied = Banner::start("no\n");
    let (_pdir, policy) = deny_policy(denied.port);
    let mut t = Target::cmd();
    let att = attach(t.pid, &policy_opts(&policy));
    assert_eq!(t.connect(denied.port), "err EACCES");
    let before = status(t.pid);
    attach_fails(
        &[],
        t.pid,
        &["already under appswitch", "already attached by appswitch"],
    );
    unchanged(&before, &status(t.pid));
    assert!(att.supervisor.alive(), "the first supervisor stays");
    still_works(&mut t, &banner);
    assert_eq!(
        t.connect(denied.port),
        "err EACCES",
        "still under the first"
    );
    att.finish(t);
}

#[test]
fn attach_to_a_program_under_strace_names_its_tracer() {
    let Some(strace) = which("strace") else {
        println!("skipped: strace is not installed (scripts/setup.sh installs it)");
        return;
    };
    let banner = Banner::start("hi\n");
    let mut t = Target::cmd();
    let before = status(t.pid);
    let mut st = Proc(
        Command::new(strace)
            .args(["-f", "-o", "/dev/null", "-p"])
            .arg(t.pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start strace"),
    );
    let strace_pid = st.pid();
    wait_until("strace attached", LIMIT, || status(t.pid).tracer != 0);
    let traced = status(t.pid);
    assert_eq!(tgid_of(traced.tracer), strace_pid);
    attach_fails(
        &[],
        t.pid,
        &[format!("already traced by {strace_pid}").as_str()],
    );
    unchanged(&traced, &status(t.pid));
    still_works(&mut t, &banner);
    // strace detaches on SIGTERM.
    st.signal(libc::SIGTERM);
    assert!(st.wait_timeout(LIMIT).is_some(), "strace exits");
    wait_until("strace detached", LIMIT, || status(t.pid).tracer == 0);
    unchanged(&before, &status(t.pid));
    still_works(&mut t, &banner);
    t.stop();
}

#[test]
fn attach_to_a_stopped_program_says_it_is_stopped() {
    let banner = Banner::start("hi\n");
    let mut t = Target::cmd();
    t.proc.signal(libc::SIGSTOP);
    wait_until("stopped", LIMIT, || status(t.pid).state.starts_with('T'));
    let before = status(t.pid);
    attach_fails(&[], t.pid, &["is stopped"]);
    let after = status(t.pid);
    unchanged(&before, &after);
    assert!(after.state.starts_with('T'), "still stopped: {after:?}");
    t.proc.signal(libc::SIGCONT);
    wait_until("running again", LIMIT, || {
        !status(t.pid).state.starts_with('T')
    });
    still_works(&mut t, &banner);
    t.stop();
}

/// A program without CAP_SYS_ADMIN takes the filter only with
/// no_new_privs: attach sets it, and says so.
#[test]
fn attach_sets_no_new_privs_on_an_unprivileged_program() {
    let setpriv = require("setpriv");
    let denied = Banner::start("no\n");
    let (_pdir, policy) = deny_policy(denied.port);
    let mut t = Target::start(
        Command::new(setpriv)
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(c_prog("attach_cmd", &[])),
    );
    t.out.expect("ready", |l| l.starts_with("ready pid="));
    assert_eq!(status(t.pid).no_new_privs, "0");
    let att = attach(t.pid, &policy_opts(&policy));
    assert!(att.line.no_new_privs, "{:?}", att.line);
    assert_eq!(status(t.pid).no_new_privs, "1");
    assert_eq!(t.connect(denied.port), "err EACCES");
    att.finish(t);
}

// ---------------------------------------------------------------------------
// 6. Foreground.

#[test]
fn attach_in_the_foreground_supervises_until_the_program_exits() {
    let banner = Banner::start("hi\n");
    let denied = Banner::start("no\n");
    let (_pdir, policy) = deny_policy(denied.port);
    let mut t = Target::cmd();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("stdout");
    let mut fg = Proc(
        Command::new(appswitch())
            .args(["attach", "--foreground", "--no-daemon", "--log-file"])
            .arg(dir.path().join("log"))
            .arg("--policy")
            .arg(&policy)
            .arg(t.pid.to_string())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("stdout file"))
            .stderr(std::fs::File::create(dir.path().join("stderr")).expect("stderr file"))
            .spawn()
            .expect("spawn attach --foreground"),
    );
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    wait_until("the attached line", LIMIT, || {
        read("stdout").ends_with('\n') || fg.0.try_wait().ok().flatten().is_some()
    });
    let run = Run {
        code: Some(0),
        stdout: read("stdout"),
        stderr: read("stderr"),
        log: read("log"),
    };
    assert!(
        fg.0.try_wait().expect("try_wait").is_none(),
        "attach --foreground exited: {run:#?}"
    );
    let line = the_line(&run, t.pid);
    assert_eq!(line.supervisor, fg.pid(), "the attach process supervises");
    assert_eq!(t.connect(denied.port), "err EACCES", "under the policy");
    still_works(&mut t, &banner);
    assert!(
        fg.0.try_wait().expect("try_wait").is_none(),
        "still supervising"
    );
    t.send("exit");
    assert_eq!(t.proc.wait_timeout(LIMIT), Some(0), "the program exits");
    let code = fg.wait_timeout(Duration::from_secs(10));
    assert_eq!(
        code,
        Some(0),
        "attach --foreground exits 0 once the program has gone; log: {}",
        read("log")
    );
    assert_eq!(
        read("stdout").lines().count(),
        1,
        "one line: {}",
        read("stdout")
    );
}

// ---------------------------------------------------------------------------
// 7. Detach.

#[test]
fn detach_lets_denied_connects_through_and_the_supervisor_go_with_the_program() {
    let denied = Banner::start("no\n");
    let (_pdir, policy) = deny_policy(denied.port);
    let mut t = Target::cmd();
    let mut att = attach(t.pid, &policy_opts(&policy));
    assert_eq!(t.connect(denied.port), "err EACCES");

    let out = run(Command::new(appswitch())
        .arg("detach")
        .arg(t.pid.to_string()));
    assert_eq!(out.status.code(), Some(0), "detach: {out:?}");
    let n = denied.count();
    assert_eq!(t.connect(denied.port), "ok", "passed once detached");
    assert_eq!(denied.count(), n + 1);
    assert!(
        att.supervisor.alive(),
        "the supervisor stays while the program runs"
    );
    assert_eq!(t.connect(denied.port), "ok");

    t.send("exit");
    assert_eq!(t.proc.wait_timeout(LIMIT), Some(0), "the program exits");
    att.supervisor_exits();
}

#[test]
fn sigterm_to_the_supervisor_detaches() {
    let denied = Banner::start("no\n");
    let (_pdir, policy) = deny_policy(denied.port);
    let mut t = Target::cmd();
    let att = attach(t.pid, &policy_opts(&policy));
    assert_eq!(t.connect(denied.port), "err EACCES");
    assert!(att.supervisor.alive());
    // SAFETY: signalling the supervisor this test started (alive, checked
    // by its start time just above).
    unsafe { libc::kill(att.supervisor.pid, libc::SIGTERM) };
    // The signal is handled asynchronously: connect until one passes;
    // meanwhile each one is refused or works, nothing else.
    let end = Instant::now() + LIMIT;
    loop {
        let r = t.connect(denied.port);
        if r == "ok" {
            break;
        }
        assert_eq!(r, "err EACCES", "while detaching");
        assert!(Instant::now() < end, "still refused after SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        att.supervisor.alive(),
        "the supervisor stays while the program runs"
    );
    assert_eq!(t.connect(denied.port), "ok");
    att.finish(t);
}

#[test]
fn detach_of_a_program_not_attached_is_an_error() {
    let t = Target::cmd();
    let out = run(Command::new(appswitch())
        .arg("detach")
        .arg(t.pid.to_string()));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines().any(|l| l.starts_with("appswitch: detach: ")),
        "says why: {out:?}"
    );
    assert_eq!(status(t.pid).filters, 0, "untouched");
    t.stop();
}

// ---------------------------------------------------------------------------
// Monitor mode.

#[test]
fn attach_in_monitor_mode_records_and_refuses_nothing() {
    let denied = Banner::start("no\n");
    let (_pdir, policy) = deny_policy(denied.port);
    let mut t = Target::cmd();
    let mut opts = policy_opts(&policy);
    opts.extend([OsStr::new("--mode"), OsStr::new("monitor")]);
    let att = attach(t.pid, &opts);
    assert_eq!(t.connect(denied.port), "ok", "monitor refuses nothing");
    let pid = t.pid;
    att.wait_events("the monitored connect", |ev| {
        connects_from(ev, pid, denied.port)
            .iter()
            .any(|e| e["action"] == "deny" && e["monitor"] == true)
    });
    att.finish(t);
}
