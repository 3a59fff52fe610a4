//! Pod workers: one task per pod bound to this node, which reconciles the pod's
//! containers in containerd with its spec and writes its status back.
//!
//! A worker wakes when its pod changes, when one of its containers exits, or when a
//! restart back-off expires; it then reads the pod from the cache and acts on the
//! difference. When the pod is being deleted (or is gone), the worker stops the
//! containers (SIGTERM, then SIGKILL after the grace period), removes everything the
//! pod had on the node, and finishes the deletion with gracePeriodSeconds=0.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Preconditions, Time};
use serde_json::Value;
use skiff_client::{Api, DeleteParams, Patch, PatchParams, Store};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use crate::cni::{self, Attachment, NetworkList};
use crate::image::{self, LocalImage};
use crate::netns::{self, Kind, PodNamespacePaths};
use crate::reference::Reference;
use crate::runtime::{labels, pod_dir, Exit, Runtime};
use crate::spec::{self, PodNamespaces, SpecInput};
use crate::{Error, Metrics, Result};

/// Kubernetes' container restart back-off: 10 s doubling up to 5 min.
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
/// The back-off's ceiling.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A container that ran this long without failing has its back-off reset.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(600);

/// What every worker shares.
pub struct Shared {
    /// containerd.
    pub rt: Runtime,
    /// Image pulls.
    pub puller: image::Puller,
    /// CNI.
    pub cni: cni::Cni,
    /// The pod cache (pods bound to this node).
    pub store: Store<Pod>,
    /// Pods of every namespace (for status and delete).
    pub pods: skiff_client::Client,
    /// Node name.
    pub node_name: String,
    /// Node IP, the pods' hostIP.
    pub node_ip: Option<String>,
    /// --root-dir.
    pub root_dir: PathBuf,
    /// --cluster-dns.
    pub cluster_dns: Vec<std::net::IpAddr>,
    /// --cluster-domain.
    pub cluster_domain: String,
    /// Counters for /metrics.
    pub metrics: Arc<Metrics>,
    /// Serialises pulls of one image name.
    pub pull_locks: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The pod network as set up by CNI ADD; saved in the pod directory.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Network {
    name: String,
    cni_version: String,
    plugins: Vec<Value>,
    result: Value,
    netns: PathBuf,
    namespace: String,
    pod_name: String,
}

#[derive(Clone, Debug)]
struct Terminated {
    exit_code: i32,
    reason: String,
    started_at: Option<jiff::Timestamp>,
    finished_at: jiff::Timestamp,
    container_id: String,
}

#[derive(Clone, Debug)]
struct Running {
    id: String,
    started_at: jiff::Timestamp,
    started: Instant,
}

#[derive(Clone, Debug, Default)]
struct ContainerRecord {
    restart_count: i32,
    image_id: String,
    running: Option<Running>,
    /// The current container's end, while it is not restarted.
    terminated: Option<Terminated>,
    /// The previous container's end.
    last: Option<Terminated>,
    waiting: Option<(String, String)>,
    /// The id of the dead container still in containerd (removed on restart).
    dead_id: Option<String>,
    next_start: Option<Instant>,
    backoff: Option<Duration>,
    pull_backoff: Option<Duration>,
}

/// A worker's handle, kept by the dispatcher.
pub struct Handle {
    /// Wakes the worker.
    pub notify: Arc<Notify>,
    /// The worker task.
    pub task: tokio::task::JoinHandle<()>,
}

struct Worker {
    shared: Arc<Shared>,
    uid: String,
    namespace: String,
    name: String,
    notify: Arc<Notify>,
    exits: mpsc::UnboundedSender<(String, String, Exit)>,
    network: Option<Network>,
    containers: BTreeMap<String, ContainerRecord>,
    start_time: Option<jiff::Timestamp>,
    posted: Option<Value>,
    conditions: Vec<PodCondition>,
    terminal: bool,
    sandbox_error: Option<String>,
    sandbox_retry: Option<Instant>,
}

/// Starts the worker of pod `uid`.
pub fn spawn(shared: Arc<Shared>, uid: String, namespace: String, name: String) -> Handle {
    let notify = Arc::new(Notify::new());
    let (tx, rx) = mpsc::unbounded_channel();
    let worker = Worker {
        shared,
        uid,
        namespace,
        name,
        notify: notify.clone(),
        exits: tx,
        network: None,
        containers: BTreeMap::new(),
        start_time: None,
        posted: None,
        conditions: Vec::new(),
        terminal: false,
        sandbox_error: None,
        sandbox_retry: None,
    };
    let task = tokio::spawn(worker.run(rx));
    Handle { notify, task }
}

fn current_pod(store: &Store<Pod>, ns: &str, name: &str, uid: &str) -> Option<Arc<Pod>> {
    store
        .get(Some(ns), name)
        .filter(|p| p.metadata.uid.as_deref() == Some(uid))
}

impl Worker {
    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.shared.pods.clone(), &self.namespace)
    }

    fn dir(&self) -> PathBuf {
        pod_dir(&self.shared.root_dir, &self.uid)
    }

    async fn run(mut self, mut exits: mpsc::UnboundedReceiver<(String, String, Exit)>) {
        tracing::info!(pod = %format!("{}/{}", self.namespace, self.name), uid = %self.uid, "pod worker started");
        loop {
            let pod = current_pod(&self.shared.store, &self.namespace, &self.name, &self.uid);
            let deleting = pod
                .as_ref()
                .is_none_or(|p| p.metadata.deletion_timestamp.is_some());
            if deleting {
                self.terminate(pod.as_deref(), &mut exits).await;
                return;
            }
            if let Some(pod) = pod {
                if let Err(e) = self.sync(&pod).await {
                    tracing::warn!(pod = %self.name, namespace = %self.namespace, error = %e, "pod sync failed");
                }
            }
            let wake = self.next_wake();
            tokio::select! {
                _ = self.notify.notified() => {}
                Some((name, id, exit)) = exits.recv() => self.on_exit(&name, &id, exit),
                _ = sleep_until(wake) => {}
            }
            // Handle every exit that arrived together before the next sync.
            while let Ok((name, id, exit)) = exits.try_recv() {
                self.on_exit(&name, &id, exit);
            }
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        self.containers
            .values()
            .filter_map(|c| c.next_start)
            .chain(self.sandbox_retry)
            .min()
    }

    fn on_exit(&mut self, name: &str, id: &str, exit: Exit) {
        let Some(c) = self.containers.get_mut(name) else {
            return;
        };
        let Some(running) = c.running.take_if(|r| r.id == id) else {
            return;
        };
        let code = i32::try_from(exit.code).unwrap_or(i32::MAX);
        let finished_at = exit.at.unwrap_or_else(jiff::Timestamp::now);
        tracing::info!(pod = %self.name, namespace = %self.namespace, container = name, exit_code = code, "container exited");
        if running.started.elapsed() >= BACKOFF_RESET_AFTER {
            c.backoff = None;
        }
        c.terminated = Some(Terminated {
            exit_code: code,
            reason: if code == 0 {
                "Completed".into()
            } else {
                "Error".into()
            },
            started_at: Some(running.started_at),
            finished_at,
            container_id: id.to_string(),
        });
        c.dead_id = Some(id.to_string());
    }

    /// Whether a container that ended with `code` is started again.
    fn restarts(policy: &str, code: i32) -> bool {
        match policy {
            "Never" => false,
            "OnFailure" => code != 0,
            _ => true,
        }
    }

    async fn sync(&mut self, pod: &Pod) -> Result<()> {
        let Some(spec) = pod.spec.as_ref() else {
            return Ok(());
        };
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        if self.start_time.is_none() {
            self.start_time = Some(
                pod.status
                    .as_ref()
                    .and_then(|s| s.start_time.as_ref())
                    .map(|t| t.0)
                    .unwrap_or_else(jiff::Timestamp::now),
            );
        }
        // A pod that finished before (this or an earlier kubelet) is never run again.
        if matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        ) && self.containers.values().all(|c| c.running.is_none())
            && self.posted.is_none()
        {
            self.terminal = true;
            return Ok(());
        }
        for c in &spec.containers {
            let rec = self.containers.entry(c.name.clone()).or_default();
            if rec.restart_count == 0 {
                // Continue the count of a pod an earlier kubelet ran.
                if let Some(prev) = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .and_then(|cs| cs.iter().find(|s| s.name == c.name))
                {
                    rec.restart_count = prev.restart_count;
                }
            }
        }
        if let Some(message) = spec::unsupported(pod) {
            for c in &spec.containers {
                if let Some(rec) = self.containers.get_mut(&c.name) {
                    rec.waiting = Some(("CreateContainerConfigError".into(), message.clone()));
                }
            }
            return self.post_status(pod).await;
        }
        if !self.terminal {
            if self.network.is_none() && self.sandbox_retry.is_none_or(|t| t <= Instant::now()) {
                match self.setup_sandbox(pod).await {
                    Ok(()) => {
                        self.sandbox_error = None;
                        self.sandbox_retry = None;
                    }
                    Err(e) => {
                        tracing::warn!(pod = %self.name, namespace = %self.namespace, error = %e, "pod sandbox setup failed");
                        self.sandbox_error = Some(e.to_string());
                        self.sandbox_retry = Some(Instant::now() + BACKOFF_INITIAL);
                    }
                }
            }
            if self.network.is_some() {
                for c in spec.containers.clone() {
                    self.sync_container(pod, &c, &policy).await;
                }
            }
            let done = !spec.containers.is_empty()
                && spec.containers.iter().all(|c| {
                    self.containers.get(&c.name).is_some_and(|r| {
                        r.running.is_none()
                            && r.terminated
                                .as_ref()
                                .is_some_and(|t| !Self::restarts(&policy, t.exit_code))
                    })
                });
            if done {
                self.terminal = true;
                // A finished pod gives its IP back; its dead containers stay until the pod
                // is deleted.
                if let Err(e) = self.teardown_network().await {
                    tracing::warn!(pod = %self.name, error = %e, "network teardown of a finished pod failed");
                }
            }
        }
        self.post_status(pod).await
    }

    async fn sync_container(&mut self, pod: &Pod, c: &Container, policy: &str) {
        let now = Instant::now();
        let rec = self.containers.entry(c.name.clone()).or_default();
        if rec.running.is_some() {
            return;
        }
        if let Some(t) = &rec.terminated {
            if !Self::restarts(policy, t.exit_code) {
                return;
            }
            match rec.next_start {
                None => {
                    // Kubernetes restarts at once the first time, then backs off.
                    let delay = rec.backoff.unwrap_or(Duration::ZERO);
                    rec.backoff = Some(if delay.is_zero() {
                        BACKOFF_INITIAL
                    } else {
                        (delay * 2).min(BACKOFF_MAX)
                    });
                    rec.next_start = Some(now + delay);
                    if !delay.is_zero() {
                        rec.waiting = Some((
                            "CrashLoopBackOff".into(),
                            format!(
                                "back-off {}s restarting failed container={} pod={}_{}({})",
                                delay.as_secs(),
                                c.name,
                                self.name,
                                self.namespace,
                                self.uid
                            ),
                        ));
                        return;
                    }
                }
                Some(t) if t > now => return,
                Some(_) => {}
            }
        } else if rec.next_start.is_some_and(|t| t > now) {
            return;
        }
        rec.next_start = None;
        let restart = rec.terminated.is_some();
        match self.start_container(pod, c, restart).await {
            Ok(()) => {}
            Err(e) => {
                let rec = self.containers.entry(c.name.clone()).or_default();
                let (reason, retry) = match &e {
                    Error::InvalidImage { .. } => ("InvalidImageName", None),
                    Error::Image { .. } => {
                        let d = rec
                            .pull_backoff
                            .map_or(BACKOFF_INITIAL, |d| (d * 2).min(BACKOFF_MAX));
                        rec.pull_backoff = Some(d);
                        ("ErrImagePull", Some(d))
                    }
                    _ => (
                        "CreateContainerError",
                        Some(rec.backoff.unwrap_or(BACKOFF_INITIAL)),
                    ),
                };
                tracing::warn!(pod = %self.name, namespace = %self.namespace, container = %c.name, reason, error = %e, "container not started");
                rec.waiting = Some((reason.into(), e.to_string()));
                rec.next_start = retry.map(|d| Instant::now() + d);
            }
        }
    }

    async fn image_for(&self, c: &Container) -> Result<LocalImage> {
        let image = c.image.clone().unwrap_or_default();
        let reference = Reference::parse(&image)?;
        let name = reference.name();
        let policy = c.image_pull_policy.clone().unwrap_or_else(|| {
            if reference.tag.as_deref() == Some("latest") && reference.digest.is_none() {
                "Always".into()
            } else {
                "IfNotPresent".into()
            }
        });
        let lock = {
            let mut locks = self.shared.pull_locks.lock().await;
            locks.entry(name.clone()).or_default().clone()
        };
        let _guard = lock.lock().await;
        let local = image::local_image(&self.shared.rt, &name).await?;
        match (policy.as_str(), local) {
            ("Never", Some(l)) | ("IfNotPresent", Some(l)) => return Ok(l),
            ("Never", None) => {
                return Err(Error::Image {
                    image: image.clone(),
                    message: "not present on the node and imagePullPolicy is Never".into(),
                })
            }
            _ => {}
        }
        tracing::info!(image = %name, "pulling image");
        let started = Instant::now();
        self.shared.puller.pull(&self.shared.rt, &reference).await?;
        self.shared
            .metrics
            .image_pulls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(image = %name, elapsed_ms = started.elapsed().as_millis() as u64, "pulled image");
        image::local_image(&self.shared.rt, &name)
            .await?
            .ok_or_else(|| Error::Image {
                image,
                message: "pulled, but not found in containerd afterwards".into(),
            })
    }

    async fn start_container(&mut self, pod: &Pod, c: &Container, restart: bool) -> Result<()> {
        let local = self.image_for(c).await?;
        let rt = self.shared.rt.clone();
        let rec = self.containers.entry(c.name.clone()).or_default();
        rec.pull_backoff = None;
        // Only the last dead container is kept (for its status); it goes when the next starts.
        if let Some(old) = rec.dead_id.take() {
            remove_container(&rt, &old).await?;
        }
        let restart_count = if restart {
            rec.restart_count + 1
        } else {
            rec.restart_count
        };
        let Some(network) = self.network.clone() else {
            return Err(Error::Spec("the pod network is not set up".into()));
        };
        let dir = self.dir();
        let ns = PodNamespacePaths::new(&dir);
        let id = format!("{:032x}", rand::random::<u128>());
        let spec = spec::oci_spec(&SpecInput {
            pod,
            container: c,
            image: &local.config.config,
            namespaces: &PodNamespaces {
                net: network.netns.display().to_string(),
                ipc: ns.ipc.display().to_string(),
                uts: ns.uts.display().to_string(),
            },
            etc_dir: &dir.join("etc"),
            cgroups_path: format!("/skiff/{id}"),
        })?;
        let mut l = HashMap::new();
        l.insert(labels::POD_UID.to_string(), self.uid.clone());
        l.insert(labels::POD_NAME.to_string(), self.name.clone());
        l.insert(labels::POD_NAMESPACE.to_string(), self.namespace.clone());
        l.insert(labels::CONTAINER_NAME.to_string(), c.name.clone());
        l.insert(labels::RESTART_COUNT.to_string(), restart_count.to_string());
        rt.create_container(&id, &local.name, &spec, &id, l).await?;
        let started = async {
            let mounts = rt.prepare_snapshot(&id, &local.chain_id, None).await?;
            let log_dir = dir.join("logs").join(&c.name);
            tokio::fs::create_dir_all(&log_dir)
                .await
                .map_err(|e| Error::io("creating", &log_dir, e))?;
            rt.create_task(&id, mounts, &log_dir.join(format!("{restart_count}.log")))
                .await?;
            rt.start_task(&id).await
        }
        .await;
        if let Err(e) = started {
            let _ = remove_container(&rt, &id).await;
            return Err(e);
        }
        let (tx, rt2, name, id2) = (self.exits.clone(), rt.clone(), c.name.clone(), id.clone());
        tokio::spawn(async move {
            // Wait answers at once for a task that already exited, so a fast exit is not
            // missed; a broken connection to containerd is retried.
            loop {
                match rt2.wait_task(&id2).await {
                    Ok(exit) => {
                        let _ = tx.send((name, id2, exit));
                        return;
                    }
                    Err(e) if e.is_not_found() => {
                        let _ = tx.send((
                            name,
                            id2,
                            Exit {
                                code: 255,
                                at: None,
                            },
                        ));
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(container = %id2, error = %e, "Tasks.Wait failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        if tx.is_closed() {
                            return;
                        }
                    }
                }
            }
        });
        self.shared
            .metrics
            .containers_started
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let rec = self.containers.entry(c.name.clone()).or_default();
        if restart {
            rec.last = rec.terminated.take();
            rec.restart_count = restart_count;
        }
        rec.terminated = None;
        rec.waiting = None;
        rec.image_id = local.image_id;
        rec.running = Some(Running {
            id,
            started_at: jiff::Timestamp::now(),
            started: Instant::now(),
        });
        tracing::info!(pod = %self.name, namespace = %self.namespace, container = %c.name, restart_count, "container started");
        Ok(())
    }

    async fn setup_sandbox(&mut self, pod: &Pod) -> Result<()> {
        let dir = self.dir();
        let ns = PodNamespacePaths::new(&dir);
        let hostname = pod
            .spec
            .as_ref()
            .and_then(|s| s.hostname.clone())
            .unwrap_or_else(|| self.name.clone());
        let saved = dir.join("network.json");
        let (n1, n2, n3, h) = (
            ns.net.clone(),
            ns.ipc.clone(),
            ns.uts.clone(),
            hostname.clone(),
        );
        tokio::task::spawn_blocking(move || -> Result<()> {
            netns::create(Kind::Net, &n1, None)?;
            netns::create(Kind::Ipc, &n2, None)?;
            netns::create(Kind::Uts, &n3, Some(&h))
        })
        .await
        .map_err(|e| Error::Cni(format!("namespace setup: {e}")))??;
        let attachment = Attachment {
            container_id: self.uid.clone(),
            netns: ns.net.clone(),
            ifname: "eth0".into(),
            pod_namespace: self.namespace.clone(),
            pod_name: self.name.clone(),
        };
        let (net, result) = self.shared.cni.add(&attachment).await?;
        let network = Network {
            name: net.name,
            cni_version: net.cni_version,
            plugins: net.plugins,
            result,
            netns: ns.net.clone(),
            namespace: self.namespace.clone(),
            pod_name: self.name.clone(),
        };
        let json = serde_json::to_vec(&network).map_err(|e| Error::Cni(e.to_string()))?;
        tokio::fs::write(&saved, json)
            .await
            .map_err(|e| Error::io("writing", &saved, e))?;
        let ip = cni::result_ip(&network.result);
        let etc = dir.join("etc");
        tokio::fs::create_dir_all(&etc)
            .await
            .map_err(|e| Error::io("creating", &etc, e))?;
        let host_resolv = tokio::fs::read_to_string("/etc/resolv.conf")
            .await
            .unwrap_or_default();
        let files = [
            ("hosts", spec::etc_hosts(pod, ip.as_deref())),
            (
                "resolv.conf",
                spec::resolv_conf(
                    pod,
                    &self.shared.cluster_dns,
                    &self.shared.cluster_domain,
                    &host_resolv,
                ),
            ),
            ("hostname", format!("{hostname}\n")),
        ];
        for (f, text) in files {
            let p = etc.join(f);
            tokio::fs::write(&p, text)
                .await
                .map_err(|e| Error::io("writing", &p, e))?;
        }
        tracing::info!(pod = %self.name, namespace = %self.namespace, ip = ?ip, "pod network set up");
        self.network = Some(network);
        Ok(())
    }

    async fn teardown_network(&mut self) -> Result<()> {
        teardown_network(&self.shared, &self.dir(), &self.uid).await?;
        Ok(())
    }

    /// Stops every container (SIGTERM, SIGKILL after `grace`), removes everything, and
    /// finishes the API deletion.
    async fn terminate(
        &mut self,
        pod: Option<&Pod>,
        exits: &mut mpsc::UnboundedReceiver<(String, String, Exit)>,
    ) {
        let grace = pod
            .and_then(|p| p.metadata.deletion_grace_period_seconds)
            .unwrap_or(0)
            .max(0) as u64;
        let rt = self.shared.rt.clone();
        let running: Vec<(String, String)> = self
            .containers
            .iter()
            .filter_map(|(n, c)| c.running.as_ref().map(|r| (n.clone(), r.id.clone())))
            .collect();
        if !running.is_empty() {
            let signal = if grace == 0 {
                libc::SIGKILL
            } else {
                libc::SIGTERM
            };
            for (_, id) in &running {
                if let Err(e) = rt.kill_task(id, signal as u32).await {
                    tracing::warn!(container = %id, error = %e, "kill failed");
                }
            }
            let deadline = Instant::now() + Duration::from_secs(grace);
            while self.containers.values().any(|c| c.running.is_some()) {
                match tokio::time::timeout_at(deadline, exits.recv()).await {
                    Ok(Some((n, id, exit))) => self.on_exit(&n, &id, exit),
                    _ => break,
                }
            }
            let left: Vec<String> = self
                .containers
                .values()
                .filter_map(|c| c.running.as_ref().map(|r| r.id.clone()))
                .collect();
            for id in &left {
                let _ = rt.kill_task(id, libc::SIGKILL as u32).await;
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.containers.values().any(|c| c.running.is_some()) {
                match tokio::time::timeout_at(deadline, exits.recv()).await {
                    Ok(Some((n, id, exit))) => self.on_exit(&n, &id, exit),
                    _ => break,
                }
            }
        }
        if let Err(e) = cleanup_pod(&self.shared, &self.uid).await {
            tracing::warn!(pod = %self.name, namespace = %self.namespace, error = %e, "pod cleanup failed; retried at the next start");
        }
        if let Some(pod) = pod {
            // Report the containers' ends, then remove the object for good.
            self.terminal = true;
            let _ = self.post_status(pod).await;
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(self.uid.clone()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match self.pods().delete(&self.name, &dp).await {
                Ok(_) => {
                    tracing::info!(pod = %self.name, namespace = %self.namespace, "pod deleted")
                }
                Err(e) if e.is_not_found() || e.is_conflict() => {}
                Err(e) => {
                    tracing::warn!(pod = %self.name, namespace = %self.namespace, error = %e, "final delete failed")
                }
            }
        }
        tracing::info!(pod = %format!("{}/{}", self.namespace, self.name), uid = %self.uid, "pod worker finished");
    }

    fn status(&mut self, pod: &Pod) -> PodStatus {
        let spec_containers = pod
            .spec
            .as_ref()
            .map(|s| s.containers.clone())
            .unwrap_or_default();
        let policy = pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into());
        let mut statuses = Vec::new();
        let (mut pending, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
        for c in &spec_containers {
            let rec = self.containers.get(&c.name).cloned().unwrap_or_default();
            let terminated = |t: &Terminated| ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: t.exit_code,
                    reason: Some(t.reason.clone()),
                    started_at: t.started_at.map(Time),
                    finished_at: Some(Time(t.finished_at)),
                    container_id: Some(format!("containerd://{}", t.container_id)),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let (state, container_id) = if let Some(r) = &rec.running {
                running += 1;
                (
                    ContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: Some(Time(r.started_at)),
                        }),
                        ..Default::default()
                    },
                    Some(r.id.clone()),
                )
            } else if let (Some(t), None) = (&rec.terminated, &rec.waiting) {
                stopped += 1;
                if t.exit_code == 0 {
                    succeeded += 1;
                }
                (terminated(t), Some(t.container_id.clone()))
            } else {
                let (reason, message) = rec
                    .waiting
                    .clone()
                    .unwrap_or_else(|| ("ContainerCreating".into(), String::new()));
                if let Some(t) = rec.terminated.as_ref().or(rec.last.as_ref()) {
                    stopped += 1;
                    if t.exit_code == 0 {
                        succeeded += 1;
                    }
                } else {
                    pending += 1;
                }
                (
                    ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some(reason),
                            message: (!message.is_empty()).then_some(message),
                        }),
                        ..Default::default()
                    },
                    rec.terminated.as_ref().map(|t| t.container_id.clone()),
                )
            };
            // A container waiting for its restart shows its last end as lastState.
            let last = if rec.running.is_none() && rec.waiting.is_some() {
                rec.terminated.as_ref().or(rec.last.as_ref())
            } else {
                rec.last.as_ref()
            };
            statuses.push(ContainerStatus {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                image_id: rec.image_id.clone(),
                container_id: container_id.map(|id| format!("containerd://{id}")),
                ready: rec.running.is_some(),
                started: Some(rec.running.is_some()),
                restart_count: rec.restart_count,
                state: Some(state),
                last_state: Some(last.map(terminated).unwrap_or_default()),
                ..Default::default()
            });
        }
        let phase = if self.terminal && pending == 0 && running == 0 && stopped > 0 {
            if stopped == succeeded {
                "Succeeded"
            } else {
                "Failed"
            }
        } else if pending > 0 {
            "Pending"
        } else if running > 0 {
            "Running"
        } else if stopped > 0 {
            match policy.as_str() {
                "Always" => "Running",
                _ if stopped == succeeded => "Succeeded",
                "Never" => "Failed",
                _ => "Running",
            }
        } else {
            "Pending"
        };
        let all_ready = !spec_containers.is_empty() && running == spec_containers.len();
        let finished = matches!(phase, "Succeeded" | "Failed");
        let not_ready_reason = if finished {
            "PodCompleted"
        } else {
            "ContainersNotReady"
        };
        let now = jiff::Timestamp::now();
        let cond = |t: &str, ok: bool, reason: Option<&str>| PodCondition {
            type_: t.into(),
            status: if ok { "True".into() } else { "False".into() },
            reason: if ok { None } else { reason.map(str::to_string) },
            ..Default::default()
        };
        let mut conditions = vec![
            cond("PodReadyToStartContainers", self.network.is_some(), None),
            cond("Initialized", true, None),
            cond("Ready", all_ready, Some(not_ready_reason)),
            cond("ContainersReady", all_ready, Some(not_ready_reason)),
            cond("PodScheduled", true, None),
        ];
        for c in &mut conditions {
            let prev = self.conditions.iter().find(|p| p.type_ == c.type_);
            c.last_transition_time = match prev {
                Some(p) if p.status == c.status => p.last_transition_time.clone(),
                _ => Some(Time(now)),
            };
        }
        self.conditions = conditions.clone();
        let ip = self
            .network
            .as_ref()
            .and_then(|n| cni::result_ip(&n.result));
        let message = self.sandbox_error.clone();
        PodStatus {
            phase: Some(phase.into()),
            conditions: Some(conditions),
            host_ip: self.shared.node_ip.clone(),
            host_ips: self.shared.node_ip.clone().map(|ip| vec![HostIP { ip }]),
            pod_ip: ip.clone(),
            pod_ips: ip.map(|ip| vec![PodIP { ip }]),
            start_time: self.start_time.map(Time),
            container_statuses: Some(statuses),
            message,
            reason: None,
            ..Default::default()
        }
    }

    /// Writes the status fields that changed since the last post.
    async fn post_status(&mut self, pod: &Pod) -> Result<()> {
        let status = self.status(pod);
        let mut value = serde_json::to_value(&status).map_err(|e| Error::Spec(e.to_string()))?;
        // A terminal pod keeps its last podIP, as Kubernetes reports it.
        if self.terminal && value.get("podIP").is_none() {
            if let Some(prev) = self.posted.as_ref().and_then(|p| p.get("podIP")).cloned() {
                value["podIP"] = prev;
                value["podIPs"] = self
                    .posted
                    .as_ref()
                    .and_then(|p| p.get("podIPs"))
                    .cloned()
                    .unwrap_or(Value::Null);
            }
        }
        let mut changed = serde_json::Map::new();
        let Value::Object(fields) = &value else {
            return Ok(());
        };
        for (k, v) in fields {
            if self.posted.as_ref().and_then(|p| p.get(k)) != Some(v) {
                changed.insert(k.clone(), v.clone());
            }
        }
        if changed.is_empty() {
            return Ok(());
        }
        let patch = serde_json::json!({ "status": changed });
        match self
            .pods()
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => {
                self.posted = Some(value);
                Ok(())
            }
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Removes a container: task (killed if it still runs), record and snapshot.
pub async fn remove_container(rt: &Runtime, id: &str) -> Result<()> {
    if let Some((true, _)) = rt.task_state(id).await? {
        rt.kill_task(id, libc::SIGKILL as u32).await?;
        let _ = tokio::time::timeout(Duration::from_secs(10), rt.wait_task(id)).await;
    }
    rt.delete_task(id).await?;
    rt.delete_container(id).await?;
    rt.remove_snapshot(id).await
}

async fn teardown_network(shared: &Shared, dir: &std::path::Path, uid: &str) -> Result<()> {
    let saved = dir.join("network.json");
    let ns = PodNamespacePaths::new(dir);
    if let Ok(bytes) = tokio::fs::read(&saved).await {
        if let Ok(n) = serde_json::from_slice::<Network>(&bytes) {
            let net = NetworkList {
                name: n.name.clone(),
                cni_version: n.cni_version.clone(),
                plugins: n.plugins.clone(),
            };
            let attachment = Attachment {
                container_id: uid.to_string(),
                netns: n.netns.clone(),
                ifname: "eth0".into(),
                pod_namespace: n.namespace.clone(),
                pod_name: n.pod_name.clone(),
            };
            shared.cni.del(&net, &n.result, &attachment).await?;
        }
        tokio::fs::remove_file(&saved)
            .await
            .map_err(|e| Error::io("removing", &saved, e))?;
    }
    tokio::task::spawn_blocking(move || -> Result<()> {
        netns::remove(&ns.net)?;
        netns::remove(&ns.ipc)?;
        netns::remove(&ns.uts)
    })
    .await
    .map_err(|e| Error::Cni(format!("namespace removal: {e}")))?
}

/// Removes everything of pod `uid` from the node: its containers (with tasks and
/// snapshots), its network (CNI DEL) and namespaces, and its directory.
pub async fn cleanup_pod(shared: &Shared, uid: &str) -> Result<()> {
    let rt = &shared.rt;
    let filter = format!("labels.\"{}\"=={}", labels::POD_UID, uid);
    for c in rt.list_containers(Some(filter)).await? {
        remove_container(rt, &c.id).await?;
    }
    let dir = pod_dir(&shared.root_dir, uid);
    teardown_network(shared, &dir, uid).await?;
    match tokio::fs::remove_dir_all(&dir).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("removing", &dir, e)),
    }
}

/// Pod uids this node has containers or directories for.
pub async fn known_pod_uids(shared: &Shared) -> Result<Vec<String>> {
    let mut uids: Vec<String> = shared
        .rt
        .list_containers(None)
        .await?
        .into_iter()
        .filter_map(|c| c.labels.get(labels::POD_UID).cloned())
        .collect();
    if let Ok(mut entries) = tokio::fs::read_dir(shared.root_dir.join("pods")).await {
        while let Ok(Some(e)) = entries.next_entry().await {
            if let Some(name) = e.file_name().to_str() {
                uids.push(name.to_string());
            }
        }
    }
    uids.sort();
    uids.dedup();
    Ok(uids)
}
