//! What runs inside `appswitch trace`: the handler the tracer calls for
//! every trapped call, the trace side of services (virtual IPs), the policy
//! snapshot it decides with, the link to the daemon, and the event log.

pub mod attach;
pub mod backend;
pub mod command;
pub mod daemon_link;
pub mod events;
pub mod handler;
mod open_sockets;
pub mod processes;
pub mod report;
pub mod snapshot;
mod standalone;
pub mod vip_router;

/// Log target of what happens to the program's calls (off by default: it
/// would land in the program's own stderr; on with `--log-file` or RUST_LOG).
pub const CALLS: &str = "appswitch::calls";
/// Log target of `log` rules (on by default: the rule asks for it).
pub const RULES: &str = "appswitch::rules";
