//! `docker save` archives in `--image-dir`: the test busybox image, converted from its
//! OCI archive into a docker archive with skopeo, is imported at the kubelet's start
//! under its RepoTags and runs a pod that may not pull.

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Result};
use k8s_openapi::api::core::v1::Pod;
use skiff_client::{Api, Client, PostParams};
use skiff_tests::control_plane::ControlPlane;
use skiff_tests::kubelet::{archive_dir, ensure_images, KubeletNode};
use skiff_tests::wait::eventually;

const TIMEOUT: Duration = Duration::from_secs(90);
/// On a reserved domain: it can only come from the archive.
const NAME: &str = "skiff.invalid/docker/busybox:1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_save_archives_are_imported_by_repo_tag() -> Result<()> {
    tokio::task::spawn_blocking(ensure_images).await??;
    let images = tempfile::tempdir()?;
    let docker_archive = images.path().join("busybox-docker.tar");
    let out = Command::new("skopeo")
        .arg("copy")
        .arg(format!(
            "oci-archive:{}",
            archive_dir().join("busybox.tar").display()
        ))
        .arg(format!(
            "docker-archive:{}:{NAME}",
            docker_archive.display()
        ))
        .output()?;
    ensure!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What makes it a docker archive: manifest.json with RepoTags, no index.json.
    let listing = Command::new("tar")
        .arg("-tf")
        .arg(&docker_archive)
        .output()?;
    let listing = String::from_utf8_lossy(&listing.stdout);
    ensure!(
        listing.lines().any(|l| l == "manifest.json") && !listing.contains("index.json"),
        "not a docker archive: {listing}"
    );

    let cp = ControlPlane::start(1).await?;
    let dir = images.path().display().to_string();
    let node = KubeletNode::start(&cp, "kl-docker", &["--image-dir", &dir])?;
    eventually("the archive imported", TIMEOUT, || async {
        let names = node.ctr(&["images", "ls", "-q"])?;
        if names.lines().any(|l| l == NAME) {
            return Ok(Some(()));
        }
        bail!("images: {names:?}")
    })
    .await?;

    let client = Client::from_kubeconfig(Some(cp.kubeconfig()), None)?;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "from-archive"},
        "spec": {
            "nodeName": node.name,
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": NAME, "imagePullPolicy": "Never",
                "command": ["sh", "-c", "echo ran from a docker archive"]}],
        },
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    eventually("pod Succeeded", TIMEOUT, || async {
        let p = pods.get("from-archive").await?;
        let phase = p.status.as_ref().and_then(|s| s.phase.clone());
        if phase.as_deref() == Some("Succeeded") {
            return Ok(Some(()));
        }
        bail!("phase {phase:?}: {:?}", p.status)
    })
    .await?;
    let logs = cp.kubectl_ok(&["logs", "from-archive"])?;
    ensure!(logs == "ran from a docker archive\n", "logs {logs:?}");
    Ok(())
}
