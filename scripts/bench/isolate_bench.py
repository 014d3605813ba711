#!/usr/bin/env python3
"""isolate_bench.py APPSWITCH CONNECT_CLIENT ACCEPT_SERVER HTTP_CLIENT ROUNDS:
isolation (`trace --isolate`, issue 16) next to plain user notification.

Runs in a network namespace of its own (it re-executes itself under
`unshare -n`): loopback up and 10.201.0.1/32 on it, the "host" address an
isolated program reaches outside (its own loopback is its own). Rows, medians
of ROUNDS interleaved rounds, ratios against untraced in the same run:
  1. connect+close loop (connect_client, 2000 per round) to an untraced
     accept_server on 10.201.0.1: untraced, unotify, unotify --isolate
     (every connect handed over: a socket made outside, options carried
     over, put in the program's place);
  2. HTTP without keep-alive (http_client -c 4, 2000 requests per round) to
     an untraced python3-free server: busybox httpd if present, else nginx;
  3. bulk TCP (iperf3 -t 3, one stream) to an untraced iperf3 server:
     untraced and isolated (the handed-over socket is the kernel's: target
     >= 0.98x)."""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HOST = "10.201.0.1"


def main():
    if os.environ.get("ISOLATE_BENCH_NS") != "1":
        env = dict(os.environ, ISOLATE_BENCH_NS="1")
        r = subprocess.run(["unshare", "-n", sys.executable] + sys.argv, env=env)
        sys.exit(r.returncode)
    app, cc, srv, hc, rounds = sys.argv[1:6]
    rounds = int(rounds)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "add", f"{HOST}/32", "dev", "lo"], check=True)
    procs = []
    tmp = tempfile.mkdtemp()
    try:
        run(app, cc, srv, hc, rounds, procs, tmp)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def num(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        sys.exit(f"isolate_bench: {' '.join(cmd)} failed: {out.stderr[-300:]}")
    return float(out.stdout.strip().splitlines()[-1])


def variants(app):
    base = [app, "trace", "--no-daemon", "--backend", "unotify"]
    return {"untraced": [], "unotify": base + ["--"], "isolate": base + ["--isolate", "--"]}


def wait_port(port, limit=10):
    end = time.time() + limit
    while time.time() < end:
        out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True)
        if out.stdout.strip():
            return
        time.sleep(0.05)
    sys.exit(f"isolate_bench: nothing listens on {port}")


def row(name, vals, unit, higher_better):
    u = statistics.median(vals["untraced"])
    cells = []
    for k in ("unotify", "isolate"):
        if k not in vals:
            continue
        v = statistics.median(vals[k])
        ratio = (v / u) if higher_better else (v / u)
        cells.append(f"{k} {v:10.1f} {unit} {ratio:5.2f}x")
    print(f"{name:34} untraced {u:10.1f} {unit}   " + "   ".join(cells))


def run(app, cc, srv, hc, rounds, procs, tmp):
    v = variants(app)
    s = subprocess.Popen([srv, "0", HOST], stdout=subprocess.PIPE, text=True)
    procs.append(s)
    port = s.stdout.readline().strip()
    vals = {k: [] for k in v}
    for r in range(rounds):
        order = list(v) if r % 2 == 0 else list(reversed(v))
        for k in order:
            vals[k].append(num(v[k] + [cc, port, "2000", HOST]) / 1000.0)
    print(f"(medians of {rounds} rounds; ratios against untraced in this run; namespace with {HOST} on lo)")
    row("connect+close loop", vals, "us", False)

    httpd = shutil.which("busybox")
    hport = "18080"
    if httpd:
        os.makedirs(f"{tmp}/www", exist_ok=True)
        with open(f"{tmp}/www/index.html", "w") as f:
            f.write("ok\n" * 100)
        h = subprocess.Popen([httpd, "httpd", "-f", "-p", f"{HOST}:{hport}", "-h", f"{tmp}/www"])
        procs.append(h)
        wait_port(hport)
        vals = {k: [] for k in v}
        for r in range(rounds):
            order = list(v) if r % 2 == 0 else list(reversed(v))
            for k in order:
                vals[k].append(num(v[k] + [hc, HOST, hport, "2000", "4"]))
        row("HTTP no keep-alive (busybox httpd)", vals, "r/s", True)
    else:
        print("HTTP no keep-alive: busybox not found")

    if shutil.which("iperf3"):
        vals = {"untraced": [], "isolate": []}
        for r in range(max(3, rounds // 2)):
            for k in (["untraced", "isolate"] if r % 2 == 0 else ["isolate", "untraced"]):
                ip = "15201"
                sv = subprocess.Popen(["iperf3", "-s", "-1", "-A", "0", "-p", ip, "-B", HOST],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                procs.append(sv)
                wait_port(ip)
                out = subprocess.run(v[k] + ["iperf3", "-c", HOST, "-A", "1", "-p", ip, "-J", "-t", "3", "-O", "1"],
                                     capture_output=True, text=True, timeout=60)
                sv.wait(timeout=30)
                if out.returncode != 0:
                    sys.exit(f"isolate_bench: iperf3 failed: {out.stdout[-300:]} {out.stderr[-300:]}")
                vals[k].append(json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9)
        row("bulk TCP (iperf3, 1 stream)", vals, "Gb/s", True)
    else:
        print("bulk: iperf3 not found")


if __name__ == "__main__":
    main()
