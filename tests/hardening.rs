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

#[test]
fn class03_what_was_checked_is_what_runs() {
    let ok = Banner::start("ok\n");
    let mut udp = UdpCounter::start();
    let (_dir, policy) = policy_file(&format!(
        "deny send 127.0.0.1:{0}\ndeny connect 127.0.0.1:{0}\n",
        udp.port
    ));
    let prog = c_prog("h_reread", &[]);
    for mode in ["null-name", "unspec", "tcp-fdswap", "socketcall"] {
        let (out, _) = policed(
            &policy,
            &[],
            &prog,
            &[mode, &ok.port.to_string(), &udp.port.to_string(), "10000"],
        );
        assert_eq!(stdout(&out), "attempts=10000\n", "{mode}: {out:?}");
        assert_eq!(udp.count(), 0, "{mode}: a denied datagram got through");
    }
}

#[test]
fn class07_calls_carried_out_for_the_program_use_its_rights() {
    let (_dir, policy) = policy_file("deny connect 192.0.2.1\ndeny send 192.0.2.1\n");
    let prog = c_prog("h_privs", &[]);
    let sink = UdpCounter::start();
    let port = sink.port.to_string();
    let cases: [(&[&str], &str); 2] = [
        // Root in a user namespace of its own is not root on the host's ports.
        (&["userns-bind", "81"], "unshare=OK\nbind=EACCES\n"),
        // Control messages that need CAP_NET_ADMIN/RAW, from user nobody.
        (
            &["mark-cmsg", &port],
            "so_mark=EPERM\nso_priority_7=EPERM\nip_ttl=OK\n",
        ),
    ];
    for (args, want) in cases {
        let plain = stdout(&untraced(
            "setpriv",
            &[
                &["--reuid=65534", "--regid=65534", "--clear-groups"][..],
                &[prog.to_str().unwrap()],
                args,
            ]
            .concat(),
        ));
        let (out, _) = policed(&policy, &["--user", "nobody"], &prog, args);
        if args[0] == "userns-bind" {
            // As root, untraced: the user namespace still holds no host rights.
            let (root, _) = policed(&policy, &[], &prog, args);
            assert_eq!(stdout(&root), want, "{args:?} as root: {root:?}");
        }
        assert_eq!(plain, want, "{args:?} untraced");
        assert_eq!(stdout(&out), want, "{args:?} traced: {out:?}");
    }
}

#[test]
fn class15_errnos_equal_untraced() {
    let ok = Banner::start("ok\n");
    let udp = UdpCounter::start();
    let (_dir, policy) = policy_file("deny connect 192.0.2.1\ndeny send 192.0.2.1\n");
    let prog = c_prog("h_errnos", &[]);
    let args = [ok.port.to_string(), udp.port.to_string()];
    let args = [args[0].as_str(), args[1].as_str()];
    let plain = stdout(&untraced(&prog, &args));
    let (out, _) = policed(&policy, &[], &prog, &args);
    let traced = stdout(&out);
    // Everything but memfd_secret: the tracer cannot read such memory (by
    // design of memfd_secret), so that call fails closed (docs/RULES.md).
    let (plain_main, plain_secret) = plain.split_once("secret").expect("probe ran");
    let (traced_main, traced_secret) = traced.split_once("secret").expect("probe ran");
    assert_eq!(traced_main, plain_main);
    assert!(plain_main.lines().count() >= 16, "{plain}");
    if plain_secret != "=unavailable\n" {
        assert_eq!(plain_secret, "_connect=OK\n");
        assert_eq!(traced_secret, "_connect=EFAULT\n");
    }
}

#[test]
fn class07_a_program_restricted_by_its_own_landlock_stays_restricted() {
    let allowed = Banner::start("a\n");
    let other = Banner::start("o\n");
    let (_dir, policy) = policy_file("deny connect 192.0.2.1\n");
    let prog = c_prog("h_landlock", &[]);
    let ports = [allowed.port.to_string(), other.port.to_string()];
    for mode in ["net", "net-child"] {
        let args = [mode, &ports[0], &ports[1]];
        let plain = stdout(&untraced(&prog, &args));
        assert_eq!(plain, "restrict=OK\nallowed=OK\nother=EACCES\n");
        // Its Landlock rules cannot be applied to a connect made for it:
        // every TCP connect is refused rather than widened (docs/RULES.md).
        let (out, _) = policed(&policy, &[], &prog, &args);
        assert_eq!(stdout(&out), "restrict=OK\nallowed=EACCES\nother=EACCES\n");
    }
    assert_eq!(other.count(), 0, "Landlock's refusal was widened");
    // A filesystem-only ruleset changes nothing.
    let args = ["fs", &ports[0], &ports[1]];
    let (out, _) = policed(&policy, &[], &prog, &args);
    assert_eq!(stdout(&out), stdout(&untraced(&prog, &args)));
}

/// `appswitch trace --policy P -- h_slowmem DIR PORT`, stdout piped.
fn slowmem(policy: &std::path::Path, dir: &std::path::Path, port: u16) -> Proc {
    Proc(
        std::process::Command::new(appswitch())
            .args(["trace", "--policy"])
            .arg(policy)
            .arg("--")
            .arg(c_prog("h_slowmem", &[]))
            .arg(dir)
            .arg(port.to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn trace"),
    )
}

#[test]
fn class08_memory_that_blocks_does_not_hold_the_tracer() {
    let ok = Banner::start("ok\n");
    let (_dir, policy) = policy_file("deny connect 192.0.2.1\n");
    let mnt = tempfile::tempdir().expect("tempdir");
    let start = std::time::Instant::now();
    let mut t = slowmem(&policy, mnt.path(), ok.port);
    let code = t.wait_timeout(std::time::Duration::from_secs(10));
    let mut out = String::new();
    if let Some(mut o) = t.0.stdout.take() {
        let _ = std::io::Read::read_to_string(&mut o, &mut out);
    }
    let _ = std::process::Command::new("umount")
        .arg("-l")
        .arg(mnt.path())
        .status();
    assert_eq!(code, Some(0), "the trace was held: {out}");
    assert_eq!(out, "mounted=OK\nconnect=EFAULT\n");
    assert!(start.elapsed() < std::time::Duration::from_secs(5));

    // SIGTERM to the trace while its tracer thread is held still works.
    let mnt = tempfile::tempdir().expect("tempdir");
    let mut t = slowmem(&policy, mnt.path(), ok.port);
    assert_eq!(t.first_line(), "mounted=OK\n");
    t.signal(libc::SIGTERM);
    let code = t.wait_timeout(std::time::Duration::from_secs(10));
    let _ = std::process::Command::new("umount")
        .arg("-l")
        .arg(mnt.path())
        .status();
    assert_eq!(code, Some(128 + libc::SIGTERM), "SIGTERM did not end it");
}
