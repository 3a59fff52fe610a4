//! Admission and object lifecycle through the real apiserver on a real store:
//! ResourceQuota and LimitRange, Service clusterIP/nodePort allocation, namespace
//! termination, graceful pod deletion, finalizers, binding, generateName and dry runs.

use anyhow::{Context, Result};
use serde_json::{json, Value};
use skiff_tests::control_plane::ControlPlane;

struct Http {
    base: String,
    client: reqwest::Client,
}

impl Http {
    async fn call(
        &self,
        method: &str,
        path: &str,
        ct: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value)> {
        let mut req = self
            .client
            .request(
                reqwest::Method::from_bytes(method.as_bytes())?,
                format!("{}{path}", self.base),
            )
            .header("content-type", ct);
        if let Some(b) = body {
            req = req.body(serde_json::to_vec(b)?);
        }
        let resp = req.send().await?;
        let code = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        Ok((code, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }
    async fn post(&self, path: &str, body: Value) -> Result<(u16, Value)> {
        self.call("POST", path, "application/json", Some(&body))
            .await
    }
    async fn get(&self, path: &str) -> Result<(u16, Value)> {
        self.call("GET", path, "application/json", None).await
    }
    async fn delete(&self, path: &str, body: Option<Value>) -> Result<(u16, Value)> {
        self.call("DELETE", path, "application/json", body.as_ref())
            .await
    }
    async fn merge(&self, path: &str, body: Value) -> Result<(u16, Value)> {
        self.call("PATCH", path, "application/merge-patch+json", Some(&body))
            .await
    }
}

fn pod(name: &str, cpu: Option<&str>) -> Value {
    let mut c = json!({"name": "c", "image": "busybox"});
    if let Some(cpu) = cpu {
        c["resources"] = json!({"requests": {"cpu": cpu}});
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [c]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_and_lifecycle_follow_kubernetes() {
    let cp = ControlPlane::start(1).await.unwrap();
    let http = Http {
        base: cp.url(0),
        client: skiff_tests::http::client(),
    };
    quota_and_limits(&http).await.unwrap();
    services(&http).await.unwrap();
    deletion(&http).await.unwrap();
    namespaces(&http).await.unwrap();
}

async fn quota_and_limits(http: &Http) -> Result<()> {
    let (code, _) = http
        .post(
            "/api/v1/namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}),
        )
        .await?;
    assert_eq!(code, 201);
    let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"},
        "spec": {"hard": {"pods": "2", "requests.cpu": "1"}}});
    let (code, v) = http
        .post("/api/v1/namespaces/team/resourcequotas", quota)
        .await?;
    assert_eq!(code, 201, "{v}");
    let pods = "/api/v1/namespaces/team/pods";
    for name in ["a", "b"] {
        let (code, v) = http.post(pods, pod(name, Some("400m"))).await?;
        assert_eq!(code, 201, "{v}");
    }
    let (code, v) = http.post(pods, pod("c", Some("400m"))).await?;
    assert_eq!(code, 403, "{v}");
    assert_eq!(v["reason"], "Forbidden");
    assert_eq!(
        v["message"],
        "pods \"c\" is forbidden: exceeded quota: q, requested: pods=1,requests.cpu=400m, used: pods=2,requests.cpu=800m, limited: pods=2,requests.cpu=1"
    );
    let (code, v) = http.post(pods, pod("d", None)).await?;
    assert_eq!(code, 403);
    assert!(
        v["message"]
            .as_str()
            .unwrap_or("")
            .contains("must specify requests.cpu for: c"),
        "{v}"
    );
    let (_, q) = http.get("/api/v1/namespaces/team/resourcequotas/q").await?;
    assert_eq!(q["status"]["used"]["pods"], "2", "{q}");
    assert_eq!(q["status"]["used"]["requests.cpu"], "800m", "{q}");
    // Deleting a pod makes room again.
    let (code, _) = http.delete(&format!("{pods}/a"), None).await?;
    assert_eq!(code, 200);
    let (code, v) = http.post(pods, pod("c", Some("400m"))).await?;
    assert_eq!(code, 201, "{v}");

    // LimitRange defaults a container's requests and limits.
    let (code, _) = http
        .post(
            "/api/v1/namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "limited"}}),
        )
        .await?;
    assert_eq!(code, 201);
    let lr = json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "defaults"},
        "spec": {"limits": [{"type": "Container", "defaultRequest": {"cpu": "100m"}, "default": {"cpu": "200m"}, "max": {"cpu": "1"}}]}});
    let (code, v) = http
        .post("/api/v1/namespaces/limited/limitranges", lr)
        .await?;
    assert_eq!(code, 201, "{v}");
    let (code, v) = http
        .post("/api/v1/namespaces/limited/pods", pod("p", None))
        .await?;
    assert_eq!(code, 201, "{v}");
    let res = &v["spec"]["containers"][0]["resources"];
    assert_eq!(res["requests"]["cpu"], "100m", "{v}");
    assert_eq!(res["limits"]["cpu"], "200m", "{v}");
    assert_eq!(v["status"]["qosClass"], "Burstable");
    let mut big = pod("big", None);
    big["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "2"}});
    let (code, v) = http.post("/api/v1/namespaces/limited/pods", big).await?;
    assert_eq!(code, 403, "{v}");
    Ok(())
}

async fn services(http: &Http) -> Result<()> {
    let svcs = "/api/v1/namespaces/default/services";
    let mut ips = std::collections::BTreeSet::new();
    for i in 0..20 {
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("s{i}")},
            "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}});
        let (code, v) = http.post(svcs, svc).await?;
        assert_eq!(code, 201, "{v}");
        let ip = v["spec"]["clusterIP"]
            .as_str()
            .context("clusterIP")?
            .to_string();
        assert_eq!(
            v["spec"]["ports"][0]["targetPort"], 80,
            "targetPort defaults to port"
        );
        assert!(ips.insert(ip.clone()), "clusterIP {ip} handed out twice");
    }
    // A requested IP that is taken is refused; once its Service is gone it is free.
    let taken = ips.iter().next().context("an ip")?.clone();
    let want = |name: &str, ip: &str| {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"clusterIP": ip, "ports": [{"port": 80}]}})
    };
    let (code, v) = http.post(svcs, want("dup", &taken)).await?;
    assert_eq!(code, 422, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or("")
            .contains("provided IP is already allocated"),
        "{v}"
    );
    let owner = {
        let (_, list) = http.get(svcs).await?;
        list["items"]
            .as_array()
            .context("items")?
            .iter()
            .find(|s| s["spec"]["clusterIP"] == json!(taken))
            .context("owner")?["metadata"]["name"]
            .as_str()
            .context("name")?
            .to_string()
    };
    let (code, _) = http.delete(&format!("{svcs}/{owner}"), None).await?;
    assert_eq!(code, 200);
    let (code, v) = http.post(svcs, want("dup", &taken)).await?;
    assert_eq!(code, 201, "{v}");
    // Out of range.
    let (code, _) = http.post(svcs, want("far", "192.168.1.1")).await?;
    assert_eq!(code, 422);
    // NodePorts: allocated in range, never twice.
    let np = |name: &str, port: Option<i64>| {
        let mut p = json!({"port": 80});
        if let Some(n) = port {
            p["nodePort"] = json!(n);
        }
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": "NodePort", "selector": {"app": "x"}, "ports": [p]}})
    };
    let (code, v) = http.post(svcs, np("np1", None)).await?;
    assert_eq!(code, 201, "{v}");
    let port = v["spec"]["ports"][0]["nodePort"]
        .as_i64()
        .context("nodePort")?;
    assert!((30000..=32767).contains(&port));
    let (code, v) = http.post(svcs, np("np2", Some(port))).await?;
    assert_eq!(code, 422, "{v}");
    // An update that leaves clusterIP and nodePort out keeps them.
    let (code, v) = http
        .merge(
            &format!("{svcs}/np1"),
            json!({"metadata": {"labels": {"l": "1"}}}),
        )
        .await?;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["spec"]["ports"][0]["nodePort"], port);
    Ok(())
}

async fn deletion(http: &Http) -> Result<()> {
    let pods = "/api/v1/namespaces/default/pods";
    // generateName and dryRun.
    let mut gen = pod("", None);
    gen["metadata"] = json!({"generateName": "web-"});
    let (code, v) = http.post(pods, gen.clone()).await?;
    assert_eq!(code, 201, "{v}");
    let generated = v["metadata"]["name"].as_str().context("name")?.to_string();
    assert!(
        generated.starts_with("web-") && generated.len() == 9,
        "{generated}"
    );
    let (code, v) = http
        .post(&format!("{pods}?dryRun=All"), pod("dry", None))
        .await?;
    assert_eq!(code, 201, "{v}");
    let (code, _) = http.get(&format!("{pods}/dry")).await?;
    assert_eq!(code, 404, "a dry run stored the pod");
    // An unscheduled pod goes at once; a pod on a node waits for its kubelet.
    let (code, _) = http.delete(&format!("{pods}/{generated}"), None).await?;
    assert_eq!(code, 200);
    let (code, _) = http.get(&format!("{pods}/{generated}")).await?;
    assert_eq!(code, 404);
    http.post(pods, pod("bound", None)).await?;
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "bound"}, "target": {"kind": "Node", "name": "n1"}});
    let (code, v) = http
        .post(&format!("{pods}/bound/binding"), binding.clone())
        .await?;
    assert_eq!(code, 201, "{v}");
    let (code, v) = http.post(&format!("{pods}/bound/binding"), binding).await?;
    assert_eq!(code, 409, "a second binding: {v}");
    let (code, v) = http.delete(&format!("{pods}/bound"), None).await?;
    assert_eq!(code, 200);
    assert!(v["metadata"]["deletionTimestamp"].is_string(), "{v}");
    assert_eq!(v["metadata"]["deletionGracePeriodSeconds"], 30);
    let (code, _) = http.get(&format!("{pods}/bound")).await?;
    assert_eq!(code, 200, "the pod waits for its kubelet");
    let (code, _) = http
        .delete(&format!("{pods}/bound?gracePeriodSeconds=0"), None)
        .await?;
    assert_eq!(code, 200);
    let (code, _) = http.get(&format!("{pods}/bound")).await?;
    assert_eq!(code, 404);
    // Finalizers hold an object until the last one is removed; Foreground adds one.
    let cms = "/api/v1/namespaces/default/configmaps";
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "held", "finalizers": ["example.com/hold"]}});
    http.post(cms, cm).await?;
    let (code, v) = http
        .delete(
            &format!("{cms}/held"),
            Some(json!({"propagationPolicy": "Foreground"})),
        )
        .await?;
    assert_eq!(code, 200);
    assert_eq!(
        v["metadata"]["finalizers"],
        json!(["example.com/hold", "foregroundDeletion"])
    );
    let (code, _) = http.get(&format!("{cms}/held")).await?;
    assert_eq!(code, 200);
    let (code, v) = http
        .merge(
            &format!("{cms}/held"),
            json!({"metadata": {"finalizers": null}}),
        )
        .await?;
    assert_eq!(code, 200, "{v}");
    let (code, _) = http.get(&format!("{cms}/held")).await?;
    assert_eq!(code, 404, "removing the last finalizer deletes the object");
    Ok(())
}

async fn namespaces(http: &Http) -> Result<()> {
    let (code, v) = http.delete("/api/v1/namespaces/default", None).await?;
    assert_eq!(code, 403, "{v}");
    let (code, v) = http.delete("/api/v1/namespaces/team", None).await?;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"]["phase"], "Terminating");
    let (code, v) = http
        .post(
            "/api/v1/namespaces/team/configmaps",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late"}}),
        )
        .await?;
    assert_eq!(code, 403, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or("")
            .contains("because it is being terminated"),
        "{v}"
    );
    Ok(())
}
