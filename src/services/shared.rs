//! The balancing state every trace process of a host shares with the
//! daemon, in one memory-mapped file: a round-robin counter per route,
//! health and load per backend, and which client connections come from a
//! program with a virtual IP. Everything is an atomic in the mapping: a
//! connect is decided with no lock, no message and no system call.
//!
//! Slots are assigned by [`Slots`] (in the daemon, or in a standalone trace)
//! and travel in the route table ([`super::routes::Route::slot`],
//! [`super::routes::Backend::slot`]). The daemon writes health and measured
//! load; tracers take round-robin tickets, count their picks and record
//! their clients' virtual addresses. The file is created anew (unlinked,
//! then created) by each daemon, never truncated while mapped.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// Routes (service VIP:ports) with a slot at most.
pub const ROUTES: usize = 4096;
/// Distinct backend addresses with a slot at most.
pub const BACKENDS: usize = 16384;
/// Client connections remembered at once (a server asks within milliseconds).
pub const PEERS: usize = 65536;
pub use super::routes::NO_SLOT;

const MAGIC: u64 = 0x6170_7073_7774_6331; // "appswtc1"
/// Probes of the peer table per key.
const PROBES: usize = 8;
/// A peer entry older than this is free (its server never asked).
const PEER_KEEP_MS: u64 = 5_000;

/// Whether a backend can take connections, as the daemon last saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Health {
    /// Not checkable from here (another host or namespace), or not yet seen.
    Unknown = 0,
    /// Its socket listens.
    Up = 1,
    /// Nothing listens there.
    Down = 2,
    /// It listens, but its accept queue is full: out of rotation until it drains.
    Full = 3,
}

impl Health {
    fn from_raw(v: u32) -> Health {
        match v {
            1 => Health::Up,
            2 => Health::Down,
            3 => Health::Full,
            _ => Health::Unknown,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Down => "down",
            Health::Full => "full",
            Health::Unknown => "unknown",
        }
    }

    /// Whether new connections may be sent there.
    pub fn takes_connections(self) -> bool {
        matches!(self, Health::Up | Health::Unknown)
    }
}

#[repr(C, align(64))]
struct Header {
    magic: AtomicU64,
    size: AtomicU64,
    /// Until when (monotonic ms, low 32 bits) some client with a virtual IP
    /// may be connecting to some backend and leaving a record: servers look
    /// at their accepts until then.
    peers_until: AtomicU32,
}

#[repr(C, align(64))]
struct RouteSlot {
    /// Round-robin tickets taken.
    rr: AtomicU64,
}

#[repr(C, align(64))]
struct BackendSlot {
    health: AtomicU32,
    /// Clients with a virtual IP connecting here right now (between their
    /// pick and their record): a server that cannot find its peer waits
    /// for them, briefly.
    inflight: AtomicU32,
    /// Until when (monotonic ms, low 32 bits) `inflight` is believed: a
    /// tracer that died mid-connect leaves it raised, and it then expires.
    pending_until: AtomicU32,
    /// Connections the daemon counted (sock_diag), and the pick count when it did.
    base_load: AtomicU64,
    base_picks: AtomicU64,
    /// Picks of this backend by every tracer, ever.
    picks: AtomicU64,
    /// Of those, the picks whose connect() has run in the kernel (or
    /// failed): from then on the daemon's count sees their connections.
    settled: AtomicU64,
}

/// One client connection from a program with a virtual IP, under a seqlock
/// (odd `seq`: being written).
#[repr(C, align(64))]
struct PeerSlot {
    seq: AtomicU64,
    /// The client's real local address (v4 as v4-mapped) and the backend's port.
    key_ip: [AtomicU64; 2],
    key_ports: AtomicU64,
    /// The client's virtual address.
    vip_ip: [AtomicU64; 2],
    vip_port: AtomicU64,
    stamp_ms: AtomicU64,
}

fn offsets() -> (usize, usize, usize, usize) {
    let routes = std::mem::size_of::<Header>();
    let backends = routes + ROUTES * std::mem::size_of::<RouteSlot>();
    let peers = backends + BACKENDS * std::mem::size_of::<BackendSlot>();
    let end = peers + PEERS * std::mem::size_of::<PeerSlot>();
    (routes, backends, peers, end)
}

/// The mapping. Every field is an atomic, so sharing it between threads and
/// processes is sound whatever the others write.
pub struct SharedTable {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping is only accessed through atomics.
unsafe impl Send for SharedTable {}
// SAFETY: as above.
unsafe impl Sync for SharedTable {}

impl Drop for SharedTable {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping; no reference outlives self.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// How long a client's "about to connect" mark holds at most, in ms: its
/// tracer writes the record within microseconds, unless a loaded machine
/// leaves it unscheduled for a while (seen past 50 ms in CI).
const PEER_PENDING_MS: u64 = 250;

fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is valid for writing.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

fn map(fd: Option<i32>, len: usize) -> io::Result<*mut u8> {
    let (flags, fd) = match fd {
        Some(fd) => (libc::MAP_SHARED, fd),
        None => (libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1),
    };
    // SAFETY: a fresh mapping of `len` bytes; the kernel picks the address.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            fd,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(p.cast())
}

fn ip_words(ip: IpAddr) -> [u64; 2] {
    let v6 = match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    let n = u128::from(v6);
    [(n >> 64) as u64, n as u64]
}

fn words_ip(w: [u64; 2]) -> IpAddr {
    let v6 = Ipv6Addr::from((u128::from(w[0]) << 64) | u128::from(w[1]));
    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
}

impl SharedTable {
    /// The daemon's table at `path`: any old file is unlinked first (tracers
    /// of a previous daemon keep their mapping of it), then created 0600.
    pub fn create(path: &Path) -> io::Result<SharedTable> {
        use std::os::unix::fs::OpenOptionsExt;
        let (.., len) = offsets();
        let _ = std::fs::remove_file(path);
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        f.set_len(len as u64)?;
        let t = SharedTable {
            base: map(Some(f.as_raw_fd()), len)?,
            len,
        };
        t.header().size.store(len as u64, Ordering::Relaxed);
        t.header().magic.store(MAGIC, Ordering::Release);
        Ok(t)
    }

    /// A tracer's view of the daemon's table.
    pub fn open(path: &Path) -> io::Result<SharedTable> {
        let (.., len) = offsets();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        if f.metadata()?.len() != len as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "shared table has the wrong size (another appswitch version?)",
            ));
        }
        let t = SharedTable {
            base: map(Some(f.as_raw_fd()), len)?,
            len,
        };
        if t.header().magic.load(Ordering::Acquire) != MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not an appswitch shared table",
            ));
        }
        Ok(t)
    }

    /// A table private to this process (a trace with no daemon).
    pub fn private() -> io::Result<SharedTable> {
        let (.., len) = offsets();
        let t = SharedTable {
            base: map(None, len)?,
            len,
        };
        t.header().magic.store(MAGIC, Ordering::Release);
        Ok(t)
    }

    fn header(&self) -> &Header {
        // SAFETY: the mapping starts with a Header; all-zero is a valid Header.
        unsafe { &*(self.base as *const Header) }
    }

    fn route(&self, slot: u32) -> Option<&RouteSlot> {
        let i = slot as usize;
        (i < ROUTES).then(|| {
            let (off, ..) = offsets();
            // SAFETY: in bounds; atomics are valid for any bit pattern.
            unsafe { &*(self.base.add(off) as *const RouteSlot).add(i) }
        })
    }

    fn backend(&self, slot: u32) -> Option<&BackendSlot> {
        let i = slot as usize;
        (i < BACKENDS).then(|| {
            let (_, off, ..) = offsets();
            // SAFETY: in bounds; atomics are valid for any bit pattern.
            unsafe { &*(self.base.add(off) as *const BackendSlot).add(i) }
        })
    }

    fn peer(&self, i: usize) -> &PeerSlot {
        let (.., off, _) = offsets();
        // SAFETY: i < PEERS (callers reduce modulo PEERS); atomics are valid for any bits.
        unsafe { &*(self.base.add(off) as *const PeerSlot).add(i % PEERS) }
    }

    /// The next round-robin ticket of a route (None: no slot).
    pub fn ticket(&self, route: u32) -> Option<u64> {
        self.route(route)
            .map(|r| r.rr.fetch_add(1, Ordering::Relaxed))
    }

    pub fn health(&self, backend: u32) -> Health {
        self.backend(backend).map_or(Health::Unknown, |b| {
            Health::from_raw(b.health.load(Ordering::Relaxed))
        })
    }

    pub fn set_health(&self, backend: u32, h: Health) {
        if let Some(b) = self.backend(backend) {
            b.health.store(h as u32, Ordering::Relaxed);
        }
    }

    /// Current connections of a backend: the daemon's last count plus the
    /// picks made since.
    pub fn load(&self, backend: u32) -> u64 {
        self.backend(backend).map_or(0, |b| {
            let since = b
                .picks
                .load(Ordering::Relaxed)
                .saturating_sub(b.base_picks.load(Ordering::Relaxed));
            b.base_load.load(Ordering::Relaxed) + since
        })
    }

    /// A tracer sent a connection to this backend.
    pub fn picked(&self, backend: u32) {
        if let Some(b) = self.backend(backend) {
            b.picks.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A pick's connect() has run in the kernel (connected, connecting or
    /// failed): the daemon's next count of connections sees it.
    pub fn settled(&self, backend: u32) {
        if let Some(b) = self.backend(backend) {
            b.settled.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The daemon's side of a load count: call `mark` before counting and
    /// `set_load` after. It returns (picks, settled picks): a pick not
    /// settled before the count may not be in it (its connect has not run
    /// yet), so only settled ones are taken as counted.
    pub fn mark(&self, backend: u32) -> (u64, u64) {
        self.backend(backend).map_or((0, 0), |b| {
            let settled = b.settled.load(Ordering::Relaxed);
            (b.picks.load(Ordering::Relaxed), settled)
        })
    }

    pub fn set_load(&self, backend: u32, connections: u64, picks_at_count: u64) {
        if let Some(b) = self.backend(backend) {
            b.base_load.store(connections, Ordering::Relaxed);
            b.base_picks.store(picks_at_count, Ordering::Relaxed);
        }
    }

    /// Reset a slot before it is given to another backend or route.
    fn clear_backend(&self, slot: u32) {
        if let Some(b) = self.backend(slot) {
            b.health.store(0, Ordering::Relaxed);
            b.inflight.store(0, Ordering::Relaxed);
            b.pending_until.store(0, Ordering::Relaxed);
            let p = b.picks.load(Ordering::Relaxed);
            b.base_load.store(0, Ordering::Relaxed);
            b.base_picks.store(p, Ordering::Relaxed);
            // `settled` runs on (never above `picks`): picks of the old
            // backend that never settle are taken as lost within a window
            // (daemon::health_watch).
        }
    }

    /// A client with a virtual IP is about to connect to this backend
    /// (until [`Self::peer_done`], or PEER_PENDING_MS if its tracer never
    /// says: it died).
    pub fn expect_peer(&self, backend: u32) {
        if let Some(b) = self.backend(backend) {
            let until = (now_ms() + PEER_PENDING_MS) as u32;
            b.pending_until.store(until, Ordering::Relaxed);
            b.inflight.fetch_add(1, Ordering::AcqRel);
            self.peers_until(until);
        }
    }

    /// Servers look for records until `until` at least (never shortened).
    fn peers_until(&self, until: u32) {
        let at = &self.header().peers_until;
        let mut cur = at.load(Ordering::Acquire);
        while cur == 0 || (until.wrapping_sub(cur) as i32) > 0 {
            match at.compare_exchange_weak(cur, until, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(now) => cur = now,
            }
        }
    }

    /// Whether any client with a virtual IP may be connecting to any
    /// backend now (within PEER_PENDING_MS), or has left a record not yet taken
    /// (in the last 5 s): one load and a clock read, for a server deciding
    /// whether its accept() needs a look.
    pub fn any_peer_expected(&self) -> bool {
        let until = self.header().peers_until.load(Ordering::Acquire);
        until != 0 && (until.wrapping_sub(now_ms() as u32) as i32) > 0
    }

    /// That client has written its record (or its connect failed).
    pub fn peer_done(&self, backend: u32) {
        if let Some(b) = self.backend(backend) {
            let _ = b
                .inflight
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    /// Whether a client with a virtual IP is connecting to this backend now.
    pub fn peer_expected(&self, backend: u32) -> bool {
        self.backend(backend).is_some_and(|b| {
            let until = b.pending_until.load(Ordering::Relaxed);
            b.inflight.load(Ordering::Acquire) > 0
                && until != 0
                && (until.wrapping_sub(now_ms() as u32) as i32) > 0
        })
    }

    fn peer_key(local: SocketAddr, backend_port: u16) -> ([u64; 2], u64, usize) {
        let ip = ip_words(local.ip());
        let ports = (u64::from(local.port()) << 16) | u64::from(backend_port) | (1 << 40);
        // splitmix64's finaliser over the three words.
        let mix = |mut z: u64| {
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let h = mix(mix(mix(ip[0]) ^ ip[1]) ^ ports);
        (ip, ports, (h >> 16) as usize)
    }

    /// Record that the client at `local` (connected to a backend on
    /// `backend_port`) is the program with virtual address `vip`.
    pub fn put_peer(&self, local: SocketAddr, backend_port: u16, vip: SocketAddr) {
        let (ip, ports, h) = Self::peer_key(local, backend_port);
        let now = now_ms();
        self.peers_until((now + PEER_KEEP_MS) as u32);
        let vip_ip = ip_words(vip.ip());
        // A free, stale or same-key slot among the probes; else the first.
        let mut target = None;
        for k in 0..PROBES {
            let s = self.peer(h + k);
            let seq = s.seq.load(Ordering::Acquire);
            if seq & 1 == 1 {
                continue;
            }
            let free = s.key_ports.load(Ordering::Relaxed) == 0
                || now.saturating_sub(s.stamp_ms.load(Ordering::Relaxed)) > PEER_KEEP_MS
                || (s.key_ports.load(Ordering::Relaxed) == ports
                    && s.key_ip[0].load(Ordering::Relaxed) == ip[0]
                    && s.key_ip[1].load(Ordering::Relaxed) == ip[1]);
            if free {
                target = Some((s, seq));
                break;
            }
        }
        let (s, seq) = match target {
            Some(t) => t,
            None => {
                let s = self.peer(h);
                (s, s.seq.load(Ordering::Acquire) & !1)
            }
        };
        if s.seq
            .compare_exchange(seq, seq + 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return; // Another writer has it: this record is lost (the server sees the real peer).
        }
        s.key_ip[0].store(ip[0], Ordering::Relaxed);
        s.key_ip[1].store(ip[1], Ordering::Relaxed);
        s.key_ports.store(ports, Ordering::Relaxed);
        s.vip_ip[0].store(vip_ip[0], Ordering::Relaxed);
        s.vip_ip[1].store(vip_ip[1], Ordering::Relaxed);
        s.vip_port.store(u64::from(vip.port()), Ordering::Relaxed);
        s.stamp_ms.store(now, Ordering::Relaxed);
        s.seq.store(seq + 2, Ordering::Release);
    }

    /// The virtual address of the client at `peer` that connected to a
    /// backend on `backend_port`, taken out (a later connection from the same
    /// port is not mistaken for it).
    pub fn take_peer(&self, peer: SocketAddr, backend_port: u16) -> Option<SocketAddr> {
        let (ip, ports, h) = Self::peer_key(peer, backend_port);
        let now = now_ms();
        for k in 0..PROBES {
            let s = self.peer(h + k);
            let seq = s.seq.load(Ordering::Acquire);
            if seq & 1 == 1 || s.key_ports.load(Ordering::Relaxed) != ports {
                continue;
            }
            let key = [
                s.key_ip[0].load(Ordering::Relaxed),
                s.key_ip[1].load(Ordering::Relaxed),
            ];
            let vip = [
                s.vip_ip[0].load(Ordering::Relaxed),
                s.vip_ip[1].load(Ordering::Relaxed),
            ];
            let port = s.vip_port.load(Ordering::Relaxed) as u16;
            let stamp = s.stamp_ms.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if s.seq.load(Ordering::Relaxed) != seq || key != ip {
                continue;
            }
            if now.saturating_sub(stamp) > PEER_KEEP_MS {
                return None;
            }
            if s.seq
                .compare_exchange(seq, seq + 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                s.key_ports.store(0, Ordering::Relaxed);
                s.seq.store(seq + 2, Ordering::Release);
            }
            return Some(SocketAddr::new(words_ip(vip), port));
        }
        None
    }
}

/// Who holds which slot: stable for as long as a route or backend address
/// stays in the table, given back when it leaves (and cleared before reuse).
#[derive(Debug, Default)]
pub struct Slots {
    routes: HashMap<SocketAddr, u32>,
    backends: HashMap<SocketAddr, u32>,
    free_routes: Vec<u32>,
    free_backends: Vec<u32>,
    next_route: u32,
    next_backend: u32,
}

impl Slots {
    /// Give every route and backend of `t` its slot (NO_SLOT when full);
    /// slots of addresses no longer in `t` are freed and cleared in `shared`.
    pub fn assign(&mut self, t: &mut super::routes::RouteTable, shared: Option<&SharedTable>) {
        use std::collections::HashSet;
        let vips: HashSet<SocketAddr> = t.routes.iter().map(|r| r.vip).collect();
        let addrs: HashSet<SocketAddr> = t
            .routes
            .iter()
            .flat_map(|r| r.backends.iter().map(|b| b.addr))
            .collect();
        let gone_r: Vec<SocketAddr> = self
            .routes
            .keys()
            .filter(|a| !vips.contains(a))
            .copied()
            .collect();
        for a in gone_r {
            if let Some(s) = self.routes.remove(&a) {
                self.free_routes.push(s);
            }
        }
        let gone_b: Vec<SocketAddr> = self
            .backends
            .keys()
            .filter(|a| !addrs.contains(a))
            .copied()
            .collect();
        for a in gone_b {
            if let Some(s) = self.backends.remove(&a) {
                if let Some(sh) = shared {
                    sh.clear_backend(s);
                }
                self.free_backends.push(s);
            }
        }
        for r in &mut t.routes {
            r.slot = slot_for(
                &mut self.routes,
                &mut self.free_routes,
                &mut self.next_route,
                ROUTES,
                r.vip,
            );
            for b in &mut r.backends {
                b.slot = slot_for(
                    &mut self.backends,
                    &mut self.free_backends,
                    &mut self.next_backend,
                    BACKENDS,
                    b.addr,
                );
            }
        }
    }
}

fn slot_for(
    map: &mut HashMap<SocketAddr, u32>,
    free: &mut Vec<u32>,
    next: &mut u32,
    cap: usize,
    key: SocketAddr,
) -> u32 {
    if let Some(&s) = map.get(&key) {
        return s;
    }
    let s = match free.pop() {
        Some(s) => s,
        None if (*next as usize) < cap => {
            *next += 1;
            *next - 1
        }
        None => return NO_SLOT,
    };
    map.insert(key, s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_health_and_load_are_shared_between_mappings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.shm");
        let daemon = SharedTable::create(&path).unwrap();
        let tracer = SharedTable::open(&path).unwrap();
        assert_eq!(tracer.ticket(3), Some(0));
        assert_eq!(daemon.ticket(3), Some(1));
        assert_eq!(tracer.ticket(NO_SLOT), None);
        daemon.set_health(7, Health::Down);
        assert_eq!(tracer.health(7), Health::Down);
        let (_, m) = daemon.mark(7);
        tracer.picked(7);
        tracer.picked(7);
        assert_eq!(tracer.load(7), 2);
        daemon.set_load(7, 5, m);
        assert_eq!(tracer.load(7), 7);
        // A pick whose connect has not run yet is not taken as counted.
        tracer.settled(7);
        assert_eq!(daemon.mark(7), (2, 1));
        daemon.set_load(7, 5, daemon.mark(7).1);
        assert_eq!(tracer.load(7), 6);
        tracer.settled(7);
        daemon.set_load(7, 5, daemon.mark(7).1);
        assert_eq!(tracer.load(7), 5);
        // A new daemon's file does not disturb the old mapping.
        let again = SharedTable::create(&path).unwrap();
        assert_eq!(tracer.health(7), Health::Down);
        assert_eq!(again.health(7), Health::Unknown);
    }

    #[test]
    fn peers_are_found_once_by_address_and_backend_port() {
        let t = SharedTable::private().unwrap();
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let vip: SocketAddr = "10.1.0.2:40000".parse().unwrap();
        assert_eq!(t.take_peer(local, 8000), None);
        t.put_peer(local, 8000, vip);
        assert_eq!(t.take_peer(local, 8001), None);
        assert_eq!(
            t.take_peer("[::ffff:127.0.0.1]:40000".parse().unwrap(), 8000),
            Some(vip)
        );
        assert_eq!(t.take_peer(local, 8000), None);
        // Many at once, each found.
        for p in 1..2000u16 {
            t.put_peer(
                SocketAddr::new(local.ip(), p),
                9,
                SocketAddr::new(vip.ip(), p),
            );
        }
        let found = (1..2000u16)
            .filter(|&p| {
                t.take_peer(SocketAddr::new(local.ip(), p), 9) == Some(SocketAddr::new(vip.ip(), p))
            })
            .count();
        assert_eq!(found, 1999);
    }

    #[test]
    fn expected_peers_expire() {
        let t = SharedTable::private().unwrap();
        assert!(!t.peer_expected(1));
        t.expect_peer(1);
        t.expect_peer(1);
        assert!(t.peer_expected(1));
        t.peer_done(1);
        assert!(t.peer_expected(1), "one is still connecting");
        t.peer_done(1);
        assert!(!t.peer_expected(1));
        t.peer_done(1);
        assert!(!t.peer_expected(1), "never below zero");
        assert!(!t.peer_expected(NO_SLOT));
    }

    #[test]
    fn slots_are_stable_freed_and_bounded() {
        use crate::services::routes::{Backend, Origin, Route, RouteTable};
        let route = |vip: &str, backends: &[&str]| Route {
            name: "web".into(),
            vip: vip.parse().unwrap(),
            lb: Default::default(),
            backends: backends
                .iter()
                .map(|a| Backend {
                    addr: a.parse().unwrap(),
                    labels: vec![],
                    origin: Origin::Static,
                    slot: NO_SLOT,
                })
                .collect(),
            slot: NO_SLOT,
            udp: false,
        };
        let mut s = Slots::default();
        let mut t = RouteTable {
            routes: vec![route("10.1.0.1:80", &["127.0.0.1:1", "127.0.0.1:2"])],
            ..Default::default()
        };
        s.assign(&mut t, None);
        let (r0, b0, b1) = (
            t.routes[0].slot,
            t.routes[0].backends[0].slot,
            t.routes[0].backends[1].slot,
        );
        assert_ne!(b0, b1);
        s.assign(&mut t, None);
        assert_eq!(t.routes[0].backends[1].slot, b1);
        assert_eq!(t.routes[0].slot, r0);
        // One backend leaves, another comes: it gets the freed slot.
        let mut t2 = RouteTable {
            routes: vec![route("10.1.0.1:80", &["127.0.0.1:1", "127.0.0.1:3"])],
            ..Default::default()
        };
        s.assign(&mut t2, None);
        assert_eq!(t2.routes[0].backends[0].slot, b0);
        assert_eq!(t2.routes[0].backends[1].slot, b1);
    }
}
