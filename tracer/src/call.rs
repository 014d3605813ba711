//! What the tracer hands to a [`NetHandler`] and what it gets back.

use crate::arch::Abi;
use crate::sockaddr::SockAddr;
use nix::errno::Errno;

/// The network operation a trapped call performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Socket,
    Connect,
    Bind,
    Listen,
    Accept,
    SendTo,
    SendMsg,
    SendMmsg,
    GetSockName,
    GetPeerName,
    /// recvfrom, recvmsg: trapped only for the source address of what they
    /// return ([`Interests::recv`]).
    RecvFrom,
    RecvMsg,
}

impl Op {
    /// The name used in events and logs (the syscall's name).
    pub fn name(self) -> &'static str {
        match self {
            Op::Socket => "socket",
            Op::Connect => "connect",
            Op::Bind => "bind",
            Op::Listen => "listen",
            Op::Accept => "accept",
            Op::SendTo => "sendto",
            Op::SendMsg => "sendmsg",
            Op::SendMmsg => "sendmmsg",
            Op::GetSockName => "getsockname",
            Op::GetPeerName => "getpeername",
            Op::RecvFrom => "recvfrom",
            Op::RecvMsg => "recvmsg",
        }
    }

    /// Whether the call carries a destination or local address the tracer decodes.
    pub fn takes_address(self) -> bool {
        matches!(
            self,
            Op::Connect | Op::Bind | Op::SendTo | Op::SendMsg | Op::SendMmsg
        )
    }
}

/// Which calls a handler wants to see. The seccomp filter is built from this
/// before the program starts, so calls outside it never stop the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interests {
    pub socket: bool,
    pub connect: bool,
    pub bind: bool,
    pub listen: bool,
    pub accept: bool,
    /// sendto with a destination address, sendmsg, sendmmsg.
    pub send: bool,
    /// getsockname, getpeername.
    pub names: bool,
    /// recvfrom with an address buffer, recvmsg: the handler may show
    /// another source address ([`NetHandler::received`]); a stop at entry
    /// and, when [`NetHandler::wants_outcome`] says so, at exit.
    pub recv: bool,
    /// Fill [`Call::socket`] (domain, type, protocol) for fd-based calls.
    pub socket_info: bool,
    /// Report every call's result to [`NetHandler::finished`]. Calls the tracer
    /// passes to the kernel then cost a second stop (at syscall exit).
    pub outcomes: bool,
    /// Report the result of accept() only (with the new socket's details in
    /// [`Call::accepted`]); other passed calls keep one stop.
    pub accept_outcomes: bool,
    /// Report the result of listen() (one more stop per listen()).
    pub listen_outcomes: bool,
    /// Read the addresses a handler needs to answer with others in their
    /// place: [`Call::local`] for getsockname and after the tracer's own
    /// connects, and for accept the new socket's [`Call::peer`], the size of
    /// the program's address buffer, and a call to [`NetHandler::accepted`].
    /// Each costs a syscall, so it is opt-in.
    pub addresses: bool,
    /// Make io_uring_setup fail with ENOSYS (io_uring operations are invisible
    /// to seccomp; runtimes fall back to ordinary calls).
    pub deny_io_uring: bool,
    /// Trap socket() when it would create a raw IP socket (AF_INET/AF_INET6
    /// with SOCK_RAW, or AF_INET with the obsolete SOCK_PACKET) or a packet
    /// socket (AF_PACKET, AF_XDP), and only then (see [`is_raw_socket`]);
    /// other sockets never stop for it. i386 `socketcall` keeps its
    /// arguments in memory, so every i386 socket() stops.
    pub raw_sockets: bool,
}

/// AF_XDP (not in every libc).
const AF_XDP: i32 = 44;
/// The obsolete SOCK_PACKET type: with AF_INET it makes a packet socket.
const SOCK_PACKET: i32 = 10;
/// The kernel's SOCK_TYPE_MASK: the bits of `type` that name the type
/// (the rest are SOCK_NONBLOCK and SOCK_CLOEXEC).
pub const SOCK_TYPE_MASK: i32 = 0xf;

/// Whether socket(domain, type, _) would create a socket whose destination
/// is in its payload: a raw IP socket or a packet socket. The same test as
/// the filter's (see [`Interests::raw_sockets`]).
pub fn is_raw_socket(domain: i32, sotype: i32) -> bool {
    let t = sotype & SOCK_TYPE_MASK;
    match domain {
        libc::AF_PACKET | AF_XDP => true,
        libc::AF_INET => t == libc::SOCK_RAW || t == SOCK_PACKET,
        libc::AF_INET6 => t == libc::SOCK_RAW,
        _ => false,
    }
}

impl Interests {
    /// Every network call, with socket details and results: what an event log needs.
    pub const ALL: Interests = Interests {
        socket: true,
        connect: true,
        bind: true,
        listen: true,
        accept: true,
        send: true,
        names: true,
        recv: true,
        socket_info: true,
        outcomes: true,
        accept_outcomes: true,
        listen_outcomes: true,
        addresses: true,
        deny_io_uring: false,
        raw_sockets: true,
    };
    /// No calls at all.
    pub const NONE: Interests = Interests {
        socket: false,
        connect: false,
        bind: false,
        listen: false,
        accept: false,
        send: false,
        names: false,
        recv: false,
        socket_info: false,
        outcomes: false,
        accept_outcomes: false,
        listen_outcomes: false,
        addresses: false,
        deny_io_uring: false,
        raw_sockets: false,
    };

    pub fn wants(&self, op: Op) -> bool {
        match op {
            Op::Socket => self.socket || self.raw_sockets,
            Op::Connect => self.connect,
            Op::Bind => self.bind,
            Op::Listen => self.listen,
            Op::Accept => self.accept,
            Op::SendTo | Op::SendMsg | Op::SendMmsg => self.send,
            Op::GetSockName | Op::GetPeerName => self.names,
            Op::RecvFrom | Op::RecvMsg => self.recv,
        }
    }
}

/// Kind of a socket, read from the kernel through a borrowed descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketInfo {
    /// AF_* of the socket (not of the address the program passed).
    pub domain: i32,
    /// SOCK_STREAM, SOCK_DGRAM, ...
    pub sotype: i32,
    /// IPPROTO_TCP, IPPROTO_UDP, ...
    pub protocol: i32,
    /// Whether the open file has O_NONBLOCK.
    pub nonblocking: bool,
    /// The socket's inode: identifies the socket across descriptors and processes.
    pub inode: u64,
    /// An AF_INET6 socket with IPV6_V6ONLY set (IPv4 and v4-mapped
    /// addresses are not for it).
    pub v6only: bool,
}

/// One trapped network call, decoded.
#[derive(Clone, Debug)]
pub struct Call {
    /// Process (thread group) id.
    pub pid: i32,
    /// Thread id that made the call.
    pub tid: i32,
    pub abi: Abi,
    pub op: Op,
    /// The socket descriptor, for every call but socket().
    pub fd: Option<i32>,
    /// For socket(): (domain, type, protocol) as passed.
    pub socket_args: Option<(i32, i32, i32)>,
    /// The socket's kind, when [`Interests::socket_info`] is set and the fd is a socket.
    pub socket: Option<SocketInfo>,
    /// The address the program passed, decoded from the tracer's private copy.
    /// For sendmsg it is the message's msg_name; for sendmmsg, that of
    /// message `index` (sendmmsg is decided message by message).
    pub addr: Option<SockAddr>,
    /// The socket's local address, for listen() and getsockname() when
    /// socket details are wanted (for listen, a port of 0 means listen()
    /// will bind implicitly); for a connect the tracer carried out, the
    /// local address it got (in `finished`).
    pub local: Option<SockAddr>,
    /// For sendmmsg: which message of the vector this is.
    pub index: usize,
    /// For getpeername, when socket details are wanted: the kernel's real
    /// peer (None: not connected). For accept, once it returned a socket:
    /// that socket's peer.
    pub peer: Option<SockAddr>,
    /// For accept, once it returned a descriptor: the new socket's details
    /// (when socket details and outcomes are wanted).
    pub accepted: Option<SocketInfo>,
    /// Raw flags argument (sendto/sendmsg flags, accept4 flags).
    pub flags: i32,
    /// For accept (and recvfrom/recvmsg) with an address buffer, when
    /// [`Interests::addresses`] is set: the program's (address,
    /// address-length) pointers and the buffer's size as the program passed
    /// it (read at entry: the kernel overwrites it with the real length).
    pub out_addr: Option<(u64, u64, u32)>,
    /// For recvfrom/recvmsg whose address buffer was too small for the
    /// source (so [`Call::peer`] is None): the bytes the kernel wrote there.
    pub peer_prefix: Option<SockPrefix>,
    /// For a connect the tracer carried out: whether this call began a new
    /// connection (Some(true): the kernel said EINPROGRESS to its first
    /// try), or found the socket connecting or connected already
    /// (Some(false): a 0 is that connection completing). None: not known.
    pub new_connection: Option<bool>,
    /// The call's second and third arguments as passed (buffer or message
    /// and length): with the op, socket and address, what tells one call
    /// from another (the tracer's notes of answers lost to signals).
    pub(crate) args_key: [u64; 2],
}

/// The first bytes of a sockaddr (a truncated address output).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockPrefix {
    pub len: u8,
    pub bytes: [u8; crate::sockaddr::MAX_ADDR_LEN],
}

impl SockPrefix {
    /// Whether `addr`, encoded, begins with these bytes.
    pub fn matches(&self, addr: &SockAddr) -> bool {
        let mut buf = [0u8; crate::sockaddr::MAX_ADDR_LEN];
        let n = usize::from(self.len);
        addr.encode(&mut buf)
            .is_some_and(|len| len >= n && buf[..n] == self.bytes[..n])
    }
}

/// What to do with a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Let the kernel run the program's own call, untouched. Only right when
    /// the decision did not depend on the address: a sibling thread may change
    /// the program's buffer after the tracer read it.
    Pass,
    /// Allow the call as decoded: the tracer performs it on a borrowed copy of
    /// the socket with its private copy of the address, so what was checked is
    /// what the kernel sees.
    Allow,
    /// Perform the call with this address instead (connect, bind, and the
    /// destination of datagrams sent with sendto/sendmsg/sendmmsg).
    Rewrite(SockAddr),
    /// For getpeername/getsockname: answer with this address (written to the
    /// program's output buffer with the kernel's truncation rules).
    Answer(SockAddr),
    /// Do not perform the call; the program gets -1 with this errno.
    Fail(Errno),
}

impl Verdict {
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Allow => "allow",
            Verdict::Rewrite(_) => "rewrite",
            Verdict::Answer(_) => "answer",
            Verdict::Fail(_) => "fail",
        }
    }
}

/// The result of a call as the program saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The call returned this value.
    Ok(i64),
    /// The call failed with this errno.
    Err(Errno),
    /// Not observed (the call was passed without [`Interests::outcomes`]).
    Unknown,
}

impl Outcome {
    pub fn from_raw(ret: i64) -> Outcome {
        if (-4095..0).contains(&ret) {
            Outcome::Err(Errno::from_raw(-ret as i32))
        } else {
            Outcome::Ok(ret)
        }
    }
}

/// Process-level events, for handlers that track programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessEvent {
    /// A new process (fork/vfork/clone without CLONE_THREAD) started.
    Spawned { pid: i32, parent: i32 },
    /// A process replaced its image.
    Exec { pid: i32 },
    /// A process (thread group) is gone.
    Exited { pid: i32 },
}

/// Implemented by the policy side. Called on the tracer thread for every
/// trapped call: keep `decide` fast and allocation-free where possible.
pub trait NetHandler {
    /// Which calls to trap. Read once, before the program starts.
    fn interests(&self) -> Interests;

    /// Decide a call.
    fn decide(&mut self, call: &Call) -> Verdict;

    /// Isolation (`Command::isolate`): the program's socket `old` (inode)
    /// was replaced by `new`, a socket made outside its namespace, during
    /// the call just decided: what the handler keeps per socket moves.
    fn socket_replaced(&mut self, old: u64, new: u64) {
        let _ = (old, new);
    }

    /// The call's result, once known (always called, with [`Outcome::Unknown`]
    /// when the result was not observed).
    fn finished(&mut self, _call: &Call, _verdict: &Verdict, _outcome: Outcome) {}

    /// accept() returned a socket (with [`Interests::accept_outcomes`],
    /// socket details and [`Interests::addresses`]): the address to show the program as the peer in
    /// accept's output instead of the real one ([`Call::peer`]), if any.
    /// Called before the program resumes.
    fn accepted(&mut self, _call: &Call) -> Option<SockAddr> {
        None
    }

    /// For a passed accept() (with [`Interests::accept_outcomes`]): whether
    /// its result is needed this time. False saves the stop at its exit.
    fn wants_outcome(&mut self, _call: &Call) -> bool {
        true
    }

    /// recvfrom/recvmsg returned a datagram from [`Call::peer`] (with
    /// [`Interests::recv`], called before the program resumes): the source
    /// address to show the program instead, if any.
    fn received(&mut self, _call: &Call) -> Option<SockAddr> {
        None
    }

    /// A connect the tracer carried out for [`Verdict::Rewrite`] was refused
    /// at once (ECONNREFUSED; the socket is unconnected again): another
    /// address to try on the same socket before the program sees the error,
    /// or None. Asked at most a bounded number of times per call.
    fn connect_refused(&mut self, _call: &Call) -> Option<SockAddr> {
        None
    }

    /// Whether [`NetHandler::connect_refused`] could name another address
    /// for this rewritten connect: when not, a non-blocking connect is not
    /// checked for an immediate refusal (two calls saved); the program
    /// learns it as untraced.
    fn may_fail_over(&mut self, _call: &Call) -> bool {
        true
    }

    /// A connect the tracer is about to carry out for [`Verdict::Rewrite`]
    /// (before its first try, not again on a failover): an address to bind
    /// the socket to first, its port left to the connect (the program's
    /// peer then sees that source), or None. Told the outcome with
    /// [`NetHandler::connect_source_bound`].
    fn connect_source(&mut self, _call: &Call) -> Option<SockAddr> {
        None
    }

    /// Whether the socket got the address [`NetHandler::connect_source`]
    /// named (not when it was bound already, or cannot have it).
    fn connect_source_bound(&mut self, _call: &Call, _bound: bool) {}

    /// Whether this call passes now whatever its arguments and socket are,
    /// with nothing wanted of it (no decision, no event, no report): the
    /// tracer then lets it run without reading anything (no borrowed socket,
    /// no memory read). Asked first for every trapped call: keep it cheap.
    fn passes_unseen(&mut self, _call: &Call) -> bool {
        false
    }

    /// Whether a rule or a service could refuse or redirect an IP call of
    /// `op` now (an i386 socketcall on a non-IP socket is refused under user
    /// notification when so: it cannot be carried out, and letting it run
    /// lets the kernel read its arguments again).
    fn could_refuse(&mut self, _op: Op) -> bool {
        true
    }

    /// Whether this call's [`Verdict::Allow`] could have been a
    /// [`Verdict::Pass`]: nothing about it was decided from its address, and
    /// it is carried out only so that its outcome is known. Where the tracer
    /// cannot carry it out as the kernel would (a Landlock-restricted
    /// process: landlock.rs), it then passes instead of being refused.
    fn may_pass(&mut self, _call: &Call) -> bool {
        false
    }

    /// A process started, exec'd or exited.
    fn process(&mut self, _event: ProcessEvent) {}

    /// A call the tracer refused on its own (an ABI it cannot decode, a
    /// malformed argument). The program got `errno`.
    fn refused(&mut self, _pid: i32, _tid: i32, _what: &str, _errno: Errno) {}
}

/// A handler that lets everything through: the mechanism's own cost.
#[derive(Default)]
pub struct PassThrough;

impl NetHandler for PassThrough {
    fn interests(&self) -> Interests {
        Interests {
            connect: true,
            bind: true,
            listen: true,
            accept: true,
            send: true,
            ..Interests::NONE
        }
    }
    fn decide(&mut self, _call: &Call) -> Verdict {
        Verdict::Pass
    }
}
