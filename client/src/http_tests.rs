//! Requests and answers over real HTTP against the scripted test server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;
use tokio::sync::mpsc;

use crate::testserver::{Response, TestServer};
use crate::watcher::{self, Event};
use crate::*;

fn pod_json(name: &str, rv: &str) -> serde_json::Value {
    json!({"kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv}})
}

fn pod(name: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            ..ObjectMeta::default()
        },
        ..Pod::default()
    }
}

#[tokio::test]
async fn rest_calls_use_the_right_methods_paths_and_bodies() {
    let server = TestServer::start(|req| match (req.method.as_str(), req.path()) {
        ("GET", "/api/v1/namespaces/ns/pods/a") => Response::json(200, pod_json("a", "1")),
        ("GET", "/api/v1/namespaces/ns/pods/missing") => {
            Response::status(404, "NotFound", "pods \"missing\" not found")
        }
        ("GET", "/api/v1/namespaces/ns/pods") => Response::json(
            200,
            json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "7", "continue": "c1"},
                "items": [{"metadata": {"name": "a"}}]}),
        ),
        ("POST", "/api/v1/namespaces/ns/pods") => Response::Full(201, req.body.clone()),
        ("PATCH", "/api/v1/namespaces/ns/pods/a/status") => Response::json(200, pod_json("a", "2")),
        ("DELETE", "/api/v1/namespaces/ns/pods/a") => {
            Response::json(200, json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200}))
        }
        ("DELETE", "/api/v1/namespaces/ns/pods/b") => Response::json(200, pod_json("b", "3")),
        ("POST", "/api/v1/namespaces/ns/pods/a/binding") => {
            Response::json(201, json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 201}))
        }
        _ => Response::Full(404, b"404 page not found".to_vec()),
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(Client::new(&server.url).unwrap(), "ns");

    assert_eq!(
        pods.get("a")
            .await
            .unwrap()
            .metadata
            .resource_version
            .as_deref(),
        Some("1")
    );
    assert!(pods.get_opt("missing").await.unwrap().is_none());
    let err = pods.get("missing").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");

    let list = pods
        .list(&ListParams::default().labels("app=web").limit(1))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.metadata.continue_.as_deref(), Some("c1"));

    let created = pods
        .create(
            &PostParams {
                field_manager: Some("t".into()),
                ..PostParams::default()
            },
            &pod("new"),
        )
        .await
        .unwrap();
    assert_eq!(created.metadata.name.as_deref(), Some("new"));

    let patch = Patch::Merge(json!({"status": {"phase": "Running"}}));
    pods.patch_status("a", &PatchParams::default(), &patch)
        .await
        .unwrap();

    assert!(matches!(
        pods.delete("a", &DeleteParams::immediate()).await.unwrap(),
        Deleted::Status(_)
    ));
    let deleted = pods.delete("b", &DeleteParams::default()).await.unwrap();
    assert_eq!(
        deleted.object().unwrap().metadata.name.as_deref(),
        Some("b")
    );

    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "a"},
        "target": {"kind": "Node", "name": "n1"}});
    let status: k8s_openapi::apimachinery::pkg::apis::meta::v1::Status = pods
        .create_subresource("a", "binding", &PostParams::default(), &binding)
        .await
        .unwrap();
    assert_eq!(status.status.as_deref(), Some("Success"));

    // An unknown path answered with plain text still becomes a NotFound error.
    let err = pods.get_scale("a").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");

    let reqs = server.requests();
    let list_req = &reqs[3];
    assert_eq!(list_req.query("labelSelector").as_deref(), Some("app=web"));
    assert_eq!(list_req.query("limit").as_deref(), Some("1"));
    let create_req = &reqs[4];
    assert_eq!(create_req.query("fieldManager").as_deref(), Some("t"));
    assert_eq!(create_req.header("content-type"), Some("application/json"));
    assert_eq!(create_req.json()["metadata"]["name"], "new");
    assert_eq!(create_req.json()["kind"], "Pod");
    let patch_req = &reqs[5];
    assert_eq!(
        patch_req.header("content-type"),
        Some("application/merge-patch+json")
    );
    assert_eq!(patch_req.json(), json!({"status": {"phase": "Running"}}));
    let delete_req = &reqs[6];
    assert_eq!(delete_req.json(), json!({"gracePeriodSeconds": 0}));
}

#[tokio::test]
async fn watch_requests_carry_version_and_bookmarks() {
    let server = TestServer::start(|_| {
        Response::events(&[
            json!({"type": "ADDED", "object": pod_json("a", "5")}),
            json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "code": 410, "reason": "Expired", "message": "too old"}}),
        ])
    })
    .await;
    let pods: Api<Pod> = Api::all(Client::new(&server.url).unwrap());
    let events: Vec<_> = pods
        .watch(&WatchParams::default().timeout(10), "4")
        .await
        .unwrap()
        .collect()
        .await;
    assert!(matches!(events[0], Ok(WatchEvent::Added(_))));
    assert!(matches!(&events[1], Ok(WatchEvent::Error(s)) if s.code == Some(410)));
    assert_eq!(events.len(), 2);
    let req = &server.requests()[0];
    assert_eq!(req.path(), "/api/v1/pods");
    assert_eq!(req.query("watch").as_deref(), Some("true"));
    assert_eq!(req.query("resourceVersion").as_deref(), Some("4"));
    assert_eq!(req.query("allowWatchBookmarks").as_deref(), Some("true"));
    assert_eq!(req.query("timeoutSeconds").as_deref(), Some("10"));
}

/// Scripted answers for the watcher: one per request, in order.
fn scripted(
    script: Vec<Response>,
) -> impl Fn(&crate::testserver::Request) -> Response + Send + Sync {
    let script = Mutex::new(script.into_iter());
    move |_| {
        script
            .lock()
            .unwrap()
            .next()
            .unwrap_or_else(|| Response::status(500, "InternalError", "script exhausted"))
    }
}

async fn next<S: futures::Stream + Unpin>(s: &mut S) -> S::Item {
    tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("watcher event in time")
        .expect("watcher streams never end")
}

fn name(e: &Event<Pod>) -> String {
    match e {
        Event::Init => "Init".into(),
        Event::InitDone => "InitDone".into(),
        Event::InitApply(p) => format!("InitApply {}", p.metadata.name.as_deref().unwrap()),
        Event::Apply(p) => format!("Apply {}", p.metadata.name.as_deref().unwrap()),
        Event::Delete(p) => format!("Delete {}", p.metadata.name.as_deref().unwrap()),
    }
}

#[tokio::test]
async fn watcher_pages_rewatches_from_bookmarks_and_relists_on_410() {
    let (hold, held) = mpsc::unbounded_channel();
    hold.send(
        serde_json::to_vec(&json!({"type": "DELETED", "object": pod_json("d", "21")}))
            .unwrap()
            .into_iter()
            .chain(*b"\n")
            .collect(),
    )
    .unwrap();
    let page = |items: Vec<serde_json::Value>, rv: &str, cont: Option<&str>| {
        Response::json(
            200,
            json!({"metadata": {"resourceVersion": rv, "continue": cont}, "items": items}),
        )
    };
    let server = TestServer::start(scripted(vec![
        page(vec![pod_json("a", "1"), pod_json("b", "2")], "10", Some("t1")),
        page(vec![pod_json("c", "3")], "10", None),
        Response::events(&[
            json!({"type": "ADDED", "object": pod_json("d", "11")}),
            json!({"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": "15"}}}),
        ]),
        Response::events(&[json!({"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version: 15 (18)"}})]),
        page(vec![pod_json("d", "11")], "20", None),
        Response::status(500, "InternalError", "etcd is sad"),
        Response::status(410, "Gone", "too old"),
        page(vec![pod_json("d", "11")], "20", None),
        Response::Stream(200, held),
    ]))
    .await;

    let pods: Api<Pod> = Api::namespaced(Client::new(&server.url).unwrap(), "ns");
    let config = watcher::Config::default()
        .page_size(2)
        .labels("app=web")
        .backoff(Duration::from_millis(10), Duration::from_millis(50));
    let (store, writer) = reflector::store();
    let mut events = Box::pin(reflector::reflector(writer, watcher(pods, config)));

    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(name(&next(&mut events).await.unwrap()));
    }
    assert_eq!(
        seen,
        [
            "Init",
            "InitApply a",
            "InitApply b",
            "InitApply c",
            "InitDone",
            "Apply d"
        ]
    );
    assert_eq!(store.len(), 4);

    // The 410 ERROR event leads to a relist that replaces the cache.
    seen.clear();
    for _ in 0..3 {
        seen.push(name(&next(&mut events).await.unwrap()));
    }
    assert_eq!(seen, ["Init", "InitApply d", "InitDone"]);
    assert_eq!(store.len(), 1);

    // A 500 on the watch is reported and retried; a 410 on the watch request relists.
    let err = next(&mut events).await.unwrap_err();
    assert_eq!(err.code(), Some(500));
    seen.clear();
    for _ in 0..4 {
        seen.push(name(&next(&mut events).await.unwrap()));
    }
    assert_eq!(seen, ["Init", "InitApply d", "InitDone", "Delete d"]);
    assert!(store.is_empty());

    let reqs = server.requests();
    let q = |i: usize, k: &str| reqs[i].query(k);
    assert_eq!(q(0, "limit").as_deref(), Some("2"));
    assert_eq!(q(0, "labelSelector").as_deref(), Some("app=web"));
    assert_eq!(q(1, "continue").as_deref(), Some("t1"));
    assert_eq!(
        q(2, "resourceVersion").as_deref(),
        Some("10"),
        "watch from the list's version"
    );
    assert_eq!(
        q(3, "resourceVersion").as_deref(),
        Some("15"),
        "re-watch from the bookmark"
    );
    assert_eq!(q(4, "continue"), None, "relist starts from the first page");
    assert_eq!(q(5, "resourceVersion").as_deref(), Some("20"));
    assert_eq!(q(6, "resourceVersion").as_deref(), Some("20"));
    assert_eq!(q(8, "resourceVersion").as_deref(), Some("20"));
    assert_eq!(reqs.len(), 9);
    drop(hold);
}

#[tokio::test]
async fn watcher_rewatches_after_a_dropped_connection() {
    let server = TestServer::start(scripted(vec![
        Response::json(
            200,
            json!({"metadata": {"resourceVersion": "1"}, "items": []}),
        ),
        // Cut mid-line: the partial event is an error, then the watch resumes from "2".
        Response::Stream(200, {
            let (tx, rx) = mpsc::unbounded_channel();
            let mut line =
                serde_json::to_vec(&json!({"type": "ADDED", "object": pod_json("a", "2")}))
                    .unwrap();
            line.extend_from_slice(b"\n{\"type\":\"ADD");
            tx.send(line).unwrap();
            rx
        }),
        Response::events(&[json!({"type": "MODIFIED", "object": pod_json("a", "3")})]),
    ]))
    .await;
    let pods: Api<Pod> = Api::namespaced(Client::new(&server.url).unwrap(), "ns");
    let config =
        watcher::Config::default().backoff(Duration::from_millis(5), Duration::from_millis(5));
    let mut events = watcher(pods, config);
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(name(&next(&mut events).await.unwrap()));
    }
    assert_eq!(seen, ["Init", "InitDone", "Apply a"]);
    let err = next(&mut events).await.unwrap_err();
    assert!(err.to_string().contains("decoding watch event"), "{err}");
    assert_eq!(name(&next(&mut events).await.unwrap()), "Apply a");
    assert_eq!(
        server.requests()[2].query("resourceVersion").as_deref(),
        Some("2")
    );
}

#[tokio::test]
async fn controller_dedups_backs_off_requeues_and_stops() {
    use crate::controller::{Action, Controller};
    use k8s_openapi::api::core::v1::ConfigMap;
    use std::collections::{HashMap, HashSet};

    let (pod_events, pod_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let (_cm_events, cm_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let pod_rx = Mutex::new(Some(pod_rx));
    let cm_rx = Mutex::new(Some(cm_rx));
    let server = TestServer::start(move |req| {
        let watching = req.query("watch").is_some();
        match (req.path(), watching) {
            ("/api/v1/namespaces/ns/pods", false) => Response::json(
                200,
                json!({"metadata": {"resourceVersion": "5"}, "items": [pod_json("a", "1"), pod_json("b", "2")]}),
            ),
            ("/api/v1/namespaces/ns/configmaps", false) => Response::json(
                200,
                json!({"metadata": {"resourceVersion": "5"}, "items": [{"metadata": {"name": "cm", "namespace": "ns",
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "a", "uid": "u"}]}}]}),
            ),
            ("/api/v1/namespaces/ns/pods", true) => match pod_rx.lock().unwrap().take() {
                Some(rx) => Response::Stream(200, rx),
                None => Response::events(&[]),
            },
            ("/api/v1/namespaces/ns/configmaps", true) => match cm_rx.lock().unwrap().take() {
                Some(rx) => Response::Stream(200, rx),
                None => Response::events(&[]),
            },
            _ => Response::status(404, "NotFound", "no"),
        }
    })
    .await;
    let client = Client::new(&server.url).unwrap();

    #[derive(Default)]
    struct Seen {
        calls: HashMap<String, u32>,
        in_flight: HashSet<String>,
        overlapped: bool,
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let reconcile = |pod: Arc<Pod>, seen: Arc<Mutex<Seen>>| async move {
        let name = pod.metadata.name.clone().unwrap();
        let n = {
            let mut s = seen.lock().unwrap();
            s.overlapped |= !s.in_flight.insert(name.clone());
            let n = s.calls.entry(name.clone()).or_default();
            *n += 1;
            *n
        };
        tokio::time::sleep(Duration::from_millis(40)).await;
        seen.lock().unwrap().in_flight.remove(&name);
        match (name.as_str(), n) {
            ("b", 1 | 2) => Err("b is not ready"),
            ("b", 3) => Ok(Action::requeue(Duration::from_millis(30))),
            _ => Ok(Action::await_change()),
        }
    };

    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let controller = Controller::new(
        Api::<Pod>::namespaced(client.clone(), "ns"),
        watcher::Config::default(),
    )
    .owns(
        Api::<ConfigMap>::namespaced(client, "ns"),
        watcher::Config::default(),
    )
    .workers(3)
    .error_backoff(Duration::from_millis(5), Duration::from_millis(20));
    let store = controller.store();
    let run = tokio::spawn(controller.run(reconcile, seen.clone(), async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));

    let calls = |name: &str| seen.lock().unwrap().calls.get(name).copied().unwrap_or(0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while calls("b") < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "b reconciled {} times; requests {:?}",
            calls("b"),
            server
                .requests()
                .iter()
                .map(|r| r.target.clone())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(store.is_synced());
    assert_eq!(
        calls("a"),
        1,
        "queued by the pod and by its ConfigMap before workers started: once"
    );

    // Three changes to "a" in one burst while nobody is processing it: one reconcile.
    let mut burst = Vec::new();
    for rv in ["6", "7", "8"] {
        burst.extend(
            serde_json::to_vec(&json!({"type": "MODIFIED", "object": pod_json("a", rv)})).unwrap(),
        );
        burst.push(b'\n');
    }
    pod_events.send(burst).unwrap();
    while store
        .get(Some("ns"), "a")
        .unwrap()
        .metadata
        .resource_version
        .as_deref()
        != Some("8")
    {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        (2..=3).contains(&calls("a")),
        "a reconciled {} times",
        calls("a")
    );
    assert_eq!(calls("b"), 4, "AwaitChange: no more reconciles of b");
    assert!(
        !seen.lock().unwrap().overlapped,
        "an object was reconciled concurrently with itself"
    );

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("run returns on shutdown")
        .unwrap();
}

/// An in-memory Lease endpoint with the API server's optimistic concurrency, and a switch
/// that makes writes fail.
fn lease_server(
    lease: Arc<Mutex<Option<serde_json::Value>>>,
    broken: Arc<std::sync::atomic::AtomicBool>,
) -> impl Fn(&crate::testserver::Request) -> Response + Send + Sync {
    let rv = Mutex::new(0u64);
    move |req| {
        let item = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/sched";
        let mut stored = lease.lock().unwrap();
        if req.method != "GET" && broken.load(std::sync::atomic::Ordering::SeqCst) {
            return Response::status(500, "InternalError", "store unavailable");
        }
        let bump = |mut obj: serde_json::Value| {
            let mut rv = rv.lock().unwrap();
            *rv += 1;
            obj["metadata"]["resourceVersion"] = json!(rv.to_string());
            obj
        };
        match (req.method.as_str(), req.path() == item) {
            ("GET", true) => match &*stored {
                Some(l) => Response::json(200, l.clone()),
                None => Response::status(404, "NotFound", "leases \"sched\" not found"),
            },
            ("POST", false) if stored.is_none() => {
                let obj = bump(req.json());
                *stored = Some(obj.clone());
                Response::json(201, obj)
            }
            ("POST", false) => {
                Response::status(409, "AlreadyExists", "leases \"sched\" already exists")
            }
            ("PUT", true) => {
                let current = stored
                    .as_ref()
                    .map(|l| l["metadata"]["resourceVersion"].clone());
                if current != Some(req.json()["metadata"]["resourceVersion"].clone()) {
                    return Response::status(409, "Conflict", "the object has been modified");
                }
                let obj = bump(req.json());
                *stored = Some(obj.clone());
                Response::json(200, obj)
            }
            _ => Response::status(404, "NotFound", "no"),
        }
    }
}

fn fast_election() -> crate::leader_election::LeaderElectionConfig {
    crate::leader_election::LeaderElectionConfig {
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(1200),
        retry_period: Duration::from_millis(100),
        release_on_shutdown: true,
    }
}

#[tokio::test]
async fn one_leader_at_a_time_and_release_hands_over() {
    use crate::leader_election::{LeaderElector, Outcome};
    use k8s_openapi::api::coordination::v1::Lease;

    let lease = Arc::new(Mutex::new(None));
    let server = TestServer::start(lease_server(lease.clone(), Default::default())).await;
    let api: Api<Lease> = Api::namespaced(Client::new(&server.url).unwrap(), "kube-system");

    let mut a = LeaderElector::new(api.clone(), "sched", "a", fast_election());
    let mut b = LeaderElector::new(api, "sched", "b", fast_election());
    let (mut a_leads, mut b_leads) = (a.is_leader(), b.is_leader());
    let (stop_a, stop_a_rx) = tokio::sync::oneshot::channel::<()>();
    let a_run = tokio::spawn(async move {
        a.run(
            async {
                let _ = stop_a_rx.await;
            },
            std::future::pending(),
        )
        .await
    });
    tokio::time::timeout(Duration::from_secs(5), a_leads.wait_for(|l| *l))
        .await
        .unwrap()
        .unwrap();

    let b_run =
        tokio::spawn(async move { b.run(std::future::pending(), std::future::pending()).await });
    // b sees a renewing (the Lease keeps changing), so it never takes over.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert!(!*b_leads.borrow());
    assert!(*a_leads.borrow());
    let spec = |l: &Option<serde_json::Value>| l.as_ref().unwrap()["spec"].clone();
    assert_eq!(spec(&lease.lock().unwrap())["holderIdentity"], "a");
    assert_eq!(spec(&lease.lock().unwrap())["leaseTransitions"], 0);

    stop_a.send(()).unwrap();
    assert_eq!(a_run.await.unwrap().unwrap(), Outcome::Shutdown);
    assert!(!*a_leads.borrow());
    // Released: b takes over at its next try, well before a lease duration.
    tokio::time::timeout(Duration::from_millis(1500), b_leads.wait_for(|l| *l))
        .await
        .unwrap()
        .unwrap();
    let s = spec(&lease.lock().unwrap());
    assert_eq!(s["holderIdentity"], "b");
    assert_eq!(s["leaseTransitions"], 1);
    assert_eq!(s["leaseDurationSeconds"], 2);
    b_run.abort();
}

#[tokio::test]
async fn a_leader_that_cannot_renew_steps_down_and_a_stale_lease_is_taken_over() {
    use crate::leader_election::{LeaderElector, Outcome};
    use k8s_openapi::api::coordination::v1::Lease;

    let lease = Arc::new(Mutex::new(None));
    let broken = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = TestServer::start(lease_server(lease.clone(), broken.clone())).await;
    let api: Api<Lease> = Api::namespaced(Client::new(&server.url).unwrap(), "kube-system");

    let mut a = LeaderElector::new(api.clone(), "sched", "a", fast_election());
    let mut a_leads = a.is_leader();
    let (lead_tx, mut lead_rx) = tokio::sync::mpsc::channel::<()>(1);
    let a_run = tokio::spawn(async move {
        // The leading future holds the sender: its drop shows that it was cancelled.
        let lead = async move {
            let _alive = lead_tx;
            std::future::pending::<()>().await
        };
        a.run(std::future::pending(), lead).await
    });
    tokio::time::timeout(Duration::from_secs(5), a_leads.wait_for(|l| *l))
        .await
        .unwrap()
        .unwrap();

    broken.store(true, std::sync::atomic::Ordering::SeqCst);
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(6), a_run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(outcome, Outcome::LostLeadership);
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "gave up after {:?}",
        started.elapsed()
    );
    assert!(
        lead_rx.recv().await.is_none(),
        "the leading future was dropped"
    );
    assert!(!*a_leads.borrow());

    // "a" is gone without releasing: "b" waits a lease duration of unchanged Lease first.
    broken.store(false, std::sync::atomic::Ordering::SeqCst);
    let mut b = LeaderElector::new(api, "sched", "b", fast_election());
    let mut b_leads = b.is_leader();
    let started = std::time::Instant::now();
    let b_run =
        tokio::spawn(async move { b.run(std::future::pending(), std::future::pending()).await });
    tokio::time::timeout(Duration::from_secs(5), b_leads.wait_for(|l| *l))
        .await
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "took over after {:?}",
        started.elapsed()
    );
    assert_eq!(
        lease.lock().unwrap().as_ref().unwrap()["spec"]["holderIdentity"],
        "b"
    );
    b_run.abort();
}

#[tokio::test]
async fn transport_errors_say_why() {
    // Bind then drop a listener: nothing listens on that port any more.
    let port = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pods: Api<Pod> = Api::namespaced(
        Client::new(&format!("http://127.0.0.1:{port}")).unwrap(),
        "ns",
    );
    let err = pods.get("a").await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Http { .. }), "{text}");
    assert!(
        text.starts_with("GET /api/v1/namespaces/ns/pods/a: "),
        "{text}"
    );
    assert!(text.to_lowercase().contains("refused"), "{text}");
}
