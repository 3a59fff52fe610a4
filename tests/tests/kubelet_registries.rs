//! `--registry-config` (containers-registries.conf(5) version 2): a plain-HTTP registry
//! and an HTTPS one with a self-signed certificate, on a non-loopback address (on a
//! bridge the test makes), are refused with a clear message without the file and used
//! with `insecure = true` (HTTPS without certificate checks, else plain HTTP); mirrors are tried
//! in order before the registry itself; a bad file stops the kubelet at startup naming
//! the file, line and key; a registry that asks for a password is pulled from with the
//! pod's imagePullSecrets (made by real `kubectl create secret docker-registry`). Bad
//! input (an unparsable reference, a registry answering 500 or nothing, a full disk
//! during a pull, a spec the kubelet cannot express) fails only its pod, with a reason,
//! a message and an Event. Real `docker-registry` processes, pushed with `skopeo`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use skiff_client::{Api, Client, ListParams, PostParams};
use skiff_tests::cluster::{dying_with_parent, skiff_binary, tail};
use skiff_tests::control_plane::{free_port, ControlPlane};
use skiff_tests::kubelet::{archive_dir, ensure_images, KubeletNode, PrivateContainerd};
use skiff_tests::wait::eventually;

const TIMEOUT: Duration = Duration::from_secs(120);

/// The user of the registry that asks for a password.
const REGISTRY_USER: &str = "puller";
/// Its password.
const REGISTRY_PASSWORD: &str = "skiff-test-password";
/// [`REGISTRY_PASSWORD`] as htpasswd keeps it (bcrypt, the only hash docker-registry
/// reads; cost 4 to keep the registry quick), made once with Python's crypt module.
const REGISTRY_PASSWORD_BCRYPT: &str =
    "$2b$04$WuhWIBbeaQqkULN2Gx73k.TI3yeU9nT0Ufc1gzfJlCPGMRr68pWRa";

/// A bridge with no ports and one non-loopback address (a local address of the host
/// all the same), removed on drop.
struct DummyAddress {
    device: String,
    ip: String,
}

impl DummyAddress {
    fn create() -> Result<DummyAddress> {
        let r: u32 = rand::random();
        let device = format!("skr{:08x}", r);
        let ip = format!("10.78.{}.{}", (r >> 8) % 250, 2 + r % 250);
        let guard = DummyAddress { device, ip };
        for args in [
            vec!["link", "add", &guard.device, "type", "bridge"],
            vec![
                "addr",
                "add",
                &format!("{}/32", guard.ip),
                "dev",
                &guard.device,
            ],
            vec!["link", "set", &guard.device, "up"],
        ] {
            let out = Command::new("ip").args(&args).output()?;
            ensure!(
                out.status.success(),
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(guard)
    }
}

impl Drop for DummyAddress {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.device])
            .output();
    }
}

/// A `docker-registry` holding the busybox test image, killed on drop.
struct TestRegistry {
    addr: String,
    dir: tempfile::TempDir,
    child: Child,
}

impl TestRegistry {
    fn start(ip: &str) -> Result<TestRegistry> {
        Self::start_with(ip, false, false)
    }

    /// A registry serving HTTPS with a self-signed certificate for `ip`.
    fn start_tls(ip: &str) -> Result<TestRegistry> {
        Self::start_with(ip, true, false)
    }

    /// A registry that asks for [`REGISTRY_USER`] and [`REGISTRY_PASSWORD`] (basic
    /// authentication, htpasswd).
    fn start_with_password(ip: &str) -> Result<TestRegistry> {
        Self::start_with(ip, false, true)
    }

    fn start_with(ip: &str, tls: bool, password: bool) -> Result<TestRegistry> {
        let dir = tempfile::Builder::new()
            .prefix("skiff-registry-")
            .tempdir()?;
        let addr = format!("{ip}:{}", free_port()?);
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        );
        if tls {
            let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            let out = Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                ])
                .args(["-subj", "/CN=skiff-test-registry"])
                .args(["-addext", &format!("subjectAltName=IP:{ip}")])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert)
                .output()
                .context("running openssl")?;
            ensure!(
                out.status.success(),
                "openssl: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
        }
        if password {
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(
                &htpasswd,
                format!("{REGISTRY_USER}:{REGISTRY_PASSWORD_BCRYPT}\n"),
            )?;
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: skiff-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        std::fs::write(dir.path().join("registry.yml"), config)?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let child = dying_with_parent(Path::new("/usr/bin/docker-registry"))
            .arg("serve")
            .arg(dir.path().join("registry.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting docker-registry (make deps installs it)")?;
        let registry = TestRegistry { addr, dir, child };
        let layout = archive_dir()
            .parent()
            .context("images dir")?
            .join("layouts/busybox");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let mut skopeo = Command::new("skopeo");
            skopeo.args(["copy", "--dest-tls-verify=false"]);
            if password {
                skopeo.arg(format!("--dest-creds={REGISTRY_USER}:{REGISTRY_PASSWORD}"));
            }
            let out = skopeo
                .arg(format!("oci:{}", layout.display()))
                .arg(format!("docker://{}/skiff-test/busybox:1", registry.addr))
                .output()
                .context("running skopeo (make deps installs it)")?;
            if out.status.success() {
                break;
            }
            if std::time::Instant::now() > deadline {
                bail!(
                    "pushing to {}: {}\n{}",
                    registry.addr,
                    String::from_utf8_lossy(&out.stderr),
                    registry.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        Ok(registry)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    fn log_tail(&self) -> String {
        tail(&self.log_path(), 20)
    }

    /// How many manifest GETs of the busybox image it has answered (its access log).
    fn manifest_gets(&self) -> usize {
        std::fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"GET /v2/skiff-test/busybox/manifests/1 "))
            .count()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn echo_pod(name: &str, node: &str, image: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            restart_policy: Some("Never".into()),
            termination_grace_period_seconds: Some(5),
            containers: vec![Container {
                name: "main".into(),
                image: Some(image.into()),
                command: Some(vec!["sh".into(), "-c".into(), "echo pulled".into()]),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn wait_succeeded(pods: &Api<Pod>, name: &str) -> Result<()> {
    eventually(&format!("pod {name} Succeeded"), TIMEOUT, || async {
        let p = pods.get(name).await?;
        let status = p.status.unwrap_or_default();
        if status.phase.as_deref() == Some("Succeeded") {
            return Ok(Some(()));
        }
        bail!("status {}", serde_json::to_string(&status)?)
    })
    .await
}

/// The waiting state of pod `name`'s first container, or an error until it has one.
async fn waiting_state(
    pods: &Api<Pod>,
    name: &str,
) -> Result<k8s_openapi::api::core::v1::ContainerStateWaiting> {
    pods.get(name)
        .await?
        .status
        .and_then(|s| s.container_statuses)
        .and_then(|c| c.into_iter().next())
        .and_then(|c| c.state?.waiting)
        .context("no waiting state yet")
}

/// Waits until pod `name` is refused its image with a message holding every one of
/// `words`: in its ErrImagePull state, or in the kubelet's Failed Event (the state
/// turns to ImagePullBackOff, whose message only says "Back-off", within moments).
async fn pull_refused(client: &Client, name: &str, words: &[&str]) -> Result<()> {
    use k8s_openapi::api::core::v1::Event;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    eventually(
        &format!("{name}: ErrImagePull naming {words:?}"),
        TIMEOUT,
        || async {
            let waiting = waiting_state(&pods, name).await?;
            let mut messages = Vec::new();
            if waiting.reason.as_deref() == Some("ErrImagePull") {
                messages.extend(waiting.message.clone());
            }
            let selector = format!("involvedObject.name={name},reason=Failed");
            for e in events
                .list(&ListParams::default().fields(&selector))
                .await?
                .items
            {
                messages.extend(e.message);
            }
            if messages.iter().any(|m| words.iter().all(|w| m.contains(w))) {
                return Ok(Some(()));
            }
            bail!("{waiting:?}; events: {messages:?}")
        },
    )
    .await
}

/// Waits until pod `name`'s container waits with `reason` and a message naming `word`,
/// and a Failed Event names it too.
async fn waits_with(client: &Client, name: &str, reason: &str, word: &str) -> Result<()> {
    use k8s_openapi::api::core::v1::Event;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    eventually(
        &format!("{name}: {reason} naming {word:?}"),
        TIMEOUT,
        || async {
            let waiting = waiting_state(&pods, name).await?;
            let selector = format!("involvedObject.name={name},reason=Failed");
            let listed = events
                .list(&ListParams::default().fields(&selector))
                .await?
                .items;
            if waiting.reason.as_deref() == Some(reason)
                && waiting.message.as_deref().is_some_and(|m| m.contains(word))
                && listed
                    .iter()
                    .any(|e| e.message.as_deref().is_some_and(|m| m.contains(word)))
            {
                return Ok(Some(()));
            }
            bail!("{waiting:?}; events {listed:?}")
        },
    )
    .await
}

/// A registry that answers every request with 500; the task ends with the runtime.
async fn answering_500() -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn
                    .write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\nConnection: close\r\n\r\noops!")
                    .await;
            });
        }
    });
    Ok(addr)
}

/// A registry that accepts connections and never answers; the task ends with the
/// runtime.
async fn never_answering() -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    Ok(addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_references_and_failing_registries_fail_only_their_pods() -> Result<()> {
    tokio::task::spawn_blocking(ensure_images).await??;
    let failing = answering_500().await?;
    let silent = never_answering().await?;
    let cp = ControlPlane::start(1).await?;
    let client = Client::from_kubeconfig(Some(cp.kubeconfig()), None)?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let node = KubeletNode::start(&cp, "kl-reg-bad", &["--image-pull-progress-deadline", "3s"])?;

    let unparsable = "Busybox:Latest:1";
    let five_hundred = format!("{failing}/skiff-test/busybox:1");
    let hanging = format!("{silent}/skiff-test/busybox:1");
    for (name, image) in [
        ("unparsable", unparsable.to_string()),
        ("five-hundred", five_hundred.clone()),
        ("hanging", hanging.clone()),
    ] {
        pods.create(&PostParams::default(), &echo_pod(name, &node.name, &image))
            .await?;
    }

    pull_refused(
        &client,
        "five-hundred",
        &[&five_hundred, "500 Internal Server Error"],
    )
    .await?;
    pull_refused(&client, "hanging", &[&hanging, "timed out"]).await?;
    waits_with(&client, "unparsable", "InvalidImageName", unparsable).await?;
    // A spec the kubelet cannot turn into an OCI spec: refused before anything runs.
    let mut privileged = echo_pod("privileged", &node.name, &five_hundred);
    if let Some(spec) = privileged.spec.as_mut() {
        spec.containers[0].security_context = Some(k8s_openapi::api::core::v1::SecurityContext {
            privileged: Some(true),
            ..Default::default()
        });
    }
    pods.create(&PostParams::default(), &privileged).await?;
    waits_with(
        &client,
        "privileged",
        "CreateContainerConfigError",
        "privileged",
    )
    .await?;

    // The kubelet goes on serving other pods, while it retries those three.
    let fine = format!("{}/skiff-test/busybox:1", skiff_tests::kubelet::REGISTRY);
    pods.create(&PostParams::default(), &echo_pod("fine", &node.name, &fine))
        .await?;
    wait_succeeded(&pods, "fine").await?;
    Ok(())
}

/// Pushes an image of one uncompressed layer holding `mib` MiB of random bytes to the
/// test registry under a name of its own, and returns the name.
fn push_big_image(mib: usize) -> Result<String> {
    let work = tempfile::Builder::new()
        .prefix("skiff-big-image-")
        .tempdir()?;
    let tree = work.path().join("tree");
    std::fs::create_dir_all(&tree)?;
    let mut noise = vec![0u8; mib << 20];
    for chunk in noise.chunks_mut(8) {
        let r = rand::random::<u64>().to_le_bytes();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
    std::fs::write(tree.join("noise"), noise)?;
    let layer = work.path().join("layer.tar");
    let out = Command::new("tar")
        .args(["--owner=0", "--group=0", "--numeric-owner", "-C"])
        .arg(&tree)
        .arg("-cf")
        .arg(&layer)
        .arg(".")
        .output()?;
    ensure!(
        out.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let layout = work.path().join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let put = |bytes: &[u8]| -> Result<(String, usize)> {
        let hex: String = ring::digest::digest(&ring::digest::SHA256, bytes)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::write(blobs.join(&hex), bytes)?;
        Ok((format!("sha256:{hex}"), bytes.len()))
    };
    let (layer_digest, layer_size) = put(&std::fs::read(&layer)?)?;
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    });
    let (config_digest, config_size) = put(config.to_string().as_bytes())?;
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
    });
    let (manifest_digest, manifest_size) = put(manifest.to_string().as_bytes())?;
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest_digest, "size": manifest_size,
        "annotations": {"org.opencontainers.image.ref.name": "1"},
    }]});
    std::fs::write(layout.join("index.json"), index.to_string())?;
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let name = format!(
        "{}/skiff-test/big-{:08x}:1",
        skiff_tests::kubelet::REGISTRY,
        rand::random::<u32>()
    );
    let out = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:1", layout.display()))
        .arg(format!("docker://{name}"))
        .output()?;
    ensure!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_during_a_pull_fails_only_that_pod() -> Result<()> {
    tokio::task::spawn_blocking(ensure_images).await??;
    let big = tokio::task::spawn_blocking(|| push_big_image(24)).await??;
    // containerd's whole root is 16 MiB: busybox fits, the 24 MiB layer does not.
    let containerd = PrivateContainerd::start_with_root_size(Some(16))?;
    let cp = ControlPlane::start(1).await?;
    let client = Client::from_kubeconfig(Some(cp.kubeconfig()), None)?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let node = KubeletNode::start_on(&cp, "kl-full", &[], Some(&containerd.socket()))?;
    let busybox = format!("{}/skiff-test/busybox:1", skiff_tests::kubelet::REGISTRY);
    pods.create(
        &PostParams::default(),
        &echo_pod("before", &node.name, &busybox),
    )
    .await?;
    wait_succeeded(&pods, "before").await?;

    pods.create(&PostParams::default(), &echo_pod("big", &node.name, &big))
        .await?;
    pull_refused(&client, "big", &[&big, "no space left on device"]).await?;

    // The partial blob was let go, so the node still starts pods from what it has.
    pods.create(
        &PostParams::default(),
        &echo_pod("after", &node.name, &busybox),
    )
    .await?;
    wait_succeeded(&pods, "after").await?;
    let ingests = node.ctr(&["content", "active"])?;
    ensure!(
        ingests.lines().filter(|l| !l.trim().is_empty()).count() <= 1,
        "writes left active: {ingests}"
    );
    drop(node);
    drop(containerd);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_secrets_authenticate_to_a_registry() -> Result<()> {
    use k8s_openapi::api::core::v1::{Event, LocalObjectReference};
    tokio::task::spawn_blocking(ensure_images).await??;
    let registry = TestRegistry::start_with_password("127.0.0.1")?;
    let image = format!("{}/skiff-test/busybox:1", registry.addr);
    let cp = ControlPlane::start(1).await?;
    let client = Client::from_kubeconfig(Some(cp.kubeconfig()), None)?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let node = KubeletNode::start(&cp, "kl-reg-auth", &[])?;
    let with_secrets = |name: &str, secrets: &[&str]| {
        let mut pod = echo_pod(name, &node.name, &image);
        if let Some(spec) = pod.spec.as_mut() {
            spec.image_pull_secrets = Some(
                secrets
                    .iter()
                    .map(|s| LocalObjectReference {
                        name: s.to_string(),
                    })
                    .collect(),
            );
        }
        pod
    };

    // Without a secret the pull fails, saying what the registry wants.
    pods.create(&PostParams::default(), &with_secrets("anonymous", &[]))
        .await?;
    pull_refused(
        &client,
        "anonymous",
        &[&image, "401 Unauthorized", "imagePullSecret"],
    )
    .await?;

    // A wrong password is refused, naming the secret it came from.
    for (name, password) in [
        ("wrong", "not-the-password"),
        ("regcred", REGISTRY_PASSWORD),
    ] {
        let made = cp.kubectl(&[
            "create",
            "secret",
            "docker-registry",
            name,
            &format!("--docker-server={}", registry.addr),
            &format!("--docker-username={REGISTRY_USER}"),
            &format!("--docker-password={password}"),
        ])?;
        ensure!(
            made.status.success(),
            "kubectl create secret: {}",
            String::from_utf8_lossy(&made.stderr)
        );
    }
    pods.create(&PostParams::default(), &with_secrets("refused", &["wrong"]))
        .await?;
    pull_refused(
        &client,
        "refused",
        &["refused the credentials", "wrong/.dockerconfigjson"],
    )
    .await?;

    // The right one pulls, and a secret that does not exist only gets a Warning.
    pods.create(
        &PostParams::default(),
        &with_secrets("authed", &["missing", "regcred"]),
    )
    .await?;
    wait_succeeded(&pods, "authed").await?;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let warned = events
        .list(
            &ListParams::default()
                .fields("involvedObject.name=authed,reason=FailedToRetrieveImagePullSecret"),
        )
        .await?
        .items;
    ensure!(
        warned.iter().any(|e| e
            .message
            .as_deref()
            .is_some_and(|m| m.contains("secret missing not found"))),
        "no warning naming the missing secret: {warned:?}"
    );
    // The registry answered 401 to the first two and 200 once the password came.
    let served = std::fs::read_to_string(registry.log_path())?
        .lines()
        .filter(|l| l.contains("\"GET /v2/skiff-test/busybox/manifests/1 HTTP/1.1\" 200"))
        .count();
    ensure!(
        served >= 1,
        "no manifest was served: {}",
        registry.log_tail()
    );
    drop(node);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_registries_and_mirrors() -> Result<()> {
    tokio::task::spawn_blocking(ensure_images).await??;
    let address = DummyAddress::create()?;
    let origin = TestRegistry::start(&address.ip)?;
    let mirror = TestRegistry::start(&address.ip)?;
    let dead_mirror = format!("{}:{}", address.ip, free_port()?);
    let image = format!("{}/skiff-test/busybox:1", origin.addr);
    let tls = TestRegistry::start_tls(&address.ip)?;
    let tls_image = format!("{}/skiff-test/busybox:1", tls.addr);

    let cp = ControlPlane::start(1).await?;
    let client = Client::from_kubeconfig(Some(cp.kubeconfig()), None)?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // (a) Without the file: plain HTTP to a non-loopback registry is refused, saying
    // what to configure.
    {
        let node = KubeletNode::start(&cp, "kl-reg-plain", &[])?;
        pods.create(
            &PostParams::default(),
            &echo_pod("plain", &node.name, &image),
        )
        .await?;
        pull_refused(
            &client,
            "plain",
            &[&image, "insecure = true", "--registry-config"],
        )
        .await?;
        ensure!(
            origin.manifest_gets() == 0,
            "the registry was asked over plain HTTP"
        );
        pods.delete("plain", &Default::default()).await?;

        // An HTTPS registry whose certificate this machine does not trust: refused,
        // saying why and what to do.
        pods.create(
            &PostParams::default(),
            &echo_pod("untrusted", &node.name, &tls_image),
        )
        .await?;
        pull_refused(
            &client,
            "untrusted",
            &[&tls_image, "certificate", "insecure = true"],
        )
        .await?;
        ensure!(tls.manifest_gets() == 0, "an untrusted registry was asked");
        pods.delete("untrusted", &Default::default()).await?;
    }

    // (b) and (c): with the file.
    let config = tempfile::NamedTempFile::new()?;
    std::fs::write(
        config.path(),
        format!(
            r#"# the lab's registry: plain HTTP, not on loopback
[[registry]]
location = "{origin}"
insecure = true

# a name no DNS knows, served by the mirrors first and then by the origin
[[registry]]
prefix = "mirrored.skiff.invalid/skiff-test"
location = "{origin}/skiff-test"
insecure = true

[[registry.mirror]]
location = "{dead_mirror}/skiff-test"   # nothing listens: the next one is tried
insecure = true

[[registry.mirror]]
location = "{mirror}/skiff-test"
insecure = true

# HTTPS with a self-signed certificate: no certificate checks
[[registry]]
location = "{tls}"
insecure = true
"#,
            origin = origin.addr,
            mirror = mirror.addr,
            tls = tls.addr,
        ),
    )?;
    let config_arg = format!("--registry-config={}", config.path().display());
    let node = KubeletNode::start(&cp, "kl-reg", &[&config_arg])?;

    let mirror_before = mirror.manifest_gets();
    pods.create(
        &PostParams::default(),
        &echo_pod(
            "mirrored",
            &node.name,
            "mirrored.skiff.invalid/skiff-test/busybox:1",
        ),
    )
    .await?;
    wait_succeeded(&pods, "mirrored").await?;
    ensure!(
        mirror.manifest_gets() > mirror_before,
        "the mirror was not asked: {}",
        mirror.log_tail()
    );
    ensure!(
        origin.manifest_gets() == 0,
        "the origin was asked although a mirror had the image: {}",
        origin.log_tail()
    );

    pods.create(
        &PostParams::default(),
        &echo_pod("direct", &node.name, &image),
    )
    .await?;
    wait_succeeded(&pods, "direct").await?;
    ensure!(
        origin.manifest_gets() > 0,
        "the origin's access log shows no pull: {}",
        origin.log_tail()
    );
    let p = pods.get("direct").await?;
    let status = p
        .status
        .and_then(|s| s.container_statuses)
        .and_then(|c| c.into_iter().next())
        .context("container status")?;
    ensure!(status.image == image, "image {:?}", status.image);

    // The HTTPS registry, allowed by `insecure = true`, is pulled from over TLS.
    pods.create(
        &PostParams::default(),
        &echo_pod("tls", &node.name, &tls_image),
    )
    .await?;
    wait_succeeded(&pods, "tls").await?;
    ensure!(
        tls.manifest_gets() > 0,
        "the HTTPS registry's access log shows no pull: {}",
        tls.log_tail()
    );
    Ok(())
}

#[test]
fn a_bad_registry_config_stops_the_kubelet_naming_file_line_and_key() -> Result<()> {
    let config = tempfile::NamedTempFile::new()?;
    std::fs::write(
        config.path(),
        "[[registry]]\nlocation = \"10.77.0.1:5000\"\ninsecure = yes\n",
    )?;
    let out = Command::new(skiff_binary()?)
        .arg("kubelet")
        .arg(format!("--registry-config={}", config.path().display()))
        .arg("--healthz-port=0")
        .arg("--port=0")
        .stdin(Stdio::null())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "the kubelet started: {stderr}");
    let want = format!(
        "{}:3: insecure: yes is not true or false",
        config.path().display()
    );
    ensure!(
        stderr.contains(&want),
        "{stderr:?} does not contain {want:?}"
    );
    Ok(())
}
