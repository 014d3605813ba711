//! Policy rules: the language of DESIGN.md section 6, its parser, an
//! indexed evaluator, and the editable table behind /appswitch/policy.
//!
//! ```text
//! RULE  := VERB OP [MATCH ...] [-> TARGET] [errno=NAME]
//! VERB  := allow | deny | redirect | log
//! OP    := connect | bind | send | any | raw
//! MATCH := ADDR | proto=tcp|udp | app=NAME | label=K=V | uid=N
//! ADDR  := any | loopback | CIDR | CIDR:PORTS | [V6CIDR]:PORTS | SERVICE-NAME[:PORTS]
//! PORTS := N | N-M
//! ```

mod eval;
mod parse;
#[cfg(test)]
mod proptests;
pub mod table;

pub use eval::{Action, Decision, Policy, Query};
pub use parse::{parse_policy, parse_rule, parse_rule_at, ParseError, PolicyFile};

use ipnet::IpNet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    Allow,
    Deny,
    Redirect,
    /// Record the call and go on evaluating (like iptables LOG).
    Log,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleOp {
    Connect,
    Bind,
    /// Datagrams with a destination (sendto/sendmsg/sendmmsg, and connect()
    /// on a UDP socket, which fixes the destination of every later send).
    Send,
    /// connect, bind and send (not raw).
    Any,
    /// Creating a raw IP socket (SOCK_RAW, which may carry its own IP
    /// header) or a packet socket (AF_PACKET, AF_XDP): their destination is
    /// in the payload, out of reach of connect/send rules. Matches only on
    /// who calls (app=, uid=, label=); with no matching rule, refused.
    Raw,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

/// An inclusive port range; `0..=65535` is "any port".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ports {
    pub lo: u16,
    pub hi: u16,
}

impl Ports {
    pub const ALL: Ports = Ports { lo: 0, hi: 65535 };
    pub fn contains(&self, p: u16) -> bool {
        self.lo <= p && p <= self.hi
    }
    pub fn is_all(&self) -> bool {
        *self == Ports::ALL
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    Any,
    /// 127.0.0.0/8 and ::1.
    Loopback,
    Net(IpNet),
    /// A service name (resolved through the service table once services exist).
    Service(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AddrMatch {
    pub host: Host,
    pub ports: Ports,
}

/// Where `redirect` sends the call: an address, keeping the port when none is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub ip: IpAddr,
    pub port: Option<u16>,
}

impl Target {
    pub fn apply(&self, orig: SocketAddr) -> SocketAddr {
        SocketAddr::new(self.ip, self.port.unwrap_or(orig.port()))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    pub verb: Verb,
    pub op: RuleOp,
    pub addr: Option<AddrMatch>,
    pub proto: Option<Proto>,
    pub app: Option<String>,
    pub labels: Vec<(String, String)>,
    pub uid: Option<u32>,
    pub target: Option<Target>,
    /// The errno a `deny` returns (None: the operation's default).
    pub errno: Option<i32>,
}

impl Verb {
    pub fn name(self) -> &'static str {
        match self {
            Verb::Allow => "allow",
            Verb::Deny => "deny",
            Verb::Redirect => "redirect",
            Verb::Log => "log",
        }
    }
}

impl RuleOp {
    pub fn name(self) -> &'static str {
        match self {
            RuleOp::Connect => "connect",
            RuleOp::Bind => "bind",
            RuleOp::Send => "send",
            RuleOp::Any => "any",
            RuleOp::Raw => "raw",
        }
    }
}

/// Name of an errno value ("ECONNREFUSED"), as nix spells it.
pub fn errno_name(e: i32) -> String {
    format!("{:?}", tracer::Errno::from_raw(e))
}

/// The errno value of a name ("ECONNREFUSED", case-insensitive).
pub fn errno_from_name(name: &str) -> Option<i32> {
    let mut want = name.to_ascii_uppercase();
    // Aliases that share a number with the name nix prints.
    for (alias, name) in [
        ("EWOULDBLOCK", "EAGAIN"),
        ("ENOTSUP", "EOPNOTSUPP"),
        ("EDEADLOCK", "EDEADLK"),
    ] {
        if want == alias {
            want = name.to_string();
        }
    }
    (1..4096).find(|&e| errno_name(e) == want)
}

impl fmt::Display for Ports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

impl fmt::Display for AddrMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ports = |f: &mut fmt::Formatter<'_>| {
            if self.ports.is_all() {
                Ok(())
            } else {
                write!(f, ":{}", self.ports)
            }
        };
        match &self.host {
            Host::Any => f.write_str("any")?,
            Host::Loopback => f.write_str("loopback")?,
            Host::Service(s) => f.write_str(s)?,
            Host::Net(IpNet::V4(n)) if n.prefix_len() == 32 => write!(f, "{}", n.addr())?,
            Host::Net(IpNet::V4(n)) => write!(f, "{n}")?,
            // IPv6 is bracketed so that a port reads back unambiguously.
            Host::Net(IpNet::V6(n)) if n.prefix_len() == 128 => write!(f, "[{}]", n.addr())?,
            Host::Net(IpNet::V6(n)) => write!(f, "[{n}]")?,
        }
        ports(f)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ip, self.port) {
            (IpAddr::V4(ip), Some(p)) => write!(f, "{ip}:{p}"),
            (IpAddr::V4(ip), None) => write!(f, "{ip}"),
            (IpAddr::V6(ip), Some(p)) => write!(f, "[{ip}]:{p}"),
            (IpAddr::V6(ip), None) => write!(f, "[{ip}]"),
        }
    }
}

/// The canonical text of a rule; it parses back to the same rule.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.verb.name(), self.op.name())?;
        if let Some(a) = &self.addr {
            write!(f, " {a}")?;
        }
        if let Some(p) = self.proto {
            f.write_str(match p {
                Proto::Tcp => " proto=tcp",
                Proto::Udp => " proto=udp",
            })?;
        }
        if let Some(a) = &self.app {
            write!(f, " app={a}")?;
        }
        for (k, v) in &self.labels {
            write!(f, " label={k}={v}")?;
        }
        if let Some(u) = self.uid {
            write!(f, " uid={u}")?;
        }
        if let Some(t) = &self.target {
            write!(f, " -> {t}")?;
        }
        if let Some(e) = self.errno {
            write!(f, " errno={}", errno_name(e))?;
        }
        Ok(())
    }
}
