//! appswitch-tracer: the interception mechanism.
//!
//! Runs a program under ptrace with a seccomp-BPF filter so that only the
//! network calls a [`NetHandler`] asked for stop it; decodes each call
//! (native x86_64 and i386, `socketcall` included), asks the handler, and
//! carries out the verdict by emulation on a borrowed copy of the socket.
//! It knows nothing of rules or services: that is the handler's business.

pub mod arch;
mod attach;
mod backend;
mod call;
mod closer;
mod decode;
mod emulate;
mod epoll_move;
mod error;
pub mod filter;
mod handover;
pub mod idmap;
mod inherited;
mod landlock;
mod msg;
mod netcall;
mod netns;
mod pidfds;
mod ports;
mod privs;
mod proc_calls;
mod remote;
mod signals;
pub mod sockaddr;
mod spawn;
mod stream;
mod tracer;
mod unotify;
mod wait;
mod watchdog;

pub use arch::Abi;
pub use attach::{attach, detach, detached, AttachError, Attached};
pub use backend::{unotify_support, Backend, Chosen};
pub use call::{
    is_raw_socket, Call, Interests, NetHandler, Op, Outcome, PassThrough, ProcessEvent, SockPrefix,
    SocketInfo, Verdict,
};
pub use error::TraceError;
pub use netns::Isolation;
pub use nix::errno::Errno;
pub use sockaddr::SockAddr;
pub use tracer::{run, Command, Credentials, ExitStatus};
