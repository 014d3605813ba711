//! Reading a message (struct msghdr, its iovecs and control data) out of a
//! stopped tracee, in the native or the 32-bit layout, with the kernel's limits.

use crate::decode::read_msg_name;
use crate::remote::{read_mem, read_u32, read_u64};
use crate::sockaddr::{RawAddr, SockAddr};
use nix::errno::Errno;

/// The kernel's UIO_MAXIOV.
const MAX_IOV: u64 = 1024;
/// Largest datagram payload the tracer copies (UDP's is 65507).
pub const MAX_DATA: usize = 256 * 1024;
/// Largest control buffer the tracer copies (the kernel's optmem limit is smaller).
const MAX_CONTROL: u64 = 64 * 1024;

/// One message: destination, flattened payload, control bytes.
pub struct Message {
    pub name: Option<SockAddr>,
    /// The tracer's copy of msg_name's bytes.
    pub raw: Option<RawAddr>,
    pub data: Vec<u8>,
    /// The payload was longer than MAX_DATA: `data` holds its first
    /// MAX_DATA bytes (a short write on a stream socket; EMSGSIZE for a
    /// datagram, as the kernel says for one that large).
    pub truncated: bool,
    /// Every buffer (address, length), and the iovec array (address, count).
    pub iovs: Vec<(u64, u64)>,
    pub iov_array: (u64, u64),
    /// The payload's full length (the sum of the buffers', saturating).
    pub total: u64,
    /// Control messages, in the native layout (32-bit ones translated).
    pub control: Vec<u8>,
}

/// Size of struct mmsghdr, and the offset of its msg_len field.
pub fn mmsghdr_layout(compat: bool) -> (u64, u64) {
    if compat {
        (32, 28)
    } else {
        (64, 56)
    }
}

fn word(pid: i32, addr: u64, compat: bool) -> Result<u64, Errno> {
    if compat {
        read_u32(pid, addr).map(u64::from)
    } else {
        read_u64(pid, addr)
    }
}

/// Read `len` bytes at `ptr`, appending to `out`, up to MAX_DATA in all.
/// True when cut short.
fn append(pid: i32, ptr: u64, len: u64, out: &mut Vec<u8>) -> Result<bool, Errno> {
    // len comes from the tracee: no arithmetic on it may overflow.
    let room = (MAX_DATA - out.len()) as u64;
    let take = len.min(room);
    let start = out.len();
    out.resize(start + take as usize, 0);
    read_mem(pid, ptr, &mut out[start..])?;
    Ok(take < len)
}

/// Read `len` bytes at `ptr` into `out` (replacing what it held).
pub fn read_into(pid: i32, ptr: u64, len: u64, out: &mut Vec<u8>) -> Result<(), Errno> {
    out.clear();
    out.resize(len.min(MAX_DATA as u64) as usize, 0);
    read_mem(pid, ptr, out)
}

/// Read the data of `sendto(fd, ptr, len, ...)`.
pub fn read_buffer(pid: i32, ptr: u64, len: u64) -> Result<Message, Errno> {
    let mut data = Vec::new();
    let truncated = append(pid, ptr, len, &mut data)?;
    Ok(Message {
        name: None,
        raw: None,
        data,
        truncated,
        iovs: vec![(ptr, len)],
        iov_array: (0, 0),
        total: len,
        control: Vec::new(),
    })
}

/// Read the msghdr at `ptr`.
pub fn read_message(pid: i32, ptr: u64, compat: bool) -> Result<Message, Errno> {
    let (w, iov_off, iovlen_off, ctl_off, ctllen_off) = if compat {
        (4, 8, 12, 16, 20)
    } else {
        (8, 16, 24, 32, 40)
    };
    let (name, raw) = read_msg_name(pid, ptr, compat)?;
    let field = |off: u64| ptr.checked_add(off).ok_or(Errno::EFAULT);
    let iov = word(pid, field(iov_off)?, compat)?;
    let iovlen = word(pid, field(iovlen_off)?, compat)?;
    let control = word(pid, field(ctl_off)?, compat)?;
    let controllen = word(pid, field(ctllen_off)?, compat)?;
    if iovlen > MAX_IOV {
        return Err(Errno::EMSGSIZE);
    }
    let mut data = Vec::new();
    let mut truncated = false;
    let mut iovs = Vec::with_capacity(iovlen as usize);
    let mut total = 0u64;
    for i in 0..iovlen {
        let at = iov.checked_add(i * 2 * w).ok_or(Errno::EFAULT)?;
        let base = word(pid, at, compat)?;
        let len = word(pid, at.checked_add(w).ok_or(Errno::EFAULT)?, compat)?;
        iovs.push((base, len));
        total = total.saturating_add(len);
        if !truncated {
            truncated = append(pid, base, len, &mut data)?;
        }
    }
    let mut ctl = Vec::new();
    if control != 0 && controllen > 0 {
        if controllen > MAX_CONTROL {
            return Err(Errno::ENOBUFS);
        }
        ctl.resize(controllen as usize, 0);
        read_mem(pid, control, &mut ctl)?;
        if compat {
            ctl = cmsg_from_compat(&ctl)?;
        }
    }
    Ok(Message {
        name,
        raw,
        data,
        truncated,
        iovs,
        iov_array: (iov, iovlen),
        total,
        control: ctl,
    })
}

/// The control messages of a native-layout buffer: (level, type, data).
/// Stops at the first malformed header (the kernel judges those).
pub fn cmsgs(control: &[u8]) -> impl Iterator<Item = (i32, i32, &[u8])> {
    const HDR: usize = 16;
    let word = |b: &[u8]| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
    let mut at = 0;
    std::iter::from_fn(move || {
        if at + HDR > control.len() {
            return None;
        }
        let mut w = [0u8; 8];
        w.copy_from_slice(&control[at..at + 8]);
        let len = u64::from_ne_bytes(w) as usize;
        if len < HDR || len > control.len() - at {
            return None;
        }
        let item = (
            word(&control[at + 8..]),
            word(&control[at + 12..]),
            &control[at + HDR..at + len],
        );
        at += (len + 7) & !7;
        Some(item)
    })
}

/// The source address an IP_PKTINFO (ipi_spec_dst) or IPV6_PKTINFO
/// (ipi6_addr) control message sets, if any and not unspecified.
pub fn pktinfo_source(control: &[u8]) -> Option<std::net::IpAddr> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    // The last PKTINFO message wins, as in the kernel's loop over them; an
    // unspecified source there leaves the socket's own.
    let last = cmsgs(control)
        .filter_map(|(level, kind, d)| match (level, kind) {
            (libc::SOL_IP, libc::IP_PKTINFO) if d.len() >= 12 => {
                Some(IpAddr::V4(Ipv4Addr::new(d[4], d[5], d[6], d[7])))
            }
            (libc::SOL_IPV6, libc::IPV6_PKTINFO) if d.len() >= 20 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&d[..16]);
                Some(IpAddr::V6(Ipv6Addr::from(a)))
            }
            _ => None,
        })
        .last()?;
    (!last.is_unspecified()).then_some(last)
}

/// 32-bit control messages (struct compat_cmsghdr: u32 len, i32 level,
/// i32 type, data aligned to 4) in the native layout (u64 len, data aligned
/// to 8), as the kernel's cmsghdr_from_user_compat_to_kern does. A message
/// whose length does not fit is EINVAL, as there.
pub fn cmsg_from_compat(c: &[u8]) -> Result<Vec<u8>, Errno> {
    const HDR32: usize = 12;
    const HDR64: usize = 16;
    let align4 = |n: usize| (n + 3) & !3;
    let align8 = |n: usize| (n + 7) & !7;
    let mut out = Vec::new();
    let mut at = 0;
    while at + HDR32 <= c.len() {
        let len = u32::from_ne_bytes([c[at], c[at + 1], c[at + 2], c[at + 3]]) as usize;
        if len < HDR32 || at + len > c.len() {
            return Err(Errno::EINVAL);
        }
        let data = &c[at + HDR32..at + len];
        let start = out.len();
        out.extend_from_slice(&((HDR64 + data.len()) as u64).to_ne_bytes());
        out.extend_from_slice(&c[at + 4..at + 12]);
        out.extend_from_slice(data);
        out.resize(start + align8(HDR64 + data.len()), 0);
        at += align4(len);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compat_cmsg_becomes_native() {
        // One IP_TTL (level 0, type 2) with a 4-byte int.
        let mut c = Vec::new();
        c.extend_from_slice(&16u32.to_ne_bytes());
        c.extend_from_slice(&0i32.to_ne_bytes());
        c.extend_from_slice(&2i32.to_ne_bytes());
        c.extend_from_slice(&7i32.to_ne_bytes());
        let n = cmsg_from_compat(&c).unwrap();
        assert_eq!(n.len(), 24);
        assert_eq!(u64::from_ne_bytes(n[..8].try_into().unwrap()), 20);
        assert_eq!(i32::from_ne_bytes(n[12..16].try_into().unwrap()), 2);
        assert_eq!(i32::from_ne_bytes(n[16..20].try_into().unwrap()), 7);
        let mut bad = c.clone();
        bad[..4].copy_from_slice(&64u32.to_ne_bytes());
        assert_eq!(cmsg_from_compat(&bad), Err(Errno::EINVAL));
    }
}
