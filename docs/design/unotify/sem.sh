#!/bin/bash
# A black hole: a route through a veth whose far end drops everything, with a
# permanent neighbour entry so SYNs leave (a `blackhole` route fails connect at once with EINVAL).
set -e
ip link set lo up
ip link add bh0 type veth peer name bh1
ip link set bh0 up; ip link set bh1 up
ip route add 203.0.113.0/24 dev bh0
ip neigh add 203.0.113.1 lladdr 02:00:00:00:00:01 dev bh0 nud permanent
exec "$@"
