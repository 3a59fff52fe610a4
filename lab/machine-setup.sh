#!/usr/bin/env bash
# Sets up one lab machine: writes the configuration of the skiff daemons it runs, one
# environment file per daemon (`<daemon>.env` holding SKIFF_ARGS, the daemon's flags)
# and a kubeconfig. It does not make the machine nor start anything: `skiffctl lab up`
# makes machines out of network namespaces and its supervisor runs every
# `skiff <daemon> $SKIFF_ARGS` listed in `units`, restarting those that fail, which is
# what a systemd template unit (EnvironmentFile=/etc/skiff/%i.env) does on a VM.
#
#   machine-setup.sh --role control-plane|worker --name NAME --ip IP
#                    --members cp1=IP,cp2=IP,...   the store members (control planes)
#                    --api-server URL              what workers talk to
#                    --etc DIR --data DIR          where config and state go
#                    [--image-dir DIR]             archives the kubelet imports
#                    [--registry HOST:PORT]        a plain-HTTP registry the kubelet trusts
#                    [--containerd-namespace NS]   (default k8s.io)
#                    [--node-monitor-grace-period 40s] [--toleration-seconds 300]
#
# Control planes run store, apiserver, scheduler and controller-manager; the scheduler
# and the controller-manager talk to their machine's own apiserver and elect a leader.
# Workers run kubelet and netd.
set -euo pipefail

die() {
    printf 'machine-setup: %s\n' "$*" >&2
    exit 2
}

role="" name="" ip="" members="" api_server="" etc="" data="" image_dir="" registry=""
containerd_namespace="k8s.io" grace="40s" toleration="300"
cluster_cidr="10.244.0.0/16" service_range="10.96.0.0/12" node_dns="169.254.20.10"
while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || die "$1 needs a value"
    case "$1" in
    --role) role="$2" ;;
    --name) name="$2" ;;
    --ip) ip="$2" ;;
    --members) members="$2" ;;
    --api-server) api_server="$2" ;;
    --etc) etc="$2" ;;
    --data) data="$2" ;;
    --image-dir) image_dir="$2" ;;
    --registry) registry="$2" ;;
    --containerd-namespace) containerd_namespace="$2" ;;
    --node-monitor-grace-period) grace="$2" ;;
    --toleration-seconds) toleration="$2" ;;
    *) die "unknown flag $1" ;;
    esac
    shift 2
done
for v in role name ip members etc data; do
    [ -n "${!v}" ] || die "--${v//_/-} is required"
done
case "$role" in
control-plane | worker) ;;
*) die "--role must be control-plane or worker, not $role" ;;
esac

mkdir -p "$etc" "$data"

# Written to a temporary file and renamed, so a supervisor never reads half a file.
write() {
    local file="$etc/$1"
    shift
    printf '%s\n' "$@" >"$file.tmp"
    mv -f "$file.tmp" "$file"
}

kubeconfig() {
    write kubeconfig \
        "apiVersion: v1" \
        "kind: Config" \
        "clusters:" \
        "- name: lab" \
        "  cluster:" \
        "    server: $1" \
        "users:" \
        "- name: $name" \
        "  user: {}" \
        "contexts:" \
        "- name: lab" \
        "  context:" \
        "    cluster: lab" \
        "    user: $name" \
        "current-context: lab"
}

if [ "$role" = control-plane ]; then
    initial_cluster="" etcd_servers=""
    IFS=, read -r -a member_list <<<"$members"
    for m in "${member_list[@]}"; do
        initial_cluster+="${initial_cluster:+,}${m%%=*}=http://${m#*=}:2380"
        etcd_servers+="${etcd_servers:+,}http://${m#*=}:2379"
    done
    kubeconfig "http://$ip:6443"
    write store.env "SKIFF_ARGS=--name=$name --data-dir=$data/store \
--listen-client-urls=http://$ip:2379 --advertise-client-urls=http://$ip:2379 \
--listen-peer-urls=http://$ip:2380 --initial-advertise-peer-urls=http://$ip:2380 \
--initial-cluster=$initial_cluster --initial-cluster-state=new"
    write apiserver.env "SKIFF_ARGS=--etcd-servers=$etcd_servers --bind-address=$ip \
--secure-port=6443 --service-cluster-ip-range=$service_range \
--default-not-ready-toleration-seconds=$toleration \
--default-unreachable-toleration-seconds=$toleration"
    write scheduler.env "SKIFF_ARGS=--kubeconfig=$etc/kubeconfig --leader-elect=true"
    write controller-manager.env "SKIFF_ARGS=--kubeconfig=$etc/kubeconfig --leader-elect=true \
--cluster-cidr=$cluster_cidr --node-cidr-mask-size=24 --node-monitor-grace-period=$grace"
    write units store apiserver scheduler controller-manager
else
    [ -n "$api_server" ] || die "--api-server is required for a worker"
    kubeconfig "$api_server"
    mkdir -p "$etc/cni/net.d"
    registry_flag=""
    if [ -n "$registry" ]; then
        # containers-registries.conf(5): the lab's registry speaks plain HTTP.
        write registries.conf "[[registry]]
location = \"$registry\"
insecure = true"
        registry_flag=" --registry-config=$etc/registries.conf"
    fi
    write kubelet.env "SKIFF_ARGS=--kubeconfig=$etc/kubeconfig --hostname-override=$name \
--node-ip=$ip --root-dir=$data/kubelet --pod-logs-dir=$data/pods \
--containerd-namespace=$containerd_namespace --cni-conf-dir=$etc/cni/net.d \
--cni-bin-dir=/usr/lib/cni,/opt/cni/bin --cluster-dns=$node_dns${image_dir:+ --image-dir=$image_dir}$registry_flag"
    write netd.env "SKIFF_ARGS=--kubeconfig=$etc/kubeconfig --hostname-override=$name \
--iface=eth0 --cluster-cidr=$cluster_cidr --service-cluster-ip-range=$service_range \
--cni-conf-dir=$etc/cni/net.d --cni-ipam-data-dir=$data/cni --dns-address=$node_dns"
    write units kubelet netd
fi
