//! Services: virtual IPs, names, load balancing, labels, static services.
//!
//! Every test here runs in a network namespace it creates itself, with only
//! a loopback interface and no route out: the virtual IPs (10.1.0.x) exist
//! nowhere, so a connect that is not rewritten fails with ENETUNREACH and no
//! packet can leave the machine. The daemon, servers and clients all run in
//! that namespace (setns before exec); the daemon's mount is in the host's
//! mount namespace, where the test reads it.

mod common;
use common::netns::{kill_program, Host};
use common::*;
use std::process::Stdio;
use std::time::Duration;

#[test]
fn round_robin_across_programs_then_failover_then_refused() {
    let h = Host::start();
    let ip = ["--ip", "10.1.0.1", "--name", "web"];
    let mut a = h.web(&ip, 8000, "A");
    let mut b = h.web(&ip, 8000, "B");
    h.wait_backends("10.1.0.1:8000", 2);

    // Ten separate traced curls alternate exactly.
    let bodies: Vec<String> = (0..10)
        .map(|_| {
            let o = h.curl(&[], "http://10.1.0.1:8000/");
            assert!(o.status.success(), "{o:?}");
            stdout(&o)
        })
        .collect();
    for w in bodies.windows(2) {
        assert_ne!(w[0], w[1], "round robin must alternate: {bodies:?}");
    }
    assert!(bodies.iter().all(|b| b == "A" || b == "B"), "{bodies:?}");

    // The client saw the virtual address, not the backend's.
    let curl = require("curl");
    let o = run(&mut h.trace(
        &[],
        &curl,
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{remote_ip}:%{remote_port}",
            "http://10.1.0.1:8000/",
        ],
    ));
    assert_eq!(stdout(&o), "10.1.0.1:8000");

    // One backend killed: every later request goes to the other.
    kill_program(&mut a);
    for _ in 0..5 {
        let o = h.curl(&[], "http://10.1.0.1:8000/");
        assert_eq!(stdout(&o), "B", "{o:?}");
    }
    assert_eq!(
        h.services().matches("  backend").count(),
        1,
        "{}",
        h.services()
    );

    // Both killed: the service and its name leave at once, and a connect
    // to the VIP is refused (never sent out).
    kill_program(&mut b);
    wait_until("the service to leave", Duration::from_secs(5), || {
        !h.services().contains("10.1.0.1:8000")
    });
    let o = h.curl(&[], "http://web:8000/");
    assert_eq!(
        o.status.code(),
        Some(6),
        "curl: couldn't resolve web: {o:?}"
    );
    let o = h.curl(&[], "http://10.1.0.1:8000/");
    assert_eq!(o.status.code(), Some(7), "curl: couldn't connect: {o:?}");
    let cc = c_prog("connect_check", &[]);
    let o = run(&mut h.trace(&[], &cc, &["10.1.0.1", "8000"]));
    assert!(stdout(&o).contains("errno=ECONNREFUSED"), "{}", stdout(&o));
    // Untraced, the virtual IP does not exist here: nothing is routed.
    let o = run(h.ns.cmd(&cc).args(["10.1.0.1", "8000"]));
    assert!(stdout(&o).contains("errno=ENETUNREACH"), "{}", stdout(&o));
}

#[test]
fn server_sees_the_address_it_asked_for() {
    let h = Host::start();
    let mut web = h.web(&["--ip", "10.1.0.1"], 8000, "A");
    h.wait_backends("10.1.0.1:8000", 1);
    // http.server prints getsockname(): the port it asked for, not the real one.
    let out = web.0.stdout.take().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line).unwrap();
    assert!(line.contains("port 8000"), "{line}");
    let real = h.services();
    assert!(!real.contains("127.0.0.1:8000"), "{real}");
}

/// A traced python3 client that, for each line on its stdin, connects to
/// `ip:port` and prints the first line the server sends (`connected` if it
/// sends nothing within 5 s), or the errno name.
/// With a function that asks it once and returns that answer.
fn running_client(h: &Host, ip: &str, port: u16) -> (Proc, impl FnMut() -> String) {
    let code = format!(
        "import socket,sys,errno\n\
         for line in sys.stdin:\n\
         \x20   s=socket.socket(); s.settimeout(5)\n\
         \x20   try:\n\
         \x20       s.connect(('{ip}',{port}))\n\
         \x20   except OSError as e:\n\
         \x20       print(errno.errorcode.get(e.errno, 'timeout'), flush=True); s.close(); continue\n\
         \x20   try:\n\
         \x20       print(s.recv(64).decode().strip() or 'connected', flush=True)\n\
         \x20   except OSError:\n\
         \x20       print('connected', flush=True)\n\
         \x20   s.close()\n"
    );
    let mut c = Proc(
        h.trace(&[], "python3", &["-c", &code])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut input = c.0.stdin.take().unwrap();
    let mut output = std::io::BufReader::new(c.0.stdout.take().unwrap());
    let ask = move || {
        use std::io::{BufRead, Write};
        writeln!(input).unwrap();
        let mut l = String::new();
        output.read_line(&mut l).unwrap();
        l.trim().to_string()
    };
    (c, ask)
}

/// `python3 -c CODE` traced with --ip 10.1.0.1, and a reader of its output lines.
fn python_service(h: &Host, code: &str) -> (Proc, impl FnMut() -> String) {
    lines(h.trace(&["--ip", "10.1.0.1"], "python3", &["-c", code]))
}

/// apps/ID/info of the program `pid` (None: the first app listed).
fn app_info(h: &Host, pid: Option<i32>) -> String {
    let Ok(dir) = std::fs::read_dir(h.file("apps")) else {
        return String::new();
    };
    for id in dir.flatten() {
        let info = std::fs::read_to_string(id.path().join("info")).unwrap_or_default();
        if pid.is_none_or(|p| info_field(&info, "pid") == p.to_string()) {
            return info;
        }
    }
    String::new()
}

/// The value of `key=` in an info file ("" when absent).
fn info_field(info: &str, key: &str) -> String {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or("")
        .to_string()
}

/// Start `cmd` with its stdin and stdout piped: the process, and a reader of
/// its next output line.
fn lines(mut cmd: std::process::Command) -> (Proc, impl FnMut() -> String) {
    let mut srv = Proc(
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut out = std::io::BufReader::new(srv.0.stdout.take().unwrap());
    let next = move || {
        let mut l = String::new();
        std::io::BufRead::read_line(&mut out, &mut l).unwrap();
        l.trim().to_string()
    };
    (srv, next)
}

#[test]
fn addresses_a_service_sees_in_every_family() {
    let h = Host::start();
    // A dual-stack IPv6 listener, a UDP socket and a TCP client socket bound
    // to the VIP itself: each works, and getsockname() shows the VIP.
    let code = "import socket\n\
        l=socket.socket(socket.AF_INET6); l.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n\
        l.bind(('::',8000)); l.listen(8); print('listener', l.getsockname()[:2])\n\
        u=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('10.1.0.1',5353)); print('udp', u.getsockname())\n\
        t=socket.socket(); t.bind(('10.1.0.1',0)); a=t.getsockname(); print('tcp0', a[0], a[1] > 0)\n\
        print('ready', flush=True)\n\
        c,_=l.accept(); print('accepted', c.getsockname()[:2], flush=True)\n";
    let (_srv, mut next) = python_service(&h, code);
    let lines: Vec<String> = (0..4).map(|_| next()).collect();
    assert_eq!(
        lines,
        [
            "listener ('::', 8000)",
            "udp ('10.1.0.1', 5353)",
            "tcp0 10.1.0.1 True",
            "ready"
        ]
    );
    h.wait_backends("10.1.0.1:8000", 1);
    let cc = c_prog("connect_check", &[]);
    let o = run(&mut h.trace(&[], &cc, &["10.1.0.1", "8000"]));
    assert!(stdout(&o).contains("result=ok"), "{}", stdout(&o));
    // The accepted socket is IPv6: its local address is the VIP, IPv4-mapped.
    assert_eq!(next(), "accepted ('::ffff:10.1.0.1', 8000)");
}

#[test]
fn names_resolve_for_go_busybox_and_glibc() {
    let h = Host::start();
    let _web = h.web(&["--ip", "10.1.0.1", "--name", "web"], 8000, "hello");
    h.wait_backends("10.1.0.1:8000", 1);

    let o = h.curl(&[], "http://web:8000/");
    assert_eq!(stdout(&o), "hello", "{o:?}");
    let o = h.curl(&[], "http://web.appswitch.internal:8000/");
    assert_eq!(stdout(&o), "hello", "{o:?}");

    let go = go_prog();
    let o = run(&mut h.trace(&[], &go, &["-url", "http://web:8000/"]));
    assert_eq!(stdout(&o).trim(), "hello", "{o:?}");

    let bb = require("busybox");
    let o = run(&mut h.trace(&[], &bb, &["wget", "-q", "-O", "-", "http://web:8000/"]));
    assert_eq!(stdout(&o), "hello", "{o:?}");

    // An unknown name fails as it does untraced (the host's resolvers are
    // unreachable from this namespace either way).
    let curl = require("curl");
    let url = "http://nosuch-name-xyz:8000/";
    let untraced = run(h.ns.cmd(&curl).args(["-sS", "--max-time", "10", url]));
    let traced = h.curl(&[], url);
    assert_eq!(untraced.status.code(), Some(6), "{untraced:?}");
    assert_eq!(traced.status.code(), untraced.status.code(), "{traced:?}");
    let untraced = run(h.ns.cmd(&go).args(["-url", url]));
    let traced = run(&mut h.trace(&[], &go, &["-url", url]));
    assert_eq!(traced.status.code(), untraced.status.code());
    assert!(
        stdout(&traced).contains("lookup nosuch-name-xyz"),
        "{}",
        stdout(&traced)
    );

    // The host's /etc/resolv.conf was not touched.
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    assert!(!host.contains("appswitch"), "{host}");
}

#[test]
fn labels_decide_which_backends_a_client_reaches() {
    let h = Host::start();
    let _test = h.web(&["--ip", "10.1.0.2", "--labels", "role=test"], 8000, "test");
    let _prod = h.web(&["--ip", "10.1.0.3", "--labels", "role=prod"], 8000, "prod");
    h.wait_backends("10.1.0.2:8000", 1);
    h.wait_backends("10.1.0.3:8000", 1);
    let me = ["--labels", "role=test"];
    let o = h.curl(&me, "http://10.1.0.2:8000/");
    assert_eq!(stdout(&o), "test", "{o:?}");
    let cc = c_prog("connect_check", &[]);
    let o = run(&mut h.trace(&me, &cc, &["10.1.0.3", "8000"]));
    assert!(stdout(&o).contains("errno=ECONNREFUSED"), "{}", stdout(&o));
    // A client without labels reaches neither.
    let o = run(&mut h.trace(&[], &cc, &["10.1.0.2", "8000"]));
    assert!(stdout(&o).contains("errno=ECONNREFUSED"), "{}", stdout(&o));
}

#[test]
fn static_services_change_under_a_running_client() {
    let h = Host::start();
    // An untraced server in the namespace, on a port the kernel picks.
    let (_srv, port) = h.ns.banner_server("127.0.0.1", "static");

    // One traced client for the whole test: it connects whenever told to.
    let (_client, mut ask) = running_client(&h, "10.1.0.9", 80);
    assert_eq!(ask(), "ENETUNREACH");
    std::fs::write(
        h.mnt.join("services"),
        format!("add db 10.1.0.9:80 -> 127.0.0.1:{port}\n"),
    )
    .unwrap();
    wait_until("the client to reach db", Duration::from_secs(5), || {
        ask() == "static"
    });
    assert!(
        h.services().contains("db 10.1.0.9:80 -> 127.0.0.1:"),
        "{}",
        h.services()
    );
    std::fs::write(h.mnt.join("services"), "del db\n").unwrap();
    wait_until("the client to lose db", Duration::from_secs(5), || {
        ask() == "ENETUNREACH"
    });
}

#[test]
fn expose_publishes_on_a_host_port() {
    let h = Host::start();
    let _web = h.web(
        &["--ip", "10.1.0.1", "--expose", "8000:18000"],
        8000,
        "exposed",
    );
    h.wait_backends("10.1.0.1:8000", 1);
    let curl = require("curl");
    // Untraced, on the host's port.
    let o = run(h
        .ns
        .cmd(&curl)
        .args(["-sS", "--max-time", "5", "http://127.0.0.1:18000/"]));
    assert_eq!(stdout(&o), "exposed", "{o:?}");
    // Traced, through the VIP.
    let o = h.curl(&[], "http://10.1.0.1:8000/");
    assert_eq!(stdout(&o), "exposed", "{o:?}");
}

#[test]
fn a_service_sees_its_clients_virtual_ips() {
    let h = Host::start();
    // accept()'s address and getpeername() of each accepted connection.
    let code = "import socket\n\
        l=socket.socket(); l.bind(('0.0.0.0',8000)); l.listen(8); print('ready', flush=True)\n\
        while True:\n\
        \x20   c,a=l.accept(); print(a[0], c.getpeername()[0], a[1] == c.getpeername()[1], flush=True); c.close()\n";
    let (_srv, mut next) = python_service(&h, code);
    assert_eq!(next(), "ready");
    h.wait_backends("10.1.0.1:8000", 1);
    let cc = c_prog("connect_check", &[]);
    // A client with a virtual IP: the server sees that address.
    let o = run(&mut h.trace(&["--ip", "10.1.0.7"], &cc, &["10.1.0.1", "8000"]));
    assert!(stdout(&o).contains("result=ok"), "{}", stdout(&o));
    assert_eq!(next(), "10.1.0.7 10.1.0.7 True");
    // A client without one: its real address, as untraced.
    let o = run(&mut h.trace(&[], &cc, &["10.1.0.1", "8000"]));
    assert!(stdout(&o).contains("result=ok"), "{}", stdout(&o));
    assert_eq!(next(), "127.0.0.1 127.0.0.1 True");
}

#[test]
fn rules_can_name_traced_services() {
    let h = Host::start();
    std::fs::write(h.file("policy"), "deny connect web errno=EHOSTUNREACH\n").unwrap();
    // A client running before the service exists: the rule starts to match
    // when the service appears.
    let (_client, mut ask) = running_client(&h, "10.1.0.1", 8000);
    assert_eq!(ask(), "ENETUNREACH");
    let _web = h.web(&["--ip", "10.1.0.1", "--name", "web"], 8000, "A");
    h.wait_backends("10.1.0.1:8000", 1);
    wait_until(
        "the rule to match web's VIP",
        Duration::from_secs(5),
        || ask() == "EHOSTUNREACH",
    );
    let cc = c_prog("connect_check", &[]);
    let o = run(&mut h.trace(&[], &cc, &["10.1.0.1", "8000"]));
    assert!(stdout(&o).contains("errno=EHOSTUNREACH"), "{}", stdout(&o));
    // Another service is not affected.
    let _api = h.web(&["--ip", "10.1.0.2", "--name", "api"], 8000, "B");
    h.wait_backends("10.1.0.2:8000", 1);
    let o = h.curl(&[], "http://api:8000/");
    assert_eq!(stdout(&o), "B", "{o:?}");
}

#[test]
fn a_small_accept_buffer_is_not_overrun() {
    let h = Host::start();
    let prog = c_prog("accept_small", &[]);
    let (_srv, mut next) = lines(h.trace(&["--ip", "10.1.0.1"], &prog, &["8000"]));
    assert_eq!(next(), "ready");
    h.wait_backends("10.1.0.1:8000", 1);
    // The client has a VIP, so accept's address is replaced: with a 16-byte
    // buffer on an IPv6 socket the kernel's rules hold (copy 16, report 28).
    let cc = c_prog("connect_check", &[]);
    let o = run(&mut h.trace(&["--ip", "10.1.0.7"], &cc, &["10.1.0.1", "8000"]));
    assert!(stdout(&o).contains("result=ok"), "{}", stdout(&o));
    assert_eq!(
        next(),
        format!("len=28 family={} canary=intact", libc::AF_INET6)
    );
    assert_eq!(next(), "peer=::ffff:10.1.0.7");
}

#[test]
fn real_ports_come_from_a_configured_range() {
    let h = Host::new(
        common::netns::Netns::new(),
        "[services]\nports = \"45000-45001\"\n",
        &[],
    );
    // Two backends of a two-port range: the second skips the port the first holds.
    let _a = h.web(&["--ip", "10.1.0.1"], 8000, "A");
    h.wait_backends("10.1.0.1:8000", 1);
    let _b = h.web(&["--ip", "10.1.0.1"], 8000, "B");
    h.wait_backends("10.1.0.1:8000", 2);
    let mut ports: Vec<String> = h
        .backends("10.1.0.1:8000")
        .iter()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect();
    ports.sort();
    assert_eq!(ports, ["127.0.0.1:45000", "127.0.0.1:45001"]);
    let bodies: Vec<String> = (0..2)
        .map(|_| stdout(&h.curl(&[], "http://10.1.0.1:8000/")))
        .collect();
    assert!(
        bodies.contains(&"A".into()) && bodies.contains(&"B".into()),
        "{bodies:?}"
    );
}

#[test]
fn ip_without_a_daemon_is_an_error_before_the_program_starts() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let touch = format!("touch {}", marker.display());
    // --no-daemon, and a config whose daemon socket does not exist.
    let config = daemon_config(dir.path());
    for opts in [
        vec!["--no-daemon", "--ip", "10.1.0.1"],
        vec![
            "--config",
            config.to_str().unwrap(),
            "--ip",
            "10.1.0.1",
            "--name",
            "web",
        ],
    ] {
        let o = run(std::process::Command::new(appswitch())
            .arg("trace")
            .args(&opts)
            .args(["--", "sh", "-c", &touch]));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{opts:?}: {err}");
        assert!(
            err.contains("--ip 10.1.0.1") && err.contains("daemon"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "one clear line: {err}");
        assert!(!marker.exists(), "{opts:?}: the program must not start");
    }
}

#[test]
fn a_user_who_cannot_join_the_daemon_is_told_why() {
    let h = Host::start();
    let setpriv = require("setpriv");
    // `trace [opts] -- true` as nobody.
    let as_nobody = |opts: &[&str]| {
        run(h
            .ns
            .cmd(&setpriv)
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(appswitch())
            .args(["trace", "--config", h.config.to_str().unwrap()])
            .args(opts)
            .args(["--", "true"]))
    };
    // The daemon's socket is root's (0600): nobody cannot use it.
    let o = as_nobody(&[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "the program still runs: {err}");
    assert!(err.contains("permission denied"), "{err}");
    assert_eq!(err.lines().count(), 1, "said once, in one line: {err}");
    // With --ip it is an error, before the program starts.
    let o = as_nobody(&["--ip", "10.1.0.1"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
}

/// A traced server on port 8000 answering NAME: `v4` (AF_INET), `dual`
/// (AF_INET6, V6ONLY off) or `v6only` (AF_INET6, V6ONLY on, as redis,
/// memcached and nginx's `listen [::]:80` do).
fn family_server(h: &Host, ip: &str, kind: &str) -> Proc {
    let code = format!(
        "import socket\n\
         k='{kind}'\n\
         l=socket.socket(socket.AF_INET if k=='v4' else socket.AF_INET6)\n\
         if k!='v4': l.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if k=='v6only' else 0)\n\
         l.bind(('0.0.0.0' if k=='v4' else '::', 8000)); l.listen(8)\n\
         print(l.getsockname()[:2], flush=True)\n\
         while True:\n    c,_=l.accept(); c.sendall(k.encode()); c.close()\n"
    );
    let mut p = Proc(
        h.trace(&["--ip", ip], "python3", &["-c", &code])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let line = p.first_line();
    let want = if kind == "v4" {
        "('0.0.0.0', 8000)"
    } else {
        "('::', 8000)"
    };
    assert_eq!(
        line.trim(),
        want,
        "{kind}: bind and getsockname as untraced"
    );
    p
}

/// What a traced client of `family` (4 or 6) reads from ADDR:8000, or its errno.
fn family_client(h: &Host, family: u8, addr: &str, n: usize) -> Vec<String> {
    let code = format!(
        "import socket,errno\n\
         for i in range({n}):\n\
         \x20   s=socket.socket(socket.AF_INET{f}); s.settimeout(5)\n\
         \x20   try: s.connect(('{addr}',8000)); print(s.recv(16).decode(), flush=True)\n\
         \x20   except OSError as e: print(errno.errorcode.get(e.errno,'timeout'), flush=True)\n",
        f = if family == 6 { "6" } else { "" }
    );
    stdout(&run(&mut h.trace(&[], "python3", &["-c", &code])))
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn listeners_of_every_family_serve_through_ipv4_and_ipv6_vips() {
    let h = Host::start();
    // An IPv6-only listener alone: IPv6 clients reach it, through the IPv4
    // VIP (v4-mapped) and an IPv6 VIP; an IPv4 client cannot (as untraced,
    // an IPv4 socket cannot reach an IPv6-only one): refused.
    let _v6 = family_server(&h, "10.1.0.1", "v6only");
    h.wait_backends("10.1.0.1:8000", 1);
    assert_eq!(family_client(&h, 6, "::ffff:10.1.0.1", 1), ["v6only"]);
    assert_eq!(family_client(&h, 4, "10.1.0.1", 1), ["ECONNREFUSED"]);
    // With an IPv4 listener beside it (redis binds both): IPv4 clients go to
    // it, IPv6 clients to either.
    let _v4 = family_server(&h, "10.1.0.1", "v4");
    h.wait_backends("10.1.0.1:8000", 2);
    assert_eq!(family_client(&h, 4, "10.1.0.1", 4), ["v4"; 4]);
    let six = family_client(&h, 6, "::ffff:10.1.0.1", 4);
    assert!(
        six.iter().any(|s| s == "v6only") && six.iter().any(|s| s == "v4"),
        "{six:?}"
    );
    // A dual-stack listener takes both families.
    let _dual = family_server(&h, "10.1.0.2", "dual");
    h.wait_backends("10.1.0.2:8000", 1);
    assert_eq!(family_client(&h, 4, "10.1.0.2", 1), ["dual"]);
    assert_eq!(family_client(&h, 6, "::ffff:10.1.0.2", 1), ["dual"]);
    // An IPv6 VIP.
    let _v6vip = family_server(&h, "fd00::7", "v6only");
    h.wait_backends("[fd00::7]:8000", 1);
    assert_eq!(family_client(&h, 6, "fd00::7", 2), ["v6only"; 2]);
}

#[test]
fn a_name_taken_by_another_vip_is_refused_before_the_program_starts() {
    let h = Host::start();
    let _web = h.web(&["--ip", "10.1.0.1", "--name", "web"], 8000, "A");
    h.wait_backends("10.1.0.1:8000", 1);
    let marker = h.dir.path().join("ran");
    let o = run(&mut h.trace(
        &["--ip", "10.1.0.2", "--name", "web"],
        "sh",
        &["-c", &format!("touch {}", marker.display())],
    ));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--name web") && err.contains("10.1.0.1"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!marker.exists(), "the program must not start");
    // DNS still gives one address, the first program's.
    let o = h.curl(&[], "http://web:8000/");
    assert_eq!(stdout(&o), "A");
    // The same name on the same VIP is a second backend, as before.
    let _b = h.web(&["--ip", "10.1.0.1", "--name", "web"], 8000, "B");
    h.wait_backends("10.1.0.1:8000", 2);
}

#[test]
fn del_works_for_every_service_listed() {
    let h = Host::start();
    let _web = h.web(&["--ip", "10.1.0.1", "--name", "web"], 8000, "A");
    h.wait_backends("10.1.0.1:8000", 1);
    let (_srv, port) = h.ns.banner_server("127.0.0.1", "static");
    std::fs::write(
        h.file("services"),
        format!("add db 10.1.0.9:80 -> 127.0.0.1:{port}\n"),
    )
    .unwrap();
    assert!(h.services().contains("db 10.1.0.9:80"));
    // A traced service and a static one, in one write.
    std::fs::write(h.file("services"), "del web\ndel db\n").unwrap();
    let s = h.services();
    assert!(!s.contains("10.1.0.1:8000") && !s.contains("db "), "{s}");
    let cc = c_prog("connect_check", &[]);
    let o = run(&mut h.trace(&[], &cc, &["10.1.0.1", "8000"]));
    assert!(stdout(&o).contains("errno=ECONNREFUSED"), "{}", stdout(&o));
    // A name that is not listed is still an error.
    assert!(std::fs::write(h.file("services"), "del nosuch\n").is_err());
}

#[test]
fn connections_name_their_service_and_count_payload_bytes() {
    let h = Host::start();
    let _web = h.web(&["--ip", "10.1.0.1", "--name", "web"], 8000, "A");
    h.wait_backends("10.1.0.1:8000", 1);
    // A client that connects through the VIP and stays idle.
    let code = "import socket,sys\n\
        s=socket.create_connection(('10.1.0.1',8000)); print(s.getsockname()[1], flush=True)\n\
        sys.stdin.readline()\n";
    let mut c = Proc(
        h.trace(&[], "python3", &["-c", code])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut port = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(c.0.stdout.take().unwrap()),
        &mut port,
    )
    .unwrap();
    let port = port.trim().to_string();
    let mut rows = Vec::new();
    wait_until("both ends listed", Duration::from_secs(5), || {
        let all = std::fs::read_to_string(h.file("connections")).unwrap();
        rows = all
            .lines()
            .filter(|l| l.contains(&format!(":{port} ")))
            .map(str::to_string)
            .collect();
        rows.len() == 2
    });
    for r in &rows {
        assert!(r.contains("service=web"), "{r}");
        assert!(
            r.contains("bytes_in=0 bytes_out=0"),
            "an idle connection: {r}"
        );
    }
    // stats: live counts by their names, cumulative ones as *_total.
    let stats = std::fs::read_to_string(h.file("stats")).unwrap();
    let key = |k: &str| {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} in {stats}"))
            .parse::<u64>()
            .unwrap()
    };
    assert_eq!(key("apps"), 2, "the server and the client run: {stats}");
    assert!(key("connections") >= 2, "{stats}");
    assert!(key("calls_total") >= 1, "{stats}");
    for k in ["denied_total", "rewritten_total"] {
        key(k);
    }
    assert!(!stats.contains("\ncalls="), "{stats}");
    drop(c);
}

#[test]
fn app_info_shows_a_live_process_and_current_counters() {
    let h = Host::start();
    // The first process exits at once; its child runs on (as a daemonizing
    // server does), makes one connect attempt after a line on stdin, and
    // ends after another.
    let cc = c_prog("connect_check", &[]);
    let code = format!(
        "exec 3<&0; (read x <&3; {} 10.1.0.99 80 >/dev/null; read y <&3) & exit 0",
        cc.display()
    );
    let mut t = Proc(
        h.trace(&[], "sh", &["-c", &code])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let info = || app_info(&h, None);
    let field = info_field;
    wait_until("a live process in info", Duration::from_secs(5), || {
        let i = info();
        let pid = field(&i, "pid");
        pid.parse::<i32>().is_ok_and(|p| {
            std::path::Path::new(&format!("/proc/{p}")).exists() && field(&i, "processes") == "1"
        })
    });
    let calls = || field(&info(), "calls_total").parse::<u64>().unwrap_or(0);
    let before = calls();
    use std::io::Write;
    writeln!(t.0.stdin.as_mut().unwrap()).unwrap();
    // Current when read: within a fraction of a second, while the program runs.
    wait_until("the connect to be counted", Duration::from_secs(2), || {
        calls() > before
    });
    writeln!(t.0.stdin.as_mut().unwrap()).unwrap();
    assert_eq!(t.wait_timeout(Duration::from_secs(10)), Some(0));
}

/// Loopback VIPs (issue 11): a client whose VIP is an IPv4 loopback address
/// connects from it (its socket is bound to it first), so the server sees
/// the VIP from the kernel, and a server with such a VIP, when no program
/// has a VIP that cannot be a source, has no accept() trapped at all. A
/// client that bound its socket itself is seen at the address it bound.
#[test]
fn loopback_vips_are_real_sources_and_accepts_do_not_stop() {
    let h = Host::start();
    let code = "import socket,sys,os\n\
        l=socket.socket(); l.bind(('0.0.0.0',8000)); l.listen(8); print('ready', flush=True)\n\
        for i in range(5):\n\
        \x20   fd,a=l._accept(); print(a[0], flush=True); os.close(fd)\n\
        sys.stdin.readline(); l.getsockname(); print('named', flush=True); sys.stdin.readline()\n";
    let (mut srv, mut next) = lines(h.trace(&["--ip", "127.88.0.1"], "python3", &["-c", code]));
    assert_eq!(next(), "ready");
    h.wait_backends("127.88.0.1:8000", 1);
    let pid = common::netns::tracee(&srv);
    let info = || app_info(&h, Some(pid));
    let calls = || {
        info_field(&info(), "calls_total")
            .parse::<u64>()
            .unwrap_or(0)
    };
    // The counters reach the daemon every 100 ms or so: the count once it
    // has stopped moving (the server waits for its clients).
    let settled = || {
        let mut last = calls();
        for _ in 0..40 {
            std::thread::sleep(Duration::from_millis(250));
            let now = calls();
            if now == last && now > 0 {
                return now;
            }
            last = now;
        }
        panic!("calls_total kept moving: {}", info());
    };
    let before = settled();
    // A client with a loopback VIP, through the service's VIP: the server
    // sees the VIP as its peer, and the client its VIP as its address.
    let code = "import socket\n\
        s=socket.create_connection(('127.88.0.1',8000)); print(s.getsockname()[0])\n";
    let o = run(&mut h.trace(&["--ip", "127.88.0.7"], "python3", &["-c", code]));
    assert_eq!(stdout(&o).trim(), "127.88.0.7", "{o:?}");
    assert_eq!(next(), "127.88.0.7");
    // A client without a VIP: its real address, as untraced.
    let o = run(&mut h.trace(&[], "python3", &["-c", code]));
    assert_eq!(stdout(&o).trim(), "127.0.0.1", "{o:?}");
    assert_eq!(next(), "127.0.0.1");
    // curl (non-blocking connect, then poll) with a loopback VIP: the same.
    let curl = require("curl");
    let _ = run(&mut h.trace(
        &["--ip", "127.88.0.9"],
        &curl,
        &["-s", "-m", "5", "http://127.88.0.1:8000/"],
    ));
    assert_eq!(next(), "127.88.0.9");
    // A client that binds its VIP itself (Python's source_address): that.
    let own = "import socket\n\
        s=socket.create_connection(('127.88.0.1',8000), source_address=('127.88.0.7',0)); print(s.getsockname()[0])\n";
    let o = run(&mut h.trace(&["--ip", "127.88.0.7"], "python3", &["-c", own]));
    assert_eq!(stdout(&o).trim(), "127.88.0.7", "{o:?}");
    assert_eq!(next(), "127.88.0.7");
    // A client with a VIP that bound its socket elsewhere: what it bound.
    let code = "import socket\n\
        s=socket.socket(); s.bind(('127.0.0.5',0)); s.connect(('127.88.0.1',8000)); print(s.getsockname()[0])\n";
    let o = run(&mut h.trace(&["--ip", "127.88.0.8"], "python3", &["-c", code]));
    assert_eq!(stdout(&o).trim(), "127.0.0.5", "{o:?}");
    assert_eq!(next(), "127.0.0.5");
    // None of the five accepts stopped: the listener's getsockname, now,
    // is the only call counted since.
    use std::io::Write;
    writeln!(srv.0.stdin.as_mut().unwrap()).unwrap();
    assert_eq!(next(), "named");
    wait_until(
        "the getsockname to be counted",
        Duration::from_secs(5),
        || calls() > before,
    );
    assert_eq!(settled(), before + 1, "before {before}: {}", info());
    writeln!(srv.0.stdin.as_mut().unwrap()).unwrap();
}

/// A loopback-VIP client whose socket is IPv6 (dual-stack) reaches a
/// service that listens on [::] only (its backend is [::1]): no IPv4 source
/// is forced on it. (Its VIP cannot be the source of an IPv6 connection, and
/// the service's accept() is not trapped: the service sees ::1, the limit
/// docs/SERVICES.md states.)
#[test]
fn a_loopback_vip_client_reaches_an_ipv6_only_service() {
    let h = Host::start();
    let code = "import socket\n\
        l=socket.socket(socket.AF_INET6); l.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)\n\
        l.bind(('::',8000)); l.listen(8); print('ready', flush=True)\n\
        c,a=l.accept(); print(a[0], flush=True)\n";
    let (_srv, mut next) = lines(h.trace(&["--ip", "127.88.0.1"], "python3", &["-c", code]));
    assert_eq!(next(), "ready");
    h.wait_backends("127.88.0.1:8000", 1);
    let client = "import socket\n\
        s=socket.socket(socket.AF_INET6); s.connect(('::ffff:127.88.0.1',8000)); print('connected')\n";
    let o = run(&mut h.trace(&["--ip", "127.88.0.7"], "python3", &["-c", client]));
    assert_eq!(stdout(&o).trim(), "connected", "{o:?}");
    assert_eq!(next(), "::1");
}

/// With `[services] bind` off loopback (as in cluster mode) clients cannot
/// carry a loopback VIP as their source: they leave records, and a service
/// with a loopback VIP traps its accept() to show them.
#[test]
fn loopback_vips_with_services_bound_elsewhere_still_show_the_client_vip() {
    let ns = common::netns::Netns::new();
    ns.ip(&["addr", "add", "10.5.0.1/32", "dev", "lo"]);
    let h = Host::new(ns, "[services]\nbind = \"10.5.0.1\"\n", &[]);
    let code = "import socket\n\
        l=socket.socket(); l.bind(('0.0.0.0',8000)); l.listen(8); print('ready', flush=True)\n\
        for i in range(2):\n\
        \x20   c,a=l.accept(); print(a[0], flush=True); c.close()\n";
    let (_srv, mut next) = lines(h.trace(&["--ip", "127.88.0.1"], "python3", &["-c", code]));
    assert_eq!(next(), "ready");
    h.wait_backends("127.88.0.1:8000", 1);
    let client = "import socket\n\
        s=socket.create_connection(('127.88.0.1',8000)); print('connected')\n";
    let o = run(&mut h.trace(&["--ip", "127.88.0.7"], "python3", &["-c", client]));
    assert_eq!(stdout(&o).trim(), "connected", "{o:?}");
    assert_eq!(next(), "127.88.0.7");
    // Without a VIP: its real address.
    let o = run(&mut h.trace(&[], "python3", &["-c", client]));
    assert_eq!(stdout(&o).trim(), "connected", "{o:?}");
    assert_eq!(next(), "10.5.0.1");
}
