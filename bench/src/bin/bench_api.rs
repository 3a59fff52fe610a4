//! `bench_api`: pod creates, lists and watches through `skiff apiserver` on a 3-member
//! `skiff store`, all real processes started by the control-plane harness
//! (`tests/src/control_plane.rs`). See docs/benchmarks.md for what it measures and how
//! to read it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use skiff_tests::bench::{percentile_ms, pod_body};
use skiff_tests::control_plane::ControlPlane;
use tokio::time::Instant;

const MEMBERS: usize = 3;
const NAMESPACE: &str = "default";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// kubectl's page size.
const PAGE: usize = 500;

#[derive(Parser, Debug)]
#[command(
    name = "bench_api",
    about = "Pod creates, lists and watches through skiff apiserver on a 3-member skiff store"
)]
struct Args {
    /// The skiff binary (default: `skiff` beside this binary, else $SKIFF_BIN).
    #[arg(long)]
    skiff_binary: Option<PathBuf>,
    /// Creates per second of the steady (open-loop) phase.
    #[arg(long, default_value_t = 200)]
    steady_rate: u32,
    /// Seconds of the steady phase.
    #[arg(long, default_value_t = 20)]
    steady_secs: u64,
    /// Concurrent clients of the maximum-throughput (closed-loop) phase.
    #[arg(long, default_value_t = 64)]
    max_clients: usize,
    /// Seconds of the maximum-throughput phase.
    #[arg(long, default_value_t = 10)]
    max_secs: u64,
    /// Pods stored before the lists (topped up after the create phases).
    #[arg(long, default_value_t = 10_000)]
    pods: u64,
    /// How many times each kind of list is timed.
    #[arg(long, default_value_t = 3)]
    list_runs: usize,
    /// Concurrent watchers.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Updates every watcher must see.
    #[arg(long, default_value_t = 1000)]
    updates: usize,
    /// Updates per second (0: back to back, each after the previous one's answer).
    #[arg(long, default_value_t = 100)]
    update_rate: u32,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(bin) = &args.skiff_binary {
        // The harness finds the binary through $SKIFF_BIN; no other thread runs yet.
        std::env::set_var("SKIFF_BIN", bin);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench_api: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_api: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<()> {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = loadavg();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    println!(
        "bench_api: {MEMBERS}-member skiff store, 1 apiserver; {cpus} CPUs ({cpu}), load average {} {} {}",
        load[0], load[1], load[2]
    );
    emit(
        json!({"measure": "env", "cpus": cpus, "cpu": cpu, "loadavg": load,
        "members": MEMBERS, "apiservers": 1,
        "pod_body_bytes": pod_body("bench-00000").len()}),
    );

    let cp = ControlPlane::start(1).await?;
    let pid = cp.pid(0).context("the apiserver is not running")?;
    let base = cp.url(0);
    println!(
        "apiserver {base} pid {pid}, store logs in {}",
        cp.store.dir().display()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss, hwm) = mem_kib(pid)?;
    println!(
        "rss    idle, no pods:      VmRSS={:.1}MiB VmHWM={:.1}MiB",
        mib(rss),
        mib(hwm)
    );
    emit(json!({"measure": "rss", "when": "idle-empty", "rss_kib": rss, "hwm_kib": hwm}));

    let client = skiff_client::reqwest_builder()
        .timeout(REQUEST_TIMEOUT)
        .build()?;
    let pods_url = format!("{base}/api/v1/namespaces/{NAMESPACE}/pods");
    let names = Arc::new(AtomicU64::new(0));
    let creator = Creator {
        client: client.clone(),
        url: pods_url.clone(),
        names: names.clone(),
    };

    // Opens connections and warms the store's and apiserver's paths before the clock.
    for _ in 0..10 {
        creator.create().await?;
    }

    let procs = Procs::of(&cp)?;
    let cpu_before = procs.cpu()?;
    let steady = creator
        .open_loop(args.steady_rate, Duration::from_secs(args.steady_secs))
        .await;
    let cpu_steady = procs.cpu()?;
    steady.print("steady", &format!("rate={}/s", args.steady_rate));
    emit(steady.json("steady", json!({"target_rate": args.steady_rate})));
    procs.report(
        "steady",
        &cpu_before,
        &cpu_steady,
        steady.latencies_us.len(),
        steady.secs,
    );

    let max = creator
        .closed_loop(args.max_clients, Duration::from_secs(args.max_secs))
        .await;
    let cpu_max = procs.cpu()?;
    max.print("max", &format!("clients={}", args.max_clients));
    emit(max.json("max", json!({"clients": args.max_clients})));
    procs.report(
        "max",
        &cpu_steady,
        &cpu_max,
        max.latencies_us.len(),
        max.secs,
    );

    let stored = names.load(Ordering::Relaxed) - steady.errors - max.errors;
    let fill_started = Instant::now();
    let missing = args.pods.saturating_sub(stored);
    let filled = creator.fill(missing, 32).await?;
    let fill_secs = fill_started.elapsed().as_secs_f64();
    let pods = stored + filled;
    println!(
        "fill   created={filled} in {fill_secs:.1}s ({:.0}/s), pods stored={pods}",
        filled as f64 / fill_secs
    );
    emit(json!({"measure": "fill", "created": filled, "secs": fill_secs, "pods": pods}));

    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss, hwm) = mem_kib(pid)?;
    println!(
        "rss    idle, {pods} pods:  VmRSS={:.1}MiB VmHWM={:.1}MiB (peak since start)",
        mib(rss),
        mib(hwm)
    );
    emit(json!({"measure": "rss", "when": "idle-pods", "pods": pods,
        "rss_kib": rss, "hwm_kib": hwm}));
    let idle_pods_rss = rss;

    let mut list_peak = 0;
    let mut lists_failed = 0;
    for kind in [
        ListKind::Json,
        ListKind::JsonPaged,
        ListKind::Table,
        ListKind::TablePaged,
    ] {
        match bench_list(&client, &pods_url, pid, kind, args.list_runs, pods).await {
            Ok(r) => list_peak = list_peak.max(r.peak_kib),
            Err(e) => {
                println!("list   {:<12} FAILED: {e:#}", kind.name());
                emit(json!({"measure": "list", "kind": kind.name(), "error": format!("{e:#}")}));
                lists_failed += 1;
            }
        }
    }

    let (rss, hwm) = mem_kib(pid)?;
    println!(
        "rss    after the lists:    VmRSS={:.1}MiB VmHWM={:.1}MiB",
        mib(rss),
        mib(hwm)
    );
    emit(
        json!({"measure": "rss", "when": "after-lists", "pods": pods,
        "rss_kib": rss, "hwm_kib": hwm}),
    );

    let watch = bench_watch(&client, &base, pid, &args).await?;

    let (rss, hwm) = mem_kib(pid)?;
    println!(
        "rss    after the watches:  VmRSS={:.1}MiB VmHWM={:.1}MiB",
        mib(rss),
        mib(hwm)
    );
    emit(json!({"measure": "rss", "when": "after-watch", "rss_kib": rss, "hwm_kib": hwm}));

    let load = loadavg();
    println!(
        "\nload average at the end: {} {} {}",
        load[0], load[1], load[2]
    );
    println!("targets:");
    target("create p99 at the steady rate (ms)", steady.p99_ms(), 50.0);
    target(
        "apiserver RSS, idle with the pods stored (MiB)",
        mib(idle_pods_rss),
        60.0,
    );
    target(
        "apiserver RSS, peak during the lists (MiB)",
        mib(list_peak),
        60.0,
    );
    if lists_failed > 0 {
        println!("  lists: {lists_failed} kinds of list failed");
    }
    if watch.missing > 0 {
        println!("  watch: {} deliveries missing", watch.missing);
    }
    if lists_failed > 0 || watch.missing > 0 {
        bail!("some measurements failed (above)");
    }
    Ok(())
}

fn target(name: &str, value: f64, limit: f64) {
    let met = value <= limit;
    println!(
        "  {name}: {value:.1} (target <= {limit}): {}",
        if met { "met" } else { "MISSED" }
    );
    emit(json!({"measure": "target", "name": name, "value": value, "limit": limit, "met": met}));
}

struct Creator {
    client: reqwest::Client,
    url: String,
    names: Arc<AtomicU64>,
}

/// Latencies of the successful creates of a phase, in microseconds.
struct Creates {
    latencies_us: Vec<u64>,
    errors: u64,
    secs: f64,
    /// How late the open-loop sender itself was, at worst.
    max_send_lag_ms: Option<f64>,
    /// The open loop's three slowest seconds: (second of the schedule, slowest create ms).
    slowest_seconds: Vec<(usize, f64)>,
}

impl Creator {
    async fn create(&self) -> Result<()> {
        let n = self.names.fetch_add(1, Ordering::Relaxed);
        create_pod(&self.client, &self.url, &format!("bench-{n:05}")).await
    }

    /// Sends creates at fixed intervals whatever the answers; latency counts from the
    /// scheduled time, so a create that waits behind slow ones is charged for it.
    async fn open_loop(&self, rate: u32, duration: Duration) -> Creates {
        let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
        let n = (duration.as_secs_f64() * f64::from(rate)) as u64;
        let start = Instant::now() + Duration::from_millis(50);
        let mut tasks = Vec::with_capacity(n as usize);
        let mut max_lag = Duration::ZERO;
        for i in 0..n {
            let at = start + interval * i as u32;
            tokio::time::sleep_until(at).await;
            max_lag = max_lag.max(at.elapsed());
            let (client, url) = (self.client.clone(), self.url.clone());
            let name = format!("bench-{:05}", self.names.fetch_add(1, Ordering::Relaxed));
            tasks.push(tokio::spawn(async move {
                let ok = create_pod(&client, &url, &name).await.is_ok();
                (ok, at.elapsed())
            }));
        }
        let mut result = Creates::collect(tasks, start, rate).await;
        result.max_send_lag_ms = Some(max_lag.as_secs_f64() * 1e3);
        result
    }

    /// `clients` clients, each sending its next create when the previous one is answered.
    async fn closed_loop(&self, clients: usize, duration: Duration) -> Creates {
        let start = Instant::now();
        let deadline = start + duration;
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (client, url, names) = (self.client.clone(), self.url.clone(), self.names.clone());
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                while Instant::now() < deadline {
                    let name = format!("bench-{:05}", names.fetch_add(1, Ordering::Relaxed));
                    let began = Instant::now();
                    let ok = create_pod(&client, &url, &name).await.is_ok();
                    out.push((ok, began.elapsed()));
                }
                out
            }));
        }
        let mut latencies_us = Vec::new();
        let mut errors = 0;
        for t in tasks {
            for (ok, d) in t.await.unwrap_or_default() {
                if ok {
                    latencies_us.push(d.as_micros() as u64);
                } else {
                    errors += 1;
                }
            }
        }
        latencies_us.sort_unstable();
        Creates {
            latencies_us,
            errors,
            secs: start.elapsed().as_secs_f64(),
            max_send_lag_ms: None,
            slowest_seconds: Vec::new(),
        }
    }

    /// Creates `n` more pods with `clients` clients; returns how many succeeded.
    async fn fill(&self, n: u64, clients: usize) -> Result<u64> {
        let left = Arc::new(AtomicU64::new(n));
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (client, url, names, left) = (
                self.client.clone(),
                self.url.clone(),
                self.names.clone(),
                left.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut done = 0u64;
                while left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| l.checked_sub(1))
                    .is_ok()
                {
                    let name = format!("bench-{:05}", names.fetch_add(1, Ordering::Relaxed));
                    // A failed create is tried again under a new name: the list needs them all.
                    match create_pod(&client, &url, &name).await {
                        Ok(()) => done += 1,
                        Err(_) => {
                            left.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                done
            }));
        }
        let mut done = 0;
        for t in tasks {
            done += t.await?;
        }
        Ok(done)
    }
}

impl Creates {
    /// Gathers the open loop's creates, sent `rate` per second from `start`.
    async fn collect(
        tasks: Vec<tokio::task::JoinHandle<(bool, Duration)>>,
        start: Instant,
        rate: u32,
    ) -> Creates {
        let mut latencies_us = Vec::with_capacity(tasks.len());
        let mut errors = 0;
        // The slowest create of each second of the schedule: a p99 made by one stall
        // looks different from one made by a steady queue.
        let mut per_second: Vec<u64> = Vec::new();
        for (i, t) in tasks.into_iter().enumerate() {
            let second = i / rate.max(1) as usize;
            if per_second.len() <= second {
                per_second.resize(second + 1, 0);
            }
            match t.await {
                Ok((true, d)) => {
                    let us = d.as_micros() as u64;
                    latencies_us.push(us);
                    per_second[second] = per_second[second].max(us);
                }
                _ => errors += 1,
            }
        }
        latencies_us.sort_unstable();
        let mut slowest: Vec<(usize, u64)> = per_second.into_iter().enumerate().collect();
        slowest.sort_by_key(|(_, us)| std::cmp::Reverse(*us));
        slowest.truncate(3);
        Creates {
            latencies_us,
            errors,
            secs: start.elapsed().as_secs_f64(),
            max_send_lag_ms: None,
            slowest_seconds: slowest
                .into_iter()
                .map(|(s, us)| (s, us as f64 / 1000.0))
                .collect(),
        }
    }

    fn ops_per_sec(&self) -> f64 {
        self.latencies_us.len() as f64 / self.secs
    }

    fn p99_ms(&self) -> f64 {
        percentile_ms(&self.latencies_us, 0.99)
    }

    fn print(&self, phase: &str, shape: &str) {
        println!(
            "create {phase:<6} {shape:<12} ops={:<6} ops/s={:<6.0} p50={:.2}ms p99={:.2}ms max={:.2}ms errors={}{}",
            self.latencies_us.len(),
            self.ops_per_sec(),
            percentile_ms(&self.latencies_us, 0.50),
            self.p99_ms(),
            percentile_ms(&self.latencies_us, 1.0),
            self.errors,
            self.max_send_lag_ms
                .map(|l| format!(" sender-lag<={l:.1}ms"))
                .unwrap_or_default()
        );
        if !self.slowest_seconds.is_empty() {
            let worst: Vec<String> = self
                .slowest_seconds
                .iter()
                .map(|(s, ms)| format!("{s}s: {ms:.0}ms"))
                .collect();
            println!(
                "create {phase:<6} slowest seconds (slowest create in each): {}",
                worst.join(", ")
            );
        }
    }

    fn json(&self, phase: &str, extra: Value) -> Value {
        let mut v = json!({"measure": "create", "phase": phase,
            "ops": self.latencies_us.len(), "errors": self.errors, "secs": self.secs,
            "ops_per_sec": self.ops_per_sec(),
            "p50_ms": percentile_ms(&self.latencies_us, 0.50), "p99_ms": self.p99_ms(),
            "max_ms": percentile_ms(&self.latencies_us, 1.0),
            "max_send_lag_ms": self.max_send_lag_ms,
            "slowest_seconds": self.slowest_seconds});
        if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
            v.extend(extra.clone());
        }
        v
    }
}

async fn create_pod(client: &reqwest::Client, url: &str, name: &str) -> Result<()> {
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .body(pod_body(name))
        .send()
        .await?;
    let status = resp.status();
    // Read the whole answer so that the connection goes back to the pool.
    let body = resp.bytes().await?;
    if status.as_u16() != 201 {
        bail!(
            "create {name}: {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(())
}

#[derive(Clone, Copy, Debug)]
enum ListKind {
    Json,
    JsonPaged,
    Table,
    TablePaged,
}

impl ListKind {
    fn name(self) -> &'static str {
        match self {
            ListKind::Json => "json",
            ListKind::JsonPaged => "json-paged",
            ListKind::Table => "table",
            ListKind::TablePaged => "table-paged",
        }
    }

    fn paged(self) -> bool {
        matches!(self, ListKind::JsonPaged | ListKind::TablePaged)
    }

    fn table(self) -> bool {
        matches!(self, ListKind::Table | ListKind::TablePaged)
    }
}

struct ListResult {
    peak_kib: u64,
}

/// Times `runs` full lists of the pods; resets the apiserver's VmHWM before each so that
/// the peak is the list's own, and samples VmRSS as a cross-check.
async fn bench_list(
    client: &reqwest::Client,
    url: &str,
    pid: u32,
    kind: ListKind,
    runs: usize,
    pods: u64,
) -> Result<ListResult> {
    let mut secs = Vec::new();
    let mut peak_hwm = 0;
    let mut peak_sampled = 0;
    let mut bytes = 0;
    let mut pages = 0;
    for _ in 0..runs.max(1) {
        let hwm_reset = reset_hwm(pid).is_ok();
        let sampler = Sampler::start(pid);
        let started = Instant::now();
        let listed = list_all(client, url, kind).await?;
        secs.push(started.elapsed().as_secs_f64());
        peak_sampled = peak_sampled.max(sampler.stop().await);
        if hwm_reset {
            peak_hwm = peak_hwm.max(mem_kib(pid)?.1);
        }
        if listed.items != pods {
            bail!(
                "list {}: {} items, expected {pods}",
                kind.name(),
                listed.items
            );
        }
        bytes = listed.bytes;
        pages = listed.pages;
        // Memory a list leaves behind shows in the next run's baseline; let it settle.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (rss_after, _) = mem_kib(pid)?;
    let mut sorted = secs.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let peak = peak_hwm.max(peak_sampled);
    println!(
        "list   {:<12} items={pods} pages={pages:<3} bytes={:<9} time median={:.0}ms min={:.0}ms  apiserver peak VmHWM={:.1}MiB sampled={:.1}MiB after={:.1}MiB",
        kind.name(),
        bytes,
        median * 1e3,
        sorted[0] * 1e3,
        mib(peak_hwm),
        mib(peak_sampled),
        mib(rss_after)
    );
    emit(
        json!({"measure": "list", "kind": kind.name(), "items": pods, "pages": pages,
        "limit": if kind.paged() { Some(PAGE) } else { None }, "bytes": bytes,
        "secs": secs, "median_ms": median * 1e3, "min_ms": sorted[0] * 1e3,
        "peak_hwm_kib": peak_hwm, "peak_sampled_kib": peak_sampled,
        "rss_after_kib": rss_after}),
    );
    Ok(ListResult { peak_kib: peak })
}

struct Listed {
    items: u64,
    pages: usize,
    bytes: usize,
}

/// Lists every pod, in pages as kubectl does when `kind` is paged; checks that every page
/// has the first page's resourceVersion.
async fn list_all(client: &reqwest::Client, url: &str, kind: ListKind) -> Result<Listed> {
    let accept = if kind.table() {
        "application/json;as=Table;v=1;g=meta.k8s.io,application/json"
    } else {
        "application/json"
    };
    let mut out = Listed {
        items: 0,
        pages: 0,
        bytes: 0,
    };
    let mut cont: Option<String> = None;
    let mut rv: Option<String> = None;
    loop {
        let mut query = Vec::new();
        if kind.paged() {
            query.push(format!("limit={PAGE}"));
        }
        // Continue tokens are URL-safe base64.
        if let Some(c) = &cont {
            query.push(format!("continue={c}"));
        }
        let full = if query.is_empty() {
            url.to_string()
        } else {
            format!("{url}?{}", query.join("&"))
        };
        let resp = client.get(full).header("accept", accept).send().await?;
        let status = resp.status();
        let body = resp.bytes().await?;
        if !status.is_success() {
            bail!("list: {status}: {}", String::from_utf8_lossy(&body));
        }
        out.bytes += body.len();
        out.pages += 1;
        let v: Value = serde_json::from_slice(&body).context("list body")?;
        let field = if kind.table() { "rows" } else { "items" };
        out.items += v[field].as_array().map_or(0, Vec::len) as u64;
        let page_rv = v["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_string);
        match &rv {
            None => rv = page_rv,
            Some(first) if Some(first) != page_rv.as_ref() => {
                bail!(
                    "page {} at resourceVersion {page_rv:?}, the first at {first}",
                    out.pages
                )
            }
            Some(_) => {}
        }
        cont = v["metadata"]["continue"]
            .as_str()
            .filter(|c| !c.is_empty())
            .map(str::to_string);
        if cont.is_none() {
            return Ok(out);
        }
    }
}

struct WatchResult {
    missing: u64,
}

#[derive(Deserialize)]
struct WatchEvent {
    #[serde(rename = "type")]
    kind: String,
    object: EventObject,
}

#[derive(Deserialize)]
struct EventObject {
    #[serde(default)]
    data: HashMap<String, String>,
}

/// Starts the watchers, makes the updates, and measures each delivery's delay from the
/// update's send time and from its answer.
async fn bench_watch(
    client: &reqwest::Client,
    base: &str,
    pid: u32,
    args: &Args,
) -> Result<WatchResult> {
    let url = format!("{base}/api/v1/namespaces/{NAMESPACE}/configmaps");
    let resp = client
        .post(&url)
        .json(&json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "bench-watch"}, "data": {"seq": "-1"}}))
        .send()
        .await?;
    let status = resp.status();
    let created: Value = resp.json().await?;
    if status.as_u16() != 201 {
        bail!("creating the watched ConfigMap: {status}: {created}");
    }
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .context("no resourceVersion")?
        .to_string();

    let epoch = Instant::now();
    let updates = args.updates;
    // Watches stream without end: a client without the request timeout.
    let watch_client = skiff_client::reqwest_builder().build()?;
    let ready = Arc::new(AtomicUsize::new(0));
    let complete = Arc::new(AtomicUsize::new(0));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut watchers = Vec::new();
    for _ in 0..args.watchers {
        let w = Watcher {
            client: watch_client.clone(),
            url: format!("{url}?watch=true&resourceVersion={rv}"),
            ready: ready.clone(),
            complete: complete.clone(),
            stop: stopped.clone(),
            epoch,
            updates,
        };
        watchers.push(tokio::spawn(w.run()));
    }
    let wait_ready = Instant::now();
    while ready.load(Ordering::Relaxed) < args.watchers {
        if wait_ready.elapsed() > Duration::from_secs(30) {
            bail!(
                "only {} of {} watches answered within 30 s",
                ready.load(Ordering::Relaxed),
                args.watchers
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The apiserver answers a watch before its store watch is registered; events in
    // between would arrive late, through the store's history.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let hwm_reset = reset_hwm(pid).is_ok();
    let sampler = Sampler::start(pid);

    let mut sent_us = vec![0u64; updates];
    let mut answered_us = vec![0u64; updates];
    let mut write_us = Vec::with_capacity(updates);
    let mut write_errors = 0;
    let interval =
        (args.update_rate > 0).then(|| Duration::from_secs_f64(1.0 / f64::from(args.update_rate)));
    let started = Instant::now();
    for seq in 0..updates {
        if let Some(i) = interval {
            tokio::time::sleep_until(started + i * seq as u32).await;
        }
        let sent = epoch.elapsed();
        let resp = client
            .patch(format!("{url}/bench-watch"))
            .header("content-type", "application/merge-patch+json")
            .body(json!({"data": {"seq": seq.to_string()}}).to_string())
            .send()
            .await;
        let answered = epoch.elapsed();
        let ok = match resp {
            Ok(r) => {
                let ok = r.status().is_success();
                ok && r.bytes().await.is_ok()
            }
            Err(_) => false,
        };
        if !ok {
            write_errors += 1;
        }
        sent_us[seq] = sent.as_micros() as u64;
        answered_us[seq] = answered.as_micros() as u64;
        write_us.push((answered - sent).as_micros() as u64);
    }
    let write_secs = started.elapsed().as_secs_f64();
    // Stragglers get 30 s after the last write; then every watcher reports what it got.
    let grace = Instant::now() + Duration::from_secs(30);
    while complete.load(Ordering::Relaxed) < args.watchers && Instant::now() < grace {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(true);

    let mut from_send = Vec::with_capacity(args.watchers * updates);
    let mut from_answer = Vec::with_capacity(args.watchers * updates);
    let mut complete = 0;
    let mut other_events = 0;
    for w in watchers {
        let received = w.await.unwrap_or_default();
        other_events += received.other;
        if received.at_us.len() == updates && received.at_us.iter().all(|t| *t != u64::MAX) {
            complete += 1;
        }
        for (seq, at) in received.at_us.iter().enumerate() {
            if *at != u64::MAX {
                from_send.push(at.saturating_sub(sent_us[seq]));
                from_answer.push(at.saturating_sub(answered_us[seq]));
            }
        }
    }
    let peak_sampled = sampler.stop().await;
    let peak_hwm = if hwm_reset { mem_kib(pid)?.1 } else { 0 };
    let expected = (args.watchers * updates) as u64;
    let delivered = from_send.len() as u64;
    from_send.sort_unstable();
    from_answer.sort_unstable();
    write_us.sort_unstable();
    println!(
        "watch  watchers={} updates={updates} ({:.0}/s) write p50={:.2}ms p99={:.2}ms errors={write_errors}",
        args.watchers,
        updates as f64 / write_secs,
        percentile_ms(&write_us, 0.5),
        percentile_ms(&write_us, 0.99),
    );
    println!(
        "watch  delivered={delivered}/{expected} watchers-complete={complete}/{} delay from send p50={:.2}ms p99={:.2}ms max={:.2}ms; from the write's answer p50={:.2}ms p99={:.2}ms max={:.2}ms; apiserver peak VmHWM={:.1}MiB sampled={:.1}MiB",
        args.watchers,
        percentile_ms(&from_send, 0.5),
        percentile_ms(&from_send, 0.99),
        percentile_ms(&from_send, 1.0),
        percentile_ms(&from_answer, 0.5),
        percentile_ms(&from_answer, 0.99),
        percentile_ms(&from_answer, 1.0),
        mib(peak_hwm),
        mib(peak_sampled),
    );
    emit(
        json!({"measure": "watch", "watchers": args.watchers, "updates": updates,
        "update_rate": args.update_rate, "updates_per_sec": updates as f64 / write_secs,
        "write_p50_ms": percentile_ms(&write_us, 0.5), "write_p99_ms": percentile_ms(&write_us, 0.99),
        "write_errors": write_errors, "expected": expected, "delivered": delivered,
        "watchers_complete": complete, "other_events": other_events,
        "p50_ms": percentile_ms(&from_send, 0.5), "p99_ms": percentile_ms(&from_send, 0.99),
        "max_ms": percentile_ms(&from_send, 1.0),
        "from_answer_p50_ms": percentile_ms(&from_answer, 0.5),
        "from_answer_p99_ms": percentile_ms(&from_answer, 0.99),
        "from_answer_max_ms": percentile_ms(&from_answer, 1.0),
        "peak_hwm_kib": peak_hwm, "peak_sampled_kib": peak_sampled}),
    );
    Ok(WatchResult {
        missing: expected - delivered,
    })
}

/// What one watcher saw: the receipt time of each update (u64::MAX: never), and how many
/// events were not one of the updates.
#[derive(Default)]
struct Received {
    at_us: Vec<u64>,
    other: u64,
}

struct Watcher {
    client: reqwest::Client,
    url: String,
    /// Counts watchers whose watch has been answered.
    ready: Arc<AtomicUsize>,
    /// Counts watchers that received every update.
    complete: Arc<AtomicUsize>,
    stop: tokio::sync::watch::Receiver<bool>,
    epoch: Instant,
    updates: usize,
}

impl Watcher {
    async fn run(mut self) -> Received {
        let updates = self.updates;
        let mut received = Received {
            at_us: vec![u64::MAX; updates],
            other: 0,
        };
        let resp = self.client.get(&self.url).send().await;
        self.ready.fetch_add(1, Ordering::Relaxed);
        let Ok(resp) = resp else {
            return received;
        };
        let mut stream = resp.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        let mut seen = 0;
        while seen < updates {
            let chunk = tokio::select! {
                chunk = stream.next() => chunk,
                _ = self.stop.changed() => break,
            };
            let Some(Ok(chunk)) = chunk else { break };
            let at = self.epoch.elapsed().as_micros() as u64;
            buf.extend_from_slice(&chunk);
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let seq = serde_json::from_slice::<WatchEvent>(&line)
                    .ok()
                    .filter(|e| e.kind == "MODIFIED")
                    .and_then(|e| e.object.data.get("seq")?.parse::<usize>().ok())
                    .filter(|s| *s < updates);
                match seq {
                    Some(s) if received.at_us[s] == u64::MAX => {
                        received.at_us[s] = at;
                        seen += 1;
                    }
                    _ => received.other += 1,
                }
            }
        }
        if seen == updates {
            self.complete.fetch_add(1, Ordering::Relaxed);
        }
        received
    }
}

/// The processes whose CPU time a phase is charged: the apiserver, the store members,
/// and this bench.
struct Procs {
    names: Vec<String>,
    pids: Vec<u32>,
}

impl Procs {
    fn of(cp: &ControlPlane) -> Result<Procs> {
        let mut names = vec!["apiserver".to_string()];
        let mut pids = vec![cp.pid(0).context("the apiserver is not running")?];
        for i in 0..cp.store.len() {
            names.push(cp.store.name(i).to_string());
            pids.push(
                cp.store
                    .member_pid(i)
                    .with_context(|| format!("{} is not running", cp.store.name(i)))?,
            );
        }
        names.push("bench".into());
        pids.push(std::process::id());
        Ok(Procs { names, pids })
    }

    /// Each process's user + system CPU time so far, in seconds.
    fn cpu(&self) -> Result<Vec<f64>> {
        let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .unwrap_or(100) as f64;
        self.pids
            .iter()
            .map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
                // Fields after the command (which may hold spaces) in parentheses;
                // utime and stime are the 14th and 15th fields of the line.
                let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
                let f: Vec<&str> = rest.split_whitespace().collect();
                let field = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
                Ok((field(11) + field(12)) / ticks)
            })
            .collect()
    }

    /// Prints and emits the CPU each process used in a phase, per create and in cores.
    fn report(&self, phase: &str, before: &[f64], after: &[f64], ops: usize, secs: f64) {
        let used: Vec<f64> = before.iter().zip(after).map(|(b, a)| a - b).collect();
        let per_op_ms = |s: f64| s * 1e3 / ops.max(1) as f64;
        let total: f64 = used.iter().sum();
        let parts: Vec<String> = self
            .names
            .iter()
            .zip(&used)
            .map(|(n, s)| format!("{n}={:.2}", per_op_ms(*s)))
            .collect();
        println!(
            "cpu    {phase:<6} ms per create: {} total={:.2} ({:.2} cores over the phase)",
            parts.join(" "),
            per_op_ms(total),
            total / secs
        );
        let per_process: serde_json::Map<String, Value> = self
            .names
            .iter()
            .zip(&used)
            .map(|(n, s)| (n.clone(), json!(per_op_ms(*s))))
            .collect();
        emit(
            json!({"measure": "cpu", "phase": phase, "ms_per_create": per_process,
            "total_ms_per_create": per_op_ms(total), "cores": total / secs}),
        );
    }
}

/// Samples a process's VmRSS every 5 ms until stopped; the maximum seen.
struct Sampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<u64>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut max = 0;
            while !flag.load(Ordering::Relaxed) {
                if let Ok((rss, _)) = mem_kib(pid) {
                    max = max.max(rss);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            max
        });
        Sampler { stop, task }
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or(0)
    }
}

/// VmRSS and VmHWM of a process, in KiB.
fn mem_kib(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// Resets a process's VmHWM to its current RSS (`5` to clear_refs, Linux ≥ 4.0).
fn reset_hwm(pid: u32) -> Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")?;
    Ok(())
}

fn loadavg() -> Vec<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .filter_map(|s| s.parse().ok())
        .collect()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn emit(value: Value) {
    println!("BENCH {value}");
}
