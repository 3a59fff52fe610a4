#!/usr/bin/env bash
# Starts a 3-member skiff store on loopback in the background, on the ports of etcd's
# Procfile, and returns once every member answers. Data, logs and pid files go under
# .lab/store/. Run again after a crash: members that are not running are started
# again on their data, as etcd members restart.
#
#   SKIFF_STORE_CMD  the store command (default: "$SKIFF_BIN store", SKIFF_BIN defaulting
#                    to target/release/skiff); it gets etcd's flags, so
#                    SKIFF_STORE_CMD=/usr/bin/etcd runs the same lab on etcd.
#   LAB_TIMEOUT      seconds to wait for the members to answer (default 30).
#   LAB_PORT_OFFSET  added to every port (default 0), to run beside a store that holds
#                    the usual ones.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
lab="$root/.lab/store"
read -r -a store_cmd <<<"${SKIFF_STORE_CMD:-${SKIFF_BIN:-$root/target/release/skiff} store}"
timeout="${LAB_TIMEOUT:-30}"

offset="${LAB_PORT_OFFSET:-0}"

names=(n1 n2 n3)
client_ports=() peer_ports=() endpoint_list=()
for base in 2379 22379 32379; do
    client_ports+=($((base + offset)))
    peer_ports+=($((base + 1 + offset)))
    endpoint_list+=("127.0.0.1:$((base + offset))")
done
endpoints="$(IFS=,; echo "${endpoint_list[*]}")"

say() { printf 'lab: %s\n' "$*"; }
die() {
    printf 'lab: %s\n' "$*" >&2
    exit 1
}

usage() {
    cat <<USAGE

The store is up. Use it with:

  ETCDCTL_API=3 etcdctl --endpoints=$endpoints endpoint status -w table

For example:

  ETCDCTL_API=3 etcdctl --endpoints=$endpoints put greeting hello
  ETCDCTL_API=3 etcdctl --endpoints=$endpoints get greeting
  ETCDCTL_API=3 etcdctl --endpoints=$endpoints watch --prefix /   # in another terminal
  ETCDCTL_API=3 etcdctl --endpoints=$endpoints member list -w table

Logs: $lab/<member>.log   Stop and remove everything: make lab-down
USAGE
}

# A member that died is a zombie until this shell reaps it, and kill -0 still succeeds.
alive() {
    local pid
    pid="$(cat "$lab/$1.pid" 2>/dev/null)" || return 1
    [ -r "/proc/$pid/status" ] && ! grep -q '^State:.*zombie' "/proc/$pid/status"
}

to_start=()
for i in "${!names[@]}"; do
    if ! alive "${names[$i]}"; then
        to_start+=("$i")
    fi
done
if [ "${#to_start[@]}" -eq 0 ]; then
    say "already running (pids $(cat "$lab"/*.pid | tr '\n' ' '))"
    usage
    exit 0
fi

if ! command -v "${store_cmd[0]}" >/dev/null; then
    die "${store_cmd[0]} not found: run 'make build', or set SKIFF_STORE_CMD"
fi
if ! command -v etcdctl >/dev/null; then
    die "etcdctl not found: run 'make deps'"
fi
for i in "${to_start[@]}"; do
    for port in "${client_ports[$i]}" "${peer_ports[$i]}"; do
        if holder="$(ss -Hltnp "sport = :$port" | head -1)" && [ -n "$holder" ]; then
            die "port $port is taken: $holder"
        fi
    done
done

mkdir -p "$lab"
initial_cluster=""
for i in "${!names[@]}"; do
    initial_cluster+="${initial_cluster:+,}${names[$i]}=http://127.0.0.1:${peer_ports[$i]}"
done

started=()
for i in "${to_start[@]}"; do
    name="${names[$i]}"
    client="http://127.0.0.1:${client_ports[$i]}"
    peer="http://127.0.0.1:${peer_ports[$i]}"
    # setsid: the members outlive this script and make's process group.
    setsid "${store_cmd[@]}" \
        --name "$name" \
        --data-dir "$lab/$name" \
        --listen-client-urls "$client" \
        --advertise-client-urls "$client" \
        --listen-peer-urls "$peer" \
        --initial-advertise-peer-urls "$peer" \
        --initial-cluster "$initial_cluster" \
        --initial-cluster-state new \
        </dev/null >>"$lab/$name.log" 2>&1 &
    echo $! >"$lab/$name.pid"
    started+=("$name (pid $!)")
done
say "started ${store_cmd[*]}: ${started[*]}"

deadline=$((SECONDS + timeout))
until ETCDCTL_API=3 etcdctl --endpoints="$endpoints" --dial-timeout=1s --command-timeout=2s \
    endpoint health >/dev/null 2>&1; do
    for name in "${names[@]}"; do
        if ! alive "$name"; then
            say "$name exited; last lines of $lab/$name.log:" >&2
            tail -n 20 "$lab/$name.log" >&2
            "$root/lab/store-down.sh" --keep
            exit 1
        fi
    done
    if [ "$SECONDS" -ge "$deadline" ]; then
        say "members did not all answer within ${timeout}s; see $lab/*.log" >&2
        ETCDCTL_API=3 etcdctl --endpoints="$endpoints" --dial-timeout=1s endpoint health >&2 || true
        "$root/lab/store-down.sh" --keep
        exit 1
    fi
    sleep 0.5
done
say "all members answer"
usage
