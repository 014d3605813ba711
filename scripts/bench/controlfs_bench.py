#!/usr/bin/env python3
"""Control-filesystem figures, against a real daemon and real traced programs.

  controlfs_bench.py APPSWITCH CONNECT_LOOP [CONNS]

1. `cat connections` with CONNS (default 10,000) live connections: a traced
   python3 client opens them to an untraced server that holds them; we time
   open+read of /MNT/connections (median of 7) and count the lines.
2. Policy write -> first refused connect: a traced connect_loop connects to a
   local listener every 1 ms; we write `deny connect ...` and measure, on
   CLOCK_MONOTONIC (the loop prints it too), until its first refused attempt;
   then `del` it and wait for success. Median of 7.
Both run once per backend (BENCH_BACKENDS, default "ptrace unotify"; the
traced programs get APPSWITCH_BACKEND), under the same daemon.
Everything runs on 127.0.0.1 in a temporary directory; every process started
here is stopped here, and the mount is released by stopping the daemon.
"""
import os, socket, statistics, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import backends  # noqa: E402

APP, LOOP = sys.argv[1], sys.argv[2]
CONNS = int(sys.argv[3]) if len(sys.argv) > 3 else 10000

def wait(what, pred, limit=30.0):
    end = time.monotonic() + limit
    while not pred():
        if time.monotonic() > end:
            sys.exit(f"controlfs_bench: timed out waiting for {what}")
        time.sleep(0.01)

procs = []
def start(cmd, **kw):
    p = subprocess.Popen(cmd, **kw)
    procs.append(p)
    return p

tmp = tempfile.TemporaryDirectory()
d = tmp.name
cfg = os.path.join(d, "appswitch.toml")
mnt = os.path.join(d, "mnt")
with open(cfg, "w") as f:
    f.write(f'[daemon]\nsocket = "{d}/sock"\nmount = "{mnt}"\nstate_dir = "{d}/state"\n')
try:
    daemon = start([APP, "daemon", "--config", cfg], stderr=subprocess.DEVNULL)
    wait("the daemon", lambda: os.path.exists(f"{mnt}/ctl") and os.path.exists(f"{d}/sock"))

    def one_backend(bk):
        tr = ["env", f"APPSWITCH_BACKEND={bk}", APP, "trace", "--config", cfg, "--"]
        # 1. connections listing with CONNS live connections
        server_code = (
            "import socket,resource,sys\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE,(20000,20000))\n"
            "s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(4096)\n"
            "print(s.getsockname()[1], flush=True)\n"
            "held=[]\n"
            "while True:\n  c,_=s.accept(); held.append(c)\n")
        srv = start([sys.executable, "-c", server_code], stdout=subprocess.PIPE, text=True)
        port = int(srv.stdout.readline())
        client_code = (
            "import socket,resource,sys\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE,(20000,20000))\n"
            "n=int(sys.argv[2]); held=[]\n"
            "for i in range(n):\n  held.append(socket.create_connection(('127.0.0.1',int(sys.argv[1]))))\n"
            "print('ready', flush=True); sys.stdin.read()\n")
        cl = start(tr + [sys.executable, "-c", client_code, str(port), str(CONNS)],
                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if cl.stdout.readline().strip() != "ready":
            sys.exit("controlfs_bench: the traced client did not get ready")
        path = f"{mnt}/connections"
        wait("all connections listed", lambda: open(path).read().count("\n") >= CONNS, 60)
        times, lines = [], 0
        for _ in range(7):
            t0 = time.monotonic()
            with open(path) as f:
                lines = f.read().count("\n")
            times.append((time.monotonic() - t0) * 1000)
        print(f"{bk:8} cat connections with {lines} live connections: median {statistics.median(times):.1f} ms "
              f"(min {min(times):.1f}, max {max(times):.1f}; target <= 50 ms)")
        cl.stdin.close(); cl.wait(timeout=30); srv.kill(); srv.wait()

        # 2. policy write -> first refused connect
        ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(4096)
        lport = ls.getsockname()[1]
        def acceptor():
            while True:
                try:
                    c, _ = ls.accept(); c.close()
                except OSError:
                    return
        threading.Thread(target=acceptor, daemon=True).start()
        loop = start(tr + [LOOP, str(lport), "100000", "1"],
                     stdout=subprocess.PIPE, text=True, bufsize=1)
        def first(after_ns, ok):
            for line in loop.stdout:
                ns, res = line.split()
                if int(ns) > after_ns and (res == "ok") == ok:
                    return int(ns)
            sys.exit("controlfs_bench: connect_loop ended")
        first(0, True)
        lat = []
        for _ in range(7):
            with open(f"{mnt}/policy", "w") as f:
                f.write(f"deny connect 127.0.0.1:{lport}\n")
            t = time.monotonic_ns()
            lat.append((first(t, False) - t) / 1e6)
            rid = open(f"{mnt}/policy").read().split()[0]
            with open(f"{mnt}/policy", "w") as f:
                f.write(f"del {rid}\n")
            first(time.monotonic_ns(), True)
        print(f"{bk:8} policy write -> first refused connect (loop every 1 ms): median {statistics.median(lat):.2f} ms "
              f"(min {min(lat):.2f}, max {max(lat):.2f})")
        loop.kill(); loop.wait()
        ls.close()

    for bk in backends():
        one_backend(bk)
finally:
    for p in procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
