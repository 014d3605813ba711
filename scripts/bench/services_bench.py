#!/usr/bin/env python3
"""Service figures: no proxy in the data path.

  services_bench.py APPSWITCH [ROUNDS]

Against a real daemon, with the virtual IP 127.77.0.1 (loopback: nothing can
leave the machine). Each round runs the untraced variant and one traced
variant per backend (BENCH_BACKENDS, default "ptrace unotify"; the traced
programs get APPSWITCH_BACKEND), back to back, each going first in turn; the
report gives medians and the ratio traced/untraced per backend.

1. Bulk TCP throughput (iperf3, 3 s after a 1 s warm-up, one stream): untraced server and client
   on 127.0.0.1, against a server traced with --ip 127.77.0.1 and a traced
   client connecting to 127.77.0.1 (the connect is redirected to the server's
   real port; the bytes then go through the kernel alone). Target >= 0.98x.
2. HTTP keep-alive: 5,000 GETs over one connection (python3 http.client)
   to a python3 HTTP/1.1 server; untraced, against both traced with the
   client going through the VIP. Target >= 0.95x.
3. Connect latency (2,000 connect+close, python3), per backend: untraced to
   the server's real address, traced to the real address, traced to the VIP
   (the backend chosen in the trace process, the connect carried out by the
   supervisor); the server is traced with --ip under the same backend.
Every process started here is stopped here; the daemon's mount goes with it.
"""
import json, os, socket, statistics, subprocess, sys, tempfile, time

APP = sys.argv[1]
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 7
VIP = "127.77.0.1"
REQUESTS = 5000

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import procs, wait, free_port, start, stop, daemon_dir  # noqa: E402
from benchlib import backends as all_backends, trace, rotate, summary_row  # noqa: E402

tmp, d, cfg, mnt = daemon_dir()
BACKENDS = all_backends()
VARIANTS = ["untraced"] + BACKENDS

def backends(vip_port):
    s = open(f"{mnt}/services").read()
    lines = s.splitlines()
    for i, l in enumerate(lines):
        if f" {vip_port} " in l:
            return sum(1 for b in lines[i + 1:] if b.startswith("  backend") and "health=up" in b)
    return 0

def listening(port):
    out = subprocess.run(["ss", "-Htln", f"sport = :{port}"], capture_output=True, text=True).stdout
    return out.strip() != ""

def iperf(variant):
    """Bits/s of one 3 s iperf3 transfer; traced (variant = a backend): server
    with --ip, client to the VIP, both under that backend."""
    port = free_port()
    traced = variant != "untraced"
    pre = trace(APP, cfg, variant) + ["--ip", VIP, "--"] if traced else []
    srv = start(pre + ["iperf3", "-s", "-1", "-A", "0", "-p", str(port)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if traced:
        wait("the traced iperf3 server", lambda: backends(f"{VIP}:{port}") == 1)
        client = trace(APP, cfg, variant) + ["--", "iperf3", "-c", VIP]
    else:
        wait("the iperf3 server", lambda: listening(port))
        client = ["iperf3", "-c", "127.0.0.1"]
    out = subprocess.run(client + ["-A", "1", "-p", str(port), "-J", "-t", "3", "-O", "1"],
                         capture_output=True, text=True, timeout=60)
    srv.wait(timeout=30)
    if out.returncode != 0:
        sys.exit(f"services_bench: iperf3 client failed: {out.stdout[-300:]} {out.stderr[-300:]}")
    return json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"]

SERVER = (
    "import http.server,sys\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "  protocol_version='HTTP/1.1'; disable_nagle_algorithm=True\n"
    "  def do_GET(self):\n"
    "    b=b'ok\\n'; self.send_response(200); self.send_header('Content-Length',str(len(b))); self.end_headers(); self.wfile.write(b)\n"
    "  def log_message(self,*a): pass\n"
    "s=http.server.HTTPServer(('0.0.0.0',int(sys.argv[1])),H)\n"
    "print('ready',flush=True); s.serve_forever()\n")
CLIENT = (
    "import http.client,sys,time\n"
    "import socket\n"
    "c=http.client.HTTPConnection(sys.argv[1],int(sys.argv[2])); n=int(sys.argv[3])\n"
    "c.connect(); c.sock.setsockopt(socket.IPPROTO_TCP,socket.TCP_NODELAY,1)\n"
    "c.request('GET','/'); c.getresponse().read()\n"
    "t=time.monotonic()\n"
    "for i in range(n):\n  c.request('GET','/'); r=c.getresponse(); r.read()\n"
    "print(n/(time.monotonic()-t))\n")

def keepalive(variant):
    """Requests/s over one keep-alive connection."""
    port = free_port()
    traced = variant != "untraced"
    pre = trace(APP, cfg, variant) + ["--ip", VIP, "--"] if traced else []
    srv = start(pre + [sys.executable, "-c", SERVER, str(port)],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if srv.stdout.readline().strip() != "ready":
        sys.exit("services_bench: HTTP server did not start")
    if traced:
        wait("the traced HTTP server", lambda: backends(f"{VIP}:{port}") == 1)
        client = trace(APP, cfg, variant) + ["--", sys.executable, "-c", CLIENT, VIP]
    else:
        client = [sys.executable, "-c", CLIENT, "127.0.0.1"]
    out = subprocess.run(client + [str(port), str(REQUESTS)], capture_output=True, text=True, timeout=120)
    stop(srv)
    if out.returncode != 0:
        sys.exit(f"services_bench: client failed: {out.stderr[-300:]}")
    return float(out.stdout)

LAT = (
    "import socket,sys,time\n"
    "host,port,n=sys.argv[1],int(sys.argv[2]),int(sys.argv[3]); ts=[]\n"
    "for i in range(n):\n"
    "  t=time.perf_counter(); s=socket.socket(); s.connect((host,port)); ts.append(time.perf_counter()-t); s.close()\n"
    "ts.sort(); print(ts[n//2]*1e6)\n")
SINK = (
    "import socket,sys\n"
    "s=socket.socket(); s.bind(('0.0.0.0',int(sys.argv[1]))); s.listen(4096); print('ready',flush=True)\n"
    "while True:\n  c,_=s.accept(); c.close()\n")

def latency(backend):
    """Median connect time (us): untraced direct, traced direct, traced via
    the VIP; the server and the traced clients under `backend`."""
    vport = free_port()
    TRACE = trace(APP, cfg, backend)
    srv = start(TRACE + ["--ip", VIP, "--", sys.executable, "-c", SINK, str(vport)],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if srv.stdout.readline().strip() != "ready":
        sys.exit("services_bench: accept server did not start")
    wait("the traced accept server", lambda: backends(f"{VIP}:{vport}") == 1)
    line = [l for l in open(f"{mnt}/services").read().splitlines() if l.startswith("  backend")][0]
    real = line.split()[1]
    rhost, rport = real.rsplit(":", 1)
    out = {}
    for k, cmd in (("untraced", [sys.executable, "-c", LAT, rhost, rport, "2000"]),
                   ("traced", TRACE + ["--", sys.executable, "-c", LAT, rhost, rport, "2000"]),
                   ("vip", TRACE + ["--", sys.executable, "-c", LAT, VIP, str(vport), "2000"])):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            sys.exit(f"services_bench: latency client failed: {r.stderr[-300:]}")
        out[k] = float(r.stdout)
    stop(srv)
    return out

def report(what, unit, scale, data, target, summary):
    u = statistics.median(data["untraced"])
    print(f"{what}: untraced {u / scale:.1f} {unit}")
    print(f"    untraced rounds: " + " ".join(f"{x / scale:.1f}" for x in data["untraced"]))
    values = {}
    for b in BACKENDS:
        t = statistics.median(data[b])
        values[b] = t
        ratio = t / u
        # Each round's variants ran back to back: their ratio cancels slow drift.
        paired = statistics.median(a / c for a, c in zip(data[b], data["untraced"]))
        verdict = "ok" if ratio >= target else "MISSED"
        print(f"  {b:8} {t / scale:.1f} {unit}: {ratio:.3f}x, median of paired ratios {paired:.3f}x "
              f"(target >= {target:.2f}x: {verdict})")
        print(f"    {b} rounds: " + " ".join(f"{x / scale:.1f}" for x in data[b]))
    summary_row(summary, unit, u / scale, {b: v / scale for b, v in values.items()},
                {"op": ">=", "x": target, "why": "issue 6"})

try:
    daemon = start([APP, "daemon", "--config", cfg], stderr=subprocess.DEVNULL)
    wait("the daemon", lambda: os.path.exists(f"{mnt}/ctl") and os.path.exists(f"{d}/sock"))
    tput = {v: [] for v in VARIANTS}
    reqs = {v: [] for v in VARIANTS}
    # A warm-up round, not counted (the first transfers on a fresh machine are slow).
    for v in VARIANTS:
        iperf(v)
    for r in range(ROUNDS):
        print(f"round {r + 1}/{ROUNDS} ...", end="\r", file=sys.stderr, flush=True)
        # Each variant goes first in turn, so drift does not favour one.
        order = rotate(VARIANTS, r)
        for v in order:
            tput[v].append(iperf(v))
        for v in order:
            reqs[v].append(keepalive(v))
    print(" " * 20, end="\r", file=sys.stderr)
    report("bulk TCP throughput via VIP (iperf3 -t 3 -O 1)", "Gbit/s", 1e9, tput, 0.98,
           "bulk TCP via a VIP (iperf3)")
    report(f"HTTP keep-alive, {REQUESTS} GETs on one connection", "req/s", 1, reqs, 0.95,
           f"HTTP keep-alive via a VIP, {REQUESTS} GETs")
    lat = {b: [] for b in BACKENDS}
    for _ in range(3):
        for b in BACKENDS:
            lat[b].append(latency(b))
    print("connect+close latency, python3, median of 3 runs of 2000 (server traced with --ip):")
    meds = {}
    for b in BACKENDS:
        med = meds[b] = {k: statistics.median(x[k] for x in lat[b]) for k in lat[b][0]}
        print(f"  {b:8} untraced {med['untraced']:.0f} us, traced {med['traced']:.0f} us, "
              f"traced via the VIP {med['vip']:.0f} us "
              f"(routing through the VIP costs {med['vip'] - med['traced']:.0f} us per connect)")
    untraced = statistics.median(x["untraced"] for b in BACKENDS for x in lat[b])
    summary_row("connect+close to a VIP, python3 (2,000)", "ns", untraced * 1e3,
                {b: meds[b]["vip"] * 1e3 for b in BACKENDS})
finally:
    for p in procs[1:]:
        stop(p)
    # The daemon unmounts on SIGTERM.
    if procs:
        procs[0].terminate()
        procs[0].wait(timeout=10)
