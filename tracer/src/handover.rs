//! Isolation's handover (`trace --isolate`, netns.rs): a connect, bind or
//! addressed send that leaves the program's namespace is carried out on a
//! socket the supervisor makes in its own namespace, like the program's
//! (domain, type, protocol, non-blocking flag, close-on-exec and the socket
//! options that matter), put in the program's descriptor table in place of
//! its own (SECCOMP_IOCTL_NOTIF_ADDFD with SETFD, as dup2 would) before the
//! call is answered. From then on the program talks to the kernel directly
//! on that socket: no more stops for it, no proxy.
//!
//! Inside or outside: a destination the handler routed (a service's VIP,
//! a redirect, the daemon's DNS responder) is outside, and so is any address
//! not local to the program's namespace; loopback and the program's own
//! addresses stay inside (two processes of one program talk over 127.0.0.1
//! as in a container). A bind goes outside only when the handler moved it
//! (a `--ip` listener's host port, `--expose`).

use crate::call::{Interests, SocketInfo};
use crate::unotify::notif::Listener;
use nix::errno::Errno;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The calls isolation needs to see, whatever the handler asked for.
pub(crate) fn widen(i: &mut Interests) {
    i.connect = true;
    i.bind = true;
    i.listen = true;
    i.send = true;
    i.socket_info = true;
    // io_uring works on descriptors the filter never sees: on a handed-over
    // socket it could reach our side unchecked.
    i.deny_io_uring = true;
}

/// (level, option, size) carried over: what the program may have set before
/// connecting. SO_RCVBUF/SO_SNDBUF read back doubled: halved (see below).
const INT_OPTIONS: &[(i32, i32)] = &[
    (libc::SOL_SOCKET, libc::SO_REUSEADDR),
    (libc::SOL_SOCKET, libc::SO_REUSEPORT),
    (libc::SOL_SOCKET, libc::SO_KEEPALIVE),
    (libc::SOL_SOCKET, libc::SO_BROADCAST),
    (libc::SOL_SOCKET, libc::SO_PRIORITY),
    (libc::SOL_SOCKET, libc::SO_TIMESTAMPNS),
    (libc::SOL_SOCKET, libc::SO_RCVBUF),
    (libc::SOL_SOCKET, libc::SO_SNDBUF),
    (libc::IPPROTO_TCP, libc::TCP_NODELAY),
    (libc::IPPROTO_TCP, libc::TCP_CORK),
    (libc::IPPROTO_TCP, libc::TCP_SYNCNT),
    (libc::IPPROTO_TCP, libc::TCP_LINGER2),
    (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
    (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
    (libc::IPPROTO_TCP, libc::TCP_KEEPCNT),
    (libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT),
    (libc::IPPROTO_TCP, libc::TCP_MAXSEG),
    (libc::IPPROTO_TCP, libc::TCP_NOTSENT_LOWAT),
    (libc::IPPROTO_TCP, libc::TCP_FASTOPEN_CONNECT),
    (libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT),
    (libc::IPPROTO_IP, libc::IP_TOS),
    (libc::IPPROTO_IP, libc::IP_TTL),
    (libc::IPPROTO_IP, libc::IP_RECVTOS),
    (libc::IPPROTO_IP, libc::IP_RECVTTL),
    (libc::IPPROTO_IP, libc::IP_MULTICAST_TTL),
    (libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP),
    (libc::IPPROTO_IP, libc::IP_PKTINFO),
    (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY),
    (libc::IPPROTO_IPV6, libc::IPV6_TCLASS),
    (libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS),
    (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO),
];

fn get_int(fd: RawFd, level: i32, opt: i32) -> Option<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v and len are valid locals of the stated size.
    let r = unsafe {
        libc::getsockopt(
            fd,
            level,
            opt,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(v)
}

fn set_raw(fd: RawFd, level: i32, opt: i32, v: &[u8]) {
    // SAFETY: v is a valid buffer of its length.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            v.as_ptr().cast(),
            v.len() as libc::socklen_t,
        )
    };
}

/// What a fresh socket of one kind has in one namespace, read once.
pub(crate) struct Template {
    ints: Vec<Option<libc::c_int>>,
    congestion: [u8; 16],
}

fn congestion(fd: RawFd) -> Option<[u8; 16]> {
    let mut name = [0u8; 16];
    let mut len = name.len() as libc::socklen_t;
    // SAFETY: name is 16 writable bytes; len says so.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            name.as_mut_ptr().cast(),
            &mut len,
        )
    };
    (r == 0).then_some(name)
}

impl Template {
    fn of(fd: RawFd) -> Template {
        Template {
            ints: INT_OPTIONS
                .iter()
                .map(|&(level, opt)| get_int(fd, level, opt))
                .collect(),
            congestion: congestion(fd).unwrap_or_default(),
        }
    }
}

/// Whether option `(level, opt)` applies to a socket like `info`.
fn applies(level: i32, opt: i32, info: &SocketInfo) -> bool {
    let datagram_only = matches!(
        (level, opt),
        (libc::SOL_SOCKET, libc::SO_BROADCAST)
            | (libc::IPPROTO_IP, libc::IP_PKTINFO)
            | (libc::IPPROTO_IP, libc::IP_MULTICAST_TTL)
            | (libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP)
            | (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)
    );
    if datagram_only && info.sotype != libc::SOCK_DGRAM {
        return false;
    }
    match level {
        libc::IPPROTO_TCP => info.sotype == libc::SOCK_STREAM,
        libc::IPPROTO_IPV6 => info.domain == libc::AF_INET6,
        _ => true,
    }
}

/// The options of `from` that differ from `template` (a fresh socket of the
/// same kind in the same namespace: what the program did not set keeps the
/// default of ours, so a buffer size it never chose stays autotuned), set
/// on `to`.
fn copy_options(from: RawFd, template: &Template, to: RawFd, info: &SocketInfo) {
    for (&(level, opt), fresh) in INT_OPTIONS.iter().zip(&template.ints) {
        if !applies(level, opt, info) {
            continue;
        }
        let (Some(v), Some(fresh)) = (get_int(from, level, opt), *fresh) else {
            continue;
        };
        if v == fresh {
            continue;
        }
        // Priorities above 6 need CAP_NET_ADMIN, which our socket has and
        // the program's (in a namespace of its own) may only seem to have.
        if opt == libc::SO_PRIORITY && level == libc::SOL_SOCKET && !(0..=6).contains(&v) {
            continue;
        }
        // The kernel doubles a buffer size it is given (and reports that).
        let v = if opt == libc::SO_RCVBUF || opt == libc::SO_SNDBUF {
            v / 2
        } else {
            v
        };
        set_raw(to, level, opt, &v.to_ne_bytes());
    }
    // Linger, timeouts: structures, zero when not set.
    for opt in [libc::SO_LINGER, libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
        let mut buf = [0u8; 32];
        let mut len = buf.len() as libc::socklen_t;
        // SAFETY: buf is 32 writable bytes; len says so.
        let r = unsafe {
            libc::getsockopt(
                from,
                libc::SOL_SOCKET,
                opt,
                buf.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if r == 0 && buf[..len as usize].iter().any(|&b| b != 0) {
            set_raw(to, libc::SOL_SOCKET, opt, &buf[..len as usize]);
        }
    }
    if info.sotype == libc::SOCK_STREAM {
        if let Some(name) = congestion(from).filter(|n| *n != template.congestion) {
            let n = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            set_raw(to, libc::IPPROTO_TCP, libc::TCP_CONGESTION, &name[..n]);
        }
    }
}

/// Whether descriptor `fd` of process `pid` is close-on-exec
/// (/proc/PID/fdinfo/FD, flags in octal).
fn cloexec(pid: i32, fd: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
        .ok()
        .and_then(|s| {
            let f = s.lines().find_map(|l| l.strip_prefix("flags:"))?;
            u32::from_str_radix(f.trim(), 8).ok()
        })
        .is_some_and(|f| f & libc::O_CLOEXEC as u32 != 0)
}

/// Where a handed-over socket goes: the pending notification `id` on
/// `listener`, of thread `pid`, at its descriptor `fd`.
pub(crate) struct Target<'a> {
    pub(crate) listener: &'a Listener,
    pub(crate) id: u64,
    pub(crate) pid: i32,
    pub(crate) fd: i32,
}

/// A socket in our namespace like the program's `old` (a borrowed copy of
/// its descriptor), made with the program's `fsuid` and installed at `to`
/// in its place (the answer follows). Our copy.
pub(crate) fn hand_over(
    templates: &mut Templates,
    net: ProgramNet,
    fsuid: u32,
    to: Target<'_>,
    old: &OwnedFd,
    info: &SocketInfo,
) -> Result<OwnedFd, Errno> {
    let mut ty = info.sotype | libc::SOCK_CLOEXEC;
    if info.nonblocking {
        ty |= libc::SOCK_NONBLOCK;
    }
    // The socket is the program's: made with its file-system uid, so it is
    // owned by it (owner matches, SO_REUSEPORT groups) as if it had made it.
    // SAFETY: setfsuid changes this thread's file-system uid only; it is
    // put back right after.
    let before = unsafe { libc::syscall(libc::SYS_setfsuid, fsuid) } as u32;
    // SAFETY: plain socket(2); the result is a fresh descriptor we own.
    let raw = unsafe { libc::socket(info.domain, ty, info.protocol) };
    let made = Errno::last();
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_setfsuid, before) };
    if raw < 0 {
        return Err(made);
    }
    // SAFETY: raw is a fresh descriptor.
    let new = unsafe { OwnedFd::from_raw_fd(raw) };
    match templates.get(net, info) {
        Some(t) => copy_options(old.as_raw_fd(), t, new.as_raw_fd(), info),
        None => log::debug!("handover: no template socket: options not carried over"),
    }
    let Target {
        listener,
        id,
        pid,
        fd,
    } = to;
    keep_port(old, &new, info, pid)?;
    // The program's descriptor must still be that socket (a sibling thread
    // may have closed it and opened something else at the number).
    if !same_file(pid, fd, old) {
        return Err(Errno::EBADF);
    }
    // Its epoll registrations, made again for ours once it is in place.
    let watched = templates.epolls.registrations(pid, fd, info.inode);
    listener.set_fd(id, new.as_raw_fd(), fd, cloexec(pid, fd))?;
    if !watched.is_empty() {
        rewatch(pid, fd, &new, &watched);
    }
    Ok(new)
}

/// The program's epoll instances watch `new` at `fd` as they watched the
/// socket it replaced (epoll_move.rs). Best effort: a failure is said.
fn rewatch(pid: i32, fd: i32, new: &OwnedFd, watched: &[crate::epoll_move::Registration]) {
    // `pid` is the calling thread's id: its own pidfd reaches its table.
    let pidfd = match crate::remote::pidfd_open_thread(pid)
        .or_else(|_| crate::remote::pidfd_open(pid))
    {
        Ok(p) => p,
        Err(e) => {
            log::warn!("appswitch: pid {pid}: descriptor {fd} handed over, but its epoll registrations could not be moved: pidfd_open: {e}");
            return;
        }
    };
    for r in watched {
        let done = crate::remote::pidfd_getfd(&pidfd, r.epfd)
            .and_then(|ep| crate::epoll_move::register(&ep, new, fd, r.events, r.data));
        if let Err(e) = done {
            log::warn!(
                "appswitch: pid {pid}: descriptor {fd} handed over, but epoll instance {} could not \
                 watch it again: {e}",
                r.epfd
            );
        }
    }
}

/// The network namespace (inode, descriptor) of a program's socket that
/// is to be handed over: where its fresh-socket defaults are read.
pub(crate) struct ProgramNet(u64, OwnedFd);

/// Fresh sockets made in the program's namespace, one per kind: what a
/// socket there has before the program sets anything.
#[derive(Default)]
pub(crate) struct Templates {
    /// (namespace inode, domain, type) -> what a fresh one has.
    made: Vec<((u64, i32, i32), Template)>,
    /// Our listeners the handler moved (an --ip service's, --expose): the
    /// only sockets of ours the program may bind, listen and answer
    /// loopback peers with.
    pub(crate) services: crate::ports::BoundedSet,
    /// The program's epoll instances, for the registrations a handed-over
    /// socket keeps (epoll_move.rs).
    pub(crate) epolls: crate::epoll_move::Epolls,
}

/// The inode of the network namespace socket `s` lives in (SIOCGSKNS),
/// and that namespace.
fn namespace_of(s: RawFd) -> Option<(u64, OwnedFd)> {
    const SIOCGSKNS: libc::c_ulong = 0x894C;
    // SAFETY: SIOCGSKNS takes no argument and returns a new descriptor.
    let ns = unsafe { libc::ioctl(s, SIOCGSKNS) };
    if ns < 0 {
        return None;
    }
    // SAFETY: ns is a fresh descriptor.
    let ns = unsafe { OwnedFd::from_raw_fd(ns) };
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is a valid local.
    if unsafe { libc::fstat(ns.as_raw_fd(), &mut st) } != 0 {
        return None;
    }
    Some((st.st_ino, ns))
}

impl Templates {
    fn get(&mut self, net: ProgramNet, info: &SocketInfo) -> Option<&Template> {
        let ProgramNet(ino, ns) = net;
        let key = (ino, info.domain, info.sotype);
        if let Some(i) = self.made.iter().position(|(k, _)| *k == key) {
            return Some(&self.made[i].1);
        }
        let (domain, sotype, protocol) = (info.domain, info.sotype, info.protocol);
        // A thread of ours enters that namespace just to make the socket.
        let made = std::thread::Builder::new()
            .name("appswitch-template".into())
            .spawn(move || {
                // SAFETY: setns on a namespace descriptor (this thread only),
                // then socket(2).
                unsafe {
                    if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                        return None;
                    }
                    let s = libc::socket(domain, sotype | libc::SOCK_CLOEXEC, protocol);
                    (s >= 0).then(|| OwnedFd::from_raw_fd(s))
                }
            })
            .ok()?
            .join()
            .ok()??;
        if self.made.len() >= 64 {
            self.made.clear();
        }
        self.made.push((key, Template::of(made.as_raw_fd())));
        self.made.last().map(|(_, t)| t)
    }
}

impl<H: crate::NetHandler> crate::tracer::Tracer<'_, H> {
    /// Whether call `op` on a socket like `info`, to `to` (the address that
    /// will be used; `routed`: the handler chose it; `fastopen`: a send
    /// that connects), leaves an isolated program's namespace (Ok(true):
    /// hand the socket over: its namespace), stays (None), or may not be
    /// made (Err).
    ///
    /// A socket of ours that is not a service's listener (handed over for
    /// a connect or a send, or accepted) lives outside for good: it may not
    /// be bound or listen again here (that would open a port on our side),
    /// and what it sends to the program's own addresses would reach ours.
    pub(crate) fn leaves_namespace(
        &self,
        op: crate::Op,
        info: &SocketInfo,
        routed: bool,
        fastopen: bool,
        to: Option<&crate::SockAddr>,
        sock: &OwnedFd,
    ) -> Result<Option<ProgramNet>, Errno> {
        let (Some(iso), true) = (&self.isolate, self.notify.is_some()) else {
            return Ok(None);
        };
        // Only TCP and UDP sockets cross: a raw or packet socket stays
        // where it was made, with nothing to reach.
        if info.sotype != libc::SOCK_STREAM && info.sotype != libc::SOCK_DGRAM {
            return Ok(None);
        }
        let ns = namespace_of(sock.as_raw_fd());
        let outside = ns
            .as_ref()
            .is_some_and(|(ino, _)| Some(*ino) == our_namespace());
        let service = outside && self.templates.services.contains(&info.inode);
        if op == crate::Op::Listen {
            return if outside && !service {
                Err(Errno::EACCES)
            } else {
                Ok(None)
            };
        }
        let Some(to) = to.and_then(crate::SockAddr::ip) else {
            return Ok(None);
        };
        let away = routed || !iso.is_inside(to);
        let stream = info.sotype == libc::SOCK_STREAM;
        let leaves = match op {
            crate::Op::Connect => away,
            // A listener moved by the handler (--ip's host port, --expose).
            crate::Op::Bind => routed,
            crate::Op::SendTo | crate::Op::SendMsg | crate::Op::SendMmsg => {
                away && (!stream || fastopen)
            }
            _ => false,
        };
        if outside && !service {
            if op == crate::Op::Bind && !routed {
                return Err(Errno::EADDRNOTAVAIL);
            }
            if !away {
                return Err(Errno::ENETUNREACH);
            }
        }
        if !leaves || outside {
            return Ok(None);
        }
        // The program's namespace, for the fresh-socket defaults.
        Ok(ns.map(|(ino, fd)| ProgramNet(ino, fd)))
    }

    /// A connect() on an isolated program's socket of ours (handed over,
    /// so outside its namespace) to one of the program's own addresses,
    /// while that socket is connected: the kernel answers it from the
    /// socket's state (EISCONN, or 0 as a pending connection completes)
    /// and never routes the address. It is carried out with the socket's
    /// own peer as the address: a disconnect racing with it (another
    /// thread's AF_UNSPEC) leaves the socket connected where it was, never
    /// to our side of the program's address. None: not such a connect.
    pub(crate) fn connected_elsewhere(
        &self,
        info: &SocketInfo,
        sock: &OwnedFd,
        to: Option<&crate::SockAddr>,
    ) -> Option<crate::sockaddr::RawAddr> {
        let (Some(iso), true) = (&self.isolate, self.notify.is_some()) else {
            return None;
        };
        let to = to.and_then(crate::SockAddr::ip)?;
        if info.sotype != libc::SOCK_STREAM || !iso.is_inside(to) {
            return None;
        }
        let outside =
            namespace_of(sock.as_raw_fd()).is_some_and(|(ino, _)| Some(ino) == our_namespace());
        if !outside || self.templates.services.contains(&info.inode) {
            return None;
        }
        crate::sockaddr::RawAddr::of(&crate::emulate::peer_addr(sock)?)
    }

    /// Put a socket of ours like the program's `sock` in its place (the
    /// call being handled is still pending), telling the handler its new
    /// identity. Ours.
    pub(crate) fn hand_over(
        &mut self,
        tid: i32,
        call: &mut crate::Call,
        sock: &OwnedFd,
        info: &SocketInfo,
        net: ProgramNet,
    ) -> Result<OwnedFd, Errno> {
        let fd = call.fd.ok_or(Errno::EBADF)?;
        // The socket is the program's: made with its file-system uid.
        let fsuid = self.pidfds.fsuid(tid).ok_or(Errno::ESRCH)?;
        let n = self.notify.as_ref().ok_or(Errno::ENOSYS)?;
        let to = Target {
            listener: &n.listener,
            id: n.id,
            pid: tid,
            fd,
        };
        let ours = hand_over(&mut self.templates, net, fsuid, to, sock, info)?;
        if let Some(new) = inode(&ours) {
            if call.op == crate::Op::Bind {
                self.templates.services.insert(new);
            }
            self.handler.socket_replaced(info.inode, new);
            if let Some(s) = call.socket.as_mut() {
                s.inode = new;
            }
        }
        Ok(ours)
    }
}

/// The inode of socket `s` (what identifies it to the handler).
pub(crate) fn inode(s: &OwnedFd) -> Option<u64> {
    // SAFETY: st is a valid local.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on a descriptor we own into a local.
    (unsafe { libc::fstat(s.as_raw_fd(), &mut st) } == 0).then_some(st.st_ino)
}

/// appswitch's own network namespace (its inode).
fn our_namespace() -> Option<u64> {
    static OURS: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *OURS.get_or_init(|| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self/ns/net").ok().map(|m| m.ino())
    })
}

/// A local port the program bound before the handover is bound again on
/// ours (any address: its own are not here). Its errno if taken here.
fn keep_port(old: &OwnedFd, new: &OwnedFd, info: &SocketInfo, pid: i32) -> Result<(), Errno> {
    // SAFETY: a zeroed sockaddr_storage is valid; len says its size.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let at = (&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr>();
    // SAFETY: ss/len are valid locals of the stated size.
    if unsafe { libc::getsockname(old.as_raw_fd(), at, &mut len) } != 0 {
        return Ok(());
    }
    let port = match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in.
            let sin = unsafe { &mut *at.cast::<libc::sockaddr_in>() };
            sin.sin_addr.s_addr = 0;
            sin.sin_port
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6.
            let sin6 = unsafe { &mut *at.cast::<libc::sockaddr_in6>() };
            sin6.sin6_addr.s6_addr = [0; 16];
            sin6.sin6_scope_id = 0;
            sin6.sin6_port
        }
        _ => return Ok(()),
    };
    if port == 0 || i32::from(ss.ss_family) != info.domain {
        return Ok(());
    }
    // A privileged port needs CAP_NET_BIND_SERVICE (bit 10) of the program,
    // not ours.
    let bind_service = crate::remote::status_field(pid, "CapEff:")
        .and_then(|c| u64::from_str_radix(&c, 16).ok())
        .is_some_and(|c| c & (1 << 10) != 0);
    if u16::from_be(port) < 1024 && !bind_service {
        return Err(Errno::EACCES);
    }
    // SAFETY: ss holds a valid address of length len.
    if unsafe { libc::bind(new.as_raw_fd(), at, len) } != 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// Whether descriptor `fd` of `pid` is the same open file as our `ours`.
fn same_file(pid: i32, fd: i32, ours: &OwnedFd) -> bool {
    const KCMP_FILE: libc::c_int = 0;
    // SAFETY: kcmp on integers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid,
            libc::getpid(),
            KCMP_FILE,
            fd,
            ours.as_raw_fd(),
        )
    };
    r == 0
}
