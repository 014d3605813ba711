//! Cluster mode: three hosts sharing one service table through a real etcd.
//!
//! The hosts are network namespaces a, b, c, each with `eth0` on a bridge in
//! a fourth namespace (the switch, which also runs etcd). Addresses are
//! 10.9.0.1-3 and 10.9.0.254; the virtual IPs are 10.1.0.x. All of them live
//! only inside these namespaces, which have no route out.

mod common;
use common::netns::{kill_program, Host, Netns};
use common::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

const TTL: u64 = 2;
const ETCD: &str = "http://10.9.0.254:2379";

/// The switch: a bridge, and etcd on it.
struct Switch {
    ns: Netns,
    etcd: Option<Proc>,
    data: tempfile::TempDir,
}

impl Switch {
    fn new() -> Switch {
        let ns = Netns::new();
        ns.ip(&["link", "add", "br0", "type", "bridge"]);
        ns.ip(&["addr", "add", "10.9.0.254/24", "dev", "br0"]);
        ns.ip(&["link", "set", "br0", "up"]);
        let mut s = Switch {
            ns,
            etcd: None,
            data: tempfile::tempdir().unwrap(),
        };
        s.start_etcd();
        s
    }

    /// A host namespace joined to the bridge as 10.9.0.N.
    fn host(&self, n: u8) -> Netns {
        let h = Netns::new();
        let port = format!("v{n}");
        h.ip(&[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            &self.ns.name,
        ]);
        h.ip(&["addr", "add", &format!("10.9.0.{n}/24"), "dev", "eth0"]);
        h.ip(&["link", "set", "eth0", "up"]);
        self.ns.ip(&["link", "set", &port, "master", "br0"]);
        self.ns.ip(&["link", "set", &port, "up"]);
        h
    }

    fn start_etcd(&mut self) {
        let etcd = require("etcd");
        let dir = self.data.path().join("etcd");
        let p = Proc(
            self.ns
                .cmd(etcd)
                .args(["--name", "t", "--data-dir"])
                .arg(&dir)
                .args([
                    "--listen-client-urls",
                    ETCD,
                    "--advertise-client-urls",
                    ETCD,
                    "--listen-peer-urls",
                    "http://127.0.0.1:2380",
                    "--initial-advertise-peer-urls",
                    "http://127.0.0.1:2380",
                    "--initial-cluster",
                    "t=http://127.0.0.1:2380",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        self.etcd = Some(p);
        let curl = require("curl");
        wait_until("etcd", Duration::from_secs(20), || {
            let o =
                run(self
                    .ns
                    .cmd(&curl)
                    .args(["-s", "--max-time", "1", &format!("{ETCD}/health")]));
            stdout(&o).contains("true")
        });
    }

    fn stop_etcd(&mut self) {
        if let Some(mut p) = self.etcd.take() {
            p.signal(libc::SIGTERM);
            assert!(p.wait_timeout(Duration::from_secs(10)).is_some());
        }
    }
}

fn cluster_host(sw: &Switch, n: u8, name: &str, by_flag: bool) -> Host {
    let mut extra =
        format!("[cluster]\nnode = \"{name}\"\naddress = \"10.9.0.{n}\"\nttl = {TTL}\n");
    let flag = format!("etcd={ETCD}");
    let args: Vec<&str> = if by_flag {
        vec!["--cluster", &flag]
    } else {
        extra.push_str(&format!("etcd = [\"{ETCD}\"]\n"));
        vec![]
    };
    let h = Host::new(sw.host(n), &extra, &args);
    wait_until(&format!("{name} to join"), Duration::from_secs(10), || {
        std::fs::read_to_string(h.file("ctl")).is_ok_and(|s| s.contains("cluster=connected"))
    });
    h
}

fn hosts_of(h: &Host, vip: &str) -> Vec<String> {
    let mut v: Vec<String> = h
        .backends(vip)
        .iter()
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("host="))
                .map(str::to_string)
        })
        .collect();
    v.sort();
    v
}

/// The bodies of `n` traced curls to the VIP from `h`.
fn fetch_vip(h: &Host, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| stdout(&h.curl(&[], "http://10.1.0.1:8000/")))
        .collect()
}

#[test]
fn one_service_table_across_three_hosts() {
    let mut sw = Switch::new();
    let mut a = cluster_host(&sw, 1, "a", false);
    let b = cluster_host(&sw, 2, "b", true);
    let c = cluster_host(&sw, 3, "c", false);
    let vip = "10.1.0.1:8000";
    let ip = ["--ip", "10.1.0.1", "--name", "web"];
    let mut web_a = a.web(&ip, 8000, "A");
    let _web_c = c.web(&ip, 8000, "C");
    wait_until("b to see both backends", Duration::from_secs(10), || {
        hosts_of(&b, vip) == ["a", "c"]
    });
    // The backends are published with their hosts' addresses.
    let lines = b.backends(vip).join("\n");
    assert!(
        lines.contains("10.9.0.1:") && lines.contains("10.9.0.3:"),
        "{lines}"
    );

    // A traced client on b reaches both, by VIP and by name, straight to
    // their real addresses on the other hosts.
    let bodies = fetch_vip(&b, 4);
    assert!(
        bodies.contains(&"A".into()) && bodies.contains(&"C".into()),
        "{bodies:?}"
    );
    let o = b.curl(&[], "http://web:8000/");
    assert!(o.status.success(), "{o:?}");

    // Host a dies (daemon and program): its backend leaves within the TTL.
    a.kill9();
    kill_program(&mut web_a);
    let t0 = Instant::now();
    wait_until(
        "a's backend to expire",
        Duration::from_secs(TTL + 8),
        || hosts_of(&b, vip) == ["c"],
    );
    let took = t0.elapsed();
    assert!(
        took <= Duration::from_secs(TTL + 2),
        "expired after {took:?}"
    );
    for _ in 0..3 {
        assert_eq!(stdout(&b.curl(&[], "http://10.1.0.1:8000/")), "C");
    }

    // a comes back.
    a.launch();
    wait_until("a to rejoin", Duration::from_secs(10), || {
        std::fs::read_to_string(a.file("ctl")).is_ok_and(|s| s.contains("cluster=connected"))
    });
    let _web_a = a.web(&ip, 8000, "A");
    wait_until("b to see a again", Duration::from_secs(10), || {
        hosts_of(&b, vip) == ["a", "c"]
    });
    let bodies = fetch_vip(&b, 4);
    assert!(bodies.contains(&"A".into()), "{bodies:?}");

    // etcd goes away: everyone serves the last table and says so.
    sw.stop_etcd();
    wait_until("b to notice", Duration::from_secs(10), || {
        std::fs::read_to_string(b.file("ctl")).is_ok_and(|s| s.contains("cluster=unreachable"))
    });
    assert!(std::fs::read_to_string(b.file("stats"))
        .unwrap()
        .contains("cluster=unreachable"));
    let bodies = fetch_vip(&b, 4);
    assert!(
        bodies.contains(&"A".into()) && bodies.contains(&"C".into()),
        "{bodies:?}"
    );

    // A change made meanwhile on c: a static service for a server there.
    // On c's loopback-or-any address: published with c's node address.
    let (_srv, port) = c.ns.banner_server("0.0.0.0", "db");
    std::fs::write(
        c.file("services"),
        format!("add db 10.1.0.9:80 -> 127.0.0.1:{port}\n"),
    )
    .unwrap();
    assert!(!b.services().contains("db "), "{}", b.services());

    // etcd returns: the change converges, and b's clients use it.
    sw.start_etcd();
    wait_until("b to see db", Duration::from_secs(15), || {
        b.services()
            .contains(&format!("db 10.1.0.9:80 -> 10.9.0.3:{port}"))
    });
    let cc = c_prog("connect_check", &[]);
    let o = run(&mut b.trace(&[], &cc, &["10.1.0.9", "80"]));
    assert!(stdout(&o).contains("data=db"), "{}", stdout(&o));
    assert!(std::fs::read_to_string(b.file("ctl"))
        .unwrap()
        .contains("cluster=connected"));
}
