#!/usr/bin/env python3
"""attach_bench.py APPSWITCH TARGET ROUNDS BACKEND...: how long a program is
stopped while `appswitch attach` puts it under appswitch (issue 15).

For each backend and for 4 and 50 threads: ROUNDS fresh targets (TARGET N:
threads looping connect()), each attached once (`appswitch attach --no-daemon`,
background supervisor); the stopped_us the attach reports (from the seized
thread's interrupt to its release) is collected. Prints median, min and max.
Every target is killed and its supervisor waited for."""
import os
import re
import signal
import statistics
import subprocess
import sys
import time


def gone(pid, limit=5.0):
    end = time.time() + limit
    while time.time() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.01)
    return False


def one(app, target, threads, backend):
    t = subprocess.Popen([target, str(threads)], stdout=subprocess.PIPE, text=True)
    try:
        if t.stdout.readline().strip() != "ready":
            raise RuntimeError("target did not start")
        r = subprocess.run(
            [app, "attach", "--no-daemon", "--backend", backend, str(t.pid)],
            capture_output=True, text=True, timeout=20)
        if r.returncode != 0:
            raise RuntimeError(f"attach failed ({r.returncode}): {r.stderr.strip()}")
        m = re.search(r"stopped_us=(\d+)", r.stdout)
        s = re.search(r"supervisor=(\d+)", r.stdout)
        if not m:
            raise RuntimeError(f"no stopped_us in: {r.stdout!r}")
        return int(m.group(1)), int(s.group(1)) if s else None
    finally:
        t.kill()
        t.wait()


def main():
    app, target, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    backends = sys.argv[4:] or ["unotify", "ptrace"]
    print(f"{'backend':8} {'threads':>7} {'median':>9} {'min':>9} {'max':>9}  (program stopped during attach, {rounds} attaches)")
    for backend in backends:
        for threads in (4, 50):
            vals = []
            for _ in range(rounds):
                try:
                    us, sup = one(app, target, threads, backend)
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    print(f"{backend:8} {threads:>7} error: {e}")
                    break
                vals.append(us)
                if sup and not gone(sup):
                    print(f"  supervisor {sup} still running after its program exited")
                    os.kill(sup, signal.SIGKILL)
            if vals:
                print(f"{backend:8} {threads:>7} {statistics.median(vals):>6.0f} us {min(vals):>6} us {max(vals):>6} us")


if __name__ == "__main__":
    main()
