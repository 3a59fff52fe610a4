//! The lab's supervisor: the one long-running process `lab up` leaves behind. It plays
//! the part of each machine's init (systemd with `Restart=on-failure`): it runs every
//! daemon a machine's `units` file lists, inside the machine's network namespace, with
//! the flags of its `<daemon>.env`, and starts again those that fail. It also plays the
//! host: the control-plane endpoint (a TCP relay to whichever apiserver answers, as a
//! load balancer in front of kubeadm's control planes) and the image registry. Chaos
//! requests and status come in over a Unix socket, one JSON line each way.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::process::Command;
use tokio::sync::watch;

use super::spec::{LabSpec, Machine, Role, API_PORT, REGISTRY_PORT};

/// What a client asks the supervisor.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// Every machine and process.
    Status,
    /// Break or heal a machine.
    Chaos {
        /// What to do.
        action: Chaos,
        /// Which machine.
        machine: String,
    },
    /// Stop every process and exit.
    Shutdown,
}

/// `lab chaos` actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Chaos {
    /// Power the machine off: SIGKILL its daemons and its pods' containers; nothing
    /// restarts them until `heal`.
    Kill,
    /// Freeze its daemons (SIGSTOP).
    Pause,
    /// Take its link to the bridge down.
    Cut,
    /// Undo kill, pause and cut.
    Heal,
}

/// The supervisor's answer.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Response {
    /// Set when the request failed.
    pub error: Option<String>,
    /// What was done, for the user.
    pub message: Option<String>,
    /// For `status`.
    pub status: Option<Status>,
}

/// The state of every machine and host process.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Status {
    /// The supervisor's pid.
    pub pid: u32,
    /// Machines in the lab's order.
    pub machines: Vec<MachineStatus>,
    /// The host's processes: the registry.
    pub host: Vec<ProcessStatus>,
}

/// One machine.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MachineStatus {
    /// `cp1`.
    pub name: String,
    /// Powered on (not killed).
    pub powered: bool,
    /// Frozen by `chaos pause`.
    pub paused: bool,
    /// Link down by `chaos cut`.
    pub cut: bool,
    /// Its daemons.
    pub processes: Vec<ProcessStatus>,
}

/// One supervised process.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProcessStatus {
    /// `store`, `kubelet`, `registry`.
    pub name: String,
    /// Its pid while it runs.
    pub pid: Option<u32>,
    /// How many times it was started again after failing.
    pub restarts: u32,
    /// How its last run ended (`exit status: 1`, `signal: 9 (SIGKILL)`).
    pub last_exit: Option<String>,
    /// Unix seconds of the last start.
    pub started_at: Option<u64>,
}

/// The shared, mutable picture the process tasks keep up to date.
#[derive(Default)]
struct State {
    machines: BTreeMap<String, MachineState>,
    host: BTreeMap<String, ProcessStatus>,
}

struct MachineState {
    order: usize,
    powered: bool,
    paused: bool,
    cut: bool,
    processes: Vec<ProcessStatus>,
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, State> {
    // A task that panicked while holding the lock leaves data that is still usable.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// The daemons a machine runs: its `units` file, as machine-setup.sh wrote it.
pub fn units(etc: &Path) -> Result<Vec<String>> {
    let path = etc.join("units");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (written by lab/machine-setup.sh)",
            path.display()
        )
    })?;
    Ok(text.split_whitespace().map(str::to_string).collect())
}

/// The flags in a `<daemon>.env` file (`SKIFF_ARGS=…`), split on whitespace as systemd
/// splits an unquoted `$SKIFF_ARGS`.
pub fn unit_args(text: &str) -> Option<Vec<String>> {
    text.lines()
        .find_map(|l| l.strip_prefix("SKIFF_ARGS="))
        .map(|v| {
            v.trim_matches('"')
                .split_whitespace()
                .map(str::to_string)
                .collect()
        })
}

/// How to start one process, again and again.
#[derive(Clone)]
struct Unit {
    machine: Option<String>,
    name: String,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
}

/// Runs the supervisor of `spec` until a shutdown request or SIGTERM.
pub async fn run(spec: LabSpec) -> Result<()> {
    let socket = spec.socket();
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)
        .with_context(|| format!("binding the control socket {}", socket.display()))?;
    let state: Shared = Arc::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut power = BTreeMap::new();
    let mut tasks = Vec::new();
    for (order, machine) in spec.machines.iter().enumerate() {
        let (tx, rx) = watch::channel(true);
        power.insert(machine.name.clone(), tx);
        let units = machine_units(&spec, machine)?;
        lock(&state).machines.insert(
            machine.name.clone(),
            MachineState {
                order,
                powered: true,
                paused: false,
                cut: false,
                processes: units.iter().map(|u| process_status(&u.name)).collect(),
            },
        );
        for unit in units {
            tasks.push(tokio::spawn(keep_running(
                unit,
                state.clone(),
                rx.clone(),
                stop_rx.clone(),
            )));
        }
    }
    // The host is never powered off; its switch lives as long as the supervisor.
    let (_host_power, host_powered) = watch::channel(true);
    if let Some(registry) = registry_unit(&spec)? {
        lock(&state)
            .host
            .insert(registry.name.clone(), process_status(&registry.name));
        tasks.push(tokio::spawn(keep_running(
            registry,
            state.clone(),
            host_powered,
            stop_rx.clone(),
        )));
    }
    let relay_listener = TcpListener::bind(SocketAddr::new(spec.host_ip.into(), API_PORT))
        .await
        .with_context(|| {
            format!(
                "binding the control-plane endpoint {}:{API_PORT}",
                spec.host_ip
            )
        })?;
    let backends: Vec<SocketAddr> = spec
        .control_planes()
        .map(|m| SocketAddr::new(m.ip.into(), API_PORT))
        .collect();
    tokio::spawn(relay(relay_listener, backends, stop_rx.clone()));
    tracing::info!(lab = %spec.name, "supervisor running");

    let spec = Arc::new(spec);
    let power = Arc::new(power);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = sigterm.recv() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (spec, state, power, stop_tx) = (spec.clone(), state.clone(), power.clone(), stop_tx.clone());
                tokio::spawn(async move {
                    if let Err(e) = serve(stream, &spec, &state, &power, &stop_tx).await {
                        tracing::warn!(error = %e, "control connection failed");
                    }
                });
            }
            _ = wait_stopped(stop_rx.clone()) => break,
        }
    }
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    let _ = std::fs::remove_file(&socket);
    tracing::info!("supervisor stopped");
    Ok(())
}

async fn wait_stopped(mut stop: watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

fn process_status(name: &str) -> ProcessStatus {
    ProcessStatus {
        name: name.to_string(),
        pid: None,
        restarts: 0,
        last_exit: None,
        started_at: None,
    }
}

fn machine_units(spec: &LabSpec, machine: &Machine) -> Result<Vec<Unit>> {
    let etc = spec.etc_dir(machine);
    let mut out = Vec::new();
    for daemon in units(&etc)? {
        let env = etc.join(format!("{daemon}.env"));
        let text =
            std::fs::read_to_string(&env).with_context(|| format!("reading {}", env.display()))?;
        let flags = unit_args(&text)
            .with_context(|| format!("{} has no SKIFF_ARGS= line", env.display()))?;
        let mut args = vec![
            format!("--net=/run/netns/{}", machine.netns),
            "--".to_string(),
            spec.skiff_binary.display().to_string(),
            daemon.clone(),
        ];
        args.extend(flags);
        out.push(Unit {
            machine: Some(machine.name.clone()),
            log: spec.log_dir(&machine.name).join(format!("{daemon}.log")),
            name: daemon,
            // nsenter enters the namespace and execs: the pid is the daemon's.
            program: PathBuf::from("nsenter"),
            args,
        });
    }
    Ok(out)
}

fn registry_unit(spec: &LabSpec) -> Result<Option<Unit>> {
    let Some(storage) = &spec.registry_dir else {
        return Ok(None);
    };
    let config = spec.dir.join("registry.yml");
    let text = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  maintenance:\n    readonly:\n      enabled: true\nhttp:\n  addr: {}:{REGISTRY_PORT}\n",
        storage.display(),
        spec.host_ip
    );
    std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
    Ok(Some(Unit {
        machine: None,
        name: "registry".into(),
        program: PathBuf::from("docker-registry"),
        args: vec!["serve".into(), config.display().to_string()],
        log: spec.log_dir("host").join("registry.log"),
    }))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn update(state: &Shared, unit: &Unit, f: impl FnOnce(&mut ProcessStatus)) {
    let mut s = lock(state);
    let process = match &unit.machine {
        Some(m) => s
            .machines
            .get_mut(m)
            .and_then(|m| m.processes.iter_mut().find(|p| p.name == unit.name)),
        None => s.host.get_mut(&unit.name),
    };
    if let Some(p) = process {
        f(p);
    }
}

/// Runs `unit` while its machine is powered, starting it again when it fails (with a
/// back-off from 1 s doubling to 16 s, reset after a minute of running), until stop.
async fn keep_running(
    unit: Unit,
    state: Shared,
    mut powered: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_secs(1);
    let mut failed_before = false;
    loop {
        if *stop.borrow() {
            return;
        }
        if !*powered.borrow_and_update() {
            tokio::select! {
                _ = powered.changed() => continue,
                _ = stop.changed() => continue,
            }
        }
        let child = spawn(&unit);
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                update(&state, &unit, |p| {
                    p.last_exit = Some(format!("cannot start: {e:#}"))
                });
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(16));
                continue;
            }
        };
        let started = Instant::now();
        update(&state, &unit, |p| {
            p.pid = child.id();
            p.started_at = Some(now());
            if failed_before {
                p.restarts += 1;
            }
        });
        let pid = child.id();
        let exit = tokio::select! {
            status = child.wait() => status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()),
            _ = stop.changed() => {
                terminate(&mut child, pid).await;
                update(&state, &unit, |p| { p.pid = None; p.last_exit = Some("stopped".into()) });
                return;
            }
            _ = powered_off(&mut powered) => {
                if let Some(pid) = pid {
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                }
                let status = child.wait().await.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                update(&state, &unit, |p| { p.pid = None; p.last_exit = Some(format!("{status} (chaos kill)")) });
                failed_before = false;
                continue;
            }
        };
        tracing::warn!(machine = ?unit.machine, unit = %unit.name, %exit, "process ended");
        let succeeded = exit == "exit status: 0";
        update(&state, &unit, |p| {
            p.pid = None;
            p.last_exit = Some(exit);
        });
        if succeeded {
            // Restart=on-failure: a clean exit stays down until the machine is healed.
            failed_before = false;
            tokio::select! {
                _ = powered_off(&mut powered) => continue,
                _ = stop.changed() => return,
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_secs(1);
        }
        failed_before = true;
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(16));
    }
}

/// Resolves when the machine's power goes from on to off.
async fn powered_off(powered: &mut watch::Receiver<bool>) {
    loop {
        if powered.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        if !*powered.borrow_and_update() {
            return;
        }
    }
}

fn spawn(unit: &Unit) -> Result<tokio::process::Child> {
    if let Some(dir) = unit.log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&unit.log)
        .with_context(|| format!("opening {}", unit.log.display()))?;
    let child = Command::new(&unit.program)
        .args(&unit.args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", unit.program.display()))?;
    Ok(child)
}

/// SIGTERM (a SIGCONT first, in case it is paused), then SIGKILL after 10 s.
async fn terminate(child: &mut tokio::process::Child, pid: Option<u32>) {
    if let Some(pid) = pid {
        let pid = Pid::from_raw(pid as i32);
        let _ = kill(pid, Signal::SIGCONT);
        let _ = kill(pid, Signal::SIGTERM);
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

/// The control-plane endpoint: each connection goes to the next apiserver that accepts.
async fn relay(listener: TcpListener, backends: Vec<SocketAddr>, mut stop: watch::Receiver<bool>) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let Ok((mut inbound, _)) = accepted else {
            continue;
        };
        let (backends, next) = (backends.clone(), next.clone());
        tokio::spawn(async move {
            let start = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            for i in 0..backends.len() {
                let target = backends[(start + i) % backends.len()];
                let connect =
                    tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(target));
                if let Ok(Ok(mut outbound)) = connect.await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    return;
                }
            }
        });
    }
}

async fn serve(
    stream: UnixStream,
    spec: &LabSpec,
    state: &Shared,
    power: &BTreeMap<String, watch::Sender<bool>>,
    stop: &watch::Sender<bool>,
) -> Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        let response = match serde_json::from_str::<Request>(&line) {
            Err(e) => Response {
                error: Some(format!("malformed request: {e}")),
                ..Response::default()
            },
            Ok(Request::Status) => Response {
                status: Some(status(state)),
                ..Response::default()
            },
            Ok(Request::Chaos { action, machine }) => {
                match chaos(spec, state, power, action, &machine).await {
                    Ok(message) => Response {
                        message: Some(message),
                        ..Response::default()
                    },
                    Err(e) => Response {
                        error: Some(format!("{e:#}")),
                        ..Response::default()
                    },
                }
            }
            Ok(Request::Shutdown) => {
                let _ = stop.send(true);
                Response {
                    message: Some("stopping".into()),
                    ..Response::default()
                }
            }
        };
        let mut text = serde_json::to_string(&response)?;
        text.push('\n');
        write.write_all(text.as_bytes()).await?;
    }
    Ok(())
}

fn status(state: &Shared) -> Status {
    let s = lock(state);
    let mut machines: Vec<(usize, MachineStatus)> = s
        .machines
        .iter()
        .map(|(name, m)| {
            (
                m.order,
                MachineStatus {
                    name: name.clone(),
                    powered: m.powered,
                    paused: m.paused,
                    cut: m.cut,
                    processes: m.processes.clone(),
                },
            )
        })
        .collect();
    machines.sort_by_key(|(order, _)| *order);
    Status {
        pid: std::process::id(),
        machines: machines.into_iter().map(|(_, m)| m).collect(),
        host: s.host.values().cloned().collect(),
    }
}

/// Signals every running daemon of `machine`.
fn signal_machine(state: &Shared, machine: &str, signal: Signal) {
    let s = lock(state);
    if let Some(m) = s.machines.get(machine) {
        for pid in m.processes.iter().filter_map(|p| p.pid) {
            let _ = kill(Pid::from_raw(pid as i32), signal);
        }
    }
}

async fn chaos(
    spec: &LabSpec,
    state: &Shared,
    power: &BTreeMap<String, watch::Sender<bool>>,
    action: Chaos,
    name: &str,
) -> Result<String> {
    let Some(machine) = spec.machine(name) else {
        let names: Vec<&str> = spec.machines.iter().map(|m| m.name.as_str()).collect();
        bail!(
            "lab {} has no machine {name:?}; its machines are {}",
            spec.name,
            names.join(", ")
        );
    };
    let Some(switch) = power.get(name) else {
        bail!("machine {name} is not supervised");
    };
    match action {
        Chaos::Kill => {
            switch.send_replace(false);
            if let Some(m) = lock(state).machines.get_mut(name) {
                m.powered = false;
            }
            if machine.role == Role::Worker {
                super::host::kill_containers(&machine.containerd_namespace).await?;
            }
            // The process tasks SIGKILL their daemons as the switch turns.
            Ok(format!(
                "{name} is powered off: its daemons{} were killed and nothing restarts them until `lab chaos heal {name}`",
                if machine.role == Role::Worker { " and its pods' containers" } else { "" }
            ))
        }
        Chaos::Pause => {
            signal_machine(state, name, Signal::SIGSTOP);
            if let Some(m) = lock(state).machines.get_mut(name) {
                m.paused = true;
            }
            Ok(format!(
                "{name}'s daemons are frozen (SIGSTOP) until `lab chaos heal {name}`"
            ))
        }
        Chaos::Cut => {
            super::host::set_link(&machine.host_veth, false).await?;
            if let Some(m) = lock(state).machines.get_mut(name) {
                m.cut = true;
            }
            Ok(format!(
                "{name}'s link ({}) is down until `lab chaos heal {name}`",
                machine.host_veth
            ))
        }
        Chaos::Heal => {
            super::host::set_link(&machine.host_veth, true).await?;
            signal_machine(state, name, Signal::SIGCONT);
            if let Some(m) = lock(state).machines.get_mut(name) {
                m.powered = true;
                m.paused = false;
                m.cut = false;
            }
            switch.send_replace(true);
            Ok(format!("{name} is healed: powered on, running and linked"))
        }
    }
}

/// Sends `request` to the supervisor at `socket` and returns its answer.
pub async fn call(socket: &Path, request: &Request) -> Result<Response> {
    let stream = UnixStream::connect(socket).await?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    write.write_all(line.as_bytes()).await?;
    let mut lines = BufReader::new(read).lines();
    let Some(answer) = lines.next_line().await? else {
        bail!("the supervisor closed the connection without answering");
    };
    Ok(serde_json::from_str(&answer)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_args_split_like_systemd() {
        assert_eq!(
            unit_args("# comment\nSKIFF_ARGS=--a=1 --b 2\n").unwrap(),
            ["--a=1", "--b", "2"]
        );
        assert_eq!(unit_args("SKIFF_ARGS=\"--x\"").unwrap(), ["--x"]);
        assert!(unit_args("OTHER=1").is_none());
    }

    #[test]
    fn requests_read_as_json_lines() {
        let r: Request =
            serde_json::from_str(r#"{"op":"chaos","action":"kill","machine":"w2"}"#).unwrap();
        assert!(
            matches!(r, Request::Chaos { action: Chaos::Kill, ref machine } if machine == "w2")
        );
        assert!(matches!(
            serde_json::from_str::<Request>(r#"{"op":"status"}"#).unwrap(),
            Request::Status
        ));
        assert!(serde_json::from_str::<Request>(r#"{"op":"reboot"}"#).is_err());
    }
}
