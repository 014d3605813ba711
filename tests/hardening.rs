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

#[test]
fn class04_the_calling_threads_descriptor_table_is_the_one_examined() {
    let d = denied();
    let mut udp = UdpCounter::start();
    let (_dir, policy) = policy_file(&format!(
        "deny connect 127.0.0.1:{}\ndeny send 127.0.0.1:{}\n",
        d.banner.port, udp.port
    ));
    let prog = c_prog("h_fdtable", &[]);
    for mode in ["worker-unshares", "leader-unshares"] {
        let (out, _) = policed(
            &policy,
            &[],
            &prog,
            &[mode, &d.port(), &udp.port.to_string(), "1000"],
        );
        assert_eq!(stdout(&out), "connected=0 sent=0\n", "{mode}: {out:?}");
    }
    assert_eq!(d.banner.count(), 0, "a denied connect got through");
    assert_eq!(udp.count(), 0, "a denied datagram got through");
}

#[test]
fn class10_many_processes_under_a_low_descriptor_limit() {
    let ok = Banner::start("ok\n");
    let (_dir, policy) = policy_file("deny connect 192.0.2.1\n");
    let prog = c_prog("h_many", &[]);
    let port = ok.port.to_string();
    // Soft limit only (Debian's default), then soft and hard both 1024.
    for ulimit in ["ulimit -Sn 1024", "ulimit -n 1024"] {
        let script = format!("{ulimit}; exec \"$@\"");
        let out = run(std::process::Command::new("bash")
            .args(["-c", &script, "sh"])
            .arg(appswitch())
            .args(["trace", "--policy"])
            .arg(&policy)
            .arg("--")
            .arg(&prog)
            .args([&port, "1100"]));
        let s = stdout(&out);
        assert!(
            s.starts_with("ok=2200 emfile=0 other=0 limit_differs=0 nofile=1024/"),
            "{ulimit}: {out:?}"
        );
    }
}

#[test]
fn class14_network_calls_after_the_leader_exits_and_a_thread_execs() {
    let ok = Banner::start("hello\n");
    let d = denied();
    let prog = c_prog("h_leader_exec", &[]);
    let args = ["start", &ok.port.to_string(), &d.port()];
    let plain = stdout(&untraced(&prog, &args));
    assert_eq!(
        plain,
        "ok_port=hello\ndenied_port=OK\nself_connect=OK accept=OK\n"
    );
    let traced = d.run(&prog, &args);
    assert_eq!(
        traced,
        plain.replace("denied_port=OK", "denied_port=ECONNREFUSED")
    );
    assert_eq!(d.banner.count(), 1, "only the untraced run reached it");
}
