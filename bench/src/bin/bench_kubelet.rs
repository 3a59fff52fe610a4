//! `bench_kubelet`: pod startup latency and memory of `skiff kubelet` on one node with
//! a warm image (docs/benchmarks.md).
//!
//! 100 pods (one busybox container each) are created at 5 pods/s, Kubernetes'
//! node-throughput shape; a watch records when each is first seen Running. Latency is
//! measured from the moment the create request was sent (creationTimestamp has whole
//! seconds only; the figure from it is printed too). The same image is then started
//! with `ctr run -d` on the same containerd, the floor any kubelet starts from.
//! The kubelet's RSS is read with 0 and with 100 running pods.
//!
//! Each figure is printed as one `bench_kubelet <name> <value> <unit>` line.

use std::collections::HashMap;
use std::process::{Command, ExitCode};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use skiff_client::{watcher, Api, Client, DeleteParams, PostParams};
use skiff_tests::control_plane::ControlPlane;
use skiff_tests::kubelet::{ensure_images, image, KubeletNode};
use skiff_tests::wait::eventually;

#[derive(Parser, Debug)]
#[command(
    name = "bench_kubelet",
    about = "pod startup latency and kubelet memory"
)]
struct Args {
    /// Pods to create.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Creation rate (pods per second).
    #[arg(long, default_value_t = 5.0)]
    rate: f64,
    /// Containers started with `ctr run -d` for the comparison.
    #[arg(long, default_value_t = 20)]
    ctr_runs: usize,
}

fn pod(name: &str, node: &str) -> Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"bench": "kubelet"}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "main", "image": image("busybox"),
                "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]}],
        },
    }))?)
}

fn rss_kib(pid: u32) -> Result<u64> {
    proc_kib(pid, "VmRSS:")
}

/// A `KEY: N kB` line of /proc/PID/status.
fn proc_kib(pid: u32, key: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {key} in /proc/{pid}/status"))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn print(name: &str, value: f64, unit: &str) {
    println!("bench_kubelet {name} {value:.1} {unit}");
}

async fn wait_gone(pods: &Api<Pod>) -> Result<()> {
    eventually("bench pods gone", Duration::from_secs(300), || async {
        let left = pods
            .list(&skiff_client::ListParams::default().labels("bench=kubelet"))
            .await?
            .items
            .len();
        if left == 0 {
            return Ok(Some(()));
        }
        bail!("{left} pods left")
    })
    .await
}

async fn bench(args: Args) -> Result<()> {
    tokio::task::spawn_blocking(ensure_images).await??;
    let cp = ControlPlane::start(1).await?;
    let node = KubeletNode::start(&cp, "bench-kl", &[])?;
    let client = Client::from_kubeconfig(Some(cp.kubeconfig()), None)?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // Warm: the image pulled and unpacked, the node registered.
    pods.create(&PostParams::default(), &pod("warm", &node.name)?)
        .await?;
    eventually("warm-up pod Running", Duration::from_secs(120), || async {
        let p = pods.get("warm").await?;
        let phase = p.status.and_then(|s| s.phase);
        Ok((phase.as_deref() == Some("Running")).then_some(()))
    })
    .await?;
    pods.delete("warm", &DeleteParams::default()).await?;
    wait_gone(&pods).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = node.pid().context("kubelet pid")?;
    let rss_idle = rss_kib(pid)?;

    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen: Arc<Mutex<HashMap<String, (Instant, jiff::Timestamp)>>> = Arc::default();
    let watch = {
        let seen = seen.clone();
        let api: Api<Pod> = Api::namespaced(client.clone(), "default");
        let n = args.pods;
        tokio::spawn(async move {
            let mut stream =
                watcher::watcher(api, watcher::Config::default().labels("bench=kubelet"));
            while let Some(event) = stream.next().await {
                let p = match event {
                    Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => p,
                    _ => continue,
                };
                let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                let (Some(name), Some(created)) = (
                    p.metadata.name.clone(),
                    p.metadata.creation_timestamp.clone(),
                ) else {
                    continue;
                };
                if running {
                    let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                    seen.entry(name).or_insert((Instant::now(), created.0));
                    if seen.len() >= n {
                        return;
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let start = Instant::now();
    let mut creates = Vec::new();
    for i in 0..args.pods {
        tokio::time::sleep_until((start + interval * i as u32).into()).await;
        let name = format!("bench-{i:03}");
        let p = pod(&name, &node.name)?;
        let (pods, sent) = (pods.clone(), sent.clone());
        creates.push(tokio::spawn(async move {
            sent.lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name, Instant::now());
            pods.create(&PostParams::default(), &p).await.map(|_| ())
        }));
    }
    for c in creates {
        c.await??;
    }
    tokio::time::timeout(Duration::from_secs(600), watch)
        .await
        .context("not all pods Running within 10 minutes")??;
    let (sent, seen) = (
        sent.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        seen.lock().unwrap_or_else(|e| e.into_inner()).clone(),
    );
    let mut from_send: Vec<f64> = Vec::new();
    let mut from_creation: Vec<f64> = Vec::new();
    let now_wall = jiff::Timestamp::now();
    let now_mono = Instant::now();
    for (name, (at, created)) in &seen {
        if let Some(s) = sent.get(name) {
            from_send.push(at.duration_since(*s).as_secs_f64() * 1000.0);
        }
        let wall = now_wall.checked_sub(jiff::SignedDuration::try_from(
            now_mono.duration_since(*at),
        )?)?;
        from_creation.push(wall.duration_since(*created).as_secs_f64() * 1000.0);
    }
    from_send.sort_by(f64::total_cmp);
    from_creation.sort_by(f64::total_cmp);
    ensure!(
        from_send.len() == args.pods,
        "only {} pods measured",
        from_send.len()
    );
    // Steady state: the start-up burst is over and the daemon's periodic heap trim
    // (every 30 s) has run at least once since.
    tokio::time::sleep(Duration::from_secs(35)).await;
    let rss_busy = rss_kib(pid)?;
    let anon_busy = proc_kib(pid, "RssAnon:")?;

    print("startup_p50", percentile(&from_send, 50.0), "ms");
    print("startup_p99", percentile(&from_send, 99.0), "ms");
    print("startup_max", percentile(&from_send, 100.0), "ms");
    print(
        "startup_from_creation_timestamp_p50",
        percentile(&from_creation, 50.0),
        "ms",
    );
    print(
        "startup_from_creation_timestamp_p99",
        percentile(&from_creation, 99.0),
        "ms",
    );
    print("rss_0_pods", rss_idle as f64 / 1024.0, "MiB");
    print(
        &format!("rss_{}_pods", args.pods),
        rss_busy as f64 / 1024.0,
        "MiB",
    );
    // VmRSS less this is the binary's code, shared with every skiff daemon on the node.
    print(
        &format!("rss_anon_{}_pods", args.pods),
        anon_busy as f64 / 1024.0,
        "MiB",
    );

    // The floor: ctr run -d of the same image on the same containerd.
    let image_name = image("busybox");
    let mut ctr_ms = Vec::new();
    for i in 0..args.ctr_runs {
        let id = format!("bench-ctr-{i}");
        let t = Instant::now();
        let out = Command::new("ctr")
            .args([
                "-n",
                &node.namespace,
                "run",
                "-d",
                &image_name,
                &id,
                "sleep",
                "3600",
            ])
            .output()?;
        ctr_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if !out.status.success() {
            bail!("ctr run: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    for i in 0..args.ctr_runs {
        let id = format!("bench-ctr-{i}");
        let _ = node.ctr(&["tasks", "kill", "-s", "SIGKILL", &id]);
        let _ = node.ctr(&["tasks", "delete", "-f", &id]);
        let _ = node.ctr(&["containers", "rm", &id]);
    }
    ctr_ms.sort_by(f64::total_cmp);
    print("ctr_run_p50", percentile(&ctr_ms, 50.0), "ms");
    print("ctr_run_p99", percentile(&ctr_ms, 99.0), "ms");

    for i in 0..args.pods {
        let _ = pods
            .delete(&format!("bench-{i:03}"), &DeleteParams::default())
            .await;
    }
    wait_gone(&pods).await?;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = Args::parse();
    match bench(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_kubelet: {e:#}");
            ExitCode::FAILURE
        }
    }
}
