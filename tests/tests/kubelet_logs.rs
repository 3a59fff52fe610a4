//! `kubectl logs` through the apiserver's proxy to `skiff kubelet`'s
//! `/containerLogs` endpoint, against a real pod in containerd: tail, timestamps,
//! limit and since, `-c` in a two-container pod, `-f` seeing lines as they are written
//! and ending when the container exits, and `--previous` after a restart.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use skiff_client::{Api, Client, PostParams};
use skiff_tests::control_plane::ControlPlane;
use skiff_tests::kubelet::{ensure_images, image, KubeletNode};
use skiff_tests::wait::eventually;

const TIMEOUT: Duration = Duration::from_secs(90);

/// `main` writes to stderr, then three lines, then prints what is put in /tmp/say
/// until /tmp/stop appears, when it says goodbye and fails (and so restarts).
const MAIN: &str = "echo err-line >&2; sleep 0.5; for i in 1 2 3; do echo line-$i; done; \
    while [ ! -e /tmp/stop ]; do if [ -e /tmp/say ]; then cat /tmp/say; rm /tmp/say; fi; sleep 0.2; done; \
    echo after-stop; exit 1";

fn talker(node: &str) -> Pod {
    let sh = |name: &str, script: &str| Container {
        name: name.into(),
        image: Some(image("busybox")),
        command: Some(vec!["sh".into(), "-c".into(), script.into()]),
        ..Default::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some("talker".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            restart_policy: Some("OnFailure".into()),
            termination_grace_period_seconds: Some(1),
            containers: vec![
                sh("main", MAIN),
                sh("side", "echo side-says-hi; exec sleep 3600"),
            ],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A `kubectl logs -f` child, killed when dropped.
struct Follower {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Follower {
    fn start(cp: &ControlPlane, args: &[&str]) -> Result<Follower> {
        let mut child = cp
            .kubectl_cmd()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting kubectl logs -f")?;
        let out = child.stdout.take().context("kubectl's stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(Follower { child, lines })
    }

    /// Waits for a line equal to `want`; returns the lines read on the way.
    fn wait_for(&self, want: &str, timeout: Duration) -> Result<Vec<String>> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let done = l == want;
                    seen.push(l);
                    if done {
                        return Ok(seen);
                    }
                }
                Err(_) => bail!("kubectl logs -f did not print {want:?}; it printed {seen:?}"),
            }
        }
    }

    /// Waits for kubectl to exit on its own.
    fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("kubectl logs -f still runs after the container exited");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_tail_follow_previous_and_containers() -> Result<()> {
    tokio::task::spawn_blocking(ensure_images).await??;
    let cp = ControlPlane::start(1).await?;
    let node = KubeletNode::start(&cp, "kl-logs", &[])?;
    let client = Client::from_kubeconfig(Some(cp.kubeconfig()), None)?;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    pods.create(&PostParams::default(), &talker(&node.name))
        .await?;

    let logs = |args: &[&str]| -> Result<String> {
        let mut all = vec!["logs", "talker"];
        all.extend_from_slice(args);
        cp.kubectl_ok(&all)
    };
    eventually("main's first lines in kubectl logs", TIMEOUT, || async {
        match logs(&["-c", "main"]) {
            Ok(out) if out.contains("line-3") => Ok(Some(out)),
            Ok(out) => bail!("logs so far {out:?}"),
            Err(e) => Err(e),
        }
    })
    .await?;
    let all = logs(&["-c", "main"])?;
    ensure!(all == "err-line\nline-1\nline-2\nline-3\n", "all {all:?}");
    let tail = logs(&["-c", "main", "--tail=2"])?;
    ensure!(tail == "line-2\nline-3\n", "tail {tail:?}");
    let none = logs(&["-c", "main", "--tail=0"])?;
    ensure!(none.is_empty(), "tail 0 {none:?}");
    let stamped = logs(&["-c", "main", "--tail=1", "--timestamps"])?;
    let (stamp, rest) = stamped.split_once(' ').context("no timestamp")?;
    ensure!(rest == "line-3\n", "timestamped {stamped:?}");
    let t: jiff::Timestamp = stamp.parse().context("timestamp is not RFC 3339")?;
    ensure!(
        stamp.ends_with('Z') && t <= jiff::Timestamp::now(),
        "{stamp}"
    );
    ensure!(logs(&["-c", "main", "--since=1h"])? == all, "since 1h");
    let future = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string();
    let since_future = logs(&["-c", "main", &format!("--since-time={future}")])?;
    ensure!(since_future.is_empty(), "since the future {since_future:?}");
    ensure!(
        logs(&["-c", "main", "--limit-bytes=6"])? == "err-li",
        "limit"
    );

    // The other container's own log; and kubectl's error for a name not in the pod.
    eventually("side's line", TIMEOUT, || async {
        match logs(&["-c", "side"]) {
            Ok(out) if out == "side-says-hi\n" => Ok(Some(())),
            Ok(out) => bail!("side logs {out:?}"),
            Err(e) => Err(e),
        }
    })
    .await?;
    let wrong = cp.kubectl(&["logs", "talker", "-c", "nope"])?;
    ensure!(
        !wrong.status.success()
            && String::from_utf8_lossy(&wrong.stderr)
                .contains("container nope is not valid for pod talker"),
        "{wrong:?}"
    );
    let no_previous = cp.kubectl(&["logs", "talker", "-c", "side", "--previous"])?;
    let stderr = String::from_utf8_lossy(&no_previous.stderr);
    ensure!(
        !no_previous.status.success()
            && stderr
                .contains("previous terminated container \"side\" in pod \"talker\" not found"),
        "{no_previous:?}"
    );

    // -f: earlier lines, then a line written while following, then the end with the
    // container's exit.
    let mut follower = Follower::start(&cp, &["logs", "-f", "talker", "-c", "main"])?;
    follower.wait_for("line-3", TIMEOUT)?;
    cp.kubectl_ok(&[
        "exec",
        "talker",
        "-c",
        "main",
        "--",
        "sh",
        "-c",
        "echo live-line > /tmp/say",
    ])?;
    follower.wait_for("live-line", TIMEOUT)?;
    cp.kubectl_ok(&["exec", "talker", "-c", "main", "--", "touch", "/tmp/stop"])?;
    follower.wait_for("after-stop", TIMEOUT)?;
    let status = follower.wait_exit(TIMEOUT)?;
    ensure!(status.success(), "kubectl logs -f ended with {status}");

    // The container restarted (OnFailure): the current run's log is the new one, and
    // --previous shows the run that ended.
    eventually("main restarted and running", TIMEOUT, || async {
        let p = pods.get("talker").await?;
        let st = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.name == "main"))
            .cloned();
        match st {
            Some(c)
                if c.restart_count == 1
                    && c.state.as_ref().is_some_and(|s| s.running.is_some()) =>
            {
                Ok(Some(()))
            }
            other => bail!("main {other:?}"),
        }
    })
    .await?;
    let previous = logs(&["-c", "main", "--previous"])?;
    ensure!(
        previous == "err-line\nline-1\nline-2\nline-3\nlive-line\nafter-stop\n",
        "previous {previous:?}"
    );
    eventually("the new run's lines", TIMEOUT, || async {
        let current = logs(&["-c", "main"])?;
        if current == "err-line\nline-1\nline-2\nline-3\n" {
            return Ok(Some(()));
        }
        bail!("current {current:?}")
    })
    .await?;
    Ok(())
}
