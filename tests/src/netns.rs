//! Machines as network namespaces for netd's tests: a Linux bridge on the host (the
//! underlay), one namespace per node joined to it by a veth pair, and in each a
//! `skiff kubelet` and a `skiff netd` against a [`ControlPlane`] on the host.
//!
//! The daemons run under `nsenter --net` (not `ip netns exec`): they keep the host's
//! mount namespace, so the pod namespaces the kubelet pins with bind mounts are
//! visible to containerd. The control plane listens on loopback; a small TCP relay on
//! the host's bridge address lets the nodes reach it. Each node has its own containerd
//! namespace, kubelet root dir, CNI conf dir and host-local state dir. A
//! `skiff controller-manager` on the host gives the nodes their podCIDRs and keeps the
//! Services' EndpointSlices, as in a cluster.
//!
//! Dropping a [`Lab`] kills the daemons, removes the containers, images and snapshots
//! of each node's containerd namespace, the namespaces, the bridge and the relay, also
//! when the test failed.

use std::fs::OpenOptions;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::Node;
use skiff_client::{Api, Client};

use crate::cluster::{dying_with_parent, skiff_binary, tail, Spawner};
use crate::control_plane::{kubeconfig_for, ControlPlane};
use crate::controller_manager::ControllerManager;
use crate::kubelet::{archive_dir, ctr};
use crate::wait::eventually;

/// The cluster CIDR the lab's nodes take their podCIDRs from.
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";
/// The apiserver's default Service range (the harness starts it with the default).
pub const SERVICE_RANGE: &str = "10.96.0.0/12";
/// Cluster DNS on every node (netd's --dns-address, the kubelets' --cluster-dns).
pub const NODE_LOCAL_DNS: &str = "169.254.20.10";

/// Runs a command; fails with its stderr unless it succeeds; returns stdout.
pub fn run(args: &[&str]) -> Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {args:?}"))?;
    check(args, &out)
}

fn check(args: &[&str], out: &Output) -> Result<String> {
    if !out.status.success() {
        bail!(
            "{args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One node: a network namespace with a kubelet and a netd.
pub struct NodeNs {
    /// The Node's name (also the namespace's).
    pub name: String,
    /// The node's underlay address.
    pub ip: Ipv4Addr,
    /// The podCIDR the controller-manager's node IPAM gave it.
    pub pod_cidr: String,
    /// The containerd namespace of its kubelet.
    pub containerd_namespace: String,
    dir: PathBuf,
    kubelet: Option<Child>,
    netd: Option<Child>,
}

impl NodeNs {
    /// `/run/netns/<name>`.
    pub fn netns_path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// The kubelet's --root-dir.
    pub fn root_dir(&self) -> PathBuf {
        self.dir.join("root")
    }

    fn cni_dir(&self) -> PathBuf {
        self.dir.join("cni")
    }

    fn ipam_dir(&self) -> PathBuf {
        self.dir.join("ipam")
    }

    /// The netd log file.
    pub fn netd_log(&self) -> PathBuf {
        self.dir.join("netd.log")
    }

    fn kubelet_log(&self) -> PathBuf {
        self.dir.join("kubelet.log")
    }

    /// Runs `args` in the node's network namespace.
    pub fn exec(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["ip", "netns", "exec", &self.name];
        all.extend(args);
        run(&all)
    }

    /// Runs `args` in the node's network namespace, whatever the exit status.
    pub fn exec_output(&self, args: &[&str]) -> Result<Output> {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .context("ip netns exec")
    }

    /// The last lines of netd's log.
    pub fn netd_log_tail(&self, lines: usize) -> String {
        tail(&self.netd_log(), lines)
    }

    /// Whether netd is running.
    pub fn netd_running(&mut self) -> bool {
        self.netd
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Stops netd with SIGTERM and waits for it.
    pub fn stop_netd(&mut self) -> Result<()> {
        if let Some(mut c) = self.netd.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            for _ in 0..100 {
                if c.try_wait()?.is_some() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        Ok(())
    }
}

/// The nodes, their underlay bridge and the relay to the control plane.
pub struct Lab {
    /// The nodes.
    pub nodes: Vec<NodeNs>,
    /// The host's bridge (underlay) device.
    pub bridge: String,
    /// The host's address on the bridge.
    pub host_ip: Ipv4Addr,
    /// The kubeconfig the nodes use (the relay's address).
    pub kubeconfig: PathBuf,
    spawner: Spawner,
    relay: Option<std::thread::JoinHandle<()>>,
    relay_stop: Option<tokio::sync::oneshot::Sender<()>>,
    _controller_manager: ControllerManager,
    _dir: tempfile::TempDir,
}

/// Starts a TCP relay on `listen` to `target`, on its own thread and runtime.
fn relay(
    listen: SocketAddr,
    target: SocketAddr,
) -> Result<(
    std::thread::JoinHandle<()>,
    tokio::sync::oneshot::Sender<()>,
    u16,
)> {
    let listener = std::net::TcpListener::bind(listen).context("binding the relay")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    let handle = std::thread::Builder::new()
        .name("netns-relay".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                loop {
                    tokio::select! {
                        _ = &mut rx => return,
                        accepted = listener.accept() => {
                            let Ok((mut inbound, _)) = accepted else { continue };
                            tokio::spawn(async move {
                                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                                }
                            });
                        }
                    }
                }
            });
        })?;
    Ok((handle, tx, port))
}

impl Lab {
    /// Creates `n` node namespaces on a new bridge, starts a controller-manager (node
    /// IPAM and EndpointSlices) and a kubelet in each namespace, and waits for every
    /// Node to have its podCIDR. netd is started with [`Lab::start_netd`].
    pub async fn start(cp: &ControlPlane, n: usize) -> Result<Lab> {
        let tag = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
        let octet = 1 + rand::random::<u8>() % 250;
        let host_ip = Ipv4Addr::new(10, 250, octet, 1);
        let dir = tempfile::Builder::new().prefix("skiff-netns-").tempdir()?;
        let bridge = format!("sknb{tag}");
        let mut lab = Lab {
            nodes: Vec::new(),
            bridge: bridge.clone(),
            host_ip,
            kubeconfig: dir.path().join("kubeconfig"),
            spawner: Spawner::new()?,
            relay: None,
            relay_stop: None,
            _controller_manager: ControllerManager::start(
                cp,
                &[
                    "--controllers=node-ipam-controller,endpointslice-controller",
                    &format!("--cluster-cidr={CLUSTER_CIDR}"),
                    "--node-cidr-mask-size=24",
                ],
            )
            .await?,
            _dir: dir,
        };
        run(&["ip", "link", "add", &bridge, "type", "bridge"])?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{host_ip}/24"),
            "dev",
            &bridge,
        ])?;
        run(&["ip", "link", "set", &bridge, "up"])?;
        let api: SocketAddr = cp
            .url(0)
            .trim_start_matches("http://")
            .parse()
            .context("apiserver URL")?;
        let (handle, stop, port) = relay(SocketAddr::new(host_ip.into(), 0), api)?;
        lab.relay = Some(handle);
        lab.relay_stop = Some(stop);
        std::fs::write(
            &lab.kubeconfig,
            kubeconfig_for(&format!("http://{host_ip}:{port}")),
        )?;
        for i in 0..n {
            let name = format!("skn{tag}-{i}");
            let ip = Ipv4Addr::new(10, 250, octet, 10 + i as u8);
            let node_dir = lab._dir.path().join(&name);
            std::fs::create_dir_all(&node_dir)?;
            let node = NodeNs {
                name: name.clone(),
                ip,
                pod_cidr: String::new(),
                containerd_namespace: format!("skiff-netd-{tag}-{i}"),
                dir: node_dir,
                kubelet: None,
                netd: None,
            };
            run(&["ip", "netns", "add", &name])?;
            lab.nodes.push(node);
            let veth = format!("skv{tag}{i}");
            run(&[
                "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &name,
            ])?;
            run(&["ip", "link", "set", &veth, "master", &bridge, "up"])?;
            let node = &lab.nodes[i];
            node.exec(&["ip", "link", "set", "lo", "up"])?;
            node.exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
            node.exec(&["ip", "link", "set", "eth0", "up"])?;
            node.exec(&["ip", "route", "add", "default", "via", &host_ip.to_string()])?;
        }
        for i in 0..n {
            lab.start_kubelet(i)?;
        }
        let client = Client::from_kubeconfig(Some(cp.kubeconfig()), None)?;
        let nodes: Api<Node> = Api::cluster(client);
        for node in &mut lab.nodes {
            let name = node.name.clone();
            node.pod_cidr = eventually(
                &format!("Node {name} registered with a podCIDR"),
                Duration::from_secs(60),
                || async {
                    let node = nodes.get_opt(&name).await?;
                    Ok(node.and_then(|n| n.spec?.pod_cidr))
                },
            )
            .await
            .with_context(|| format!("kubelet log:\n{}", tail(&node.kubelet_log(), 40)))?;
        }
        for node in &lab.nodes {
            let ns = node.containerd_namespace.clone();
            eventually(
                &format!("test images imported on {}", node.name),
                Duration::from_secs(120),
                || async {
                    let images = ctr(&ns, &["images", "ls", "-q"])?;
                    Ok((images.contains("skiff.invalid/test/busybox:1")
                        && images.contains("skiff.invalid/test/httpd:1"))
                    .then_some(()))
                },
            )
            .await?;
        }
        Ok(lab)
    }

    fn in_netns(&self, i: usize) -> Command {
        let mut cmd = dying_with_parent(Path::new("/usr/bin/nsenter"));
        cmd.arg(format!("--net={}", self.nodes[i].netns_path()))
            .arg("--");
        cmd
    }

    fn start_kubelet(&mut self, i: usize) -> Result<()> {
        let skiff = skiff_binary()?;
        let node = &self.nodes[i];
        std::fs::create_dir_all(node.cni_dir())?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.kubelet_log())?;
        let mut cmd = self.in_netns(i);
        cmd.arg(&skiff)
            .arg("kubelet")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--hostname-override")
            .arg(&node.name)
            .arg(format!("--node-ip={}", node.ip))
            .arg("--root-dir")
            .arg(node.root_dir())
            .arg("--containerd-namespace")
            .arg(&node.containerd_namespace)
            .arg("--cni-conf-dir")
            .arg(node.cni_dir())
            .arg("--cni-bin-dir=/usr/lib/cni,/opt/cni/bin")
            .arg(format!("--cluster-dns={NODE_LOCAL_DNS}"))
            .arg("--image-dir")
            .arg(archive_dir())
            .env(
                "SKIFF_LOG",
                std::env::var("SKIFF_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = self.spawner.spawn(cmd)?;
        self.nodes[i].kubelet = Some(child);
        Ok(())
    }

    /// Kills node `i`'s kubelet (its pods keep running).
    pub fn stop_kubelet(&mut self, i: usize) -> Result<()> {
        if let Some(mut c) = self.nodes[i].kubelet.take() {
            let _ = c.kill();
            c.wait()?;
        }
        Ok(())
    }

    /// Starts netd on node `i` (again, after [`NodeNs::stop_netd`]).
    pub fn start_netd(&mut self, i: usize, extra: &[&str]) -> Result<()> {
        let skiff = skiff_binary()?;
        let node = &self.nodes[i];
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.netd_log())?;
        let mut cmd = self.in_netns(i);
        cmd.arg(&skiff)
            .arg("netd")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--hostname-override")
            .arg(&node.name)
            .arg("--iface=eth0")
            .arg(format!("--cluster-cidr={CLUSTER_CIDR}"))
            .arg(format!("--service-cluster-ip-range={SERVICE_RANGE}"))
            .arg("--cni-conf-dir")
            .arg(node.cni_dir())
            .arg("--cni-ipam-data-dir")
            .arg(node.ipam_dir())
            .arg("--sync-period=5s")
            .arg(format!("--dns-address={NODE_LOCAL_DNS}"))
            .args(extra)
            .env(
                "SKIFF_LOG",
                std::env::var("SKIFF_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = self.spawner.spawn(cmd)?;
        self.nodes[i].netd = Some(child);
        Ok(())
    }

    /// Waits until every node's netd answers /healthz (overlay and rules programmed).
    pub async fn wait_netd_healthy(&self, i: usize) -> Result<()> {
        let node = &self.nodes[i];
        let url = format!("http://{}:10249/healthz", node.ip);
        eventually(
            &format!("netd on {} healthy", node.name),
            Duration::from_secs(60),
            || async {
                let out = Command::new("curl")
                    .args(["-sf", "-m", "2", &url])
                    .output()?;
                Ok(out.status.success().then_some(()))
            },
        )
        .await
        .with_context(|| format!("netd log:\n{}", node.netd_log_tail(40)))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for n in &self.nodes {
                eprintln!(
                    "--- {} netd log ---\n{}\n--- {} kubelet log ---\n{}",
                    n.name,
                    n.netd_log_tail(60),
                    n.name,
                    tail(&n.kubelet_log(), 40)
                );
            }
        }
        for n in &mut self.nodes {
            for c in [n.netd.take(), n.kubelet.take()].into_iter().flatten() {
                let mut c = c;
                let _ = c.kill();
                let _ = c.wait();
            }
            remove_containerd_namespace(&n.containerd_namespace);
            if let Ok(pods) = std::fs::read_dir(n.root_dir().join("pods")) {
                for pod in pods.flatten() {
                    for f in ["net", "ipc", "uts"] {
                        let _ = Command::new("umount")
                            .arg("-l")
                            .arg(pod.path().join("ns").join(f))
                            .output();
                    }
                }
            }
            let _ = Command::new("ip").args(["netns", "del", &n.name]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
        if let Some(stop) = self.relay_stop.take() {
            let _ = stop.send(());
        }
        if let Some(h) = self.relay.take() {
            let _ = h.join();
        }
    }
}

/// Removes everything in a containerd namespace, then the namespace.
pub fn remove_containerd_namespace(ns: &str) {
    let quiet = |args: &[&str]| {
        let _ = ctr(ns, args);
    };
    let lines = |args: &[&str], skip: usize| -> Vec<String> {
        ctr(ns, args)
            .map(|out| {
                out.lines()
                    .skip(skip)
                    .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    for id in lines(&["tasks", "ls"], 1) {
        quiet(&["tasks", "kill", "-s", "SIGKILL", &id]);
        quiet(&["tasks", "delete", "-f", &id]);
    }
    for id in lines(&["containers", "ls", "-q"], 0) {
        quiet(&["containers", "rm", &id]);
    }
    for name in lines(&["images", "ls", "-q"], 0) {
        quiet(&["images", "rm", "--sync", &name]);
    }
    for id in lines(&["leases", "ls", "-q"], 0) {
        quiet(&["leases", "rm", &id]);
    }
    for _ in 0..8 {
        let keys = lines(&["snapshots", "ls"], 1);
        if keys.is_empty() {
            break;
        }
        for k in keys {
            quiet(&["snapshots", "rm", &k]);
        }
    }
    for d in lines(&["content", "ls", "-q"], 0) {
        quiet(&["content", "rm", &d]);
    }
    let _ = Command::new("ctr").args(["namespaces", "rm", ns]).output();
}

/// The pid of a running container's task (its id without `containerd://`), for
/// entering the pod's namespaces.
pub fn task_pid(containerd_namespace: &str, container_id: &str) -> Result<u32> {
    let id = container_id.trim_start_matches("containerd://");
    let out = ctr(containerd_namespace, &["tasks", "ls"])?;
    for line in out.lines().skip(1) {
        let mut f = line.split_whitespace();
        let (Some(task), Some(pid), Some(status)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if task == id && status == "RUNNING" {
            return Ok(pid.parse()?);
        }
    }
    bail!("no running task {id} in {containerd_namespace}: {out}")
}

/// A `PREFIX.N.0` /24 (PREFIX like `10.79`) that no address on this machine is in,
/// trying N from `seed` on, so that labs started side by side pick different ones.
pub fn free_subnet(prefix: &str, seed: u32) -> Result<String> {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .context("running ip addr show")?;
    let used = String::from_utf8_lossy(&out.stdout).into_owned();
    (0..250)
        .map(|i| (seed + i) % 250)
        .map(|n| format!("{prefix}.{n}."))
        .find(|net| !used.contains(net.as_str()))
        .map(|net| format!("{net}0"))
        .with_context(|| format!("every {prefix}.N.0/24 is in use on this machine"))
}
