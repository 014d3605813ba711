#!/bin/sh
# Median stop time over 10 attaches, each to a fresh target (4 and 50 threads).
for n in 4 50; do
  for i in 1 2 3 4 5 6 7 8 9 10; do
    ./target $n >/dev/null 2>&1 & P=$!; sleep 0.3
    ./inject $P 0 | sed 's/.*stop_us=\([0-9]*\).*/\1/'
    kill $P; wait $P 2>/dev/null
  done | sort -n | tr '\n' ' ' | awk -v n=$n '{printf "threads=%d stop_us sorted: %s median=%.0f\n", n, $0, ($5+$6)/2}'
done
