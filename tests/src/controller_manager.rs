//! `skiff controller-manager` processes against a [`ControlPlane`].

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cluster::{dying_with_parent, skiff_binary, tail, Spawner};
use crate::control_plane::{free_port, ControlPlane};
use crate::wait::eventually;

const TIMEOUT: Duration = Duration::from_secs(60);

/// A `skiff controller-manager` process; killed on drop, its log printed if the test
/// failed.
pub struct ControllerManager {
    child: Option<Child>,
    log: PathBuf,
    port: u16,
    _spawner: Spawner,
}

impl ControllerManager {
    /// Starts one with `extra` flags and waits for its /healthz.
    pub async fn start(cp: &ControlPlane, extra: &[&str]) -> Result<ControllerManager> {
        let port = free_port()?;
        let log = cp.dir().join(format!("controller-manager-{port}.log"));
        let file = std::fs::File::create(&log)?;
        let mut cmd = dying_with_parent(&skiff_binary()?);
        cmd.arg("controller-manager")
            .arg("--kubeconfig")
            .arg(cp.kubeconfig())
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--secure-port={port}"))
            .args(extra)
            .env(
                "SKIFF_LOG",
                std::env::var("SKIFF_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        let spawner = Spawner::new()?;
        let child = spawner.spawn(cmd)?;
        let cm = ControllerManager {
            child: Some(child),
            log,
            port,
            _spawner: spawner,
        };
        let url = format!("http://127.0.0.1:{port}/healthz");
        eventually("controller-manager /healthz", TIMEOUT, || async {
            Ok(crate::http::get(&url)
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ()))
        })
        .await
        .with_context(|| format!("log:\n{}", tail(&cm.log, 40)))?;
        Ok(cm)
    }

    /// Its /metrics text.
    pub async fn metrics(&self) -> Result<String> {
        Ok(
            crate::http::get(format!("http://127.0.0.1:{}/metrics", self.port))
                .await?
                .text()
                .await?,
        )
    }
}

impl Drop for ControllerManager {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- controller-manager log tail ---\n{}",
                tail(&self.log, 80)
            );
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
