#!/usr/bin/env bash
# The test command: install what the tests use, then run every test
# (unit tests and integration tests against real programs). Run as root:
# the tests trace programs with ptrace and, later, mount the control filesystem.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[[ -x $HOME/.cargo/bin/cargo ]] && export PATH="$HOME/.cargo/bin:$PATH"
cargo build --workspace --all-targets
cargo test --workspace --all-targets -- --test-threads="${TEST_THREADS:-4}"
