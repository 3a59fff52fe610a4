//! `skiff netd`: watches Nodes, Services and EndpointSlices and keeps this node's
//! overlay (netlink), service rules (one nftables table) and cluster DNS in step.
//!
//! Three loops share the watch caches:
//! - overlay: once this node has a podCIDR, the VXLAN device, the pods' bridge, the
//!   CNI config and the VTEP annotations; then, on every Node change (and every
//!   `sync_period`), the peers' routes, neighbors and FDB entries;
//! - services: on Service/EndpointSlice changes, debounced, the nftables table (loaded
//!   whole at start and hourly, otherwise updated where it changed, each one `nft -f`
//!   transaction) and the DNS zone;
//! - DNS: once the bridge exists, `hickory-server` on its gateway address.
//!
//! What netd programs stays when it stops, so a restart does not cut traffic; the next
//! start reads the kernel's state and applies only the difference.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use skiff_client::reflector::{self, Store};
use skiff_client::{watcher, Api, Client, Patch, PatchParams};
use tokio::io::AsyncWriteExt;
use tokio::sync::{watch, Notify};

use crate::dns::Zone;
use crate::dns_server::{upstream_from_resolv_conf, DnsServer, DnsState};
use crate::error::{Error, Result};
use crate::net::Ipv4Net;
use crate::netlink::{gateway, Netlink, Underlay};
use crate::overlay::{
    backend_data, cni_config, desired_peers, BACKEND_DATA_ANNOTATION, BRIDGE, PUBLIC_IP_ANNOTATION,
    VXLAN_OVERHEAD,
};
use crate::proxy::{ruleset, ProxyInput, Table};

/// kube-proxy's metrics port, where netd serves /metrics and /healthz.
pub const DEFAULT_METRICS_PORT: u16 = 10249;
/// The file netd writes in the CNI conf dir (first by name, so the kubelet uses it).
pub const CNI_CONF_FILE: &str = "10-skiff.conflist";
/// Quiet time after a Service/EndpointSlice change before the rules are rebuilt.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// A burst of changes is applied at least this often.
const DEBOUNCE_MAX: Duration = Duration::from_millis(500);
/// How often the service rules are loaded whole even when updates succeed (kube-proxy
/// also resyncs fully on a timer).
const FULL_SYNC_PERIOD: Duration = Duration::from_secs(3600);

/// netd's settings (flags of `skiff netd`).
#[derive(Debug, Clone)]
pub struct Config {
    /// --kubeconfig (else $KUBECONFIG, ~/.kube/config).
    pub kubeconfig: Option<PathBuf>,
    /// --hostname-override, else the hostname: this node's Node name.
    pub node_name: String,
    /// --iface: the underlay interface; else the default route's.
    pub iface: Option<String>,
    /// --cluster-cidr: all pods' addresses.
    pub cluster_cidr: Ipv4Net,
    /// --service-cluster-ip-range.
    pub service_cluster_ip_range: Ipv4Net,
    /// --cni-conf-dir: where the kubelet reads its network config.
    pub cni_conf_dir: PathBuf,
    /// --cni-ipam-data-dir: host-local's state directory (default: the plugin's).
    pub ipam_data_dir: Option<PathBuf>,
    /// --cluster-domain.
    pub cluster_domain: String,
    /// --dns-port; 0 turns cluster DNS off.
    pub dns_port: u16,
    /// --dns-address: a node-local address (netd puts it on lo) for cluster DNS;
    /// without it DNS answers on the bridge address.
    pub dns_address: Option<Ipv4Addr>,
    /// --resolv-conf: where the upstream resolver is read from.
    pub resolv_conf: PathBuf,
    /// --metrics-bind-address: /metrics and /healthz.
    pub metrics: SocketAddr,
    /// --sync-period: full overlay re-sync even without changes.
    pub sync_period: Duration,
}

/// Counters and gauges for /metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    overlay_syncs: AtomicU64,
    overlay_sync_errors: AtomicU64,
    overlay_peers: AtomicU64,
    overlay_changes: AtomicU64,
    proxy_syncs: AtomicU64,
    proxy_sync_errors: AtomicU64,
    proxy_last_sync_micros: AtomicU64,
    proxy_skipped_ports: AtomicU64,
    overlay_ready: AtomicU64,
    proxy_ready: AtomicU64,
}

struct Shared {
    config: Config,
    client: Client,
    nodes: Store<Node>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    nodes_changed: Notify,
    services_changed: Notify,
    metrics: Metrics,
    dns: Arc<DnsState>,
}

/// Runs netd until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    if config
        .cluster_cidr
        .overlaps(config.service_cluster_ip_range)
    {
        return Err(Error::Config(format!(
            "--cluster-cidr {} overlaps --service-cluster-ip-range {}: pods and Services need separate ranges",
            config.cluster_cidr, config.service_cluster_ip_range
        )));
    }
    let netlink = Netlink::connect()?;
    let iface = match &config.iface {
        Some(i) => i.clone(),
        None => netlink.default_route_iface().await?,
    };
    let underlay = netlink.underlay(&iface).await?;
    tracing::info!(node = %config.node_name, %iface, ip = %underlay.ip, mtu = underlay.mtu, "underlay");
    enable_forwarding();

    let client = Client::from_kubeconfig(config.kubeconfig.as_deref(), None)?;
    let resolv = std::fs::read_to_string(&config.resolv_conf).unwrap_or_default();
    // Never forward to ourselves: a node whose resolv.conf names the cluster DNS loops.
    let upstream = upstream_from_resolv_conf(&resolv, &[]);
    match upstream {
        Some(u) => tracing::info!(upstream = %u, "cluster DNS forwards other names here"),
        None => tracing::warn!(
            resolv_conf = %config.resolv_conf.display(),
            "no upstream nameserver: names outside the cluster domain get NXDOMAIN"
        ),
    }
    let (nodes, nodes_w) = reflector::store::<Node>();
    let (services, services_w) = reflector::store::<Service>();
    let (slices, slices_w) = reflector::store::<EndpointSlice>();
    let shared = Arc::new(Shared {
        config: config.clone(),
        client: client.clone(),
        nodes,
        services,
        slices,
        nodes_changed: Notify::new(),
        services_changed: Notify::new(),
        metrics: Metrics::default(),
        dns: Arc::new(DnsState::new(upstream)),
    });

    let listener = tokio::net::TcpListener::bind(config.metrics)
        .await
        .map_err(|e| Error::io(format!("listening on {}", config.metrics), e))?;
    tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "serving /healthz and /metrics");

    let (stop_tx, stop_rx) = watch::channel(false);
    let (cidr_tx, cidr_rx) = watch::channel::<Option<Ipv4Net>>(None);
    let mut tasks = tokio::task::JoinSet::new();
    {
        let s = shared.clone();
        let stream = reflector::reflector(
            nodes_w,
            watcher(Api::<Node>::all(client.clone()), watcher::Config::default()),
        );
        tasks.spawn(pump(
            stream,
            move || s.nodes_changed.notify_one(),
            "nodes",
            stop_rx.clone(),
        ));
    }
    {
        let s = shared.clone();
        let stream = reflector::reflector(
            services_w,
            watcher(
                Api::<Service>::all(client.clone()),
                watcher::Config::default(),
            ),
        );
        tasks.spawn(pump(
            stream,
            move || s.services_changed.notify_one(),
            "services",
            stop_rx.clone(),
        ));
    }
    {
        let s = shared.clone();
        let stream = reflector::reflector(
            slices_w,
            watcher(
                Api::<EndpointSlice>::all(client.clone()),
                watcher::Config::default(),
            ),
        );
        tasks.spawn(pump(
            stream,
            move || s.services_changed.notify_one(),
            "endpointslices",
            stop_rx.clone(),
        ));
    }
    tasks.spawn(overlay_loop(
        shared.clone(),
        netlink,
        underlay,
        cidr_tx,
        stop_rx.clone(),
    ));
    tasks.spawn(services_loop(shared.clone(), stop_rx.clone()));
    if config.dns_port != 0 {
        tasks.spawn(dns_loop(shared.clone(), cidr_rx, stop_rx.clone()));
    }
    tasks.spawn(serve_metrics(listener, shared.clone(), stop_rx.clone()));

    tokio::pin!(shutdown);
    tokio::select! {
        _ = &mut shutdown => tracing::info!("shutting down; the overlay and rules stay in place"),
        Some(r) = tasks.join_next() => {
            let _ = stop_tx.send(true);
            match r {
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(Error::Config(format!("a netd task failed: {e}"))),
                Ok(Ok(())) => {}
            }
        }
    }
    let _ = stop_tx.send(true);
    let drain = async { while tasks.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
    Ok(())
}

/// IP forwarding on, and bridged IPv4 through netfilter (Service NAT between pods on
/// one bridge needs it, as kube-proxy does with br_netfilter).
fn enable_forwarding() {
    for (path, what) in [
        ("/proc/sys/net/ipv4/ip_forward", "IP forwarding"),
        (
            "/proc/sys/net/bridge/bridge-nf-call-iptables",
            "netfilter on bridged traffic (br_netfilter)",
        ),
    ] {
        if let Err(e) = std::fs::write(path, "1") {
            tracing::warn!(%path, error = %e, "cannot turn on {what}; pod traffic through Services may fail");
        }
    }
}

async fn pump<K, S>(
    stream: S,
    changed: impl Fn(),
    what: &'static str,
    mut stop: watch::Receiver<bool>,
) -> Result<()>
where
    S: futures::Stream<Item = skiff_client::Result<watcher::Event<K>>>,
{
    futures::pin_mut!(stream);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            item = stream.next() => match item {
                None => return Ok(()),
                Some(Ok(event)) => {
                    if failing {
                        tracing::info!(what, "watch recovered");
                        failing = false;
                    }
                    if !matches!(event, watcher::Event::Init | watcher::Event::InitApply(_)) {
                        changed();
                    }
                }
                Some(Err(e)) => {
                    if !failing {
                        tracing::warn!(what, error = %e, "watch failed; retrying");
                        failing = true;
                    }
                }
            }
        }
    }
}

/// The overlay for this node: what was set up for its podCIDR.
struct Local {
    pod_cidr: Ipv4Net,
    vxlan: u32,
    mac: [u8; 6],
}

async fn overlay_loop(
    s: Arc<Shared>,
    netlink: Netlink,
    underlay: Underlay,
    cidr_tx: watch::Sender<Option<Ipv4Net>>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let me = s.config.node_name.clone();
    let mut local: Option<Local> = None;
    let mut waiting_logged = String::new();
    let mut last_skipped: BTreeSet<String> = BTreeSet::new();
    let mut failures = 0u32;
    loop {
        if s.nodes.is_synced() {
            match overlay_step(&s, &netlink, underlay, &mut local, &mut last_skipped).await {
                Ok(cidr) => {
                    failures = 0;
                    waiting_logged.clear();
                    cidr_tx.send_if_modified(|c| {
                        let changed = *c != Some(cidr);
                        *c = Some(cidr);
                        changed
                    });
                }
                Err(OverlayWait(msg)) => {
                    failures = failures.saturating_add(1);
                    if msg != waiting_logged {
                        tracing::warn!(node = %me, "{msg}");
                        waiting_logged = msg;
                    }
                }
            }
        }
        let wait = if failures == 0 && local.is_some() {
            s.config.sync_period
        } else {
            Duration::from_millis(500u64.saturating_mul(u64::from(failures.min(10)) + 1))
        };
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            _ = s.nodes_changed.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Why the overlay is not (fully) programmed yet, as one log line ("" = nothing to say).
struct OverlayWait(String);

async fn overlay_step(
    s: &Shared,
    netlink: &Netlink,
    underlay: Underlay,
    local: &mut Option<Local>,
    last_skipped: &mut BTreeSet<String>,
) -> std::result::Result<Ipv4Net, OverlayWait> {
    let me = &s.config.node_name;
    let Some(node) = s.nodes.get(None, me) else {
        return Err(OverlayWait(format!(
            "Node {me} does not exist yet (the kubelet registers it); waiting"
        )));
    };
    let Some(cidr) = node.spec.as_ref().and_then(|sp| sp.pod_cidr.clone()) else {
        return Err(OverlayWait(format!(
            "Node {me} has no spec.podCIDR yet (the controller-manager's node IPAM assigns it); no pod network on this node until then"
        )));
    };
    let cidr: Ipv4Net = cidr.parse().map_err(|e| {
        OverlayWait(format!(
            "Node {me} spec.podCIDR {cidr:?} cannot be used: {e}"
        ))
    })?;
    if !s.config.cluster_cidr.contains(cidr.addr) || cidr.prefix < s.config.cluster_cidr.prefix {
        return Err(OverlayWait(format!(
            "Node {me} spec.podCIDR {cidr} is not inside --cluster-cidr {}; not programming it",
            s.config.cluster_cidr
        )));
    }
    let fail = |m: &Metrics, e: Error| {
        m.overlay_sync_errors.fetch_add(1, Ordering::Relaxed);
        m.overlay_ready.store(0, Ordering::Relaxed);
        OverlayWait(format!("overlay sync failed, retrying: {e}"))
    };
    if local.as_ref().map(|l| l.pod_cidr) != Some(cidr) {
        let mtu = underlay.mtu.saturating_sub(VXLAN_OVERHEAD);
        let (vxlan, mac) = netlink
            .ensure_vxlan(underlay, mtu)
            .await
            .map_err(|e| fail(&s.metrics, e))?;
        netlink
            .ensure_only_address(vxlan, cidr.addr, 32)
            .await
            .map_err(|e| fail(&s.metrics, e))?;
        netlink
            .ensure_bridge(BRIDGE, gateway(cidr), cidr.prefix, mtu)
            .await
            .map_err(|e| fail(&s.metrics, e))?;
        write_cni_config(&s.config, cidr, underlay.mtu)
            .await
            .map_err(|e| fail(&s.metrics, e))?;
        tracing::info!(pod_cidr = %cidr, vtep_mac = %crate::overlay::format_mac(mac), "overlay device, bridge and CNI config ready");
        *local = Some(Local {
            pod_cidr: cidr,
            vxlan,
            mac,
        });
    }
    let Some(l) = local.as_ref() else {
        return Err(OverlayWait("the overlay device is not set up".into()));
    };
    publish_annotations(s, &node, l.mac, underlay.ip)
        .await
        .map_err(|e| fail(&s.metrics, e))?;

    let nodes: Vec<Node> = s.nodes.list().iter().map(|n| (**n).clone()).collect();
    let mut desired = desired_peers(me, &nodes);
    desired.peers.retain(|p| {
        if p.public_ip == underlay.ip {
            desired.skipped.push(format!(
                "{}: claims this node's own address {} as its VTEP address",
                p.node, p.public_ip
            ));
            false
        } else {
            true
        }
    });
    let skipped: BTreeSet<String> = desired.skipped.iter().cloned().collect();
    for why in skipped.difference(last_skipped) {
        tracing::warn!(node = %me, "overlay: no routes to node {why}");
    }
    *last_skipped = skipped;
    let report = netlink
        .sync_peers(l.vxlan, &desired.peers)
        .await
        .map_err(|e| fail(&s.metrics, e))?;
    if report.added + report.removed > 0 {
        tracing::info!(
            peers = desired.peers.len(),
            added = report.added,
            removed = report.removed,
            "overlay synced"
        );
    }
    let m = &s.metrics;
    m.overlay_syncs.fetch_add(1, Ordering::Relaxed);
    m.overlay_changes
        .fetch_add((report.added + report.removed) as u64, Ordering::Relaxed);
    m.overlay_peers
        .store(desired.peers.len() as u64, Ordering::Relaxed);
    m.overlay_ready.store(1, Ordering::Relaxed);
    Ok(cidr)
}

async fn publish_annotations(s: &Shared, node: &Node, mac: [u8; 6], ip: Ipv4Addr) -> Result<()> {
    let want_backend = backend_data(mac);
    let want_ip = ip.to_string();
    let annotations = node.metadata.annotations.clone().unwrap_or_default();
    if annotations.get(BACKEND_DATA_ANNOTATION) == Some(&want_backend)
        && annotations.get(PUBLIC_IP_ANNOTATION) == Some(&want_ip)
    {
        return Ok(());
    }
    let patch = serde_json::json!({"metadata": {"annotations": {
        BACKEND_DATA_ANNOTATION: want_backend,
        PUBLIC_IP_ANNOTATION: want_ip,
    }}});
    Api::<Node>::all(s.client.clone())
        .patch(
            &s.config.node_name,
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await?;
    tracing::info!(node = %s.config.node_name, public_ip = %ip, "published the VTEP annotations");
    Ok(())
}

async fn write_cni_config(config: &Config, cidr: Ipv4Net, underlay_mtu: u32) -> Result<()> {
    let dir = &config.cni_conf_dir;
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let data_dir = config
        .ipam_data_dir
        .as_ref()
        .map(|p| p.display().to_string());
    let conf = cni_config(cidr, underlay_mtu, data_dir.as_deref());
    let text = serde_json::to_vec_pretty(&conf).map_err(|e| Error::Config(e.to_string()))?;
    let path = dir.join(CNI_CONF_FILE);
    write_atomically(&path, &text).await
}

/// Writes `path` through a temporary file and a rename, so a reader never sees half a
/// file.
async fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = tokio::fs::File::create(&tmp)
        .await
        .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
    f.write_all(bytes)
        .await
        .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    f.sync_all()
        .await
        .map_err(|e| Error::io(format!("syncing {}", tmp.display()), e))?;
    tokio::fs::rename(&tmp, path)
        .await
        .map_err(|e| Error::io(format!("renaming {} into place", tmp.display()), e))
}

async fn services_loop(s: Arc<Shared>, mut stop: watch::Receiver<bool>) -> Result<()> {
    // Rules from a half-listed cache would drop Services for a moment: wait for both.
    loop {
        if s.services.is_synced() && s.slices.is_synced() {
            break;
        }
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            _ = s.services_changed.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    // What the kernel holds, as far as netd knows: updates are written against it.
    let mut applied: Option<Table> = None;
    let mut last_full = Instant::now();
    let mut last_skipped: BTreeSet<String> = BTreeSet::new();
    let mut failures = 0u32;
    loop {
        let started = Instant::now();
        let services: Vec<Service> = s.services.list().iter().map(|o| (**o).clone()).collect();
        let slices: Vec<EndpointSlice> = s.slices.list().iter().map(|o| (**o).clone()).collect();
        s.dns
            .set_zone(Zone::build(&s.config.cluster_domain, &services, &slices));
        let rules = ruleset(&ProxyInput {
            node_name: &s.config.node_name,
            cluster_cidr: s.config.cluster_cidr,
            services: &services,
            slices: &slices,
        });
        let skipped: BTreeSet<String> = rules.skipped.iter().cloned().collect();
        for why in skipped.difference(&last_skipped) {
            tracing::warn!("service proxy: no rules for {why}");
        }
        s.metrics
            .proxy_skipped_ports
            .store(skipped.len() as u64, Ordering::Relaxed);
        last_skipped = skipped;
        // A full load now and then repairs a table someone else changed.
        if last_full.elapsed() > FULL_SYNC_PERIOD {
            applied = None;
        }
        if applied.as_ref() != Some(&rules.table) {
            let update = applied.as_ref().and_then(|t| rules.table.update_script(t));
            let partial = update.is_some();
            let outcome = match update {
                Some(script) => match nft_apply(&script).await {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        tracing::warn!(error = %e, "updating the service rules failed; loading them whole");
                        nft_apply(&rules.script()).await
                    }
                },
                None => nft_apply(&rules.script()).await,
            };
            if outcome.is_ok() && !partial {
                last_full = Instant::now();
            }
            match outcome {
                Ok(()) => {
                    let took = started.elapsed();
                    s.metrics.proxy_syncs.fetch_add(1, Ordering::Relaxed);
                    s.metrics
                        .proxy_last_sync_micros
                        .store(took.as_micros() as u64, Ordering::Relaxed);
                    s.metrics.proxy_ready.store(1, Ordering::Relaxed);
                    tracing::info!(
                        services = services.len(),
                        slices = slices.len(),
                        took_ms = took.as_millis() as u64,
                        partial,
                        "service rules applied"
                    );
                    applied = Some(rules.table);
                    failures = 0;
                }
                Err(e) => {
                    applied = None;
                    s.metrics.proxy_sync_errors.fetch_add(1, Ordering::Relaxed);
                    failures = failures.saturating_add(1);
                    tracing::error!(error = %e, "applying the service rules failed; the previous rules stay; retrying");
                }
            }
        }
        let retry = if failures > 0 {
            Duration::from_millis(500u64.saturating_mul(u64::from(failures.min(10))))
        } else {
            Duration::from_secs(3600)
        };
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            _ = s.services_changed.notified() => {}
            _ = tokio::time::sleep(retry) => {}
        }
        // Debounce: let a burst of changes settle, but not forever.
        let burst = Instant::now();
        while burst.elapsed() < DEBOUNCE_MAX {
            tokio::select! {
                _ = stop.changed() => return Ok(()),
                _ = s.services_changed.notified() => {}
                _ = tokio::time::sleep(DEBOUNCE) => break,
            }
        }
    }
}

/// Loads a ruleset with `nft -f -`: the whole script is one transaction.
pub async fn nft_apply(script: &str) -> Result<()> {
    let mut child = tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::io("running nft (Debian package nftables)", e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .await
            .map_err(|e| Error::io("writing to nft", e))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| Error::io("waiting for nft", e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Nft(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

async fn dns_loop(
    s: Arc<Shared>,
    mut cidr: watch::Receiver<Option<Ipv4Net>>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let mut failures = 0u32;
    loop {
        let current = *cidr.borrow_and_update();
        let listen = match (s.config.dns_address, current) {
            (Some(ip), _) => match ensure_dns_address(ip).await {
                Ok(()) => Some(ip),
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::error!(%ip, error = %e, "cannot put the cluster DNS address on lo; retrying");
                    None
                }
            },
            (None, Some(c)) => Some(gateway(c)),
            (None, None) => None,
        };
        if let Some(ip) = listen {
            let addr = SocketAddr::new(IpAddr::V4(ip), s.config.dns_port);
            match serve_dns(&s, addr, &mut cidr, &mut stop).await {
                Ok(true) => return Ok(()),
                Ok(false) => {
                    failures = 0;
                    continue;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::error!(%addr, error = %e, "cluster DNS cannot listen; retrying");
                }
            }
        }
        let wait = Duration::from_millis(500u64.saturating_mul(u64::from(failures.min(10)) + 1));
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            _ = cidr.changed() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn ensure_dns_address(ip: Ipv4Addr) -> Result<()> {
    Netlink::connect()?.ensure_local_address(ip).await
}

/// Serves until shutdown (Ok(true)) or until the podCIDR changes (Ok(false)).
async fn serve_dns(
    s: &Shared,
    addr: SocketAddr,
    cidr: &mut watch::Receiver<Option<Ipv4Net>>,
    stop: &mut watch::Receiver<bool>,
) -> Result<bool> {
    let udp = tokio::net::UdpSocket::bind(addr)
        .await
        .map_err(|e| Error::io(format!("binding DNS on udp {addr}"), e))?;
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::io(format!("binding DNS on tcp {addr}"), e))?;
    let server = DnsServer::start(s.dns.clone(), udp, Some(tcp));
    tracing::info!(%addr, domain = %s.config.cluster_domain, "cluster DNS listening");
    let done = tokio::select! {
        _ = stop.changed() => true,
        _ = cidr.changed() => false,
    };
    server.shutdown().await;
    Ok(done)
}

async fn serve_metrics(
    listener: tokio::net::TcpListener,
    s: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let health = s.clone();
    let app = axum::Router::new()
        .route(
            "/healthz",
            axum::routing::get(move || {
                let s = health.clone();
                async move {
                    let overlay = s.metrics.overlay_ready.load(Ordering::Relaxed) == 1;
                    let proxy = s.metrics.proxy_ready.load(Ordering::Relaxed) == 1;
                    if overlay && proxy {
                        (axum::http::StatusCode::OK, "ok".to_string())
                    } else {
                        (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            format!("overlay ready: {overlay}, service rules ready: {proxy}"),
                        )
                    }
                }
            }),
        )
        .route(
            "/metrics",
            axum::routing::get(move || {
                let s = s.clone();
                async move { metrics_text(&s) }
            }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.changed().await;
        })
        .await
        .map_err(|e| Error::io("serving /metrics", e))
}

fn metrics_text(s: &Shared) -> String {
    let m = &s.metrics;
    let d = &s.dns;
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let lines: [(&str, &str, &str, u64); 13] = [
        (
            "netd_overlay_syncs_total",
            "counter",
            "Overlay syncs that completed.",
            g(&m.overlay_syncs),
        ),
        (
            "netd_overlay_sync_errors_total",
            "counter",
            "Overlay syncs that failed.",
            g(&m.overlay_sync_errors),
        ),
        (
            "netd_overlay_changes_total",
            "counter",
            "Routes, neighbors and FDB entries added or removed.",
            g(&m.overlay_changes),
        ),
        (
            "netd_overlay_peers",
            "gauge",
            "Other nodes this node has routes to.",
            g(&m.overlay_peers),
        ),
        (
            "netd_overlay_ready",
            "gauge",
            "1 when the last overlay sync succeeded.",
            g(&m.overlay_ready),
        ),
        (
            "netd_proxy_syncs_total",
            "counter",
            "nftables rulesets applied.",
            g(&m.proxy_syncs),
        ),
        (
            "netd_proxy_sync_errors_total",
            "counter",
            "nftables rulesets nft refused.",
            g(&m.proxy_sync_errors),
        ),
        (
            "netd_proxy_last_sync_microseconds",
            "gauge",
            "Time to build and apply the last ruleset.",
            g(&m.proxy_last_sync_micros),
        ),
        (
            "netd_proxy_skipped_service_ports",
            "gauge",
            "Service ports netd cannot program.",
            g(&m.proxy_skipped_ports),
        ),
        (
            "netd_proxy_ready",
            "gauge",
            "1 once a ruleset is applied.",
            g(&m.proxy_ready),
        ),
        (
            "netd_dns_answered_total",
            "counter",
            "DNS questions answered from the cluster zone.",
            g(&d.answered),
        ),
        (
            "netd_dns_forwarded_total",
            "counter",
            "DNS questions forwarded upstream.",
            g(&d.forwarded),
        ),
        (
            "netd_dns_upstream_failures_total",
            "counter",
            "Forwarded questions the upstream did not answer.",
            g(&d.upstream_failures),
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in lines {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    }
    out
}
