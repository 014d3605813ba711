//! Which client connections come from a program with a virtual IP, so a
//! service's accept() and getpeername() can show the client's VIP.
//!
//! A client with a VIP asks for a backend (Pick with `from`), connects, and
//! announces its real local address. The server's tracer, at accept, asks
//! who its peer is. The two race (the server can accept before the client's
//! tracer has announced), so a question about a backend with a client's
//! pick still pending waits briefly for the announcement; any other question
//! is answered at once.

use crate::services::routes::canonical_addr;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long an announced connection is remembered if no server asks (the
/// server's accept comes within milliseconds; a backlog may hold it longer).
const KEEP: Duration = Duration::from_secs(5);
/// How long a pick waits for its announcement (a failed connect never sends one).
const PENDING: Duration = Duration::from_secs(1);
/// The longest a question waits for a pending announcement.
const WAIT: Duration = Duration::from_millis(50);
/// Entries at which old ones are swept.
const SWEEP_AT: usize = 4096;
/// Entries kept at most (beyond, all are dropped: those servers see real addresses).
const MAX: usize = 65_536;

#[derive(Default)]
struct Inner {
    /// (Client's real local address, backend) -> (its virtual address, when).
    /// Taken out when the server asks: a later connection from the same
    /// port (ports are reused) is not mistaken for this one.
    by_local: HashMap<(SocketAddr, u16), (SocketAddr, Instant)>,
    /// Backend port -> when picks from clients with a VIP were made.
    pending: HashMap<u16, Vec<Instant>>,
}

#[derive(Default)]
pub struct Peers {
    inner: Mutex<Inner>,
    cv: Condvar,
}

impl Peers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A client with a VIP was given `backend`.
    pub fn picked(&self, backend: SocketAddr) {
        let now = Instant::now();
        let mut g = self.lock();
        let v = g.pending.entry(backend.port()).or_default();
        v.retain(|t| now.duration_since(*t) < PENDING);
        v.push(now);
    }

    /// That client connected from `local`.
    pub fn announce(&self, local: SocketAddr, vip: SocketAddr, backend: SocketAddr) {
        let now = Instant::now();
        let mut g = self.lock();
        if g.by_local.len() >= SWEEP_AT {
            g.by_local.retain(|_, (_, t)| now.duration_since(*t) < KEEP);
            if g.by_local.len() >= MAX {
                g.by_local.clear();
            }
        }
        g.by_local
            .insert((canonical_addr(local), backend.port()), (vip, now));
        if let Some(v) = g.pending.get_mut(&backend.port()) {
            if !v.is_empty() {
                v.remove(0);
            }
        }
        drop(g);
        self.cv.notify_all();
    }

    /// The virtual address of the client at `peer` that connected to `backend`.
    pub fn who(&self, peer: SocketAddr, backend: SocketAddr) -> Option<SocketAddr> {
        let peer = canonical_addr(peer);
        let end = Instant::now() + WAIT;
        let mut g = self.lock();
        let key = (peer, backend.port());
        loop {
            if let Some((vip, t)) = g.by_local.remove(&key) {
                if t.elapsed() < KEEP {
                    return Some(vip);
                }
            }
            let now = Instant::now();
            let waiting = g
                .pending
                .get(&backend.port())
                .is_some_and(|v| v.iter().any(|t| now.duration_since(*t) < PENDING));
            if !waiting || now >= end {
                return None;
            }
            g = self
                .cv
                .wait_timeout(g, end - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_question_waits_only_for_a_pending_pick() {
        let p = Arc::new(Peers::default());
        let backend: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let peer: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let vip: SocketAddr = "10.1.0.7:50000".parse().unwrap();
        // Nothing pending: no wait, no answer.
        let t = Instant::now();
        assert_eq!(p.who(peer, backend), None);
        assert!(t.elapsed() < WAIT);
        // Pending: the answer arrives while the question waits.
        p.picked(backend);
        let p2 = p.clone();
        let h = std::thread::spawn(move || p2.who(peer, backend));
        std::thread::sleep(Duration::from_millis(5));
        p.announce(peer, vip, backend);
        assert_eq!(h.join().unwrap(), Some(vip));
        // Answered once: the next connection from that port is another one.
        assert_eq!(p.who(peer, backend), None);
        // Another backend is another connection; IPv4-mapped peers are the same peer.
        p.announce(peer, vip, backend);
        let other: SocketAddr = "127.0.0.1:40001".parse().unwrap();
        assert_eq!(p.who(peer, other), None);
        assert_eq!(
            p.who("[::ffff:127.0.0.1]:50000".parse().unwrap(), backend),
            Some(vip)
        );
    }
}
