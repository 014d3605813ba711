//! Emulation on a borrowed socket, through the `redirect_port` test handler
//! (examples/redirect_port.rs): a connect to port FROM lands on port TO, the
//! program's own sockaddr buffer is never touched, and errors are the ones
//! an untraced run gets.

mod common;
use common::*;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::process::Command;

/// `redirect_port FROM TO -- prog args`
fn redirected(from: u16, to: u16, prog: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> String {
    let out = run(Command::new(example("redirect_port"))
        .arg(from.to_string())
        .arg(to.to_string())
        .arg("--")
        .arg(prog)
        .args(args));
    stdout(&out)
}

fn check(from: &Banner, to: &Banner, flags: &[&str]) {
    let prog = c_prog("connect_check", &[]);
    let port = from.port.to_string();
    let mut args = flags.to_vec();
    args.extend(["127.0.0.1", &port]);
    let out = redirected(from.port, to.port, &prog, &args);
    assert!(out.contains("result=ok"), "{flags:?}: {out}");
    assert!(out.contains("data=TO"), "{flags:?} landed elsewhere: {out}");
    assert!(out.contains("buffer=unchanged"), "{flags:?}: {out}");
}

#[test]
fn redirect_lands_on_the_new_port_and_leaves_the_buffer_alone() {
    let from = Banner::start("FROM\n");
    let to = Banner::start("TO\n");
    check(&from, &to, &[]); // blocking connect()
    check(&from, &to, &["-n"]); // non-blocking: EINPROGRESS, then poll
    check(&from, &to, &["-t"]); // raw syscall(SYS_connect)
    assert_eq!(from.count(), 0, "nothing may reach the original port");
    assert_eq!(to.count(), 3);
}

#[test]
fn nonblocking_connect_returns_einprogress_as_untraced() {
    let from = Banner::start("FROM\n");
    let to = Banner::start("TO\n");
    let prog = c_prog("connect_check", &[]);
    let out = redirected(
        from.port,
        to.port,
        &prog,
        &["-n", "127.0.0.1", &from.port.to_string()],
    );
    assert!(out.contains("nonblocking=EINPROGRESS"), "{out}");
}

#[test]
fn failed_connect_errno_matches_untraced() {
    let prog = c_prog("connect_check", &[]);
    let closed_reserved = closed_port();
    let closed = closed_reserved.port;
    let closed2_reserved = closed_port();
    let closed2 = closed2_reserved.port;
    for flags in [&[][..], &["-n"][..]] {
        let mut args = flags.to_vec();
        let p = closed.to_string();
        args.extend(["127.0.0.1", &p]);
        let plain = stdout(&untraced(&prog, &args));
        assert!(plain.contains("errno=ECONNREFUSED"), "{plain}");
        // Redirected from one closed port to another: the same refusal.
        assert_eq!(redirected(closed, closed2, &prog, &args), plain);
    }
}

#[test]
fn i386_socketcall_connect_is_emulated_too() {
    let from = Banner::start("FROM\n");
    let to = Banner::start("TO\n");
    let prog = c_prog("socketcall32", &[]);
    let out = redirected(from.port, to.port, &prog, &[&from.port.to_string()]);
    assert!(out.contains("data=TO"), "{out}");
    assert!(
        out.contains(&format!("port_in_buffer={}", from.port)),
        "{out}"
    );
    assert_eq!(from.count(), 0);
}

#[test]
fn threads_and_go_are_redirected() {
    let from = Banner::start("FROM\n");
    let to = Banner::start("TO\n");
    let prog = c_prog("thread_connect", &[]);
    let out = redirected(from.port, to.port, &prog, &[&from.port.to_string(), "3"]);
    assert_eq!(out.matches(": TO").count(), 3, "{out}");

    let srv = HttpServer::start("go was redirected\n");
    let unused_reserved = closed_port();
    let unused = unused_reserved.port;
    let url = format!("http://127.0.0.1:{unused}/");
    let out = redirected(unused, srv.port, go_prog(), &["-url", &url]);
    assert_eq!(out, "go was redirected\n");
    assert_eq!(from.count(), 0);
}

/// A listener whose accept queue is full: a new connect's SYN is dropped, so
/// a blocking connect really blocks (phase two: the wait happens in the
/// program's own connect call, in the kernel).
struct FullListener {
    listener: TcpListener,
    _filler: std::net::TcpStream,
}

fn full_listener() -> FullListener {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    // SAFETY: listen(2) on a socket we own; backlog 0 leaves room for one.
    assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0);
    let filler = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    FullListener {
        listener: l,
        _filler: filler,
    }
}

#[test]
fn blocking_connect_that_waits_keeps_native_timeout_and_signal_semantics() {
    let prog = c_prog("connect_check", &[]);
    let full = full_listener();
    let port = full.listener.local_addr().unwrap().port().to_string();
    // SO_SNDTIMEO expires: EINPROGRESS. An alarm without SA_RESTART: EINTR.
    for flags in [["-w", "1"], ["-a", "1"]] {
        let args = [flags[0], flags[1], "127.0.0.1", &port];
        let plain = stdout(&untraced(&prog, &args));
        let p: u16 = port.parse().unwrap();
        let traced = redirected(p, p, &prog, &args);
        assert_eq!(traced, plain, "{flags:?}");
        assert!(plain.contains("errno=EIN"), "{plain}");
    }
}

/// Whether a socket in SYN_SENT toward 127.0.0.1:port exists.
fn syn_sent_to(port: u16) -> bool {
    syn_sent_in(
        "/proc/net/tcp",
        std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, port),
    )
}

#[test]
fn blocking_connect_completes_after_waiting() {
    let prog = c_prog("connect_check", &[]);
    let full = full_listener();
    let port = full.listener.local_addr().unwrap().port();
    let from_reserved = closed_port();
    let from = from_reserved.port;
    // Free the queue once the traced connect is waiting (a SYN_SENT socket
    // toward the port exists); the SYN retransmission then completes it.
    let l = full.listener.try_clone().unwrap();
    let freer = std::thread::spawn(move || {
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !syn_sent_to(port) {
            assert!(
                std::time::Instant::now() < end,
                "connect never started waiting"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let (mut s, _) = l.accept().unwrap();
        use std::io::Write;
        let _ = s.write_all(b"filler\n");
        let (mut s, _) = l.accept().unwrap();
        let _ = s.write_all(b"waited\n");
    });
    let out = redirected(from, port, &prog, &["127.0.0.1", &from.to_string()]);
    freer.join().unwrap();
    assert!(out.contains("result=ok"), "{out}");
    assert!(out.contains("data=waited"), "{out}");
    assert!(out.contains("buffer=unchanged"), "{out}");
}
