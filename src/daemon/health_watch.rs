//! Backend health kept current off every connection's path: every
//! [`PERIOD`] the daemon measures health (daemon::health) and, for leastconn
//! services, load, and publishes both in the shared table
//! (services::shared), where tracers read them when they pick a backend.
//! Traced backends whose listener is gone leave the route table.

use super::state::{lock, State};
use crate::services::routes::Origin;
use crate::services::shared::Health;
use crate::services::static_table::Lb;
use std::collections::HashMap;
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
        .spawn(move || {
            let mut old = OldPicks::default();
            loop {
                std::thread::sleep(PERIOD);
                measure(&state, &mut old);
            }
        });
}

/// A pick older than this is taken as counted even if its tracer never
/// said its connect ran (it died in the call): a lost word costs a backend
/// one phantom connection for this long at most.
const SETTLE_AT_MOST: Duration = Duration::from_secs(1);

/// Each backend slot's pick count as it was between one and two
/// [`SETTLE_AT_MOST`] ago.
#[derive(Default)]
struct OldPicks {
    since: Option<std::time::Instant>,
    older: HashMap<u32, u64>,
    newer: HashMap<u32, u64>,
}

impl OldPicks {
    fn rotate(&mut self, now: std::time::Instant, picks: impl Iterator<Item = (u32, u64)>) {
        if self
            .since
            .is_some_and(|t| now.duration_since(t) < SETTLE_AT_MOST)
        {
            return;
        }
        self.since = Some(now);
        self.older = std::mem::replace(&mut self.newer, picks.collect());
    }

    /// The picks to take as counted: those settled, and at least those
    /// made long enough ago.
    fn counted(&self, slot: u32, (picks, settled): (u64, u64)) -> u64 {
        let old = self.older.get(&slot).copied().unwrap_or(0).min(picks);
        settled.max(old)
    }
}

fn measure(state: &Arc<Mutex<State>>, old: &mut OldPicks) {
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
    // Settled pick counts before the count: a pick settled during it is
    // counted twice for one period at worst, never missed; one not settled
    // yet (its connect has not run) is counted as a pick until the next.
    let marks: Vec<Vec<(u64, u64)>> = routes
        .iter()
        .map(|r| r.backends.iter().map(|b| shared.mark(b.slot)).collect())
        .collect();
    old.rotate(
        std::time::Instant::now(),
        routes
            .iter()
            .zip(&marks)
            .flat_map(|(r, m)| r.backends.iter().zip(m).map(|(b, m)| (b.slot, m.0))),
    );
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
                shared.set_load(b.slot, load, old.counted(b.slot, mark));
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
