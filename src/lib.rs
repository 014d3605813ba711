//! The policy side of appswitch: rules, the event log, and the handlers that
//! plug into the tracer. The `appswitch` binary (main.rs) is a thin shell over
//! this library.

pub mod client;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod dns;
pub mod enforcer;
pub mod events;
pub mod live;
pub mod policytable;
pub mod procfs;
pub mod protocol;
pub mod router;
pub mod routing;
pub mod rules;
pub mod services;
pub mod sockdiag;
