//! Rule-decision latency: `rule_bench [RULES] [QUERIES]` builds RULES
//! (default 10,000) generated rules, decides QUERIES (default 1,000,000)
//! generated calls one at a time, and prints percentiles of the time per
//! decision (the clock's own cost, measured alongside, is subtracted).
//! Deterministic: the same rules and queries every run.

use appswitch::policy::{parse_rule, Policy, Proto, Query, RuleOp};
use std::time::Instant;

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn rule_text(r: &mut Lcg) -> String {
    let verb = ["allow", "deny", "deny", "log", "redirect"][r.below(5) as usize];
    let op = ["connect", "connect", "bind", "send", "any"][r.below(5) as usize];
    let len = [8, 16, 24, 24, 32, 32, 32][r.below(7) as usize];
    let addr = if r.below(10) == 0 {
        format!("[2001:db8:{:x}::/48]", r.below(65536))
    } else {
        format!(
            "10.{}.{}.{}/{len}",
            r.below(256),
            r.below(256),
            r.below(256)
        )
    };
    let ports = match r.below(4) {
        0 => String::new(),
        1 => format!(":{}-{}", 1000 + r.below(1000), 3000 + r.below(1000)),
        _ => format!(":{}", [22, 80, 443, 8080, 5432][r.below(5) as usize]),
    };
    let app = if r.below(8) == 0 { " app=curl" } else { "" };
    let proto = ["", "", " proto=tcp", " proto=udp"][r.below(4) as usize];
    let target = if verb == "redirect" {
        if addr.starts_with('[') {
            " -> [::1]:8080"
        } else {
            " -> 127.0.0.1:8080"
        }
    } else {
        ""
    };
    format!("{verb} {op} {addr}{ports}{proto}{app}{target}")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n_rules: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let n_queries: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let mut r = Lcg(42);
    let rules: Vec<_> = (0..n_rules)
        .map(|_| parse_rule(&rule_text(&mut r)).expect("generated rule parses"))
        .collect();
    let policy = Policy::new(rules, false);
    let queries: Vec<(RuleOp, std::net::SocketAddr)> = (0..n_queries)
        .map(|_| {
            let op = [RuleOp::Connect, RuleOp::Bind, RuleOp::Send][r.below(3) as usize];
            let port = [22, 80, 443, 8080, 5432, 2000, 40000][r.below(7) as usize] as u16;
            let addr = if r.below(10) == 0 {
                format!("[2001:db8:{:x}::1]:{port}", r.below(65536))
            } else {
                format!(
                    "10.{}.{}.{}:{port}",
                    r.below(256),
                    r.below(256),
                    r.below(256)
                )
            };
            (op, addr.parse().expect("generated address"))
        })
        .collect();
    let labels = Vec::new();
    let mut times = Vec::with_capacity(n_queries);
    let mut clock = Vec::with_capacity(n_queries);
    let mut decided = 0usize;
    for (op, addr) in &queries {
        let q = Query {
            op: *op,
            addr: *addr,
            proto: Some(Proto::Tcp),
            app: "curl",
            labels: &labels,
            uid: 0,
        };
        let t0 = Instant::now();
        let d = policy.decide(&q);
        let t1 = Instant::now();
        let t2 = Instant::now();
        times.push((t1 - t0).as_nanos() as u64);
        clock.push((t2 - t1).as_nanos() as u64);
        decided += usize::from(d.rule.is_some());
    }
    times.sort_unstable();
    clock.sort_unstable();
    let pct = |v: &[u64], p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    let base = pct(&clock, 0.5);
    let adj = |x: u64| x.saturating_sub(base);
    println!(
        "rules={n_rules} queries={n_queries} matched_a_rule={:.1}% p50={}ns p99={}ns p99.9={}ns max={}ns (clock cost {base}ns subtracted)",
        100.0 * decided as f64 / n_queries as f64,
        adj(pct(&times, 0.5)),
        adj(pct(&times, 0.99)),
        adj(pct(&times, 0.999)),
        adj(*times.last().unwrap_or(&0)),
    );
}
