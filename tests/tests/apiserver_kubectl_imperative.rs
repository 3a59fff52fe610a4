//! kubectl's imperative commands (`create deployment`, `run`, `expose`, `create
//! configmap|secret|job|cronjob|service|namespace|serviceaccount|quota`) go through its
//! typed clients, which send protobuf bodies: each object must be stored exactly as the
//! command meant it, with the API's defaults, as a Kubernetes apiserver stores it.

use anyhow::{ensure, Result};
use serde_json::{json, Value};
use skiff_tests::control_plane::ControlPlane;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_imperative_commands_send_protobuf_that_is_stored_as_meant() {
    let cp = ControlPlane::start(1).await.unwrap();
    walk(&cp).unwrap();
}

fn get(cp: &ControlPlane, args: &[&str]) -> Result<Value> {
    let mut all = vec!["get"];
    all.extend(args);
    all.extend(["-o", "json"]);
    Ok(serde_json::from_str(&cp.kubectl_ok(&all)?)?)
}

fn walk(cp: &ControlPlane) -> Result<()> {
    cp.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:1.36",
        "--replicas=0",
        "--port=80",
        "--",
        "sleep",
        "3600",
    ])?;
    let d = get(cp, &["deployment", "web"])?;
    ensure!(d["spec"]["replicas"] == 0, "an explicit 0 is kept: {d}");
    ensure!(
        d["spec"]["selector"] == json!({"matchLabels": {"app": "web"}}),
        "{d}"
    );
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    ensure!(
        c["image"] == "busybox:1.36" && c["command"] == json!(["sleep", "3600"]),
        "{c}"
    );
    ensure!(
        c["ports"] == json!([{"containerPort": 80, "protocol": "TCP"}]),
        "{c}"
    );
    ensure!(c["imagePullPolicy"] == "IfNotPresent", "defaulted: {c}");
    ensure!(
        d["spec"]["strategy"]["rollingUpdate"]
            == json!({"maxSurge": "25%", "maxUnavailable": "25%"}),
        "{d}"
    );
    ensure!(d["metadata"]["creationTimestamp"].is_string(), "{d}");
    ensure!(d["metadata"].get("generateName").is_none(), "{d}");

    cp.kubectl_ok(&[
        "run",
        "once",
        "--image=busybox:1.36",
        "--restart=Never",
        "--labels=tier=batch",
        "--env=GREETING=hi",
        "--",
        "sh",
        "-c",
        "echo $GREETING",
    ])?;
    let p = get(cp, &["pod", "once"])?;
    ensure!(p["spec"]["restartPolicy"] == "Never", "{p}");
    ensure!(p["metadata"]["labels"] == json!({"tier": "batch"}), "{p}");
    let c = &p["spec"]["containers"][0];
    ensure!(c["args"] == json!(["sh", "-c", "echo $GREETING"]), "{c}");
    ensure!(
        c["env"] == json!([{"name": "GREETING", "value": "hi"}]),
        "{c}"
    );
    ensure!(p["spec"]["dnsPolicy"] == "ClusterFirst", "{p}");

    cp.kubectl_ok(&[
        "expose",
        "deployment",
        "web",
        "--port=8080",
        "--target-port=80",
    ])?;
    let s = get(cp, &["service", "web"])?;
    ensure!(s["spec"]["selector"] == json!({"app": "web"}), "{s}");
    ensure!(
        s["spec"]["ports"] == json!([{"port": 8080, "protocol": "TCP", "targetPort": 80}]),
        "{s}"
    );
    ensure!(
        s["spec"]["clusterIP"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10.")),
        "{s}"
    );

    cp.kubectl_ok(&["create", "service", "nodeport", "np", "--tcp=80:8080"])?;
    let s = get(cp, &["service", "np"])?;
    let node_port = s["spec"]["ports"][0]["nodePort"].as_i64().unwrap_or(0);
    ensure!(
        (30000..=32767).contains(&node_port),
        "a nodePort is allocated: {s}"
    );
    ensure!(s["spec"]["ports"][0]["targetPort"] == 8080, "{s}");

    cp.kubectl_ok(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=color=blue",
        "--from-literal=size=10",
    ])?;
    let cm = get(cp, &["configmap", "settings"])?;
    ensure!(cm["data"] == json!({"color": "blue", "size": "10"}), "{cm}");

    cp.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=pw=hunter2",
    ])?;
    let secret = get(cp, &["secret", "creds"])?;
    ensure!(secret["data"] == json!({"pw": "aHVudGVyMg=="}), "{secret}");
    ensure!(secret["type"] == "Opaque", "{secret}");

    cp.kubectl_ok(&[
        "create",
        "job",
        "hello",
        "--image=busybox:1.36",
        "--",
        "echo",
        "hi",
    ])?;
    let job = get(cp, &["job", "hello"])?;
    ensure!(
        job["spec"]["template"]["spec"]["restartPolicy"] == "Never",
        "{job}"
    );
    ensure!(job["spec"]["backoffLimit"] == 6, "defaulted: {job}");

    cp.kubectl_ok(&[
        "create",
        "cronjob",
        "tick",
        "--image=busybox:1.36",
        "--schedule=*/5 * * * *",
        "--",
        "date",
    ])?;
    let cj = get(cp, &["cronjob", "tick"])?;
    ensure!(cj["spec"]["schedule"] == "*/5 * * * *", "{cj}");
    ensure!(
        cj["spec"]["concurrencyPolicy"] == "Allow",
        "defaulted: {cj}"
    );

    cp.kubectl_ok(&["create", "namespace", "team-a"])?;
    cp.kubectl_ok(&["create", "serviceaccount", "robot", "-n", "team-a"])?;
    cp.kubectl_ok(&[
        "create",
        "quota",
        "small",
        "--hard=pods=2,requests.cpu=1",
        "-n",
        "team-a",
    ])?;
    let q = get(cp, &["quota", "small", "-n", "team-a"])?;
    ensure!(
        q["spec"]["hard"] == json!({"pods": "2", "requests.cpu": "1"}),
        "{q}"
    );
    get(cp, &["serviceaccount", "robot", "-n", "team-a"])?;

    // What protobuf cannot fix: the server's validation still answers as for JSON.
    let bad = cp.kubectl(&["create", "deployment", "Bad_Name", "--image=busybox"])?;
    ensure!(!bad.status.success(), "an invalid name is refused");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    ensure!(
        stderr.contains("Invalid value") || stderr.contains("invalid"),
        "{stderr}"
    );
    Ok(())
}
