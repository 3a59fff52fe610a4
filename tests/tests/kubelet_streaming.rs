//! `kubectl exec` and `kubectl cp` through the apiserver's proxy to `skiff kubelet`'s
//! streaming API (WebSocket, v5.channel.k8s.io), against a real pod in containerd.

use std::time::Duration;

use anyhow::{bail, ensure, Result};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use skiff_client::{Api, Client, PostParams};
use skiff_tests::control_plane::ControlPlane;
use skiff_tests::kubelet::{ensure_images, image, KubeletNode};
use skiff_tests::wait::eventually;

const TIMEOUT: Duration = Duration::from_secs(90);

fn sleeper(name: &str, node: &str) -> Pod {
    let container = |name: &str| Container {
        name: name.into(),
        image: Some(image("busybox")),
        command: Some(vec!["sleep".into(), "3600".into()]),
        ..Default::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            termination_grace_period_seconds: Some(1),
            containers: vec![container("main"), container("side")],
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_exec_and_cp_reach_the_container() -> Result<()> {
    tokio::task::spawn_blocking(ensure_images).await??;
    let cp = ControlPlane::start(1).await?;
    let node = KubeletNode::start(&cp, "kl-exec", &[])?;
    let client = Client::from_kubeconfig(Some(cp.kubeconfig()), None)?;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    pods.create(&PostParams::default(), &sleeper("shell", &node.name))
        .await?;
    eventually("pod shell Running", TIMEOUT, || async {
        let p = pods.get("shell").await?;
        let phase = p.status.as_ref().and_then(|s| s.phase.clone());
        if phase.as_deref() == Some("Running") {
            return Ok(Some(()));
        }
        bail!("phase {phase:?}")
    })
    .await?;

    // stdout and stderr apart, and the exit code as kubectl's own.
    let out = cp.kubectl(&[
        "exec",
        "shell",
        "-c",
        "main",
        "--",
        "sh",
        "-c",
        "echo to-out; echo to-err >&2; exit 3",
    ])?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    ensure!(
        out.status.code() == Some(3),
        "exit {:?}: {stderr}",
        out.status
    );
    ensure!(stdout == "to-out\n", "stdout {stdout:?}");
    ensure!(stderr.contains("to-err"), "stderr {stderr:?}");

    // The command runs in the chosen container, inside the pod's network namespace.
    let hostname = cp.kubectl_ok(&["exec", "shell", "-c", "side", "--", "hostname"])?;
    ensure!(hostname.trim() == "shell", "hostname {hostname:?}");

    // stdin reaches the command and its end closes the command's stdin.
    let echoed = cp.kubectl_ok_stdin(
        &[
            "exec",
            "-i",
            "shell",
            "-c",
            "main",
            "--",
            "sh",
            "-c",
            "tr a-z A-Z; echo done",
        ],
        "hello through stdin\n",
    )?;
    ensure!(echoed == "HELLO THROUGH STDIN\ndone\n", "echoed {echoed:?}");

    // Without -c in a two-container pod kubectl picks the first one, as it says.
    let defaulted = cp.kubectl(&["exec", "shell", "--", "true"])?;
    ensure!(defaulted.status.success(), "{defaulted:?}");

    // A command that does not exist is an error, not a hang.
    let missing = cp.kubectl(&["exec", "shell", "-c", "main", "--", "/no/such/program"])?;
    ensure!(!missing.status.success(), "{missing:?}");

    // cp both ways (tar through exec).
    let dir = tempfile::tempdir()?;
    let local = dir.path().join("payload.txt");
    let payload: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&local, &payload)?;
    cp.kubectl_ok(&[
        "cp",
        local.to_str().unwrap_or_default(),
        "default/shell:/tmp/payload.txt",
        "-c",
        "main",
    ])?;
    let inside = cp.kubectl_ok(&[
        "exec",
        "shell",
        "-c",
        "main",
        "--",
        "wc",
        "-l",
        "/tmp/payload.txt",
    ])?;
    ensure!(inside.trim().starts_with("20000"), "wc {inside:?}");
    let back = dir.path().join("back.txt");
    cp.kubectl_ok(&[
        "cp",
        "default/shell:/tmp/payload.txt",
        back.to_str().unwrap_or_default(),
        "-c",
        "main",
    ])?;
    ensure!(
        std::fs::read_to_string(&back)? == payload,
        "the copy came back different"
    );

    // A container that is not in the pod gets the apiserver's message.
    let wrong = cp.kubectl(&["exec", "shell", "-c", "nope", "--", "true"])?;
    let msg = String::from_utf8_lossy(&wrong.stderr);
    ensure!(
        !wrong.status.success() && msg.contains("nope"),
        "wrong container: {msg}"
    );
    drop(node);
    Ok(())
}
