//! Hardening of the policy (issue 13): ways around connect/send rules that
//! a program could take, each tried by a probe and shown closed by what
//! reaches a real listener.

mod common;
use common::netns::Netns;
use common::*;
use std::collections::BTreeMap;
use std::process::Command;

/// The probe's NAME=RESULT lines.
fn results(o: &std::process::Output) -> BTreeMap<String, String> {
    stdout(o)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// h_raw's variants that send a UDP/IP datagram the listener can count.
const RAW_IP: [&str; 5] = ["hdrincl", "icmp_hdr", "syscall", "int80", "int80_sock"];
/// Its other raw and packet sockets.
const RAW_OTHER: [&str; 5] = ["pkt_dgram", "pkt_raw", "raw6", "inet_pkt", "xdp"];

/// What socket() returns in a child whose only filter is the one built for
/// `raw_sockets` alone, with no tracer: a call the filter stops fails with
/// ENOSYS (SECCOMP_RET_TRACE without a tracer), one it lets through runs.
/// (The ptrace backend's filter, built here directly: the backend of the
/// pass, APPSWITCH_BACKEND, plays no part.)
fn filtered_socket_calls(calls: &[(i64, i64, i64)]) -> Vec<i64> {
    let prog = tracer::filter::build(&tracer::Interests {
        raw_sockets: true,
        ..tracer::Interests::NONE
    })
    .expect("build the filter");
    let fprog = libc::sock_fprog {
        len: prog.insns.len() as u16,
        filter: prog.insns.as_ptr() as *mut libc::sock_filter,
    };
    let mut fds = [0i32; 2];
    // SAFETY: a pipe, then a fork whose child makes only async-signal-safe
    // calls (prctl, seccomp, socket, close, write, _exit) on memory
    // prepared before the fork.
    unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        let pid = libc::fork();
        assert!(pid >= 0, "fork");
        if pid == 0 {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            if libc::syscall(libc::SYS_seccomp, 1, 0, &fprog as *const libc::sock_fprog) != 0 {
                libc::_exit(3);
            }
            for &(d, t, p) in calls {
                let r = libc::syscall(libc::SYS_socket, d, t, p);
                let v: i64 = if r < 0 {
                    -i64::from(*libc::__errno_location())
                } else {
                    libc::close(r as i32);
                    0
                };
                libc::write(fds[1], (&v as *const i64).cast(), 8);
            }
            libc::_exit(0);
        }
        libc::close(fds[1]);
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        assert_eq!(libc::WEXITSTATUS(status), 0, "filter child failed");
        let mut out = Vec::new();
        let mut v = 0i64;
        while libc::read(fds[0], (&mut v as *mut i64).cast(), 8) == 8 {
            out.push(v);
        }
        libc::close(fds[0]);
        out
    }
}

/// A raw IP socket (IP_HDRINCL) or a packet socket carries its destination
/// in the payload: under a policy it needs an `allow raw` rule, whatever
/// the connect/send rules and the default say; ICMP ping sockets are
/// datagram sockets, policed by send rules at sendto and at connect.
#[test]
fn raw_and_packet_sockets_need_an_allow_rule() {
    // The filter stops socket() only for raw and packet sockets.
    let hi = 1i64 << 32;
    let (inet, inet6, packet) = (
        i64::from(libc::AF_INET),
        i64::from(libc::AF_INET6),
        i64::from(libc::AF_PACKET),
    );
    let (stream, dgram, raw) = (
        i64::from(libc::SOCK_STREAM),
        i64::from(libc::SOCK_DGRAM),
        i64::from(libc::SOCK_RAW),
    );
    let flags = i64::from(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
    let got = filtered_socket_calls(&[
        (inet, stream | flags, 0),
        (inet6, dgram, 0),
        (i64::from(libc::AF_UNIX), stream, 0),
        (inet, raw | flags, 255),
        (inet | hi, raw, 255),
        (inet6, raw, 17),
        (inet, 10, 0),
        (packet, dgram | flags, 0),
        (packet | hi, raw, 0),
    ]);
    let nosys = -i64::from(libc::ENOSYS);
    assert_eq!(
        got,
        [0, 0, 0, nosys, nosys, nosys, nosys, nosys, nosys],
        "ordinary sockets pass the filter, raw and packet ones stop"
    );

    let mut udp = UdpCounter::start();
    let port = udp.port.to_string();
    let probe = c_prog("h_raw", &[]);
    let deny = format!(
        "deny send 127.0.0.1:{0}\ndeny connect 127.0.0.1:{0}\n",
        udp.port
    );
    let run = |policy: &str, extra: &[&str]| {
        let (_d, pol) = policy_file(policy);
        let mut opts = vec!["--no-daemon"];
        opts.extend_from_slice(extra);
        let (o, ev) = policed(&pol, &opts, &probe, &[&port]);
        (results(&o), ev)
    };

    // Deny rules, a default deny, an `allow any`, a raw rule for another
    // program: every raw and packet socket is refused at socket(), with
    // the errno an unprivileged program gets; ordinary sockets still work.
    for policy in [
        deny.clone(),
        "default deny\n".to_string(),
        format!("{deny}allow any\nallow raw app=ping\n"),
    ] {
        let (r, ev) = run(&policy, &[]);
        for v in RAW_IP.iter().chain(&RAW_OTHER) {
            assert_eq!(r[*v], "EPERM", "{v} under {policy:?}: {r:?}");
        }
        assert_eq!(r["udp"], "created", "{r:?}");
        let refused = calls(&ev, "socket", None)
            .into_iter()
            .filter(|e| e["action"] == "deny" && e["result"] == "EPERM")
            .count();
        assert_eq!(refused, RAW_IP.len() + RAW_OTHER.len(), "{policy:?}");
    }
    let (r, _) = run(&format!("deny raw errno=EACCES\n{deny}"), &[]);
    assert_eq!(r["hdrincl"], "EACCES", "{r:?}");
    assert_eq!(udp.count(), 0, "no hand-made datagram got through");

    // `allow raw` for this program opens them all (also through i386
    // socketcall); monitor mode lets them through and records the refusal.
    let (r, _) = run(&format!("allow raw app=h_raw\n{deny}"), &[]);
    for v in RAW_IP {
        assert_eq!(r[v], "sent", "{v}: {r:?}");
    }
    for v in ["pkt_dgram", "pkt_raw"] {
        assert_eq!(r[v], "sent", "{v}: {r:?}");
    }
    assert_eq!(udp.count(), RAW_IP.len());
    let (r, ev) = run(&deny, &["--mode", "monitor"]);
    for v in RAW_IP {
        assert_eq!(r[v], "sent", "monitor: {v}: {r:?}");
    }
    assert_eq!(udp.count(), 2 * RAW_IP.len());
    let recorded: Vec<_> = calls(&ev, "socket", None)
        .into_iter()
        .filter(|e| e["action"] == "deny")
        .collect();
    assert_eq!(recorded.len(), RAW_IP.len() + RAW_OTHER.len());
    assert!(recorded.iter().all(|e| e["monitor"] == true));

    // ICMP ping sockets, in a namespace of our own that allows them: a
    // send rule refuses the echo at sendto and at connect, counted by the
    // namespace's kernel (Icmp InEchos).
    let ns = Netns::new();
    let ok = run_in(
        &ns,
        "sh",
        &[
            "-c",
            "echo '0 2147483647' > /proc/sys/net/ipv4/ping_group_range",
        ],
    );
    assert!(ok.status.success(), "{ok:?}");
    let in_echos = || {
        let snmp = stdout(&run_in(&ns, "cat", &["/proc/net/snmp"]));
        let mut icmp = snmp.lines().filter(|l| l.starts_with("Icmp:"));
        let (names, values) = (icmp.next().unwrap_or(""), icmp.next().unwrap_or(""));
        let i = names.split_whitespace().position(|n| n == "InEchos");
        i.and_then(|i| values.split_whitespace().nth(i)?.parse::<u64>().ok())
            .expect("Icmp InEchos in /proc/net/snmp")
    };
    let (_d, pol) = policy_file("deny send 127.0.0.1\n");
    let before = in_echos();
    for how in ["sendto", "connect"] {
        let o = run_in(
            &ns,
            appswitch(),
            &[
                "trace",
                "--no-daemon",
                "--policy",
                pol.to_str().unwrap_or_default(),
                "--",
                probe.to_str().unwrap_or_default(),
                "icmp",
                how,
            ],
        );
        let r = results(&o);
        assert_eq!(r["socket"], "ok", "{how}: {r:?}");
        assert_eq!(r["reply"], "no", "{how}: {r:?}");
        if how == "connect" {
            // connect() fixes the destination of every later send(), which
            // stops for nothing: it is refused as a send.
            assert_eq!(r["connect"], "EPERM", "{r:?}");
            assert_eq!(r["send"], "EDESTADDRREQ", "{r:?}");
        } else {
            assert_eq!(r["send"], "EPERM", "{r:?}");
        }
    }
    assert_eq!(in_echos(), before, "no echo request reached the kernel");
    let o = run_in(&ns, &probe, &["icmp", "connect"]);
    assert_eq!(results(&o)["reply"], "yes", "untraced, the ping works");
    assert_eq!(in_echos(), before + 1);
}

/// Run `prog args` inside `ns`, bounded in time.
fn run_in(ns: &Netns, prog: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> std::process::Output {
    let mut c: Command = ns.cmd(prog);
    c.args(args);
    run(&mut c)
}

/// app= names the program: the comm its last execve gave it (inherited
/// across fork), not the calling thread's current name, which any thread
/// may change with PR_SET_NAME.
#[test]
fn app_matches_the_program_not_a_thread() {
    let target = Banner::start_low("hello\n");
    let port = target.port.to_string();
    let probe = c_prog("h_app", &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let as_curl = dir.path().join("curl");
    std::os::unix::fs::symlink(&probe, &as_curl).expect("symlink");
    let as_curl = as_curl.to_str().unwrap_or_default();
    let renamed = [
        "thread_allowed",
        "thread_denied",
        "fork_thread",
        "main",
        "fork_main",
    ];
    let run = |policy: String, args: &[&str]| {
        let (_d, pol) = policy_file(&policy);
        let (o, ev) = policed(&pol, &["--no-daemon"], &probe, args);
        (results(&o), ev)
    };

    // Renaming a thread (or the main one, before a fork or not) to an
    // allowed name does not make the program that app.
    let refuse = format!(
        "allow connect 127.0.0.1:{port} app=curl\ndeny connect 127.0.0.1:{port} app=h_app\n"
    );
    let (r, ev) = run(refuse.clone(), &[&port]);
    for v in renamed {
        assert_eq!(r[v], "ECONNREFUSED", "{v}: {r:?}");
    }
    assert_eq!(target.count(), 0, "no connect reached the listener");
    let c = calls(&ev, "connect", Some(&format!("127.0.0.1:{port}")));
    assert_eq!(c.len(), renamed.len());
    assert!(c
        .iter()
        .all(|e| e["comm"] == "h_app" && e["action"] == "deny"));

    // Executing the program under another name does: the exec'd child is
    // `curl` (its kernel comm from the path), and is let through.
    let (r, ev) = run(refuse, &[&port, as_curl]);
    assert_eq!(r["exec"], "ok", "{r:?}");
    assert_eq!(target.count(), 1);
    let c = calls(&ev, "connect", Some(&format!("127.0.0.1:{port}")));
    assert_eq!(c.iter().filter(|e| e["comm"] == "curl").count(), 1);

    // And the other way: rules for the names the threads take refuse none
    // of the program's connects, only the exec'd curl's.
    let (r, _) = run(
        format!("deny connect 127.0.0.1:{port} app=nc\ndeny connect 127.0.0.1:{port} app=curl\n"),
        &[&port, as_curl],
    );
    for v in renamed {
        assert_eq!(r[v], "ok", "{v}: {r:?}");
    }
    assert_eq!(r["exec"], "ECONNREFUSED", "{r:?}");
    assert_eq!(target.count(), 1 + renamed.len());
}
