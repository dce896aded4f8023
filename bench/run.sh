#!/bin/bash
# make bench: runs every bench/bench_*.sh in order; each prints its own figures and what
# they are compared with. BENCH=name runs only the ones whose name contains it.
cd "$(dirname "$0")/.." || exit 1
rc=0
for b in bench/bench_*.sh; do
    [ -n "${BENCH:-}" ] && [[ "$b" != *"$BENCH"* ]] && continue
    echo "=== $b"
    bash "$b" || { echo "$b failed" >&2; rc=1; }
    echo
done
exit $rc
