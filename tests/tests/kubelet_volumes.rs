//! Pod volumes through `skiff kubelet` on real containerd: configMap and secret
//! volumes (an update is seen in the mounted file), an emptyDir shared by two
//! containers, a memory emptyDir as tmpfs, downwardAPI labels, hostPath, read-only
//! mounts, subPath, subPathExpr (expanded from the container's env; a missing variable
//! is CreateContainerConfigError); an unsupported volume type is a clear container error;
//! projected service account tokens from the TokenRequest API, bound to the pod and
//! verified against the apiserver's published key; and nothing (no mount, no directory)
//! is left once the pod is gone.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use skiff_client::{Api, Client, DeleteParams, PostParams};
use skiff_tests::control_plane::ControlPlane;
use skiff_tests::kubelet::{ensure_images, image, KubeletNode};
use skiff_tests::wait::eventually;

const TIMEOUT: Duration = Duration::from_secs(90);

fn exec(cp: &ControlPlane, container: &str, script: &str) -> Result<String> {
    cp.kubectl_ok(&["exec", "vols", "-c", container, "--", "sh", "-c", script])
}

/// Waits until `script` in `container` prints `want`.
async fn exec_until(cp: &ControlPlane, container: &str, script: &str, want: &str) -> Result<()> {
    eventually(&format!("{script:?} prints {want:?}"), TIMEOUT, || async {
        let out = exec(cp, container, script)?;
        if out == want {
            return Ok(Some(()));
        }
        bail!("it printed {out:?}")
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_are_mounted_updated_in_place_and_removed() -> Result<()> {
    tokio::task::spawn_blocking(ensure_images).await??;
    let cp = ControlPlane::start(1).await?;
    let node = KubeletNode::start(&cp, "kl-vol", &[])?;
    let client = Client::from_kubeconfig(Some(cp.kubeconfig()), None)?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let host_dir = tempfile::tempdir()?;
    let host_path = host_dir.path().join("made-by-kubelet");

    cms.create(
        &PostParams::default(),
        &serde_json::from_value(serde_json::json!({
            "metadata": {"name": "cfg"},
            "data": {"greeting": "hello", "other": "x"},
        }))?,
    )
    .await?;
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "sec"},
                "stringData": {"password": "s3cret"},
            }))?,
        )
        .await?;
    let busybox = image("busybox");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "vols", "labels": {"app": "vols"}},
        "spec": {
            "nodeName": node.name,
            "terminationGracePeriodSeconds": 1,
            "volumes": [
                {"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "greeting", "path": "greeting"}]}},
                {"name": "sec", "secret": {"secretName": "sec", "defaultMode": 0o400}},
                {"name": "shared", "emptyDir": {}},
                {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
                {"name": "podinfo", "downwardAPI": {"items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                ]}},
                {"name": "host", "hostPath": {"path": host_path.display().to_string(), "type": "DirectoryOrCreate"}},
            ],
            "containers": [
                {
                    "name": "writer", "image": busybox,
                    "command": ["sh", "-c", "echo from-writer > /shared/sub/note; echo on-host > /host/hello; exec sleep 3600"],
                    "volumeMounts": [
                        {"name": "shared", "mountPath": "/shared/sub", "subPath": "deep/dir"},
                        {"name": "host", "mountPath": "/host"},
                    ],
                },
                {
                    "name": "reader", "image": busybox,
                    "command": ["sleep", "3600"],
                    "volumeMounts": [
                        {"name": "cfg", "mountPath": "/etc/cfg"},
                        {"name": "sec", "mountPath": "/etc/sec"},
                        {"name": "shared", "mountPath": "/shared", "readOnly": true},
                        {"name": "mem", "mountPath": "/mem"},
                        {"name": "podinfo", "mountPath": "/etc/podinfo"},
                    ],
                },
            ],
        },
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    let running = eventually("pod vols Running", TIMEOUT, || async {
        let p = pods.get("vols").await?;
        let phase = p.status.as_ref().and_then(|s| s.phase.clone());
        if phase.as_deref() == Some("Running") {
            return Ok(Some(p));
        }
        bail!("phase {phase:?}: {:?}", p.status)
    })
    .await?;
    let uid = running.metadata.uid.clone().context("uid")?;

    ensure!(exec(&cp, "reader", "cat /etc/cfg/greeting")? == "hello");
    ensure!(
        exec(&cp, "reader", "ls /etc/cfg")? == "greeting\n",
        "items limit the keys"
    );
    ensure!(exec(&cp, "reader", "cat /etc/sec/password")? == "s3cret");
    ensure!(exec(&cp, "reader", "stat -L -c %a /etc/sec/password")? == "400\n");
    // One emptyDir, two containers: the writer's subPath is a directory of the reader's.
    exec_until(&cp, "reader", "cat /shared/deep/dir/note", "from-writer\n").await?;
    let ro = cp.kubectl(&["exec", "vols", "-c", "reader", "--", "touch", "/shared/x"])?;
    ensure!(!ro.status.success(), "a readOnly mount is writable");
    let api_ro = cp.kubectl(&["exec", "vols", "-c", "reader", "--", "touch", "/etc/cfg/x"])?;
    ensure!(!api_ro.status.success(), "a configMap volume is writable");
    ensure!(
        exec(&cp, "reader", "grep ' /mem ' /proc/mounts | cut -d' ' -f3")? == "tmpfs\n",
        "medium Memory is a tmpfs"
    );
    ensure!(exec(&cp, "reader", "cat /etc/podinfo/labels")? == "app=\"vols\"");
    ensure!(exec(&cp, "reader", "cat /etc/podinfo/name")? == "vols");
    eventually("the hostPath file", TIMEOUT, || async {
        let text = std::fs::read_to_string(host_path.join("hello")).unwrap_or_default();
        Ok((text == "on-host\n").then_some(()))
    })
    .await?;

    // Updates reach the mounted files in place.
    cp.kubectl_ok(&[
        "patch",
        "configmap",
        "cfg",
        "--type=merge",
        "-p",
        r#"{"data":{"greeting":"updated"}}"#,
    ])?;
    exec_until(&cp, "reader", "cat /etc/cfg/greeting", "updated").await?;
    cp.kubectl_ok(&[
        "patch",
        "secret",
        "sec",
        "--type=merge",
        "-p",
        r#"{"stringData":{"password":"rotated"}}"#,
    ])?;
    exec_until(&cp, "reader", "cat /etc/sec/password", "rotated").await?;
    cp.kubectl_ok(&["label", "pod", "vols", "tier=web"])?;
    exec_until(
        &cp,
        "reader",
        "cat /etc/podinfo/labels",
        "app=\"vols\"\ntier=\"web\"",
    )
    .await?;

    // A volume type this kubelet does not provide is named in the container's status.
    let pvc: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "claims"},
        "spec": {
            "nodeName": node.name,
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "c"}}],
            "containers": [{"name": "main", "image": image("busybox"), "command": ["sleep", "1"],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
        },
    }))?;
    pods.create(&PostParams::default(), &pvc).await?;
    eventually(
        "claims shows CreateContainerConfigError",
        TIMEOUT,
        || async {
            let p = pods.get("claims").await?;
            let waiting = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.first())
                .and_then(|c| c.state.as_ref())
                .and_then(|s| s.waiting.clone());
            match waiting {
                Some(w)
                    if w.reason.as_deref() == Some("CreateContainerConfigError")
                        && w.message.as_deref().is_some_and(|m| {
                            m.contains("persistentVolumeClaim volumes are not supported")
                        }) =>
                {
                    Ok(Some(()))
                }
                other => bail!("waiting {other:?}"),
            }
        },
    )
    .await?;

    // Deleting the pods removes their volumes: the tmpfs is unmounted, the dirs gone.
    for name in ["vols", "claims"] {
        pods.delete(name, &DeleteParams::default()).await?;
    }
    eventually("pods gone", TIMEOUT, || async {
        let left = pods.list(&Default::default()).await?.items.len();
        Ok((left == 0).then_some(()))
    })
    .await?;
    let pod_dir = node.root_dir().join("pods").join(&uid);
    eventually("nothing left behind", TIMEOUT, || async {
        let l = node.leftovers()?;
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
        let mounted = mounts.contains(&pod_dir.display().to_string());
        if l.is_empty() && !mounted && !pod_dir.exists() {
            return Ok(Some(()));
        }
        bail!("left: {l:?}, tmpfs mounted: {mounted}")
    })
    .await?;
    ensure!(
        std::fs::read_to_string(host_path.join("hello"))? == "on-host\n",
        "a hostPath outlives its pod"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_path_expr_expands_the_containers_env() -> Result<()> {
    tokio::task::spawn_blocking(ensure_images).await??;
    let cp = ControlPlane::start(1).await?;
    let node = KubeletNode::start(&cp, "kl-subexpr", &[])?;
    let client = Client::from_kubeconfig(Some(cp.kubeconfig()), None)?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = |name: &str, mount: serde_json::Value| -> Result<Pod> {
        Ok(serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {
                "nodeName": node.name,
                "terminationGracePeriodSeconds": 1,
                "volumes": [{"name": "scratch", "emptyDir": {}}],
                "containers": [{
                    "name": "main",
                    "image": image("busybox"),
                    "command": ["sh", "-c", "echo mine > /mine/f && sleep 3600"],
                    "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                    "volumeMounts": [
                        {"name": "scratch", "mountPath": "/all"},
                        mount,
                    ],
                }],
            },
        }))?)
    };
    pods.create(
        &PostParams::default(),
        &pod(
            "expr",
            serde_json::json!({"name": "scratch", "mountPath": "/mine", "subPathExpr": "logs/$(POD_NAME)"}),
        )?,
    )
    .await?;
    pods.create(
        &PostParams::default(),
        &pod(
            "missing",
            serde_json::json!({"name": "scratch", "mountPath": "/mine", "subPathExpr": "$(NOT_SET)"}),
        )?,
    )
    .await?;
    eventually("the file under the expanded subPath", TIMEOUT, || async {
        let out = cp.kubectl(&["exec", "expr", "--", "cat", "/all/logs/expr/f"])?;
        if out.status.success() && String::from_utf8_lossy(&out.stdout) == "mine\n" {
            return Ok(Some(()));
        }
        bail!("{}", String::from_utf8_lossy(&out.stderr))
    })
    .await?;
    eventually(
        "CreateContainerConfigError naming the variable",
        TIMEOUT,
        || async {
            let p = pods.get("missing").await?;
            let waiting = p
                .status
                .and_then(|s| s.container_statuses)
                .and_then(|c| c.into_iter().next())
                .and_then(|c| c.state?.waiting)
                .context("no waiting state yet")?;
            if waiting.reason.as_deref() == Some("CreateContainerConfigError")
                && waiting
                    .message
                    .as_deref()
                    .is_some_and(|m| m.contains("missing value for NOT_SET"))
            {
                return Ok(Some(()));
            }
            bail!("{waiting:?}")
        },
    )
    .await?;
    let both = pod(
        "both",
        serde_json::json!({"name": "scratch", "mountPath": "/mine", "subPath": "a", "subPathExpr": "$(POD_NAME)"}),
    )?;
    let err = pods
        .create(&PostParams::default(), &both)
        .await
        .err()
        .context("a pod with subPath and subPathExpr was accepted")?;
    ensure!(
        err.to_string().contains("mutually exclusive"),
        "unexpected error: {err}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projected_service_account_tokens_are_bound_to_the_pod() -> Result<()> {
    tokio::task::spawn_blocking(ensure_images).await??;
    let cp = ControlPlane::start(1).await?;
    let node = KubeletNode::start(&cp, "kl-token", &[])?;
    let client = Client::from_kubeconfig(Some(cp.kubeconfig()), None)?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // The account does not exist yet: the pod waits, saying why, until it does.
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "tok"},
        "spec": {
            "nodeName": node.name,
            "serviceAccountName": "robot",
            "terminationGracePeriodSeconds": 1,
            "volumes": [{"name": "api", "projected": {"defaultMode": 0o440, "sources": [
                {"serviceAccountToken": {"path": "token"}},
                {"serviceAccountToken": {"path": "vault/token", "audience": "vault", "expirationSeconds": 600}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
            ]}}],
            "containers": [{"name": "main", "image": image("busybox"), "command": ["sleep", "3600"],
                "volumeMounts": [{"name": "api", "mountPath": "/var/run/secrets/tokens", "readOnly": true}]}],
        },
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    eventually("tok waits for its service account", TIMEOUT, || async {
        let p = pods.get("tok").await?;
        let waiting = p
            .status
            .and_then(|s| s.container_statuses)
            .and_then(|c| c.into_iter().next())
            .and_then(|c| c.state?.waiting)
            .context("no waiting state yet")?;
        match waiting.message.as_deref() {
            Some(m) if m.contains(r#"serviceaccounts "robot" not found"#) => Ok(Some(())),
            _ => bail!("{waiting:?}"),
        }
    })
    .await?;
    let events = cp.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=tok,reason=FailedMount",
        "-o",
        "jsonpath={.items[*].message}",
    ])?;
    ensure!(events.contains("robot"), "no FailedMount event: {events:?}");
    cp.kubectl_ok(&["create", "serviceaccount", "robot"])?;
    let running = eventually("tok Running", TIMEOUT, || async {
        let p = pods.get("tok").await?;
        let phase = p.status.as_ref().and_then(|s| s.phase.clone());
        if phase.as_deref() == Some("Running") {
            return Ok(Some(p));
        }
        bail!("phase {phase:?}")
    })
    .await?;
    let uid = running.metadata.uid.clone().context("uid")?;
    let jwks: serde_json::Value =
        serde_json::from_str(&cp.kubectl_ok(&["get", "--raw", "/openid/v1/jwks"])?)?;
    let read = |path: &str| {
        cp.kubectl_ok(&[
            "exec",
            "tok",
            "--",
            "cat",
            &format!("/var/run/secrets/tokens/{path}"),
        ])
    };
    let own = skiff_tests::jwt::verify(&read("token")?, &jwks)?;
    let vault = skiff_tests::jwt::verify(&read("vault/token")?, &jwks)?;
    ensure!(read("namespace")? == "default");
    for claims in [&own, &vault] {
        ensure!(
            claims["sub"] == "system:serviceaccount:default:robot",
            "{claims}"
        );
        let k8s = &claims["kubernetes.io"];
        ensure!(
            k8s["pod"] == serde_json::json!({"name": "tok", "uid": uid}),
            "{claims}"
        );
        ensure!(k8s["node"]["name"] == node.name.as_str(), "{claims}");
    }
    ensure!(
        own["aud"] == serde_json::json!(["https://kubernetes.default.svc.cluster.local"]),
        "{own}"
    );
    ensure!(vault["aud"] == serde_json::json!(["vault"]), "{vault}");
    let lifetime =
        |c: &serde_json::Value| c["exp"].as_i64().zip(c["iat"].as_i64()).map(|(e, i)| e - i);
    ensure!(lifetime(&own) == Some(3600) && lifetime(&vault) == Some(600));
    ensure!(
        cp.kubectl_ok(&[
            "exec",
            "tok",
            "--",
            "stat",
            "-L",
            "-c",
            "%a",
            "/var/run/secrets/tokens/token"
        ])? == "440\n",
        "defaultMode applies to the token"
    );
    pods.delete("tok", &DeleteParams::default()).await?;
    eventually("nothing left behind", TIMEOUT, || async {
        let l = node.leftovers()?;
        let gone = pods.get_opt("tok").await?.is_none();
        if l.is_empty() && gone {
            return Ok(Some(()));
        }
        bail!("left: {l:?}, pod gone: {gone}")
    })
    .await?;
    Ok(())
}
