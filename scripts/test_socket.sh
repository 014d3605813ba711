#!/usr/bin/env bash
# CPython's test_socket untraced and under `appswitch trace --isolate`, both
# in a network namespace of their own (only lo, up), so nothing touches the
# host's network. Prints both counts (run, failures, errors, skipped) and the
# tests whose outcome differs; exits 1 if any does. About 70 s (two runs of
# about 35 s each on 2 cores). Not part of scripts/test.sh. docs/ISOLATION.md
# has the counts recorded.
#
# Needs root (unshare -n), ip (iproute2), and a python3 with CPython's test
# package: pyenv builds have it; Debian's /usr/bin/python3 needs
# libpython3.X-testsuite. PYTHON picks the interpreter (default: python3 in
# PATH), APPSWITCH the binary (default: target/debug/appswitch, built if
# missing), OUT the directory for the logs (default: a new temporary one).
#
# Excluded: ThreadedVSOCKSocketStreamTest hangs on these machines, untraced
# too. The guest's /dev/vsock exists, but its connect to the local CID never
# reaches the test's listener.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
IGNORE='*ThreadedVSOCKSocketStreamTest*'
if [[ $(id -u) -ne 0 ]]; then
  echo "test_socket.sh: needs root (unshare -n, trace --isolate)" >&2
  exit 2
fi
if ! "$PYTHON" -c 'import test.test_socket' 2>/dev/null; then
  v=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo "3.X")
  echo "test_socket.sh: $PYTHON ($(command -v "$PYTHON")) has no test package:" \
    "install libpython$v-testsuite (Debian's python3) or set PYTHON to one that has it" >&2
  exit 2
fi
if [[ -z ${APPSWITCH:-} ]]; then
  APPSWITCH=$PWD/target/debug/appswitch
  [[ -x $APPSWITCH ]] || cargo build -q --bin appswitch
fi
OUT=${OUT:-$(mktemp -d /tmp/test_socket.XXXXXX)}
mkdir -p "$OUT"
py=$(command -v "$PYTHON")
echo "test_socket.sh: $("$py" -c 'import sys; print(sys.executable, sys.version.split()[0])'), logs in $OUT"

# $1: name; the rest: the command that runs python (in the namespace).
run() {
  local name=$1
  shift
  local t0=$SECONDS
  # The exit status is test_socket's verdict, compared below: not fatal.
  unshare -n sh -c 'ip link set lo up && exec "$@"' sh "$@" \
    -m test test_socket -v -i "$IGNORE" --timeout 300 >"$OUT/$name.log" 2>&1 || true
  echo "$((SECONDS - t0))" >"$OUT/$name.secs"
  # One line per test: "NAME<TAB>outcome" (ok, skipped, FAIL, ERROR, ...).
  sed -nE 's/^([A-Za-z0-9_]+ \(test\.test_socket\.[^)]*\)) \.\.\. ([A-Za-z]+).*/\1\t\2/p' \
    "$OUT/$name.log" | sort >"$OUT/$name.tests"
}

# "run=N failures=N errors=N skipped=N (S s)" from a log.
counts() {
  local log=$OUT/$1.log ran f e s
  ran=$(sed -nE 's/^Ran ([0-9]+) tests? in .*/\1/p' "$log" | tail -1)
  f=$(grep -oE 'failures=[0-9]+' "$log" | tail -1 | cut -d= -f2)
  e=$(grep -oE 'errors=[0-9]+' "$log" | tail -1 | cut -d= -f2)
  s=$(grep -oE '(OK|FAILED) \(.*skipped=[0-9]+' "$log" | grep -oE 'skipped=[0-9]+' | tail -1 | cut -d= -f2)
  echo "run=${ran:-?} failures=${f:-0} errors=${e:-0} skipped=${s:-0} ($(cat "$OUT/$1.secs") s)"
}

run untraced "$py"
run isolated "$APPSWITCH" trace --isolate --no-daemon -- "$py"

u=$(counts untraced)
i=$(counts isolated)
echo "untraced, private namespace:  $u"
echo "trace --isolate --no-daemon:  $i"
if ! diff "$OUT/untraced.tests" "$OUT/isolated.tests" >"$OUT/diff"; then
  echo "test_socket.sh: outcomes differ (< untraced, > isolated):"
  cat "$OUT/diff"
  exit 1
fi
if [[ ${u% (*} != "${i% (*}" ]]; then
  echo "test_socket.sh: the counts differ" >&2
  exit 1
fi
echo "test_socket.sh: same outcome for each of the $(wc -l <"$OUT/untraced.tests") tests"
