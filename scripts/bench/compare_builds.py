#!/usr/bin/env python3
"""Two (or more) appswitch builds side by side on the HTTP rows of issue 11.

  BINS="old=/path/to/appswitch new=target/release/appswitch" \\
      compare_builds.py [ROUNDS] [TOOLS...]

TOOLS: any of ab, hc, wrk (default: ab hc). HC, the http_client binary,
comes from BENCH_HTTP_CLIENT (default /tmp/bb/http_client; build it with
gcc -O2 -pthread -o /tmp/bb/http_client scripts/bench/http_client.c).
Each build gets its own daemon (and VIP 127.77.K.1) and its own nginx
traced with --ip under unotify (BENCH_BACKEND to change); every round runs
the tool untraced against the first build's nginx, then traced through
each build's VIP, the builds' order rotating. Prints medians and the median
of paired ratios (each round's traced / untraced), the steadier figure on a
noisy machine. Every process started here is stopped here.
"""
import os, re, statistics, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import procs, wait, free_port, start, stop, daemon_dir, trace, rotate, backend_of  # noqa: E402

BINS = [b.split("=", 1) for b in os.environ.get("BINS", "").split()]
if not BINS:
    sys.exit(__doc__)
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 7
TOOLS = sys.argv[2:] or ["ab", "hc"]
HC = os.environ.get("BENCH_HTTP_CLIENT", "/tmp/bb/http_client")
BK = os.environ.get("BENCH_BACKEND", "unotify")
REQ = "4000"
NGINX = """daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid;
error_log stderr crit; events {{ worker_connections 1024; }}
http {{ access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  server {{ listen {port} backlog=4096; location / {{ return 200 "ok\\n"; }} }} }}"""


def run(cmd, pattern):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    m = re.search(pattern, out)
    if not m:
        sys.exit(f"compare_builds: {' '.join(cmd)}: {out[-300:]}")
    return float(m.group(1))


TOOL = {
    "ab": lambda pre, h, p: run(pre + ["ab", "-q", "-n", REQ, "-c", "4", f"http://{h}:{p}/"],
                                r"Requests per second:\s+([0-9.]+)"),
    "hc": lambda pre, h, p: run(pre + [HC, h, str(p), REQ, "4"], r"([0-9.]+)\s*$"),
    "wrk": lambda pre, h, p: run(pre + ["wrk", "-t2", "-c4", "-d2s", "-H", "Connection: close",
                                        f"http://{h}:{p}/"], r"Requests/sec:\s+([0-9.]+)"),
}

setups, dirs = {}, []
try:
    for k, (name, app) in enumerate(BINS):
        tmp, d, cfg, mnt = daemon_dir()
        dirs.append(tmp)
        vip = f"127.77.{k}.1"
        start([app, "daemon", "--config", cfg], stderr=subprocess.DEVNULL)
        wait("a daemon", lambda: os.path.exists(f"{mnt}/ctl") and os.path.exists(f"{d}/sock"))
        port = free_port()
        conf = f"{d}/nginx.conf"
        with open(conf, "w") as f:
            f.write(NGINX.format(d=d, port=port))
        start(trace(app, cfg, BK) + ["--ip", vip, "--", "/usr/sbin/nginx", "-c", conf, "-e", "stderr"],
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait("nginx", lambda: backend_of(mnt, f"{vip}:{port}"))
        setups[name] = (app, cfg, vip, port, backend_of(mnt, f"{vip}:{port}").rsplit(":", 1))
    res = {}
    for r in range(ROUNDS):
        print(f"round {r + 1}/{ROUNDS} ...", end="\r", file=sys.stderr, flush=True)
        for tool in TOOLS:
            host, port = setups[BINS[0][0]][4]
            res.setdefault((tool, "untraced"), []).append(TOOL[tool]([], host, port))
            for name, _ in rotate(BINS, r):
                app, cfg, vip, port, _ = setups[name]
                res.setdefault((tool, name), []).append(TOOL[tool](trace(app, cfg, BK) + ["--"], vip, port))
    for tool in TOOLS:
        u = res[(tool, "untraced")]
        line = f"{tool}: untraced {statistics.median(u):.0f} r/s"
        for name, _ in BINS:
            v = res[(tool, name)]
            paired = statistics.median(a / b for a, b in zip(v, u))
            line += f" | {name} {statistics.median(v):.0f} ({statistics.median(v) / statistics.median(u):.2f}x, paired {paired:.2f}x)"
        print(line)
finally:
    for p in reversed(procs):
        stop(p)
