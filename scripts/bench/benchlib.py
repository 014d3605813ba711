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
