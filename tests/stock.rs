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
