//! Stock Debian servers under `trace --ip` with their default settings, two
//! replicas each, reached by name from traced stock clients (issue 12).
//! Each test runs in a network namespace of its own (tests/common/netns.rs).

mod common;
use common::netns::Host;
use common::*;
use std::process::Stdio;
use std::time::Duration;

/// A traced replica of a stock server (its output discarded).
fn replica(h: &Host, ip: &str, name: &str, prog: &str, args: &[&str], dir: &str) -> Proc {
    let d = h.dir.path().join(dir);
    std::fs::create_dir_all(&d).unwrap();
    Proc(
        h.trace(&["--ip", ip, "--name", name], require(prog), args)
            .current_dir(&d)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Backends of `vip` that are up (a program may listen on IPv4 and IPv6).
fn up(h: &Host, vip: &str) -> usize {
    h.backends(vip)
        .iter()
        .filter(|l| l.contains("health=up"))
        .count()
}

#[test]
fn redis_with_its_default_settings_alternates_between_replicas() {
    let h = Host::start();
    // Default settings: `bind * -::*` (0.0.0.0 and an IPv6-only [::]),
    // port 6379, protected mode. Only the working directory differs.
    let _a = replica(
        &h,
        "10.1.0.1",
        "cache",
        "redis-server",
        &["--save", ""],
        "ra",
    );
    let _b = replica(
        &h,
        "10.1.0.1",
        "cache",
        "redis-server",
        &["--save", ""],
        "rb",
    );
    wait_until("both redis replicas", Duration::from_secs(10), || {
        up(&h, "10.1.0.1:6379") == 4
    });
    let cli = require("redis-cli");
    let dirs: Vec<String> = (0..6)
        .map(|_| {
            let o = run(&mut h.trace(&[], &cli, &["-h", "cache", "config", "get", "dir"]));
            assert!(o.status.success(), "{o:?}");
            stdout(&o).lines().nth(1).unwrap_or("").to_string()
        })
        .collect();
    for w in dirs.windows(2) {
        assert_ne!(w[0], w[1], "redis-cli's requests alternate: {dirs:?}");
    }
    assert!(
        dirs.iter()
            .all(|d| d.ends_with("/ra") || d.ends_with("/rb")),
        "{dirs:?}"
    );
    // A value written through one replica is there on that one only: the
    // data path is the real connection, with no proxy in between.
    let o = run(&mut h.trace(&[], &cli, &["-h", "cache", "ping"]));
    assert_eq!(stdout(&o).trim(), "PONG");
}

#[test]
fn memcached_with_its_default_settings_alternates_between_replicas() {
    let h = Host::start();
    let _a = replica(&h, "10.1.0.1", "mc", "memcached", &["-u", "root"], "ma");
    let _b = replica(&h, "10.1.0.1", "mc", "memcached", &["-u", "root"], "mb");
    wait_until("both memcached replicas", Duration::from_secs(10), || {
        up(&h, "10.1.0.1:11211") >= 2
    });
    // Each replica's pid from `stats`, over a new connection each time.
    let code = "import socket\n\
        for i in range(4):\n\
        \x20   s=socket.create_connection(('mc',11211),timeout=5); s.sendall(b'stats\\r\\n')\n\
        \x20   d=b''\n\
        \x20   while not d.endswith(b'END\\r\\n'): d+=s.recv(4096)\n\
        \x20   print([l.split()[2] for l in d.decode().splitlines() if l.startswith('STAT pid ')][0], flush=True)\n\
        \x20   s.close()\n";
    let o = run(&mut h.trace(&[], "python3", &["-c", code]));
    let pids: Vec<String> = stdout(&o).lines().map(|s| s.trim().to_string()).collect();
    assert_eq!(pids.len(), 4, "{o:?}");
    assert_ne!(pids[0], pids[1], "{pids:?}");
    assert_eq!(pids[0], pids[2], "{pids:?}");
    assert_eq!(pids[1], pids[3], "{pids:?}");
}

#[test]
fn nginx_listening_on_ipv6_and_ipv4_serves_both_families() {
    let h = Host::start();
    // Debian's default site listens on `80` and `[::]:80` (IPv6 only).
    let conf = |name: &str| {
        let d = h.dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        let c = d.join("nginx.conf");
        std::fs::write(
            &c,
            format!(
                "daemon off; master_process on; worker_processes 2; pid {0}/nginx.pid;\n\
                 error_log stderr crit;\n\
                 events {{ worker_connections 64; }}\n\
                 http {{ access_log off;\n\
                   client_body_temp_path {0}/b; proxy_temp_path {0}/p; fastcgi_temp_path {0}/f;\n\
                   uwsgi_temp_path {0}/u; scgi_temp_path {0}/s;\n\
                   server {{ listen 80; listen [::]:80; location / {{ return 200 \"{1}\\n\"; }} }} }}\n",
                d.display(),
                name
            ),
        )
        .unwrap();
        c.display().to_string()
    };
    let (ca, cb) = (conf("na"), conf("nb"));
    let _a = replica(
        &h,
        "10.1.0.1",
        "web",
        "nginx",
        &["-c", &ca, "-e", "stderr"],
        "na",
    );
    let _b = replica(
        &h,
        "10.1.0.1",
        "web",
        "nginx",
        &["-c", &cb, "-e", "stderr"],
        "nb",
    );
    wait_until(
        "both nginx replicas, both families",
        Duration::from_secs(10),
        || up(&h, "10.1.0.1:80") == 4,
    );
    let bodies: Vec<String> = (0..4)
        .map(|_| stdout(&h.curl(&[], "http://web/")).trim().to_string())
        .collect();
    assert!(
        bodies.iter().any(|b| b == "na") && bodies.iter().any(|b| b == "nb"),
        "{bodies:?}"
    );
    // An IPv6 client through the VIP, v4-mapped.
    let code = "import socket\n\
        s=socket.socket(socket.AF_INET6); s.settimeout(5); s.connect(('::ffff:10.1.0.1',80))\n\
        s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n'); d=b''\n\
        while True:\n\
        \x20   x=s.recv(4096)\n\
        \x20   if not x: break\n\
        \x20   d+=x\n\
        print(d.decode().split('\\r\\n\\r\\n',1)[1].strip())\n";
    let o = run(&mut h.trace(&[], "python3", &["-c", code]));
    let body = stdout(&o).trim().to_string();
    assert!(body == "na" || body == "nb", "{o:?}");
}

/// Backend lines of `vip` in `services` (UDP backends are not health-checked).
fn backend_lines(h: &Host, vip: &str) -> usize {
    h.backends(vip).len()
}

#[test]
fn a_udp_service_keeps_flows_and_replies_come_from_its_vip() {
    let h = Host::start();
    let server = "import socket,sys\n\
        s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0',7777))\n\
        print(s.getsockname(), flush=True)\n\
        while True:\n\
        \x20   d,a=s.recvfrom(512); s.sendto(sys.argv[1].encode()+b' '+d, a)\n";
    let start = |name: &str| {
        let mut p = Proc(
            h.trace(
                &["--ip", "10.1.0.1", "--name", "echo"],
                "python3",
                &["-c", server, name],
            )
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
        );
        assert_eq!(p.first_line().trim(), "('0.0.0.0', 7777)");
        p
    };
    let _a = start("A");
    let _b = start("B");
    wait_until("two UDP backends", Duration::from_secs(10), || {
        backend_lines(&h, "10.1.0.1:7777") == 2
    });
    assert!(h.services().contains("proto=udp"), "{}", h.services());
    // Four sockets, two datagrams each, by name: a socket keeps its backend,
    // sockets alternate, and every reply comes from the VIP.
    let client = "import socket\n\
        for i in range(4):\n\
        \x20   s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)\n\
        \x20   got=[]\n\
        \x20   for j in range(2):\n\
        \x20       s.sendto(b'x', ('echo',7777)); d,a=s.recvfrom(512); got.append((d.split()[0].decode(), a))\n\
        \x20   print(got[0][0], got[1][0], got[0][1], got[1][1], flush=True)\n\
        m=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); m.settimeout(5); m.sendto(b'z', ('echo',7777))\n\
        print('recvmsg', m.recvmsg(512)[3], flush=True)\n\
        c=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(5); c.connect(('echo',7777))\n\
        c.send(b'y'); d=c.recv(512); print('connected', c.getpeername(), flush=True)\n";
    let o = run(&mut h.trace(&[], "python3", &["-c", client]));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "{o:?}");
    let firsts: Vec<&str> = lines[..4]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    for (k, l) in lines[..4].iter().enumerate() {
        let w: Vec<&str> = l.splitn(3, ' ').collect();
        assert_eq!(w[0], w[1], "a flow keeps its backend: {l}");
        assert_eq!(
            w[2], "('10.1.0.1', 7777) ('10.1.0.1', 7777)",
            "replies come from the VIP (socket {k})"
        );
    }
    for p in firsts.windows(2) {
        assert_ne!(p[0], p[1], "sockets alternate: {firsts:?}");
    }
    assert_eq!(lines[4], "recvmsg ('10.1.0.1', 7777)");
    assert_eq!(lines[5], "connected ('10.1.0.1', 7777)");

    // One socket, two UDP services: a flow each, and each reply from its own
    // VIP; connect() to the other service moves the socket there.
    let mut c = Proc(
        h.trace(
            &["--ip", "10.1.0.2", "--name", "other"],
            "python3",
            &["-c", server, "C"],
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap(),
    );
    assert_eq!(c.first_line().trim(), "('0.0.0.0', 7777)");
    wait_until("the other UDP service", Duration::from_secs(10), || {
        backend_lines(&h, "10.1.0.2:7777") == 1
    });
    let two = "import socket\n\
        s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)\n\
        out=[]\n\
        for vip in ('10.1.0.1','10.1.0.2','10.1.0.1'):\n\
        \x20   s.sendto(b'x', (vip,7777)); d,a=s.recvfrom(512); out.append(d.split()[0].decode()+'@'+a[0])\n\
        s.connect(('10.1.0.2',7777)); s.send(b'y'); out.append(s.recv(512).split()[0].decode())\n\
        print(' '.join(out), flush=True)\n";
    let o = run(&mut h.trace(&[], "python3", &["-c", two]));
    let w: Vec<String> = stdout(&o).split_whitespace().map(str::to_string).collect();
    assert_eq!(w.len(), 4, "{o:?}");
    assert_eq!(w[0], w[2], "the first flow kept its backend: {w:?}");
    assert!(w[0].ends_with("@10.1.0.1") && w[1] == "C@10.1.0.2", "{w:?}");
    assert_eq!(w[3], "C", "connect() moved the socket to the other service");
}

#[test]
fn a_dns_server_behind_a_vip_answers_by_name_over_udp_and_tcp() {
    let h = Host::start();
    let dnsmasq = require("dnsmasq");
    let args = [
        "-d",
        "-k",
        "--user=root",
        "--port=53",
        "--no-resolv",
        "--no-hosts",
        "--pid-file=",
        "--address=/svc.test/10.9.9.9",
        // Its own sockets per interface address: with wildcard sockets it
        // checks a TCP connection's local address (the VIP, under --ip)
        // against the interfaces, and the VIP is on none (docs/SERVICES.md).
        "--bind-interfaces",
        "--interface=lo",
    ];
    let _ns = replica(
        &h,
        "10.1.0.5",
        "ns",
        dnsmasq.to_str().unwrap(),
        &args,
        "dns",
    );
    wait_until("dnsmasq on UDP and TCP", Duration::from_secs(10), || {
        let s = h.services();
        s.contains("10.1.0.5:53 ") && s.contains("proto=udp")
    });
    // A query for svc.test (type A), by the server's name, over UDP then TCP.
    let code = "import socket,struct\n\
        q=struct.pack('>HHHHHH',0x1234,0x0100,1,0,0,0)+b'\\x03svc\\x04test\\x00'+struct.pack('>HH',1,1)\n\
        u=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(5)\n\
        u.sendto(q, ('ns',53)); r,a=u.recvfrom(512)\n\
        print('udp', a, socket.inet_ntoa(r[-4:]), flush=True)\n\
        t=socket.create_connection(('ns',53), timeout=5); t.sendall(struct.pack('>H',len(q))+q)\n\
        n=struct.unpack('>H', t.recv(2))[0]; r=b''\n\
        while len(r)<n: r+=t.recv(n-len(r))\n\
        print('tcp', t.getpeername(), socket.inet_ntoa(r[-4:]), flush=True)\n";
    let o = run(&mut h.trace(&[], "python3", &["-c", code]));
    assert_eq!(
        stdout(&o),
        "udp ('10.1.0.5', 53) 10.9.9.9\ntcp ('10.1.0.5', 53) 10.9.9.9\n",
        "{o:?}"
    );
}
