//! Making and unmaking the lab's machines on this host: a bridge, one network namespace
//! per machine with a veth into the bridge, and on the way out everything the machines
//! left behind (processes, containers, mounts). Through `ip`, `ctr` and `nsenter`, the
//! tools a learner would use to look at the same things.

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use tokio::process::Command;

use super::spec::{LabSpec, Machine};

/// Runs a command and returns its stdout, or an error with its stderr.
async fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .await
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command whose failure does not matter (removing what may be gone already).
async fn quiet(program: &str, args: &[&str]) -> Option<String> {
    run(program, args).await.ok()
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// What the lab needs from this machine and does not have, each with how to get it.
pub fn missing_prerequisites(spec: &LabSpec) -> Vec<String> {
    let mut missing = Vec::new();
    for (program, package) in [
        ("ip", "iproute2"),
        ("nsenter", "util-linux"),
        ("ctr", "containerd"),
        ("containerd", "containerd"),
        ("runc", "runc"),
    ] {
        if !on_path(program) {
            missing.push(format!("{program} (Debian package {package})"));
        }
    }
    if spec.registry_dir.is_some() && !on_path("docker-registry") {
        missing.push("docker-registry (Debian package docker-registry)".into());
    }
    let cni_dirs = ["/usr/lib/cni", "/opt/cni/bin"];
    for plugin in ["bridge", "host-local", "loopback", "portmap"] {
        if !cni_dirs.iter().any(|d| Path::new(d).join(plugin).is_file()) {
            missing.push(format!(
                "the CNI plugin {plugin} in /usr/lib/cni or /opt/cni/bin (Debian package containernetworking-plugins)"
            ));
        }
    }
    // The socket file outlives a containerd that died: connect to it.
    if std::os::unix::net::UnixStream::connect("/run/containerd/containerd.sock").is_err() {
        missing.push(
            "a running containerd: nothing answers on /run/containerd/containerd.sock (`systemctl start containerd`, or `make deps` which starts it)"
                .into(),
        );
    }
    if !spec.skiff_binary.is_file() {
        missing.push(format!(
            "the skiff binary at {} (`make build`, or give --skiff-binary)",
            spec.skiff_binary.display()
        ));
    }
    if !spec.image_dir.is_dir() {
        missing.push(format!(
            "the test image archives in {} (`make images`, or give --image-dir)",
            spec.image_dir.display()
        ));
    }
    missing
}

async fn link_exists(name: &str) -> bool {
    quiet("ip", &["link", "show", "dev", name]).await.is_some()
}

async fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// Runs `ip` inside a machine's network namespace.
async fn ip_in(machine: &Machine, args: &[&str]) -> Result<String> {
    let mut all = vec!["-n", machine.netns.as_str()];
    all.extend_from_slice(args);
    run("ip", &all).await
}

/// Makes the bridge and every machine's namespace and link; what exists already is
/// kept, so `up` after a host reboot or a crash completes what is missing.
pub async fn make_machines(spec: &LabSpec) -> Result<()> {
    if !link_exists(&spec.bridge).await {
        run("ip", &["link", "add", &spec.bridge, "type", "bridge"]).await?;
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/24", spec.host_ip),
                "dev",
                &spec.bridge,
            ],
        )
        .await?;
    }
    run("ip", &["link", "set", &spec.bridge, "up"]).await?;
    for m in &spec.machines {
        if !netns_exists(&m.netns).await {
            run("ip", &["netns", "add", &m.netns]).await?;
        }
        if !link_exists(&m.host_veth).await {
            run(
                "ip",
                &[
                    "link",
                    "add",
                    &m.host_veth,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    &m.netns,
                ],
            )
            .await?;
            ip_in(m, &["addr", "add", &format!("{}/24", m.ip), "dev", "eth0"]).await?;
        }
        run(
            "ip",
            &["link", "set", &m.host_veth, "master", &spec.bridge, "up"],
        )
        .await?;
        ip_in(m, &["link", "set", "lo", "up"]).await?;
        ip_in(m, &["link", "set", "eth0", "up"]).await?;
        ip_in(
            m,
            &[
                "route",
                "replace",
                "default",
                "via",
                &spec.host_ip.to_string(),
            ],
        )
        .await?;
    }
    Ok(())
}

/// Writes each machine's configuration with lab/machine-setup.sh (the script the VM lab
/// uses too).
pub async fn set_up_machines(spec: &LabSpec) -> Result<()> {
    const SCRIPT: &str = include_str!("../../../lab/machine-setup.sh");
    for m in &spec.machines {
        let args = spec.setup_args(m);
        let mut all = vec!["-c", SCRIPT, "machine-setup.sh"];
        all.extend(args.iter().map(String::as_str));
        run("bash", &all)
            .await
            .with_context(|| format!("setting up {}", m.name))?;
    }
    Ok(())
}

/// Takes a machine's link up or down (`chaos cut` and `heal`).
pub async fn set_link(veth: &str, up: bool) -> Result<()> {
    run("ip", &["link", "set", veth, if up { "up" } else { "down" }])
        .await
        .map(|_| ())
}

/// SIGKILLs every container task of a worker (its pods die with the machine).
pub async fn kill_containers(containerd_namespace: &str) -> Result<()> {
    let tasks = run("ctr", &["-n", containerd_namespace, "tasks", "ls"]).await?;
    for id in tasks
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
    {
        quiet(
            "ctr",
            &[
                "-n",
                containerd_namespace,
                "tasks",
                "kill",
                "-s",
                "SIGKILL",
                id,
            ],
        )
        .await;
    }
    Ok(())
}

/// The pids of the processes in a network namespace.
pub async fn netns_pids(netns: &str) -> Vec<i32> {
    quiet("ip", &["netns", "pids", netns])
        .await
        .map(|out| out.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Removes every container, snapshot, image and lease in a containerd namespace, then
/// the namespace.
async fn remove_containerd_namespace(ns: &str) {
    let ids = |out: Option<String>, skip: usize| -> Vec<String> {
        out.unwrap_or_default()
            .lines()
            .skip(skip)
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect()
    };
    for id in ids(quiet("ctr", &["-n", ns, "tasks", "ls"]).await, 1) {
        quiet("ctr", &["-n", ns, "tasks", "kill", "-s", "SIGKILL", &id]).await;
        quiet("ctr", &["-n", ns, "tasks", "delete", "-f", &id]).await;
    }
    for id in ids(quiet("ctr", &["-n", ns, "containers", "ls", "-q"]).await, 0) {
        quiet("ctr", &["-n", ns, "containers", "rm", &id]).await;
    }
    for name in ids(quiet("ctr", &["-n", ns, "images", "ls", "-q"]).await, 0) {
        quiet("ctr", &["-n", ns, "images", "rm", "--sync", &name]).await;
    }
    for id in ids(quiet("ctr", &["-n", ns, "leases", "ls", "-q"]).await, 0) {
        quiet("ctr", &["-n", ns, "leases", "rm", &id]).await;
    }
    // Snapshots come off their chains from the top, one layer per round.
    for _ in 0..16 {
        let keys = ids(quiet("ctr", &["-n", ns, "snapshots", "ls"]).await, 1);
        if keys.is_empty() {
            break;
        }
        for k in keys {
            quiet("ctr", &["-n", ns, "snapshots", "rm", &k]).await;
        }
    }
    for d in ids(quiet("ctr", &["-n", ns, "content", "ls", "-q"]).await, 0) {
        quiet("ctr", &["-n", ns, "content", "rm", &d]).await;
    }
    quiet("ctr", &["namespaces", "rm", ns]).await;
}

/// The mount points at or under `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let prefix = dir.display().to_string();
    let mut points: Vec<String> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| p.replace("\\040", " "))
        .filter(|p| p == &prefix || p.starts_with(&format!("{prefix}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points.dedup();
    points
}

/// What `lab down` removed and what it could not.
#[derive(Default, Debug)]
pub struct Teardown {
    /// Processes killed because they were still running in a machine.
    pub killed: usize,
    /// Problems left for the user.
    pub problems: Vec<String>,
}

/// Removes everything the lab made on the host: processes left in its namespaces, its
/// containers, its mounts, its namespaces and links, and its directory.
pub async fn unmake(spec: &LabSpec) -> Teardown {
    let mut report = Teardown::default();
    for m in &spec.machines {
        for pid in netns_pids(&m.netns).await {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            report.killed += 1;
        }
    }
    for m in spec.workers() {
        remove_containerd_namespace(&m.containerd_namespace).await;
        if quiet("ctr", &["namespaces", "ls", "-q"])
            .await
            .is_some_and(|out| out.lines().any(|l| l == m.containerd_namespace))
        {
            report.problems.push(format!(
                "containerd namespace {} could not be removed: see `ctr -n {} containers ls`",
                m.containerd_namespace, m.containerd_namespace
            ));
        }
    }
    for point in mounts_under(&spec.dir) {
        if let Err(e) = nix::mount::umount2(point.as_str(), nix::mount::MntFlags::MNT_DETACH) {
            report.problems.push(format!("umount {point}: {e}"));
        }
    }
    for m in &spec.machines {
        if netns_exists(&m.netns).await {
            if let Err(e) = run("ip", &["netns", "del", &m.netns]).await {
                report.problems.push(format!("{e:#}"));
            }
        }
        // Deleting the namespace takes its veth end, and so the pair, with it.
        if link_exists(&m.host_veth).await {
            quiet("ip", &["link", "del", &m.host_veth]).await;
        }
    }
    if link_exists(&spec.bridge).await {
        if let Err(e) = run("ip", &["link", "del", &spec.bridge]).await {
            report.problems.push(format!("{e:#}"));
        }
    }
    if spec.dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(&spec.dir) {
            report
                .problems
                .push(format!("removing {}: {e}", spec.dir.display()));
        }
    }
    report
}
