//! What the daemon holds: the policy, static services, traced apps, their
//! connections, recent write errors and the event stream. Every write to a
//! control file lands here, all or nothing; policy and services are saved
//! atomically after each change and pushed to every tracer.

use super::health::Probe;
use super::write_txn::{Txn, Work};
use crate::config::Mode;
use crate::policy::table::PolicyTable;
use crate::policy::ParseError;
use crate::protocol::{ConnReport, Counters, ToDaemon, ToTracer};
use crate::services::routes::{Origin, Registry, RouteTable, VirtualHost};
use crate::services::shared::{Health, SharedTable, Slots};
use crate::services::static_table::{labels_text, ServiceTable};
use crate::sockdiag;
use controlfs::{Errno, StreamHub};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

/// Rejected writes remembered for /appswitch/errors.
const MAX_ERRORS: usize = 100;
/// Largest write a control file accepts.
pub const MAX_WRITE: usize = 64 * 1024;

pub struct App {
    pub id: u32,
    /// The trace process (for an attached program, its supervisor).
    pub pid: i32,
    pub comm: String,
    pub cmdline: Vec<String>,
    pub labels: Vec<(String, String)>,
    pub local_policy: String,
    /// The interception backend its trace runs ("unotify" or "ptrace").
    pub backend: String,
    pub started: SystemTime,
    pub tx: Sender<ToTracer>,
    pub counters: Counters,
    /// The program's live processes, as its tracer last said.
    pub live: Vec<i32>,
    /// Put under appswitch while running (`appswitch attach`).
    pub attached: Option<Attachment>,
}

/// An attached program (`appswitch attach`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// The program's process (its pid when attached).
    pub program: i32,
    /// Its supervisor stopped deciding: every call passes undecided.
    pub detached: bool,
}

pub struct Conn {
    pub app: u32,
    pub report: ConnReport,
    pub opened: Instant,
    /// Since when the kernel's answer has not had this socket.
    missing_since: Option<Instant>,
}

/// A socket absent from sock_diag this long is closed. (One dump can miss a
/// live socket while the kernel's tables change under it, so a single miss
/// only hides it from that listing.)
const GONE_AFTER: std::time::Duration = std::time::Duration::from_millis(300);

/// Reported connections kept before the first look for closed ones; after
/// each look, twice those left (so the looks cost O(1) per report).
const PRUNE_MIN: usize = 8192;

/// Looks come at most this often below PRUNE_CAP connections. A look walks
/// the kernel's whole TCP hash, TIME_WAIT entries included: ~10 ms on a
/// host making 25k connections a second (56k in TIME_WAIT), which at one
/// look per 8,192 reports was 1.2 us of the daemon's CPU per connection,
/// a third of all it spent on them (docs/PERFORMANCE.md).
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Past this many the one-second wait no longer applies (a look still
/// waits for the table to double since the last one): the wait keeps at
/// most about twice this many closed connections (~50 MB) beyond what the
/// doubling alone would.
const PRUNE_CAP: usize = 8 * PRUNE_MIN;

pub struct State {
    pub policy: PolicyTable,
    pub services: ServiceTable,
    pub mode: Mode,
    pub apps: BTreeMap<u32, App>,
    next_app: u32,
    conns: HashMap<u64, Conn>,
    /// Past this many reported connections, the ones the kernel no longer
    /// has are forgotten (reports come per connection; nothing else would
    /// drop a closed one until /appswitch/connections is read).
    prune_at: usize,
    /// A look for closed connections is under way (one at a time).
    looking: bool,
    /// When the last look ended.
    pruned_at: Option<Instant>,
    errors: VecDeque<String>,
    pub events: Arc<StreamHub>,
    started: Instant,
    /// Where policy and services are saved (None: not persisted).
    state_dir: Option<PathBuf>,
    /// Counters of apps that are gone, so totals never go backwards.
    retired: Counters,
    /// Counters of exited apps by program name (`metrics` keeps counting
    /// them), at most super::metrics::MAX_APP_LABELS names.
    retired_by_comm: BTreeMap<String, Counters>,
    /// Whether /appswitch/events had readers at the last check.
    events_wanted: bool,
    /// Traced services (trace --ip), per app.
    registry: Registry,
    /// Static and traced services together, as pushed to tracers.
    pub routes: RouteTable,
    /// The balancing state shared with tracers (None: not created).
    pub shared: Option<Arc<SharedTable>>,
    /// Its file, for tracers to map (None: in-process, or none).
    pub shared_path: Option<PathBuf>,
    /// Which route and backend owns which slot of it.
    slots: Slots,
    /// Bumped on every new route table (the health watch checks it).
    pub routes_generation: u64,
    /// Open policy and services files being written (controlfs open file ->
    /// its transaction), and the generation of the live tables.
    txns: HashMap<u64, Txn>,
    tables_gen: u64,
    /// The resolv.conf naming the DNS responder, once it runs.
    pub resolv_conf: Option<PathBuf>,
    /// Where traced services really listen ([services] bind).
    pub bind_ip: std::net::IpAddr,
    /// Inode of the daemon's network namespace (liveness checks of traced
    /// backends work only for programs in the same one).
    netns: u64,
    /// Cluster mode: where this node's table is published.
    pub cluster: Option<super::cluster::Cluster>,
    /// The other nodes' tables, as last read from etcd.
    remote: BTreeMap<String, super::cluster::NodeRecord>,
    cluster_status: Option<super::cluster::Status>,
}

pub(super) fn add_counters(a: &mut Counters, b: &Counters) {
    a.calls += b.calls;
    a.latency_sum_ns += b.latency_sum_ns;
    a.denied += b.denied;
    a.rewritten += b.rewritten;
    for (x, y) in a.latency.iter_mut().zip(b.latency.iter()) {
        *x += y;
    }
}

/// Write `data` to `path` atomically: temporary file, fsync, rename, fsync dir.
fn save_atomic(path: &Path, data: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

impl State {
    pub fn new(
        policy: PolicyTable,
        services: ServiceTable,
        mode: Mode,
        state_dir: Option<PathBuf>,
    ) -> State {
        let events = StreamHub::new(1 << 20);
        // The stream never starts empty: `tail -f` reads an empty file to its
        // end before following, and a stream has no end.
        events.publish(
            format!(
                "{{\"time\":\"{}\",\"daemon\":\"started\",\"version\":\"{}\"}}\n",
                humantime::format_rfc3339_micros(SystemTime::now()),
                env!("CARGO_PKG_VERSION")
            )
            .as_bytes(),
        );
        let mut s = State {
            policy,
            services,
            mode,
            apps: BTreeMap::new(),
            next_app: 1,
            conns: Default::default(),
            prune_at: PRUNE_MIN,
            looking: false,
            pruned_at: None,
            errors: VecDeque::new(),
            events,
            started: Instant::now(),
            state_dir,
            retired: Counters::default(),
            retired_by_comm: BTreeMap::new(),
            events_wanted: false,
            registry: Registry::default(),
            routes: RouteTable::default(),
            shared: None,
            shared_path: None,
            slots: Slots::default(),
            txns: HashMap::new(),
            routes_generation: 0,
            tables_gen: 0,
            resolv_conf: None,
            bind_ip: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            netns: crate::procfs::netns(None),
            cluster: None,
            remote: BTreeMap::new(),
            cluster_status: None,
        };
        s.routes = s.registry.table(&s.services);
        s
    }

    /// Send `msg` to every tracer (dropping the ones that are gone).
    fn broadcast(&mut self, msg: ToTracer) {
        self.apps.retain(|_, a| a.tx.send(msg.clone()).is_ok());
    }

    /// Rebuild the route table (this node's, published in cluster mode, plus
    /// the other nodes') and push it to every tracer.
    pub fn push_routes(&mut self) {
        let mut t = self.registry.table(&self.services);
        if let Some(c) = &self.cluster {
            // Other hosts reach this one's loopback and wildcard backends at
            // the node address.
            let mut mine = t.clone();
            for r in &mut mine.routes {
                for b in &mut r.backends {
                    if b.addr.ip().is_loopback() || b.addr.ip().is_unspecified() {
                        b.addr.set_ip(c.address);
                    }
                }
            }
            c.publish(mine);
        }
        for r in self.remote.values() {
            t.merge(&r.table);
        }
        self.slots.assign(&mut t, self.shared.as_deref());
        self.routes = t;
        self.routes_generation += 1;
        let msg = ToTracer::Routes(self.routes.clone());
        self.broadcast(msg);
    }

    /// The other nodes' tables changed (cluster mode).
    pub fn set_remote(&mut self, nodes: BTreeMap<String, super::cluster::NodeRecord>) {
        if nodes != self.remote {
            self.remote = nodes;
            self.push_routes();
        }
    }

    pub fn set_cluster_status(&mut self, s: super::cluster::Status) {
        if let super::cluster::Status::Unreachable { why, .. } = &s {
            if !matches!(
                self.cluster_status,
                Some(super::cluster::Status::Unreachable { .. })
            ) {
                self.error(format!(
                    "cluster: etcd unreachable ({why}): serving the last copy"
                ));
            }
        }
        self.cluster_status = Some(s);
    }

    /// The cluster lines of ctl and stats.
    fn render_cluster(&self) -> String {
        match (&self.cluster, &self.cluster_status) {
            (Some(c), Some(st)) => format!(
                "cluster={}\ncluster_node={}\ncluster_address={}\ncluster_etcd={}\ncluster_nodes={}\n",
                st.render(),
                c.node,
                c.address,
                c.endpoints.join(","),
                self.remote.len() + 1
            ),
            _ => "cluster=off\n".into(),
        }
    }

    /// What a health query needs (run it without the lock held).
    pub fn probe(&self) -> Probe {
        Probe {
            netns: self.netns,
            bind_ip: self.bind_ip,
        }
    }

    /// Traced backends whose listening sockets (by inode) are gone leave the table.
    pub fn remove_listeners(&mut self, inodes: &[u64]) {
        if self
            .registry
            .retain_listeners(|l| !inodes.contains(&l.inode))
        {
            log::info!("{} closed backend(s) removed", inodes.len());
            self.push_routes();
        }
    }

    /// Load the saved policy and services from `dir` (missing files: empty).
    pub fn load(dir: &Path, default_deny: bool, mode: Mode) -> anyhow::Result<State> {
        let (policy, services) = State::load_tables(dir, default_deny)?;
        Ok(State::new(policy, services, mode, Some(dir.to_path_buf())))
    }

    /// The saved policy and services in `dir` (missing files: empty).
    fn load_tables(dir: &Path, default_deny: bool) -> anyhow::Result<(PolicyTable, ServiceTable)> {
        let policy = match std::fs::read_to_string(dir.join("policy")) {
            Ok(t) => PolicyTable::load(&t)
                .map_err(|e| anyhow::anyhow!("{}: {e}", dir.join("policy").display()))?,
            Err(_) => PolicyTable::new(default_deny),
        };
        let mut services = ServiceTable::default();
        if let Ok(t) = std::fs::read_to_string(dir.join("services")) {
            services
                .apply(&t)
                .map_err(|e| anyhow::anyhow!("{}: {e}", dir.join("services").display()))?;
        }
        Ok((policy, services))
    }

    fn save(&mut self) {
        let Some(dir) = self.state_dir.clone() else {
            return;
        };
        for (name, text) in [
            ("policy", self.policy.render()),
            ("services", self.services.save_text()),
        ] {
            if let Err(e) = save_atomic(&dir.join(name), &text) {
                self.error(format!("saving {}: {e}", dir.join(name).display()));
            }
        }
    }

    fn error(&mut self, msg: String) {
        log::info!("{msg}");
        let line = format!(
            "{} {msg}",
            humantime::format_rfc3339_seconds(SystemTime::now())
        );
        if self.errors.len() >= MAX_ERRORS {
            self.errors.pop_front();
        }
        self.errors.push_back(line);
    }

    fn policy_message(&self) -> ToTracer {
        ToTracer::Policy {
            version: self.policy.version,
            table: self.policy.render(),
            mode: self.mode,
            services: self.services.save_text(),
        }
    }

    fn push_policy(&mut self) {
        let msg = self.policy_message();
        self.broadcast(msg);
    }

    // ---- tracers ----

    /// A program with a VIP that cannot be its connections' source (not an
    /// IPv4 loopback address) joins while services with loopback VIPs run:
    /// those decided at their start that their accept() needs no stop, so
    /// they see this program's connections at its real address. Said, so
    /// that it is no surprise (docs/SERVICES.md).
    fn warn_unbindable(&self, ip: std::net::IpAddr) {
        if crate::services::routes::v4_loopback(ip) {
            return;
        }
        let blind: Vec<String> = self
            .registry
            .hosts
            .iter()
            .filter(|(app, h)| {
                crate::services::routes::v4_loopback(h.ip)
                    && self
                        .registry
                        .listeners
                        .get(app)
                        .is_some_and(|l| !l.is_empty())
            })
            .map(|(_, h)| h.ip.to_string())
            .collect();
        if !blind.is_empty() {
            log::warn!(
                "VIP {ip} is not a loopback address: services already running with loopback VIPs ({}) \
                 see its connections at its real address; restart them to see its VIP",
                blind.join(", ")
            );
        }
    }

    /// A tracer said hello: register it and send it the policy.
    pub fn register(&mut self, hello: ToDaemon, tx: Sender<ToTracer>) -> Option<u32> {
        let ToDaemon::Hello {
            pid,
            comm,
            cmdline,
            labels,
            local_policy,
            host,
            backend,
            attached,
            supervisor,
        } = hello
        else {
            return None;
        };
        // One name, one VIP: a second program may share a VIP, not a name.
        if let Some(h) = &host {
            if let Some(why) = self.name_conflict(h) {
                self.error(why.clone());
                let _ = tx.send(ToTracer::Refused { why });
                return None;
            }
        }
        let id = self.next_app;
        self.next_app += 1;
        let _ = tx.send(ToTracer::Welcome {
            app: id,
            resolv_conf: self.resolv_conf.clone(),
            bind: Some(self.bind_ip),
            netns: self.netns,
            shared: self.shared_path.clone(),
        });
        if let Some(h) = &host {
            self.warn_unbindable(h.ip);
            self.registry.add_host(
                id,
                VirtualHost {
                    ip: h.ip,
                    name: h.name.clone(),
                    labels: labels.clone(),
                    lb: h.lb,
                    pid,
                },
            );
            self.push_routes();
        }
        // Routes before the policy: a trace starts its program once the
        // policy is in, and the program may connect to a service at once.
        let _ = tx.send(ToTracer::Routes(self.routes.clone()));
        let _ = tx.send(self.policy_message());
        // What the stream has now; the others learn of a change from the
        // periodic check, which compares with what it last told them.
        let _ = tx.send(ToTracer::Events {
            wanted: self.events.readers() > 0,
        });
        // An attached program's hello names the program; its supervisor is
        // the process at the other end.
        let (tracer_pid, attached) = match (attached, supervisor) {
            (true, s) => (
                s.unwrap_or(pid),
                Some(Attachment {
                    program: pid,
                    detached: false,
                }),
            ),
            (false, _) => (pid, None),
        };
        self.apps.insert(
            id,
            App {
                id,
                pid: tracer_pid,
                comm,
                cmdline,
                labels,
                local_policy,
                backend,
                started: SystemTime::now(),
                tx,
                counters: Counters::default(),
                live: Vec::new(),
                attached,
            },
        );
        Some(id)
    }

    /// Why `h`'s name cannot be given to its VIP: a running program or a
    /// static service already has that name on another address.
    fn name_conflict(&self, h: &crate::protocol::HostDecl) -> Option<String> {
        use crate::services::routes::canonical;
        let name = h.name.as_deref()?;
        let ip = canonical(h.ip);
        let same = |n: &str| n.eq_ignore_ascii_case(name);
        if let Some(other) = self
            .registry
            .hosts
            .values()
            .find(|o| o.name.as_deref().is_some_and(same) && canonical(o.ip) != ip)
        {
            return Some(format!(
                "--name {name}: the name is taken by {} (trace pid {}); programs share a name only on the same --ip",
                other.ip, other.pid
            ));
        }
        if let Some((_, s)) = self
            .services
            .iter()
            .find(|(n, s)| same(n) && canonical(s.vip.ip()) != ip)
        {
            return Some(format!(
                "--name {name}: the name is a static service at {} (/appswitch/services)",
                s.vip.ip()
            ));
        }
        None
    }

    /// Tell tracers when /appswitch/events gains its first reader or loses
    /// its last one (called periodically): event lines cost the tracers a
    /// serialisation and a message per call, so they are sent only when read.
    pub fn check_event_readers(&mut self) {
        let wanted = self.events.readers() > 0;
        if wanted != self.events_wanted {
            self.events_wanted = wanted;
            let msg = ToTracer::Events { wanted };
            self.broadcast(msg);
        }
    }

    pub fn unregister(&mut self, app: u32) {
        if let Some(a) = self.apps.remove(&app) {
            add_counters(&mut self.retired, &a.counters);
            let key = super::metrics::app_label(&self.retired_by_comm, &a.comm);
            add_counters(self.retired_by_comm.entry(key).or_default(), &a.counters);
        }
        self.conns.retain(|_, c| c.app != app);
        self.rearm();
        if self.registry.remove_app(app) {
            self.push_routes();
        }
    }

    pub fn handle(&mut self, app: u32, msg: ToDaemon) {
        match msg {
            // A socket found at attach: a call's report, already here, knows more.
            ToDaemon::Conn(report)
                if report.before_attach && self.conns.contains_key(&report.inode) => {}
            ToDaemon::Conn(report) => {
                self.conns.insert(
                    report.inode,
                    Conn {
                        app,
                        report,
                        opened: Instant::now(),
                        missing_since: None,
                    },
                );
            }
            ToDaemon::Event { mut line } => {
                line.push('\n');
                self.events.publish(line.as_bytes());
            }
            ToDaemon::Stats(c) => {
                if let Some(a) = self.apps.get_mut(&app) {
                    a.counters = c;
                }
            }
            ToDaemon::Processes { pids } => {
                if let Some(a) = self.apps.get_mut(&app) {
                    a.live = pids;
                }
            }
            ToDaemon::Listen(mut l) => {
                // A wildcard listener is reached at this host's address.
                if l.real.ip().is_unspecified() {
                    let ip = match &self.cluster {
                        Some(c) => c.address,
                        None if l.real.is_ipv4() => std::net::Ipv4Addr::LOCALHOST.into(),
                        None => std::net::Ipv6Addr::LOCALHOST.into(),
                    };
                    l.real.set_ip(ip);
                }
                if self.registry.hosts.contains_key(&app) {
                    self.registry.add_listener(app, l);
                    self.push_routes();
                }
            }
            ToDaemon::Detached => {
                if let Some(a) = self.apps.get_mut(&app).and_then(|a| a.attached.as_mut()) {
                    a.detached = true;
                }
            }
            ToDaemon::Hello { .. } => {}
        }
    }

    // ---- writes to control files: Err(errno), with the reason in `errors` ----

    /// The filesystem refused a write before it reached us (too large).
    pub fn refused_write(&mut self, file: &str, len: usize, errno: Errno) {
        self.error(format!(
            "{file}: write of {len}+ bytes refused ({errno:?}): at most {MAX_WRITE} bytes per write"
        ));
    }

    fn reject(&mut self, file: &str, e: ParseError) -> Errno {
        self.error(format!("{file}: {e}"));
        Errno::EINVAL
    }

    /// Common checks on a write: size and text.
    fn text<'a>(&mut self, file: &str, data: &'a [u8]) -> Result<&'a str, Errno> {
        if data.len() > MAX_WRITE {
            self.error(format!(
                "{file}: write of {} bytes refused: at most {MAX_WRITE} bytes per write",
                data.len()
            ));
            return Err(Errno::EFBIG);
        }
        let text = match std::str::from_utf8(data) {
            Ok(t) if !t.contains('\0') => t,
            _ => {
                self.error(format!(
                    "{file}: not text (invalid UTF-8 or NUL bytes): refused"
                ));
                return Err(Errno::EINVAL);
            }
        };
        if !text.ends_with('\n') {
            self.error(format!(
                "{file}: incomplete line: a write is whole lines, each ending in a newline"
            ));
            return Err(Errno::EINVAL);
        }
        Ok(text)
    }

    /// A write(2) through the open file `open` of `policy` or `services`:
    /// its complete lines are checked now, applied at the close.
    pub fn write_part(&mut self, file: &str, open: u64, data: &[u8]) -> Result<(), Errno> {
        if !self.txns.contains_key(&open) {
            let work = match file {
                "policy" => Work::Policy(self.policy.clone()),
                "services" => Work::Services(self.services.clone()),
                _ => return Err(Errno::EACCES),
            };
            let traced: Vec<(String, std::net::IpAddr)> = self
                .registry
                .hosts
                .values()
                .filter_map(|h| Some((h.name.clone()?, h.ip)))
                .collect();
            self.txns
                .insert(open, Txn::new(work, self.tables_gen).with_traced(traced));
        }
        let r = match self.txns.get_mut(&open) {
            Some(t) => t.part(data),
            None => return Err(Errno::EIO),
        };
        r.map_err(|(errno, why)| {
            self.error(why);
            errno
        })
    }

    /// Apply what the open file `open` wrote, all of it: at a close by its
    /// first writer, an fsync, or its last close (`last`). If the live table changed since the
    /// transaction began (another writer), its lines are applied again to
    /// the new table, unless they name rule IDs or positions of the old one.
    pub fn commit(&mut self, file: &str, open: u64, last: bool) -> Result<(), Errno> {
        if self.txns.get(&open).is_some_and(|t| t.failed) {
            // The failing write was told; nothing applies (and, until the
            // last close, later writes fail too).
            if last {
                self.txns.remove(&open);
            }
            return Err(Errno::EINVAL);
        }
        let Some(t) = self.txns.remove(&open) else {
            return Ok(());
        };
        let (base, uses_ids) = (t.base, t.uses_ids);
        let (mut work, text, dropped) = match t.finish() {
            Ok(w) => w,
            Err((errno, why)) => {
                self.error(why);
                return Err(errno);
            }
        };
        if base != self.tables_gen && uses_ids {
            self.error(format!(
                "{file}: the table changed while this was written, and it names rule IDs or \
                 positions of the old one (del, insert): nothing applies; read it and write again"
            ));
            return Err(Errno::EINVAL);
        }
        if base != self.tables_gen {
            work = match file {
                "policy" => Work::Policy(self.policy.clone()),
                _ => Work::Services(self.services.clone()),
            };
            if let Err(e) = work.apply(&text, 0) {
                return Err(self.reject(
                    file,
                    ParseError {
                        msg: format!("{} (the table changed while this was written)", e.msg),
                        ..e
                    },
                ));
            }
        }
        match work {
            Work::Policy(next) => self.install_policy(next),
            Work::Services(next) => self.install_services(next),
        }
        // `del NAME` of a traced service: its backends leave now (the
        // programs run on; a new listen() makes them backends again).
        if !dropped.is_empty() {
            let apps: Vec<u32> = self
                .registry
                .hosts
                .iter()
                .filter(|(_, h)| {
                    h.name
                        .as_deref()
                        .is_some_and(|n| dropped.iter().any(|d| d.eq_ignore_ascii_case(n)))
                })
                .map(|(a, _)| *a)
                .collect();
            self.registry.listeners.retain(|a, _| !apps.contains(a));
            self.push_routes();
        }
        Ok(())
    }

    fn install_policy(&mut self, next: PolicyTable) {
        if next != self.policy {
            self.policy = next;
            self.tables_gen += 1;
            self.save();
            self.push_policy();
        }
    }

    fn install_services(&mut self, next: ServiceTable) {
        if next == self.services {
            return;
        }
        self.services = next;
        self.tables_gen += 1;
        self.save();
        // Rules may name services: tracers resolve them with the new table.
        self.policy.version += 1;
        self.push_policy();
        self.push_routes();
    }

    pub fn write_ctl(&mut self, data: &[u8]) -> Result<(), Errno> {
        enum Cmd {
            Mode(Mode),
            Save,
            Reload,
        }
        let text = self.text("ctl", data)?.to_string();
        // Every line is checked before any is carried out: all or nothing.
        let mut cmds = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            cmds.push(
                match line.split_whitespace().collect::<Vec<_>>().as_slice() {
                    ["mode", "enforce"] => Cmd::Mode(Mode::Enforce),
                    ["mode", "monitor"] => Cmd::Mode(Mode::Monitor),
                    ["save"] => Cmd::Save,
                    ["reload"] if self.state_dir.is_some() => Cmd::Reload,
                    ["reload"] => {
                        self.error("ctl: reload: nothing is saved (no state directory)".into());
                        return Err(Errno::EINVAL);
                    }
                    _ => {
                        self.error(format!(
                            "ctl: '{line}': expected mode enforce|monitor, save or reload"
                        ));
                        return Err(Errno::EINVAL);
                    }
                },
            );
        }
        let mut next_policy = None;
        for c in &cmds {
            if let (Cmd::Reload, Some(dir)) = (c, &self.state_dir) {
                match State::load_tables(dir, self.policy.default_deny()) {
                    Ok(t) => next_policy = Some(t),
                    Err(e) => {
                        self.error(format!("ctl: reload: {e:#}"));
                        return Err(Errno::EINVAL);
                    }
                }
            }
        }
        let version = self.policy.version;
        for c in cmds {
            match c {
                Cmd::Mode(m) => self.mode = m,
                Cmd::Save => self.save(),
                Cmd::Reload => {
                    if let Some((p, s)) = next_policy.take() {
                        self.policy = p;
                        self.services = s;
                        self.tables_gen += 1;
                    }
                }
            }
        }
        // Versions only go forward, whatever was reloaded.
        self.policy.version = self.policy.version.max(version) + 1;
        self.push_policy();
        self.push_routes();
        Ok(())
    }

    /// apps/ID/ctl: `kill` ends the program (SIGKILL to its processes: an
    /// attached program's own, never its supervisor); `detach` makes an
    /// attached program's supervisor stop deciding.
    pub fn write_app_ctl(&mut self, app: u32, data: &[u8]) -> Result<(), Errno> {
        let text = self.text("apps/ctl", data)?.trim().to_string();
        let attached = self.apps.get(&app).and_then(|a| a.attached);
        match text.as_str() {
            "kill" => {
                if let Some(a) = self.apps.get(&app) {
                    let _ = a.tx.send(ToTracer::Kill);
                }
                Ok(())
            }
            "detach" if attached.is_some() => {
                let Some(a) = self.apps.get_mut(&app) else {
                    return Err(Errno::ENOENT);
                };
                if a.tx.send(ToTracer::Detach).is_err() {
                    self.error(format!("apps/{app}/ctl: detach: its supervisor is gone"));
                    return Err(Errno::ESRCH);
                }
                if let Some(at) = a.attached.as_mut() {
                    at.detached = true;
                }
                Ok(())
            }
            "detach" => {
                self.error(format!(
                    "apps/{app}/ctl: detach: only a program put under appswitch by `appswitch attach` \
                     can be detached (its calls then pass undecided); this one was started by \
                     `appswitch trace`, whose seccomp filter and supervision end with it: use kill"
                ));
                Err(Errno::EOPNOTSUPP)
            }
            _ => {
                let expected = if attached.is_some() {
                    "kill or detach"
                } else {
                    "kill"
                };
                self.error(format!("apps/{app}/ctl: '{text}': expected {expected}"));
                Err(Errno::EINVAL)
            }
        }
    }

    // ---- reads ----

    pub fn render_policy(&self) -> String {
        self.policy.render()
    }

    /// Every service, static and traced, then one line per backend with its health.
    pub fn render_services(&mut self) -> String {
        // One query for every backend; closed traced listeners leave the table first.
        let probe = self.probe();
        let sockets = probe.query(&self.routes.routes, true);
        let mut down = Vec::new();
        for r in &self.routes.routes {
            for (b, (h, _)) in r.backends.iter().zip(probe.assess(r, &sockets)) {
                if let (Origin::Traced { inode, .. }, Health::Down) = (&b.origin, h) {
                    down.push(*inode);
                }
            }
        }
        if !down.is_empty() {
            self.registry.retain_listeners(|l| !down.contains(&l.inode));
            self.push_routes();
        }
        let mut s = String::new();
        let routes = self.routes.routes.clone();
        for r in &routes {
            let health = probe.assess(r, &sockets);
            let addrs: Vec<String> = r.backends.iter().map(|b| b.addr.to_string()).collect();
            let statics = r.backends.iter().any(|b| b.origin == Origin::Static)
                || self.services.get(&r.name).is_some_and(|x| x.vip == r.vip);
            let traced = r
                .backends
                .iter()
                .any(|b| matches!(b.origin, Origin::Traced { .. }));
            let remote = r
                .backends
                .iter()
                .any(|b| matches!(b.origin, Origin::Remote { .. }));
            let origin = match (statics, traced, remote) {
                (true, true, _) => "static+traced",
                (false, true, _) => "traced",
                (false, false, true) => "remote",
                (true, false, _) => "static",
                // A traced service whose programs are all gone.
                (false, false, false) => "traced",
            };
            let labels = self
                .services
                .get(&r.name)
                .map_or(String::from("-"), |x| labels_text(&x.labels));
            let _ = writeln!(
                s,
                "{} {} -> {} lb={} labels={labels} origin={origin}{}",
                r.name,
                r.vip,
                if addrs.is_empty() {
                    "-".into()
                } else {
                    addrs.join(",")
                },
                r.lb.name(),
                if r.udp { " proto=udp" } else { "" }
            );
            for (b, (h, load)) in r.backends.iter().zip(health) {
                let here = self.cluster.as_ref().map(|c| c.node.as_str());
                let who = match (&b.origin, here) {
                    (Origin::Static, None) => "static".to_string(),
                    (Origin::Static, Some(n)) => format!("static host={n}"),
                    (Origin::Traced { app, pid, .. }, None) => {
                        format!("traced app={app} pid={pid}")
                    }
                    (Origin::Traced { app, pid, .. }, Some(n)) => {
                        format!("traced app={app} pid={pid} host={n}")
                    }
                    (Origin::Remote { node }, _) => format!("remote host={node}"),
                };
                let _ = writeln!(
                    s,
                    "  backend {} health={} connections={load} labels={} origin={who}",
                    b.addr,
                    h.name(),
                    labels_text(&b.labels),
                );
            }
        }
        s
    }

    pub fn render_errors(&self) -> String {
        self.errors.iter().map(|e| format!("{e}\n")).collect()
    }

    pub fn render_ctl(&self) -> String {
        format!(
            "mode={}\nversion={}\nuptime={}s\npolicy_version={}\n",
            match self.mode {
                Mode::Enforce => "enforce",
                Mode::Monitor => "monitor",
            },
            env!("CARGO_PKG_VERSION"),
            self.started.elapsed().as_secs(),
            self.policy.version,
        ) + &self.render_cluster()
    }

    /// What `metrics` shows: live apps, live connections, all counters, and
    /// counters by program name (live and exited apps).
    pub fn render_metrics(
        &mut self,
        kernel: std::io::Result<HashMap<u64, sockdiag::SockState>>,
    ) -> String {
        let connections = self.open_now(kernel);
        let mut total = self.retired;
        let mut by_comm = self.retired_by_comm.clone();
        for a in self.apps.values() {
            add_counters(&mut total, &a.counters);
            let key = super::metrics::app_label(&by_comm, &a.comm);
            add_counters(by_comm.entry(key).or_default(), &a.counters);
        }
        super::metrics::render(&super::metrics::Snapshot {
            apps: self.apps.len(),
            connections,
            total,
            by_comm,
        })
    }

    pub fn render_stats(
        &mut self,
        kernel: std::io::Result<HashMap<u64, sockdiag::SockState>>,
    ) -> String {
        let connections = self.open_now(kernel);
        let mut total = self.retired;
        for a in self.apps.values() {
            add_counters(&mut total, &a.counters);
        }
        let n: u64 = total.latency.iter().sum();
        let pct = |p: f64| -> u64 {
            let want = (n as f64 * p).ceil() as u64;
            let mut seen = 0;
            for (i, c) in total.latency.iter().enumerate() {
                seen += c;
                if seen >= want.max(1) {
                    return 1u64 << i;
                }
            }
            0
        };
        format!(
            "apps={}\nconnections={}\ncalls_total={}\ndenied_total={}\nrewritten_total={}\ndecision_p50_ns_le={}\ndecision_p99_ns_le={}\n",
            self.apps.len(),
            connections,
            total.calls,
            total.denied,
            total.rewritten,
            if n > 0 { pct(0.5) } else { 0 },
            if n > 0 { pct(0.99) } else { 0 },
        ) + &self.render_cluster()
    }

    /// What to ask the kernel about the reported connections.
    pub fn conn_query(&self) -> ConnQuery {
        // When every connection's remote is known (connects), the kernel need
        // only report sockets to those ports; listeners (whose accepted
        // connections are found here) and accepted ones need a full dump.
        // ("ADDR:PORT" or "[ADDR]:PORT": the port follows the last colon.)
        let ports: Option<HashSet<u16>> = self
            .conns
            .values()
            .map(|c| {
                let r = c.report.remote.as_deref()?;
                r.rsplit_once(':')?.1.parse().ok()
            })
            .collect();
        ConnQuery {
            ports: ports.map(|p| p.into_iter().collect()),
        }
    }

    /// Whether the reported connections doubled since the last look for
    /// closed ones (and the last is PRUNE_EVERY old, below PRUNE_CAP): what
    /// to ask the kernel (without this lock held), then [`State::pruned`].
    /// One look at a time.
    pub fn prune_due(&mut self) -> Option<ConnQuery> {
        self.prune_due_at(Instant::now())
    }

    fn prune_due_at(&mut self, now: Instant) -> Option<ConnQuery> {
        let n = self.conns.len();
        let recent = |t: Instant| now.saturating_duration_since(t) < PRUNE_EVERY;
        if self.looking
            || n < self.prune_at
            || (n < PRUNE_CAP && self.pruned_at.is_some_and(recent))
        {
            return None;
        }
        self.looking = true;
        Some(self.conn_query())
    }

    /// The kernel's answer to [`State::prune_due`]'s question (None: it
    /// failed): the connections it has not had for GONE_AFTER go.
    pub fn pruned(&mut self, kernel: Option<HashMap<u64, sockdiag::SockState>>) {
        self.pruned_then(kernel, Instant::now())
    }

    fn pruned_then(&mut self, kernel: Option<HashMap<u64, sockdiag::SockState>>, now: Instant) {
        if let Some(k) = kernel {
            self.forget_gone(&k, now);
        }
        self.pruned_at = Some(now);
        self.looking = false;
        self.rearm();
    }

    /// The next look comes at twice the connections there are now (at
    /// least PRUNE_MIN).
    fn rearm(&mut self) {
        self.prune_at = PRUNE_MIN.max(2 * self.conns.len());
    }

    /// Forget the connections `kernel` has not had for GONE_AFTER.
    fn forget_gone(&mut self, kernel: &HashMap<u64, sockdiag::SockState>, now: Instant) {
        self.conns.retain(|inode, c| {
            if kernel.contains_key(inode) {
                c.missing_since = None;
                return true;
            }
            let since = *c.missing_since.get_or_insert(now);
            now.duration_since(since) < GONE_AFTER
        });
    }

    /// The kernel's answer to [`State::conn_query`], asked without the
    /// lock (a dump of a busy host takes tens of milliseconds), applied:
    /// accepted connections found, closed ones forgotten. Its answer, for
    /// the connections kept.
    fn apply_look(
        &mut self,
        kernel: std::io::Result<HashMap<u64, sockdiag::SockState>>,
    ) -> std::io::Result<HashMap<u64, sockdiag::SockState>> {
        let mut kernel = kernel?;
        let now = Instant::now();
        self.adopt_accepted(&kernel, now);
        kernel.retain(|ino, _| self.conns.contains_key(ino));
        self.forget_gone(&kernel, now);
        self.rearm();
        Ok(kernel)
    }

    /// The connections `connections` lists (of one app, or all), given the
    /// kernel's answer.
    fn listed<'a>(
        &'a self,
        kernel: &'a HashMap<u64, sockdiag::SockState>,
        app: Option<u32>,
    ) -> impl Iterator<Item = (&'a u64, &'a Conn, &'a sockdiag::SockState)> + 'a {
        self.conns.iter().filter_map(move |(ino, c)| {
            let k = kernel.get(ino)?;
            (c.report.via != "listen" && app.is_none_or(|a| c.app == a)).then_some((ino, c, k))
        })
    }

    /// How many connections `connections` lists, given the kernel's answer
    /// (the connections reported, should the kernel not have answered).
    fn open_now(&mut self, kernel: std::io::Result<HashMap<u64, sockdiag::SockState>>) -> usize {
        match self.apply_look(kernel) {
            Ok(k) => self.listed(&k, None).count(),
            Err(_) => self.conns.len(),
        }
    }

    /// Live connections (of one app, or all), joined with the kernel's
    /// answer to [`State::conn_query`].
    pub fn render_connections(
        &mut self,
        app: Option<u32>,
        kernel: std::io::Result<HashMap<u64, sockdiag::SockState>>,
    ) -> String {
        let kernel = match self.apply_look(kernel) {
            Ok(k) => k,
            Err(e) => return format!("# sock_diag failed: {e}\n"),
        };
        let mut rows: Vec<_> = self.listed(&kernel, app).collect();
        rows.sort_by_key(|(_, c, _)| c.opened);
        let mut s = String::with_capacity(rows.len() * 200);
        for (inode, c, k) in rows {
            let r = &c.report;
            let service = self.service_of(r, k);
            let (bytes_in, bytes_out) = payload(k, r.via == "connect");
            let _ = writeln!(
                s,
                "id={inode} app={} pid={} comm={} proto={} local={} remote={} virtual={} service={service} rule={} state={} bytes_in={bytes_in} bytes_out={bytes_out} age={:.1}s",
                c.app,
                r.pid,
                r.comm,
                r.proto,
                k.local,
                k.remote,
                r.virtual_remote.as_deref().unwrap_or("-"),
                r.rule.map_or("-".to_string(), |i| i.to_string()),
                k.state,
                c.opened.elapsed().as_secs_f64(),
            );
        }
        s
    }

    /// The service a connection belongs to: the one whose VIP it asked for,
    /// or, for an accepted one, the one its listener is a backend of.
    fn service_of(&self, r: &ConnReport, k: &sockdiag::SockState) -> String {
        use crate::services::routes::canonical_addr;
        let by_vip = r
            .virtual_remote
            .as_deref()
            .and_then(|v| v.parse::<std::net::SocketAddr>().ok())
            .and_then(|v| self.routes.route(&canonical_addr(v)));
        let by_listener = || {
            self.routes.routes.iter().find(|route| {
                route.backends.iter().any(|b| {
                    matches!(b.origin, Origin::Traced { .. }) && b.addr.port() == k.local.port()
                })
            })
        };
        match by_vip {
            Some(route) => route.name.clone(),
            None if r.via == "accept" => by_listener().map_or("-".into(), |r| r.name.clone()),
            None => "-".into(),
        }
    }

    /// Connections accepted on a reported listener that the kernel has and
    /// no report named yet become rows of that listener's program (accept()
    /// does not stop for them).
    fn adopt_accepted(&mut self, kernel: &HashMap<u64, sockdiag::SockState>, now: Instant) {
        let listeners: Vec<(std::net::SocketAddr, u32, ConnReport)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.report.via == "listen")
            .filter_map(|(ino, c)| {
                let k = kernel.get(ino).filter(|k| k.state == "LISTEN")?;
                Some((k.local, c.app, c.report.clone()))
            })
            .collect();
        if listeners.is_empty() {
            return;
        }
        for (ino, k) in kernel {
            if k.state == "LISTEN"
                || k.proto != sockdiag::Proto::Tcp
                || self.conns.contains_key(ino)
            {
                continue;
            }
            let Some((_, app, l)) = listeners.iter().find(|(a, _, _)| {
                a.port() == k.local.port()
                    && (a.ip().is_unspecified()
                        || crate::services::routes::canonical(a.ip())
                            == crate::services::routes::canonical(k.local.ip()))
            }) else {
                continue;
            };
            self.conns.insert(
                *ino,
                Conn {
                    app: *app,
                    report: ConnReport {
                        inode: *ino,
                        via: "accept".into(),
                        ..l.clone()
                    },
                    opened: now,
                    missing_since: None,
                },
            );
        }
    }

    pub fn render_app_info(&self, app: u32) -> Option<String> {
        let a = self.apps.get(&app)?;
        // An attached program is known before its supervisor's first report.
        let pid = a.live.first().copied().or(a.attached.map(|at| at.program));
        Some(format!(
            "id={}\ntracer_pid={}\nbackend={}\nattached={}\npid={}\nprocesses={}\ncomm={}\ncmdline={}\nlabels={}\nstarted={}\ncalls_total={}\ndenied_total={}\nrewritten_total={}\n",
            a.id,
            a.pid,
            a.backend,
            yes_no(a.attached.is_some()),
            pid.map_or("-".to_string(), |p| p.to_string()),
            a.live.len(),
            a.comm,
            // One line, whatever the arguments hold.
            a.cmdline.join(" ").replace('\n', "\\n"),
            labels_text(&a.labels),
            humantime::format_rfc3339_seconds(a.started),
            a.counters.calls,
            a.counters.denied,
            a.counters.rewritten,
        ))
    }

    /// apps/ID/ctl: what can be written to it, one per line, then its state.
    pub fn render_app_ctl(&self, app: u32) -> Option<String> {
        let a = self.apps.get(&app)?;
        Some(match a.attached {
            Some(at) => format!(
                "kill\ndetach\nattached=yes supervisor={} detached={}\n",
                a.pid,
                yes_no(at.detached)
            ),
            None => "kill\nattached=no\n".to_string(),
        })
    }

    /// The rules that apply to an app: its own (--policy) first, then the global ones.
    pub fn render_app_policy(&self, app: u32) -> Option<String> {
        let a = self.apps.get(&app)?;
        let mut s = String::new();
        for line in a.local_policy.lines().filter(|l| !l.starts_with("default")) {
            let _ = writeln!(s, "file:{line}");
        }
        s.push_str(&self.policy.render());
        Some(s)
    }
}

/// Payload bytes of a TCP connection: the kernel's counters also count
/// the SYN of the side that connected (acknowledged), a FIN of ours once
/// acknowledged, and the peer's FIN once received.
fn payload(k: &sockdiag::SockState, connected_by_us: bool) -> (u64, u64) {
    if k.proto != sockdiag::Proto::Tcp {
        return (k.bytes_in, k.bytes_out);
    }
    let our_fin_acked = matches!(k.state, "FIN_WAIT2" | "TIME_WAIT");
    let their_fin = matches!(k.state, "CLOSE_WAIT" | "LAST_ACK" | "CLOSING" | "TIME_WAIT");
    let syn = u64::from(connected_by_us && k.state != "SYN_SENT");
    (
        k.bytes_in.saturating_sub(u64::from(their_fin)),
        k.bytes_out
            .saturating_sub(syn)
            .saturating_sub(u64::from(our_fin_acked)),
    )
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// What a look at the reported connections asks the kernel: the sockets to
/// their remote ports, when every one has a remote, else every socket. (The
/// answer may hold sockets nobody reported: whoever uses it looks up the
/// reported ones in it.)
pub struct ConnQuery {
    ports: Option<Vec<u16>>,
}

impl ConnQuery {
    pub fn ask(&self) -> std::io::Result<HashMap<u64, sockdiag::SockState>> {
        match &self.ports {
            Some(p) => sockdiag::by_remote_ports(p),
            None => sockdiag::dump(),
        }
    }
}

/// Take a tracer's message; when the reported connections have doubled,
/// look for closed ones, with the lock released while the kernel answers
/// (a sock_diag dump of a busy host takes tens of milliseconds, and the
/// lock serves control-file reads, DNS and every other tracer).
pub fn handle_reported(state: &Arc<Mutex<State>>, app: u32, msg: ToDaemon) {
    let due = {
        let mut s = lock(state);
        s.handle(app, msg);
        s.prune_due()
    };
    if let Some(q) = due {
        let kernel = q.ask().ok();
        lock(state).pruned(kernel);
    }
}

/// The daemon state, locked; a poisoned lock is taken over (a panicked
/// control-file thread must not stop the daemon).
pub fn lock(state: &Arc<Mutex<State>>) -> MutexGuard<'_, State> {
    match state.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::{channel, Receiver};

    fn state() -> State {
        State::new(
            PolicyTable::new(false),
            ServiceTable::default(),
            Mode::Enforce,
            None,
        )
    }

    fn hello(pid: i32, attached: bool, supervisor: Option<i32>) -> ToDaemon {
        ToDaemon::Hello {
            pid,
            comm: "python3".into(),
            cmdline: vec!["python3".into(), "-m".into(), "http.server".into()],
            labels: Vec::new(),
            local_policy: "default allow\n".into(),
            host: None,
            backend: "unotify".into(),
            attached,
            supervisor,
        }
    }

    fn register(s: &mut State, h: ToDaemon) -> (u32, Receiver<ToTracer>) {
        let (tx, rx) = channel();
        let id = s.register(h, tx).unwrap();
        // Welcome, routes, policy, events: what every tracer gets.
        let _: Vec<ToTracer> = rx.try_iter().collect();
        (id, rx)
    }

    fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
    }

    #[test]
    fn an_attached_app_shows_its_program_and_supervisor() {
        let mut s = state();
        let (id, _rx) = register(&mut s, hello(4242, true, Some(4300)));
        let info = s.render_app_info(id).unwrap();
        assert_eq!(field(&info, "attached"), Some("yes"), "{info}");
        assert_eq!(field(&info, "tracer_pid"), Some("4300"), "{info}");
        // Known before the supervisor's first report of its processes.
        assert_eq!(field(&info, "pid"), Some("4242"), "{info}");
        assert_eq!(field(&info, "comm"), Some("python3"), "{info}");
        assert_eq!(
            s.render_app_ctl(id).unwrap(),
            "kill\ndetach\nattached=yes supervisor=4300 detached=no\n"
        );
    }

    #[test]
    fn a_traced_app_is_not_attached_and_cannot_be_detached() {
        let mut s = state();
        let (id, rx) = register(&mut s, hello(77, false, None));
        let info = s.render_app_info(id).unwrap();
        assert_eq!(field(&info, "attached"), Some("no"), "{info}");
        assert_eq!(field(&info, "tracer_pid"), Some("77"), "{info}");
        assert_eq!(field(&info, "pid"), Some("-"), "{info}");
        assert_eq!(s.render_app_ctl(id).unwrap(), "kill\nattached=no\n");
        assert_eq!(s.write_app_ctl(id, b"detach\n"), Err(Errno::EOPNOTSUPP));
        assert!(
            rx.try_recv().is_err(),
            "nothing is sent for a refused detach"
        );
        assert!(
            s.render_errors().contains("appswitch attach"),
            "{}",
            s.render_errors()
        );
        assert_eq!(s.write_app_ctl(id, b"bogus\n"), Err(Errno::EINVAL));
        assert!(s.render_errors().contains("expected kill\n"));
    }

    #[test]
    fn detach_reaches_the_supervisor_and_shows() {
        let mut s = state();
        let (id, rx) = register(&mut s, hello(4242, true, Some(4300)));
        assert_eq!(s.write_app_ctl(id, b"detach\n"), Ok(()));
        assert_eq!(rx.try_recv(), Ok(ToTracer::Detach));
        assert!(s.render_app_ctl(id).unwrap().ends_with("detached=yes\n"));
        // Detached another way (appswitch detach, a signal): the supervisor says so.
        let (id2, _rx2) = register(&mut s, hello(5000, true, Some(5001)));
        s.handle(id2, ToDaemon::Detached);
        assert!(s.render_app_ctl(id2).unwrap().ends_with("detached=yes\n"));
        // kill goes to the supervisor, which signals the program's processes.
        assert_eq!(s.write_app_ctl(id2, b"kill\n"), Ok(()));
        assert_eq!(s.write_app_ctl(id2, b"bogus\n"), Err(Errno::EINVAL));
        assert!(s.render_errors().contains("expected kill or detach"));
    }

    #[test]
    fn a_socket_found_at_attach_does_not_replace_a_calls_report() {
        let mut s = state();
        let (id, _rx) = register(&mut s, hello(4242, true, Some(4300)));
        let report = |remote: &str, before_attach| ConnReport {
            inode: 99,
            pid: 4242,
            comm: "python3".into(),
            proto: "tcp".into(),
            remote: Some(remote.into()),
            virtual_remote: None,
            rule: Some(3),
            via: "connect".into(),
            before_attach,
        };
        s.handle(id, ToDaemon::Conn(report("127.0.0.1:1", false)));
        s.handle(id, ToDaemon::Conn(report("127.0.0.1:2", true)));
        assert_eq!(s.conns[&99].report.remote.as_deref(), Some("127.0.0.1:1"));
        // Alone, it is taken.
        s.handle(
            id,
            ToDaemon::Conn(ConnReport {
                inode: 100,
                ..report("127.0.0.1:2", true)
            }),
        );
        assert!(s.conns[&100].report.before_attach);
    }

    /// A connect of pid 4242 ("ab") to 127.0.0.1:1, by socket inode.
    fn ab_connect(inode: u64) -> ConnReport {
        ConnReport {
            inode,
            pid: 4242,
            comm: "ab".into(),
            proto: "tcp".into(),
            remote: Some("127.0.0.1:1".into()),
            virtual_remote: None,
            rule: None,
            via: "connect".into(),
            before_attach: false,
        }
    }

    #[test]
    fn closed_connections_do_not_pile_up_between_reads() {
        let mut s = state();
        let (id, _rx) = register(&mut s, hello(4242, false, None));
        // Reports of sockets the kernel does not have (closed long ago).
        let report = ab_connect;
        let base = u64::MAX - 10 * PRUNE_MIN as u64;
        for i in 0..=PRUNE_MIN as u64 {
            s.handle(id, ToDaemon::Conn(report(base + i)));
            if let Some(q) = s.prune_due() {
                // Asked without the lock: the kernel has none of them.
                assert_eq!(q.ports.as_deref(), Some(&[1u16][..]));
                s.pruned(Some(HashMap::new()));
            }
        }
        // The look at PRUNE_MIN found none of them: each is marked missing
        // (one miss only hides it) ...
        assert!(
            s.conns
                .values()
                .filter(|c| c.missing_since.is_some())
                .count()
                >= PRUNE_MIN
        );
        // ... and is gone after GONE_AFTER.
        let later = Instant::now() + GONE_AFTER;
        let kernel = HashMap::new();
        s.forget_gone(&kernel, later);
        assert!(s.conns.len() <= 1, "{}", s.conns.len());
        // The next look comes after twice as many again, at least PRUNE_MIN.
        assert_eq!(s.prune_at, 2 * PRUNE_MIN);
        // When the program goes, so do its connections, and the next look
        // is back at PRUNE_MIN.
        s.unregister(id);
        assert_eq!(s.prune_at, PRUNE_MIN);
    }

    #[test]
    fn looks_for_closed_connections_wait_a_second_below_the_cap() {
        let mut s = state();
        let (id, _rx) = register(&mut s, hello(4242, false, None));
        let mut looks = 0;
        // Reports from..to, all at the time `at`.
        let mut add = |s: &mut State, from: usize, to: usize, at: Instant| {
            for i in from..to {
                s.handle(id, ToDaemon::Conn(ab_connect(1 + i as u64)));
                if s.prune_due_at(at).is_some() {
                    looks += 1;
                    // The kernel could not be asked: everything stays.
                    s.pruned_then(None, at);
                }
            }
            looks
        };
        let t0 = Instant::now();
        // The first look comes at PRUNE_MIN ...
        assert_eq!(add(&mut s, 0, PRUNE_MIN, t0), 1);
        assert_eq!(s.prune_at, 2 * PRUNE_MIN);
        // ... the next not at twice that within the second ...
        let soon = t0 + PRUNE_EVERY / 2;
        assert_eq!(add(&mut s, PRUNE_MIN, 3 * PRUNE_MIN, soon), 1);
        // ... but once the second has passed,
        let t1 = t0 + PRUNE_EVERY;
        assert_eq!(add(&mut s, 3 * PRUNE_MIN, 3 * PRUNE_MIN + 1, t1), 2);
        // and at PRUNE_CAP however recent the last look was.
        assert!(s.prune_at < PRUNE_CAP);
        assert_eq!(add(&mut s, 3 * PRUNE_MIN + 1, PRUNE_CAP - 1, t1), 2);
        assert_eq!(add(&mut s, PRUNE_CAP - 1, PRUNE_CAP, t1), 3);
    }
}
