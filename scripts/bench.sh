#!/usr/bin/env bash
# bench.sh - overhead of `appswitch trace` vs. running untraced (and vs. strace),
# for both interception backends side by side (issue 14).
#
# Three loops, each timing itself with CLOCK_MONOTONIC and printing
# ns/iteration (so process and tracer start-up are not counted):
#   (a) getppid loop in a statically linked binary: no network call, so
#       nothing stops; measures the cost of the seccomp filter alone,
#       against an allow-all filter with no tracer (the floor).
#   (b) socket/connect/close loop against an untraced server on 127.0.0.1:
#       every iteration makes a trapped connect() (pass-through).
#   (c) the same with 1,000 rules loaded and every connect redirected.
# Variants: untraced, `appswitch trace` once per backend (BENCH_BACKENDS,
# chosen with APPSWITCH_BACKEND), strace --seccomp-bpf as reference, and the
# allow-all filter. Runs are interleaved round by round (the backends take
# turns going first); the tables show medians and the ratio of medians to
# untraced, all measured in this run. Then the sections: rule decisions,
# the control filesystem, short connections (VIP connects, HTTP without
# keep-alive) and services (keep-alive, bulk), each with both backends; where
# a connect's time goes (CPU per connect of program, supervisor and server);
# and last one table of every row side by side, with the targets (issue
# 14's for user notification) met or missed.
#
# Environment:
#   APPSWITCH            binary to test (default: target/release/appswitch,
#                        built with `cargo build --release`; when APPSWITCH is
#                        set, nothing is built)
#   APPSWITCH_ARGS       extra args for `appswitch trace` (word-split)
#   BENCH_BACKENDS       backends to compare (default "ptrace unotify"; one of
#                        them alone halves the traced runs)
#   BENCH_ROUNDS         rounds of (a)-(c) (default 7)
#   BENCH_GETPPID_ITERS  iterations of (a) (default 2000000)
#   BENCH_CONNECT_ITERS  iterations of (b) and (c) (default 20000)
#   BENCH_PIN=1          run every variant under `taskset -c 0`
#   BENCH_CONNS          live connections for the `cat connections` row (default 10000)
#   BENCH_SERVICE_ROUNDS rounds of the services figures (default 7)
#   BENCH_SHORT_ROUNDS   rounds of the short-connection figures (default 7)
#   BENCH_SHORT_CONNECTS, BENCH_SHORT_REQUESTS: per run in those (5000, 4000)
#   BENCH_NOTIF_N        trapped calls per run of notif_roundtrip (100000)
#   BENCH_SECTIONS       which sections after (a)-(c) run (default
#                        "rules controlfs short services cpu attach isolate"; "" for none)
#   BENCH_ATTACH_ROUNDS  attaches per backend and thread count (default 11)
#   BENCH_ISOLATE_ROUNDS rounds of the isolation rows (default 7)
#   BENCH_PERF=1         the cpu section also samples supervisor and program
#                        with perf and splits their time by kind of work
#
# Needs: gcc with static glibc (libc6-dev), strace, cargo (unless APPSWITCH set);
# nginx, ab (apache2-utils) and iperf3 for the last two sections.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC="$ROOT/scripts/bench"

ROUNDS=${BENCH_ROUNDS:-7}
GETPPID_N=${BENCH_GETPPID_ITERS:-2000000}
CONNECT_N=${BENCH_CONNECT_ITERS:-20000}
PIN=${BENCH_PIN:-0}
read -r -a BACKENDS <<<"${BENCH_BACKENDS-ptrace unotify}"
SECTIONS=" ${BENCH_SECTIONS-rules controlfs short services cpu attach isolate} "
read -r -a APP_ARGS <<<"${APPSWITCH_ARGS:-}"

die() { echo "bench.sh: $*" >&2; exit 1; }

for v in ROUNDS GETPPID_N CONNECT_N; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
((${#BACKENDS[@]} > 0)) || die "BENCH_BACKENDS is empty"
for b in "${BACKENDS[@]}"; do
    [[ $b == ptrace || $b == unotify ]] || die "unknown backend in BENCH_BACKENDS: $b (ptrace, unotify)"
done
command -v gcc >/dev/null || die "gcc not found (apt-get install -y gcc libc6-dev)"
command -v strace >/dev/null || die "strace not found (apt-get install -y strace)"
strace -qq -o /dev/null --seccomp-bpf -f true 2>/dev/null ||
    die "this strace does not support --seccomp-bpf (needs strace >= 5.3)"

PIN_CMD=()
if [[ $PIN == 1 ]]; then
    command -v taskset >/dev/null || die "BENCH_PIN=1 needs taskset (util-linux)"
    PIN_CMD=(taskset -c 0)
fi

if [[ -n ${APPSWITCH:-} ]]; then
    APP=$APPSWITCH
else
    command -v cargo >/dev/null || die "cargo not found (or set APPSWITCH=/path/to/appswitch)"
    echo "building appswitch (cargo build --release)..." >&2
    (cd "$ROOT" && cargo build --release --quiet --bin appswitch --example rule_bench) ||
        die "cargo build --release failed"
    APP=$ROOT/target/release/appswitch
fi
[[ -x $APP ]] || die "appswitch binary not found or not executable: $APP"

# --- temp dir, server, cleanup -------------------------------------------
TMP=$(mktemp -d)
SERVER_PID=
cleanup() {
    if [[ -n $SERVER_PID ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

gcc -O2 -Wall -static -o "$TMP/getppid_loop" "$SRC/getppid_loop.c" ||
    die "gcc -static failed (static glibc missing? apt-get install -y libc6-dev)"
gcc -O2 -Wall -o "$TMP/connect_client" "$SRC/connect_client.c" || die "gcc failed"
gcc -O2 -Wall -o "$TMP/accept_server" "$SRC/accept_server.c" || die "gcc failed"
gcc -O2 -Wall -o "$TMP/seccomp_allow" "$SRC/seccomp_allow.c" || die "gcc failed"
gcc -O2 -Wall -o "$TMP/connect_loop" "$ROOT/tests/progs/connect_loop.c" || die "gcc failed"
gcc -O2 -Wall -o "$TMP/http_client" "$SRC/http_client.c" || die "gcc failed"
gcc -O2 -Wall -o "$TMP/notif_roundtrip" "$SRC/notif_roundtrip.c" || die "gcc failed"
gcc -O2 -Wall -o "$TMP/floor_supervisor" "$SRC/floor_supervisor.c" || die "gcc failed"
gcc -O2 -Wall -pthread -o "$TMP/attach_target" "$SRC/attach_target.c" || die "gcc failed"

# The server binds 127.0.0.1:0 and prints its port once listening. It is
# not traced and not pinned.
"$TMP/accept_server" >"$TMP/port" 2>"$TMP/server.err" &
SERVER_PID=$!
PORT=
for _ in $(seq 200); do # up to ~10 s
    PORT=$(head -n1 "$TMP/port" 2>/dev/null || true)
    [[ -n $PORT ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || die "server died: $(cat "$TMP/server.err")"
    sleep 0.05
done
[[ $PORT =~ ^[0-9]+$ ]] || die "server did not report a port"
# Readiness: one real connection through the client must succeed.
"$TMP/connect_client" "$PORT" 1 >/dev/null || die "server on 127.0.0.1:$PORT not accepting"

# (c) the connect loop with 1,000 rules loaded and its own connects redirected:
# the client connects to a port nobody listens on (VPORT); a rule redirects it
# to the server. 999 other rules deny unrelated 10.x addresses.
VPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
{
    for i in $(seq 1 999); do
        echo "deny connect 10.$((i / 250)).$((i % 250)).$((i % 7))/32:$((1000 + i))"
    done
    echo "redirect connect 127.0.0.1:$VPORT -> 127.0.0.1:$PORT"
} >"$TMP/policy"

# --- variants -----------------------------------------------------------------
# run NAME CMD... : run a command, check it printed one number, append it.
run() {
    local name=$1 out
    shift
    if ! out=$("${PIN_CMD[@]}" "$@" 2>"$TMP/err"); then
        die "run failed: $* ($(tr '\n' ' ' <"$TMP/err"))"
    fi
    [[ $out =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "unexpected output from: $* -> '$out'"
    echo "$out" >>"$TMP/$name"
}

A=("$TMP/getppid_loop" "$GETPPID_N")
B=("$TMP/connect_client" "$PORT" "$CONNECT_N")
C=("$TMP/connect_client" "$VPORT" "$CONNECT_N")
# apptrace BACKEND: `appswitch trace` under that backend (APPSWITCH_BACKEND).
apptrace() { TRACE=(env "APPSWITCH_BACKEND=$1" "$APP" trace "${APP_ARGS[@]}"); }
STRACE=(strace -f --seccomp-bpf -qq -o /dev/null)

# Each backend really runs: a ptrace'd program has a TracerPid, one under user
# notification has none but has a filter (a backend that cannot run must not
# fall back to the other unnoticed).
for b in "${BACKENDS[@]}"; do
    apptrace "$b"
    st=$("${TRACE[@]}" -- awk '/^(TracerPid|Seccomp):/ {printf "%s ", $2}' /proc/self/status 2>"$TMP/err") ||
        die "appswitch trace with APPSWITCH_BACKEND=$b failed: $(tr '\n' ' ' <"$TMP/err")"
    read -r tracer seccomp <<<"$st"
    case $b in
    ptrace) [[ $tracer != 0 ]] || die "APPSWITCH_BACKEND=ptrace: the program is not ptraced (TracerPid $tracer)" ;;
    unotify) [[ $tracer == 0 && $seccomp == 2 ]] ||
        die "APPSWITCH_BACKEND=unotify did not run under user notification (TracerPid $tracer, Seccomp $seccomp); BENCH_BACKENDS=ptrace runs without it" ;;
    esac
done

# --- header -------------------------------------------------------------------
echo "appswitch benchmark: traced/untraced ratios per backend (median of $ROUNDS interleaved rounds)"
echo "command:   $0${*:+ $*}  (APPSWITCH=$APP APPSWITCH_ARGS='${APPSWITCH_ARGS:-}' BENCH_BACKENDS='${BACKENDS[*]}'"\
     "BENCH_ROUNDS=$ROUNDS BENCH_GETPPID_ITERS=$GETPPID_N BENCH_CONNECT_ITERS=$CONNECT_N BENCH_PIN=$PIN"\
     "BENCH_SHORT_ROUNDS=${BENCH_SHORT_ROUNDS:-7} BENCH_SERVICE_ROUNDS=${BENCH_SERVICE_ROUNDS:-7})"
echo "date:      $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine:   $(nproc) CPUs, $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'),"\
     "kernel $(uname -r)"
echo "load:      $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min, at the start; other work on the machine shows here)"
echo "appswitch: $("$APP" --version 2>/dev/null || echo '?') ($APP)"
echo "backends:  ${BACKENDS[*]} (APPSWITCH_BACKEND; checked: ptrace => TracerPid set, unotify => none)"
echo "strace:    $(strace -V | head -n1)"
if [[ $PIN == 1 ]]; then
    echo "pinning:   BENCH_PIN=1: untraced, appswitch and strace runs all under 'taskset -c 0' (server unpinned)"
else
    echo "pinning:   none (set BENCH_PIN=1 to pin every variant with taskset -c 0)"
fi
echo "workloads: (a) $GETPPID_N x getppid(), gcc -O2 -static"
echo "           (b) $CONNECT_N x socket/connect/close to 127.0.0.1:$PORT (SO_LINGER 0 => RST, no TIME_WAIT);"
echo "               server untraced, accept+close"
echo "           (c) (b) to 127.0.0.1:$VPORT, redirected to :$PORT by the last of 1,000 rules (--policy)"
echo "strace:    (a) ${STRACE[*]} -e trace=%network"
echo "           (b) ${STRACE[*]} -e trace=connect"
echo

# --- rounds ------------------------------------------------------------------
for ((r = 1; r <= ROUNDS; r++)); do
    printf 'round %d/%d ...\r' "$r" "$ROUNDS" >&2
    # The backends take turns going first.
    order=("${BACKENDS[@]}")
    if ((r % 2 == 0)); then
        order=()
        for b in "${BACKENDS[@]}"; do order=("$b" "${order[@]}"); done
    fi
    run a_untraced "${A[@]}"
    for b in "${order[@]}"; do apptrace "$b"; run "a_$b" "${TRACE[@]}" -- "${A[@]}"; done
    run a_floor "$TMP/seccomp_allow" "${A[@]}"
    run a_strace "${STRACE[@]}" -e trace=%network "${A[@]}"
    run b_untraced "${B[@]}"
    for b in "${order[@]}"; do apptrace "$b"; run "b_$b" "${TRACE[@]}" -- "${B[@]}"; done
    run b_strace "${STRACE[@]}" -e trace=connect "${B[@]}"
    for b in "${order[@]}"; do apptrace "$b"; run "c_$b" "${TRACE[@]}" --policy "$TMP/policy" -- "${C[@]}"; done
done
printf '%*s\r' 20 '' >&2

# --- report -------------------------------------------------------------------
median() { sort -g "$1" | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
fmt() { awk -v n="$1" 'BEGIN { if (n >= 1e6) printf "%.2f ms", n/1e6;
                               else if (n >= 1e3) printf "%.1f us", n/1e3;
                               else printf "%.0f ns", n }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a/b }'; }
# The side-by-side table at the end (scripts/bench/summary.py) gets every row.
export BENCH_SUMMARY=$TMP/summary.jsonl
: >"$BENCH_SUMMARY"
summary() { # label untraced-key value-prefix [target-json]
    local vals="" b
    for b in "${BACKENDS[@]}"; do
        vals+="${vals:+, }\"$b\": $(median "$TMP/$3_$b")"
    done
    printf '{"row": "%s", "unit": "ns", "untraced": %s, "values": {%s}, "target": %s}\n' \
        "$1" "$(median "$TMP/$2")" "$vals" "${4:-null}" >>"$BENCH_SUMMARY"
}

row() { # label untraced-key prefix [strace-key]
    local u b v
    u=$(median "$TMP/$2")
    printf '%-34s %10s' "$1" "$(fmt "$u")"
    for b in "${BACKENDS[@]}"; do
        v=$(median "$TMP/$3_$b")
        printf ' %10s %6s' "$(fmt "$v")" "$(ratio "$v" "$u")"
    done
    if [[ -n ${4:-} ]]; then
        v=$(median "$TMP/$4")
        printf ' %10s %6s' "$(fmt "$v")" "$(ratio "$v" "$u")"
    fi
    echo
}

printf '%-34s %10s' work untraced
for b in "${BACKENDS[@]}"; do printf ' %10s %6s' "$b" ratio; done
printf ' %10s %6s\n' strace ratio
row "getppid loop (static)" a_untraced a a_strace
row "connect+close loop (loopback)" b_untraced b b_strace
row "connect+close, 1000 rules+redir" b_untraced c
fu=$(median "$TMP/a_untraced")
ff=$(median "$TMP/a_floor")
printf '%-34s %10s %10s %6s   (allow-all seccomp filter, no tracer: the floor for any seccomp tracer)\n' \
    "getppid loop, allow-all floor" "$(fmt "$fu")" "$(fmt "$ff")" "$(ratio "$ff" "$fu")"
floor=$(awk -v a="$ff" -v b="$fu" 'BEGIN { printf "%.4f", a/b }')
# "Equal to the floor" is judged on the rounds: each backend's getppid run
# against the allow-all run of the same round (they run back to back), the
# median of those ratios; the medians of the columns drift with the VM.
pairs=""
for b in "${BACKENDS[@]}"; do
    p=$(paste "$TMP/a_$b" "$TMP/a_floor" | awk '{print $1 / $2}' >"$TMP/pair_$b"; median "$TMP/pair_$b")
    pairs+="${pairs:+, }\"$b\": $p"
    printf '%-34s %s\n' "  $b / floor, paired" "$(awk -v p="$p" 'BEGIN { printf "%.3fx (median of the per-round ratios)", p }')"
done
summary "getppid loop (static)" a_untraced a "{\"op\": \"floor\", \"x\": $floor, \"paired\": {$pairs}, \"for\": [\"unotify\"], \"why\": \"issue 14\"}"
summary "connect+close, pass-through (C)" b_untraced b '{"op": "<=", "x": 1.3, "for": ["unotify"], "why": "issue 14"}'
summary "connect+close, 1,000 rules + redirect" b_untraced c '{"op": "<=", "x": 1.45, "for": ["unotify"], "why": "issue 14"}'
echo
echo "per-round ns/iter (spread; medians above):"
keys=(a_untraced)
for b in "${BACKENDS[@]}"; do keys+=("a_$b"); done
keys+=(a_floor a_strace b_untraced)
for b in "${BACKENDS[@]}"; do keys+=("b_$b"); done
keys+=(b_strace)
for b in "${BACKENDS[@]}"; do keys+=("c_$b"); done
for k in "${keys[@]}"; do
    printf '  %-12s %s\n' "$k" "$(awk '{printf "%s%.0f", (NR>1?" ":""), $1}' "$TMP/$k")"
done

if [[ $SECTIONS == *" rules "* ]]; then
    echo
    RB=${APP%/appswitch}/examples/rule_bench
    if [[ -x $RB ]]; then
        echo "rule decision (examples/rule_bench: 10,000 generated rules, 1,000,000 decisions; target p99 <= 2 us):"
        echo "  $("$RB" 10000 1000000)"
    else
        echo "rule decision: $RB not built (cargo build --release --example rule_bench)"
    fi
fi

export BENCH_BACKENDS="${BACKENDS[*]}"
if [[ $SECTIONS == *" controlfs "* ]]; then
    echo
    echo "control filesystem (scripts/bench/controlfs_bench.py: a real daemon and traced programs):"
    python3 "$SRC/controlfs_bench.py" "$APP" "$TMP/connect_loop" "${BENCH_CONNS:-10000}" | sed 's/^/  /'
fi

if [[ $SECTIONS == *" short "* ]]; then
    echo
    echo "short connections (scripts/bench/short_bench.py: a real daemon, VIP 127.77.0.1, nginx and ab):"
    if command -v ab >/dev/null && { command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]]; }; then
        python3 "$SRC/short_bench.py" "$APP" "$TMP/connect_client" "$TMP/accept_server" "$TMP/http_client" "${BENCH_SHORT_ROUNDS:-7}" "$TMP/floor_supervisor" | sed 's/^/  /'
    else
        echo "  ab or nginx not found (scripts/setup.sh installs apache2-utils and nginx)"
    fi
    # The floor under every trapped call: the kernel's notification round
    # trip alone, a supervisor that answers at once (5 interleaved runs).
    echo "  seccomp user-notification round trip, nothing decided (scripts/bench/notif_roundtrip.c):"
    "$TMP/notif_roundtrip" "${BENCH_NOTIF_N:-100000}" 5 | sed 's/^/    /'
fi

if [[ $SECTIONS == *" services "* ]]; then
    echo
    echo "services (scripts/bench/services_bench.py: VIP 127.77.0.1 under a real daemon; no proxy in the data path):"
    if command -v iperf3 >/dev/null; then
        python3 "$SRC/services_bench.py" "$APP" "${BENCH_SERVICE_ROUNDS:-7}" | sed 's/^/  /'
    else
        echo "  iperf3 not found (apt-get install -y iperf3)"
    fi
fi

if [[ $SECTIONS == *" cpu "* ]]; then
    echo
    echo "where a connect's time goes (scripts/bench/cpu_split.py: schedstat over a window of a long loop):"
    perf_arg=()
    [[ ${BENCH_PERF:-0} == 1 ]] && perf_arg=(--perf)
    python3 "$SRC/cpu_split.py" "$APP" "$TMP/connect_client" "$TMP/accept_server" "${perf_arg[@]}" | sed 's/^/  /'
fi

if [[ $SECTIONS == *" attach "* ]]; then
    echo
    echo "attach (scripts/bench/attach_bench.py: how long a running program is stopped by appswitch attach):"
    python3 "$SRC/attach_bench.py" "$APP" "$TMP/attach_target" "${BENCH_ATTACH_ROUNDS:-11}" "${BACKENDS[@]}" | sed 's/^/  /'
fi

if [[ $SECTIONS == *" isolate "* ]]; then
    echo
    echo "isolation (scripts/bench/isolate_bench.py: trace --isolate next to plain unotify, in a namespace of its own):"
    python3 "$SRC/isolate_bench.py" "$APP" "$TMP/connect_client" "$TMP/accept_server" "$TMP/http_client" "${BENCH_ISOLATE_ROUNDS:-7}" | sed 's/^/  /'
fi

echo
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "side by side (ratios against untraced in this run; targets: issue 14's for unotify, older ones for both):"
python3 "$SRC/summary.py" "$BENCH_SUMMARY" "${BACKENDS[@]}" | sed 's/^/  /'
