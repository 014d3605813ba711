//! Calls performed by the tracer on its own copy of the tracee's socket, with
//! the tracer's private copy of the address. The tracee's buffer is never read
//! again and never written.
//!
//! connect() on a blocking socket: the tracer starts the connection with
//! O_NONBLOCK set for the duration of its own call (the flag lives in the
//! shared open file; the tracee thread is stopped meanwhile). If the handshake
//! has already finished (loopback, refusals) the result is final and the
//! tracee's call is skipped. Otherwise the tracee's own connect() runs in the
//! kernel with addrlen cut to 2: on a socket that is already connecting the
//! kernel only waits for the handshake (natively: signals, SA_RESTART and
//! SO_SNDTIMEO behave as untraced), and on any other socket (a sibling thread
//! swapped the descriptor) a 2-byte address is EINVAL, so nothing unchecked
//! is ever connected.

use crate::call::{Op, SocketInfo};
use crate::sockaddr::{RawAddr, SockAddr, MAX_ADDR_LEN};
use nix::errno::Errno;
use std::os::fd::{AsRawFd, OwnedFd};

/// What to do with the tracee's call after emulation.
#[derive(Debug, PartialEq, Eq)]
pub enum Emulated {
    /// Skip the tracee's call; it returns this (value, or -errno).
    Done(i64),
    /// Let the tracee's call wait for the handshake in the kernel (addrlen 2).
    /// `started`: the tracer's call started the handshake, so the program's
    /// call must report what a first connect reports (EINPROGRESS on a
    /// SO_SNDTIMEO timeout, where the kernel will say EALREADY).
    WaitInKernel { started: bool },
    /// Not emulated (not an IP socket): the kernel runs the tracee's own call.
    NotIp,
    /// A non-blocking connect, asked to settle, was refused at once: the
    /// socket is unconnected and the refusal not yet reported. Another
    /// address may be tried; else [`refuse_later`] leaves the socket as an
    /// untraced refused connect would (EINPROGRESS, the error pending).
    RefusedNow,
}

fn getsockopt_int(fd: &OwnedFd, opt: i32) -> Result<i32, Errno> {
    getsockopt_at(fd, libc::SOL_SOCKET, opt)
}

fn getsockopt_at(fd: &OwnedFd, level: i32, opt: i32) -> Result<i32, Errno> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v and len are valid for the kernel to write.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(v)
    }
}

/// Sockets' kinds (domain, type, protocol: fixed for a socket's life) by
/// inode, so that a socket seen again costs one fstat, not three
/// getsockopt. (sockfs sets no times, so the inode is the key; a gone
/// socket's number comes back only when the kernel's 32-bit inode counter
/// wraps, after 2^32 inodes made host-wide.) Bounded: emptied when full.
#[derive(Default)]
pub struct Kinds(crate::idmap::IdMap<u64, (i32, i32, i32)>);

const KINDS_MAX: usize = 4096;

/// The socket's kind. ENOTSOCK when the descriptor is not a socket.
pub fn socket_info(fd: &OwnedFd) -> Result<SocketInfo, Errno> {
    socket_info_in(fd, None)
}

/// [`socket_info`], with the socket's fixed kind kept in `kinds`.
pub fn socket_info_in(fd: &OwnedFd, kinds: Option<&mut Kinds>) -> Result<SocketInfo, Errno> {
    // SAFETY: fstat into a zeroed struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is valid for writing.
    let stat_ok = unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } == 0;
    let key = st.st_ino;
    let known = (stat_ok && st.st_mode & libc::S_IFMT == libc::S_IFSOCK)
        .then(|| kinds.as_ref().and_then(|k| k.0.get(&key).copied()))
        .flatten();
    let (domain, sotype, protocol) = match known {
        Some(k) => k,
        None => {
            let k = (
                getsockopt_int(fd, libc::SO_DOMAIN)?,
                getsockopt_int(fd, libc::SO_TYPE)?,
                getsockopt_int(fd, libc::SO_PROTOCOL)?,
            );
            if let (true, Some(kinds)) = (stat_ok, kinds) {
                if kinds.0.len() >= KINDS_MAX {
                    kinds.0.clear();
                }
                kinds.0.insert(key, k);
            }
            k
        }
    };
    // SAFETY: F_GETFL on a descriptor we own.
    let fl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if fl < 0 {
        return Err(Errno::last());
    }
    let inode = if stat_ok { st.st_ino } else { 0 };
    // An IPv6 socket that takes IPv6 only cannot be given an IPv4 address.
    let v6only = domain == libc::AF_INET6
        && getsockopt_at(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY).is_ok_and(|v| v != 0);
    Ok(SocketInfo {
        v6only,
        domain,
        sotype,
        protocol,
        nonblocking: fl & libc::O_NONBLOCK != 0,
        inode,
    })
}

pub(crate) fn is_ip(info: &SocketInfo) -> bool {
    info.domain == libc::AF_INET || info.domain == libc::AF_INET6
}

/// connect(2) or bind(2) (`call`) of the borrowed socket to `addr`.
fn raw_addr_call(
    fd: &OwnedFd,
    addr: &RawAddr,
    call: unsafe extern "C" fn(libc::c_int, *const libc::sockaddr, libc::socklen_t) -> libc::c_int,
) -> Result<(), Errno> {
    let b = addr.as_bytes();
    // SAFETY: b is a buffer of b.len() bytes.
    let r = unsafe {
        call(
            fd.as_raw_fd(),
            b.as_ptr().cast(),
            b.len() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

fn raw_connect(fd: &OwnedFd, addr: &RawAddr) -> Result<(), Errno> {
    raw_addr_call(fd, addr, libc::connect)
}

fn set_flags(fd: &OwnedFd, flags: i32) {
    // SAFETY: F_SETFL on a descriptor we own.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) };
}

/// `f` with O_NONBLOCK set on our copy's file, which is the program's too:
/// for that moment only, so that the supervisor never waits in a call made
/// for the program. Cleared again after unless it was set before, and only
/// that bit: a sibling's fcntl meanwhile is kept.
pub(crate) fn while_nonblocking<T>(fd: &OwnedFd, f: impl FnOnce() -> T) -> T {
    // SAFETY: F_GETFL on a descriptor we own.
    let fl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if fl < 0 {
        return f();
    }
    set_flags(fd, fl | libc::O_NONBLOCK);
    let out = f();
    // SAFETY: F_GETFL on a descriptor we own.
    let now = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    let back = if now < 0 { fl } else { now & !libc::O_NONBLOCK };
    set_flags(fd, back | (fl & libc::O_NONBLOCK));
    out
}

/// The socket's poll events for POLLOUT now (0: not ready).
pub(crate) fn ready_now(fd: &OwnedFd) -> i16 {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    if r == 1 {
        p.revents
    } else {
        0
    }
}

/// connect(fd, addr) on the borrowed socket, as the tracee's call would have.
/// `settle`: for a non-blocking socket, learn whether the connection was
/// already refused (loopback answers within the call) so that another
/// address can be tried; see [`Emulated::RefusedNow`].
pub fn connect(fd: &OwnedFd, info: &SocketInfo, addr: &RawAddr, settle: bool) -> Emulated {
    connect_began(fd, info, addr, settle).0
}

/// [`connect`], and whether it began a new connection (the kernel said
/// EINPROGRESS to its first try; not when the socket was connecting or
/// connected already: see [`crate::Call::new_connection`]).
pub fn connect_began(
    fd: &OwnedFd,
    info: &SocketInfo,
    addr: &RawAddr,
    settle: bool,
) -> (Emulated, bool) {
    if !is_ip(info) {
        return (Emulated::NotIp, false);
    }
    if info.nonblocking {
        let first = raw_connect(fd, addr);
        let began = first == Err(Errno::EINPROGRESS);
        let out = match first {
            Ok(()) => Emulated::Done(0),
            Err(Errno::EINPROGRESS) if settle => match ready_now(fd) {
                // Not finished: the program learns the outcome as untraced.
                0 => Emulated::Done(-(Errno::EINPROGRESS as i64)),
                // Connected already: what the program will learn by polling,
                // as untraced, so it gets EINPROGRESS; its own next
                // connect() gets the kernel's one 0 (not consumed here).
                ev if ev & (libc::POLLERR | libc::POLLHUP) == 0 => {
                    Emulated::Done(-(Errno::EINPROGRESS as i64))
                }
                // Failed already. A second connect() reads the outcome: a
                // refusal leaves the socket unconnected (and is consumed
                // here).
                _ => match raw_connect(fd, addr) {
                    Err(Errno::ECONNREFUSED) => Emulated::RefusedNow,
                    Ok(()) | Err(Errno::EISCONN | Errno::EALREADY | Errno::EINPROGRESS) => {
                        Emulated::Done(-(Errno::EINPROGRESS as i64))
                    }
                    // Another error, consumed here: the program gets it now
                    // (a non-blocking connect may fail at once).
                    Err(e) => Emulated::Done(-(e as i64)),
                },
            },
            Err(e) => Emulated::Done(-(e as i64)),
        };
        return (out, began);
    }
    while_nonblocking(fd, || {
        let first = raw_connect(fd, addr);
        let began = first == Err(Errno::EINPROGRESS);
        let out = match first {
            Ok(()) => Emulated::Done(0),
            // Over at once (loopback answers within the first): a second
            // connect (still non-blocking; connect_in_state) reports the
            // outcome and leaves the socket as a blocking connect would.
            // Still under way: waited for, nothing done to the socket (a
            // second connect now could race a sibling's shutdown() into a
            // new connection). The state read replaces a poll.
            Err(Errno::EINPROGRESS) => match tcp_state(fd) {
                Some(TCP_SYN_SENT | TCP_SYN_RECV) => Emulated::WaitInKernel { started: true },
                state => match connect_in_state(fd, info.domain, Some(addr), state) {
                    0 | libc::EISCONN => Emulated::Done(0),
                    libc::EALREADY | libc::EINPROGRESS => Emulated::WaitInKernel { started: true },
                    libc::EINVAL => Emulated::Done(-(disconnected_errno(fd) as i64)),
                    e => Emulated::Done(-(e as i64)),
                },
            },
            Err(Errno::EALREADY) => Emulated::WaitInKernel { started: false },
            Err(e) => Emulated::Done(-(e as i64)),
        };
        (out, began)
    })
}

/// TCP states (include/net/tcp_states.h), as TCP_INFO reports them.
pub const TCP_SYN_SENT: u8 = 2;
pub const TCP_SYN_RECV: u8 = 3;
pub const TCP_CLOSE: u8 = 7;

/// The socket's TCP state (TCP_INFO's first byte); None when it reports
/// none (not TCP; an MPTCP socket on an older kernel).
pub fn tcp_state(fd: &OwnedFd) -> Option<u8> {
    // The first int of struct tcp_info: its first byte is the state.
    getsockopt_at(fd, libc::IPPROTO_TCP, libc::TCP_INFO)
        .ok()
        .map(|v| v.to_ne_bytes()[0])
}

/// One more connect on our copy of a socket that was connecting, in TCP
/// state `state` (just read: [`tcp_state`]), without waiting (the caller
/// sees to O_NONBLOCK), made so that it cannot start a connection the
/// program never asked for. Its address: the one the
/// socket is connecting to (`to`), while the socket is not closed (a
/// connecting socket's connect never reads it; security modules such as
/// SELinux refuse a TCP connect with a shorter address before the socket
/// sees the call); the socket's family alone (`domain`, two bytes) once it
/// is closed, failed or disconnected, or when its state cannot be read: a
/// connecting socket's connect reads no more, and one no longer connecting
/// refuses so short an address (EINVAL) instead of connecting. (A sibling
/// may disconnect it between the look and the connect: that connect then
/// starts again to `to`, the address decided for it, nowhere else.)
/// The errno: 0 when the handshake is over (the socket is now connected,
/// as the program's own blocking connect leaves it); EISCONN when another
/// connect settled it first; EALREADY while it is still under way (nothing
/// changed); EINVAL when it is no longer connecting; else the connection's
/// failure, taken from the socket as the program's own connect would take
/// it (it leaves the socket unconnected). SO_ERROR is not read: it would
/// also take a soft error (an ICMP error kept while the handshake goes
/// on), which the kernel keeps without failing the connection.
pub fn connect_in_state(fd: &OwnedFd, domain: i32, to: Option<&RawAddr>, state: Option<u8>) -> i32 {
    let family = RawAddr::new(&(domain as u16).to_ne_bytes());
    let addr = match to {
        Some(a) if state.is_some_and(|s| s != TCP_CLOSE) => a,
        _ => &family,
    };
    match raw_connect(fd, addr) {
        Ok(()) => 0,
        Err(e) => e as i32,
    }
}

/// [`connect_in_state`] with O_NONBLOCK set for the moment: how a blocking
/// connect whose handshake the tracer waited for (not the kernel) learns
/// its outcome and leaves the socket as the program's own would have
/// (connected, so that its next connect() gets EISCONN; or unconnected
/// after a failure, so that its next one starts a new connection).
pub fn settle_connected(fd: &OwnedFd, domain: i32, to: Option<&RawAddr>, state: Option<u8>) -> i32 {
    while_nonblocking(fd, || connect_in_state(fd, domain, to, state))
}

/// What a blocking connect waiting on a socket that was disconnected under
/// it (unconnected now, by a shutdown or a connect(AF_UNSPEC) the tracer
/// did not see) ends with: the socket's error, taken as the kernel's wait
/// takes it (a shutdown's ECONNRESET), or ECONNABORTED when there is none
/// (an MPTCP socket's, as the kernel's `sock_error() ?: -ECONNABORTED`).
/// (The kernel answers a waiter after a connect(AF_UNSPEC) it saw with
/// EPIPE and leaves the error: from here the two cannot be told apart.)
pub fn disconnected_errno(fd: &OwnedFd) -> i32 {
    match so_error(fd) {
        0 => libc::ECONNABORTED,
        e => e,
    }
}

/// SO_ERROR: the socket's error, taken (0: none, or unreadable).
pub fn so_error(fd: &OwnedFd) -> i32 {
    getsockopt_int(fd, libc::SO_ERROR).unwrap_or(0)
}

/// A connect or bind (`op`) on an AF_UNIX or netlink socket with an IP
/// address: the kernel only refuses it (the address is not of the socket's
/// family: EINVAL, checked first), but a call passed to it reads the
/// descriptor again, and a sibling thread may have put an IP socket there
/// meanwhile, which the kernel would then connect, unchecked. So it is
/// refused on our copy (the socket that was looked at), exactly as the
/// program's own call: the program's answer. None: not such a call; it
/// runs in the kernel as before. (Sends are left to the kernel: their
/// flags, data and control messages are checked before the address, so
/// only the program's own call can answer them exactly; other families
/// may act on an IP address: docs/RULES.md, known limits.)
pub fn foreign_ip_address(fd: &OwnedFd, info: &SocketInfo, op: Op, addr: &RawAddr) -> Option<i64> {
    let ip_family = matches!(addr.family(), libc::AF_INET | libc::AF_INET6);
    if !ip_family || !matches!(info.domain, libc::AF_UNIX | libc::AF_NETLINK) {
        return None;
    }
    let r = match op {
        Op::Connect => raw_connect(fd, addr),
        Op::Bind => raw_bind(fd, addr),
        _ => return None,
    };
    Some(match r {
        Ok(()) => 0,
        Err(e) => -(e as i64),
    })
}

/// After [`Emulated::RefusedNow`] with nothing else to try: connect again
/// to `addr`, so the program finds the socket as an untraced non-blocking
/// connect refused by `addr` leaves it (EINPROGRESS now, ECONNREFUSED from
/// SO_ERROR). Returns the program's result.
pub fn refuse_later(fd: &OwnedFd, addr: &RawAddr) -> i64 {
    match raw_connect(fd, addr) {
        Ok(()) => 0,
        Err(e) => -(e as i64),
    }
}

/// The first port that needs CAP_NET_BIND_SERVICE.
fn unprivileged_port_start() -> u16 {
    static START: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    *START.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1024)
    })
}

/// Whether thread `tid` has CAP_NET_BIND_SERVICE over our network namespace.
fn can_bind_low_ports(tid: i32) -> bool {
    const CAP_NET_BIND_SERVICE: u32 = 10;
    crate::privs::has_net_cap(tid, CAP_NET_BIND_SERVICE)
}

/// bind(fd, addr) on the borrowed socket, with the program's privileges: the
/// tracer (root) must not bind a port the program could not.
/// `addr` is the address as the rules saw it (for the port check), `raw`
/// the bytes to bind.
pub fn bind(
    fd: &OwnedFd,
    info: &SocketInfo,
    addr: Option<&SockAddr>,
    raw: &RawAddr,
    tid: i32,
) -> Emulated {
    if !is_ip(info) {
        return Emulated::NotIp;
    }
    if let Some(ip) = addr.and_then(SockAddr::ip) {
        let p = ip.port();
        if p != 0 && p < unprivileged_port_start() && !can_bind_low_ports(tid) {
            return Emulated::Done(-(Errno::EACCES as i64));
        }
    }
    Emulated::Done(match raw_bind(fd, raw) {
        Ok(()) => 0,
        Err(e) => -(e as i64),
    })
}

/// bind(fd, addr) with the tracer's copy of an address.
pub fn raw_bind(fd: &OwnedFd, addr: &RawAddr) -> Result<(), Errno> {
    let b = addr.as_bytes();
    // SAFETY: b is a buffer of b.len() bytes.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            b.as_ptr().cast(),
            b.len() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

type NameCall =
    unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

/// getsockname or getpeername on the borrowed socket; None on failure.
fn sock_name(fd: &OwnedFd, call: NameCall) -> Option<SockAddr> {
    let mut buf = [0u8; MAX_ADDR_LEN];
    let mut len = MAX_ADDR_LEN as libc::socklen_t;
    // SAFETY: buf/len describe a writable buffer of MAX_ADDR_LEN bytes.
    let r = unsafe { call(fd.as_raw_fd(), buf.as_mut_ptr().cast(), &mut len) };
    if r < 0 {
        return None;
    }
    SockAddr::decode(&buf[..(len as usize).min(MAX_ADDR_LEN)])
}

/// The socket's local address (getsockname on the borrowed socket).
pub fn local_addr(fd: &OwnedFd) -> Option<SockAddr> {
    sock_name(fd, libc::getsockname)
}

/// Send one datagram on the borrowed socket: `data` to `addr` (None: the
/// connected peer), with the
/// program's control messages (native layout) and flags. Never blocks the
/// tracer for long: a full send buffer on a blocking socket is waited out
/// with poll, in slices, as the kernel would block the program.
pub fn send_datagram(
    fd: &OwnedFd,
    info: &SocketInfo,
    addr: Option<&RawAddr>,
    data: &[u8],
    control: &[u8],
    flags: i32,
) -> i64 {
    let mut buf = [0u8; MAX_ADDR_LEN];
    let len = addr.map_or(0, |a| {
        buf[..a.as_bytes().len()].copy_from_slice(a.as_bytes());
        a.as_bytes().len()
    });
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: a zeroed msghdr is valid; the fields set below point at live buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    if addr.is_some() {
        msg.msg_name = buf.as_mut_ptr().cast();
        msg.msg_namelen = len as libc::socklen_t;
    }
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !control.is_empty() {
        msg.msg_control = control.as_ptr() as *mut libc::c_void;
        msg.msg_controllen = control.len();
    }
    for _ in 0..600 {
        // SAFETY: msg describes valid memory for the duration of the call.
        let r = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, flags | libc::MSG_DONTWAIT) };
        if r >= 0 {
            return r as i64;
        }
        let e = Errno::last();
        let would_block =
            e == Errno::EAGAIN && !info.nonblocking && flags & libc::MSG_DONTWAIT == 0;
        if !would_block {
            return -(e as i64);
        }
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, 100) };
    }
    -(Errno::EAGAIN as i64)
}

/// The socket's peer (getpeername on the borrowed socket); None when not connected.
pub fn peer_addr(fd: &OwnedFd) -> Option<SockAddr> {
    sock_name(fd, libc::getpeername)
}

/// `addr` in the socket's family: IPv4 on an AF_INET6 socket becomes
/// ::ffff:a.b.c.d, IPv4-mapped IPv6 on an AF_INET socket becomes IPv4.
pub fn fit_family(info: &SocketInfo, addr: SockAddr) -> SockAddr {
    match (info.domain, addr) {
        (libc::AF_INET6, SockAddr::Inet(a)) => SockAddr::Inet6(std::net::SocketAddrV6::new(
            a.ip().to_ipv6_mapped(),
            a.port(),
            0,
            0,
        )),
        (libc::AF_INET, SockAddr::Inet6(a)) => match a.ip().to_ipv4_mapped() {
            Some(v4) => SockAddr::Inet(std::net::SocketAddrV4::new(v4, a.port())),
            None => SockAddr::Inet6(a),
        },
        (_, a) => a,
    }
}

/// Bind an unbound TCP socket to `addr`'s address, its port left to the
/// connect that follows (IP_BIND_ADDRESS_NO_PORT, as the program's own
/// option was before, so no port is taken at bind time). False when the
/// socket is bound already, is not TCP, or cannot have that address (the
/// connect then runs from the address the kernel picks).
pub fn bind_source(fd: &OwnedFd, info: &SocketInfo, addr: SockAddr) -> bool {
    if info.sotype != libc::SOCK_STREAM || !is_ip(info) {
        return false;
    }
    let unbound = match local_addr(fd) {
        Some(SockAddr::Inet(a)) => a.port() == 0 && a.ip().is_unspecified(),
        Some(SockAddr::Inet6(a)) => a.port() == 0 && a.ip().is_unspecified(),
        _ => false,
    };
    if !unbound {
        return false;
    }
    let addr = fit_family(info, addr);
    if info.v6only && matches!(addr, SockAddr::Inet6(a) if a.ip().to_ipv4_mapped().is_some()) {
        return false;
    }
    let Some(raw) = RawAddr::of(&addr) else {
        return false;
    };
    let had = getsockopt_at(fd, libc::SOL_IP, libc::IP_BIND_ADDRESS_NO_PORT).unwrap_or(0);
    let set = |v: libc::c_int| {
        // SAFETY: v outlives the call; the length is an int's.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    if had == 0 && set(1) < 0 {
        return false;
    }
    let r = raw_addr_call(fd, &raw, libc::bind);
    if had == 0 {
        set(0);
    }
    r.is_ok()
}

/// The errno the kernel gives an IP socket for an address it cannot use.
pub fn unusable(addr: &SockAddr) -> i64 {
    match addr {
        SockAddr::Other(_) => -(Errno::EAFNOSUPPORT as i64),
        _ => -(Errno::EINVAL as i64),
    }
}

/// connect or bind with a NULL address and length `len` (an `int`), on the
/// borrowed socket: the kernel's answer to the program's own call.
pub fn null_address(fd: &OwnedFd, bind: bool, len: u64) -> i64 {
    let len = len as u32 as libc::socklen_t;
    // SAFETY: a NULL address; the kernel checks the length and fails the call.
    let r = unsafe {
        if bind {
            libc::bind(fd.as_raw_fd(), std::ptr::null(), len)
        } else {
            libc::connect(fd.as_raw_fd(), std::ptr::null(), len)
        }
    };
    if r < 0 {
        -(Errno::last() as i64)
    } else {
        0
    }
}

/// One send on a connected (stream) socket, never waiting: `data` with the
/// program's control messages and flags plus MSG_DONTWAIT. The result, or
/// -errno (EAGAIN when the send buffer is full).
pub fn send_now(fd: &OwnedFd, data: &[u8], control: &[u8], flags: i32) -> i64 {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: a zeroed msghdr is valid; the fields set below point at live buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !control.is_empty() {
        msg.msg_control = control.as_ptr() as *mut libc::c_void;
        msg.msg_controllen = control.len();
    }
    // SAFETY: msg describes valid memory for the duration of the call.
    let r = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, flags | libc::MSG_DONTWAIT) };
    if r < 0 {
        -(Errno::last() as i64)
    } else {
        r as i64
    }
}

/// The socket's SO_SNDTIMEO or SO_RCVTIMEO (`opt`); None when unset.
pub(crate) fn sock_timeout(fd: &OwnedFd, opt: i32) -> Option<std::time::Duration> {
    let mut tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    let mut len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: tv and len are valid for the kernel to write.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&mut tv as *mut libc::timeval).cast(),
            &mut len,
        )
    };
    let d = std::time::Duration::new(tv.tv_sec.max(0) as u64, (tv.tv_usec.max(0) as u32) * 1000);
    (r == 0 && !d.is_zero()).then_some(d)
}
