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
    /// "connect" or "accept".
    pub via: String,
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
    /// The daemon will not take this trace (its --name is another VIP's):
    /// the trace says why and exits before the program starts.
    Refused { why: String },
}

/// The backend of a trace whose Hello does not name one.
fn ptrace() -> String {
    tracer::Chosen::Ptrace.name().into()
}

impl ToDaemon {
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
