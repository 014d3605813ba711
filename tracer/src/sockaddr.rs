//! Socket addresses: decoded from the bytes a program passed (bounded by its
//! addrlen) and encoded back for calls the tracer makes itself.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// The largest address the kernel accepts (sizeof(struct sockaddr_storage)).
pub const MAX_ADDR_LEN: usize = 128;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SockAddr {
    Inet(SocketAddrV4),
    Inet6(SocketAddrV6),
    /// AF_UNIX: a path, an abstract name (leading NUL), or unnamed.
    Unix(Vec<u8>),
    /// AF_UNSPEC (connect(AF_UNSPEC) dissolves an association).
    Unspec,
    /// Any other family, kept as its number.
    Other(u16),
    /// Shorter than its family needs: the kernel will say EINVAL.
    Truncated(u16),
}

impl SockAddr {
    /// Decode `bytes` (exactly the addrlen the program passed, at most 128).
    pub fn decode(bytes: &[u8]) -> Option<SockAddr> {
        if bytes.len() < 2 {
            return None;
        }
        let family = u16::from_ne_bytes([bytes[0], bytes[1]]);
        let port = |b: &[u8]| u16::from_be_bytes([b[2], b[3]]);
        Some(match i32::from(family) {
            libc::AF_INET if bytes.len() >= 16 => {
                let ip = Ipv4Addr::new(bytes[4], bytes[5], bytes[6], bytes[7]);
                SockAddr::Inet(SocketAddrV4::new(ip, port(bytes)))
            }
            libc::AF_INET6 if bytes.len() >= 24 => {
                let flow = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
                let mut ip = [0u8; 16];
                ip.copy_from_slice(&bytes[8..24]);
                let scope = if bytes.len() >= 28 {
                    u32::from_ne_bytes([bytes[24], bytes[25], bytes[26], bytes[27]])
                } else {
                    0
                };
                SockAddr::Inet6(SocketAddrV6::new(
                    Ipv6Addr::from(ip),
                    port(bytes),
                    flow,
                    scope,
                ))
            }
            libc::AF_INET | libc::AF_INET6 => SockAddr::Truncated(family),
            libc::AF_UNIX => SockAddr::Unix(bytes[2..].to_vec()),
            libc::AF_UNSPEC => SockAddr::Unspec,
            _ => SockAddr::Other(family),
        })
    }

    /// Encode into `buf`; returns the length to pass as addrlen, or None for
    /// addresses the tracer never re-issues (other families, truncated ones).
    pub fn encode(&self, buf: &mut [u8; MAX_ADDR_LEN]) -> Option<usize> {
        *buf = [0; MAX_ADDR_LEN];
        match self {
            SockAddr::Inet(a) => {
                buf[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
                buf[2..4].copy_from_slice(&a.port().to_be_bytes());
                buf[4..8].copy_from_slice(&a.ip().octets());
                Some(16)
            }
            SockAddr::Inet6(a) => {
                buf[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
                buf[2..4].copy_from_slice(&a.port().to_be_bytes());
                buf[4..8].copy_from_slice(&a.flowinfo().to_be_bytes());
                buf[8..24].copy_from_slice(&a.ip().octets());
                buf[24..28].copy_from_slice(&a.scope_id().to_ne_bytes());
                Some(28)
            }
            SockAddr::Unix(path) if path.len() <= MAX_ADDR_LEN - 2 => {
                buf[..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
                buf[2..2 + path.len()].copy_from_slice(path);
                Some(2 + path.len())
            }
            SockAddr::Unspec => Some(2),
            _ => None,
        }
    }

    /// The address family number.
    pub fn family(&self) -> u16 {
        (match self {
            SockAddr::Inet(_) => libc::AF_INET,
            SockAddr::Inet6(_) => libc::AF_INET6,
            SockAddr::Unix(_) => libc::AF_UNIX,
            SockAddr::Unspec => libc::AF_UNSPEC,
            SockAddr::Other(f) | SockAddr::Truncated(f) => i32::from(*f),
        }) as u16
    }

    /// The IP socket address, if this is AF_INET or AF_INET6.
    pub fn ip(&self) -> Option<SocketAddr> {
        match self {
            SockAddr::Inet(a) => Some(SocketAddr::V4(*a)),
            SockAddr::Inet6(a) => Some(SocketAddr::V6(*a)),
            _ => None,
        }
    }
}

impl From<SocketAddr> for SockAddr {
    fn from(a: SocketAddr) -> Self {
        match a {
            SocketAddr::V4(a) => SockAddr::Inet(a),
            SocketAddr::V6(a) => SockAddr::Inet6(a),
        }
    }
}

/// Addresses are written as users write them: `10.1.0.1:80`, `[::1]:443`,
/// `unix:/run/x.sock`, `unix:@abstract`.
impl fmt::Display for SockAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SockAddr::Inet(a) => write!(f, "{a}"),
            SockAddr::Inet6(a) => write!(f, "{a}"),
            SockAddr::Unix(p) if p.is_empty() => f.write_str("unix:(unnamed)"),
            SockAddr::Unix(p) if p[0] == 0 => {
                write!(f, "unix:@{}", String::from_utf8_lossy(trim_nul(&p[1..])))
            }
            SockAddr::Unix(p) => write!(f, "unix:{}", String::from_utf8_lossy(trim_nul(p))),
            SockAddr::Unspec => f.write_str("unspec"),
            SockAddr::Other(fam) => write!(f, "family={fam}"),
            SockAddr::Truncated(fam) => write!(f, "truncated(family={fam})"),
        }
    }
}

fn trim_nul(p: &[u8]) -> &[u8] {
    match p.iter().position(|&b| b == 0) {
        Some(i) => &p[..i],
        None => p,
    }
}

/// Name of an address family, for events.
pub fn family_name(family: i32) -> &'static str {
    match family {
        libc::AF_INET => "inet",
        libc::AF_INET6 => "inet6",
        libc::AF_UNIX => "unix",
        libc::AF_UNSPEC => "unspec",
        libc::AF_NETLINK => "netlink",
        libc::AF_PACKET => "packet",
        _ => "other",
    }
}

/// A socket address exactly as the program passed it: the tracer's copy of
/// its bytes and length. An allowed call is carried out with these, so the
/// kernel judges the program's own address (errnos included) without ever
/// reading the program's memory again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawAddr {
    bytes: [u8; MAX_ADDR_LEN],
    len: usize,
}

impl RawAddr {
    /// `bytes` must be at most MAX_ADDR_LEN long (the decoder's bound).
    pub fn new(bytes: &[u8]) -> RawAddr {
        let len = bytes.len().min(MAX_ADDR_LEN);
        let mut b = [0u8; MAX_ADDR_LEN];
        b[..len].copy_from_slice(&bytes[..len]);
        RawAddr { bytes: b, len }
    }

    /// The encoding of an address the tracer chose; None for one it cannot
    /// encode (see [`SockAddr::encode`]).
    pub fn of(addr: &SockAddr) -> Option<RawAddr> {
        let mut bytes = [0u8; MAX_ADDR_LEN];
        let len = addr.encode(&mut bytes)?;
        Some(RawAddr { bytes, len })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The family field (0 when shorter than two bytes).
    pub(crate) fn family(&self) -> i32 {
        if self.len < 2 {
            return 0;
        }
        i32::from(u16::from_ne_bytes([self.bytes[0], self.bytes[1]]))
    }

    /// The bytes read as `family` (the kernel's view of an AF_UNSPEC address
    /// on some sockets), when long enough.
    fn as_family(&self, family: i32) -> Option<SockAddr> {
        let mut b = self.bytes;
        b[..2].copy_from_slice(&(family as u16).to_ne_bytes());
        match SockAddr::decode(&b[..self.len])? {
            a @ (SockAddr::Inet(_) | SockAddr::Inet6(_)) => Some(a),
            _ => None,
        }
    }
}

/// What the kernel will take `raw` to mean on an IP socket of `domain` and
/// `sotype` for a call of kind `kind`: rules must judge that, not the bytes'
/// face value. Some(None): no destination (the connected peer's).
/// None: the face value (`decoded`) stands.
///
/// AF_UNSPEC is the odd one: IPv4 bind takes it as AF_INET when the address
/// is INADDR_ANY; IPv4 UDP and raw sends take it as AF_INET; IPv6 UDP sends
/// ignore it (connected peer); IPv6 raw sends take it as AF_INET6.
pub fn kernel_view(
    raw: &RawAddr,
    domain: i32,
    sotype: i32,
    kind: AddrUse,
) -> Option<Option<SockAddr>> {
    if raw.family() != libc::AF_UNSPEC {
        return None;
    }
    let view = match (domain, kind) {
        (libc::AF_INET, AddrUse::Bind) => {
            let any = raw.len >= 8 && raw.bytes[4..8] == [0; 4];
            Some(if any {
                raw.as_family(libc::AF_INET)
            } else {
                None
            })
        }
        (libc::AF_INET, AddrUse::Send) => Some(raw.as_family(libc::AF_INET)),
        (libc::AF_INET6, AddrUse::Send) if sotype == libc::SOCK_RAW => {
            Some(raw.as_family(libc::AF_INET6))
        }
        (libc::AF_INET6, AddrUse::Send) => Some(None),
        _ => None,
    };
    match view {
        // Read as an address but too short for one: the kernel refuses it;
        // keep the face value (no rule can be passed by a refused call).
        Some(None) if kind == AddrUse::Bind || domain == libc::AF_INET => None,
        v => v,
    }
}

/// Where the kernel sends a connect or send to an unspecified address: for
/// 0.0.0.0 and ::ffff:0.0.0.0 (the IPv4 path), to the source address
/// (`source`: the socket's bound address, or a PKTINFO control message's,
/// when specific), else 127.0.0.1; for `::`, always to loopback: ::1, or
/// ::ffff:127.0.0.1 on a socket bound to a v4-mapped address. None when
/// `addr` is not unspecified.
pub fn unspecified_destination(addr: &SockAddr, source: Option<IpAddr>) -> Option<SockAddr> {
    let source = source.filter(|b| !b.is_unspecified());
    let v4_source = || match source {
        Some(IpAddr::V4(v4)) => v4,
        Some(IpAddr::V6(v6)) => v6.to_ipv4_mapped().unwrap_or(Ipv4Addr::LOCALHOST),
        None => Ipv4Addr::LOCALHOST,
    };
    match addr {
        SockAddr::Inet(a) if a.ip().is_unspecified() => {
            Some(SockAddr::Inet(SocketAddrV4::new(v4_source(), a.port())))
        }
        SockAddr::Inet6(a) if a.ip().to_ipv4_mapped() == Some(Ipv4Addr::UNSPECIFIED) => {
            Some(SockAddr::Inet6(SocketAddrV6::new(
                v4_source().to_ipv6_mapped(),
                a.port(),
                a.flowinfo(),
                a.scope_id(),
            )))
        }
        SockAddr::Inet6(a) if a.ip().is_unspecified() => {
            let mapped = matches!(source, Some(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_some());
            let ip = if mapped {
                Ipv4Addr::LOCALHOST.to_ipv6_mapped()
            } else {
                Ipv6Addr::LOCALHOST
            };
            Some(SockAddr::Inet6(SocketAddrV6::new(
                ip,
                a.port(),
                a.flowinfo(),
                a.scope_id(),
            )))
        }
        _ => None,
    }
}

/// How a call uses its address, for [`kernel_view`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrUse {
    Connect,
    Bind,
    Send,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inet_roundtrip() {
        for s in ["127.0.0.1:8080", "[::1]:443", "[fe80::1%2]:22"] {
            let a: SocketAddr = s.parse().unwrap();
            let sa = SockAddr::from(a);
            let mut buf = [0u8; MAX_ADDR_LEN];
            let n = sa.encode(&mut buf).unwrap();
            assert_eq!(SockAddr::decode(&buf[..n]).unwrap(), sa);
        }
    }

    #[test]
    fn short_inet_is_truncated_not_misread() {
        let mut b = [0u8; 8];
        b[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        assert_eq!(
            SockAddr::decode(&b),
            Some(SockAddr::Truncated(libc::AF_INET as u16))
        );
        assert_eq!(SockAddr::decode(&b[..1]), None);
    }

    fn unspec(ip: [u8; 4], port: u16) -> RawAddr {
        let mut b = [0u8; 16];
        b[2..4].copy_from_slice(&port.to_be_bytes());
        b[4..8].copy_from_slice(&ip);
        RawAddr::new(&b)
    }

    #[test]
    fn unspec_is_read_as_the_kernel_reads_it() {
        let v4 = |s: &str| Some(Some(SockAddr::from(s.parse::<SocketAddr>().unwrap())));
        let any = unspec([0; 4], 80);
        let lo = unspec([127, 0, 0, 1], 53);
        let (dgram, raw) = (libc::SOCK_DGRAM, libc::SOCK_RAW);
        assert_eq!(
            kernel_view(&any, libc::AF_INET, 1, AddrUse::Bind),
            v4("0.0.0.0:80")
        );
        assert_eq!(kernel_view(&lo, libc::AF_INET, 1, AddrUse::Bind), None);
        assert_eq!(
            kernel_view(&lo, libc::AF_INET, dgram, AddrUse::Send),
            v4("127.0.0.1:53")
        );
        assert_eq!(kernel_view(&lo, libc::AF_INET, 1, AddrUse::Connect), None);
        assert_eq!(
            kernel_view(&lo, libc::AF_INET6, dgram, AddrUse::Send),
            Some(None)
        );
        // Too short for AF_INET6: the face value stands.
        assert_eq!(
            kernel_view(&lo, libc::AF_INET6, raw, AddrUse::Send),
            Some(None)
        );
        let inet = RawAddr::of(&SockAddr::Unspec).unwrap();
        assert_eq!(inet.as_bytes().len(), 2);
    }

    #[test]
    fn an_unspecified_destination_is_loopback_or_the_bound_address() {
        let a = |s: &str| SockAddr::from(s.parse::<SocketAddr>().unwrap());
        assert_eq!(
            unspecified_destination(&a("0.0.0.0:80"), None),
            Some(a("127.0.0.1:80"))
        );
        assert_eq!(
            unspecified_destination(&a("[::]:80"), None),
            Some(a("[::1]:80"))
        );
        assert_eq!(
            unspecified_destination(&a("[::ffff:0.0.0.0]:80"), None),
            Some(a("[::ffff:127.0.0.1]:80"))
        );
        let bound = Some("10.1.2.3".parse().unwrap());
        assert_eq!(
            unspecified_destination(&a("0.0.0.0:80"), bound),
            Some(a("10.1.2.3:80"))
        );
        assert_eq!(unspecified_destination(&a("10.0.0.1:80"), None), None);
        // IPv6 never uses the source: always loopback.
        let v6 = Some("fd00::1".parse().unwrap());
        assert_eq!(
            unspecified_destination(&a("[::]:80"), v6),
            Some(a("[::1]:80"))
        );
        let mapped = Some("::ffff:10.9.9.9".parse().unwrap());
        assert_eq!(
            unspecified_destination(&a("[::]:80"), mapped),
            Some(a("[::ffff:127.0.0.1]:80"))
        );
        assert_eq!(
            unspecified_destination(&a("[::ffff:0.0.0.0]:80"), mapped),
            Some(a("[::ffff:10.9.9.9]:80"))
        );
    }

    #[test]
    fn unix_display() {
        let mut b = vec![0u8; 2];
        b[..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
        b.extend_from_slice(b"\0abs");
        assert_eq!(SockAddr::decode(&b).unwrap().to_string(), "unix:@abs");
    }
}
