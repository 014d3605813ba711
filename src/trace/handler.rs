//! The policy side's tracer handler: decides each trapped call against the
//! live policy, keeps what redirected sockets must show the program, records
//! events, and reports connections and counters to a daemon when there is one.

use super::processes::Processes;
use super::report::{ConnFacts, Report};
use super::{CALLS, RULES};
use crate::config::Mode;
use crate::policy::{Action, Decision, Proto, Query, RuleOp};
use crate::procfs;
use crate::protocol::{Counters, ToDaemon};
use crate::trace::events::{self, EventSink};
use crate::trace::snapshot::{LivePolicy, Snapshot, Source};
use crate::trace::vip_router::{association_kept, insert_socket, Router};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tracer::idmap::IdMap;
use tracer::{Call, Errno, Interests, NetHandler, Op, Outcome, ProcessEvent, SockAddr, Verdict};

/// Where reports to the daemon go (a bounded channel: never blocks the tracer).
pub struct Reporter {
    pub tx: SyncSender<Report>,
    pub counters: Arc<Mutex<Counters>>,
    /// Thread groups alive in the traced tree (for apps/ID/ctl: kill).
    pub pids: Arc<Mutex<Processes>>,
    /// Someone reads the daemon's event stream: send event lines (read per call).
    pub events_wanted: Arc<AtomicBool>,
}

pub struct Enforcer {
    live: Arc<LivePolicy>,
    /// Trap every call a policy could need, even if the current one does not
    /// (a daemon may push rules later).
    managed: bool,
    /// Whether a policy was given (enables io_uring refusal in enforce mode).
    policed: bool,
    sink: Option<EventSink>,
    reporter: Option<Reporter>,
    labels: Vec<(String, String)>,
    /// Program name per process (read once; again after exec).
    procs: IdMap<i32, Arc<str>>,
    /// Socket inode -> the address the program connected to before a redirect.
    virtual_peers: IdMap<u64, SockAddr>,
    /// The last decision per thread (and the snapshot it came from), for its event.
    last: IdMap<i32, (Decision, Arc<Snapshot>)>,
    /// The app name asked when no rule names one (made once: an empty
    /// Arc<str> is an allocation).
    no_app: Arc<str>,
    /// The thread whose call this decision made Allow only to learn its
    /// outcome (it could have passed: `may_pass`).
    observed: Option<i32>,
    /// Sockets whose connect was reported as started (EINPROGRESS): the
    /// connect() that sees it complete (0) is not reported again.
    connecting: IdMap<u64, Option<SocketAddr>>,
    /// Services: virtual IPs, backends.
    router: Router,
    /// The interception backend that runs the program (named in events).
    backend: tracer::Chosen,
}

impl Enforcer {
    pub fn new(
        live: Arc<LivePolicy>,
        policed: bool,
        sink: Option<EventSink>,
        labels: Vec<(String, String)>,
        backend: tracer::Chosen,
    ) -> Enforcer {
        Enforcer {
            live,
            managed: false,
            policed,
            sink,
            reporter: None,
            labels,
            procs: IdMap::default(),
            virtual_peers: IdMap::default(),
            last: IdMap::default(),
            no_app: Arc::from(""),
            observed: None,
            connecting: IdMap::default(),
            router: Router::new(crate::trace::snapshot::LiveNet::new(), None, true),
            backend,
        }
    }

    /// Route connects to services, and make this program one with --ip.
    pub fn with_router(mut self, router: Router) -> Enforcer {
        self.router = router;
        self
    }

    /// As [`Enforcer::with_router`], in place.
    pub fn set_router(&mut self, router: Router) {
        self.router = router;
    }

    /// Where reports go (None: no daemon, no control files).
    pub fn reporter(&self) -> Option<&Reporter> {
        self.reporter.as_ref()
    }

    /// Report to a daemon and trap everything a later policy could need.
    pub fn with_reporter(mut self, reporter: Reporter) -> Enforcer {
        self.managed = true;
        self.policed = true;
        self.reporter = Some(reporter);
        self
    }

    /// The program's name: what its last execve made its comm, recorded at
    /// the exec (or inherited from its parent's record at fork). A thread
    /// renaming itself later (PR_SET_NAME) changes nothing here.
    fn comm(&mut self, pid: i32) -> Arc<str> {
        if let Some(name) = self.procs.get(&pid) {
            return name.clone();
        }
        // Its first call came before the tracer saw its parent fork it:
        // take the parent's record, as `Spawned` will (its own comm is the
        // forking thread's, which that thread may have renamed).
        let inherited = procfs::parent(pid).and_then(|pp| self.procs.get(&pp).cloned());
        let name = inherited.unwrap_or_else(|| Arc::from(procfs::comm(pid)));
        self.procs.insert(pid, name.clone());
        name
    }

    /// The rule question a call asks, if any.
    fn query_of(call: &Call) -> Option<(RuleOp, SocketAddr)> {
        let sock = call.socket.as_ref();
        let ip = call.addr.as_ref().and_then(SockAddr::ip);
        let stream = sock.is_some_and(|s| s.sotype == libc::SOCK_STREAM);
        match call.op {
            Op::Connect => Some((RuleOp::Connect, ip?)),
            Op::Bind => Some((RuleOp::Bind, ip?)),
            // listen() on an unbound socket binds it implicitly: the tracer
            // names the port the kernel chose in `addr` (else port 0).
            Op::Listen => match (ip, call.local.as_ref().and_then(SockAddr::ip)) {
                (Some(bound), _) => Some((RuleOp::Bind, bound)),
                (None, Some(local)) if local.port() == 0 => Some((RuleOp::Bind, local)),
                _ => None,
            },
            Op::SendTo | Op::SendMsg | Op::SendMmsg if stream => {
                (call.flags & libc::MSG_FASTOPEN != 0).then_some((RuleOp::Connect, ip?))
            }
            Op::SendTo | Op::SendMsg | Op::SendMmsg => Some((RuleOp::Send, ip?)),
            _ => None,
        }
    }

    fn proto(call: &Call) -> Option<Proto> {
        call.socket.and_then(|s| match (s.sotype, s.protocol) {
            (libc::SOCK_STREAM, 0 | libc::IPPROTO_TCP) => Some(Proto::Tcp),
            (libc::SOCK_DGRAM, 0 | libc::IPPROTO_UDP) => Some(Proto::Udp),
            _ => None,
        })
    }

    /// Who calls, for app= and uid= rules (empty and 0 when no rule asks).
    /// app= is the program's recorded name (no /proc read); uid= the calling
    /// thread's effective uid now (setuid without exec counts): one read of
    /// /proc/TID/status, only when a rule matches on uid.
    fn caller(&mut self, snap: &Snapshot, call: &Call) -> (Arc<str>, u32) {
        let app = if snap.policy.uses_app() {
            self.comm(call.pid)
        } else {
            self.no_app.clone()
        };
        let uid = if snap.policy.uses_uid() {
            procfs::euid(call.tid)
        } else {
            0
        };
        (app, uid)
    }

    /// Whether connect() on this socket also fixes where later send()s go
    /// (every socket but a stream: UDP, ICMP "ping" sockets, raw sockets).
    fn fixes_sends(call: &Call) -> bool {
        call.socket.is_some_and(|s| s.sotype != libc::SOCK_STREAM)
    }

    fn evaluate(&mut self, snap: &Snapshot, call: &Call, op: RuleOp, addr: SocketAddr) -> Decision {
        let proto = Self::proto(call);
        let (app, uid) = self.caller(snap, call);
        let q = Query {
            op,
            addr,
            proto,
            app: &app,
            labels: &self.labels,
            uid,
        };
        let mut d = snap.policy.decide(&q);
        // connect() on a datagram socket fixes the destination of every later send.
        if op == RuleOp::Connect && Self::fixes_sends(call) && !matches!(d.action, Action::Deny(_))
        {
            let send = snap.policy.decide(&Query {
                op: RuleOp::Send,
                ..q
            });
            if matches!(send.action, Action::Deny(_)) {
                d = send;
            }
        }
        d
    }

    fn count(&self, latency_ns: u64, verdict: &Verdict) {
        if let Some(r) = &self.reporter {
            if let Ok(mut c) = r.counters.lock() {
                c.calls += 1;
                match verdict {
                    Verdict::Fail(_) => c.denied += 1,
                    Verdict::Rewrite(_) => c.rewritten += 1,
                    _ => {}
                }
                let bucket = (64 - latency_ns.leading_zeros()).min(23) as usize;
                c.latency[bucket] += 1;
                c.latency_sum_ns += latency_ns;
            }
        }
    }

    fn report_conn(&mut self, call: &Call, verdict: &Verdict, outcome: Outcome, rule: Option<u32>) {
        if self.reporter.is_none() {
            return;
        }
        let ok = matches!(
            outcome,
            Outcome::Ok(_) | Outcome::Err(Errno::EINPROGRESS) | Outcome::Unknown
        );
        // Where a connect goes (the backend, when it was routed).
        let to = match verdict {
            Verdict::Rewrite(a) => a.ip(),
            _ => call.addr.as_ref().and_then(SockAddr::ip),
        };
        let (sock, via) = match (call.op, call.accepted, call.socket) {
            // A connect() again on a socket whose connect was reported
            // (ab, hiredis and Perl check completion this way): the same
            // connection, told once. A completion names the same place; a
            // new connection on the socket (after shutdown()) may not, and
            // is told. (Only carried-out connects have an outcome: one that
            // passed to the kernel is Unknown, so told each time.)
            (Op::Connect, _, Some(s)) => {
                let was = self.connecting.remove(&s.inode);
                if outcome == Outcome::Err(Errno::EINPROGRESS) {
                    insert_socket(&mut self.connecting, s.inode, to);
                } else if let (Some(w), Outcome::Err(Errno::EALREADY)) = (was, outcome) {
                    insert_socket(&mut self.connecting, s.inode, w);
                }
                if !ok || (was == Some(to) && outcome == Outcome::Ok(0)) {
                    return;
                }
                (s, "connect")
            }
            (Op::Accept, Some(s), _) => (s, "accept"),
            // A listening socket: the daemon finds its accepted connections
            // in the kernel's tables, so accept() need not stop for them.
            (Op::Listen, _, Some(s)) if ok => (s, "listen"),
            _ => return,
        };
        if sock.domain != libc::AF_INET && sock.domain != libc::AF_INET6 {
            return;
        }
        let (remote, virt) = match (via, verdict) {
            ("accept" | "listen", _) => (None, None),
            (_, Verdict::Rewrite(_)) => (to, call.addr.clone()),
            _ => (to, None),
        };
        let proto = if sock.sotype == libc::SOCK_DGRAM {
            "udp"
        } else {
            "tcp"
        };
        // Cached per process (read once, again after exec).
        let comm = self.comm(call.pid);
        let Some(r) = &self.reporter else { return };
        let _ = r.tx.try_send(Report::Conn(ConnFacts {
            inode: sock.inode,
            pid: call.pid,
            comm,
            proto,
            remote,
            virtual_remote: virt,
            rule,
            via,
        }));
    }
}

impl NetHandler for Enforcer {
    fn interests(&self) -> Interests {
        let snap = self.live.get();
        let p = &snap.policy;
        let events = self.sink.is_some();
        let all = events || self.managed;
        let binds = !p.is_permissive(RuleOp::Bind);
        let host = self.router.has_host();
        // Decided once, when the filter is made (vip_router::traps_accept).
        let accepts = events || self.router.traps_accept();
        Interests {
            socket: events,
            connect: true,
            bind: binds || all || host,
            listen: binds || all || host,
            // Accepted connections are listed from the kernel's tables (the
            // listener is reported): accept() stops only where the program
            // may have to be shown a client's virtual address the kernel
            // would not show (clients with loopback VIPs connect from them),
            // or for the event log.
            accept: accepts,
            send: !p.is_permissive(RuleOp::Send) || all,
            names: p.has_redirects() || all || host,
            // Datagrams from a UDP service show its VIP as their source.
            recv: self.router.wants_recv_at_start(),
            socket_info: true,
            // The event log wants every result; a daemon needs none (connects
            // are reported without waiting, listeners at entry), a service
            // the local address of its accepted sockets.
            outcomes: events,
            accept_outcomes: accepts,
            // A service registers once listen() has succeeded, and shows the
            // addresses it asked for (and its clients' VIPs).
            listen_outcomes: host,
            addresses: host,
            deny_io_uring: self.policed && snap.mode == Mode::Enforce,
            // Raw and packet sockets need an allow rule under a policy (in
            // either mode: monitor records what enforce would refuse, and a
            // daemon may switch modes later).
            raw_sockets: self.policed,
        }
    }

    fn could_refuse(&mut self, op: Op) -> bool {
        let snap = self.live.get();
        if snap.mode == Mode::Monitor {
            return false;
        }
        let p = &snap.policy;
        let routes = self.router.has_routes();
        match op {
            Op::Connect => {
                !p.is_permissive(RuleOp::Connect) || !p.is_permissive(RuleOp::Send) || routes
            }
            Op::Bind => !p.is_permissive(RuleOp::Bind) || self.router.has_host(),
            Op::SendTo | Op::SendMsg | Op::SendMmsg => !p.is_permissive(RuleOp::Send) || routes,
            _ => false,
        }
    }

    fn passes_unseen(&mut self, call: &Call) -> bool {
        // A connect with no rule at all, no service, and nobody taking its
        // event or report: nothing it says can matter.
        if call.op != Op::Connect || self.sink.is_some() || self.reporter.is_some() {
            return false;
        }
        let snap = self.live.get();
        snap.ids.is_empty()
            && snap.policy.is_permissive(RuleOp::Connect)
            && snap.policy.is_permissive(RuleOp::Send)
            && !self.router.has_routes()
    }

    fn decide(&mut self, call: &Call) -> Verdict {
        // Counters (and their latency histogram) exist only for a daemon.
        let started = self.reporter.is_some().then(Instant::now);
        let snap = self.live.get();
        let verdict = self.decide_with(&snap, call);
        if let Some(t) = started {
            self.count(t.elapsed().as_nanos() as u64, &verdict);
        }
        verdict
    }

    fn socket_replaced(&mut self, old: u64, new: u64) {
        if let Some(v) = self.virtual_peers.remove(&old) {
            insert_socket(&mut self.virtual_peers, new, v);
        }
        self.router.socket_replaced(old, new);
    }

    fn finished(&mut self, call: &Call, verdict: &Verdict, outcome: Outcome) {
        if let (Op::Connect, Some(s)) = (call.op, call.socket) {
            match (verdict, &call.addr, outcome) {
                // A connect that started one: its peer is what it asked for.
                // A connect on a socket already connecting or connected
                // (EALREADY, EISCONN, or 0 as it completes) keeps the peer
                // of the connect that started it, whatever it asks now.
                (Verdict::Rewrite(_), Some(_), Outcome::Err(Errno::EALREADY | Errno::EISCONN)) => {}
                (Verdict::Rewrite(_), Some(_), Outcome::Ok(0))
                    if self.virtual_peers.contains_key(&s.inode) => {}
                (
                    Verdict::Rewrite(_),
                    Some(orig),
                    Outcome::Ok(0) | Outcome::Err(Errno::EINPROGRESS),
                ) => insert_socket(&mut self.virtual_peers, s.inode, orig.clone()),
                // Refused here: the kernel never saw it; the peer stays.
                (Verdict::Fail(_), _, _) => {}
                // A connect elsewhere the kernel did not act on (EISCONN,
                // EALREADY, the pending one's completion): the peer stays.
                (v, _, o) if !matches!(v, Verdict::Rewrite(_)) && association_kept(call, o) => {}
                // Connected elsewhere, or not connected: no virtual peer.
                _ => {
                    self.virtual_peers.remove(&s.inode);
                }
            }
        }
        if let Some(msg) = self.router.finished(call, verdict, outcome) {
            if let Some(r) = &self.reporter {
                let _ = r.tx.try_send(msg.into());
            }
        }
        let decision = self.last.remove(&call.tid);
        let rule = decision
            .as_ref()
            .and_then(|(d, s)| d.rule.map(|i| s.ids[i]));
        self.report_conn(call, verdict, outcome, rule.map(|(_, id)| id));
        let stream = self
            .reporter
            .as_ref()
            .is_some_and(|r| r.events_wanted.load(Ordering::Relaxed));
        if self.sink.is_none() && !stream {
            return;
        }
        let comm = self.comm(call.pid).to_string();
        let mut ev = events::event(call, verdict, outcome, comm, self.backend);
        if let Some((d, s)) = &decision {
            ev.rule = rule.map(|(_, id)| id as usize);
            ev.rule_source = rule.map(|(src, _)| match src {
                Source::File => "file",
                Source::Daemon => "daemon",
            });
            ev.logged_by = d.logged.map(|i| s.ids[i].1 as usize);
            ev.action = Some(match d.action {
                Action::Allow => "allow",
                Action::Deny(_) => "deny",
                Action::Redirect(_) => "redirect",
            });
            ev.monitor = (s.mode == Mode::Monitor).then_some(true);
        }
        // Serialised once, for the file and the daemon's stream.
        let Ok(line) = serde_json::to_string(&ev) else {
            return;
        };
        if let Some(sink) = &mut self.sink {
            sink.write_line(&line);
        }
        if let (Some(r), true) = (&self.reporter, stream) {
            let _ = r.tx.try_send(ToDaemon::Event { line }.into());
        }
    }

    fn accepted(&mut self, call: &Call) -> Option<SockAddr> {
        self.router.accepted(call)
    }

    fn wants_outcome(&mut self, call: &Call) -> bool {
        match call.op {
            Op::Accept => self.sink.is_some() || self.router.accept_needs_exit(call),
            Op::RecvFrom | Op::RecvMsg => self.router.wants_recv(call),
            _ => true,
        }
    }

    fn received(&mut self, call: &Call) -> Option<SockAddr> {
        self.router.received(call)
    }

    fn connect_refused(&mut self, call: &Call) -> Option<SockAddr> {
        self.router.refused(call, &self.labels)
    }

    fn may_fail_over(&mut self, call: &Call) -> bool {
        self.router.may_fail_over(call)
    }

    fn may_pass(&mut self, call: &Call) -> bool {
        self.observed == Some(call.tid)
    }

    fn connect_source(&mut self, call: &Call) -> Option<SockAddr> {
        self.router.connect_source(call)
    }

    fn connect_source_bound(&mut self, call: &Call, bound: bool) {
        self.router.connect_source_bound(call, bound)
    }

    fn process(&mut self, event: ProcessEvent) {
        match event {
            // The kernel has just set the comm from the executed file's
            // name, and no code of the new image has run: read it once.
            ProcessEvent::Exec { pid } => {
                self.procs.insert(pid, Arc::from(procfs::comm(pid)));
            }
            ProcessEvent::Exited { pid } => {
                self.procs.remove(&pid);
                if let Some(r) = &self.reporter {
                    if let Ok(mut p) = r.pids.lock() {
                        p.live.remove(&pid);
                    }
                }
            }
            ProcessEvent::Spawned { pid, parent } => {
                // A fork is the parent program until it execs; the child's
                // own comm is the forking thread's, which may have renamed
                // itself. (A record made already, at an exec or a first call
                // that came before this event, stands.)
                if let Some(name) = self.procs.get(&parent).cloned() {
                    self.procs.entry(pid).or_insert(name);
                }
                if let Some(r) = &self.reporter {
                    if let Ok(mut p) = r.pids.lock() {
                        p.live.insert(pid);
                        if p.killed {
                            // SAFETY: signalling a traced process of ours.
                            unsafe { libc::kill(pid, libc::SIGKILL) };
                        }
                    }
                }
            }
        }
    }

    fn refused(&mut self, pid: i32, tid: i32, what: &str, errno: Errno) {
        log::warn!(target: CALLS, "refused a call from pid {pid} (tid {tid}): {what}: {errno:?}");
        if self.sink.is_some() {
            let comm = self.comm(pid).to_string();
            if let Some(sink) = &mut self.sink {
                sink.write(&events::refusal(pid, tid, what, errno, comm, self.backend));
            }
        }
    }
}

impl Enforcer {
    /// A call that may pass: passed, except a connect elsewhere on a socket
    /// that shows a virtual peer (its connect went to its own service, or a
    /// rule redirected it): carried out, so that its outcome says whether
    /// the socket kept that peer (`association_kept`: EISCONN leaves it where
    /// it was), and remembered as one that could have passed (`may_pass`).
    fn pass_or_observe(&mut self, call: &Call) -> Verdict {
        let shows_virtual = call.op == Op::Connect
            && call
                .socket
                .is_some_and(|s| self.virtual_peers.contains_key(&s.inode));
        if !shows_virtual {
            return Verdict::Pass;
        }
        self.observed = Some(call.tid);
        Verdict::Allow
    }

    /// socket(): under a policy, a raw IP or packet socket needs a `raw`
    /// rule that allows it (its packets carry their own destination, out of
    /// reach of connect/send rules). Every other socket is the kernel's.
    fn decide_socket(&mut self, snap: &Arc<Snapshot>, call: &Call) -> Verdict {
        let raw = call
            .socket_args
            .is_some_and(|(domain, sotype, _)| tracer::is_raw_socket(domain, sotype));
        if !raw || !self.policed {
            return Verdict::Pass;
        }
        let (app, uid) = self.caller(snap, call);
        let d = snap.policy.decide(&Query {
            op: RuleOp::Raw,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            proto: None,
            app: &app,
            labels: &self.labels,
            uid,
        });
        if self.reporter.is_some() || self.sink.is_some() {
            self.last.insert(call.tid, (d, snap.clone()));
        }
        let (domain, sotype, protocol) = call.socket_args.unwrap_or_default();
        let what = format!("raw socket (domain {domain}, type {sotype}, protocol {protocol})");
        if let (Some(i), None) = (d.logged, &self.sink) {
            let comm = self.comm(call.pid).to_string();
            log::warn!(
                target: RULES,
                "log rule {}: {comm}[{}] {what} -> {:?}",
                snap.ids[i].1,
                call.pid,
                d.action
            );
        }
        match d.action {
            Action::Deny(e) if snap.mode == Mode::Enforce => {
                log::warn!(
                    target: CALLS,
                    "refused {what} from pid {} ({})",
                    call.pid,
                    rule_name(snap, d.rule)
                );
                Verdict::Fail(Errno::from_raw(e))
            }
            _ => Verdict::Pass,
        }
    }

    fn decide_with(&mut self, snap: &Arc<Snapshot>, call: &Call) -> Verdict {
        self.last.remove(&call.tid);
        self.observed = None;
        if call.op == Op::Socket {
            return self.decide_socket(snap, call);
        }
        if call.op == Op::GetPeerName {
            if let (Some(v), true) = (self.router.peername(call), call.peer.is_some()) {
                return v;
            }
            // Only a connected socket shows its virtual peer (else ENOTCONN, from the kernel).
            // (Only carried-out rewrites leave one: none in monitor mode.)
            let virt = call.socket.and_then(|s| self.virtual_peers.get(&s.inode));
            return match (call.peer.is_some(), virt) {
                (true, Some(v)) => Verdict::Answer(v.clone()),
                _ => Verdict::Pass,
            };
        }
        if call.op == Op::GetSockName {
            return self.router.sockname(call).unwrap_or(Verdict::Pass);
        }
        let ip_socket = call
            .socket
            .is_some_and(|s| s.domain == libc::AF_INET || s.domain == libc::AF_INET6);
        let Some((op, addr)) = Self::query_of(call).filter(|_| ip_socket) else {
            // An IP socket with an address no rule can judge (AF_UNSPEC,
            // another family, too short): when some rule could refuse, the
            // tracer carries it out on its own copy, so what the kernel acts
            // on is what was seen here (a sibling may change the buffer).
            if ip_socket && call.op.takes_address() && snap.mode == Mode::Enforce {
                let rop = match call.op {
                    Op::Connect => RuleOp::Connect,
                    Op::Bind => RuleOp::Bind,
                    _ => RuleOp::Send,
                };
                // A connect on a datagram socket also fixes where sends
                // go, and the socket a call acts on can change under it
                // (dup2): a send rule counts for every connect.
                let sends_too = rop == RuleOp::Connect && !snap.policy.is_permissive(RuleOp::Send);
                if !snap.policy.is_permissive(rop) || sends_too {
                    return Verdict::Allow;
                }
            }
            return Verdict::Pass;
        };
        let d = self.evaluate(snap, call, op, addr);
        // Kept for the call's event and connection report, when anyone takes them.
        if self.reporter.is_some() || self.sink.is_some() {
            self.last.insert(call.tid, (d, snap.clone()));
        }
        if let Some(i) = d.logged {
            if self.sink.is_none() {
                let comm = self.comm(call.pid).to_string();
                log::warn!(
                    target: RULES,
                    "log rule {}: {comm}[{}] {} {addr} -> {:?}",
                    snap.ids[i].1,
                    call.pid,
                    call.op.name(),
                    d.action
                );
            }
        }
        // Services are the network, not policy: they route in monitor mode
        // too, unless a rule refuses or redirects the call (in enforce mode).
        let ruled = snap.mode == Mode::Enforce && !matches!(d.action, Action::Allow);
        if !ruled {
            let routed = match call.op {
                Op::Bind => self.router.bind(call),
                _ if op == RuleOp::Connect => self.router.connect(call, addr, &self.labels),
                _ if op == RuleOp::Send => self.router.send(call, addr, &self.labels),
                _ => None,
            };
            if let Some(v) = routed {
                return v;
            }
        }
        if snap.mode == Mode::Monitor {
            return self.pass_or_observe(call);
        }
        match d.action {
            Action::Deny(e) => {
                log::warn!(
                    target: CALLS,
                    "refused {} {addr} from pid {} ({})",
                    call.op.name(),
                    call.pid,
                    rule_name(snap, d.rule)
                );
                Verdict::Fail(Errno::from_raw(e))
            }
            Action::Redirect(to) => Verdict::Rewrite(to.into()),
            // Nothing could have refused it: the program's own call may run.
            // (A UDP connect also fixes the destination of later sends; and
            // the socket the kernel acts on may not be the one judged here,
            // a sibling can dup2 another onto its number: so a send rule
            // keeps every connect carried out from the tracer's copy.)
            Action::Allow
                if snap.policy.is_permissive(op)
                    && op != RuleOp::Send
                    && (op != RuleOp::Connect || snap.policy.is_permissive(RuleOp::Send)) =>
            {
                self.pass_or_observe(call)
            }
            Action::Allow => Verdict::Allow,
        }
    }
}

/// How a log line names the rule that decided (as /appswitch/policy and
/// apps/ID/policy number them), or the default.
fn rule_name(snap: &Snapshot, rule: Option<usize>) -> String {
    match rule.and_then(|i| snap.ids.get(i)) {
        Some((crate::trace::snapshot::Source::File, id)) => format!("--policy rule {id}"),
        Some((crate::trace::snapshot::Source::Daemon, id)) => format!("rule {id}"),
        None => "the default policy".to_string(),
    }
}
