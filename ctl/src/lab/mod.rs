//! `skiffctl lab`: a whole cluster on this machine. Machines are network namespaces on
//! one bridge (`host`), configured by lab/machine-setup.sh and run by a supervisor
//! process (`supervisor`) that `up` leaves behind; `spec` says what a lab is made of.

pub mod host;
pub mod image;
pub mod spec;
pub mod supervisor;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use clap::{Args, Subcommand};
use serde_json::Value;
use skiff_client::{Api, ApiResource, Client, ListParams};

use crate::cluster::GlobalArgs;
use crate::print::tabwrite;
use spec::{LabSpec, Role};
use supervisor::{Chaos, Request, Response};

/// `skiffctl lab …`.
#[derive(Args)]
pub struct LabArgs {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Subcommand)]
enum LabCommand {
    /// Build a cluster on this machine out of network namespaces and start it.
    Up(UpArgs),
    /// Stop the lab and remove everything it made.
    Down(Which),
    /// Show each machine, its processes, Raft role and pods.
    Status(StatusArgs),
    /// Break a machine (kill, pause, cut) or heal it.
    Chaos {
        /// kill | pause | cut | heal.
        #[arg(value_enum)]
        action: Chaos,
        /// The machine, e.g. cp1 or w2.
        machine: String,
        #[command(flatten)]
        which: Which,
    },
    /// Run a command on a machine: in its network namespace, as `ssh MACHINE CMD` would
    /// on a real one (the lab's machines share this machine's file system).
    Exec {
        /// The machine, e.g. cp1 or w2.
        machine: String,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
        #[command(flatten)]
        which: Which,
    },
    /// Print shell exports for the lab's store (etcdctl and `skiffctl store`):
    /// `eval "$(skiffctl lab env)"`.
    Env(Which),
    /// Run the lab's supervisor in the foreground (`up` starts it).
    #[command(hide = true)]
    Supervise(Which),
}

/// `lab status` flags.
#[derive(Args)]
struct StatusArgs {
    #[command(flatten)]
    which: Which,
    /// `table`, or `json`: every process with its pid, restarts and memory.
    #[arg(short = 'o', long = "output", default_value = "table", value_parser = ["table", "json"])]
    output: String,
}

/// Which lab.
#[derive(Args, Clone)]
struct Which {
    /// The lab's name (several labs can run side by side).
    #[arg(long, env = "SKIFF_LAB", default_value = "lab")]
    name: String,
    /// Where the lab keeps its configuration, data and logs
    /// (default /var/lib/skiff/lab/NAME).
    #[arg(long, env = "SKIFF_LAB_DIR")]
    dir: Option<PathBuf>,
}

impl Which {
    fn dir(&self) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| spec::default_dir(&self.name))
    }

    /// The saved spec of a lab that was brought up.
    fn load(&self) -> Result<LabSpec> {
        let path = self.dir().join("lab.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "there is no lab {:?} ({} does not exist); start one with `skiffctl lab up{}`",
                self.name,
                path.display(),
                if self.name == "lab" {
                    String::new()
                } else {
                    format!(" --name {}", self.name)
                }
            ),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        serde_json::from_str(&text).with_context(|| format!("{} is damaged", path.display()))
    }
}

#[derive(Args)]
struct UpArgs {
    #[command(flatten)]
    which: Which,
    /// Control-plane machines, each a store member: 1, 3, 5 or 7.
    #[arg(long, default_value_t = 3)]
    members: usize,
    /// Worker machines.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// The /24 the machines live on; the host is .1 on it.
    #[arg(long, default_value = "10.77.0.0")]
    subnet: Ipv4Addr,
    /// The test image archives (`make images` writes them).
    #[arg(
        long,
        env = "SKIFF_IMAGES_DIR",
        default_value = "/var/lib/skiff/test-images"
    )]
    images: PathBuf,
    /// The skiff binary to run (default: beside skiffctl, else $SKIFF_BIN).
    #[arg(long, env = "SKIFF_BIN")]
    skiff_binary: Option<PathBuf>,
    /// How long to wait for the cluster to be Ready.
    #[arg(long, default_value = "180s", value_parser = parse_duration)]
    timeout: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s or 3m"))?;
    match unit {
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{s:?} is not a duration like 90s or 3m")),
    }
}

/// Runs a `lab` subcommand.
pub async fn run(global: &GlobalArgs, args: LabArgs) -> Result<()> {
    match args.command {
        LabCommand::Up(a) => up(global, a).await,
        LabCommand::Down(w) => down(global, &w).await,
        LabCommand::Status(a) if a.output == "json" => status_json(&a.which.load()?).await,
        LabCommand::Status(a) => status(&a.which.load()?).await,
        LabCommand::Chaos {
            action,
            machine,
            which,
        } => {
            let spec = which.load()?;
            let response = ask(&spec, &Request::Chaos { action, machine }).await?;
            println!("{}", response.message.unwrap_or_default());
            Ok(())
        }
        LabCommand::Exec {
            machine,
            command,
            which,
        } => exec(&which.load()?, &machine, &command),
        LabCommand::Env(w) => {
            print!("{}", env_exports(&w.load()?));
            Ok(())
        }
        LabCommand::Supervise(w) => supervisor::run(w.load()?).await,
    }
}

/// Runs `command` in `machine`'s network namespace and exits with its status.
fn exec(spec: &LabSpec, machine: &str, command: &[String]) -> Result<()> {
    let m = spec.machine(machine).ok_or_else(|| {
        anyhow!(
            "lab {:?} has no machine {machine:?}; it has {}",
            spec.name,
            spec.machines
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let status = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", m.netns))
        .arg("--")
        .args(command)
        .status()
        .with_context(|| format!("running nsenter for {machine}"))?;
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => std::process::exit(code),
        None => bail!("{} on {machine} was killed by a signal", command[0]),
    }
}

/// The exports that point etcdctl (v3 API) and `skiffctl store` at the lab's members.
fn env_exports(spec: &LabSpec) -> String {
    let endpoints = spec.store_endpoints().join(",");
    format!(
        "export ETCDCTL_API=3\nexport ETCDCTL_ENDPOINTS={endpoints}\nexport SKIFF_STORE_ENDPOINTS={endpoints}\n"
    )
}

/// Asks the supervisor, turning its refusals into errors.
async fn ask(spec: &LabSpec, request: &Request) -> Result<Response> {
    let response = supervisor::call(&spec.socket(), request).await.map_err(|e| {
        anyhow!(
            "the supervisor of lab {:?} does not answer on {} ({e}); `skiffctl lab up{}` starts it again",
            spec.name,
            spec.socket().display(),
            name_flag(&spec.name)
        )
    })?;
    if let Some(e) = response.error {
        bail!("{e}");
    }
    Ok(response)
}

fn name_flag(name: &str) -> String {
    if name == "lab" {
        String::new()
    } else {
        format!(" --name {name}")
    }
}

fn skiff_binary(explicit: Option<PathBuf>) -> PathBuf {
    explicit.unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join("skiff")))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("/usr/local/bin/skiff"))
    })
}

async fn up(global: &GlobalArgs, a: UpArgs) -> Result<()> {
    let started = Instant::now();
    let registry_dir = a.images.join("registry");
    let request = spec::Request {
        name: a.which.name.clone(),
        members: a.members,
        workers: a.workers,
        subnet: a.subnet,
        dir: Some(a.which.dir()),
        image_dir: a.images.join("archives"),
        registry_dir: registry_dir.is_dir().then_some(registry_dir),
        skiff_binary: skiff_binary(a.skiff_binary),
    };
    let wanted = LabSpec::new(&request)?;
    let spec = match a.which.load() {
        Ok(existing) => {
            if existing.control_planes().count() != a.members
                || existing.workers().count() != a.workers
            {
                bail!(
                    "lab {:?} exists with {} control planes and {} workers; `skiffctl lab down{}` first to build it with {} and {}",
                    existing.name,
                    existing.control_planes().count(),
                    existing.workers().count(),
                    name_flag(&existing.name),
                    a.members,
                    a.workers
                );
            }
            if supervisor::call(&existing.socket(), &Request::Status)
                .await
                .is_ok()
            {
                let merged = crate::config::add_cluster_context(
                    global.kubeconfig.as_deref(),
                    &spec::context_name(&existing.name),
                    &existing.api_server(),
                )?;
                println!("Lab {:?} is already running.", existing.name);
                print_usage(&existing, &merged);
                return Ok(());
            }
            println!(
                "Lab {:?} exists but is not running; starting it again on its data.",
                existing.name
            );
            existing
        }
        Err(_) => wanted,
    };
    let missing = host::missing_prerequisites(&spec);
    if !missing.is_empty() {
        bail!(
            "the lab needs, and this machine lacks:\n  - {}\n`make deps` installs the packages; `make images` builds the test images.",
            missing.join("\n  - ")
        );
    }
    std::fs::create_dir_all(&spec.dir)
        .with_context(|| format!("creating {}", spec.dir.display()))?;
    std::fs::write(
        spec.dir.join("lab.json"),
        serde_json::to_string_pretty(&spec)?,
    )?;
    let kubeconfig = spec.dir.join("kubeconfig");
    std::fs::write(&kubeconfig, lab_kubeconfig(&spec))?;

    let bar = crate::progress::spinner("making machines");
    host::make_machines(&spec).await?;
    host::set_up_machines(&spec).await?;
    bar.set_message("starting the supervisor");
    start_supervisor(&spec).await?;
    let deadline = Instant::now() + a.timeout;
    let client = Client::from_kubeconfig(Some(&kubeconfig), None)?;
    bar.set_message("waiting for the store and the API server");
    wait_for(
        "the API server to answer through the control-plane endpoint",
        &spec,
        deadline,
        || async {
            Ok(client
                .request_raw(skiff_client::Method::GET, "/readyz", None)
                .await
                .is_ok()
                .then_some(()))
        },
    )
    .await?;
    bar.set_message("waiting for the nodes to be Ready");
    let nodes = Api::dynamic(client.clone(), node_resource(), None);
    let workers: Vec<String> = spec.workers().map(|m| m.name.clone()).collect();
    wait_for(
        "every worker's Node to be Ready with a podCIDR",
        &spec,
        deadline,
        || async {
            let list = nodes.list(&ListParams::default()).await?;
            let ready = workers.iter().all(|w| {
                list.items.iter().any(|n| {
                    n["metadata"]["name"] == w.as_str()
                        && n["spec"]["podCIDR"].is_string()
                        && node_ready(n)
                })
            });
            Ok(ready.then_some(()))
        },
    )
    .await?;
    bar.finish_and_clear();
    let merged = crate::config::add_cluster_context(
        global.kubeconfig.as_deref(),
        &spec::context_name(&spec.name),
        &spec.api_server(),
    )?;
    println!(
        "Lab {:?} is up: {} control planes and {} workers, Ready in {:.0} s.",
        spec.name,
        spec.control_planes().count(),
        spec.workers().count(),
        started.elapsed().as_secs_f64()
    );
    print_usage(&spec, &merged);
    Ok(())
}

fn node_resource() -> ApiResource {
    ApiResource::new("", "v1", "Node", "nodes", false)
}

fn node_ready(node: &Value) -> bool {
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Polls `check` every half second until it yields or `deadline` passes; then fails
/// saying what was awaited and where the logs are.
async fn wait_for<F, Fut>(what: &str, spec: &LabSpec, deadline: Instant, check: F) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Option<()>>>,
{
    let mut last = String::new();
    loop {
        match check().await {
            Ok(Some(())) => return Ok(()),
            Ok(None) => {}
            Err(e) => last = format!(" (last error: {e:#})"),
        }
        if Instant::now() > deadline {
            bail!(
                "timed out waiting for {what}{last}. The daemons' logs are in {}/<machine>/logs; `skiffctl lab status{}` shows what runs.",
                spec.dir.display(),
                name_flag(&spec.name)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A kubeconfig for the lab alone, beside its data.
fn lab_kubeconfig(spec: &LabSpec) -> String {
    let name = spec::context_name(&spec.name);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: {}\nusers:\n- name: {name}\n  user: {{}}\ncontexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\ncurrent-context: {name}\n",
        spec.api_server()
    )
}

async fn start_supervisor(spec: &LabSpec) -> Result<()> {
    let exe = std::env::current_exe().context("finding skiffctl's own binary")?;
    let log_path = spec.dir.join("supervisor.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    // setsid: the supervisor outlives this command and the terminal's Ctrl-C.
    std::process::Command::new("setsid")
        .arg(exe)
        .args(["lab", "supervise", "--name", &spec.name, "--dir"])
        .arg(&spec.dir)
        .env(
            "SKIFF_LOG",
            std::env::var("SKIFF_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting the supervisor")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if supervisor::call(&spec.socket(), &Request::Status)
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
    let tail: Vec<&str> = tail.lines().rev().take(10).collect();
    bail!(
        "the supervisor did not start; the end of {}:\n{}",
        log_path.display(),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    )
}

fn print_usage(spec: &LabSpec, merged: &Path) {
    let context = spec::context_name(&spec.name);
    let mut s = String::new();
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "The context {context:?} is in {} and is the current context, so kubectl uses it:",
        merged.display()
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "  kubectl get nodes");
    let _ = writeln!(
        s,
        "  kubectl create deployment web --image=skiff.invalid/test/httpd:1 --replicas=4"
    );
    let _ = writeln!(
        s,
        "  kubectl expose deployment web --port=80 --target-port=8080"
    );
    let _ = writeln!(s, "  kubectl get pods -o wide");
    let _ = writeln!(s);
    let _ = writeln!(s, "Watch it and break it:");
    let _ = writeln!(s);
    let name = name_flag(&spec.name);
    let _ = writeln!(s, "  skiffctl lab status{name}");
    let _ = writeln!(
        s,
        "  skiffctl lab chaos kill w2{name}      # then: kubectl get nodes,pods -o wide -w"
    );
    let _ = writeln!(s, "  skiffctl lab chaos heal w2{name}");
    let _ = writeln!(
        s,
        "  ETCDCTL_API=3 etcdctl --endpoints={} endpoint status -w table",
        spec.store_endpoints().join(",")
    );
    let _ = writeln!(s, "  skiffctl lab down{name}");
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Logs: {}/<machine>/logs/<daemon>.log. Images: skiff.invalid/test/{{busybox,httpd,fail,greet,memhog,nobody}}:1{}.",
        spec.dir.display(),
        if spec.registry_dir.is_some() {
            format!(", also in the registry as {}/skiff-test/<name>:1", spec.registry())
        } else {
            String::new()
        }
    );
    print!("{s}");
}

async fn down(global: &GlobalArgs, which: &Which) -> Result<()> {
    let spec = which.load()?;
    let bar = crate::progress::spinner("stopping the daemons");
    let supervisor_pid = supervisor::call(&spec.socket(), &Request::Status)
        .await
        .ok()
        .and_then(|r| r.status)
        .map(|s| s.pid);
    if supervisor::call(&spec.socket(), &Request::Shutdown)
        .await
        .is_ok()
    {
        // The supervisor removes its socket when every daemon has stopped, then exits.
        let deadline = Instant::now() + Duration::from_secs(30);
        while (spec.socket().exists() || supervisor_pid.is_some_and(is_running))
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // A supervisor that did not stop in time would restart what `unmake` removes.
    if let Some(pid) = supervisor_pid.filter(|&p| is_running(p)) {
        tracing::warn!(pid, "the lab's supervisor did not stop in 30s: killing it");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    bar.set_message("removing containers, mounts, namespaces and links");
    let report = host::unmake(&spec).await;
    crate::config::remove_cluster_context(
        global.kubeconfig.as_deref(),
        &spec::context_name(&spec.name),
    )?;
    bar.finish_and_clear();
    if !report.problems.is_empty() {
        bail!(
            "lab {:?} is down, but some of it is left:\n  - {}",
            spec.name,
            report.problems.join("\n  - ")
        );
    }
    println!(
        "Lab {:?} is down: its machines, containers, links and {} are gone.",
        spec.name,
        spec.dir.display()
    );
    Ok(())
}

/// Whether a process exists and is not a zombie waiting for its parent.
fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The state follows the command name, which is in parentheses.
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_string();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

/// The Raft role of each control plane, asked of its own store member.
async fn raft_roles(spec: &LabSpec) -> BTreeMap<String, String> {
    let mut roles = BTreeMap::new();
    for m in spec.control_planes() {
        let role = match tokio::time::timeout(
            Duration::from_secs(2),
            crate::store::member_status(&format!("http://{}:2379", m.ip)),
        )
        .await
        {
            Ok(Ok((id, leader))) if id == leader => "leader".to_string(),
            Ok(Ok((_, 0))) => "no leader".to_string(),
            Ok(Ok(_)) => "follower".to_string(),
            Ok(Err(_)) | Err(_) => "unreachable".to_string(),
        };
        roles.insert(m.name.clone(), role);
    }
    roles
}

/// Pods per node, when the API answers.
async fn pods_per_node(spec: &LabSpec) -> Option<BTreeMap<String, usize>> {
    let client = Client::from_kubeconfig(Some(&spec.dir.join("kubeconfig")), None).ok()?;
    let pods = Api::dynamic(
        client,
        ApiResource::new("", "v1", "Pod", "pods", true),
        None,
    );
    let list = tokio::time::timeout(Duration::from_secs(3), pods.list(&ListParams::default()))
        .await
        .ok()?
        .ok()?;
    let mut counts = BTreeMap::new();
    for p in &list.items {
        if let Some(node) = p["spec"]["nodeName"].as_str() {
            *counts.entry(node.to_string()).or_insert(0) += 1;
        }
    }
    Some(counts)
}

async fn status(spec: &LabSpec) -> Result<()> {
    let supervised = ask(spec, &Request::Status)
        .await?
        .status
        .unwrap_or_default();
    let (roles, pods) = tokio::join!(raft_roles(spec), pods_per_node(spec));
    println!(
        "Lab {:?}: control-plane endpoint {} and registry {} on the host (supervisor pid {}).",
        spec.name,
        spec.api_server(),
        if spec.registry_dir.is_some() {
            spec.registry()
        } else {
            "none".into()
        },
        supervised.pid
    );
    println!(
        "Shorter timeouts than Kubernetes, so failures show within a minute: a node is lost after {} without a heartbeat (Kubernetes: 40s) and its pods are evicted {}s later (Kubernetes: 300s).",
        spec.node_monitor_grace_period, spec.toleration_seconds
    );
    println!();
    let mut rows = vec![[
        "MACHINE",
        "ROLE",
        "IP",
        "STATE",
        "RAFT",
        "PODS",
        "MEMORY",
        "PROCESSES",
    ]
    .map(String::from)
    .to_vec()];
    for m in &spec.machines {
        let s = supervised.machines.iter().find(|s| s.name == m.name);
        let state = match s {
            None => "unknown".to_string(),
            Some(s) => {
                let mut flags = Vec::new();
                if !s.powered {
                    flags.push("killed");
                }
                if s.paused {
                    flags.push("paused");
                }
                if s.cut {
                    flags.push("cut");
                }
                if flags.is_empty() {
                    "running".into()
                } else {
                    flags.join(",")
                }
            }
        };
        let processes = s
            .map(|s| {
                s.processes
                    .iter()
                    .map(|p| {
                        let pid = p.pid.map_or("down".to_string(), |p| p.to_string());
                        match p.restarts {
                            0 => format!("{}({pid})", p.name),
                            n => format!("{}({pid}, {n} restarts)", p.name),
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let pss_kib: u64 = s
            .into_iter()
            .flat_map(|s| &s.processes)
            .filter_map(|p| p.pid)
            .filter_map(pss_kib)
            .sum();
        let pod_count = match (&pods, m.role) {
            (Some(p), Role::Worker) => p.get(&m.name).copied().unwrap_or(0).to_string(),
            (None, Role::Worker) => "?".into(),
            (_, Role::ControlPlane) => "-".into(),
        };
        rows.push(vec![
            m.name.clone(),
            m.role.as_str().into(),
            m.ip.to_string(),
            state,
            roles.get(&m.name).cloned().unwrap_or_else(|| "-".into()),
            pod_count,
            format!("{:.0}Mi", pss_kib as f64 / 1024.0),
            processes,
        ]);
    }
    for p in &supervised.host {
        let pid = p.pid.map_or("down".to_string(), |p| p.to_string());
        rows.push(vec![
            "host".into(),
            "-".into(),
            spec.host_ip.to_string(),
            "running".into(),
            "-".into(),
            "-".into(),
            format!(
                "{:.0}Mi",
                (p.pid.and_then(pss_kib).unwrap_or(0) + pss_kib(supervised.pid).unwrap_or(0))
                    as f64
                    / 1024.0
            ),
            format!(
                "{}({pid}) supervisor({}) control-plane-endpoint(relay)",
                p.name, supervised.pid
            ),
        ]);
    }
    print!("{}", tabwrite(&rows));
    println!(
        "\nMEMORY is the daemons' proportional set size: the `skiff` binary's pages, shared by every daemon, count once in all (`lab status -o json` has VmRSS too)."
    );
    if pods.is_none() {
        println!(
            "\nThe API server does not answer at {}: pod counts are unknown.",
            spec.api_server()
        );
    }
    Ok(())
}

/// A process's resident memory (VmRSS), in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    proc_kib(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// A process's proportional set size (smaps_rollup's Pss), in KiB: each page counted
/// once across the processes that share it (the daemons share the `skiff` binary's).
fn pss_kib(pid: u32) -> Option<u64> {
    proc_kib(&format!("/proc/{pid}/smaps_rollup"), "Pss:")
}

/// The `KEY: N kB` figure of a /proc file.
fn proc_kib(path: &str, key: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `lab status -o json`: what the supervisor knows, each running process's memory and
/// the store members' Raft roles, for scripts and the lab benchmark.
///
/// Memory comes in three figures because every daemon is the same `skiff` binary:
/// `rss_kib` (VmRSS) counts the binary's pages in every process that maps them,
/// `anon_kib` (RssAnon) is the process's own heap and stacks, and `pss_kib`
/// (smaps_rollup's Pss) splits each shared page among the processes sharing it, so
/// the `pss_kib` of all processes add up to the memory they really hold.
async fn status_json(spec: &LabSpec) -> Result<()> {
    let supervised = ask(spec, &Request::Status)
        .await?
        .status
        .unwrap_or_default();
    let (roles, pods) = tokio::join!(raft_roles(spec), pods_per_node(spec));
    let process = |p: &supervisor::ProcessStatus| {
        let memory = p.pid.map(|pid| {
            serde_json::json!({
                "rss_kib": rss_kib(pid),
                "anon_kib": proc_kib(&format!("/proc/{pid}/status"), "RssAnon:"),
                "pss_kib": pss_kib(pid),
            })
        });
        serde_json::json!({
            "name": p.name,
            "pid": p.pid,
            "restarts": p.restarts,
            "last_exit": p.last_exit,
            "memory": memory,
        })
    };
    let machines: Vec<_> = spec
        .machines
        .iter()
        .map(|m| {
            let s = supervised.machines.iter().find(|s| s.name == m.name);
            serde_json::json!({
                "name": m.name,
                "role": m.role.as_str(),
                "ip": m.ip.to_string(),
                "powered": s.map(|s| s.powered),
                "paused": s.map(|s| s.paused),
                "cut": s.map(|s| s.cut),
                "raft": roles.get(&m.name),
                "pods": pods.as_ref().map(|p| p.get(&m.name).copied().unwrap_or(0)),
                "processes": s.map(|s| s.processes.iter().map(process).collect::<Vec<_>>()),
            })
        })
        .collect();
    let out = serde_json::json!({
        "name": spec.name,
        "api_server": spec.api_server(),
        "supervisor_pid": supervised.pid,
        "machines": machines,
        "host": supervised.host.iter().map(process).collect::<Vec<_>>(),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_seconds_and_minutes() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("3m").unwrap(), Duration::from_secs(180));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5h").is_err());
    }

    #[test]
    fn the_lab_kubeconfig_names_its_context() {
        let spec = LabSpec::new(&spec::Request {
            name: "t1".into(),
            members: 1,
            workers: 1,
            subnet: Ipv4Addr::new(10, 78, 3, 0),
            dir: None,
            image_dir: "/i".into(),
            registry_dir: None,
            skiff_binary: "/s".into(),
        })
        .unwrap();
        let text = lab_kubeconfig(&spec);
        let kc = skiff_client::kubeconfig::Kubeconfig::from_yaml(&text).unwrap();
        assert_eq!(kc.current_context.as_deref(), Some("skiff-t1"));
        assert_eq!(kc.clusters[0].cluster.server, "http://10.78.3.1:6443");
    }
}
