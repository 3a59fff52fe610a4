//! `skiff scheduler` processes for tests and benchmarks, and Node and Pod objects shaped
//! for scheduling (a registered, Ready Node with allocatable resources; no kubelet).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use k8s_openapi::api::core::v1::{
    Container, Node, NodeCondition, NodeSpec, NodeStatus, Pod, PodSpec, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::cluster::{dying_with_parent, skiff_binary, tail, Spawner};

/// One `skiff scheduler` process, killed on drop; its log tail is printed when a test
/// panics.
pub struct SchedulerProcess {
    child: Option<Child>,
    log: PathBuf,
    /// Port of its /healthz and /metrics.
    pub port: u16,
    _spawner: Spawner,
}

impl SchedulerProcess {
    /// Starts `skiff scheduler --kubeconfig KUBECONFIG` with `args`, logging to
    /// `dir/scheduler-NAME.log`, and waits until it answers /healthz.
    pub async fn start(kubeconfig: &Path, dir: &Path, name: &str, args: &[&str]) -> Result<Self> {
        let log = dir.join(format!("scheduler-{name}.log"));
        let file = OpenOptions::new().create(true).append(true).open(&log)?;
        let mut cmd = dying_with_parent(&skiff_binary()?);
        cmd.arg("scheduler")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--bind-address=127.0.0.1")
            // Port 0 and the port read back from the log: a port picked here could be
            // taken by a parallel test before the scheduler binds it.
            .arg("--secure-port=0")
            .args(args)
            .env(
                "SKIFF_LOG",
                std::env::var("SKIFF_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        let spawner = Spawner::new()?;
        let child = spawner.spawn(cmd)?;
        let mut s = SchedulerProcess {
            child: Some(child),
            log,
            port: 0,
            _spawner: spawner,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if s.port == 0 {
                s.port = serving_port(&s.log).unwrap_or(0);
            }
            if s.port != 0 && s.get("/healthz").await.is_ok() {
                return Ok(s);
            }
            if let Some(c) = s.child.as_mut() {
                if let Some(status) = c.try_wait()? {
                    bail!("scheduler exited ({status}); log:\n{}", s.log_tail());
                }
            }
            if Instant::now() > deadline {
                bail!("scheduler not healthy after 30 s; log:\n{}", s.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// GETs a path of its health server.
    pub async fn get(&self, path: &str) -> Result<String> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let r = crate::http::get(&url).await?;
        if !r.status().is_success() {
            bail!("GET {url}: {}", r.status());
        }
        Ok(r.text().await?)
    }

    /// Process id, None once killed.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILLs it (no Lease release: the other candidate must wait the Lease out).
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        tail(&self.log, 60)
    }
}

impl Drop for SchedulerProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- scheduler log tail ({}) ---\n{}",
                self.log.display(),
                self.log_tail()
            );
        }
        let _ = self.kill();
    }
}

/// The port in the daemon's "serving /healthz and /metrics addr=IP:PORT" log line.
fn serving_port(log: &Path) -> Option<u16> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("serving /healthz and /metrics"))?;
    let addr = line.split("addr=").nth(1)?.split_whitespace().next()?;
    addr.rsplit(':').next()?.parse().ok()
}

fn q(s: &str) -> Quantity {
    Quantity(s.to_string())
}

/// A Ready Node with `cpu`, `memory` and `pods` allocatable (and the same capacity).
pub fn ready_node(name: &str, cpu: &str, memory: &str, pods: &str) -> Node {
    let resources = BTreeMap::from([
        ("cpu".to_string(), q(cpu)),
        ("memory".to_string(), q(memory)),
        ("pods".to_string(), q(pods)),
    ]);
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(BTreeMap::from([(
                "kubernetes.io/hostname".to_string(),
                name.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            allocatable: Some(resources.clone()),
            capacity: Some(resources),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: Some("KubeletReady".into()),
                ..NodeCondition::default()
            }]),
            ..NodeStatus::default()
        }),
    }
}

/// A one-container pod requesting `cpu` and `memory` ("" for none).
pub fn pod_requesting(name: &str, cpu: &str, memory: &str) -> Pod {
    let mut requests = BTreeMap::new();
    if !cpu.is_empty() {
        requests.insert("cpu".to_string(), q(cpu));
    }
    if !memory.is_empty() {
        requests.insert("memory".to_string(), q(memory));
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("busybox".into()),
                resources: Some(ResourceRequirements {
                    requests: Some(requests),
                    ..ResourceRequirements::default()
                }),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}
