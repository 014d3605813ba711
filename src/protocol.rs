//! Messages between `appswitch trace` and the daemon: JSON, one per line,
//! over the daemon's UNIX socket.

use crate::config::Mode;
use crate::services::routes::{Listener, RouteTable};
use crate::services::static_table::Lb;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::PathBuf;

/// What `trace --ip/--name/--lb` declares: the program's services live at this virtual IP.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostDecl {
    pub ip: IpAddr,
    pub name: Option<String>,
    #[serde(default)]
    pub lb: Lb,
}

/// A connection a traced program made or accepted.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConnReport {
    pub inode: u64,
    pub pid: i32,
    pub comm: String,
    /// "tcp" or "udp".
    pub proto: String,
    /// The address the kernel connected to (after any redirect); None for accepted sockets.
    pub remote: Option<String>,
    /// The address the program asked for, when a redirect changed it.
    #[serde(default)]
    pub virtual_remote: Option<String>,
    /// ID of the rule that decided it.
    #[serde(default)]
    pub rule: Option<u32>,
    /// "connect", "accept" or "listen".
    pub via: String,
    /// Found among the program's descriptors when `appswitch attach` put it
    /// under appswitch (made before: no call reported it). A report from a
    /// call about the same socket wins over it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub before_attach: bool,
}

/// Counters a tracer keeps (cumulative).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counters {
    pub calls: u64,
    pub denied: u64,
    pub rewritten: u64,
    /// Decision latency histogram: bucket i counts decisions of < 2^i ns.
    pub latency: [u64; 24],
    /// The sum of those latencies, ns (the histogram's `_sum` in `metrics`).
    #[serde(default)]
    pub latency_sum_ns: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToDaemon {
    Hello {
        pid: i32,
        comm: String,
        cmdline: Vec<String>,
        labels: Vec<(String, String)>,
        /// The trace's own rules (from --policy), rendered.
        local_policy: String,
        /// The program's virtual IP (trace --ip), if any.
        #[serde(default)]
        host: Option<HostDecl>,
        /// The interception backend that runs it: "unotify" or "ptrace"
        /// (a trace that does not say predates the choice: ptrace).
        #[serde(default = "ptrace")]
        backend: String,
        /// The program was already running: `appswitch attach` put it under
        /// appswitch (`pid` is then the program's, `supervisor` the
        /// attaching process's). false from a trace, or one that predates attach.
        #[serde(default)]
        attached: bool,
        /// The process that supervises an attached program (None: `pid`
        /// is the trace process itself).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        supervisor: Option<i32>,
    },
    /// The program listens on a virtual address (trace --ip): a backend.
    Listen(Listener),
    Conn(ConnReport),
    /// One event, as the JSON line `--events` would write.
    Event {
        line: String,
    },
    Stats(Counters),
    /// The program's live processes (thread-group ids, oldest first; at
    /// most 64), when they changed.
    Processes {
        pids: Vec<i32>,
    },
    /// An attached program's supervisor detached (apps/ID/ctl, `appswitch
    /// detach`, or a signal): its calls now pass undecided.
    Detached,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToTracer {
    Welcome {
        app: u32,
        /// A resolv.conf naming the daemon's DNS responder, for the program's
        /// private /etc/resolv.conf (None: no responder).
        #[serde(default)]
        resolv_conf: Option<PathBuf>,
        /// Where traced services' real sockets listen (the daemon's
        /// [services] bind, or the node address in cluster mode).
        #[serde(default)]
        bind: Option<IpAddr>,
        /// The daemon's network namespace (inode): its DNS responder is
        /// reachable only from programs in the same one.
        #[serde(default)]
        netns: u64,
        /// The balancing state shared by every trace process (services::shared),
        /// to map: connects to services are decided from it, with no message.
        #[serde(default)]
        shared: Option<PathBuf>,
    },
    /// Every service and virtual host.
    Routes(RouteTable),
    /// The global policy (PolicyTable::render text), mode, and the static
    /// services (ServiceTable::save_text), which service names in rules resolve to.
    Policy {
        version: u64,
        table: String,
        mode: Mode,
        #[serde(default)]
        services: String,
    },
    /// Whether anyone reads /appswitch/events: tracers send event lines only then.
    Events { wanted: bool },
    /// End the traced program (apps/ID/ctl: kill).
    Kill,
    /// Stop deciding: every later call of the attached program passes as it
    /// was made, nothing recorded (apps/ID/ctl: detach; attached apps only).
    Detach,
    /// The daemon will not take this trace (its --name is another VIP's):
    /// the trace says why and exits before the program starts.
    Refused { why: String },
}

/// The backend of a trace whose Hello does not name one.
fn ptrace() -> String {
    tracer::Chosen::Ptrace.name().into()
}

impl ToDaemon {
    /// One line from a tracer. A connection report (one per connection:
    /// the most frequent message) is read straight into its struct, not
    /// through serde's buffering of internally tagged enums (half the cost).
    pub fn parse(line: &str) -> serde_json::Result<ToDaemon> {
        if line.starts_with(r#"{"type":"conn","#) {
            if let Ok(c) = serde_json::from_str::<ConnReport>(line) {
                return Ok(ToDaemon::Conn(c));
            }
        }
        serde_json::from_str(line)
    }

    pub fn line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

impl ToTracer {
    pub fn line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_report_parses_the_fast_way_as_the_slow_one() {
        let c = ToDaemon::Conn(ConnReport {
            inode: 99,
            pid: 7,
            comm: "ab \"x\"".into(),
            proto: "tcp".into(),
            remote: Some("127.0.0.1:80".into()),
            virtual_remote: None,
            rule: Some(3),
            via: "connect".into(),
            before_attach: false,
        });
        let line = c.line();
        assert!(line.starts_with(r#"{"type":"conn","#), "{line}");
        assert_eq!(ToDaemon::parse(line.trim_end()).unwrap(), c);
        assert_eq!(
            serde_json::from_str::<ToDaemon>(line.trim_end()).unwrap(),
            c
        );
        // Anything else goes the general way.
        let s = ToDaemon::Stats(Counters::default());
        assert_eq!(ToDaemon::parse(s.line().trim_end()).unwrap(), s);
    }

    #[test]
    fn a_hello_without_attached_is_a_trace() {
        // What a trace of before attach sent.
        let old = r#"{"type":"hello","pid":7,"comm":"curl","cmdline":["curl"],"labels":[],"local_policy":"default allow\n","backend":"unotify"}"#;
        match serde_json::from_str::<ToDaemon>(old).unwrap() {
            ToDaemon::Hello {
                attached,
                supervisor,
                ..
            } => {
                assert!(!attached);
                assert_eq!(supervisor, None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_attached_hello_says_so_and_round_trips() {
        let hello = ToDaemon::Hello {
            pid: 4242,
            comm: "python3".into(),
            cmdline: vec!["python3".into(), "-m".into(), "http.server".into()],
            labels: vec![("app".into(), "web".into())],
            local_policy: "default allow\n".into(),
            host: None,
            backend: "unotify".into(),
            attached: true,
            supervisor: Some(4300),
        };
        let line = hello.line();
        assert!(line.contains(r#""attached":true"#), "{line}");
        assert!(line.contains(r#""supervisor":4300"#), "{line}");
        assert_eq!(serde_json::from_str::<ToDaemon>(&line).unwrap(), hello);
    }

    #[test]
    fn detach_messages_and_the_before_attach_flag() {
        assert_eq!(ToTracer::Detach.line(), "{\"type\":\"detach\"}\n");
        assert_eq!(ToDaemon::Detached.line(), "{\"type\":\"detached\"}\n");
        let old = r#"{"type":"conn","inode":9,"pid":1,"comm":"x","proto":"tcp","remote":null,"via":"accept"}"#;
        let ToDaemon::Conn(c) = serde_json::from_str::<ToDaemon>(old).unwrap() else {
            panic!()
        };
        assert!(!c.before_attach);
        // Only said when set.
        assert!(!ToDaemon::Conn(c.clone()).line().contains("before_attach"));
        let found = ConnReport {
            before_attach: true,
            ..c
        };
        let line = ToDaemon::Conn(found.clone()).line();
        assert_eq!(
            serde_json::from_str::<ToDaemon>(&line).unwrap(),
            ToDaemon::Conn(found)
        );
    }
}
