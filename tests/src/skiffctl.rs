//! The built `skiffctl` binary, run against a [`ControlPlane`] as a user runs it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{anyhow, bail, Context, Result};

use crate::control_plane::ControlPlane;

/// Finds `skiffctl`: `$SKIFFCTL_BIN`, else beside `$SKIFF_BIN`, else beside the running
/// executable or one level up (`<target>/release/deps`), else
/// `$CARGO_TARGET_DIR/release/skiffctl`, else `target/release/skiffctl` in the
/// workspace. Build it with `cargo build --release -p skiffctl`.
pub fn skiffctl_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("SKIFFCTL_BIN") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("SKIFFCTL_BIN={} is not a file", path.display());
    }
    let mut candidates = Vec::new();
    if let Some(skiff) = std::env::var_os("SKIFF_BIN") {
        if let Some(dir) = Path::new(&skiff).parent() {
            candidates.push(dir.join("skiffctl"));
        }
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            candidates.push(dir.join("skiffctl"));
        }
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(Path::new(&t).join("release/skiffctl"));
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/skiffctl"));
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            anyhow!(
                "no skiffctl binary found (looked at {candidates:?}); run `cargo build --release -p skiffctl` or set SKIFFCTL_BIN"
            )
        })
}

/// Runs skiffctl with a kubeconfig (`--kubeconfig` unless `env` sets `KUBECONFIG`).
pub struct Skiffctl {
    binary: PathBuf,
    kubeconfig: Option<PathBuf>,
    env: Vec<(String, String)>,
}

impl Skiffctl {
    /// skiffctl against apiserver 0 of `cp`.
    pub fn new(cp: &ControlPlane) -> Result<Skiffctl> {
        Ok(Skiffctl {
            binary: skiffctl_binary()?,
            kubeconfig: Some(cp.kubeconfig().to_path_buf()),
            env: Vec::new(),
        })
    }

    /// skiffctl with no `--kubeconfig`, `KUBECONFIG` and `HOME` set as given.
    pub fn with_env(env: &[(&str, &str)]) -> Result<Skiffctl> {
        Ok(Skiffctl {
            binary: skiffctl_binary()?,
            kubeconfig: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    }

    /// The command, ready for arguments.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.env_remove("KUBECONFIG").env_remove("SKIFF_LOG");
        if let Some(kc) = &self.kubeconfig {
            cmd.arg("--kubeconfig").arg(kc);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs with `args`, whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Result<Output> {
        self.cmd()
            .args(args)
            .output()
            .with_context(|| format!("running skiffctl {args:?}"))
    }

    /// Runs with `args` and `stdin`, whatever the exit status.
    pub fn run_stdin(&self, args: &[&str], stdin: &str) -> Result<Output> {
        let mut child = self
            .cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .context("skiffctl stdin")?
            .write_all(stdin.as_bytes())?;
        Ok(child.wait_with_output()?)
    }

    /// Runs with `args`, fails unless it succeeds, returns stdout.
    pub fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.run(args)?;
        check(args, &out)
    }

    /// Like [`Self::ok`] with stdin.
    pub fn ok_stdin(&self, args: &[&str], stdin: &str) -> Result<String> {
        let out = self.run_stdin(args, stdin)?;
        check(args, &out)
    }

    /// Runs with `args`, fails if it succeeds, returns stderr.
    pub fn fails(&self, args: &[&str]) -> Result<String> {
        let out = self.run(args)?;
        if out.status.success() {
            bail!(
                "skiffctl {} succeeded but should have failed:\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout)
            );
        }
        Ok(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn check(args: &[&str], out: &Output) -> Result<String> {
    if !out.status.success() {
        bail!(
            "skiffctl {} failed ({}):\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A printed table's cells: lines split at runs of two or more spaces, without the
/// `AGE` column (ages move between two runs), for comparing skiffctl with kubectl.
pub fn cells_without_age(table: &str) -> Vec<Vec<String>> {
    let mut age_col = None;
    table
        .lines()
        .map(|line| {
            let cells: Vec<String> = line
                .split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect();
            if cells.iter().any(|c| c == "AGE") {
                age_col = cells.iter().position(|c| c == "AGE");
            }
            match age_col {
                Some(i) if i < cells.len() => cells
                    .into_iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, c)| c)
                    .collect(),
                _ => cells,
            }
        })
        .collect()
}

/// The real kubectl against the cluster of `kubeconfig` (a lab's), with a 20 s request
/// timeout; its stdout, or an error with its stderr.
pub fn kubectl_with(kubeconfig: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--request-timeout=20s")
        .args(args)
        .output()
        .context("running kubectl")?;
    if !out.status.success() {
        bail!(
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
