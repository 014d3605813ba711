#!/usr/bin/env python3
"""Short connections: what a new connection costs under appswitch.

  short_bench.py APPSWITCH CONNECT_CLIENT ACCEPT_SERVER HTTP_CLIENT [ROUNDS]

Against a real daemon, with the virtual IP 127.77.0.1 (loopback: nothing can
leave the machine). Every variant of a row runs once per round, the rounds
interleaved, and the report gives medians and ratios measured in this run.

1. connect+close (C loop, SO_LINGER 0) to an untraced accept+close server:
   untraced to its address, traced to its address, traced to a VIP whose
   static service has it as backend (the backend chosen in the trace
   process, the connect carried out on a borrowed socket). Target: VIP <=
   1.15x the traced connect to the real address.
2. HTTP without keep-alive (ab -c 4, nginx returning a fixed body):
   untraced ab -> untraced nginx, against traced ab -> VIP -> nginx traced
   with --ip, under the daemon (the only VIP on the host). Target >= 0.6x.
   ab connects twice per request (the second connect() checks completion),
   so the same is measured with http_client.c, which connects once (as
   curl, wget and python do).
3. HTTP without keep-alive, untraced ab -> nginx traced under the daemon
   (no --ip), while another traced program holds a VIP on the host.
   Target >= 0.95x. Also shown: the same with nginx under --ip (its
   accept() then stops so that it can see clients' VIPs).
Every process started here is stopped here; the daemon's mount goes with it.
"""
import os, re, shutil, socket, statistics, subprocess, sys, tempfile, time

APP, CC, AS, HC = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
ROUNDS = int(sys.argv[5]) if len(sys.argv) > 5 else 5
VIP = "127.77.0.1"
CONNECTS = int(os.environ.get("BENCH_SHORT_CONNECTS", "5000"))
REQUESTS = int(os.environ.get("BENCH_SHORT_REQUESTS", "4000"))

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import procs, wait, free_port, start, stop, daemon_dir  # noqa: E402

tmp, d, cfg, mnt = daemon_dir()
TRACE = [APP, "trace", "--config", cfg]

def backend_of(vip_port):
    """The real address of the (one) backend of vip_port once it is up."""
    lines = open(f"{mnt}/services").read().splitlines()
    for i, l in enumerate(lines):
        if f" {vip_port} " in l:
            for b in lines[i + 1:]:
                if not b.startswith("  backend"):
                    break
                if "health=up" in b:
                    return b.split()[1]
    return None

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
    conn = {"untraced": [], "traced": [], "vip": []}

    # Rows 2 and 3: nginx servers (one untraced, one traced with --ip, one traced without).
    plain_port, ip_port, traced_port = free_port(), free_port(), free_port()
    nginx([], plain_port)
    wait("nginx", lambda: listening(plain_port))
    nginx(TRACE + ["--ip", VIP, "--"], ip_port)
    wait("nginx with --ip", lambda: backend_of(f"{VIP}:{ip_port}"))
    ip_real = int(backend_of(f"{VIP}:{ip_port}").rsplit(":", 1)[1])
    nginx(TRACE + ["--"], traced_port)
    wait("traced nginx", lambda: listening(traced_port))
    http = {"untraced": [], "traced": [], "untraced2": [], "server": [], "server_ip": [],
            "c_untraced": [], "c_traced": []}

    # Phase 1: the only VIP on the host is the servers' own.
    for r in range(ROUNDS):
        print(f"round {r + 1}/{ROUNDS} ...", end="\r", file=sys.stderr, flush=True)
        conn["untraced"].append(run_num([CC, rport, str(CONNECTS), rhost]))
        conn["traced"].append(run_num(TRACE + ["--", CC, rport, str(CONNECTS), rhost]))
        conn["vip"].append(run_num(TRACE + ["--", CC, str(vport), str(CONNECTS), VIP]))
        http["untraced"].append(ab([], "127.0.0.1", plain_port))
        http["traced"].append(ab(TRACE + ["--"], VIP, ip_port))
        http["c_untraced"].append(run_num([HC, "127.0.0.1", str(plain_port), str(REQUESTS), "4"]))
        http["c_traced"].append(run_num(TRACE + ["--", HC, VIP, str(ip_port), str(REQUESTS), "4"]))
    # Phase 2: another program holds a VIP, so a service's accept() may
    # have to show a client's VIP.
    other_port = free_port()
    start(TRACE + ["--ip", "127.77.0.9", "--", AS, str(other_port)], stdout=subprocess.DEVNULL)
    wait("the other VIP's program", lambda: backend_of(f"127.77.0.9:{other_port}"))
    for r in range(ROUNDS):
        print(f"round {r + 1}/{ROUNDS} (another VIP) ...", end="\r", file=sys.stderr, flush=True)
        http["untraced2"].append(ab([], "127.0.0.1", plain_port))
        http["server"].append(ab([], "127.0.0.1", traced_port))
        http["server_ip"].append(ab([], "127.0.0.1", ip_real))
    print(" " * 40, end="\r", file=sys.stderr)

    us = lambda k: med(conn[k]) / 1e3
    ratio = us("vip") / us("traced")
    print(f"connect+close ({CONNECTS} per run, C): untraced {us('untraced'):.1f} us, "
          f"traced to the real address {us('traced'):.1f} us, traced to the VIP {us('vip'):.1f} us")
    print(f"    VIP / real address (both traced): {ratio:.2f}x (target <= 1.15x: {'ok' if ratio <= 1.15 else 'MISSED'});"
          f" VIP / untraced {us('vip') / us('untraced'):.2f}x")
    for k in conn:
        print(f"    {k:9} rounds (ns): " + " ".join(f"{x:.0f}" for x in conn[k]))
    def row(what, k, target, base="untraced"):
        u = med(http[base])
        t = med(http[k])
        paired = med(a / b for a, b in zip(http[k], http[base]))
        verdict = "" if target is None else f" (target >= {target:.2f}x: {'ok' if t / u >= target else 'MISSED'})"
        print(f"{what}: {t:.0f} req/s vs untraced {u:.0f} req/s: {t / u:.2f}x, paired {paired:.2f}x{verdict}")
        print(f"    rounds: " + " ".join(f"{x:.0f}" for x in http[k]))
    print(f"HTTP without keep-alive, ab -n {REQUESTS} -c 4, nginx (untraced rounds: "
          + " ".join(f"{x:.0f}" for x in http["untraced"]) + ")")
    row("  traced ab -> VIP -> nginx traced with --ip", "traced", 0.6)
    print(f"  the same with http_client.c -c 4 (one connect per request; untraced rounds: "
          + " ".join(f"{x:.0f}" for x in http["c_untraced"]) + ")")
    row("  traced http_client -> VIP -> nginx traced with --ip", "c_traced", 0.6, "c_untraced")
    print(f"  with another program holding a VIP (untraced rounds: "
          + " ".join(f"{x:.0f}" for x in http["untraced2"]) + ")")
    row("  untraced ab -> nginx traced under the daemon", "server", 0.95, "untraced2")
    row("  untraced ab -> nginx traced with --ip (its accept() stops twice)", "server_ip", None, "untraced2")
finally:
    for p in reversed(procs[1:]):
        stop(p)
    if procs:
        procs[0].terminate()
        procs[0].wait(timeout=10)
