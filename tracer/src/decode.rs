//! From a seccomp stop's raw syscall info to a [`Call`]. Every read from the
//! tracee is bounded by the lengths the program passed, and every address the
//! handler sees is the tracer's private copy.

use crate::arch::{self, nr, nr32, socketcall as sc, Abi};
use crate::call::{Call, Op};
use crate::remote::{read_mem, read_u32, read_u64};
use crate::sockaddr::{RawAddr, SockAddr, MAX_ADDR_LEN};
use nix::errno::Errno;

/// Raw syscall info (PTRACE_GET_SYSCALL_INFO, seccomp variant).
#[derive(Clone, Copy, Debug)]
pub struct RawCall {
    pub arch: u32,
    pub nr: u64,
    pub args: [u64; 6],
}

/// Where the decoded arguments came from, so the tracer can re-issue the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgSource {
    /// Arguments in registers (native, x32, i386 direct socket calls).
    Registers,
    /// i386 socketcall: arguments in an array in the tracee's memory.
    SocketcallArray,
}

/// A decoded call plus what the tracer needs to act on it.
#[derive(Debug)]
pub struct Decoded {
    pub call: Call,
    pub source: ArgSource,
    /// The call's arguments as the kernel would see them (from registers, or
    /// from the socketcall array), zero-extended for 32-bit ABIs, and `int`
    /// arguments cut to 32 bits as the kernel does.
    pub args: [u64; 6],
    /// The tracer's copy of the address argument, exactly as passed.
    pub raw: Option<RawAddr>,
    /// listen() on an unbound IP socket: the tracer bound it to a port of
    /// the kernel's choice first (ports.rs).
    pub autobound: bool,
}

/// Why a call could not be decoded. `Fail` becomes the call's errno (what the
/// kernel would have said); `Ignore` means the stop was not for a call the
/// tracer handles and the program just continues.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    Fail(Errno),
    Ignore,
}

impl From<Errno> for DecodeError {
    fn from(e: Errno) -> Self {
        DecodeError::Fail(e)
    }
}

/// Map (abi, nr) to an op, for calls with arguments in registers.
fn op_of(abi: Abi, n: u64) -> Option<Op> {
    let n = n & !arch::X32_SYSCALL_BIT;
    let native = [
        (nr::SOCKET, Op::Socket),
        (nr::CONNECT, Op::Connect),
        (nr::ACCEPT, Op::Accept),
        (nr::SENDTO, Op::SendTo),
        (nr::SENDMSG, Op::SendMsg),
        (nr::BIND, Op::Bind),
        (nr::LISTEN, Op::Listen),
        (nr::GETSOCKNAME, Op::GetSockName),
        (nr::GETPEERNAME, Op::GetPeerName),
        (nr::ACCEPT4, Op::Accept),
        (nr::SENDMMSG, Op::SendMmsg),
        (nr::RECVFROM, Op::RecvFrom),
        (nr::RECVMSG, Op::RecvMsg),
    ];
    let compat = [
        (nr32::SOCKET, Op::Socket),
        (nr32::CONNECT, Op::Connect),
        (nr32::SENDTO, Op::SendTo),
        (nr32::SENDMSG, Op::SendMsg),
        (nr32::BIND, Op::Bind),
        (nr32::LISTEN, Op::Listen),
        (nr32::GETSOCKNAME, Op::GetSockName),
        (nr32::GETPEERNAME, Op::GetPeerName),
        (nr32::ACCEPT4, Op::Accept),
        (nr32::SENDMMSG, Op::SendMmsg),
        (nr32::RECVFROM, Op::RecvFrom),
        (nr32::RECVMSG, Op::RecvMsg),
    ];
    let table: &[(u64, Op)] = if abi == Abi::Compat32 {
        &compat
    } else {
        &native
    };
    table.iter().find(|(k, _)| *k == n).map(|(_, op)| *op)
}

/// socketcall sub-call -> (op, number of u32 arguments the kernel reads).
fn socketcall_op(call: u64) -> Option<(Op, usize)> {
    Some(match call {
        sc::SOCKET => (Op::Socket, 3),
        sc::BIND => (Op::Bind, 3),
        sc::CONNECT => (Op::Connect, 3),
        sc::LISTEN => (Op::Listen, 2),
        sc::ACCEPT => (Op::Accept, 3),
        sc::GETSOCKNAME => (Op::GetSockName, 3),
        sc::GETPEERNAME => (Op::GetPeerName, 3),
        sc::SENDTO => (Op::SendTo, 6),
        sc::SENDMSG => (Op::SendMsg, 3),
        sc::ACCEPT4 => (Op::Accept, 4),
        sc::SENDMMSG => (Op::SendMmsg, 4),
        sc::RECVFROM => (Op::RecvFrom, 6),
        sc::RECVMSG => (Op::RecvMsg, 3),
        _ => return None,
    })
}

/// An address argument: decoded, and the tracer's copy of its bytes.
pub type Addr = (Option<SockAddr>, Option<RawAddr>);

/// Read a sockaddr of `len` bytes at `ptr` (`len` an `int`, as the kernel
/// takes it); nothing for a NULL pointer.
fn read_addr(pid: i32, ptr: u64, len: u64) -> Result<Addr, Errno> {
    if ptr == 0 {
        return Ok((None, None));
    }
    // The kernel refuses negative lengths and lengths above sockaddr_storage.
    let len = len as u32 as i32;
    if len < 0 || len as usize > MAX_ADDR_LEN {
        return Err(Errno::EINVAL);
    }
    let mut buf = [0u8; MAX_ADDR_LEN];
    let len = len as usize;
    read_mem(pid, ptr, &mut buf[..len])?;
    let decoded = SockAddr::decode(&buf[..len]).or(Some(SockAddr::Truncated(0)));
    Ok((decoded, Some(RawAddr::new(&buf[..len]))))
}

/// The msg_name of a msghdr at `ptr` (native or 32-bit layout). As the
/// kernel does: a NULL name or a zero length is no address, a negative
/// length is EINVAL, a length above 128 is cut to 128.
pub fn read_msg_name(pid: i32, ptr: u64, compat: bool) -> Result<Addr, Errno> {
    let (name, namelen) = if compat {
        (
            u64::from(read_u32(pid, ptr)?),
            read_u32(pid, ptr + 4)? as i32,
        )
    } else {
        (read_u64(pid, ptr)?, read_u32(pid, ptr + 8)? as i32)
    };
    if name == 0 || namelen == 0 {
        return Ok((None, None));
    }
    if namelen < 0 {
        return Err(Errno::EINVAL);
    }
    read_addr(pid, name, (namelen as usize).min(MAX_ADDR_LEN) as u64)
}

/// Which arguments of `op` are C `int`s (the kernel ignores their upper 32 bits).
fn int_args(op: Op) -> &'static [usize] {
    match op {
        Op::Socket => &[0, 1, 2],
        Op::Connect | Op::Bind | Op::SendMsg | Op::RecvMsg => &[0, 2],
        Op::Listen => &[0, 1],
        Op::Accept | Op::RecvFrom => &[0, 3],
        Op::SendTo => &[0, 3, 5],
        Op::SendMmsg => &[0, 2, 3],
        Op::GetSockName | Op::GetPeerName => &[0],
    }
}

pub fn decode(pid: i32, tid: i32, raw: &RawCall) -> Result<Decoded, DecodeError> {
    let abi = arch::abi_of(raw.arch, raw.nr).ok_or(DecodeError::Ignore)?;
    let (op, a, source) = if abi == Abi::Compat32 && raw.nr == nr32::SOCKETCALL {
        let (op, n) = socketcall_op(raw.args[0]).ok_or(DecodeError::Ignore)?;
        let mut words = [0u8; 24];
        read_mem(tid, raw.args[1], &mut words[..n * 4])?;
        let mut a = [0u64; 6];
        for (i, w) in words.chunks_exact(4).take(n).enumerate() {
            a[i] = u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
        }
        (op, a, ArgSource::SocketcallArray)
    } else {
        let op = op_of(abi, raw.nr).ok_or(DecodeError::Ignore)?;
        let mut a = raw.args;
        if abi != Abi::Native {
            for v in &mut a {
                *v &= 0xffff_ffff;
            }
        }
        for &i in int_args(op) {
            a[i] &= 0xffff_ffff;
        }
        // accept has three arguments: the fourth register is not accept4's flags.
        if abi != Abi::Compat32 && raw.nr & !arch::X32_SYSCALL_BIT == nr::ACCEPT {
            a[3] = 0;
        }
        (op, a, ArgSource::Registers)
    };
    let compat = abi != Abi::Native;
    let mut call = Call {
        pid,
        tid,
        abi,
        op,
        fd: (op != Op::Socket).then_some(a[0] as i32),
        socket_args: None,
        socket: None,
        addr: None,
        local: None,
        peer: None,
        index: 0,
        accepted: None,
        flags: 0,
        out_addr: None,
        peer_prefix: None,
        new_connection: None,
        args_key: [a[1], a[2]],
    };
    let mut raw_addr = None;
    match op {
        Op::Socket => call.socket_args = Some((a[0] as i32, a[1] as i32, a[2] as i32)),
        Op::Connect | Op::Bind => {
            // connect(fd, NULL, 0) is legal for some families; the kernel decides.
            (call.addr, raw_addr) = read_addr(tid, a[1], a[2])?;
        }
        Op::Accept => call.flags = a[3] as i32,
        Op::SendTo => {
            call.flags = a[3] as i32;
            (call.addr, raw_addr) = read_addr(tid, a[4], a[5])?;
        }
        Op::SendMsg => {
            call.flags = a[2] as i32;
            (call.addr, raw_addr) = read_msg_name(tid, a[1], compat)?;
        }
        Op::SendMmsg => {
            call.flags = a[3] as i32;
            if a[2] > 0 {
                (call.addr, raw_addr) = read_msg_name(tid, a[1], compat)?;
            }
        }
        Op::RecvFrom => call.flags = a[3] as i32,
        Op::RecvMsg => call.flags = a[2] as i32,
        Op::Listen | Op::GetSockName | Op::GetPeerName => {}
    }
    Ok(Decoded {
        call,
        source,
        args: a,
        raw: raw_addr,
        autobound: false,
    })
}
