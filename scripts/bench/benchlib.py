"""What the Python benchmarks share: waiting, free ports, the processes
they start (every one stopped again), and a daemon config in a temp dir."""
import os, socket, subprocess, sys, tempfile, time

procs = []


def wait(what, pred, limit=30.0):
    """Poll `pred` until it holds; exit with a message after `limit` s."""
    end = time.monotonic() + limit
    while not pred():
        if time.monotonic() > end:
            sys.exit(f"{os.path.basename(sys.argv[0])}: timed out waiting for {what}")
        time.sleep(0.01)


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    return p


def start(cmd, **kw):
    """Start `cmd`, remembered in `procs` so that the caller stops it."""
    p = subprocess.Popen(cmd, **kw)
    procs.append(p)
    return p


def stop(p):
    """Stop `p` (SIGTERM, then SIGKILL after 5 s) and forget it."""
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill(); p.wait()
    if p in procs:
        procs.remove(p)


def daemon_dir():
    """A temp dir with a daemon config (no DNS responder): (tmp, dir, cfg, mnt)."""
    tmp = tempfile.TemporaryDirectory()
    d = tmp.name
    cfg = os.path.join(d, "appswitch.toml")
    mnt = os.path.join(d, "mnt")
    with open(cfg, "w") as f:
        f.write(f'[daemon]\nsocket = "{d}/sock"\nmount = "{mnt}"\nstate_dir = "{d}/state"\n'
                '[dns]\nlisten = ""\n')
    return tmp, d, cfg, mnt


def backends():
    """The backends to compare (BENCH_BACKENDS, default "ptrace unotify")."""
    bs = os.environ.get("BENCH_BACKENDS", "ptrace unotify").split()
    for b in bs:
        if b not in ("ptrace", "unotify"):
            sys.exit(f"{os.path.basename(sys.argv[0])}: unknown backend in BENCH_BACKENDS: {b}")
    return bs


def trace(app, cfg, backend):
    """`appswitch trace` under `backend` (APPSWITCH_BACKEND), with a daemon config."""
    return ["env", f"APPSWITCH_BACKEND={backend}", app, "trace", "--config", cfg]


def rotate(xs, r):
    """Round r's order of the variants: each goes first in turn, so drift
    favours none of them."""
    r %= len(xs)
    return xs[r:] + xs[:r]


def summary_row(row, unit, untraced, values, target=None):
    """One row of bench.sh's side-by-side table (scripts/bench/summary.py),
    appended to the file named by BENCH_SUMMARY, if set."""
    path = os.environ.get("BENCH_SUMMARY")
    if not path:
        return
    import json
    with open(path, "a") as f:
        f.write(json.dumps({"row": row, "unit": unit, "untraced": untraced,
                            "values": values, "target": target}) + "\n")


def backend_of(mnt, vip_port):
    """The real address of the (first live) backend of `vip_port` as
    <mnt>/services lists it, or None while there is none."""
    lines = open(f"{mnt}/services").read().splitlines()
    for i, l in enumerate(lines):
        if f" {vip_port} " in l:
            for b in lines[i + 1:]:
                if not b.startswith("  backend"):
                    break
                if "health=up" in b:
                    return b.split()[1]
    return None
