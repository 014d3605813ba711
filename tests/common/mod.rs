//! Shared helpers for integration tests: real programs, real sockets on
//! loopback, every process stopped when its guard drops.
#![allow(dead_code)]

pub mod backend;
pub mod netns;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub fn appswitch() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_appswitch"))
}

/// The variable that picks the interception backend of every `appswitch
/// trace` a test starts: the tests' own processes inherit it, so
/// scripts/test.sh runs the suite once per backend by setting it. Unset,
/// `trace` runs its config's or built-in default.
pub const BACKEND_ENV: &str = "APPSWITCH_BACKEND";

/// `trace` options for a test about the ptrace backend itself (what only
/// ptrace does, or cannot do): it runs under ptrace in every pass.
pub const PTRACE: [&str; 2] = ["--backend", "ptrace"];

/// The backend `appswitch trace` runs in this pass ("unotify" or
/// "ptrace"), as `appswitch backend` reports it.
pub fn backend() -> &'static str {
    static CHOSEN: OnceLock<String> = OnceLock::new();
    CHOSEN.get_or_init(|| {
        let out = run(Command::new(appswitch()).arg("backend"));
        let text = stdout(&out);
        let chosen = text
            .lines()
            .find_map(|l| l.strip_prefix("backend="))
            .map(str::to_string);
        match (out.status.success(), chosen) {
            (true, Some(b)) => b,
            _ => panic!(
                "appswitch backend ({BACKEND_ENV}={:?}) failed: {out:?}",
                std::env::var_os(BACKEND_ENV)
            ),
        }
    })
}

/// An example binary of this package (built by `cargo test`).
pub fn example(name: &str) -> PathBuf {
    let p = appswitch()
        .parent()
        .expect("binary has a directory")
        .join("examples")
        .join(name);
    assert!(
        p.exists(),
        "{} not built (run through cargo test)",
        p.display()
    );
    p
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn out_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("progs");
    std::fs::create_dir_all(&d).expect("create test-program dir");
    d
}

/// Fail loudly when a tool the tests need is missing: scripts/setup.sh installs them.
pub fn require(tool: &str) -> PathBuf {
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let p = dir.join(tool);
        if p.is_file() {
            return p;
        }
    }
    panic!("{tool} not found in PATH: run scripts/setup.sh");
}

fn build_once(name: &str, build: impl FnOnce(&Path)) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap();
    if let Some(p) = built.get(name) {
        return p.clone();
    }
    let out = out_dir().join(name);
    build(&out);
    built.insert(name.to_string(), out.clone());
    out
}

/// Compile tests/progs/NAME.c with gcc (extra flags allowed, e.g. "-static").
pub fn c_prog(name: &str, flags: &[&str]) -> PathBuf {
    let key = format!("{name}{}", flags.join(""));
    build_once(&key, |out| {
        require("gcc");
        let src = repo().join("tests/progs").join(format!("{name}.c"));
        let st = Command::new("gcc")
            .args(["-O1", "-Wall", "-pthread", "-o"])
            .arg(out)
            .arg(&src)
            .args(flags)
            .status()
            .expect("run gcc");
        assert!(st.success(), "gcc failed for {}", src.display());
    })
}

/// Build tests/progs/gohttp with CGO_ENABLED=0 (a static Go binary).
pub fn go_prog() -> PathBuf {
    go_named("gohttp")
}

/// Build tests/progs/NAME/main.go with CGO_ENABLED=0 (a static Go binary).
pub fn go_named(name: &str) -> PathBuf {
    build_once(name, |out| {
        require("go");
        let st = Command::new("go")
            .args(["build", "-o"])
            .arg(out)
            .arg(repo().join("tests/progs").join(name).join("main.go"))
            .env("CGO_ENABLED", "0")
            .env("GOFLAGS", "-mod=mod")
            .env("GOCACHE", out_dir().join("gocache"))
            .env("GOPATH", out_dir().join("gopath"))
            .env("GOTOOLCHAIN", "local")
            .status()
            .expect("run go build");
        assert!(st.success(), "go build failed for {name}");
    })
}

/// CLOCK_MONOTONIC in nanoseconds: the clock probes print their times in.
pub fn monotonic_ns() -> i64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes into a local timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec * 1_000_000_000 + t.tv_nsec
}

/// Whether the TCP table `table` (/proc/net/tcp, or /proc/PID/net/tcp for
/// that process's network namespace) has a socket in SYN_SENT toward `to`.
pub fn syn_sent_in(table: &str, to: std::net::SocketAddrV4) -> bool {
    let want = format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(to.ip().octets()),
        to.port()
    );
    std::fs::read_to_string(table)
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[2] == want && f[3] == "02"
        })
}

/// A child process that is killed (by PID) when dropped.
pub struct Proc(pub Child);

impl Proc {
    pub fn pid(&self) -> i32 {
        self.0.id() as i32
    }
    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid(), sig) };
    }
    /// The first line of its (piped) stdout; the rest is not read.
    pub fn first_line(&mut self) -> String {
        let mut line = String::new();
        if let Some(out) = self.0.stdout.take() {
            let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line);
        }
        line
    }

    /// Wait up to `limit` for the process to exit; its exit code (128+N for signals).
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<i32> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Some(st) = self.0.try_wait().expect("try_wait") {
                use std::os::unix::process::ExitStatusExt;
                return Some(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

/// Every live process below `pid` (through /proc/PID/task/*/children).
pub fn descendants_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        if out.len() > 4096 {
            break;
        }
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            for c in kids
                .split_whitespace()
                .filter_map(|c| c.parse::<i32>().ok())
            {
                out.push(c);
                stack.push(c);
            }
        }
    }
    out
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // The whole tree, not only the process we started: under user
            // notification a killed `trace` takes only its main program
            // with it (a daemonizing server's workers would stay).
            for p in descendants_of(self.0.id() as i32) {
                // SAFETY: plain kill of a process in the tree we started.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// A port nobody listens on, held for the life of the value: a bound TCP
/// socket that never listens (no SO_REUSEADDR), so connects to it are
/// refused and no other socket can take the port meanwhile.
pub struct ClosedPort {
    _sock: std::os::fd::OwnedFd,
    pub port: u16,
}

pub fn closed_port() -> ClosedPort {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: plain socket/bind/getsockname on a fresh descriptor we own.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket");
        let sock = std::os::fd::OwnedFd::from_raw_fd(fd);
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(
            libc::bind(
                sock.as_raw_fd(),
                (&sa as *const libc::sockaddr_in).cast(),
                len
            ),
            0,
            "bind"
        );
        let mut got: libc::sockaddr_in = std::mem::zeroed();
        let mut l = len;
        libc::getsockname(
            sock.as_raw_fd(),
            (&mut got as *mut libc::sockaddr_in).cast(),
            &mut l,
        );
        ClosedPort {
            _sock: sock,
            port: u16::from_be(got.sin_port),
        }
    }
}

/// Wait until something accepts on 127.0.0.1:port (bounded: 10 s).
pub fn wait_port(port: u16) {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listening on 127.0.0.1:{port} after 10 s");
}

/// python3 -m http.server on 127.0.0.1, serving a directory with index.html
/// containing `body`.
pub struct HttpServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
    _proc: Proc,
}

impl HttpServer {
    pub fn start(body: &str) -> HttpServer {
        require("python3");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("index.html"), body).expect("write index.html");
        // python binds port 0 itself and reports the port: no window in
        // which another test could take a port we picked.
        let script = "import functools,http.server,sys\n\
            class H(http.server.SimpleHTTPRequestHandler): log_message=lambda self,*a: None\n\
            s=http.server.ThreadingHTTPServer(('127.0.0.1',0),functools.partial(H,directory=sys.argv[1]))\n\
            print(s.server_address[1],flush=True)\n\
            s.serve_forever()\n";
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 http.server");
        let mut line = String::new();
        let out = child.stdout.take().expect("server stdout");
        BufReader::new(out)
            .read_line(&mut line)
            .expect("server port");
        let p = Proc(child);
        let port: u16 = line.trim().parse().expect("server printed its port");
        wait_port(port);
        HttpServer {
            port,
            dir,
            _proc: p,
        }
    }
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

/// A TCP listener in the test process that sends `banner` to each client and
/// counts accepted connections.
pub struct Banner {
    pub port: u16,
    peers: Arc<Mutex<Vec<std::net::SocketAddr>>>,
    /// Probe connections made so far.
    probes: Mutex<usize>,
}

impl Banner {
    pub fn start(banner: &'static str) -> Banner {
        Banner::serve(
            TcpListener::bind("127.0.0.1:0").expect("bind banner listener"),
            banner,
        )
    }

    /// Connections accepted so far, not counting our own probes. Exact: a
    /// probe connection is made and waited for first, and the accept queue
    /// is FIFO, so every connection that reached the listener before it
    /// has been accepted and counted. Probes come from PROBE_FROM, which
    /// the programs under test do not use: told apart by address, not by
    /// port (a program's connect may reuse a probe's port).
    pub fn count(&self) -> usize {
        let mut made = self.probes.lock().unwrap();
        let _probe = connect_from(PROBE_FROM, self.port);
        *made += 1;
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let peers = self.peers.lock().unwrap();
            let probes = peers.iter().filter(|p| p.ip() == PROBE_FROM).count();
            if probes >= *made {
                return peers.len() - probes;
            }
            drop(peers);
            assert!(Instant::now() < end, "listener never accepted the probe");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// The source address of Banner's own probe connections.
const PROBE_FROM: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 99));

/// A TCP connection from `from` (port chosen by the kernel) to 127.0.0.1:port.
fn connect_from(from: std::net::IpAddr, port: u16) -> TcpStream {
    use std::os::fd::FromRawFd;
    let std::net::IpAddr::V4(from) = from else {
        panic!("IPv4 only")
    };
    let sin = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip.octets()),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: socket/bind/connect on a fresh descriptor that the returned
    // TcpStream owns; the addresses are locals.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket");
        let stream = TcpStream::from_raw_fd(fd);
        let local = sin(from, 0);
        let r = libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len);
        assert_eq!(r, 0, "bind the probe to {from}");
        let peer = sin(std::net::Ipv4Addr::LOCALHOST, port);
        let r = libc::connect(fd, (&peer as *const libc::sockaddr_in).cast(), len);
        assert_eq!(r, 0, "probe connect: {}", std::io::Error::last_os_error());
        stream
    }
}

/// Run a command to completion with a time limit; panics on timeout.
pub fn run(cmd: &mut Command) -> Output {
    let mut child = Proc(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    let mut out = String::new();
    let mut err = String::new();
    let so = child.0.stdout.take();
    let se = child.0.stderr.take();
    let t1 = std::thread::spawn(move || {
        if let Some(mut s) = so {
            let _ = s.read_to_string(&mut out);
        }
        out
    });
    let t2 = std::thread::spawn(move || {
        if let Some(mut s) = se {
            let _ = s.read_to_string(&mut err);
        }
        err
    });
    let code = child
        .wait_timeout(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("command timed out: {cmd:?}"));
    let stdout = t1.join().unwrap_or_default();
    let stderr = t2.join().unwrap_or_default();
    use std::os::unix::process::ExitStatusExt;
    Output {
        status: std::process::ExitStatus::from_raw(code << 8),
        stdout: stdout.into_bytes(),
        stderr: stderr.into_bytes(),
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `appswitch trace --events FILE OPTS -- prog args`; the output and the events.
pub fn trace_with(
    opts: &[&std::ffi::OsStr],
    prog: impl AsRef<std::ffi::OsStr>,
    args: &[&str],
) -> (Output, Vec<serde_json::Value>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ev = dir.path().join("events.jsonl");
    let out = run(Command::new(appswitch())
        .arg("trace")
        .arg("--events")
        .arg(&ev)
        .args(opts)
        .arg("--")
        .arg(prog)
        .args(args));
    (out, read_events(&ev))
}

/// `appswitch trace --events FILE -- prog args`.
pub fn traced(
    prog: impl AsRef<std::ffi::OsStr>,
    args: &[&str],
) -> (Output, Vec<serde_json::Value>) {
    trace_with(&[], prog, args)
}

pub fn untraced(prog: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
    run(Command::new(prog).args(args))
}

pub fn read_events(path: &Path) -> Vec<serde_json::Value> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(_) => return Vec::new(),
    };
    BufReader::new(f)
        .lines()
        .map(|l| serde_json::from_str(&l.expect("read events")).expect("event is JSON"))
        .collect()
}

/// Events for `call`, optionally with the given address.
pub fn calls<'a>(
    events: &'a [serde_json::Value],
    call: &str,
    addr: Option<&str>,
) -> Vec<&'a serde_json::Value> {
    events
        .iter()
        .filter(|e| e["call"] == call && addr.is_none_or(|a| e["address"] == a))
        .collect()
}

/// A TCP listener bound to a free port below the ephemeral range (so that a
/// client can never connect to itself through it).
pub fn low_port_listener() -> TcpListener {
    let seed = std::process::id() as u64 ^ Instant::now().elapsed().as_nanos() as u64;
    for i in 0..2000u64 {
        let port = 20000 + ((seed.wrapping_mul(2654435761).wrapping_add(i * 7919)) % 12000) as u16;
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            return l;
        }
    }
    panic!("no free port in 20000-32000");
}

impl Banner {
    /// Like `start`, on a port below the ephemeral range.
    pub fn start_low(banner: &'static str) -> Banner {
        Banner::serve(low_port_listener(), banner)
    }

    fn serve(l: TcpListener, banner: &'static str) -> Banner {
        // A deep accept queue (std listens with 128): a burst of connects
        // faster than this thread accepts must not overflow it, or a
        // client would see a connection the listener never counts.
        // SAFETY: listen(2) again on a listening socket we own only
        // changes its backlog.
        let r = unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&l), 4096) };
        assert_eq!(r, 0, "listen backlog");
        let port = l.local_addr().expect("local addr").port();
        let peers = Arc::new(Mutex::new(Vec::new()));
        let seen = peers.clone();
        std::thread::spawn(move || {
            for mut s in l.incoming().flatten() {
                if let Ok(peer) = s.peer_addr() {
                    seen.lock().unwrap().push(peer);
                }
                let _ = s.write_all(banner.as_bytes());
            }
        });
        Banner {
            port,
            peers,
            probes: Mutex::new(0),
        }
    }
}

/// A UDP socket on 127.0.0.1 that counts the datagrams it receives.
/// Loopback delivery completes inside the sender's send call, so once the
/// sender has exited, draining the queue counts everything it sent.
pub struct UdpCounter {
    pub port: u16,
    sock: std::net::UdpSocket,
    received: usize,
}

impl UdpCounter {
    pub fn start() -> UdpCounter {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        sock.set_nonblocking(true).expect("nonblocking");
        let port = sock.local_addr().expect("local addr").port();
        UdpCounter {
            port,
            sock,
            received: 0,
        }
    }
    pub fn count(&mut self) -> usize {
        let mut buf = [0u8; 2048];
        while self.sock.recv(&mut buf).is_ok() {
            self.received += 1;
        }
        self.received
    }
}

/// Write a policy file and return its directory (kept alive by the caller).
pub fn policy_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("policy");
    std::fs::write(&p, text).expect("write policy");
    (dir, p)
}

/// `appswitch trace --policy P [extra] -- prog args`, with events.
pub fn policed(
    policy: &Path,
    extra: &[&str],
    prog: impl AsRef<std::ffi::OsStr>,
    args: &[&str],
) -> (Output, Vec<serde_json::Value>) {
    let mut opts: Vec<&std::ffi::OsStr> = vec!["--policy".as_ref(), policy.as_os_str()];
    opts.extend(extra.iter().map(|e| std::ffi::OsStr::new(*e)));
    trace_with(&opts, prog, args)
}

/// Poll `f` every 10 ms until it holds; panics after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A daemon config in `dir`: its socket, mount (DIR/mnt) and state there.
pub fn daemon_config(dir: &Path) -> PathBuf {
    let config = dir.join("appswitch.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nsocket = \"{0}/sock\"\nmount = \"{0}/mnt\"\nstate_dir = \"{0}/state\"\n",
            dir.display()
        ),
    )
    .unwrap();
    config
}

/// Stop a daemon (SIGTERM, then wait) and detach its mount: a crashed
/// daemon leaves a dead one, which would keep the temp dir from going.
pub fn stop_daemon(daemon: Option<Proc>, mnt: &Path) {
    if let Some(mut p) = daemon {
        p.signal(libc::SIGTERM);
        let _ = p.wait_timeout(Duration::from_secs(5));
    }
    let _ = Command::new("umount")
        .arg("-l")
        .arg(mnt)
        .stderr(Stdio::null())
        .status();
}
