//! Issue 13, hardening of the trace process: its own stderr, the signal
//! state the program inherits, signals to and from the program, and
//! programs that try to ptrace.

mod common;
use common::*;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn trace_cmd(prog: impl AsRef<std::ffi::OsStr>) -> Command {
    trace_cmd_with(&[], prog)
}

/// `trace_cmd` with more `trace` options.
fn trace_cmd_with(opts: &[&str], prog: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(appswitch());
    c.args(["trace", "--no-daemon"])
        .args(opts)
        .arg("--")
        .arg(prog);
    c
}

/// A pipe (read end, write end); the write end is blocking.
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh descriptors we own.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Fill a pipe through its write end until it takes no more (bounded).
fn fill(w: &OwnedFd) {
    let fd = w.as_raw_fd();
    // SAFETY: flags on our own descriptor; writes from a local buffer.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
        let buf = [b'x'; 4096];
        for _ in 0..100_000 {
            if libc::write(fd, buf.as_ptr().cast(), buf.len()) < 0 {
                break;
            }
        }
        libc::fcntl(fd, libc::F_SETFL, fl);
    }
}

/// Run `cmd` with stdout piped and stderr as given; its exit code and
/// stdout, or a failure after `limit` (the process is killed).
fn run_with_stderr(cmd: &mut Command, stderr: Stdio, limit: Duration) -> (i32, String) {
    let mut p = Proc(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn"),
    );
    let mut out = p.0.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let code = p.wait_timeout(limit);
    drop(p);
    let out = reader.join().unwrap_or_default();
    let code = code.unwrap_or_else(|| panic!("{cmd:?} did not finish within {limit:?}: {out}"));
    (code, out)
}

fn policy_logging_every_connect() -> (tempfile::TempDir, std::path::PathBuf) {
    // Each connect prints two lines: the log rule's and the refusal (RUST_LOG).
    policy_file("log connect any\ndeny connect 127.0.0.1:1\n")
}

#[test]
fn class9_trace_survives_closed_full_or_broken_stderr() {
    let probe = c_prog("h_connects", &[]);
    let (_dir, pol) = policy_logging_every_connect();
    let traced = |extra: &[&str]| {
        let mut c = Command::new(appswitch());
        c.args(["trace", "--no-daemon", "--policy"])
            .arg(&pol)
            .arg("--")
            .arg(&probe)
            .args(["1500", "1"])
            .args(extra)
            .env("RUST_LOG", "debug");
        c
    };
    let want = "done 1500 refused 1500\n";
    let limit = Duration::from_secs(60);

    // Closed (2>&-): the program runs to the end, and sees fd 2 closed as it
    // would without us (the Rust runtime would have put /dev/null there).
    let closed = |c: &mut Command| {
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg("exec \"$@\" 2>&-")
            .arg("sh")
            .arg(c.get_program())
            .args(c.get_args());
        for (k, v) in c.get_envs() {
            if let Some(v) = v {
                sh.env(k, v);
            }
        }
        sh
    };
    let (code, out) = run_with_stderr(&mut closed(&mut traced(&[])), Stdio::null(), limit);
    assert_eq!((code, out.as_str()), (0, want));
    let state = c_prog("h_sigstate", &[]);
    let (_, plain) = run_with_stderr(&mut closed(&mut Command::new(&state)), Stdio::null(), limit);
    let (_, under) = run_with_stderr(&mut closed(&mut trace_cmd(&state)), Stdio::null(), limit);
    assert!(plain.contains("fd2=closed"), "{plain}");
    assert_eq!(under, plain);

    // Full: a pipe nobody reads, filled first. The tracer must not freeze
    // on its messages (the program writes nothing to stderr itself).
    let (r, w) = pipe();
    fill(&w);
    let t0 = Instant::now();
    let (code, out) = run_with_stderr(&mut traced(&[]), Stdio::from(w), limit);
    assert_eq!((code, out.as_str()), (0, want), "full stderr");
    assert!(t0.elapsed() < Duration::from_secs(50));
    drop(r);

    // Broken (reader gone: EPIPE): no panic, the program's exit code.
    let (r, w) = pipe();
    drop(r);
    let (code, out) = run_with_stderr(&mut traced(&[]), Stdio::from(w), limit);
    assert_eq!((code, out.as_str()), (0, want), "broken stderr");
    // A program that writes there itself dies of SIGPIPE, as it would untraced.
    let (r, w) = pipe();
    drop(r);
    let mut plain = Command::new(&probe);
    plain.args(["3", "1", "stderr"]);
    let (native, _) = run_with_stderr(&mut plain, Stdio::from(w), limit);
    assert_eq!(native, 128 + libc::SIGPIPE);
    let (r, w) = pipe();
    drop(r);
    let mut c = traced(&[]);
    c.args(["stderr"]);
    let (code, out) = run_with_stderr(&mut c, Stdio::from(w), limit);
    assert_eq!(
        (code, out.as_str()),
        (native, want),
        "broken stderr, program writes"
    );
}

/// The SigIgn and SigBlk lines of h_sigstate run through `sh -c SCRIPT`
/// ("$@" is the command), untraced and traced.
fn sigstate_both(script: &str) -> (String, String) {
    let state = c_prog("h_sigstate", &[]);
    let run_sh = |words: Vec<&std::ffi::OsStr>| {
        let out = run(Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .args(words));
        assert_eq!(out.status.code(), Some(0), "{script}: {out:?}");
        stdout(&out)
    };
    let plain = run_sh(vec![state.as_os_str()]);
    let app = appswitch();
    let under = run_sh(vec![
        app.as_os_str(),
        "trace".as_ref(),
        "--no-daemon".as_ref(),
        "--".as_ref(),
        state.as_os_str(),
    ]);
    (plain, under)
}

/// Whether signal `sig` is in the mask of the `key` line ("SigIgn:").
fn in_mask(state: &str, key: &str, sig: i32) -> bool {
    let line = state.lines().find(|l| l.starts_with(key)).expect(key);
    let hex = line[key.len()..].trim();
    let m = u64::from_str_radix(hex, 16).expect("hex mask");
    m & (1 << (sig - 1)) != 0
}

#[test]
fn class11_ignored_signals_stay_ignored() {
    require("nohup");
    // nohup: SIGHUP ignored.
    let (plain, under) = sigstate_both("exec nohup \"$@\"");
    assert!(in_mask(&plain, "SigIgn:", libc::SIGHUP), "{plain}");
    assert_eq!(under, plain, "under nohup");
    // trap '' PIPE: SIGPIPE ignored (the Rust runtime's own SIG_IGN must not
    // leak either: see the default case).
    let (plain, under) = sigstate_both("trap '' PIPE; exec \"$@\"");
    assert!(in_mask(&plain, "SigIgn:", libc::SIGPIPE), "{plain}");
    assert_eq!(under, plain, "under trap '' PIPE");
    let (plain, under) = sigstate_both("exec \"$@\"");
    assert!(!in_mask(&plain, "SigIgn:", libc::SIGPIPE), "{plain}");
    assert_eq!(under, plain, "default dispositions");
    // A non-interactive shell's background job: SIGINT and SIGQUIT ignored.
    let (plain, under) = sigstate_both("\"$@\" & wait");
    assert!(in_mask(&plain, "SigIgn:", libc::SIGINT), "{plain}");
    assert!(in_mask(&plain, "SigIgn:", libc::SIGQUIT), "{plain}");
    assert_eq!(under, plain, "background job");
    // Several at once, and TERM/USR1 (which trace forwards) ignored too.
    let (plain, under) = sigstate_both("trap '' TERM USR1 PIPE; exec nohup \"$@\"");
    assert!(in_mask(&plain, "SigIgn:", libc::SIGTERM), "{plain}");
    assert_eq!(under, plain, "TERM, USR1, PIPE and HUP");

    // A nohup'd traced program survives SIGHUP sent to the trace process;
    // without nohup, the same SIGHUP is passed on and kills it.
    let state = c_prog("h_sigstate", &[]);
    for (nohup, expect) in [(true, 7), (false, 128 + libc::SIGHUP)] {
        let mut c = if nohup {
            let mut c = Command::new("nohup");
            c.arg(appswitch());
            c
        } else {
            let mut c = Command::new(appswitch());
            // SIGHUP at its default, whatever the test runner was started
            // with (a run under nohup ignores it, and so would the program).
            // SAFETY: signal() is async-signal-safe.
            unsafe {
                c.pre_exec(|| {
                    libc::signal(libc::SIGHUP, libc::SIG_DFL);
                    Ok(())
                });
            }
            c
        };
        c.args(["trace", "--no-daemon", "--"])
            .arg(&state)
            .args(["wait", "1500"]);
        let mut p = Proc(
            c.stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn"),
        );
        let mut out = p.0.stdout.take().expect("stdout");
        let mut seen = String::new();
        let mut buf = [0u8; 512];
        let end = Instant::now() + Duration::from_secs(10);
        while !seen.contains("ready") && Instant::now() < end {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        assert!(seen.contains("ready"), "{seen}");
        p.signal(libc::SIGHUP);
        assert_eq!(
            p.wait_timeout(Duration::from_secs(10)),
            Some(expect),
            "nohup={nohup}"
        );
    }
}

#[test]
fn class12_signal_to_parent_reaches_the_real_parent() {
    let wrapper = c_prog("h_parent", &[]);
    let killer = c_prog("h_killparent", &[]);
    let app = appswitch();
    let both = |args: &[&std::ffi::OsStr]| {
        let plain = stdout(&run(Command::new(&wrapper).args(args)));
        let mut t: Vec<&std::ffi::OsStr> = vec![
            app.as_os_str(),
            "trace".as_ref(),
            "--no-daemon".as_ref(),
            "--".as_ref(),
        ];
        t.extend_from_slice(args);
        let under = stdout(&run(Command::new(&wrapper).args(&t)));
        (plain, under)
    };
    // kill(USR1), tgkill(USR2), sigqueue(HUP) aimed at the parent: the
    // wrapper gets each once and the program, alive, says so.
    let (plain, under) = both(&[killer.as_os_str()]);
    assert_eq!(
        plain, "sent\nUSR1=1 USR2=1 HUP=1 TERM=0 INT=0 status=0\n",
        "untraced"
    );
    assert_eq!(under, plain, "traced");
    // A shell's `kill -TERM $PPID`.
    let (plain, under) = both(&[
        "sh".as_ref(),
        "-c".as_ref(),
        "kill -TERM $PPID; echo alive".as_ref(),
    ]);
    assert_eq!(plain, "alive\nUSR1=0 USR2=0 HUP=0 TERM=1 INT=0 status=0\n");
    assert_eq!(under, plain);
    // To its process group (which holds the wrapper and trace): everyone gets
    // it once, natively; trace passes it on to no one (not the wrapper a
    // second time, not the program, which ignores it anyway).
    let (plain, under) = both(&[
        "sh".as_ref(),
        "-c".as_ref(),
        "trap '' USR2; kill -USR2 0; echo alive".as_ref(),
    ]);
    assert_eq!(plain, "alive\nUSR1=0 USR2=1 HUP=0 TERM=0 INT=0 status=0\n");
    assert_eq!(under, plain);
    // As another user (nobody) the parent (root) is out of the program's
    // reach: no signal arrives, as untraced (appswitch, root, never sends
    // one with its own rights; under user notification it sends re-aimed
    // signals itself, after the kernel's own permission check).
    let plain = stdout(&run(Command::new(&wrapper).args([
        "setpriv".as_ref(),
        "--reuid=65534".as_ref(),
        "--regid=65534".as_ref(),
        "--clear-groups".as_ref(),
        killer.as_os_str(),
    ])));
    assert!(plain.contains("USR1=0 USR2=0 HUP=0"), "untraced: {plain}");
    let under = stdout(&run(Command::new(&wrapper).args([
        app.as_os_str(),
        "trace".as_ref(),
        "--no-daemon".as_ref(),
        "--user".as_ref(),
        "nobody".as_ref(),
        "--".as_ref(),
        killer.as_os_str(),
    ])));
    assert_eq!(under, plain, "traced as nobody");
}

/// Start `appswitch trace -- prog args` whose main process exits at once
/// leaving a child that prints its pid; (trace, child pid).
fn orphaned(prog: &Path, args: &[&str]) -> (Proc, i32) {
    let mut p = Proc(
        trace_cmd(prog)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    let line = p.first_line();
    let child: i32 = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("pid: {line:?}"));
    (p, child)
}

fn alive(pid: i32) -> bool {
    // A zombie has no cmdline; a live process (even with empty argv) has the file.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

/// The parent of `pid`, from /proc.
fn ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Whether the main program of `trace` has exited, seen from `child`, a
/// process it started: the main program is trace's child and `child`'s
/// parent until it exits; then `child` goes to a reaper (init, or trace
/// itself if the backend makes it a subreaper), never to one of trace's
/// children.
fn main_exited(trace: i32, child: i32) -> bool {
    ppid(child).is_none_or(|parent| ppid(parent) != Some(trace))
}

#[test]
fn class13_signals_after_main_exit_reach_live_processes_only() {
    // The main program (sh) exits; its background sleep lives on.
    // SIGTERM to trace must end the sleep, and trace exits with sh's 0.
    let sh = Path::new("/bin/sh");
    let (mut p, child) = orphaned(sh, &["-c", "sleep 30 & echo $!; exit 0"]);
    // A bystander we started untraced: it must never get the signal.
    let mut bystander = Proc(
        Command::new("sleep")
            .arg("30")
            .stderr(Stdio::null())
            .spawn()
            .expect("sleep"),
    );
    // Wait until the main program has gone (only the sleep is traced then).
    wait_until("the main program to exit", Duration::from_secs(10), || {
        main_exited(p.pid(), child)
    });
    assert!(alive(child));
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait_timeout(Duration::from_secs(10)), Some(0));
    assert!(!alive(child), "the traced sleep outlived SIGTERM to trace");
    assert!(bystander.0.try_wait().expect("try_wait").is_none());

    // SIGINT the same way, to a child that does not ignore it (a background
    // job of sh would: it ignores SIGINT natively, and keeps doing so).
    let (mut p, child) = orphaned(&c_prog("h_orphan", &[]), &[]);
    wait_until("the main program to exit", Duration::from_secs(10), || {
        main_exited(p.pid(), child)
    });
    p.signal(libc::SIGINT);
    assert_eq!(p.wait_timeout(Duration::from_secs(10)), Some(0));
    assert!(!alive(child));
    assert!(bystander.0.try_wait().expect("try_wait").is_none());
    bystander.signal(libc::SIGKILL);
}

/// Messages appswitch gave about ptrace, per "comm[pid]".
fn ptrace_messages(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("called ptrace(") && l.contains("one tracer per process"))
        .collect()
}

fn assert_told_once_each(stderr: &str) {
    let msgs = ptrace_messages(stderr);
    assert!(!msgs.is_empty(), "no clear error: {stderr}");
    let mut who: Vec<&str> = msgs
        .iter()
        .filter_map(|l| l.split(" called ").next())
        .collect();
    let n = who.len();
    who.sort();
    who.dedup();
    assert_eq!(who.len(), n, "told twice: {stderr}");
}

/// About the ptrace backend (pinned to it): a process has one tracer, so
/// a traced program's own ptrace calls fail, clearly. Under user
/// notification programs may trace (strace and gdb work there).
#[test]
fn class16_nested_ptrace_fails_clearly_never_hangs() {
    let limit = Duration::from_secs(30);
    let bounded = |mut c: Command| {
        let t0 = Instant::now();
        let out = run(c.env("RUST_LOG", "warn"));
        assert!(t0.elapsed() < limit, "took {:?}", t0.elapsed());
        (
            out.status.code().unwrap_or(-1),
            stdout(&out),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // A probe that forks and SEIZEs then ATTACHes its (traced) child:
    // both EPERM, said once for the process.
    let (code, out, err) = bounded(trace_cmd_with(&PTRACE, c_prog("h_attach", &[])));
    assert_eq!(
        (code, out.as_str()),
        (0, "SEIZE EPERM\nATTACH EPERM\n"),
        "{err}"
    );
    assert_told_once_each(&err);
    assert!(err.contains("ptrace(PTRACE_SEIZE)"), "{err}");
    // PTRACE_TRACEME then raise(SIGSTOP): TRACEME fails, nothing stops.
    let (code, out, err) = bounded(trace_cmd_with(&PTRACE, c_prog("h_traceme", &[])));
    assert_eq!((code, out.as_str()), (3, "TRACEME EPERM\n"), "{err}");
    assert!(
        err.contains("h_traceme[") && err.contains("ptrace(PTRACE_TRACEME)"),
        "{err}"
    );
    // Real debuggers: they fail, with our explanation.
    let mut c = trace_cmd_with(&PTRACE, require("strace"));
    c.args(["-f", "true"]);
    let (code, _, err) = bounded(c);
    assert_ne!(code, 0, "{err}");
    assert_told_once_each(&err);
    let mut c = trace_cmd_with(&PTRACE, require("gdb"));
    c.args(["-batch", "-ex", "run", "/bin/true"]);
    let (_, _, err) = bounded(c);
    assert_told_once_each(&err);
    assert!(err.contains("gdb["), "{err}");
}
