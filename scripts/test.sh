#!/usr/bin/env bash
# The test command: install what the tests use, then run every test
# (unit tests and integration tests against real programs). Run as root:
# the tests trace programs and mount the control filesystem.
#
# The integration tests run once per interception backend (issue 14):
# APPSWITCH_BACKEND, which every `appswitch trace` a test starts inherits,
# picks it. The first backend's pass runs the whole suite (unit tests too);
# each further pass runs the integration tests again, except the ones that
# trace nothing (NOT_TRACED). Tests about one backend pin it themselves
# (`trace --backend ptrace`, tests/common PTRACE), whatever the pass.
set -euo pipefail
cd "$(dirname "$0")/.."

# The backends, one pass each (TEST_BACKENDS="unotify" runs only that one).
# The first runs every test; the others rerun the tests that trace.
BACKENDS=${TEST_BACKENDS:-"unotify ptrace"}
# Integration test files (tests/NAME.rs) that start no trace: run once.
NOT_TRACED="layout package sockdiag"

scripts/setup.sh
[[ -x $HOME/.cargo/bin/cargo ]] && export PATH="$HOME/.cargo/bin:$PATH"
threads="${TEST_THREADS:-4}"
cargo build --workspace --all-targets

shopt -s nullglob
read -r -a backends <<<"$BACKENDS"
again=()
for f in tests/*.rs; do
  name=$(basename "$f" .rs)
  [[ " $NOT_TRACED " == *" $name "* ]] || again+=(--test "$name")
done

failed=()
echo "== tests, backend ${backends[0]}: the whole suite"
APPSWITCH_BACKEND=${backends[0]} cargo test --workspace --all-targets --no-fail-fast -- --test-threads="$threads" ||
  failed+=("${backends[0]}")
for b in "${backends[@]:1}"; do
  echo "== tests, backend $b: the integration tests that trace"
  APPSWITCH_BACKEND=$b cargo test -p appswitch --no-fail-fast "${again[@]}" -- --test-threads="$threads" ||
    failed+=("$b")
done
if ((${#failed[@]})); then
  echo "test.sh: tests failed under backend(s): ${failed[*]}" >&2
  exit 1
fi
