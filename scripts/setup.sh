#!/usr/bin/env bash
# Install what appswitch's build, tests, demo and benchmarks use (Debian/Ubuntu, as root).
# Idempotent and quick when everything is already there.
set -euo pipefail

PACKAGES=(
  gcc libc6-dev pkg-config libseccomp-dev   # build: libseccomp for the BPF filter
  curl python3 busybox-static golang-go     # programs the tests trace
  iproute2 fuse3 hyperfine iperf3           # namespaces, control fs, bench tools
  strace gdb                                # debuggers under trace (tests/debuggers.rs, nested ptrace); strace is the bench's reference too
  nginx apache2-utils wrk                   # stock servers for tests; ab and wrk for the short-connection bench
  redis-server redis-tools memcached dnsmasq-base   # stock servers the service tests run
  etcd-server protobuf-compiler             # cluster tests (a private etcd); protoc builds etcd-client
  python3-prometheus-client                 # the metrics test parses /appswitch/metrics with it
  podman runc                               # tests/containers.rs: a --network none container under trace --isolate (crun cannot run on these hosts' hybrid cgroups)
  dpkg-dev binutils man-db systemd lintian  # scripts/package.sh (dpkg-shlibdeps, strip); its test (man -l, systemd-analyze, lintian)
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup.sh: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # etcd-server would start a system-wide etcd: the tests run their own, so
  # keep package scripts from starting services during this install.
  made_policy=
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
  fi
  apt-get install -y -q --no-install-recommends "${missing[@]}" || { [[ -n $made_policy ]] && rm -f /usr/sbin/policy-rc.d; exit 1; }
  [[ -n $made_policy ]] && rm -f /usr/sbin/policy-rc.d
fi

if ! command -v cargo >/dev/null; then
  for d in "$HOME/.cargo/bin" /root/.cargo/bin; do [[ -x $d/cargo ]] && export PATH="$d:$PATH"; done
fi
command -v cargo >/dev/null || { echo "setup.sh: cargo not found; install Rust (rustup) first" >&2; exit 1; }
