//! `skiffctl exec`, `cp` and `port-forward` through a real apiserver to a real kubelet
//! with pods in containerd, and the kubelet's refusal of SPDY port-forwarding.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use k8s_openapi::api::core::v1::{Pod, Service};
use serde_json::json;
use skiff_client::{Api, Client, PostParams};
use skiff_tests::control_plane::ControlPlane;
use skiff_tests::kubelet::{ensure_images, image, KubeletNode};
use skiff_tests::skiffctl::Skiffctl;
use skiff_tests::wait::eventually;

const TIMEOUT: Duration = Duration::from_secs(90);

async fn wait_running(pods: &Api<Pod>, name: &str) -> Result<()> {
    eventually(&format!("pod {name} Running"), TIMEOUT, || async {
        let p = pods.get(name).await?;
        let phase = p.status.as_ref().and_then(|s| s.phase.clone());
        if phase.as_deref() == Some("Running") {
            return Ok(Some(()));
        }
        bail!("phase {phase:?}")
    })
    .await
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skiffctl_exec_and_cp_reach_the_chosen_container() -> Result<()> {
    tokio::task::spawn_blocking(ensure_images).await??;
    let cp = ControlPlane::start(1).await?;
    let node = KubeletNode::start(&cp, "kl-sexec", &[])?;
    let client = Client::from_kubeconfig(Some(cp.kubeconfig()), None)?;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let container = |name: &str| {
        json!({"name": name, "image": image("busybox"), "command": ["sleep", "3600"],
               "env": [{"name": "WHO", "value": name}]})
    };
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "shell", "namespace": "default",
                     "annotations": {"kubectl.kubernetes.io/default-container": "side"}},
        "spec": {"nodeName": node.name, "terminationGracePeriodSeconds": 1,
                 "containers": [container("main"), container("side")]},
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    wait_running(&pods, "shell").await?;
    let ctl = Skiffctl::new(&cp)?;

    // stdout and stderr apart, and the command's exit code as skiffctl's own.
    let out = ctl.run(&[
        "exec",
        "shell",
        "-c",
        "main",
        "--",
        "sh",
        "-c",
        "echo to-out; echo to-err >&2; exit 3",
    ])?;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    ensure!(
        out.status.code() == Some(3),
        "exit {:?}: {stderr}",
        out.status
    );
    ensure!(stdout == "to-out\n", "stdout {stdout:?}");
    ensure!(
        stderr.contains("to-err") && stderr.contains("command terminated with exit code 3"),
        "stderr {stderr:?}"
    );

    // -c picks the container; without it the default-container annotation does.
    let main = ctl.ok(&["exec", "shell", "-c", "main", "--", "sh", "-c", "echo $WHO"])?;
    ensure!(main == "main\n", "-c main ran in {main:?}");
    let default = ctl.ok(&["exec", "pod/shell", "--", "sh", "-c", "echo $WHO"])?;
    ensure!(default == "side\n", "the default container was {default:?}");

    // stdin reaches the command, and its end (v5's close) ends the command's stdin.
    let echoed = ctl.ok_stdin(
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

    // kubectl's messages for a missing pod and a missing container.
    let missing = ctl.fails(&["exec", "nope", "--", "true"])?;
    ensure!(missing.contains("pods \"nope\" not found"), "{missing}");
    let wrong = ctl.fails(&["exec", "shell", "-c", "nope", "--", "true"])?;
    ensure!(wrong.contains("nope"), "{wrong}");

    // cp of a file both ways.
    let dir = tempfile::tempdir()?;
    let local = dir.path().join("payload.txt");
    let payload: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&local, &payload)?;
    let local_s = local.to_str().context("path")?;
    ctl.ok(&[
        "cp",
        local_s,
        "default/shell:/tmp/payload.txt",
        "-c",
        "main",
    ])?;
    let inside = ctl.ok(&[
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
    ctl.ok(&[
        "cp",
        "shell:/tmp/payload.txt",
        back.to_str().context("path")?,
        "-c",
        "main",
    ])?;
    ensure!(
        std::fs::read_to_string(&back)? == payload,
        "the file came back different"
    );

    // cp of a directory both ways, into the default container.
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("sub/deeper"))?;
    std::fs::write(tree.join("a.txt"), "alpha\n")?;
    std::fs::write(tree.join("sub/deeper/b.txt"), "beta\n")?;
    ctl.ok(&["cp", tree.to_str().context("path")?, "shell:/tmp/tree"])?;
    let b = ctl.ok(&["exec", "shell", "--", "cat", "/tmp/tree/sub/deeper/b.txt"])?;
    ensure!(b == "beta\n", "b.txt in the container: {b:?}");
    let main_has = ctl.run(&[
        "exec",
        "shell",
        "-c",
        "main",
        "--",
        "test",
        "-e",
        "/tmp/tree",
    ])?;
    ensure!(
        main_has.status.code() == Some(1),
        "the tree went to main, not the default container"
    );
    let tree_back = dir.path().join("tree-back");
    ctl.ok(&["cp", "shell:/tmp/tree", tree_back.to_str().context("path")?])?;
    ensure!(std::fs::read_to_string(tree_back.join("a.txt"))? == "alpha\n");
    ensure!(std::fs::read_to_string(tree_back.join("sub/deeper/b.txt"))? == "beta\n");

    // A remote file that does not exist is tar's error and a failure.
    let gone = ctl.fails(&[
        "cp",
        "shell:/no/such/file",
        dir.path().join("x").to_str().context("path")?,
    ])?;
    ensure!(
        gone.contains("No such file") || gone.contains("no such file"),
        "{gone}"
    );
    drop(node);
    Ok(())
}

/// A running `skiffctl port-forward`, killed when dropped.
struct Forward {
    child: Child,
    port: u16,
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `skiffctl port-forward args…` and reads the local port from its first line.
fn port_forward(ctl: &Skiffctl, args: &[&str], remote: u16) -> Result<Forward> {
    let mut child = ctl
        .cmd()
        .arg("port-forward")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut forward = Forward { child, port: 0 };
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    // Later lines ("Handling connection for …") are read and dropped, so that skiffctl
    // never writes into a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    // `Forwarding from 127.0.0.1:PORT -> REMOTE`
    let rest = line
        .strip_prefix("Forwarding from 127.0.0.1:")
        .with_context(|| format!("first line {line:?}"))?;
    let (port, to) = rest.trim().split_once(" -> ").context("no arrow")?;
    ensure!(to == remote.to_string(), "forwarding to {to}, not {remote}");
    forward.port = port.parse()?;
    Ok(forward)
}

async fn fetch(port: u16) -> Result<String> {
    eventually("a page through the forward", TIMEOUT, || async {
        let r = skiff_tests::http::client()
            .get(format!("http://127.0.0.1:{port}/index.html"))
            .timeout(Duration::from_secs(10))
            .send()
            .await?;
        Ok(Some(r.text().await?))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skiffctl_port_forward_reaches_pods_and_services() -> Result<()> {
    tokio::task::spawn_blocking(ensure_images).await??;
    let cp = ControlPlane::start(1).await?;
    let node = KubeletNode::start(&cp, "kl-pfwd", &[])?;
    let client = Client::from_kubeconfig(Some(cp.kubeconfig()), None)?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"nodeName": node.name, "terminationGracePeriodSeconds": 1, "containers": [
            {"name": "httpd", "image": image("httpd"),
             "ports": [{"name": "http", "containerPort": 8080}]},
            {"name": "client", "image": image("busybox"), "command": ["sleep", "3600"]},
        ]},
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    let services: Api<Service> = Api::namespaced(client, "default");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]},
    }))?;
    services.create(&PostParams::default(), &svc).await?;
    wait_running(&pods, "web").await?;
    let ctl = Skiffctl::new(&cp)?;

    // The two containers share the pod's network: one reaches the other on localhost.
    let page = eventually(
        "httpd on localhost from the other container",
        TIMEOUT,
        || async {
            let out = ctl.run_stdin(
                &[
                    "exec",
                    "-i",
                    "web",
                    "-c",
                    "client",
                    "--",
                    "nc",
                    "127.0.0.1",
                    "8080",
                ],
                "GET /index.html HTTP/1.0\r\n\r\n",
            )?;
            let body = text(&out.stdout);
            if body.contains("hello from skiff") {
                return Ok(Some(body));
            }
            bail!("nc said {body:?} {}", text(&out.stderr))
        },
    )
    .await?;
    ensure!(
        page.starts_with("HTTP/1.") && page.lines().next().is_some_and(|l| l.contains(" 200")),
        "{page}"
    );

    // A pod's port by number, on a free local port.
    let to_pod = port_forward(&ctl, &["pod/web", ":8080"], 8080)?;
    let body = fetch(to_pod.port).await?;
    ensure!(
        body.contains("hello from skiff"),
        "through the pod forward: {body:?}"
    );
    // Every connection is a stream of its own.
    let again = fetch(to_pod.port).await?;
    ensure!(again == body);
    drop(to_pod);

    // A Service's port maps to its named targetPort on a pod of its selector.
    let to_svc = port_forward(&ctl, &["svc/web", ":80"], 8080)?;
    let body = fetch(to_svc.port).await?;
    ensure!(
        body.contains("hello from skiff"),
        "through the service forward: {body:?}"
    );
    drop(to_svc);
    let no_port = ctl.fails(&["port-forward", "svc/web", "9999"])?;
    ensure!(
        no_port.contains("does not have a service port 9999"),
        "{no_port}"
    );

    // SPDY port-forwarding (what kubectl sends) gets a clear refusal, not a hang.
    let url = cp.url(0);
    let authority = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let answer = tokio::task::spawn_blocking(move || -> Result<String> {
        let mut s = std::net::TcpStream::connect(&authority)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            s,
            "GET /api/v1/namespaces/default/pods/web/portforward?ports=8080 HTTP/1.1\r\nHost: {authority}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: SPDY/3.1+portforward.k8s.io\r\n\r\n"
        )?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match s.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if text(&buf).contains("skiffctl port-forward") {
                        break;
                    }
                }
                Err(e) => bail!("reading the answer: {e} (so far {:?})", text(&buf)),
            }
        }
        Ok(text(&buf))
    })
    .await??;
    ensure!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    ensure!(answer.contains("skiffctl port-forward"), "{answer}");

    // And real kubectl port-forward ends with that message too.
    let mut kubectl = cp
        .kubectl_cmd()
        .args(["port-forward", "pod/web", "0:8080"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = std::time::Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(s) = kubectl.try_wait()? {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = kubectl.kill();
            let _ = kubectl.wait();
            bail!("kubectl port-forward hung");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut err = String::new();
    if let Some(mut e) = kubectl.stderr.take() {
        e.read_to_string(&mut err)?;
    }
    ensure!(!status.success(), "kubectl port-forward succeeded: {err}");
    ensure!(
        err.contains("skiffctl port-forward"),
        "kubectl said {err:?}"
    );
    drop(node);
    Ok(())
}
