#!/bin/bash
# test: alone (three hosts of servers in network namespaces: no other test beside it)
# Many web hosts on one PostgreSQL (issue: "add web servers, keep one PostgreSQL"):
# three hosts, each a network namespace made here with its own loopback, lighttpd with
# both FastCGI handlers and the WebSocket sidecar (tests/lib/netns_host.sh), reaching the
# test's PostgreSQL over a veth pair (the cluster listens on 127.0.0.1 only: a forwarder,
# tests/lib/tcp_forward.py, takes each host's connections on the root side of its veth).
# Resuming clients of every transport on every host; events published from SQL and by
# POST {prefix}/publish on each host; mid-run one host's sidecar is killed with kill -9
# (started again after a while, on the same port: its clients reconnect to the same
# host); with pgcast-relay on every host (one LISTEN per host), one host's relay is
# killed with kill -9 too, and started again. Every client must get exactly the
# committed events, in order
# (three_hosts.py has the timeline and the checks).
#
# Needs root (network namespaces); without them the test fails, it does not skip.
# Size: MH_HOSTS (3), MH_DURATION (s of load, 16), MH_PER_KIND (clients of each kind per
# host, 1), MH_SQL_INTERVAL (s between SQL publishes, 0.1), MH_POST_INTERVAL (s between
# POSTs per host, 0.25); bench/bench_multihost.sh runs it bigger.
source "$PGCAST_ROOT/tests/lib/tap.sh"
N=${MH_HOSTS:-3}
tag=$$
nets=()
fwd_pid=

cleanup() {
    [ -n "$fwd_pid" ] && kill -TERM "$fwd_pid" 2>/dev/null && wait "$fwd_pid" 2>/dev/null
    for ns in "${nets[@]}"; do
        # whatever still runs in a namespace made here (its host's servers)
        pids=$(ip netns pids "$ns" 2>/dev/null)
        [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
        ip netns del "$ns" 2>/dev/null
    done
    for i in $(seq 0 $((N - 1))); do ip link del "pgmh${tag}r$i" 2>/dev/null; done
}
trap cleanup EXIT

if [ "$(id -u)" != 0 ]; then
    not_ok "network namespaces need root (CI runs as root): this test cannot run as $(id -un)"
    exit 1
fi
# a /24 in 10.213.0.0/16 that no interface here uses yet
for _ in $(seq 1 50); do
    net=10.213.$((RANDOM % 250 + 1))
    ip -4 -o addr show | grep -q " ${net//./\\.}\." || break
done
hosts=()
for i in $(seq 0 $((N - 1))); do
    ns="pgcast-mh$tag-h$i" root_if="pgmh${tag}r$i" ns_if="pgmh${tag}n$i"
    if ! err=$(ip netns add "$ns" 2>&1); then
        not_ok "a network namespace for host $i can be made (ip netns add $ns): $err"
        exit 1
    fi
    nets+=("$ns")
    db_addr="$net.$((4 * i + 1))" host_addr="$net.$((4 * i + 2))"
    if ! err=$( { ip link add "$root_if" type veth peer name "$ns_if" netns "$ns" &&
                 ip addr add "$db_addr/30" dev "$root_if" && ip link set "$root_if" up &&
                 ip -n "$ns" addr add "$host_addr/30" dev "$ns_if" && ip -n "$ns" link set "$ns_if" up &&
                 ip -n "$ns" link set lo up; } 2>&1); then
        not_ok "host $i: a veth pair to the database's namespace ($db_addr <-> $host_addr): $err"
        exit 1
    fi
    hosts+=("$ns|$db_addr|host=$db_addr port=$PGPORT user=${PGCAST_TEST_DB_USER:-postgres} dbname=$PGDATABASE")
done

# PostgreSQL listens on 127.0.0.1 here; each host reaches it at the root side of its veth
listen=()
for h in "${hosts[@]}"; do IFS='|' read -r _ a _ <<<"$h"; listen+=("$a:$PGPORT"); done
fwd_out="$PGCAST_TEST_WORK/mh-forward.$tag.out"
/usr/bin/python3 "$PGCAST_ROOT/tests/lib/tcp_forward.py" "127.0.0.1:$PGPORT" "${listen[@]}" >"$fwd_out" 2>&1 &
fwd_pid=$!
for _ in $(seq 1 100); do grep -q ready "$fwd_out" 2>/dev/null && break; sleep 0.1; done
if ! grep -q ready "$fwd_out"; then
    not_ok "the forwarder to PostgreSQL listens on ${listen[*]}"
    sed 's/^/# /' "$fwd_out"
    exit 1
fi

MH_HOSTSPEC=$(printf '%s\n' "${hosts[@]}") /usr/bin/python3 "$PGCAST_ROOT/tests/multihost/three_hosts.py"
