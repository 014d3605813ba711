//! Deciding a call against the rules: first match wins, `log` rules are
//! noted and evaluation goes on, and the default applies when nothing matches.
//!
//! Rules are indexed, not scanned: per operation, a binary prefix trie per
//! address family holds each rule at the node of its network; each node keeps
//! single-port rules bucketed by port and ranged ones apart, every list in
//! rule order. A lookup walks at most 33 (IPv4) or 129 (IPv6) nodes, takes the
//! lists that apply to the port, and merges them lazily in rule order,
//! stopping at the first rule that matches: the cost is the path plus the
//! candidates before the decision, not the number of rules.

use super::*;
use std::net::SocketAddr;

/// What is being decided.
#[derive(Clone, Debug)]
pub struct Query<'a> {
    /// Connect, Bind, Send or Raw (never Any).
    pub op: RuleOp,
    /// The destination or local address (unused for Raw).
    pub addr: SocketAddr,
    pub proto: Option<Proto>,
    /// The calling program's name: the comm its last execve gave it.
    pub app: &'a str,
    pub labels: &'a [(String, String)],
    pub uid: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Allow,
    /// Refuse with this errno.
    Deny(i32),
    /// Carry the call out with this address instead.
    Redirect(SocketAddr),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// Index (0-based, in evaluation order) of the deciding rule; None: the default.
    pub rule: Option<usize>,
    /// Index of the first `log` rule that matched before the decision.
    pub logged: Option<usize>,
}

/// What a matching rule does to `q`; None for `log` (evaluation goes on).
fn action_of(r: &Rule, q: &Query<'_>) -> Option<Action> {
    Some(match r.verb {
        Verb::Log => return None,
        Verb::Allow => Action::Allow,
        Verb::Deny => Action::Deny(r.errno.unwrap_or_else(|| default_errno(q.op))),
        Verb::Redirect => match &r.target {
            Some(t) => Action::Redirect(t.apply(q.addr)),
            None => Action::Allow,
        },
    })
}

/// The default errno of a refused operation.
pub fn default_errno(op: RuleOp) -> i32 {
    match op {
        RuleOp::Bind => libc::EACCES,
        // What socket() gives a program without CAP_NET_RAW.
        RuleOp::Send | RuleOp::Raw => libc::EPERM,
        _ => libc::ECONNREFUSED,
    }
}

#[derive(Default, Clone)]
struct Node {
    child: [u32; 2],
    /// Sorted ports that have single-port rules here; `by_port[i]` holds
    /// the rules for `ports[i]`, in rule order.
    ports: Vec<u16>,
    by_port: Vec<Vec<u32>>,
    /// Rules for a port range (or all ports), in rule order.
    ranged: Vec<u32>,
}

/// Candidate lists gathered along a trie path (two per node at most).
const MAX_LISTS: usize = 2 * 129;

#[derive(Clone)]
struct Trie {
    nodes: Vec<Node>,
}

impl Trie {
    fn new() -> Trie {
        Trie {
            nodes: vec![Node::default()],
        }
    }

    fn insert(&mut self, bits: u128, width: u32, len: u8, ports: Ports, rule: u32) {
        let mut n = 0usize;
        for i in 0..u32::from(len) {
            let b = ((bits >> (width - 1 - i)) & 1) as usize;
            if self.nodes[n].child[b] == 0 {
                self.nodes.push(Node::default());
                let id = (self.nodes.len() - 1) as u32;
                self.nodes[n].child[b] = id;
            }
            n = self.nodes[n].child[b] as usize;
        }
        // Rules are inserted in rule order, so pushing keeps every list sorted.
        let node = &mut self.nodes[n];
        if ports.lo == ports.hi {
            match node.ports.binary_search(&ports.lo) {
                Ok(i) => node.by_port[i].push(rule),
                Err(i) => {
                    node.ports.insert(i, ports.lo);
                    node.by_port.insert(i, vec![rule]);
                }
            }
        } else {
            node.ranged.push(rule);
        }
    }

    /// The non-empty candidate lists along the path of `bits` for `port`.
    fn collect<'a>(
        &'a self,
        bits: u128,
        width: u32,
        port: u16,
        lists: &mut [&'a [u32]; MAX_LISTS],
    ) -> usize {
        let mut n = 0usize;
        let mut depth = 0;
        let mut k = 0;
        loop {
            let node = &self.nodes[n];
            if let Ok(i) = node.ports.binary_search(&port) {
                lists[k] = &node.by_port[i];
                k += 1;
            }
            if !node.ranged.is_empty() {
                lists[k] = &node.ranged;
                k += 1;
            }
            if depth == width {
                return k;
            }
            let b = ((bits >> (width - 1 - depth)) & 1) as usize;
            match node.child[b] {
                0 => return k,
                c => n = c as usize,
            }
            depth += 1;
        }
    }
}

#[derive(Clone)]
struct OpIndex {
    v4: Trie,
    v6: Trie,
}

/// An evaluable policy: rules in order plus their index.
#[derive(Clone)]
pub struct Policy {
    rules: Vec<Rule>,
    default_deny: bool,
    index: [OpIndex; 3],
    /// Per operation: no rule could refuse or redirect (so the tracer may let
    /// the program's own call run without emulation).
    permissive: [bool; 3],
    /// Indexes of the `raw` rules, in rule order (they match no address).
    raw: Vec<u32>,
    /// Some rule matches on app=.
    app: bool,
    /// Some rule matches on uid=.
    uid: bool,
}

/// The index slot of an address operation (Raw has none: see `Policy::raw`).
fn op_slot(op: RuleOp) -> usize {
    match op {
        RuleOp::Connect | RuleOp::Any | RuleOp::Raw => 0,
        RuleOp::Bind => 1,
        RuleOp::Send => 2,
    }
}

impl Policy {
    pub fn new(rules: Vec<Rule>, default_deny: bool) -> Policy {
        let empty = OpIndex {
            v4: Trie::new(),
            v6: Trie::new(),
        };
        let mut index = [empty.clone(), empty.clone(), empty];
        let mut permissive = [!default_deny; 3];
        let mut raw = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            if r.op == RuleOp::Raw {
                raw.push(i as u32);
                continue;
            }
            let slots: &[usize] = match r.op {
                RuleOp::Any => &[0, 1, 2],
                op => &[op_slot(op)],
            };
            let ports = r.addr.as_ref().map_or(Ports::ALL, |a| a.ports);
            let nets: Vec<IpNet> = match r.addr.as_ref().map(|a| &a.host) {
                None | Some(Host::Any) => vec![
                    "0.0.0.0/0".parse().unwrap_or_default(),
                    "::/0".parse().unwrap_or_default(),
                ],
                Some(Host::Loopback) => vec![
                    "127.0.0.0/8".parse().unwrap_or_default(),
                    "::1/128".parse().unwrap_or_default(),
                ],
                Some(Host::Net(n)) => vec![*n],
                // Service names match once the service table exists.
                Some(Host::Service(_)) => vec![],
            };
            for &s in slots {
                if matches!(r.verb, Verb::Deny | Verb::Redirect) && !nets.is_empty() {
                    permissive[s] = false;
                }
                for n in &nets {
                    match n {
                        IpNet::V4(n) => index[s].v4.insert(
                            u128::from(u32::from(n.network())),
                            32,
                            n.prefix_len(),
                            ports,
                            i as u32,
                        ),
                        IpNet::V6(n) => index[s].v6.insert(
                            u128::from(n.network()),
                            128,
                            n.prefix_len(),
                            ports,
                            i as u32,
                        ),
                    }
                }
            }
        }
        let app = rules.iter().any(|r| r.app.is_some());
        let uid = rules.iter().any(|r| r.uid.is_some());
        Policy {
            rules,
            default_deny,
            index,
            permissive,
            raw,
            app,
            uid,
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn default_deny(&self) -> bool {
        self.default_deny
    }

    /// True when no rule for `op` can refuse or redirect and the default
    /// allows. Never for Raw: a raw socket needs a rule that allows it.
    pub fn is_permissive(&self, op: RuleOp) -> bool {
        op != RuleOp::Raw && self.permissive[op_slot(op)]
    }

    /// True when some rule matches on the program's name (app=).
    pub fn uses_app(&self) -> bool {
        self.app
    }

    /// True when some rule matches on the caller's uid (uid=).
    pub fn uses_uid(&self) -> bool {
        self.uid
    }

    /// True when some rule redirects.
    pub fn has_redirects(&self) -> bool {
        self.rules.iter().any(|r| r.verb == Verb::Redirect)
    }

    pub fn decide(&self, q: &Query<'_>) -> Decision {
        if q.op == RuleOp::Raw {
            return self.decide_raw(q);
        }
        // IPv4-mapped IPv6 addresses are decided as the IPv4 address they carry.
        let ip = match q.addr.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let port = q.addr.port();
        let idx = &self.index[op_slot(q.op)];
        let mut lists: [&[u32]; MAX_LISTS] = [&[]; MAX_LISTS];
        let mut k = match ip {
            IpAddr::V4(a) => idx
                .v4
                .collect(u128::from(u32::from(a)), 32, port, &mut lists),
            IpAddr::V6(a) => idx.v6.collect(u128::from(a), 128, port, &mut lists),
        };
        let mut logged = None;
        // Lazy k-way merge: the smallest head is the next rule in order.
        while k > 0 {
            let mut best = 0;
            for i in 1..k {
                if lists[i][0] < lists[best][0] {
                    best = i;
                }
            }
            let i = lists[best][0] as usize;
            lists[best] = &lists[best][1..];
            if lists[best].is_empty() {
                k -= 1;
                lists.swap(best, k);
            }
            let r = &self.rules[i];
            if !self.matches_rest(r, q, port) {
                continue;
            }
            let Some(action) = action_of(r, q) else {
                logged.get_or_insert(i);
                continue;
            };
            return Decision {
                action,
                rule: Some(i),
                logged,
            };
        }
        let action = if self.default_deny {
            Action::Deny(default_errno(q.op))
        } else {
            Action::Allow
        };
        Decision {
            action,
            rule: None,
            logged,
        }
    }

    /// A raw or packet socket: the first matching `raw` rule decides; with
    /// none, it is refused whatever the default (connect and send rules
    /// cannot see where its packets go, so only an explicit allow opens it).
    fn decide_raw(&self, q: &Query<'_>) -> Decision {
        let mut logged = None;
        for &i in &self.raw {
            let i = i as usize;
            let r = &self.rules[i];
            if !self.matches_rest(r, q, 0) {
                continue;
            }
            match action_of(r, q) {
                None => {
                    logged.get_or_insert(i);
                }
                Some(action) => {
                    return Decision {
                        action,
                        rule: Some(i),
                        logged,
                    }
                }
            }
        }
        Decision {
            action: Action::Deny(default_errno(RuleOp::Raw)),
            rule: None,
            logged,
        }
    }

    fn matches_rest(&self, r: &Rule, q: &Query<'_>, port: u16) -> bool {
        if let Some(a) = &r.addr {
            if !a.ports.contains(port) {
                return false;
            }
        }
        if r.proto.is_some() && r.proto != q.proto {
            return false;
        }
        if let Some(app) = &r.app {
            if app != q.app {
                return false;
            }
        }
        if let Some(uid) = r.uid {
            if uid != q.uid {
                return false;
            }
        }
        r.labels.iter().all(|l| q.labels.contains(l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse_policy;

    fn policy(text: &str) -> Policy {
        let f = parse_policy(text).unwrap();
        Policy::new(f.rules, f.default == Some(Verb::Deny))
    }

    fn q(op: RuleOp, addr: &str) -> Query<'static> {
        Query {
            op,
            addr: addr.parse().unwrap(),
            proto: Some(Proto::Tcp),
            app: "curl",
            labels: &[],
            uid: 1000,
        }
    }

    /// The obvious implementation, for comparison.
    fn scan(p: &Policy, q: &Query<'_>) -> Decision {
        let ip = match q.addr.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let mut logged = None;
        for (i, r) in p.rules().iter().enumerate() {
            let op_ok = r.op == RuleOp::Any || r.op == q.op;
            let host_ok = match r.addr.as_ref().map(|a| &a.host) {
                None | Some(Host::Any) => true,
                Some(Host::Loopback) => ip.is_loopback(),
                Some(Host::Net(n)) => n.contains(&ip),
                Some(Host::Service(_)) => false,
            };
            if !op_ok || !host_ok || !p.matches_rest(r, q, q.addr.port()) {
                continue;
            }
            let Some(action) = action_of(r, q) else {
                logged.get_or_insert(i);
                continue;
            };
            return Decision {
                action,
                rule: Some(i),
                logged,
            };
        }
        let action = if p.default_deny() {
            Action::Deny(default_errno(q.op))
        } else {
            Action::Allow
        };
        Decision {
            action,
            rule: None,
            logged,
        }
    }

    #[test]
    fn first_match_wins_and_defaults_apply() {
        let p = policy(
            "log connect any:22\nallow connect 10.0.0.1:22\ndeny connect 10.0.0.0/8:22\n\
             redirect connect 1.1.1.1:80 -> 127.0.0.1:8080\ndeny bind any:1-1023\ndefault allow\n",
        );
        let d = p.decide(&q(RuleOp::Connect, "10.0.0.1:22"));
        assert_eq!(
            (d.action, d.rule, d.logged),
            (Action::Allow, Some(1), Some(0))
        );
        let d = p.decide(&q(RuleOp::Connect, "10.9.9.9:22"));
        assert_eq!(d.action, Action::Deny(libc::ECONNREFUSED));
        let d = p.decide(&q(RuleOp::Connect, "[::ffff:10.9.9.9]:22"));
        assert_eq!(
            d.action,
            Action::Deny(libc::ECONNREFUSED),
            "v4-mapped matches v4 rules"
        );
        let d = p.decide(&q(RuleOp::Connect, "1.1.1.1:80"));
        assert_eq!(
            d.action,
            Action::Redirect("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            p.decide(&q(RuleOp::Bind, "0.0.0.0:80")).action,
            Action::Deny(libc::EACCES)
        );
        assert_eq!(p.decide(&q(RuleOp::Bind, "0.0.0.0:8080")).rule, None);
        assert!(!p.is_permissive(RuleOp::Connect));
        assert!(policy("allow connect any\n").is_permissive(RuleOp::Connect));
        assert!(!policy("default deny\n").is_permissive(RuleOp::Send));
    }

    #[test]
    fn raw_sockets_need_an_allow_rule() {
        let raw = |app: &'static str| Query {
            app,
            ..q(RuleOp::Raw, "0.0.0.0:0")
        };
        // No raw rule: refused even under default allow; `any` is not raw.
        for text in ["default allow\n", "allow any\n", "allow connect any\n"] {
            let d = policy(text).decide(&raw("curl"));
            assert_eq!(
                (d.action, d.rule),
                (Action::Deny(libc::EPERM), None),
                "{text}"
            );
        }
        let p = policy(
            "log raw\ndeny raw app=curl errno=EACCES\nallow raw app=ping\ndeny connect any\n",
        );
        let d = p.decide(&raw("ping"));
        assert_eq!(
            (d.action, d.rule, d.logged),
            (Action::Allow, Some(2), Some(0))
        );
        let d = p.decide(&raw("curl"));
        assert_eq!((d.action, d.rule), (Action::Deny(libc::EACCES), Some(1)));
        assert_eq!(p.decide(&raw("nc")).action, Action::Deny(libc::EPERM));
        // Raw rules do not decide connects, and connect rules no raw socket.
        assert_eq!(p.decide(&q(RuleOp::Connect, "10.0.0.1:80")).rule, Some(3));
        assert_eq!(
            policy("allow raw\n").decide(&raw("x")).action,
            Action::Allow
        );
        assert!(!policy("allow raw\n").is_permissive(RuleOp::Raw));
        assert!(policy("allow raw\n").is_permissive(RuleOp::Connect));
    }

    #[test]
    fn index_agrees_with_a_scan() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let mut runner = TestRunner::new(Config {
            cases: 64,
            ..Config::default()
        });
        let rule = (0..4u8, 0..4u8, 0..3u8, 0u8..=32, 0..4u16, 0..3u8, 0..2u8).prop_map(
            |(verb, op, host, len, port, proto, app)| {
                let verb = ["allow", "deny", "log", "redirect"][verb as usize];
                let op = ["connect", "bind", "send", "any"][op as usize];
                let addr = match host {
                    0 => "any".to_string(),
                    1 => "loopback".to_string(),
                    _ => format!("10.{}.0.0/{len}", len % 4),
                };
                let ports = match port {
                    0 => String::new(),
                    1 => ":22".into(),
                    2 => ":80".into(),
                    _ => ":20-80".into(),
                };
                let proto = ["", " proto=tcp", " proto=udp"][proto as usize];
                let app = ["", " app=curl"][app as usize];
                let target = if verb == "redirect" {
                    " -> 127.0.0.1:1"
                } else {
                    ""
                };
                format!("{verb} {op} {addr}{ports}{proto}{app}{target}")
            },
        );
        let queries = [
            "10.0.0.1:22",
            "10.1.0.1:80",
            "127.0.0.1:22",
            "10.3.0.0:21",
            "[::1]:80",
            "[2001:db8::1]:22",
        ];
        runner
            .run(
                &(prop::collection::vec(rule, 0..40), any::<bool>()),
                |(rules, deny)| {
                    let text = rules.join("\n");
                    let f = parse_policy(&text).unwrap();
                    let p = Policy::new(f.rules, deny);
                    for op in [RuleOp::Connect, RuleOp::Bind, RuleOp::Send] {
                        for a in queries {
                            let query = q(op, a);
                            prop_assert_eq!(p.decide(&query), scan(&p, &query), "{} {}", text, a);
                        }
                    }
                    Ok(())
                },
            )
            .unwrap();
    }
}
