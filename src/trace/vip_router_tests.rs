//! Unit tests of the router's own-service liveness.

use super::*;
use crate::services::routes::Backend;
use crate::services::shared::Health;

const INODE: u64 = 0x7fff_0001;
const REAL: u16 = 41_999;

/// A router with a VIP whose listener (made-up inode, real port REAL) is a
/// backend at slot 0 of the routes and of a balancing table it shares.
fn router() -> (Router, Arc<SharedTable>) {
    let net = LiveNet::new();
    let ip: IpAddr = "10.9.0.1".parse().unwrap();
    let host = HostIdentity {
        ip,
        name: None,
        lb: Lb::RoundRobin,
        bind_ip: "127.0.0.1".parse().unwrap(),
        expose: Vec::new(),
        ports: None,
        isolated: false,
    };
    let real = SocketAddr::new("127.0.0.1".parse().unwrap(), REAL);
    net.set_routes(RouteTable {
        routes: vec![Route {
            name: String::new(),
            vip: SocketAddr::new(ip, 8000),
            lb: Lb::RoundRobin,
            backends: vec![Backend {
                addr: real,
                labels: Labels::default(),
                origin: Origin::Traced {
                    app: 1,
                    pid: 1,
                    inode: INODE,
                    netns: 0,
                },
                slot: 0,
            }],
            slot: 0,
            udp: false,
        }],
        hosts: vec![ip],
        ..Default::default()
    });
    let table = Arc::new(SharedTable::private().expect("a private table"));
    net.set_shared(Some(table.clone()));
    let mut r = Router::new(net, Some(host), false);
    r.listening.insert(INODE, real);
    r.service_ports.insert(REAL, (8000, INODE));
    (r, table)
}

#[test]
fn under_a_daemon_an_own_listener_is_judged_by_the_published_health() {
    let (mut r, table) = router();
    // The kernel has no such socket: only the table can say it listens.
    table.set_health(0, Health::Up);
    assert!(r.own_listener_live(REAL, INODE, false));
    table.set_health(0, Health::Full);
    assert!(r.own_listener_live(REAL, INODE, false));
    assert!(r.service_ports.contains_key(&REAL));
    table.set_health(0, Health::Down);
    assert!(!r.own_listener_live(REAL, INODE, false));
    // Gone for good: forgotten, never asked about again.
    assert!(!r.service_ports.contains_key(&REAL));
    assert!(!r.listening.contains_key(&INODE));
}

#[test]
fn with_no_verdict_yet_the_kernel_is_asked() {
    let (mut r, _table) = router();
    // Health unknown (the daemon has not looked yet): sock_diag finds no
    // socket with that inode listening.
    assert!(!r.own_listener_live(REAL, INODE, false));
    assert!(!r.service_ports.contains_key(&REAL));
}

#[test]
fn asked_to_the_kernel_is_asked_whatever_the_table_says() {
    let (mut r, table) = router();
    table.set_health(0, Health::Up);
    // (Several listeners for one port: the table's word may be 50 ms old.)
    assert!(!r.own_listener_live(REAL, INODE, true));
    assert!(!r.service_ports.contains_key(&REAL));
}
