//! /appswitch/metrics: the counters of `stats` in the Prometheus text
//! exposition format (version 0.0.4), for node_exporter's textfile
//! collector or a one-line scrape (`curl`-less: `cat /appswitch/metrics`).
//!
//! - `appswitch_apps`, `appswitch_connections`: gauges (live counts).
//! - `appswitch_calls_total{app}`, `appswitch_decisions_total{app,verdict}`:
//!   counters by program name (its comm) and verdict (allowed, denied,
//!   rewritten). Names beyond MAX_APP_LABELS share `app="other"`, so the
//!   series stay bounded; exited programs keep counting.
//! - `appswitch_decision_duration_seconds`: a histogram of rule decision
//!   latency, buckets at powers of two nanoseconds (as the tracers keep it).

use crate::protocol::Counters;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Distinct `app` label values at most; later names count as "other".
pub const MAX_APP_LABELS: usize = 100;

/// What one rendering shows.
pub struct Snapshot {
    pub apps: usize,
    pub connections: usize,
    pub total: Counters,
    pub by_comm: BTreeMap<String, Counters>,
}

/// The label a program named `comm` counts under, given the names seen.
pub fn app_label(seen: &BTreeMap<String, Counters>, comm: &str) -> String {
    if seen.contains_key(comm) || seen.len() < MAX_APP_LABELS {
        comm.to_string()
    } else {
        "other".to_string()
    }
}

/// A label value with `\`, `"` and newlines escaped, as the format asks.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    head(
        &mut out,
        "appswitch_apps",
        "gauge",
        "Traced programs connected to the daemon.",
    );
    let _ = writeln!(out, "appswitch_apps {}", s.apps);
    head(
        &mut out,
        "appswitch_connections",
        "gauge",
        "Connections of traced programs open now (as /appswitch/connections lists them).",
    );
    let _ = writeln!(out, "appswitch_connections {}", s.connections);
    head(
        &mut out,
        "appswitch_calls_total",
        "counter",
        "Network calls decided, by program.",
    );
    for (comm, c) in &s.by_comm {
        let _ = writeln!(
            out,
            "appswitch_calls_total{{app=\"{}\"}} {}",
            escape(comm),
            c.calls
        );
    }
    head(
        &mut out,
        "appswitch_decisions_total",
        "counter",
        "Network calls decided, by program and verdict.",
    );
    for (comm, c) in &s.by_comm {
        let allowed = c.calls.saturating_sub(c.denied + c.rewritten);
        for (verdict, n) in [
            ("allowed", allowed),
            ("denied", c.denied),
            ("rewritten", c.rewritten),
        ] {
            let _ = writeln!(
                out,
                "appswitch_decisions_total{{app=\"{}\",verdict=\"{verdict}\"}} {n}",
                escape(comm)
            );
        }
    }
    let name = "appswitch_decision_duration_seconds";
    head(
        &mut out,
        name,
        "histogram",
        "Time to decide a call (rules, services), in seconds.",
    );
    let mut cumulative = 0u64;
    let last = s.total.latency.len() - 1;
    for (i, n) in s.total.latency.iter().enumerate().take(last) {
        cumulative += n;
        let le = (1u64 << i) as f64 / 1e9;
        let _ = writeln!(out, "{name}_bucket{{le=\"{le:e}\"}} {cumulative}");
    }
    let count: u64 = s.total.latency.iter().sum();
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {}", s.total.latency_sum_ns as f64 / 1e9);
    let _ = writeln!(out, "{name}_count {count}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_a_cumulative_histogram() {
        let mut c = Counters {
            calls: 5,
            denied: 2,
            rewritten: 1,
            latency_sum_ns: 3000,
            ..Counters::default()
        };
        c.latency[9] = 3;
        c.latency[10] = 2;
        let mut by_comm = BTreeMap::new();
        by_comm.insert("cu\"rl".to_string(), c);
        let text = render(&Snapshot {
            apps: 1,
            connections: 2,
            total: c,
            by_comm,
        });
        assert!(text.contains("appswitch_apps 1\n"));
        assert!(text.contains("appswitch_calls_total{app=\"cu\\\"rl\"} 5\n"));
        assert!(text.contains("verdict=\"allowed\"} 2\n"));
        assert!(text.contains("appswitch_decision_duration_seconds_bucket{le=\"+Inf\"} 5\n"));
        assert!(text.contains("appswitch_decision_duration_seconds_count 5\n"));
        // Cumulative: the bucket after both is 5.
        assert!(text.contains("le=\"1.024e-6\"} 5\n"), "{text}");
    }

    #[test]
    fn app_labels_are_bounded() {
        let mut seen = BTreeMap::new();
        for i in 0..MAX_APP_LABELS {
            seen.insert(format!("p{i}"), Counters::default());
        }
        assert_eq!(app_label(&seen, "p3"), "p3");
        assert_eq!(app_label(&seen, "new"), "other");
    }
}
