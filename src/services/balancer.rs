//! The choice among a route's backends: load balancing (round robin, random,
//! least connections), labels and liveness. Made in the trace process, on
//! the connection's path, from counters shared by every trace process of the
//! host (services::shared), so round robin is exact across programs.

use super::routes::Route;
use super::static_table::Lb;
use serde::{Deserialize, Serialize};

/// A client reaches a backend that has no labels, or one that shares at
/// least one key=value label with it.
pub fn labels_match(client: &[(String, String)], backend: &[(String, String)]) -> bool {
    backend.is_empty() || client.iter().any(|c| backend.contains(c))
}

/// Why no backend was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoBackend {
    /// Nothing listens at this virtual address (any more).
    NoneLive,
    /// Backends exist, but none shares a label with the client.
    Labels,
}

impl NoBackend {
    pub fn reason(self) -> &'static str {
        match self {
            NoBackend::NoneLive => "no live backend",
            NoBackend::Labels => "no backend shares a label with the client",
        }
    }
}

/// A small random generator (xorshift64*), for lb=random.
#[derive(Debug)]
pub struct Rng(u64);

impl Default for Rng {
    fn default() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id());
        Rng(seed | 1)
    }
}

impl Rng {
    pub fn draw(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Choose a backend of `route` (its index) for a client with `labels`.
/// `usable(i)`: backend `i` may take connections (live, not full, not
/// already tried by this call); `load(i)`: its current connections (for
/// leastconn); `ticket()`: the route's next round-robin number (taken only
/// when there is a choice to make); `random`: a random number. Allocates
/// nothing: it runs on the connection's path.
pub fn pick(
    route: &Route,
    labels: &[(String, String)],
    usable: impl Fn(usize) -> bool,
    load: impl Fn(usize) -> u64,
    ticket: impl FnOnce() -> u64,
    random: u64,
) -> Result<usize, NoBackend> {
    let n = route.backends.len();
    let mut alive = 0usize;
    let mut fits = 0usize;
    for (i, b) in route.backends.iter().enumerate() {
        if usable(i) {
            alive += 1;
            if labels_match(labels, &b.labels) {
                fits += 1;
            }
        }
    }
    if alive == 0 {
        return Err(NoBackend::NoneLive);
    }
    if fits == 0 {
        return Err(NoBackend::Labels);
    }
    let fit = |i: usize| usable(i) && labels_match(labels, &route.backends[i].labels);
    // The k-th fitting backend. `usable` may read shared state that changes
    // meanwhile: a backend that left since the count means none is chosen.
    let nth = |k: usize| (0..n).filter(|&i| fit(i)).nth(k).ok_or(NoBackend::NoneLive);
    Ok(match route.lb {
        Lb::RoundRobin => nth((ticket() % fits as u64) as usize)?,
        Lb::Random => nth((random % fits as u64) as usize)?,
        Lb::LeastConn => {
            // Ties go round robin, so equal loads still spread.
            let start = (ticket() % fits as u64) as usize;
            let mut best: Option<(u64, usize, usize)> = None;
            for (k, i) in (0..n).filter(|&i| fit(i)).enumerate() {
                // Rank from the ticket's position, so ties rotate.
                let key = (load(i), (k + fits - start) % fits, i);
                if best.is_none_or(|b| (key.0, key.1) < (b.0, b.1)) {
                    best = Some(key);
                }
            }
            best.ok_or(NoBackend::NoneLive)?.2
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::routes::{Backend, Origin};
    use std::net::SocketAddr;

    /// A route's counter and a generator, as a tracer keeps them.
    #[derive(Default)]
    struct Balancer {
        n: u64,
        rng: Rng,
    }

    impl Balancer {
        fn pick(
            &mut self,
            r: &Route,
            labels: &[(String, String)],
            usable: impl Fn(usize) -> bool,
            load: impl Fn(usize) -> u64,
        ) -> Result<SocketAddr, NoBackend> {
            let n = &mut self.n;
            let ticket = || {
                *n += 1;
                *n - 1
            };
            pick(r, labels, usable, load, ticket, self.rng.draw()).map(|i| r.backends[i].addr)
        }
    }

    fn route(lb: Lb, backends: &[(&str, &[(&str, &str)])]) -> Route {
        Route {
            name: "web".into(),
            vip: "10.1.0.1:80".parse().unwrap(),
            lb,
            backends: backends
                .iter()
                .map(|(a, l)| Backend {
                    addr: a.parse().unwrap(),
                    labels: l
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    origin: Origin::Static,
                    slot: crate::services::shared::NO_SLOT,
                })
                .collect(),
            slot: crate::services::shared::NO_SLOT,
            udp: false,
        }
    }

    #[test]
    fn round_robin_alternates_and_skips_dead() {
        let r = route(
            Lb::RoundRobin,
            &[("127.0.0.1:1", &[]), ("127.0.0.1:2", &[])],
        );
        let mut b = Balancer::default();
        let picks: Vec<u16> = (0..6)
            .map(|_| b.pick(&r, &[], |_| true, |_| 0).unwrap().port())
            .collect();
        assert_eq!(picks, [1, 2, 1, 2, 1, 2]);
        let only2 = |i: usize| r.backends[i].addr.port() == 2;
        assert_eq!(b.pick(&r, &[], only2, |_| 0).unwrap().port(), 2);
        assert_eq!(b.pick(&r, &[], |_| false, |_| 0), Err(NoBackend::NoneLive));
    }

    #[test]
    fn labels_filter_backends() {
        let r = route(
            Lb::RoundRobin,
            &[
                ("127.0.0.1:1", &[("role", "prod")]),
                ("127.0.0.1:2", &[("role", "test")]),
            ],
        );
        let mut b = Balancer::default();
        let test = vec![("role".to_string(), "test".to_string())];
        for _ in 0..4 {
            assert_eq!(b.pick(&r, &test, |_| true, |_| 0).unwrap().port(), 2);
        }
        let prod_only = |i: usize| r.backends[i].addr.port() == 1;
        assert_eq!(b.pick(&r, &test, prod_only, |_| 0), Err(NoBackend::Labels));
        assert_eq!(b.pick(&r, &[], |_| true, |_| 0), Err(NoBackend::Labels));
        assert!(labels_match(&[], &[]));
    }

    #[test]
    fn leastconn_and_random_stay_in_the_set() {
        let r = route(
            Lb::LeastConn,
            &[
                ("127.0.0.1:1", &[]),
                ("127.0.0.1:2", &[]),
                ("127.0.0.1:3", &[]),
            ],
        );
        let mut b = Balancer::default();
        let load = |i: usize| if r.backends[i].addr.port() == 3 { 0 } else { 5 };
        for _ in 0..5 {
            assert_eq!(b.pick(&r, &[], |_| true, load).unwrap().port(), 3);
        }
        let r = route(Lb::Random, &[("127.0.0.1:1", &[]), ("127.0.0.1:2", &[])]);
        let mut seen = [false; 3];
        for _ in 0..200 {
            seen[b.pick(&r, &[], |_| true, |_| 0).unwrap().port() as usize] = true;
        }
        assert_eq!(seen, [false, true, true]);
    }
}
