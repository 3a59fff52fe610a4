//! `bench_controllers`: a Deployment scaled 0 → N → 0 (N = 1,000 by default) against
//! `skiff controller-manager`, through a real apiserver on a 3-member store, without a
//! scheduler or kubelets (pods stay unscheduled, so deleting them is immediate). Prints
//! the time until all N pods exist and until all are gone, pods created and deleted
//! per second, and the controller manager's CPU time and peak RSS read from /proc.
//! See docs/benchmarks.md.

use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use skiff_client::watcher::{self, Event};
use skiff_client::{Api, Client, Patch, PatchParams, PostParams};
use skiff_tests::cluster::{dying_with_parent, skiff_binary, tail, Spawner};
use skiff_tests::control_plane::{free_port, ControlPlane};

#[derive(Parser, Debug)]
#[command(
    name = "bench_controllers",
    about = "Deployment 0 → N → 0 against skiff controller-manager"
)]
struct Args {
    /// Replicas to scale to.
    #[arg(long, default_value_t = 1000)]
    replicas: usize,
    /// Give up after this many seconds per phase.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

/// Clock ticks per second of /proc/<pid>/stat; 100 on every Linux this runs on.
const CLK_TCK: f64 = 100.0;

/// CPU seconds (user + system) of a process.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').context("odd /proc stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11).context("utime")?.parse()?;
    let stime: f64 = f.get(12).context("stime")?.parse()?;
    Ok((utime + stime) / CLK_TCK)
}

/// A `VmRSS`/`VmHWM`-style field of /proc/<pid>/status, in KiB.
fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("{field} in /proc/{pid}/status"))
}

fn deployment(replicas: i32) -> Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": "bench"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "bench"}},
            "template": {
                "metadata": {"labels": {"app": "bench"}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}
            }
        }
    }))?)
}

async fn scale(api: &Api<Deployment>, replicas: usize) -> Result<()> {
    api.patch(
        "bench",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": replicas}})),
    )
    .await?;
    Ok(())
}

async fn wait_for(
    count: &AtomicUsize,
    want: usize,
    timeout: Duration,
    what: &str,
) -> Result<Duration> {
    let t = Instant::now();
    while count.load(Ordering::SeqCst) != want {
        if t.elapsed() > timeout {
            bail!(
                "{what}: {} pods after {timeout:?}",
                count.load(Ordering::SeqCst)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(t.elapsed())
}

async fn run(args: Args) -> Result<()> {
    let cp = ControlPlane::start(1).await?;
    let port = free_port()?;
    let log = cp.dir().join("controller-manager.log");
    let file = std::fs::File::create(&log)?;
    let mut cmd = dying_with_parent(&skiff_binary()?);
    cmd.arg("controller-manager")
        .arg("--kubeconfig")
        .arg(cp.kubeconfig())
        .arg("--bind-address=127.0.0.1")
        .arg(format!("--secure-port={port}"))
        .env("SKIFF_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
    let spawner = Spawner::new()?;
    let mut child = spawner.spawn(cmd)?;
    let pid = child.id();
    let result = measure(&cp, pid, port, &args, &log).await;
    let _ = child.kill();
    let _ = child.wait();
    result
}

async fn measure(cp: &ControlPlane, pid: u32, port: u16, args: &Args, log: &Path) -> Result<()> {
    let health = format!("http://127.0.0.1:{port}/healthz");
    let t = Instant::now();
    loop {
        if skiff_client::reqwest_builder()
            .build()?
            .get(&health)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        if t.elapsed() > Duration::from_secs(60) {
            bail!("controller-manager not healthy; log:\n{}", tail(log, 40));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = Client::new(&cp.url(0))?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // Live pod count from a watch, so that counting costs the apiserver nothing extra.
    let count = Arc::new(AtomicUsize::new(0));
    let synced = Arc::new(AtomicUsize::new(0));
    {
        let count = count.clone();
        let synced = synced.clone();
        let mut events = watcher::watcher(pods, watcher::Config::default().labels("app=bench"));
        tokio::spawn(async move {
            let mut live = std::collections::HashSet::new();
            let mut listing = std::collections::HashSet::new();
            while let Some(e) = events.next().await {
                match e {
                    Ok(Event::Init) => listing.clear(),
                    Ok(Event::InitApply(p)) => {
                        listing.insert(p.metadata.name.unwrap_or_default());
                    }
                    Ok(Event::InitDone) => {
                        live = std::mem::take(&mut listing);
                        synced.store(1, Ordering::SeqCst);
                    }
                    Ok(Event::Apply(p)) => {
                        live.insert(p.metadata.name.unwrap_or_default());
                    }
                    Ok(Event::Delete(p)) => {
                        live.remove(&p.metadata.name.unwrap_or_default());
                    }
                    Err(_) => continue,
                }
                count.store(live.len(), Ordering::SeqCst);
            }
        });
    }
    while synced.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    deployments
        .create(&PostParams::default(), &deployment(0)?)
        .await?;
    // Peak RSS sampled while it works (VmHWM also covers the start).
    let peak_rss = Arc::new(AtomicU64::new(0));
    let sampler = {
        let peak = peak_rss.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(kib) = status_kib(pid, "VmRSS:") {
                    peak.fetch_max(kib, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = status_kib(pid, "VmRSS:")?;
    let timeout = Duration::from_secs(args.timeout);
    let n = args.replicas;

    let cpu0 = cpu_seconds(pid)?;
    scale(&deployments, n).await?;
    let up = wait_for(&count, n, timeout, "scale up").await?;
    let cpu1 = cpu_seconds(pid)?;
    // Let the ReplicaSet's status settle so scale-down starts from a quiet state.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu2 = cpu_seconds(pid)?;
    scale(&deployments, 0).await?;
    let down = wait_for(&count, 0, timeout, "scale down").await?;
    let cpu3 = cpu_seconds(pid)?;
    sampler.abort();
    let hwm = status_kib(pid, "VmHWM:")?;

    println!("bench_controllers: Deployment 0 -> {n} -> 0, skiff controller-manager (pid {pid})");
    println!(
        "scale up:   {n} pods exist after {:.2} s  ({:.0} pods/s), controller-manager CPU {:.2} s",
        up.as_secs_f64(),
        n as f64 / up.as_secs_f64(),
        cpu1 - cpu0
    );
    println!(
        "scale down: all gone after {:.2} s  ({:.0} pods/s), controller-manager CPU {:.2} s",
        down.as_secs_f64(),
        n as f64 / down.as_secs_f64(),
        cpu3 - cpu2
    );
    println!(
        "controller-manager RSS: idle {:.1} MiB, peak sampled {:.1} MiB, VmHWM {:.1} MiB",
        idle_rss as f64 / 1024.0,
        peak_rss.load(Ordering::SeqCst) as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_controllers: {e:#}");
            ExitCode::FAILURE
        }
    }
}
