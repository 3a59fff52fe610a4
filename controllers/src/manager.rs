//! The controller manager process: configuration, leader election, and starting the
//! enabled controllers over shared informers.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{Metadata, Resource};
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;
use skiff_client::controller::{Action, Controller};
use skiff_client::leader_election::{LeaderElectionConfig, LeaderElector, Outcome};
use skiff_client::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::informer::Informer;
use crate::metrics::{self, Metrics};
use crate::selection::Selection;
use crate::{
    cronjob, daemonset, deployment, endpoints, garbage_collector, job, namespace, node_ipam,
    node_lifecycle, replicaset, serviceaccount, statefulset, Error, Result,
};

/// Everything `skiff controller-manager` is told by its flags.
#[derive(Clone, Debug)]
pub struct Config {
    /// kubeconfig to reach the API server (kubectl's search order when None).
    pub kubeconfig: Option<PathBuf>,
    /// Run only while holding the leader Lease.
    pub leader_elect: bool,
    /// Lease timing (`--leader-elect-lease-duration`, `-renew-deadline`, `-retry-period`).
    pub leader_election: LeaderElectionConfig,
    /// `--leader-elect-resource-namespace` (kube-system).
    pub lease_namespace: String,
    /// `--leader-elect-resource-name` (kube-controller-manager).
    pub lease_name: String,
    /// `--cluster-cidr`: the pod network, split into node podCIDRs by node IPAM.
    pub cluster_cidr: String,
    /// `--node-cidr-mask-size`: the prefix length of each node's podCIDR.
    pub node_cidr_mask_size: u8,
    /// `--node-monitor-period` and `--node-monitor-grace-period`.
    pub node_lifecycle: node_lifecycle::Timing,
    /// `--controllers`.
    pub controllers: Selection,
    /// Address of the /healthz and /metrics port.
    pub bind_address: IpAddr,
    /// `--secure-port` (10257; plain HTTP for now).
    pub secure_port: u16,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            kubeconfig: None,
            leader_elect: true,
            leader_election: LeaderElectionConfig::default(),
            lease_namespace: "kube-system".into(),
            lease_name: "kube-controller-manager".into(),
            cluster_cidr: "10.244.0.0/16".into(),
            node_cidr_mask_size: 24,
            node_lifecycle: node_lifecycle::Timing::default(),
            controllers: Selection::default(),
            bind_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            secure_port: 10257,
        }
    }
}

/// Parses an IPv4 CIDR such as `10.244.0.0/16` into its network and prefix length.
pub fn parse_cidr(cidr: &str) -> Result<(Ipv4Addr, u8), String> {
    let (addr, len) = cidr
        .split_once('/')
        .ok_or_else(|| format!("{cidr:?} is not a CIDR such as 10.244.0.0/16"))?;
    let addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("{cidr:?}: {addr:?} is not an IPv4 address"))?;
    let len: u8 = len
        .parse()
        .ok()
        .filter(|l| *l <= 32)
        .ok_or_else(|| format!("{cidr:?}: the prefix length must be 0..=32"))?;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    if u32::from(addr) & !mask != 0 {
        return Err(format!("{cidr:?} has host bits set"));
    }
    Ok((addr, len))
}

impl Config {
    /// Checks the settings that do not need the API server.
    pub fn validate(&self) -> Result<()> {
        let (_, prefix) = parse_cidr(&self.cluster_cidr)
            .map_err(|e| Error::Config(format!("--cluster-cidr: {e}")))?;
        if self.node_cidr_mask_size < prefix || self.node_cidr_mask_size > 30 {
            return Err(Error::Config(format!(
                "--node-cidr-mask-size={} must be between the --cluster-cidr prefix ({prefix}) and 30",
                self.node_cidr_mask_size
            )));
        }
        let le = &self.leader_election;
        if le.renew_deadline >= le.lease_duration {
            return Err(Error::Config(
                "--leader-elect-renew-deadline must be shorter than --leader-elect-lease-duration"
                    .into(),
            ));
        }
        if self.node_lifecycle.monitor_period.is_zero()
            || self.node_lifecycle.grace_period <= self.node_lifecycle.monitor_period
        {
            return Err(Error::Config(
                "--node-monitor-grace-period must be longer than a positive --node-monitor-period"
                    .into(),
            ));
        }
        if le.retry_period.is_zero() {
            return Err(Error::Config(
                "--leader-elect-retry-period must be positive".into(),
            ));
        }
        Ok(())
    }
}

fn stopped(rx: &watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let suffix: u64 = rand::thread_rng().gen();
    format!("{host}_{suffix:016x}")
}

/// Runs the controller manager until `shutdown` completes (or, with leader election,
/// until leadership is lost, which is an error so that the process restarts as a
/// follower).
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    config.validate()?;
    let client = Client::from_kubeconfig(config.kubeconfig.as_deref(), None)?;
    let metrics = Arc::new(Metrics::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let addr = SocketAddr::new(config.bind_address, config.secure_port);
    let server = tokio::spawn(metrics::serve(addr, metrics.clone(), stopped(&stop_rx)).await?);
    {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            shutdown.await;
            stop_tx.send_replace(true);
        });
    }
    let missing = config.controllers.missing();
    if !missing.is_empty() {
        tracing::warn!(
            controllers = %missing.join(","),
            "these kube-controller-manager controllers are not built in skiff yet and do not run"
        );
    }

    let controllers = run_controllers(
        client.clone(),
        config.clone(),
        metrics.clone(),
        stop_rx.clone(),
    );
    let result = if config.leader_elect {
        let leases: Api<Lease> = Api::namespaced(client.clone(), &config.lease_namespace);
        let id = identity();
        tracing::info!(lease = %format!("{}/{}", config.lease_namespace, config.lease_name), identity = %id, "waiting to lead");
        let mut elector = LeaderElector::new(
            leases,
            &config.lease_name,
            &id,
            config.leader_election.clone(),
        );
        let mut leading = elector.is_leader();
        let gauge = metrics.clone();
        tokio::spawn(async move {
            while leading.changed().await.is_ok() {
                gauge.set_leader(*leading.borrow());
            }
        });
        match elector.run(stopped(&stop_rx), controllers).await? {
            Outcome::LostLeadership => Err(Error::LostLeadership(format!(
                "{}/{}",
                config.lease_namespace, config.lease_name
            ))),
            Outcome::Shutdown | Outcome::Finished => Ok(()),
        }
    } else {
        metrics.set_leader(true);
        controllers.await;
        Ok(())
    };
    stop_tx.send_replace(true);
    let _ = server.await;
    result
}

/// Starts every enabled controller and its informers; returns when all have stopped.
/// Dropping the future (lost leadership) aborts them all.
async fn run_controllers(
    client: Client,
    config: Config,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) {
    let selection = config.controllers;
    let mut tasks = JoinSet::new();
    let mut pods = Informer::new(Api::<Pod>::all(client.clone()), Default::default());

    if selection.is_enabled(replicaset::NAME) {
        let (c, ctx) = replicaset::controller(&client, &mut pods);
        tasks.spawn(run_controller(
            replicaset::NAME,
            c.workers(5),
            replicaset::reconcile,
            ctx,
            metrics.clone(),
            stopped(&stop),
        ));
    }
    let mut sets = Informer::new(Api::<ReplicaSet>::all(client.clone()), Default::default());
    if selection.is_enabled(deployment::NAME) {
        let (c, ctx) = deployment::controller(&client, &mut sets, &mut pods);
        tasks.spawn(run_controller(
            deployment::NAME,
            c.workers(5),
            deployment::reconcile,
            ctx,
            metrics.clone(),
            stopped(&stop),
        ));
    }
    if sets.is_used() {
        tasks.spawn(sets.run(stopped(&stop)));
    }
    if selection.is_enabled(garbage_collector::NAME) {
        tasks.spawn(garbage_collector::run(
            client.clone(),
            metrics.clone(),
            stopped(&stop),
        ));
    }
    if selection.is_enabled(namespace::NAME) {
        let (c, ctx) = namespace::controller(&client);
        tasks.spawn(run_controller(
            namespace::NAME,
            c.workers(5),
            namespace::reconcile,
            ctx,
            metrics.clone(),
            stopped(&stop),
        ));
    }
    if selection.is_enabled(node_ipam::NAME) {
        match node_ipam::controller(&client, &config.cluster_cidr, config.node_cidr_mask_size) {
            Ok((c, ctx)) => {
                // One worker: allocations must not race.
                tasks.spawn(run_controller(
                    node_ipam::NAME,
                    c.workers(1),
                    node_ipam::reconcile,
                    ctx,
                    metrics.clone(),
                    stopped(&stop),
                ));
            }
            Err(error) => tracing::error!(%error, "node IPAM does not run"),
        }
    }
    if selection.is_enabled(node_lifecycle::NAME) {
        let lifecycle =
            node_lifecycle::NodeLifecycle::new(&client, &mut pods, config.node_lifecycle.clone());
        tasks.spawn(lifecycle.run(metrics.clone(), stopped(&stop)));
    }
    if selection.is_enabled(endpoints::NAME) {
        let (c, ctx) = endpoints::controller(&client, &mut pods);
        tasks.spawn(run_controller(
            endpoints::NAME,
            c.workers(5),
            endpoints::reconcile,
            ctx,
            metrics.clone(),
            stopped(&stop),
        ));
        let (c, ctx) = endpoints::sweeper(&client);
        tasks.spawn(run_controller(
            endpoints::NAME,
            c.workers(2),
            endpoints::sweep_reconcile,
            ctx,
            metrics.clone(),
            stopped(&stop),
        ));
    }
    if selection.is_enabled(endpoints::SLICE_NAME) {
        let (c, ctx) = endpoints::slice_controller(&client, &mut pods);
        tasks.spawn(run_controller(
            endpoints::SLICE_NAME,
            c.workers(5),
            endpoints::slice_reconcile,
            ctx,
            metrics.clone(),
            stopped(&stop),
        ));
    }
    if selection.is_enabled(serviceaccount::NAME) {
        let (c, ctx) = serviceaccount::controller(&client);
        tasks.spawn(run_controller(
            serviceaccount::NAME,
            c.workers(2),
            serviceaccount::reconcile,
            ctx,
            metrics.clone(),
            stopped(&stop),
        ));
    }
    if selection.is_enabled(statefulset::NAME) {
        let (c, ctx) = statefulset::controller(&client, &mut pods);
        tasks.spawn(run_controller(
            statefulset::NAME,
            c.workers(5),
            statefulset::reconcile,
            ctx,
            metrics.clone(),
            stopped(&stop),
        ));
    }
    if selection.is_enabled(job::NAME) {
        let ttl = selection.is_enabled("ttl-after-finished-controller");
        let (c, ctx) = job::controller(&client, &mut pods, ttl);
        tasks.spawn(run_controller(
            job::NAME,
            c.workers(5),
            job::reconcile,
            ctx,
            metrics.clone(),
            stopped(&stop),
        ));
    }
    if selection.is_enabled(cronjob::NAME) {
        let mut jobs = Informer::new(Api::<Job>::all(client.clone()), Default::default());
        let (c, ctx) = cronjob::controller(&client, &mut jobs);
        tasks.spawn(run_controller(
            cronjob::NAME,
            c.workers(5),
            cronjob::reconcile,
            ctx,
            metrics.clone(),
            stopped(&stop),
        ));
        tasks.spawn(jobs.run(stopped(&stop)));
    }
    let mut nodes = Informer::new(Api::<Node>::all(client.clone()), Default::default());
    if selection.is_enabled(daemonset::NAME) {
        let (c, ctx) = daemonset::controller(&client, &mut pods, &mut nodes);
        tasks.spawn(run_controller(
            daemonset::NAME,
            c.workers(2),
            daemonset::reconcile,
            ctx,
            metrics.clone(),
            stopped(&stop),
        ));
    }
    if nodes.is_used() {
        tasks.spawn(nodes.run(stopped(&stop)));
    }
    if pods.is_used() {
        tasks.spawn(pods.run(stopped(&stop)));
    }
    tracing::info!(controllers = tasks.len(), "controllers started");
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r {
            if e.is_panic() {
                tracing::error!(error = %e, "a controller panicked");
            }
        }
    }
}

/// Runs one controller, counting its reconciles.
async fn run_controller<K, C, F, Fut>(
    name: &'static str,
    controller: Controller<K>,
    reconcile: F,
    ctx: C,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) where
    K: Resource
        + Metadata<Ty = ObjectMeta>
        + Clone
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
    C: Clone,
    F: Fn(Arc<K>, C) -> Fut,
    Fut: Future<Output = Result<Action>>,
{
    controller
        .run(
            move |obj, ctx| {
                let metrics = metrics.clone();
                let fut = reconcile(obj, ctx);
                async move {
                    let r = fut.await;
                    metrics.reconciled(name, r.is_ok());
                    r
                }
            },
            ctx,
            shutdown,
        )
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_are_checked() {
        assert_eq!(
            parse_cidr("10.244.0.0/16").unwrap(),
            (Ipv4Addr::new(10, 244, 0, 0), 16)
        );
        assert!(parse_cidr("10.244.0.1/16")
            .unwrap_err()
            .contains("host bits"));
        assert!(parse_cidr("10.244.0.0").is_err());
        assert!(parse_cidr("10.244.0.0/33").is_err());
        let bad = Config {
            node_cidr_mask_size: 8,
            ..Config::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--node-cidr-mask-size"));
        Config::default().validate().unwrap();
    }
}
