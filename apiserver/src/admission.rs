//! Admission: what happens to an object between decoding and storing beyond defaults and
//! validation: LimitRange defaults and limits, ResourceQuota, and the allocation of
//! Service clusterIPs and nodePorts. Allocations and quota usage are written in the same
//! store transaction as the object, so two apiservers can never hand out one IP twice
//! or both squeeze past a quota.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use rand::Rng;
use serde_json::{json, Value};
use skiff_api::validation::quantity;
use skiff_api::ResourceType;

use crate::error::{Error, Result};
use crate::objects::{meta_str, name};
use crate::storage::{encode, SideEffect, Stored};
use crate::Server;

/// Where allocated Service clusterIPs are recorded, one key per IP.
const SERVICE_IP_PREFIX: &str = "/registry/skiff/serviceips/";
/// Where allocated nodePorts are recorded, one key per port.
const NODE_PORT_PREFIX: &str = "/registry/skiff/nodeports/";
/// Kubernetes' default nodePort range.
pub const NODE_PORT_RANGE: std::ops::RangeInclusive<i64> = 30000..=32767;

/// An IPv4 range like `10.96.0.0/12`.
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Range {
    base: u32,
    prefix: u8,
}

impl Ipv4Range {
    /// Parses `a.b.c.d/n`.
    pub fn parse(s: &str) -> std::result::Result<Ipv4Range, String> {
        let (ip, len) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR like 10.96.0.0/12"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| {
            format!("{s:?}: {ip:?} is not an IPv4 address (skiff serves IPv4 only)")
        })?;
        let prefix: u8 = len
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| format!("{s:?}: the prefix length must be between 8 and 30"))?;
        let mask = u32::MAX << (32 - prefix);
        Ok(Ipv4Range {
            base: u32::from(ip) & mask,
            prefix,
        })
    }

    fn size(&self) -> u32 {
        1u32 << (32 - self.prefix)
    }

    /// The n-th address of the range.
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base + n)
    }

    /// Whether `ip` is a usable address of the range (not network or broadcast).
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let v = u32::from(ip);
        v > self.base && v < self.base + self.size() - 1
    }
}

impl std::fmt::Display for Ipv4Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

/// Admission of a new object.
pub async fn admit_create(
    server: &Server,
    rt: &ResourceType,
    namespace: Option<&str>,
    obj: &mut Value,
    effects: &mut Vec<SideEffect>,
) -> Result<()> {
    // Both reads wait for a ReadIndex round in the store; issued together they share one.
    let pod_ns = namespace.filter(|_| rt.kind == "Pod");
    let (ranges, quotas) = tokio::join!(
        async {
            match pod_ns {
                Some(ns) => list_in(server, "limitranges", ns).await,
                None => Ok(Vec::new()),
            }
        },
        async {
            match namespace {
                Some(ns) if rt.kind != "ResourceQuota" => quotas_in(server, ns).await,
                _ => Ok(Vec::new()),
            }
        }
    );
    let (ranges, quotas) = (ranges?, quotas?);
    if pod_ns.is_some() {
        if !ranges.is_empty() {
            skiff_api::defaults::apply_limit_range_defaults(obj, &ranges);
            let violations = skiff_api::defaults::limit_range_violations(obj, &ranges);
            if !violations.is_empty() {
                return Err(Error::forbidden(
                    rt,
                    name(obj),
                    format!("[{}]", violations.join(", ")),
                ));
            }
        }
        obj["status"]["qosClass"] = json!(qos_class(obj));
        default_toleration_seconds(obj, server.default_toleration_seconds);
    }
    if rt.kind == "Service" {
        allocate_service(server, rt, None, obj, effects).await?;
    }
    if let Some(ns) = namespace {
        charge_quota(server, rt, ns, quotas, obj, effects).await?;
    }
    Ok(())
}

/// How long a pod tolerates each of the taints the node lifecycle controller puts on a
/// node it has lost touch with, unless the pod says otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultTolerationSeconds {
    /// For `node.kubernetes.io/not-ready:NoExecute`.
    pub not_ready: i64,
    /// For `node.kubernetes.io/unreachable:NoExecute`.
    pub unreachable: i64,
}

impl Default for DefaultTolerationSeconds {
    fn default() -> Self {
        DefaultTolerationSeconds {
            not_ready: 300,
            unreachable: 300,
        }
    }
}

/// Kubernetes' DefaultTolerationSeconds admission: a pod that does not already tolerate
/// the not-ready and unreachable NoExecute taints tolerates them for a while (300 s by
/// default), so the node lifecycle controller evicts its pods that long after their node
/// is lost, not at once.
fn default_toleration_seconds(pod: &mut Value, seconds: DefaultTolerationSeconds) {
    let existing = pod["spec"]["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // A toleration covers the taint when its key matches (or it is an empty key with
    // Exists) and its effect is NoExecute or empty; Equal needs the taint's empty value.
    let tolerates = |key: &str| {
        existing.iter().any(|t| {
            let op = t["operator"].as_str().unwrap_or("Equal");
            let t_key = t["key"].as_str().unwrap_or("");
            let effect = t["effect"].as_str().unwrap_or("");
            let key_matches = t_key == key || (t_key.is_empty() && op == "Exists");
            key_matches
                && (effect == "NoExecute" || effect.is_empty())
                && (op == "Exists" || t["value"].as_str().unwrap_or("").is_empty())
        })
    };
    let lost = [
        ("node.kubernetes.io/not-ready", seconds.not_ready),
        ("node.kubernetes.io/unreachable", seconds.unreachable),
    ];
    let added: Vec<Value> = lost
        .iter()
        .filter(|(key, _)| !tolerates(key))
        .map(|(key, seconds)| {
            json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds})
        })
        .collect();
    if added.is_empty() || !pod["spec"].is_object() {
        return;
    }
    let mut all = existing;
    all.extend(added);
    pod["spec"]["tolerations"] = Value::Array(all);
}

/// Admission of an update.
pub async fn admit_update(
    server: &Server,
    rt: &ResourceType,
    old: &Value,
    new: &mut Value,
    effects: &mut Vec<SideEffect>,
) -> Result<()> {
    if rt.kind == "Service" {
        allocate_service(server, rt, Some(old), new, effects).await?;
    }
    Ok(())
}

/// Releases what an object held (a Service's IP and ports) when it is deleted.
pub fn release_on_delete(rt: &ResourceType, obj: &Value, effects: &mut Vec<SideEffect>) {
    if rt.kind == "Service" {
        for ip in cluster_ips(obj) {
            effects.push(SideEffect::Release {
                key: format!("{SERVICE_IP_PREFIX}{ip}"),
            });
        }
        for port in node_ports(obj) {
            effects.push(SideEffect::Release {
                key: format!("{NODE_PORT_PREFIX}{port}"),
            });
        }
    }
}

/// The error for a write whose allocation or quota condition failed: an address or port
/// already held is a 422 on the field, as Kubernetes reports it.
pub fn explain_conflict(rt: &ResourceType, name: &str, key: &str) -> Error {
    if let Some(ip) = key.strip_prefix(SERVICE_IP_PREFIX) {
        Error::invalid(
            rt,
            name,
            &[field_error(
                "spec.clusterIPs",
                ip,
                &format!("failed to allocate IP {ip}: provided IP is already allocated"),
            )],
        )
    } else if let Some(port) = key.strip_prefix(NODE_PORT_PREFIX) {
        Error::invalid(
            rt,
            name,
            &[field_error(
                "spec.ports[*].nodePort",
                port,
                "provided port is already allocated",
            )],
        )
    } else {
        Error::conflict_because(
            rt,
            name,
            "the namespace's resource quota changed at the same time; please try again",
        )
    }
}

/// The ResourceQuotas of a namespace, with the revisions their charges are conditional on.
async fn quotas_in(server: &Server, ns: &str) -> Result<Vec<Stored>> {
    let quota_rt = ResourceType::lookup("", "v1", "resourcequotas").expect("quotas are served");
    let page = server
        .storage
        .list(&quota_rt.prefix(Some(ns)), None, 0, 0)
        .await?;
    Ok(page.items)
}

async fn list_in(server: &Server, plural: &str, ns: &str) -> Result<Vec<Value>> {
    let rt = ResourceType::lookup("", "v1", plural)
        .ok_or_else(|| Error::internal(format!("{plural} are not served")))?;
    let page = server
        .storage
        .list(&rt.prefix(Some(ns)), None, 0, 0)
        .await?;
    Ok(page.items.into_iter().map(|s| s.object).collect())
}

fn cluster_ips(svc: &Value) -> Vec<String> {
    let mut ips: Vec<String> = svc["spec"]["clusterIPs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if let Some(ip) = svc["spec"]["clusterIP"].as_str() {
        if !ips.iter().any(|i| i == ip) {
            ips.push(ip.to_string());
        }
    }
    ips.retain(|ip| !ip.is_empty() && ip != "None");
    ips
}

fn node_ports(svc: &Value) -> BTreeSet<i64> {
    svc["spec"]["ports"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["nodePort"].as_i64()).collect())
        .unwrap_or_default()
}

fn wants_node_ports(svc: &Value) -> bool {
    matches!(
        svc["spec"]["type"].as_str(),
        Some("NodePort" | "LoadBalancer")
    )
}

fn field_error(field: &str, value: &str, detail: &str) -> skiff_api::validation::FieldError {
    skiff_api::validation::FieldError::invalid_str(field, value, detail)
}

/// Gives a Service its clusterIP and nodePorts (keeping those it already has on update)
/// and records the claims and releases as side effects of the write.
async fn allocate_service(
    server: &Server,
    rt: &ResourceType,
    old: Option<&Value>,
    svc: &mut Value,
    effects: &mut Vec<SideEffect>,
) -> Result<()> {
    let svc_name = name(svc).to_string();
    let owner = format!("{}/{}", meta_str(svc, "namespace").unwrap_or(""), svc_name);
    let external_name = svc["spec"]["type"].as_str() == Some("ExternalName");
    let old_ips = old.map(cluster_ips).unwrap_or_default();
    let old_ports = old.map(node_ports).unwrap_or_default();
    // An update that leaves the clusterIP out keeps the allocated one, as Kubernetes does.
    if let Some(old) = old {
        if svc["spec"]["clusterIP"].as_str().is_none_or(str::is_empty) && !external_name {
            if let Some(ip) = old["spec"]["clusterIP"].as_str() {
                svc["spec"]["clusterIP"] = json!(ip);
                svc["spec"]["clusterIPs"] = old["spec"]["clusterIPs"].clone();
            }
        }
        if let (Some(new_ports), Some(old_list)) = (
            svc["spec"]["ports"].as_array_mut(),
            old["spec"]["ports"].as_array(),
        ) {
            for p in new_ports.iter_mut().filter(|p| p["nodePort"].is_null()) {
                if let Some(o) = old_list
                    .iter()
                    .find(|o| o["port"] == p["port"] && o["protocol"] == p["protocol"])
                {
                    if !o["nodePort"].is_null() {
                        p["nodePort"] = o["nodePort"].clone();
                    }
                }
            }
        }
    }
    if external_name {
        if let Some(m) = svc["spec"].as_object_mut() {
            m.remove("clusterIP");
            m.remove("clusterIPs");
        }
    } else {
        let requested = svc["spec"]["clusterIP"].as_str().unwrap_or("").to_string();
        let ip = if requested == "None" {
            None
        } else if requested.is_empty() {
            Some(free_service_ip(server).await?)
        } else {
            let parsed: Ipv4Addr = requested.parse().map_err(|_| {
                Error::invalid(
                    rt,
                    &svc_name,
                    &[field_error(
                        "spec.clusterIP",
                        &requested,
                        "must be a valid IP address",
                    )],
                )
            })?;
            if !old_ips.contains(&requested) && !server.service_range.contains(parsed) {
                return Err(Error::invalid(
                    rt,
                    &svc_name,
                    &[field_error(
                        "spec.clusterIPs",
                        &requested,
                        &format!(
                            "failed to allocate IP {requested}: provided IP is not in the valid range. The range of valid IPs is {}",
                            server.service_range
                        ),
                    )],
                ));
            }
            Some(requested)
        };
        match ip {
            Some(ip) => {
                svc["spec"]["clusterIP"] = json!(ip);
                svc["spec"]["clusterIPs"] = json!([ip]);
            }
            None => {
                svc["spec"]["clusterIPs"] = json!(["None"]);
            }
        }
    }
    if wants_node_ports(svc) {
        let mut taken_here = BTreeSet::new();
        if let Some(ports) = svc["spec"]["ports"].as_array_mut() {
            for (i, p) in ports.iter_mut().enumerate() {
                match p["nodePort"].as_i64() {
                    Some(np) if !NODE_PORT_RANGE.contains(&np) => {
                        return Err(Error::invalid(
                            rt,
                            &svc_name,
                            &[field_error(
                                &format!("spec.ports[{i}].nodePort"),
                                &np.to_string(),
                                "provided port is not in the valid range. The range of valid ports is 30000-32767",
                            )],
                        ))
                    }
                    Some(np) => {
                        taken_here.insert(np);
                    }
                    None => {
                        let np = free_node_port(server, &taken_here).await?;
                        taken_here.insert(np);
                        p["nodePort"] = json!(np);
                    }
                }
            }
        }
    } else if let Some(ports) = svc["spec"]["ports"].as_array_mut() {
        for p in ports.iter_mut() {
            if let Some(m) = p.as_object_mut() {
                m.remove("nodePort");
            }
        }
    }
    let new_ips = cluster_ips(svc);
    let new_ports = node_ports(svc);
    for ip in new_ips.iter().filter(|ip| !old_ips.contains(ip)) {
        effects.push(SideEffect::Claim {
            key: format!("{SERVICE_IP_PREFIX}{ip}"),
            value: owner.clone(),
        });
    }
    for ip in old_ips.iter().filter(|ip| !new_ips.contains(ip)) {
        effects.push(SideEffect::Release {
            key: format!("{SERVICE_IP_PREFIX}{ip}"),
        });
    }
    for port in new_ports.difference(&old_ports) {
        effects.push(SideEffect::Claim {
            key: format!("{NODE_PORT_PREFIX}{port}"),
            value: owner.clone(),
        });
    }
    for port in old_ports.difference(&new_ports) {
        effects.push(SideEffect::Release {
            key: format!("{NODE_PORT_PREFIX}{port}"),
        });
    }
    Ok(())
}

async fn free_service_ip(server: &Server) -> Result<String> {
    let range = server.service_range;
    let size = range.size();
    // Random probing finds a free address in a few tries until the range is nearly full;
    // the claim in the write's transaction is what guarantees uniqueness.
    for _ in 0..64 {
        // Offset 1 is the `kubernetes` Service's, as in Kubernetes.
        let n = rand::thread_rng().gen_range(2..size - 1);
        let ip = range.nth(n).to_string();
        if server
            .storage
            .get(&format!("{SERVICE_IP_PREFIX}{ip}"))
            .await?
            .is_none()
        {
            return Ok(ip);
        }
    }
    Err(Error::internal(format!(
        "failed to allocate a service IP: the range {range} is full; delete unused Services or choose a larger --service-cluster-ip-range"
    )))
}

async fn free_node_port(server: &Server, also_taken: &BTreeSet<i64>) -> Result<i64> {
    for _ in 0..64 {
        let port = rand::thread_rng().gen_range(NODE_PORT_RANGE);
        if also_taken.contains(&port) {
            continue;
        }
        if server
            .storage
            .get(&format!("{NODE_PORT_PREFIX}{port}"))
            .await?
            .is_none()
        {
            return Ok(port);
        }
    }
    Err(Error::internal(
        "failed to allocate a nodePort: the range 30000-32767 is full; delete unused NodePort Services",
    ))
}

/// The pod's QoS class, as Kubernetes computes it from requests and limits.
pub fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|f| pod["spec"][f].as_array())
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let req = &c["resources"]["requests"];
        let lim = &c["resources"]["limits"];
        if req.as_object().is_some_and(|m| !m.is_empty())
            || lim.as_object().is_some_and(|m| !m.is_empty())
        {
            any = true;
        }
        for r in ["cpu", "memory"] {
            let l = lim[r].as_str();
            // A request left out defaults to the limit.
            let q = req[r].as_str().or(l);
            if l.is_none()
                || quantity::parse_milli(l.unwrap_or("")).ok()
                    != quantity::parse_milli(q.unwrap_or("")).ok()
            {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Quota resource names an object of `rt` counts against (object counts).
fn count_names(rt: &ResourceType) -> Vec<String> {
    let mut names = vec![if rt.group.is_empty() {
        format!("count/{}", rt.plural)
    } else {
        format!("count/{}.{}", rt.plural, rt.group)
    }];
    if matches!(
        rt.plural,
        "pods"
            | "services"
            | "configmaps"
            | "secrets"
            | "persistentvolumeclaims"
            | "resourcequotas"
    ) {
        names.push(rt.plural.to_string());
    }
    names
}

/// What one object uses of each quota resource, in milli-units.
fn usage_of(rt: &ResourceType, obj: &Value) -> BTreeMap<String, i128> {
    let mut u = BTreeMap::new();
    for n in count_names(rt) {
        u.insert(n, 1000);
    }
    if rt.kind == "Pod" {
        for (which, key) in [("requests", "requests"), ("limits", "limits")] {
            for r in ["cpu", "memory", "ephemeral-storage"] {
                let total = pod_resource(obj, which, r);
                if let Some(t) = total {
                    *u.entry(format!("{key}.{r}")).or_insert(0) += t;
                    if which == "requests" {
                        *u.entry(r.to_string()).or_insert(0) += t;
                    }
                }
            }
        }
    }
    if rt.kind == "PersistentVolumeClaim" {
        if let Some(s) = obj["spec"]["resources"]["requests"]["storage"]
            .as_str()
            .and_then(|q| quantity::parse_milli(q).ok())
        {
            u.insert("requests.storage".into(), s);
        }
    }
    if rt.kind == "Service" && wants_node_ports(obj) {
        u.insert(
            "services.nodeports".into(),
            1000 * node_ports(obj).len().max(1) as i128,
        );
    }
    u
}

/// A pod's effective request or limit of one resource: the larger of the sum over app
/// containers and the largest init container, as the scheduler and quota count it.
fn pod_resource(pod: &Value, which: &str, resource: &str) -> Option<i128> {
    let get = |c: &Value| {
        c["resources"][which][resource]
            .as_str()
            .and_then(|q| quantity::parse_milli(q).ok())
    };
    let app: Vec<Option<i128>> = pod["spec"]["containers"]
        .as_array()
        .map(|a| a.iter().map(get).collect())
        .unwrap_or_default();
    let init: Vec<Option<i128>> = pod["spec"]["initContainers"]
        .as_array()
        .map(|a| a.iter().map(get).collect())
        .unwrap_or_default();
    if app.iter().chain(&init).all(Option::is_none) {
        return None;
    }
    let sum: i128 = app.iter().flatten().sum();
    let max_init = init.iter().flatten().copied().max().unwrap_or(0);
    Some(sum.max(max_init))
}

fn containers_missing(pod: &Value, which: &str, resource: &str) -> Vec<String> {
    ["initContainers", "containers"]
        .iter()
        .filter_map(|f| pod["spec"][f].as_array())
        .flatten()
        .filter(|c| c["resources"][which][resource].as_str().is_none())
        .map(|c| c["name"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Formats milli-units back into a quantity string in the style Kubernetes prints.
fn format_quantity(resource: &str, milli: i128) -> String {
    let is_bytes = resource.contains("memory") || resource.contains("storage");
    if is_bytes {
        let bytes = milli / 1000;
        for (suffix, unit) in [("Gi", 1i128 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
            if bytes != 0 && bytes % unit == 0 {
                return format!("{}{suffix}", bytes / unit);
            }
        }
        return bytes.to_string();
    }
    if milli % 1000 == 0 {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

fn is_terminal_pod(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    )
}

/// Checks every ResourceQuota of the namespace that constrains this object; on success
/// records the new usage in each quota's status, conditional on the quota not having
/// changed since it was read.
async fn charge_quota(
    server: &Server,
    rt: &ResourceType,
    ns: &str,
    quotas: Vec<Stored>,
    obj: &Value,
    effects: &mut Vec<SideEffect>,
) -> Result<()> {
    let quota_rt = ResourceType::lookup("", "v1", "resourcequotas").expect("quotas are served");
    if quotas.is_empty() || rt.kind == "ResourceQuota" {
        return Ok(());
    }
    let requested = usage_of(rt, obj);
    let mut existing_usage: Option<BTreeMap<String, i128>> = None;
    for quota in quotas {
        let hard: BTreeMap<String, String> = crate::objects::string_map(
            quota.object["spec"]["hard"]
                .as_object()
                .map(|_| &quota.object["spec"]["hard"]),
        );
        let relevant: Vec<&String> = hard
            .keys()
            .filter(|k| requested.contains_key(*k) || (rt.kind == "Pod" && is_compute(k)))
            .collect();
        if relevant.is_empty() {
            continue;
        }
        // Kubernetes refuses a pod that leaves out a resource the quota constrains.
        if rt.kind == "Pod" {
            let mut missing = Vec::new();
            for k in &relevant {
                if let Some((which, r)) = compute_parts(k) {
                    let names = containers_missing(obj, which, r);
                    if !names.is_empty() {
                        missing.push(format!("{k} for: {}", names.join(",")));
                    }
                }
            }
            if !missing.is_empty() {
                return Err(Error::forbidden(
                    rt,
                    name(obj),
                    format!(
                        "failed quota: {}: must specify {}",
                        name(&quota.object),
                        missing.join("; ")
                    ),
                ));
            }
        }
        if existing_usage.is_none() {
            let page = server
                .storage
                .list(&rt.prefix(Some(ns)), None, 0, 0)
                .await?;
            let mut total = BTreeMap::new();
            for item in page.items {
                if rt.kind == "Pod" && is_terminal_pod(&item.object) {
                    continue;
                }
                for (k, v) in usage_of(rt, &item.object) {
                    *total.entry(k).or_insert(0) += v;
                }
            }
            existing_usage = Some(total);
        }
        let used = existing_usage.as_ref().expect("computed above");
        let mut over = Vec::new();
        for k in &relevant {
            let limit = quantity::parse_milli(&hard[*k]).unwrap_or(0);
            let u = used.get(*k).copied().unwrap_or(0);
            let r = requested.get(*k).copied().unwrap_or(0);
            if r > 0 && u + r > limit {
                over.push(([r, u, limit], k.to_string()));
            }
        }
        if !over.is_empty() {
            // Kubernetes lists requested, used and limited amounts, each resource=amount.
            let fmt = |which: usize| {
                over.iter()
                    .map(|(amounts, k)| format!("{k}={}", format_quantity(k, amounts[which])))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            return Err(Error::forbidden(
                rt,
                name(obj),
                format!(
                    "exceeded quota: {}, requested: {}, used: {}, limited: {}",
                    name(&quota.object),
                    fmt(0),
                    fmt(1),
                    fmt(2)
                ),
            ));
        }
        let mut updated = quota.object.clone();
        updated["status"]["hard"] = quota.object["spec"]["hard"].clone();
        let mut used_json = serde_json::Map::new();
        for k in hard.keys() {
            let total = used.get(k).copied().unwrap_or(0) + requested.get(k).copied().unwrap_or(0);
            used_json.insert(k.clone(), json!(format_quantity(k, total)));
        }
        updated["status"]["used"] = Value::Object(used_json);
        effects.push(SideEffect::Replace {
            key: quota_rt.key(Some(ns), name(&quota.object)),
            value: encode(&updated),
            revision: quota.revision,
        });
    }
    Ok(())
}

fn is_compute(k: &str) -> bool {
    compute_parts(k).is_some()
}

fn compute_parts(k: &str) -> Option<(&'static str, &'static str)> {
    match k {
        "requests.cpu" | "cpu" => Some(("requests", "cpu")),
        "requests.memory" | "memory" => Some(("requests", "memory")),
        "limits.cpu" => Some(("limits", "cpu")),
        "limits.memory" => Some(("limits", "memory")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_contain() {
        let r = Ipv4Range::parse("10.96.0.0/12").unwrap();
        assert_eq!(r.nth(1).to_string(), "10.96.0.1");
        assert!(r.contains("10.100.3.4".parse().unwrap()));
        assert!(!r.contains("10.96.0.0".parse().unwrap()));
        assert!(!r.contains("10.112.0.1".parse().unwrap()));
        assert!(Ipv4Range::parse("10.96.0.0").is_err());
        assert!(Ipv4Range::parse("10.96.0.0/40").is_err());
    }

    #[test]
    fn pods_tolerate_lost_nodes_for_five_minutes_unless_they_say_otherwise() {
        let mut plain = json!({"spec": {"containers": [{"name": "c"}]}});
        default_toleration_seconds(&mut plain, DefaultTolerationSeconds::default());
        let t = plain["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(t.len(), 2);
        assert!(t
            .iter()
            .all(|t| t["tolerationSeconds"] == 300 && t["effect"] == "NoExecute"));

        let mut own = json!({"spec": {"tolerations": [
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}
        ]}});
        default_toleration_seconds(&mut own, DefaultTolerationSeconds::default());
        let t = own["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(t.len(), 2, "{t:?}");
        assert_eq!(t[0]["tolerationSeconds"], 10);
        assert_eq!(t[1]["key"], "node.kubernetes.io/not-ready");

        let mut everything = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        default_toleration_seconds(&mut everything, DefaultTolerationSeconds::default());
        assert_eq!(
            everything["spec"]["tolerations"].as_array().unwrap().len(),
            1
        );

        // A value the taint does not have tolerates nothing.
        let mut valued = json!({"spec": {"tolerations": [
            {"key": "node.kubernetes.io/unreachable", "operator": "Equal", "value": "x", "effect": "NoExecute"}
        ]}});
        default_toleration_seconds(&mut valued, DefaultTolerationSeconds::default());
        assert_eq!(valued["spec"]["tolerations"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn the_lab_shortens_how_long_pods_tolerate_lost_nodes() {
        let mut pod = json!({"spec": {"containers": [{"name": "c"}]}});
        let seconds = DefaultTolerationSeconds {
            not_ready: 30,
            unreachable: 45,
        };
        default_toleration_seconds(&mut pod, seconds);
        assert_eq!(pod["spec"]["tolerations"][0]["tolerationSeconds"], 30);
        assert_eq!(pod["spec"]["tolerations"][1]["tolerationSeconds"], 45);
    }

    #[test]
    fn qos_follows_requests_and_limits() {
        let be = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(qos_class(&be), "BestEffort");
        let g = json!({"spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}});
        assert_eq!(qos_class(&g), "Guaranteed");
        let b = json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}]}});
        assert_eq!(qos_class(&b), "Burstable");
    }

    #[test]
    fn pod_usage_counts_init_containers_like_the_scheduler() {
        let pod = json!({"spec": {
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}],
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "500m"}}},
                           {"name": "b", "resources": {"requests": {"cpu": "500m"}}}]}});
        assert_eq!(pod_resource(&pod, "requests", "cpu"), Some(2000));
        let rt = ResourceType::lookup("", "v1", "pods").unwrap();
        let u = usage_of(rt, &pod);
        assert_eq!(u["pods"], 1000);
        assert_eq!(u["count/pods"], 1000);
        assert_eq!(u["requests.cpu"], 2000);
    }

    #[test]
    fn quantities_format_like_kubernetes() {
        assert_eq!(format_quantity("requests.cpu", 1500), "1500m");
        assert_eq!(format_quantity("requests.cpu", 2000), "2");
        assert_eq!(format_quantity("requests.memory", 1000 * (1 << 30)), "1Gi");
        assert_eq!(format_quantity("pods", 3000), "3");
    }
}
