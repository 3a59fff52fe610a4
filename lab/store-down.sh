#!/usr/bin/env bash
# Stops the apiserver and the store members that lab/apiserver-up.sh and
# lab/store-up.sh started (SIGTERM, then SIGKILL after 10 s) and removes .lab/. With
# --keep, stops them but keeps .lab/ (data and logs).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
lab="$root/.lab/store"
keep=false
if [ "${1:-}" = "--keep" ]; then
    keep=true
fi

say() { printf 'lab: %s\n' "$*"; }

# Only pids recorded by store-up.sh, and only while they still run a member of this
# lab (the pid may have been reused since).
pids=()
shopt -s nullglob
for pidfile in "$lab"/*.pid; do
    pid="$(cat "$pidfile")"
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "--data-dir $lab/"; then
        pids+=("$pid")
    fi
    rm -f "$pidfile"
done
apiserver_pidfile="$root/.lab/apiserver/apiserver.pid"
if [ -f "$apiserver_pidfile" ]; then
    pid="$(cat "$apiserver_pidfile")"
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- " apiserver "; then
        pids+=("$pid")
    fi
    rm -f "$apiserver_pidfile"
fi

if [ "${#pids[@]}" -gt 0 ]; then
    say "stopping pids ${pids[*]}"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 100); do
        left=()
        for pid in "${pids[@]}"; do
            if kill -0 "$pid" 2>/dev/null; then
                left+=("$pid")
            fi
        done
        [ "${#left[@]}" -eq 0 ] && break
        sleep 0.1
    done
    if [ "${#left[@]}" -gt 0 ]; then
        say "still running after 10 s, killing ${left[*]}"
        kill -KILL "${left[@]}" 2>/dev/null || true
    fi
else
    say "no lab processes running"
fi

if ! "$keep"; then
    rm -rf "$root/.lab"
    say "removed $root/.lab"
fi
