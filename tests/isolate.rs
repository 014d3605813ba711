//! Issue 16: isolation (`trace --isolate`). The program runs in a network
//! namespace of its own with only loopback up (and its `--ip` VIP on
//! loopback); what it reaches outside goes through a socket appswitch makes
//! in its own namespace and puts in the program's descriptor table in place
//! of the program's (SECCOMP_IOCTL_NOTIF_ADDFD), after which the program
//! talks to the kernel directly.
//!
//! User notification only: ptrace cannot put a descriptor into the
//! program, so every trace here pins `--backend unotify` (the flag wins over
//! APPSWITCH_BACKEND, which scripts/test.sh sets to ptrace for its second
//! pass), and `--isolate` under ptrace is a usage error, tested as such.
//!
//! Every test runs in a network namespace it creates (tests/common/netns.rs)
//! with a daemon in it. That namespace plays the host: its `lo` also carries
//! HOST (10.200.0.1/32), a non-loopback host address, so neither it nor the
//! VIPs (10.77.0.x) exist anywhere but there. Untraced servers and clients
//! run in it as the host's own programs; the traced programs start there
//! too, and an isolated one gets a namespace of its own below it.
//!
//! The rule the tests hold isolation to: loopback (127.0.0.0/8, ::1) and the
//! program's own addresses (its `--ip` VIP) are *inside*, in the program's
//! namespace; every other destination is *outside*: a non-loopback host
//! address, and whatever the handler routed (a service's VIP, a redirect,
//! the daemon's DNS responder). So two processes of one isolated program
//! talk over 127.0.0.1 as in a container, and a listener on the host's
//! 127.0.0.1 is out of its reach: host services are reached by VIP, by name
//! or by a host address.

mod common;
use common::netns::{Host, Netns};
use common::*;
use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The test namespace's non-loopback "host" address.
const HOST: &str = "10.200.0.1";
/// A traced, not isolated program: the backend pinned.
const UNOTIFY: [&str; 2] = ["--backend", "unotify"];
/// An isolated program.
const ISO: [&str; 3] = ["--backend", "unotify", "--isolate"];

/// A namespace with a daemon and HOST on its loopback.
fn host() -> Host {
    let h = Host::start();
    h.ns.ip(&["addr", "add", &format!("{HOST}/32"), "dev", "lo"]);
    h
}

/// `opts` followed by `more`.
fn with<'a>(opts: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
    opts.iter().chain(more).copied().collect()
}

/// `prog args` run isolated in `h`'s namespace (with `extra` options).
fn isolated(h: &Host, extra: &[&str], prog: impl AsRef<std::path::Path>, args: &[&str]) -> Output {
    run(&mut h.trace(&with(&ISO, extra), prog, args))
}

/// `f` run on a thread of ours that has entered `ns`: a socket it makes
/// lives in that namespace for good.
fn in_ns<T: Send>(ns: &Netns, f: impl FnOnce() -> T + Send) -> T {
    let file = std::fs::File::open(format!("/run/netns/{}", ns.name)).expect("open the netns");
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on a namespace descriptor, for this thread only.
            let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("the thread in the namespace")
    })
}

/// A TCP listener of the host's (in the test namespace) that accepts
/// nothing by itself: connections wait in its queue to be counted.
struct Counted {
    l: TcpListener,
    pub port: u16,
}

impl Counted {
    fn start(ns: &Netns, ip: &str) -> Counted {
        let l = in_ns(ns, || {
            TcpListener::bind((ip, 0)).expect("bind the listener")
        });
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        Counted { l, port }
    }

    /// Connections that reached it since the last count. Exact once the
    /// clients have exited: a connect over loopback completes its handshake
    /// (the connection is queued here) before it returns.
    fn count(&self) -> usize {
        (0..10_000).take_while(|_| self.l.accept().is_ok()).count()
    }
}

/// A UDP socket of the host's that counts the datagrams it receives
/// (loopback delivery completes inside the sender's call).
struct UdpCounted {
    s: UdpSocket,
    pub port: u16,
}

impl UdpCounted {
    fn start(ns: &Netns, ip: &str) -> UdpCounted {
        let s = in_ns(ns, || UdpSocket::bind((ip, 0)).expect("bind udp"));
        s.set_nonblocking(true).unwrap();
        let port = s.local_addr().unwrap().port();
        UdpCounted { s, port }
    }

    fn count(&self) -> usize {
        let mut buf = [0u8; 2048];
        (0..10_000)
            .take_while(|_| self.s.recv(&mut buf).is_ok())
            .count()
    }
}

/// An untraced `python3 -c CODE ARGS` in the test namespace that prints its
/// port on its first line: the process and that port.
fn host_python(h: &Host, code: &str, args: &[&str]) -> (Proc, u16) {
    let mut p = Proc(
        h.ns.cmd(require("python3"))
            .arg("-c")
            .arg(code)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3"),
    );
    let line = p.first_line();
    let port = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("a port, not {line:?}"));
    (p, port)
}

/// An HTTP server of the host's on HOST (port chosen by the kernel) serving
/// `body` as its index (the directory lives as long as `h`).
fn host_web(h: &Host, body: &str) -> (Proc, u16) {
    let dir = h.dir.path().join(format!("host-www-{body}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), body).unwrap();
    let code = "import functools,http.server,sys\n\
        class H(http.server.SimpleHTTPRequestHandler): log_message=lambda self,*a: None\n\
        s=http.server.ThreadingHTTPServer((sys.argv[1],0),functools.partial(H,directory=sys.argv[2]))\n\
        print(s.server_address[1],flush=True)\n\
        s.serve_forever()\n";
    host_python(h, code, &[HOST, dir.to_str().unwrap()])
}

/// A program's key=value lines.
fn keys(o: &Output) -> BTreeMap<String, String> {
    stdout(o)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// ---------------------------------------------------------------------
// 1. Clients of every kind reach the host and services from inside.
// ---------------------------------------------------------------------

/// How a client fetches a URL: the program and its arguments.
type Fetch = fn(&str) -> (std::path::PathBuf, Vec<String>);

/// An isolated client (`fetch`) reaches an HTTP server on the host's
/// non-loopback address, and a traced `--ip --name` service by VIP and by
/// name (the daemon's DNS responder, reached outside).
fn reaches_host_and_service(fetch: Fetch) {
    let h = host();
    let (_host_srv, port) = host_web(&h, "host");
    let _svc = h.web(
        &with(&UNOTIFY, &["--ip", "10.77.0.5", "--name", "web"]),
        8000,
        "service",
    );
    h.wait_backends("10.77.0.5:8000", 1);
    for (url, want) in [
        (format!("http://{HOST}:{port}/"), "host"),
        ("http://10.77.0.5:8000/".to_string(), "service"),
        ("http://web:8000/".to_string(), "service"),
        ("http://web.appswitch.internal:8000/".to_string(), "service"),
    ] {
        let (prog, args) = fetch(&url);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = isolated(&h, &[], &prog, &args);
        assert_eq!(stdout(&o).trim(), want, "isolated {prog:?} {url}: {o:?}");
        assert!(o.status.success(), "isolated {prog:?} {url}: {o:?}");
    }
}

#[test]
fn isolated_curl_reaches_host_and_services() {
    reaches_host_and_service(|url| {
        let args = ["-sS", "--max-time", "5", url];
        (require("curl"), args.map(String::from).to_vec())
    });
}

#[test]
fn isolated_python_reaches_host_and_services() {
    reaches_host_and_service(|url| {
        let code = "import sys,urllib.request\n\
            print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode(), end='')\n";
        (
            require("python3"),
            vec!["-c".into(), code.into(), url.into()],
        )
    });
}

#[test]
fn isolated_busybox_wget_reaches_host_and_services() {
    reaches_host_and_service(|url| {
        // (No -T: this busybox's wget crashes with it, untraced too.)
        let args = ["wget", "-q", "-O", "-", url];
        (require("busybox"), args.map(String::from).to_vec())
    });
}

#[test]
fn isolated_static_go_reaches_host_and_services() {
    reaches_host_and_service(|url| (go_prog(), vec!["-url".into(), url.into()]));
}

// ---------------------------------------------------------------------
// 2. An isolated server is reached through its VIP and its exposed port.
// ---------------------------------------------------------------------

/// An isolated server with VIP `vip`, name `name`, serving `body` on
/// `port`, exposed on the host's `hostport`: reached by untraced clients on
/// the exposed port (127.0.0.1 and the host address: all interfaces), by
/// traced ones through the VIP and the name, and by isolated ones too.
fn reached_by_everyone(h: &Host, vip: &str, name: &str, port: u16, hostport: u16, body: &str) {
    // Ready: registered with the daemon, and listening on the host's port.
    // (Not wait_backends: its health stays unknown, see
    // an_isolated_backend_is_health_checked.)
    let service = format!("{vip}:{port}");
    wait_until(
        &format!("{service} registered"),
        Duration::from_secs(10),
        || h.backends(&service).len() == 1,
    );
    wait_until("the exposed port", Duration::from_secs(10), || {
        in_ns(&h.ns, || {
            TcpStream::connect(("127.0.0.1", hostport)).is_ok()
        })
    });
    let curl = require("curl");
    for url in [
        format!("http://127.0.0.1:{hostport}/"),
        format!("http://{HOST}:{hostport}/"),
    ] {
        let o = run(h.ns.cmd(&curl).args(["-sS", "--max-time", "5", &url]));
        assert_eq!(stdout(&o), body, "untraced curl {url}: {o:?}");
    }
    for url in [
        format!("http://{vip}:{port}/"),
        format!("http://{name}:{port}/"),
    ] {
        let o = h.curl(&UNOTIFY, &url);
        assert_eq!(stdout(&o), body, "traced curl {url}: {o:?}");
        let o = h.curl(&ISO, &url);
        assert_eq!(stdout(&o), body, "isolated curl {url}: {o:?}");
    }
}

#[test]
fn isolated_python_server_is_reached_by_vip_and_exposed_port() {
    let h = host();
    let opts = [
        "--ip",
        "10.77.0.6",
        "--name",
        "iso",
        "--expose",
        "8081:18081",
    ];
    let _srv = h.web(&with(&ISO, &opts), 8081, "isolated python");
    reached_by_everyone(&h, "10.77.0.6", "iso", 8081, 18081, "isolated python");
}

/// An isolated `busybox httpd -f -p LISTEN` with VIP 10.77.0.7, name bb,
/// port 8082 exposed on 18082, reached by everyone.
fn busybox_httpd(listen: &str) {
    let h = host();
    let root = h.dir.path().join("bb-www");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("index.html"), "isolated busybox").unwrap();
    let opts = [
        "--ip",
        "10.77.0.7",
        "--name",
        "bb",
        "--expose",
        "8082:18082",
    ];
    let args = ["httpd", "-f", "-p", listen, "-h", root.to_str().unwrap()];
    let _srv = Proc(
        h.trace(&with(&ISO, &opts), require("busybox"), &args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    reached_by_everyone(&h, "10.77.0.7", "bb", 8082, 18082, "isolated busybox");
}

/// On an IPv4 wildcard socket.
#[test]
fn isolated_busybox_httpd_ipv4_is_reached_by_vip_and_exposed_port() {
    busybox_httpd("0.0.0.0:8082");
}

/// As busybox httpd listens by default: one dual-stack IPv6 socket on [::]
/// (IPV6_V6ONLY off), which IPv4 clients reach too.
#[test]
fn isolated_busybox_httpd_dual_stack_is_reached_by_vip_and_exposed_port() {
    busybox_httpd("8082");
}

/// A backend's health comes from the kernel's socket tables in the
/// daemon's namespace. An isolated server's listening socket is handed over
/// and lives there: it is checkable like any other, and up while it listens.
#[test]
fn an_isolated_backend_is_health_checked() {
    let h = host();
    let _srv = h.web(&with(&ISO, &["--ip", "10.77.0.8"]), 8083, "checked");
    let registered = || h.backends("10.77.0.8:8083").len() == 1;
    wait_until("the backend", Duration::from_secs(10), registered);
    // The daemon checks health every second or so.
    let up = |b: Vec<String>| b.len() == 1 && b[0].contains("health=up");
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while !up(h.backends("10.77.0.8:8083")) && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let b = h.backends("10.77.0.8:8083");
    assert!(up(b.clone()), "{b:?}");
}

// ---------------------------------------------------------------------
// 3. What escapes the filter finds nothing to talk to.
// ---------------------------------------------------------------------

/// io_uring's operations are made by the kernel, not by system calls the
/// filter sees: on a handed-over socket they would reach appswitch's side
/// unchecked. So under --isolate io_uring_setup is refused (ENOSYS, runtimes
/// fall back to ordinary calls) in every mode, monitor included; the
/// connect reaches nothing.
#[test]
fn io_uring_connect_from_inside_reaches_nothing() {
    let h = host();
    let l = Counted::start(&h.ns, HOST);
    let port = l.port.to_string();
    let p = c_prog("uring_connect", &[]);
    // Untraced, on the host, io_uring really connects (so this can fail).
    let o = run(h.ns.cmd(&p).args([HOST, &port]));
    assert_eq!(
        keys(&o).get("cqe_res").map(String::as_str),
        Some("0"),
        "{o:?}"
    );
    assert_eq!(l.count(), 1);
    for mode in [&[][..], &["--mode", "monitor"][..]] {
        let o = isolated(&h, mode, &p, &[HOST, &port]);
        assert!(stdout(&o).contains("setup_errno=ENOSYS"), "{mode:?}: {o:?}");
    }
    assert_eq!(l.count(), 0, "nothing reached the host's listener");
}

/// h_raw's variants that send a hand-made UDP/IPv4 datagram.
const RAW_IP: [&str; 5] = ["hdrincl", "icmp_hdr", "syscall", "int80", "int80_sock"];

/// Raw IP and packet sockets carry their own destination: no handover may
/// give one a socket outside. Monitor mode lets them be made (a policy
/// would refuse them); what they send stays in the program's namespace.
#[test]
fn raw_sockets_from_inside_reach_nothing() {
    let h = host();
    let udp = UdpCounted::start(&h.ns, HOST);
    let port = udp.port.to_string();
    let probe = c_prog("h_raw", &[]);
    // Untraced, on the host, the raw IP ones reach the listener.
    let o = run(h.ns.cmd(&probe).args([&port, HOST]));
    let r = keys(&o);
    for v in RAW_IP {
        assert_eq!(r[v], "sent", "untraced {v}: {o:?}");
    }
    assert_eq!(udp.count(), RAW_IP.len(), "{o:?}");

    let o = isolated(&h, &["--mode", "monitor"], &probe, &[&port, HOST]);
    let r = keys(&o);
    for v in RAW_IP {
        // Made (not refused); sent nowhere or into the program's own namespace.
        assert!(r[v] == "sent" || r[v].starts_with("send:"), "{v}: {o:?}");
    }
    assert_eq!(udp.count(), 0, "hand-made packets reached the host: {o:?}");
}

// ---------------------------------------------------------------------
// 4. The handed-over socket is the program's socket.
// ---------------------------------------------------------------------

/// iso_opts MODE against a silent listener on HOST: untraced on the host,
/// then isolated; both key=value maps.
fn iso_opts(mode: &str) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let h = host();
    let l = Counted::start(&h.ns, HOST);
    let port = l.port.to_string();
    let p = c_prog("iso_opts", &[]);
    let plain = run(h.ns.cmd(&p).args([mode, HOST, &port]));
    assert!(plain.status.success(), "untraced: {plain:?}");
    let iso = isolated(&h, &[], &p, &[mode, HOST, &port]);
    assert!(iso.status.success(), "isolated: {iso:?}");
    assert_eq!(l.count(), 2, "both connections reached the host's listener");
    (keys(&plain), keys(&iso))
}

/// What differs between the untraced and the isolated run must be only
/// the socket's namespace and the time recv() took.
fn same_but_netns(plain: &BTreeMap<String, String>, iso: &BTreeMap<String, String>) {
    assert_eq!(plain["same_netns"], "yes", "{plain:?}");
    assert_eq!(
        iso["same_netns"], "no",
        "the program's socket lives in appswitch's namespace: {iso:?}"
    );
    let strip = |m: &BTreeMap<String, String>| {
        let mut m = m.clone();
        m.remove("same_netns");
        m.remove("recv_ms");
        m
    };
    assert_eq!(strip(iso), strip(plain), "isolated vs untraced");
    assert!(!iso.keys().any(|k| k.starts_with("set_")), "{iso:?}");
}

#[test]
fn options_set_before_connect_hold_on_the_handed_over_socket() {
    let (plain, iso) = iso_opts("opts");
    same_but_netns(&plain, &iso);
    let want = [
        ("connect", "ok"),
        ("nodelay", "1"),
        ("keepalive", "1"),
        ("keepidle", "77"),
        ("keepintvl", "13"),
        ("keepcnt", "4"),
        ("user_timeout", "9000"),
        ("rcvbuf", "131072"),
        ("tos", "16"),
        ("congestion", "reno"),
        ("linger", "1,3"),
        ("rcvtimeo", "0.700000"),
        // The socket's namespace changed: it left from the host address.
        ("local", HOST),
        // SOCK_CLOEXEC kept, blocking kept.
        ("cloexec", "1"),
        ("nonblock", "0"),
        // The silent server: recv waits SO_RCVTIMEO, then gives up.
        ("recv", "EAGAIN"),
    ];
    for (k, v) in want {
        assert_eq!(iso[k], v, "{k}: {iso:?}");
    }
    let waited: u64 = iso["recv_ms"].parse().unwrap();
    assert!(
        (650..3000).contains(&waited),
        "recv timed out after {waited} ms (SO_RCVTIMEO 700 ms)"
    );
}

#[test]
fn non_blocking_connect_and_no_cloexec_hold_on_the_handed_over_socket() {
    let (plain, iso) = iso_opts("nonblock");
    same_but_netns(&plain, &iso);
    let want = [
        ("connect", "EINPROGRESS"),
        ("poll", "POLLOUT"),
        ("so_error", "0"),
        ("cloexec", "0"),
        ("nonblock", "1"),
        ("local", HOST),
        ("recv", "EAGAIN"),
    ];
    for (k, v) in want {
        assert_eq!(iso[k], v, "{k}: {iso:?}");
    }
    let waited: u64 = iso["recv_ms"].parse().unwrap();
    assert!(waited < 500, "a non-blocking recv waited {waited} ms");
}

/// A server of the host's on sys.argv[1], TCP or UDP (sys.argv[2]): tells
/// each client the port it came from.
const PORT_ECHO: &str = r#"import socket, sys
kind = socket.SOCK_STREAM if sys.argv[2] == 'tcp' else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind); s.bind((sys.argv[1], 0))
if kind == socket.SOCK_STREAM: s.listen(8)
print(s.getsockname()[1], flush=True)
while True:
    if kind == socket.SOCK_STREAM:
        c, a = s.accept(); c.sendall(str(a[1]).encode()); c.close()
    else:
        d, a = s.recvfrom(64); s.sendto(str(a[1]).encode(), a)
"#;

/// Binds a UDP socket to port argv[4] and sends to argv[1]:argv[2]; binds a
/// TCP socket to port argv[5] and connects to argv[1]:argv[3]. Prints the
/// source port each server saw.
const BOUND_CLIENT: &str = r#"import socket, sys
h = sys.argv[1]
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(5)
u.bind(('0.0.0.0', int(sys.argv[4]))); u.sendto(b'x', (h, int(sys.argv[2])))
print('udp', u.recv(64).decode())
t = socket.socket(); t.settimeout(5)
t.bind(('0.0.0.0', int(sys.argv[5]))); t.connect((h, int(sys.argv[3])))
print('tcp', t.recv(64).decode())
"#;

/// A program that binds its socket to a port before it connects or sends
/// (a protocol with a fixed source port) leaves from that port: the
/// handed-over socket is bound like the program's.
#[test]
fn a_port_bound_before_connect_or_sendto_is_kept() {
    let h = host();
    let (_udp_srv, udp_port) = host_python(&h, PORT_ECHO, &[HOST, "udp"]);
    let (_tcp_srv, tcp_port) = host_python(&h, PORT_ECHO, &[HOST, "tcp"]);
    let py = require("python3");
    // Each run gets ports free on the host, as the kernel would pick them
    // (fresh ones: the first run's may linger in TIME_WAIT).
    for who in ["untraced", "isolated"] {
        let free_udp = in_ns(&h.ns, || {
            UdpSocket::bind("0.0.0.0:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        });
        let free_tcp = in_ns(&h.ns, || {
            TcpListener::bind("0.0.0.0:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        });
        let ports = [udp_port, tcp_port, free_udp, free_tcp].map(|p| p.to_string());
        let args = [
            "-c",
            BOUND_CLIENT,
            HOST,
            &ports[0],
            &ports[1],
            &ports[2],
            &ports[3],
        ];
        let want = format!("udp {free_udp}\ntcp {free_tcp}\n");
        // Untraced, on the host (so this can fail); then isolated.
        let o = if who == "untraced" {
            run(h.ns.cmd(&py).args(args))
        } else {
            isolated(&h, &[], &py, &args)
        };
        assert_eq!(stdout(&o), want, "{who}: {o:?}");
    }
}

/// An IPv6 client: V6ONLY, traffic class and hop limit set before connect.
const V6_CLIENT: &str = r#"import socket, sys
s = socket.socket(socket.AF_INET6); s.settimeout(5)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, 0x20)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 7)
s.connect((sys.argv[1], int(sys.argv[2])))
g = lambda o: s.getsockopt(socket.IPPROTO_IPV6, o)
print('v6only', g(socket.IPV6_V6ONLY), 'tclass', g(socket.IPV6_TCLASS), 'hops', g(socket.IPV6_UNICAST_HOPS))
print('local', s.getsockname()[0])
"#;

#[test]
fn ipv6_options_hold_on_the_handed_over_socket() {
    let h = host();
    let host6 = "fd00:200::1";
    h.ns.ip(&["addr", "add", &format!("{host6}/128"), "dev", "lo", "nodad"]);
    let l = Counted::start(&h.ns, host6);
    let py = require("python3");
    let port = l.port.to_string();
    let args = ["-c", V6_CLIENT, host6, &port];
    let want = format!("v6only 1 tclass 32 hops 7\nlocal {host6}\n");
    let o = run(h.ns.cmd(&py).args(args));
    assert_eq!(stdout(&o), want, "untraced: {o:?}");
    let o = isolated(&h, &[], &py, &args);
    assert_eq!(stdout(&o), want, "isolated: {o:?}");
    assert_eq!(l.count(), 2);
}

// ---------------------------------------------------------------------
// 5. Inside stays inside.
// ---------------------------------------------------------------------

/// A python3 parent listens on 127.0.0.1; a second python3 process it
/// starts connects there and says hello. Both are the isolated program's.
const TWO_PROCESSES: &str = r#"import socket, subprocess, sys
l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(4)
port = l.getsockname()[1]
child = ("import socket,sys; s=socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=5); "
         "s.sendall(b'hello from the child'); print(s.getsockname()[0], flush=True)")
p = subprocess.Popen([sys.executable, '-c', child, str(port)], stdout=subprocess.PIPE)
l.settimeout(10)
c, peer = l.accept()
c.settimeout(10)
print('got', c.recv(64).decode(), 'from', peer[0])
print('child left from', p.communicate(timeout=10)[0].decode().strip())
"#;

#[test]
fn two_processes_of_an_isolated_program_talk_over_its_loopback() {
    let h = host();
    let o = isolated(&h, &[], require("python3"), &["-c", TWO_PROCESSES]);
    assert_eq!(
        stdout(&o),
        "got hello from the child from 127.0.0.1\nchild left from 127.0.0.1\n",
        "{o:?}"
    );
    assert!(o.status.success(), "{o:?}");
}

/// Connects to sys.argv[1]:sys.argv[2] and says `connected` or the errno.
const CONNECT: &str = r#"import errno, socket, sys
s = socket.socket(); s.settimeout(5)
try:
    s.connect((sys.argv[1], int(sys.argv[2]))); print('connected')
except OSError as e:
    print(errno.errorcode.get(e.errno, e))
"#;

/// The network namespace of a process run by `c`, by its /proc link.
fn netns_of(c: &mut Command) -> String {
    let o = run(c);
    assert!(o.status.success(), "{o:?}");
    stdout(&o).trim().to_string()
}

/// The rule: 127.0.0.0/8 (and ::1) is inside. A connect there is the
/// program's own, in its own namespace, never handed over, so a listener on
/// the host's 127.0.0.1 cannot be reached from inside (connection refused:
/// nobody listens on the program's loopback). Host services are reached by
/// VIP, by name or by a non-loopback host address instead.
#[test]
fn the_hosts_loopback_is_out_of_an_isolated_programs_reach() {
    let h = host();
    // The program runs in a namespace of its own.
    let host_ns = netns_of(h.ns.cmd("readlink").arg("/proc/self/ns/net"));
    let iso_ns = netns_of(&mut h.trace(&ISO, "readlink", &["/proc/self/ns/net"]));
    assert!(iso_ns.starts_with("net:["), "{iso_ns}");
    assert_ne!(iso_ns, host_ns);

    let l = Counted::start(&h.ns, "127.0.0.1");
    let port = l.port.to_string();
    let py = require("python3");
    let connect = ["-c", CONNECT, "127.0.0.1", &port];
    // Untraced and traced (not isolated), the host's own 127.0.0.1 is reached.
    let o = run(h.ns.cmd(&py).args(connect));
    assert_eq!(stdout(&o), "connected\n", "{o:?}");
    let o = run(&mut h.trace(&UNOTIFY, &py, &connect));
    assert_eq!(stdout(&o), "connected\n", "{o:?}");
    assert_eq!(l.count(), 2);
    // Isolated, 127.0.0.1 is the program's own loopback: nobody listens.
    let o = isolated(&h, &[], &py, &connect);
    assert_eq!(stdout(&o), "ECONNREFUSED\n", "{o:?}");
    let curl = require("curl");
    let url = format!("http://127.0.0.1:{port}/");
    let o = isolated(&h, &[], &curl, &["-sS", "--max-time", "5", &url]);
    assert_eq!(o.status.code(), Some(7), "curl: couldn't connect: {o:?}");
    assert_eq!(l.count(), 0, "nothing reached the host's loopback");
}

/// One UDP socket sends to the host address (argv[1]:argv[2]), then to
/// 127.0.0.1:argv[3]; another connects to each in turn and sends. Prints
/// each outcome.
const OUT_THEN_LOOPBACK: &str = r#"import socket, sys
out, lo = (sys.argv[1], int(sys.argv[2])), ('127.0.0.1', int(sys.argv[3]))
def attempt(f):
    try:
        f(); return 'ok'
    except OSError as e:
        return {101: 'ENETUNREACH'}.get(e.errno, str(e.errno))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
r = [attempt(lambda: u.sendto(b'outside', out)), attempt(lambda: u.sendto(b'loopback', lo))]
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
r += [attempt(lambda: c.connect(out)), attempt(lambda: c.send(b'outside'))]
r += [attempt(lambda: c.connect(lo))]
print(' '.join(r))
"#;

/// A datagram socket handed over for an outside destination lives in
/// appswitch's namespace from then on: its loopback would be the host's.
/// So a later datagram (or connect) of it to the program's own addresses
/// is refused with ENETUNREACH (docs/ISOLATION.md), and never reaches the
/// host's 127.0.0.1. (A fresh socket still reaches the program's own
/// loopback: see inside_stays_inside.)
#[test]
fn loopback_stays_inside_on_a_handed_over_datagram_socket() {
    let h = host();
    let outside = UdpCounted::start(&h.ns, HOST);
    let host_lo = UdpCounted::start(&h.ns, "127.0.0.1");
    let py = require("python3");
    let ports = [outside.port, host_lo.port].map(|p| p.to_string());
    let args = ["-c", OUT_THEN_LOOPBACK, HOST, &ports[0], &ports[1]];
    // Untraced, on the host, both listeners get theirs (so this can fail).
    let o = run(h.ns.cmd(&py).args(args));
    assert_eq!(stdout(&o), "ok ok ok ok ok\n", "{o:?}");
    assert_eq!((outside.count(), host_lo.count()), (2, 1));
    let o = isolated(&h, &[], &py, &args);
    assert_eq!(stdout(&o), "ok ENETUNREACH ok ok ENETUNREACH\n", "{o:?}");
    assert_eq!(outside.count(), 2, "the outside datagrams arrived");
    assert_eq!(
        host_lo.count(),
        0,
        "no loopback datagram reached the host's"
    );
}

// ---------------------------------------------------------------------
// 6. Isolation needs user notification.
// ---------------------------------------------------------------------

#[test]
fn isolate_under_ptrace_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let marker_s = marker.to_str().unwrap();
    // By the flag, and by APPSWITCH_BACKEND.
    let mut by_flag = Command::new(appswitch());
    by_flag
        .args(["trace", "--no-daemon", "--isolate"])
        .args(PTRACE);
    let mut by_env = Command::new(appswitch());
    by_env
        .args(["trace", "--no-daemon", "--isolate"])
        .env(BACKEND_ENV, "ptrace");
    for mut c in [by_flag, by_env] {
        let o = run(c.args(["--", "touch", marker_s]));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{o:?}");
        assert!(err.contains("user notification"), "{err}");
        assert!(!marker.exists(), "the program must not run");
    }
}

// ---------------------------------------------------------------------
// 7. Datagrams and names.
// ---------------------------------------------------------------------

/// A UDP echo server of the host's on sys.argv[1]: each datagram comes back
/// prefixed with "echo:".
const UDP_ECHO: &str = r#"import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], 0))
print(s.getsockname()[1], flush=True)
while True:
    d, a = s.recvfrom(2048); s.sendto(b'echo:' + d, a)
"#;

/// An isolated UDP client: sendto/recvfrom on an unconnected socket, then
/// connect/send/recv, then a name through the resolver.
const UDP_CLIENT: &str = r#"import socket, sys
to = (sys.argv[1], int(sys.argv[2]))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
s.sendto(b'one', to)
d, a = s.recvfrom(2048); print('sendto', d.decode(), a == to)
s.sendto(b'two', to)
d, a = s.recvfrom(2048); print('again', d.decode(), a == to)
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(5)
c.connect(to); c.send(b'three')
print('connected', c.recv(2048).decode(), c.getpeername() == to)
print('name', socket.gethostbyname(sys.argv[3]))
"#;

#[test]
fn isolated_udp_reaches_the_host_and_names_resolve() {
    let h = host();
    let (_echo, port) = host_python(&h, UDP_ECHO, &[HOST]);
    // A static service, for its name.
    std::fs::write(
        h.mnt.join("services"),
        format!("add db 10.77.0.9:80 -> {HOST}:{port}\n"),
    )
    .unwrap();
    wait_until("the static service", Duration::from_secs(5), || {
        h.services().contains("db 10.77.0.9:80")
    });
    let py = require("python3");
    let o = isolated(
        &h,
        &[],
        &py,
        &["-c", UDP_CLIENT, HOST, &port.to_string(), "db"],
    );
    assert_eq!(
        stdout(&o),
        "sendto echo:one True\nagain echo:two True\nconnected echo:three True\nname 10.77.0.9\n",
        "{o:?}"
    );
}

// ---------------------------------------------------------------------
// 8. Bulk data through a handed-over connection.
// ---------------------------------------------------------------------

/// A TCP server of the host's on sys.argv[1]: reads to EOF, then sends all
/// of it back.
const BULK_SERVER: &str = r#"import socket, sys
l = socket.socket(); l.bind((sys.argv[1], 0)); l.listen(4)
print(l.getsockname()[1], flush=True)
while True:
    c, _ = l.accept(); c.settimeout(30); got = []
    while True:
        b = c.recv(1 << 20)
        if not b: break
        got.append(b)
    c.sendall(b''.join(got)); c.close()
"#;

/// An isolated client: sends N bytes, half-closes, reads them back.
const BULK_CLIENT: &str = r#"import hashlib, socket, sys
n = int(sys.argv[3])
data = (bytes(range(256)) * (n // 256 + 1))[:n]
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
s.sendall(data); s.shutdown(socket.SHUT_WR)
got = []
while True:
    b = s.recv(1 << 20)
    if not b: break
    got.append(b)
back = b''.join(got)
print(len(back), hashlib.sha256(back).hexdigest() == hashlib.sha256(data).hexdigest())
"#;

#[test]
fn fifty_megabytes_each_way_through_a_handed_over_connection() {
    let h = host();
    let (_srv, port) = host_python(&h, BULK_SERVER, &[HOST]);
    let n = 50 * 1024 * 1024;
    let py = require("python3");
    let args = ["-c", BULK_CLIENT, HOST, &port.to_string(), &n.to_string()];
    let o = isolated(&h, &[], &py, &args);
    assert_eq!(stdout(&o), format!("{n} True\n"), "{o:?}");
}

/// A service program (`--ip`) listens on 0.0.0.0:8000; a second process of
/// it connects to 127.0.0.1:8000, as it would untraced (or in a container),
/// and reaches that listener, wherever appswitch moved it: isolated or not.
const OWN_SERVICE: &str = r#"import socket, subprocess, sys
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(('0.0.0.0', 8000)); l.listen(4)
child = ("import socket; s=socket.create_connection(('127.0.0.1', 8000), timeout=5); "
         "s.sendall(b'hello'); s.close()")
p = subprocess.Popen([sys.executable, '-c', child])
l.settimeout(10)
c, peer = l.accept()
c.settimeout(10)
print('got', c.recv(64).decode(), flush=True)
p.wait(timeout=10)
"#;

#[test]
fn a_service_program_reaches_its_own_port_on_loopback() {
    let h = host();
    let py = require("python3");
    for opts in [&UNOTIFY[..], &["--backend", "ptrace"][..], &ISO[..]] {
        let o = run(&mut h.trace(
            &with(opts, &["--ip", "10.1.0.1"]),
            &py,
            &["-c", OWN_SERVICE],
        ));
        assert_eq!(stdout(&o), "got hello\n", "{opts:?}: {o:?}");
        assert!(o.status.success(), "{opts:?}: {o:?}");
    }
}

/// A program connects to its own service on 127.0.0.1 (blocking, then
/// non-blocking with the completion checked by a second connect), then
/// connects elsewhere on the same socket: the kernel says EISCONN and
/// leaves the socket where it was, so its peer is still 127.0.0.1:8000.
const OWN_PEER: &str = r#"import errno, select, socket
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(('0.0.0.0', 8000)); l.listen(8)
e = lambda n: errno.errorcode.get(n, str(n))
out = []
for nb in (False, True):
    s = socket.socket()
    if nb:
        s.setblocking(False)
        out.append(e(s.connect_ex(('127.0.0.1', 8000))))
        select.select([], [s], [], 5)
    out.append(e(s.connect_ex(('127.0.0.1', 8000))))
    out.append('%s:%d' % s.getpeername())
    out.append(e(s.connect_ex(('127.0.0.1', 9))))
    out.append('%s:%d' % s.getpeername())
    l.accept()[0].close(); s.close()
print(' '.join(out))
"#;

#[test]
fn its_own_service_stays_the_peer_after_a_connect_elsewhere() {
    let h = host();
    let py = require("python3");
    let want = "0 127.0.0.1:8000 EISCONN 127.0.0.1:8000 \
                EINPROGRESS 0 127.0.0.1:8000 EISCONN 127.0.0.1:8000\n";
    assert_eq!(stdout(&run(h.ns.cmd(&py).args(["-c", OWN_PEER]))), want);
    for opts in [&UNOTIFY[..], &["--backend", "ptrace"][..], &ISO[..]] {
        let o = run(&mut h.trace(&with(opts, &["--ip", "10.1.0.1"]), &py, &["-c", OWN_PEER]));
        assert_eq!(stdout(&o), want, "{opts:?}: {o:?}");
    }
}

/// A blocking connect to the program's own service times out (SO_SNDTIMEO)
/// while the listener's accept queue is full: EINPROGRESS. A connect
/// elsewhere then waits for that pending connection and returns 0, and
/// the socket is still the service's (its peer 127.0.0.1:8000). Then, once
/// the program restricts itself with Landlock (TCP connect to ports 8000
/// and 9 allowed), a connect elsewhere on a connected socket gets EISCONN,
/// as untraced (the kernel judges it: the tracer cannot apply Landlock).
const OWN_PENDING: &str = r#"import ctypes, errno, socket, struct, sys, threading
e = lambda n: errno.errorcode.get(n, str(n))
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(('0.0.0.0', 8000)); l.listen(0)
fill = [socket.socket() for _ in range(3)]
for c in fill:
    c.setblocking(False); c.connect_ex(('127.0.0.1', 8000))
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack('ll', 0, 300000))
out = [e(s.connect_ex(('127.0.0.1', 8000)))]
threading.Thread(target=lambda: [l.accept() for _ in range(4)], daemon=True).start()
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack('ll', 0, 0))
out += [e(s.connect_ex(('127.0.0.1', 9))), '%s:%d' % s.getpeername()]
libc = ctypes.CDLL(None, use_errno=True)
attr = struct.pack('QQ', 0, 2)
rs = libc.syscall(444, attr, len(attr), 0)
if rs < 0 or libc.prctl(38, 1, 0, 0, 0):
    sys.exit('landlock: %s' % e(ctypes.get_errno()))
for p in (8000, 9):
    libc.syscall(445, rs, 2, struct.pack('QQ', 2, p), 0)
if libc.syscall(446, rs, 0):
    sys.exit('landlock: %s' % e(ctypes.get_errno()))
out.append(e(s.connect_ex(('127.0.0.1', 9))))
print(' '.join(out))
"#;

#[test]
fn a_pending_connect_to_its_own_service_completes_as_untraced() {
    let h = host();
    let py = require("python3");
    let want = "EINPROGRESS 0 127.0.0.1:8000 EISCONN\n";
    assert_eq!(stdout(&run(h.ns.cmd(&py).args(["-c", OWN_PENDING]))), want);
    for opts in [&UNOTIFY[..], &["--backend", "ptrace"][..]] {
        let o = run(&mut h.trace(
            &with(opts, &["--ip", "10.1.0.1"]),
            &py,
            &["-c", OWN_PENDING],
        ));
        assert_eq!(stdout(&o), want, "{opts:?}: {o:?}");
    }
}

/// A server of the host's on HOST that says hello to every connection.
fn greeter(h: &Host) -> (Proc, u16) {
    host_python(
        h,
        "import socket,sys\n\
         l=socket.socket(); l.bind((sys.argv[1],0)); l.listen(4)\n\
         print(l.getsockname()[1], flush=True)\n\
         while True:\n\
         \x20   c,_=l.accept(); c.sendall(b'hello\\n'); c.close()\n",
        &[HOST],
    )
}

/// Registers a socket with epoll before connecting it (as nginx does with
/// its upstreams), waits for EPOLLOUT, switches to EPOLLIN with
/// EPOLL_CTL_MOD, and reads the server's greeting.
const EPOLL_FIRST: &str = r#"import select, socket, sys
ep = select.epoll()
s = socket.socket(); s.setblocking(False)
ep.register(s.fileno(), select.EPOLLOUT | select.EPOLLET)
s.connect_ex((sys.argv[1], int(sys.argv[2])))
ev = ep.poll(5)
print('out' if ev and ev[0][1] & select.EPOLLOUT else 'no out: %r' % ev, flush=True)
ep.modify(s.fileno(), select.EPOLLIN)
ev = ep.poll(5)
print(s.recv(64).decode().strip() if ev else 'no in', flush=True)
ep.unregister(s.fileno())
"#;

#[test]
fn a_socket_watched_by_epoll_before_its_connect_is_still_watched() {
    let h = host();
    let (_srv, port) = greeter(&h);
    let py = require("python3");
    let port = port.to_string();
    for opts in [&UNOTIFY[..], &ISO[..]] {
        let o = run(&mut h.trace(opts, &py, &["-c", EPOLL_FIRST, HOST, &port]));
        assert_eq!(stdout(&o), "out\nhello\n", "{opts:?}: {o:?}");
        assert!(o.status.success(), "{opts:?}: {o:?}");
    }
}

/// nginx as a reverse proxy, isolated: it registers its upstream socket
/// with epoll before connecting it, so the handed-over socket must be
/// watched in its place. A second process of the program (curl) asks
/// nginx on the program's own loopback; nginx fetches from the host.
#[test]
fn isolated_nginx_proxies_to_a_host_server() {
    let h = host();
    let nginx = require("nginx");
    let curl = require("curl");
    let (_web, port) = host_web(&h, "proxied");
    let dir = h.dir.path().join("nginx-proxy");
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid;\n\
             error_log stderr error;\n\
             events {{ worker_connections 64; }}\n\
             http {{ access_log off; client_body_temp_path {d}/b; proxy_temp_path {d}/p;\n\
             fastcgi_temp_path {d}/f; uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;\n\
             server {{ listen 127.0.0.1:18080; location / {{ proxy_pass http://{HOST}:{port}; }} }} }}\n"
        ),
    )
    .unwrap();
    // nginx in the background, curl once it listens (bounded), then nginx stopped.
    let script = format!(
        "{} -c {} & n=$!; i=0; \
         while ! {} -s -o /dev/null -m 1 http://127.0.0.1:18080/ && [ $i -lt 50 ]; do i=$((i+1)); sleep 0.1; done; \
         {} -s -m 5 http://127.0.0.1:18080/; kill $n; wait $n",
        nginx.display(),
        conf.display(),
        curl.display(),
        curl.display()
    );
    let o = isolated(&h, &[], "sh", &["-c", &script]);
    assert_eq!(stdout(&o), "proxied", "{o:?}");
}

/// The same after the service closed its first listener and opened another
/// on the same port (the closed one is not chosen), and an IPv6 connect to
/// [::1] of that port is refused, as untraced: the listener is IPv4's.
const OWN_SERVICE_AGAIN: &str = r#"import socket, subprocess, sys
for i in range(2):
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(('0.0.0.0', 8000)); l.listen(4)
    if i == 0: l.close()
child = ("import socket; s=socket.create_connection(('127.0.0.1', 8000), timeout=5); "
         "s.sendall(b'again'); s.close()")
subprocess.run([sys.executable, '-c', child], check=True, timeout=10)
l.settimeout(10)
c, _ = l.accept(); c.settimeout(10)
print('got', c.recv(64).decode(), flush=True)
s6 = socket.socket(socket.AF_INET6); s6.settimeout(5)
print('v6', s6.connect_ex(('::1', 8000)) == 111, flush=True)
"#;

#[test]
fn a_service_program_reaches_its_live_listener_in_its_family() {
    let h = host();
    let py = require("python3");
    for _ in 0..3 {
        for opts in [&UNOTIFY[..], &ISO[..]] {
            let o = run(&mut h.trace(
                &with(opts, &["--ip", "10.1.0.1"]),
                &py,
                &["-c", OWN_SERVICE_AGAIN],
            ));
            assert_eq!(stdout(&o), "got again\nv6 True\n", "{opts:?}: {o:?}");
        }
    }
}

/// The epoll-first client of above, on a thread that is not the main one.
#[test]
fn epoll_registrations_move_for_a_socket_of_another_thread() {
    let h = host();
    let (_srv, port) = greeter(&h);
    let code = format!(
        "import sys, threading\nsys.argv = ['x', '{HOST}', '{port}']\n\
         t = threading.Thread(target=lambda: exec(compile({EPOLL_FIRST:?}, 'c', 'exec'), {{}}))\n\
         t.start(); t.join()\n"
    );
    let o = isolated(&h, &[], require("python3"), &["-c", &code]);
    assert_eq!(stdout(&o), "out\nhello\n", "{o:?}");
}
