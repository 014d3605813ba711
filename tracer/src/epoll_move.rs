//! Isolation (handover.rs) puts a socket of ours at the program's
//! descriptor number in place of its own. An epoll instance of the program
//! that watched the old socket would lose it (an epoll registration belongs
//! to the file, and the old file goes away): nginx as a reverse proxy
//! registers its upstream socket before connecting it, and would wait for
//! ever. So the registrations of the old socket, read from the program's
//! /proc/PID/fdinfo, are made again for the new one, with the same events
//! and data, under the same descriptor number (the number is part of an
//! epoll registration's key: the program's later EPOLL_CTL_MOD/DEL must
//! find it). A registration is made in a short-lived child of ours whose
//! descriptor table has the new socket at that number.

use nix::errno::Errno;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// One epoll registration of a descriptor: the epoll instance (the
/// program's descriptor number), its event mask and data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Registration {
    pub epfd: i32,
    pub events: u32,
    pub data: u64,
}

/// The epoll instances (descriptor numbers) of each thread's descriptor
/// table, as last found by a full look at /proc/TID/fd (a readlink per
/// descriptor: 32 ms at 15,000 descriptors), done at most once a second
/// per thread; in between only the instances known are read (one fdinfo
/// each). An instance made less than a second before a socket it watches
/// is handed over is not known yet: that registration is lost, as it was
/// before epoll registrations were moved at all.
#[derive(Default)]
pub(crate) struct Epolls(std::collections::HashMap<i32, (std::time::Instant, Vec<i32>)>);

const RESCAN: std::time::Duration = std::time::Duration::from_secs(1);

impl Epolls {
    /// The epoll registrations, in thread `pid`'s epoll instances, of its
    /// descriptor `fd` while it is the socket with inode `ino`.
    pub(crate) fn registrations(&mut self, pid: i32, fd: i32, ino: u64) -> Vec<Registration> {
        let now = std::time::Instant::now();
        let fresh = self
            .0
            .get(&pid)
            .is_some_and(|(at, _)| now.duration_since(*at) < RESCAN);
        if !fresh {
            if self.0.len() >= 1024 {
                self.0.retain(|_, (at, _)| now.duration_since(*at) < RESCAN);
            }
            self.0.insert(pid, (now, instances(pid)));
        }
        let mut out = Vec::new();
        for &epfd in self.0.get(&pid).map_or(&[][..], |(_, eps)| eps) {
            // (A number no longer an epoll instance has no tfd lines.)
            let Ok(info) = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{epfd}")) else {
                continue;
            };
            out.extend(
                parse(&info)
                    .filter(|(tfd, _, _, i)| *tfd == fd && *i == ino)
                    .map(|(_, events, data, _)| Registration { epfd, events, data }),
            );
        }
        out
    }
}

/// The descriptor numbers of thread `pid`'s epoll instances.
fn instances(pid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|l| l.as_os_str() == "anon_inode:[eventpoll]")
        })
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect()
}

/// The `tfd: N events: HEX data: HEX pos:P ino:HEX ...` lines of an
/// eventpoll fdinfo: (tfd, events, data, ino).
fn parse(info: &str) -> impl Iterator<Item = (i32, u32, u64, u64)> + '_ {
    info.lines().filter_map(|l| {
        let mut w = l.split_whitespace();
        if w.next()? != "tfd:" {
            return None;
        }
        let tfd = w.next()?.parse().ok()?;
        let mut events = None;
        let mut data = None;
        let mut ino = None;
        while let Some(k) = w.next() {
            match k {
                "events:" => events = u32::from_str_radix(w.next()?, 16).ok(),
                "data:" => data = u64::from_str_radix(w.next()?, 16).ok(),
                k if k.starts_with("ino:") => ino = u64::from_str_radix(&k[4..], 16).ok(),
                _ => {}
            }
        }
        Some((tfd, events?, data?, ino?))
    })
}

/// Register `new` in the epoll instance `ep` (our copy of the program's)
/// as descriptor number `fd` with `events` and `data`, from a child of
/// ours whose table has `new` at `fd`.
pub(crate) fn register(
    ep: &OwnedFd,
    new: &OwnedFd,
    fd: RawFd,
    events: u32,
    data: u64,
) -> Result<(), Errno> {
    // The child's copies must not sit at `fd` themselves.
    let away = |f: &OwnedFd| -> Result<Option<OwnedFd>, Errno> {
        if f.as_raw_fd() != fd {
            return Ok(None);
        }
        // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own; the result is ours.
        let d = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_DUPFD_CLOEXEC, fd + 1) };
        if d < 0 {
            return Err(Errno::last());
        }
        // SAFETY: d is a fresh descriptor.
        Ok(Some(unsafe {
            <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(d)
        }))
    };
    let ep2 = away(ep)?;
    let new2 = away(new)?;
    let ep_fd = ep2.as_ref().unwrap_or(ep).as_raw_fd();
    let new_fd = new2.as_ref().unwrap_or(new).as_raw_fd();
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: fork; the child makes raw system calls only (dup2, epoll_ctl,
    // _exit: async-signal-safe) on values prepared before, and never
    // returns into Rust code.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(Errno::last());
    }
    if child == 0 {
        // SAFETY: see above.
        unsafe {
            if libc::dup2(new_fd, fd) < 0 {
                libc::_exit(*libc::__errno_location() & 0x7f);
            }
            let r = libc::epoll_ctl(ep_fd, libc::EPOLL_CTL_ADD, fd, &mut ev);
            libc::_exit(if r < 0 {
                *libc::__errno_location() & 0x7f
            } else {
                0
            });
        }
    }
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child, status valid for writing.
        let r = unsafe { libc::waitpid(child, &mut status, libc::__WALL) };
        if r == child {
            break;
        }
        if Errno::last() != Errno::EINTR {
            return Err(Errno::last());
        }
    }
    match (libc::WIFEXITED(status), libc::WEXITSTATUS(status)) {
        (true, 0) => Ok(()),
        (true, e) => Err(Errno::from_raw(e)),
        _ => Err(Errno::ECHILD),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_registrations_of_an_eventpoll_fdinfo() {
        let info = "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t1038\n\
                    tfd:        4 events: 8000001c data:                4  pos:0 ino:797f8ed sdev:9\n\
                    tfd:       12 events:       19 data:     7f00deadbeef  pos:0 ino:1a sdev:9\n";
        let v: Vec<_> = parse(info).collect();
        assert_eq!(
            v,
            vec![
                (4, 0x8000_001c, 4, 0x797_f8ed),
                (12, 0x19, 0x7f00_dead_beef, 0x1a)
            ]
        );
    }

    #[test]
    fn a_registration_is_made_again_for_another_file_at_the_same_number() {
        use std::os::fd::FromRawFd;
        // SAFETY: plain syscalls making fresh descriptors we own.
        let (ep, a, b) = unsafe {
            (
                OwnedFd::from_raw_fd(libc::epoll_create1(libc::EPOLL_CLOEXEC)),
                OwnedFd::from_raw_fd(libc::eventfd(1, libc::EFD_CLOEXEC)),
                OwnedFd::from_raw_fd(libc::eventfd(1, libc::EFD_CLOEXEC)),
            )
        };
        // b registered as if it were at a's number: found by a's number.
        register(&ep, &b, a.as_raw_fd(), libc::EPOLLIN as u32, 77).unwrap();
        let mut ev = [libc::epoll_event { events: 0, u64: 0 }; 4];
        // SAFETY: a buffer of 4 events.
        let n = unsafe { libc::epoll_wait(ep.as_raw_fd(), ev.as_mut_ptr(), 4, 1000) };
        assert_eq!(n, 1);
        let data = ev[0].u64;
        assert_eq!(data, 77);
        let pid = std::process::id() as i32;
        let ino = {
            // SAFETY: fstat into a zeroed struct.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            unsafe { libc::fstat(b.as_raw_fd(), &mut st) };
            st.st_ino
        };
        let regs = Epolls::default().registrations(pid, a.as_raw_fd(), ino);
        assert_eq!(
            regs,
            vec![Registration {
                epfd: ep.as_raw_fd(),
                // (The kernel always adds EPOLLERR and EPOLLHUP.)
                events: (libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP) as u32,
                data: 77
            }]
        );
    }
}
