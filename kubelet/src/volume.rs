//! Pod volumes on the node, laid out as the kubelet lays them out:
//! `<root-dir>/pods/<uid>/volumes/kubernetes.io~<plugin>/<name>`.
//!
//! - emptyDir: a directory, or a tmpfs with `medium: Memory`;
//! - hostPath: the node's path, after the check its `type` asks for;
//! - configMap, secret, downwardAPI and projected: files written by [`write_payload`]
//!   as Kubernetes' atomic writer does (a timestamped directory, the `..data` symlink
//!   swapped by rename, one symlink per top-level entry through `..data`), so that a
//!   container sees an update in place and never a half-written set.
//!
//! Other types (persistentVolumeClaim, nfs, …) are named by [`unsupported`], which
//! the pod worker turns into a CreateContainerConfigError. The pure parts (kinds,
//! payloads, mount plans) come first and are unit-tested.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, KeyToPath, Pod, Volume, VolumeMount,
};
use serde_json::{json, Value};

use crate::env::EnvSources;
use crate::{Error, Result};

/// The directory of a pod's volumes.
pub fn volumes_dir(pod_dir: &Path) -> PathBuf {
    pod_dir.join("volumes")
}

/// What the kubelet does for one volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A scratch directory; `memory` makes it a tmpfs (of `size_limit` when set).
    EmptyDir {
        /// `medium: Memory`.
        memory: bool,
        /// `sizeLimit` (tmpfs size).
        size_limit: Option<String>,
    },
    /// A path of the node.
    HostPath {
        /// The node's path.
        path: String,
        /// The check before use ("" for none).
        type_: String,
    },
    /// Files from the API (configMap, secret, downwardAPI, projected), read-only.
    Api {
        /// The plugin's directory name (`configmap`, `secret`, …).
        plugin: &'static str,
    },
}

impl Kind {
    /// The host path of the volume of `name` in a pod's directory.
    pub fn source(&self, pod_dir: &Path, name: &str) -> PathBuf {
        match self {
            Kind::EmptyDir { .. } => volumes_dir(pod_dir)
                .join("kubernetes.io~empty-dir")
                .join(name),
            Kind::HostPath { path, .. } => PathBuf::from(path),
            Kind::Api { plugin } => volumes_dir(pod_dir)
                .join(format!("kubernetes.io~{plugin}"))
                .join(name),
        }
    }
}

/// The kind of a volume, or why this kubelet cannot provide it.
pub fn kind_of(v: &Volume) -> std::result::Result<Kind, String> {
    if let Some(e) = &v.empty_dir {
        let medium = e.medium.clone().unwrap_or_default();
        return match medium.as_str() {
            "" | "Memory" => Ok(Kind::EmptyDir {
                memory: medium == "Memory",
                size_limit: e.size_limit.as_ref().map(|q| q.0.clone()),
            }),
            other => Err(format!(
                "volume {:?}: emptyDir medium {other:?} is not supported (only \"\" and \"Memory\")",
                v.name
            )),
        };
    }
    if let Some(h) = &v.host_path {
        return Ok(Kind::HostPath {
            path: h.path.clone(),
            type_: h.type_.clone().unwrap_or_default(),
        });
    }
    if v.config_map.is_some() {
        return Ok(Kind::Api {
            plugin: "configmap",
        });
    }
    if v.secret.is_some() {
        return Ok(Kind::Api { plugin: "secret" });
    }
    if v.downward_api.is_some() {
        return Ok(Kind::Api {
            plugin: "downward-api",
        });
    }
    if let Some(p) = &v.projected {
        for s in p.sources.iter().flatten() {
            if s.cluster_trust_bundle.is_some() {
                return Err(format!(
                    "volume {:?}: projected clusterTrustBundle is not supported",
                    v.name
                ));
            }
        }
        return Ok(Kind::Api {
            plugin: "projected",
        });
    }
    let value = serde_json::to_value(v).unwrap_or(Value::Null);
    let type_ = value
        .as_object()
        .and_then(|o| o.keys().find(|k| *k != "name").cloned())
        .unwrap_or_else(|| "(none)".into());
    Err(format!(
        "volume {:?}: {type_} volumes are not supported by skiff's kubelet yet",
        v.name
    ))
}

/// What the pod asks of volumes that this kubelet cannot give, one message each.
pub fn unsupported(pod: &Pod) -> Vec<String> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let volumes = spec.volumes.clone().unwrap_or_default();
    let mut out: Vec<String> = volumes.iter().filter_map(|v| kind_of(v).err()).collect();
    for c in spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
    {
        for m in c.volume_mounts.iter().flatten() {
            if !volumes.iter().any(|v| v.name == m.name) {
                out.push(format!(
                    "container {:?}: volumeMount {:?} names no volume of the pod",
                    c.name, m.name
                ));
            }
            let expr = m.sub_path_expr.as_deref().filter(|s| !s.is_empty());
            if expr.is_some() && m.sub_path.as_deref().is_some_and(|s| !s.is_empty()) {
                out.push(format!(
                    "container {:?}: volumeMount {:?}: subPathExpr and subPath are mutually exclusive",
                    c.name, m.name
                ));
            }
            if m.mount_propagation.as_deref().is_some_and(|p| p != "None") {
                out.push(format!(
                    "container {:?}: volumeMount {:?}: mountPropagation {:?} is not supported",
                    c.name,
                    m.name,
                    m.mount_propagation.as_deref().unwrap_or_default()
                ));
            }
            if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                if let Err(e) = check_relative(sub) {
                    out.push(format!(
                        "container {:?}: volumeMount {:?}: subPath {e}",
                        c.name, m.name
                    ));
                }
            }
        }
    }
    out
}

/// A relative path that stays inside its directory (no `..`, not absolute).
fn check_relative(p: &str) -> std::result::Result<(), String> {
    let path = Path::new(p);
    if path.is_absolute() {
        return Err(format!("{p:?} must be a relative path"));
    }
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!("{p:?} must not contain '..'"));
    }
    Ok(())
}

/// One bind mount of a container, as planned from its volumeMount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountPlan {
    /// The node's path (the subPath included).
    pub source: PathBuf,
    /// The path in the container.
    pub destination: String,
    /// Mounted read-only.
    pub read_only: bool,
    /// A subPath that must exist before the mount (created as a directory if absent).
    pub sub_path: bool,
}

/// A volumeMount's subPathExpr with the container's environment `vars` expanded, as
/// Kubernetes does: `$(VAR)` must name a variable with a non-empty value, `$$` is `$`.
pub fn expand_sub_path_expr(
    expr: &str,
    vars: &[(String, String)],
) -> std::result::Result<String, String> {
    let mut missing: Vec<&str> = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('$') {
            rest = a;
        } else if let Some((name, tail)) = after
            .strip_prefix('(')
            .and_then(|body| body.split_once(')'))
        {
            let set = vars
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .is_some_and(|(_, v)| !v.is_empty());
            if !set && !missing.contains(&name) {
                missing.push(name);
            }
            rest = tail;
        } else {
            rest = after;
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "subPathExpr {expr:?}: missing value for {}",
            missing.join(", ")
        ));
    }
    let expanded = crate::spec::expand(expr, vars);
    check_relative(&expanded).map_err(|e| format!("subPathExpr {expr:?} expands to {e}"))?;
    Ok(expanded)
}

/// The bind mounts of a container's volumeMounts; `vars` is the container's environment
/// (for subPathExpr).
pub fn mount_plans(
    pod: &Pod,
    container: &Container,
    pod_dir: &Path,
    vars: &[(String, String)],
) -> Result<Vec<MountPlan>> {
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    let mut out = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let v = volumes.iter().find(|v| v.name == m.name).ok_or_else(|| {
            Error::Spec(format!(
                "container {:?}: volumeMount {:?} names no volume of the pod",
                container.name, m.name
            ))
        })?;
        let kind = kind_of(v).map_err(Error::Spec)?;
        let mut m = m.clone();
        if let Some(expr) = m.sub_path_expr.take().filter(|s| !s.is_empty()) {
            if m.sub_path.as_deref().is_some_and(|s| !s.is_empty()) {
                return Err(Error::Spec(format!(
                    "container {:?}: volumeMount {:?}: subPathExpr and subPath are mutually exclusive",
                    container.name, m.name
                )));
            }
            let sub = expand_sub_path_expr(&expr, vars).map_err(|e| {
                Error::ContainerConfig(format!(
                    "container {:?}: volumeMount {:?}: {e}",
                    container.name, m.name
                ))
            })?;
            m.sub_path = Some(sub);
        }
        out.push(plan(&kind, &m, pod_dir)?);
    }
    Ok(out)
}

fn plan(kind: &Kind, m: &VolumeMount, pod_dir: &Path) -> Result<MountPlan> {
    let mut source = kind.source(pod_dir, &m.name);
    let sub = m.sub_path.clone().filter(|s| !s.is_empty());
    if let Some(sub) = &sub {
        check_relative(sub).map_err(|e| Error::Spec(format!("subPath {e}")))?;
        source = source.join(sub);
    }
    Ok(MountPlan {
        source,
        destination: m.mount_path.clone(),
        // API volumes are always read-only, as Kubernetes mounts them.
        read_only: m.read_only == Some(true) || matches!(kind, Kind::Api { .. }),
        sub_path: sub.is_some(),
    })
}

/// The OCI mount of a plan.
pub fn oci_mount(p: &MountPlan) -> Value {
    json!({
        "destination": p.destination,
        "type": "bind",
        "source": p.source.display().to_string(),
        "options": ["rbind", "rprivate", if p.read_only { "ro" } else { "rw" }],
    })
}

/// One file of an API volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    /// Its content.
    pub data: Vec<u8>,
    /// Its permission bits.
    pub mode: u32,
}

/// The files of an API volume, by relative path.
pub type Payload = BTreeMap<String, File>;

/// The API objects an API volume reads, fetched by the caller.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    /// ConfigMaps by name (data and binaryData together; absent: not found).
    pub config_maps: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// Secrets by name, decoded.
    pub secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// Service account tokens by what they were asked for.
    pub tokens: BTreeMap<TokenKey, String>,
}

/// Which service account token a projected source asks for: its audience ("" for the
/// apiserver's own) and lifetime in seconds.
pub type TokenKey = (String, i64);

/// The lifetime of a projected token that names none (Kubernetes' default).
pub const DEFAULT_TOKEN_SECONDS: i64 = 3600;

/// The service account tokens a pod's projected volumes need.
pub fn token_requests(pod: &Pod) -> BTreeSet<TokenKey> {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|v| v.projected.as_ref())
        .flat_map(|p| p.sources.iter().flatten())
        .filter_map(|s| s.service_account_token.as_ref())
        .map(|t| {
            (
                t.audience.clone().unwrap_or_default(),
                t.expiration_seconds.unwrap_or(DEFAULT_TOKEN_SECONDS),
            )
        })
        .collect()
}

/// A token the kubelet holds for a pod, with when it was issued and expires (Unix
/// seconds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldToken {
    /// The JWT.
    pub token: String,
    /// When it was fetched.
    pub issued: i64,
    /// `status.expirationTimestamp`.
    pub expires: i64,
}

impl HeldToken {
    /// Whether to fetch a new one, as the kubelet's token manager decides: past 80% of
    /// its lifetime, older than 24 hours, or expired.
    pub fn needs_refresh(&self, now: i64) -> bool {
        let lifetime = self.expires - self.issued;
        now >= self.expires
            || now - self.issued > 24 * 3600
            || now >= self.issued + lifetime * 8 / 10
    }
}

/// The ConfigMaps and Secrets a pod's volumes read.
pub fn references(pod: &Pod) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut cms = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    for v in pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
    {
        if let Some(c) = &v.config_map {
            cms.insert(c.name.clone());
        }
        if let Some(s) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            secrets.insert(s);
        }
        for s in v
            .projected
            .as_ref()
            .and_then(|p| p.sources.as_ref())
            .into_iter()
            .flatten()
        {
            if let Some(c) = &s.config_map {
                cms.insert(c.name.clone());
            }
            if let Some(c) = &s.secret {
                secrets.insert(c.name.clone());
            }
        }
    }
    (cms, secrets)
}

/// Kubernetes' default file mode of API volumes.
pub const DEFAULT_MODE: i32 = 0o644;

fn mode_of(mode: Option<i32>, default: i32) -> u32 {
    (mode.unwrap_or(default) & 0o777) as u32
}

/// The files of a ConfigMap's or Secret's keys: all keys, or only `items`.
fn key_files(
    what: &str,
    name: &str,
    data: Option<&BTreeMap<String, Vec<u8>>>,
    items: Option<&[KeyToPath]>,
    optional: bool,
    default_mode: i32,
) -> std::result::Result<Payload, String> {
    let mut out = Payload::new();
    let Some(data) = data else {
        if optional {
            return Ok(out);
        }
        return Err(format!("{what} {name:?} not found"));
    };
    match items {
        Some(items) if !items.is_empty() => {
            for i in items {
                check_relative(&i.path).map_err(|e| format!("item path {e}"))?;
                match data.get(&i.key) {
                    Some(d) => {
                        out.insert(
                            i.path.clone(),
                            File {
                                data: d.clone(),
                                mode: mode_of(i.mode, default_mode),
                            },
                        );
                    }
                    None if optional => {}
                    None => {
                        let kind = if what == "secret" { "secret" } else { "config" };
                        return Err(format!(
                            "{what} references non-existent {kind} key: {}",
                            i.key
                        ));
                    }
                }
            }
        }
        _ => {
            for (k, d) in data {
                out.insert(
                    k.clone(),
                    File {
                        data: d.clone(),
                        mode: mode_of(None, default_mode),
                    },
                );
            }
        }
    }
    Ok(out)
}

/// A label or annotation map as the downward API writes it: `key="value"` lines in
/// key order, values quoted as Go's %q, no newline after the last.
pub fn format_map(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn downward_files(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: i32,
    sources: &EnvSources,
) -> std::result::Result<Payload, String> {
    let mut out = Payload::new();
    for i in items {
        check_relative(&i.path).map_err(|e| format!("item path {e}"))?;
        let value = if let Some(f) = &i.field_ref {
            match f.field_path.as_str() {
                "metadata.labels" => format_map(&pod.metadata.labels.clone().unwrap_or_default()),
                "metadata.annotations" => {
                    format_map(&pod.metadata.annotations.clone().unwrap_or_default())
                }
                p => crate::env::field_ref(pod, p, sources).map_err(|e| e.to_string())?,
            }
        } else if let Some(r) = &i.resource_field_ref {
            let name = r.container_name.clone().unwrap_or_default();
            let c = pod
                .spec
                .as_ref()
                .and_then(|s| {
                    s.containers
                        .iter()
                        .chain(s.init_containers.iter().flatten())
                        .find(|c| c.name == name)
                })
                .ok_or_else(|| {
                    format!(
                        "downwardAPI item {:?}: resourceFieldRef names container {name:?}, which the pod does not have",
                        i.path
                    )
                })?;
            crate::env::resource_field(
                c,
                &r.resource,
                r.divisor.as_ref().map(|d| d.0.as_str()),
                sources,
            )
            .map_err(|e| e.to_string())?
        } else {
            return Err(format!(
                "downwardAPI item {:?} has neither fieldRef nor resourceFieldRef",
                i.path
            ));
        };
        out.insert(
            i.path.clone(),
            File {
                data: value.into_bytes(),
                mode: mode_of(i.mode, default_mode),
            },
        );
    }
    Ok(out)
}

/// The files of an API volume (configMap, secret, downwardAPI or projected).
pub fn payload(
    pod: &Pod,
    v: &Volume,
    objects: &Objects,
    sources: &EnvSources,
) -> std::result::Result<Payload, String> {
    if let Some(c) = &v.config_map {
        return key_files(
            "configmap",
            &c.name,
            objects.config_maps.get(&c.name),
            c.items.as_deref(),
            c.optional == Some(true),
            c.default_mode.unwrap_or(DEFAULT_MODE),
        );
    }
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        return key_files(
            "secret",
            &name,
            objects.secrets.get(&name),
            s.items.as_deref(),
            s.optional == Some(true),
            s.default_mode.unwrap_or(DEFAULT_MODE),
        );
    }
    if let Some(d) = &v.downward_api {
        return downward_files(
            pod,
            d.items.as_deref().unwrap_or_default(),
            d.default_mode.unwrap_or(DEFAULT_MODE),
            sources,
        );
    }
    if let Some(p) = &v.projected {
        let mode = p.default_mode.unwrap_or(DEFAULT_MODE);
        let mut out = Payload::new();
        for s in p.sources.iter().flatten() {
            let part = if let Some(c) = &s.config_map {
                key_files(
                    "configmap",
                    &c.name,
                    objects.config_maps.get(&c.name),
                    c.items.as_deref(),
                    c.optional == Some(true),
                    mode,
                )?
            } else if let Some(c) = &s.secret {
                key_files(
                    "secret",
                    &c.name,
                    objects.secrets.get(&c.name),
                    c.items.as_deref(),
                    c.optional == Some(true),
                    mode,
                )?
            } else if let Some(d) = &s.downward_api {
                downward_files(pod, d.items.as_deref().unwrap_or_default(), mode, sources)?
            } else if let Some(t) = &s.service_account_token {
                check_relative(&t.path).map_err(|e| format!("token path {e}"))?;
                let key = (
                    t.audience.clone().unwrap_or_default(),
                    t.expiration_seconds.unwrap_or(DEFAULT_TOKEN_SECONDS),
                );
                let token = objects.tokens.get(&key).ok_or_else(|| {
                    format!("no service account token for audience {:?} yet", key.0)
                })?;
                Payload::from([(
                    t.path.clone(),
                    File {
                        data: token.clone().into_bytes(),
                        mode: mode_of(None, mode),
                    },
                )])
            } else {
                return Err(format!(
                    "volume {:?}: a projected source this kubelet does not support",
                    v.name
                ));
            };
            out.extend(part);
        }
        return Ok(out);
    }
    Err(format!("volume {:?} is not an API volume", v.name))
}

const DATA_LINK: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// Writes `payload` into `dir` as Kubernetes' atomic writer does; returns whether
/// anything changed. Readers of `dir/<key>` see the old or the new set, never a mix.
pub fn write_payload(dir: &Path, payload: &Payload) -> Result<bool> {
    for p in payload.keys() {
        check_relative(p).map_err(Error::Spec)?;
        if p.starts_with("..") {
            return Err(Error::Spec(format!(
                "volume file {p:?} must not start with '..'"
            )));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
    let link = dir.join(DATA_LINK);
    let old = std::fs::read_link(&link).ok();
    if let Some(old) = &old {
        if same_payload(&dir.join(old), payload) {
            return Ok(false);
        }
    }
    let stamp = jiff::Timestamp::now().strftime("%Y_%m_%d_%H_%M_%S");
    let name = format!("..{stamp}.{:09}", rand::random::<u32>() % 1_000_000_000);
    let ts_dir = dir.join(&name);
    std::fs::create_dir(&ts_dir).map_err(|e| Error::io("creating", &ts_dir, e))?;
    std::fs::set_permissions(&ts_dir, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::io("setting the mode of", &ts_dir, e))?;
    for (p, f) in payload {
        let path = ts_dir.join(p);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
        }
        std::fs::write(&path, &f.data).map_err(|e| Error::io("writing", &path, e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode))
            .map_err(|e| Error::io("setting the mode of", &path, e))?;
    }
    let tmp = dir.join(DATA_TMP);
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&name, &tmp).map_err(|e| Error::io("linking", &tmp, e))?;
    std::fs::rename(&tmp, &link).map_err(|e| Error::io("renaming", &tmp, e))?;
    let tops: BTreeSet<String> = payload
        .keys()
        .filter_map(|p| p.split('/').next().map(str::to_string))
        .collect();
    for top in &tops {
        let user = dir.join(top);
        if std::fs::symlink_metadata(&user).is_err() {
            std::os::unix::fs::symlink(Path::new(DATA_LINK).join(top), &user)
                .map_err(|e| Error::io("linking", &user, e))?;
        }
    }
    // Entries of the old set that the new one lacks.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let Some(n) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if n.starts_with("..") || tops.contains(&n) {
                continue;
            }
            if e.file_type().is_ok_and(|t| t.is_symlink()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    if let Some(old) = old {
        if old != Path::new(&name) {
            let _ = std::fs::remove_dir_all(dir.join(old));
        }
    }
    Ok(true)
}

fn same_payload(dir: &Path, payload: &Payload) -> bool {
    let mut on_disk = BTreeSet::new();
    collect_files(dir, dir, &mut on_disk);
    if on_disk.len() != payload.len() {
        return false;
    }
    payload.iter().all(|(p, f)| {
        let path = dir.join(p);
        on_disk.contains(p)
            && std::fs::read(&path).is_ok_and(|d| d == f.data)
            && std::fs::metadata(&path).is_ok_and(|m| m.permissions().mode() & 0o777 == f.mode)
    })
}

fn collect_files(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            collect_files(root, &path, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.insert(rel.display().to_string());
        }
    }
}

/// Checks (and for the *OrCreate types makes) a hostPath as its `type` asks.
pub fn check_host_path(path: &str, type_: &str) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let p = Path::new(path);
    let failed = |what: &str| {
        Err(Error::ContainerConfig(format!(
            "hostPath type check failed: {path} is not {what}"
        )))
    };
    let meta = std::fs::metadata(p);
    match type_ {
        "" => Ok(()),
        "DirectoryOrCreate" => {
            if meta.is_err() {
                std::fs::create_dir_all(p).map_err(|e| Error::io("creating", p, e))?;
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| Error::io("setting the mode of", p, e))?;
                return Ok(());
            }
            match meta {
                Ok(m) if m.is_dir() => Ok(()),
                _ => failed("a directory"),
            }
        }
        "Directory" => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            _ => failed("a directory"),
        },
        "FileOrCreate" => {
            if meta.is_err() {
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
                }
                std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(p)
                    .map_err(|e| Error::io("creating", p, e))?;
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644))
                    .map_err(|e| Error::io("setting the mode of", p, e))?;
                return Ok(());
            }
            match meta {
                Ok(m) if m.is_file() => Ok(()),
                _ => failed("a file"),
            }
        }
        "File" => match meta {
            Ok(m) if m.is_file() => Ok(()),
            _ => failed("a file"),
        },
        "Socket" => match meta {
            Ok(m) if m.file_type().is_socket() => Ok(()),
            _ => failed("a socket file"),
        },
        "CharDevice" => match meta {
            Ok(m) if m.file_type().is_char_device() => Ok(()),
            _ => failed("a character device"),
        },
        "BlockDevice" => match meta {
            Ok(m) if m.file_type().is_block_device() => Ok(()),
            _ => failed("a block device"),
        },
        other => Err(Error::ContainerConfig(format!(
            "hostPath {path}: type {other:?} is not one of \"\", DirectoryOrCreate, Directory, FileOrCreate, File, Socket, CharDevice, BlockDevice"
        ))),
    }
}

/// Makes an emptyDir: a world-writable directory, with a tmpfs on it for
/// `medium: Memory` (mounted once).
pub fn setup_empty_dir(dir: &Path, memory: bool, size_limit: Option<&str>) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
    if memory && !mount_points_under(dir).iter().any(|m| m == dir) {
        let mut options = String::from("mode=0777");
        if let Some(limit) = size_limit {
            let bytes = skiff_api::validation::quantity::parse_value(limit).map_err(|e| {
                Error::ContainerConfig(format!("emptyDir sizeLimit {limit:?}: {e}"))
            })?;
            options.push_str(&format!(",size={bytes}"));
        }
        nix::mount::mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some(options.as_str()),
        )
        .map_err(|e| Error::io("mounting a tmpfs on", dir, e.into()))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
        .map_err(|e| Error::io("setting the mode of", dir, e))
}

/// Mount points at or below `dir` (from /proc/self/mountinfo), deepest first.
pub fn mount_points_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_mount(m)))
        .filter(|m| m.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    out
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let octal = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok());
            if let Some(n) = octal {
                out.push(n);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts everything mounted below a pod's volumes directory (tmpfs emptyDirs), so
/// that the directory can be removed.
pub fn unmount_all(pod_dir: &Path) -> Result<()> {
    for m in mount_points_under(&volumes_dir(pod_dir)) {
        nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH)
            .map_err(|e| Error::io("unmounting", &m, e.into()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(v: Value) -> Volume {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn kinds_and_unsupported_types_are_named() {
        assert_eq!(
            kind_of(&vol(
                json!({"name": "m", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}})
            )),
            Ok(Kind::EmptyDir {
                memory: true,
                size_limit: Some("1Mi".into())
            })
        );
        assert_eq!(
            kind_of(&vol(
                json!({"name": "h", "hostPath": {"path": "/x", "type": "Directory"}})
            )),
            Ok(Kind::HostPath {
                path: "/x".into(),
                type_: "Directory".into()
            })
        );
        let pvc = kind_of(&vol(
            json!({"name": "data", "persistentVolumeClaim": {"claimName": "c"}}),
        ))
        .unwrap_err();
        assert!(
            pvc.contains("persistentVolumeClaim volumes are not supported"),
            "{pvc}"
        );
        assert!(pvc.contains("\"data\""));
        assert_eq!(
            kind_of(&vol(json!({"name": "t", "projected": {"sources": [
                {"serviceAccountToken": {"path": "token"}}]}}))),
            Ok(Kind::Api {
                plugin: "projected"
            })
        );
        let bundle = kind_of(&vol(json!({"name": "b", "projected": {"sources": [
            {"clusterTrustBundle": {"path": "ca", "name": "x"}}]}})))
        .unwrap_err();
        assert!(bundle.contains("clusterTrustBundle"), "{bundle}");
        assert!(kind_of(&vol(
            json!({"name": "e", "emptyDir": {"medium": "HugePages"}})
        ))
        .is_err());
    }

    #[test]
    fn mounts_follow_volume_mounts() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {
                "volumes": [
                    {"name": "scratch", "emptyDir": {}},
                    {"name": "cfg", "configMap": {"name": "c"}},
                    {"name": "host", "hostPath": {"path": "/srv"}},
                ],
                "containers": [{"name": "c", "volumeMounts": [
                    {"name": "scratch", "mountPath": "/data", "subPath": "a/b"},
                    {"name": "cfg", "mountPath": "/etc/cfg"},
                    {"name": "host", "mountPath": "/srv", "readOnly": true},
                ]}],
            },
        }))
        .unwrap();
        let plans = mount_plans(
            &pod,
            &pod.spec.as_ref().unwrap().containers[0],
            Path::new("/p"),
            &[],
        )
        .unwrap();
        assert_eq!(
            plans[0].source,
            Path::new("/p/volumes/kubernetes.io~empty-dir/scratch/a/b")
        );
        assert!(plans[0].sub_path && !plans[0].read_only);
        assert_eq!(
            plans[1].source,
            Path::new("/p/volumes/kubernetes.io~configmap/cfg")
        );
        assert!(plans[1].read_only, "API volumes are read-only");
        assert_eq!(plans[2].source, Path::new("/srv"));
        assert!(plans[2].read_only);
        assert_eq!(
            oci_mount(&plans[2])["options"],
            json!(["rbind", "rprivate", "ro"])
        );

        let mut bad = pod.clone();
        bad.spec.as_mut().unwrap().containers[0]
            .volume_mounts
            .as_mut()
            .unwrap()[0]
            .sub_path = Some("../escape".into());
        assert!(unsupported(&bad).iter().any(|m| m.contains("'..'")));
        assert!(unsupported(&pod).is_empty());
    }

    #[test]
    fn sub_path_expr_expands_the_containers_env() {
        let vars = vec![
            ("POD_NAME".to_string(), "web-0".to_string()),
            ("EMPTY".to_string(), String::new()),
            ("UP".to_string(), "..".to_string()),
        ];
        assert_eq!(
            expand_sub_path_expr("logs/$(POD_NAME)", &vars).unwrap(),
            "logs/web-0"
        );
        assert_eq!(
            expand_sub_path_expr("a$$(POD_NAME)", &vars).unwrap(),
            "a$(POD_NAME)"
        );
        let e = expand_sub_path_expr("$(NOPE)/$(EMPTY)", &vars).unwrap_err();
        assert!(e.contains("missing value for NOPE, EMPTY"), "{e}");
        assert!(expand_sub_path_expr("$(UP)/x", &vars)
            .unwrap_err()
            .contains("'..'"));

        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {
                "volumes": [{"name": "scratch", "emptyDir": {}}],
                "containers": [{"name": "c", "volumeMounts": [
                    {"name": "scratch", "mountPath": "/data", "subPathExpr": "$(POD_NAME)"},
                ]}],
            },
        }))
        .unwrap();
        let c = &pod.spec.as_ref().unwrap().containers[0];
        let plans = mount_plans(&pod, c, Path::new("/p"), &vars).unwrap();
        assert_eq!(
            plans[0].source,
            Path::new("/p/volumes/kubernetes.io~empty-dir/scratch/web-0")
        );
        assert!(plans[0].sub_path);
        assert!(matches!(
            mount_plans(&pod, c, Path::new("/p"), &[]),
            Err(Error::ContainerConfig(_))
        ));
        assert!(unsupported(&pod).is_empty());
        let mut both = pod.clone();
        both.spec.as_mut().unwrap().containers[0]
            .volume_mounts
            .as_mut()
            .unwrap()[0]
            .sub_path = Some("x".into());
        assert!(unsupported(&both)
            .iter()
            .any(|m| m.contains("mutually exclusive")));
    }

    #[test]
    fn payloads_follow_items_modes_and_optional() {
        let mut objects = Objects::default();
        objects.config_maps.insert(
            "c".into(),
            BTreeMap::from([("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())]),
        );
        let pod = Pod::default();
        let sources = EnvSources::default();
        let all = payload(
            &pod,
            &vol(json!({"name": "v", "configMap": {"name": "c", "defaultMode": 0o600}})),
            &objects,
            &sources,
        )
        .unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            all["a"],
            File {
                data: b"1".to_vec(),
                mode: 0o600
            }
        );
        let items = payload(
            &pod,
            &vol(json!({"name": "v", "configMap": {"name": "c",
            "items": [{"key": "b", "path": "dir/bee", "mode": 0o400}]}})),
            &objects,
            &sources,
        )
        .unwrap();
        assert_eq!(items.keys().collect::<Vec<_>>(), ["dir/bee"]);
        assert_eq!(items["dir/bee"].mode, 0o400);
        let missing_key = payload(
            &pod,
            &vol(json!({"name": "v", "configMap": {"name": "c",
            "items": [{"key": "zz", "path": "z"}]}})),
            &objects,
            &sources,
        )
        .unwrap_err();
        assert_eq!(
            missing_key,
            "configmap references non-existent config key: zz"
        );
        let missing = payload(
            &pod,
            &vol(json!({"name": "v", "secret": {"secretName": "s"}})),
            &objects,
            &sources,
        )
        .unwrap_err();
        assert_eq!(missing, "secret \"s\" not found");
        assert!(payload(
            &pod,
            &vol(json!({"name": "v", "secret": {"secretName": "s", "optional": true}})),
            &objects,
            &sources
        )
        .unwrap()
        .is_empty());
    }

    #[test]
    fn downward_api_files_are_written_as_kubernetes_writes_them() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"b": "two \"quoted\"", "a": "1"}},
            "spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "64Mi"}}}]},
        }))
        .unwrap();
        let v = vol(json!({"name": "d", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
            {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}},
        ]}}));
        let p = payload(&pod, &v, &Objects::default(), &EnvSources::default()).unwrap();
        assert_eq!(
            p["labels"].data,
            b"a=\"1\"\nb=\"two \\\"quoted\\\"\"".to_vec()
        );
        assert_eq!(p["name"].data, b"p");
        assert_eq!(p["mem"].data, b"64");
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mount("/a\\040b"), "/a b");
        assert_eq!(unescape_mount("/plain"), "/plain");
    }

    #[test]
    fn projected_tokens_are_asked_for_written_and_refreshed_as_kubernetes_does() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i"}], "volumes": [
                {"name": "api", "projected": {"defaultMode": 0o600, "sources": [
                    {"serviceAccountToken": {"path": "token"}},
                    {"serviceAccountToken": {"path": "vault/token", "audience": "vault", "expirationSeconds": 600}},
                    {"configMap": {"name": "ca"}}]}}]}
        }))
        .unwrap();
        let wanted = token_requests(&pod);
        assert_eq!(
            wanted,
            BTreeSet::from([("".to_string(), 3600), ("vault".to_string(), 600)])
        );
        let v = &pod.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0];
        let mut objects = Objects::default();
        objects.config_maps.insert(
            "ca".into(),
            BTreeMap::from([("ca.crt".into(), b"pem".to_vec())]),
        );
        let sources = EnvSources::default();
        let missing = payload(&pod, v, &objects, &sources).unwrap_err();
        assert!(missing.contains("no service account token"), "{missing}");
        objects.tokens.insert(("".into(), 3600), "jwt-a".into());
        objects.tokens.insert(("vault".into(), 600), "jwt-b".into());
        let files = payload(&pod, v, &objects, &sources).unwrap();
        assert_eq!(files["token"].data, b"jwt-a");
        assert_eq!(files["vault/token"].data, b"jwt-b");
        assert_eq!(files["token"].mode, 0o600);
        assert_eq!(files["ca.crt"].data, b"pem");

        let held = HeldToken {
            token: "t".into(),
            issued: 1_000,
            expires: 1_000 + 3600,
        };
        assert!(!held.needs_refresh(1_000));
        assert!(!held.needs_refresh(1_000 + 2879));
        assert!(held.needs_refresh(1_000 + 2880), "80% of the lifetime");
        assert!(held.needs_refresh(1_000 + 3600));
        let long = HeldToken {
            token: "t".into(),
            issued: 0,
            expires: 365 * 86_400,
        };
        assert!(!long.needs_refresh(86_400));
        assert!(long.needs_refresh(86_401), "at most a day old");
    }
}
