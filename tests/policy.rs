//! `appswitch trace --policy`: real programs are allowed, refused and
//! redirected by rules, and the known ways around a socket-layer policy are
//! closed. Refused destinations are real listeners that count what reaches them.

mod common;
use common::*;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::process::Command;

fn out_has(o: &std::process::Output, s: &str) -> bool {
    stdout(o).contains(s)
}

/// The program's output under policy `pol` (no other options).
fn police(
    pol: &std::path::Path,
    prog: impl AsRef<std::ffi::OsStr>,
    args: &[&str],
) -> std::process::Output {
    policed(pol, &[], prog, args).0
}

/// The output contains `s` (else fail, showing the output).
#[track_caller]
fn assert_out(o: &std::process::Output, s: &str) {
    assert!(out_has(o, s), "expected {s:?} in:\n{}", stdout(o));
}

#[test]
fn curl_allowed_denied_and_redirected() {
    let allowed = HttpServer::start("allowed page\n");
    let real = HttpServer::start("the real backend\n");
    let denied = Banner::start_low("never\n");
    let virt_reserved = closed_port();
    let virt = virt_reserved.port;
    let (_d, pol) = policy_file(&format!(
        "deny connect 127.0.0.1:{}\nredirect connect 127.0.0.1:{virt} -> 127.0.0.1:{}\n",
        denied.port, real.port
    ));
    let curl = require("curl");
    let o = police(&pol, &curl, &["-s", &allowed.url()]);
    assert_eq!(stdout(&o), "allowed page\n");
    let (o, ev) = policed(
        &pol,
        &[],
        &curl,
        &["-s", &format!("http://127.0.0.1:{}/", denied.port)],
    );
    assert_eq!(o.status.code(), Some(7), "curl: couldn't connect");
    assert_eq!(denied.count(), 0, "the refused connect sent nothing");
    let c = calls(&ev, "connect", Some(&format!("127.0.0.1:{}", denied.port)));
    assert_eq!(c[0]["result"], "ECONNREFUSED");
    assert_eq!(c[0]["action"], "deny");
    assert_eq!(c[0]["rule"], 1);
    let (o, ev) = policed(
        &pol,
        &[],
        &curl,
        &["-s", &format!("http://127.0.0.1:{virt}/")],
    );
    assert_eq!(stdout(&o), "the real backend\n");
    let c = calls(&ev, "connect", Some(&format!("127.0.0.1:{virt}")));
    assert_eq!(c[0]["rewritten"], format!("127.0.0.1:{}", real.port));
}

#[test]
fn python3_client_sees_the_virtual_peer_after_a_redirect() {
    let real = Banner::start("real\n");
    let denied = Banner::start_low("never\n");
    let virt_reserved = closed_port();
    let virt = virt_reserved.port;
    let (_d, pol) = policy_file(&format!(
        "redirect connect 127.0.0.1:{virt} -> 127.0.0.1:{}\ndeny connect 127.0.0.1:{}\n",
        real.port, denied.port
    ));
    let script = "import socket,sys\n\
        s=socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n\
        print(s.getpeername()[1], s.recv(10).decode().strip())\n";
    let o = police(&pol, "python3", &["-c", script, &virt.to_string()]);
    assert_eq!(
        stdout(&o),
        format!("{virt} real\n"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = police(&pol, "python3", &["-c", script, &denied.port.to_string()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("ConnectionRefusedError"));
    assert_eq!(denied.count(), 0);
}

/// A blocking connect() that has to wait (its SYN dropped by a full accept
/// queue, answered on the retransmission) leaves the socket as untraced:
/// connected when it succeeded (a connect() again gets EISCONN, not the 0
/// of a connection still settling), unconnected when it was refused (the
/// listener closed meanwhile: a connect() elsewhere then makes a new
/// connection, not ECONNABORTED). (Under user notification the tracer, not
/// the kernel, waits for that handshake.)
#[test]
fn a_blocking_connect_that_waited_leaves_the_socket_connected() {
    let (_d, pol) = policy_file("deny connect 127.0.0.1:1\n");
    let script = r#"import errno, socket, threading, time
e = lambda n: errno.errorcode.get(n, str(n))
keys = [l for l in open('/proc/net/netstat') if l.startswith('TcpExt:')][0].split()[1:]
def overflows():
    for l in open('/proc/net/netstat'):
        if l.startswith('TcpExt:') and 'ListenOverflows' not in l:
            return int(l.split()[1 + keys.index('ListenOverflows')])
def waited(close):
    l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(0)
    fill = [socket.socket() for _ in range(3)]
    for c in fill:
        c.setblocking(False); c.connect_ex(l.getsockname())
    def then(start):
        end = time.monotonic() + 10
        while overflows() == start and time.monotonic() < end:
            time.sleep(0.01)
        if close:
            l.close()
        else:
            for _ in range(4):
                l.accept()
    threading.Thread(target=then, args=(overflows(),), daemon=True).start()
    s = socket.socket()
    return s, l.getsockname(), e(s.connect_ex(l.getsockname()))
s, at, r = waited(False)
out = [r, e(s.connect_ex(at))]
s, _, r = waited(True)
m = socket.socket(); m.bind(('127.0.0.1', 0)); m.listen(8)
out += [r, e(s.connect_ex(m.getsockname())), e(s.connect_ex(m.getsockname()))]
print(' '.join(out))
"#;
    let want = "0 EISCONN ECONNREFUSED 0 EISCONN\n";
    assert_eq!(stdout(&untraced("python3", &["-c", script])), want);
    let o = police(&pol, "python3", &["-c", script]);
    assert_eq!(stdout(&o), want, "{}", String::from_utf8_lossy(&o.stderr));
}

/// A sibling's connect(AF_UNSPEC) while a blocking connect waits for its
/// handshake: as untraced, the waiting connect fails with EPIPE, the
/// socket's error (ECONNRESET) is left for SO_ERROR, and the socket can
/// connect again. (User notification parks the waiting connect: the
/// disconnect is noted on it, unotify/park.rs; the settling connect after
/// the wait cannot start a connection: emulate::settle_connected.)
#[test]
fn a_sibling_disconnect_ends_a_waiting_connect_with_epipe() {
    let (_d, pol) = policy_file("deny connect 127.0.0.1:1\n");
    let script = r#"import ctypes, errno, socket, struct, threading, time
e = lambda n: errno.errorcode.get(n, str(n))
libc = ctypes.CDLL(None, use_errno=True)
l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(0)
fill = [socket.socket() for _ in range(3)]
for c in fill:
    c.setblocking(False); c.connect_ex(l.getsockname())
s = socket.socket()
def sibling():
    # Until the connect is under way (TCP_INFO: SYN_SENT), bounded.
    end = time.monotonic() + 10
    while s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] != 2 and time.monotonic() < end:
        time.sleep(0.01)
    if 'MODE' == 'shut':
        s.shutdown(socket.SHUT_RDWR)
    else:
        sa = struct.pack('H14x', 0)
        libc.connect(s.fileno(), sa, len(sa))
t = threading.Thread(target=sibling); t.start()
r = e(s.connect_ex(l.getsockname()))
t.join()
m = socket.socket(); m.bind(('127.0.0.1', 0)); m.listen(8)
s.settimeout(5)
print(r, e(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)), e(s.connect_ex(m.getsockname())))
"#;
    // shutdown() instead: the wait ends with the reset (ECONNRESET), and
    // the next connect makes a new connection (no stray one to the full
    // listener left behind by the tracer: that one would hang).
    for (how, want) in [
        ("unspec", "EPIPE ECONNRESET 0\n"),
        ("shut", "ECONNRESET 0 0\n"),
    ] {
        let script = script.replace("MODE", how);
        assert_eq!(
            stdout(&untraced("python3", &["-c", &script])),
            want,
            "{how}"
        );
        let o = police(&pol, "python3", &["-c", &script]);
        assert_eq!(
            stdout(&o),
            want,
            "{how}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// A redirected socket shut down while its handshake is pending (the
/// kernel drops that connection), then connected elsewhere with a blocking
/// connect: that connect makes a new connection and returns 0, and the
/// socket's peer is where it went, not the redirect's address.
#[test]
fn a_redirected_socket_shut_down_while_connecting_then_connected_elsewhere() {
    let full = TcpListener::bind("127.0.0.1:0").unwrap();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let (fp, op) = (
        full.local_addr().unwrap().port(),
        other.local_addr().unwrap().port(),
    );
    // SAFETY: listen(2) on a socket we own: a backlog of 0 (one queued).
    unsafe { libc::listen(full.as_raw_fd(), 0) };
    let (_d, pol) = policy_file(&format!(
        "redirect connect 127.0.0.77:80 -> 127.0.0.1:{fp}\n"
    ));
    // host port: where the first connect goes; FULL: the full queue's port;
    // OTHER: where the second goes.
    let script = r#"import errno, socket, sys
e = lambda n: errno.errorcode.get(n, str(n))
host, port, full, other = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
fill = [socket.socket() for _ in range(3)]
for c in fill:
    c.setblocking(False); c.connect_ex(('127.0.0.1', full))
s = socket.socket(); s.setblocking(False)
out = [e(s.connect_ex((host, port)))]
s.shutdown(socket.SHUT_RDWR)
s.setblocking(True)
out += [e(s.connect_ex(('127.0.0.1', other))), '%s:%d' % s.getpeername()]
print(' '.join(out))
"#;
    let (fps, ops) = (fp.to_string(), op.to_string());
    let want = format!("EINPROGRESS 0 127.0.0.1:{op}\n");
    let plain = untraced("python3", &["-c", script, "127.0.0.1", &fps, &fps, &ops]);
    assert_eq!(stdout(&plain), want);
    let o = police(
        &pol,
        "python3",
        &["-c", script, "127.0.0.77", "80", &fps, &ops],
    );
    assert_eq!(stdout(&o), want, "{}", String::from_utf8_lossy(&o.stderr));
}

/// A blocking connect the tracer carries out (a redirect) on a socket that
/// already reports a hang-up (shut down before it connected: ENOTCONN, but
/// the flags stay) waits for its handshake as untraced, though the socket
/// reads as ready all along: with SO_SNDTIMEO and the SYN dropped (a full
/// accept queue), EINPROGRESS at the timeout, still in SYN_SENT; with the
/// queue drained meanwhile, 0 once the SYN is answered, ESTABLISHED. (Such
/// a socket once got 0 at once, still in SYN_SENT.) An ICMP error kept as a
/// soft error while the handshake goes on reads the same way.
#[test]
fn a_carried_out_blocking_connect_waits_on_a_socket_that_reads_ready() {
    let script = r#"import errno, socket, struct, sys, threading, time
out = []
for drain in (False, True):
    l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(0)
    fill = [socket.socket() for _ in range(3)]
    for c in fill:
        c.setblocking(False); c.connect_ex(l.getsockname())
    done, kept = threading.Event(), []
    if drain:
        def accept_later():
            time.sleep(0.3)
            l.settimeout(0.1)
            end = time.monotonic() + 10
            while not done.is_set() and time.monotonic() < end:
                try:
                    kept.append(l.accept()[0])
                except OSError:
                    pass
        t = threading.Thread(target=accept_later); t.start()
    s = socket.socket()
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    if not drain:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack('ll', 0, 400000))
    r = s.connect_ex((sys.argv[1], l.getsockname()[1]))
    out.append('%s %d' % (errno.errorcode.get(r, r), s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]))
    done.set()
    if drain:
        t.join()
print(' / '.join(out))
"#;
    let want = "EINPROGRESS 2 / 0 1\n";
    assert_eq!(
        stdout(&untraced("python3", &["-c", script, "127.0.0.1"])),
        want
    );
    // The listener's port is the script's: the redirect keeps the port.
    let (_d, pol) = policy_file("redirect connect 127.0.0.78 -> 127.0.0.1\n");
    let o = police(&pol, "python3", &["-c", script, "127.0.0.78"]);
    assert_eq!(stdout(&o), want, "{}", String::from_utf8_lossy(&o.stderr));
}

/// A redirected UDP socket connected elsewhere moves there, as untraced:
/// a UDP connect always takes effect, so the virtual peer goes.
#[test]
fn a_redirected_udp_socket_connected_elsewhere_shows_its_new_peer() {
    let (_d, pol) = policy_file("redirect connect 127.0.0.77:53 -> 127.0.0.1:5353\n");
    let script = "import socket\n\
        out = []\n\
        for nb in (False, True):\n\
        \x20   s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setblocking(not nb)\n\
        \x20   s.connect(('127.0.0.77', 53)); out.append('%s:%d' % s.getpeername())\n\
        \x20   s.connect(('127.0.0.1', 9)); out.append('%s:%d' % s.getpeername())\n\
        print(' '.join(out))\n";
    let want = "127.0.0.77:53 127.0.0.1:9 127.0.0.77:53 127.0.0.1:9\n";
    assert_eq!(stdout(&untraced("python3", &["-c", script])), want);
    let o = police(&pol, "python3", &["-c", script]);
    assert_eq!(stdout(&o), want, "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn busybox_nc_and_go_client_are_policed() {
    let denied = Banner::start_low("never\n");
    let real = HttpServer::start("go reached the backend\n");
    let virt_reserved = closed_port();
    let virt = virt_reserved.port;
    let (_d, pol) = policy_file(&format!(
        "deny connect 127.0.0.1:{}\nredirect connect 127.0.0.1:{virt} -> 127.0.0.1:{}\n",
        denied.port, real.port
    ));
    let bb = require("busybox");
    let o = police(&pol, &bb, &["nc", "127.0.0.1", &denied.port.to_string()]);
    assert_ne!(o.status.code(), Some(0));
    let go = go_prog();
    let o = police(
        &pol,
        &go,
        &["-url", &format!("http://127.0.0.1:{}/", denied.port)],
    );
    assert_out(&o, "connection refused");
    let o = police(&pol, &go, &["-url", &format!("http://127.0.0.1:{virt}/")]);
    assert_eq!(stdout(&o), "go reached the backend\n");
    assert_eq!(denied.count(), 0);
}

#[test]
fn errnos_default_per_operation_and_can_be_named() {
    let denied = Banner::start_low("never\n");
    let udp = UdpCounter::start();
    let (_d, pol) = policy_file(&format!(
        "deny connect 127.0.0.1:{} errno=ENETUNREACH\ndeny bind any:1-1023\ndeny send 127.0.0.1:{}\n",
        denied.port, udp.port
    ));
    let cc = c_prog("connect_check", &[]);
    let o = police(&pol, &cc, &["127.0.0.1", &denied.port.to_string()]);
    assert_out(&o, "errno=ENETUNREACH");
    let bc = c_prog("bind_check", &[]);
    let o = police(&pol, &bc, &["127.0.0.1", "80"]);
    assert_out(&o, "bind_errno=EACCES");
    let o = police(&pol, &bc, &["127.0.0.1", "0"]);
    assert_out(&o, "bind=ok");
    let us = c_prog("udp_send", &[]);
    let o = police(&pol, &us, &["sendto", "127.0.0.1", &udp.port.to_string()]);
    assert_out(&o, "errno=EPERM");
    let mut udp = udp;
    assert_eq!(udp.count(), 0);
    assert_eq!(denied.count(), 0);
}

#[test]
fn implicit_bind_by_listen_is_policed() {
    let (_d, pol) = policy_file("deny bind any\n");
    let bc = c_prog("bind_check", &[]);
    let o = police(&pol, &bc, &["-l", "127.0.0.1", "none"]);
    assert_out(&o, "listen_errno=EACCES");
    let (_d2, open) = policy_file("deny bind any:1-1023\n");
    let (o, _) = policed(&open, &[], &bc, &["-l", "127.0.0.1", "none"]);
    assert!(
        out_has(&o, "listen=ok"),
        "an ephemeral port is not in 1-1023: {}",
        stdout(&o)
    );
}

#[test]
fn udp_connect_then_send_is_policed_at_connect() {
    let mut udp = UdpCounter::start();
    let (_d, pol) = policy_file(&format!("deny send 127.0.0.1:{}\n", udp.port));
    let us = c_prog("udp_send", &[]);
    let o = police(
        &pol,
        &us,
        &["connect-send", "127.0.0.1", &udp.port.to_string()],
    );
    assert_out(&o, "errno=EPERM");
    assert_eq!(udp.count(), 0);
}

#[test]
fn monitor_mode_allows_and_records() {
    let target = Banner::start_low("monitored\n");
    let (_d, pol) = policy_file(&format!("deny connect 127.0.0.1:{}\n", target.port));
    let cc = c_prog("connect_check", &[]);
    let (o, ev) = policed(
        &pol,
        &["--mode", "monitor"],
        &cc,
        &["127.0.0.1", &target.port.to_string()],
    );
    assert_out(&o, "data=monitored");
    let c = calls(&ev, "connect", Some(&format!("127.0.0.1:{}", target.port)));
    assert_eq!(c[0]["action"], "deny");
    assert_eq!(c[0]["monitor"], true);
    assert_eq!(target.count(), 1);
}

#[test]
fn default_deny_with_exceptions() {
    let ok = Banner::start("ok\n");
    let other = Banner::start_low("never\n");
    let (_d, pol) = policy_file(&format!(
        "default deny\nallow connect 127.0.0.1:{}\n",
        ok.port
    ));
    let cc = c_prog("connect_check", &[]);
    let o = police(&pol, &cc, &["127.0.0.1", &ok.port.to_string()]);
    assert_out(&o, "data=ok");
    let o = police(&pol, &cc, &["127.0.0.1", &other.port.to_string()]);
    assert_out(&o, "errno=ECONNREFUSED");
    assert_eq!(other.count(), 0);
}

#[test]
fn bad_policy_files_are_rejected_before_the_program_starts() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("started");
    let cases = [
        (
            "allow connect any\ndeny conect any:22\n",
            "line 2, column 6: 'conect'",
            "expected an operation",
        ),
        (
            "deny connect any:70000\n",
            "line 1, column 14: 'any:70000'",
            "port",
        ),
        ("redirect connect 1.2.3.4:80\n", "line 1", "-> TARGET"),
        (
            "deny connect any errno=EWHAT\n",
            "'errno=EWHAT'",
            "errno name",
        ),
        ("deny connect 10.0.0.0/40\n", "'10.0.0.0/40'", "IPv4"),
        (
            "\n\n  allow bnid any\n",
            "line 3, column 9: 'bnid'",
            "connect, bind, send, any or raw",
        ),
        ("default perhaps\n", "'perhaps'", "allow or deny"),
    ];
    for (text, place, what) in cases {
        let (_d, pol) = policy_file(text);
        let out = run(Command::new(appswitch())
            .arg("trace")
            .arg("--policy")
            .arg(&pol)
            .args(["--", "touch"])
            .arg(&marker));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text:?}: {err}");
        assert!(err.contains(place) && err.contains(what), "{text:?}: {err}");
        assert!(!marker.exists(), "{text:?}: the program ran");
    }
}

// ---- ways around a socket-layer policy, each closed in enforce mode ----

fn denied_setup() -> (Banner, tempfile::TempDir, std::path::PathBuf) {
    let denied = Banner::start_low("never\n");
    let (d, pol) = policy_file(&format!("deny any 127.0.0.1:{}\n", denied.port));
    (denied, d, pol)
}

#[test]
fn bypass_raw_syscall_connect() {
    let (denied, _d, pol) = denied_setup();
    let cc = c_prog("connect_check", &[]);
    let o = police(&pol, &cc, &["-t", "127.0.0.1", &denied.port.to_string()]);
    assert_out(&o, "errno=ECONNREFUSED");
    assert_eq!(denied.count(), 0);
}

#[test]
fn bypass_int80_socketcall_connect() {
    let (denied, _d, pol) = denied_setup();
    let p = c_prog("socketcall32", &[]);
    let (o, ev) = policed(&pol, &[], &p, &[&denied.port.to_string()]);
    assert_out(&o, &format!("errno={}", libc::ECONNREFUSED));
    assert_eq!(calls(&ev, "connect", None)[0]["abi"], "i386");
    assert_eq!(denied.count(), 0);
}

#[test]
fn bypass_sendmmsg_to_a_denied_address() {
    let mut ok = UdpCounter::start();
    let mut bad = UdpCounter::start();
    let (_d, pol) = policy_file(&format!("deny send 127.0.0.1:{}\n", bad.port));
    let us = c_prog("udp_send", &[]);
    let o = police(
        &pol,
        &us,
        &[
            "sendmmsg",
            "127.0.0.1",
            &ok.port.to_string(),
            "127.0.0.1",
            &bad.port.to_string(),
        ],
    );
    // The kernel's sendmmsg stops at the first failing message: one sent.
    assert_out(&o, "result=1");
    assert_eq!(ok.count(), 1);
    assert_eq!(bad.count(), 0);
    let o = police(
        &pol,
        &us,
        &[
            "sendmmsg",
            "127.0.0.1",
            &bad.port.to_string(),
            "127.0.0.1",
            &ok.port.to_string(),
        ],
    );
    assert_out(&o, "errno=EPERM");
    assert_eq!(bad.count(), 0);
}

#[test]
fn bypass_sendto_msg_fastopen() {
    let (denied, _d, pol) = denied_setup();
    let allowed = Banner::start("fast\n");
    let p = c_prog("fastopen", &[]);
    let o = police(&pol, &p, &["127.0.0.1", &denied.port.to_string()]);
    assert_out(&o, "errno=ECONNREFUSED");
    assert_eq!(denied.count(), 0);
    let o = police(&pol, &p, &["127.0.0.1", &allowed.port.to_string()]);
    assert!(
        out_has(&o, "result=5") && out_has(&o, "data=fast"),
        "allowed TFO works: {}",
        stdout(&o)
    );
}

#[test]
fn bypass_ipv4_mapped_ipv6_connect() {
    let (denied, _d, pol) = denied_setup();
    let script = "import socket,sys\n\
        s=socket.socket(socket.AF_INET6)\n\
        try:\n  s.connect(('::ffff:127.0.0.1', int(sys.argv[1]))); print('connected')\n\
        except OSError as e: print('errno', e.errno)\n";
    let o = police(&pol, "python3", &["-c", script, &denied.port.to_string()]);
    assert_eq!(stdout(&o), format!("errno {}\n", libc::ECONNREFUSED));
    let mut udp = UdpCounter::start();
    let (_d2, pol2) = policy_file(&format!("deny send 127.0.0.1:{}\n", udp.port));
    let us = c_prog("udp_send", &[]);
    let (o, _) = policed(
        &pol2,
        &[],
        &us,
        &["sendto", "::ffff:127.0.0.1", &udp.port.to_string()],
    );
    assert_out(&o, "errno=EPERM");
    assert_eq!(udp.count(), 0);
    assert_eq!(denied.count(), 0);
}

#[test]
fn bypass_io_uring_connect() {
    let (denied, _d, pol) = denied_setup();
    let p = c_prog("uring_connect", &[]);
    // Untraced, io_uring really connects (so this test can fail).
    let plain = untraced(&p, &["127.0.0.1", &denied.port.to_string()]);
    assert!(out_has(&plain, "cqe_res=0"), "{}", stdout(&plain));
    assert_eq!(denied.count(), 1);
    let o = police(&pol, &p, &["127.0.0.1", &denied.port.to_string()]);
    assert_out(&o, "setup_errno=ENOSYS");
    assert_eq!(denied.count(), 1, "nothing more reached it");
}

#[test]
fn bypass_sibling_thread_flips_the_sockaddr() {
    let allowed = Banner::start_low("ok\n");
    let denied = Banner::start_low("never\n");
    let (_d, pol) = policy_file(&format!("deny connect 127.0.0.1:{}\n", denied.port));
    let p = c_prog("flipper", &[]);
    let o = police(
        &pol,
        &p,
        &[&allowed.port.to_string(), &denied.port.to_string(), "10000"],
    );
    let out = stdout(&o);
    assert!(out.contains("landed_denied=0"), "{out}");
    assert_eq!(denied.count(), 0, "{out}");
    // Both addresses were really tried: some allowed connects got through.
    assert!(allowed.count() > 100, "{out}");
    let refused: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("refused="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(refused > 100, "{out}");
}

#[test]
fn busybox_nc_allowed_and_redirected() {
    let real = Banner::start("nc reached the target\n");
    let virt_reserved = closed_port();
    let virt = virt_reserved.port;
    let (_d, pol) = policy_file(&format!(
        "redirect connect 127.0.0.1:{virt} -> 127.0.0.1:{}\n",
        real.port
    ));
    let bb = require("busybox");
    let o = police(&pol, &bb, &["nc", "127.0.0.1", &real.port.to_string()]);
    assert_eq!(stdout(&o), "nc reached the target\n");
    let o = police(&pol, &bb, &["nc", "127.0.0.1", &virt.to_string()]);
    assert_eq!(stdout(&o), "nc reached the target\n");
    assert_eq!(real.count(), 2);
}

#[test]
fn redirect_by_rule_leaves_the_programs_buffer_alone() {
    let real = Banner::start("TO\n");
    let virt_reserved = closed_port();
    let virt = virt_reserved.port;
    let (_d, pol) = policy_file(&format!(
        "redirect connect 127.0.0.1:{virt} -> 127.0.0.1:{}\n",
        real.port
    ));
    let cc = c_prog("connect_check", &[]);
    for flags in [&[][..], &["-n"][..], &["-t"][..]] {
        let mut args = flags.to_vec();
        let v = virt.to_string();
        args.extend(["127.0.0.1", &v]);
        let o = police(&pol, &cc, &args);
        assert!(
            out_has(&o, "data=TO") && out_has(&o, "buffer=unchanged"),
            "{flags:?}: {}",
            stdout(&o)
        );
    }
}

#[test]
fn ipv6_destinations_are_policed() {
    let l = match std::net::TcpListener::bind("[::1]:0") {
        Ok(l) => l,
        Err(e) => panic!("cannot bind [::1]: {e}"),
    };
    let port = l.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let a = accepted.clone();
    std::thread::spawn(move || {
        for _ in l.incoming().flatten() {
            a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let script = "import socket,sys\n\
        try:\n  socket.create_connection(('::1', int(sys.argv[1]))); print('connected')\n\
        except OSError as e: print('errno', e.errno)\n";
    let (_d, pol) = policy_file(&format!("deny connect [::1]:{port}\n"));
    let o = police(&pol, "python3", &["-c", script, &port.to_string()]);
    assert_eq!(stdout(&o), format!("errno {}\n", libc::ECONNREFUSED));
    let (_d2, other) = policy_file("deny connect [::1]:1\n");
    let (o, _) = policed(&other, &[], "python3", &["-c", script, &port.to_string()]);
    assert_eq!(stdout(&o), "connected\n");
    // The handshake completes in the kernel before our thread accepts.
    let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while accepted.load(std::sync::atomic::Ordering::SeqCst) == 0 && std::time::Instant::now() < end
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "only the allowed connect arrived"
    );
}

#[test]
fn fastopen_is_policed_by_connect_rules_alone() {
    let denied = Banner::start_low("never\n");
    let (_d, pol) = policy_file(&format!("deny connect 127.0.0.1:{}\n", denied.port));
    let p = c_prog("fastopen", &[]);
    let o = police(&pol, &p, &["127.0.0.1", &denied.port.to_string()]);
    assert_out(&o, "errno=ECONNREFUSED");
    assert_eq!(denied.count(), 0);
}

#[test]
fn a_thread_outliving_the_leader_is_still_policed() {
    let denied = Banner::start_low("never\n");
    let (_d, pol) = policy_file(&format!("deny connect 127.0.0.1:{}\n", denied.port));
    let p = c_prog("orphan_thread", &[]);
    let o = police(&pol, &p, &[&denied.port.to_string()]);
    assert_out(&o, "errno=ECONNREFUSED");
    assert_eq!(denied.count(), 0);
}

#[test]
fn redirect_of_a_v4_mapped_destination_on_an_ipv6_socket() {
    let real = Banner::start("real\n");
    let virt_reserved = closed_port();
    let virt = virt_reserved.port;
    let (_d, pol) = policy_file(&format!(
        "redirect connect 127.0.0.1:{virt} -> 127.0.0.1:{}\n",
        real.port
    ));
    let script = "import socket,sys\n\
        s=socket.socket(socket.AF_INET6)\n\
        s.connect(('::ffff:127.0.0.1', int(sys.argv[1])))\n\
        print(s.recv(10).decode().strip(), s.getpeername()[1])\n";
    let o = police(&pol, "python3", &["-c", script, &virt.to_string()]);
    assert_eq!(
        stdout(&o),
        format!("real {virt}\n"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn getpeername_after_a_failed_redirect_is_enotconn() {
    let closed = closed_port();
    let virt_reserved = closed_port();
    let virt = virt_reserved.port;
    let (_d, pol) = policy_file(&format!(
        "redirect connect 127.0.0.1:{virt} -> 127.0.0.1:{}\n",
        closed.port
    ));
    let script = "import socket,sys,select,errno\n\
        s=socket.socket(); s.setblocking(False)\n\
        s.connect_ex(('127.0.0.1', int(sys.argv[1])))\n\
        select.select([],[s],[],5)\n\
        print('so_error', s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))\n\
        try: s.getpeername(); print('peer')\n\
        except OSError as e: print(errno.errorcode[e.errno])\n";
    let o = police(&pol, "python3", &["-c", script, &virt.to_string()]);
    assert_eq!(
        stdout(&o),
        format!("so_error {}\nENOTCONN\n", libc::ECONNREFUSED)
    );
}

#[test]
fn uid_rules_follow_a_setuid_without_exec() {
    let target = Banner::start("up\n");
    let (_d, pol) = policy_file(&format!(
        "deny connect 127.0.0.1:{} uid=65534\n",
        target.port
    ));
    let script = "import socket,os,sys\n\
        p=int(sys.argv[1])\n\
        socket.create_connection(('127.0.0.1',p)); print('root ok')\n\
        os.setuid(65534)\n\
        try: socket.create_connection(('127.0.0.1',p)); print('nobody ok')\n\
        except OSError as e: print('nobody', e.errno)\n";
    let o = police(&pol, "python3", &["-c", script, &target.port.to_string()]);
    assert_eq!(
        stdout(&o),
        format!("root ok\nnobody {}\n", libc::ECONNREFUSED)
    );
}

#[test]
fn an_emulated_bind_has_the_programs_privileges() {
    require("setpriv");
    // /usr/bin/python3 (Debian's): user 65534 may run it.
    let (_d, pol) = policy_file("deny bind any:1-100\n");
    let script = "import socket\n\
        s=socket.socket()\n\
        try: s.bind(('127.0.0.1', 555)); print('bound')\n\
        except OSError as e: print('errno', e.errno)\n";
    let out = run(Command::new(appswitch())
        .arg("trace")
        .arg("--policy")
        .arg(&pol)
        .args([
            "--",
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            script,
        ]));
    assert_eq!(stdout(&out), format!("errno {}\n", libc::EACCES));
}

#[test]
fn refusals_stay_out_of_the_programs_stderr_unless_a_log_file_is_asked_for() {
    let cc = c_prog("connect_check", &[]);
    let (dir, pol) = policy_file("deny connect 127.0.0.1:1\n");
    let script = format!("{} 127.0.0.1 1 >/dev/null; echo done >&2", cc.display());
    // `trace [extra] --policy POL -- sh -c SCRIPT`, RUST_LOG unset.
    let traced_sh = |extra: &[&str]| {
        run(Command::new(appswitch())
            .arg("trace")
            .args(extra)
            .args(["--policy", pol.to_str().unwrap(), "--", "sh", "-c", &script])
            .env_remove("RUST_LOG"))
    };
    let o = traced_sh(&[]);
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "done\n",
        "only the program's own stderr"
    );
    // With --log-file, the refusal is written there.
    let log = dir.path().join("trace.log");
    let o = traced_sh(&["--log-file", log.to_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&o.stderr), "done\n");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("refused connect 127.0.0.1:1"), "{text}");
}
