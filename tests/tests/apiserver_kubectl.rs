//! The real `kubectl` against `skiff apiserver` on a real 3-member skiff store, with
//! kubectl's default (strict, OpenAPI-driven) validation: discovery, create and apply of
//! manifests from the Kubernetes documentation, apply after an edit (strategic merge),
//! prune, every `get` form, watch, label/annotate/patch/scale, delete forms, describe.
//! One control plane serves the whole walk: each step builds on the previous ones, as a
//! user's session does.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use skiff_tests::control_plane::ControlPlane;

fn manifests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests")
}

fn manifest(name: &str) -> String {
    manifests().join(name).display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_manages_objects_end_to_end() {
    let cp = ControlPlane::start(1).await.unwrap();
    walk(&cp).unwrap();
}

fn json_of(cp: &ControlPlane, args: &[&str]) -> Result<Value> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    Ok(serde_json::from_str(&cp.kubectl_ok(&all)?)?)
}

fn walk(cp: &ControlPlane) -> Result<()> {
    // Discovery: short names and the scale subresource are what later steps rely on.
    let resources = cp.kubectl_ok(&["api-resources"])?;
    for line in [
        "deployments ",
        "deploy ",
        "apps/v1",
        "cronjobs ",
        "cj ",
        "configmaps ",
        "cm ",
    ] {
        ensure!(
            resources.contains(line),
            "api-resources lacks {line:?}:\n{resources}"
        );
    }
    let version = cp.kubectl_ok(&["version", "-o", "json"])?;
    let version: Value = serde_json::from_str(&version)?;
    assert_eq!(version["serverVersion"]["minor"], "33");

    // create and apply with kubectl's default validation (needs /openapi/v3).
    cp.kubectl_ok(&["create", "-f", &manifest("game-demo-configmap.yaml")])?;
    for m in [
        "nginx-deployment.yaml",
        "my-service.yaml",
        "basic-auth-secret.yaml",
        "hello-cronjob.yaml",
        "game-demo-configmap.yaml",
    ] {
        let out = cp.kubectl_ok(&["apply", "-f", &manifest(m)])?;
        ensure!(
            out.contains("created") || out.contains("configured"),
            "{m}: {out}"
        );
    }
    let svc = json_of(cp, &["get", "service", "my-service"])?;
    let ip = svc["spec"]["clusterIP"].as_str().context("clusterIP")?;
    ensure!(
        ip.starts_with("10."),
        "clusterIP {ip} not from the service range"
    );
    let secret = json_of(cp, &["get", "secret", "secret-basic-auth"])?;
    assert_eq!(
        secret["data"]["username"], "YWRtaW4=",
        "stringData is merged into data"
    );

    // Strict validation from kubectl: an unknown field is refused and nothing is stored.
    let bad = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: typo\ndataa:\n  a: b\n";
    let out = cp.kubectl_with_stdin(&["apply", "-f", "-"], bad)?;
    ensure!(!out.status.success(), "an unknown field was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        err.contains("dataa"),
        "the error does not name the field: {err}"
    );
    ensure!(
        !cp.kubectl(&["get", "cm", "typo"])?.status.success(),
        "typo was stored"
    );

    // apply after an edit: new image and a new env var; strategic merge keeps the rest.
    let edited = std::fs::read_to_string(manifests().join("nginx-deployment.yaml"))?
        .replace("nginx:1.14.2", "nginx:1.16.1")
        .replace(
            "        ports:\n",
            "        env:\n        - name: MODE\n          value: fast\n        ports:\n",
        );
    cp.kubectl_ok_stdin(&["apply", "-f", "-"], &edited)?;
    let deploy = json_of(cp, &["get", "deployment", "nginx-deployment"])?;
    let c = &deploy["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "nginx:1.16.1");
    assert_eq!(c["env"][0]["name"], "MODE");
    assert_eq!(c["ports"][0]["containerPort"], 80);
    assert_eq!(deploy["metadata"]["generation"], 2);
    assert_eq!(
        deploy["spec"]["strategy"]["rollingUpdate"]["maxSurge"],
        "25%"
    );

    // apply --prune -l: what leaves the labelled set is deleted.
    let dir = cp.dir().join("prune");
    std::fs::create_dir_all(&dir)?;
    for n in ["keep", "drop"] {
        std::fs::write(
            dir.join(format!("{n}.yaml")),
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {n}\n  labels:\n    app: x\ndata:\n  k: v\n"),
        )?;
    }
    let dir_s = dir.display().to_string();
    cp.kubectl_ok(&["apply", "--prune", "-l", "app=x", "-f", &dir_s])?;
    std::fs::remove_file(dir.join("drop.yaml"))?;
    let out = cp.kubectl_ok(&["apply", "--prune", "-l", "app=x", "-f", &dir_s])?;
    ensure!(out.contains("configmap/drop pruned"), "{out}");
    let names = cp.kubectl_ok(&["get", "cm", "-l", "app=x", "-o", "name"])?;
    assert_eq!(names.trim(), "configmap/keep");

    // get in every form.
    let table = cp.kubectl_ok(&["get", "deployments"])?;
    ensure!(
        table.starts_with("NAME") && table.contains("READY") && table.contains("UP-TO-DATE"),
        "{table}"
    );
    let wide = cp.kubectl_ok(&["get", "deployments", "-o", "wide"])?;
    ensure!(
        wide.contains("IMAGES") && wide.contains("nginx:1.16.1") && wide.contains("app=nginx"),
        "{wide}"
    );
    let yaml = cp.kubectl_ok(&["get", "cm", "game-demo", "-o", "yaml"])?;
    ensure!(
        yaml.contains("player_initial_lives: \"3\"") && yaml.contains("resourceVersion:"),
        "{yaml}"
    );
    let name = cp.kubectl_ok(&["get", "cronjob", "-o", "name"])?;
    assert_eq!(name.trim(), "cronjob.batch/hello");
    let all_ns = cp.kubectl_ok(&["get", "namespaces"])?;
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        ensure!(all_ns.contains(ns), "{all_ns}");
    }
    let everywhere = cp.kubectl_ok(&["get", "services", "-A"])?;
    ensure!(
        everywhere.contains("NAMESPACE")
            && everywhere.contains("kubernetes")
            && everywhere.contains("my-service"),
        "{everywhere}"
    );
    let all = cp.kubectl_ok(&["get", "all"])?;
    for what in [
        "service/my-service",
        "deployment.apps/nginx-deployment",
        "cronjob.batch/hello",
    ] {
        ensure!(all.contains(what), "get all lacks {what}:\n{all}");
    }
    let cj_table = cp.kubectl_ok(&["get", "cj", "hello"])?;
    ensure!(
        cj_table.contains("SCHEDULE") && cj_table.contains("* * * * *"),
        "{cj_table}"
    );

    // get -w sees a change made after it started.
    let mut watch = cp
        .kubectl_cmd()
        .args([
            "get",
            "configmap",
            "keep",
            "-w",
            "-o",
            "jsonpath={.data.k}{\"\\n\"}",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdout = watch.stdout.take().context("watch stdout")?;
    let reader = std::thread::spawn(move || {
        let mut seen = String::new();
        let mut buf = [0u8; 256];
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && !seen.contains("changed") {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        seen
    });
    // The first line is the current value; change it once the watch has printed it.
    std::thread::sleep(Duration::from_millis(1500));
    cp.kubectl_ok(&[
        "patch",
        "configmap",
        "keep",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"k":"changed"}}"#,
    ])?;
    let seen = loop {
        if reader.is_finished() {
            break reader.join().unwrap_or_default();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = watch.kill();
    let _ = watch.wait();
    ensure!(
        seen.contains("changed"),
        "get -w did not see the change: {seen:?}"
    );

    // label, annotate, and the three patch types.
    cp.kubectl_ok(&["label", "deployment", "nginx-deployment", "tier=web"])?;
    let labelled = cp.kubectl_ok(&["get", "deploy", "-l", "tier=web", "-o", "name"])?;
    assert_eq!(labelled.trim(), "deployment.apps/nginx-deployment");
    cp.kubectl_ok(&["annotate", "configmap", "game-demo", "owner=games"])?;
    cp.kubectl_ok(&[
        "patch",
        "deployment",
        "nginx-deployment",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.17"}]}}}}"#,
    ])?;
    cp.kubectl_ok(&[
        "patch",
        "configmap",
        "game-demo",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"player_initial_lives":"5"}}"#,
    ])?;
    cp.kubectl_ok(&[
        "patch",
        "configmap",
        "game-demo",
        "--type",
        "json",
        "-p",
        r#"[{"op":"add","path":"/data/extra","value":"1"}]"#,
    ])?;
    let deploy = json_of(cp, &["get", "deployment", "nginx-deployment"])?;
    let c = &deploy["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "nginx:1.17");
    assert_eq!(
        c["env"][0]["name"], "MODE",
        "the strategic patch kept the env"
    );
    let cm = json_of(cp, &["get", "configmap", "game-demo"])?;
    assert_eq!(cm["data"]["player_initial_lives"], "5");
    assert_eq!(cm["data"]["extra"], "1");
    assert_eq!(cm["metadata"]["annotations"]["owner"], "games");

    // scale goes through the scale subresource.
    cp.kubectl_ok(&["scale", "deployment", "nginx-deployment", "--replicas=5"])?;
    let deploy = json_of(cp, &["get", "deployment", "nginx-deployment"])?;
    assert_eq!(deploy["spec"]["replicas"], 5);

    // describe a pod and a deployment.
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels:\n    app: web\nspec:\n  containers:\n  - name: c\n    image: busybox\n    command: [\"sleep\", \"3600\"]\n";
    cp.kubectl_ok_stdin(&["create", "-f", "-"], pod)?;
    let described = cp.kubectl_ok(&["describe", "pod", "web"])?;
    for line in [
        "Name:",
        "web",
        "Status:",
        "Pending",
        "QoS Class:",
        "BestEffort",
        "Tolerations:",
    ] {
        ensure!(
            described.contains(line),
            "describe pod lacks {line:?}:\n{described}"
        );
    }
    let described = cp.kubectl_ok(&["describe", "deployment", "nginx-deployment"])?;
    for line in [
        "Selector:",
        "app=nginx",
        "Replicas:",
        "5 desired",
        "RollingUpdateStrategy:",
        "MODE:",
    ] {
        ensure!(
            described.contains(line),
            "describe deployment lacks {line:?}:\n{described}"
        );
    }

    // delete by name, by label, and --all.
    let out = cp.kubectl_ok(&["delete", "cronjob", "hello"])?;
    ensure!(out.contains("cronjob.batch \"hello\" deleted"), "{out}");
    cp.kubectl_ok(&["label", "configmap", "game-demo", "app=x"])?;
    cp.kubectl_ok(&["delete", "configmap", "-l", "app=x"])?;
    let left = cp.kubectl_ok(&["get", "configmap", "-o", "name"])?;
    ensure!(
        !left.contains("game-demo") && !left.contains("keep"),
        "{left}"
    );
    cp.kubectl_ok(&["delete", "deployments", "--all"])?;
    let left = cp.kubectl_ok(&["get", "deployments", "-o", "name"])?;
    ensure!(left.trim().is_empty(), "{left}");
    Ok(())
}
