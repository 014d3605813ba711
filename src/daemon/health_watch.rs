//! Backend health kept current off every connection's path: every
//! [`PERIOD`] the daemon measures health (daemon::health) and, for leastconn
//! services, load, and publishes both in the shared table
//! (services::shared), where tracers read them when they pick a backend.
//! Traced backends whose listener is gone leave the route table.

use super::state::{lock, State};
use crate::services::routes::Origin;
use crate::services::shared::Health;
use crate::services::static_table::Lb;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often health (and, for leastconn services, load) is measured. A
/// listener that closes leaves rotation within this (plus the push of the
/// new table for a traced one).
pub const PERIOD: Duration = Duration::from_millis(50);

/// Measure every backend's health (and the load of leastconn services'
/// backends) every [`PERIOD`] and publish it in the shared table; traced
/// backends whose listener is gone leave the route table.
pub fn watch(state: Arc<Mutex<State>>) {
    let _ = std::thread::Builder::new()
        .name("appswitch-health".into())
        .spawn(move || loop {
            std::thread::sleep(PERIOD);
            measure(&state);
        });
}

fn measure(state: &Arc<Mutex<State>>) {
    let (routes, probe, shared, generation) = {
        let s = lock(state);
        if s.routes.routes.is_empty() {
            return;
        }
        let Some(shared) = s.shared.clone() else {
            return;
        };
        (
            s.routes.routes.clone(),
            s.probe(),
            shared,
            s.routes_generation,
        )
    };
    let leastconn = routes.iter().any(|r| r.lb == Lb::LeastConn);
    // Pick counts before the count: picks made during it are counted twice
    // for one period at worst, never missed.
    let marks: Vec<Vec<u64>> = routes
        .iter()
        .map(|r| r.backends.iter().map(|b| shared.mark(b.slot)).collect())
        .collect();
    let sockets = probe.query(&routes, leastconn);
    // Slots are given to other backends when the table changes: what was
    // measured for the old one is not written.
    if lock(state).routes_generation != generation {
        return;
    }
    let mut down = Vec::new();
    for (r, marks) in routes.iter().zip(marks) {
        for ((b, (h, load)), mark) in r.backends.iter().zip(probe.assess(r, &sockets)).zip(marks) {
            shared.set_health(b.slot, h);
            if r.lb == Lb::LeastConn {
                // What cannot be counted here (another host or namespace)
                // counts as 0, plus the picks of the last period.
                let load = if h == Health::Unknown { 0 } else { load as u64 };
                shared.set_load(b.slot, load, mark);
            }
            if let (Origin::Traced { inode, .. }, Health::Down) = (&b.origin, h) {
                down.push(*inode);
            }
        }
    }
    if !down.is_empty() {
        lock(state).remove_listeners(&down);
    }
}
