//! What runs inside `appswitch trace`: the handler the tracer calls for
//! every trapped call, the trace side of services (virtual IPs), the policy
//! snapshot it decides with, the link to the daemon, and the event log.

pub mod command;
pub mod daemon_link;
pub mod events;
pub mod handler;
pub mod processes;
pub mod report;
pub mod snapshot;
mod standalone;
pub mod vip_router;
