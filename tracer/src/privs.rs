//! The program's privileges, for calls the tracer carries out on its behalf:
//! the tracer (root) must never lend its own.
//!
//! - A capability counts only when the calling thread holds it in the user
//!   namespace the tracer (and so the sockets' network namespace) lives in:
//!   a program root in a user namespace of its own is not privileged here.
//! - Control messages the kernel lets only privileged callers send (SO_MARK,
//!   SO_PRIORITY above 6, anything not known to be harmless) are refused
//!   with EPERM unless the program holds CAP_NET_ADMIN or CAP_NET_RAW.

use nix::errno::Errno;
use std::os::unix::fs::MetadataExt;

const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;

fn userns(path: &str) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// Whether thread `tid` has capability `cap` over the tracer's network
/// namespace: in its effective set, and in the tracer's user namespace.
pub fn has_net_cap(tid: i32, cap: u32) -> bool {
    let ours = userns("/proc/self/ns/user");
    let theirs = userns(&format!("/proc/{tid}/ns/user"));
    if ours.is_none() || ours != theirs {
        return false;
    }
    crate::remote::status_field(tid, "CapEff:")
        .and_then(|hex| u64::from_str_radix(&hex, 16).ok())
        .is_some_and(|caps| caps & (1 << cap) != 0)
}

/// Control messages anyone may send on an IP socket: (level, type).
fn harmless(level: i32, kind: i32, data: &[u8]) -> bool {
    const SOL_UDP: i32 = 17;
    const UDP_SEGMENT: i32 = 103;
    const SCM_TXTIME: i32 = 61;
    match (level, kind) {
        (libc::SOL_IP, libc::IP_TTL | libc::IP_TOS | libc::IP_PKTINFO) => true,
        (
            libc::SOL_IPV6,
            libc::IPV6_PKTINFO
            | libc::IPV6_HOPLIMIT
            | libc::IPV6_TCLASS
            | libc::IPV6_DONTFRAG
            | libc::IPV6_RTHDR
            | libc::IPV6_FLOWINFO,
        ) => true,
        (SOL_UDP, UDP_SEGMENT) => true,
        (libc::SOL_SOCKET, libc::SO_TIMESTAMPING | SCM_TXTIME) => true,
        // Priorities 0-6 are unprivileged (sk_set_prio_allowed).
        (libc::SOL_SOCKET, libc::SO_PRIORITY) => {
            data.len() >= 4 && u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) <= 6
        }
        _ => false,
    }
}

/// Ok when thread `tid` may send `control` (native layout) itself.
pub fn check_control(tid: i32, control: &[u8]) -> Result<(), Errno> {
    let needs_privilege =
        crate::msg::cmsgs(control).any(|(level, kind, data)| !harmless(level, kind, data));
    if needs_privilege && !has_net_cap(tid, CAP_NET_ADMIN) && !has_net_cap(tid, CAP_NET_RAW) {
        return Err(Errno::EPERM);
    }
    Ok(())
}
