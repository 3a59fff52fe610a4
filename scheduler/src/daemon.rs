//! The scheduler daemon: watches Nodes and Pods into the [`Cache`], takes pods from the
//! [`SchedulingQueue`], decides with [`schedule`], assumes and binds; marks pods that fit
//! nowhere Unschedulable (condition and Event) and retries them when the cluster
//! changes. With leader election only the Lease holder schedules; its caches are built
//! afresh each time it starts leading.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    Binding, Event as KubeEvent, EventSource, Node, ObjectReference, Pod, PodCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Status, Time};
use rand::rngs::StdRng;
use rand::SeedableRng;
use skiff_client::leader_election::Outcome;
use skiff_client::watcher::{self, Event};
use skiff_client::{
    Api, Client, LeaderElectionConfig, LeaderElector, Patch, PatchParams, PostParams,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::cache::Cache;
use crate::decide::schedule;
use crate::queue::SchedulingQueue;
use crate::score::Weights;
use crate::snapshot::{NodeView, PodInfo};
use crate::{Error, Result};

/// The scheduler name pods get by default and this scheduler answers to.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";
/// kube-scheduler's default health and metrics port.
pub const DEFAULT_PORT: u16 = 10259;
/// Bindings sent at once; more pods wait in the active queue.
const MAX_BINDINGS_IN_FLIGHT: usize = 256;
/// Pods decided per turn of the loop before watch events get a chance.
const BATCH: usize = 64;

/// How the daemon runs; `skiff scheduler`'s flags.
#[derive(Clone, Debug)]
pub struct Config {
    /// Kubeconfig file; None: `$KUBECONFIG`, then `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// Take part in leader election before scheduling (kube-scheduler's default).
    pub leader_elect: bool,
    /// Lease timings.
    pub leader_election: LeaderElectionConfig,
    /// Namespace of the Lease.
    pub lease_namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
    /// Where `/healthz` and `/metrics` are served (port 0: any free port).
    pub listen: SocketAddr,
    /// Pods whose `spec.schedulerName` is this (or empty) are ours.
    pub scheduler_name: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            kubeconfig: None,
            leader_elect: true,
            leader_election: LeaderElectionConfig::default(),
            lease_namespace: "kube-system".into(),
            lease_name: "kube-scheduler".into(),
            listen: SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
            scheduler_name: DEFAULT_SCHEDULER_NAME.into(),
        }
    }
}

/// Latency buckets of the scheduling algorithm, seconds.
const BUCKETS: &[f64] = &[0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0];

/// Counters served on `/metrics`, in kube-scheduler's names.
#[derive(Default)]
pub struct Metrics {
    scheduled: AtomicU64,
    unschedulable: AtomicU64,
    errors: AtomicU64,
    pending: [AtomicI64; 4],
    leader: AtomicI64,
    algo_buckets: [AtomicU64; 9],
    algo_count: AtomicU64,
    algo_sum_nanos: AtomicU64,
}

impl Metrics {
    fn observe_algorithm(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.algo_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.algo_count.fetch_add(1, Ordering::Relaxed);
        self.algo_sum_nanos.fetch_add(
            d.as_nanos().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut o = String::new();
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        o.push_str("# HELP scheduler_schedule_attempts_total Number of attempts to schedule pods, by the result.\n# TYPE scheduler_schedule_attempts_total counter\n");
        for (result, v) in [
            ("scheduled", l(&self.scheduled)),
            ("unschedulable", l(&self.unschedulable)),
            ("error", l(&self.errors)),
        ] {
            let _ = writeln!(o, "scheduler_schedule_attempts_total{{profile=\"default-scheduler\",result=\"{result}\"}} {v}");
        }
        o.push_str("# HELP scheduler_pending_pods Number of pending pods, by the queue type.\n# TYPE scheduler_pending_pods gauge\n");
        for (i, q) in ["active", "backoff", "unschedulable", "inflight"]
            .iter()
            .enumerate()
        {
            let _ = writeln!(
                o,
                "scheduler_pending_pods{{queue=\"{q}\"}} {}",
                self.pending[i].load(Ordering::Relaxed)
            );
        }
        o.push_str("# HELP scheduler_scheduling_algorithm_duration_seconds Scheduling algorithm latency in seconds.\n# TYPE scheduler_scheduling_algorithm_duration_seconds histogram\n");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                o,
                "scheduler_scheduling_algorithm_duration_seconds_bucket{{le=\"{b}\"}} {}",
                l(&self.algo_buckets[i])
            );
        }
        let _ = writeln!(
            o,
            "scheduler_scheduling_algorithm_duration_seconds_bucket{{le=\"+Inf\"}} {}",
            l(&self.algo_count)
        );
        let _ = writeln!(
            o,
            "scheduler_scheduling_algorithm_duration_seconds_sum {}",
            l(&self.algo_sum_nanos) as f64 / 1e9
        );
        let _ = writeln!(
            o,
            "scheduler_scheduling_algorithm_duration_seconds_count {}",
            l(&self.algo_count)
        );
        o.push_str("# HELP leader_election_master_status Whether this process leads (1) or not (0).\n# TYPE leader_election_master_status gauge\n");
        let _ = writeln!(
            o,
            "leader_election_master_status{{name=\"kube-scheduler\"}} {}",
            self.leader.load(Ordering::Relaxed)
        );
        o
    }
}

fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}_{:016x}", rand::random::<u64>())
}

/// Runs the scheduler until `shutdown` completes. Fails when the apiserver config is
/// unusable, the health port cannot be opened, or (with leader election) leadership is
/// lost after it was held.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
    let client = Client::from_kubeconfig(config.kubeconfig.as_deref(), None)?;
    let metrics = Arc::new(Metrics::default());
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Serve {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(config.listen);
    tracing::info!(%addr, "serving /healthz and /metrics");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = {
        let metrics = metrics.clone();
        let app = axum::Router::new()
            .route("/healthz", axum::routing::get(|| async { "ok" }))
            .route("/livez", axum::routing::get(|| async { "ok" }))
            .route("/readyz", axum::routing::get(|| async { "ok" }))
            .route(
                "/metrics",
                axum::routing::get(move || {
                    let m = metrics.clone();
                    async move {
                        (
                            [(
                                axum::http::header::CONTENT_TYPE,
                                "text/plain; version=0.0.4",
                            )],
                            m.render(),
                        )
                    }
                }),
            );
        let mut rx = stop_rx.clone();
        tokio::spawn(async move {
            let stop = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::warn!(%error, "health server failed");
            }
        })
    };
    let identity = identity();
    let scheduler = Scheduler::new(client.clone(), metrics.clone(), &config, &identity);
    let result = if config.leader_elect {
        let leases: Api<Lease> = Api::namespaced(client, &config.lease_namespace);
        let mut elector = LeaderElector::new(
            leases,
            &config.lease_name,
            &identity,
            config.leader_election.clone(),
        );
        let mut leading = elector.is_leader();
        let m = metrics.clone();
        let follow = tokio::spawn(async move {
            while leading.changed().await.is_ok() {
                m.leader
                    .store(i64::from(*leading.borrow()), Ordering::Relaxed);
            }
        });
        tracing::info!(lease = %format!("{}/{}", config.lease_namespace, config.lease_name), %identity, "waiting for leadership");
        let outcome = elector.run(shutdown, scheduler.run()).await;
        follow.abort();
        match outcome {
            Ok(Outcome::LostLeadership) => Err(Error::LeaderElectionLost),
            Ok(_) => Ok(()),
            Err(e) => Err(e.into()),
        }
    } else {
        metrics.leader.store(1, Ordering::Relaxed);
        tokio::select! {
            _ = shutdown => {}
            _ = scheduler.run() => {}
        }
        Ok(())
    };
    let _ = stop_tx.send(true);
    let _ = server.await;
    result
}

struct BindResult {
    key: String,
    node: String,
    result: skiff_client::Result<()>,
}

struct Scheduler {
    client: Client,
    metrics: Arc<Metrics>,
    scheduler_name: String,
    identity: String,
    weights: Weights,
}

struct State {
    cache: Cache,
    queue: SchedulingQueue,
    pending: HashMap<String, Arc<Pod>>,
    start: usize,
    rng: StdRng,
    inflight: usize,
    pod_list: Option<Vec<Pod>>,
    node_list: Option<Vec<Node>>,
    pods_synced: bool,
    nodes_synced: bool,
}

fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

impl Scheduler {
    fn new(client: Client, metrics: Arc<Metrics>, config: &Config, identity: &str) -> Self {
        Scheduler {
            client,
            metrics,
            scheduler_name: config.scheduler_name.clone(),
            identity: identity.to_string(),
            weights: Weights::default(),
        }
    }

    fn ours(&self, pod: &Pod) -> bool {
        let name = pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or("");
        (name.is_empty() || name == self.scheduler_name)
            && pod.metadata.deletion_timestamp.is_none()
    }

    /// Watches and schedules until dropped.
    async fn run(&self) {
        let pods = watcher::watcher(
            Api::<Pod>::all(self.client.clone()),
            watcher::Config::default().fields("status.phase!=Succeeded,status.phase!=Failed"),
        );
        let nodes = watcher::watcher(
            Api::<Node>::all(self.client.clone()),
            watcher::Config::default(),
        );
        tokio::pin!(pods, nodes);
        let (tx, mut rx) = mpsc::unbounded_channel::<BindResult>();
        let mut st = State {
            cache: Cache::new(),
            queue: SchedulingQueue::new(),
            pending: HashMap::new(),
            start: 0,
            rng: StdRng::from_entropy(),
            inflight: 0,
            pod_list: None,
            node_list: None,
            pods_synced: false,
            nodes_synced: false,
        };
        let mut gauges = tokio::time::interval(Duration::from_secs(1));
        tracing::info!("scheduler started: watching nodes and pods");
        loop {
            let wake = st.queue.next_wakeup();
            let can_schedule = st.pods_synced
                && st.nodes_synced
                && st.queue.has_active()
                && st.inflight < MAX_BINDINGS_IN_FLIGHT;
            tokio::select! {
                Some(ev) = pods.next() => match ev {
                    Ok(ev) => self.pod_event(&mut st, ev),
                    Err(error) => tracing::debug!(%error, "pod watch failed; the watcher retries"),
                },
                Some(ev) = nodes.next() => match ev {
                    Ok(ev) => self.node_event(&mut st, ev),
                    Err(error) => tracing::debug!(%error, "node watch failed; the watcher retries"),
                },
                Some(r) = rx.recv() => self.bind_done(&mut st, r),
                _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                    st.queue.flush(Instant::now());
                }
                _ = gauges.tick() => {
                    for (g, v) in self.metrics.pending.iter().zip(st.queue.counts()) {
                        g.store(v as i64, Ordering::Relaxed);
                    }
                }
                _ = std::future::ready(()), if can_schedule => {
                    for _ in 0..BATCH {
                        if st.inflight >= MAX_BINDINGS_IN_FLIGHT {
                            break;
                        }
                        let Some(key) = st.queue.pop(Instant::now()) else { break };
                        self.schedule_one(&mut st, &key, &tx);
                    }
                }
            }
        }
    }

    fn node_event(&self, st: &mut State, ev: Event<Node>) {
        let now = Instant::now();
        match ev {
            Event::Init => st.node_list = Some(Vec::new()),
            Event::InitApply(n) => st.node_list.get_or_insert_with(Vec::new).push(n),
            Event::InitDone => {
                let list = st.node_list.take().unwrap_or_default();
                st.cache.replace_nodes(&list);
                st.nodes_synced = true;
                tracing::info!(nodes = list.len(), "node cache synced");
                st.queue.move_all(now);
            }
            Event::Apply(n) => {
                let Some(name) = n.metadata.name.as_deref() else {
                    return;
                };
                let view = NodeView::new(&n);
                let changed = st
                    .cache
                    .snapshot()
                    .get(name)
                    .and_then(|i| i.node.as_ref())
                    .is_none_or(|old| *old != view);
                st.cache.set_node(&n);
                if changed {
                    st.queue.move_all(now);
                }
            }
            Event::Delete(n) => {
                if let Some(name) = n.metadata.name.as_deref() {
                    st.cache.remove_node(name);
                }
            }
        }
    }

    fn pod_event(&self, st: &mut State, ev: Event<Pod>) {
        match ev {
            Event::Init => st.pod_list = Some(Vec::new()),
            Event::InitApply(p) => st.pod_list.get_or_insert_with(Vec::new).push(p),
            Event::InitDone => {
                let list = st.pod_list.take().unwrap_or_default();
                let keys: HashSet<String> = list.iter().map(pod_key).collect();
                st.cache.retain_pods(&keys);
                st.pending.retain(|k, _| keys.contains(k));
                let pending = &st.pending;
                let cache = &st.cache;
                let stale: Vec<String> = st
                    .queue
                    .keys()
                    .into_iter()
                    .filter(|k| !pending.contains_key(k) && !cache.is_assumed(k))
                    .collect();
                for k in stale {
                    st.queue.remove(&k);
                }
                let n = list.len();
                for p in list {
                    self.pod_changed(st, p, false);
                }
                st.pods_synced = true;
                tracing::info!(pods = n, pending = st.pending.len(), "pod cache synced");
            }
            Event::Apply(p) => self.pod_changed(st, p, false),
            Event::Delete(p) => self.pod_changed(st, p, true),
        }
    }

    fn pod_changed(&self, st: &mut State, pod: Pod, deleted: bool) {
        let now = Instant::now();
        let key = pod_key(&pod);
        if deleted || is_terminal(&pod) {
            st.pending.remove(&key);
            st.queue.remove(&key);
            if st.cache.remove_pod(&key) {
                // Its resources and ports are free again.
                st.queue.move_all(now);
            }
            return;
        }
        if let Some(node) = node_name(&pod) {
            st.pending.remove(&key);
            st.queue.remove(&key);
            st.cache.bound(&key, node, PodInfo::new(&pod).usage());
            return;
        }
        if !self.ours(&pod) {
            st.pending.remove(&key);
            st.queue.remove(&key);
            return;
        }
        let spec_changed = st
            .pending
            .get(&key)
            .is_some_and(|old| old.spec != pod.spec || old.metadata.labels != pod.metadata.labels);
        st.pending.insert(key.clone(), Arc::new(pod));
        if st.cache.is_assumed(&key) {
            // Its binding is on the way; the pod is not pending again.
            return;
        }
        if st.queue.contains(&key) {
            if spec_changed {
                st.queue.updated(&key, now);
            }
        } else {
            st.queue.add(&key);
        }
    }

    fn schedule_one(&self, st: &mut State, key: &str, tx: &mpsc::UnboundedSender<BindResult>) {
        let Some(pod) = st.pending.get(key).cloned() else {
            st.queue.remove(key);
            return;
        };
        let info = PodInfo::new(&pod);
        let started = std::time::Instant::now();
        let decision = schedule(
            st.cache.snapshot(),
            &info,
            st.start,
            &self.weights,
            &mut st.rng,
        );
        self.metrics.observe_algorithm(started.elapsed());
        match decision {
            Ok(d) => {
                let n = st.cache.snapshot().nodes().len().max(1);
                st.start = (st.start + d.evaluated) % n;
                st.cache.assume(key, &d.node, info.usage());
                st.inflight += 1;
                tracing::debug!(pod = %key, node = %d.node, feasible = d.feasible, evaluated = d.evaluated, "binding");
                let client = self.client.clone();
                let tx = tx.clone();
                let key = key.to_string();
                tokio::spawn(async move {
                    let result = bind(client, &pod, &d.node).await;
                    let _ = tx.send(BindResult {
                        key,
                        node: d.node,
                        result,
                    });
                });
            }
            Err(fit) => {
                self.metrics.unschedulable.fetch_add(1, Ordering::Relaxed);
                st.queue.unschedulable(key, Instant::now());
                let message = fit.to_string();
                tracing::info!(pod = %key, %message, "unable to schedule pod; waiting");
                let client = self.client.clone();
                let identity = self.identity.clone();
                tokio::spawn(async move {
                    report_unschedulable(client, &pod, &message, &identity).await;
                });
            }
        }
    }

    fn bind_done(&self, st: &mut State, r: BindResult) {
        st.inflight = st.inflight.saturating_sub(1);
        match r.result {
            Ok(()) => {
                self.metrics.scheduled.fetch_add(1, Ordering::Relaxed);
                st.queue.remove(&r.key);
                st.pending.remove(&r.key);
            }
            Err(error) => {
                self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                st.cache.forget(&r.key);
                if error.is_not_found() {
                    st.queue.remove(&r.key);
                    st.pending.remove(&r.key);
                } else {
                    tracing::warn!(pod = %r.key, node = %r.node, %error, "binding failed; retrying after a back-off");
                    st.queue.retry(&r.key, Instant::now());
                }
            }
        }
    }
}

async fn bind(client: Client, pod: &Pod, node: &str) -> skiff_client::Result<()> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(ns.to_string()),
            uid: pod.metadata.uid.clone(),
            ..ObjectMeta::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            ..ObjectReference::default()
        },
    };
    let pods: Api<Pod> = Api::namespaced(client, ns);
    let _: Status = pods
        .create_subresource(name, "binding", &PostParams::default(), &binding)
        .await?;
    Ok(())
}

/// Sets PodScheduled=False (reason Unschedulable) when the condition differs, and
/// records a FailedScheduling Event, as kube-scheduler does. Failures are only logged:
/// the pod is retried anyway.
async fn report_unschedulable(client: Client, pod: &Pod, message: &str, identity: &str) {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let now = jiff::Timestamp::now();
    let current: Option<&PodCondition> = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
    let same = current.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
            && c.message.as_deref() == Some(message)
    });
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    if !same {
        let transition = match current {
            Some(c) if c.status == "False" => c.last_transition_time.clone(),
            _ => None,
        }
        .unwrap_or(Time(now));
        let patch = serde_json::json!({"status": {"conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": null,
            "lastTransitionTime": transition,
        }]}});
        if let Err(error) = pods
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            if !error.is_not_found() {
                tracing::warn!(pod = %format!("{ns}/{name}"), %error, "could not set the PodScheduled condition");
            }
            return;
        }
    }
    let event = KubeEvent {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{:x}", now.as_nanosecond())),
            namespace: Some(ns.to_string()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(name.to_string()),
            namespace: Some(ns.to_string()),
            uid: pod.metadata.uid.clone(),
            resource_version: pod.metadata.resource_version.clone(),
            ..ObjectReference::default()
        },
        reason: Some("FailedScheduling".into()),
        message: Some(message.to_string()),
        type_: Some("Warning".into()),
        action: Some("Scheduling".into()),
        source: Some(EventSource {
            component: Some(DEFAULT_SCHEDULER_NAME.into()),
            host: None,
        }),
        reporting_component: Some(DEFAULT_SCHEDULER_NAME.into()),
        reporting_instance: Some(identity.to_string()),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        ..KubeEvent::default()
    };
    let events: Api<KubeEvent> = Api::namespaced(client, ns);
    if let Err(error) = events.create(&PostParams::default(), &event).await {
        tracing::warn!(pod = %format!("{ns}/{name}"), %error, "could not record the FailedScheduling event");
    }
}
