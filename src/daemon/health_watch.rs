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

/// How long a pick may stay unsettled before it is taken as lost (its
/// tracer died in the call, or the call was a TCP Fast Open send).
const SETTLE_AT_MOST: Duration = Duration::from_secs(1);

/// Per backend slot, the smallest gap between picks and settled picks seen
/// in each [`SETTLE_AT_MOST`] window: picks in flight come and go, so what
/// stayed unsettled through a whole window is lost, and is taken as counted
/// (a lost word costs a backend a phantom connection for one to two
/// windows, not for as long as traffic goes on).
#[derive(Default)]
struct OldPicks {
    since: Option<std::time::Instant>,
    current: HashMap<u32, u64>,
    lost: HashMap<u32, u64>,
}

impl OldPicks {
    fn observe(&mut self, now: std::time::Instant, gaps: impl Iterator<Item = (u32, u64)>) {
        for (slot, gap) in gaps {
            let g = self.current.entry(slot).or_insert(gap);
            *g = (*g).min(gap);
        }
        match self.since {
            Some(t) if now.duration_since(t) < SETTLE_AT_MOST => {}
            Some(_) => {
                self.since = Some(now);
                self.lost = std::mem::take(&mut self.current);
            }
            None => self.since = Some(now),
        }
    }

    /// The picks to take as counted: those settled, and those lost.
    fn counted(&self, slot: u32, (picks, settled): (u64, u64)) -> u64 {
        (settled + self.lost.get(&slot).copied().unwrap_or(0)).min(picks)
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
    old.observe(
        std::time::Instant::now(),
        routes.iter().zip(&marks).flat_map(|(r, m)| {
            r.backends
                .iter()
                .zip(m)
                .map(|(b, m)| (b.slot, m.0.saturating_sub(m.1)))
        }),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_pick_that_never_settles_is_counted_after_a_window_not_forever() {
        let mut o = OldPicks::default();
        let t0 = Instant::now();
        // One pick never settles (picks 1, settled 0); then each period one
        // more pick, which settles one period later: the gap goes 2, 1, 2, 1.
        let (mut picks, mut settled) = (1u64, 0u64);
        for i in 0..100u64 {
            let now = t0 + Duration::from_millis(50 * i);
            picks += 1;
            if i % 2 == 1 {
                settled += 2;
            }
            o.observe(now, [(7, picks - settled)].into_iter());
            let uncounted = picks - o.counted(7, (picks, settled));
            if i >= 45 {
                // After two windows the lost pick counts as in: only the
                // pick in flight is not counted.
                assert_eq!(uncounted, picks - settled - 1, "at {i}");
            }
        }
        // Nothing settled twice: never more than the picks.
        assert!(o.counted(7, (picks, settled)) <= picks);
    }
}
