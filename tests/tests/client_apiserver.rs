//! skiff-client against the real apiserver on a real 3-member skiff store: the typed REST
//! calls, the watcher and reflector across a broken watch and a compaction, bookmarks, the
//! controller runner, and Lease leader election. The client's own unit tests use a fake
//! server; these check that the client and skiff's apiserver agree with each other and
//! with Kubernetes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStatus};
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    Binding, ConfigMap, Container, Namespace, Node, ObjectReference, Pod, PodSpec, PodTemplateSpec,
    Secret,
};
use k8s_openapi::api::policy::v1::Eviction;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    DeleteOptions, LabelSelector, ObjectMeta, OwnerReference, Preconditions, Status,
};
use k8s_openapi::ByteString;
use serde_json::json;
use skiff_client::leader_election::Outcome;
use skiff_client::watcher::{self, Event};
use skiff_client::{
    reflector, Action, Api, Client, Controller, DeleteParams, Deleted, LeaderElectionConfig,
    LeaderElector, ListParams, Patch, PatchParams, PostParams, ResourceExt, WatchEvent,
    WatchParams,
};
use skiff_tests::control_plane::ControlPlane;
use skiff_tests::wait::eventually;

fn meta(name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        labels: (!labels.is_empty()).then(|| {
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        }),
        ..ObjectMeta::default()
    }
}

fn strings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn config_map(name: &str, labels: &[(&str, &str)], data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: meta(name, labels),
        data: Some(strings(data)),
        ..ConfigMap::default()
    }
}

fn namespace(name: &str) -> Namespace {
    Namespace {
        metadata: meta(name, &[]),
        ..Namespace::default()
    }
}

fn container(name: &str, image: &str) -> Container {
    Container {
        name: name.to_string(),
        image: Some(image.to_string()),
        ..Container::default()
    }
}

fn pod(name: &str) -> Pod {
    Pod {
        metadata: meta(name, &[]),
        spec: Some(PodSpec {
            containers: vec![container("c", "busybox")],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

fn names<K: ResourceExt>(items: &[K]) -> Vec<String> {
    items.iter().map(|o| o.name().to_string()).collect()
}

fn data_of(cm: &ConfigMap) -> BTreeMap<String, String> {
    cm.data.clone().unwrap_or_default()
}

async fn create_namespaces(client: &Client, names: &[&str]) -> Result<()> {
    let api: Api<Namespace> = Api::cluster(client.clone());
    for ns in names {
        api.create(&PostParams::default(), &namespace(ns)).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_rest_round_trip() {
    let cp = ControlPlane::start(1).await.unwrap();
    rest_body(&cp).await.unwrap();
}

async fn rest_body(cp: &ControlPlane) -> Result<()> {
    // The kubeconfig kubectl uses in the other suites names the same server.
    let client = Client::from_kubeconfig(Some(cp.kubeconfig()), None)?;
    ensure!(client.base_url() == cp.url(0) && client.default_namespace() == "default");
    let services: Api<k8s_openapi::api::core::v1::Service> =
        Api::default_namespaced(client.clone());
    ensure!(services.get_opt("kubernetes").await?.is_some());
    let pp = PostParams::default();

    // Cluster-scoped namespaces: the system ones are there, ours join them.
    let namespaces: Api<Namespace> = Api::cluster(client.clone());
    create_namespaces(&client, &["rt-a", "rt-b"]).await?;
    let listed = names(&namespaces.list(&ListParams::default()).await?.items);
    for ns in ["default", "kube-system", "rt-a", "rt-b"] {
        ensure!(listed.iter().any(|n| n == ns), "{ns} not in {listed:?}");
    }
    let rt_a = namespaces.get("rt-a").await?;
    ensure!(rt_a.uid().is_some() && rt_a.metadata.creation_timestamp.is_some());
    let phase = rt_a.status.as_ref().and_then(|s| s.phase.as_deref());
    ensure!(phase == Some("Active"), "new namespace phase {phase:?}");

    // ConfigMaps: create, and what the server fills in.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "rt-a");
    let a = cms
        .create(&pp, &config_map("a", &[("app", "web")], &[("k", "1")]))
        .await?;
    ensure!(a.namespace() == Some("rt-a"), "{a:?}");
    ensure!(a.uid().is_some() && a.resource_version().is_some(), "{a:?}");
    ensure!(a.metadata.creation_timestamp.is_some(), "{a:?}");
    let again = cms
        .create(&pp, &config_map("a", &[], &[]))
        .await
        .unwrap_err();
    ensure!(
        again.is_already_exists() && !again.is_conflict() && again.code() == Some(409),
        "{again}"
    );
    ensure!(
        cms.get("a").await? == a,
        "get differs from what create answered"
    );
    let missing = cms.get("nope").await.unwrap_err();
    ensure!(missing.is_not_found(), "{missing}");
    ensure!(cms.get_opt("nope").await?.is_none());
    ensure!(
        missing.to_string() == "configmaps \"nope\" not found (NotFound, 404)",
        "{missing}"
    );

    // Label selectors, including set-based ones that need careful encoding.
    for (name, app) in [
        ("b", "web"),
        ("c", "web"),
        ("d", "web"),
        ("e", "db"),
        ("f", "db"),
    ] {
        cms.create(&pp, &config_map(name, &[("app", app)], &[("k", name)]))
            .await?;
    }
    let web = cms.list(&ListParams::default().labels("app=web")).await?;
    ensure!(
        names(&web.items) == ["a", "b", "c", "d"],
        "{:?}",
        names(&web.items)
    );
    let set_based = cms
        .list(&ListParams::default().labels("app in (web, db),app notin (db)"))
        .await?;
    ensure!(names(&set_based.items) == names(&web.items));
    let by_name = cms
        .list(&ListParams::default().fields("metadata.name=e"))
        .await?;
    ensure!(
        names(&by_name.items) == ["e"],
        "{:?}",
        names(&by_name.items)
    );

    // Paging: pages of 2 of one snapshot; an object created between pages is not in it.
    let first = cms.list(&ListParams::default().limit(2)).await?;
    ensure!(names(&first.items) == ["a", "b"]);
    ensure!(
        first.metadata.remaining_item_count == Some(4),
        "{:?}",
        first.metadata
    );
    cms.create(&pp, &config_map("g", &[], &[])).await?;
    let mut paged = names(&first.items);
    let mut token = first.metadata.continue_.clone();
    let mut pages = 1;
    while let Some(t) = token.filter(|t| !t.is_empty()) {
        let page = cms
            .list(&ListParams::default().limit(2).continue_token(&t))
            .await?;
        ensure!(
            page.metadata.resource_version == first.metadata.resource_version,
            "continued pages are read at the first page's resourceVersion"
        );
        paged.extend(names(&page.items));
        token = page.metadata.continue_;
        pages += 1;
    }
    ensure!(paged == ["a", "b", "c", "d", "e", "f"], "{paged:?}");
    ensure!(pages == 3, "{pages} pages");
    let db_first = cms
        .list(&ListParams::default().labels("app=db").limit(1))
        .await?;
    ensure!(names(&db_first.items) == ["e"]);
    let db_next = cms
        .list(
            &ListParams::default()
                .labels("app=db")
                .limit(1)
                .continue_token(db_first.metadata.continue_.as_deref().context("token")?),
        )
        .await?;
    ensure!(names(&db_next.items) == ["f"]);

    // Replace with optimistic concurrency.
    let mut a2 = a.clone();
    a2.data = Some(strings(&[("k", "2")]));
    let a2 = cms.replace("a", &pp, &a2).await?;
    ensure!(a2.resource_version() != a.resource_version());
    ensure!(data_of(&a2) == strings(&[("k", "2")]));
    let mut stale = a.clone();
    stale.data = Some(strings(&[("k", "3")]));
    let conflict = cms.replace("a", &pp, &stale).await.unwrap_err();
    ensure!(
        conflict.is_conflict() && conflict.reason() == Some("Conflict"),
        "{conflict}"
    );
    ensure!(data_of(&cms.get("a").await?) == strings(&[("k", "2")]));

    // Patches of the three kinds, one after the other.
    let patch_params = PatchParams::default();
    cms.patch(
        "a",
        &patch_params,
        &Patch::Merge(
            json!({"metadata": {"labels": {"patched": "merge"}}, "data": {"m": "merge"}}),
        ),
    )
    .await?;
    cms.patch(
        "a",
        &patch_params,
        &Patch::Strategic(json!({"data": {"s": "strategic"}})),
    )
    .await?;
    let patched = cms
        .patch(
            "a",
            &patch_params,
            &Patch::Json(json!([
                {"op": "replace", "path": "/data/k", "value": "json"},
                {"op": "remove", "path": "/data/m"},
            ])),
        )
        .await?;
    ensure!(
        data_of(&patched) == strings(&[("k", "json"), ("s", "strategic")]),
        "{:?}",
        patched.data
    );
    ensure!(
        patched.labels() == &strings(&[("app", "web"), ("patched", "merge")]),
        "{:?}",
        patched.labels()
    );
    // A resourceVersion in a patch is a precondition.
    let stale_patch = cms
        .patch(
            "a",
            &patch_params,
            &Patch::Merge(json!({"metadata": {"resourceVersion": a.resource_version()}})),
        )
        .await
        .unwrap_err();
    ensure!(stale_patch.is_conflict(), "{stale_patch}");
    let e = cms
        .patch("nope", &patch_params, &Patch::Merge(json!({})))
        .await
        .unwrap_err();
    ensure!(e.is_not_found(), "{e}");

    // Every namespace at once.
    let cms_b: Api<ConfigMap> = Api::namespaced(client.clone(), "rt-b");
    cms_b
        .create(&pp, &config_map("a", &[("app", "web")], &[]))
        .await?;
    let everywhere: Api<ConfigMap> = Api::all(client.clone());
    let web_all = everywhere
        .list(&ListParams::default().labels("app=web"))
        .await?;
    let keys: BTreeSet<String> = web_all
        .items
        .iter()
        .map(|c| format!("{}/{}", c.namespace().unwrap_or(""), c.name()))
        .collect();
    let want: BTreeSet<String> = ["rt-a/a", "rt-a/b", "rt-a/c", "rt-a/d", "rt-b/a"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    ensure!(keys == want, "{keys:?}");
    ensure!(
        everywhere.get("a").await.is_err(),
        "no item path without a namespace"
    );

    // Delete: an object removed at once is answered with a Status naming it, as
    // Kubernetes does for every kind but pods and services.
    let b = cms.get("b").await?;
    match cms.delete("b", &DeleteParams::default()).await? {
        Deleted::Status(s) => {
            let details = s.details.context("details")?;
            ensure!(details.name.as_deref() == Some("b"), "{details:?}");
            ensure!(details.kind.as_deref() == Some("configmaps"), "{details:?}");
            ensure!(details.uid.as_deref() == b.uid(), "{details:?}");
            ensure!(s.status.as_deref() == Some("Success"), "{:?}", s.status);
        }
        Deleted::Object(o) => bail!("deleting a configmap answered the object {o:?}"),
    }
    ensure!(cms.get("b").await.unwrap_err().is_not_found());
    let e = cms.delete("b", &DeleteParams::default()).await.unwrap_err();
    ensure!(e.is_not_found(), "{e}");
    let precondition = DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: a.resource_version().map(str::to_string),
            uid: None,
        }),
        ..DeleteParams::default()
    };
    let e = cms.delete("a", &precondition).await.unwrap_err();
    ensure!(e.is_conflict(), "{e}");
    let gone = cms
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("app=db"),
        )
        .await?;
    match gone {
        Deleted::Object(list) => {
            ensure!(names(&list.items) == ["e", "f"], "{:?}", names(&list.items))
        }
        Deleted::Status(s) => bail!("deletecollection answers the deleted objects: {s:?}"),
    }
    // A dry run answers what would be stored and stores nothing.
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let dry = cms.create(&dry_run, &config_map("dry", &[], &[])).await?;
    ensure!(dry.name() == "dry" && dry.uid().is_some(), "{dry:?}");
    ensure!(cms.get_opt("dry").await?.is_none());
    let left = names(&cms.list(&ListParams::default()).await?.items);
    ensure!(left == ["a", "c", "d", "g"], "{left:?}");

    deployment_round_trip(&client).await?;
    pod_subresources(&client).await?;
    nodes_round_trip(&client).await?;

    // Deleting a namespace leaves it Terminating (the namespace controller empties and
    // removes it); nothing new may be created in it meanwhile.
    match namespaces.delete("rt-b", &DeleteParams::default()).await? {
        Deleted::Object(ns) => {
            ensure!(ns.metadata.deletion_timestamp.is_some(), "{ns:?}");
            let phase = ns.status.as_ref().and_then(|s| s.phase.as_deref());
            ensure!(phase == Some("Terminating"), "{phase:?}");
        }
        Deleted::Status(s) => bail!("a namespace being emptied is not gone yet: {s:?}"),
    }
    let e = cms_b
        .create(&pp, &config_map("late", &[], &[]))
        .await
        .unwrap_err();
    ensure!(
        e.code() == Some(403) && e.reason() == Some("Forbidden"),
        "{e}"
    );
    Ok(())
}

async fn deployment_round_trip(client: &Client) -> Result<()> {
    let pp = PostParams::default();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "rt-a");
    let labels = strings(&[("app", "d")]);
    let d = Deployment {
        metadata: meta("d", &[]),
        spec: Some(DeploymentSpec {
            replicas: Some(2),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container("c1", "nginx:1"), container("c2", "busybox:1")],
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    };
    let d = deployments.create(&pp, &d).await?;
    ensure!(d.metadata.generation == Some(1), "{:?}", d.metadata);

    // Scale: read, write, and a stale write.
    let scale = deployments.get_scale("d").await?;
    ensure!(
        scale.spec.as_ref().and_then(|s| s.replicas) == Some(2),
        "{scale:?}"
    );
    ensure!(
        scale.status.as_ref().and_then(|s| s.selector.as_deref()) == Some("app=d"),
        "{scale:?}"
    );
    let mut bigger = scale.clone();
    bigger.spec.get_or_insert_with(Default::default).replicas = Some(5);
    let scaled = deployments.replace_scale("d", &pp, &bigger).await?;
    ensure!(
        scaled.spec.as_ref().and_then(|s| s.replicas) == Some(5),
        "{scaled:?}"
    );
    let d = deployments.get("d").await?;
    ensure!(d.spec.as_ref().and_then(|s| s.replicas) == Some(5));
    ensure!(d.metadata.generation == Some(2), "{:?}", d.metadata);
    ensure!(scaled.metadata.resource_version == d.metadata.resource_version);
    let e = deployments
        .replace_scale("d", &pp, &bigger)
        .await
        .unwrap_err();
    ensure!(e.is_conflict(), "a stale Scale: {e}");

    // Status: only .status is taken from a status write, and a main write keeps status.
    let mut with_status = d.clone();
    with_status.status = Some(DeploymentStatus {
        replicas: Some(5),
        ready_replicas: Some(3),
        observed_generation: Some(2),
        ..DeploymentStatus::default()
    });
    with_status.spec.as_mut().context("spec")?.replicas = Some(9);
    let written = deployments.replace_status("d", &pp, &with_status).await?;
    ensure!(written.spec.as_ref().and_then(|s| s.replicas) == Some(5));
    ensure!(written.metadata.generation == Some(2));
    let status = deployments
        .get_status("d")
        .await?
        .status
        .context("status")?;
    ensure!(status.ready_replicas == Some(3), "{status:?}");
    let patched = deployments
        .patch_status(
            "d",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"availableReplicas": 2}, "spec": {"replicas": 7}})),
        )
        .await?;
    let status = patched.status.context("status")?;
    ensure!(status.available_replicas == Some(2) && status.ready_replicas == Some(3));
    ensure!(
        patched.spec.and_then(|s| s.replicas) == Some(5),
        "spec via status"
    );
    let mut spec_only = deployments.get("d").await?;
    spec_only.status = None;
    let kept = deployments.replace("d", &pp, &spec_only).await?;
    ensure!(kept.status.and_then(|s| s.ready_replicas) == Some(3));
    let scale: Scale = deployments.get_scale("d").await?;
    ensure!(scale.status.map(|s| s.replicas) == Some(5));

    // A strategic merge patch merges containers by name; a merge patch would replace them.
    let patched = deployments
        .patch(
            "d",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {
                "containers": [{"name": "c1", "image": "nginx:2"}]}}}})),
        )
        .await?;
    let containers = &patched
        .spec
        .context("spec")?
        .template
        .spec
        .context("pod")?
        .containers;
    let images: Vec<_> = containers
        .iter()
        .map(|c| format!("{}={}", c.name, c.image.as_deref().unwrap_or("")))
        .collect();
    ensure!(images == ["c1=nginx:2", "c2=busybox:1"], "{images:?}");
    ensure!(patched.metadata.generation == Some(3));
    deployments.delete("d", &DeleteParams::default()).await?;
    ensure!(deployments.get_opt("d").await?.is_none());
    Ok(())
}

async fn pod_subresources(client: &Client) -> Result<()> {
    let pp = PostParams::default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "rt-a");
    pods.create(&pp, &pod("p1")).await?;
    let binding = |node: &str| Binding {
        metadata: meta("p1", &[]),
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.into()),
            ..ObjectReference::default()
        },
    };
    let status: Status = pods
        .create_subresource("p1", "binding", &pp, &binding("n1"))
        .await?;
    ensure!(status.status.as_deref() == Some("Success"), "{status:?}");
    let p1 = pods.get("p1").await?;
    ensure!(
        p1.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("n1"),
        "{p1:?}"
    );
    let scheduled = p1
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
        .map(|c| c.status.clone());
    ensure!(scheduled.as_deref() == Some("True"), "{:?}", p1.status);
    let e = pods
        .create_subresource::<_, Status>("p1", "binding", &pp, &binding("n2"))
        .await
        .unwrap_err();
    ensure!(e.is_conflict(), "a second binding: {e}");
    let e = pods
        .create_subresource::<_, Status>("ghost", "binding", &pp, &binding("n1"))
        .await
        .unwrap_err();
    ensure!(e.is_not_found(), "{e}");

    // Eviction of a pod no node runs removes it at once; a bound pod gets its grace period.
    pods.create(&pp, &pod("p2")).await?;
    let eviction = |name: &str| Eviction {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("rt-a".into()),
            ..ObjectMeta::default()
        },
        delete_options: None,
    };
    let _: Status = pods
        .create_subresource("p2", "eviction", &pp, &eviction("p2"))
        .await?;
    ensure!(
        pods.get_opt("p2").await?.is_none(),
        "evicted p2 is still there"
    );
    let _: Status = pods
        .create_subresource("p1", "eviction", &pp, &eviction("p1"))
        .await?;
    let p1 = pods.get("p1").await?;
    ensure!(
        p1.metadata.deletion_timestamp.is_some(),
        "{:?}",
        p1.metadata
    );
    // Pods are answered with the object even when they are gone, as in Kubernetes.
    match pods.delete("p1", &DeleteParams::immediate()).await? {
        Deleted::Object(p) => ensure!(p.name() == "p1"),
        Deleted::Status(s) => bail!("deleting a pod answered a Status: {s:?}"),
    }
    ensure!(pods.get_opt("p1").await?.is_none());
    let e = pods
        .create_subresource::<_, Status>(
            "p1",
            "eviction",
            &pp,
            &Eviction {
                delete_options: Some(DeleteOptions::default()),
                ..eviction("p1")
            },
        )
        .await
        .unwrap_err();
    ensure!(e.is_not_found(), "{e}");
    Ok(())
}

async fn nodes_round_trip(client: &Client) -> Result<()> {
    let pp = PostParams::default();
    let nodes: Api<Node> = Api::cluster(client.clone());
    for (name, zone) in [("n1", "a"), ("n2", "b")] {
        let n = Node {
            metadata: meta(name, &[("zone", zone)]),
            ..Node::default()
        };
        nodes.create(&pp, &n).await?;
    }
    let n1 = nodes.get("n1").await?;
    ensure!(n1.namespace().is_none(), "{:?}", n1.metadata);
    let zone_a = nodes.list(&ListParams::default().labels("zone=a")).await?;
    ensure!(names(&zone_a.items) == ["n1"]);
    nodes
        .patch(
            "n2",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"unschedulable": true}})),
        )
        .await?;
    let cordoned = nodes
        .list(&ListParams::default().fields("spec.unschedulable=true"))
        .await?;
    ensure!(
        names(&cordoned.items) == ["n2"],
        "{:?}",
        names(&cordoned.items)
    );
    // Api::all is the same as Api::cluster for a cluster-scoped kind.
    let all: Api<Node> = Api::all(client.clone());
    ensure!(names(&all.list(&ListParams::default()).await?.items) == ["n1", "n2"]);
    nodes.delete("n1", &DeleteParams::default()).await?;
    ensure!(nodes.get("n1").await.unwrap_err().is_not_found());
    Ok(())
}

/// Which ConfigMaps a Store holds, with their `k` data.
fn cached(store: &reflector::Store<ConfigMap>) -> BTreeMap<String, String> {
    store
        .list()
        .iter()
        .map(|c| {
            let k = c.data.as_ref().and_then(|d| d.get("k")).cloned();
            (c.name().to_string(), k.unwrap_or_default())
        })
        .collect()
}

async fn wait_cached(
    store: &reflector::Store<ConfigMap>,
    want: &[(&str, &str)],
    what: &str,
) -> Result<()> {
    let want = strings(want);
    eventually(what, Duration::from_secs(15), || {
        let now = cached(store);
        let ok = now == want;
        async move {
            if ok {
                Ok(Some(()))
            } else {
                bail!("cache holds {now:?}")
            }
        }
    })
    .await
}

/// How many watches of `resource` apiserver `client` has answered, from its metrics.
async fn watches_served(client: &Client, resource: &str) -> Result<u64> {
    let body = client
        .request_raw(skiff_client::Method::GET, "/metrics", None)
        .await?;
    let prefix = format!("apiserver_request_total{{verb=\"watch\",resource=\"{resource}\",");
    Ok(String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_and_reflector_survive_a_broken_watch_and_compaction() {
    let cp = ControlPlane::start(2).await.unwrap();
    watch_body(&cp).await.unwrap();
}

async fn watch_body(cp: &ControlPlane) -> Result<()> {
    let pp = PostParams::default();
    // The watcher talks to apiserver 0; the test writes through apiserver 1, which stays
    // up while 0 is down.
    let client = Client::new(&cp.url(0))?;
    let writer_client = Client::new(&cp.url(1))?;
    create_namespaces(&writer_client, &["w"]).await?;
    let cms: Api<ConfigMap> = Api::namespaced(writer_client.clone(), "w");
    for name in ["a", "b", "c"] {
        cms.create(&pp, &config_map(name, &[], &[("k", "1")]))
            .await?;
    }

    let inits = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let (store, writer) = reflector::store::<ConfigMap>();
    // Short watches and pages of 2, so that re-watching and paged lists both happen.
    let config = watcher::Config::default()
        .timeout(2)
        .page_size(2)
        .backoff(Duration::from_millis(100), Duration::from_secs(1));
    let events = reflector::reflector(
        writer,
        watcher::watcher(Api::<ConfigMap>::namespaced(client.clone(), "w"), config),
    );
    let task = tokio::spawn({
        let (inits, errors) = (inits.clone(), errors.clone());
        events.for_each(move |e| {
            match e {
                Ok(Event::Init) => {
                    inits.fetch_add(1, Ordering::SeqCst);
                }
                Err(_) => {
                    errors.fetch_add(1, Ordering::SeqCst);
                }
                Ok(_) => {}
            }
            futures::future::ready(())
        })
    });

    tokio::time::timeout(Duration::from_secs(15), store.wait_until_synced())
        .await
        .context("the store did not sync")?;
    ensure!(
        cached(&store) == strings(&[("a", "1"), ("b", "1"), ("c", "1")]),
        "{:?}",
        cached(&store)
    );

    // Creates, updates and deletes are followed.
    cms.create(&pp, &config_map("d", &[], &[("k", "1")]))
        .await?;
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await?;
    cms.delete("b", &DeleteParams::default()).await?;
    wait_cached(&store, &[("a", "2"), ("c", "1"), ("d", "1")], "changes").await?;

    // Watches that end after timeoutSeconds are reopened from the last resourceVersion:
    // no relist, and nothing missed in between.
    let served = watches_served(&client, "configmaps").await?;
    eventually("two more watches", Duration::from_secs(20), || {
        let client = client.clone();
        async move { Ok((watches_served(&client, "configmaps").await? >= served + 2).then_some(())) }
    })
    .await?;
    cms.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await?;
    wait_cached(
        &store,
        &[("a", "2"), ("c", "2"), ("d", "1")],
        "after re-watch",
    )
    .await?;
    ensure!(
        inits.load(Ordering::SeqCst) == 1,
        "a timed-out watch must not relist"
    );

    // The apiserver the watcher talks to dies; meanwhile objects change and the store is
    // compacted past everything the watcher has seen.
    cp.kill_apiserver(0)?;
    let errors_before = errors.load(Ordering::SeqCst);
    eventually("the watcher notices", Duration::from_secs(10), || {
        let n = errors.load(Ordering::SeqCst);
        async move { Ok((n > errors_before).then_some(())) }
    })
    .await?;
    cms.delete("c", &DeleteParams::default()).await?;
    cms.create(&pp, &config_map("e", &[], &[("k", "1")]))
        .await?;
    cms.patch(
        "d",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "3"}})),
    )
    .await?;
    let mut etcd = cp.store.client().await?;
    let rev = etcd
        .status()
        .await?
        .header()
        .context("status header")?
        .revision();
    etcd.compact(rev, None).await?;
    ensure!(
        cached(&store) == strings(&[("a", "2"), ("c", "2"), ("d", "1")]),
        "the cache cannot change while its apiserver is down"
    );

    // Back on the same address: the old resourceVersion is gone (410), the watcher lists
    // again, and the cache converges, without c.
    cp.restart_apiserver(0).await?;
    wait_cached(
        &store,
        &[("a", "2"), ("d", "3"), ("e", "1")],
        "after relist",
    )
    .await?;
    ensure!(
        inits.load(Ordering::SeqCst) == 2,
        "expected exactly one relist, saw {} lists",
        inits.load(Ordering::SeqCst)
    );
    ensure!(store.is_synced());

    // And it keeps following.
    cms.create(&pp, &config_map("f", &[], &[("k", "1")]))
        .await?;
    cms.delete("a", &DeleteParams::default()).await?;
    wait_cached(
        &store,
        &[("d", "3"), ("e", "1"), ("f", "1")],
        "after relist, changes",
    )
    .await?;
    task.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookmarks_move_a_quiet_watch_past_compactions() {
    let cp = ControlPlane::start(1).await.unwrap();
    bookmark_body(&cp).await.unwrap();
}

async fn bookmark_body(cp: &ControlPlane) -> Result<()> {
    let client = Client::new(&cp.url(0))?;
    create_namespaces(&client, &["quiet", "busy"]).await?;
    let quiet: Api<ConfigMap> = Api::namespaced(client.clone(), "quiet");
    let busy: Api<ConfigMap> = Api::namespaced(client.clone(), "busy");
    let listed = quiet.list(&ListParams::default()).await?;
    let listed_rv = listed.metadata.resource_version.context("list rv")?;
    let mut watch = quiet
        .watch(&WatchParams::default().timeout(30), &listed_rv)
        .await?;
    let elsewhere = busy
        .create(&PostParams::default(), &config_map("x", &[], &[]))
        .await?;
    let elsewhere_rv: i64 = elsewhere.resource_version().context("rv")?.parse()?;

    // Nothing changes in "quiet", yet its watch learns how far the store has come (the
    // apiserver asks the store for progress every 10 s).
    let bookmark = tokio::time::timeout(Duration::from_secs(25), async {
        loop {
            match watch.next().await {
                Some(Ok(WatchEvent::Bookmark(b))) => {
                    if b.resource_version.parse::<i64>()? >= elsewhere_rv {
                        return Ok(b.resource_version);
                    }
                }
                Some(Ok(other)) => bail!("a quiet watch got {other:?}"),
                Some(Err(e)) => return Err(e.into()),
                None => bail!("the watch ended"),
            }
        }
    })
    .await
    .context("no bookmark")??;
    drop(watch);

    // Compacted up to the bookmark: watching from it works, from the list's version is 410.
    let mut etcd = cp.store.client().await?;
    etcd.compact(bookmark.parse::<i64>()?, None).await?;
    let mut old = quiet
        .watch(&WatchParams::default().timeout(5), &listed_rv)
        .await?;
    match tokio::time::timeout(Duration::from_secs(10), old.next()).await? {
        Some(Ok(WatchEvent::Error(status))) => ensure!(status.code == Some(410), "{status:?}"),
        other => bail!("a watch from a compacted version got {other:?}"),
    }
    let mut fresh = quiet
        .watch(&WatchParams::default().timeout(15), &bookmark)
        .await?;
    quiet
        .create(&PostParams::default(), &config_map("y", &[], &[]))
        .await?;
    match tokio::time::timeout(Duration::from_secs(10), fresh.next()).await? {
        Some(Ok(WatchEvent::Added(cm))) => ensure!(cm.name() == "y"),
        other => bail!("a watch from the bookmark got {other:?}"),
    }
    Ok(())
}

/// The mirror controller's context: where Secrets go, and failures to inject.
#[derive(Clone)]
struct MirrorCtx {
    secrets: Api<Secret>,
    attempts: Arc<Mutex<Vec<(String, Instant)>>>,
    failures_left: Arc<AtomicUsize>,
}

/// Keeps a Secret with the data of each ConfigMap labeled `mirror=yes`, owned by it.
async fn mirror(cm: Arc<ConfigMap>, ctx: MirrorCtx) -> Result<Action> {
    let name = cm.name().to_string();
    ctx.attempts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((name.clone(), Instant::now()));
    if name == "flaky"
        && ctx
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    {
        bail!("injected failure for {name}");
    }
    let data: BTreeMap<String, ByteString> = data_of(&cm)
        .into_iter()
        .map(|(k, v)| (k, ByteString(v.into_bytes())))
        .collect();
    let owner = OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: name.clone(),
        uid: cm.uid().context("configmap without uid")?.to_string(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    match ctx.secrets.get_opt(&name).await? {
        None => {
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    owner_references: Some(vec![owner]),
                    ..ObjectMeta::default()
                },
                data: Some(data),
                ..Secret::default()
            };
            ctx.secrets.create(&PostParams::default(), &secret).await?;
        }
        Some(mut secret) if secret.data.as_ref() != Some(&data) => {
            secret.data = Some(data);
            ctx.secrets
                .replace(&name, &PostParams::default(), &secret)
                .await?;
        }
        Some(_) => {}
    }
    Ok(Action::await_change())
}

fn secret_data(secret: &Secret) -> BTreeMap<String, String> {
    secret
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect()
}

/// Waits until Secret `name` holds `want`; returns it.
async fn wait_secret(secrets: &Api<Secret>, name: &str, want: &[(&str, &str)]) -> Result<Secret> {
    let want = strings(want);
    eventually(
        &format!("secret {name} = {want:?}"),
        Duration::from_secs(15),
        || async {
            match secrets.get_opt(name).await? {
                Some(s) if secret_data(&s) == want => Ok(Some(s)),
                Some(s) => bail!("secret holds {:?}", secret_data(&s)),
                None => bail!("no secret"),
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_mirrors_configmaps_into_secrets() {
    let cp = ControlPlane::start(1).await.unwrap();
    controller_body(&cp).await.unwrap();
}

async fn controller_body(cp: &ControlPlane) -> Result<()> {
    let pp = PostParams::default();
    let client = Client::new(&cp.url(0))?;
    create_namespaces(&client, &["ctl"]).await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "ctl");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "ctl");
    cms.create(&pp, &config_map("one", &[("mirror", "yes")], &[("x", "1")]))
        .await?;
    cms.create(&pp, &config_map("plain", &[], &[("x", "1")]))
        .await?;

    let ctx = MirrorCtx {
        secrets: secrets.clone(),
        attempts: Arc::default(),
        failures_left: Arc::new(AtomicUsize::new(0)),
    };
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let controller = Controller::new(cms.clone(), watcher::Config::default().labels("mirror=yes"))
        .owns(secrets.clone(), watcher::Config::default())
        .error_backoff(Duration::from_millis(50), Duration::from_secs(2));
    let cache = controller.store();
    let runner = tokio::spawn(controller.run(mirror, ctx.clone(), async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    }));

    // What existed before the controller started is reconciled once the caches sync.
    let one = wait_secret(&secrets, "one", &[("x", "1")]).await?;
    let owner = one.controller_owner().context("no controller owner")?;
    let cm_one = cms.get("one").await?;
    ensure!(owner.kind == "ConfigMap" && owner.name == "one");
    ensure!(Some(owner.uid.as_str()) == cm_one.uid());
    ensure!(cache.get(Some("ctl"), "one").is_some());
    ensure!(
        cache.get(Some("ctl"), "plain").is_none(),
        "the selector applies"
    );

    // New and changed primaries.
    cms.create(&pp, &config_map("two", &[("mirror", "yes")], &[("y", "2")]))
        .await?;
    wait_secret(&secrets, "two", &[("y", "2")]).await?;
    cms.patch(
        "one",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"x": "10", "z": "3"}})),
    )
    .await?;
    wait_secret(&secrets, "one", &[("x", "10"), ("z", "3")]).await?;

    // Changes to an owned Secret reconcile its owner: a deleted one comes back, an edited
    // one is put right.
    let two_uid = secrets.get("two").await?.uid().map(str::to_string);
    secrets.delete("two", &DeleteParams::default()).await?;
    let two = wait_secret(&secrets, "two", &[("y", "2")]).await?;
    ensure!(two.uid().map(str::to_string) != two_uid, "not recreated");
    secrets
        .patch(
            "one",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"x": "dGFtcGVyZWQ="}})),
        )
        .await?;
    wait_secret(&secrets, "one", &[("x", "10"), ("z", "3")]).await?;

    // A failing reconcile is retried with growing delays until it succeeds.
    ctx.failures_left.store(3, Ordering::SeqCst);
    cms.create(
        &pp,
        &config_map("flaky", &[("mirror", "yes")], &[("f", "1")]),
    )
    .await?;
    wait_secret(&secrets, "flaky", &[("f", "1")]).await?;
    let tries: Vec<Instant> = ctx
        .attempts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|(name, _)| name == "flaky")
        .map(|(_, at)| *at)
        .collect();
    ensure!(tries.len() >= 4, "{} attempts", tries.len());
    // Back-off of 50, 100 and 200 ms between the failures.
    let spent = tries[3] - tries[0];
    ensure!(
        spent >= Duration::from_millis(350),
        "retried after {spent:?}"
    );
    ensure!(tries[2] - tries[1] >= Duration::from_millis(100));
    ensure!(ctx.failures_left.load(Ordering::SeqCst) == 0);
    ensure!(secrets.get_opt("plain").await?.is_none());

    stop_tx.send_replace(true);
    tokio::time::timeout(Duration::from_secs(10), runner)
        .await
        .context("the controller did not stop")??;
    Ok(())
}

/// The holder and transitions of a Lease.
fn lease_state(lease: &Lease) -> (String, i32) {
    let spec = lease.spec.clone().unwrap_or_default();
    (
        spec.holder_identity.unwrap_or_default(),
        spec.lease_transitions.unwrap_or(0),
    )
}

struct Candidate {
    identity: String,
    leading: tokio::sync::watch::Receiver<bool>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<skiff_client::Result<Outcome>>,
}

fn candidate(client: &Client, identity: &str, config: &LeaderElectionConfig) -> Candidate {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let mut elector = LeaderElector::new(leases, "client-it", identity, config.clone());
    let leading = elector.is_leader();
    let (stop, mut stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        };
        elector.run(shutdown, futures::future::pending()).await
    });
    Candidate {
        identity: identity.to_string(),
        leading,
        stop,
        task,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_election_on_a_lease() {
    let cp = ControlPlane::start(1).await.unwrap();
    election_body(&cp).await.unwrap();
}

async fn election_body(cp: &ControlPlane) -> Result<()> {
    let client = Client::new(&cp.url(0))?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let config = LeaderElectionConfig {
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(300),
        release_on_shutdown: true,
    };

    // Every version of the Lease, in order, to check who held it when.
    let history: Arc<Mutex<Vec<Lease>>> = Arc::default();
    let recorder = tokio::spawn({
        let history = history.clone();
        let config = watcher::Config::default().fields("metadata.name=client-it");
        watcher::watcher(leases.clone(), config).for_each(move |e| {
            if let Ok(Event::Apply(l) | Event::InitApply(l)) = e {
                history.lock().unwrap_or_else(|p| p.into_inner()).push(l);
            }
            futures::future::ready(())
        })
    });

    let mut a = candidate(&client, "a", &config);
    let mut b = candidate(&client, "b", &config);
    let first = eventually("a leader", Duration::from_secs(15), || {
        let who = match (*a.leading.borrow(), *b.leading.borrow()) {
            (true, false) => Some("a"),
            (false, true) => Some("b"),
            (true, true) => Some("both"),
            (false, false) => None,
        };
        futures::future::ready(Ok(who))
    })
    .await?;
    ensure!(first != "both", "two leaders at once");
    let (leader, follower) = if first == "a" {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    let lease = leases.get("client-it").await?;
    ensure!(
        lease_state(&lease) == (leader.identity.clone(), 0),
        "{:?}",
        lease.spec
    );
    let spec = lease.spec.clone().context("spec")?;
    ensure!(spec.lease_duration_seconds == Some(3), "{spec:?}");
    ensure!(spec.acquire_time.is_some() && spec.renew_time.is_some());

    // The leader renews; the follower waits, however many renewals it sees.
    let renewed = eventually("two renewals", Duration::from_secs(10), || {
        let leases = leases.clone();
        let first_renew = spec.renew_time.clone();
        async move {
            let l = leases.get("client-it").await?;
            let s = l.spec.clone().unwrap_or_default();
            Ok((s.renew_time > first_renew).then_some(l))
        }
    })
    .await?;
    ensure!(lease_state(&renewed) == (leader.identity.clone(), 0));
    ensure!(renewed.spec.as_ref().and_then(|s| s.acquire_time.clone()) == spec.acquire_time);
    ensure!(*leader.leading.borrow() && !*follower.leading.borrow());

    // A leader that shuts down releases the Lease, and the other takes over at once,
    // without waiting out the lease duration.
    leader.stop.send_replace(true);
    let outcome = tokio::time::timeout(Duration::from_secs(10), &mut leader.task)
        .await
        .context("the leader did not stop")???;
    ensure!(outcome == Outcome::Shutdown, "{outcome:?}");
    ensure!(!*leader.leading.borrow());
    let released_at = Instant::now();
    let mut follower_leading = follower.leading.clone();
    tokio::time::timeout(Duration::from_secs(10), follower_leading.wait_for(|l| *l))
        .await
        .context("the follower did not take over")??;
    let took = released_at.elapsed();
    let lease = leases.get("client-it").await?;
    ensure!(
        lease_state(&lease) == (follower.identity.clone(), 1),
        "{:?}",
        lease.spec
    );
    {
        // The recorder's watch may trail the takeover on a busy machine.
        let released = eventually(
            "the released version of the Lease in the watch",
            Duration::from_secs(5),
            || {
                let seen = history.lock().unwrap_or_else(|p| p.into_inner());
                let found = seen
                    .iter()
                    .find(|l| lease_state(l) == (String::new(), 0))
                    .cloned();
                futures::future::ready(Ok(found))
            },
        )
        .await?;
        let spec = released.spec.as_ref().context("spec")?;
        ensure!(spec.lease_duration_seconds == Some(1), "{spec:?}");
        ensure!(spec.holder_identity.as_deref() == Some(""), "{spec:?}");
    }
    ensure!(
        took < Duration::from_secs(3),
        "takeover after release took {took:?}, as long as an expiry"
    );

    // A new candidate joins; then the leader stops renewing without releasing (its task
    // is aborted, as if its process froze). The candidate takes over only after the lease
    // duration has passed since the last renewal it saw.
    let new_leader = follower;
    let mut c = candidate(&client, "c", &config);
    new_leader.task.abort();
    tokio::time::timeout(Duration::from_secs(15), c.leading.wait_for(|l| *l))
        .await
        .context("c did not take over an expired lease")??;
    let lease = leases.get("client-it").await?;
    ensure!(
        lease_state(&lease) == ("c".to_string(), 2),
        "{:?}",
        lease.spec
    );
    {
        eventually(
            "c's acquisition in the watch",
            Duration::from_secs(5),
            || {
                let seen = history.lock().unwrap_or_else(|p| p.into_inner());
                futures::future::ready(Ok(seen
                    .iter()
                    .any(|l| lease_state(l).0 == "c")
                    .then_some(())))
            },
        )
        .await?;
        let seen = history.lock().unwrap_or_else(|p| p.into_inner());
        let taken = seen
            .iter()
            .position(|l| lease_state(l).0 == "c")
            .context("c's acquisition was not seen")?;
        let last_renewal = seen[taken - 1].spec.clone().context("spec")?;
        ensure!(
            last_renewal.holder_identity.as_deref() == Some(new_leader.identity.as_str()),
            "{last_renewal:?}"
        );
        let acquired = seen[taken].spec.clone().context("spec")?;
        ensure!(acquired.renew_time == acquired.acquire_time, "{acquired:?}");
        let gap = acquired.acquire_time.context("acquireTime")?.0
            - last_renewal.renew_time.context("renewTime")?.0;
        let gap = Duration::try_from(gap)?;
        // Both times are this machine's clock, cut to microseconds on the wire.
        ensure!(
            gap >= Duration::from_secs(3) - Duration::from_millis(1),
            "c took the lease {gap:?} after the last renewal"
        );
    }
    c.stop.send_replace(true);
    let outcome = tokio::time::timeout(Duration::from_secs(10), c.task)
        .await
        .context("c did not stop")???;
    ensure!(outcome == Outcome::Shutdown);
    let lease = leases.get("client-it").await?;
    ensure!(
        lease_state(&lease) == (String::new(), 2),
        "{:?}",
        lease.spec
    );
    recorder.abort();
    Ok(())
}
