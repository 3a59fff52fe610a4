//! Runs a real kubectl against the documents, behind just enough discovery and one fake
//! Deployment. Ignored by default: it needs kubectl (1.32 is what skiff targets) on PATH
//! or in `KUBECTL`. Run with `cargo test -p skiff-apiserver kubectl -- --ignored`.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use skiff_api::resource::{groups, in_group_version};

/// Every request the fake server saw: method, URI, content type, body.
type Log = Arc<Mutex<Vec<(String, String, String, String)>>>;

fn json_response(status: StatusCode, value: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn resource_list(group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for r in in_group_version(group, version) {
        resources.push(json!({
            "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
            "kind": r.kind, "shortNames": r.short_names,
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
        }));
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources})
}

/// The Deployment as kubectl last applied it, and as it is now: a controller has since
/// added an env var and a sidecar container, which a correct apply patch must keep.
fn current_deployment() -> Value {
    let last_applied = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"annotations": {}, "name": "web", "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                {"name": "app", "image": "nginx:1", "env": [{"name": "A", "value": "1"}]}
            ]}}},
    });
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "resourceVersion": "5", "uid": "u1",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": last_applied.to_string()}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                {"name": "app", "image": "nginx:1", "env": [{"name": "A", "value": "1"}, {"name": "INJECTED", "value": "x"}]},
                {"name": "sidecar", "image": "envoy"}
            ]}}},
    })
}

async fn record(log: Log, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if let Ok(mut log) = log.lock() {
        log.push((
            method.to_string(),
            uri.to_string(),
            content_type,
            String::from_utf8_lossy(&body).into_owned(),
        ));
    }
    if uri.path() == "/apis/apps/v1/namespaces/default/deployments/web" {
        return json_response(StatusCode::OK, &current_deployment());
    }
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
    )
}

fn app(log: Log) -> Router {
    let api_groups: Vec<Value> = groups()
        .into_iter()
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
                .collect();
            json!({"name": group, "versions": versions, "preferredVersion": versions[0]})
        })
        .collect();
    let group_list = json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": api_groups});
    Router::new()
        .route(
            "/version",
            get(|| async {
                json_response(
                    StatusCode::OK,
                    &json!({"major": "1", "minor": "32", "gitVersion": "v1.32.0"}),
                )
            }),
        )
        .route(
            "/api",
            get(|| async {
                json_response(
                    StatusCode::OK,
                    &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
                )
            }),
        )
        .route(
            "/api/v1",
            get(|| async { json_response(StatusCode::OK, &resource_list("", "v1")) }),
        )
        .route(
            "/apis",
            get(move || async move { json_response(StatusCode::OK, &group_list) }),
        )
        .route(
            "/apis/{group}/{version}",
            get(|Path((g, v)): Path<(String, String)>| async move {
                json_response(StatusCode::OK, &resource_list(&g, &v))
            }),
        )
        .merge(super::routes(Arc::clone(super::tests::shared())))
        .fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            record(Arc::clone(&log), method, uri, headers, body)
        })
}

struct Kubectl {
    binary: String,
    server: String,
    dir: PathBuf,
}

impl Kubectl {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.binary)
            .arg(format!(
                "--kubeconfig={}",
                self.dir.join("kubeconfig").display()
            ))
            .arg(format!("--cache-dir={}", self.dir.join("cache").display()))
            .arg(format!("--server={}", self.server))
            .args(args)
            .output()
            .expect("kubectl runs")
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a kubectl binary"]
async fn real_kubectl_validates_explains_and_patches_with_the_documents() {
    let binary = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    if Command::new(&binary)
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        eprintln!("skipped: no kubectl at {binary:?}");
        return;
    }
    let log: Log = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let app = app(Arc::clone(&log));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = std::env::temp_dir().join(format!("skiff-openapi-kubectl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("kubeconfig"), "").expect("kubeconfig");
    std::fs::write(
        dir.join("deploy.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: default\n\
         spec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: web\n  template:\n\
         \x20   metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n\
         \x20     - name: app\n        image: nginx:2\n        env:\n        - name: A\n\
         \x20         value: \"1\"\n        - name: B\n          value: \"2\"\n",
    )
    .expect("manifest");
    std::fs::write(
        dir.join("list.yaml"),
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n\
         \x20   name: c1\n    namespace: default\n  datax:\n    a: b\n",
    )
    .expect("list");
    let kubectl = Kubectl {
        binary,
        server: format!("http://{address}"),
        dir: dir.clone(),
    };

    let outputs = tokio::task::spawn_blocking(move || {
        let deploy = kubectl.dir.join("deploy.yaml").display().to_string();
        let list = kubectl.dir.join("list.yaml").display().to_string();
        [
            kubectl.run(&["apply", "-f", &deploy]),
            kubectl.run(&["explain", "deployments.spec.strategy"]),
            kubectl.run(&["explain", "pods.spec", "--output=plaintext-openapiv2"]),
            kubectl.run(&["apply", "-f", &list]),
        ]
    })
    .await
    .expect("kubectl thread");
    server.abort();
    let _ = std::fs::remove_dir_all(&dir);
    let requests = log.lock().map(|l| l.clone()).unwrap_or_default();

    // apply: default strict validation passes (the server takes fieldValidation), and the
    // patch is strategic, keyed by container and env names as the v3 schemas declare.
    assert!(outputs[0].status.success(), "{}", text(&outputs[0]));
    let patch = requests
        .iter()
        .find(|(method, ..)| method == "PATCH")
        .unwrap_or_else(|| panic!("no PATCH among {requests:?}"));
    assert!(patch.1.contains("fieldValidation=Strict"), "{}", patch.1);
    assert_eq!(patch.2, "application/strategic-merge-patch+json");
    let body: Value = serde_json::from_str(&patch.3).expect("patch is JSON");
    let spec = &body["spec"]["template"]["spec"];
    assert_eq!(
        spec["$setElementOrder/containers"],
        json!([{"name": "app"}])
    );
    assert_eq!(
        spec["containers"][0]["$setElementOrder/env"],
        json!([{"name": "A"}, {"name": "B"}])
    );
    assert_eq!(
        spec["containers"][0]["env"],
        json!([{"name": "B", "value": "2"}])
    );

    // explain: the kind comes from the v3 operations, the fields from its schemas.
    let explain = text(&outputs[1]);
    assert!(outputs[1].status.success(), "{explain}");
    assert!(
        explain.contains("Deployment") && explain.contains("rollingUpdate"),
        "{explain}"
    );

    // explain with v2: kubectl decodes the protobuf document.
    let explain_v2 = text(&outputs[2]);
    assert!(outputs[2].status.success(), "{explain_v2}");
    assert!(explain_v2.contains("containers"), "{explain_v2}");

    // A List is validated on the client against the v2 models.
    let validation = text(&outputs[3]);
    assert!(!outputs[3].status.success());
    assert!(
        validation.contains("unknown field \"datax\""),
        "{validation}"
    );
}
