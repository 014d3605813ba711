//! Balancing decided in each trace process (issue 11): round robin exact
//! across client programs, least connections seeing every program's
//! connections, failover inside the connect() when a backend refuses, and
//! one pick per socket for clients that connect() again to check.
//!
//! As in tests/services.rs, everything runs in a network namespace the test
//! creates (only `lo`, no route out); the VIPs exist nowhere else.

mod common;
use common::netns::Host;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, ChildStdout, Stdio};
use std::time::Duration;

/// A traced python3 program driven by lines on its stdin, answering one line each.
struct Driven {
    proc: Proc,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Driven {
    fn start(h: &Host, opts: &[&str], code: &str, args: &[&str]) -> Driven {
        let mut a = vec!["-c", code];
        a.extend_from_slice(args);
        let mut p = Proc(
            h.trace(opts, "python3", &a)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let input = p.0.stdin.take().unwrap();
        let output = BufReader::new(p.0.stdout.take().unwrap());
        Driven {
            proc: p,
            input,
            output,
        }
    }

    fn send(&mut self, cmd: &str) {
        writeln!(self.input, "{cmd}").unwrap();
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.output.read_line(&mut l).unwrap();
        l.trim().to_string()
    }

    fn ask(&mut self, cmd: &str) -> String {
        self.send(cmd);
        self.line()
    }
}

/// A service on port 7000 that sends its name to every connection; with
/// `hold`, it keeps them open. `close` closes its listener (the program
/// runs on), `count` prints how many connections it holds.
const SERVER: &str = "import socket,sys,select\n\
name,hold=sys.argv[1],sys.argv[2]=='hold'\n\
l=socket.socket(); l.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
l.bind(('0.0.0.0',7000)); l.listen(128); print('ready',flush=True)\n\
held=[]\n\
while True:\n\
\x20   r,_,_=select.select([x for x in (l,sys.stdin) if x],[],[])\n\
\x20   if sys.stdin in r:\n\
\x20       cmd=sys.stdin.readline().strip()\n\
\x20       if cmd=='close': l.close(); l=None; print('closed',flush=True)\n\
\x20       elif cmd=='count': print(len(held),flush=True)\n\
\x20       else: sys.exit(0)\n\
\x20   if l is not None and l in r:\n\
\x20       c,_=l.accept(); c.sendall((name+'\\n').encode())\n\
\x20       if hold: held.append(c)\n\
\x20       else: c.close()\n";

/// A client of ADDR PORT: `conn N` makes N connections one after another
/// (closing each), `hold N` keeps them open, `check N` connects the way
/// hiredis does (non-blocking connect, wait, connect() again to learn the
/// result: 0 once, as untraced, then EISCONN), `elsewhere N` connects, then
/// connect()s the same socket to 127.0.0.1:9 (the kernel's one 0 for the
/// connection it completed, as untraced: a socket with a timeout connects
/// without blocking; it stays where it is, and still shows the service as
/// its peer) and to the service again (EISCONN).
/// Each command prints what every connection read (or its errno).
const CLIENT: &str = "import socket,sys,errno,select\n\
addr=(sys.argv[1],int(sys.argv[2])); held=[]\n\
for line in sys.stdin:\n\
\x20   cmd,n=line.split(); out=[]\n\
\x20   for i in range(int(n)):\n\
\x20       s=socket.socket(); s.settimeout(5)\n\
\x20       try:\n\
\x20           if cmd=='check':\n\
\x20               s.setblocking(False); e=s.connect_ex(addr)\n\
\x20               assert e==errno.EINPROGRESS or e==0, e\n\
\x20               select.select([],[s],[],5); e=s.connect_ex(addr)\n\
\x20               if e!=0: raise OSError(e,'second connect')\n\
\x20               e=s.connect_ex(addr)\n\
\x20               if e!=errno.EISCONN: raise OSError(e,'third connect')\n\
\x20               s.settimeout(5)\n\
\x20           elif cmd=='elsewhere':\n\
\x20               s.connect(addr); e=s.connect_ex(('127.0.0.1',9))\n\
\x20               if e!=0: raise OSError(e,'connect elsewhere')\n\
\x20               if s.getpeername()!=addr: raise OSError(errno.EDOM,'peer')\n\
\x20               e=s.connect_ex(addr)\n\
\x20               if e!=errno.EISCONN: raise OSError(e,'connect again')\n\
\x20           else: s.connect(addr)\n\
\x20           out.append(s.recv(64).decode().strip() or 'EOF')\n\
\x20       except OSError as e: out.append(errno.errorcode.get(e.errno,'timeout'))\n\
\x20       if cmd=='hold': held.append(s)\n\
\x20       else: s.close()\n\
\x20   print(' '.join(out),flush=True)\n";

fn server(h: &Host, opts: &[&str], name: &str, hold: bool) -> Driven {
    let mut s = Driven::start(
        h,
        opts,
        SERVER,
        &[name, if hold { "hold" } else { "close" }],
    );
    assert_eq!(s.line(), "ready");
    s
}

fn client(h: &Host) -> Driven {
    Driven::start(h, &[], CLIENT, &["10.1.0.1", "7000"])
}

/// Services A and B on 10.1.0.1:7000, both up.
fn two_servers(h: &Host) -> (Driven, Driven) {
    let ip = ["--ip", "10.1.0.1"];
    let a = server(h, &ip, "A", false);
    let b = server(h, &ip, "B", false);
    h.wait_backends("10.1.0.1:7000", 2);
    (a, b)
}

fn count(words: &str, w: &str) -> usize {
    words.split_whitespace().filter(|x| *x == w).count()
}

#[test]
fn round_robin_is_exact_across_concurrent_client_programs() {
    let h = Host::start();
    let (_a, _b) = two_servers(&h);
    let mut clients: Vec<Driven> = (0..3).map(|_| client(&h)).collect();
    // All three at once: their connects interleave.
    for c in &mut clients {
        c.send("conn 20");
    }
    let all: Vec<String> = clients.iter_mut().map(Driven::line).collect();
    let joined = all.join(" ");
    assert_eq!(count(&joined, "A"), 30, "{all:?}");
    assert_eq!(count(&joined, "B"), 30, "{all:?}");
}

#[test]
fn least_connections_counts_connections_held_by_other_programs() {
    let h = Host::start();
    let ip = ["--ip", "10.1.0.1", "--lb", "leastconn"];
    let mut a = server(&h, &ip, "A", true);
    h.wait_backends("10.1.0.1:7000", 1);
    // The first program holds three connections, all to A (alone so far).
    let mut first = client(&h);
    assert_eq!(first.ask("hold 3"), "A A A");
    let mut b = server(&h, &ip, "B", true);
    h.wait_backends("10.1.0.1:7000", 2);
    assert_eq!(a.ask("count"), "3");
    // Another program: B has none, A has three, so B gets the next three.
    let mut second = client(&h);
    assert_eq!(second.ask("hold 3"), "B B B");
    // Then they are even: one each.
    let before = h.services();
    let next = second.ask("hold 2");
    assert_eq!(
        (count(&next, "A"), count(&next, "B")),
        (1, 1),
        "{next}\nBEFORE {before}\nAFTER {}",
        h.services()
    );
    assert_eq!(b.ask("count"), "4");
}

#[test]
fn a_backend_that_refuses_costs_the_client_nothing() {
    let h = Host::start();
    let ip = ["--ip", "10.1.0.1"];
    let mut a = server(&h, &ip, "A", false);
    let mut b = server(&h, &ip, "B", false);
    h.wait_backends("10.1.0.1:7000", 2);
    let mut c = client(&h);
    let before = c.ask("conn 10");
    assert_eq!(
        (count(&before, "A"), count(&before, "B")),
        (5, 5),
        "{before}"
    );
    // A stops listening (its program runs on): until the daemon notices,
    // connects sent there are refused and tried again on B, inside the call.
    assert_eq!(a.ask("close"), "closed");
    let closed = std::time::Instant::now();
    let after = c.ask("conn 40");
    assert_eq!(count(&after, "B"), 40, "every connect reached B: {after}");
    // The daemon notices on its own time (every 50 ms), with no connect's help.
    wait_until("A to leave the service", Duration::from_secs(2), || {
        h.backends("10.1.0.1:7000").len() == 1
    });
    let took = closed.elapsed();
    eprintln!("a closed listener left the service after {took:?}");
    assert!(took < Duration::from_millis(1000), "{took:?}");
    // Nothing listens at all: the program gets ECONNREFUSED, as untraced.
    assert_eq!(b.ask("close"), "closed");
    assert_eq!(c.ask("conn 3"), "ECONNREFUSED ECONNREFUSED ECONNREFUSED");
}

#[test]
fn a_client_that_connects_again_to_check_keeps_its_backend() {
    let h = Host::start();
    let (_a, _b) = two_servers(&h);
    let mut c = client(&h);
    // Each socket connects twice; only the first picks, so they alternate.
    let got = c.ask("check 10");
    let words: Vec<&str> = got.split_whitespace().collect();
    assert_eq!(words.len(), 10, "{got}");
    for w in words.windows(2) {
        assert_ne!(w[0], w[1], "alternation: {got}");
    }
    assert!(words.iter().all(|w| *w == "A" || *w == "B"), "{got}");
    // A connect elsewhere on a connected socket leaves it where it was:
    // same peer shown, no new pick.
    let more = format!("{} {}", c.ask("elsewhere 4"), c.ask("conn 2"));
    let all: Vec<&str> = words
        .iter()
        .copied()
        .chain(more.split_whitespace())
        .collect();
    assert_eq!(all.len(), 16, "{got} {more}");
    for w in all.windows(2) {
        assert_ne!(w[0], w[1], "alternation: {got} {more}");
    }
}

/// A service that listens with a backlog of 1 and accepts only when told
/// (`accept N`), so its accept queue can be filled.
const SLOW: &str = "import socket,sys\n\
l=socket.socket(); l.bind(('0.0.0.0',7000)); l.listen(1); print('ready',flush=True)\n\
held=[]\n\
for line in sys.stdin:\n\
\x20   for i in range(int(line.split()[1])): c,_=l.accept(); held.append(c)\n\
\x20   print('accepted',len(held),flush=True)\n";

#[test]
fn a_backend_with_a_full_accept_queue_leaves_rotation_until_it_drains() {
    let h = Host::start();
    let ip = ["--ip", "10.1.0.1"];
    let mut slow = Driven::start(&h, &ip, SLOW, &[]);
    assert_eq!(slow.line(), "ready");
    let _b = server(&h, &ip, "B", false);
    h.wait_backends("10.1.0.1:7000", 2);
    let pid = format!("pid={}", common::netns::tracee(&slow.proc));
    let slow_addr = h
        .backends("10.1.0.1:7000")
        .iter()
        .find(|l| l.contains(&pid))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        .expect("the slow backend's line");
    let (host, port) = slow_addr.rsplit_once(':').unwrap();
    let filler = format!(
        "import socket,sys\n\
         ss=[]\n\
         for i in range(2):\n\
         \x20   s=socket.socket(); s.setblocking(False); s.connect_ex(('{host}',{port})); ss.append(s)\n\
         print('filled',flush=True); sys.stdin.readline()\n"
    );
    let mut fill = Proc(
        h.ns.cmd("python3")
            .args(["-c", &filler])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // (It prints nothing after "filled".)
    assert_eq!(fill.first_line().trim(), "filled");
    wait_until(
        "the slow backend to be full",
        Duration::from_secs(5),
        || {
            h.backends("10.1.0.1:7000")
                .iter()
                .any(|l| l.contains(&slow_addr) && l.contains("health=full"))
        },
    );
    // While it is full, every new connection goes to B.
    let mut c = client(&h);
    let got = c.ask("conn 6");
    assert_eq!(count(&got, "B"), 6, "{got}");
    // Drained: back in rotation.
    assert_eq!(slow.ask("accept 2"), "accepted 2");
    wait_until("the slow backend to drain", Duration::from_secs(5), || {
        h.backends("10.1.0.1:7000")
            .iter()
            .any(|l| l.contains(&slow_addr) && l.contains("health=up"))
    });
    drop(fill);
}

#[test]
fn traced_backends_survive_a_daemon_restart() {
    let mut h = Host::start();
    let (_a, _b) = two_servers(&h);
    // SIGTERM (a clean stop), then a new daemon: the tracers re-register
    // their listeners, and the new shared table balances them.
    if let Some(mut d) = h.daemon.take() {
        d.signal(libc::SIGTERM);
        assert!(d.wait_timeout(Duration::from_secs(10)).is_some());
    }
    h.launch();
    h.wait_backends("10.1.0.1:7000", 2);
    let mut c = client(&h);
    let got = c.ask("conn 10");
    assert_eq!((count(&got, "A"), count(&got, "B")), (5, 5), "{got}");
}

#[test]
fn a_refusing_backend_does_not_skew_the_rotation() {
    let h = Host::start();
    // A backend address that exists here but where nothing listens (and that
    // the daemon cannot check: it stays in rotation), then two live ones.
    h.ns.ip(&["addr", "add", "10.2.0.5/32", "dev", "lo"]);
    let (_b, pb) = h.ns.banner_server("127.0.0.1", "B");
    let (_c, pc) = h.ns.banner_server("127.0.0.1", "C");
    std::fs::write(
        h.file("services"),
        format!("add web 10.1.0.9:80 -> 10.2.0.5:9,127.0.0.1:{pb},127.0.0.1:{pc}\n"),
    )
    .unwrap();
    h.wait_backends("10.1.0.9:80", 2);
    let mut c = Driven::start(&h, &[], CLIENT, &["10.1.0.9", "80"]);
    let got = c.ask("conn 24");
    // Every connect lands; the dead backend's turns are shared fairly.
    assert_eq!((count(&got, "B"), count(&got, "C")), (12, 12), "{got}");
}

#[test]
fn a_client_with_a_vip_does_not_slow_other_clients_accepts() {
    let h = Host::start();
    let _a = server(&h, &["--ip", "10.1.0.1"], "A", false);
    h.wait_backends("10.1.0.1:7000", 1);
    // A client with a VIP of its own connects all the time...
    let looping = "import socket,time\n\
        end=time.time()+20\n\
        while time.time()<end:\n\
        \x20   s=socket.create_connection(('10.1.0.1',7000)); s.recv(8); s.close(); time.sleep(0.005)\n";
    let _vip = Proc(
        h.trace(&["--ip", "10.1.0.2"], "python3", &["-c", looping])
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(300));
    // ... and 100 connects of a client without one are not held up by it
    // (the server looks for a record only while a VIP client is mid-connect).
    let mut c = client(&h);
    let t = std::time::Instant::now();
    let got = c.ask("conn 100");
    let took = t.elapsed();
    assert_eq!(count(&got, "A"), 100, "{got}");
    assert!(
        took < Duration::from_millis(1500),
        "100 connects took {took:?}"
    );
}
