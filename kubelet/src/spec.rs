//! The OCI runtime spec of a container, built from its pod, its container spec and
//! its image config: pure, so every Kubernetes rule here is unit-tested.

use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{json, Value};

use crate::image::ProcessConfig;
use crate::users::{self, ImageUsers, ProcessUser};
use crate::{Error, Result};

/// The process arguments as Kubernetes decides them: `command` replaces ENTRYPOINT
/// (and then CMD is ignored), `args` replaces CMD.
pub fn process_args(container: &Container, image: &ProcessConfig) -> Result<Vec<String>> {
    let command = container.command.clone().unwrap_or_default();
    let args = container.args.clone().unwrap_or_default();
    let entrypoint = image.entrypoint.clone().unwrap_or_default();
    let cmd = image.cmd.clone().unwrap_or_default();
    let argv: Vec<String> = match (command.is_empty(), args.is_empty()) {
        (false, _) => command.into_iter().chain(args).collect(),
        (true, false) => entrypoint.into_iter().chain(args).collect(),
        (true, true) => entrypoint.into_iter().chain(cmd).collect(),
    };
    if argv.is_empty() {
        return Err(Error::Spec(format!(
            "container {:?}: no command: the image has neither ENTRYPOINT nor CMD and the pod gives no command",
            container.name
        )));
    }
    Ok(argv)
}

/// The environment: the image's, then HOSTNAME, then what the pod gives the container
/// ([`crate::env::container_vars`]: service variables, envFrom, env), later wins.
pub fn environment(
    image: &ProcessConfig,
    hostname: &str,
    pod_vars: &[(String, String)],
) -> Vec<String> {
    let mut vars: Vec<(String, String)> = Vec::new();
    let set = |vars: &mut Vec<(String, String)>, k: String, v: String| {
        if let Some(slot) = vars.iter_mut().find(|(name, _)| *name == k) {
            slot.1 = v;
        } else {
            vars.push((k, v));
        }
    };
    for kv in image.env.clone().unwrap_or_default() {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        set(&mut vars, k.to_string(), v.to_string());
    }
    set(&mut vars, "HOSTNAME".into(), hostname.to_string());
    for (k, v) in pod_vars {
        set(&mut vars, k.clone(), v.clone());
    }
    vars.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Kubernetes' `$(VAR)` expansion: known variables are replaced, `$$` escapes `$`,
/// unknown references stay as written.
pub fn expand(value: &str, vars: &[(String, String)]) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match vars.iter().rev().find(|(k, _)| k == name) {
                        Some((_, v)) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Whether the container's or the pod's securityContext sets runAsUser, which replaces
/// the image's USER.
pub fn runs_as_user(pod: &Pod, container: &Container) -> bool {
    container
        .security_context
        .as_ref()
        .and_then(|s| s.run_as_user)
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.security_context.as_ref())
                .and_then(|s| s.run_as_user)
        })
        .is_some()
}

/// The identity to run as: securityContext first (container, then pod), else the
/// image's USER, resolved in the image's /etc/passwd and /etc/group (`files`, read
/// when USER names someone); the pod's supplementalGroups join the additional groups.
pub fn user(
    pod: &Pod,
    container: &Container,
    image: &ProcessConfig,
    files: Option<&ImageUsers>,
) -> Result<ProcessUser> {
    let csc = container.security_context.as_ref();
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let run_as_user = csc
        .and_then(|s| s.run_as_user)
        .or_else(|| psc.and_then(|s| s.run_as_user));
    let run_as_group = csc
        .and_then(|s| s.run_as_group)
        .or_else(|| psc.and_then(|s| s.run_as_group));
    // runAsUser replaces the image's USER entirely, so a user name there is no error.
    let image_user = match run_as_user {
        Some(_) => "",
        None => image.user.as_deref().unwrap_or(""),
    };
    let mut resolved = users::resolve(image_user, files).map_err(|e| {
        Error::Spec(format!(
            "container {:?}: the image's USER {image_user:?}: {e}",
            container.name
        ))
    })?;
    let to_u32 = |v: i64, what: &str| {
        u32::try_from(v).map_err(|_| {
            Error::Spec(format!(
                "container {:?}: {what} {v} is out of range",
                container.name
            ))
        })
    };
    if let Some(u) = run_as_user {
        resolved.uid = to_u32(u, "runAsUser")?;
    }
    if let Some(g) = run_as_group {
        resolved.gid = to_u32(g, "runAsGroup")?;
    }
    for g in psc
        .and_then(|s| s.supplemental_groups.as_ref())
        .into_iter()
        .flatten()
    {
        resolved
            .additional_gids
            .push(to_u32(*g, "supplementalGroups")?);
    }
    resolved.additional_gids.sort_unstable();
    resolved.additional_gids.dedup();
    Ok(resolved)
}

/// The CFS period the kubelet sets with a CPU limit (100 ms, Kubernetes' default).
pub const CPU_PERIOD: u64 = 100_000;

/// Kubernetes' cgroup cpu shares for a CPU request in millicores (minimum 2).
pub fn milli_cpu_to_shares(milli: i128) -> u64 {
    if milli <= 0 {
        return 2;
    }
    u64::try_from(milli * 1024 / 1000)
        .unwrap_or(u64::MAX)
        .max(2)
}

/// Kubernetes' CFS quota for a CPU limit in millicores (minimum 1 ms).
pub fn milli_cpu_to_quota(milli: i128) -> i64 {
    i64::try_from(milli * CPU_PERIOD as i128 / 1000)
        .unwrap_or(i64::MAX)
        .max(1000)
}

/// The OCI `linux.resources` cpu and memory of a container from its requests and
/// limits (a CPU request defaults to the limit, as the API server defaults it).
pub fn resources(container: &Container) -> Result<Value> {
    use skiff_api::validation::quantity;
    let r = container.resources.as_ref();
    let get = |which: &str, kind: &str| -> Option<String> {
        let map = match which {
            "limits" => r.and_then(|r| r.limits.as_ref()),
            _ => r.and_then(|r| r.requests.as_ref()),
        };
        map.and_then(|m| m.get(kind)).map(|q| q.0.clone())
    };
    let bad = |what: &str, v: &str, e: quantity::QuantityError| {
        Error::Spec(format!("container {:?}: {what} {v:?}: {e}", container.name))
    };
    let cpu_limit = get("limits", "cpu")
        .map(|v| quantity::parse_milli(&v).map_err(|e| bad("limits.cpu", &v, e)))
        .transpose()?;
    let cpu_request = get("requests", "cpu")
        .map(|v| quantity::parse_milli(&v).map_err(|e| bad("requests.cpu", &v, e)))
        .transpose()?
        .or(cpu_limit);
    let memory_limit = get("limits", "memory")
        .map(|v| quantity::parse_value(&v).map_err(|e| bad("limits.memory", &v, e)))
        .transpose()?;
    let mut out = json!({"devices": [{"allow": false, "access": "rwm"}]});
    let mut cpu = serde_json::Map::new();
    if let Some(m) = cpu_request {
        cpu.insert("shares".into(), json!(milli_cpu_to_shares(m)));
    }
    if let Some(m) = cpu_limit {
        cpu.insert("quota".into(), json!(milli_cpu_to_quota(m)));
        cpu.insert("period".into(), json!(CPU_PERIOD));
    }
    if !cpu.is_empty() {
        out["cpu"] = Value::Object(cpu);
    }
    if let Some(m) = memory_limit {
        let bytes = i64::try_from(m).unwrap_or(i64::MAX);
        if bytes < 4 << 20 {
            return Err(Error::Spec(format!(
                "container {:?}: limits.memory {m} bytes is below the 4Mi a container needs to start",
                container.name
            )));
        }
        out["memory"] = json!({"limit": bytes});
    }
    Ok(out)
}

/// Features of a pod spec this kubelet does not run yet: each becomes a clear
/// container error rather than being silently ignored.
pub fn unsupported(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let mut missing = Vec::new();
    if spec
        .init_containers
        .iter()
        .flatten()
        .any(|c| c.restart_policy.is_some())
    {
        missing.push("initContainers with restartPolicy (sidecars)".to_string());
    }
    missing.extend(crate::volume::unsupported(pod));
    if spec.host_network == Some(true) {
        missing.push("hostNetwork".to_string());
    }
    if spec.host_pid == Some(true) || spec.host_ipc == Some(true) {
        missing.push("hostPID/hostIPC".to_string());
    }
    if spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|c| !c.is_empty())
    {
        missing.push("ephemeralContainers".to_string());
    }
    for c in spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
    {
        let mut what = Vec::new();
        let mut invalid = Vec::new();
        if let Err(e) = crate::probe::Probes::of(c) {
            invalid.push(format!("probe: {e}"));
        }
        for (hook, h) in c
            .lifecycle
            .iter()
            .flat_map(|l| [("postStart", &l.post_start), ("preStop", &l.pre_stop)])
        {
            if let Some(Err(e)) = h.as_ref().map(|h| crate::probe::hook_action(h, c)) {
                invalid.push(format!("{hook}: {e}"));
            }
        }
        for kind in c
            .resources
            .iter()
            .flat_map(|r| r.limits.iter().chain(r.requests.iter()))
            .flat_map(|m| m.keys())
        {
            if !matches!(kind.as_str(), "cpu" | "memory" | "ephemeral-storage") {
                invalid.push(format!("resource {kind:?} is not supported"));
            }
        }
        if let Err(e) = resources(c) {
            invalid.push(e.to_string());
        }
        if c.security_context.as_ref().is_some_and(|s| {
            s.privileged == Some(true)
                || s.capabilities.is_some()
                || s.read_only_root_filesystem == Some(true)
        }) {
            what.push("privileged/capabilities/readOnlyRootFilesystem");
        }
        if !what.is_empty() {
            missing.push(format!("container {:?}: {}", c.name, what.join(", ")));
        }
        if !invalid.is_empty() {
            missing.push(format!("container {:?}: {}", c.name, invalid.join(", ")));
        }
    }
    if missing.is_empty() {
        None
    } else {
        Some(format!(
            "skiff's kubelet does not support these yet: {}",
            missing.join("; ")
        ))
    }
}

/// The namespaces a pod's containers share, pinned by bind mounts.
#[derive(Clone, Debug)]
pub struct PodNamespaces {
    /// Network namespace file.
    pub net: String,
    /// IPC namespace file.
    pub ipc: String,
    /// UTS namespace file.
    pub uts: String,
}

/// Everything [`oci_spec`] needs besides the container spec.
#[derive(Clone, Debug)]
pub struct SpecInput<'a> {
    /// The pod.
    pub pod: &'a Pod,
    /// The container of the pod.
    pub container: &'a Container,
    /// Its image config.
    pub image: &'a ProcessConfig,
    /// The pod's namespaces.
    pub namespaces: &'a PodNamespaces,
    /// The pod's /etc/hosts, /etc/resolv.conf and /etc/hostname on the node.
    pub etc_dir: &'a Path,
    /// cgroup path of the container.
    pub cgroups_path: String,
    /// The variables the pod gives the container ([`crate::env::container_vars`]).
    pub env: &'a [(String, String)],
    /// The container's volume mounts ([`crate::volume::oci_mount`]).
    pub mounts: &'a [Value],
    /// The image's users and groups, when its USER names one.
    pub image_users: Option<&'a ImageUsers>,
}

const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The OCI runtime spec (JSON) of a container, with containerd's defaults for what the
/// pod does not say.
pub fn oci_spec(input: &SpecInput<'_>) -> Result<Value> {
    let pod_name = input.pod.metadata.name.clone().unwrap_or_default();
    let hostname = input
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .unwrap_or_else(|| pod_name.clone());
    let args = process_args(input.container, input.image)?;
    let tty = input.container.tty == Some(true);
    let mut env = environment(input.image, &hostname, input.env);
    if tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        // What containerd sets for a terminal, so that programs know what they drive.
        env.push("TERM=xterm".to_string());
    }
    let identity = user(input.pod, input.container, input.image, input.image_users)?;
    let mut process_user = json!({"uid": identity.uid, "gid": identity.gid});
    if !identity.additional_gids.is_empty() {
        process_user["additionalGids"] = json!(identity.additional_gids);
    }
    let cwd = input
        .container
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| input.image.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".to_string());
    if !cwd.starts_with('/') {
        return Err(Error::Spec(format!(
            "container {:?}: workingDir {cwd:?} is not absolute",
            input.container.name
        )));
    }
    let caps = DEFAULT_CAPS;
    let etc = |f: &str| input.etc_dir.join(f).display().to_string();
    let mut spec = json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": tty,
            "user": process_user,
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps,
            },
            "noNewPrivileges": false,
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            {"destination": "/etc/hosts", "type": "bind", "source": etc("hosts"), "options": ["rbind", "rprivate", "rw"]},
            {"destination": "/etc/resolv.conf", "type": "bind", "source": etc("resolv.conf"), "options": ["rbind", "rprivate", "rw"]},
            {"destination": "/etc/hostname", "type": "bind", "source": etc("hostname"), "options": ["rbind", "rprivate", "rw"]},
        ],
        "linux": {
            "cgroupsPath": input.cgroups_path,
            "resources": resources(input.container)?,
            "namespaces": [
                {"type": "pid"},
                {"type": "mount"},
                {"type": "network", "path": input.namespaces.net},
                {"type": "ipc", "path": input.namespaces.ipc},
                {"type": "uts", "path": input.namespaces.uts},
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                "/proc/scsi",
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
            ],
        },
    });
    if let Some(mounts) = spec["mounts"].as_array_mut() {
        mounts.extend(input.mounts.iter().cloned());
    }
    Ok(spec)
}

/// /etc/hosts of a pod: localhost, the pod's own name on its IP, then hostAliases.
pub fn etc_hosts(pod: &Pod, pod_ip: Option<&str>) -> String {
    let mut s = String::from(
        "# Kubernetes-managed hosts file (skiff).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    let spec = pod.spec.as_ref();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let hostname = spec.and_then(|s| s.hostname.clone()).unwrap_or(name);
    if let Some(ip) = pod_ip {
        match spec.and_then(|s| s.subdomain.clone()) {
            Some(sub) if !sub.is_empty() => {
                let ns = pod.metadata.namespace.clone().unwrap_or_default();
                s.push_str(&format!(
                    "{ip}\t{hostname}.{sub}.{ns}.svc.cluster.local\t{hostname}\n"
                ));
            }
            _ => s.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    for alias in spec
        .and_then(|s| s.host_aliases.clone())
        .unwrap_or_default()
    {
        let names = alias.hostnames.unwrap_or_default();
        if !names.is_empty() {
            s.push_str(&format!(
                "\n# Entries added by HostAliases.\n{}\t{}\n",
                alias.ip,
                names.join("\t")
            ));
        }
    }
    s
}

/// /etc/resolv.conf of a pod for `dnsPolicy` (ClusterFirst by default).
pub fn resolv_conf(
    pod: &Pod,
    cluster_dns: &[std::net::IpAddr],
    cluster_domain: &str,
    host_resolv: &str,
) -> String {
    let spec = pod.spec.as_ref();
    let policy = spec
        .and_then(|s| s.dns_policy.clone())
        .unwrap_or_else(|| "ClusterFirst".into());
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let (mut servers, mut searches, mut options): (Vec<String>, Vec<String>, Vec<String>) =
        match policy.as_str() {
            "ClusterFirst" | "ClusterFirstWithHostNet" if !cluster_dns.is_empty() => (
                cluster_dns.iter().map(|i| i.to_string()).collect(),
                vec![
                    format!("{ns}.svc.{cluster_domain}"),
                    format!("svc.{cluster_domain}"),
                    cluster_domain.to_string(),
                ],
                vec!["ndots:5".to_string()],
            ),
            "None" => (Vec::new(), Vec::new(), Vec::new()),
            // Default, or ClusterFirst without --cluster-dns (Kubernetes falls back the same way).
            _ => {
                let mut servers = Vec::new();
                let mut searches = Vec::new();
                let mut options = Vec::new();
                for line in host_resolv.lines() {
                    let mut words = line.split_whitespace();
                    match words.next() {
                        Some("nameserver") => servers.extend(words.map(str::to_string)),
                        Some("search") => searches.extend(words.map(str::to_string)),
                        Some("options") => options.extend(words.map(str::to_string)),
                        _ => {}
                    }
                }
                (servers, searches, options)
            }
        };
    if let Some(cfg) = spec.and_then(|s| s.dns_config.as_ref()) {
        servers.extend(cfg.nameservers.clone().unwrap_or_default());
        searches.extend(cfg.searches.clone().unwrap_or_default());
        for o in cfg.options.clone().unwrap_or_default() {
            let Some(name) = o.name else { continue };
            options.retain(|x| x.split(':').next() != Some(name.as_str()));
            options.push(match o.value {
                Some(v) => format!("{name}:{v}"),
                None => name,
            });
        }
    }
    let mut s = String::new();
    for n in servers.iter().take(3) {
        s.push_str(&format!("nameserver {n}\n"));
    }
    if !searches.is_empty() {
        s.push_str(&format!("search {}\n", searches.join(" ")));
    }
    if !options.is_empty() {
        s.push_str(&format!("options {}\n", options.join(" ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EnvVar, HostAlias, PodSpec};

    fn c(command: Option<&[&str]>, args: Option<&[&str]>) -> Container {
        Container {
            name: "c".into(),
            command: command.map(|v| v.iter().map(|s| s.to_string()).collect()),
            args: args.map(|v| v.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    fn img(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> ProcessConfig {
        ProcessConfig {
            entrypoint: entrypoint.map(|v| v.iter().map(|s| s.to_string()).collect()),
            cmd: cmd.map(|v| v.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn command_and_args_follow_kubernetes() {
        let image = img(Some(&["/ep"]), Some(&["cmd1"]));
        assert_eq!(
            process_args(&c(None, None), &image).unwrap(),
            ["/ep", "cmd1"]
        );
        assert_eq!(
            process_args(&c(Some(&["/x"]), None), &image).unwrap(),
            ["/x"]
        );
        assert_eq!(
            process_args(&c(None, Some(&["a"])), &image).unwrap(),
            ["/ep", "a"]
        );
        assert_eq!(
            process_args(&c(Some(&["/x"]), Some(&["a"])), &image).unwrap(),
            ["/x", "a"]
        );
        let cmd_only = img(None, Some(&["sh"]));
        assert_eq!(process_args(&c(None, None), &cmd_only).unwrap(), ["sh"]);
        assert_eq!(
            process_args(&c(None, Some(&["ls"])), &cmd_only).unwrap(),
            ["ls"]
        );
        assert!(process_args(&c(None, None), &img(None, None)).is_err());
    }

    #[test]
    fn env_merges_and_expands() {
        let mut container = c(None, None);
        container.env = Some(vec![
            EnvVar {
                name: "A".into(),
                value: Some("x$(PATH)y".into()),
                ..Default::default()
            },
            EnvVar {
                name: "PATH".into(),
                value: Some("/p".into()),
                ..Default::default()
            },
            EnvVar {
                name: "B".into(),
                value: Some("$$(A) $(NOPE)".into()),
                ..Default::default()
            },
        ]);
        let image = ProcessConfig {
            env: Some(vec!["PATH=/bin".into(), "K=v".into()]),
            ..Default::default()
        };
        let pod_vars =
            crate::env::container_vars(&Pod::default(), &container, &Default::default()).unwrap();
        let env = environment(&image, "h", &pod_vars);
        // $(VAR) sees the pod's variables defined before, not the image's.
        assert_eq!(
            env,
            [
                "PATH=/p",
                "K=v",
                "HOSTNAME=h",
                "A=x$(PATH)y",
                "B=$(A) $(NOPE)"
            ]
        );
    }

    #[test]
    fn users() {
        let pod = Pod::default();
        let container = c(None, None);
        let image = |u: &str| ProcessConfig {
            user: Some(u.into()),
            ..Default::default()
        };
        let ids = |u: ProcessUser| (u.uid, u.gid);
        assert_eq!(
            ids(user(&pod, &container, &image(""), None).unwrap()),
            (0, 0)
        );
        assert_eq!(
            ids(user(&pod, &container, &image("1000"), None).unwrap()),
            (1000, 0)
        );
        assert_eq!(
            ids(user(&pod, &container, &image("1000:50"), None).unwrap()),
            (1000, 50)
        );
        let e = user(&pod, &container, &image("nginx"), None).unwrap_err();
        assert!(e.to_string().contains("unable to find user nginx"), "{e}");
        let files = ImageUsers::parse("nginx:x:101:101::/:/bin/sh\n", "web:x:33:nginx\n");
        let nginx = user(&pod, &container, &image("nginx"), Some(&files)).unwrap();
        assert_eq!(
            (nginx.uid, nginx.gid, nginx.additional_gids),
            (101, 101, vec![33])
        );
        let mut container = container;
        container.security_context = Some(k8s_openapi::api::core::v1::SecurityContext {
            run_as_user: Some(7),
            ..Default::default()
        });
        assert_eq!(
            ids(user(&pod, &container, &image("nginx"), None).unwrap()),
            (7, 0)
        );
        let grouped = Pod {
            spec: Some(PodSpec {
                security_context: Some(k8s_openapi::api::core::v1::PodSecurityContext {
                    supplemental_groups: Some(vec![2000, 33]),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let with_extra = user(&grouped, &c(None, None), &image("nginx"), Some(&files)).unwrap();
        assert_eq!(with_extra.additional_gids, vec![33, 2000]);
    }

    #[test]
    fn hosts_file_has_aliases() {
        let pod = Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("p".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                host_aliases: Some(vec![HostAlias {
                    ip: "10.1.2.3".into(),
                    hostnames: Some(vec!["foo".into(), "bar".into()]),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let hosts = etc_hosts(&pod, Some("10.0.0.5"));
        assert!(hosts.contains("10.0.0.5\tp\n"));
        assert!(hosts.contains("10.1.2.3\tfoo\tbar\n"));
    }

    #[test]
    fn resolv_conf_cluster_first() {
        let pod = Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                namespace: Some("ns1".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let dns = ["10.96.0.10".parse().unwrap()];
        let r = resolv_conf(&pod, &dns, "cluster.local", "nameserver 1.1.1.1\n");
        assert_eq!(
            r,
            "nameserver 10.96.0.10\nsearch ns1.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
        );
        let r = resolv_conf(&pod, &[], "cluster.local", "nameserver 1.1.1.1\nsearch x\n");
        assert_eq!(r, "nameserver 1.1.1.1\nsearch x\n");
    }

    #[test]
    fn resources_become_cgroup_limits() {
        use k8s_openapi::api::core::v1::ResourceRequirements;
        use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
        let mut container = c(None, None);
        assert_eq!(
            resources(&container).unwrap(),
            json!({"devices": [{"allow": false, "access": "rwm"}]})
        );
        let q = |pairs: &[(&str, &str)]| {
            Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect(),
            )
        };
        container.resources = Some(ResourceRequirements {
            limits: q(&[("cpu", "500m"), ("memory", "64Mi")]),
            ..Default::default()
        });
        let r = resources(&container).unwrap();
        // The request defaults to the limit: 500m → 512 shares, 50 ms per 100 ms.
        assert_eq!(
            r["cpu"],
            json!({"shares": 512, "quota": 50000, "period": 100000})
        );
        assert_eq!(r["memory"], json!({"limit": 64 << 20}));
        container.resources = Some(ResourceRequirements {
            requests: q(&[("cpu", "1m")]),
            ..Default::default()
        });
        assert_eq!(resources(&container).unwrap()["cpu"], json!({"shares": 2}));
        container.resources = Some(ResourceRequirements {
            limits: q(&[("memory", "lots")]),
            ..Default::default()
        });
        assert!(resources(&container).is_err());
        assert_eq!(milli_cpu_to_quota(1), 1000);
    }

    #[test]
    fn unsupported_features_are_named() {
        let mut pod = Pod {
            spec: Some(PodSpec {
                containers: vec![c(None, None)],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(unsupported(&pod), None);
        pod.spec.as_mut().unwrap().containers[0].liveness_probe = Some(Default::default());
        assert!(unsupported(&pod).unwrap().contains("probe"));
        pod.spec.as_mut().unwrap().containers[0].liveness_probe =
            Some(k8s_openapi::api::core::v1::Probe {
                exec: Some(k8s_openapi::api::core::v1::ExecAction {
                    command: Some(vec!["true".into()]),
                }),
                ..Default::default()
            });
        assert_eq!(unsupported(&pod), None);
    }
}
