//! `trace --mount DIR`: the daemon's state and control files, in the trace
//! process, for this one program (no daemon).

use super::daemon_link;
use super::handler::Reporter;
use super::processes::Processes;
use super::report::Report;
use super::snapshot::{LiveNet, LivePolicy};
use crate::config::{Config, DefaultAction, Mode};
use crate::daemon;
use crate::policy::table::PolicyTable;
use crate::protocol::ToDaemon;
use anyhow::Context;
use std::sync::{Arc, Mutex};

/// `trace --mount DIR`: the daemon's state and files, in this process, for this program.
pub(super) fn in_process(
    dir: &std::path::Path,
    hello: ToDaemon,
    local: &PolicyTable,
    live: &Arc<LivePolicy>,
    net: &Arc<LiveNet>,
    config: &Config,
    mode_override: Option<Mode>,
) -> anyhow::Result<(Reporter, controlfs::Mounted)> {
    use crate::daemon::state::State;
    let default_deny = config.policy.default == DefaultAction::Deny;
    let state = Arc::new(Mutex::new(State::new(
        PolicyTable::new(default_deny),
        Default::default(),
        mode_override.unwrap_or(config.policy.mode),
        None,
    )));
    let (to_tracer, from_state) = std::sync::mpsc::channel();
    let app = daemon::state::lock(&state)
        .register(hello, to_tracer)
        .context("registering the program")?;
    let pids = Arc::new(Mutex::new(Processes::default()));
    {
        let (local, live, net, pids) = (local.clone(), live.clone(), net.clone(), pids.clone());
        std::thread::spawn(move || {
            for msg in from_state {
                daemon_link::apply(msg, &local, &live, &net, &pids, mode_override);
            }
        });
    }
    let (tx, rx) = std::sync::mpsc::sync_channel::<Report>(65_536);
    {
        let state = state.clone();
        std::thread::spawn(move || {
            for msg in rx {
                daemon::state::handle_reported(&state, app, msg.into_msg());
            }
        });
    }
    let mounted = daemon::mount(state.clone(), dir)?;
    daemon::watch_event_readers(state);
    Ok((
        Reporter {
            tx,
            counters: Arc::new(Mutex::new(Default::default())),
            pids,
            events_wanted: net.events_wanted.clone(),
        },
        mounted,
    ))
}
