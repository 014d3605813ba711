//! What the handler hands the thread that talks to the daemon: messages as
//! they go out, or the facts of a connection, turned into text there (off
//! the tracer thread: nothing is formatted or allocated on the call's path).

use crate::protocol::{ConnReport, ToDaemon};
use std::net::SocketAddr;
use std::sync::Arc;
use tracer::SockAddr;

/// A connection made or listened on by the program.
#[derive(Clone, Debug)]
pub struct ConnFacts {
    pub inode: u64,
    pub pid: i32,
    pub comm: Arc<str>,
    pub proto: &'static str,
    /// Where the kernel connected it (None: a listener or accepted socket).
    pub remote: Option<SocketAddr>,
    /// What the program asked for, when a rewrite changed it.
    pub virtual_remote: Option<SockAddr>,
    pub rule: Option<u32>,
    /// "connect", "accept" or "listen".
    pub via: &'static str,
}

pub enum Report {
    Msg(ToDaemon),
    Conn(ConnFacts),
}

impl From<ToDaemon> for Report {
    fn from(m: ToDaemon) -> Report {
        Report::Msg(m)
    }
}

impl Report {
    pub fn into_msg(self) -> ToDaemon {
        match self {
            Report::Msg(m) => m,
            Report::Conn(c) => ToDaemon::Conn(ConnReport {
                inode: c.inode,
                pid: c.pid,
                comm: c.comm.to_string(),
                proto: c.proto.into(),
                remote: c.remote.map(|a| a.to_string()),
                virtual_remote: c.virtual_remote.map(|a| a.to_string()),
                rule: c.rule,
                via: c.via.into(),
                before_attach: false,
            }),
        }
    }
}
