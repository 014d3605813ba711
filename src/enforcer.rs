//! The policy side's tracer handler: decides each trapped call against the
//! rules, keeps what redirected sockets must show the program, and records
//! events.

use crate::config::Mode;
use crate::events::{self, EventSink};
use crate::rules::{Action, Decision, Policy, Proto, Query, RuleOp};
use std::collections::HashMap;
use std::net::SocketAddr;
use tracer::{Call, Errno, Interests, NetHandler, Op, Outcome, ProcessEvent, SockAddr, Verdict};

/// Who a process is, for app= and uid= matches.
#[derive(Clone, Debug)]
struct ProcInfo {
    comm: String,
    uid: u32,
}

fn read_proc(pid: i32) -> ProcInfo {
    let comm = events::comm(pid);
    let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let l = s.lines().find(|l| l.starts_with("Uid:"))?;
            // real, effective, saved, fs: match the effective uid.
            l.split_whitespace().nth(2)?.parse().ok()
        })
        .unwrap_or(u32::MAX);
    ProcInfo { comm, uid }
}

/// Virtual peers remembered at most (a redirected socket's original address).
const MAX_VIRTUAL: usize = 65_536;

pub struct Enforcer {
    policy: Policy,
    mode: Mode,
    /// Whether a policy was given (enables io_uring refusal in enforce mode).
    policed: bool,
    sink: Option<EventSink>,
    labels: Vec<(String, String)>,
    procs: HashMap<i32, ProcInfo>,
    /// Socket inode -> the address the program connected to before a redirect.
    virtual_peers: HashMap<u64, SockAddr>,
    /// The last decision per thread, for its event.
    last: HashMap<i32, Decision>,
}

impl Enforcer {
    pub fn new(
        policy: Policy,
        mode: Mode,
        policed: bool,
        sink: Option<EventSink>,
        labels: Vec<(String, String)>,
    ) -> Enforcer {
        Enforcer {
            policy,
            mode,
            policed,
            sink,
            labels,
            procs: HashMap::new(),
            virtual_peers: HashMap::new(),
            last: HashMap::new(),
        }
    }

    fn proc(&mut self, pid: i32) -> &ProcInfo {
        self.procs.entry(pid).or_insert_with(|| read_proc(pid))
    }

    /// The rule question a call asks, if any.
    fn query_of(call: &Call) -> Option<(RuleOp, SocketAddr)> {
        let sock = call.socket.as_ref();
        let ip = call.addr.as_ref().and_then(SockAddr::ip);
        let stream = sock.is_some_and(|s| s.sotype == libc::SOCK_STREAM);
        match call.op {
            Op::Connect => Some((RuleOp::Connect, ip?)),
            Op::Bind => Some((RuleOp::Bind, ip?)),
            // listen() on an unbound socket binds it implicitly to a wildcard port.
            Op::Listen => match call.local.as_ref().and_then(SockAddr::ip) {
                Some(local) if local.port() == 0 => Some((RuleOp::Bind, local)),
                _ => None,
            },
            Op::SendTo | Op::SendMsg | Op::SendMmsg if stream => {
                (call.flags & libc::MSG_FASTOPEN != 0).then_some((RuleOp::Connect, ip?))
            }
            Op::SendTo | Op::SendMsg | Op::SendMmsg => Some((RuleOp::Send, ip?)),
            _ => None,
        }
    }

    fn evaluate(&mut self, call: &Call, op: RuleOp, addr: SocketAddr) -> Decision {
        let proto = call.socket.and_then(|s| match (s.sotype, s.protocol) {
            (libc::SOCK_STREAM, 0 | libc::IPPROTO_TCP) => Some(Proto::Tcp),
            (libc::SOCK_DGRAM, 0 | libc::IPPROTO_UDP) => Some(Proto::Udp),
            _ => None,
        });
        let info = self.proc(call.pid).clone();
        let q = Query {
            op,
            addr,
            proto,
            app: &info.comm,
            labels: &self.labels,
            uid: info.uid,
        };
        let mut d = self.policy.decide(&q);
        // connect() on a UDP socket fixes the destination of every later send.
        if op == RuleOp::Connect
            && proto == Some(Proto::Udp)
            && !matches!(d.action, Action::Deny(_))
        {
            let send = self.policy.decide(&Query {
                op: RuleOp::Send,
                ..q
            });
            if matches!(send.action, Action::Deny(_)) {
                d = send;
            }
        }
        d
    }
}

impl NetHandler for Enforcer {
    fn interests(&self) -> Interests {
        let events = self.sink.is_some();
        let binds = !self.policy.is_permissive(RuleOp::Bind);
        Interests {
            socket: events,
            connect: true,
            bind: binds || events,
            listen: binds || events,
            accept: events,
            send: !self.policy.is_permissive(RuleOp::Send) || events,
            names: self.policy.has_redirects() || events,
            socket_info: true,
            outcomes: events,
            deny_io_uring: self.policed && self.mode == Mode::Enforce,
        }
    }

    fn decide(&mut self, call: &Call) -> Verdict {
        if call.op == Op::GetPeerName {
            return match call.socket.and_then(|s| self.virtual_peers.get(&s.inode)) {
                Some(v) if self.mode == Mode::Enforce => Verdict::Answer(v.clone()),
                _ => Verdict::Pass,
            };
        }
        let ip_socket = call
            .socket
            .is_some_and(|s| s.domain == libc::AF_INET || s.domain == libc::AF_INET6);
        let Some((op, addr)) = Self::query_of(call).filter(|_| ip_socket) else {
            return Verdict::Pass;
        };
        let d = self.evaluate(call, op, addr);
        self.last.insert(call.tid, d);
        if let Some(i) = d.logged {
            if self.sink.is_none() {
                let comm = &self.proc(call.pid).comm;
                eprintln!(
                    "appswitch: log rule {}: {comm}[{}] {} {addr} -> {:?}",
                    i + 1,
                    call.pid,
                    call.op.name(),
                    d.action
                );
            }
        }
        if self.mode == Mode::Monitor {
            return Verdict::Pass;
        }
        match d.action {
            Action::Deny(e) => {
                log::info!(
                    "refused {} {addr} from pid {} (rule {:?})",
                    call.op.name(),
                    call.pid,
                    d.rule.map(|r| r + 1)
                );
                Verdict::Fail(Errno::from_raw(e))
            }
            Action::Redirect(to) => Verdict::Rewrite(to.into()),
            // Nothing could have refused it: the program's own call may run.
            Action::Allow if self.policy.is_permissive(op) && op != RuleOp::Send => Verdict::Pass,
            Action::Allow => Verdict::Allow,
        }
    }

    fn finished(&mut self, call: &Call, verdict: &Verdict, outcome: Outcome) {
        if let (Verdict::Rewrite(_), Op::Connect, Some(s), Some(orig)) =
            (verdict, call.op, call.socket, &call.addr)
        {
            if matches!(outcome, Outcome::Ok(0) | Outcome::Err(Errno::EINPROGRESS)) {
                if self.virtual_peers.len() >= MAX_VIRTUAL {
                    self.virtual_peers.clear();
                }
                self.virtual_peers.insert(s.inode, orig.clone());
            }
        }
        let decision = self.last.remove(&call.tid);
        if let Some(sink) = &mut self.sink {
            let mut ev = events::event(call, verdict, outcome);
            if let Some(d) = decision {
                ev.rule = d.rule.map(|r| r + 1);
                ev.logged_by = d.logged.map(|r| r + 1);
                ev.action = Some(match d.action {
                    Action::Allow => "allow",
                    Action::Deny(_) => "deny",
                    Action::Redirect(_) => "redirect",
                });
                ev.monitor = (self.mode == Mode::Monitor).then_some(true);
            }
            sink.write(&ev);
        }
    }

    fn process(&mut self, event: ProcessEvent) {
        match event {
            ProcessEvent::Exec { pid } | ProcessEvent::Exited { pid } => {
                self.procs.remove(&pid);
            }
            ProcessEvent::Spawned { .. } => {}
        }
    }

    fn refused(&mut self, pid: i32, tid: i32, what: &str, errno: Errno) {
        log::warn!("refused a call from pid {pid} (tid {tid}): {what}: {errno:?}");
        if let Some(sink) = &mut self.sink {
            sink.write(&events::refusal(pid, tid, what, errno));
        }
    }
}
