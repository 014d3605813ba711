//! `appswitch::sockdiag` through its public API. The detailed tests (byte counts,
//! IPv6, UDP, TIME_WAIT, malformed replies) are the unit tests in src/sockdiag.rs.

use appswitch::sockdiag::{self, Proto};
use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;

fn inode_of(fd: &impl AsRawFd) -> u64 {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat only writes into `st`.
    assert_eq!(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) }, 0);
    // SAFETY: fstat succeeded, so it filled the struct.
    unsafe { st.assume_init() }.st_ino
}

#[test]
fn connection_is_listed_then_gone_after_close() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    let want: HashSet<u64> = [&client, &server].map(inode_of).into();

    let got = sockdiag::lookup(&want).unwrap();
    assert_eq!(got.len(), 2, "{got:?}");
    let c = &got[&inode_of(&client)];
    assert_eq!((c.proto, c.state), (Proto::Tcp, "ESTABLISHED"));
    assert_eq!(c.local, client.local_addr().unwrap());
    assert_eq!(c.remote, client.peer_addr().unwrap());
    let all = sockdiag::dump().unwrap();
    assert_eq!(all[&inode_of(&listener)].state, "LISTEN");

    drop(client);
    drop(server);
    // No fd left: both inodes are absent at once (the kernel may keep inode-0 state).
    assert!(sockdiag::lookup(&want).unwrap().is_empty());
}
