//! Restarts under `skiff kubelet`: a kubelet that comes back adopts the pods still
//! running (same container, restart count unchanged, logs and exec working) and
//! cleans up the pods deleted while it was away; a containerd that goes away turns
//! NodeReady False, and once back the node is Ready again with its pods still running.
//! The containerd test runs its own containerd, so the machine's is never disturbed.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use k8s_openapi::api::core::v1::{Node, Pod};
use skiff_client::{Api, Client, DeleteParams, PostParams};
use skiff_tests::control_plane::ControlPlane;
use skiff_tests::kubelet::{ensure_images, image, KubeletNode, PrivateContainerd};
use skiff_tests::wait::eventually;

const TIMEOUT: Duration = Duration::from_secs(90);

fn sh(name: &str, node: &str, script: &str) -> Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": image("busybox"),
                "command": ["sh", "-c", script]}],
        },
    }))?)
}

async fn running(pods: &Api<Pod>, name: &str) -> Result<Pod> {
    eventually(&format!("pod {name} Running"), TIMEOUT, || async {
        let p = pods.get(name).await?;
        let phase = p.status.as_ref().and_then(|s| s.phase.clone());
        if phase.as_deref() == Some("Running") {
            return Ok(Some(p));
        }
        bail!("phase {phase:?}")
    })
    .await
}

fn main_status(p: &Pod) -> Result<(String, i32, bool)> {
    let c = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .context("no container status")?;
    Ok((
        c.container_id.clone().unwrap_or_default(),
        c.restart_count,
        c.state.as_ref().is_some_and(|s| s.running.is_some()),
    ))
}

async fn delete_and_wait_empty(pods: &Api<Pod>, node: &KubeletNode, name: &str) -> Result<()> {
    pods.delete(name, &DeleteParams::default()).await?;
    eventually("nothing left behind", TIMEOUT, || async {
        let l = node.leftovers()?;
        if pods.get_opt(name).await?.is_none() && l.is_empty() {
            return Ok(Some(()));
        }
        bail!("{l:?}")
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_kubelet_adopts_running_pods_and_cleans_gone_ones() -> Result<()> {
    tokio::task::spawn_blocking(ensure_images).await??;
    let cp = ControlPlane::start(1).await?;
    let mut node = KubeletNode::start(&cp, "kl-adopt", &[])?;
    let client = Client::from_kubeconfig(Some(cp.kubeconfig()), None)?;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    pods.create(
        &PostParams::default(),
        &sh(
            "keeper",
            &node.name,
            "while true; do echo tick; sleep 0.5; done",
        )?,
    )
    .await?;
    pods.create(
        &PostParams::default(),
        &sh("goner", &node.name, "exec sleep 3600")?,
    )
    .await?;
    let before = running(&pods, "keeper").await?;
    running(&pods, "goner").await?;
    let (id, restarts, _) = main_status(&before)?;
    let ip = before.status.as_ref().and_then(|s| s.pod_ip.clone());

    let ticks_before = cp.kubectl_ok(&["logs", "keeper"])?.matches("tick").count();
    node.stop();
    // Removed for good while no kubelet watches: its containers and network are orphans.
    pods.delete(
        "goner",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await?;
    eventually("goner gone from the API", TIMEOUT, || async {
        Ok(pods.get_opt("goner").await?.is_none().then_some(()))
    })
    .await?;
    node.start_again()?;

    eventually("the orphan cleaned, the keeper kept", TIMEOUT, || async {
        let l = node.leftovers()?;
        if l.containers.len() == 1
            && l.tasks.len() == 1
            && l.ips.len() == 1
            && l.pod_dirs.len() == 1
        {
            return Ok(Some(()));
        }
        bail!("{l:?}")
    })
    .await?;
    // The adopted pod: same container, no restart, same IP, output still logged.
    eventually("keeper's log grows again", TIMEOUT, || async {
        let n = cp.kubectl_ok(&["logs", "keeper"])?.matches("tick").count();
        if n > ticks_before + 4 {
            return Ok(Some(()));
        }
        bail!("{n} ticks, {ticks_before} before the restart")
    })
    .await?;
    let after = pods.get("keeper").await?;
    let (id_after, restarts_after, is_running) = main_status(&after)?;
    ensure!(id_after == id, "container {id} replaced by {id_after}");
    ensure!(restarts_after == restarts, "restartCount {restarts_after}");
    ensure!(is_running, "keeper not running: {:?}", after.status);
    ensure!(after.status.as_ref().and_then(|s| s.pod_ip.clone()) == ip);
    let hi = cp.kubectl_ok(&["exec", "keeper", "--", "echo", "hi"])?;
    ensure!(hi == "hi\n", "exec {hi:?}");
    // The adopted container stops on delete like any other.
    delete_and_wait_empty(&pods, &node, "keeper").await?;
    Ok(())
}

fn node_ready(n: &Node) -> Option<String> {
    n.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_restart_turns_the_node_ready_again_with_pods_running() -> Result<()> {
    tokio::task::spawn_blocking(ensure_images).await??;
    // Declared first so that it is dropped last: it removes what the node left.
    let mut containerd = PrivateContainerd::start()?;
    let cp = ControlPlane::start(1).await?;
    let node = KubeletNode::start_on(&cp, "kl-ctrd", &[], Some(&containerd.socket()))?;
    let client = Client::from_kubeconfig(Some(cp.kubeconfig()), None)?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let nodes: Api<Node> = Api::all(client);
    pods.create(
        &PostParams::default(),
        &sh("steady", &node.name, "exec sleep 3600")?,
    )
    .await?;
    let before = running(&pods, "steady").await?;
    let (id, _, _) = main_status(&before)?;

    containerd.stop();
    eventually("NodeReady False without containerd", TIMEOUT, || async {
        let n = nodes.get(&node.name).await?;
        match node_ready(&n).as_deref() {
            Some("False") => Ok(Some(())),
            other => bail!("Ready {other:?}"),
        }
    })
    .await?;
    containerd.start_again()?;
    eventually("NodeReady True again", TIMEOUT, || async {
        let n = nodes.get(&node.name).await?;
        match node_ready(&n).as_deref() {
            Some("True") => Ok(Some(())),
            other => bail!("Ready {other:?}"),
        }
    })
    .await?;
    let after = pods.get("steady").await?;
    let (id_after, restarts, is_running) = main_status(&after)?;
    ensure!(
        id_after == id && restarts == 0 && is_running,
        "steady after the restart: {:?}",
        after.status
    );
    let hi = cp.kubectl_ok(&["exec", "steady", "--", "echo", "hi"])?;
    ensure!(hi == "hi\n", "exec {hi:?}");
    delete_and_wait_empty(&pods, &node, "steady").await?;
    Ok(())
}
