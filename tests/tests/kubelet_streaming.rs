//! `kubectl exec` (also `-it` on a terminal), `kubectl cp`, `kubectl attach` (also `-i`
//! into a container's stdin) and `kubectl run -it --rm` through the apiserver's proxy to
//! `skiff kubelet`'s streaming API (WebSocket, v5.channel.k8s.io), against real pods in
//! containerd.

use std::time::Duration;

use anyhow::{bail, ensure, Result};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use skiff_client::{Api, Client, PostParams};
use skiff_tests::control_plane::ControlPlane;
use skiff_tests::kubelet::{ensure_images, image, KubeletNode};
use skiff_tests::wait::eventually;

const TIMEOUT: Duration = Duration::from_secs(90);

/// Runs `kubectl ARGS` (shell words) on a terminal of 40 rows by 100 columns that
/// script(1) makes, typing `input` into it; returns what the terminal showed, failing
/// unless kubectl succeeded.
fn kubectl_in_terminal(cp: &ControlPlane, args: &str, input: &str) -> Result<String> {
    use std::io::Write;
    let kubectl = cp.kubectl_cmd();
    let quote = |s: &std::ffi::OsStr| format!("'{}'", s.to_string_lossy().replace('\'', "'\\''"));
    let mut line = vec![quote(kubectl.get_program())];
    line.extend(kubectl.get_args().map(quote));
    line.push(args.to_string());
    let mut child = std::process::Command::new("timeout")
        .args(["120", "script", "-qec"])
        .arg(format!("stty rows 40 cols 100; {}", line.join(" ")))
        .arg("/dev/null")
        .env_remove("KUBECONFIG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let shown = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    ensure!(
        out.status.success(),
        "kubectl {args} on a terminal: {:?}: {shown:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(shown)
}

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

    // -it from a terminal (script(1) gives kubectl one, 40 rows by 100 columns): the
    // command gets a terminal of its own, sized as kubectl's by the resize channel. The
    // size arrives just after the command starts, as with any runtime: it waits.
    let said = kubectl_in_terminal(
        &cp,
        "exec -it shell -c main -- sh -c 'sleep 1; tty; stty size'",
        "",
    )?;
    ensure!(
        said.contains("/dev/pts/") && said.contains("40 100"),
        "exec -it said {said:?}"
    );

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_attach_and_run_reach_stdin_and_a_terminal() -> Result<()> {
    tokio::task::spawn_blocking(ensure_images).await??;
    let cp = ControlPlane::start(1).await?;
    let node = KubeletNode::start(&cp, "kl-stdin", &[])?;
    let client = Client::from_kubeconfig(Some(cp.kubeconfig()), None)?;
    let pods: Api<Pod> = Api::namespaced(client, "default");

    // stdin: true with stdinOnce: attach -i feeds the container's stdin, and the end
    // of kubectl's input is the end of the container's.
    let mut catter = sleeper("catter", &node.name);
    if let Some(spec) = catter.spec.as_mut() {
        spec.restart_policy = Some("Never".into());
        spec.containers.truncate(1);
        let main = &mut spec.containers[0];
        main.stdin = Some(true);
        main.stdin_once = Some(true);
        main.command = Some(vec![
            "sh".into(),
            "-c".into(),
            "while read l; do echo got-$l; done; echo stdin-closed".into(),
        ]);
    }
    pods.create(&PostParams::default(), &catter).await?;
    eventually("pod catter Running", TIMEOUT, || async {
        let p = pods.get("catter").await?;
        let phase = p.status.as_ref().and_then(|s| s.phase.clone());
        if phase.as_deref() == Some("Running") {
            return Ok(Some(()));
        }
        bail!("phase {phase:?}")
    })
    .await?;
    let out = tokio::task::block_in_place(|| {
        cp.kubectl_with_stdin(&["attach", "-i", "catter", "-c", "main"], "one\ntwo\n")
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && stdout.contains("got-one\ngot-two\nstdin-closed"),
        "attach -i: {:?} {stdout:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    // kubectl run -it --rm: a shell on a terminal (sized as kubectl's), typed into, and
    // the pod gone after it exits.
    let overrides = format!(r#"{{"spec":{{"nodeName":"{}"}}}}"#, node.name);
    let shown = tokio::task::block_in_place(|| {
        kubectl_in_terminal(
            &cp,
            &format!(
                "run tty-run -it --rm --restart=Never --image={} --overrides='{overrides}' -- sh",
                image("busybox")
            ),
            "sleep 1; stty size; echo tty-$((6*7)); exit\n",
        )
    })?;
    ensure!(
        shown.contains("40 100") && shown.contains("tty-42"),
        "run -it showed {shown:?}"
    );
    eventually("pod tty-run deleted", TIMEOUT, || async {
        match pods.get_opt("tty-run").await? {
            None => Ok(Some(())),
            Some(_) => bail!("still there"),
        }
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_attach_follows_the_running_containers_output() -> Result<()> {
    tokio::task::spawn_blocking(ensure_images).await??;
    let cp = ControlPlane::start(1).await?;
    let node = KubeletNode::start(&cp, "kl-attach", &[])?;
    let client = Client::from_kubeconfig(Some(cp.kubeconfig()), None)?;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let mut pod = sleeper("ticker", &node.name);
    if let Some(spec) = pod.spec.as_mut() {
        spec.restart_policy = Some("Never".into());
        spec.containers.truncate(1);
        spec.containers[0].command = Some(vec![
            "sh".into(),
            "-c".into(),
            "i=0; while [ $i -lt 25 ]; do i=$((i+1)); echo tick $i; echo err $i >&2; sleep 1; done"
                .into(),
        ]);
    }
    pods.create(&PostParams::default(), &pod).await?;
    eventually("pod ticker Running", TIMEOUT, || async {
        let p = pods.get("ticker").await?;
        let phase = p.status.as_ref().and_then(|s| s.phase.clone());
        if phase.as_deref() == Some("Running") {
            return Ok(Some(()));
        }
        bail!("phase {phase:?}")
    })
    .await?;

    // kubectl attach streams what the container prints from now on and returns when
    // the container exits.
    let kubectl = cp.kubectl_cmd();
    let mut cmd = std::process::Command::new("timeout");
    cmd.arg("120")
        .arg(kubectl.get_program())
        .args(kubectl.get_args())
        .args(["attach", "ticker", "-c", "main"])
        .env_remove("KUBECONFIG");
    let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    ensure!(
        out.status.success(),
        "kubectl attach: {:?}: {stderr}",
        out.status
    );
    let ticks: Vec<u32> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("tick ")?.parse().ok())
        .collect();
    ensure!(
        ticks.len() >= 2 && ticks.windows(2).all(|w| w[1] == w[0] + 1),
        "stdout {stdout:?}"
    );
    ensure!(ticks.last() == Some(&25), "attach ended early: {stdout:?}");
    ensure!(stderr.contains("err 25"), "stderr {stderr:?}");

    // The log still has everything.
    let logs = cp.kubectl_ok(&["logs", "ticker"])?;
    for i in [1, 13, 25] {
        ensure!(logs.contains(&format!("tick {i}\n")), "logs {logs:?}");
    }
    Ok(())
}
