//! The Node object: registration, status (capacity, addresses, NodeReady) and the
//! heartbeat Lease in kube-node-lease.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    ContainerImage, DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints,
    NodeSpec, NodeStatus, NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use skiff_client::{Api, Patch, PatchParams, PostParams};

use crate::{Error, Result};

/// The kubelet's port for its API (logs, exec, port-forward), as Kubernetes'.
pub const KUBELET_PORT: i32 = 10250;
/// How long a node Lease is valid, as Kubernetes' default.
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// The version the kubelet reports; the Kubernetes API it follows.
pub const KUBELET_VERSION: &str = concat!("v1.33.0-skiff.", env!("CARGO_PKG_VERSION"));

/// Parses `--node-labels` (`k=v,k2=v2`).
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| Error::Config(format!("--node-labels: {item:?} is not key=value")))?;
        if k.is_empty() {
            return Err(Error::Config(format!(
                "--node-labels: {item:?} has an empty key"
            )));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// Parses `--register-with-taints` (`key=value:Effect,key:Effect`).
pub fn parse_taints(s: &str) -> Result<Vec<Taint>> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (kv, effect) = item.rsplit_once(':').ok_or_else(|| {
            Error::Config(format!(
                "--register-with-taints: {item:?} is not key[=value]:Effect"
            ))
        })?;
        if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            return Err(Error::Config(format!(
                "--register-with-taints: {item:?}: effect must be NoSchedule, PreferNoSchedule or NoExecute"
            )));
        }
        let (key, value) = match kv.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (kv, None),
        };
        if key.is_empty() {
            return Err(Error::Config(format!(
                "--register-with-taints: {item:?} has an empty key"
            )));
        }
        out.push(Taint {
            key: key.to_string(),
            value,
            effect: effect.to_string(),
            time_added: None,
        });
    }
    Ok(out)
}

/// What the machine offers, read once at start.
#[derive(Clone, Debug, PartialEq)]
pub struct Machine {
    /// Logical CPUs.
    pub cpus: usize,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Size of the filesystem holding --root-dir, in bytes.
    pub ephemeral_storage_bytes: u64,
    /// /etc/machine-id.
    pub machine_id: String,
    /// /proc/sys/kernel/random/boot_id.
    pub boot_id: String,
    /// /sys/class/dmi/id/product_uuid, when readable.
    pub system_uuid: String,
    /// `uname -r`.
    pub kernel_version: String,
    /// PRETTY_NAME of /etc/os-release.
    pub os_image: String,
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl Machine {
    /// Reads the machine's facts; `root_dir` must exist.
    pub fn read(root_dir: &Path) -> Result<Machine> {
        let meminfo = std::fs::read_to_string("/proc/meminfo")
            .map_err(|e| Error::io("reading", "/proc/meminfo", e))?;
        let memory_bytes = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .ok_or_else(|| Error::Config("no MemTotal in /proc/meminfo".into()))?;
        let stat = nix::sys::statvfs::statvfs(root_dir)
            .map_err(|e| Error::io("statfs", root_dir, std::io::Error::from(e)))?;
        let ephemeral_storage_bytes = stat.blocks() as u64 * stat.fragment_size() as u64;
        let os_image = std::fs::read_to_string("/etc/os-release")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| "Linux".into());
        Ok(Machine {
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            memory_bytes,
            ephemeral_storage_bytes,
            machine_id: read_trim("/etc/machine-id"),
            boot_id: read_trim("/proc/sys/kernel/random/boot_id"),
            system_uuid: read_trim("/sys/class/dmi/id/product_uuid"),
            kernel_version: read_trim("/proc/sys/kernel/osrelease"),
            os_image,
        })
    }

    /// capacity (and, with no reservations configured, allocatable).
    pub fn capacity(&self) -> BTreeMap<String, Quantity> {
        let mut m = BTreeMap::new();
        m.insert("cpu".into(), Quantity(self.cpus.to_string()));
        m.insert(
            "memory".into(),
            Quantity(format!("{}Ki", self.memory_bytes / 1024)),
        );
        m.insert("pods".into(), Quantity("110".into()));
        m.insert(
            "ephemeral-storage".into(),
            Quantity(format!("{}Ki", self.ephemeral_storage_bytes / 1024)),
        );
        m
    }
}

/// The node's identity and settings.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    /// Node name.
    pub name: String,
    /// --node-ip, else the first non-loopback address found.
    pub ip: Option<IpAddr>,
    /// The machine's hostname.
    pub hostname: String,
    /// --node-labels.
    pub labels: BTreeMap<String, String>,
    /// --register-with-taints.
    pub taints: Vec<Taint>,
    /// The port the kubelet's API (logs, exec) listens on, reported in daemonEndpoints.
    pub port: i32,
}

/// The Node object to register.
pub fn node_object(s: &NodeSettings) -> Node {
    let mut labels = s.labels.clone();
    labels.insert("kubernetes.io/hostname".into(), s.name.clone());
    labels.insert("kubernetes.io/os".into(), "linux".into());
    labels.insert("kubernetes.io/arch".into(), arch().into());
    labels.insert("beta.kubernetes.io/os".into(), "linux".into());
    labels.insert("beta.kubernetes.io/arch".into(), arch().into());
    Node {
        metadata: ObjectMeta {
            name: Some(s.name.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: (!s.taints.is_empty()).then(|| s.taints.clone()),
            ..Default::default()
        }),
        status: None,
    }
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The runtime's health as the node reports it.
#[derive(Clone, Debug, PartialEq)]
pub enum RuntimeHealth {
    /// containerd answered; its version.
    Up(String),
    /// containerd did not answer; why.
    Down(String),
}

/// The node status: everything but the condition times, which [`with_times`] sets.
pub fn node_status(s: &NodeSettings, m: &Machine, runtime: &RuntimeHealth) -> NodeStatus {
    let mut addresses = Vec::new();
    if let Some(ip) = s.ip {
        addresses.push(NodeAddress {
            type_: "InternalIP".into(),
            address: ip.to_string(),
        });
    }
    addresses.push(NodeAddress {
        type_: "Hostname".into(),
        address: s.hostname.clone(),
    });
    let (status, reason, message, version) = match runtime {
        RuntimeHealth::Up(v) => (
            "True",
            "KubeletReady",
            "kubelet is posting ready status".to_string(),
            v.clone(),
        ),
        RuntimeHealth::Down(why) => (
            "False",
            "KubeletNotReady",
            format!("container runtime is down: {why}"),
            String::new(),
        ),
    };
    NodeStatus {
        capacity: Some(m.capacity()),
        allocatable: Some(m.capacity()),
        addresses: Some(addresses),
        conditions: Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message),
            ..Default::default()
        }]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: s.port }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: arch().into(),
            boot_id: m.boot_id.clone(),
            container_runtime_version: if version.is_empty() {
                String::new()
            } else {
                format!("containerd://{version}")
            },
            kernel_version: m.kernel_version.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: m.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: m.os_image.clone(),
            system_uuid: m.system_uuid.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Most images a node reports in its status (Kubernetes' `nodeStatusMaxImages`).
pub const MAX_REPORTED_IMAGES: usize = 50;

/// One image in containerd for `status.images`: its name, `repository@digest` and size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalImageEntry {
    /// The image record's name (`registry/repo:tag`).
    pub name: String,
    /// The content digest its name points at.
    pub digest: String,
    /// Bytes in the content store.
    pub size: i64,
}

/// `status.images` as the kubelet reports it: one entry per content digest with every
/// name pointing at it plus `repository@digest`, largest first, at most
/// [`MAX_REPORTED_IMAGES`].
pub fn container_images(entries: &[LocalImageEntry]) -> Vec<ContainerImage> {
    let mut by_digest: BTreeMap<&str, (i64, BTreeSet<String>)> = BTreeMap::new();
    for e in entries {
        let names = &mut by_digest
            .entry(&e.digest)
            .or_insert((e.size, BTreeSet::new()))
            .1;
        names.insert(e.name.clone());
        let repository = e
            .name
            .rsplit_once(':')
            .filter(|(_, tag)| !tag.contains('/'))
            .map_or(e.name.as_str(), |(r, _)| r);
        names.insert(format!("{repository}@{}", e.digest));
    }
    let mut images: Vec<(i64, Vec<String>)> = by_digest
        .into_values()
        .map(|(size, names)| (size, names.into_iter().collect()))
        .collect();
    images.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    images
        .into_iter()
        .take(MAX_REPORTED_IMAGES)
        .map(|(size, names)| ContainerImage {
            names: Some(names),
            size_bytes: Some(size),
        })
        .collect()
}

/// Sets heartbeat and transition times on the Ready condition: the heartbeat is now,
/// the transition is kept from `previous` when the status did not change.
pub fn with_times(
    mut status: NodeStatus,
    previous: Option<&NodeStatus>,
    now: jiff::Timestamp,
) -> NodeStatus {
    let prev_ready = previous
        .and_then(|p| p.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    for c in status.conditions.iter_mut().flatten() {
        c.last_heartbeat_time = Some(Time(now));
        c.last_transition_time = match prev_ready {
            Some(p) if p.status == c.status => p.last_transition_time.clone().or(Some(Time(now))),
            _ => Some(Time(now)),
        };
    }
    status
}

/// Registers the node: creates it, or adds our labels and taints to an existing one
/// (a restarted kubelet).
pub async fn register(nodes: &Api<Node>, s: &NodeSettings) -> Result<()> {
    let node = node_object(s);
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {
            tracing::info!(node = %s.name, "registered node");
            Ok(())
        }
        Err(e) if e.is_already_exists() => {
            let patch = serde_json::json!({"metadata": {"labels": node.metadata.labels}});
            nodes
                .patch(&s.name, &PatchParams::default(), &Patch::Merge(patch))
                .await?;
            tracing::info!(node = %s.name, "node already registered");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Posts the node status (a merge patch of `status`).
pub async fn post_status(nodes: &Api<Node>, name: &str, status: &NodeStatus) -> Result<()> {
    let patch = serde_json::json!({ "status": status });
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(())
}

/// Creates or renews the node's Lease in kube-node-lease.
pub async fn renew_lease(
    leases: &Api<Lease>,
    name: &str,
    node_uid: Option<String>,
    now: jiff::Timestamp,
) -> Result<()> {
    let spec = LeaseSpec {
        holder_identity: Some(name.to_string()),
        lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
        renew_time: Some(MicroTime(now)),
        ..Default::default()
    };
    match leases.get_opt(name).await? {
        Some(mut lease) => {
            lease.spec = Some(spec);
            leases.replace(name, &PostParams::default(), &lease).await?;
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    namespace: Some("kube-node-lease".into()),
                    owner_references: node_uid.map(|uid| {
                        vec![OwnerReference {
                            api_version: "v1".into(),
                            kind: "Node".into(),
                            name: name.to_string(),
                            uid,
                            ..Default::default()
                        }]
                    }),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            leases.create(&PostParams::default(), &lease).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_reported_once_per_digest_with_every_name_largest_first() {
        let e = |name: &str, digest: &str, size| LocalImageEntry {
            name: name.into(),
            digest: digest.into(),
            size,
        };
        let images = container_images(&[
            e("127.0.0.1:5000/skiff-test/busybox:1", "sha256:b", 900),
            e("registry.local/greet:2", "sha256:g", 2_000),
            e("busybox:latest", "sha256:b", 900),
        ]);
        let names: Vec<Vec<String>> = images.iter().map(|i| i.names.clone().unwrap()).collect();
        assert_eq!(
            names,
            vec![
                vec!["registry.local/greet:2", "registry.local/greet@sha256:g"],
                vec![
                    "127.0.0.1:5000/skiff-test/busybox:1",
                    "127.0.0.1:5000/skiff-test/busybox@sha256:b",
                    "busybox:latest",
                    "busybox@sha256:b",
                ],
            ]
        );
        assert_eq!(images[0].size_bytes, Some(2_000));
        let many: Vec<LocalImageEntry> = (0..60)
            .map(|i| e(&format!("img{i}:1"), &format!("sha256:{i}"), i))
            .collect();
        let reported = container_images(&many);
        assert_eq!(reported.len(), MAX_REPORTED_IMAGES);
        assert_eq!(reported[0].size_bytes, Some(59));
    }

    #[test]
    fn labels_and_taints_parse() {
        let l = parse_labels("a=b, c=,x/y=z").unwrap();
        assert_eq!(l.get("a").map(String::as_str), Some("b"));
        assert_eq!(l.get("c").map(String::as_str), Some(""));
        assert_eq!(l.get("x/y").map(String::as_str), Some("z"));
        assert!(parse_labels("novalue").is_err());
        let t = parse_taints("dedicated=gpu:NoSchedule,maint:NoExecute").unwrap();
        assert_eq!(t[0].key, "dedicated");
        assert_eq!(t[0].value.as_deref(), Some("gpu"));
        assert_eq!(t[1].effect, "NoExecute");
        assert_eq!(t[1].value, None);
        assert!(parse_taints("k=v:Sometimes").is_err());
        assert!(parse_taints("k=v").is_err());
    }

    fn machine() -> Machine {
        Machine {
            cpus: 2,
            memory_bytes: 4 << 30,
            ephemeral_storage_bytes: 10 << 30,
            machine_id: "m".into(),
            boot_id: "b".into(),
            system_uuid: String::new(),
            kernel_version: "6.1".into(),
            os_image: "Debian".into(),
        }
    }

    #[test]
    fn status_reports_capacity_and_readiness() {
        let s = NodeSettings {
            name: "n1".into(),
            ip: Some("10.0.0.1".parse().unwrap()),
            hostname: "h".into(),
            labels: BTreeMap::new(),
            taints: vec![],
            port: KUBELET_PORT,
        };
        let st = node_status(&s, &machine(), &RuntimeHealth::Up("1.6".into()));
        let cap = st.capacity.as_ref().unwrap();
        assert_eq!(cap["pods"].0, "110");
        assert_eq!(cap["memory"].0, "4194304Ki");
        assert_eq!(st.conditions.as_ref().unwrap()[0].status, "True");
        assert_eq!(st.addresses.as_ref().unwrap()[0].address, "10.0.0.1");
        assert_eq!(
            st.daemon_endpoints
                .as_ref()
                .unwrap()
                .kubelet_endpoint
                .as_ref()
                .unwrap()
                .port,
            10250
        );
        let down = node_status(&s, &machine(), &RuntimeHealth::Down("refused".into()));
        assert_eq!(down.conditions.as_ref().unwrap()[0].status, "False");
    }

    #[test]
    fn transition_time_kept_while_status_unchanged() {
        let s = NodeSettings {
            name: "n".into(),
            ip: None,
            hostname: "h".into(),
            labels: BTreeMap::new(),
            taints: vec![],
            port: KUBELET_PORT,
        };
        let t0 = jiff::Timestamp::from_second(1000).unwrap();
        let t1 = jiff::Timestamp::from_second(2000).unwrap();
        let up = node_status(&s, &machine(), &RuntimeHealth::Up("1".into()));
        let first = with_times(up.clone(), None, t0);
        let second = with_times(up, Some(&first), t1);
        let c = &second.conditions.as_ref().unwrap()[0];
        assert_eq!(c.last_transition_time, Some(Time(t0)));
        assert_eq!(c.last_heartbeat_time, Some(Time(t1)));
        let down = node_status(&s, &machine(), &RuntimeHealth::Down("x".into()));
        let third = with_times(down, Some(&second), t1);
        assert_eq!(
            third.conditions.as_ref().unwrap()[0].last_transition_time,
            Some(Time(t1))
        );
    }
}
