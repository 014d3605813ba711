//! The policy side of appswitch, grouped by the process a line runs in:
//! `trace` (inside `appswitch trace`), `daemon` (inside `appswitch daemon`),
//! and the models both share: `policy` (rules), `services` (the service
//! model) and `protocol` (the messages between the two); `procfs` and
//! `sockdiag` read the kernel's view for either side. The `appswitch`
//! binary (main.rs) is a thin shell over this library.

pub mod assets;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod policy;
pub mod procfs;
pub mod protocol;
pub mod services;
pub mod sockdiag;
pub mod stderr;
pub mod trace;
