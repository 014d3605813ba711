//! Issue 13: one test per hardening class of the tracer side. Each runs a
//! probe of ours (tests/progs/h_*.c) that attacks the class and asserts on
//! the denied listener's own count, not on what the probe believes.
//! (Signals, stderr and nested ptrace: tests/hardening_process.rs; raw
//! sockets and app=: tests/hardening_policy.rs.)

mod common;
use common::*;

/// A listener whose port a policy denies, and that policy.
struct Denied {
    banner: Banner,
    _dir: tempfile::TempDir,
    policy: std::path::PathBuf,
}

fn denied() -> Denied {
    let banner = Banner::start("denied\n");
    let (dir, policy) = policy_file(&format!("deny connect 127.0.0.1:{}\n", banner.port));
    Denied {
        banner,
        _dir: dir,
        policy,
    }
}

impl Denied {
    fn port(&self) -> String {
        self.banner.port.to_string()
    }
    fn run(&self, prog: &std::path::Path, args: &[&str]) -> String {
        let (out, _) = policed(&self.policy, &[], prog, args);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        stdout(&out)
    }
}

#[test]
fn class01_the_programs_own_seccomp_filters_change_nothing() {
    let d = denied();
    let prog = c_prog("h_own_filter", &[]);
    // RET_TRACE with data of the program's choosing: still a connect.
    let out = d.run(&prog, &["trace-data", &d.port()]);
    assert_eq!(out.matches("connect=ECONNREFUSED").count(), 4, "{out}");
    // A user-notification listener would outrank the tracer: refused.
    for mode in ["notif", "notif-tsync"] {
        let out = d.run(&prog, &[mode, &d.port()]);
        assert!(out.contains("listener=EBUSY"), "{mode}: {out}");
        assert!(out.contains("connect=ECONNREFUSED"), "{mode}: {out}");
    }
    assert_eq!(d.banner.count(), 0, "a denied connect got through");
}

#[test]
fn class02_no_child_escapes_tracing() {
    let d = denied();
    let prog = c_prog("h_clone_escape", &[]);
    for mode in [
        "clone3-ro",
        "clone3-secret",
        "clone3-race",
        "clone-untraced",
    ] {
        let n = if mode == "clone3-race" {
            "10000"
        } else {
            "200"
        };
        let out = d.run(&prog, &[mode, &d.port(), n]);
        assert!(out.contains("untraced=0 connected=0"), "{mode}: {out}");
    }
    // clone-untraced children are created, and traced.
    let out = d.run(&prog, &["clone-untraced", &d.port(), "5"]);
    assert!(out.contains("created=5 untraced=0"), "{out}");
    assert_eq!(d.banner.count(), 0, "an escaped child connected");
}
