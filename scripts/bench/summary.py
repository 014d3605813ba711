#!/usr/bin/env python3
"""The side-by-side table of bench.sh: one line per row, one column pair per backend.

  summary.py ROWS.jsonl BACKEND...

Each line of ROWS.jsonl is one row, written by bench.sh and the section
scripts (benchlib.summary_row):
  {"row": "connect+close, pass-through", "unit": "ns" | "req/s" | "Gbit/s",
   "untraced": 13000.0, "values": {"ptrace": 30000.0, "unotify": 17000.0},
   "target": {"op": "<=" | ">=" | "floor", "x": 1.3, "for": ["unotify"], "why": "issue 14"}}
The ratio is always value / untraced measured in the same run (for "ns" a
lower ratio is better, for rates a higher one). A target "floor" means: equal
to the allow-all-filter floor, whose ratio is "x"; it is met when the
median of the per-round ratios backend/floor ("paired", runs back to back)
is within FLOOR_SLACK (the getppid loop's round-to-round noise on a quiet
VM is larger than that; the medians of the columns drift more).
"""
import json, sys

FLOOR_SLACK = 1.05


def fmt(v, unit):
    if v is None:
        return "-"
    if unit == "ns":
        if v >= 1e6:
            return f"{v / 1e6:.2f} ms"
        if v >= 1e3:
            return f"{v / 1e3:.1f} us"
        return f"{v:.0f} ns"
    if unit == "Gbit/s":
        return f"{v:.1f} Gb/s"
    return f"{v:,.0f} r/s"


def target_text(t):
    if t["op"] == "floor":
        return f"= floor {t['x']:.2f}x"
    return f"{t['op']} {t['x']:.2f}x"


def met(ratio, t, backend):
    if t["op"] == "<=":
        return ratio <= t["x"]
    if t["op"] == ">=":
        return ratio >= t["x"]
    paired = t.get("paired", {}).get(backend)
    if paired is not None:
        return paired <= FLOOR_SLACK
    return ratio <= t["x"] * FLOOR_SLACK


def mark(ratio, t, backend):
    m = f"{backend} {'met' if met(ratio, t, backend) else 'MISSED'}"
    paired = t.get("paired", {}).get(backend)
    if t["op"] == "floor" and paired is not None:
        m += f" (paired {backend}/floor {paired:.2f}x, <= {FLOOR_SLACK:.2f})"
    return m


def main():
    path, backends = sys.argv[1], sys.argv[2:]
    rows = [json.loads(l) for l in open(path) if l.strip()]
    head = f"{'row':50} {'untraced':>11}"
    for b in backends:
        head += f" {b:>11} {'ratio':>6}"
    print(head + "   target")
    for r in rows:
        u = r["untraced"]
        line = f"{r['row']:50} {fmt(u, r['unit']):>11}"
        ratios = {}
        for b in backends:
            v = r["values"].get(b)
            if v is None or not u:
                line += f" {'-':>11} {'':>6}"
                continue
            ratios[b] = v / u
            line += f" {fmt(v, r['unit']):>11} {ratios[b]:>5.2f}x"
        t = r.get("target")
        if t:
            marks = [mark(ratios[b], t, b)
                     for b in backends if b in t.get("for", backends) and b in ratios]
            if marks:
                line += f"   {target_text(t)} ({t.get('why', '')}): " + ", ".join(marks)
        print(line)


if __name__ == "__main__":
    main()
