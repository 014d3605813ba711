//! The seccomp user-notification interface: structures and ioctls
//! (x86_64 values; see docs/design/unotify/DESIGN.md for the table).

use nix::errno::Errno;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

pub(crate) const SECCOMP_RET_USER_NOTIF: u32 = 0x7fc0_0000;
pub(crate) const SECCOMP_FILTER_FLAG_NEW_LISTENER: libc::c_ulong = 1 << 3;
pub(crate) const SECCOMP_GET_ACTION_AVAIL: libc::c_uint = 2;
pub(crate) const SECCOMP_GET_NOTIF_SIZES: libc::c_uint = 3;
const IOCTL_RECV: libc::c_ulong = 0xc050_2100;
const IOCTL_SEND: libc::c_ulong = 0xc018_2101;
const IOCTL_ID_VALID: libc::c_ulong = 0x4008_2102;
const IOCTL_ADDFD: libc::c_ulong = 0x4018_2103;
const IOCTL_SET_FLAGS: libc::c_ulong = 0x4008_2104;
pub(crate) const FLAG_CONTINUE: u32 = 1;
/// For issue 16 (isolate): replace a descriptor in place.
#[allow(dead_code)]
pub(crate) const ADDFD_FLAG_SETFD: u32 = 1;
pub(crate) const ADDFD_FLAG_SEND: u32 = 2;
pub(crate) const SYNC_WAKE_UP: u64 = 1;

/// struct seccomp_data.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Data {
    pub nr: i32,
    pub arch: u32,
    pub instruction_pointer: u64,
    pub args: [u64; 6],
}

/// struct seccomp_notif.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Notif {
    pub id: u64,
    pub pid: u32,
    pub flags: u32,
    pub data: Data,
}

/// struct seccomp_notif_resp.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Resp {
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
}

/// struct seccomp_notif_addfd.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct AddFd {
    id: u64,
    flags: u32,
    srcfd: u32,
    newfd: u32,
    newfd_flags: u32,
}

/// struct seccomp_notif_sizes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Sizes {
    pub notif: u16,
    pub resp: u16,
    pub data: u16,
}

pub(crate) fn struct_sizes_fit(s: &Sizes) -> bool {
    usize::from(s.notif) >= std::mem::size_of::<Notif>()
        && usize::from(s.resp) >= std::mem::size_of::<Resp>()
        && usize::from(s.data) >= std::mem::size_of::<Data>()
}

fn ioctl<T>(fd: RawFd, req: libc::c_ulong, arg: *mut T) -> Result<i32, Errno> {
    // SAFETY: every request here takes a pointer to the struct the caller
    // passes (or an integer, for SET_FLAGS), valid for the call.
    let r = unsafe { libc::ioctl(fd, req, arg) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

/// The listener: the supervisor's end of the filter.
pub(crate) struct Listener(pub OwnedFd);

impl Listener {
    pub(crate) fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// The next notification (the listener must be readable, or this waits).
    pub(crate) fn recv(&self) -> Result<Notif, Errno> {
        let mut n = Notif::default();
        ioctl(self.raw(), IOCTL_RECV, &mut n)?;
        Ok(n)
    }

    /// Whether the notification is still waiting for an answer (its thread
    /// was not interrupted by a signal, nor killed).
    pub(crate) fn valid(&self, id: u64) -> bool {
        let mut id = id;
        ioctl(self.raw(), IOCTL_ID_VALID, &mut id).is_ok()
    }

    /// Answer: the call returns `ret` (a value, or -errno).
    pub(crate) fn reply(&self, id: u64, ret: i64) -> Result<(), Errno> {
        let mut r = Resp {
            id,
            val: if ret >= 0 { ret } else { 0 },
            error: if ret < 0 { ret as i32 } else { 0 },
            flags: 0,
        };
        ioctl(self.raw(), IOCTL_SEND, &mut r).map(drop)
    }

    /// Let the kernel run the call as the program made it.
    pub(crate) fn continue_call(&self, id: u64) -> Result<(), Errno> {
        let mut r = Resp {
            id,
            val: 0,
            error: 0,
            flags: FLAG_CONTINUE,
        };
        ioctl(self.raw(), IOCTL_SEND, &mut r).map(drop)
    }

    /// Install `src` in the program's descriptor table and answer the call
    /// with its number, atomically (ADDFD_FLAG_SEND, Linux 5.14).
    pub(crate) fn add_fd_and_reply(
        &self,
        id: u64,
        src: RawFd,
        cloexec: bool,
    ) -> Result<i32, Errno> {
        let mut a = AddFd {
            id,
            flags: ADDFD_FLAG_SEND,
            srcfd: src as u32,
            newfd: 0,
            newfd_flags: if cloexec { libc::O_CLOEXEC as u32 } else { 0 },
        };
        ioctl(self.raw(), IOCTL_ADDFD, &mut a)
    }

    /// Put `src` in the program's descriptor table at number `at`, in place
    /// of what was there (ADDFD_FLAG_SETFD: as dup2 would), without
    /// answering the call.
    pub(crate) fn set_fd(&self, id: u64, src: RawFd, at: i32, cloexec: bool) -> Result<i32, Errno> {
        let mut a = AddFd {
            id,
            flags: ADDFD_FLAG_SETFD,
            srcfd: src as u32,
            newfd: at as u32,
            newfd_flags: if cloexec { libc::O_CLOEXEC as u32 } else { 0 },
        };
        ioctl(self.raw(), IOCTL_ADDFD, &mut a)
    }

    /// SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (Linux 6.6): the woken thread runs
    /// on the supervisor's CPU, which halves the round trip.
    pub(crate) fn set_sync_wake_up(&self, on: bool) -> Result<(), Errno> {
        let flags = if on { SYNC_WAKE_UP } else { 0 };
        // SAFETY: SET_FLAGS takes the flags by value.
        let r = unsafe { libc::ioctl(self.raw(), IOCTL_SET_FLAGS, flags) };
        if r < 0 {
            Err(Errno::last())
        } else {
            Ok(())
        }
    }

    /// ADDFD with a notification id that does not exist: ENOENT when the
    /// kernel knows ADDFD_FLAG_SEND, EINVAL when it does not.
    pub(crate) fn addfd_send_known(&self) -> bool {
        let mut a = AddFd {
            id: u64::MAX,
            flags: ADDFD_FLAG_SEND,
            srcfd: 0,
            newfd: 0,
            newfd_flags: 0,
        };
        ioctl(self.raw(), IOCTL_ADDFD, &mut a) == Err(Errno::ENOENT)
    }
}

/// seccomp(SECCOMP_GET_NOTIF_SIZES).
pub(crate) fn sizes() -> Result<Sizes, Errno> {
    let mut s = Sizes::default();
    // SAFETY: the kernel writes a struct seccomp_notif_sizes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_GET_NOTIF_SIZES,
            0,
            &mut s as *mut Sizes,
        )
    };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(s)
    }
}

/// seccomp(SECCOMP_GET_ACTION_AVAIL, RET_USER_NOTIF).
pub(crate) fn user_notif_available() -> bool {
    let action: u32 = SECCOMP_RET_USER_NOTIF;
    // SAFETY: the kernel reads a u32.
    unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_GET_ACTION_AVAIL,
            0,
            &action as *const u32,
        ) == 0
    }
}
