//! skiff's kubelet: the node agent. It registers the Node, keeps its Lease and
//! NodeReady condition, and runs the pods bound to it through containerd.
//!
//! # Layout
//!
//! - [`node`]: the Node object, its status and the heartbeat Lease.
//! - [`pod`]: one worker per pod: sandbox (namespaces + CNI), containers, restarts with
//!   back-off, status, deletion.
//! - [`env`]: a container's environment (service variables, envFrom, valueFrom).
//! - [`spec`]: the OCI runtime spec of a container from its pod and image (pure).
//! - [`image`] and [`reference`]: pulls from registries, imports of OCI archives, and
//!   the unpacking of layers onto snapshots; [`registries`]: per-registry settings
//!   (plain HTTP, mirrors) from `--registry-config`.
//! - [`runtime`]: the containerd gRPC calls.
//! - [`cni`] and [`netns`]: pod networking.
//! - [`probe`]: liveness, readiness and startup probes, and the actions of hooks.
//! - [`events`]: Events about pods.
//! - [`logs`]: container log files in the CRI format, their paths and rotation.
//! - [`volume`]: emptyDir, hostPath, configMap, secret, downwardAPI and projected volumes.
//! - [`streaming`]: the API the apiserver proxies to: container logs, exec and attach.
//!
//! [`run`] starts it all and returns when `shutdown` fires. Pods keep running when the
//! kubelet stops, as with Kubernetes; a new kubelet replaces their containers.

pub mod cni;
pub mod credentials;
pub mod env;
pub mod error;
pub mod events;
pub mod image;
pub mod logs;
pub mod netns;
pub mod node;
pub mod pod;
pub mod portforward;
pub mod probe;
pub mod reference;
pub mod registries;
pub mod runtime;
mod server;
pub mod spdy;
pub mod spec;
pub mod streaming;
pub mod users;
pub mod volume;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeStatus, Pod, Taint};
use skiff_client::{reflector, watcher, Api, Client};

pub use error::{Error, Result};

/// The kubelet's settings (flags in `skiff kubelet`).
#[derive(Clone, Debug)]
pub struct Config {
    /// --kubeconfig (else $KUBECONFIG, ~/.kube/config).
    pub kubeconfig: Option<PathBuf>,
    /// --hostname-override, else the machine's hostname: the Node's name.
    pub node_name: String,
    /// --node-ip.
    pub node_ip: Option<IpAddr>,
    /// --root-dir.
    pub root_dir: PathBuf,
    /// containerd's socket (from --container-runtime-endpoint).
    pub containerd_socket: PathBuf,
    /// --containerd-namespace.
    pub containerd_namespace: String,
    /// --cni-bin-dir (colon- or comma-separated).
    pub cni_bin_dirs: Vec<PathBuf>,
    /// --cni-conf-dir.
    pub cni_conf_dir: PathBuf,
    /// --node-labels.
    pub node_labels: BTreeMap<String, String>,
    /// --register-with-taints.
    pub register_with_taints: Vec<Taint>,
    /// --cluster-dns.
    pub cluster_dns: Vec<IpAddr>,
    /// --cluster-domain.
    pub cluster_domain: String,
    /// --image-dir: archives imported at start and when added.
    pub image_dir: Option<PathBuf>,
    /// --registry-config: per-registry settings (empty without the flag).
    pub registries: registries::RegistryConfig,
    /// --image-pull-progress-deadline: how long a registry may send nothing.
    pub image_pull_progress_deadline: std::time::Duration,
    /// --pod-logs-dir: where container logs go (/var/log/pods).
    pub pod_logs_dir: PathBuf,
    /// --container-log-max-size and --container-log-max-files.
    pub log_rotation: logs::Rotation,
    /// Where /healthz and /metrics are served (--healthz-bind-address:--healthz-port).
    pub healthz: SocketAddr,
    /// Where the kubelet's API for the apiserver (exec) is served (--address:--port; port 0
    /// picks a free one, which the Node then reports).
    pub api: SocketAddr,
}

/// Counters and gauges for /metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Containers started.
    pub containers_started: AtomicU64,
    /// Images pulled.
    pub image_pulls: AtomicU64,
    /// Archives imported.
    pub image_imports: AtomicU64,
    /// Node status posts.
    pub node_status_posts: AtomicU64,
    /// Lease renewals.
    pub lease_renewals: AtomicU64,
    /// Pod workers running.
    pub pod_workers: AtomicU64,
    /// Whether containerd answered at the last check.
    pub runtime_up: AtomicBool,
}

/// How often the Lease is renewed.
const LEASE_INTERVAL: Duration = Duration::from_secs(10);
/// How often containerd is checked and the node status compared with the last post.
const STATUS_CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// The node status is posted at least this often, as Kubernetes' nodeStatusReportFrequency.
const STATUS_REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// The first non-loopback address the routing table would use, for a node without
/// --node-ip.
pub fn default_node_ip() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("10.255.255.255:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// The machine's hostname, lowercased (Kubernetes' default node name).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_lowercase())
        .unwrap_or_else(|_| "localhost".into())
}

/// Runs the kubelet until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    let pods_dir = config.root_dir.join("pods");
    std::fs::create_dir_all(&pods_dir).map_err(|e| Error::io("creating", &pods_dir, e))?;
    let machine = node::Machine::read(&config.root_dir)?;
    let (node_cpu_milli, node_memory) = (machine.cpus as i128 * 1000, machine.memory_bytes as i128);
    let client = Client::from_kubeconfig(config.kubeconfig.as_deref(), None)?;
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(RwLock::new(node::RuntimeHealth::Down(
        "not checked yet".into(),
    )));
    let api_listener = tokio::net::TcpListener::bind(config.api)
        .await
        .map_err(|e| Error::io("listening on", config.api.to_string(), e))?;
    let api_port = api_listener
        .local_addr()
        .map_err(|e| Error::io("listening on", config.api.to_string(), e))?
        .port();
    let settings = node::NodeSettings {
        name: config.node_name.clone(),
        ip: config.node_ip.or_else(default_node_ip),
        hostname: hostname(),
        labels: config.node_labels.clone(),
        taints: config.register_with_taints.clone(),
        port: i32::from(api_port),
    };
    let listener = tokio::net::TcpListener::bind(config.healthz)
        .await
        .map_err(|e| Error::io("listening on", config.healthz.to_string(), e))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(server::serve(
        listener,
        metrics.clone(),
        health.clone(),
        stop_rx.clone(),
    ));

    let rt = loop {
        match runtime::Runtime::connect(&config.containerd_socket, &config.containerd_namespace)
            .await
        {
            Ok(rt) => break rt,
            Err(e @ Error::Config(_)) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "containerd not reachable; retrying");
                *health.write().unwrap_or_else(|p| p.into_inner()) =
                    node::RuntimeHealth::Down(e.to_string());
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };

    let (store, writer) = reflector::store::<Pod>();
    let attachments = logs::Attachments::default();
    tasks.spawn(streaming::serve(
        api_listener,
        streaming::Streaming {
            runtime: rt.clone(),
            root_dir: config.root_dir.clone(),
            pod_logs_dir: config.pod_logs_dir.clone(),
            pods: store.clone(),
            attachments: attachments.clone(),
        },
        stop_rx.clone(),
    ));

    let nodes: Api<Node> = Api::cluster(client.clone());
    loop {
        match node::register(&nodes, &settings).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %e, "node registration failed; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
    tasks.spawn(node_status_loop(
        nodes.clone(),
        settings.clone(),
        machine,
        rt.clone(),
        health.clone(),
        metrics.clone(),
        stop_rx.clone(),
    ));
    tasks.spawn(lease_loop(
        client.clone(),
        nodes.clone(),
        settings.name.clone(),
        metrics.clone(),
        stop_rx.clone(),
    ));

    if let Some(dir) = config.image_dir.clone() {
        tasks.spawn(image_dir_loop(
            rt.clone(),
            dir,
            config.root_dir.clone(),
            metrics.clone(),
            stop_rx.clone(),
        ));
    }

    let shared = Arc::new(pod::Shared {
        rt: rt.clone(),
        attachments,
        puller: image::Puller::new(
            config.registries.clone(),
            config.image_pull_progress_deadline,
        )?,
        cni: cni::Cni {
            bin_dirs: config.cni_bin_dirs.clone(),
            conf_dir: config.cni_conf_dir.clone(),
        },
        store: store.clone(),
        pods: client.clone(),
        events: events::Recorder::new(client.clone(), settings.name.clone()),
        node_name: settings.name.clone(),
        node_ip: settings.ip.map(|i| i.to_string()),
        root_dir: config.root_dir.clone(),
        cluster_dns: config.cluster_dns.clone(),
        cluster_domain: config.cluster_domain.clone(),
        pod_logs_dir: config.pod_logs_dir.clone(),
        node_cpu_milli,
        node_memory,
        log_rotation: config.log_rotation,
        metrics: metrics.clone(),
        pull_locks: tokio::sync::Mutex::new(HashMap::new()),
    });
    let watch_config =
        watcher::Config::default().fields(&format!("spec.nodeName={}", settings.name));
    let events = reflector::reflector(
        writer,
        watcher::watcher(Api::<Pod>::all(client.clone()), watch_config),
    );
    tasks.spawn(dispatch(shared, events.boxed(), stop_rx.clone()));

    shutdown.await;
    tracing::info!("shutting down; pods keep running");
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Keeps one worker per pod of the cache; cleans up pods the node has that no longer
/// exist once the cache has synced.
async fn dispatch(
    shared: Arc<pod::Shared>,
    mut events: futures::stream::BoxStream<'static, skiff_client::Result<watcher::Event<Pod>>>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut workers: HashMap<String, pod::Handle> = HashMap::new();
    let mut cleaned = false;
    let stop_fut = stopped(stop);
    tokio::pin!(stop_fut);
    loop {
        let event = tokio::select! {
            _ = &mut stop_fut => break,
            e = events.next() => e,
        };
        let Some(event) = event else { break };
        let pods: Vec<Pod> = match event {
            Ok(
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) | watcher::Event::Delete(p),
            ) => vec![p],
            Ok(watcher::Event::Init) => Vec::new(),
            Ok(watcher::Event::InitDone) => {
                if !cleaned {
                    cleaned = true;
                    cleanup_unknown(&shared).await;
                }
                shared.store.list().iter().map(|p| (**p).clone()).collect()
            }
            Err(e) => {
                tracing::warn!(error = %e, "pod watch failed; it retries");
                continue;
            }
        };
        if !cleaned {
            continue;
        }
        workers.retain(|_, h| !h.task.is_finished());
        for p in pods {
            let (Some(uid), Some(ns), Some(name)) = (
                p.metadata.uid.clone(),
                p.metadata.namespace.clone(),
                p.metadata.name.clone(),
            ) else {
                continue;
            };
            match workers.get(&uid) {
                Some(h) => h.notify.notify_one(),
                None => {
                    if shared
                        .store
                        .get(Some(&ns), &name)
                        .is_some_and(|c| c.metadata.uid.as_deref() == Some(uid.as_str()))
                    {
                        let h = pod::spawn(shared.clone(), uid.clone(), ns, name);
                        workers.insert(uid, h);
                    }
                }
            }
        }
        // A relist may have dropped pods without a Delete event.
        for h in workers.values() {
            h.notify.notify_one();
        }
        shared
            .metrics
            .pod_workers
            .store(workers.len() as u64, Ordering::Relaxed);
    }
    for (_, h) in workers {
        h.task.abort();
    }
}

/// Removes what the node holds for pods the API server no longer has. Pods that
/// still exist are left for their workers, which adopt what is running.
async fn cleanup_unknown(shared: &pod::Shared) {
    let uids = match pod::known_pod_uids(shared).await {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(error = %e, "listing the node's pods failed; no cleanup");
            return;
        }
    };
    let live: HashSet<String> = shared
        .store
        .list()
        .iter()
        .filter_map(|p| p.metadata.uid.clone())
        .collect();
    for uid in uids.into_iter().filter(|u| !live.contains(u)) {
        tracing::info!(uid = %uid, "removing a pod that no longer exists");
        if let Err(e) = pod::cleanup_pod(shared, &uid).await {
            tracing::warn!(uid = %uid, error = %e, "cleanup failed");
        }
    }
}

async fn node_status_loop(
    nodes: Api<Node>,
    settings: node::NodeSettings,
    machine: node::Machine,
    rt: runtime::Runtime,
    health: Arc<RwLock<node::RuntimeHealth>>,
    metrics: Arc<Metrics>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut posted: Option<NodeStatus> = None;
    let mut posted_bare: Option<NodeStatus> = None;
    // Image sizes by content digest: content never changes under a digest.
    let mut image_sizes: HashMap<String, i64> = HashMap::new();
    let mut last_post = tokio::time::Instant::now();
    let stop_fut = stopped(stop);
    tokio::pin!(stop_fut);
    loop {
        let h = match tokio::time::timeout(Duration::from_secs(5), rt.version()).await {
            Ok(Ok(v)) => node::RuntimeHealth::Up(v),
            Ok(Err(e)) => node::RuntimeHealth::Down(e.to_string()),
            Err(_) => node::RuntimeHealth::Down("containerd did not answer within 5 s".into()),
        };
        metrics
            .runtime_up
            .store(matches!(h, node::RuntimeHealth::Up(_)), Ordering::Relaxed);
        *health.write().unwrap_or_else(|p| p.into_inner()) = h.clone();
        let mut bare = node::node_status(&settings, &machine, &h);
        if matches!(h, node::RuntimeHealth::Up(_)) {
            match local_images(&rt, &mut image_sizes).await {
                Ok(entries) => bare.images = Some(node::container_images(&entries)),
                Err(e) => tracing::warn!(error = %e, "listing images for the node status failed"),
            }
        }
        if posted_bare.as_ref() != Some(&bare) || last_post.elapsed() >= STATUS_REPORT_INTERVAL {
            let status = node::with_times(bare.clone(), posted.as_ref(), jiff::Timestamp::now());
            match node::post_status(&nodes, &settings.name, &status).await {
                Ok(()) => {
                    metrics.node_status_posts.fetch_add(1, Ordering::Relaxed);
                    posted = Some(status);
                    posted_bare = Some(bare);
                    last_post = tokio::time::Instant::now();
                }
                Err(e) => tracing::warn!(error = %e, "posting node status failed"),
            }
        }
        tokio::select! {
            _ = &mut stop_fut => return,
            _ = tokio::time::sleep(STATUS_CHECK_INTERVAL) => {}
        }
    }
}

/// The namespace's images with their sizes, for `status.images`; an image whose
/// content cannot be read (a pull in progress) is left out until it can.
async fn local_images(
    rt: &runtime::Runtime,
    sizes: &mut HashMap<String, i64>,
) -> Result<Vec<node::LocalImageEntry>> {
    let mut entries = Vec::new();
    for image in rt.list_images().await? {
        let Some(target) = image.target else { continue };
        let size = match sizes.get(&target.digest) {
            Some(s) => *s,
            None => match image::image_size(rt, &image.name, &target).await {
                Ok(s) => {
                    sizes.insert(target.digest.clone(), s);
                    s
                }
                Err(_) => continue,
            },
        };
        entries.push(node::LocalImageEntry {
            name: image.name,
            digest: target.digest,
            size,
        });
    }
    Ok(entries)
}

async fn lease_loop(
    client: Client,
    nodes: Api<Node>,
    name: String,
    metrics: Arc<Metrics>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let stop_fut = stopped(stop);
    tokio::pin!(stop_fut);
    loop {
        let uid = nodes
            .get_opt(&name)
            .await
            .ok()
            .flatten()
            .and_then(|n| n.metadata.uid);
        match node::renew_lease(&leases, &name, uid, jiff::Timestamp::now()).await {
            Ok(()) => {
                metrics.lease_renewals.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "renewing the node lease failed"),
        }
        tokio::select! {
            _ = &mut stop_fut => return,
            _ = tokio::time::sleep(LEASE_INTERVAL) => {}
        }
    }
}

/// Imports archives placed in the image directory: all at start, then new or changed
/// ones (checked every 10 s).
async fn image_dir_loop(
    rt: runtime::Runtime,
    dir: PathBuf,
    root_dir: PathBuf,
    metrics: Arc<Metrics>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut seen: HashMap<PathBuf, (SystemTime, u64)> = HashMap::new();
    let scratch = root_dir.join("image-import");
    let stop_fut = stopped(stop);
    tokio::pin!(stop_fut);
    loop {
        if let Ok(mut entries) = tokio::fs::read_dir(&dir).await {
            while let Ok(Some(e)) = entries.next_entry().await {
                let path = e.path();
                let is_archive = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n.ends_with(".tar") || n.ends_with(".tar.gz") || n.ends_with(".tgz")
                });
                let Ok(meta) = e.metadata().await else {
                    continue;
                };
                if !is_archive || !meta.is_file() {
                    continue;
                }
                let stamp = (
                    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    meta.len(),
                );
                if seen.get(&path) == Some(&stamp) {
                    continue;
                }
                seen.insert(path.clone(), stamp);
                match image::import_archive(&rt, &path, &scratch).await {
                    Ok(names) => {
                        metrics.image_imports.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(archive = %path.display(), images = ?names, "imported image archive");
                    }
                    Err(e) => {
                        tracing::warn!(archive = %path.display(), error = %e, "image archive not imported")
                    }
                }
            }
        } else {
            tracing::warn!(dir = %dir.display(), "--image-dir is not readable");
        }
        tokio::select! {
            _ = &mut stop_fut => return,
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    }
}
