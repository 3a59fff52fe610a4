//! `skiffctl exec`, `cp` and `port-forward` through a real apiserver to a real kubelet
//! with pods in containerd, and real `kubectl port-forward` (SPDY, tunnelled in
//! WebSocket or not) against the same pod.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use k8s_openapi::api::core::v1::{Pod, Service};
use serde_json::json;
use skiff_client::{Api, Client, PostParams};
use skiff_tests::control_plane::ControlPlane;
use skiff_tests::kubelet::{ensure_images, image, KubeletNode};
use skiff_tests::skiffctl::Skiffctl;
use skiff_tests::wait::eventually;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// Starts a port-forward (`skiffctl` or `kubectl`, which print the same first line) and
/// reads the local port from its first line.
fn port_forward(mut cmd: Command, remote: u16) -> Result<Forward> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut forward = Forward { child, port: 0 };
    forward.port = local_port(stdout, remote)?;
    Ok(forward)
}

/// `skiffctl port-forward args…`.
fn forward_with(ctl: &Skiffctl, args: &[&str]) -> Command {
    let mut cmd = ctl.cmd();
    cmd.arg("port-forward").args(args);
    cmd
}

/// The local port of `Forwarding from 127.0.0.1:PORT -> REMOTE`, the first line.
fn local_port(stdout: ChildStdout, remote: u16) -> Result<u16> {
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    // Later lines ("Handling connection for …") are read and dropped, so that the
    // forwarder never writes into a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let rest = line
        .strip_prefix("Forwarding from 127.0.0.1:")
        .with_context(|| format!("first line {line:?}"))?;
    let (port, to) = rest.trim().split_once(" -> ").context("no arrow")?;
    ensure!(to == remote.to_string(), "forwarding to {to}, not {remote}");
    Ok(port.parse()?)
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
            {"name": "echo", "image": image("busybox"), "command": ["nc", "-ll", "-p", "9000", "-e", "cat"]},
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
    let to_pod = port_forward(forward_with(&ctl, &["pod/web", ":8080"]), 8080)?;
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
    let to_svc = port_forward(forward_with(&ctl, &["svc/web", ":80"]), 8080)?;
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

    // Real kubectl speaks SPDY: tunnelled in a WebSocket first (kubectl 1.31+), and
    // plain after `Upgrade: SPDY/3.1` when that is turned off.
    let mut tunnelled = cp.kubectl_cmd();
    tunnelled.args(["port-forward", "pod/web", "0:8080"]);
    let to_pod = port_forward(tunnelled, 8080)?;
    let body = fetch(to_pod.port).await?;
    ensure!(
        body.contains("hello from skiff"),
        "kubectl, tunnelled: {body:?}"
    );
    ensure!(fetch(to_pod.port).await? == body, "a second connection");
    ensure!(
        node.log_tail(400)
            .contains("port-forward over SPDY in WebSocket"),
        "kubectl did not tunnel: {}",
        node.log_tail(40)
    );
    drop(to_pod);

    let mut plain = cp.kubectl_cmd();
    plain
        .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")
        .args(["port-forward", "svc/web", "0:80"]);
    let to_svc = port_forward(plain, 8080)?;
    let body = fetch(to_svc.port).await?;
    ensure!(
        body.contains("hello from skiff"),
        "kubectl, plain SPDY: {body:?}"
    );
    ensure!(
        node.log_tail(400)
            .lines()
            .any(|l| l.contains("port-forward over SPDY") && !l.contains("in WebSocket")),
        "kubectl did not upgrade to SPDY: {}",
        node.log_tail(40)
    );
    drop(to_svc);

    // Many frames both ways and at once: a MiB through the echo container comes back
    // whole (SPDY's flow control is not waited for, as kubectl never grants more).
    let mut echo = cp.kubectl_cmd();
    echo.args(["port-forward", "pod/web", "0:9000"]);
    let to_echo = port_forward(echo, 9000)?;
    let sent: Vec<u8> = (0..1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
    let echoed = eventually("a MiB echoed through kubectl", TIMEOUT, || async {
        let conn = tokio::net::TcpStream::connect(("127.0.0.1", to_echo.port)).await?;
        let (mut r, mut w) = conn.into_split();
        let data = sent.clone();
        let writer = tokio::spawn(async move { w.write_all(&data).await.map(|_| w) });
        let mut back = vec![0u8; sent.len()];
        tokio::time::timeout(Duration::from_secs(30), r.read_exact(&mut back)).await??;
        drop(writer.await??);
        Ok(Some(back))
    })
    .await?;
    ensure!(echoed == sent, "the echo differs");
    drop(to_echo);

    // A port nothing listens on: kubectl reports the kubelet's message.
    let mut nothing = cp
        .kubectl_cmd()
        .args(["port-forward", "pod/web", "0:9999"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = nothing.stderr.take().context("stderr")?;
    let said = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let said_too = said.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            said_too.lock().unwrap().push_str(&line);
        }
    });
    let port = local_port(nothing.stdout.take().context("stdout")?, 9999);
    let result = async {
        let port = port?;
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(TIMEOUT, conn.read_to_end(&mut rest)).await;
        eventually("kubectl's error message", TIMEOUT, || async {
            let said = said.lock().unwrap().clone();
            if said
                .contains("failed to connect to 127.0.0.1:9999 inside the pod's network namespace")
            {
                return Ok(Some(()));
            }
            bail!("kubectl said {said:?}")
        })
        .await
    }
    .await;
    let _ = nothing.kill();
    let _ = nothing.wait();
    result?;
    drop(node);
    Ok(())
}
