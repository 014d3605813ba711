#!/usr/bin/env bash
# The main job, end to end on loopback: build appswitch, start a local HTTP
# server, fetch from it with curl under the tracer, and show the recorded calls.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[[ -x $HOME/.cargo/bin/cargo ]] && export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release -q
bin=target/release/appswitch
work=$(mktemp -d)
server=""
cleanup() { [[ -n $server ]] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

echo "hello from a local server" > "$work/index.html"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$work" >/dev/null 2>&1 &
server=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.05; done

echo "\$ appswitch trace --events $work/events.jsonl -- curl -s http://127.0.0.1:$port/"
"$bin" trace --events "$work/events.jsonl" -- curl -s "http://127.0.0.1:$port/"
echo "exit status: $?"
echo
echo "recorded network calls:"
cat "$work/events.jsonl"
