//! A process cluster of store members on loopback, for integration tests and the bench.
//!
//! [`Cluster::start`] runs N members of one [`Flavor`]: `skiff store` or `/usr/bin/etcd`,
//! both with exactly etcd's flags, so a test can be pointed at either and the two compared.
//! Members are indexed from 0 and named `n1`, `n2`, …; all listen on 127.0.0.1. Each one
//! has a data dir and a log file (stdout and stderr) under one temporary cluster dir,
//! removed on drop unless `SKIFF_KEEP_CLUSTER=1` is set. When a test panics, drop prints
//! the tail of every member's log to stderr so that the failure explains itself.
//!
//! Processes are spawned by one harness thread through `setpriv --pdeathsig KILL`, so
//! that they die with the test process even when it is killed (nextest's timeout)
//! and `Drop` never runs.
//!
//! # Cutting links
//!
//! With [`ClusterSpec::cut_links`], peer traffic goes through TCP proxies owned by the
//! harness. A member has one advertised peer URL that every other member dials, and
//! both etcd and skiff insist that it equals the member's own `--initial-cluster` entry,
//! so the proxies sit per destination:
//!
//! ```text
//!   n1 ──dial──► proxy(n2) :P2 ──► n2 --listen-peer-urls :L2
//!   n3 ──dial──┘                    (n2 advertises http://127.0.0.1:P2)
//! ```
//!
//! A connection arriving at proxy(j) is attributed to its source member by looking
//! up the dialing socket in `/proc/net/tcp` and finding which member process owns
//! it (`/proc/PID/fd`). The harness then knows every connection's (from, to) pair
//! and keeps a set of blocked pairs: [`Cluster::cut`] blocks every pair that involves
//! a member, [`Cluster::partition`] blocks every pair across a split, and
//! [`Cluster::heal`] and [`Cluster::heal_all`] lift blocks. Blocking closes the
//! established connections of a pair at once. A new connection of a blocked pair is
//! accepted and then held silent, a blackhole, until the dialer gives up or the pair is
//! healed (then it is closed so that the dialer retries at once): refusing it outright
//! makes members redial in a tight loop that starves a small machine. A connection
//! whose source cannot be attributed is held while its destination has any block, so
//! a cut never leaks.
//!
//! Client traffic is not proxied: a cut member still answers clients (serializable
//! reads; linearizable reads and writes fail or time out without a quorum).
//!
//! Tests that return `Result` should unwrap the body's result while the cluster is
//! still alive (`let c = Cluster::start(..).await.unwrap(); body(&c).await.unwrap();`):
//! the log tails are printed only when the cluster is dropped during a panic.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use etcd_client::{Client, ConnectOptions, StatusResponse};
use nix::sys::signal::{kill as send_signal, Signal};
use nix::unistd::Pid;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::task::AbortHandle;

/// Path of the etcd binary that [`Flavor::Etcd`] runs (Debian's etcd-server package).
pub const ETCD_BIN: &str = "/usr/bin/etcd";

/// Which store implementation the members run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flavor {
    /// `<binary> store <flags>`.
    Skiff {
        /// Path of the `skiff` binary.
        binary: PathBuf,
    },
    /// `/usr/bin/etcd <flags>`, for comparisons.
    Etcd,
}

impl Flavor {
    /// The skiff flavour with the binary from [`skiff_binary`].
    pub fn skiff() -> Result<Flavor> {
        Ok(Flavor::Skiff {
            binary: skiff_binary()?,
        })
    }

    /// Short name for messages: `skiff` or `etcd`.
    pub fn name(&self) -> &'static str {
        match self {
            Flavor::Skiff { .. } => "skiff",
            Flavor::Etcd => "etcd",
        }
    }

    fn program(&self) -> (PathBuf, Vec<String>) {
        match self {
            Flavor::Skiff { binary } => (binary.clone(), vec!["store".to_string()]),
            Flavor::Etcd => (PathBuf::from(ETCD_BIN), Vec::new()),
        }
    }
}

/// Finds the `skiff` binary: `$SKIFF_BIN`, else `skiff` beside the running executable
/// or one level up (test binaries live in `<target>/release/deps`), else
/// `target/release/skiff` under the workspace root.
pub fn skiff_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("SKIFF_BIN") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("SKIFF_BIN={} is not a file", path.display());
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            candidates.push(dir.join("skiff"));
        }
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    candidates.push(workspace.join("target/release/skiff"));
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            anyhow!(
                "no skiff binary found (looked at {candidates:?}); run `make build` or set SKIFF_BIN"
            )
        })
}

/// What [`Cluster::start`] runs.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// skiff or etcd.
    pub flavor: Flavor,
    /// Number of members (1, 3, 5, …).
    pub members: usize,
    /// Fixed ports instead of free ones: member i uses `base + 3i` (client), `base + 3i + 1`
    /// (peer) and `base + 3i + 2` (its proxy when `cut_links` is set).
    pub base_port: Option<u16>,
    /// `--heartbeat-interval` in milliseconds.
    pub heartbeat_ms: u64,
    /// `--election-timeout` in milliseconds.
    pub election_ms: u64,
    /// `--snapshot-count`, or the store's default.
    pub snapshot_count: Option<u64>,
    /// `--quota-backend-bytes`, or the store's default.
    pub quota_backend_bytes: Option<u64>,
    /// Route peer traffic through harness proxies so links can be cut (see module doc).
    pub cut_links: bool,
    /// How long start waits for every member to answer and a leader to appear.
    pub start_timeout: Duration,
}

impl ClusterSpec {
    /// A spec with etcd's default timings (100 ms heartbeat, 1 s election) and no proxies.
    pub fn new(flavor: Flavor, members: usize) -> ClusterSpec {
        ClusterSpec {
            flavor,
            members,
            base_port: None,
            heartbeat_ms: 100,
            election_ms: 1000,
            snapshot_count: None,
            quota_backend_bytes: None,
            cut_links: false,
            start_timeout: Duration::from_secs(30),
        }
    }
}

struct Member {
    name: String,
    client_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    args: Vec<String>,
}

#[derive(Default)]
struct Proc {
    child: Option<Child>,
    stopped: bool,
}

/// A running cluster; dropping it kills every member and removes its files.
pub struct Cluster {
    spec: ClusterSpec,
    members: Vec<Member>,
    procs: Mutex<Vec<Proc>>,
    links: Arc<Mutex<Links>>,
    spawner: Option<Spawner>,
    proxy_rt: Option<Runtime>,
    dir: Option<tempfile::TempDir>,
}

impl Cluster {
    /// Starts the members, then waits until each answers Status and a leader exists.
    ///
    /// Free ports are found by binding port 0 and releasing it, so another process can
    /// take one before the member binds it; a start that fails with "address already in
    /// use" is retried with new ports.
    pub async fn start(spec: ClusterSpec) -> Result<Cluster> {
        if spec.members == 0 {
            bail!("a cluster needs at least one member");
        }
        let attempts = if spec.base_port.is_some() { 1 } else { 3 };
        let mut last_err = None;
        for _ in 0..attempts {
            let cluster = Cluster::launch(spec.clone())?;
            match cluster.wait_started().await {
                Ok(()) => return Ok(cluster),
                Err(e) => {
                    let port_race = (0..cluster.len())
                        .any(|i| cluster.log_tail(i).contains("address already in use"));
                    last_err = Some(e);
                    if !port_race {
                        break;
                    }
                }
            }
        }
        Err(last_err.expect("at least one attempt"))
    }

    fn launch(spec: ClusterSpec) -> Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}-cluster-", spec.flavor.name()))
            .tempdir()
            .context("creating the cluster dir")?;
        let n = spec.members;

        // Proxy listeners stay bound for the cluster's life, so only the members' own
        // ports can race with other processes.
        let mut proxy_listeners = Vec::new();
        let mut ports = Vec::new();
        match spec.base_port {
            Some(base) => {
                for i in 0..n {
                    let p = base
                        .checked_add(u16::try_from(3 * i + 2).context("too many members")?)
                        .context("base_port too high")?;
                    ports.push((p - 2, p - 1));
                    if spec.cut_links {
                        proxy_listeners.push(bind_loopback(p)?);
                    }
                }
            }
            None => {
                let held: Vec<StdTcpListener> = (0..2 * n)
                    .map(|_| bind_loopback(0))
                    .collect::<Result<_>>()?;
                for pair in held.chunks(2) {
                    ports.push((local_port(&pair[0])?, local_port(&pair[1])?));
                }
                if spec.cut_links {
                    for _ in 0..n {
                        proxy_listeners.push(bind_loopback(0)?);
                    }
                }
            }
        }

        let advertised: Vec<u16> = if spec.cut_links {
            proxy_listeners
                .iter()
                .map(local_port)
                .collect::<Result<_>>()?
        } else {
            ports.iter().map(|&(_, peer)| peer).collect()
        };
        let initial_cluster = (0..n)
            .map(|i| format!("n{}=http://127.0.0.1:{}", i + 1, advertised[i]))
            .collect::<Vec<_>>()
            .join(",");

        let mut members = Vec::new();
        for (i, &(client_port, peer_port)) in ports.iter().enumerate() {
            let name = format!("n{}", i + 1);
            // Not created here: etcd refuses an existing data dir that is not mode 0700.
            let data_dir = dir.path().join(&name);
            let log = dir.path().join(format!("{name}.log"));
            let client_url = format!("http://127.0.0.1:{client_port}");
            let mut args = vec![
                "--name".to_string(),
                name.clone(),
                "--data-dir".to_string(),
                data_dir.display().to_string(),
                "--listen-client-urls".to_string(),
                client_url.clone(),
                "--advertise-client-urls".to_string(),
                client_url,
                "--listen-peer-urls".to_string(),
                format!("http://127.0.0.1:{peer_port}"),
                "--initial-advertise-peer-urls".to_string(),
                format!("http://127.0.0.1:{}", advertised[i]),
                "--initial-cluster".to_string(),
                initial_cluster.clone(),
                "--initial-cluster-state".to_string(),
                "new".to_string(),
                "--heartbeat-interval".to_string(),
                spec.heartbeat_ms.to_string(),
                "--election-timeout".to_string(),
                spec.election_ms.to_string(),
            ];
            if let Some(count) = spec.snapshot_count {
                args.extend(["--snapshot-count".to_string(), count.to_string()]);
            }
            if let Some(bytes) = spec.quota_backend_bytes {
                args.extend(["--quota-backend-bytes".to_string(), bytes.to_string()]);
            }
            members.push(Member {
                name,
                client_port,
                data_dir,
                log,
                args,
            });
        }

        let spawner = Spawner::new()?;
        let links = Arc::new(Mutex::new(Links::new(n)));
        let proxy_rt = if spec.cut_links {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("cluster-proxy")
                .enable_all()
                .build()
                .context("starting the proxy runtime")?;
            for (to, listener) in proxy_listeners.into_iter().enumerate() {
                let upstream = SocketAddr::from(([127, 0, 0, 1], ports[to].1));
                let links = links.clone();
                rt.spawn(async move {
                    let listener = match listener
                        .set_nonblocking(true)
                        .and_then(|()| TcpListener::from_std(listener))
                    {
                        Ok(l) => l,
                        Err(e) => {
                            eprintln!("cluster proxy for n{}: {e}", to + 1);
                            return;
                        }
                    };
                    proxy_loop(listener, to, upstream, links).await;
                });
            }
            Some(rt)
        } else {
            None
        };

        let cluster = Cluster {
            procs: Mutex::new((0..n).map(|_| Proc::default()).collect()),
            spec,
            members,
            links,
            spawner: Some(spawner),
            proxy_rt,
            dir: Some(dir),
        };
        for i in 0..n {
            cluster.spawn(i)?;
        }
        Ok(cluster)
    }

    async fn wait_started(&self) -> Result<()> {
        let deadline = Instant::now() + self.spec.start_timeout;
        let waits = (0..self.len()).map(|i| self.wait_ready_until(i, deadline));
        for result in futures::future::join_all(waits).await {
            result?;
        }
        self.wait_for_leader(deadline.saturating_duration_since(Instant::now()))
            .await?;
        Ok(())
    }

    fn spawn(&self, i: usize) -> Result<()> {
        let member = &self.members[i];
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&member.log)
            .with_context(|| format!("opening {}", member.log.display()))?;
        let (program, mut args) = self.spec.flavor.program();
        if !program.is_file() {
            bail!("{} not found", program.display());
        }
        args.extend(member.args.iter().cloned());
        writeln!(
            log,
            "--- harness: starting {} {}",
            program.display(),
            args.join(" ")
        )?;
        let mut cmd = dying_with_parent(&program);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // etcd also reads its flags from ETCD_* variables; the spec alone must decide.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ETCD_") {
                cmd.env_remove(key);
            }
        }
        let child = self
            .spawner
            .as_ref()
            .expect("spawner lives as long as the cluster")
            .spawn(cmd)
            .with_context(|| format!("spawning {} for {}", program.display(), member.name))?;
        let pid = child.id();
        let mut procs = self.procs();
        procs[i] = Proc {
            child: Some(child),
            stopped: false,
        };
        lock(&self.links).pids[i] = Some(pid);
        Ok(())
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True for a cluster of no members (never: start refuses it).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The spec the cluster was started with.
    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    /// The cluster dir holding members' data dirs and logs.
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .expect("dir lives as long as the cluster")
            .path()
    }

    /// Member i's name (`n{i+1}`).
    pub fn name(&self, i: usize) -> &str {
        &self.members[i].name
    }

    /// Member i's data dir.
    pub fn data_dir(&self, i: usize) -> &Path {
        &self.members[i].data_dir
    }

    /// Member i's log file.
    pub fn log_path(&self, i: usize) -> &Path {
        &self.members[i].log
    }

    /// Client URLs of all members, `http://127.0.0.1:PORT`.
    pub fn client_endpoints(&self) -> Vec<String> {
        (0..self.len()).map(|i| self.endpoint(i)).collect()
    }

    /// Client URL of member i.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
    }

    /// Process id of member i, or None when it is not running.
    pub fn member_pid(&self, i: usize) -> Option<u32> {
        self.procs()[i].child.as_ref().map(Child::id)
    }

    /// A client over all members' endpoints.
    pub async fn client(&self) -> Result<Client> {
        connect(&self.client_endpoints(), None).await
    }

    /// A client of member i alone.
    pub async fn member_client(&self, i: usize) -> Result<Client> {
        connect(&[self.endpoint(i)], None).await
    }

    /// Member i's Maintenance.Status, with a 1 s timeout.
    pub async fn status(&self, i: usize) -> Result<StatusResponse> {
        let timeout = Duration::from_secs(1);
        let mut client = connect(&[self.endpoint(i)], Some(timeout)).await?;
        tokio::time::timeout(timeout, client.status())
            .await
            .map_err(|_| anyhow!("status of {} timed out", self.name(i)))?
            .with_context(|| format!("status of {}", self.name(i)))
    }

    /// Kills member i with SIGKILL and reaps it.
    pub fn kill(&self, i: usize) -> Result<()> {
        let mut procs = self.procs();
        let mut child = procs[i]
            .child
            .take()
            .ok_or_else(|| anyhow!("{} is not running", self.name(i)))?;
        procs[i].stopped = false;
        drop(procs);
        lock(&self.links).pids[i] = None;
        // A member that already died is reaped by wait all the same.
        let _ = child.kill();
        child
            .wait()
            .with_context(|| format!("reaping {}", self.name(i)))?;
        Ok(())
    }

    /// Starts member i again with its first flags and data dir, as one restarts an etcd
    /// member (`--initial-cluster-state new` over an existing data dir); kills it first
    /// if it runs. Returns without waiting: see [`Cluster::wait_ready`].
    pub fn restart(&self, i: usize) -> Result<()> {
        if self.member_pid(i).is_some() {
            self.kill(i)?;
        }
        self.spawn(i)
    }

    /// Freezes member i with SIGSTOP.
    pub fn stop(&self, i: usize) -> Result<()> {
        self.signal(i, Signal::SIGSTOP)?;
        self.procs()[i].stopped = true;
        Ok(())
    }

    /// Resumes member i with SIGCONT.
    pub fn cont(&self, i: usize) -> Result<()> {
        self.signal(i, Signal::SIGCONT)?;
        self.procs()[i].stopped = false;
        Ok(())
    }

    fn signal(&self, i: usize, signal: Signal) -> Result<()> {
        let pid = self
            .member_pid(i)
            .ok_or_else(|| anyhow!("{} is not running", self.name(i)))?;
        let pid = Pid::from_raw(i32::try_from(pid)?);
        send_signal(pid, signal).with_context(|| format!("{signal} to {}", self.name(i)))
    }

    /// Waits until member i answers Status; fails early, with its log, if it exits.
    pub async fn wait_ready(&self, i: usize, timeout: Duration) -> Result<()> {
        self.wait_ready_until(i, Instant::now() + timeout).await
    }

    async fn wait_ready_until(&self, i: usize, deadline: Instant) -> Result<()> {
        loop {
            if let Some(status) = self.exit_status(i)? {
                bail!(
                    "{} ({}) exited with {status} before answering; log tail:\n{}",
                    self.name(i),
                    self.spec.flavor.name(),
                    self.log_tail(i)
                );
            }
            let err = match self.status(i).await {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                bail!(
                    "{} ({}) did not answer Status in time (last error: {err:#}); log tail:\n{}",
                    self.name(i),
                    self.spec.flavor.name(),
                    self.log_tail(i)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn exit_status(&self, i: usize) -> Result<Option<ExitStatus>> {
        let mut procs = self.procs();
        match procs[i].child.as_mut() {
            Some(child) => Ok(child.try_wait()?),
            None => bail!("{} is not running", self.name(i)),
        }
    }

    /// The member that says it leads, or None. Asks every running, unfrozen member;
    /// of several self-declared leaders (an old one cut off) the highest term wins.
    pub async fn leader(&self) -> Option<usize> {
        let asked: Vec<usize> = {
            let procs = self.procs();
            (0..self.len())
                .filter(|&i| procs[i].child.is_some() && !procs[i].stopped)
                .collect()
        };
        let answers = futures::future::join_all(
            asked
                .iter()
                .map(|&i| async move { (i, self.status(i).await) }),
        )
        .await;
        answers
            .into_iter()
            .filter_map(|(i, status)| {
                let status = status.ok()?;
                let me = status.header()?.member_id();
                (status.leader() == me && me != 0).then_some((status.raft_term(), i))
            })
            .max()
            .map(|(_, i)| i)
    }

    /// Polls [`Cluster::leader`] until there is one.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.leader().await {
                return Ok(i);
            }
            if Instant::now() >= deadline {
                let tails: Vec<String> = (0..self.len())
                    .map(|i| format!("--- {}:\n{}", self.name(i), self.log_tail(i)))
                    .collect();
                bail!(
                    "no leader within {timeout:?}; log tails:\n{}",
                    tails.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Cuts member i off from every other member (needs `cut_links`).
    pub fn cut(&self, i: usize) -> Result<()> {
        self.block((0..self.len()).filter(|&j| j != i).map(|j| (i, j)))
    }

    /// Cuts every link between `group` and the other members (needs `cut_links`).
    pub fn partition(&self, group: &[usize]) -> Result<()> {
        let others: Vec<usize> = (0..self.len()).filter(|j| !group.contains(j)).collect();
        self.block(
            group
                .iter()
                .flat_map(|&a| others.iter().map(move |&b| (a, b))),
        )
    }

    /// Cuts the current leader off from the others and returns it (needs `cut_links`).
    pub async fn isolate_leader(&self) -> Result<usize> {
        let leader = self
            .leader()
            .await
            .ok_or_else(|| anyhow!("no leader to isolate"))?;
        self.cut(leader)?;
        Ok(leader)
    }

    /// Restores every link of member i.
    pub fn heal(&self, i: usize) -> Result<()> {
        self.relink(|blocked| blocked.retain(|&(a, b)| a != i && b != i))
    }

    /// Restores every link.
    pub fn heal_all(&self) -> Result<()> {
        self.relink(HashSet::clear)
    }

    fn block(&self, pairs: impl Iterator<Item = (usize, usize)>) -> Result<()> {
        self.relink(|blocked| {
            for (a, b) in pairs {
                blocked.insert((a, b));
                blocked.insert((b, a));
            }
        })
    }

    /// Changes the blocked pairs, then closes every connection on the wrong side of the
    /// change: forwarding ones that are now blocked, and held ones that are now allowed
    /// (so their dialers retry at once instead of waiting for their own timeouts).
    fn relink(&self, change: impl FnOnce(&mut HashSet<(usize, usize)>)) -> Result<()> {
        self.require_proxies()?;
        let mut links = lock(&self.links);
        change(&mut links.blocked);
        let stale: Vec<u64> = links
            .conns
            .iter()
            .filter(|(_, c)| c.held == links.allows(c.from, c.to))
            .map(|(&id, _)| id)
            .collect();
        for id in stale {
            if let Some(conn) = links.conns.remove(&id) {
                conn.task.abort();
            }
        }
        Ok(())
    }

    fn require_proxies(&self) -> Result<()> {
        if self.proxy_rt.is_none() {
            bail!("link cutting needs ClusterSpec::cut_links");
        }
        Ok(())
    }

    /// The last 40 lines of member i's log.
    pub fn log_tail(&self, i: usize) -> String {
        tail(&self.members[i].log, 40)
    }

    fn procs(&self) -> MutexGuard<'_, Vec<Proc>> {
        lock(&self.procs)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if thread::panicking() {
            for i in 0..self.len() {
                eprintln!(
                    "--- {} log ({}), tail:\n{}",
                    self.name(i),
                    self.log_path(i).display(),
                    self.log_tail(i)
                );
            }
        }
        for proc in lock(&self.procs).iter_mut() {
            if let Some(mut child) = proc.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if let Some(rt) = self.proxy_rt.take() {
            // Dropping a runtime inside an async test would panic; this does not block.
            rt.shutdown_background();
        }
        self.spawner.take();
        if let Some(dir) = self.dir.take() {
            if std::env::var_os("SKIFF_KEEP_CLUSTER").is_some_and(|v| v == "1") {
                eprintln!("keeping cluster dir {}", dir.keep().display());
            }
        }
    }
}

const SETPRIV: &str = "/usr/bin/setpriv";

/// A command that runs `program` and dies with the process that spawned it.
pub fn dying_with_parent(program: &Path) -> Command {
    if Path::new(SETPRIV).is_file() {
        let mut cmd = Command::new(SETPRIV);
        cmd.arg("--pdeathsig").arg("KILL").arg("--").arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// Spawns children from one long-lived thread: a child's parent-death signal fires
/// when the thread that forked it exits, and test runtimes' threads come and go.
pub struct Spawner {
    requests: Option<mpsc::Sender<(Command, mpsc::Sender<std::io::Result<Child>>)>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Spawner {
    /// Starts the spawner thread.
    pub fn new() -> Result<Spawner> {
        let (tx, rx) = mpsc::channel::<(Command, mpsc::Sender<std::io::Result<Child>>)>();
        let thread = thread::Builder::new()
            .name("cluster-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .context("starting the spawner thread")?;
        Ok(Spawner {
            requests: Some(tx),
            thread: Some(thread),
        })
    }

    /// Spawns `cmd` from the spawner thread.
    pub fn spawn(&self, cmd: Command) -> Result<Child> {
        let (tx, rx) = mpsc::channel();
        self.requests
            .as_ref()
            .expect("sender lives until drop")
            .send((cmd, tx))
            .map_err(|_| anyhow!("spawner thread is gone"))?;
        Ok(rx.recv().map_err(|_| anyhow!("spawner thread is gone"))??)
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The proxies' shared state: who may talk to whom, and the live connections.
struct Links {
    blocked: HashSet<(usize, usize)>,
    conns: HashMap<u64, Conn>,
    next_id: u64,
    pids: Vec<Option<u32>>,
}

struct Conn {
    from: Option<usize>,
    to: usize,
    /// Held silent across a cut rather than forwarded.
    held: bool,
    task: AbortHandle,
}

impl Links {
    fn new(members: usize) -> Links {
        Links {
            blocked: HashSet::new(),
            conns: HashMap::new(),
            next_id: 0,
            pids: vec![None; members],
        }
    }

    fn allows(&self, from: Option<usize>, to: usize) -> bool {
        match from {
            Some(from) => !self.blocked.contains(&(from, to)),
            None => !self.blocked.iter().any(|&(_, b)| b == to),
        }
    }
}

async fn proxy_loop(
    listener: TcpListener,
    to: usize,
    upstream: SocketAddr,
    links: Arc<Mutex<Links>>,
) {
    let Ok(own_port) = listener.local_addr().map(|a| a.port()) else {
        return;
    };
    loop {
        let Ok((inbound, peer)) = listener.accept().await else {
            // Out of descriptors or similar: back off rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tokio::spawn(proxy_conn(
            inbound,
            peer.port(),
            own_port,
            to,
            upstream,
            links.clone(),
        ));
    }
}

/// Attributes one accepted connection, then forwards it or holds it silent.
async fn proxy_conn(
    inbound: TcpStream,
    peer_port: u16,
    own_port: u16,
    to: usize,
    upstream: SocketAddr,
    links: Arc<Mutex<Links>>,
) {
    let pids = lock(&links).pids.clone();
    // Reading /proc/net/tcp takes milliseconds; off the runtime, forwarding of other
    // connections (raft heartbeats) never waits for it.
    let from = tokio::task::spawn_blocking(move || socket_owner(peer_port, own_port, &pids))
        .await
        .unwrap_or(None);
    // Registration and the allow check happen under one lock, so a cut or heal either
    // sees this connection or this connection sees the cut or heal.
    let (id, task) = {
        let mut guard = lock(&links);
        let id = guard.next_id;
        guard.next_id += 1;
        let held = !guard.allows(from, to);
        let task = tokio::spawn(async move {
            if held {
                hold(inbound).await;
            } else {
                forward(inbound, upstream).await;
            }
        });
        let conn = Conn {
            from,
            to,
            held,
            task: task.abort_handle(),
        };
        guard.conns.insert(id, conn);
        (id, task)
    };
    // Ends when either side closes or a cut or heal aborts the task.
    let _ = task.await;
    lock(&links).conns.remove(&id);
}

/// Moves bytes both ways until either side closes.
async fn forward(mut inbound: TcpStream, upstream: SocketAddr) {
    if let Ok(mut out) = TcpStream::connect(upstream).await {
        let _ = inbound.set_nodelay(true);
        let _ = out.set_nodelay(true);
        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
    }
}

/// A blackhole: reads and drops everything, answers nothing, until the dialer gives up.
/// Closing at once instead would make members redial in a tight loop.
async fn hold(mut inbound: TcpStream) {
    let mut sink = tokio::io::sink();
    let _ = tokio::io::copy(&mut inbound, &mut sink).await;
}

/// Which of `pids` owns the TCP socket bound to `local_port` and connected to
/// `remote_port` on this host, found through /proc.
fn socket_owner(local_port: u16, remote_port: u16, pids: &[Option<u32>]) -> Option<usize> {
    let inode = socket_inode(local_port, remote_port)?;
    let wanted = format!("socket:[{inode}]");
    pids.iter().enumerate().find_map(|(i, pid)| {
        let fds = fs::read_dir(format!("/proc/{}/fd", (*pid)?)).ok()?;
        fds.flatten()
            .any(|fd| {
                fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == wanted.as_str())
            })
            .then_some(i)
    })
}

fn socket_inode(local_port: u16, remote_port: u16) -> Option<u64> {
    // Lines read: "sl local_address rem_address st ... uid timeout inode"; the ports
    // are hexadecimal in host order after the colon.
    let port = |addr: &str| {
        addr.rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
    };
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .find_map(|table| {
            let text = fs::read_to_string(table).ok()?;
            text.lines().skip(1).find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if fields.len() < 10 {
                    return None;
                }
                if port(fields[1]) == Some(local_port) && port(fields[2]) == Some(remote_port) {
                    fields[9].parse().ok().filter(|&inode| inode != 0)
                } else {
                    None
                }
            })
        })
}

async fn connect(endpoints: &[String], timeout: Option<Duration>) -> Result<Client> {
    let mut options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(2));
    if let Some(timeout) = timeout {
        options = options.with_timeout(timeout);
    }
    Client::connect(endpoints, Some(options))
        .await
        .with_context(|| format!("connecting to {endpoints:?}"))
}

fn bind_loopback(port: u16) -> Result<StdTcpListener> {
    StdTcpListener::bind(("127.0.0.1", port)).with_context(|| format!("binding 127.0.0.1:{port}"))
}

fn local_port(listener: &StdTcpListener) -> Result<u16> {
    Ok(listener.local_addr()?.port())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not make the harness's own cleanup panic too.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The last `lines` lines of a log file.
pub fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    // Logs can grow large under load; the tail is within the last 64 KiB.
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_owner_finds_the_dialing_process() {
        let listener = StdTcpListener::bind("127.0.0.1:0").unwrap();
        let server_port = listener.local_addr().unwrap().port();
        let dialer = std::net::TcpStream::connect(("127.0.0.1", server_port)).unwrap();
        let (_accepted, peer) = listener.accept().unwrap();
        assert_eq!(peer.port(), dialer.local_addr().unwrap().port());
        let me = Some(std::process::id());
        assert_eq!(socket_owner(peer.port(), server_port, &[None, me]), Some(1));
        assert_eq!(socket_owner(peer.port(), server_port, &[None]), None);
    }

    #[test]
    fn unattributed_connections_are_refused_near_a_cut() {
        let mut links = Links::new(3);
        links.blocked.extend([(0, 1), (1, 0)]);
        assert!(!links.allows(Some(0), 1));
        assert!(links.allows(Some(2), 1));
        assert!(!links.allows(None, 1));
        assert!(links.allows(None, 2));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        fs::write(
            &path,
            (1..=100).map(|n| format!("{n}\n")).collect::<String>(),
        )
        .unwrap();
        assert_eq!(tail(&path, 2), "99\n100");
    }
}
