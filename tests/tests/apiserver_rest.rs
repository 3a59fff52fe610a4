//! The apiserver's REST behaviour seen over HTTP, against a real 3-member skiff store:
//! Kubernetes Status errors and codes, optimistic concurrency, compaction, size limits,
//! bad input that stores nothing, two apiservers on one store, and store members dying.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use futures::StreamExt;
use serde_json::{json, Value};
use skiff_tests::control_plane::ControlPlane;

struct Http {
    base: String,
    client: reqwest::Client,
}

impl Http {
    fn new(base: String) -> Http {
        Http {
            base,
            client: skiff_tests::http::client(),
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        ct: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Value)> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("content-type", ct);
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await?;
        let code = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        let v = serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
        Ok((code, v))
    }

    async fn json(&self, method: &str, path: &str, body: &Value) -> Result<(u16, Value)> {
        self.send(
            method,
            path,
            "application/json",
            Some(serde_json::to_vec(body)?),
        )
        .await
    }

    async fn get(&self, path: &str) -> Result<(u16, Value)> {
        self.send("GET", path, "application/json", None).await
    }
}

fn cm(name: &str, data: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": data}})
}

fn assert_status(v: &Value, code: u16, reason: &str) {
    assert_eq!(v["kind"], "Status", "{v}");
    assert_eq!(v["code"], code, "{v}");
    assert_eq!(v["reason"], reason, "{v}");
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_kubernetes_status_objects_and_store_nothing() {
    let cp = ControlPlane::start(1).await.unwrap();
    errors_body(&cp).await.unwrap();
}

async fn errors_body(cp: &ControlPlane) -> Result<()> {
    let http = Http::new(cp.url(0));
    // Create, then a stale update is a 409 with Kubernetes' message.
    let (code, created) = http.json("POST", CMS, &cm("a", "1")).await?;
    assert_eq!(code, 201, "{created}");
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .context("rv")?
        .to_string();
    let mut fresh = created.clone();
    fresh["data"]["k"] = json!("2");
    let (code, updated) = http.json("PUT", &format!("{CMS}/a"), &fresh).await?;
    assert_eq!(code, 200, "{updated}");
    assert_ne!(updated["metadata"]["resourceVersion"], json!(rv));
    let mut stale = created.clone();
    stale["data"]["k"] = json!("3");
    let (code, v) = http.json("PUT", &format!("{CMS}/a"), &stale).await?;
    assert_eq!(code, 409);
    assert_status(&v, 409, "Conflict");
    assert_eq!(
        v["message"],
        "Operation cannot be fulfilled on configmaps \"a\": the object has been modified; please apply your changes to the latest version and try again"
    );
    // Creating it again: AlreadyExists.
    let (code, v) = http.json("POST", CMS, &cm("a", "1")).await?;
    assert_eq!(code, 409);
    assert_status(&v, 409, "AlreadyExists");
    // 404 for an object, for an unknown resource, and for a namespace that does not exist.
    let (code, v) = http.get(&format!("{CMS}/nope")).await?;
    assert_eq!(code, 404);
    assert_status(&v, 404, "NotFound");
    assert_eq!(v["message"], "configmaps \"nope\" not found");
    let (code, v) = http.get("/api/v1/namespaces/default/widgets").await?;
    assert_eq!(code, 404);
    assert_status(&v, 404, "NotFound");
    let (code, v) = http
        .json("POST", "/api/v1/namespaces/ghost/configmaps", &cm("x", "1"))
        .await?;
    assert_eq!(code, 404, "{v}");
    // 413 over 3 MiB.
    let big = cm("big", &"x".repeat(3 * 1024 * 1024 + 10));
    let (code, v) = http.json("POST", CMS, &big).await?;
    assert_eq!(code, 413);
    assert_status(&v, 413, "RequestEntityTooLarge");
    // 400: malformed JSON, malformed YAML, a wrong kind and a wrong apiVersion for the path.
    let (code, v) = http
        .send(
            "POST",
            CMS,
            "application/json",
            Some(b"{\"kind\": ".to_vec()),
        )
        .await?;
    assert_eq!(code, 400);
    assert_status(&v, 400, "BadRequest");
    let (code, _) = http
        .send(
            "POST",
            CMS,
            "application/yaml",
            Some(b"kind: [unclosed".to_vec()),
        )
        .await?;
    assert_eq!(code, 400);
    let wrong_kind = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "w"}});
    let (code, v) = http.json("POST", CMS, &wrong_kind).await?;
    assert_eq!(code, 400, "{v}");
    let wrong_version =
        json!({"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "w"}});
    let (code, _) = http.json("POST", CMS, &wrong_version).await?;
    assert_eq!(code, 400);
    // Strict field validation names the unknown field; Warn stores and warns.
    let unknown = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "u"}, "dataz": {"a": "b"}});
    let (code, v) = http
        .json("POST", &format!("{CMS}?fieldValidation=Strict"), &unknown)
        .await?;
    assert_eq!(code, 400);
    assert_eq!(
        v["message"],
        "strict decoding error: unknown field \"dataz\""
    );
    // 422 with causes: a bad name, and a missing required field.
    let (code, v) = http.json("POST", CMS, &cm("Not_A_Name", "1")).await?;
    assert_eq!(code, 422, "{v}");
    assert_status(&v, 422, "Invalid");
    assert_eq!(v["details"]["causes"][0]["field"], "metadata.name");
    let no_image = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c"}]}});
    let (code, v) = http
        .json("POST", "/api/v1/namespaces/default/pods", &no_image)
        .await?;
    assert_eq!(code, 422, "{v}");
    let causes = v["details"]["causes"].as_array().context("causes")?;
    assert!(
        causes
            .iter()
            .any(|c| c["field"] == "spec.containers[0].image"),
        "{v}"
    );
    // None of the refused objects was stored.
    let (_, list) = http.get(CMS).await?;
    let names: Vec<&str> = list["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, vec!["a"], "{list}");
    let (code, _) = http.get("/api/v1/namespaces/default/pods/p").await?;
    assert_eq!(code, 404);
    // 410: compact the store past an old revision; a watch from it gets an ERROR 410
    // event, and a continue token from before the compaction is refused.
    for i in 0..5 {
        http.json("POST", CMS, &cm(&format!("c{i}"), "x")).await?;
    }
    let (_, page) = http.get(&format!("{CMS}?limit=2")).await?;
    let token = page["metadata"]["continue"]
        .as_str()
        .context("continue token")?
        .to_string();
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2));
    let mut etcd = cp.store.client().await?;
    let rev = etcd.status().await?.header().context("header")?.revision();
    http.json("POST", CMS, &cm("after", "x")).await?;
    etcd.compact(rev + 1, None).await?;
    let (code, v) = http.get(&format!("{CMS}?limit=2&continue={token}")).await?;
    assert_eq!(code, 410, "{v}");
    assert_status(&v, 410, "Expired");
    let resp = skiff_tests::http::get(format!(
        "{}{CMS}?watch=true&resourceVersion={rv}",
        cp.url(0)
    ))
    .await?;
    let mut body = resp.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(10), body.next())
        .await?
        .context("event")??;
    let event: Value =
        serde_json::from_slice(first.split(|b| *b == b'\n').next().context("line")?)?;
    assert_eq!(event["type"], "ERROR", "{event}");
    assert_eq!(event["object"]["code"], 410);
    // sendInitialEvents is answered 422 so clients fall back to list + watch.
    let (code, _) = http
        .get(&format!(
            "{CMS}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
        ))
        .await?;
    assert_eq!(code, 422);
    Ok(())
}

/// Reads watch events from a streaming response until `pred` matches one.
async fn wait_for_event(
    stream: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buf: &mut Vec<u8>,
    timeout: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let event: Value = serde_json::from_slice(&line)?;
            if pred(&event) {
                return Ok(event);
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        ensure!(
            !left.is_zero(),
            "no matching watch event within {timeout:?}"
        );
        match tokio::time::timeout(left, stream.next()).await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk?),
            Ok(None) => anyhow::bail!("the watch ended"),
            Err(_) => anyhow::bail!("no matching watch event within {timeout:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_on_one_apiserver_sees_writes_through_another() {
    let cp = ControlPlane::start(2).await.unwrap();
    two_apiservers_body(&cp).await.unwrap();
}

async fn two_apiservers_body(cp: &ControlPlane) -> Result<()> {
    let a = Http::new(cp.url(0));
    let b = Http::new(cp.url(1));
    let (_, list) = a.get(CMS).await?;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .context("rv")?
        .to_string();
    let resp = skiff_tests::http::get(format!(
        "{}{CMS}?watch=true&resourceVersion={rv}&labelSelector=app%3Dweb",
        cp.url(0)
    ))
    .await?;
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    let mut labeled = cm("w", "1");
    labeled["metadata"]["labels"] = json!({"app": "web"});
    let (code, _) = b.json("POST", CMS, &labeled).await?;
    assert_eq!(code, 201);
    let added = wait_for_event(&mut stream, &mut buf, Duration::from_secs(10), |e| {
        e["type"] == "ADDED"
    })
    .await?;
    assert_eq!(added["object"]["metadata"]["name"], "w");
    // Leaving the selector is a DELETED event, as Kubernetes sends it.
    let patch = json!({"metadata": {"labels": {"app": "db"}}});
    let (code, v) = b
        .send(
            "PATCH",
            &format!("{CMS}/w"),
            "application/merge-patch+json",
            Some(serde_json::to_vec(&patch)?),
        )
        .await?;
    assert_eq!(code, 200, "{v}");
    let gone = wait_for_event(&mut stream, &mut buf, Duration::from_secs(10), |e| {
        e["type"] != "BOOKMARK"
    })
    .await?;
    assert_eq!(gone["type"], "DELETED", "{gone}");
    // And an object deleted through the other apiserver.
    let (code, _) = b
        .json("POST", CMS, &{
            let mut o = cm("x", "1");
            o["metadata"]["labels"] = json!({"app": "web"});
            o
        })
        .await?;
    assert_eq!(code, 201);
    wait_for_event(&mut stream, &mut buf, Duration::from_secs(10), |e| {
        e["type"] == "ADDED"
    })
    .await?;
    let (code, _) = b
        .send("DELETE", &format!("{CMS}/x"), "application/json", None)
        .await?;
    assert_eq!(code, 200);
    let deleted = wait_for_event(&mut stream, &mut buf, Duration::from_secs(10), |e| {
        e["type"] == "DELETED"
    })
    .await?;
    assert_eq!(deleted["object"]["metadata"]["name"], "x");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apiserver_keeps_serving_while_store_members_restart() {
    let cp = ControlPlane::start(1).await.unwrap();
    member_restart_body(&cp).await.unwrap();
}

async fn member_restart_body(cp: &ControlPlane) -> Result<()> {
    let http = Http::new(cp.url(0));
    let mut written = 0;
    let mut failed = Vec::new();
    // Kill the leader, then a follower, each time writing and reading through the
    // apiserver while the member is down and after it is back.
    for round in 0..2 {
        let victim = if round == 0 {
            cp.store.wait_for_leader(Duration::from_secs(20)).await?
        } else {
            (cp.store.wait_for_leader(Duration::from_secs(20)).await? + 1) % 3
        };
        cp.store.kill(victim)?;
        for i in 0..20 {
            let name = format!("r{round}-{i}");
            let ok = write_with_patience(&http, &name).await?;
            if ok {
                written += 1;
            } else {
                failed.push(name);
            }
        }
        cp.store.restart(victim)?;
        cp.store.wait_ready(victim, Duration::from_secs(30)).await?;
        for i in 20..30 {
            let name = format!("r{round}-{i}");
            if write_with_patience(&http, &name).await? {
                written += 1;
            } else {
                failed.push(name);
            }
        }
    }
    assert!(
        failed.is_empty(),
        "writes that failed for good: {failed:?}\n{}",
        cp.log_tail(0)
    );
    let (code, list) = http.get(CMS).await?;
    assert_eq!(code, 200);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(written));
    Ok(())
}

/// Creates a ConfigMap, retrying for a while on 5xx (an election in progress), as
/// client-go does; a 409 AlreadyExists after a retry means an earlier try landed.
async fn write_with_patience(http: &Http, name: &str) -> Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut retried = false;
    loop {
        let (code, v) = http.json("POST", CMS, &cm(name, "v")).await?;
        match code {
            201 => return Ok(true),
            409 if retried && v["reason"] == "AlreadyExists" => return Ok(true),
            500..=599 if Instant::now() < deadline => {
                retried = true;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            _ => {
                eprintln!("create {name}: {code} {v}");
                return Ok(false);
            }
        }
    }
}
