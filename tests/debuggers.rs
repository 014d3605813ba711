//! Issue 14: debuggers under appswitch. Under the user-notification
//! backend a traced program may ptrace: `strace -f` and `gdb` work, and the
//! network calls of the programs they run are still decided by the policy.
//! Under the ptrace backend a traced process cannot be traced again (one
//! tracer per process): each test asserts that documented behaviour there
//! instead (the debugger fails at once with appswitch's message, and the
//! program it would have run connects nowhere). The backend is the one
//! `APPSWITCH_BACKEND` selects in the test's environment.

mod common;
use common::backend::{backend, Backend};
use common::*;
use std::ffi::OsStr;
use std::time::{Duration, Instant};

/// An allowed and a denied listener, and the policy that denies the second.
struct Listeners {
    allowed: Banner,
    denied: Banner,
    _dir: tempfile::TempDir,
    policy: std::path::PathBuf,
}

fn listeners() -> Listeners {
    let allowed = Banner::start("allowed\n");
    let denied = Banner::start("denied\n");
    let (dir, policy) = policy_file(&format!("deny connect 127.0.0.1:{}\n", denied.port));
    Listeners {
        allowed,
        denied,
        _dir: dir,
        policy,
    }
}

/// `appswitch trace --policy P -- prog args`, bounded: (exit code, stdout, stderr).
fn traced_debugger(policy: &std::path::Path, prog: &OsStr, args: &[&str]) -> (i32, String, String) {
    let t0 = Instant::now();
    let (out, _) = policed(policy, &[], prog, args);
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t0.elapsed()
    );
    (
        out.status.code().unwrap_or(-1),
        stdout(&out),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// appswitch's message for a program that called ptrace under the ptrace backend.
fn told_one_tracer(stderr: &str, who: &str) -> bool {
    stderr.lines().any(|l| {
        l.contains(&format!("{who}["))
            && l.contains("called ptrace(")
            && l.contains("one tracer per process")
    })
}

#[test]
fn strace_under_appswitch_sees_connects_that_are_still_decided() {
    let l = listeners();
    // curl fetches a page from a real HTTP server (a banner that closes
    // without reading the request may reset the connection under curl).
    let web = HttpServer::start("allowed\n");
    let strace = require("strace");
    let curl = require("curl");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("strace.out");
    let args = |port: u16| -> Vec<String> {
        vec![
            "-f".into(),
            "-o".into(),
            log.display().to_string(),
            curl.display().to_string(),
            "-sS".into(),
            "--max-time".into(),
            "5".into(),
            format!("http://127.0.0.1:{port}/"),
        ]
    };
    let connect_line = |port: u16| {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines()
            .find(|l| l.contains("connect(") && l.contains(&format!("htons({port})")))
            .map(str::to_string)
    };
    let (a, d) = (args(web.port), args(l.denied.port));
    let (a, d) = (refs(&a), refs(&d));

    // Untraced: strace shows curl's connect; the page arrives.
    let plain = untraced(&strace, &a);
    assert_eq!(plain.status.code(), Some(0), "{plain:?}");
    assert_eq!(stdout(&plain), "allowed\n");
    assert!(connect_line(web.port).is_some(), "untraced strace log");
    std::fs::remove_file(&log).unwrap();

    match backend() {
        Backend::Unotify => {
            let (code, out, err) = traced_debugger(&l.policy, strace.as_os_str(), &a);
            assert_eq!((code, out.as_str()), (0, "allowed\n"), "{err}");
            let line = connect_line(web.port).expect("strace shows the connect");
            println!("allowed: {line}");
            std::fs::remove_file(&log).unwrap();

            let (code, out, err) = traced_debugger(&l.policy, strace.as_os_str(), &d);
            assert_eq!(code, 7, "curl: could not connect: {out} {err}");
            let line = connect_line(l.denied.port).expect("strace shows the connect");
            println!("denied: {line}");
            assert!(line.contains("ECONNREFUSED"), "{line}");
        }
        Backend::Ptrace => {
            // strace cannot attach: it fails at once, appswitch says why, and
            // curl never runs.
            let (code, _, err) = traced_debugger(&l.policy, strace.as_os_str(), &d);
            assert_ne!(code, 0, "{err}");
            assert!(told_one_tracer(&err, "strace"), "{err}");
            assert_eq!(connect_line(l.denied.port), None);
        }
    }
    assert_eq!(l.denied.count(), 0, "a denied connect got through");
}

#[test]
fn gdb_under_appswitch_runs_a_program_whose_connect_is_still_decided() {
    let l = listeners();
    let gdb = require("gdb");
    let prog = c_prog("connect_check", &[]);
    let prog = prog.to_str().unwrap();
    let (ap, dp) = (l.allowed.port.to_string(), l.denied.port.to_string());
    let args = |port: &str| -> Vec<String> {
        [
            "-batch",
            "-nx",
            "-iex",
            "set debuginfod enabled off",
            "-ex",
            "run",
            "--args",
            prog,
            "127.0.0.1",
            port,
        ]
        .map(String::from)
        .to_vec()
    };
    let (a, d) = (args(&ap), args(&dp));
    let (a, d) = (refs(&a), refs(&d));

    // Untraced: the program under gdb reaches the listener (no policy).
    let plain = untraced(&gdb, &d);
    let out = stdout(&plain);
    assert!(
        out.contains("result=ok") && out.contains("data=denied"),
        "{plain:?}"
    );
    assert_eq!(l.denied.count(), 1);

    match backend() {
        Backend::Unotify => {
            let (_, out, err) = traced_debugger(&l.policy, gdb.as_os_str(), &a);
            assert!(
                out.contains("result=ok") && out.contains("data=allowed"),
                "{out} {err}"
            );
            assert_eq!(l.allowed.count(), 1);
            let (_, out, err) = traced_debugger(&l.policy, gdb.as_os_str(), &d);
            assert!(out.contains("errno=ECONNREFUSED"), "{out} {err}");
            assert!(!out.contains("result=ok"), "{out} {err}");
        }
        Backend::Ptrace => {
            // gdb's inferior cannot PTRACE_TRACEME: it never starts.
            let (_, out, err) = traced_debugger(&l.policy, gdb.as_os_str(), &d);
            assert!(told_one_tracer(&err, "gdb"), "{err}");
            assert!(!out.contains("result=") && !out.contains("errno="), "{out}");
        }
    }
    assert_eq!(l.denied.count(), 1, "a denied connect got through");
}
