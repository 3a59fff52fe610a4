//! `bench_scheduler`: kube-scheduler's scheduler_perf shape "SchedulingBasic" (5,000
//! nodes with 4 cpu, 32 GiB and 110 pods; 10,000 pods with small requests) against
//! `skiff scheduler`, through a real apiserver on a 3-member store, and the pure
//! in-memory decision rate of `skiff_scheduler::schedule` without I/O. See
//! docs/benchmarks.md.

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use rand::rngs::StdRng;
use rand::SeedableRng;
use skiff_client::{Api, Client, ListParams, PostParams};
use skiff_scheduler::cache::Cache;
use skiff_scheduler::{schedule, PodInfo, Weights};
use skiff_tests::control_plane::ControlPlane;
use skiff_tests::scheduler::{pod_requesting, ready_node, SchedulerProcess};

#[derive(Parser, Debug)]
#[command(
    name = "bench_scheduler",
    about = "SchedulingBasic against skiff scheduler"
)]
struct Args {
    /// Nodes (4 cpu, 32Gi, 110 pods each).
    #[arg(long, default_value_t = 5000)]
    nodes: usize,
    /// Pods (100m cpu, 500Mi memory each).
    #[arg(long, default_value_t = 10000)]
    pods: usize,
    /// Concurrent creates while setting up.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Only the in-memory decision rate.
    #[arg(long)]
    in_memory_only: bool,
}

fn node(i: usize) -> Node {
    ready_node(&format!("node-{i:05}"), "4", "32Gi", "110")
}

fn pod(i: usize) -> Pod {
    pod_requesting(&format!("pod-{i:05}"), "100m", "500Mi")
}

/// Schedules every pod into an in-memory cache, assuming each on its node as the daemon
/// does; returns decisions per second.
fn in_memory(nodes: usize, pods: usize) -> Result<f64> {
    let mut cache = Cache::new();
    for i in 0..nodes {
        cache.set_node(&node(i));
    }
    let infos: Vec<PodInfo> = (0..pods)
        .map(|i| {
            let mut p = pod(i);
            p.metadata.namespace = Some("default".into());
            PodInfo::new(&p)
        })
        .collect();
    let mut rng = StdRng::seed_from_u64(1);
    let weights = Weights::default();
    let mut start = 0;
    let t = Instant::now();
    for info in &infos {
        let d = schedule(cache.snapshot(), info, start, &weights, &mut rng)
            .map_err(|e| anyhow::anyhow!("{}: {e}", info.key))?;
        start = (start + d.evaluated) % nodes.max(1);
        cache.assume(&info.key, &d.node, info.usage());
    }
    Ok(pods as f64 / t.elapsed().as_secs_f64())
}

async fn create_all<K, F>(api: &Api<K>, n: usize, clients: usize, make: F) -> Result<f64>
where
    K: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    F: Fn(usize) -> K,
{
    let errors = AtomicUsize::new(0);
    let t = Instant::now();
    futures::stream::iter((0..n).map(make))
        .for_each_concurrent(clients, |obj| {
            let errors = &errors;
            async move {
                for attempt in 0..5 {
                    match api.create(&PostParams::default(), &obj).await {
                        Ok(_) => return,
                        Err(e) if e.is_already_exists() => return,
                        Err(e) if attempt == 4 => {
                            eprintln!("create failed: {e}");
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
            }
        })
        .await;
    let errors = errors.load(Ordering::Relaxed);
    if errors > 0 {
        bail!("{errors} creates failed");
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

fn metric(text: &str, needle: &str) -> u64 {
    text.lines()
        .find(|l| l.contains(needle))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn end_to_end(args: &Args) -> Result<()> {
    let cp = ControlPlane::start(1).await?;
    let client = Client::new(&cp.url(0))?;
    let nodes: Api<Node> = Api::cluster(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rate = create_all(&nodes, args.nodes, args.clients, node).await?;
    println!("created {} nodes at {rate:.0}/s", args.nodes);
    let rate = create_all(&pods, args.pods, args.clients, pod).await?;
    println!(
        "created {} pods at {rate:.0}/s (scheduler not running yet)",
        args.pods
    );

    let started = Instant::now();
    let sched = SchedulerProcess::start(
        cp.kubeconfig(),
        cp.dir(),
        "bench",
        &["--leader-elect=false"],
    )
    .await?;
    let pid = sched.pid().context("scheduler pid")?;
    let mut first: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    let scheduled_needle = "result=\"scheduled\"";
    let last = loop {
        let m = sched.get("/metrics").await?;
        let done = metric(&m, scheduled_needle) as usize;
        if done > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        if done >= args.pods {
            break Instant::now();
        }
        if Instant::now() > deadline {
            bail!("only {done} of {} pods bound after 600 s", args.pods);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let first = first.context("no binding seen")?;
    let window = last.duration_since(first).as_secs_f64().max(1e-3);
    let rss = rss_kib(pid);
    let m = sched.get("/metrics").await?;
    let algo_sum: f64 = m
        .lines()
        .find(|l| l.starts_with("scheduler_scheduling_algorithm_duration_seconds_sum"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    // Every pod must really be bound.
    let mut bound = 0;
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().limit(500);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = pods.list(&lp).await?;
        bound += page
            .items
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
            .count();
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    if bound != args.pods {
        bail!("{bound} of {} pods have a nodeName", args.pods);
    }
    let pods_per_s = (args.pods.saturating_sub(1)) as f64 / window;
    println!(
        "end to end: {} pods on {} nodes: first binding {:.1} s after start, first→last {window:.1} s, {pods_per_s:.0} pods/s; algorithm {:.1} s in total; scheduler RSS {} MiB",
        args.pods,
        args.nodes,
        first.duration_since(started).as_secs_f64(),
        algo_sum,
        rss / 1024
    );
    println!(
        "BENCH {}",
        serde_json::json!({"bench": "scheduler", "phase": "end-to-end", "nodes": args.nodes, "pods": args.pods,
            "pods_per_s": pods_per_s.round(), "window_s": window, "algorithm_s": algo_sum, "rss_kib": rss})
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = (|| -> Result<()> {
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!("load average before: {}", load.trim());
        for (nodes, pods) in [(args.nodes, args.pods), (1000, 30000)] {
            let rate = in_memory(nodes, pods)?;
            println!("in memory: {pods} pods on {nodes} nodes: {rate:.0} decisions/s");
            println!(
                "BENCH {}",
                serde_json::json!({"bench": "scheduler", "phase": "in-memory", "nodes": nodes, "pods": pods, "pods_per_s": rate.round()})
            );
        }
        if args.in_memory_only {
            return Ok(());
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        rt.block_on(end_to_end(&args))?;
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!("load average after: {}", load.trim());
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_scheduler: {e:#}");
            ExitCode::FAILURE
        }
    }
}
