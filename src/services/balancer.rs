//! The choice among a route's backends: load balancing (round robin, random,
//! least connections), labels and liveness. Made in the daemon when there is
//! one (so round robin is exact across separate client programs), in the
//! tracer otherwise.

use super::routes::Route;
use super::static_table::Lb;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;

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

/// Load-balancing state: a counter per service, a random generator.
#[derive(Debug)]
pub struct Balancer {
    next: HashMap<SocketAddr, usize>,
    rng: u64,
}

impl Default for Balancer {
    fn default() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id());
        Balancer {
            next: HashMap::new(),
            rng: seed | 1,
        }
    }
}

impl Balancer {
    fn random(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Choose a backend of `route` for a client with `labels`. `live(i)`
    /// says whether backend `i` can take connections (a traced listener
    /// still open); `load(i)` counts its current connections (for leastconn).
    pub fn pick(
        &mut self,
        route: &Route,
        labels: &[(String, String)],
        live: impl Fn(usize) -> bool,
        load: impl Fn(usize) -> usize,
    ) -> Result<SocketAddr, NoBackend> {
        let alive: Vec<usize> = (0..route.backends.len()).filter(|&i| live(i)).collect();
        if alive.is_empty() {
            return Err(NoBackend::NoneLive);
        }
        let fit: Vec<usize> = alive
            .into_iter()
            .filter(|&i| labels_match(labels, &route.backends[i].labels))
            .collect();
        if fit.is_empty() {
            return Err(NoBackend::Labels);
        }
        let i = match route.lb {
            Lb::RoundRobin => {
                let n = self.next.entry(route.vip).or_insert(0);
                let i = *n % fit.len();
                *n = n.wrapping_add(1);
                i
            }
            Lb::Random => (self.random() % fit.len() as u64) as usize,
            Lb::LeastConn => {
                // Ties go round robin, so equal loads still spread.
                let n = self.next.entry(route.vip).or_insert(0);
                let start = *n % fit.len();
                *n = n.wrapping_add(1);
                (0..fit.len())
                    .map(|k| (start + k) % fit.len())
                    .min_by_key(|&k| load(fit[k]))
                    .unwrap_or(start)
            }
        };
        Ok(route.backends[fit[i]].addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::routes::{Backend, Origin};

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
                })
                .collect(),
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
