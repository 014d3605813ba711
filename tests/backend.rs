//! Issue 14: which interception backend runs. `trace --backend`, then
//! $APPSWITCH_BACKEND, then `[trace] backend` in the config, then the
//! built-in default choose it; `appswitch backend` says what would run and
//! why; events, apps/ID/info and the log name the backend that runs.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// A config file in `dir` holding `text` (kept alive by the caller's dir).
fn config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("appswitch.toml");
    std::fs::write(&p, text).expect("write config");
    p
}

/// `appswitch` with APPSWITCH_BACKEND set to `env` (None: unset) and the
/// config `conf` (None: an empty one, so that no system file counts); the
/// directory holding that empty config lives as long as the command.
fn appswitch_with(env: Option<&str>, conf: Option<&Path>) -> (Command, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = config(dir.path(), "");
    let mut c = Command::new(appswitch());
    c.env("APPSWITCH_CONFIG", conf.unwrap_or(&empty))
        .env_remove(BACKEND_ENV);
    if let Some(v) = env {
        c.env(BACKEND_ENV, v);
    }
    (c, dir)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `appswitch backend ARGS`: its exit status, its key=value lines, its stderr.
fn backend_report(
    env: Option<&str>,
    conf: Option<&Path>,
    args: &[&str],
) -> (i32, BTreeMap<String, String>, String) {
    let (mut c, _dir) = appswitch_with(env, conf);
    let out = run(c.arg("backend").args(args));
    let keys = stdout(&out)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (out.status.code().unwrap_or(-1), keys, stderr(&out))
}

/// The report's (backend, asked, from).
fn choice(r: &BTreeMap<String, String>) -> (&str, &str, &str) {
    let k = |key: &str| r.get(key).map_or("", String::as_str);
    (k("backend"), k("asked"), k("from"))
}

/// A traced connect to a banner with `opts`, APPSWITCH_BACKEND `env` and
/// the config `conf` runs under ptrace: every event says so, and so does
/// the log, with where the choice came from (`from`).
fn runs_ptrace(env: Option<&str>, conf: Option<&Path>, opts: &[&str], from: &str) {
    runs(env, conf, opts, "ptrace", "ptrace", from);
}

/// As [`runs_ptrace`], for the backend `name` chosen from the request `asked`.
fn runs(
    env: Option<&str>,
    conf: Option<&Path>,
    opts: &[&str],
    name: &str,
    asked: &str,
    from: &str,
) {
    let banner = Banner::start("hi\n");
    let dir = tempfile::tempdir().expect("tempdir");
    let ev = dir.path().join("events.jsonl");
    let (mut c, _conf_dir) = appswitch_with(env, conf);
    c.args(["trace", "--no-daemon", "--events"])
        .arg(&ev)
        .args(opts)
        .arg("--")
        .arg(c_prog("connect_check", &[]))
        .args(["127.0.0.1", &banner.port.to_string()])
        .env("RUST_LOG", "info");
    let out = run(&mut c);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout(&out).contains("data=hi"), "{out:?}");
    let events = read_events(&ev);
    assert!(!calls(&events, "connect", None).is_empty(), "{events:?}");
    for e in &events {
        assert_eq!(e["backend"], name, "{e}");
    }
    let log = stderr(&out);
    let want = format!("backend: {name} ({asked}, from {from})");
    assert!(log.contains(&want), "{want}: {log}");
}

#[test]
fn auto_on_this_kernel_chooses_user_notification() {
    let (code, r, err) = backend_report(None, None, &["--backend", "auto"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        choice(&r),
        ("unotify", "auto", "--backend"),
        "this kernel should have user notification: {r:?}"
    );
    assert_eq!(r["unotify"], "available");
    // And a trace asked for auto runs under it (its events and log say so).
    runs(
        None,
        None,
        &["--backend", "auto"],
        "unotify",
        "auto",
        "--backend",
    );
}

#[test]
fn ptrace_is_chosen_when_asked_and_named_in_events_and_the_log() {
    let (code, r, err) = backend_report(None, None, &["--backend", "ptrace"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(choice(&r), ("ptrace", "ptrace", "--backend"));
    // The report says what the kernel allows whatever was asked.
    assert!(r.contains_key("unotify"), "{r:?}");

    runs_ptrace(Some("unotify"), None, &PTRACE, "--backend");
}

#[test]
fn a_bad_backend_is_a_usage_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("ran");
    let touch = |env: Option<&str>, conf: Option<&Path>, opts: &[&str]| {
        let (mut c, _conf_dir) = appswitch_with(env, conf);
        c.args(["trace", "--no-daemon"])
            .args(opts)
            .args(["--", "touch"])
            .arg(&marker);
        let out = run(&mut c);
        assert!(!marker.exists(), "the program ran: {out:?}");
        (out.status.code(), stderr(&out))
    };
    // The flag: clap names the value and the valid ones.
    let (code, err) = touch(None, None, &["--backend", "strace"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("'strace'") && err.contains("auto, unotify, ptrace"),
        "{err}"
    );
    // The environment.
    let (code, err) = touch(Some("strace"), None, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(
            "APPSWITCH_BACKEND=strace: unknown backend 'strace': expected auto, unotify or ptrace"
        ),
        "{err}"
    );
    // The config file.
    let conf = config(dir.path(), "[trace]\nbackend = \"strace\"\n");
    let (code, err) = touch(None, Some(&conf), &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("unknown backend 'strace': expected auto, unotify or ptrace"),
        "{err}"
    );
    // `appswitch backend` says the same.
    let (code, _, err) = backend_report(Some("strace"), None, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("APPSWITCH_BACKEND=strace"), "{err}");
}

#[test]
fn the_config_file_is_honoured_below_the_environment_and_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let auto = config(dir.path(), "[trace]\nbackend = \"auto\"\n");
    let from_file = format!("[trace] backend in {}", auto.display());
    let (code, r, err) = backend_report(None, Some(&auto), &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(choice(&r), ("unotify", "auto", from_file.as_str()));
    // --config names the file as well.
    let (_, r, _) = backend_report(None, None, &["--config", &auto.to_string_lossy()]);
    assert_eq!(choice(&r), ("unotify", "auto", from_file.as_str()));
    // The environment, then the flag, win over it.
    let (_, r, _) = backend_report(Some("ptrace"), Some(&auto), &[]);
    assert_eq!(choice(&r), ("ptrace", "ptrace", "APPSWITCH_BACKEND"));
    let (_, r, _) = backend_report(Some("auto"), Some(&auto), &["--backend", "ptrace"]);
    assert_eq!(choice(&r), ("ptrace", "ptrace", "--backend"));
    // An empty variable is no choice.
    let (_, r, _) = backend_report(Some(""), Some(&auto), &[]);
    assert_eq!(choice(&r), ("unotify", "auto", from_file.as_str()));

    // A trace runs what the file says.
    let dir = tempfile::tempdir().expect("tempdir");
    let ptrace = config(dir.path(), "[trace]\nbackend = \"ptrace\"\n");
    let from = format!("[trace] backend in {}", ptrace.display());
    runs_ptrace(None, Some(&ptrace), &[], &from);
}

#[test]
fn the_environment_is_honoured_below_the_flag() {
    let (code, r, err) = backend_report(Some("auto"), None, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(choice(&r), ("unotify", "auto", "APPSWITCH_BACKEND"));
    let (_, r, _) = backend_report(Some("user-notification"), None, &[]);
    assert_eq!(choice(&r), ("unotify", "unotify", "APPSWITCH_BACKEND"));
    let (_, r, _) = backend_report(Some("auto"), None, &["--backend", "ptrace"]);
    assert_eq!(choice(&r), ("ptrace", "ptrace", "--backend"));
    // With nothing asked: the built-in default.
    let (_, r, _) = backend_report(None, None, &[]);
    assert_eq!(choice(&r).2, "the built-in default");

    runs_ptrace(Some("ptrace"), None, &[], "APPSWITCH_BACKEND");
}

/// Where user notification cannot run (here: inside a trace, whose filter
/// refuses a second listener), `unotify` is a usage error with the reason
/// and `auto` falls back to ptrace. The outer trace is pinned to ptrace.
#[test]
fn unotify_where_it_cannot_run_is_a_usage_error_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("ran");
    let nested = |inner: &[&std::ffi::OsStr]| {
        let (mut c, _conf_dir) = appswitch_with(None, None);
        c.args(["trace", "--no-daemon"])
            .args(PTRACE)
            .arg("--")
            .arg(appswitch())
            .args(inner);
        run(&mut c)
    };

    let out = nested(&[
        "trace".as_ref(),
        "--no-daemon".as_ref(),
        "--backend".as_ref(),
        "unotify".as_ref(),
        "--".as_ref(),
        "touch".as_ref(),
        marker.as_os_str(),
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        err.contains("--backend unotify: the user-notification backend cannot run here")
            && err.contains("listener"),
        "{err}"
    );
    assert!(!marker.exists(), "the program ran");

    let out = nested(&["backend".as_ref(), "--backend".as_ref(), "auto".as_ref()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("backend=ptrace\n"), "{text}");
    assert!(text.contains("unotify=unavailable: "), "{text}");
}

/// Whatever this pass runs (APPSWITCH_BACKEND, as scripts/test.sh sets it),
/// every event line and the app's info file name it.
#[test]
fn events_and_info_name_the_backend_that_runs() {
    let want = backend();
    let banner = Banner::start("hi\n");
    let prog = c_prog("connect_check", &[]);
    let (out, events) = traced(&prog, &["127.0.0.1", &banner.port.to_string()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(!events.is_empty());
    for e in &events {
        assert_eq!(e["backend"], want, "{e}");
    }

    // trace --mount: apps/ID/info.
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = dir.path().join("mnt");
    let mut t = Proc(
        Command::new(appswitch())
            .args(["trace", "--mount"])
            .arg(&mnt)
            .args(["--", "sleep", "30"])
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn trace"),
    );
    let mut info = String::new();
    wait_until("apps/ID/info", Duration::from_secs(10), || {
        info = std::fs::read_dir(mnt.join("apps"))
            .into_iter()
            .flatten()
            .flatten()
            .find_map(|e| std::fs::read_to_string(e.path().join("info")).ok())
            .unwrap_or_default();
        !info.is_empty()
    });
    t.signal(libc::SIGTERM);
    let code = t.wait_timeout(Duration::from_secs(10));
    let _ = Command::new("umount")
        .arg("-l")
        .arg(&mnt)
        .stderr(Stdio::null())
        .status();
    assert!(info.contains(&format!("\nbackend={want}\n")), "{info}");
    assert_eq!(code, Some(128 + libc::SIGTERM));
}
