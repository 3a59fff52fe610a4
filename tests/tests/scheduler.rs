//! `skiff scheduler` against a real apiserver on a 3-member store, with Node objects
//! registered by the test (Ready, with allocatable resources; no kubelet): placement by
//! resources, selectors and taints; Unschedulable conditions, messages and Events, and
//! scheduling once a fitting node appears; leader failover with no pod bound twice.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event as KubeEvent, Node, Pod, Taint, Toleration};
use skiff_client::{Api, Client, ListParams, PostParams, WatchEvent, WatchParams};
use skiff_tests::control_plane::ControlPlane;
use skiff_tests::scheduler::{pod_requesting, ready_node, SchedulerProcess};
use skiff_tests::wait::eventually;

const WAIT: Duration = Duration::from_secs(60);

fn client(cp: &ControlPlane) -> Result<Client> {
    Ok(Client::new(&cp.url(0))?)
}

async fn create_nodes(c: &Client, nodes: Vec<Node>) -> Result<()> {
    let api: Api<Node> = Api::cluster(c.clone());
    for n in nodes {
        api.create(&PostParams::default(), &n).await?;
    }
    Ok(())
}

async fn node_of(pods: &Api<Pod>, name: &str) -> Result<Option<String>> {
    let p = pods.get(name).await?;
    Ok(p.spec.and_then(|s| s.node_name).filter(|n| !n.is_empty()))
}

async fn wait_bound(pods: &Api<Pod>, name: &str) -> Result<String> {
    eventually(&format!("pod {name} bound"), WAIT, || node_of(pods, name)).await
}

fn tainted(mut n: Node, key: &str, value: &str, effect: &str) -> Node {
    n.spec.get_or_insert_with(Default::default).taints = Some(vec![Taint {
        key: key.into(),
        value: Some(value.into()),
        effect: effect.into(),
        ..Taint::default()
    }]);
    n
}

fn on_node(mut p: Pod, node: &str) -> Pod {
    p.spec.get_or_insert_with(Default::default).node_selector = Some(BTreeMap::from([(
        "kubernetes.io/hostname".to_string(),
        node.to_string(),
    )]));
    p
}

fn tolerating(mut p: Pod, key: &str) -> Pod {
    p.spec.get_or_insert_with(Default::default).tolerations = Some(vec![Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        ..Toleration::default()
    }]);
    p
}

/// The PodScheduled condition's (status, reason, message).
async fn scheduled_condition(
    pods: &Api<Pod>,
    name: &str,
) -> Result<Option<(String, String, String)>> {
    let p = pods.get(name).await?;
    Ok(p.status
        .and_then(|s| s.conditions)
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled")
        .map(|c| {
            (
                c.status,
                c.reason.unwrap_or_default(),
                c.message.unwrap_or_default(),
            )
        }))
}

async fn wait_unschedulable(pods: &Api<Pod>, name: &str, message: &str) -> Result<()> {
    eventually(
        &format!("pod {name} Unschedulable with {message:?}"),
        WAIT,
        || async {
            match scheduled_condition(pods, name).await? {
                Some((s, r, m)) if s == "False" && r == "Unschedulable" && m == message => {
                    Ok(Some(()))
                }
                other => bail!("condition is {other:?}"),
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_land_by_resources_selectors_and_taints() -> Result<()> {
    let cp = ControlPlane::start(1).await?;
    let c = client(&cp)?;
    create_nodes(
        &c,
        vec![
            ready_node("small", "1", "2Gi", "110"),
            ready_node("big", "8", "32Gi", "110"),
            tainted(
                ready_node("gpu", "16", "64Gi", "110"),
                "dedicated",
                "gpu",
                "NoSchedule",
            ),
        ],
    )
    .await?;
    let _sched =
        SchedulerProcess::start(cp.kubeconfig(), cp.dir(), "a", &["--leader-elect=false"]).await?;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");

    // Only "big" has 4 cpu to give (gpu is tainted).
    pods.create(
        &PostParams::default(),
        &pod_requesting("needs-4", "4", "1Gi"),
    )
    .await?;
    assert_eq!(wait_bound(&pods, "needs-4").await?, "big");
    // Another 4-cpu pod still fits on big (8 cpu), a third does not fit anywhere.
    pods.create(
        &PostParams::default(),
        &pod_requesting("needs-4b", "4", "1Gi"),
    )
    .await?;
    assert_eq!(wait_bound(&pods, "needs-4b").await?, "big");
    pods.create(
        &PostParams::default(),
        &pod_requesting("needs-4c", "4", "1Gi"),
    )
    .await?;
    wait_unschedulable(
        &pods,
        "needs-4c",
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient cpu.",
    )
    .await?;

    // Small pods without a toleration never land on the tainted node.
    for i in 0..8 {
        pods.create(
            &PostParams::default(),
            &pod_requesting(&format!("small-{i}"), "100m", "64Mi"),
        )
        .await?;
    }
    for i in 0..8 {
        let node = wait_bound(&pods, &format!("small-{i}")).await?;
        ensure!(node != "gpu", "small-{i} landed on the tainted node");
    }
    // Pinned to the tainted node: only the tolerating pod goes there.
    pods.create(
        &PostParams::default(),
        &on_node(pod_requesting("pinned", "100m", ""), "gpu"),
    )
    .await?;
    pods.create(
        &PostParams::default(),
        &tolerating(
            on_node(pod_requesting("pinned-ok", "100m", ""), "gpu"),
            "dedicated",
        ),
    )
    .await?;
    assert_eq!(wait_bound(&pods, "pinned-ok").await?, "gpu");
    wait_unschedulable(
        &pods,
        "pinned",
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 node(s) didn't match Pod's node affinity/selector.",
    )
    .await?;
    ensure!(node_of(&pods, "pinned").await?.is_none());

    // The tolerating 4-cpu pod may use the tainted node: schedule it, then the metrics.
    pods.create(
        &PostParams::default(),
        &tolerating(pod_requesting("needs-4d", "4", "1Gi"), "dedicated"),
    )
    .await?;
    assert_eq!(wait_bound(&pods, "needs-4d").await?, "gpu");
    let metrics = _sched.get("/metrics").await?;
    ensure!(
        metrics.contains(
            "scheduler_schedule_attempts_total{profile=\"default-scheduler\",result=\"scheduled\"}"
        ),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unschedulable_pod_gets_condition_and_event_then_fits_a_new_node() -> Result<()> {
    let cp = ControlPlane::start(1).await?;
    let c = client(&cp)?;
    // Bad input on the node side: no allocatable at all.
    let mut empty = ready_node("empty", "1", "1Gi", "10");
    // The apiserver defaults allocatable to capacity, as Kubernetes does: drop both.
    let status = empty.status.as_mut().context("status")?;
    status.allocatable = None;
    status.capacity = None;
    create_nodes(&c, vec![ready_node("small", "1", "2Gi", "110"), empty]).await?;
    let _sched =
        SchedulerProcess::start(cp.kubeconfig(), cp.dir(), "a", &["--leader-elect=false"]).await?;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    pods.create(&PostParams::default(), &pod_requesting("big", "2", "1Gi"))
        .await?;
    let message = "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had no allocatable resources in status.";
    wait_unschedulable(&pods, "big", message).await?;
    let events: Api<KubeEvent> = Api::namespaced(c.clone(), "default");
    eventually("a FailedScheduling event", WAIT, || async {
        let list = events
            .list(&ListParams::default().fields("involvedObject.name=big,reason=FailedScheduling"))
            .await?;
        Ok(list.items.into_iter().find(|e| {
            e.message.as_deref() == Some(message)
                && e.type_.as_deref() == Some("Warning")
                && e.source.as_ref().and_then(|s| s.component.as_deref())
                    == Some("default-scheduler")
        }))
    })
    .await?;
    // Nothing changes: the pod stays pending (and the scheduler is not spinning on it).
    tokio::time::sleep(Duration::from_secs(3)).await;
    ensure!(node_of(&pods, "big").await?.is_none());
    let metrics = _sched.get("/metrics").await?;
    let attempts: u64 = metrics
        .lines()
        .find(|l| l.contains("result=\"unschedulable\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .context("unschedulable attempts metric")?;
    ensure!(
        attempts <= 3,
        "{attempts} attempts for one pod with no cluster change:\n{metrics}"
    );

    // A fitting node appears: the pod is retried and bound there.
    create_nodes(&c, vec![ready_node("large", "4", "8Gi", "110")]).await?;
    assert_eq!(wait_bound(&pods, "big").await?, "large");
    match scheduled_condition(&pods, "big").await? {
        Some((s, _, _)) if s == "True" => {}
        other => bail!("PodScheduled after binding: {other:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_failover_binds_every_pod_once() -> Result<()> {
    let cp = ControlPlane::start(1).await?;
    let c = client(&cp)?;
    create_nodes(
        &c,
        (0..4)
            .map(|i| ready_node(&format!("n{i}"), "4", "16Gi", "110"))
            .collect(),
    )
    .await?;
    let leases: Api<Lease> = Api::namespaced(c.clone(), "kube-system");
    let holder = || async {
        Ok(leases
            .get_opt("kube-scheduler")
            .await?
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .filter(|h| !h.is_empty()))
    };
    let mut first = SchedulerProcess::start(cp.kubeconfig(), cp.dir(), "first", &[]).await?;
    let first_id = eventually("the first scheduler leads", WAIT, holder).await?;
    let _second = SchedulerProcess::start(cp.kubeconfig(), cp.dir(), "second", &[]).await?;

    // Every nodeName a pod ever had, from a watch started before any pod exists.
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let mut watch = pods.watch(&WatchParams::default(), "0").await?;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(HashMap::<String, Vec<String>>::new()));
    let recorder = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Some(Ok(ev)) = watch.next().await {
                if let WatchEvent::Added(p) | WatchEvent::Modified(p) = ev {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    if let Some(n) = p.spec.and_then(|s| s.node_name).filter(|n| !n.is_empty()) {
                        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                        let nodes = seen.entry(name).or_default();
                        if nodes.last() != Some(&n) {
                            nodes.push(n);
                        }
                    }
                }
            }
        })
    };
    for i in 0..20 {
        pods.create(
            &PostParams::default(),
            &pod_requesting(&format!("before-{i}"), "100m", "64Mi"),
        )
        .await?;
    }
    for i in 0..20 {
        wait_bound(&pods, &format!("before-{i}")).await?;
    }
    // Kill the leader without releasing the Lease; pods created meanwhile wait for the
    // other scheduler to take over, within the Lease's 15 s (plus slack for a busy host).
    let killed_at = Instant::now();
    first.kill()?;
    for i in 0..20 {
        pods.create(
            &PostParams::default(),
            &pod_requesting(&format!("after-{i}"), "100m", "64Mi"),
        )
        .await?;
    }
    let second_id = eventually(
        "the second scheduler leads",
        Duration::from_secs(90),
        || async { Ok(holder().await?.filter(|h| *h != first_id)) },
    )
    .await?;
    eprintln!(
        "{second_id} took over {:?} after the kill",
        killed_at.elapsed()
    );
    for i in 0..20 {
        wait_bound(&pods, &format!("after-{i}")).await?;
    }
    // Let the watch deliver the last bindings, then check each pod got one node only.
    eventually("the watch saw all 40 bindings", WAIT, || async {
        let n = seen.lock().unwrap_or_else(|e| e.into_inner()).len();
        Ok((n == 40).then_some(()))
    })
    .await?;
    recorder.abort();
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for (pod, nodes) in &seen {
        ensure!(nodes.len() == 1, "pod {pod} was bound to {nodes:?}");
    }
    Ok(())
}
