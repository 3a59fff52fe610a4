//! A `skiff kubelet` as a real process against a [`ControlPlane`], on this machine's
//! containerd, runc and CNI plugins, with everything it makes kept apart from other
//! tests: its own containerd namespace, CNI network (name, bridge, subnet), root dir
//! and node name. Dropping it kills the kubelet and removes all of that, also when the
//! test failed.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::cluster::{dying_with_parent, skiff_binary, tail, Spawner};
use crate::control_plane::{free_port, ControlPlane};

/// The registry tests/images/build.sh serves the test images from.
pub const REGISTRY: &str = "127.0.0.1:5000";

/// A test image in the local registry, e.g. `image("busybox")`.
pub fn image(name: &str) -> String {
    format!("{REGISTRY}/skiff-test/{name}:1")
}

/// Where tests/images/build.sh writes the OCI archives.
pub fn archive_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("SKIFF_IMAGES_DIR").unwrap_or_else(|_| "/var/lib/skiff/test-images".into()),
    )
    .join("archives")
}

/// Builds and serves the test images (idempotent, fast when done).
pub fn ensure_images() -> Result<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("images/build.sh");
    let out = Command::new(&script)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}{}",
            script.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Runs `ctr` in a namespace and returns its stdout.
pub fn ctr(namespace: &str, args: &[&str]) -> Result<String> {
    ctr_at(None, namespace, args)
}

/// Runs `ctr` against the containerd at `address` (the machine's when `None`).
pub fn ctr_at(address: Option<&Path>, namespace: &str, args: &[&str]) -> Result<String> {
    let mut cmd = Command::new("ctr");
    if let Some(a) = address {
        cmd.arg("--address").arg(a);
    }
    let out = cmd
        .arg("-n")
        .arg(namespace)
        .args(args)
        .output()
        .context("running ctr (make deps installs containerd)")?;
    if !out.status.success() {
        bail!(
            "ctr -n {namespace} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What a kubelet's node holds in containerd and CNI.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Containers in the namespace.
    pub containers: Vec<String>,
    /// Tasks in the namespace.
    pub tasks: Vec<String>,
    /// Active (container) snapshots; committed image layers are not counted.
    pub active_snapshots: Vec<String>,
    /// IPs host-local has handed out on the network.
    pub ips: Vec<String>,
    /// Pod directories under the root dir.
    pub pod_dirs: Vec<String>,
    /// Pod log directories under the pod logs dir.
    pub pod_log_dirs: Vec<String>,
}

impl Leftovers {
    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        *self == Leftovers::default()
    }
}

/// A running `skiff kubelet`.
pub struct KubeletNode {
    /// The node name.
    pub name: String,
    /// The containerd namespace.
    pub namespace: String,
    /// The CNI network name.
    pub network: String,
    /// The bridge device of the network.
    pub bridge: String,
    /// The pod subnet.
    pub subnet: String,
    /// Port of /healthz and /metrics.
    pub healthz_port: u16,
    dir: tempfile::TempDir,
    log: PathBuf,
    child: Option<Child>,
    spawner: Spawner,
    extra_args: Vec<String>,
    containerd: Option<PathBuf>,
    kubeconfig: PathBuf,
}

impl KubeletNode {
    /// Starts a kubelet registered as a unique node name beginning with `prefix`.
    pub fn start(cp: &ControlPlane, prefix: &str, extra_args: &[&str]) -> Result<KubeletNode> {
        Self::start_on(cp, prefix, extra_args, None)
    }

    /// Starts a kubelet like [`KubeletNode::start`], on the containerd listening at
    /// `containerd` (a socket path) instead of the machine's.
    pub fn start_on(
        cp: &ControlPlane,
        prefix: &str,
        extra_args: &[&str],
        containerd: Option<&Path>,
    ) -> Result<KubeletNode> {
        let tag = format!("{:08x}", rand::random::<u32>());
        let dir = tempfile::Builder::new()
            .prefix("skiff-kubelet-")
            .tempdir()?;
        let r: u32 = rand::random();
        let subnet = format!("10.{}.{}.0/24", 100 + r % 100, (r >> 8) % 250);
        let node = KubeletNode {
            name: format!("{prefix}-{tag}"),
            namespace: format!("skiff-test-{tag}"),
            network: format!("skiff-test-{tag}"),
            bridge: format!("skb{tag}"),
            subnet,
            healthz_port: free_port()?,
            log: dir.path().join("kubelet.log"),
            dir,
            child: None,
            spawner: Spawner::new()?,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            containerd: containerd.map(Path::to_path_buf),
            kubeconfig: cp.kubeconfig().to_path_buf(),
        };
        let conf_dir = node.conf_dir();
        std::fs::create_dir_all(&conf_dir)?;
        let conflist = serde_json::json!({
            "cniVersion": "0.4.0",
            "name": node.network,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": node.bridge,
                    "isGateway": true,
                    "ipMasq": false,
                    "ipam": {"type": "host-local", "ranges": [[{"subnet": node.subnet}]]}
                },
                {"type": "loopback"}
            ]
        });
        std::fs::write(
            conf_dir.join("10-test.conflist"),
            serde_json::to_vec_pretty(&conflist)?,
        )?;
        cp.write_kubeconfig(0)?;
        let mut node = node;
        node.spawn()?;
        Ok(node)
    }

    /// The kubelet's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the kubelet (SIGKILL, as a crash); its pods keep running.
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts the kubelet again after [`KubeletNode::stop`], with the same settings.
    pub fn start_again(&mut self) -> Result<()> {
        self.kill();
        self.spawn()
    }

    /// Runs `ctr` in this node's containerd namespace.
    pub fn ctr(&self, args: &[&str]) -> Result<String> {
        ctr_at(self.containerd.as_deref(), &self.namespace, args)
    }

    fn conf_dir(&self) -> PathBuf {
        self.dir.path().join("cni")
    }

    /// The kubelet's --pod-logs-dir.
    pub fn pod_logs_dir(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    /// The kubelet's --root-dir.
    pub fn root_dir(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn spawn(&mut self) -> Result<()> {
        let kubeconfig = self.kubeconfig.clone();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = dying_with_parent(&skiff_binary()?);
        cmd.arg("kubelet")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--hostname-override")
            .arg(&self.name)
            .arg("--node-ip=127.0.0.1")
            .arg("--root-dir")
            .arg(self.root_dir())
            .arg("--containerd-namespace")
            .arg(&self.namespace)
            .arg("--cni-conf-dir")
            .arg(self.conf_dir())
            .arg("--cni-bin-dir=/usr/lib/cni,/opt/cni/bin")
            .arg("--pod-logs-dir")
            .arg(self.pod_logs_dir())
            .arg(format!("--healthz-port={}", self.healthz_port))
            .arg("--address=127.0.0.1")
            .arg("--port=0")
            .args(&self.extra_args)
            .args(
                self.containerd
                    .iter()
                    .map(|c| format!("--container-runtime-endpoint=unix://{}", c.display())),
            )
            .env(
                "SKIFF_LOG",
                std::env::var("SKIFF_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        self.child = Some(self.spawner.spawn(cmd)?);
        Ok(())
    }

    /// The last lines of the kubelet's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// What the node still holds for pods.
    pub fn leftovers(&self) -> Result<Leftovers> {
        let lines = |s: String| -> Vec<String> {
            s.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        };
        let containers = lines(self.ctr(&["containers", "ls", "-q"])?);
        let tasks: Vec<String> = self
            .ctr(&["tasks", "ls"])?
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect();
        let active_snapshots: Vec<String> = self
            .ctr(&["snapshots", "ls"])?
            .lines()
            .skip(1)
            .filter(|l| l.split_whitespace().nth(2) == Some("Active"))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect();
        let ips = list_dir(&Path::new("/var/lib/cni/networks").join(&self.network))
            .into_iter()
            .filter(|f| f != "lock" && !f.starts_with("last_reserved_ip"))
            .collect();
        let pod_dirs = list_dir(&self.root_dir().join("pods"));
        let pod_log_dirs = list_dir(&self.pod_logs_dir());
        Ok(Leftovers {
            containers,
            tasks,
            active_snapshots,
            ips,
            pod_dirs,
            pod_log_dirs,
        })
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn list_dir(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

impl Drop for KubeletNode {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- kubelet {} log tail ---\n{}",
                self.name,
                self.log_tail(80)
            );
        }
        self.kill();
        let ns = self.namespace.clone();
        let address = self.containerd.clone();
        let ctr = |ns: &str, args: &[&str]| ctr_at(address.as_deref(), ns, args);
        let quiet = |args: &[&str]| {
            let _ = ctr(&ns, args);
        };
        if let Ok(out) = ctr(&ns, &["tasks", "ls"]) {
            for id in out
                .lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().next())
            {
                quiet(&["tasks", "kill", "-s", "SIGKILL", id]);
                quiet(&["tasks", "delete", "-f", id]);
            }
        }
        if let Ok(out) = ctr(&ns, &["containers", "ls", "-q"]) {
            for id in out.lines().filter(|l| !l.is_empty()) {
                quiet(&["containers", "rm", id]);
            }
        }
        if let Ok(out) = ctr(&ns, &["images", "ls", "-q"]) {
            for name in out.lines().filter(|l| !l.is_empty()) {
                quiet(&["images", "rm", "--sync", name]);
            }
        }
        if let Ok(out) = ctr(&ns, &["leases", "ls", "-q"]) {
            for id in out.lines().filter(|l| !l.is_empty()) {
                quiet(&["leases", "rm", id]);
            }
        }
        // Children before parents: a few passes remove a whole chain.
        for _ in 0..8 {
            let Ok(out) = ctr(&ns, &["snapshots", "ls"]) else {
                break;
            };
            let keys: Vec<String> = out
                .lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                .collect();
            if keys.is_empty() {
                break;
            }
            for k in keys {
                quiet(&["snapshots", "rm", &k]);
            }
        }
        if let Ok(out) = ctr(&ns, &["content", "ls", "-q"]) {
            for d in out.lines().filter(|l| !l.is_empty()) {
                quiet(&["content", "rm", d]);
            }
        }
        let _ = ctr("default", &["namespaces", "rm", &ns]);
        for uid in list_dir(&self.root_dir().join("pods")) {
            for f in ["net", "ipc", "uts"] {
                let p = self.root_dir().join("pods").join(&uid).join("ns").join(f);
                let _ = Command::new("umount").arg("-l").arg(&p).output();
            }
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
        let _ = std::fs::remove_dir_all(Path::new("/var/lib/cni/networks").join(&self.network));
    }
}

/// A containerd of a test's own (its own root, state and socket, the CRI plugin off),
/// which the test may restart without disturbing others. Dropping it stops it, its
/// shims, and removes its directories.
pub struct PrivateContainerd {
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    spawner: Spawner,
}

impl PrivateContainerd {
    /// Starts one and waits until it answers.
    pub fn start() -> Result<PrivateContainerd> {
        Self::start_with_root_size(None)
    }

    /// Starts one whose root (content store, snapshots, metadata) is a tmpfs of
    /// `mib` MiB, a disk that fills up; without a size, on the machine's disk.
    pub fn start_with_root_size(mib: Option<u32>) -> Result<PrivateContainerd> {
        // Under /var/lib, on the file system the machine's containerd uses for overlayfs.
        let dir = PathBuf::from(format!(
            "/var/lib/skiff-test-containerd-{:08x}",
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir)?;
        if let Some(mib) = mib {
            let root = dir.join("root");
            std::fs::create_dir_all(&root)?;
            let out = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
                .arg(&root)
                .output()?;
            if !out.status.success() {
                let _ = std::fs::remove_dir_all(&dir);
                bail!(
                    "mounting a tmpfs on {}: {}",
                    root.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{d}/containerd.sock\"\n\
             [ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n\
             [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n",
            d = dir.display()
        );
        std::fs::write(dir.join("config.toml"), config)?;
        let mut c = PrivateContainerd {
            log: dir.join("containerd.log"),
            dir,
            child: None,
            spawner: Spawner::new()?,
        };
        c.spawn()?;
        Ok(c)
    }

    /// Its socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    fn spawn(&mut self) -> Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = dying_with_parent(Path::new("/usr/bin/containerd"));
        cmd.arg("--config")
            .arg(self.dir.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        self.child = Some(self.spawner.spawn(cmd)?);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let ok = Command::new("ctr")
                .arg("--address")
                .arg(self.socket())
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                bail!("containerd did not answer: {}", tail(&self.log, 20));
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// Stops containerd (SIGKILL, as a crash); its shims and their containers keep
    /// running. Dropping the guard starts it again to clean up.
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts containerd again after [`PrivateContainerd::stop`].
    pub fn start_again(&mut self) -> Result<()> {
        self.kill();
        self.spawn()
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The pids of the shims this containerd started (they name its socket).
    fn shims(&self) -> Vec<i32> {
        let sock = self.socket().display().to_string();
        list_dir(Path::new("/proc"))
            .into_iter()
            .filter_map(|p| p.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    let c = String::from_utf8_lossy(&c);
                    c.contains("containerd-shim") && c.contains(&sock)
                })
            })
            .collect()
    }
}

impl Drop for PrivateContainerd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- containerd log tail ---\n{}", tail(&self.log, 40));
        }
        // The containers go through containerd, so that none outlives its shim.
        if self.child.is_none() {
            let _ = self.spawn();
        }
        let sock = self.socket();
        let ctr = |ns: &str, args: &[&str]| ctr_at(Some(&sock), ns, args);
        let namespaces = ctr("default", &["namespaces", "ls", "-q"]).unwrap_or_default();
        for ns in namespaces.lines().filter(|l| !l.is_empty()) {
            if let Ok(out) = ctr(ns, &["tasks", "ls", "-q"]) {
                for id in out.lines().filter(|l| !l.is_empty()) {
                    let _ = ctr(ns, &["tasks", "kill", "-s", "SIGKILL", id]);
                    let _ = ctr(ns, &["tasks", "delete", "-f", id]);
                }
            }
            if let Ok(out) = ctr(ns, &["containers", "ls", "-q"]) {
                for id in out.lines().filter(|l| !l.is_empty()) {
                    let _ = ctr(ns, &["containers", "rm", id]);
                }
            }
        }
        self.kill();
        for pid in self.shims() {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).output();
        }
        if let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") {
            let mut mounts: Vec<&str> = info
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|m| m.starts_with(&self.dir.display().to_string()))
                .collect();
            mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
            for m in mounts {
                let _ = Command::new("umount").arg("-l").arg(m).output();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
