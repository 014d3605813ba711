//! Reading a message (struct msghdr, its iovecs and control data) out of a
//! stopped tracee, in the native or the 32-bit layout, with the kernel's limits.

use crate::decode::read_msg_name;
use crate::remote::{read_mem, read_u32, read_u64};
use crate::sockaddr::SockAddr;
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
    pub data: Vec<u8>,
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

/// Read `len` bytes at `ptr`, appending to `out`.
fn append(pid: i32, ptr: u64, len: u64, out: &mut Vec<u8>) -> Result<(), Errno> {
    // len comes from the tracee: no arithmetic on it may overflow.
    if len > (MAX_DATA - out.len()) as u64 {
        return Err(Errno::EMSGSIZE);
    }
    let start = out.len();
    out.resize(start + len as usize, 0);
    read_mem(pid, ptr, &mut out[start..])
}

/// Read the data of `sendto(fd, ptr, len, ...)`.
pub fn read_buffer(pid: i32, ptr: u64, len: u64) -> Result<Vec<u8>, Errno> {
    let mut v = Vec::new();
    append(pid, ptr, len, &mut v)?;
    Ok(v)
}

/// Read the msghdr at `ptr`.
pub fn read_message(pid: i32, ptr: u64, compat: bool) -> Result<Message, Errno> {
    let (w, iov_off, iovlen_off, ctl_off, ctllen_off) = if compat {
        (4, 8, 12, 16, 20)
    } else {
        (8, 16, 24, 32, 40)
    };
    let name = read_msg_name(pid, ptr, compat)?;
    let field = |off: u64| ptr.checked_add(off).ok_or(Errno::EFAULT);
    let iov = word(pid, field(iov_off)?, compat)?;
    let iovlen = word(pid, field(iovlen_off)?, compat)?;
    let control = word(pid, field(ctl_off)?, compat)?;
    let controllen = word(pid, field(ctllen_off)?, compat)?;
    if iovlen > MAX_IOV {
        return Err(Errno::EMSGSIZE);
    }
    let mut data = Vec::new();
    for i in 0..iovlen {
        let at = iov.checked_add(i * 2 * w).ok_or(Errno::EFAULT)?;
        let base = word(pid, at, compat)?;
        let len = word(pid, at.checked_add(w).ok_or(Errno::EFAULT)?, compat)?;
        append(pid, base, len, &mut data)?;
    }
    let mut ctl = Vec::new();
    if control != 0 && controllen > 0 {
        if compat {
            // 32-bit control messages have another layout; not translated.
            return Err(Errno::EOPNOTSUPP);
        }
        if controllen > MAX_CONTROL {
            return Err(Errno::ENOBUFS);
        }
        ctl.resize(controllen as usize, 0);
        read_mem(pid, control, &mut ctl)?;
    }
    Ok(Message {
        name,
        data,
        control: ctl,
    })
}
