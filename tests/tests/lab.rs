//! `skiffctl lab` end to end, as issue 8 asks: a whole lab (3 control planes, 2 workers,
//! network namespaces on a bridge, the real containerd, CNI plugins and kubectl), a
//! Deployment spread over both workers behind a Service, scaling, a rolling update, a
//! image archive loaded without a registry, a worker killed and its pods replaced, the store leader killed while pods keep being
//! created, and `lab down` leaving nothing behind.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use skiff_tests::cluster::{skiff_binary, tail};
use skiff_tests::kubelet::{archive_dir, ensure_images};
use skiff_tests::netns::free_subnet;
use skiff_tests::skiffctl::{self, skiffctl_binary};
use skiff_tests::wait::eventually;

/// A lab of this test's own: its name, subnet, directory and kubeconfig are unique, so
/// it runs beside other suites (and a user's lab) without sharing anything.
pub(crate) struct TestLab {
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    pub(crate) kubeconfig: PathBuf,
    pub(crate) skiffctl: PathBuf,
    down: bool,
    _tmp: tempfile::TempDir,
}

impl TestLab {
    pub(crate) fn up() -> Result<TestLab> {
        ensure_images()?;
        let tmp = tempfile::Builder::new().prefix("skiff-lab-").tempdir()?;
        let tag = rand::random::<u32>() & 0xff_ffff;
        let lab = TestLab {
            name: format!("t{tag:06x}"),
            dir: tmp.path().join("lab"),
            kubeconfig: tmp.path().join("kubeconfig"),
            skiffctl: skiffctl_binary()?,
            down: false,
            _tmp: tmp,
        };
        // nextest runs tests as separate processes: under a lock shared by all of them,
        // take a subnet no bridge on this machine has yet, and hold the lock until
        // `lab up` has made this lab's bridge.
        let lock = std::fs::File::create(std::env::temp_dir().join("skiff-test-labs.lock"))?;
        lock.lock()?;
        let subnet = free_subnet("10.79", tag)?;
        let skiff = skiff_binary()?;
        let out = lab.lab(&[
            "up",
            "--subnet",
            &subnet,
            "--skiff-binary",
            skiff.to_str().context("skiff path")?,
            "--timeout",
            "240s",
        ])?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "lab up failed: {}\n{text}\nstderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(text.contains("is up"), "{text}");
        Ok(lab)
    }

    /// `skiffctl lab ARGS --name … --dir …` with the test's kubeconfig.
    pub(crate) fn lab(&self, args: &[&str]) -> Result<Output> {
        Command::new(&self.skiffctl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("lab")
            .args(args)
            .arg("--name")
            .arg(&self.name)
            .arg("--dir")
            .arg(&self.dir)
            .env_remove("KUBECONFIG")
            .output()
            .with_context(|| format!("running skiffctl lab {args:?}"))
    }

    fn lab_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.lab(args)?;
        if !out.status.success() {
            bail!(
                "skiffctl lab {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The real kubectl, through the context `lab up` merged into the kubeconfig.
    fn kubectl(&self, args: &[&str]) -> Result<String> {
        skiffctl::kubectl_with(&self.kubeconfig, args)
    }

    fn pods(&self, selector: &str) -> Result<Vec<Value>> {
        let out = self.kubectl(&["get", "pods", "-l", selector, "-o", "json"])?;
        let list: Value = serde_json::from_str(&out)?;
        Ok(list["items"].as_array().cloned().unwrap_or_default())
    }

    /// The names and nodes of the Ready pods of `selector`, once `n` pods are live (not
    /// terminating) and all of them Ready.
    async fn ready_pods(&self, selector: &str, n: usize) -> Result<Vec<(String, String)>> {
        eventually(
            &format!("{n} Ready pods of {selector}"),
            Duration::from_secs(180),
            || async {
                let ready: Vec<(String, String)> = self
                    .pods(selector)?
                    .iter()
                    .filter(|p| p["metadata"]["deletionTimestamp"].is_null() && is_ready(p))
                    .map(|p| {
                        (
                            p["metadata"]["name"].as_str().unwrap_or("").to_string(),
                            p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect();
                // Pods of a powered-off node stay Terminating, as in Kubernetes, until
                // their kubelet confirms or someone force-deletes them: not counted.
                let live = self
                    .pods(selector)?
                    .iter()
                    .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                    .count();
                Ok((ready.len() == n && live == n).then_some(ready))
            },
        )
        .await
        .with_context(|| self.logs_of("w1"))
    }

    pub(crate) fn logs_of(&self, machine: &str) -> String {
        let dir = self.dir.join(machine).join("logs");
        let mut s = String::new();
        for log in [
            "kubelet",
            "netd",
            "controller-manager",
            "scheduler",
            "apiserver",
        ] {
            let path = dir.join(format!("{log}.log"));
            if path.exists() {
                s.push_str(&format!("--- {machine} {log} ---\n{}\n", tail(&path, 15)));
            }
        }
        s
    }

    /// The distinct hostnames answering `service`'s port 80 over `tries` requests
    /// from pod `client`, the name resolved by the cluster DNS. busybox's own nslookup
    /// and nc: Debian's static busybox wget crashes resolving anything.
    fn responders(&self, client: &str, service: &str, tries: usize) -> Result<BTreeSet<String>> {
        let script = format!(
            "ip=$(nslookup {service} | awk '/^Address: /{{print $2}}' | tail -1); \
             [ -n \"$ip\" ] || {{ echo no address for {service} >&2; exit 1; }}; \
             for i in $(seq {tries}); do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 $ip 80 | tail -1; done"
        );
        let out = self.kubectl(&["exec", client, "--", "sh", "-c", &script])?;
        Ok(out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for m in ["cp1", "w1", "w2"] {
                eprintln!("{}", self.logs_of(m));
            }
        }
        if !self.down {
            match self.lab(&["down"]) {
                Ok(out) if out.status.success() => {}
                Ok(out) => eprintln!("lab down: {}", String::from_utf8_lossy(&out.stderr)),
                Err(e) => eprintln!("lab down: {e:#}"),
            }
        }
    }
}

/// The machines `lab status` shows as the Raft leader.
fn leaders(status: &str) -> Vec<String> {
    status
        .lines()
        .filter(|l| l.split("  ").map(str::trim).any(|cell| cell == "leader"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Removes a file when dropped, also when the test failed.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `skiffctl image load` of a `docker save` archive under a name no registry serves
/// (converted from the test busybox with skopeo): both workers list it in
/// `status.images`, and a pod that may not pull runs it.
async fn image_load_runs_a_pod_without_a_registry(lab: &TestLab) -> Result<()> {
    let name = format!("skiff.invalid/loaded-{}/busybox:1", lab.name);
    let tmp = tempfile::tempdir()?;
    let file_name = format!("loaded-{}.tar", lab.name);
    let archive = tmp.path().join(&file_name);
    let out = Command::new("skopeo")
        .arg("copy")
        .arg(format!(
            "oci-archive:{}",
            archive_dir().join("busybox.tar").display()
        ))
        .arg(format!("docker-archive:{}:{name}", archive.display()))
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The copy lands in the image directory the lab's kubelets share.
    let _copy = RemoveOnDrop(archive_dir().join(&file_name));
    let out = Command::new(&lab.skiffctl)
        .arg("--kubeconfig")
        .arg(&lab.kubeconfig)
        .args(["image", "load"])
        .arg(&archive)
        .args(["--name", &lab.name, "--dir"])
        .arg(&lab.dir)
        .env_remove("KUBECONFIG")
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success()
            && stdout.contains(&format!(
                "Image: {name:?} (from {file_name}) loaded onto w1, w2"
            )),
        "image load: {stdout}
{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let images = lab.kubectl(&[
        "get",
        "node",
        "w2",
        "-o",
        "jsonpath={.status.images[*].names}",
    ])?;
    anyhow::ensure!(images.contains(&name), "{images}");
    lab.kubectl(&[
        "run",
        "loaded",
        "--image",
        &name,
        "--image-pull-policy=Never",
        "--restart=Never",
        "--",
        "true",
    ])?;
    eventually("the loaded image ran", Duration::from_secs(60), || async {
        let phase = lab.kubectl(&["get", "pod", "loaded", "-o", "jsonpath={.status.phase}"])?;
        Ok((phase == "Succeeded").then_some(()))
    })
    .await?;
    lab.kubectl(&["delete", "pod", "loaded"])?;
    Ok(())
}

/// A Deployment whose pods answer HTTP on 8080 with their own hostname, so a client
/// can count which pods a Service reached.
const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 4
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: skiff.invalid/test/busybox:1
        command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
        readinessProbe:
          tcpSocket: {port: 8080}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: Pod
metadata:
  name: client
  labels: {app: client}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: skiff.invalid/test/busybox:1
    command: ["sleep", "3600"]
"#;

fn apply(lab: &TestLab, manifest: &str) -> Result<()> {
    let file = lab.dir.with_file_name("web.yaml");
    std::fs::write(&file, manifest)?;
    lab.kubectl(&["apply", "-f", file.to_str().context("path")?])?;
    Ok(())
}

fn leftovers(lab: &TestLab, supervisor_pid: Option<i32>) -> Vec<String> {
    let mut left = Vec::new();
    let netns = Command::new("ip").args(["netns", "list"]).output();
    if let Ok(out) = netns {
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            if l.starts_with(&format!("skiff-{}-", lab.name)) {
                left.push(format!("netns {l}"));
            }
        }
    }
    let links = Command::new("ip").args(["-o", "link", "show"]).output();
    if let Ok(out) = links {
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            if l.contains(&format!(": sk{}", lab.name)) {
                left.push(format!("link {l}"));
            }
        }
    }
    let namespaces = Command::new("ctr")
        .args(["namespaces", "ls", "-q"])
        .output();
    if let Ok(out) = namespaces {
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            if l.starts_with(&format!("skiff-{}-", lab.name)) {
                left.push(format!("containerd namespace {l}"));
            }
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let dir = lab.dir.display().to_string();
    for l in mounts.lines() {
        if l.contains(&dir) {
            left.push(format!("mount {l}"));
        }
    }
    if lab.dir.exists() {
        left.push(format!("directory {}", lab.dir.display()));
    }
    if let Some(pid) = supervisor_pid {
        // A zombie holds nothing: it only waits for whoever adopted it to reap it.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
        if state.is_some_and(|s| !s.starts_with('Z')) {
            left.push(format!("supervisor process {pid} ({stat})"));
        }
    }
    let kubeconfig = std::fs::read_to_string(&lab.kubeconfig).unwrap_or_default();
    if kubeconfig.contains(&format!("skiff-{}", lab.name)) {
        left.push("the kubeconfig context".into());
    }
    left
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lab_runs_a_service_survives_losing_a_worker_and_the_leader_then_goes_away() -> Result<()>
{
    let mut lab = TestLab::up()?;

    // Idempotent, and it says so.
    let again = lab.lab_ok(&["up"])?;
    assert!(again.contains("already running"), "{again}");
    let status = lab.lab_ok(&["status"])?;
    for m in ["cp1", "cp2", "cp3", "w1", "w2"] {
        assert!(status.contains(m), "status lacks {m}:\n{status}");
    }
    assert_eq!(leaders(&status).len(), 1, "{status}");
    assert!(status.contains("Kubernetes: 40s"), "{status}");
    let nodes = lab.kubectl(&["get", "nodes", "-o", "name"])?;
    assert_eq!(
        nodes.split_whitespace().collect::<Vec<_>>(),
        ["node/w1", "node/w2"]
    );

    // Four replicas over both workers, all reached through the Service by DNS name.
    apply(&lab, WEB)?;
    let pods = lab.ready_pods("app=web", 4).await?;
    let used: BTreeSet<&str> = pods.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(used, BTreeSet::from(["w1", "w2"]), "{pods:?}");
    lab.ready_pods("app=client", 1).await?;
    let names: BTreeSet<String> = pods.iter().map(|(p, _)| p.clone()).collect();
    let reached = eventually(
        "every web pod answering through the Service",
        Duration::from_secs(60),
        || async {
            let r = lab.responders("client", "web.default.svc.cluster.local", 40)?;
            Ok((r == names).then_some(r))
        },
    )
    .await?;
    assert_eq!(reached.len(), 4);

    // An archive loaded without a registry runs on the workers.
    image_load_runs_a_pod_without_a_registry(&lab).await?;

    // Scale to 6 and back.
    lab.kubectl(&["scale", "deployment/web", "--replicas=6"])?;
    lab.ready_pods("app=web", 6).await?;
    lab.kubectl(&["scale", "deployment/web", "--replicas=4"])?;
    lab.ready_pods("app=web", 4).await?;

    // A rolling update replaces every pod.
    let before: BTreeSet<String> = lab
        .ready_pods("app=web", 4)
        .await?
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    lab.kubectl(&["rollout", "restart", "deployment/web"])?;
    lab.kubectl(&["rollout", "status", "deployment/web", "--timeout=150s"])?;
    let after = lab.ready_pods("app=web", 4).await?;
    assert!(
        after.iter().all(|(p, _)| !before.contains(p)),
        "{before:?} -> {after:?}"
    );

    // Power w2 off: its node is lost and its pods come back on w1.
    let killed = lab.lab_ok(&["chaos", "kill", "w2"])?;
    assert!(killed.contains("powered off"), "{killed}");
    let status = lab.lab_ok(&["status"])?;
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("w2") && l.contains("killed")),
        "{status}"
    );
    eventually(
        "w2 NotReady or Unknown",
        Duration::from_secs(90),
        || async {
            let node: Value =
                serde_json::from_str(&lab.kubectl(&["get", "node", "w2", "-o", "json"])?)?;
            Ok((!is_ready(&node)).then_some(()))
        },
    )
    .await?;
    let moved = lab.ready_pods("app=web", 4).await?;
    assert!(moved.iter().all(|(_, n)| n == "w1"), "{moved:?}");

    // Kill the store's leader machine; pods keep being created.
    let status = lab.lab_ok(&["status"])?;
    let leader = leaders(&status).pop().context("no leader in lab status")?;
    lab.lab_ok(&["chaos", "kill", &leader])?;
    lab.kubectl(&["scale", "deployment/web", "--replicas=5"])?;
    let five = lab.ready_pods("app=web", 5).await?;
    assert!(five.iter().all(|(_, n)| n == "w1"), "{five:?}");
    let status = lab.lab_ok(&["status"])?;
    let new_leader = leaders(&status);
    assert_eq!(new_leader.len(), 1, "a new leader:\n{status}");
    assert_ne!(new_leader[0], leader, "{status}");

    // Down leaves nothing behind.
    let pid: Option<i32> = status
        .split("supervisor pid ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok());
    let down = lab.lab_ok(&["down"])?;
    lab.down = true;
    assert!(down.contains("is down"), "{down}");
    let left = leftovers(&lab, pid);
    assert!(left.is_empty(), "lab down left: {left:#?}");
    Ok(())
}
