//! `skiff kubelet` on this machine's containerd, runc and CNI plugins, against a real
//! control plane (3-member store + apiserver). Pods are created with `spec.nodeName`
//! set, as no scheduler runs here. Each test has its own node name, containerd
//! namespace and CNI network, removed on drop even when the test fails.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Container, Node, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use skiff_client::{Api, Client, DeleteParams, PostParams};
use skiff_tests::control_plane::ControlPlane;
use skiff_tests::kubelet::{ensure_images, image, KubeletNode};
use skiff_tests::wait::eventually;

const TIMEOUT: Duration = Duration::from_secs(90);

struct Setup {
    node: KubeletNode,
    client: Client,
    // Dropped last: the kubelet's cleanup needs nothing from it, but the kubelet must
    // die before its apiserver.
    _cp: ControlPlane,
}

async fn setup(prefix: &str) -> Result<Setup> {
    tokio::task::spawn_blocking(ensure_images).await??;
    let cp = ControlPlane::start(1).await?;
    let node = KubeletNode::start(&cp, prefix, &[])?;
    let client = Client::from_kubeconfig(Some(cp.kubeconfig()), None)?;
    Ok(Setup {
        node,
        client,
        _cp: cp,
    })
}

fn pod(name: &str, node: &str, image: &str, command: Option<&[&str]>, restart: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            restart_policy: Some(restart.into()),
            termination_grace_period_seconds: Some(5),
            containers: vec![Container {
                name: "main".into(),
                image: Some(image.into()),
                command: command.map(|c| c.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn wait_phase(pods: &Api<Pod>, name: &str, phase: &str) -> Result<Pod> {
    eventually(&format!("pod {name} phase {phase}"), TIMEOUT, || async {
        let p = pods.get(name).await?;
        let got = p
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if got == phase {
            return Ok(Some(p));
        }
        bail!(
            "phase {got:?}, status {}",
            serde_json::to_string(&p.status)?
        )
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_registers_ready_with_a_lease() -> Result<()> {
    let s = setup("kl-node").await?;
    let nodes: Api<Node> = Api::cluster(s.client.clone());
    let node = eventually("node Ready", TIMEOUT, || async {
        let Some(n) = nodes.get_opt(&s.node.name).await? else {
            return Ok(None);
        };
        let ready = n
            .status
            .as_ref()
            .and_then(|st| st.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.clone());
        Ok((ready.as_deref() == Some("True")).then_some(n))
    })
    .await?;
    let status = node.status.context("status")?;
    let cap = status.capacity.context("capacity")?;
    ensure!(
        cap.get("pods").map(|q| q.0.as_str()) == Some("110"),
        "pods capacity {cap:?}"
    );
    for k in ["cpu", "memory", "ephemeral-storage"] {
        ensure!(cap.contains_key(k), "no {k} in capacity {cap:?}");
    }
    ensure!(status.allocatable.is_some(), "no allocatable");
    let addresses = status.addresses.unwrap_or_default();
    ensure!(
        addresses
            .iter()
            .any(|a| a.type_ == "InternalIP" && a.address == "127.0.0.1"),
        "addresses {addresses:?}"
    );
    ensure!(
        status
            .daemon_endpoints
            .and_then(|d| d.kubelet_endpoint)
            .map(|e| e.port)
            .is_some_and(|p| p > 0),
        "the kubelet's API port (it listens on --port=0, a free one) is reported"
    );
    let info = status.node_info.context("nodeInfo")?;
    ensure!(
        info.container_runtime_version.starts_with("containerd://"),
        "runtime {}",
        info.container_runtime_version
    );
    let labels = node.metadata.labels.unwrap_or_default();
    ensure!(
        labels.get("kubernetes.io/hostname") == Some(&s.node.name),
        "labels {labels:?}"
    );

    // The Lease is renewed: its renewTime moves.
    let leases: Api<Lease> = Api::namespaced(s.client.clone(), "kube-node-lease");
    let first = eventually("node lease", TIMEOUT, || async {
        Ok(leases
            .get_opt(&s.node.name)
            .await?
            .and_then(|l| l.spec?.renew_time))
    })
    .await?;
    eventually("lease renewal", Duration::from_secs(60), || async {
        let now = leases
            .get(&s.node.name)
            .await?
            .spec
            .and_then(|sp| sp.renew_time);
        Ok(now.filter(|t| t.0 > first.0))
    })
    .await?;

    // /healthz and /metrics answer.
    let body = reqwest::get(format!("http://127.0.0.1:{}/metrics", s.node.healthz_port))
        .await?
        .text()
        .await?;
    ensure!(
        body.contains("kubelet_node_lease_renewals_total"),
        "metrics: {body}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_that_exit_succeed_or_fail() -> Result<()> {
    let s = setup("kl-exit").await?;
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), "default");
    pods.create(
        &PostParams::default(),
        &pod(
            "ok",
            &s.node.name,
            &image("busybox"),
            Some(&["sh", "-c", "echo hi"]),
            "Never",
        ),
    )
    .await?;
    pods.create(
        &PostParams::default(),
        &pod("bad", &s.node.name, &image("fail"), None, "Never"),
    )
    .await?;
    let ok = wait_phase(&pods, "ok", "Succeeded").await?;
    let cs = &ok
        .status
        .as_ref()
        .and_then(|st| st.container_statuses.clone())
        .context("statuses")?[0];
    let term = cs
        .state
        .as_ref()
        .and_then(|st| st.terminated.clone())
        .context("terminated")?;
    ensure!(
        term.exit_code == 0 && term.reason.as_deref() == Some("Completed"),
        "{term:?}"
    );
    ensure!(cs.image_id.contains("@sha256:"), "imageID {}", cs.image_id);
    ensure!(cs
        .container_id
        .as_deref()
        .is_some_and(|c| c.starts_with("containerd://")));
    let bad = wait_phase(&pods, "bad", "Failed").await?;
    let cs = &bad
        .status
        .as_ref()
        .and_then(|st| st.container_statuses.clone())
        .context("statuses")?[0];
    let term = cs
        .state
        .as_ref()
        .and_then(|st| st.terminated.clone())
        .context("terminated")?;
    ensure!(
        term.exit_code == 3 && term.reason.as_deref() == Some("Error"),
        "{term:?}"
    );
    ensure!(cs.restart_count == 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_container_restarts_with_back_off() -> Result<()> {
    let s = setup("kl-backoff").await?;
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), "default");
    pods.create(
        &PostParams::default(),
        &pod("crash", &s.node.name, &image("fail"), None, "Always"),
    )
    .await?;
    eventually("CrashLoopBackOff after restarts", TIMEOUT, || async {
        let p = pods.get("crash").await?;
        let st = p.status.clone().unwrap_or_default();
        let Some(cs) = st.container_statuses.as_ref().and_then(|c| c.first()) else {
            return Ok(None);
        };
        let waiting = cs
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.clone());
        let last_code = cs
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| t.exit_code);
        if cs.restart_count >= 1
            && waiting.as_deref() == Some("CrashLoopBackOff")
            && last_code == Some(3)
        {
            ensure!(
                st.phase.as_deref() == Some("Running"),
                "phase {:?}",
                st.phase
            );
            return Ok(Some(()));
        }
        bail!("{}", serde_json::to_string(&st)?)
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_pod_gets_an_ip_and_delete_leaves_nothing() -> Result<()> {
    let s = setup("kl-run").await?;
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), "default");
    let mut p = pod("web", &s.node.name, &image("httpd"), None, "Always");
    p.spec.as_mut().context("spec")?.host_aliases =
        Some(vec![k8s_openapi::api::core::v1::HostAlias {
            ip: "10.9.8.7".into(),
            hostnames: Some(vec!["alias.example".into()]),
        }]);
    pods.create(&PostParams::default(), &p).await?;
    let running = wait_phase(&pods, "web", "Running").await?;
    let st = running.status.context("status")?;
    let ip = st.pod_ip.clone().context("no podIP")?;
    let prefix = s.node.subnet.trim_end_matches("0/24");
    ensure!(
        ip.starts_with(prefix),
        "podIP {ip} outside {}",
        s.node.subnet
    );
    ensure!(st.host_ip.as_deref() == Some("127.0.0.1"));
    let ready = st
        .conditions
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    ensure!(ready, "pod not Ready");
    // The pod answers on its IP through the bridge (the host is the bridge's gateway).
    let body = eventually("httpd answers on the pod IP", TIMEOUT, || async {
        let r = reqwest::Client::new()
            .get(format!("http://{ip}:8080/index.html"))
            .timeout(Duration::from_secs(5))
            .send()
            .await?;
        Ok(Some(r.text().await?))
    })
    .await?;
    ensure!(body.contains("hello from skiff"), "body {body:?}");
    let during = s.node.leftovers()?;
    ensure!(
        during.containers.len() == 1 && during.tasks.len() == 1 && during.ips.len() == 1,
        "while running: {during:?}"
    );
    // /etc/hosts of the pod carries its hostAliases.
    let uid = running.metadata.uid.clone().context("uid")?;
    let hosts =
        std::fs::read_to_string(s.node.root_dir().join("pods").join(&uid).join("etc/hosts"))?;
    ensure!(hosts.contains("10.9.8.7\talias.example"), "hosts: {hosts}");

    pods.delete("web", &DeleteParams::default()).await?;
    eventually("pod gone", TIMEOUT, || async {
        Ok(pods.get_opt("web").await?.is_none().then_some(()))
    })
    .await?;
    let left = eventually("nothing left behind", TIMEOUT, || async {
        let l = s.node.leftovers()?;
        if l.is_empty() {
            Ok(Some(l))
        } else {
            bail!("{l:?}")
        }
    })
    .await?;
    ensure!(left.is_empty());
    Ok(())
}
