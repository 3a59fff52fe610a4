#!/usr/bin/env bash
# Starts `skiff apiserver` on 127.0.0.1:6443 over the lab's store (lab/store-up.sh),
# writes a kubeconfig for it to .lab/kubeconfig, and returns once it is ready. Run
# again after a crash: a running apiserver is left alone.
#
#   LAB_TIMEOUT      seconds to wait for /readyz (default 30).
#   LAB_PORT_OFFSET  added to every port (default 0), as in lab/store-up.sh.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
lab="$root/.lab/apiserver"
skiff="${SKIFF_BIN:-$root/target/release/skiff}"
timeout="${LAB_TIMEOUT:-30}"
offset="${LAB_PORT_OFFSET:-0}"
port=$((6443 + offset))
endpoints="http://127.0.0.1:$((2379 + offset)),http://127.0.0.1:$((22379 + offset)),http://127.0.0.1:$((32379 + offset))"
kubeconfig="$root/.lab/kubeconfig"

say() { printf 'lab: %s\n' "$*"; }
die() {
    printf 'lab: %s\n' "$*" >&2
    exit 1
}

usage() {
    cat <<USAGE

The API server is up at http://127.0.0.1:$port. Use it with the real kubectl:

  export KUBECONFIG=$kubeconfig
  kubectl get namespaces
  kubectl apply -f tests/manifests/nginx-deployment.yaml
  kubectl get deployments -o wide
  kubectl get all -A

Nothing runs pods yet (the scheduler, controllers and kubelet come later), so objects
are stored, validated and watched, not acted on.
Logs: $lab/apiserver.log   Stop and remove everything: make lab-down
USAGE
}

alive() {
    local pid
    pid="$(cat "$lab/apiserver.pid" 2>/dev/null)" || return 1
    [ -r "/proc/$pid/status" ] && ! grep -q '^State:.*zombie' "/proc/$pid/status"
}

mkdir -p "$lab"
cat >"$kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: skiff-lab
  cluster:
    server: http://127.0.0.1:$port
users:
- name: skiff-lab
  user: {}
contexts:
- name: skiff-lab
  context:
    cluster: skiff-lab
    user: skiff-lab
    namespace: default
current-context: skiff-lab
KUBECONFIG

if alive; then
    say "apiserver already running (pid $(cat "$lab/apiserver.pid"))"
    usage
    exit 0
fi
[ -x "$skiff" ] || die "$skiff not found: run 'make build', or set SKIFF_BIN"
if holder="$(ss -Hltnp "sport = :$port" | head -1)" && [ -n "$holder" ]; then
    die "port $port is taken: $holder"
fi
setsid "$skiff" apiserver \
    --etcd-servers "$endpoints" \
    --bind-address 127.0.0.1 \
    --secure-port "$port" \
    </dev/null >>"$lab/apiserver.log" 2>&1 &
echo $! >"$lab/apiserver.pid"
say "started $skiff apiserver (pid $!)"

deadline=$((SECONDS + timeout))
until curl -sf -m 2 "http://127.0.0.1:$port/readyz" >/dev/null; do
    if ! alive; then
        say "the apiserver exited; last lines of $lab/apiserver.log:" >&2
        tail -n 20 "$lab/apiserver.log" >&2
        exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        die "the apiserver was not ready within ${timeout}s; see $lab/apiserver.log"
    fi
    sleep 0.3
done
say "the apiserver is ready"
usage
