#!/usr/bin/env python3
"""Where a trapped connect's time goes: CPU per connect of the program, its
supervisor (the trace process's tracer thread) and the server, per backend.

  cpu_split.py APPSWITCH CONNECT_CLIENT ACCEPT_SERVER [--perf]

Scenarios (the rows of bench.sh): pass-through, 1,000 rules + redirect, a
VIP (static service under a real daemon, the backend an untraced
accept_server). For each, untraced once and each backend (BENCH_BACKENDS)
runs a long connect loop; over a window of BENCH_CPU_WINDOW seconds
(default 2) the script reads the threads' run time from
/proc/PID/task/TID/schedstat and the machine's TCP ActiveOpens (one per
connect, whoever carries it out; other programs' connects add noise), and
prints nanoseconds per connect. Under user notification (SYNC_WAKE_UP) the
program and its supervisor take turns on one CPU, so wall time per connect
is about program + supervisor CPU; the server runs beside them.

With --perf (needs perf), the supervisor and the program are then sampled
(perf record -g, 1 s each) and each sample is put in one category by its
call chain (first match wins, in the order of CATEGORIES); the estimate in
microseconds is the share times the CPU per connect measured without perf.
"""
import collections, os, shutil, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import procs, wait, free_port, start, stop, daemon_dir, backends  # noqa: E402

APP, CC, AS = sys.argv[1], sys.argv[2], sys.argv[3]
PERF = "--perf" in sys.argv[4:]
WINDOW = float(os.environ.get("BENCH_CPU_WINDOW", "2"))
VIP = "127.77.0.1"
LOOP = "100000000"  # connects: the loop is stopped after the window

CATEGORIES = [
    ("TCP teardown (close of the socket's last reference)", ("tcp_close",)),
    ("connect + loopback handshake", ("__sys_connect",)),
    ("seccomp entry and notification wait (program)", ("seccomp_do_user_notification", "__secure_computing",
                                                      "ptrace_stop", "ptrace_notify")),
    ("context switch", ("finish_task_switch", "__schedule")),
    ("notification ioctls (RECV, ID_VALID, SEND)", ("seccomp_notify_ioctl",)),
    ("ptrace / wait4", ("__x64_sys_ptrace", "__do_sys_wait4", "__x64_sys_wait4")),
    ("epoll_wait", ("do_epoll_wait", "__x64_sys_epoll_wait")),
    ("borrow and inspect the socket (pidfd_getfd, getsockopt, fstat, fcntl, poll, close)",
     ("__x64_sys_pidfd_getfd", "__x64_sys_getsockopt", "__x64_sys_newfstatat", "__x64_sys_fcntl",
      "__x64_sys_close", "__x64_sys_poll")),
    ("read the address (process_vm_readv)", ("__x64_sys_process_vm_readv",)),
    ("the program's socket() and setsockopt()", ("__x64_sys_socket", "__x64_sys_setsockopt")),
]
KERNEL_ENTRY = ("do_syscall_64", "entry_SYSCALL", "__x64_sys", "syscall_exit", "asm_")


def schedstat(tid):
    try:
        with open(f"/proc/{tid}/task/{tid}/schedstat") as f:
            return int(f.read().split()[0])
    except OSError:
        return 0


def active_opens():
    with open("/proc/net/snmp") as f:
        rows = [l.split() for l in f if l.startswith("Tcp:")]
    return int(rows[1][rows[0].index("ActiveOpens")])


def child_of(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = f.read().split()
        return int(kids[0]) if kids else None
    except OSError:
        return None


def categories(data):
    out = subprocess.run(["perf", "script", "-i", data, "-F", "ip,sym"], capture_output=True, text=True).stdout
    counts = collections.Counter()
    for s in out.split("\n\n"):
        frames = [l.split()[1] for l in s.strip().splitlines() if len(l.split()) > 1]
        if not frames:
            continue
        cat = next((name for name, keys in CATEGORIES
                    if any(fr.startswith(keys) for fr in frames)), None)
        if cat is None:
            kernel = any(fr.startswith(KERNEL_ENTRY) for fr in frames)
            cat = "other kernel (entry/exit, other calls)" if kernel else "user space (decode, decide, route; libc)"
        counts[cat] += 1
    return counts


def measure(label, cmd, server_pid, tmp):
    """Start `cmd` (a connect loop, maybe under trace), measure a window."""
    p = start(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    traced = cmd[0] == "env"
    sup = p.pid if traced else None
    wait("the connect loop", lambda: (not traced) or child_of(p.pid), 10)
    prog = child_of(p.pid) if traced else p.pid
    time.sleep(0.5)  # start-up and warm-up
    if p.poll() is not None:
        sys.exit(f"cpu_split: {' '.join(cmd)} ended: {p.stderr.read()[-300:]}")
    tids = {"program": prog, "supervisor": sup, "server": server_pid}
    before = {k: schedstat(t) for k, t in tids.items() if t}
    o1, t1 = active_opens(), time.monotonic_ns()
    time.sleep(WINDOW)
    o2, t2 = active_opens(), time.monotonic_ns()
    after = {k: schedstat(t) for k, t in tids.items() if t}
    n = max(o2 - o1, 1)
    per = {k: (after[k] - before[k]) / n for k in before}
    row = {"label": label, "n": n, "wall": (t2 - t1) / n, **per}
    if PERF and traced:
        for who in ("supervisor", "program"):
            data = os.path.join(tmp, f"{label}-{who}.data").replace(" ", "_")
            subprocess.run(["perf", "record", "-q", "-F", "10000", "-g", "-t", str(tids[who]),
                            "-o", data, "--", "sleep", "1"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            row["cats_" + who] = categories(data)
    stop(p)
    return row


def main():
    if PERF and not shutil.which("perf"):
        sys.exit("cpu_split: --perf needs perf (apt-get install linux-perf)")
    bks = backends()
    tmpd = tempfile.TemporaryDirectory()
    tmp = tmpd.name
    dtmp, d, cfg, mnt = daemon_dir()
    try:
        srv = start([AS], stdout=subprocess.PIPE, text=True)
        port = srv.stdout.readline().strip()
        vport = str(free_port())
        policy = os.path.join(tmp, "policy")
        with open(policy, "w") as f:
            for i in range(1, 1000):
                f.write(f"deny connect 10.{i // 250}.{i % 250}.{i % 7}/32:{1000 + i}\n")
            f.write(f"redirect connect 127.0.0.1:{vport} -> 127.0.0.1:{port}\n")
        daemon = start([APP, "daemon", "--config", cfg], stderr=subprocess.DEVNULL)
        wait("the daemon", lambda: os.path.exists(f"{mnt}/ctl") and os.path.exists(f"{d}/sock"))
        sport = str(free_port())
        with open(f"{mnt}/services", "w") as f:
            f.write(f"add bench {VIP}:{sport} -> 127.0.0.1:{port}\n")
        wait("the static service", lambda: "health=up" in open(f"{mnt}/services").read())
        trace = lambda b, *opts: ["env", f"APPSWITCH_BACKEND={b}", APP, "trace", *opts, "--"]
        scenarios = [
            ("pass-through", ["--no-daemon"], [CC, port, LOOP]),
            ("1,000 rules + redirect", ["--no-daemon", "--policy", policy], [CC, vport, LOOP]),
            ("VIP (static service, daemon)", ["--config", cfg], [CC, sport, LOOP, VIP]),
        ]
        rows = [measure("untraced", [CC, port, LOOP], srv.pid, tmp)]
        for name, opts, prog in scenarios:
            for b in bks:
                rows.append(measure(f"{name}, {b}", trace(b, *opts) + prog, srv.pid, tmp))
        stop(daemon)
        stop(srv)
    finally:
        for p in procs:
            stop(p)
    us = lambda v: f"{v / 1e3:6.1f}"
    print(f"{'ns per connect, over ' + str(WINDOW) + ' s':38} {'wall':>6} {'program':>8} {'supervisor':>10} "
          f"{'prog+sup':>8} {'server':>7}   (microseconds)")
    for r in rows:
        sup = r.get("supervisor", 0)
        print(f"{r['label']:38} {us(r['wall'])} {us(r['program']):>8} {us(sup):>10} "
              f"{us(r['program'] + sup):>8} {us(r['server']):>7}")
    if PERF:
        for r in rows:
            for who in ("supervisor", "program"):
                c = r.get("cats_" + who)
                if not c:
                    continue
                tot = sum(c.values())
                print(f"{r['label']}: {who} ({us(r[who]).strip()} us per connect, {tot} samples)")
                for k, v in c.most_common():
                    print(f"    {100 * v / tot:5.1f}%  ~{r[who] * v / tot / 1e3:4.1f} us  {k}")


main()
