//! The trace process's side of the daemon connection.
//!
//! A reader thread connects (retrying every 250 ms: while the daemon is away
//! the program runs on its last policy), says hello, and applies the policy
//! snapshots the daemon pushes. A writer thread drains the Enforcer's reports
//! and sends counters every second; on every (re)connect it re-sends the
//! connections it knows, so a restarted daemon sees them again.

use super::processes::Processes;
use super::report::{ConnFacts, Report};
use crate::config::Mode;
use crate::policy::table::PolicyTable;
use crate::protocol::{Counters, ToDaemon, ToTracer};
use crate::services::static_table::ServiceTable;
use crate::trace::snapshot::{LiveNet, LivePolicy, Snapshot};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Reports queued at most; beyond that they are dropped (never block the tracer).
const QUEUE: usize = 65_536;
/// How long reports gather before they are sent (the delay they may have
/// in /appswitch/connections and events).
const BATCH: Duration = Duration::from_millis(5);
/// How stale the counters in stats and apps/ID/info may be.
const STATS: Duration = Duration::from_millis(100);
/// How often a lost daemon connection is tried again.
pub(crate) const RETRY: Duration = Duration::from_millis(250);

type Conn = Arc<Mutex<Option<UnixStream>>>;

/// What a restarted daemon is told again (the reader sends it on every
/// connect, before anything else).
type Known = Arc<Mutex<Remembers>>;

/// Listeners and a detach, by (socket inode, is a backend), all kept; and
/// the last RECENT connections, oldest overwritten first (most are closed
/// long before a restart; the daemon drops those whose socket it does not
/// find; older ones still open are found among the program's sockets when
/// the daemon is reached again). A ring, not a map: one report per connection is one slot
/// written, with nothing hashed or trimmed (a map of every connection was a
/// third of the writer thread's time).
#[derive(Default)]
struct Remembers {
    kept: HashMap<(u64, bool), Remembered>,
    recent: Vec<Remembered>,
    next: usize,
}

/// Connections remembered for a restarted daemon.
const RECENT: usize = 16_384;

/// A connection report's key among the kept ones: listeners are kept for
/// good; other connections (None) go among the recent ones.
fn kept_key(via: &str, inode: u64) -> Option<(u64, bool)> {
    (via == "listen").then_some((inode, false))
}

impl Remembers {
    fn connection(&mut self, what: Remembered) {
        if self.recent.len() < RECENT {
            self.recent.push(what);
        } else {
            self.recent[self.next] = what;
        }
        self.next = (self.next + 1) % RECENT;
    }

    /// Everything, oldest connection first (a later report of the same
    /// socket wins at the daemon).
    fn write(&self, out: &mut Vec<u8>) {
        let (new, old) = self.recent.split_at(self.next.min(self.recent.len()));
        for what in old.iter().chain(new).chain(self.kept.values()) {
            what.write(out);
        }
    }
}

/// A message kept for a restarted daemon: its line, or a connection's
/// facts (written out only if it is needed again).
enum Remembered {
    Line(String),
    Conn(ConnFacts),
}

impl Remembered {
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Remembered::Line(l) => out.extend_from_slice(l.as_bytes()),
            Remembered::Conn(c) => c.write_line(out),
        }
    }
}

pub struct Client {
    pub tx: SyncSender<Report>,
    pub counters: Arc<Mutex<Counters>>,
    pub pids: Arc<Mutex<Processes>>,
    /// Signalled when the writer has sent everything queued (all senders dropped).
    pub drained: Receiver<()>,
    /// 0: first connection attempt under way; 1: connected; 2: the first
    /// attempt failed (no daemon behind the socket: do not wait for one).
    pub state: Arc<AtomicU8>,
}

pub const TRYING: u8 = 0;
pub const CONNECTED: u8 = 1;
pub const ABSENT: u8 = 2;
/// The daemon refused this trace (LiveNet::refused says why).
pub const REFUSED: u8 = 3;

impl Client {
    /// After the program ended and every sender is dropped: wait (at most
    /// `limit`) until the queued reports have been written to the daemon.
    pub fn drain(drained: Receiver<()>, limit: Duration) {
        let _ = drained.recv_timeout(limit);
    }
}

/// What a tracer does with a message from the daemon (over the socket, or
/// in-process for `trace --mount`). `mode` overrides the daemon's mode when
/// the user gave --mode.
pub fn apply(
    msg: ToTracer,
    local: &PolicyTable,
    live: &LivePolicy,
    net: &LiveNet,
    pids: &Mutex<Processes>,
    mode: Option<Mode>,
) {
    match msg {
        ToTracer::Policy {
            version,
            table,
            mode: global_mode,
            services,
        } => {
            let mut svc = ServiceTable::default();
            if let Err(e) = svc.apply(&services) {
                log::error!("daemon sent services that do not parse: {e}");
            }
            match PolicyTable::load(&table) {
                Ok(global) => {
                    let last = (global, svc, mode.unwrap_or(global_mode), version);
                    install(local, &last, live, net);
                    if let Ok(mut l) = net.last_policy.lock() {
                        *l = Some(last);
                    }
                }
                Err(e) => log::error!("daemon sent a policy that does not parse: {e}"),
            }
        }
        ToTracer::Refused { why } => {
            if let Ok(mut r) = net.refused.lock() {
                *r = Some(why);
            }
        }
        ToTracer::Kill => {
            if let Ok(mut p) = pids.lock() {
                p.kill_all();
            }
        }
        ToTracer::Detach => {
            // Sent only for an attached program (appswitch attach).
            if !tracer::detached() {
                tracer::detach();
                log::warn!(
                    "detached (apps/ID/ctl): the program's calls now pass undecided; this \
                     supervisor stays until the program exits (without it, the kernel would \
                     fail its trapped calls with ENOSYS)"
                );
            }
        }
        ToTracer::Events { wanted } => {
            net.events_wanted
                .store(wanted, std::sync::atomic::Ordering::Relaxed);
        }
        ToTracer::Welcome {
            app,
            resolv_conf,
            bind,
            netns,
            shared,
        } => {
            net.netns.store(netns, std::sync::atomic::Ordering::Relaxed);
            // A daemon's table; a daemon with none (or one we cannot map)
            // leaves balancing to this process alone.
            let table = shared.and_then(|p| match crate::services::shared::SharedTable::open(&p) {
                Ok(t) => Some(Arc::new(t)),
                Err(e) => {
                    log::warn!(
                        "cannot map the daemon's balancing table {}: {e}",
                        p.display()
                    );
                    None
                }
            });
            net.set_shared(table);
            log::debug!("registered as app {app}");
            if let Ok(mut r) = net.resolv_conf.lock() {
                *r = resolv_conf;
            }
            if let Ok(mut b) = net.bind.lock() {
                *b = bind;
            }
        }
        ToTracer::Routes(t) => {
            net.set_routes(t);
            // Rules naming a traced service follow its virtual IP.
            let last = net.last_policy.lock().ok().and_then(|l| l.clone());
            if let Some(last) = last {
                let named = local
                    .entries()
                    .iter()
                    .chain(last.0.entries().iter())
                    .any(|(_, r)| crate::trace::snapshot::names_service(r));
                if named {
                    install(local, &last, live, net);
                }
            }
        }
    }
}

/// Build and swap in the snapshot: the trace's rules, then the daemon's
/// `last` push (table, services, mode, version), with the current routes.
fn install(
    local: &PolicyTable,
    last: &(PolicyTable, ServiceTable, Mode, u64),
    live: &LivePolicy,
    net: &LiveNet,
) {
    let (global, svc, mode, version) = last;
    live.set(Snapshot::combine(
        local,
        Some(global),
        svc,
        &net.routes(),
        *mode,
        *version,
    ));
}

/// Start the client threads. `hello` is sent on every connect.
pub fn start(
    socket: PathBuf,
    hello: ToDaemon,
    local: PolicyTable,
    live: Arc<LivePolicy>,
    net: Arc<LiveNet>,
    mode: Option<Mode>,
) -> Client {
    let (tx, rx) = sync_channel(QUEUE);
    let conn: Conn = Arc::new(Mutex::new(None));
    let counters = Arc::new(Mutex::new(Counters::default()));
    let pids = Arc::new(Mutex::new(Processes::default()));
    let known: Known = Arc::new(Mutex::new(Remembers::default()));
    let (done_tx, drained) = sync_channel(1);
    let state = Arc::new(AtomicU8::new(TRYING));
    {
        let (conn, counters, known) = (conn.clone(), counters.clone(), known.clone());
        let pids_w = pids.clone();
        std::thread::Builder::new()
            .name("appswitch-tx".into())
            .spawn(move || {
                writer(rx, conn, counters, known, pids_w);
                let _ = done_tx.send(());
            })
            .ok();
    }
    {
        let pids = pids.clone();
        std::thread::Builder::new()
            .name("appswitch-rx".into())
            .spawn({
                let state = state.clone();
                move || {
                    reader(
                        socket, hello, local, live, net, conn, known, pids, mode, state,
                    )
                }
            })
            .ok();
    }
    Client {
        tx,
        counters,
        pids,
        drained,
        state,
    }
}

fn send(conn: &Conn, line: &[u8]) {
    let mut g = match conn.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    if let Some(s) = g.as_mut() {
        if s.write_all(line).is_err() {
            *g = None;
        }
    }
}

fn writer(
    rx: Receiver<Report>,
    conn: Conn,
    counters: Arc<Mutex<Counters>>,
    known: Known,
    pids: Arc<Mutex<Processes>>,
) {
    // Counters and the live processes go out when they changed, at most
    // every STATS (so apps/ID/info and stats are that current), busy or idle.
    let mut sent = (Counters::default(), Vec::new());
    let stats = |sent: &mut (Counters, Vec<i32>), batch: &mut Vec<u8>| {
        let c = counters.lock().map(|c| *c).unwrap_or_default();
        if c != sent.0 {
            sent.0 = c;
            batch.extend_from_slice(ToDaemon::Stats(c).line().as_bytes());
        }
        let live = pids.lock().map(|p| p.oldest(64)).unwrap_or_default();
        if live != sent.1 {
            batch.extend_from_slice(ToDaemon::Processes { pids: live.clone() }.line().as_bytes());
            sent.1 = live;
        }
    };
    // Kept for a restarted daemon: by (socket inode, is a backend) for
    // good (listeners, a detach), or (None) among the recent connections.
    let remember = |kept: Option<(u64, bool)>, what: Remembered| {
        if let Ok(mut k) = known.lock() {
            match kept {
                Some(key) => drop(k.kept.insert(key, what)),
                None => k.connection(what),
            }
        }
    };
    let mut last_stats = std::time::Instant::now();
    loop {
        match rx.recv_timeout(STATS) {
            Ok(first) => {
                // Let a busy program's reports gather: one wake-up of this
                // thread (and one write, one wake-up of the daemon) per
                // BATCH, not per connection. A blocked receiver costs the
                // tracer a futex wake on every send; a sleeping one nothing.
                // A new backend (Listen) goes out at once: clients may be
                // told it is ready.
                if !matches!(first, Report::Msg(ToDaemon::Listen(_))) {
                    std::thread::sleep(BATCH);
                }
                let mut batch = Vec::new();
                let mut next = Some(first);
                while let Some(report) = next.take() {
                    match report {
                        // Written straight from its facts (report.rs).
                        Report::Conn(c) => {
                            c.write_line(&mut batch);
                            remember(kept_key(c.via, c.inode), Remembered::Conn(c));
                        }
                        Report::Msg(msg) => {
                            // Listeners are re-sent to a restarted daemon. A
                            // service's listener is both a backend (Listen) and
                            // a listening connection (Conn): both are kept. So
                            // is an attached program's detach (no socket has
                            // inode 0). Other messages are not re-sent.
                            let kept = match &msg {
                                ToDaemon::Conn(c) => Some(kept_key(&c.via, c.inode)),
                                ToDaemon::Listen(l) => Some(Some((l.inode, true))),
                                ToDaemon::Detached => Some(Some((0, true))),
                                _ => None,
                            };
                            let line = msg.line();
                            batch.extend_from_slice(line.as_bytes());
                            if let Some(kept) = kept {
                                remember(kept, Remembered::Line(line));
                            }
                        }
                    }
                    if batch.len() < 256 * 1024 {
                        next = rx.try_recv().ok();
                    }
                }
                if last_stats.elapsed() >= STATS {
                    last_stats = std::time::Instant::now();
                    stats(&mut sent, &mut batch);
                }
                send(&conn, &batch);
            }
            Err(RecvTimeoutError::Timeout) => {
                last_stats = std::time::Instant::now();
                let mut batch = Vec::new();
                stats(&mut sent, &mut batch);
                if !batch.is_empty() {
                    send(&conn, &batch);
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                // The program ended: its final counters.
                let c = counters.lock().map(|c| *c).unwrap_or_default();
                send(&conn, ToDaemon::Stats(c).line().as_bytes());
                return;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn reader(
    socket: PathBuf,
    hello: ToDaemon,
    local: PolicyTable,
    live: Arc<LivePolicy>,
    net: Arc<LiveNet>,
    conn: Conn,
    known: Known,
    pids: Arc<Mutex<Processes>>,
    mode: Option<Mode>,
    state: Arc<AtomicU8>,
) {
    for attempt in 0u64.. {
        // Not the first attempt: a daemon reached now is a restarted one,
        // or one that came after the program started (a stale socket):
        // either is told the program's open sockets too.
        let again = attempt > 0;
        let Ok(stream) = UnixStream::connect(&socket) else {
            let _ = state.compare_exchange(TRYING, ABSENT, Ordering::Relaxed, Ordering::Relaxed);
            std::thread::sleep(RETRY);
            continue;
        };
        state.store(CONNECTED, Ordering::Relaxed);
        let Ok(mut w) = stream.try_clone() else {
            std::thread::sleep(RETRY);
            continue;
        };
        // Connections older than the remembered ones: the program's open
        // sockets, as the kernel has them (a remembered report of the same
        // socket, sent first, wins). Found before the remembered ones are
        // taken: a connection made meanwhile is among those.
        let open = if again {
            let live = pids
                .lock()
                .map(|p| p.oldest(usize::MAX))
                .unwrap_or_default();
            super::open_sockets::open_sockets(&live, crate::procfs::comm).unwrap_or_else(|e| {
                log::debug!("the program's sockets are not re-sent: sock_diag: {e}");
                Vec::new()
            })
        } else {
            Vec::new()
        };
        // Hello and the known connections go out before anything else. The
        // writer waits on `known` until the connection is in place: a report
        // it remembers after this snapshot is sent on it, not dropped.
        let k = known.lock().unwrap_or_else(|p| p.into_inner());
        let mut first = hello.line().into_bytes();
        k.write(&mut first);
        for r in open {
            first.extend_from_slice(ToDaemon::Conn(r).line().as_bytes());
        }
        if w.write_all(&first).is_err() {
            drop(k);
            std::thread::sleep(RETRY);
            continue;
        }
        if let Ok(mut g) = conn.lock() {
            *g = Some(w);
        }
        drop(k);
        log::debug!("connected to the daemon at {}", socket.display());
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            match serde_json::from_str::<ToTracer>(&line) {
                Ok(msg) => apply(msg, &local, &live, &net, &pids, mode),
                Err(e) => log::warn!("unreadable message from the daemon: {e}"),
            }
        }
        if let Ok(mut g) = conn.lock() {
            *g = None;
        }
        if net.refused.lock().is_ok_and(|r| r.is_some()) {
            // Refused: asking again would get the same answer.
            state.store(REFUSED, Ordering::Relaxed);
            return;
        }
        log::debug!("daemon connection lost; running on the last policy");
        std::thread::sleep(RETRY);
    }
}
