//! `bench`: the same load against a 3-member skiff store and a 3-member etcd 3.4,
//! one after the other, through the cluster harness and the etcd-client crate.
//! See docs/benchmarks.md for what it measures and how to read it.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use etcd_client::{Client, ConnectOptions, GetOptions, KvClient};
use serde_json::{json, Value};
use skiff_tests::bench::{key, parse_check_perf, percentile_ms, CheckPerf, KEY_SPACE};
use skiff_tests::cluster::{Cluster, ClusterSpec, Flavor};

const VALUE_SIZE: usize = 256;
const MEMBERS: usize = 3;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Parser, Debug)]
#[command(
    name = "bench",
    about = "Compare skiff store with etcd 3.4 under the same load"
)]
struct Args {
    /// The skiff binary (default: `skiff` beside this binary, else $SKIFF_BIN).
    #[arg(long)]
    skiff_binary: Option<PathBuf>,
    /// Run one flavour only.
    #[arg(long, value_enum)]
    only: Option<Which>,
    /// Seconds per load phase.
    #[arg(long, default_value_t = 10, conflicts_with = "requests")]
    duration_secs: u64,
    /// Requests per load phase, instead of a duration.
    #[arg(long)]
    requests: Option<u64>,
    /// Skip `etcdctl check perf` (it runs 60 s per load and flavour).
    #[arg(long)]
    no_check_perf: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Which {
    Etcd,
    Skiff,
}

/// One load phase: what every client does and how many there are.
#[derive(Clone, Copy)]
struct Phase {
    name: &'static str,
    op: Op,
    clients: usize,
    conns: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Put,
    GetLinearizable,
    GetSerializable,
}

const PHASES: [Phase; 4] = [
    Phase {
        name: "put",
        op: Op::Put,
        clients: 1,
        conns: 1,
    },
    Phase {
        name: "put",
        op: Op::Put,
        clients: 1000,
        conns: 100,
    },
    Phase {
        name: "get-linearizable",
        op: Op::GetLinearizable,
        clients: 1000,
        conns: 100,
    },
    Phase {
        name: "get-serializable",
        op: Op::GetSerializable,
        clients: 1000,
        conns: 100,
    },
];

/// When a phase stops.
#[derive(Clone, Copy)]
enum Budget {
    Time(Duration),
    Requests(u64),
}

struct PhaseResult {
    phase: Phase,
    ops: u64,
    errors: u64,
    secs: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl PhaseResult {
    fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.secs
    }
}

struct FlavorResult {
    phases: Vec<PhaseResult>,
    rss_idle_kib: Vec<u64>,
    rss_after_kib: Vec<u64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every selected flavour; false when one of them could not be measured.
async fn run(args: Args) -> Result<bool> {
    let budget = match args.requests {
        Some(n) => Budget::Requests(n),
        None => Budget::Time(Duration::from_secs(args.duration_secs)),
    };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "bench: {MEMBERS} members per store, {}-byte keys, {VALUE_SIZE}-byte values, {} per phase, {cpus} CPUs",
        key(0).len(),
        match budget {
            Budget::Time(d) => format!("{} s", d.as_secs()),
            Budget::Requests(n) => format!("{n} requests"),
        }
    );
    emit(json!({"measure": "env", "cpus": cpus, "members": MEMBERS,
        "key_bytes": key(0).len(), "value_bytes": VALUE_SIZE}));

    let mut results = Vec::new();
    let mut ok = true;
    for which in [Which::Skiff, Which::Etcd] {
        if args.only.is_some_and(|only| only != which) {
            continue;
        }
        let flavor = match which {
            Which::Etcd => Flavor::Etcd,
            Which::Skiff => match skiff_flavor(args.skiff_binary.clone()) {
                Ok(f) => f,
                Err(e) => {
                    println!("\n== skiff: not measured: {e:#}");
                    ok = false;
                    continue;
                }
            },
        };
        match bench_flavor(&flavor, budget, !args.no_check_perf).await {
            Ok(result) => results.push((flavor.name(), result)),
            Err(e) => {
                println!("\n== {}: failed: {e:#}", flavor.name());
                ok = false;
            }
        }
    }

    if let [("skiff", skiff), ("etcd", etcd)] = results.as_slice() {
        print_ratios(skiff, etcd);
    }
    Ok(ok)
}

fn skiff_flavor(explicit: Option<PathBuf>) -> Result<Flavor> {
    let binary = match explicit {
        Some(path) => path,
        None => {
            let beside = std::env::current_exe()?.with_file_name("skiff");
            if beside.is_file() {
                beside
            } else {
                skiff_tests::cluster::skiff_binary()?
            }
        }
    };
    if !binary.is_file() {
        bail!("{} is not a file", binary.display());
    }
    Ok(Flavor::Skiff { binary })
}

async fn bench_flavor(flavor: &Flavor, budget: Budget, check_perf: bool) -> Result<FlavorResult> {
    let name = flavor.name();
    let cluster = Cluster::start(ClusterSpec::new(flavor.clone(), MEMBERS)).await?;
    let version = cluster.status(0).await?.version().to_string();
    println!(
        "\n== {name} {version}: {MEMBERS} members, logs in {}",
        cluster.dir().display()
    );

    // Let start-up work (elections, first snapshots of state) settle before "idle".
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle_kib = rss_all(&cluster)?;

    let mut phases = Vec::new();
    let mut written = 0;
    for phase in PHASES {
        let result = run_phase(&cluster, phase, budget, written).await?;
        if phase.op == Op::Put {
            written += result.ops;
        }
        let line = format!(
            "{name:<6} {:<17} clients={:<5} conns={:<4} ops={:<8} ops/s={:<9.0} p50={:.2}ms p99={:.2}ms errors={}",
            result.phase.name,
            phase.clients,
            phase.conns,
            result.ops,
            result.ops_per_sec(),
            result.p50_ms,
            result.p99_ms,
            result.errors
        );
        println!("{line}");
        emit(
            json!({"measure": "load", "flavor": name, "version": version,
            "phase": phase.name, "clients": phase.clients, "conns": phase.conns,
            "ops": result.ops, "errors": result.errors, "secs": result.secs,
            "ops_per_sec": result.ops_per_sec(), "p50_ms": result.p50_ms,
            "p99_ms": result.p99_ms}),
        );
        phases.push(result);
    }

    let rss_after_kib = rss_all(&cluster)?;
    for i in 0..MEMBERS {
        println!(
            "{name:<6} rss {} idle={:.1}MiB after-load={:.1}MiB",
            cluster.name(i),
            mib(rss_idle_kib[i]),
            mib(rss_after_kib[i])
        );
        emit(
            json!({"measure": "rss", "flavor": name, "member": cluster.name(i),
            "idle_kib": rss_idle_kib[i], "after_load_kib": rss_after_kib[i]}),
        );
    }

    if check_perf {
        for load in ["m", "l"] {
            // The previous run ends by deleting every key it wrote; let that settle.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let endpoints = cluster.client_endpoints().join(",");
            let result =
                tokio::task::spawn_blocking(move || etcdctl_check_perf(&endpoints, load)).await??;
            println!(
                "{name:<6} etcdctl check perf --load {load}: {} ({})",
                if result.pass { "PASS" } else { "FAIL" },
                result.details.join("; ")
            );
            emit(
                json!({"measure": "check_perf", "flavor": name, "load": result.load,
                "pass": result.pass, "throughput_writes_per_sec": result.throughput,
                "slowest_s": result.slowest_s, "stddev_s": result.stddev_s,
                "details": result.details}),
            );
        }
    }

    Ok(FlavorResult {
        phases,
        rss_idle_kib,
        rss_after_kib,
    })
}

/// Runs one phase. `written` keys exist already (puts go round the key space in order),
/// so reads pick among them and always find a value.
async fn run_phase(
    cluster: &Cluster,
    phase: Phase,
    budget: Budget,
    written: u64,
) -> Result<PhaseResult> {
    if phase.op != Op::Put && written == 0 {
        bail!("{}: no keys were written to read", phase.name);
    }
    // A single client talks to the leader, as etcd's own single-client figures do;
    // many connections are spread over all members.
    let endpoints = if phase.conns == 1 {
        let leader = cluster
            .leader()
            .await
            .context("no leader to send the load to")?;
        vec![cluster.endpoint(leader)]
    } else {
        cluster.client_endpoints()
    };
    let mut conns = Vec::with_capacity(phase.conns);
    for c in 0..phase.conns {
        let endpoint = &endpoints[c % endpoints.len()];
        let options = ConnectOptions::new()
            .with_timeout(REQUEST_TIMEOUT)
            .with_connect_timeout(REQUEST_TIMEOUT);
        let mut client = Client::connect([endpoint], Some(options)).await?;
        // The connection is made lazily: open it before the clock starts.
        client
            .get("warm-up", Some(GetOptions::new().with_serializable()))
            .await
            .with_context(|| format!("warming up a connection to {endpoint}"))?;
        conns.push(client.kv_client());
    }

    let issued = Arc::new(AtomicU64::new(0));
    let value = Arc::new(vec![b'v'; VALUE_SIZE]);
    let start = Instant::now();
    let deadline = match budget {
        Budget::Time(d) => Some(start + d),
        Budget::Requests(_) => None,
    };
    let limit = match budget {
        Budget::Requests(n) => n,
        Budget::Time(_) => u64::MAX,
    };
    let mut tasks = Vec::with_capacity(phase.clients);
    for c in 0..phase.clients {
        let kv = conns[c % conns.len()].clone();
        let issued = issued.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(client_loop(
            kv, phase.op, issued, limit, deadline, value, written, c as u64,
        )));
    }
    let mut latencies_us = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (lat, errs) = task.await?;
        latencies_us.extend(lat);
        errors += errs;
    }
    let secs = start.elapsed().as_secs_f64();
    latencies_us.sort_unstable();
    Ok(PhaseResult {
        phase,
        ops: latencies_us.len() as u64,
        errors,
        secs,
        p50_ms: percentile_ms(&latencies_us, 0.50),
        p99_ms: percentile_ms(&latencies_us, 0.99),
    })
}

/// One client: requests back to back until the budget is spent. Returns the latency
/// of each successful request and the number of failed ones.
#[allow(clippy::too_many_arguments)]
async fn client_loop(
    mut kv: KvClient,
    op: Op,
    issued: Arc<AtomicU64>,
    limit: u64,
    deadline: Option<Instant>,
    value: Arc<Vec<u8>>,
    written: u64,
    seed: u64,
) -> (Vec<u32>, u64) {
    let mut latencies = Vec::new();
    let mut errors = 0;
    // A per-client xorshift: reads need spread keys, not a good generator.
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let n = issued.fetch_add(1, Ordering::Relaxed);
        if n >= limit {
            break;
        }
        let began = Instant::now();
        let result = match op {
            Op::Put => kv
                .put(key(n % KEY_SPACE), value.as_slice(), None)
                .await
                .map(drop),
            Op::GetLinearizable | Op::GetSerializable => {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let options =
                    (op == Op::GetSerializable).then(|| GetOptions::new().with_serializable());
                kv.get(key(x % written.min(KEY_SPACE)), options)
                    .await
                    .map(drop)
            }
        };
        match result {
            Ok(()) => {
                latencies.push(u32::try_from(began.elapsed().as_micros()).unwrap_or(u32::MAX))
            }
            Err(_) => errors += 1,
        }
    }
    (latencies, errors)
}

fn rss_all(cluster: &Cluster) -> Result<Vec<u64>> {
    (0..cluster.len())
        .map(|i| {
            let pid = cluster
                .member_pid(i)
                .with_context(|| format!("{} is not running", cluster.name(i)))?;
            rss_kib(pid)
        })
        .collect()
}

/// Resident set size from /proc/PID/status, in KiB.
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn etcdctl_check_perf(endpoints: &str, load: &'static str) -> Result<CheckPerf> {
    let output = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        // Its set-up and clean-up requests (a delete of every key it wrote) can take
        // longer than the 5 s default on a loaded machine.
        .arg("--command-timeout=30s")
        .args(["check", "perf", "--load", load])
        .output()
        .context("running etcdctl check perf")?;
    // The progress bar redraws with carriage returns; verdicts are whole lines.
    let text = String::from_utf8_lossy(&output.stdout).replace('\r', "\n");
    let mut result = parse_check_perf(load, &text);
    if result.details.is_empty() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
        result.details.push(format!(
            "etcdctl exited with {}: {}",
            output.status,
            last.unwrap_or("no output")
        ));
    }
    Ok(result)
}

fn print_ratios(skiff: &FlavorResult, etcd: &FlavorResult) {
    println!("\n== skiff/etcd (ops/s above 1 and latency below 1 favour skiff)");
    for (s, e) in skiff.phases.iter().zip(&etcd.phases) {
        let ops = s.ops_per_sec() / e.ops_per_sec();
        let p50 = s.p50_ms / e.p50_ms;
        let p99 = s.p99_ms / e.p99_ms;
        println!(
            "ratio  {:<17} clients={:<5} ops/s x{ops:.2}  p50 x{p50:.2}  p99 x{p99:.2}",
            s.phase.name, s.phase.clients
        );
        emit(
            json!({"measure": "ratio", "phase": s.phase.name, "clients": s.phase.clients,
            "ops_per_sec": ops, "p50": p50, "p99": p99}),
        );
    }
    let total = |v: &[u64]| v.iter().sum::<u64>() as f64;
    let idle = total(&skiff.rss_idle_kib) / total(&etcd.rss_idle_kib);
    let after = total(&skiff.rss_after_kib) / total(&etcd.rss_after_kib);
    println!("ratio  rss (sum of members)   idle x{idle:.2}  after-load x{after:.2}");
    emit(json!({"measure": "ratio", "phase": "rss", "idle": idle, "after_load": after}));
}

fn emit(value: Value) {
    println!("BENCH {value}");
}
