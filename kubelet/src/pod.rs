//! Pod workers: one task per pod bound to this node, which reconciles the pod's
//! containers in containerd with its spec and writes its status back.
//!
//! A worker wakes when its pod changes, when one of its containers exits, or when a
//! restart back-off expires; it then reads the pod from the cache and acts on the
//! difference. When the pod is being deleted (or is gone), the worker stops the
//! containers (SIGTERM, then SIGKILL after the grace period), removes everything the
//! pod had on the node, and finishes the deletion with gracePeriodSeconds=0.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus, Secret,
    Service, ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Preconditions, Time};
use serde_json::Value;
use skiff_client::{Api, DeleteParams, Patch, PatchParams, PostParams, Store};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use crate::cni::{self, Attachment, NetworkList};
use crate::credentials::Keyring;
use crate::events::{self, PodRef};
use crate::image::{self, LocalImage};
use crate::logs;
use crate::netns::{self, Kind, PodNamespacePaths};
use crate::probe::{self, ProbeEvent, Probes, Target};
use crate::reference::Reference;
use crate::runtime::{labels, pod_dir, Exit, Runtime, TaskIo};
use crate::spec::{self, PodNamespaces, SpecInput};
use crate::users;
use crate::volume;
use crate::{Error, Metrics, Result};

/// Kubernetes' container restart back-off: 10 s doubling up to 5 min.
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
/// The back-off's ceiling.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How long a postStart hook may run before it counts as failed.
const POST_START_TIMEOUT: Duration = Duration::from_secs(120);
/// A container that ran this long without failing has its back-off reset.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(600);
/// How often configMap, secret, downwardAPI and projected volumes are brought up to
/// date with their objects (Kubernetes' kubelet syncs them about once a minute; skiff
/// is quicker because a refresh that changes nothing writes nothing).
const VOLUME_REFRESH: Duration = Duration::from_secs(5);

/// What every worker shares.
pub struct Shared {
    /// containerd.
    pub rt: Runtime,
    /// The running containers' live output, for attach.
    pub attachments: logs::Attachments,
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
    /// --pod-logs-dir.
    pub pod_logs_dir: PathBuf,
    /// The node's CPU in millicores.
    pub node_cpu_milli: i128,
    /// The node's memory in bytes.
    pub node_memory: i128,
    /// Size limits of container logs.
    pub log_rotation: logs::Rotation,
    /// Events about pods.
    pub events: events::Recorder,
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
    /// The OCI process of the container (exec probes and hooks run like it).
    process: Arc<Value>,
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
    /// The readiness probe's verdict (true without a probe).
    ready: bool,
    /// The startup probe's verdict (true without a probe).
    started: bool,
}

/// What a container counts as for the pod's phase.
#[derive(Clone, Copy, Debug)]
enum Count {
    Pending,
    Running,
    /// Stopped, and whether it exited 0.
    Stopped(bool),
}

/// What a container's waiter and prober tell its pod's worker. One channel carries
/// both: a channel holds a block of 32 slots from its start, and a node holds one worker
/// per pod.
#[derive(Debug)]
pub enum ContainerEvent {
    /// The container's main process ended.
    Exited(Exit),
    /// A probe's verdict.
    Probe(ProbeEvent),
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
    /// Where the containers' waiters and probers report.
    events: mpsc::UnboundedSender<(String, String, ContainerEvent)>,
    /// Probers of running containers, by container id.
    probers: HashMap<String, tokio::task::JoinHandle<()>>,
    /// Containers being stopped after a failed liveness or startup probe.
    killing: HashSet<String>,
    network: Option<Network>,
    /// Boxed: a map's node holds room for eleven entries, and most pods have one
    /// container.
    containers: BTreeMap<String, Box<ContainerRecord>>,
    start_time: Option<jiff::Timestamp>,
    posted: Option<Value>,
    conditions: Vec<PodCondition>,
    terminal: bool,
    /// Every init container has succeeded (they do not run again).
    initialized: bool,
    sandbox_error: Option<String>,
    sandbox_retry: Option<Instant>,
    /// Every volume of the pod is set up.
    volumes_ready: bool,
    /// Why the volumes are not set up, while they are retried.
    volume_error: Option<String>,
    volume_retry: Option<Instant>,
    /// When the API volumes are next compared with their objects.
    volume_refresh: Option<Instant>,
    /// The labels and annotations the downward API files were written from.
    volume_meta: Option<Value>,
    /// Service account tokens of projected volumes, fetched from the TokenRequest API.
    tokens: BTreeMap<volume::TokenKey, volume::HeldToken>,
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
        events: tx,
        probers: HashMap::new(),
        killing: HashSet::new(),
        network: None,
        containers: BTreeMap::new(),
        start_time: None,
        posted: None,
        conditions: Vec::new(),
        terminal: false,
        initialized: false,
        sandbox_error: None,
        sandbox_retry: None,
        volumes_ready: false,
        volume_error: None,
        volume_retry: None,
        volume_refresh: None,
        volume_meta: None,
        tokens: BTreeMap::new(),
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

    fn log_dir(&self) -> PathBuf {
        logs::pod_log_dir(
            &self.shared.pod_logs_dir,
            &self.namespace,
            &self.name,
            &self.uid,
        )
    }

    async fn run(mut self, mut events: mpsc::UnboundedReceiver<(String, String, ContainerEvent)>) {
        tracing::info!(pod = %format!("{}/{}", self.namespace, self.name), uid = %self.uid, "pod worker started");
        if let Some(pod) = current_pod(&self.shared.store, &self.namespace, &self.name, &self.uid) {
            if let Err(e) = Box::pin(self.adopt(&pod)).await {
                tracing::warn!(pod = %self.name, namespace = %self.namespace, error = %e, "adopting what an earlier kubelet left failed; starting the pod afresh");
                if let Err(e) = cleanup_pod(&self.shared, &self.uid).await {
                    tracing::warn!(pod = %self.name, error = %e, "cleanup failed");
                }
                self = self.fresh();
            }
        }
        loop {
            let pod = current_pod(&self.shared.store, &self.namespace, &self.name, &self.uid);
            let deleting = pod
                .as_ref()
                .is_none_or(|p| p.metadata.deletion_timestamp.is_some());
            if deleting {
                Box::pin(self.terminate(pod.as_deref(), &mut events)).await;
                return;
            }
            if let Some(pod) = pod {
                // Boxed, like adopt and terminate: the state of a sync in progress is
                // large (about 11 KiB) and only needed while it runs, and an idle
                // worker, waiting below, is what a node holds one of per pod.
                if let Err(e) = Box::pin(self.sync(&pod)).await {
                    tracing::warn!(pod = %self.name, namespace = %self.namespace, error = %e, "pod sync failed");
                }
            }
            let wake = self.next_wake();
            tokio::select! {
                _ = self.notify.notified() => {}
                Some((name, id, event)) = events.recv() => self.on_event(&name, &id, event),
                _ = sleep_until(wake) => {}
            }
            // Handle every exit and verdict that arrived together before the next sync.
            while let Ok((name, id, event)) = events.try_recv() {
                self.on_event(&name, &id, event);
            }
        }
    }

    fn on_event(&mut self, name: &str, id: &str, event: ContainerEvent) {
        match event {
            ContainerEvent::Exited(exit) => self.on_exit(name, id, exit),
            ContainerEvent::Probe(e) => self.on_probe(name, id, e),
        }
    }

    /// The same worker with none of the state an adoption may have filled in.
    fn fresh(&self) -> Worker {
        Worker {
            shared: self.shared.clone(),
            uid: self.uid.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            notify: self.notify.clone(),
            events: self.events.clone(),
            probers: HashMap::new(),
            killing: HashSet::new(),
            network: None,
            containers: BTreeMap::new(),
            start_time: None,
            posted: None,
            conditions: Vec::new(),
            terminal: false,
            initialized: false,
            sandbox_error: None,
            sandbox_retry: None,
            volumes_ready: false,
            volume_error: None,
            volume_retry: None,
            volume_refresh: None,
            volume_meta: None,
            tokens: BTreeMap::new(),
        }
    }

    /// Takes over what an earlier kubelet left of this pod on the node: its network,
    /// volumes and containers. Running containers keep running (their exits are
    /// waited for, their output logged again, their probes run); exited ones count as
    /// ended, so the restart policy decides. Restart counts continue from the
    /// containers' labels.
    async fn adopt(&mut self, pod: &Pod) -> Result<()> {
        let rt = self.shared.rt.clone();
        let filter = format!("labels.\"{}\"=={}", labels::POD_UID, self.uid);
        let found = rt.list_containers(Some(filter)).await?;
        let dir = self.dir();
        let saved = dir.join("network.json");
        let network = match tokio::fs::read(&saved).await {
            Ok(bytes) => Some(
                serde_json::from_slice::<Network>(&bytes)
                    .map_err(|e| Error::Cni(format!("{}: {e}", saved.display())))?,
            ),
            Err(_) => None,
        };
        if found.is_empty() && network.is_none() {
            return Ok(());
        }
        let Some(network) = network else {
            return Err(Error::Cni("containers without a saved pod network".into()));
        };
        if !PodNamespacePaths::new(&dir).net.exists() {
            return Err(Error::Cni("the pod's network namespace is gone".into()));
        }
        let restarts = |c: &containerd_client::services::v1::Container| -> i32 {
            c.labels
                .get(labels::RESTART_COUNT)
                .and_then(|r| r.parse().ok())
                .unwrap_or(0)
        };
        // The newest run of each container is adopted; older ones are removed.
        let mut newest: BTreeMap<String, containerd_client::services::v1::Container> =
            BTreeMap::new();
        for c in found {
            let Some(name) = c.labels.get(labels::CONTAINER_NAME).cloned() else {
                remove_container(&rt, &c.id).await?;
                continue;
            };
            match newest.get(&name) {
                Some(n) if restarts(n) >= restarts(&c) => remove_container(&rt, &c.id).await?,
                _ => {
                    if let Some(old) = newest.insert(name, c) {
                        remove_container(&rt, &old.id).await?;
                    }
                }
            }
        }
        let statuses: Vec<ContainerStatus> = pod
            .status
            .as_ref()
            .map(|s| {
                s.init_container_statuses
                    .iter()
                    .chain(&s.container_statuses)
                    .flatten()
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let specs: Vec<Container> = spec
            .init_containers
            .clone()
            .unwrap_or_default()
            .into_iter()
            .chain(spec.containers.clone())
            .collect();
        self.network = Some(network);
        for (name, c) in newest {
            let Some(cspec) = specs.iter().find(|s| s.name == name).cloned() else {
                remove_container(&rt, &c.id).await?;
                continue;
            };
            let status = statuses.iter().find(|s| s.name == name);
            let to_time = |t: &ContainerStateTerminated| Terminated {
                exit_code: t.exit_code,
                reason: t.reason.clone().unwrap_or_default(),
                started_at: t.started_at.as_ref().map(|t| t.0),
                finished_at: t
                    .finished_at
                    .as_ref()
                    .map(|t| t.0)
                    .unwrap_or_else(jiff::Timestamp::now),
                container_id: t
                    .container_id
                    .as_deref()
                    .map(|id| id.trim_start_matches("containerd://").to_string())
                    .unwrap_or_default(),
            };
            let restart_count = restarts(&c);
            let mut rec = ContainerRecord {
                restart_count,
                image_id: status.map(|s| s.image_id.clone()).unwrap_or_default(),
                last: status
                    .and_then(|s| s.last_state.as_ref())
                    .and_then(|l| l.terminated.as_ref())
                    .map(to_time),
                ready: cspec.readiness_probe.is_none(),
                started: cspec.startup_probe.is_none(),
                ..Default::default()
            };
            let process = Arc::new(
                c.spec
                    .as_ref()
                    .and_then(|any| serde_json::from_slice::<Value>(&any.value).ok())
                    .and_then(|v| v.get("process").cloned())
                    .unwrap_or(Value::Null),
            );
            match rt.task_state(&c.id).await? {
                Some((true, _)) => {
                    let started_at = status
                        .and_then(|s| s.state.as_ref())
                        .and_then(|s| s.running.as_ref())
                        .and_then(|r| r.started_at.as_ref())
                        .map(|t| t.0)
                        .unwrap_or_else(jiff::Timestamp::now);
                    rec.running = Some(Running {
                        id: c.id.clone(),
                        started_at,
                        started: Instant::now(),
                        process: process.clone(),
                    });
                    // The output FIFOs are still open on the shim's side: read them again.
                    let (out, err) = logs::fifo_paths(&dir, &c.id);
                    let log_path = logs::container_log_path(&self.log_dir(), &name, restart_count);
                    match logs::LogFile::open(&log_path, self.shared.log_rotation) {
                        Ok(file) => {
                            let reader = |p: &std::path::Path| logs::open_now(p).ok();
                            // The shim still holds stdin open: write into it again.
                            let tty = cspec.tty == Some(true);
                            let stdin = (cspec.stdin == Some(true))
                                .then(|| logs::open_stdin(&logs::stdin_path(&dir, &c.id)).ok())
                                .flatten();
                            let interactive = (stdin.is_some() || tty).then(|| {
                                logs::Interactive::new(stdin, cspec.stdin_once == Some(true), tty)
                            });
                            let publisher = self
                                .shared
                                .attachments
                                .publish_interactive(&c.id, interactive);
                            tokio::spawn(logs::pump(reader(&out), reader(&err), file, publisher));
                        }
                        Err(e) => {
                            tracing::warn!(container = %c.id, error = %e, "adopted container's output not logged")
                        }
                    }
                    self.spawn_waiter(name.clone(), c.id.clone());
                    match Probes::of(&cspec) {
                        Ok(probes) if probes.is_empty() => {}
                        Ok(probes) => {
                            let task = tokio::spawn(probe::prober(
                                probes,
                                self.target(&c.id, &process),
                                name.clone(),
                                self.events.clone(),
                            ));
                            self.probers.insert(c.id.clone(), task);
                        }
                        Err(e) => {
                            tracing::warn!(pod = %self.name, container = %name, error = %e, "probes not run")
                        }
                    }
                }
                Some((false, exit)) => {
                    let code = i32::try_from(exit.code).unwrap_or(i32::MAX);
                    let reason = if code == 0 {
                        "Completed"
                    } else if oom_killed(&c.id) {
                        "OOMKilled"
                    } else {
                        "Error"
                    };
                    rec.terminated = Some(Terminated {
                        exit_code: code,
                        reason: reason.into(),
                        started_at: None,
                        finished_at: exit.at.unwrap_or_else(jiff::Timestamp::now),
                        container_id: c.id.clone(),
                    });
                    rec.dead_id = Some(c.id.clone());
                }
                None => {
                    // Created but never given a task: it never ran.
                    remove_container(&rt, &c.id).await?;
                    continue;
                }
            }
            tracing::info!(pod = %self.name, namespace = %self.namespace, container = %name, id = %c.id, restart_count, running = rec.running.is_some(), "adopted container");
            self.containers.insert(name, Box::new(rec));
        }
        let inits = spec.init_containers.clone().unwrap_or_default();
        let app_adopted = spec
            .containers
            .iter()
            .any(|c| self.containers.contains_key(&c.name));
        let inits_done = inits.iter().all(|c| {
            self.containers
                .get(&c.name)
                .is_some_and(|r| r.terminated.as_ref().is_some_and(|t| t.exit_code == 0))
        });
        self.initialized = app_adopted || (!inits.is_empty() && inits_done);
        // The volumes are where the earlier kubelet made them; the next refresh
        // brings API volumes up to date.
        self.volumes_ready = true;
        self.volume_refresh = Some(Instant::now());
        Ok(())
    }

    fn next_wake(&self) -> Option<Instant> {
        // ErrImagePull turns into ImagePullBackOff soon after, as with Kubernetes.
        let flip = self
            .containers
            .values()
            .any(|c| c.waiting.as_ref().is_some_and(|(r, _)| r == "ErrImagePull"))
            .then(|| Instant::now() + Duration::from_secs(1));
        self.containers
            .values()
            .filter_map(|c| c.next_start)
            .chain(flip)
            .chain(self.sandbox_retry)
            .chain(self.volume_retry)
            .chain(self.volume_refresh)
            .min()
    }

    fn on_exit(&mut self, name: &str, id: &str, exit: Exit) {
        let Some(c) = self.containers.get_mut(name) else {
            return;
        };
        let Some(running) = c.running.take_if(|r| r.id == id) else {
            return;
        };
        if let Some(p) = self.probers.remove(id) {
            p.abort();
        }
        self.killing.remove(id);
        let code = i32::try_from(exit.code).unwrap_or(i32::MAX);
        let finished_at = exit.at.unwrap_or_else(jiff::Timestamp::now);
        tracing::info!(pod = %self.name, namespace = %self.namespace, container = name, exit_code = code, "container exited");
        if running.started.elapsed() >= BACKOFF_RESET_AFTER {
            c.backoff = None;
        }
        let reason = if code == 0 {
            "Completed"
        } else if oom_killed(id) {
            "OOMKilled"
        } else {
            "Error"
        };
        c.terminated = Some(Terminated {
            exit_code: code,
            reason: reason.into(),
            started_at: Some(running.started_at),
            finished_at,
            container_id: id.to_string(),
        });
        c.dead_id = Some(id.to_string());
    }

    /// Acts on what a container's prober found.
    fn on_probe(&mut self, name: &str, id: &str, event: ProbeEvent) {
        let Some(rec) = self
            .containers
            .get_mut(name)
            .filter(|c| c.running.as_ref().is_some_and(|r| r.id == id))
        else {
            return;
        };
        match event {
            ProbeEvent::Started => rec.started = true,
            ProbeEvent::Ready(ready) => rec.ready = ready,
            ProbeEvent::Unhealthy(message) => {
                let pod = current_pod(&self.shared.store, &self.namespace, &self.name, &self.uid);
                let field = pod.and_then(|p| self.field(&p, name));
                self.shared
                    .events
                    .warning(&self.pod_ref(), field, "Unhealthy", message.clone());
                tracing::info!(pod = %self.name, namespace = %self.namespace, container = name, %message, "probe failed");
            }
            ProbeEvent::Kill(message) => {
                if !self.killing.insert(id.to_string()) {
                    return;
                }
                tracing::info!(pod = %self.name, namespace = %self.namespace, container = name, %message, "killing container");
                let field = current_pod(&self.shared.store, &self.namespace, &self.name, &self.uid)
                    .and_then(|p| self.field(&p, name));
                self.shared
                    .events
                    .normal(&self.pod_ref(), field, "Killing", message);
                let pod = current_pod(&self.shared.store, &self.namespace, &self.name, &self.uid);
                let grace = pod
                    .as_ref()
                    .and_then(|p| p.spec.as_ref())
                    .and_then(|s| s.termination_grace_period_seconds)
                    .unwrap_or(30);
                let Some(stop) = self.stop_plan(pod.as_deref(), name, id) else {
                    return;
                };
                tokio::spawn(stop.run(Duration::from_secs(grace.max(0) as u64)));
            }
        }
    }

    /// How to stop a running container: its preStop hook and where it runs.
    fn stop_plan(&self, pod: Option<&Pod>, name: &str, id: &str) -> Option<StopPlan> {
        let running = self.containers.get(name)?.running.as_ref()?;
        let container = pod.and_then(|p| p.spec.as_ref()).and_then(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
                .find(|c| c.name == name)
                .cloned()
        });
        let pre_stop = container.as_ref().and_then(|c| {
            let hook = c.lifecycle.as_ref()?.pre_stop.as_ref()?;
            probe::hook_action(hook, c).ok()
        });
        Some(StopPlan {
            target: self.target(id, &running.process),
            pre_stop,
        })
    }

    fn target(&self, id: &str, process: &Arc<Value>) -> Target {
        Target {
            rt: self.shared.rt.clone(),
            container_id: id.to_string(),
            process: (**process).clone(),
            pod_ip: self
                .network
                .as_ref()
                .and_then(|n| cni::result_ip(&n.result)),
        }
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
        let inits = spec.init_containers.clone().unwrap_or_default();
        for c in inits.iter().chain(&spec.containers) {
            let rec = self.containers.entry(c.name.clone()).or_default();
            if rec.restart_count == 0 {
                // Continue the count of a pod an earlier kubelet ran.
                if let Some(prev) = pod.status.as_ref().and_then(|s| {
                    s.container_statuses
                        .iter()
                        .chain(&s.init_container_statuses)
                        .flatten()
                        .find(|s| s.name == c.name)
                }) {
                    rec.restart_count = prev.restart_count;
                }
            }
        }
        if let Some(message) = spec::unsupported(pod) {
            let waiting = Some(("CreateContainerConfigError".to_string(), message.clone()));
            let mut new = false;
            for c in inits.iter().chain(&spec.containers) {
                if let Some(rec) = self.containers.get_mut(&c.name) {
                    new |= rec.waiting != waiting;
                    rec.waiting = waiting.clone();
                }
            }
            if new {
                self.shared.events.warning(
                    &self.pod_ref(),
                    None,
                    "Failed",
                    format!("Error: {message}"),
                );
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
                self.sync_volumes(pod).await;
            }
            if self.network.is_some() && self.volumes_ready {
                self.sync_init_containers(pod, &policy).await;
                if self.initialized {
                    for c in spec.containers.clone() {
                        self.sync_container(pod, &c, &policy).await;
                    }
                }
            }
            let init_failed = self.init_failed(pod, &policy);
            let done = init_failed
                || (!spec.containers.is_empty()
                    && spec.containers.iter().all(|c| {
                        self.containers.get(&c.name).is_some_and(|r| {
                            r.running.is_none()
                                && r.terminated
                                    .as_ref()
                                    .is_some_and(|t| !Self::restarts(&policy, t.exit_code))
                        })
                    }));
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

    /// Sets up the pod's volumes before its first container, then keeps its API volumes
    /// up to date with their objects and with the pod's labels and annotations.
    async fn sync_volumes(&mut self, pod: &Pod) {
        let now = Instant::now();
        let meta = serde_json::json!([pod.metadata.labels, pod.metadata.annotations]);
        if !self.volumes_ready {
            if self.volume_retry.is_some_and(|t| t > now) {
                return;
            }
            match self.write_volumes(pod, true).await {
                Ok(()) => {
                    self.volumes_ready = true;
                    self.volume_error = None;
                    self.volume_retry = None;
                    self.volume_refresh = Some(now + VOLUME_REFRESH);
                    self.volume_meta = Some(meta);
                    for rec in self.containers.values_mut() {
                        if rec
                            .waiting
                            .as_ref()
                            .is_some_and(|(r, _)| r == "ContainerCreating")
                        {
                            rec.waiting = None;
                        }
                    }
                }
                Err(e) => {
                    let message = format!("MountVolume.SetUp failed: {e}");
                    tracing::warn!(pod = %self.name, namespace = %self.namespace, error = %e, "volume setup failed; retrying");
                    if self.volume_error.as_ref() != Some(&message) {
                        self.shared.events.warning(
                            &self.pod_ref(),
                            None,
                            "FailedMount",
                            message.clone(),
                        );
                    }
                    for rec in self.containers.values_mut() {
                        if rec.running.is_none() && rec.terminated.is_none() {
                            rec.waiting = Some(("ContainerCreating".into(), message.clone()));
                        }
                    }
                    self.volume_error = Some(message);
                    self.volume_retry = Some(now + BACKOFF_INITIAL);
                }
            }
            return;
        }
        let meta_changed = self.volume_meta.as_ref() != Some(&meta);
        if meta_changed || self.volume_refresh.is_some_and(|t| t <= now) {
            if let Err(e) = self.write_volumes(pod, false).await {
                tracing::warn!(pod = %self.name, namespace = %self.namespace, error = %e, "volume refresh failed; the files stay as they were");
            }
            self.volume_meta = Some(meta);
            self.volume_refresh = Some(Instant::now() + VOLUME_REFRESH);
        }
    }

    /// Makes the pod's volumes (`first`) or rewrites its API volumes whose content
    /// changed. A refresh leaves a volume whose object is gone as it was.
    async fn write_volumes(&mut self, pod: &Pod, first: bool) -> Result<()> {
        let volumes = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default();
        if volumes.is_empty() {
            return Ok(());
        }
        let dir = self.dir();
        let (cm_names, secret_names) = volume::references(pod);
        let mut objects = volume::Objects::default();
        if let Err(e) = self.fetch_tokens(pod).await {
            // A refresh keeps the token it holds until that one expires; the next
            // refresh asks again.
            if first || self.tokens.is_empty() {
                return Err(e);
            }
            tracing::warn!(pod = %self.name, namespace = %self.namespace, error = %e, "service account token refresh failed");
        }
        objects.tokens = self
            .tokens
            .iter()
            .map(|(k, t)| (k.clone(), t.token.clone()))
            .collect();
        let cms: Api<ConfigMap> = Api::namespaced(self.shared.pods.clone(), &self.namespace);
        for name in cm_names {
            if let Some(cm) = cms.get_opt(&name).await? {
                let mut data: BTreeMap<String, Vec<u8>> = cm
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes()))
                    .collect();
                for (k, v) in cm.binary_data.unwrap_or_default() {
                    data.insert(k, v.0);
                }
                objects.config_maps.insert(name, data);
            }
        }
        let secrets: Api<Secret> = Api::namespaced(self.shared.pods.clone(), &self.namespace);
        for name in secret_names {
            if let Some(s) = secrets.get_opt(&name).await? {
                objects.secrets.insert(name, secret_data(s));
            }
        }
        let sources = crate::env::EnvSources {
            pod_ip: self
                .network
                .as_ref()
                .and_then(|n| cni::result_ip(&n.result)),
            host_ip: self.shared.node_ip.clone(),
            node_cpu_milli: self.shared.node_cpu_milli,
            node_memory: self.shared.node_memory,
            ..Default::default()
        };
        for v in &volumes {
            let kind = volume::kind_of(v).map_err(Error::ContainerConfig)?;
            let target = kind.source(&dir, &v.name);
            match &kind {
                volume::Kind::EmptyDir { memory, size_limit } if first => {
                    volume::setup_empty_dir(&target, *memory, size_limit.as_deref())?
                }
                volume::Kind::HostPath { path, type_ } if first => {
                    volume::check_host_path(path, type_)?
                }
                volume::Kind::Api { .. } => {
                    let payload = match volume::payload(pod, v, &objects, &sources) {
                        Ok(p) => p,
                        Err(e) if first => {
                            return Err(Error::ContainerConfig(format!("volume {:?}: {e}", v.name)))
                        }
                        Err(e) => {
                            tracing::info!(pod = %self.name, volume = %v.name, error = %e, "volume not refreshed");
                            continue;
                        }
                    };
                    if volume::write_payload(&target, &payload)? && !first {
                        tracing::info!(pod = %self.name, namespace = %self.namespace, volume = %v.name, "volume updated");
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Fetches the service account tokens the pod's projected volumes need and do not
    /// hold yet, or hold past their refresh time, from the TokenRequest API, bound to
    /// the pod (so that they stop being valid with it).
    async fn fetch_tokens(&mut self, pod: &Pod) -> Result<()> {
        let account = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        for key in volume::token_requests(pod) {
            let now = jiff::Timestamp::now().as_second();
            if self.tokens.get(&key).is_some_and(|t| !t.needs_refresh(now)) {
                continue;
            }
            let (audience, seconds) = &key;
            let mut spec = serde_json::json!({
                "expirationSeconds": seconds,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": self.name, "uid": self.uid},
            });
            if !audience.is_empty() {
                spec["audiences"] = serde_json::json!([audience]);
            }
            let request = serde_json::json!({
                "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec,
            });
            let api: Api<ServiceAccount> =
                Api::namespaced(self.shared.pods.clone(), &self.namespace);
            let answer: Value = api
                .create_subresource(&account, "token", &PostParams::default(), &request)
                .await
                .map_err(|e| {
                    Error::ContainerConfig(format!(
                        "fetching a token of service account {account:?} (audience {audience:?}): {e}"
                    ))
                })?;
            let token = answer["status"]["token"].as_str().unwrap_or_default();
            let expires = answer["status"]["expirationTimestamp"]
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .map(|t| t.as_second());
            let (false, Some(expires)) = (token.is_empty(), expires) else {
                return Err(Error::ContainerConfig(format!(
                    "the TokenRequest of service account {account:?} was answered without a token or expiry"
                )));
            };
            tracing::info!(pod = %self.name, namespace = %self.namespace, account = %account, audience = %audience, "fetched a service account token");
            self.tokens.insert(
                key.clone(),
                volume::HeldToken {
                    token: token.to_string(),
                    issued: now,
                    expires,
                },
            );
        }
        Ok(())
    }

    /// Runs the init containers one at a time, in order, each once it exited 0 the
    /// previous; a failed one is restarted with back-off unless the pod's policy is
    /// Never (then the pod fails). Sets `initialized` when all have succeeded.
    async fn sync_init_containers(&mut self, pod: &Pod, policy: &str) {
        if self.initialized {
            return;
        }
        let inits = pod
            .spec
            .as_ref()
            .and_then(|s| s.init_containers.clone())
            .unwrap_or_default();
        // Init containers restart on failure under Always as under OnFailure.
        let init_policy = if policy == "Never" {
            "Never"
        } else {
            "OnFailure"
        };
        for c in &inits {
            let rec = self.containers.entry(c.name.clone()).or_default();
            if rec.running.is_some() {
                return;
            }
            match &rec.terminated {
                Some(t) if t.exit_code == 0 && rec.waiting.is_none() => continue,
                _ => {}
            }
            self.sync_container(pod, c, init_policy).await;
            return;
        }
        self.initialized = true;
    }

    /// Whether an init container failed for good (restartPolicy Never).
    fn init_failed(&self, pod: &Pod, policy: &str) -> bool {
        policy == "Never"
            && pod
                .spec
                .as_ref()
                .and_then(|s| s.init_containers.as_ref())
                .is_some_and(|inits| {
                    inits.iter().any(|c| {
                        self.containers.get(&c.name).is_some_and(|r| {
                            r.running.is_none()
                                && r.terminated.as_ref().is_some_and(|t| t.exit_code != 0)
                        })
                    })
                })
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
                        let message = format!(
                            "Back-off restarting failed container {} in pod {}_{}({})",
                            c.name, self.name, self.namespace, self.uid
                        );
                        let field = self.field(pod, &c.name);
                        self.shared
                            .events
                            .warning(&self.pod_ref(), field, "BackOff", message);
                        return;
                    }
                }
                Some(t) if t > now => {
                    self.image_pull_back_off(c);
                    return;
                }
                Some(_) => {}
            }
        } else if rec.next_start.is_some_and(|t| t > now) {
            self.image_pull_back_off(c);
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
                    Error::ContainerConfig(_) => (
                        "CreateContainerConfigError",
                        Some(rec.backoff.unwrap_or(BACKOFF_INITIAL)),
                    ),
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
                let field = self.field(pod, &c.name);
                let events = &self.shared.events;
                if reason == "ErrImagePull" {
                    events.warning(
                        &self.pod_ref(),
                        field.clone(),
                        "Failed",
                        format!(
                            "Failed to pull image {:?}: {e}",
                            c.image.as_deref().unwrap_or_default()
                        ),
                    );
                    events.warning(&self.pod_ref(), field, "Failed", format!("Error: {reason}"));
                } else {
                    events.warning(&self.pod_ref(), field, "Failed", format!("Error: {e}"));
                }
            }
        }
    }

    /// After a failed pull, the container waits with ImagePullBackOff until the retry.
    fn image_pull_back_off(&mut self, c: &Container) {
        let image = c.image.clone().unwrap_or_default();
        let Some(rec) = self.containers.get_mut(&c.name) else {
            return;
        };
        if rec
            .waiting
            .as_ref()
            .is_some_and(|(r, _)| r == "ErrImagePull")
        {
            let message = format!("Back-off pulling image {image:?}");
            rec.waiting = Some(("ImagePullBackOff".into(), message.clone()));
            let pod = current_pod(&self.shared.store, &self.namespace, &self.name, &self.uid);
            let field = pod.and_then(|p| self.field(&p, &c.name));
            self.shared
                .events
                .normal(&self.pod_ref(), field, "BackOff", message);
        }
    }

    fn pod_ref(&self) -> PodRef {
        PodRef {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
        }
    }

    /// The Event fieldPath of container `name` of the pod.
    fn field(&self, pod: &Pod, name: &str) -> Option<String> {
        let spec = pod.spec.as_ref()?;
        let init = spec
            .init_containers
            .iter()
            .flatten()
            .any(|c| c.name == name);
        Some(events::field_path(name, init))
    }

    async fn image_for(&self, pod: &Pod, c: &Container) -> Result<LocalImage> {
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
            ("Never", Some(l)) | ("IfNotPresent", Some(l)) => {
                self.shared.events.normal(
                    &self.pod_ref(),
                    self.field(pod, &c.name),
                    "Pulled",
                    format!("Container image {image:?} already present on machine"),
                );
                return Ok(l);
            }
            ("Never", None) => {
                return Err(Error::Image {
                    image: image.clone(),
                    message: "not present on the node and imagePullPolicy is Never".into(),
                })
            }
            _ => {}
        }
        tracing::info!(image = %name, "pulling image");
        self.shared.events.normal(
            &self.pod_ref(),
            self.field(pod, &c.name),
            "Pulling",
            format!("Pulling image {image:?}"),
        );
        let keyring = self.pull_keyring(pod).await;
        let started = Instant::now();
        self.shared
            .puller
            .pull(&self.shared.rt, &reference, &keyring)
            .await
            .map_err(|e| match e {
                e @ (Error::Image { .. } | Error::InvalidImage { .. }) => e,
                // containerd failing mid-pull (a full disk) is still a failed pull.
                other => Error::Image {
                    image: image.clone(),
                    message: other.to_string(),
                },
            })?;
        self.shared
            .metrics
            .image_pulls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(image = %name, elapsed_ms = started.elapsed().as_millis() as u64, "pulled image");
        self.shared.events.normal(
            &self.pod_ref(),
            self.field(pod, &c.name),
            "Pulled",
            format!(
                "Successfully pulled image {image:?} in {}ms",
                started.elapsed().as_millis()
            ),
        );
        image::local_image(&self.shared.rt, &name)
            .await?
            .ok_or_else(|| Error::Image {
                image,
                message: "pulled, but not found in containerd afterwards".into(),
            })
    }

    /// The registry credentials of the pod's imagePullSecrets. Secrets that are missing
    /// or unusable get a Warning Event, as Kubernetes gives, and the pull goes on with
    /// the others: the image may not need them.
    async fn pull_keyring(&self, pod: &Pod) -> Keyring {
        let mut keyring = Keyring::default();
        let names: Vec<String> = pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.as_ref())
            .into_iter()
            .flatten()
            .map(|r| r.name.clone())
            .filter(|n| !n.is_empty())
            .collect();
        let secrets: Api<Secret> = Api::namespaced(self.shared.pods.clone(), &self.namespace);
        let mut problems = Vec::new();
        for name in names {
            match secrets.get_opt(&name).await {
                Ok(Some(secret)) => {
                    if let Err(problem) = keyring.add_secret(&name, &secret_data(secret)) {
                        problems.push(problem);
                    }
                }
                Ok(None) => problems.push(format!("secret {name} not found")),
                Err(e) => problems.push(format!("secret {name}: {e}")),
            }
        }
        if !problems.is_empty() {
            self.shared.events.warning(
                &self.pod_ref(),
                None,
                "FailedToRetrieveImagePullSecret",
                format!(
                    "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                    problems.join("; ")
                ),
            );
        }
        keyring
    }

    async fn start_container(&mut self, pod: &Pod, c: &Container, restart: bool) -> Result<()> {
        let local = self.image_for(pod, c).await?;
        let rt = self.shared.rt.clone();
        let rec = self.containers.entry(c.name.clone()).or_default();
        rec.pull_backoff = None;
        // Only the last dead container is kept (for its status); it goes when the next starts.
        let dead = rec.dead_id.take();
        let restart_count = if restart {
            rec.restart_count + 1
        } else {
            rec.restart_count
        };
        if let Some(old) = dead {
            remove_container(&rt, &old).await?;
            let (out, err) = logs::fifo_paths(&self.dir(), &old);
            let _ = tokio::fs::remove_file(out).await;
            let _ = tokio::fs::remove_file(err).await;
            let _ = tokio::fs::remove_file(logs::stdin_path(&self.dir(), &old)).await;
        }
        // The log of the previous run stays (kubectl logs --previous); older ones go.
        if restart_count >= 2 {
            logs::remove_run(&logs::container_log_path(
                &self.log_dir(),
                &c.name,
                restart_count - 2,
            ));
        }
        let Some(network) = self.network.clone() else {
            return Err(Error::Spec("the pod network is not set up".into()));
        };
        let dir = self.dir();
        let ns = PodNamespacePaths::new(&dir);
        let id = format!("{:032x}", rand::random::<u128>());
        let sources = self.env_sources(pod, c).await?;
        let vars = crate::env::container_vars(pod, c, &sources)
            .map_err(|e| Error::ContainerConfig(e.to_string()))?;
        let plans = volume::mount_plans(pod, c, &dir, &vars)?;
        for p in plans.iter().filter(|p| p.sub_path) {
            // Kubernetes makes a missing subPath as a directory.
            if std::fs::symlink_metadata(&p.source).is_err() {
                std::fs::create_dir_all(&p.source)
                    .map_err(|e| Error::io("creating the subPath", &p.source, e))?;
            }
        }
        let mounts: Vec<Value> = plans.iter().map(volume::oci_mount).collect();
        let image_users = match local.config.config.user.as_deref() {
            Some(u) if users::names_anyone(u) && !spec::runs_as_user(pod, c) => {
                Some(rt.image_users(&local.chain_id).await?)
            }
            _ => None,
        };
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
            env: &vars,
            mounts: &mounts,
            image_users: image_users.as_ref(),
        })?;
        let mut l = HashMap::new();
        l.insert(labels::POD_UID.to_string(), self.uid.clone());
        l.insert(labels::POD_NAME.to_string(), self.name.clone());
        l.insert(labels::POD_NAMESPACE.to_string(), self.namespace.clone());
        l.insert(labels::CONTAINER_NAME.to_string(), c.name.clone());
        l.insert(labels::RESTART_COUNT.to_string(), restart_count.to_string());
        rt.create_container(&id, &local.name, &spec, &id, l).await?;
        let log_path = logs::container_log_path(&self.log_dir(), &c.name, restart_count);
        let rotation = self.shared.log_rotation;
        let attachments = self.shared.attachments.clone();
        let started = async {
            let mounts = rt.prepare_snapshot(&id, &local.chain_id, None).await?;
            let (out, err) = logs::fifo_paths(&dir, &id);
            // On a terminal the one stream is the terminal's: stdout.
            let tty = c.tty == Some(true);
            let stdin_path = (c.stdin == Some(true)).then(|| logs::stdin_path(&dir, &id));
            logs::make_fifo(&out)?;
            if !tty {
                logs::make_fifo(&err)?;
            }
            let stdin = match &stdin_path {
                Some(p) => {
                    logs::make_fifo(p)?;
                    Some(logs::open_stdin(p)?)
                }
                None => None,
            };
            let file = logs::LogFile::open(&log_path, rotation)?;
            let out_reader = tokio::spawn(logs::open_when_written(out.clone()));
            let err_reader = (!tty).then(|| tokio::spawn(logs::open_when_written(err.clone())));
            let io = TaskIo {
                stdin: stdin_path.as_deref(),
                stdout: &out,
                stderr: (!tty).then_some(err.as_path()),
                terminal: tty,
            };
            if let Err(e) = rt.create_task(&id, mounts, io).await {
                logs::release(&out);
                logs::release(&err);
                return Err(e);
            }
            let reader = |r: std::result::Result<Result<_>, _>| match r {
                Ok(Ok(r)) => Some(r),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "container output not logged");
                    None
                }
                Err(_) => None,
            };
            let both = async {
                let o = out_reader.await;
                let e = match err_reader {
                    Some(r) => reader(r.await),
                    None => None,
                };
                (o, e)
            };
            match tokio::time::timeout(Duration::from_secs(10), both).await {
                Ok((o, e)) => {
                    let interactive = (stdin.is_some() || tty).then(|| {
                        logs::Interactive::new(stdin, c.stdin_once == Some(true), tty)
                    });
                    let publisher = attachments.publish_interactive(&id, interactive);
                    tokio::spawn(logs::pump(reader(o), e, file, publisher));
                }
                Err(_) => {
                    tracing::warn!(container = %id, "the runtime did not open the output FIFOs; output not logged");
                    logs::release(&out);
                    logs::release(&err);
                }
            }
            rt.start_task(&id).await
        }
        .await;
        if let Err(e) = started {
            let _ = remove_container(&rt, &id).await;
            return Err(e);
        }
        self.spawn_waiter(c.name.clone(), id.clone());
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
        rec.ready = c.readiness_probe.is_none();
        rec.started = c.startup_probe.is_none();
        let process = Arc::new(spec.get("process").cloned().unwrap_or(Value::Null));
        rec.running = Some(Running {
            id: id.clone(),
            started_at: jiff::Timestamp::now(),
            started: Instant::now(),
            process: process.clone(),
        });
        tracing::info!(pod = %self.name, namespace = %self.namespace, container = %c.name, restart_count, "container started");
        let field = self.field(pod, &c.name);
        let events = &self.shared.events;
        events.normal(
            &self.pod_ref(),
            field.clone(),
            "Created",
            format!("Created container {}", c.name),
        );
        events.normal(
            &self.pod_ref(),
            field.clone(),
            "Started",
            format!("Started container {}", c.name),
        );
        let target = self.target(&id, &process);
        if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            let outcome = match probe::hook_action(hook, c) {
                Ok(action) => action.run(&target, POST_START_TIMEOUT).await,
                Err(e) => Err(e.to_string()),
            };
            if let Err(message) = outcome {
                // Kubernetes kills a container whose postStart hook failed; its restart
                // policy decides what follows.
                tracing::warn!(pod = %self.name, namespace = %self.namespace, container = %c.name, %message, "postStart hook failed; killing the container");
                self.shared
                    .events
                    .warning(&self.pod_ref(), field, "FailedPostStartHook", message);
                if let Err(e) = rt.kill_task(&id, libc::SIGKILL as u32).await {
                    tracing::warn!(container = %id, error = %e, "SIGKILL failed");
                }
                return Ok(());
            }
        }
        match Probes::of(c) {
            Ok(probes) if probes.is_empty() => {}
            Ok(probes) => {
                let task = tokio::spawn(probe::prober(
                    probes,
                    target,
                    c.name.clone(),
                    self.events.clone(),
                ));
                self.probers.insert(id, task);
            }
            Err(e) => {
                tracing::warn!(pod = %self.name, container = %c.name, error = %e, "probes not run")
            }
        }
        Ok(())
    }

    /// Reports the exit of container `id` (named `name` in the pod) to the worker.
    fn spawn_waiter(&self, name: String, id: String) {
        let (tx, rt2, id2) = (self.events.clone(), self.shared.rt.clone(), id);
        tokio::spawn(async move {
            // Wait answers at once for a task that already exited, so a fast exit is not
            // missed; a broken connection to containerd is retried.
            loop {
                match rt2.wait_task(&id2).await {
                    Ok(exit) => {
                        let _ = tx.send((name, id2, ContainerEvent::Exited(exit)));
                        return;
                    }
                    Err(e) if e.is_not_found() => {
                        let _ = tx.send((
                            name,
                            id2,
                            ContainerEvent::Exited(Exit {
                                code: 255,
                                at: None,
                            }),
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
    }

    /// Fetches what the container's environment reads: its ConfigMaps and Secrets,
    /// and the Services whose variables it gets.
    async fn env_sources(&self, pod: &Pod, c: &Container) -> Result<crate::env::EnvSources> {
        let client = self.shared.pods.clone();
        let (cm_names, secret_names) = crate::env::references(c);
        let mut sources = crate::env::EnvSources {
            pod_ip: self
                .network
                .as_ref()
                .and_then(|n| cni::result_ip(&n.result)),
            host_ip: self.shared.node_ip.clone(),
            node_cpu_milli: self.shared.node_cpu_milli,
            node_memory: self.shared.node_memory,
            ..Default::default()
        };
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &self.namespace);
        for name in cm_names {
            if let Some(cm) = cms.get_opt(&name).await? {
                sources
                    .config_maps
                    .insert(name, cm.data.unwrap_or_default());
            }
        }
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &self.namespace);
        for name in secret_names {
            if let Some(s) = secrets.get_opt(&name).await? {
                let mut data: BTreeMap<String, Vec<u8>> = s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect();
                for (k, v) in s.string_data.unwrap_or_default() {
                    data.insert(k, v.into_bytes());
                }
                sources.secrets.insert(name, data);
            }
        }
        let links = pod
            .spec
            .as_ref()
            .and_then(|s| s.enable_service_links)
            .unwrap_or(true);
        if links {
            let services: Api<Service> = Api::namespaced(client.clone(), &self.namespace);
            sources.services = services.list(&Default::default()).await?.items;
        }
        // The API server's own Service is always announced, as Kubernetes does.
        if !(links && self.namespace == "default") {
            let default: Api<Service> = Api::namespaced(client, "default");
            if let Some(k) = default.get_opt("kubernetes").await? {
                sources.services.push(k);
            }
        }
        Ok(sources)
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
        events: &mut mpsc::UnboundedReceiver<(String, String, ContainerEvent)>,
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
        for p in self.probers.values() {
            p.abort();
        }
        for (n, _) in &running {
            self.shared.events.normal(
                &self.pod_ref(),
                pod.and_then(|p| self.field(p, n)),
                "Killing",
                format!("Stopping container {n}"),
            );
        }
        if !running.is_empty() {
            // Every container stops at once: preStop, SIGTERM, SIGKILL at the deadline.
            let plans: Vec<StopPlan> = running
                .iter()
                .filter_map(|(n, id)| self.stop_plan(pod, n, id))
                .collect();
            let grace = Duration::from_secs(grace);
            let deadline = Instant::now() + grace;
            let stopping = tokio::spawn(futures::future::join_all(
                plans.into_iter().map(|p| p.run(grace)),
            ));
            while self.containers.values().any(|c| c.running.is_some()) {
                match tokio::time::timeout_at(deadline + Duration::from_secs(1), events.recv())
                    .await
                {
                    Ok(Some((n, id, ContainerEvent::Exited(exit)))) => self.on_exit(&n, &id, exit),
                    // Probes no longer matter to a pod on its way out.
                    Ok(Some((_, _, ContainerEvent::Probe(_)))) => {}
                    _ => break,
                }
            }
            let _ = stopping.await;
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
                match tokio::time::timeout_at(deadline, events.recv()).await {
                    Ok(Some((n, id, ContainerEvent::Exited(exit)))) => self.on_exit(&n, &id, exit),
                    Ok(Some((_, _, ContainerEvent::Probe(_)))) => {}
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
        self.shared.events.forget(&self.uid);
        tracing::info!(pod = %format!("{}/{}", self.namespace, self.name), uid = %self.uid, "pod worker finished");
    }

    /// The status of one container and what it counts as for the pod's phase.
    fn container_status(&self, c: &Container, default_waiting: &str) -> (ContainerStatus, Count) {
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
        let (state, container_id, count) = if let Some(r) = &rec.running {
            (
                ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(Time(r.started_at)),
                    }),
                    ..Default::default()
                },
                Some(r.id.clone()),
                Count::Running,
            )
        } else if let (Some(t), None) = (&rec.terminated, &rec.waiting) {
            (
                terminated(t),
                Some(t.container_id.clone()),
                Count::Stopped(t.exit_code == 0),
            )
        } else {
            let (reason, message) = rec
                .waiting
                .clone()
                .unwrap_or_else(|| (default_waiting.to_string(), String::new()));
            let count = match rec.terminated.as_ref().or(rec.last.as_ref()) {
                Some(t) => Count::Stopped(t.exit_code == 0),
                None => Count::Pending,
            };
            (
                ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some(reason),
                        message: (!message.is_empty()).then_some(message),
                    }),
                    ..Default::default()
                },
                rec.terminated.as_ref().map(|t| t.container_id.clone()),
                count,
            )
        };
        // A container waiting for its restart shows its last end as lastState.
        let last = if rec.running.is_none() && rec.waiting.is_some() {
            rec.terminated.as_ref().or(rec.last.as_ref())
        } else {
            rec.last.as_ref()
        };
        let running = rec.running.is_some();
        let status = ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            image_id: rec.image_id.clone(),
            container_id: container_id.map(|id| format!("containerd://{id}")),
            ready: running && rec.ready && rec.started,
            started: Some(running && rec.started),
            restart_count: rec.restart_count,
            state: Some(state),
            last_state: Some(last.map(terminated).unwrap_or_default()),
            ..Default::default()
        };
        (status, count)
    }

    fn status(&mut self, pod: &Pod) -> PodStatus {
        let spec_containers = pod
            .spec
            .as_ref()
            .map(|s| s.containers.clone())
            .unwrap_or_default();
        let inits = pod
            .spec
            .as_ref()
            .and_then(|s| s.init_containers.clone())
            .unwrap_or_default();
        let policy = pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into());
        let mut init_statuses = Vec::new();
        let mut incomplete = Vec::new();
        for c in &inits {
            let (mut st, _) = self.container_status(c, "PodInitializing");
            // A finished init container is ready: it did its work.
            let done = st
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .is_some_and(|t| t.exit_code == 0);
            st.ready = done;
            if !done {
                incomplete.push(c.name.clone());
            }
            init_statuses.push(st);
        }
        let init_failed = self.init_failed(pod, &policy);
        let default_waiting = if self.initialized {
            "ContainerCreating"
        } else {
            "PodInitializing"
        };
        let mut statuses = Vec::new();
        let (mut pending, mut running, mut stopped, mut succeeded, mut ready) = (0, 0, 0, 0, 0);
        for c in &spec_containers {
            let (st, count) = self.container_status(c, default_waiting);
            match count {
                Count::Pending => pending += 1,
                Count::Running => running += 1,
                Count::Stopped(ok) => {
                    stopped += 1;
                    if ok {
                        succeeded += 1;
                    }
                }
            }
            if st.ready {
                ready += 1;
            }
            statuses.push(st);
        }
        let phase = if init_failed {
            "Failed"
        } else if !self.initialized {
            "Pending"
        } else if self.terminal && pending == 0 && running == 0 && stopped > 0 {
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
        let all_ready = !spec_containers.is_empty() && ready == spec_containers.len();
        let finished = matches!(phase, "Succeeded" | "Failed");
        let not_ready_reason = if finished {
            "PodCompleted"
        } else {
            "ContainersNotReady"
        };
        let not_ready: Vec<String> = statuses
            .iter()
            .filter(|s| !s.ready)
            .map(|s| s.name.clone())
            .collect();
        let not_ready_message = (!finished && !not_ready.is_empty())
            .then(|| format!("containers with unready status: [{}]", not_ready.join(" ")));
        let init_message = (!incomplete.is_empty()).then(|| {
            format!(
                "containers with incomplete status: [{}]",
                incomplete.join(" ")
            )
        });
        let now = jiff::Timestamp::now();
        let cond =
            |t: &str, ok: bool, reason: Option<&str>, message: Option<&String>| PodCondition {
                type_: t.into(),
                status: if ok { "True".into() } else { "False".into() },
                reason: if ok { None } else { reason.map(str::to_string) },
                message: if ok { None } else { message.cloned() },
                ..Default::default()
            };
        let initialized =
            self.initialized || inits.is_empty() || (finished && incomplete.is_empty());
        let mut conditions = vec![
            cond(
                "PodReadyToStartContainers",
                self.network.is_some(),
                None,
                None,
            ),
            cond(
                "Initialized",
                initialized,
                Some(if finished {
                    "PodCompleted"
                } else {
                    "ContainersNotInitialized"
                }),
                init_message.as_ref(),
            ),
            cond(
                "Ready",
                all_ready,
                Some(not_ready_reason),
                not_ready_message.as_ref(),
            ),
            cond(
                "ContainersReady",
                all_ready,
                Some(not_ready_reason),
                not_ready_message.as_ref(),
            ),
            cond("PodScheduled", true, None, None),
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
            init_container_statuses: (!inits.is_empty()).then_some(init_statuses),
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

/// Stopping one container: its preStop hook, SIGTERM, and SIGKILL once the grace
/// period is over.
struct StopPlan {
    target: Target,
    pre_stop: Option<probe::Action>,
}

impl StopPlan {
    async fn run(self, grace: Duration) {
        let rt = &self.target.rt;
        let id = &self.target.container_id;
        let deadline = Instant::now() + grace;
        if !grace.is_zero() {
            if let Some(action) = &self.pre_stop {
                match tokio::time::timeout_at(deadline, action.run(&self.target, grace)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(message)) => {
                        tracing::warn!(container = %id, %message, "preStop hook failed")
                    }
                    Err(_) => {
                        tracing::warn!(container = %id, "preStop hook did not finish within the grace period")
                    }
                }
            }
            if let Err(e) = rt.kill_task(id, libc::SIGTERM as u32).await {
                tracing::warn!(container = %id, error = %e, "SIGTERM failed");
            }
            if tokio::time::timeout_at(deadline, rt.wait_task(id))
                .await
                .is_ok()
            {
                return;
            }
        }
        if let Err(e) = rt.kill_task(id, libc::SIGKILL as u32).await {
            tracing::warn!(container = %id, error = %e, "SIGKILL failed");
        }
    }
}

/// Whether the kernel's OOM killer killed a process of container `id`, from its
/// memory cgroup (kept until the task is deleted): `oom_kill` in memory.oom_control
/// (cgroup v1) or memory.events (v2).
fn oom_killed(id: &str) -> bool {
    let files = [
        format!("/sys/fs/cgroup/memory/skiff/{id}/memory.oom_control"),
        format!("/sys/fs/cgroup/skiff/{id}/memory.events"),
    ];
    files.iter().any(|f| {
        std::fs::read_to_string(f).is_ok_and(|text| {
            text.lines().any(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
            })
        })
    })
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
    volume::unmount_all(&dir)?;
    // The pod's logs go with it, as Kubernetes removes them with the pod.
    let suffix = format!("_{uid}");
    if let Ok(mut entries) = tokio::fs::read_dir(&shared.pod_logs_dir).await {
        while let Ok(Some(e)) = entries.next_entry().await {
            if e.file_name().to_str().is_some_and(|n| n.ends_with(&suffix)) {
                let p = e.path();
                tokio::fs::remove_dir_all(&p)
                    .await
                    .map_err(|e| Error::io("removing", &p, e))?;
            }
        }
    }
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

/// A Secret's data, decoded, and its `stringData` should it carry any unconverted.
fn secret_data(secret: Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    for (k, v) in secret.string_data.unwrap_or_default() {
        data.insert(k, v.into_bytes());
    }
    data
}
