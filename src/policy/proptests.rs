//! Property tests for the rule language: canonical rules survive
//! print → parse unchanged, the parser never panics and its errors point
//! inside the line, and parsing normalises idempotently.
//!
//! Run: `cargo test --lib policy::proptests`. `PROPTEST_CASES=N` raises the
//! case count for a longer soak.

use super::*;
use ipnet::{Ipv4Net, Ipv6Net};
use proptest::prelude::*;
use proptest::test_runner::Config;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Modest case count by default (the whole module runs in well under 5 s);
/// no regression files are written into the source tree.
fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------
// Canonical rules, generated as AST

fn verb() -> impl Strategy<Value = Verb> {
    prop_oneof![
        Just(Verb::Allow),
        Just(Verb::Deny),
        Just(Verb::Redirect),
        Just(Verb::Log)
    ]
}

fn rule_op() -> impl Strategy<Value = RuleOp> {
    prop_oneof![
        Just(RuleOp::Connect),
        Just(RuleOp::Bind),
        Just(RuleOp::Send),
        Just(RuleOp::Any)
    ]
}

fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        any::<u32>().prop_map(Ipv4Addr::from),
        Just(Ipv4Addr::UNSPECIFIED),
        Just(Ipv4Addr::LOCALHOST),
        Just(Ipv4Addr::BROADCAST),
    ]
}

/// IPv6 addresses, biased towards the shapes that print specially
/// (`::`, `::1`, `::a.b.c.d`, runs of zeros).
fn ipv6() -> impl Strategy<Value = Ipv6Addr> {
    prop_oneof![
        4 => any::<u128>().prop_map(Ipv6Addr::from),
        2 => any::<u32>().prop_map(|x| Ipv6Addr::from(x as u128)),
        2 => (any::<u16>(), any::<u16>(), any::<u16>()).prop_map(|(a, b, c)| {
            Ipv6Addr::new(a, 0, 0, b, 0, 0, 0, c)
        }),
        1 => Just(Ipv6Addr::UNSPECIFIED),
        1 => Just(Ipv6Addr::LOCALHOST),
    ]
}

fn v4_net() -> impl Strategy<Value = IpNet> {
    (ipv4(), 0u8..=32).prop_map(|(a, len)| IpNet::V4(Ipv4Net::new(a, len).unwrap().trunc()))
}

/// IPv6 networks other than IPv4-mapped ones (those read back as IPv4).
fn v6_net() -> impl Strategy<Value = IpNet> {
    (ipv6(), 0u8..=128)
        .prop_map(|(a, len)| Ipv6Net::new(a, len).unwrap().trunc())
        .prop_filter("IPv4-mapped", |n| {
            !(n.prefix_len() >= 96 && n.addr().to_ipv4_mapped().is_some())
        })
        .prop_map(IpNet::V6)
}

fn service() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,10}".prop_filter("keyword", |s| s != "any" && s != "loopback")
}

fn host() -> impl Strategy<Value = Host> {
    prop_oneof![
        1 => Just(Host::Any),
        1 => Just(Host::Loopback),
        3 => v4_net().prop_map(Host::Net),
        3 => v6_net().prop_map(Host::Net),
        2 => service().prop_map(Host::Service),
    ]
}

fn ports() -> impl Strategy<Value = Ports> {
    prop_oneof![
        Just(Ports::ALL),
        any::<u16>().prop_map(|p| Ports { lo: p, hi: p }),
        (any::<u16>(), any::<u16>()).prop_map(|(a, b)| Ports {
            lo: a.min(b),
            hi: a.max(b)
        }),
    ]
}

fn addr() -> impl Strategy<Value = AddrMatch> {
    (host(), ports()).prop_map(|(host, ports)| AddrMatch { host, ports })
}

fn word() -> impl Strategy<Value = String> {
    "[a-z0-9._-]{1,8}"
}

fn labels() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((word(), word()), 0..=2).prop_map(|mut v| {
        let mut seen = std::collections::HashSet::new();
        v.retain(|(k, _)| seen.insert(k.clone()));
        v
    })
}

/// A redirect target whose family fits the matched address (if it is a net).
fn target(addr: &Option<AddrMatch>) -> BoxedStrategy<Target> {
    let ip: BoxedStrategy<IpAddr> = match addr {
        Some(AddrMatch {
            host: Host::Net(IpNet::V4(_)),
            ..
        }) => ipv4().prop_map(IpAddr::V4).boxed(),
        Some(AddrMatch {
            host: Host::Net(IpNet::V6(_)),
            ..
        }) => ipv6().prop_map(IpAddr::V6).boxed(),
        _ => prop_oneof![ipv4().prop_map(IpAddr::V4), ipv6().prop_map(IpAddr::V6)].boxed(),
    };
    (ip, prop::option::of(any::<u16>()))
        .prop_map(|(ip, port)| Target { ip, port })
        .boxed()
}

const ERRNOS: [i32; 6] = [
    libc::EPERM,
    libc::EACCES,
    libc::ECONNREFUSED,
    libc::ENETUNREACH,
    libc::EHOSTUNREACH,
    libc::EADDRINUSE,
];

fn canonical_rule() -> impl Strategy<Value = Rule> {
    (
        verb(),
        rule_op(),
        prop::option::of(addr()),
        prop::option::of(prop_oneof![Just(Proto::Tcp), Just(Proto::Udp)]),
        prop::option::of("[a-zA-Z0-9._/-]{1,10}"),
        labels(),
        prop::option::of(any::<u32>()),
    )
        .prop_flat_map(|(verb, op, addr, proto, app, labels, uid)| {
            let target = match verb {
                Verb::Redirect => target(&addr).prop_map(Some).boxed(),
                _ => Just(None).boxed(),
            };
            let errno = match verb {
                Verb::Deny => prop::option::of(prop::sample::select(&ERRNOS[..])).boxed(),
                _ => Just(None).boxed(),
            };
            (target, errno).prop_map(move |(target, errno)| Rule {
                verb,
                op,
                addr: addr.clone(),
                proto,
                app: app.clone(),
                labels: labels.clone(),
                uid,
                target,
                errno,
            })
        })
}

// ---------------------------------------------------------------------------
// Arbitrary and rule-like text

/// Fragments that exercise the parser's branches, valid and not.
const TOKENS: &[&str] = &[
    "allow",
    "deny",
    "redirect",
    "log",
    "connect",
    "bind",
    "send",
    "any",
    "default",
    "loopback",
    "any:22",
    "any:1-1023",
    "any:0-65535",
    "any:+5",
    "loopback:53",
    "10.0.0.0/8",
    "10.1.2.3/8:80-80",
    "1.2.3.4",
    "1.2.3.4:80",
    "0.0.0.0/0",
    "10.0.0.0/33",
    "01.2.3.4",
    "[::1]",
    "[::1]:22",
    "::1",
    "::",
    "[::/0]",
    "::ffff:1.2.3.4",
    "[::ffff:10.0.0.1]:22",
    "[::ffff:0:0/96]",
    "[::ffff:0:0/95]",
    "2001:db8::/32",
    "[2001:db8::/32]:53",
    "[fe80::1%eth0]",
    "[::1",
    "[::1]x",
    "web",
    "web:80",
    "a.b",
    "WEB",
    "x-1:65535",
    "web:99999",
    "web:9-1",
    "->",
    "-> 127.0.0.1:8080",
    "->",
    "[::1]:80",
    "127.0.0.1",
    "proto=tcp",
    "proto=udp",
    "proto=sctp",
    "app=web",
    "app=a/b",
    "app=",
    "label=role=test",
    "label=a=b=c",
    "label==x",
    "uid=0",
    "uid=4294967295",
    "uid=4294967296",
    "uid=+1",
    "uid=-1",
    "errno=EPERM",
    "errno=eacces",
    "errno=ECONNREFUSED",
    "errno=EWOULDBLOCK",
    "errno=EBOGUS",
    "errno=UnknownErrno",
    "foo=bar",
    "#",
    "# comment",
    "=",
    ":",
    "-",
    "[",
    "]",
    "/",
    "é",
    "ß:1",
];

const SEPARATORS: &[&str] = &[
    " ", " ", " ", "  ", "\t", "\n", "\r\n", "\r", "\u{a0}", "\u{2028}", "\u{85}", "",
];

fn rule_like_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        6 => prop::sample::select(TOKENS).prop_map(str::to_string),
        2 => "[0-9a-fA-F:./\\[\\]=+#>-]{1,12}",
        1 => "[a-z=]{1,8}",
        1 => any::<char>().prop_map(String::from),
    ];
    let sep = prop::sample::select(SEPARATORS);
    prop::collection::vec((piece, sep), 0..10).prop_map(|v| {
        v.into_iter().fold(String::new(), |mut s, (p, sep)| {
            s.push_str(&p);
            s.push_str(sep);
            s
        })
    })
}

/// Mostly a well-formed start (verb op) followed by rule-like text, so that
/// a good share of the inputs parse.
fn mostly_rule_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (verb(), rule_op(), rule_like_text())
            .prop_map(|(v, o, rest)| format!("{} {} {rest}", v.name(), o.name())),
        1 => rule_like_text(),
    ]
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => any::<String>(),
        1 => "(?s).{0,40}",
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

// ---------------------------------------------------------------------------
// Non-canonical spellings of a rule

/// Random choices for [`spell`], drawn once per case.
struct Choices(std::vec::IntoIter<u32>);

impl Choices {
    fn pick(&mut self, n: usize) -> usize {
        self.0.next().unwrap_or(0) as usize % n
    }
    fn flip(&mut self) -> bool {
        self.pick(2) == 1
    }
}

fn spell_ports(p: Ports, ch: &mut Choices) -> String {
    if p.is_all() {
        return ["", ":0-65535", ":00-65535", ":000-65535"][ch.pick(4)].to_string();
    }
    if p.lo == p.hi {
        return match ch.pick(4) {
            0 => format!(":{}", p.lo),
            1 => format!(":{0}-{0}", p.lo),
            2 => format!(":00{}", p.lo),
            _ => format!(":0{}", p.lo),
        };
    }
    if ch.flip() {
        format!(":{}-{}", p.lo, p.hi)
    } else {
        format!(":0{}-0{}", p.lo, p.hi)
    }
}

/// Random host bits below the prefix (the parser truncates them away).
fn host_bits_v4(n: Ipv4Net, ch: &mut Choices) -> Ipv4Addr {
    let mask = n.hostmask().to_bits();
    Ipv4Addr::from_bits(n.addr().to_bits() | (ch.0.next().unwrap_or(0) & mask))
}

fn host_bits_v6(n: Ipv6Net, ch: &mut Choices) -> Ipv6Addr {
    let mask = n.hostmask().to_bits();
    let r = ((ch.0.next().unwrap_or(0) as u128) << 96) | ch.0.next().unwrap_or(0) as u128;
    Ipv6Addr::from_bits(n.addr().to_bits() | (r & mask))
}

fn spell_addr(a: &AddrMatch, ch: &mut Choices) -> String {
    let ports = spell_ports(a.ports, ch);
    let bare_ok = ports.is_empty();
    match &a.host {
        Host::Any => format!("any{ports}"),
        Host::Loopback => format!("loopback{ports}"),
        Host::Service(s) => format!("{s}{ports}"),
        Host::Net(IpNet::V4(n)) => {
            let ip = host_bits_v4(*n, ch);
            let len = n.prefix_len();
            let mapped = ip.to_ipv6_mapped();
            match ch.pick(4) {
                0 if len == 32 => format!("{ip}{ports}"),
                0 | 1 => format!("{ip}/{len}{ports}"),
                2 => format!("[{mapped}/{}]{ports}", len + 96),
                _ if bare_ok => format!("{mapped}/{}", len + 96),
                _ => format!("[::ffff:{ip}/{}]{ports}", len + 96),
            }
        }
        Host::Net(IpNet::V6(n)) => {
            let ip = host_bits_v6(*n, ch);
            let len = n.prefix_len();
            match ch.pick(3) {
                0 if len == 128 => format!("[{ip}]{ports}"),
                0 | 1 => format!("[{ip}/{len}]{ports}"),
                // A bare address needs two colons to read as IPv6.
                _ if bare_ok && ip.to_string().matches(':').count() > 1 => {
                    if len == 128 && ch.flip() {
                        ip.to_string()
                    } else {
                        format!("{ip}/{len}")
                    }
                }
                _ => format!("[{ip}/{len}]{ports}"),
            }
        }
    }
}

fn spell_target(t: &Target, ch: &mut Choices) -> String {
    let port = |ch: &mut Choices| match t.port {
        None => String::new(),
        Some(p) if ch.flip() => format!(":0{p}"),
        Some(p) => format!(":{p}"),
    };
    match t.ip {
        IpAddr::V4(ip) => format!("-> {ip}{}", port(ch)),
        IpAddr::V6(ip) => format!("-> [{ip}]{}", port(ch)),
    }
}

fn spell_errno(e: i32, ch: &mut Choices) -> String {
    let name = errno_name(e);
    match ch.pick(3) {
        0 => format!("errno={name}"),
        1 => format!("errno={}", name.to_ascii_lowercase()),
        _ => format!("errno={}{}", &name[..1].to_ascii_lowercase(), &name[1..]),
    }
}

const WS: &[&str] = &[" ", "  ", "\t", " \t ", "\u{a0}", "\u{2003}", "\u{3000}"];

/// The rule written another way that must parse to the same rule: other
/// whitespace, matches in another order, redundant port ranges, host bits,
/// IPv4-mapped IPv6, leading-zero numbers, errno in lower case, and a
/// trailing comment.
fn spell(rule: &Rule, ch: &mut Choices) -> String {
    let mut chunks = Vec::new();
    if let Some(a) = &rule.addr {
        chunks.push(spell_addr(a, ch));
    }
    if let Some(p) = rule.proto {
        chunks.push(format!(
            "proto={}",
            if p == Proto::Tcp { "tcp" } else { "udp" }
        ));
    }
    if let Some(a) = &rule.app {
        chunks.push(format!("app={a}"));
    }
    if !rule.labels.is_empty() {
        // Labels keep their relative order (it is part of the rule).
        let ls: Vec<String> = rule
            .labels
            .iter()
            .map(|(k, v)| format!("label={k}={v}"))
            .collect();
        chunks.push(ls.join(WS[ch.pick(WS.len())]));
    }
    if let Some(u) = rule.uid {
        chunks.push(match ch.pick(3) {
            0 => format!("uid={u}"),
            1 => format!("uid=0{u}"),
            _ => format!("uid=00{u}"),
        });
    }
    if let Some(t) = &rule.target {
        chunks.push(spell_target(t, ch));
    }
    if let Some(e) = rule.errno {
        chunks.push(spell_errno(e, ch));
    }
    for i in (1..chunks.len()).rev() {
        let j = ch.pick(i + 1);
        chunks.swap(i, j);
    }
    let mut out = String::from(["", " ", "\t"][ch.pick(3)]);
    out.push_str(rule.verb.name());
    out.push_str(WS[ch.pick(WS.len())]);
    out.push_str(rule.op.name());
    for c in chunks {
        out.push_str(WS[ch.pick(WS.len())]);
        out.push_str(&c);
    }
    out.push_str(["", " ", "\t", " # a comment", "#-> 1.2.3.4 errno=EBOGUS"][ch.pick(5)]);
    out
}

fn spelled_rule() -> impl Strategy<Value = (Rule, String)> {
    (canonical_rule(), prop::collection::vec(any::<u32>(), 48)).prop_map(|(r, v)| {
        let text = spell(&r, &mut Choices(v.into_iter()));
        (r, text)
    })
}

/// A spelled rule with one token replaced, inserted or dropped: text close
/// to valid, often still parsing (to some other rule).
fn mutated_rule_text() -> impl Strategy<Value = String> {
    (
        spelled_rule(),
        0..3u8,
        any::<prop::sample::Index>(),
        prop::sample::select(TOKENS),
    )
        .prop_map(|((_, text), how, at, tok)| {
            let mut toks: Vec<&str> = text.split_whitespace().collect();
            let i = at.index(toks.len() + 1);
            match how {
                0 if i < toks.len() => toks[i] = tok,
                1 if i < toks.len() => {
                    toks.remove(i);
                }
                _ => toks.insert(i, tok),
            }
            toks.join(" ")
        })
}

// ---------------------------------------------------------------------------
// Checks

/// The error points into `line`: line >= 1, 1 <= col <= chars + 1, and a
/// named token is the text found at that column.
fn check_error_position(e: &ParseError, line: &str) -> Result<(), TestCaseError> {
    prop_assert!(e.line >= 1, "line 0: {e:?}");
    prop_assert!(e.col >= 1, "column 0: {e:?}");
    let n = line.chars().count();
    prop_assert!(
        e.col <= n + 1,
        "column {} past the end of {line:?} ({n} chars): {e:?}",
        e.col
    );
    if !e.token.is_empty() {
        let at: String = line.chars().skip(e.col - 1).collect();
        prop_assert!(
            at.starts_with(&e.token),
            "token {:?} is not at column {} of {line:?}",
            e.token,
            e.col
        );
    }
    Ok(())
}

fn check_parse_rule(text: &str) -> Result<(), TestCaseError> {
    match parse_rule(text) {
        Ok(r) => check_reparse(&r)?,
        Err(e) => {
            prop_assert_eq!(e.line, 1);
            // parse_rule reads its whole input as one line.
            check_error_position(&e, text)?;
        }
    }
    Ok(())
}

fn check_parse_policy(text: &str) -> Result<(), TestCaseError> {
    match parse_policy(text) {
        Ok(f) => {
            for r in &f.rules {
                check_reparse(r)?;
            }
        }
        Err(e) => {
            prop_assert!(e.line >= 1, "line 0: {e:?}");
            let line = text.lines().nth(e.line - 1);
            prop_assert!(
                line.is_some(),
                "line {} past the end of {text:?}: {e:?}",
                e.line
            );
            check_error_position(&e, line.unwrap())?;
        }
    }
    Ok(())
}

/// A parsed rule prints to text that parses back to it, and printing is a
/// fixpoint.
fn check_reparse(r: &Rule) -> Result<(), TestCaseError> {
    let text = r.to_string();
    let again = parse_rule(&text);
    prop_assert_eq!(again.as_ref(), Ok(r), "printed as {:?}", text);
    prop_assert_eq!(again.unwrap().to_string(), text);
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn canonical_rules_round_trip(rule in canonical_rule()) {
        let text = rule.to_string();
        prop_assert_eq!(parse_rule(&text), Ok(rule.clone()), "text: {:?}", text);
    }

    #[test]
    fn canonical_policies_round_trip(rules in prop::collection::vec(canonical_rule(), 0..5),
                                     default in prop::option::of(prop_oneof![Just(Verb::Allow), Just(Verb::Deny)])) {
        let mut text = String::from("# generated\n");
        if let Some(d) = default {
            text.push_str(&format!("default {}\n\n", d.name()));
        }
        for r in &rules {
            text.push_str(&format!("{r}  # comment\n"));
        }
        let f = parse_policy(&text);
        prop_assert_eq!(f, Ok(PolicyFile { rules, default }), "text: {:?}", text);
    }

    #[test]
    fn arbitrary_text_never_panics_and_errors_point_into_the_line(text in any_text()) {
        check_parse_rule(&text)?;
        check_parse_policy(&text)?;
    }

    #[test]
    fn rule_like_text_never_panics_and_errors_point_into_the_line(text in mostly_rule_text()) {
        check_parse_rule(&text)?;
        check_parse_policy(&text)?;
    }

    #[test]
    fn other_spellings_parse_to_the_same_rule((rule, text) in spelled_rule()) {
        prop_assert_eq!(parse_rule(&text), Ok(rule.clone()), "text: {:?}", text);
        let f = parse_policy(&format!("\n{text}\r\n# end\n"));
        prop_assert_eq!(f, Ok(PolicyFile { rules: vec![rule], default: None }));
    }

    #[test]
    fn mutated_rules_never_panic_and_normalise_idempotently(text in mutated_rule_text()) {
        check_parse_rule(&text)?;
        check_parse_policy(&text)?;
    }

    #[test]
    fn parsed_rules_normalise_idempotently(text in mostly_rule_text()) {
        // Only the single-line reading matters here; the checks above cover errors.
        let line = text.lines().next().unwrap_or("");
        if let Ok(r) = parse_rule(line) {
            check_reparse(&r)?;
        }
    }
}

/// Guard against the generators going stale: a fair share of rule-like text
/// must actually parse, or the idempotence property tests nothing.
#[test]
fn rule_like_text_often_parses() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strat = mostly_rule_text();
    let ok = (0..500)
        .filter(|_| {
            let t = strat.new_tree(&mut runner).unwrap().current();
            parse_rule(t.lines().next().unwrap_or("")).is_ok()
        })
        .count();
    assert!(
        ok >= 25,
        "only {ok} of 500 generated rule-like lines parsed"
    );
    let strat = mutated_rule_text();
    let ok = (0..500)
        .filter(|_| parse_rule(&strat.new_tree(&mut runner).unwrap().current()).is_ok())
        .count();
    assert!(ok >= 100, "only {ok} of 500 mutated rules parsed");
}
