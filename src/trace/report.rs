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

/// A connection report as the daemon reads it (`ToDaemon::Conn`), written
/// straight from the facts: the same JSON line as
/// `ToDaemon::Conn(report.into_msg()).line()`, without the five strings
/// that conversion makes (one report per connection, on the writer thread).
#[derive(serde::Serialize)]
struct ConnLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    inode: u64,
    pid: i32,
    comm: &'a str,
    proto: &'static str,
    #[serde(serialize_with = "display")]
    remote: Option<&'a SocketAddr>,
    #[serde(serialize_with = "display")]
    virtual_remote: Option<&'a SockAddr>,
    rule: Option<u32>,
    via: &'static str,
}

fn display<S: serde::Serializer, T: std::fmt::Display>(
    v: &Option<&T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

impl ConnFacts {
    /// Append this report's line (newline included) to `out`.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        let line = ConnLine {
            kind: "conn",
            inode: self.inode,
            pid: self.pid,
            comm: &self.comm,
            proto: self.proto,
            remote: self.remote.as_ref(),
            virtual_remote: self.virtual_remote.as_ref(),
            rule: self.rule,
            via: self.via,
        };
        if serde_json::to_writer(&mut *out, &line).is_ok() {
            out.push(b'\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(comm: &str, remote: Option<&str>, virt: Option<&str>, rule: Option<u32>) -> ConnFacts {
        ConnFacts {
            inode: 4242,
            pid: 77,
            comm: Arc::from(comm),
            proto: "tcp",
            remote: remote.map(|r| r.parse().unwrap()),
            virtual_remote: virt.map(|v| SockAddr::from(v.parse::<SocketAddr>().unwrap())),
            rule,
            via: "connect",
        }
    }

    #[test]
    fn the_direct_line_is_the_message_line_and_reads_back() {
        let cases = [
            facts("curl", Some("127.0.0.1:80"), Some("127.77.0.1:80"), Some(3)),
            facts("we\"ird\\ na\nme\u{1}", Some("[::1]:8080"), None, None),
            facts("", None, None, None),
            facts(
                "nginx: worker",
                Some("[fe80::1%2]:443"),
                Some("[fd00::5]:443"),
                Some(0),
            ),
        ];
        for c in cases {
            let mut direct = Vec::new();
            c.write_line(&mut direct);
            let direct = String::from_utf8(direct).unwrap();
            let via_msg = Report::Conn(c.clone()).into_msg();
            assert_eq!(direct, via_msg.line());
            assert!(direct.starts_with(r#"{"type":"conn","#));
            assert_eq!(ToDaemon::parse(direct.trim_end()).unwrap(), via_msg);
        }
    }
}
