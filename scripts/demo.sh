#!/usr/bin/env bash
# The main job, end to end on loopback: the daemon with the control
# filesystem mounted, programs traced under it, two servers sharing a virtual
# IP reached by name, a policy written to a file and taking effect on the
# next connect. Everything it starts it stops.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[[ -x $HOME/.cargo/bin/cargo ]] && export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release -q
bin=$PWD/target/release/appswitch
work=$(mktemp -d)
mnt=${DEMO_MOUNT:-/appswitch}
if grep -q " $mnt " /proc/mounts; then mnt=$work/appswitch; fi
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

cat >"$work/appswitch.toml" <<TOML
[daemon]
socket = "$work/appswitch.sock"
mount = "$mnt"
state_dir = "$work/state"
TOML
export APPSWITCH_CONFIG=$work/appswitch.toml

"$bin" daemon & pids+=($!)
for _ in $(seq 100); do [[ -e $mnt/ctl && -S $work/appswitch.sock ]] && break; sleep 0.05; done
# Someone reading the event stream (tracers send decisions only while it is read).
cat "$mnt/events" >"$work/events.log" & pids+=($!)

echo "hello from a local server" >"$work/index.html"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$work" >/dev/null 2>&1 & pids+=($!)
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.05; done

say "appswitch trace -- curl -s http://127.0.0.1:$port/"
"$bin" trace -- curl -s "http://127.0.0.1:$port/"

say "appswitch trace -- busybox nc 127.0.0.1 $port &    # a connection that stays open"
sleep 30 | "$bin" trace -- busybox nc 127.0.0.1 "$port" >/dev/null & pids+=($!)
for _ in $(seq 100); do grep -q comm=busybox "$mnt/connections" 2>/dev/null && break; sleep 0.05; done
say "cat $mnt/connections"
cat "$mnt/connections"
say "ls $mnt/apps; cat $mnt/apps/*/info"
ls "$mnt/apps"; cat "$mnt"/apps/*/info

# Services: two servers share one virtual IP and port (a loopback VIP here,
# so nothing can leave the machine); clients reach them by name, no proxy.
for b in one two; do
  mkdir -p "$work/$b"; echo "served by backend $b" >"$work/$b/index.html"
  (cd "$work/$b" && exec "$bin" trace --ip 127.77.0.1 --name web -- python3 -m http.server 8000 >/dev/null 2>&1) & pids+=($!)
done
say "appswitch trace --ip 127.77.0.1 --name web -- python3 -m http.server 8000 &    # twice"
for _ in $(seq 200); do [[ $(grep -c 'health=up' "$mnt/services" 2>/dev/null) == 2 ]] && break; sleep 0.05; done
say "cat $mnt/services"
cat "$mnt/services"
say "for i in 1 2 3 4; do appswitch trace -- curl -s http://web:8000/; done    # by name, round robin"
for i in 1 2 3 4; do "$bin" trace -- curl -s http://web:8000/; done

say "echo 'deny connect 127.0.0.1:$port' > $mnt/policy"
echo "deny connect 127.0.0.1:$port" >"$mnt/policy"
say "cat $mnt/policy"
cat "$mnt/policy"
say "appswitch trace -- curl -sS http://127.0.0.1:$port/     # refused now"
"$bin" trace -- curl -sS "http://127.0.0.1:$port/" || echo "(curl exited with $?)"

say "echo 'deny conect any' > $mnt/policy        # a typo: refused, with a reason"
echo 'deny conect any' >"$mnt/policy" || true
say "cat $mnt/errors"
cat "$mnt/errors"

say "cat $mnt/events    # (running since the start; its last lines)"
tail -3 "$work/events.log"
say "cat $mnt/stats"
cat "$mnt/stats"
echo
echo "(stopping the daemon unmounts $mnt)"
