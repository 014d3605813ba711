//! Isolation (`trace --isolate`): the program starts in a network namespace
//! of its own with loopback up and, when it has addresses of its own (a
//! VIP), those on loopback too, so bind(VIP), getsockname and `ip addr` are
//! true without rewriting. Nothing else is there: a call that escapes the
//! filter finds nothing to talk to. The supervisor stays in the namespace
//! appswitch runs in and hands the program sockets made there (handover.rs).
//!
//! (AppSwitch put the VIP on a dummy interface; this kernel may lack the
//! dummy module, and loopback serves the same purpose: a local address
//! nobody outside the namespace can reach.)

use std::net::IpAddr;

/// Addresses of the program's own, set up in its namespace.
#[derive(Clone, Debug, Default)]
pub struct Isolation {
    pub addresses: Vec<IpAddr>,
    /// Loopback addresses and ports that are ours, not the program's (the
    /// daemon's DNS responder, port 53): reached outside.
    pub outside: Vec<std::net::SocketAddr>,
}

impl Isolation {
    /// Whether `ip` is an address of the program's namespace: loopback, or
    /// one of its own. Connects and sends there stay inside.
    pub fn is_inside(&self, to: std::net::SocketAddr) -> bool {
        let ip = match to.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        if self
            .outside
            .iter()
            .any(|o| o.ip() == ip && o.port() == to.port())
        {
            return false;
        }
        ip.is_loopback() || ip.is_unspecified() || self.addresses.contains(&ip)
    }
}

/// What the child does, prepared before the fork (async-signal-safe use).
pub(crate) struct Prepared {
    v4: Vec<[u8; 4]>,
    v6: Vec<[u8; 16]>,
}

impl Prepared {
    pub(crate) fn new(iso: &Isolation) -> Prepared {
        let mut p = Prepared {
            v4: Vec::new(),
            v6: Vec::new(),
        };
        for a in &iso.addresses {
            match a {
                IpAddr::V4(v4) if !v4.is_loopback() => p.v4.push(v4.octets()),
                IpAddr::V6(v6) if !v6.is_loopback() => p.v6.push(v6.octets()),
                _ => {}
            }
        }
        p
    }

    /// In the child: a new network namespace, loopback up, the addresses on
    /// it. The errno of the first failure.
    ///
    /// # Safety
    /// Async-signal-safe: raw system calls on stack memory only.
    pub(crate) unsafe fn apply(&self) -> Result<(), i32> {
        let errno = || *libc::__errno_location();
        if libc::unshare(libc::CLONE_NEWNET) != 0 {
            return Err(errno());
        }
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return Err(errno());
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        ifr.ifr_name[..3].copy_from_slice(&[b'l' as libc::c_char, b'o' as libc::c_char, 0]);
        if libc::ioctl(s, libc::SIOCGIFFLAGS, &mut ifr) != 0 {
            let e = errno();
            libc::close(s);
            return Err(e);
        }
        ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(s, libc::SIOCSIFFLAGS, &ifr) != 0 {
            let e = errno();
            libc::close(s);
            return Err(e);
        }
        // IPv4: aliases lo:1, lo:2... (/32 each).
        for (i, a) in self.v4.iter().enumerate() {
            let mut r: libc::ifreq = std::mem::zeroed();
            let name = [b'l', b'o', b':', b'1' + (i % 9) as u8, 0];
            for (d, c) in r.ifr_name.iter_mut().zip(name) {
                *d = c as libc::c_char;
            }
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(*a),
                },
                sin_zero: [0; 8],
            };
            std::ptr::copy_nonoverlapping(
                (&sin as *const libc::sockaddr_in).cast::<u8>(),
                &mut r.ifr_ifru as *mut _ as *mut u8,
                std::mem::size_of::<libc::sockaddr_in>(),
            );
            if libc::ioctl(s, libc::SIOCSIFADDR, &r) != 0 {
                let e = errno();
                libc::close(s);
                return Err(e);
            }
            let mask = libc::sockaddr_in {
                sin_addr: libc::in_addr { s_addr: u32::MAX },
                ..sin
            };
            std::ptr::copy_nonoverlapping(
                (&mask as *const libc::sockaddr_in).cast::<u8>(),
                &mut r.ifr_ifru as *mut _ as *mut u8,
                std::mem::size_of::<libc::sockaddr_in>(),
            );
            libc::ioctl(s, libc::SIOCSIFNETMASK, &r);
        }
        libc::close(s);
        if self.v6.is_empty() {
            return Ok(());
        }
        // IPv6: struct in6_ifreq { in6_addr; u32 prefixlen; int ifindex }.
        #[repr(C)]
        struct In6Ifreq {
            addr: [u8; 16],
            prefixlen: u32,
            ifindex: libc::c_int,
        }
        let s6 = libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s6 < 0 {
            return Err(errno());
        }
        // Loopback is interface 1 in a new namespace.
        let lo: libc::c_int = 1;
        for a in &self.v6 {
            let r = In6Ifreq {
                addr: *a,
                prefixlen: 128,
                ifindex: lo,
            };
            if libc::ioctl(s6, libc::SIOCSIFADDR, &r) != 0 {
                let e = errno();
                libc::close(s6);
                return Err(e);
            }
        }
        libc::close(s6);
        Ok(())
    }
}
