//! A program's open sockets as the daemon is told of them when no call
//! reported them: at attach (the sockets it had before), and when a
//! restarted daemon is reached again (connections older than the ones the
//! trace remembers).

use crate::protocol::ConnReport;
use crate::sockdiag::{self, Proto, SockState};
use std::collections::HashMap;

/// The sockets processes `pids` have open, as reports a call would not
/// override (`before_attach`): what the daemon is told at attach, and, when
/// a restarted daemon is reached again, of the connections older than the
/// ones the trace remembers (daemon_link.rs). `comm_of` names a process
/// (asked once per process).
pub(crate) fn open_sockets(
    pids: &[i32],
    mut comm_of: impl FnMut(i32) -> String,
) -> std::io::Result<Vec<ConnReport>> {
    // Each socket once, as the first (oldest) process holding it (forked
    // children share their parent's).
    let mut owner: HashMap<u64, i32> = HashMap::new();
    for &pid in pids {
        for inode in crate::procfs::socket_inodes(pid) {
            owner.entry(inode).or_insert(pid);
        }
    }
    if owner.is_empty() {
        return Ok(Vec::new());
    }
    // One dump for all of them (one per process took seconds on a host
    // with tens of thousands of sockets), looked up by inode.
    let kernel = sockdiag::dump()?;
    let mut comms: HashMap<i32, String> = HashMap::new();
    Ok(existing(&kernel, &owner, |pid| {
        comms.entry(pid).or_insert_with(|| comm_of(pid)).clone()
    }))
}

/// What the daemon is told of the sockets `owner` names (by inode, with
/// the process it is reported as): listeners (so their connections are
/// listed, as for a traced server), TCP connections (accepted when on the
/// port of a listener of any of the processes: a pre-fork server's workers
/// accept on their master's) and connected UDP sockets.
fn existing(
    kernel: &HashMap<u64, SockState>,
    owner: &HashMap<u64, i32>,
    mut comm_of: impl FnMut(i32) -> String,
) -> Vec<ConnReport> {
    let ours = || {
        kernel
            .iter()
            .filter_map(|(inode, k)| Some((inode, k, *owner.get(inode)?)))
    };
    let listeners: Vec<std::net::SocketAddr> = ours()
        .filter(|(_, k, _)| k.proto == Proto::Tcp && k.state == "LISTEN")
        .map(|(_, k, _)| k.local)
        .collect();
    let accepted = |k: &SockState| {
        listeners.iter().any(|l| {
            l.port() == k.local.port() && (l.ip().is_unspecified() || l.ip() == k.local.ip())
        })
    };
    let mut out: Vec<ConnReport> = ours()
        .filter_map(|(inode, k, pid)| {
            let (via, remote) = match (k.proto, k.state) {
                (Proto::Tcp, "LISTEN") => ("listen", None),
                (Proto::Tcp, _) if k.remote.port() == 0 => return None,
                (Proto::Tcp, _) if accepted(k) => ("accept", None),
                (Proto::Tcp, _) => ("connect", Some(k.remote.to_string())),
                (Proto::Udp, "ESTABLISHED") => ("connect", Some(k.remote.to_string())),
                (Proto::Udp, _) => return None,
            };
            Some(ConnReport {
                inode: *inode,
                pid,
                comm: comm_of(pid),
                proto: match k.proto {
                    Proto::Tcp => "tcp",
                    Proto::Udp => "udp",
                }
                .into(),
                remote,
                virtual_remote: None,
                rule: None,
                via: via.into(),
                before_attach: true,
            })
        })
        .collect();
    out.sort_by_key(|r| r.inode);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr as Inet;

    fn sock(inode: u64, proto: Proto, state: &'static str, local: &str, remote: &str) -> SockState {
        SockState {
            inode,
            proto,
            state,
            local: local.parse::<Inet>().unwrap(),
            remote: remote.parse::<Inet>().unwrap(),
            bytes_in: 0,
            bytes_out: 0,
            rqueue: 0,
            wqueue: 0,
        }
    }

    #[test]
    fn sockets_found_at_attach_are_listeners_accepted_and_connected() {
        let kernel: HashMap<u64, SockState> = [
            sock(1, Proto::Tcp, "LISTEN", "0.0.0.0:8000", "0.0.0.0:0"),
            sock(
                2,
                Proto::Tcp,
                "ESTABLISHED",
                "127.0.0.1:8000",
                "127.0.0.1:50000",
            ),
            sock(
                3,
                Proto::Tcp,
                "ESTABLISHED",
                "127.0.0.1:50001",
                "127.0.0.1:5432",
            ),
            sock(4, Proto::Udp, "UNCONN", "0.0.0.0:5353", "0.0.0.0:0"),
            sock(
                5,
                Proto::Udp,
                "ESTABLISHED",
                "127.0.0.1:40000",
                "127.0.0.53:53",
            ),
            sock(6, Proto::Tcp, "CLOSE", "0.0.0.0:0", "0.0.0.0:0"),
        ]
        .into_iter()
        .map(|s| (s.inode, s))
        .collect();
        // Every socket the program's, but 7 (another program's), and the
        // accepted connection 2 a worker's (pid 43) on its master's listener.
        let mut kernel = kernel;
        kernel.insert(
            7,
            sock(7, Proto::Tcp, "ESTABLISHED", "127.0.0.1:9", "127.0.0.1:1"),
        );
        let owner: HashMap<u64, i32> = kernel
            .keys()
            .filter(|&&i| i != 7)
            .map(|&i| (i, if i == 2 { 43 } else { 42 }))
            .collect();
        let comm_of = |pid: i32| if pid == 43 { "worker" } else { "py" }.to_string();
        let got: Vec<(u64, String, Option<String>, String)> = existing(&kernel, &owner, comm_of)
            .into_iter()
            .inspect(|r| {
                assert!(r.before_attach);
                let who = if r.inode == 2 {
                    (43, "worker")
                } else {
                    (42, "py")
                };
                assert_eq!((r.pid, r.comm.as_str()), who);
            })
            .map(|r| (r.inode, r.via, r.remote, r.proto))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, "listen".into(), None, "tcp".into()),
                (2, "accept".into(), None, "tcp".into()),
                (
                    3,
                    "connect".into(),
                    Some("127.0.0.1:5432".into()),
                    "tcp".into()
                ),
                (
                    5,
                    "connect".into(),
                    Some("127.0.0.53:53".into()),
                    "udp".into()
                ),
            ]
        );
    }
}
