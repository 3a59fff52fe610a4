//! `bench_lab`: how long `skiffctl lab up` takes to a Ready cluster, and how much
//! memory the lab's daemons hold idle with the demo app running (docs/benchmarks.md).
//!
//! A lab of its own (name `bench`, a free 10.80.N.0/24) is started, the tour's web app
//! (4 busybox httpd pods behind a Service) deployed, and after `--idle-secs` each
//! daemon's memory is read. Every daemon is the same `skiff` binary, so a page of it
//! is resident once however many daemons map it, and VmRSS counts it in each: the
//! figures that add up are the pages themselves. Each process's resident pages are
//! read from /proc/PID/pagemap (root sees the page frame numbers) and counted once per
//! machine, which is what the machine's daemons would hold on a VM of their own, and
//! once across the whole lab. VmRSS, RssAnon and Pss are printed beside them.
//!
//! Each figure is printed as one `bench_lab <name> <value> <unit>` line and one
//! `BENCH {json}` line.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::Value;
use skiff_tests::cluster::skiff_binary;
use skiff_tests::kubelet::ensure_images;
use skiff_tests::netns::free_subnet;
use skiff_tests::skiffctl::{self, skiffctl_binary};

#[derive(Parser, Debug)]
#[command(name = "bench_lab", about = "lab up time and the lab's idle memory")]
struct Args {
    /// Seconds to leave the lab idle, demo app running, before reading memory.
    #[arg(long, default_value_t = 60)]
    idle_secs: u64,
    /// Store members (control-plane machines).
    #[arg(long, default_value_t = 3)]
    members: u32,
    /// Worker machines.
    #[arg(long, default_value_t = 2)]
    workers: u32,
}

const PAGE_KIB: u64 = 4;
const LAB: &str = "bench";

fn print(name: &str, value: f64, unit: &str) {
    println!("bench_lab {name} {value:.1} {unit}");
    println!(
        "BENCH {}",
        serde_json::json!({"bench": "lab", "name": name, "value": (value * 10.0).round() / 10.0, "unit": unit})
    );
}

/// The lab, taken down when dropped (also when the bench fails half-way).
struct Lab {
    skiffctl: PathBuf,
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl Lab {
    fn skiffctl(&self, args: &[&str]) -> Result<Output> {
        Command::new(&self.skiffctl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("lab")
            .args(args)
            .args(["--name", LAB, "--dir"])
            .arg(&self.dir)
            .env_remove("KUBECONFIG")
            .output()
            .with_context(|| format!("running skiffctl lab {args:?}"))
    }

    fn kubectl(&self, args: &[&str]) -> Result<String> {
        skiffctl::kubectl_with(&self.kubeconfig, args)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        match self.skiffctl(&["down"]) {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!("lab down: {}", String::from_utf8_lossy(&out.stderr)),
            Err(e) => eprintln!("lab down: {e:#}"),
        }
        let _ = std::fs::remove_dir_all(self.dir.parent().unwrap_or(&self.dir));
    }
}

/// The physical pages a process has resident, from /proc/PID/pagemap.
fn resident_pages(pid: u64) -> Result<HashSet<u64>> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let mut pagemap = File::open(format!("/proc/{pid}/pagemap"))?;
    let mut pages = HashSet::new();
    for line in maps.lines() {
        // The vsyscall page is outside what pagemap can be read for.
        if line.ends_with("[vsyscall]") {
            continue;
        }
        let range = line.split_whitespace().next().context("a maps line")?;
        let (start, end) = range.split_once('-').context("a maps range")?;
        let start = u64::from_str_radix(start, 16)? / 4096;
        let end = u64::from_str_radix(end, 16)? / 4096;
        let mut entries = vec![0u8; ((end - start) * 8) as usize];
        pagemap.seek(SeekFrom::Start(start * 8))?;
        pagemap.read_exact(&mut entries)?;
        for entry in entries.chunks_exact(8) {
            let entry = u64::from_le_bytes(entry.try_into().expect("8 bytes"));
            let present = entry >> 63 == 1;
            let frame = entry & ((1 << 55) - 1);
            // Without CAP_SYS_ADMIN the frame reads 0 and pages cannot be told apart.
            if present && frame != 0 {
                pages.insert(frame);
            }
        }
    }
    Ok(pages)
}

/// One daemon's figures, in KiB.
struct Daemon {
    machine: String,
    name: String,
    rss: u64,
    anon: u64,
    pss: u64,
    pages: HashSet<u64>,
}

fn daemons(status: &Value) -> Result<Vec<Daemon>> {
    let mut out = Vec::new();
    for m in status["machines"].as_array().context("machines")? {
        let machine = m["name"].as_str().context("machine name")?;
        for p in m["processes"].as_array().into_iter().flatten() {
            let name = p["name"].as_str().context("process name")?;
            let pid = p["pid"]
                .as_u64()
                .with_context(|| format!("{machine}/{name} is not running"))?;
            let kib = |k: &str| p["memory"][k].as_u64().unwrap_or(0);
            out.push(Daemon {
                machine: machine.to_string(),
                name: name.to_string(),
                rss: kib("rss_kib"),
                anon: kib("anon_kib"),
                pss: kib("pss_kib"),
                pages: resident_pages(pid)
                    .with_context(|| format!("reading {machine}/{name}'s pagemap"))?,
            });
        }
    }
    Ok(out)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !check() {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

fn run(args: &Args) -> Result<()> {
    ensure_images()?;
    let skiff = skiff_binary()?;
    let root = std::env::temp_dir().join(format!("skiff-bench-lab-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    let lab = Lab {
        skiffctl: skiffctl_binary()?,
        dir: root.join("lab"),
        kubeconfig: root.join("kubeconfig"),
    };
    let subnet = free_subnet("10.80", 0)?;
    let started = Instant::now();
    let out = lab.skiffctl(&[
        "up",
        "--subnet",
        &subnet,
        "--members",
        &args.members.to_string(),
        "--workers",
        &args.workers.to_string(),
        "--skiff-binary",
        skiff.to_str().context("skiff path")?,
    ])?;
    if !out.status.success() {
        bail!(
            "lab up failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let returned = started.elapsed();
    wait_for("every Node Ready", Duration::from_secs(120), || {
        lab.kubectl(&["get", "nodes", "-o", "json"])
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|nodes| {
                let items = nodes["items"].as_array().cloned().unwrap_or_default();
                items.len() == args.workers as usize
                    && items.iter().all(|n| {
                        n["status"]["conditions"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
            })
    })?;
    print("lab_up_returned", returned.as_secs_f64(), "s");
    print(
        "lab_up_to_nodes_ready",
        started.elapsed().as_secs_f64(),
        "s",
    );

    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/tour/web.yaml");
    lab.kubectl(&["apply", "-f", web.to_str().context("web.yaml path")?])?;
    let deployed = Instant::now();
    lab.kubectl(&["rollout", "status", "deployment/web", "--timeout=3m"])?;
    print(
        "demo_app_4_pods_ready",
        deployed.elapsed().as_secs_f64(),
        "s",
    );
    std::thread::sleep(Duration::from_secs(args.idle_secs));

    let out = lab.skiffctl(&["status", "-o", "json"])?;
    if !out.status.success() {
        bail!("lab status: {}", String::from_utf8_lossy(&out.stderr));
    }
    let status: Value = serde_json::from_slice(&out.stdout).context("lab status -o json")?;
    let daemons = daemons(&status)?;
    let roles: BTreeMap<String, String> = status["machines"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| Some((m["name"].as_str()?.into(), m["role"].as_str()?.into())))
        .collect();

    println!("daemon            VmRSS   RssAnon  Pss      (MiB)");
    for d in &daemons {
        println!(
            "{:<17} {:>6.1}  {:>6.1}   {:>6.1}",
            format!("{}/{}", d.machine, d.name),
            mib(d.rss),
            mib(d.anon),
            mib(d.pss)
        );
    }
    let mut lab_pages = HashSet::new();
    let mut by_role: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    for (machine, role) in &roles {
        let mine: Vec<&Daemon> = daemons.iter().filter(|d| &d.machine == machine).collect();
        let mut pages = HashSet::new();
        for d in &mine {
            pages.extend(d.pages.iter().copied());
        }
        lab_pages.extend(pages.iter().copied());
        let unique = pages.len() as u64 * PAGE_KIB;
        let rss: u64 = mine.iter().map(|d| d.rss).sum();
        let pss: u64 = mine.iter().map(|d| d.pss).sum();
        print(&format!("{machine}_resident_once"), mib(unique), "MiB");
        print(&format!("{machine}_vmrss_sum"), mib(rss), "MiB");
        print(&format!("{machine}_pss_sum"), mib(pss), "MiB");
        let e = by_role.entry(role.as_str()).or_default();
        e.0 += unique;
        e.1 += rss;
        e.2 += pss;
    }
    for (role, (unique, rss, pss)) in &by_role {
        print(
            &format!("{role}_machines_resident_once_summed"),
            mib(*unique),
            "MiB",
        );
        print(&format!("{role}_vmrss_sum"), mib(*rss), "MiB");
        print(&format!("{role}_pss_sum"), mib(*pss), "MiB");
    }
    print(
        "lab_daemons_resident_once",
        mib(lab_pages.len() as u64 * PAGE_KIB),
        "MiB",
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}
