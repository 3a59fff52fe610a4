//! `skiff controller-manager` against a real control plane (a 3-member store and an
//! apiserver, as processes): ReplicaSets, Deployments, StatefulSets, DaemonSets, Jobs,
//! CronJobs, garbage collection (background, foreground, orphan, dangling owners),
//! namespace deletion, node IPAM and lifecycle, Endpoints and ServiceAccounts.
//!
//! No kubelet exists yet. Tests whose pods must become Ready run a simulated kubelet
//! ([`SimulatedKubelet`]): a task that sets each pod's status to Running and Ready as a
//! kubelet would. Their names say `with_simulated_kubelet`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Endpoints, Event as CoreEvent, Namespace, Node, Pod, PodSpec,
    PodTemplateSpec, ServiceAccount, Toleration,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use serde_json::json;
use skiff_client::watcher::{self, Event};
use skiff_client::{
    Api, Client, DeleteParams, ListParams, Patch, PatchParams, PostParams, ResourceExt,
};
use skiff_tests::control_plane::ControlPlane;
use skiff_tests::controller_manager::ControllerManager;
use skiff_tests::scheduler::{ready_node, SchedulerProcess};
use skiff_tests::wait::eventually;

const TIMEOUT: Duration = Duration::from_secs(60);

/// Stands in for kubelets until skiff has one: sets every pod that is not yet Ready to
/// Running with a Ready condition, as a kubelet reports a started pod. Stops on drop.
struct SimulatedKubelet {
    task: tokio::task::JoinHandle<()>,
}

impl SimulatedKubelet {
    /// Readies every pod, bound or not: for tests without a scheduler.
    fn start(client: &Client) -> SimulatedKubelet {
        SimulatedKubelet::spawn(client, false)
    }

    /// Readies pods once they are bound to a node, as only a node's kubelet would: for
    /// tests with a scheduler, where a controller must not see a pod Ready before the
    /// scheduler has placed it.
    fn start_for_bound_pods(client: &Client) -> SimulatedKubelet {
        SimulatedKubelet::spawn(client, true)
    }

    fn spawn(client: &Client, bound_only: bool) -> SimulatedKubelet {
        let api: Api<Pod> = Api::all(client.clone());
        let client = client.clone();
        let task = tokio::spawn(async move {
            let mut events = watcher::watcher(api, watcher::Config::default());
            while let Some(e) = events.next().await {
                let pod = match e {
                    Ok(Event::InitApply(p) | Event::Apply(p)) => p,
                    _ => continue,
                };
                if pod.metadata.deletion_timestamp.is_some() || is_ready(&pod) {
                    continue;
                }
                let bound = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_some_and(|n| !n.is_empty());
                if bound_only && !bound {
                    continue;
                }
                let ns = pod.namespace().unwrap_or("default").to_string();
                let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                let now = jiff::Timestamp::now().to_string();
                let status = json!({"status": {
                    "phase": "Running",
                    "podIP": "10.244.1.10",
                    "startTime": now,
                    "conditions": [
                        {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                        {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                        {"type": "Ready", "status": "True", "lastTransitionTime": now},
                    ],
                }});
                let _ = api
                    .patch_status(pod.name(), &PatchParams::default(), &Patch::Merge(status))
                    .await;
            }
        });
        SimulatedKubelet { task }
    }
}

impl Drop for SimulatedKubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn replica_set(name: &str, replicas: i32, app: &str) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", app)])),
                ..LabelSelector::default()
            },
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&[("app", app)])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "web".into(),
                        image: Some("busybox".into()),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            }),
            ..ReplicaSetSpec::default()
        }),
        status: None,
    }
}

fn bare_pod(name: &str, app: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels(&[("app", app)])),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some("busybox".into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// The live pods (not being deleted) a ReplicaSet controls.
async fn owned_pods(pods: &Api<Pod>, rs: &ReplicaSet) -> Result<Vec<Pod>> {
    let uid = rs.uid().unwrap_or("");
    Ok(pods
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.controller_owner().is_some_and(|o| o.uid == uid))
        .collect())
}

async fn setup() -> Result<(ControlPlane, ControllerManager, Client)> {
    let cp = ControlPlane::start(1).await?;
    let cm = ControllerManager::start(&cp, &[]).await?;
    let client = Client::new(&cp.url(0))?;
    Ok((cp, cm, client))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicaset_keeps_three_ready_pods_adopts_releases_and_replaces_with_simulated_kubelet(
) -> Result<()> {
    let (_cp, cm, client) = setup().await?;
    let _kubelet = SimulatedKubelet::start(&client);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");

    // An orphan that matches is adopted rather than a fourth pod made.
    pods.create(&PostParams::default(), &bare_pod("stray", "web"))
        .await?;
    let rs = sets
        .create(&PostParams::default(), &replica_set("web", 3, "web"))
        .await?;
    let owned = eventually("3 pods owned by the ReplicaSet", TIMEOUT, || async {
        let owned = owned_pods(&pods, &rs).await?;
        Ok((owned.len() == 3).then_some(owned))
    })
    .await?;
    ensure!(
        owned.iter().any(|p| p.name() == "stray"),
        "the matching orphan was adopted: {:?}",
        owned.iter().map(|p| p.name()).collect::<Vec<_>>()
    );
    eventually("status shows 3 ready and available", TIMEOUT, || async {
        let s = sets.get("web").await?.status.unwrap_or_default();
        Ok((s.replicas == 3
            && s.ready_replicas == Some(3)
            && s.available_replicas == Some(3)
            && s.fully_labeled_replicas == Some(3)
            && s.observed_generation == Some(1))
        .then_some(()))
    })
    .await?;

    // A deleted pod is replaced.
    let victim = owned
        .iter()
        .find(|p| p.name() != "stray")
        .context("a created pod")?
        .name()
        .to_string();
    pods.delete(&victim, &DeleteParams::default()).await?;
    eventually("a replacement pod", TIMEOUT, || async {
        let owned = owned_pods(&pods, &rs).await?;
        Ok((owned.len() == 3 && owned.iter().all(|p| p.name() != victim)).then_some(()))
    })
    .await?;

    // A pod relabelled out of the selector is released and replaced.
    pods.patch(
        "stray",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}})),
    )
    .await?;
    eventually(
        "the relabelled pod released and replaced",
        TIMEOUT,
        || async {
            let stray = pods.get("stray").await?;
            let owned = owned_pods(&pods, &rs).await?;
            Ok((stray.owner_references().is_empty()
                && owned.len() == 3
                && owned.iter().all(|p| p.name() != "stray"))
            .then_some(()))
        },
    )
    .await?;

    // Scale down to 1: the two others go, and the status follows.
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await?;
    eventually("scaled down to 1", TIMEOUT, || async {
        let s = sets.get("web").await?.status.unwrap_or_default();
        let owned = owned_pods(&pods, &rs).await?;
        Ok((owned.len() == 1 && s.replicas == 1 && s.observed_generation == Some(2)).then_some(()))
    })
    .await?;

    // What the controller did is told by Events.
    let events: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    eventually(
        "SuccessfulCreate and SuccessfulDelete events",
        TIMEOUT,
        || async {
            let list = events.list(&ListParams::default()).await?.items;
            let reasons: Vec<&str> = list
                .iter()
                .filter(|e| e.involved_object.name.as_deref() == Some("web"))
                .filter_map(|e| e.reason.as_deref())
                .collect();
            Ok(
                (reasons.contains(&"SuccessfulCreate") && reasons.contains(&"SuccessfulDelete"))
                    .then_some(()),
            )
        },
    )
    .await?;
    let metrics = cm.metrics().await?;
    ensure!(
        metrics.contains("skiff_controller_reconcile_total{controller=\"replicaset-controller\",result=\"success\"}"),
        "{metrics}"
    );
    ensure!(
        metrics.contains("leader_election_master_status{name=\"kube-controller-manager\"} 1"),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collector_deletes_in_background_foreground_and_orphans() -> Result<()> {
    let (cp, _cm, client) = setup().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");

    // Foreground: the ReplicaSet outlives every pod it owns. Recorded from one watch of
    // pods and one of ReplicaSets, started before the delete.
    let fg = sets
        .create(&PostParams::default(), &replica_set("fg", 2, "fg"))
        .await?;
    let fg_pods = eventually("fg pods", TIMEOUT, || async {
        let p = owned_pods(&pods, &fg).await?;
        Ok((p.len() == 2).then_some(p))
    })
    .await?;
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let recorder = {
        let order = order.clone();
        let mut rs_events =
            watcher::watcher(sets.clone(), watcher::Config::default()).map(|e| match e {
                Ok(Event::Delete(rs)) => Some(format!("rs/{}", rs.name())),
                Ok(Event::InitDone) => Some("#synced".to_string()),
                _ => None,
            });
        let mut pod_events =
            watcher::watcher(pods.clone(), watcher::Config::default()).map(|e| match e {
                Ok(Event::Delete(p)) => Some(format!("pod/{}", p.name())),
                Ok(Event::InitDone) => Some("#synced".to_string()),
                _ => None,
            });
        tokio::spawn(async move {
            loop {
                let e = tokio::select! {
                    Some(e) = rs_events.next() => e,
                    Some(e) = pod_events.next() => e,
                    else => return,
                };
                if let Some(gone) = e {
                    order.lock().unwrap().push(gone);
                }
            }
        })
    };
    eventually("both watches listed", TIMEOUT, || async {
        let o = order.lock().unwrap();
        Ok((o.iter().filter(|n| *n == "#synced").count() >= 2).then_some(()))
    })
    .await?;
    let out = cp.kubectl_ok(&["delete", "rs", "fg", "--cascade=foreground", "--wait=false"])?;
    ensure!(out.contains("deleted"), "{out}");
    let held = sets.get_opt("fg").await?;
    if let Some(held) = held {
        ensure!(
            held.metadata
                .finalizers
                .iter()
                .flatten()
                .any(|f| f == "foregroundDeletion"),
            "{held:?}"
        );
    }
    eventually("fg gone", TIMEOUT, || async {
        Ok(sets.get_opt("fg").await?.is_none().then_some(()))
    })
    .await?;
    let fg_names: Vec<String> = fg_pods
        .iter()
        .map(|p| format!("pod/{}", p.name()))
        .collect();
    eventually("deletions recorded", TIMEOUT, || async {
        let o = order.lock().unwrap().clone();
        Ok(
            (fg_names.iter().all(|n| o.contains(n)) && o.contains(&"rs/fg".to_string()))
                .then_some(o),
        )
    })
    .await
    .and_then(|o| {
        let rs_at = o.iter().position(|n| n == "rs/fg").unwrap_or(0);
        for n in &fg_names {
            let at = o.iter().position(|x| x == n).unwrap_or(usize::MAX);
            ensure!(at < rs_at, "{n} deleted after its foreground owner: {o:?}");
        }
        Ok(())
    })?;
    recorder.abort();

    // Orphan: the ReplicaSet goes, its pods stay, without owner references.
    let orphaner = sets
        .create(&PostParams::default(), &replica_set("orph", 2, "orph"))
        .await?;
    let orph_pods = eventually("orph pods", TIMEOUT, || async {
        let p = owned_pods(&pods, &orphaner).await?;
        Ok((p.len() == 2).then_some(p))
    })
    .await?;
    cp.kubectl_ok(&["delete", "rs", "orph", "--cascade=orphan"])?;
    eventually("orph gone", TIMEOUT, || async {
        Ok(sets.get_opt("orph").await?.is_none().then_some(()))
    })
    .await?;
    for p in &orph_pods {
        let now = pods.get(p.name()).await?;
        ensure!(
            now.owner_references().is_empty() && now.metadata.deletion_timestamp.is_none(),
            "an orphaned pod keeps living, unowned: {now:?}"
        );
    }

    // Background (kubectl's default): the ReplicaSet goes at once, its pods follow.
    let bg = sets
        .create(&PostParams::default(), &replica_set("bg", 2, "bg"))
        .await?;
    let bg_pods = eventually("bg pods", TIMEOUT, || async {
        let p = owned_pods(&pods, &bg).await?;
        Ok((p.len() == 2).then_some(p))
    })
    .await?;
    cp.kubectl_ok(&["delete", "rs", "bg"])?;
    eventually("bg pods collected", TIMEOUT, || async {
        for p in &bg_pods {
            if pods.get_opt(p.name()).await?.is_some() {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .await?;

    // A dangling owner reference (an owner that never existed) is collected too, and a
    // reference to a gone owner beside a live one is removed.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let ghost = OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "ghost".into(),
        uid: "00000000-0000-0000-0000-00000000dead".into(),
        ..OwnerReference::default()
    };
    let live_owner = cms
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some("live-owner".into()),
                    ..ObjectMeta::default()
                },
                ..ConfigMap::default()
            },
        )
        .await?;
    let live_ref = OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "live-owner".into(),
        uid: live_owner.uid().unwrap_or("").into(),
        ..OwnerReference::default()
    };
    for (name, owners) in [
        ("dangling", vec![ghost.clone()]),
        ("half", vec![ghost.clone(), live_ref.clone()]),
    ] {
        cms.create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    owner_references: Some(owners),
                    ..ObjectMeta::default()
                },
                ..ConfigMap::default()
            },
        )
        .await?;
    }
    eventually("dangling dependent collected", TIMEOUT, || async {
        Ok(cms.get_opt("dangling").await?.is_none().then_some(()))
    })
    .await?;
    eventually("reference to the gone owner removed", TIMEOUT, || async {
        let half = cms.get("half").await?;
        Ok((half.owner_references() == [live_ref.clone()]).then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_removes_its_contents_then_itself() -> Result<()> {
    let (cp, _cm, client) = setup().await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some("doomed".into()),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            },
        )
        .await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    cms.create(
        &PostParams::default(),
        &ConfigMap {
            metadata: ObjectMeta {
                name: Some("settings".into()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        },
    )
    .await?;
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "doomed");
    let rs = sets
        .create(&PostParams::default(), &replica_set("app", 2, "app"))
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "doomed");
    eventually("pods in doomed", TIMEOUT, || async {
        Ok((owned_pods(&pods, &rs).await?.len() == 2).then_some(()))
    })
    .await?;

    // kubectl waits until the namespace is really gone.
    cp.kubectl_ok(&["delete", "namespace", "doomed", "--timeout=120s"])?;
    ensure!(namespaces.get_opt("doomed").await?.is_none());
    ensure!(cms.list(&ListParams::default()).await?.items.is_empty());
    ensure!(pods.list(&ListParams::default()).await?.items.is_empty());
    ensure!(sets.list(&ListParams::default()).await?.items.is_empty());

    // The name can be used again, for an empty namespace.
    namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some("doomed".into()),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            },
        )
        .await?;
    ensure!(cms.list(&ListParams::default()).await?.items.is_empty());
    Ok(())
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    kubernetes.io/change-cause: first
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: busybox:1.36
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_rolls_out_keeping_three_ready_pods_and_rolls_back_with_simulated_kubelet(
) -> Result<()> {
    let (cp, _cm, client) = setup().await?;
    let _kubelet = SimulatedKubelet::start(&client);
    cp.kubectl_ok_stdin(&["apply", "-f", "-"], DEPLOYMENT)?;
    let out = cp.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=120s"])?;
    ensure!(out.contains("successfully rolled out"), "{out}");

    // Every pod event from here on: never fewer than 3 ready pods.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let watch = std::sync::Arc::new(std::sync::Mutex::new((false, usize::MAX, 0usize)));
    let recorder = {
        let watch = watch.clone();
        let mut events =
            watcher::watcher(pods.clone(), watcher::Config::default().labels("app=web"));
        tokio::spawn(async move {
            let mut ready = std::collections::BTreeSet::new();
            let mut listing = std::collections::BTreeSet::new();
            while let Some(e) = events.next().await {
                let mut w = watch.lock().unwrap();
                match e {
                    Ok(Event::Init) => listing.clear(),
                    Ok(Event::InitApply(p)) => {
                        if is_ready(&p) && p.metadata.deletion_timestamp.is_none() {
                            listing.insert(p.name().to_string());
                        }
                    }
                    Ok(Event::InitDone) => {
                        ready = std::mem::take(&mut listing);
                        w.0 = true;
                    }
                    Ok(Event::Apply(p)) => {
                        if is_ready(&p) && p.metadata.deletion_timestamp.is_none() {
                            ready.insert(p.name().to_string());
                        } else {
                            ready.remove(p.name());
                        }
                    }
                    Ok(Event::Delete(p)) => {
                        ready.remove(p.name());
                    }
                    Err(_) => continue,
                }
                if w.0 {
                    w.1 = w.1.min(ready.len());
                    w.2 += 1;
                }
            }
        })
    };
    eventually("pod watch listed", TIMEOUT, || async {
        Ok(watch.lock().unwrap().0.then_some(()))
    })
    .await?;
    cp.kubectl_ok(&["set", "image", "deployment/web", "web=busybox:1.37"])?;
    cp.kubectl_ok(&[
        "annotate",
        "deployment/web",
        "kubernetes.io/change-cause=second",
        "--overwrite",
    ])?;
    let out = cp.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=120s"])?;
    ensure!(out.contains("successfully rolled out"), "{out}");
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    eventually("the old ReplicaSet scaled to 0", TIMEOUT, || async {
        let list = sets.list(&ListParams::default()).await?.items;
        let old_zero = list.iter().any(|rs| {
            rs.spec.as_ref().and_then(|s| s.replicas) == Some(0)
                && rs.status.as_ref().is_some_and(|s| s.replicas == 0)
        });
        Ok((list.len() == 2 && old_zero).then_some(()))
    })
    .await?;
    {
        let w = watch.lock().unwrap();
        ensure!(w.2 > 6, "the watch saw the rollout ({} events)", w.2);
        ensure!(w.1 >= 3, "ready pods fell to {} during the rollout", w.1);
    }
    recorder.abort();

    let history = cp.kubectl_ok(&["rollout", "history", "deployment/web"])?;
    let rows = |h: &str| -> Vec<String> {
        h.lines()
            .skip_while(|l| !l.starts_with("REVISION"))
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|l| !l.is_empty())
            .collect()
    };
    ensure!(rows(&history) == ["1 first", "2 second"], "{history}");

    // Undo goes back to the first template, as revision 3.
    cp.kubectl_ok(&["rollout", "undo", "deployment/web"])?;
    let out = cp.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=120s"])?;
    ensure!(out.contains("successfully rolled out"), "{out}");
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), "default");
    let d = eventually("revision 3 on the deployment", TIMEOUT, || async {
        let d = deployments.get("web").await?;
        let rev = d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("deployment.kubernetes.io/revision"))
            .cloned();
        Ok((rev.as_deref() == Some("3")).then_some(d))
    })
    .await?;
    let image = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone());
    ensure!(image.as_deref() == Some("busybox:1.36"), "{image:?}");
    let list = sets.list(&ListParams::default()).await?.items;
    ensure!(
        list.len() == 2,
        "the rollback reuses the first ReplicaSet: {}",
        list.len()
    );
    let first = list
        .iter()
        .find(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .and_then(|t| t.spec.as_ref())
                .and_then(|s| s.containers.first())
                .and_then(|c| c.image.as_deref())
                == Some("busybox:1.36")
        })
        .context("the first ReplicaSet")?;
    let a = first.metadata.annotations.clone().unwrap_or_default();
    ensure!(
        a.get("deployment.kubernetes.io/revision")
            .map(String::as_str)
            == Some("3")
            && a.get("deployment.kubernetes.io/revision-history")
                .map(String::as_str)
                == Some("1"),
        "{a:?}"
    );
    ensure!(
        first.spec.as_ref().and_then(|s| s.replicas) == Some(3),
        "{first:?}"
    );
    let history = cp.kubectl_ok(&["rollout", "history", "deployment/web"])?;
    ensure!(rows(&history) == ["2 second", "3 first"], "{history}");
    Ok(())
}

/// Pods of this Deployment never become Ready: no kubelet, simulated or real, runs.
const STUCK_DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: stuck
spec:
  replicas: 2
  progressDeadlineSeconds: 3
  selector:
    matchLabels: {app: stuck}
  template:
    metadata:
      labels: {app: stuck}
    spec:
      containers:
      - name: web
        image: busybox:1.36
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_without_ready_pods_exceeds_its_progress_deadline_and_pause_holds_a_rollout_until_resume(
) -> Result<()> {
    use k8s_openapi::api::apps::v1::Deployment;
    let (cp, _cm, client) = setup().await?;
    cp.kubectl_ok_stdin(&["apply", "-f", "-"], STUCK_DEPLOYMENT)?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let progressing = |want_reason: &'static str| {
        let deployments = deployments.clone();
        move || {
            let deployments = deployments.clone();
            async move {
                let d = deployments.get("stuck").await?;
                let seen =
                    d.status.as_ref().and_then(|s| s.observed_generation) == d.metadata.generation;
                let c = d
                    .status
                    .and_then(|s| s.conditions)
                    .and_then(|cs| cs.into_iter().find(|c| c.type_ == "Progressing"));
                Ok(c.filter(|c| seen && c.reason.as_deref() == Some(want_reason)))
            }
        }
    };
    let c = eventually(
        "ProgressDeadlineExceeded",
        TIMEOUT,
        progressing("ProgressDeadlineExceeded"),
    )
    .await?;
    ensure!(c.status == "False", "{c:?}");
    let out = cp.kubectl(&["rollout", "status", "deployment/stuck", "--timeout=30s"])?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("exceeded its progress deadline"),
        "{err}"
    );

    // Paused, a new template makes no new ReplicaSet; resumed, it does.
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    cp.kubectl_ok(&["rollout", "pause", "deployment/stuck"])?;
    cp.kubectl_ok(&["set", "image", "deployment/stuck", "web=busybox:1.37"])?;
    eventually(
        "the paused deployment observed",
        TIMEOUT,
        progressing("DeploymentPaused"),
    )
    .await?;
    let count = sets
        .list(&ListParams::default().labels("app=stuck"))
        .await?
        .items
        .len();
    ensure!(count == 1, "{count} ReplicaSets while paused");
    cp.kubectl_ok(&["rollout", "resume", "deployment/stuck"])?;
    eventually("a second ReplicaSet after resume", TIMEOUT, || async {
        let n = sets
            .list(&ListParams::default().labels("app=stuck"))
            .await?
            .items
            .len();
        Ok((n == 2).then_some(()))
    })
    .await?;
    Ok(())
}

fn node(name: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..Node::default()
    }
}

fn pod_cidr(n: &Node) -> Option<String> {
    n.spec.as_ref().and_then(|s| s.pod_cidr.clone())
}

/// Every node's podCIDR, failing if two nodes share one or podCIDRs disagrees.
async fn unique_cidrs(nodes: &Api<Node>) -> Result<BTreeMap<String, String>> {
    let mut by_cidr: BTreeMap<String, String> = BTreeMap::new();
    for n in nodes.list(&ListParams::default()).await?.items {
        let Some(c) = pod_cidr(&n) else { continue };
        let list = n.spec.as_ref().and_then(|s| s.pod_cidrs.clone());
        ensure!(
            list == Some(vec![c.clone()]),
            "podCIDRs of {}: {list:?}",
            n.name()
        );
        if let Some(other) = by_cidr.insert(c.clone(), n.name().to_string()) {
            anyhow::bail!("{c} given to both {other} and {}", n.name());
        }
    }
    Ok(by_cidr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ipam_gives_50_nodes_unique_pod_cidrs_across_a_restart_reports_a_full_range_and_reuses_freed_ones(
) -> Result<()> {
    let cp = ControlPlane::start(1).await?;
    // 64 node CIDRs: room for 50 nodes, and then for 14 of the next 20.
    let flags = [
        "--controllers=node-ipam-controller",
        "--cluster-cidr=10.244.0.0/18",
        "--node-cidr-mask-size=24",
    ];
    let cm = ControllerManager::start(&cp, &flags).await?;
    let client = Client::new(&cp.url(0))?;
    let nodes: Api<Node> = Api::all(client.clone());
    let created = futures::future::join_all((0..50).map(|i| {
        let nodes = nodes.clone();
        async move {
            nodes
                .create(&PostParams::default(), &node(&format!("n{i:02}")))
                .await
        }
    }))
    .await;
    for c in created {
        c?;
    }
    let first = eventually("50 nodes with a podCIDR", TIMEOUT, || async {
        let cidrs = unique_cidrs(&nodes).await?;
        Ok((cidrs.len() == 50).then_some(cidrs))
    })
    .await?;
    for c in first.keys() {
        let third: u8 = c
            .strip_prefix("10.244.")
            .and_then(|r| r.strip_suffix(".0/24"))
            .and_then(|o| o.parse().ok())
            .with_context(|| format!("{c} is not a /24 of 10.244.0.0/18"))?;
        ensure!(third < 64, "{c} is outside 10.244.0.0/18");
    }

    // A new controller manager reads the assignments back before handing out more.
    drop(cm);
    let _cm = ControllerManager::start(&cp, &flags).await?;
    for i in 50..70 {
        nodes
            .create(&PostParams::default(), &node(&format!("n{i:02}")))
            .await?;
    }
    eventually("64 nodes with a podCIDR, all distinct", TIMEOUT, || async {
        let cidrs = unique_cidrs(&nodes).await?;
        Ok((cidrs.len() == 64).then_some(()))
    })
    .await?;
    for (c, n) in &first {
        let now = nodes.get(n).await?;
        ensure!(
            pod_cidr(&now).as_deref() == Some(c.as_str()),
            "{n} kept {c}"
        );
    }
    let events: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let waiting: Vec<String> = eventually("CIDRNotAvailable events", TIMEOUT, || async {
        let list = events.list(&ListParams::default()).await?.items;
        let names: std::collections::BTreeSet<String> = list
            .iter()
            .filter(|e| e.reason.as_deref() == Some("CIDRNotAvailable"))
            .filter(|e| e.involved_object.kind.as_deref() == Some("Node"))
            .filter_map(|e| e.involved_object.name.clone())
            .collect();
        Ok((names.len() == 6).then(|| names.into_iter().collect()))
    })
    .await?;
    for n in &waiting {
        ensure!(pod_cidr(&nodes.get(n).await?).is_none(), "{n} has no CIDR");
    }

    // Deleted nodes free their CIDRs for the waiting ones.
    for i in 0..6 {
        nodes
            .delete(&format!("n{i:02}"), &DeleteParams::default())
            .await?;
    }
    eventually("the 6 waiting nodes served", TIMEOUT, || async {
        let cidrs = unique_cidrs(&nodes).await?;
        Ok(
            (cidrs.len() == 64 && waiting.iter().all(|w| cidrs.values().any(|n| n == w)))
                .then_some(()),
        )
    })
    .await?;
    Ok(())
}

/// Writes a pod's status as its kubelet would once it runs: phase Running, `ip`, and a
/// Ready condition.
async fn set_pod_status_as_kubelet(
    pods: &Api<Pod>,
    name: &str,
    ip: &str,
    ready: bool,
) -> Result<()> {
    let now = jiff::Timestamp::now().to_string();
    let r = if ready { "True" } else { "False" };
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": now,
            "conditions": [
                {"type": "ContainersReady", "status": r, "lastTransitionTime": now},
                {"type": "Ready", "status": r, "lastTransitionTime": now},
            ],
        }})),
    )
    .await?;
    Ok(())
}

fn web_pod(name: &str, http_port: i32) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {
            "nodeName": "n1",
            "containers": [{
                "name": "web",
                "image": "busybox",
                "ports": [{"name": "http", "containerPort": http_port}],
            }],
        },
    }))?)
}

type Addresses = (Vec<(String, i32)>, Vec<(String, i32)>);

/// (ready, not ready) as (ip, http port) pairs of a Service's Endpoints.
async fn endpoint_addresses(api: &Api<Endpoints>, name: &str) -> Result<Option<Addresses>> {
    let Some(e) = api.get_opt(name).await? else {
        return Ok(None);
    };
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    for s in e.subsets.unwrap_or_default() {
        let http = s
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some("http"))
            .map_or(0, |p| p.port);
        for a in s.addresses.iter().flatten() {
            ready.push((a.ip.clone(), http));
        }
        for a in s.not_ready_addresses.iter().flatten() {
            not_ready.push((a.ip.clone(), http));
        }
    }
    ready.sort();
    not_ready.sort();
    Ok(Some((ready, not_ready)))
}

/// (ip, ready, terminating, http port, target pod, node) per endpoint of a Service's
/// slices.
async fn slice_endpoints(
    api: &Api<EndpointSlice>,
    svc: &str,
) -> Result<Vec<(String, bool, bool, i32, String, String)>> {
    let list = api
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={svc}")))
        .await?
        .items;
    let mut out = Vec::new();
    for s in list {
        ensure!(
            s.labels()
                .get("endpointslice.kubernetes.io/managed-by")
                .map(String::as_str)
                == Some("endpointslice-controller.k8s.io"),
            "{:?}",
            s.labels()
        );
        ensure!(s.address_type == "IPv4");
        let owner = s
            .controller_owner()
            .context("a slice has its Service as controller")?;
        ensure!(owner.kind == "Service" && owner.name == svc, "{owner:?}");
        let http = s
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some("http"))
            .and_then(|p| p.port)
            .unwrap_or(0);
        for e in &s.endpoints {
            let c = e.conditions.clone().unwrap_or_default();
            out.push((
                e.addresses.join(","),
                c.ready.unwrap_or(true),
                c.terminating.unwrap_or(false),
                http,
                e.target_ref
                    .as_ref()
                    .and_then(|r| r.name.clone())
                    .unwrap_or_default(),
                e.node_name.clone().unwrap_or_default(),
            ));
        }
    }
    out.sort();
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_and_slices_follow_pods_set_ready_by_a_test_kubelet_and_namespaces_get_a_default_serviceaccount(
) -> Result<()> {
    let (cp, _cm, client) = setup().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // Two pods whose named targetPort resolves to different container ports, one ready
    // and one not, and one without an IP yet.
    pods.create(&PostParams::default(), &web_pod("a", 8080)?)
        .await?;
    pods.create(&PostParams::default(), &web_pod("b", 8081)?)
        .await?;
    pods.create(&PostParams::default(), &web_pod("c", 8080)?)
        .await?;
    set_pod_status_as_kubelet(&pods, "a", "10.244.1.1", true).await?;
    set_pod_status_as_kubelet(&pods, "b", "10.244.1.2", false).await?;
    cp.kubectl_ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Service
metadata: {name: web, labels: {tier: fe}}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: metrics, port: 9090, targetPort: 9090}
"#,
    )?;
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let a = ("10.244.1.1".to_string(), 8080);
    let b = ("10.244.1.2".to_string(), 8081);
    eventually("Endpoints: a ready, b not ready", TIMEOUT, || async {
        let got = endpoint_addresses(&endpoints, "web").await?;
        Ok((got == Some((vec![a.clone()], vec![b.clone()]))).then_some(()))
    })
    .await?;
    let row = |ip: &str, ready: bool, term: bool, port: i32, pod: &str| {
        (
            ip.to_string(),
            ready,
            term,
            port,
            pod.to_string(),
            "n1".to_string(),
        )
    };
    eventually("slices: a ready, b not, ports per pod", TIMEOUT, || async {
        let got = slice_endpoints(&slices, "web").await?;
        let want = vec![
            row("10.244.1.1", true, false, 8080, "a"),
            row("10.244.1.2", false, false, 8081, "b"),
        ];
        ensure!(got == want, "{got:?}");
        Ok(Some(()))
    })
    .await?;
    let e = endpoints.get("web").await?;
    ensure!(
        e.labels().get("tier").map(String::as_str) == Some("fe"),
        "{e:?}"
    );
    let target = e
        .subsets
        .iter()
        .flatten()
        .flat_map(|s| s.addresses.iter().flatten())
        .next()
        .context("an address")?;
    ensure!(
        target.node_name.as_deref() == Some("n1")
            && target.target_ref.as_ref().and_then(|r| r.name.as_deref()) == Some("a"),
        "{target:?}"
    );

    // b becomes ready, c gets an IP, a is being deleted (it stays Terminating: no real
    // kubelet confirms).
    set_pod_status_as_kubelet(&pods, "b", "10.244.1.2", true).await?;
    set_pod_status_as_kubelet(&pods, "c", "10.244.1.3", true).await?;
    pods.delete("a", &DeleteParams::default()).await?;
    let c = ("10.244.1.3".to_string(), 8080);
    eventually("Endpoints: b and c ready, a gone", TIMEOUT, || async {
        let got = endpoint_addresses(&endpoints, "web").await?;
        Ok((got == Some((vec![b.clone(), c.clone()], vec![]))).then_some(()))
    })
    .await?;
    let a_gone = pods.get_opt("a").await?.is_none();
    eventually(
        "slices: a terminating (or gone), b and c ready",
        TIMEOUT,
        || async {
            let got = slice_endpoints(&slices, "web").await?;
            let mut want = vec![
                row("10.244.1.2", true, false, 8081, "b"),
                row("10.244.1.3", true, false, 8080, "c"),
            ];
            if !a_gone && pods.get_opt("a").await?.is_some() {
                want.push(row("10.244.1.1", false, true, 8080, "a"));
                want.sort();
            }
            ensure!(got == want, "{got:?}");
            Ok(Some(()))
        },
    )
    .await?;

    // publishNotReadyAddresses: a not-ready pod counts as ready.
    set_pod_status_as_kubelet(&pods, "c", "10.244.1.3", false).await?;
    eventually("c not ready", TIMEOUT, || async {
        let got = endpoint_addresses(&endpoints, "web").await?;
        Ok((got == Some((vec![b.clone()], vec![c.clone()]))).then_some(()))
    })
    .await?;
    cp.kubectl_ok(&[
        "patch",
        "service",
        "web",
        "-p",
        r#"{"spec":{"publishNotReadyAddresses":true}}"#,
    ])?;
    eventually("c published though not ready", TIMEOUT, || async {
        let got = endpoint_addresses(&endpoints, "web").await?;
        let (ready, not_ready) = got.unwrap_or_default();
        Ok((ready.contains(&c) && not_ready.is_empty()).then_some(()))
    })
    .await?;

    // The Service goes: its Endpoints and slices follow.
    cp.kubectl_ok(&["delete", "service", "web"])?;
    eventually("Endpoints and slices gone", TIMEOUT, || async {
        Ok((endpoints.get_opt("web").await?.is_none()
            && slice_endpoints(&slices, "web").await?.is_empty())
        .then_some(()))
    })
    .await?;

    // Every namespace gets a default ServiceAccount, again after it is deleted.
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    eventually("default/default ServiceAccount", TIMEOUT, || async {
        Ok(accounts.get_opt("default").await?.map(|_| ()))
    })
    .await?;
    cp.kubectl_ok(&["create", "namespace", "team-a"])?;
    let team: Api<ServiceAccount> = Api::namespaced(client.clone(), "team-a");
    let first = eventually("team-a/default ServiceAccount", TIMEOUT, || async {
        Ok(team.get_opt("default").await?)
    })
    .await?;
    team.delete("default", &DeleteParams::default()).await?;
    eventually("team-a/default recreated", TIMEOUT, || async {
        Ok(team
            .get_opt("default")
            .await?
            .filter(|sa| sa.uid() != first.uid())
            .map(|_| ()))
    })
    .await?;
    Ok(())
}

/// Renews `kube-node-lease/<node>` every 500 ms, as a kubelet does, until dropped.
struct LeaseRenewer {
    task: tokio::task::JoinHandle<()>,
}

impl LeaseRenewer {
    fn start(client: &Client, node: &str) -> LeaseRenewer {
        let api: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
        let node = node.to_string();
        let task = tokio::spawn(async move {
            loop {
                let now = jiff::Timestamp::now().to_string();
                let body = json!({"spec": {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": now}});
                let r = api
                    .patch(&node, &PatchParams::default(), &Patch::Merge(body.clone()))
                    .await;
                if matches!(&r, Err(e) if e.is_not_found()) {
                    let lease: Lease = serde_json::from_value(json!({
                        "metadata": {"name": node, "namespace": "kube-node-lease"},
                        "spec": body["spec"],
                    }))
                    .unwrap_or_default();
                    let _ = api.create(&PostParams::default(), &lease).await;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        LeaseRenewer { task }
    }
}

impl Drop for LeaseRenewer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn taint_keys(n: &Node) -> Vec<String> {
    n.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .map(|ts| {
            ts.iter()
                .map(|t| format!("{}:{}", t.key, t.effect))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stops_renewing_its_lease_is_tainted_and_its_pods_are_replaced_elsewhere(
) -> Result<()> {
    let cp = ControlPlane::start(1).await?;
    let _cm = ControllerManager::start(
        &cp,
        &["--node-monitor-grace-period=4s", "--node-monitor-period=1s"],
    )
    .await?;
    let _scheduler = SchedulerProcess::start(cp.kubeconfig(), cp.dir(), "lifecycle", &[]).await?;
    let client = Client::new(&cp.url(0))?;
    let nodes: Api<Node> = Api::all(client.clone());
    for n in ["n1", "n2"] {
        nodes
            .create(&PostParams::default(), &ready_node(n, "4", "8Gi", "110"))
            .await?;
    }
    let lease_n1 = LeaseRenewer::start(&client, "n1");
    let _lease_n2 = LeaseRenewer::start(&client, "n2");

    let mut rs = replica_set("lc", 4, "lc");
    if let Some(spec) = rs
        .spec
        .as_mut()
        .and_then(|s| s.template.as_mut())
        .and_then(|t| t.spec.as_mut())
    {
        spec.tolerations = Some(vec![Toleration {
            key: Some("node.kubernetes.io/unreachable".into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: Some(3),
            ..Toleration::default()
        }]);
    }
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let rs = sets.create(&PostParams::default(), &rs).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let node_of = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default()
    };
    let on_n1: Vec<String> = eventually("4 pods scheduled, some on n1", TIMEOUT, || async {
        let owned = owned_pods(&pods, &rs).await?;
        let placed: Vec<&Pod> = owned.iter().filter(|p| !node_of(p).is_empty()).collect();
        if placed.len() < 4 {
            return Ok(None);
        }
        let n1: Vec<String> = placed
            .iter()
            .filter(|p| node_of(p) == "n1")
            .map(|p| p.name().to_string())
            .collect();
        ensure!(
            !n1.is_empty(),
            "the scheduler put every pod on n2; the test needs one on n1"
        );
        Ok(Some(n1))
    })
    .await?;
    // Both nodes stay untainted while their Leases are renewed.
    for n in ["n1", "n2"] {
        ensure!(taint_keys(&nodes.get(n).await?).is_empty());
    }

    drop(lease_n1);
    let n1 = eventually(
        "n1 Ready=Unknown and tainted unreachable",
        TIMEOUT,
        || async {
            let n = nodes.get("n1").await?;
            let ready = n
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
                .map(|c| c.status.clone());
            let keys = taint_keys(&n);
            Ok((ready.as_deref() == Some("Unknown")
                && keys.contains(&"node.kubernetes.io/unreachable:NoExecute".to_string())
                && keys.contains(&"node.kubernetes.io/unreachable:NoSchedule".to_string()))
            .then_some(n))
        },
    )
    .await?;
    ensure!(
        taint_keys(&nodes.get("n2").await?).is_empty(),
        "n2 keeps renewing"
    );
    let tainted_at = n1
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .and_then(|ts| ts.iter().find(|t| t.effect == "NoExecute"))
        .and_then(|t| t.time_added.as_ref())
        .map(|t| t.0)
        .context("timeAdded on the NoExecute taint")?;

    eventually(
        "the pods on n1 evicted and replaced on n2",
        TIMEOUT,
        || async {
            for name in &on_n1 {
                if let Some(p) = pods.get_opt(name).await? {
                    if p.metadata.deletion_timestamp.is_none() {
                        return Ok(None);
                    }
                    // Evicted after its tolerationSeconds, not before.
                    let deleted = p.metadata.deletion_timestamp.as_ref().map(|t| t.0);
                    ensure!(
                        deleted.is_some_and(|d| d.as_second() >= tainted_at.as_second() + 3),
                        "{name} deleted at {deleted:?}, taint added at {tainted_at}"
                    );
                }
            }
            let owned = owned_pods(&pods, &rs).await?;
            Ok((owned.len() == 4 && owned.iter().all(|p| node_of(p) == "n2")).then_some(()))
        },
    )
    .await?;
    let events: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let list = events.list(&ListParams::default()).await?.items;
    ensure!(
        list.iter()
            .any(|e| e.reason.as_deref() == Some("TaintManagerEviction")),
        "an eviction Event"
    );

    // Renewing again brings n1 back: the kubelet would report Ready; the taints go.
    let _lease_n1 = LeaseRenewer::start(&client, "n1");
    nodes
        .patch_status(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady",
                 "lastHeartbeatTime": jiff::Timestamp::now().to_string()}
            ]}})),
        )
        .await?;
    eventually("n1 untainted", TIMEOUT, || async {
        Ok(taint_keys(&nodes.get("n1").await?).is_empty().then_some(()))
    })
    .await?;
    Ok(())
}

// ---- StatefulSet, DaemonSet, Job, CronJob ----

const STATEFULSET: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  replicas: 3
  serviceName: db
  selector:
    matchLabels: {app: db}
  template:
    metadata:
      labels: {app: db}
    spec:
      containers:
      - name: db
        image: busybox:1.36
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
"#;

/// What a watch on a StatefulSet's pods saw: names in the order they appeared and
/// disappeared, and any pod that appeared while a lower ordinal was not Ready.
#[derive(Default)]
struct OrdinalLog {
    created: Vec<String>,
    deleted: Vec<String>,
    early: Vec<String>,
    synced: bool,
}

fn ordinal(name: &str) -> i32 {
    name.rsplit('-')
        .next()
        .and_then(|o| o.parse().ok())
        .unwrap_or(-1)
}

fn record_ordinals(
    pods: Api<Pod>,
    selector: &str,
) -> (
    std::sync::Arc<std::sync::Mutex<OrdinalLog>>,
    tokio::task::JoinHandle<()>,
) {
    let log = std::sync::Arc::new(std::sync::Mutex::new(OrdinalLog::default()));
    let mut events = watcher::watcher(pods, watcher::Config::default().labels(selector));
    let task = {
        let log = log.clone();
        tokio::spawn(async move {
            let mut live: BTreeMap<i32, (String, bool)> = BTreeMap::new();
            while let Some(e) = events.next().await {
                let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                match e {
                    Ok(Event::InitDone) => l.synced = true,
                    Ok(Event::InitApply(p)) => {
                        live.insert(
                            ordinal(p.name()),
                            (p.uid().unwrap_or("").into(), is_ready(&p)),
                        );
                    }
                    Ok(Event::Apply(p)) => {
                        let o = ordinal(p.name());
                        let uid = p.uid().unwrap_or("").to_string();
                        let fresh = live.get(&o).is_none_or(|(u, _)| *u != uid);
                        if fresh {
                            l.created.push(p.name().to_string());
                            if o > 0 && !live.get(&(o - 1)).is_some_and(|(_, r)| *r) {
                                l.early.push(p.name().to_string());
                            }
                        }
                        live.insert(
                            o,
                            (uid, is_ready(&p) && p.metadata.deletion_timestamp.is_none()),
                        );
                    }
                    Ok(Event::Delete(p)) => {
                        live.remove(&ordinal(p.name()));
                        l.deleted.push(p.name().to_string());
                    }
                    _ => {}
                }
            }
        })
    };
    (log, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_creates_in_ordinal_order_updates_and_deletes_from_the_highest_with_simulated_kubelet(
) -> Result<()> {
    use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    let (cp, _cm, client) = setup().await?;
    let _kubelet = SimulatedKubelet::start(&client);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let (log, recorder) = record_ordinals(pods.clone(), "app=db");
    eventually("pod watch listed", TIMEOUT, || async {
        Ok(log.lock().unwrap().synced.then_some(()))
    })
    .await?;
    cp.kubectl_ok_stdin(&["apply", "-f", "-"], STATEFULSET)?;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let status_is = |ready: i32, updated: i32| {
        let sets = sets.clone();
        move || {
            let sets = sets.clone();
            async move {
                let s = sets.get("db").await?.status.unwrap_or_default();
                Ok((s.ready_replicas == Some(ready)
                    && s.updated_replicas == Some(updated)
                    && s.replicas == ready
                    && s.current_revision == s.update_revision)
                    .then_some(s))
            }
        }
    };
    let first = eventually("3 ready pods", Duration::from_secs(120), status_is(3, 3)).await?;
    {
        let l = log.lock().unwrap();
        ensure!(
            l.created == ["db-0", "db-1", "db-2"],
            "creation order {:?}",
            l.created
        );
        ensure!(
            l.early.is_empty(),
            "created before the previous was Ready: {:?}",
            l.early
        );
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    for i in 0..3 {
        claims.get(&format!("data-db-{i}")).await?;
    }
    let p0 = pods.get("db-0").await?;
    let spec = p0.spec.clone().unwrap_or_default();
    ensure!(spec.hostname.as_deref() == Some("db-0") && spec.subdomain.as_deref() == Some("db"));
    ensure!(
        p0.labels().get("controller-revision-hash") == first.update_revision.as_ref(),
        "{:?}",
        p0.labels()
    );
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), "default");
    revisions
        .get(first.update_revision.as_deref().unwrap_or(""))
        .await?;

    // A rolling update replaces pods from the highest ordinal down.
    log.lock().unwrap().created.clear();
    cp.kubectl_ok(&["set", "image", "statefulset/db", "db=busybox:1.37"])?;
    let second = eventually("3 updated ready pods", Duration::from_secs(120), || async {
        let s = sets.get("db").await?.status.unwrap_or_default();
        Ok((s.updated_replicas == Some(3)
            && s.ready_replicas == Some(3)
            && s.current_revision == s.update_revision
            && s.update_revision != first.update_revision)
            .then_some(s))
    })
    .await?;
    ensure!(second.current_replicas == Some(3));
    {
        let mut l = log.lock().unwrap();
        ensure!(
            l.deleted == ["db-2", "db-1", "db-0"],
            "update order {:?}",
            l.deleted
        );
        l.deleted.clear();
    }

    // Scale down: the highest ordinal first, ordinal 0 last.
    cp.kubectl_ok(&["scale", "statefulset/db", "--replicas=0"])?;
    eventually("all pods gone", Duration::from_secs(120), || async {
        Ok(pods
            .list(&ListParams::default().labels("app=db"))
            .await?
            .items
            .is_empty()
            .then_some(()))
    })
    .await?;
    {
        let l = log.lock().unwrap();
        ensure!(
            l.deleted == ["db-2", "db-1", "db-0"],
            "deletion order {:?}",
            l.deleted
        );
    }
    recorder.abort();

    // From now on claims go with the pods a scale-down removes and with the set.
    sets.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"spec": {"replicas": 3, "persistentVolumeClaimRetentionPolicy":
            {"whenScaled": "Delete", "whenDeleted": "Delete"}}}),
        ),
    )
    .await?;
    eventually(
        "3 ready pods again",
        Duration::from_secs(120),
        status_is(3, 3),
    )
    .await?;
    // A pod that stops matching the selector is released (its name stays taken, so no
    // second db-0 appears); matching again, the same pod is adopted back.
    let uid = pods.get("db-0").await?.uid().map(str::to_string);
    let relabel = |app: &'static str| {
        let pods = pods.clone();
        async move {
            pods.patch(
                "db-0",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"app": app}}})),
            )
            .await
        }
    };
    let owner_of_db0 = || async {
        let p = pods.get("db-0").await?;
        ensure!(p.uid().map(str::to_string) == uid, "db-0 was replaced");
        Ok(p.controller_owner()
            .map(|o| format!("{}/{}", o.kind, o.name)))
    };
    relabel("other").await?;
    eventually("db-0 released", Duration::from_secs(60), || async {
        Ok(owner_of_db0().await?.is_none().then_some(()))
    })
    .await?;
    relabel("db").await?;
    eventually("db-0 adopted back", Duration::from_secs(60), || async {
        Ok((owner_of_db0().await?.as_deref() == Some("StatefulSet/db")).then_some(()))
    })
    .await?;
    cp.kubectl_ok(&["scale", "statefulset/db", "--replicas=1"])?;
    eventually(
        "claims of removed pods deleted",
        Duration::from_secs(60),
        || async {
            let mut left: Vec<(String, Vec<String>)> = claims
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .map(|c| {
                    let owners = c
                        .owner_references()
                        .iter()
                        .map(|o| format!("{}/{}", o.kind, o.name));
                    (c.name().to_string(), owners.collect())
                })
                .collect();
            left.sort();
            ensure!(
                left.len() == 1 && left[0].0 == "data-db-0",
                "claims left: {left:?}"
            );
            Ok(Some(()))
        },
    )
    .await?;
    let kept = claims.get("data-db-0").await?;
    ensure!(
        kept.owner_references()
            .iter()
            .any(|o| o.kind == "StatefulSet" && o.name == "db"),
        "{:?}",
        kept.metadata.owner_references
    );
    cp.kubectl_ok(&["delete", "statefulset", "db"])?;
    eventually(
        "the last claim went with the set",
        Duration::from_secs(120),
        || async {
            Ok(claims
                .list(&ListParams::default())
                .await?
                .items
                .is_empty()
                .then_some(()))
        },
    )
    .await?;
    Ok(())
}

const DAEMONSET: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
      - name: agent
        image: busybox:1.36
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonset_skips_a_tainted_node_covers_a_cordoned_one_and_a_node_added_later_with_simulated_kubelet(
) -> Result<()> {
    use k8s_openapi::api::apps::v1::DaemonSet;
    use k8s_openapi::api::core::v1::Taint;
    let cp = ControlPlane::start(1).await?;
    // Without Lease renewers the node lifecycle controller would taint every node.
    let _cm = ControllerManager::start(&cp, &["--controllers=*,-nodelifecycle"]).await?;
    let _scheduler = SchedulerProcess::start(cp.kubeconfig(), cp.dir(), "ds", &[]).await?;
    let client = Client::new(&cp.url(0))?;
    let _kubelet = SimulatedKubelet::start_for_bound_pods(&client);
    let nodes: Api<Node> = Api::all(client.clone());
    let taint = |key: &str| Taint {
        key: key.into(),
        effect: "NoSchedule".into(),
        ..Taint::default()
    };
    for (name, taints) in [
        ("plain", vec![]),
        ("dedicated", vec![taint("dedicated")]),
        ("cordoned", vec![taint("node.kubernetes.io/unschedulable")]),
    ] {
        let mut n = ready_node(name, "4", "8Gi", "110");
        if let Some(spec) = n.spec.as_mut() {
            spec.taints = Some(taints);
            spec.unschedulable = (name == "cordoned").then_some(true);
        }
        nodes.create(&PostParams::default(), &n).await?;
    }
    cp.kubectl_ok_stdin(&["apply", "-f", "-"], DAEMONSET)?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let placed = |want: usize| {
        let pods = pods.clone();
        move || {
            let pods = pods.clone();
            async move {
                let list = pods
                    .list(&ListParams::default().labels("app=agent"))
                    .await?
                    .items;
                let mut on: Vec<String> = list
                    .iter()
                    .filter_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()))
                    .collect();
                on.sort();
                Ok(
                    (list.len() == want && on.len() == want && list.iter().all(is_ready))
                        .then_some(on),
                )
            }
        }
    };
    let on = eventually("daemon pods bound on 2 nodes", TIMEOUT, placed(2)).await?;
    ensure!(on == ["cordoned", "plain"], "{on:?}");
    nodes
        .create(
            &PostParams::default(),
            &ready_node("late", "4", "8Gi", "110"),
        )
        .await?;
    let on = eventually("a daemon pod on the new node", TIMEOUT, placed(3)).await?;
    ensure!(on == ["cordoned", "late", "plain"], "{on:?}");
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    eventually("status counts 3 nodes", TIMEOUT, || async {
        let s = sets.get("agent").await?.status.unwrap_or_default();
        Ok((s.desired_number_scheduled == 3
            && s.current_number_scheduled == 3
            && s.number_ready == 3
            && s.updated_number_scheduled == Some(3)
            && s.number_available == Some(3))
        .then_some(()))
    })
    .await?;
    let pod = pods
        .list(&ListParams::default().labels("app=agent"))
        .await?
        .items;
    let tolerations = pod[0]
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    ensure!(
        tolerations.iter().any(
            |t| t.key.as_deref() == Some("node.kubernetes.io/unreachable")
                && t.effect.as_deref() == Some("NoExecute")
                && t.toleration_seconds.is_none()
        ),
        "{tolerations:?}"
    );

    // A surging rollout (maxSurge 1, maxUnavailable 0): watched on every event, no node
    // is ever without a ready daemon pod, and some node had an old and a new one at once.
    let (watch_log, watch_task) = record_daemon_pods(pods.clone());
    eventually("daemon pod watch listed", TIMEOUT, || async {
        Ok(watch_log.lock().unwrap().synced.then_some(()))
    })
    .await?;
    let patch = json!({"spec": {
        "updateStrategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "template": {"spec": {"containers": [{"name": "agent", "image": "busybox:1.37"}]}},
    }});
    sets.patch("agent", &PatchParams::default(), &Patch::Strategic(patch))
        .await?;
    eventually("3 updated available daemon pods", TIMEOUT, || async {
        let d = sets.get("agent").await?;
        let s = d.status.clone().unwrap_or_default();
        let old_left = pods
            .list(&ListParams::default().labels("app=agent"))
            .await?
            .items
            .iter()
            .any(|p| p.metadata.deletion_timestamp.is_none() && !image_is(p, "busybox:1.37"));
        Ok((s.observed_generation == d.metadata.generation
            && s.updated_number_scheduled == Some(3)
            && s.number_available == Some(3)
            && !old_left)
            .then_some(()))
    })
    .await?;
    watch_task.abort();
    {
        let l = watch_log.lock().unwrap();
        ensure!(
            l.bare.is_empty(),
            "nodes without a ready daemon pod: {:?}",
            l.bare
        );
        ensure!(
            l.most_on_a_node == 2,
            "at most {} pods on a node",
            l.most_on_a_node
        );
    }
    // Each template has its ControllerRevision, which kubectl's rollout history reads.
    let history = cp.kubectl_ok(&["rollout", "history", "daemonset/agent"])?;
    let numbers: Vec<&str> = history
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    ensure!(numbers == ["1", "2"], "{history}");
    // With revisionHistoryLimit 0, once the old pods are gone (their kubelet would
    // finish their deletion), only the current revision is kept.
    for p in pods
        .list(&ListParams::default().labels("app=agent"))
        .await?
        .items
    {
        if p.metadata.deletion_timestamp.is_some() {
            pods.delete(
                p.name(),
                &DeleteParams {
                    grace_period_seconds: Some(0),
                    ..DeleteParams::default()
                },
            )
            .await?;
        }
    }
    sets.patch(
        "agent",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"revisionHistoryLimit": 0}})),
    )
    .await?;
    let revisions: Api<k8s_openapi::api::apps::v1::ControllerRevision> =
        Api::namespaced(client.clone(), "default");
    eventually("one ControllerRevision left", TIMEOUT, || async {
        let left = revisions
            .list(&ListParams::default().labels("app=agent"))
            .await?
            .items;
        Ok((left.len() == 1 && left[0].revision == 2).then_some(()))
    })
    .await?;
    Ok(())
}

fn image_is(p: &Pod, image: &str) -> bool {
    p.spec.as_ref().is_some_and(|s| {
        s.containers
            .iter()
            .all(|c| c.image.as_deref() == Some(image))
    })
}

/// What a watch on daemon pods saw: nodes left without a ready pod (after the initial
/// list) and the most live pods one node had at once.
#[derive(Default)]
struct DaemonLog {
    synced: bool,
    bare: Vec<String>,
    most_on_a_node: usize,
}

fn record_daemon_pods(
    pods: Api<Pod>,
) -> (
    std::sync::Arc<std::sync::Mutex<DaemonLog>>,
    tokio::task::JoinHandle<()>,
) {
    let log = std::sync::Arc::new(std::sync::Mutex::new(DaemonLog::default()));
    let mut events = watcher::watcher(pods, watcher::Config::default().labels("app=agent"));
    let task = {
        let log = log.clone();
        tokio::spawn(async move {
            // node -> pod name -> (ready and not being deleted, being deleted)
            let mut live: BTreeMap<String, BTreeMap<String, (bool, bool)>> = BTreeMap::new();
            while let Some(e) = events.next().await {
                let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                let (pod, gone) = match e {
                    Ok(Event::InitDone) => {
                        l.synced = true;
                        continue;
                    }
                    Ok(Event::InitApply(p) | Event::Apply(p)) => (p, false),
                    Ok(Event::Delete(p)) => (p, true),
                    _ => continue,
                };
                let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                    continue;
                };
                let on_node = live.entry(node.clone()).or_default();
                if gone {
                    on_node.remove(pod.name());
                } else {
                    let deleting = pod.metadata.deletion_timestamp.is_some();
                    on_node.insert(
                        pod.name().to_string(),
                        (is_ready(&pod) && !deleting, deleting),
                    );
                }
                if l.synced {
                    if !on_node.values().any(|(serving, _)| *serving) {
                        l.bare.push(node);
                    }
                    let alive = on_node.values().filter(|(_, deleting)| !deleting).count();
                    l.most_on_a_node = l.most_on_a_node.max(alive);
                }
            }
        })
    };
    (log, task)
}

/// Plays a kubelet whose containers all exit 1: every pod of the Job is reported
/// Failed with a terminated container, as a kubelet would. Stops on drop.
struct FailingKubelet {
    task: tokio::task::JoinHandle<()>,
}

impl FailingKubelet {
    fn start(pods: Api<Pod>, selector: &str) -> FailingKubelet {
        let mut events =
            watcher::watcher(pods.clone(), watcher::Config::default().labels(selector));
        let task = tokio::spawn(async move {
            while let Some(e) = events.next().await {
                let pod = match e {
                    Ok(Event::InitApply(p) | Event::Apply(p)) => p,
                    _ => continue,
                };
                let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
                if phase.as_deref() == Some("Failed") || pod.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let now = jiff::Timestamp::now().to_string();
                let status = json!({"status": {
                    "phase": "Failed",
                    "startTime": now,
                    "containerStatuses": [{
                        "name": "work", "image": "busybox", "imageID": "", "ready": false,
                        "restartCount": 0,
                        "state": {"terminated": {"exitCode": 1, "reason": "Error",
                                                 "startedAt": now, "finishedAt": now}},
                    }],
                }});
                let _ = pods
                    .patch_status(pod.name(), &PatchParams::default(), &Patch::Merge(status))
                    .await;
            }
        });
        FailingKubelet { task }
    }
}

impl Drop for FailingKubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const FAILING_JOB: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: flaky
spec:
  backoffLimit: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: busybox:1.36
        command: ["false"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_retries_failed_pods_with_back_off_until_the_backoff_limit_then_fails_with_failing_test_kubelet(
) -> Result<()> {
    use k8s_openapi::api::batch::v1::Job;
    let (cp, _cm, client) = setup().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let _kubelet = FailingKubelet::start(pods.clone(), "job-name=flaky");
    cp.kubectl_ok_stdin(&["apply", "-f", "-"], FAILING_JOB)?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    // Back-off 10 s then 20 s: three pods take at least 30 s.
    let job = eventually("the Job failed", Duration::from_secs(180), || async {
        let j = jobs.get("flaky").await?;
        let failed = j
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c.type_ == "Failed" && c.status == "True")
            })
            .cloned();
        Ok(failed.map(|c| (j, c)))
    })
    .await?;
    let (job, cond) = job;
    ensure!(
        cond.reason.as_deref() == Some("BackoffLimitExceeded"),
        "{cond:?}"
    );
    let status = job.status.unwrap_or_default();
    ensure!(
        status.failed == Some(3) && status.active.unwrap_or(0) == 0,
        "{status:?}"
    );
    let mut list = pods
        .list(&ListParams::default().labels("job-name=flaky"))
        .await?
        .items;
    ensure!(list.len() == 3, "{} pods", list.len());
    list.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
    for p in &list {
        let labels = p.labels();
        ensure!(
            labels.get("batch.kubernetes.io/controller-uid") == job.metadata.uid.as_ref()
                && labels.get("controller-uid") == job.metadata.uid.as_ref(),
            "{labels:?}"
        );
    }
    // Each retry waited at least its back-off after the failure before it (10 s, 20 s);
    // a slow machine only lengthens the gaps.
    let created = |p: &Pod| {
        p.metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_second())
    };
    let gap1 = created(&list[1]) - created(&list[0]);
    let gap2 = created(&list[2]) - created(&list[1]);
    ensure!(
        gap1 >= 9 && gap2 >= 19,
        "retries came after {gap1} s and {gap2} s"
    );
    Ok(())
}

const EVERY_MINUTE: &str = r#"
apiVersion: batch/v1
kind: CronJob
metadata:
  name: tick
spec:
  schedule: "* * * * *"
  concurrencyPolicy: Forbid
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: tick
            image: busybox:1.36
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cronjob_every_minute_creates_a_job_named_for_its_minute_and_bad_schedules_are_rejected(
) -> Result<()> {
    use k8s_openapi::api::batch::v1::{CronJob, Job};
    let (cp, _cm, client) = setup().await?;
    let bad = EVERY_MINUTE.replace("\"* * * * *\"", "\"61 * * * *\"");
    let out = cp.kubectl_with_stdin(&["apply", "-f", "-"], &bad)?;
    ensure!(!out.status.success(), "a bad schedule was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(err.contains("schedule"), "{err}");

    cp.kubectl_ok_stdin(&["apply", "-f", "-"], EVERY_MINUTE)?;
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let cj = cronjobs.get("tick").await?;
    let job = eventually("a Job within ~70 s", Duration::from_secs(100), || async {
        let list = jobs.list(&ListParams::default()).await?.items;
        Ok(list.into_iter().find(|j| {
            j.controller_owner()
                .is_some_and(|o| Some(o.uid.as_str()) == cj.uid())
        }))
    })
    .await?;
    let scheduled: jiff::Timestamp = job
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("batch.kubernetes.io/cronjob-scheduled-timestamp"))
        .context("scheduled-timestamp annotation")?
        .parse()?;
    ensure!(scheduled.as_second() % 60 == 0, "{scheduled}");
    ensure!(
        job.name() == format!("tick-{}", scheduled.as_second() / 60),
        "{}",
        job.name()
    );
    eventually("status shows the Job", TIMEOUT, || async {
        let s = cronjobs.get("tick").await?.status.unwrap_or_default();
        let active = s
            .active
            .unwrap_or_default()
            .iter()
            .any(|r| r.name.as_deref() == Some(job.name()));
        Ok((active && s.last_schedule_time.map(|t| t.0) == Some(scheduled)).then_some(()))
    })
    .await?;
    // The Job controller runs it.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let selector = format!("job-name={}", job.name());
    eventually("the Job's pod", TIMEOUT, || async {
        Ok((!pods
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
            .is_empty())
        .then_some(()))
    })
    .await?;
    Ok(())
}

/// An Indexed Job whose pods check, in a real container, that they got their index as
/// Kubernetes gives it (hostname `<job>-<index>`, `$JOB_COMPLETION_INDEX`), and a Job
/// whose podFailurePolicy fails it on the first exit code 42 instead of retrying.
const INDEXED_AND_POLICY_JOBS: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: sq
spec:
  completionMode: Indexed
  completions: 3
  parallelism: 2
  template:
    spec:
      nodeName: NODE
      restartPolicy: Never
      containers:
      - name: main
        image: IMAGE
        command: ["sh", "-c", 'test "$(hostname)" = "sq-$JOB_COMPLETION_INDEX"']
---
apiVersion: batch/v1
kind: Job
metadata:
  name: fatal
spec:
  backoffLimit: 6
  podFailurePolicy:
    rules:
    - action: FailJob
      onExitCodes: {containerName: main, operator: In, values: [42]}
  template:
    spec:
      nodeName: NODE
      restartPolicy: Never
      containers:
      - name: main
        image: IMAGE
        command: ["sh", "-c", "exit 42"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_job_runs_each_index_once_and_pod_failure_policy_fails_a_job_at_once_with_real_kubelet(
) -> Result<()> {
    use k8s_openapi::api::batch::v1::Job;
    use skiff_tests::kubelet::{ensure_images, image, KubeletNode};
    ensure_images()?;
    let (cp, _cm, client) = setup().await?;
    let node = KubeletNode::start(&cp, "jobs", &[])?;
    let manifests = INDEXED_AND_POLICY_JOBS
        .replace("NODE", &node.name)
        .replace("IMAGE", &image("busybox"));
    cp.kubectl_ok_stdin(&["apply", "-f", "-"], &manifests)?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let finished = |name: &'static str| {
        let jobs = jobs.clone();
        async move {
            eventually(
                &format!("Job {name} finished"),
                Duration::from_secs(120),
                || async {
                    let j = jobs.get(name).await?;
                    let cond = j
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .and_then(|cs| {
                            cs.iter().find(|c| {
                                (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True"
                            })
                        })
                        .cloned();
                    Ok(cond.map(|c| (j, c)))
                },
            )
            .await
        }
    };
    let (sq, cond) = finished("sq").await?;
    ensure!(cond.type_ == "Complete", "{cond:?}\n{}", node.log_tail(30));
    let status = sq.status.unwrap_or_default();
    ensure!(
        status.completed_indexes.as_deref() == Some("0-2") && status.succeeded == Some(3),
        "{status:?}"
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let list = pods
        .list(&ListParams::default().labels("batch.kubernetes.io/job-name=sq"))
        .await?
        .items;
    let mut indexes: Vec<String> = list
        .iter()
        .map(|p| {
            let index = p
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("batch.kubernetes.io/job-completion-index"))
                .cloned()
                .context("no completion index annotation")?;
            ensure!(
                p.name().starts_with(&format!("sq-{index}-")),
                "{} for index {index}",
                p.name()
            );
            Ok(index)
        })
        .collect::<Result<_>>()?;
    indexes.sort();
    ensure!(indexes == ["0", "1", "2"], "one pod per index: {indexes:?}");

    let (fatal, cond) = finished("fatal").await?;
    ensure!(
        cond.type_ == "Failed" && cond.reason.as_deref() == Some("PodFailurePolicy"),
        "{cond:?}"
    );
    let message = cond.message.unwrap_or_default();
    ensure!(
        message.starts_with("Container main for pod default/fatal-")
            && message.ends_with("failed with exit code 42 matching FailJob rule at index 0"),
        "{message}"
    );
    let status = fatal.status.unwrap_or_default();
    ensure!(
        status.failed == Some(1),
        "no retry after FailJob: {status:?}"
    );
    Ok(())
}
