#!/usr/bin/env bash
# Installs what skiff's build, tests and lab need, and only what is missing.
set -euo pipefail

packages=(
    protobuf-compiler # protoc, for the gRPC code generation in build scripts
    libprotobuf-dev   # the well-known types protoc imports (google/protobuf/*.proto)
    etcd-server       # /usr/bin/etcd: the reference the store is tested and benchmarked against
    etcd-client       # /usr/bin/etcdctl: compatibility tests, check perf, the lab
    iproute2          # ip: network namespaces, veth, VXLAN for the lab and fault tests
    nftables          # service rules and link cuts
    iptables
    curl              # raw HTTP/2 requests in the bad-input tests
    containerd        # the kubelet's container runtime (gRPC on /run/containerd/containerd.sock)
    runc              # containerd's OCI runtime
    containernetworking-plugins # CNI plugins in /usr/lib/cni: bridge, host-local, loopback
    busybox-static    # the one binary in the test images (tests/images/build.sh)
    docker-registry   # a local OCI registry holding the test images
    skopeo            # pushes the test images to that registry
    iperf3            # bench_netd: pod-to-pod and node-to-node TCP throughput
    iputils-ping      # bench_netd: round-trip latency
    tzdata            # /usr/share/zoneinfo: CronJob time zones (spec.timeZone)
    ca-certificates   # /etc/ssl/certs: the CAs the kubelet trusts for HTTPS registries
    openssl           # the registry test's self-signed certificate
)

say() { printf 'deps: %s\n' "$*"; }

if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null; then
    sudo=(sudo)
else
    say "not root and no sudo: cannot install packages" >&2
    exit 1
fi

missing=()
for p in "${packages[@]}"; do
    if ! dpkg -s "$p" >/dev/null 2>&1; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    # Debian's etcd-server starts an etcd on 2379/2380 and docker-registry one on 5000
    # when they can; tests and the lab need those ports and start their own. A policy-rc.d answering 101 stops services from being started
    # during the install; one that already exists is left as it is.
    policy=/usr/sbin/policy-rc.d
    made_policy=false
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod 755 "$policy"
        made_policy=true
    fi
    export DEBIAN_FRONTEND=noninteractive
    status=0
    "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" || status=$?
    if "$made_policy"; then
        "${sudo[@]}" rm -f "$policy"
    fi
    if [ "$status" -ne 0 ]; then
        say "apt-get failed (exit $status)" >&2
        exit "$status"
    fi
else
    say "system packages present"
fi

# The packaged etcd service, if something did start it, holds the ports the lab uses.
if [ -d /run/systemd/system ]; then
    if systemctl is-enabled --quiet etcd 2>/dev/null || systemctl is-active --quiet etcd 2>/dev/null; then
        say "stopping and disabling the packaged etcd service"
        "${sudo[@]}" systemctl disable --now etcd >/dev/null 2>&1 || true
    fi
elif [ -x /etc/init.d/etcd ] && /etc/init.d/etcd status >/dev/null 2>&1; then
    say "stopping the packaged etcd service"
    "${sudo[@]}" /etc/init.d/etcd stop >/dev/null 2>&1 || true
fi
for port in 2379 2380; do
    if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
        say "warning: something still listens on port $port (make lab will not start): $(ss -Hltnp "sport = :$port" | head -1)" >&2
    fi
done

# containerd is not started by anything on machines without systemd; the kubelet tests
# and the lab need it. Its default config is used; its log goes to /var/log.
containerd_sock=/run/containerd/containerd.sock
if [ -S "$containerd_sock" ] && ctr --address "$containerd_sock" version >/dev/null 2>&1; then
    say "containerd running"
else
    if [ -d /run/systemd/system ] && systemctl list-unit-files containerd.service >/dev/null 2>&1; then
        say "starting containerd (systemd)"
        "${sudo[@]}" systemctl start containerd
    else
        say "starting containerd (log: /var/log/skiff-containerd.log)"
        "${sudo[@]}" setsid sh -c 'exec containerd >>/var/log/skiff-containerd.log 2>&1' </dev/null &
    fi
    for _ in $(seq 1 50); do
        if ctr --address "$containerd_sock" version >/dev/null 2>&1; then
            break
        fi
        sleep 0.2
    done
    if ! ctr --address "$containerd_sock" version >/dev/null 2>&1; then
        say "containerd did not answer on $containerd_sock (see /var/log/skiff-containerd.log)" >&2
        exit 1
    fi
    say "containerd running"
fi

if cargo nextest --version >/dev/null 2>&1; then
    say "cargo-nextest present"
else
    say "installing cargo-nextest"
    cargo install cargo-nextest --locked
fi
