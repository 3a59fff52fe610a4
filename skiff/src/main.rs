//! `skiff <daemon> [flags]`: one binary, one daemon per process. `main` only parses
//! flags, starts tracing and calls the daemon's `run`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use skiff_store::config::{parse_initial_cluster, parse_url, parse_urls, ClusterState};
use skiff_store::StoreConfig;

#[derive(Parser)]
#[command(
    name = "skiff",
    version,
    about = "skiff's daemons: run one per process"
)]
struct Cli {
    #[command(subcommand)]
    daemon: Daemon,
}

#[derive(Subcommand)]
enum Daemon {
    /// The store: an etcd v3-compatible, Raft-replicated key-value store.
    Store(StoreFlags),
    /// The API server: Kubernetes REST over the store.
    Apiserver(ApiserverFlags),
    /// The scheduler: binds pending pods to nodes.
    Scheduler(SchedulerFlags),
    /// The controller manager: ReplicaSets, garbage collection, namespaces, ….
    ControllerManager(ControllerManagerFlags),
    /// The node agent: registers the Node and runs its pods through containerd.
    Kubelet(KubeletFlags),
    /// The node network daemon: VXLAN overlay, Service rules (nftables), cluster DNS.
    Netd(NetdFlags),
}

/// kube-scheduler's flags, with its names and defaults.
#[derive(Args)]
struct SchedulerFlags {
    /// Path to a kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Start a leader election client and gain leadership before scheduling.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    leader_elect: bool,
    /// How long a non-leader waits after the last observed renewal before taking over.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    leader_elect_lease_duration: Duration,
    /// How long the leader keeps retrying to renew before it stops leading.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    leader_elect_renew_deadline: Duration,
    /// Time between attempts to acquire or renew leadership.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    leader_elect_retry_period: Duration,
    /// Namespace of the leader election Lease.
    #[arg(long, default_value = "kube-system")]
    leader_elect_resource_namespace: String,
    /// Name of the leader election Lease.
    #[arg(long, default_value = "kube-scheduler")]
    leader_elect_resource_name: String,
    /// The IP address to serve /healthz and /metrics on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: std::net::IpAddr,
    /// The port for /healthz and /metrics (plain HTTP until TLS lands; 0 picks one).
    #[arg(long, default_value_t = skiff_scheduler::daemon::DEFAULT_PORT)]
    secure_port: u16,
}

/// kube-controller-manager's flags, with its names and defaults.
#[derive(Args)]
struct ControllerManagerFlags {
    /// Path to a kubeconfig file with the API server's address.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Elect a leader among replicas through a Lease and run only while leading.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    leader_elect: bool,
    /// How long a non-leader waits after the last observed renewal before taking over.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    leader_elect_lease_duration: Duration,
    /// How long the leader keeps trying to renew before it stops leading.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    leader_elect_renew_deadline: Duration,
    /// Time between attempts to acquire or renew leadership.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    leader_elect_retry_period: Duration,
    /// The kind of lock object (only `leases`).
    #[arg(long, default_value = "leases", value_parser = ["leases"])]
    leader_elect_resource_lock: String,
    /// The name of the Lease.
    #[arg(long, default_value = "kube-controller-manager")]
    leader_elect_resource_name: String,
    /// The namespace of the Lease.
    #[arg(long, default_value = "kube-system")]
    leader_elect_resource_namespace: String,
    /// CIDR range for pods in the cluster, split into one podCIDR per node.
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: String,
    /// Prefix length of each node's podCIDR.
    #[arg(long, default_value_t = 24)]
    node_cidr_mask_size: u8,
    /// How often the node lifecycle controller checks nodes.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    node_monitor_period: Duration,
    /// Silence (no Lease renewal, no status) after which a node is Ready=Unknown and
    /// tainted unreachable.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    node_monitor_grace_period: Duration,
    /// Controllers to run: '*' for all on by default, 'foo' to enable, '-foo' to disable.
    #[arg(long, default_value = "*")]
    controllers: String,
    /// The IP address for /healthz and /metrics.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: std::net::IpAddr,
    /// The port for /healthz and /metrics (plain HTTP until TLS lands).
    #[arg(long, default_value_t = 10257)]
    secure_port: u16,
}

impl ControllerManagerFlags {
    fn into_config(self) -> Result<skiff_controllers::Config, skiff_controllers::Error> {
        let _ = self.leader_elect_resource_lock;
        Ok(skiff_controllers::Config {
            kubeconfig: self.kubeconfig,
            leader_elect: self.leader_elect,
            leader_election: skiff_controllers::LeaderElectionConfig {
                lease_duration: self.leader_elect_lease_duration,
                renew_deadline: self.leader_elect_renew_deadline,
                retry_period: self.leader_elect_retry_period,
                release_on_shutdown: true,
            },
            lease_namespace: self.leader_elect_resource_namespace,
            lease_name: self.leader_elect_resource_name,
            cluster_cidr: self.cluster_cidr,
            node_cidr_mask_size: self.node_cidr_mask_size,
            node_lifecycle: skiff_controllers::node_lifecycle::Timing {
                monitor_period: self.node_monitor_period,
                grace_period: self.node_monitor_grace_period,
            },
            controllers: skiff_controllers::Selection::parse(&self.controllers)?,
            bind_address: self.bind_address,
            secure_port: self.secure_port,
        })
    }
}

/// Parses Go-style durations as Kubernetes flags take them: `15s`, `500ms`, `1m30s`, `2h`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration such as 15s, 500ms or 1m30s");
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "ns" => value / 1e9,
            "us" | "µs" => value / 1e6,
            "ms" => value / 1000.0,
            "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            _ => return Err(bad()),
        };
        total += Duration::try_from_secs_f64(secs).map_err(|_| bad())?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

impl SchedulerFlags {
    fn into_config(self) -> Result<skiff_scheduler::Config, skiff_scheduler::Error> {
        if self.leader_elect_renew_deadline >= self.leader_elect_lease_duration {
            return Err(skiff_scheduler::Error::Config(
                "--leader-elect-renew-deadline must be shorter than --leader-elect-lease-duration"
                    .into(),
            ));
        }
        if self.leader_elect_retry_period.is_zero() {
            return Err(skiff_scheduler::Error::Config(
                "--leader-elect-retry-period must be positive".into(),
            ));
        }
        Ok(skiff_scheduler::Config {
            kubeconfig: self.kubeconfig,
            leader_elect: self.leader_elect,
            leader_election: skiff_client::LeaderElectionConfig {
                lease_duration: self.leader_elect_lease_duration,
                renew_deadline: self.leader_elect_renew_deadline,
                retry_period: self.leader_elect_retry_period,
                release_on_shutdown: true,
            },
            lease_namespace: self.leader_elect_resource_namespace,
            lease_name: self.leader_elect_resource_name,
            listen: std::net::SocketAddr::new(self.bind_address, self.secure_port),
            ..skiff_scheduler::Config::default()
        })
    }
}

/// The kubelet's flags, with Kubernetes' names and defaults.
#[derive(Args)]
struct KubeletFlags {
    /// Path to a kubeconfig file for the API server (else $KUBECONFIG, ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The node's name, instead of the machine's hostname.
    #[arg(long)]
    hostname_override: Option<String>,
    /// The node's IP address (its InternalIP and the pods' hostIP).
    #[arg(long)]
    node_ip: Option<std::net::IpAddr>,
    /// Directory for the kubelet's files (pods' /etc files, namespaces, logs).
    #[arg(long, default_value = "/var/lib/kubelet")]
    root_dir: PathBuf,
    /// containerd's endpoint.
    #[arg(long, default_value = "unix:///run/containerd/containerd.sock")]
    container_runtime_endpoint: String,
    /// The containerd namespace holding this kubelet's images and containers.
    #[arg(long, default_value = "k8s.io")]
    containerd_namespace: String,
    /// Directories with the CNI plugin binaries (comma- or colon-separated).
    #[arg(long, default_value = "/opt/cni/bin,/usr/lib/cni")]
    cni_bin_dir: String,
    /// Directory with the CNI network configuration (the first file by name is used).
    #[arg(long, default_value = "/etc/cni/net.d")]
    cni_conf_dir: PathBuf,
    /// Taints the node registers with: key=value:Effect,…
    #[arg(long, default_value = "")]
    register_with_taints: String,
    /// Labels the node registers with: key=value,…
    #[arg(long, default_value = "")]
    node_labels: String,
    /// Cluster DNS server IPs, comma-separated (pods' nameservers for ClusterFirst).
    #[arg(long, default_value = "")]
    cluster_dns: String,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Directory of image archives (OCI archives, optionally gzipped) imported at start
    /// and when added.
    #[arg(long)]
    image_dir: Option<PathBuf>,
    /// Per-registry settings (plain HTTP, mirrors, blocked) in the version 2 format of
    /// containers-registries.conf(5), the file CRI-O and podman read.
    #[arg(long)]
    registry_config: Option<PathBuf>,
    /// A pull fails when a registry sends nothing for this long (a request unanswered,
    /// a blob that stops flowing), as the kubelet's --image-pull-progress-deadline did.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    image_pull_progress_deadline: std::time::Duration,
    /// Directory of the containers' log files (<namespace>_<pod>_<uid>/<container>/<n>.log).
    #[arg(long, default_value = "/var/log/pods")]
    pod_logs_dir: PathBuf,
    /// A container's log file is rotated when it reaches this size (a quantity: 10Mi).
    #[arg(long, default_value = "10Mi")]
    container_log_max_size: String,
    /// Log files kept per container, the live one included.
    #[arg(long, default_value_t = 5)]
    container_log_max_files: usize,
    /// Address of the /healthz and /metrics endpoint.
    #[arg(long, default_value = "127.0.0.1")]
    healthz_bind_address: std::net::IpAddr,
    /// Port of the /healthz and /metrics endpoint.
    #[arg(long, default_value_t = 10248)]
    healthz_port: u16,
    /// Address of the kubelet's API (exec, logs) that the apiserver proxies to.
    #[arg(long, default_value = "0.0.0.0")]
    address: std::net::IpAddr,
    /// Port of the kubelet's API; 0 picks a free one, which the Node reports.
    #[arg(long, default_value_t = 10250)]
    port: u16,
}

impl KubeletFlags {
    fn into_config(self) -> Result<skiff_kubelet::Config, skiff_kubelet::Error> {
        let bad = |m: String| skiff_kubelet::Error::Config(m);
        let socket = self
            .container_runtime_endpoint
            .strip_prefix("unix://")
            .ok_or_else(|| {
                bad(format!(
                    "--container-runtime-endpoint {:?}: only unix:// endpoints are supported",
                    self.container_runtime_endpoint
                ))
            })?;
        let cluster_dns = self
            .cluster_dns
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse()
                    .map_err(|_| bad(format!("--cluster-dns: {s:?} is not an IP address")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let node_name = self
            .hostname_override
            .unwrap_or_else(skiff_kubelet::hostname);
        if node_name.is_empty() {
            return Err(bad("the node name is empty".into()));
        }
        Ok(skiff_kubelet::Config {
            kubeconfig: self.kubeconfig,
            node_name,
            node_ip: self.node_ip,
            root_dir: self.root_dir,
            containerd_socket: PathBuf::from(socket),
            containerd_namespace: self.containerd_namespace,
            cni_bin_dirs: self
                .cni_bin_dir
                .split([',', ':'])
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect(),
            cni_conf_dir: self.cni_conf_dir,
            node_labels: skiff_kubelet::node::parse_labels(&self.node_labels)?,
            register_with_taints: skiff_kubelet::node::parse_taints(&self.register_with_taints)?,
            cluster_dns,
            cluster_domain: self.cluster_domain,
            image_dir: self.image_dir,
            registries: match &self.registry_config {
                Some(path) => skiff_kubelet::registries::RegistryConfig::load(path)?,
                None => Default::default(),
            },
            image_pull_progress_deadline: self.image_pull_progress_deadline,
            pod_logs_dir: self.pod_logs_dir,
            log_rotation: skiff_kubelet::logs::Rotation::parse(
                &self.container_log_max_size,
                self.container_log_max_files,
            )?,
            healthz: std::net::SocketAddr::new(self.healthz_bind_address, self.healthz_port),
            api: std::net::SocketAddr::new(self.address, self.port),
        })
    }
}

/// netd's flags: flannel's and kube-proxy's names where they have one.
#[derive(Args)]
struct NetdFlags {
    /// Path to a kubeconfig file for the API server (else $KUBECONFIG, ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// This node's name, instead of the machine's hostname.
    #[arg(long)]
    hostname_override: Option<String>,
    /// The underlay interface VXLAN traffic leaves by (default: the default route's).
    #[arg(long)]
    iface: Option<String>,
    /// CIDR range of all pods (the controller-manager's --cluster-cidr).
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: String,
    /// CIDR range of Service cluster IPs (the apiserver's --service-cluster-ip-range).
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cluster_ip_range: String,
    /// Directory netd writes the kubelet's CNI network configuration into.
    #[arg(long, default_value = "/etc/cni/net.d")]
    cni_conf_dir: PathBuf,
    /// host-local IPAM's state directory (default: the plugin's /var/lib/cni/networks).
    #[arg(long)]
    cni_ipam_data_dir: Option<PathBuf>,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Port of cluster DNS (0: no cluster DNS).
    #[arg(long, default_value_t = 53)]
    dns_port: u16,
    /// Node-local address for cluster DNS, the same on every node (for example
    /// 169.254.20.10, as NodeLocal DNSCache uses), put on the loopback device; give it
    /// to every kubelet as --cluster-dns. Unset: the node's bridge address.
    #[arg(long)]
    dns_address: Option<std::net::Ipv4Addr>,
    /// resolv.conf naming the upstream resolver for names outside the cluster.
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// Address of /metrics and /healthz.
    #[arg(long, default_value = "0.0.0.0:10249")]
    metrics_bind_address: std::net::SocketAddr,
    /// How often the overlay is compared with the API even without changes.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    sync_period: Duration,
}

impl NetdFlags {
    fn into_config(self) -> Result<skiff_netd::Config, skiff_netd::Error> {
        let bad =
            |flag: &str, e: skiff_netd::Error| skiff_netd::Error::Config(format!("{flag}: {e}"));
        let node_name = self
            .hostname_override
            .unwrap_or_else(skiff_kubelet::hostname);
        if node_name.is_empty() {
            return Err(skiff_netd::Error::Config("the node name is empty".into()));
        }
        Ok(skiff_netd::Config {
            kubeconfig: self.kubeconfig,
            node_name,
            iface: self.iface,
            cluster_cidr: self
                .cluster_cidr
                .parse()
                .map_err(|e| bad("--cluster-cidr", e))?,
            service_cluster_ip_range: self
                .service_cluster_ip_range
                .parse()
                .map_err(|e| bad("--service-cluster-ip-range", e))?,
            cni_conf_dir: self.cni_conf_dir,
            ipam_data_dir: self.cni_ipam_data_dir,
            cluster_domain: self.cluster_domain,
            dns_port: self.dns_port,
            dns_address: self.dns_address,
            resolv_conf: self.resolv_conf,
            metrics: self.metrics_bind_address,
            sync_period: self.sync_period,
        })
    }
}

/// kube-apiserver's flags, with its names and defaults.
#[derive(Args)]
struct ApiserverFlags {
    /// The store's client URLs, comma-separated.
    #[arg(long, default_value = "http://127.0.0.1:2379")]
    etcd_servers: String,
    /// The IP address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: std::net::IpAddr,
    /// The port to serve on (plain HTTP until TLS lands).
    #[arg(long, default_value_t = 6443)]
    secure_port: u16,
    /// A CIDR range of IPs to assign Service cluster IPs from.
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cluster_ip_range: String,
    /// TLS serving certificate (not supported yet).
    #[arg(long)]
    tls_cert_file: Option<PathBuf>,
    /// TLS serving key (not supported yet).
    #[arg(long)]
    tls_private_key_file: Option<PathBuf>,
    /// CA for client certificates (not supported yet).
    #[arg(long)]
    client_ca_file: Option<PathBuf>,
    /// The tolerationSeconds of the not-ready:NoExecute toleration added to every pod
    /// that has none.
    #[arg(long, default_value_t = 300)]
    default_not_ready_toleration_seconds: i64,
    /// The tolerationSeconds of the unreachable:NoExecute toleration added to every pod
    /// that has none.
    #[arg(long, default_value_t = 300)]
    default_unreachable_toleration_seconds: i64,
    /// PEM private key (PKCS#8 P-256 or RSA, or PKCS#1 RSA) that signs service account
    /// tokens; without it the apiservers share one they keep in the store.
    #[arg(long)]
    service_account_signing_key_file: Option<PathBuf>,
    /// The `iss` claim of service account tokens.
    #[arg(long, default_value = skiff_apiserver::tokens::DEFAULT_ISSUER)]
    service_account_issuer: String,
    /// Audiences of tokens whose request names none, comma-separated (default: the
    /// issuer).
    #[arg(long, default_value = "")]
    api_audiences: String,
}

impl ApiserverFlags {
    fn into_config(self) -> Result<skiff_apiserver::Config, skiff_apiserver::Error> {
        if self.tls_cert_file.is_some()
            || self.tls_private_key_file.is_some()
            || self.client_ca_file.is_some()
        {
            return Err(skiff_apiserver::Error::Config(
                "--tls-cert-file, --tls-private-key-file and --client-ca-file are not supported yet: skiff's apiserver serves plain HTTP without authentication for now; leave them out and keep it on a trusted network".into(),
            ));
        }
        let etcd_servers: Vec<String> = self
            .etcd_servers
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if etcd_servers.is_empty() {
            return Err(skiff_apiserver::Error::Config(
                "--etcd-servers is empty: give the store's client URLs, e.g. http://127.0.0.1:2379"
                    .into(),
            ));
        }
        for url in &etcd_servers {
            if !url.starts_with("http://") {
                return Err(skiff_apiserver::Error::Config(format!(
                    "--etcd-servers: {url:?} must be an http:// URL such as http://127.0.0.1:2379 (TLS to the store is not supported yet)"
                )));
            }
        }
        let range =
            skiff_apiserver::Ipv4Range::parse(&self.service_cluster_ip_range).map_err(|e| {
                skiff_apiserver::Error::Config(format!("--service-cluster-ip-range: {e}"))
            })?;
        Ok(skiff_apiserver::Config {
            etcd_servers,
            listen: std::net::SocketAddr::new(self.bind_address, self.secure_port),
            service_cluster_ip_range: range,
            default_toleration_seconds: skiff_apiserver::admission::DefaultTolerationSeconds {
                not_ready: self.default_not_ready_toleration_seconds,
                unreachable: self.default_unreachable_toleration_seconds,
            },
            service_account_signing_key_file: self.service_account_signing_key_file,
            service_account_issuer: self.service_account_issuer,
            api_audiences: self
                .api_audiences
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        })
    }
}

/// etcd's flags, with etcd's names and defaults.
#[derive(Args)]
struct StoreFlags {
    /// Human-readable name for this member.
    #[arg(long, default_value = "default")]
    name: String,
    /// Path to the data directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// URLs to listen on for client traffic.
    #[arg(long, default_value = "http://localhost:2379")]
    listen_client_urls: String,
    /// This member's client URLs to advertise to the rest of the cluster.
    #[arg(long, default_value = "http://localhost:2379")]
    advertise_client_urls: String,
    /// URLs to listen on for peer traffic.
    #[arg(long, default_value = "http://localhost:2380")]
    listen_peer_urls: String,
    /// This member's peer URLs to advertise to the rest of the cluster.
    #[arg(long, default_value = "http://localhost:2380")]
    initial_advertise_peer_urls: String,
    /// Initial cluster configuration for bootstrapping: name=URL,name=URL,…
    #[arg(long)]
    initial_cluster: Option<String>,
    /// `new` to start a new cluster, `existing` to join one (after `member add`).
    #[arg(long, default_value = "new", value_parser = ["new", "existing"])]
    initial_cluster_state: String,
    /// Initial cluster token, keeping clusters with the same member URLs apart.
    #[arg(long, default_value = "skiff-cluster")]
    initial_cluster_token: String,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, default_value_t = 100)]
    heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, default_value_t = 1000)]
    election_timeout: u64,
    /// Number of committed transactions between compactions of the Raft log.
    #[arg(long, default_value_t = 100_000)]
    snapshot_count: u64,
    /// Raise an alarm and refuse writes when the stored data exceeds this many bytes.
    #[arg(long, default_value_t = skiff_store::config::DEFAULT_QUOTA_BYTES)]
    quota_backend_bytes: u64,
    /// Maximum client request size in bytes the server accepts.
    #[arg(long, default_value_t = skiff_store::config::DEFAULT_MAX_REQUEST_BYTES)]
    max_request_bytes: usize,
}

impl StoreFlags {
    fn into_config(self) -> Result<StoreConfig, skiff_store::Error> {
        let advertise_peer_urls = parse_urls(
            "--initial-advertise-peer-urls",
            &self.initial_advertise_peer_urls,
        )?;
        let initial_cluster = match self.initial_cluster {
            Some(c) => parse_initial_cluster(&c)?,
            None => parse_initial_cluster(&format!(
                "{}={}",
                self.name,
                advertise_peer_urls.join(&format!(",{}=", self.name))
            ))?,
        };
        let listen = |flag: &str, v: &str| -> Result<Vec<_>, skiff_store::Error> {
            parse_urls(flag, v)?
                .iter()
                .map(|u| parse_url(flag, u))
                .collect()
        };
        Ok(StoreConfig {
            data_dir: self
                .data_dir
                .unwrap_or_else(|| PathBuf::from(format!("{}.skiff", self.name))),
            listen_client: listen("--listen-client-urls", &self.listen_client_urls)?,
            advertise_client_urls: parse_urls(
                "--advertise-client-urls",
                &self.advertise_client_urls,
            )?,
            listen_peer: listen("--listen-peer-urls", &self.listen_peer_urls)?,
            advertise_peer_urls,
            initial_cluster,
            initial_cluster_state: if self.initial_cluster_state == "existing" {
                ClusterState::Existing
            } else {
                ClusterState::New
            },
            initial_cluster_token: self.initial_cluster_token,
            heartbeat_interval: Duration::from_millis(self.heartbeat_interval),
            election_timeout: Duration::from_millis(self.election_timeout),
            snapshot_count: self.snapshot_count,
            quota_backend_bytes: self.quota_backend_bytes,
            max_request_bytes: self.max_request_bytes,
            name: self.name,
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if matches!(cli.daemon, Daemon::Kubelet(_)) {
        use_one_malloc_arena();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("skiff: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        tokio::spawn(release_freed_heap_periodically());
        match cli.daemon {
            Daemon::Store(flags) => {
                let config = flags.into_config().map_err(|e| e.to_string())?;
                skiff_store::run(config, shutdown_signal())
                    .await
                    .map_err(|e| e.to_string())
            }
            Daemon::Kubelet(flags) => {
                let config = flags.into_config().map_err(|e| e.to_string())?;
                skiff_kubelet::run(config, shutdown_signal())
                    .await
                    .map_err(|e| e.to_string())
            }
            Daemon::Netd(flags) => {
                let config = flags.into_config().map_err(|e| e.to_string())?;
                skiff_netd::run(config, shutdown_signal())
                    .await
                    .map_err(|e| e.to_string())
            }
            Daemon::Apiserver(flags) => {
                let config = flags.into_config().map_err(|e| e.to_string())?;
                skiff_apiserver::run(config, shutdown_signal())
                    .await
                    .map_err(|e| e.to_string())
            }
            Daemon::Scheduler(flags) => {
                let config = flags.into_config().map_err(|e| e.to_string())?;
                skiff_scheduler::run(config, shutdown_signal())
                    .await
                    .map_err(|e| e.to_string())
            }
            Daemon::ControllerManager(flags) => {
                let config = flags.into_config().map_err(|e| e.to_string())?;
                skiff_controllers::run(config, shutdown_signal())
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("skiff: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Hands the heap pages glibc's allocator holds after frees back to the kernel: 10 s
/// after start, then every 30 s.
///
/// glibc gives freed memory back on its own only from the top of the heap; pages freed
/// below a live allocation stay resident until `malloc_trim`. The daemons allocate in
/// bursts and then idle (the apiserver builds its OpenAPI documents at start, a LIST
/// builds its whole response): an idle lab apiserver held 19.5 MiB of heap, 6.8 MiB
/// after one trim (docs/benchmarks.md, the lab).
async fn release_freed_heap_periodically() {
    let first = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut tick = tokio::time::interval_at(first, Duration::from_secs(30));
    loop {
        tick.tick().await;
        release_freed_heap();
    }
}

#[allow(unsafe_code)]
fn release_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and locks each arena it trims, so it is
    // safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Makes glibc's allocator use one arena for every thread, as `MALLOC_ARENA_MAX=1`
/// does. Called before any thread exists.
///
/// Each thread that meets a locked arena gets an arena of its own, and every arena keeps
/// freed memory apart from the others. The kubelet allocates little and rarely at once
/// (pods change a few at a time), so one arena costs it no waiting and saved 0.6 MiB of
/// its 100-pod resident set (docs/benchmarks.md); busier daemons keep the default.
#[allow(unsafe_code)]
fn use_one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes no pointers; it runs before the runtime starts any thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_as_kubernetes_flags_take_them() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("15").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5x").is_err());
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert!(parse_duration("fast").is_err());
    }
}
