#!/usr/bin/env python3
"""Short connections: what a new connection costs under appswitch.

  short_bench.py APPSWITCH CONNECT_CLIENT ACCEPT_SERVER HTTP_CLIENT [ROUNDS [FLOOR_SUPERVISOR]]

Against a real daemon, with the virtual IP 127.77.0.1 (loopback: nothing can
leave the machine). Every variant of a row runs once per round, the rounds
interleaved, and the report gives medians and ratios measured in this run.
Each traced variant runs once per backend (BENCH_BACKENDS, default "ptrace
unotify"; the traced programs get APPSWITCH_BACKEND), servers included: a
row's traced client and traced server run under the same backend.

1. connect+close (C loop, SO_LINGER 0) to an untraced accept+close server:
   untraced to its address, traced to its address, traced to a VIP whose
   static service has it as backend (the backend chosen in the trace
   process, the connect carried out on a borrowed socket). Targets: VIP <=
   1.15x the traced connect to the real address (issue 11); for user
   notification, VIP <= 1.5x untraced (issue 14).
2. HTTP without keep-alive (ab -c 4, nginx returning a fixed body):
   untraced ab -> untraced nginx, against traced ab -> VIP -> nginx traced
   with --ip, under the daemon (the only VIP on the host). Target >= 0.6x
   (issue 11); for user notification >= 0.75x (issue 14).
   ab connects twice per request (the second connect() checks completion),
   so the same is measured with http_client.c, which connects once (as
   curl, wget and python do), and with wrk (-t 2 -c 4, "Connection: close",
   2 s per run; the tool issue 11 measured with), when it is installed.
   With FLOOR_SUPERVISOR (scripts/bench/floor_supervisor.c), ab also runs
   under it, to the same nginx's real address: the least any supervisor
   that carries a connect out can cost (two context switches and nine
   system calls per trapped call, nothing decided). appswitch / floor is
   then what appswitch's own work costs; floor / untraced, the mechanism.
3. HTTP without keep-alive, untraced ab -> nginx traced under the daemon
   (no --ip), while another traced program holds a VIP on the host.
   Target >= 0.95x. Also shown: the same with nginx under --ip (its
   accept() stopped so that it could show clients' VIPs; with loopback VIPs,
   which clients carry as their real source address, it no longer stops).
Every process started here is stopped here; the daemon's mount goes with it.
"""
import os, re, shutil, socket, statistics, subprocess, sys, tempfile, time

APP, CC, AS, HC = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
ROUNDS = int(sys.argv[5]) if len(sys.argv) > 5 else 5
FLOOR = sys.argv[6] if len(sys.argv) > 6 else None
VIP = "127.77.0.1"
CONNECTS = int(os.environ.get("BENCH_SHORT_CONNECTS", "5000"))
REQUESTS = int(os.environ.get("BENCH_SHORT_REQUESTS", "4000"))

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import procs, wait, free_port, start, stop, daemon_dir  # noqa: E402
from benchlib import backends, trace, rotate, summary_row  # noqa: E402
import benchlib  # noqa: E402

tmp, d, cfg, mnt = daemon_dir()
BACKENDS = backends()

def backend_of(vip_port):
    """The real address of the (one) backend of vip_port once it is up."""
    return benchlib.backend_of(mnt, vip_port)

def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False

def run_num(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        sys.exit(f"short_bench: {' '.join(cmd)} failed: {r.stderr[-300:]}")
    return float(r.stdout.strip().splitlines()[-1])

NGINX_CONF = """daemon off; master_process off; worker_processes 1; pid {d}/nginx-{port}.pid;
error_log stderr crit;
events {{ worker_connections 1024; }}
http {{ access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  server {{ listen {port} backlog=4096; location / {{ return 200 "ok\\n"; }} }} }}
"""

def nginx(pre, port):
    conf = os.path.join(d, f"nginx-{port}.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(d=d, port=port))
    return start(pre + [shutil.which("nginx") or "/usr/sbin/nginx", "-c", conf, "-e", "stderr"],
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

def ab(pre, host, port):
    out = subprocess.run(pre + ["ab", "-q", "-n", str(REQUESTS), "-c", "4", f"http://{host}:{port}/"],
                         capture_output=True, text=True, timeout=300)
    m = re.search(r"Requests per second:\s+([0-9.]+)", out.stdout)
    failed = re.search(r"Failed requests:\s+([0-9]+)", out.stdout)
    if out.returncode != 0 or not m or (failed and int(failed.group(1)) != 0):
        sys.exit(f"short_bench: ab failed: {out.stdout[-400:]} {out.stderr[-300:]}")
    return float(m.group(1))

def wrk(pre, host, port):
    out = subprocess.run(pre + ["wrk", "-t2", "-c4", "-d2s", "-H", "Connection: close",
                                f"http://{host}:{port}/"], capture_output=True, text=True, timeout=60)
    m = re.search(r"Requests/sec:\s+([0-9.]+)", out.stdout)
    if out.returncode != 0 or not m:
        sys.exit(f"short_bench: wrk failed: {out.stdout[-400:]} {out.stderr[-300:]}")
    return float(m.group(1))

HAVE_WRK = shutil.which("wrk") is not None

def med(xs):
    return statistics.median(xs)

try:
    for tool in ("ab", "nginx"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            sys.exit(f"short_bench: {tool} not found (scripts/setup.sh installs it)")
    daemon = start([APP, "daemon", "--config", cfg], stderr=subprocess.DEVNULL)
    wait("the daemon", lambda: os.path.exists(f"{mnt}/ctl") and os.path.exists(f"{d}/sock"))

    # Row 1: the connect loop against an untraced server (so that only the
    # client's cost is measured), reached directly or through a static service.
    srv = start([AS], stdout=subprocess.PIPE, text=True)
    rhost, rport = "127.0.0.1", srv.stdout.readline().strip()
    vport = free_port()
    with open(f"{mnt}/services", "w") as f:
        f.write(f"add bench {VIP}:{vport} -> {rhost}:{rport}\n")
    wait("the static service", lambda: backend_of(f"{VIP}:{vport}"))
    conn = {"untraced": []}

    # Rows 2 and 3: nginx servers: one untraced, and per backend one traced
    # with --ip and one traced without.
    plain_port = free_port()
    nginx([], plain_port)
    wait("nginx", lambda: listening(plain_port))
    ip_port, ip_real, traced_port = {}, {}, {}
    for bk in BACKENDS:
        ip_port[bk], traced_port[bk] = free_port(), free_port()
        nginx(trace(APP, cfg, bk) + ["--ip", VIP, "--"], ip_port[bk])
        wait(f"nginx with --ip ({bk})", lambda: backend_of(f"{VIP}:{ip_port[bk]}"))
        ip_real[bk] = int(backend_of(f"{VIP}:{ip_port[bk]}").rsplit(":", 1)[1])
        nginx(trace(APP, cfg, bk) + ["--"], traced_port[bk])
        wait(f"traced nginx ({bk})", lambda: listening(traced_port[bk]))
    http = {"untraced": [], "untraced2": [], "c_untraced": [], "w_untraced": []}
    for bk in BACKENDS:
        conn[bk], conn["vip_" + bk] = [], []
        for k in ("ab_", "floor_", "c_", "w_", "server_", "server_ip_"):
            http[k + bk] = []

    # Phase 1: the only VIP on the host is the servers' own.
    for r in range(ROUNDS):
        print(f"round {r + 1}/{ROUNDS} ...", end="\r", file=sys.stderr, flush=True)
        order = rotate(BACKENDS, r)
        conn["untraced"].append(run_num([CC, rport, str(CONNECTS), rhost]))
        for bk in order:
            conn[bk].append(run_num(trace(APP, cfg, bk) + ["--", CC, rport, str(CONNECTS), rhost]))
            conn["vip_" + bk].append(run_num(trace(APP, cfg, bk) + ["--", CC, str(vport), str(CONNECTS), VIP]))
        http["untraced"].append(ab([], "127.0.0.1", plain_port))
        for bk in order:
            http["ab_" + bk].append(ab(trace(APP, cfg, bk) + ["--"], VIP, ip_port[bk]))
            if FLOOR:
                http["floor_" + bk].append(ab([FLOOR], "127.0.0.1", ip_real[bk]))
        http["c_untraced"].append(run_num([HC, "127.0.0.1", str(plain_port), str(REQUESTS), "4"]))
        for bk in order:
            http["c_" + bk].append(run_num(trace(APP, cfg, bk) + ["--", HC, VIP, str(ip_port[bk]), str(REQUESTS), "4"]))
        if HAVE_WRK:
            http["w_untraced"].append(wrk([], "127.0.0.1", plain_port))
            for bk in order:
                http["w_" + bk].append(wrk(trace(APP, cfg, bk) + ["--"], VIP, ip_port[bk]))
    # Phase 2: another program holds a VIP, so a service's accept() may
    # have to show a client's VIP.
    other_port = free_port()
    start(trace(APP, cfg, BACKENDS[0]) + ["--ip", "127.77.0.9", "--", AS, str(other_port)],
          stdout=subprocess.DEVNULL)
    wait("the other VIP's program", lambda: backend_of(f"127.77.0.9:{other_port}"))
    for r in range(ROUNDS):
        print(f"round {r + 1}/{ROUNDS} (another VIP) ...", end="\r", file=sys.stderr, flush=True)
        http["untraced2"].append(ab([], "127.0.0.1", plain_port))
        for bk in rotate(BACKENDS, r):
            http["server_" + bk].append(ab([], "127.0.0.1", traced_port[bk]))
            http["server_ip_" + bk].append(ab([], "127.0.0.1", ip_real[bk]))
    print(" " * 40, end="\r", file=sys.stderr)

    us = lambda k: med(conn[k]) / 1e3
    print(f"connect+close ({CONNECTS} per run, C): untraced {us('untraced'):.1f} us")
    for bk in BACKENDS:
        ratio = us("vip_" + bk) / us(bk)
        print(f"  {bk:8} traced to the real address {us(bk):.1f} us ({us(bk) / us('untraced'):.2f}x), "
              f"traced to the VIP {us('vip_' + bk):.1f} us ({us('vip_' + bk) / us('untraced'):.2f}x)")
        print(f"           VIP / real address (both traced): {ratio:.2f}x "
              f"(target <= 1.15x: {'ok' if ratio <= 1.15 else 'MISSED'})")
    for k in conn:
        print(f"    {k:12} rounds (ns): " + " ".join(f"{x:.0f}" for x in conn[k]))
    summary_row(f"connect+close to a VIP, C ({CONNECTS})", "ns", med(conn["untraced"]),
                {bk: med(conn["vip_" + bk]) for bk in BACKENDS},
                {"op": "<=", "x": 1.5, "for": ["unotify"], "why": "issue 14"})

    def row(what, k, target, base="untraced"):
        u = med(http[base])
        print(f"{what} (untraced {u:.0f} req/s):")
        for bk in BACKENDS:
            t = med(http[k + bk])
            paired = med(a / b for a, b in zip(http[k + bk], http[base]))
            tg = target(bk) if target else None
            verdict = "" if tg is None else f" (target >= {tg:.2f}x: {'ok' if t / u >= tg else 'MISSED'})"
            print(f"  {bk:8} {t:.0f} req/s: {t / u:.2f}x, paired {paired:.2f}x{verdict}")
            print(f"    rounds: " + " ".join(f"{x:.0f}" for x in http[k + bk]))
        return u, {bk: med(http[k + bk]) for bk in BACKENDS}
    # Issue 11's target (issue 14's 0.75x for unotify is in bench.sh's table).
    via_vip = lambda bk: 0.6
    print(f"HTTP without keep-alive, ab -n {REQUESTS} -c 4, nginx (untraced rounds: "
          + " ".join(f"{x:.0f}" for x in http["untraced"]) + ")")
    u, v = row("  traced ab -> VIP -> nginx traced with --ip", "ab_", via_vip)
    summary_row(f"HTTP w/o keep-alive via a VIP, ab -c 4", "req/s", u, v,
                {"op": ">=", "x": 0.75, "for": ["unotify"], "why": "issue 14"})
    if FLOOR:
        print("    the floor: ab under floor_supervisor.c (each connect carried out, nothing "
              "decided) -> the same nginx's real address:")
        for bk in BACKENDS:
            f, a = med(http["floor_" + bk]), med(http["ab_" + bk])
            paired = med(x / y for x, y in zip(http["ab_" + bk], http["floor_" + bk]))
            print(f"    nginx {bk:8} {f:.0f} req/s: {f / u:.2f}x untraced; "
                  f"appswitch / floor {a / f:.2f}x, paired {paired:.2f}x")
            print(f"      rounds: " + " ".join(f"{x:.0f}" for x in http["floor_" + bk]))
    print(f"  the same with http_client.c -c 4 (one connect per request; untraced rounds: "
          + " ".join(f"{x:.0f}" for x in http["c_untraced"]) + ")")
    u, v = row("  traced http_client -> VIP -> nginx traced with --ip", "c_", via_vip, "c_untraced")
    summary_row(f"HTTP w/o keep-alive via a VIP, http_client -c 4", "req/s", u, v,
                {"op": ">=", "x": 0.75, "for": ["unotify"], "why": "issue 14"})
    if HAVE_WRK:
        print(f"  the same with wrk -t 2 -c 4, Connection: close (untraced rounds: "
              + " ".join(f"{x:.0f}" for x in http["w_untraced"]) + ")")
        u, v = row("  traced wrk -> VIP -> nginx traced with --ip", "w_", lambda bk: 0.6, "w_untraced")
        summary_row(f"HTTP w/o keep-alive via a VIP, wrk -c 4", "req/s", u, v,
                    {"op": ">=", "x": 0.6, "why": "issue 11"})
    else:
        print("  (wrk not installed: its row is left out; scripts/setup.sh installs it)")
    print(f"  with another program holding a VIP (untraced rounds: "
          + " ".join(f"{x:.0f}" for x in http["untraced2"]) + ")")
    u, v = row("  untraced ab -> nginx traced under the daemon", "server_", lambda bk: 0.95, "untraced2")
    summary_row(f"untraced ab -> traced nginx, another VIP on host", "req/s", u, v,
                {"op": ">=", "x": 0.95, "why": "issue 11"})
    u, v = row("  untraced ab -> nginx traced with --ip (loopback VIPs: no accept() stop)", "server_ip_", None, "untraced2")
    summary_row(f"untraced ab -> nginx traced with --ip", "req/s", u, v)
finally:
    for p in reversed(procs[1:]):
        stop(p)
    if procs:
        procs[0].terminate()
        procs[0].wait(timeout=10)
