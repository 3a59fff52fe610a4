//! A control plane as real processes: a 3-member `skiff store` cluster on loopback and
//! one or more `skiff apiserver`s on it, with a kubeconfig for the real `kubectl`.
//!
//! Like [`crate::cluster`], processes die with the test process, and when a test panics
//! the drop prints the apiservers' log tails.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cluster::{
    dying_with_parent, skiff_binary, tail, Cluster, ClusterSpec, Flavor, Spawner,
};

/// Path of the kubectl binary the tests drive.
pub const KUBECTL: &str = "kubectl";

struct Apiserver {
    port: u16,
    log: PathBuf,
    child: Option<Child>,
}

/// A store cluster plus apiservers.
pub struct ControlPlane {
    /// The store members.
    pub store: Cluster,
    apiservers: Mutex<Vec<Apiserver>>,
    spawner: Spawner,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

/// A free loopback port (bound and released; good enough on a test machine).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl ControlPlane {
    /// Starts a 3-member store and `apiservers` apiservers, and waits until each is ready.
    pub async fn start(apiservers: usize) -> Result<ControlPlane> {
        let store = Cluster::start(ClusterSpec::new(Flavor::skiff()?, 3)).await?;
        store.wait_for_leader(Duration::from_secs(20)).await?;
        let dir = tempfile::Builder::new().prefix("skiff-cp-").tempdir()?;
        let kubeconfig = dir.path().join("kubeconfig");
        let cp = ControlPlane {
            store,
            apiservers: Mutex::new(Vec::new()),
            spawner: Spawner::new()?,
            dir,
            kubeconfig,
        };
        for _ in 0..apiservers {
            cp.add_apiserver().await?;
        }
        cp.write_kubeconfig(0)?;
        Ok(cp)
    }

    /// Starts one more apiserver; returns its index.
    pub async fn add_apiserver(&self) -> Result<usize> {
        let port = free_port()?;
        let i = {
            let mut a = self.apiservers.lock().unwrap_or_else(|p| p.into_inner());
            let log = self.dir.path().join(format!("apiserver-{}.log", a.len()));
            a.push(Apiserver {
                port,
                log,
                child: None,
            });
            a.len() - 1
        };
        self.spawn(i)?;
        self.wait_ready(i, Duration::from_secs(30)).await?;
        Ok(i)
    }

    fn spawn(&self, i: usize) -> Result<()> {
        let mut a = self.apiservers.lock().unwrap_or_else(|p| p.into_inner());
        let server = &mut a[i];
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&server.log)?;
        writeln!(
            log,
            "--- harness: starting apiserver on port {}",
            server.port
        )?;
        let mut cmd = dying_with_parent(&skiff_binary()?);
        cmd.arg("apiserver")
            .arg("--etcd-servers")
            .arg(self.store.client_endpoints().join(","))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--secure-port={}", server.port))
            .env(
                "SKIFF_LOG",
                std::env::var("SKIFF_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        server.child = Some(self.spawner.spawn(cmd)?);
        Ok(())
    }

    /// Base URL of apiserver i.
    pub fn url(&self, i: usize) -> String {
        let a = self.apiservers.lock().unwrap_or_else(|p| p.into_inner());
        format!("http://127.0.0.1:{}", a[i].port)
    }

    /// Process id of apiserver i, or None when it is not running.
    pub fn pid(&self, i: usize) -> Option<u32> {
        let a = self.apiservers.lock().unwrap_or_else(|p| p.into_inner());
        a[i].child.as_ref().map(Child::id)
    }

    /// Waits until apiserver i answers `/readyz`.
    pub async fn wait_ready(&self, i: usize, timeout: Duration) -> Result<()> {
        let url = format!("{}/readyz", self.url(i));
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(out) = Command::new("curl").args(["-sf", "-m", "2", &url]).output() {
                if out.status.success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "apiserver {i} not ready after {timeout:?}; log:\n{}",
                    self.log_tail(i)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills apiserver i (SIGKILL).
    pub fn kill_apiserver(&self, i: usize) -> Result<()> {
        let mut a = self.apiservers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mut c) = a[i].child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// Starts apiserver i again on its old port (after [`Self::kill_apiserver`]), so that
    /// clients holding its URL reconnect, and waits until it is ready.
    pub async fn restart_apiserver(&self, i: usize) -> Result<()> {
        self.kill_apiserver(i)?;
        self.spawn(i)?;
        self.wait_ready(i, Duration::from_secs(30)).await
    }

    /// The tail of apiserver i's log.
    pub fn log_tail(&self, i: usize) -> String {
        let a = self.apiservers.lock().unwrap_or_else(|p| p.into_inner());
        tail(&a[i].log, 60)
    }

    /// Writes a kubeconfig whose current context points at apiserver i.
    pub fn write_kubeconfig(&self, i: usize) -> Result<()> {
        std::fs::write(&self.kubeconfig, kubeconfig_for(&self.url(i)))?;
        Ok(())
    }

    /// A kubeconfig file for apiserver i (a separate file, for a second kubectl).
    pub fn kubeconfig_file(&self, i: usize) -> Result<PathBuf> {
        let path = self.dir.path().join(format!("kubeconfig-{i}"));
        std::fs::write(&path, kubeconfig_for(&self.url(i)))?;
        Ok(path)
    }

    /// The kubeconfig path.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A scratch directory that lives as long as the control plane.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A kubectl command against apiserver 0 (`--kubeconfig` set, no cache dir).
    pub fn kubectl_cmd(&self) -> Command {
        let mut cmd = Command::new(KUBECTL);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("kube-cache"))
            .env_remove("KUBECONFIG");
        cmd
    }

    /// Runs kubectl with `args` and returns its output whatever the exit status.
    pub fn kubectl(&self, args: &[&str]) -> Result<Output> {
        self.kubectl_cmd()
            .args(args)
            .output()
            .with_context(|| format!("running kubectl {args:?}"))
    }

    /// Runs kubectl with `args` and `stdin`, whatever the exit status.
    pub fn kubectl_with_stdin(&self, args: &[&str], stdin: &str) -> Result<Output> {
        let mut child = self
            .kubectl_cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .context("kubectl stdin")?
            .write_all(stdin.as_bytes())?;
        Ok(child.wait_with_output()?)
    }

    /// Runs kubectl with `args`, fails unless it succeeds, and returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.kubectl(args)?;
        check(args, &out)
    }

    /// Like [`Self::kubectl_ok`], with stdin.
    pub fn kubectl_ok_stdin(&self, args: &[&str], stdin: &str) -> Result<String> {
        let out = self.kubectl_with_stdin(args, stdin)?;
        check(args, &out)
    }
}

fn check(args: &[&str], out: &Output) -> Result<String> {
    if !out.status.success() {
        bail!(
            "kubectl {} failed ({}):\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A kubeconfig with one cluster, user and context (`skiff`) for `server`.
pub fn kubeconfig_for(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: {server}\nusers:\n- name: skiff\n  user: {{}}\ncontexts:\n- name: skiff\n  context:\n    cluster: skiff\n    user: skiff\n    namespace: default\ncurrent-context: skiff\n"
    )
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let mut a = self.apiservers.lock().unwrap_or_else(|p| p.into_inner());
        if std::thread::panicking() {
            for (i, s) in a.iter().enumerate() {
                eprintln!("--- apiserver {i} log tail ---\n{}", tail(&s.log, 60));
            }
        }
        for s in a.iter_mut() {
            if let Some(mut c) = s.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
