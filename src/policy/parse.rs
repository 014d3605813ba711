//! Rule text → [`Rule`]. Every error names the line, the column and the
//! token, and says what was expected.

use super::*;
use ipnet::{Ipv4Net, Ipv6Net};
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column (characters) where the token starts.
    pub col: usize,
    /// The offending token ("" at end of line).
    pub token: String,
    /// What was expected, or what is wrong.
    pub msg: String,
}

impl ParseError {
    pub fn new(line: usize, col: usize, token: &str, msg: &str) -> ParseError {
        ParseError {
            line,
            col,
            token: token.to_string(),
            msg: msg.to_string(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.token.is_empty() {
            write!(
                f,
                "line {}, column {}: {} (at end of line)",
                self.line, self.col, self.msg
            )
        } else {
            write!(
                f,
                "line {}, column {}: '{}': {}",
                self.line, self.col, self.token, self.msg
            )
        }
    }
}

impl std::error::Error for ParseError {}

/// A policy file: rules in order, and an optional `default allow|deny` line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyFile {
    pub rules: Vec<Rule>,
    pub default: Option<Verb>,
}

#[derive(Clone, Copy)]
struct Tok<'a> {
    text: &'a str,
    col: usize,
}

fn tokens(line: &str) -> Vec<Tok<'_>> {
    let line = match line.find('#') {
        Some(i) => &line[..i],
        None => line,
    };
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push(Tok {
                    text: &line[s..i],
                    col: line[..s].chars().count() + 1,
                });
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(Tok {
            text: &line[s..],
            col: line[..s].chars().count() + 1,
        });
    }
    out
}

struct Ctx<'a> {
    line: usize,
    end_col: usize,
    toks: Vec<Tok<'a>>,
    pos: usize,
}

impl<'a> Ctx<'a> {
    fn err(&self, tok: Option<&Tok<'_>>, msg: impl Into<String>) -> ParseError {
        ParseError {
            line: self.line,
            col: tok.map_or(self.end_col, |t| t.col),
            token: tok.map_or(String::new(), |t| t.text.to_string()),
            msg: msg.into(),
        }
    }
    fn next(&mut self, expected: &str) -> Result<Tok<'a>, ParseError> {
        if self.pos < self.toks.len() {
            self.pos += 1;
            Ok(self.toks[self.pos - 1])
        } else {
            Err(self.err(None, format!("expected {expected}")))
        }
    }
}

const ADDR_HELP: &str =
    "expected an address (any, loopback, CIDR, CIDR:PORTS, [IPv6]:PORTS or a service name), \
     or proto=, app=, label=, uid=, errno=, ->";

/// Why a raw rule takes no address or protocol.
const RAW_MATCHES: &str =
    "raw matches only app=, uid= and label= (a raw socket's destination is in its payload)";

/// Parse a whole policy text: one rule per line, `#` comments, blank lines,
/// and at most one `default allow|deny` line.
pub fn parse_policy(text: &str) -> Result<PolicyFile, ParseError> {
    let mut file = PolicyFile::default();
    for (i, line) in text.lines().enumerate() {
        let toks = tokens(line);
        if toks.is_empty() {
            continue;
        }
        if toks[0].text == "default" {
            let ctx = Ctx {
                line: i + 1,
                end_col: line.chars().count() + 1,
                toks,
                pos: 0,
            };
            let v = match ctx.toks.get(1).map(|t| t.text) {
                Some("allow") => Verb::Allow,
                Some("deny") => Verb::Deny,
                _ => return Err(ctx.err(ctx.toks.get(1), "expected allow or deny after default")),
            };
            if let Some(t) = ctx.toks.get(2) {
                return Err(ctx.err(Some(t), "unexpected text after the default action"));
            }
            if file.default.is_some() {
                return Err(ctx.err(Some(&ctx.toks[0]), "a second default line"));
            }
            file.default = Some(v);
            continue;
        }
        file.rules.push(parse_tokens(i + 1, line, toks)?);
    }
    Ok(file)
}

/// Parse one rule (line number 1 in errors).
pub fn parse_rule(text: &str) -> Result<Rule, ParseError> {
    parse_rule_at(1, text)
}

/// Parse one rule, reporting errors at `line`.
pub fn parse_rule_at(line: usize, text: &str) -> Result<Rule, ParseError> {
    if let Some(i) = text.find(['\n', '\r']) {
        return Err(ParseError {
            line,
            col: text[..i].chars().count() + 1,
            token: String::new(),
            msg: "a rule is one line (use parse_policy for several)".into(),
        });
    }
    let toks = tokens(text);
    if toks.is_empty() {
        return Err(ParseError {
            line,
            col: 1,
            token: String::new(),
            msg: "expected a rule (allow, deny, redirect or log ...)".into(),
        });
    }
    parse_tokens(line, text, toks)
}

fn parse_tokens<'a>(line: usize, text: &'a str, toks: Vec<Tok<'a>>) -> Result<Rule, ParseError> {
    let mut c = Ctx {
        line,
        end_col: text.chars().count() + 1,
        toks,
        pos: 0,
    };
    let t = c.next("a verb")?;
    let verb = match t.text {
        "allow" => Verb::Allow,
        "deny" => Verb::Deny,
        "redirect" => Verb::Redirect,
        "log" => Verb::Log,
        _ => return Err(c.err(Some(&t), "expected a verb: allow, deny, redirect or log")),
    };
    let t = c.next("an operation: connect, bind, send, any or raw")?;
    let op = match t.text {
        "connect" => RuleOp::Connect,
        "bind" => RuleOp::Bind,
        "send" => RuleOp::Send,
        "any" => RuleOp::Any,
        "raw" => RuleOp::Raw,
        _ => {
            return Err(c.err(
                Some(&t),
                "expected an operation: connect, bind, send, any or raw",
            ))
        }
    };
    if op == RuleOp::Raw && verb == Verb::Redirect {
        return Err(c.err(
            Some(&t),
            "a raw socket has no destination to redirect: use allow, deny or log raw",
        ));
    }
    let mut rule = Rule {
        verb,
        op,
        addr: None,
        proto: None,
        app: None,
        labels: Vec::new(),
        uid: None,
        target: None,
        errno: None,
    };
    while c.pos < c.toks.len() {
        let tok = c.toks[c.pos];
        let tok = &tok;
        c.pos += 1;
        let s = tok.text;
        let dup = |what: &str| c.err(Some(tok), format!("{what} given twice"));
        if s == "->" {
            if rule.target.is_some() {
                return Err(dup("a target"));
            }
            let t = c.next("a target address after ->")?;
            rule.target = Some(parse_target(t.text).map_err(|m| c.err(Some(&t), m))?);
        } else if let Some(v) = s.strip_prefix("proto=") {
            if rule.proto.is_some() {
                return Err(dup("proto"));
            }
            if op == RuleOp::Raw {
                return Err(c.err(Some(tok), RAW_MATCHES));
            }
            rule.proto = Some(match v {
                "tcp" => Proto::Tcp,
                "udp" => Proto::Udp,
                _ => return Err(c.err(Some(tok), "expected proto=tcp or proto=udp")),
            });
        } else if let Some(v) = s.strip_prefix("app=") {
            if rule.app.is_some() {
                return Err(dup("app"));
            }
            if !valid_word(v) {
                return Err(c.err(Some(tok), "expected app=NAME (letters, digits, . _ -)"));
            }
            rule.app = Some(v.to_string());
        } else if let Some(v) = s.strip_prefix("label=") {
            match v.split_once('=') {
                Some((k, val)) if valid_word(k) && valid_word(val) => {
                    if rule.labels.iter().any(|(k2, _)| k2 == k) {
                        return Err(dup("this label"));
                    }
                    rule.labels.push((k.to_string(), val.to_string()));
                }
                _ => return Err(c.err(Some(tok), "expected label=KEY=VALUE")),
            }
        } else if let Some(v) = s.strip_prefix("uid=") {
            if rule.uid.is_some() {
                return Err(dup("uid"));
            }
            rule.uid = Some(
                v.parse()
                    .map_err(|_| c.err(Some(tok), "expected uid=NUMBER"))?,
            );
        } else if let Some(v) = s.strip_prefix("errno=") {
            if rule.errno.is_some() {
                return Err(dup("errno"));
            }
            rule.errno = Some(errno_from_name(v).ok_or_else(|| {
                c.err(
                    Some(tok),
                    "expected errno=NAME, an errno name such as ECONNREFUSED or EPERM",
                )
            })?);
        } else if s.contains('=') {
            return Err(c.err(
                Some(tok),
                "unknown match: expected proto=, app=, label=, uid= or errno=",
            ));
        } else {
            if op == RuleOp::Raw {
                return Err(c.err(Some(tok), RAW_MATCHES));
            }
            if rule.addr.is_some() {
                return Err(c.err(Some(tok), "a second address: a rule matches one address"));
            }
            rule.addr = Some(parse_addr(s).map_err(|m| c.err(Some(tok), m))?);
        }
    }
    let first = c.toks.first();
    match (verb, &rule.target) {
        (Verb::Redirect, None) => {
            return Err(c.err(None, "expected -> TARGET: redirect needs a target"))
        }
        (Verb::Redirect, Some(t)) => {
            if let Some(AddrMatch {
                host: Host::Net(n), ..
            }) = &rule.addr
            {
                if matches!(n, IpNet::V4(_)) != t.ip.is_ipv4() {
                    return Err(c.err(
                        first,
                        "the target's address family differs from the matched address",
                    ));
                }
            }
        }
        (_, Some(_)) => return Err(c.err(first, "only redirect takes -> TARGET")),
        _ => {}
    }
    if rule.errno.is_some() && verb != Verb::Deny {
        return Err(c.err(first, "only deny takes errno="));
    }
    Ok(rule)
}

fn valid_word(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
}

fn valid_service(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// A decimal number of plain digits (no sign, which Rust's parse would allow).
fn number<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_ports(s: &str) -> Result<Ports, String> {
    let bad =
        || format!("bad port or port range '{s}': expected N or N-M with 0 <= N <= M <= 65535");
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (
            a.parse::<u16>().map_err(|_| bad())?,
            b.parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let p = s.parse::<u16>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if lo > hi {
        return Err(bad());
    }
    Ok(Ports { lo, hi })
}

/// An IPv6 network; IPv4-mapped ones (::ffff:a.b.c.d/N, N >= 96) become IPv4.
fn v6_net(s: &str) -> Result<IpNet, String> {
    let net = if s.contains('/') {
        s.parse::<Ipv6Net>()
            .map_err(|_| format!("'{s}' is not an IPv6 address or network"))?
    } else {
        let a = s
            .parse::<Ipv6Addr>()
            .map_err(|_| format!("'{s}' is not an IPv6 address"))?;
        Ipv6Net::new(a, 128).map_err(|e| e.to_string())?
    };
    if let (Some(v4), true) = (net.addr().to_ipv4_mapped(), net.prefix_len() >= 96) {
        let n = Ipv4Net::new(v4, net.prefix_len() - 96).map_err(|e| e.to_string())?;
        return Ok(IpNet::V4(n.trunc()));
    }
    Ok(IpNet::V6(net.trunc()))
}

fn v4_net(s: &str) -> Option<IpNet> {
    if s.contains('/') {
        s.parse::<Ipv4Net>().ok().map(|n| IpNet::V4(n.trunc()))
    } else {
        let a = s.parse::<Ipv4Addr>().ok()?;
        Ipv4Net::new(a, 32).ok().map(IpNet::V4)
    }
}

fn parse_addr(s: &str) -> Result<AddrMatch, String> {
    if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("'{s}': missing ']'"))?;
        let ports = match after {
            "" => Ports::ALL,
            _ => parse_ports(after.strip_prefix(':').ok_or("expected :PORTS after ']'")?)?,
        };
        return Ok(AddrMatch {
            host: Host::Net(v6_net(inner)?),
            ports,
        });
    }
    if s.matches(':').count() > 1 {
        // A bare IPv6 address or network: no port (use [..]:PORTS for one).
        return Ok(AddrMatch {
            host: Host::Net(v6_net(s)?),
            ports: Ports::ALL,
        });
    }
    let (host, ports) = match s.split_once(':') {
        Some((h, p)) => (h, parse_ports(p)?),
        None => (s, Ports::ALL),
    };
    let host = match host {
        "any" => Host::Any,
        "loopback" => Host::Loopback,
        h if h.starts_with(|c: char| c.is_ascii_digit()) => {
            Host::Net(v4_net(h).ok_or_else(|| format!("'{h}' is not an IPv4 address or CIDR"))?)
        }
        h if valid_service(h) => Host::Service(h.to_string()),
        _ => return Err(ADDR_HELP.to_string()),
    };
    Ok(AddrMatch { host, ports })
}

fn parse_target(s: &str) -> Result<Target, String> {
    let help = "expected a target address: IP, IP:PORT, [IPv6] or [IPv6]:PORT";
    if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or(help)?;
        let ip: Ipv6Addr = inner.parse().map_err(|_| help)?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or(help)?
                    .parse::<u16>()
                    .map_err(|_| help)?,
            ),
        };
        return Ok(Target {
            ip: IpAddr::V6(ip),
            port,
        });
    }
    let (h, p) = match s.split_once(':') {
        Some((h, p)) => (h, Some(number::<u16>(p).ok_or(help)?)),
        None => (s, None),
    };
    let ip: Ipv4Addr = h.parse().map_err(|_| help)?;
    Ok(Target {
        ip: IpAddr::V4(ip),
        port: p,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ParseError {
        parse_policy(text).expect_err(text)
    }

    #[test]
    fn examples_from_the_design_parse_and_print_back() {
        for r in [
            "deny connect any:22",
            "allow connect 10.0.0.0/8:443 app=web",
            "redirect connect 1.1.1.1:80 -> 127.0.0.1:8080",
            "deny bind any:1-1023",
            "deny send [2001:db8::/32]:53 proto=udp errno=EACCES",
            "log any loopback label=role=test uid=0",
            "allow connect web:80",
            "allow raw",
            "allow raw app=ping uid=0",
            "deny raw label=role=test errno=EACCES",
            "log raw",
        ] {
            let rule = parse_rule(r).unwrap();
            assert_eq!(rule.to_string(), r);
        }
    }

    #[test]
    fn normalises() {
        let r = parse_rule("deny connect 10.1.2.3/8:80-80").unwrap();
        assert_eq!(r.to_string(), "deny connect 10.0.0.0/8:80");
        let r = parse_rule("deny connect [::ffff:10.0.0.1]:22").unwrap();
        assert_eq!(r.to_string(), "deny connect 10.0.0.1:22");
        let r = parse_rule("deny connect ::1").unwrap();
        assert_eq!(r.to_string(), "deny connect [::1]");
    }

    #[test]
    fn errors_name_line_column_and_token() {
        let e = err("allow connect any\n\ndeny conect any:22\n");
        assert_eq!((e.line, e.col, e.token.as_str()), (3, 6, "conect"));
        assert!(e
            .to_string()
            .starts_with("line 3, column 6: 'conect': expected an operation"));
        let e = err("deny connect any:99999");
        assert_eq!((e.col, e.token.as_str()), (14, "any:99999"));
        assert!(e.msg.contains("port"), "{e}");
        let e = err("redirect connect any:80");
        assert!(e.msg.contains("-> TARGET"), "{e}");
        let e = err("deny connect any errno=EBOGUS");
        assert_eq!(e.token, "errno=EBOGUS");
        let e = err("allow connect any -> 1.2.3.4");
        assert!(e.msg.contains("only redirect"), "{e}");
        let e = err("deny connect 10.0.0.0/33");
        assert_eq!(e.token, "10.0.0.0/33");
        let e = err("deny");
        assert_eq!(e.col, 5);
        assert!(e.to_string().contains("at end of line"));
        let e = err("default maybe");
        assert_eq!(e.token, "maybe");
        let e = err("deny connect any any");
        assert!(e.msg.contains("second address"));
    }

    #[test]
    fn raw_rules_name_who_not_where() {
        let e = err("allow connect any\nallow raw 127.0.0.1\n");
        assert_eq!((e.line, e.col, e.token.as_str()), (2, 11, "127.0.0.1"));
        assert!(e.msg.contains("only app=, uid= and label="), "{e}");
        let e = err("deny raw app=ping proto=udp");
        assert_eq!((e.col, e.token.as_str()), (19, "proto=udp"));
        let e = err("redirect raw -> 127.0.0.1");
        assert_eq!((e.col, e.token.as_str()), (10, "raw"));
        let e = err("allow rawx");
        assert!(e.msg.ends_with("connect, bind, send, any or raw"), "{e}");
    }

    #[test]
    fn comments_blank_lines_and_default() {
        let f = parse_policy("# a policy\n\ndefault deny\nallow connect loopback # local only\n")
            .unwrap();
        assert_eq!(f.default, Some(Verb::Deny));
        assert_eq!(f.rules.len(), 1);
        assert_eq!(f.rules[0].to_string(), "allow connect loopback");
    }
}
