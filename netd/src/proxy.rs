//! The service proxy (kube-proxy's role) as one nftables table that netd owns. It is
//! loaded whole at start (and after a failed update), and afterwards changed in one
//! transaction per sync that touches only the chains and elements that differ, as
//! kube-proxy's nftables mode does.
//!
//! [`ruleset`] is pure: node, cluster CIDR, Services and EndpointSlices in, an `nft -f`
//! script out, with the Services it could not program and why. What the rules do:
//! - traffic to `clusterIP:port` (from pods, other nodes or this node) is DNATed to a
//!   ready endpoint picked at random, equal weights (`numgen random` over a map);
//!   connections from outside the cluster CIDR are masqueraded, as kube-proxy does
//!   with `--cluster-cidr`, so replies come back through this node;
//! - NodePorts on every local address and `externalIPs` go the same way; with
//!   `externalTrafficPolicy: Local` only to endpoints on this node, unmasqueraded, so
//!   the pod sees the client's address, and dropped when this node has none (as
//!   kube-proxy does, so a load balancer's health check moves traffic elsewhere);
//! - a Service port with no ready endpoint rejects (ICMP port unreachable) instead of
//!   letting the packet wander off to the default route;
//! - a pod reaching itself through its Service is masqueraded (hairpin; only pods of
//!   this node are listed, since a remote pod's connection is translated on its node);
//! - pod traffic leaving the cluster CIDR is masqueraded to the node's address.
//!
//! Headless Services and ExternalName Services get no rules (DNS answers for them).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::net::Ipv4Net;

/// The nftables table netd owns (family `ip`); nothing else is touched.
pub const TABLE: &str = "skiff_netd";
/// The packet mark that asks postrouting to masquerade.
const MASQUERADE_MARK: u32 = 0x4000;
/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What the ruleset is computed from.
#[derive(Debug, Clone, Copy)]
pub struct ProxyInput<'a> {
    /// This node's name: endpoints with this `nodeName` are local.
    pub node_name: &'a str,
    /// The pods' addresses (`--cluster-cidr`).
    pub cluster_cidr: Ipv4Net,
    /// Every Service.
    pub services: &'a [Service],
    /// Every EndpointSlice.
    pub slices: &'a [EndpointSlice],
}

/// An `nft -f` script that replaces netd's table, and the Service ports left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    /// The table as data: [`Table::full_script`] loads it whole, [`Table::update_script`]
    /// turns an earlier one into it.
    pub table: Table,
    /// `namespace/name port: why`, for each Service port that got no rules.
    pub skipped: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Endpoint {
    ip: Ipv4Addr,
    port: u16,
    local: bool,
}

#[derive(Debug)]
struct PortRules {
    /// Unique within the table: `<namespace>_<name>_<port name or number>_<protocol>`.
    id: String,
    protocol: &'static str,
    cluster_ip: Ipv4Addr,
    port: u16,
    node_port: Option<u16>,
    external_ips: Vec<Ipv4Addr>,
    local_only_external: bool,
    endpoints: Vec<Endpoint>,
}

impl Ruleset {
    /// The script that loads the table whole (written on demand: after the first load,
    /// netd mostly needs only [`Table::update_script`]).
    pub fn script(&self) -> String {
        self.table.full_script()
    }
}

/// Computes the table for this node. Deterministic: the same input gives the same script.
pub fn ruleset(input: &ProxyInput<'_>) -> Ruleset {
    let mut skipped = Vec::new();
    let ports = service_ports(input, &mut skipped);
    Ruleset {
        table: table(input.cluster_cidr, &ports),
        skipped,
    }
}

fn service_ports(input: &ProxyInput<'_>, skipped: &mut Vec<String>) -> Vec<PortRules> {
    let mut slices: BTreeMap<(&str, &str), Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in input.slices {
        let labels = slice.metadata.labels.as_ref();
        if let (Some(ns), Some(service)) = (
            slice.metadata.namespace.as_deref(),
            labels.and_then(|l| l.get(SERVICE_NAME_LABEL)),
        ) {
            slices
                .entry((ns, service.as_str()))
                .or_default()
                .push(slice);
        }
    }
    let mut out = Vec::new();
    let mut services: Vec<&Service> = input.services.iter().collect();
    services.sort_by_key(|s| (s.metadata.namespace.clone(), s.metadata.name.clone()));
    for svc in services {
        let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
        let name = svc.metadata.name.as_deref().unwrap_or("");
        let Some(spec) = &svc.spec else { continue };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let cluster_ip = match spec.cluster_ip.as_deref() {
            None | Some("") | Some("None") => continue, // headless: DNS only
            Some(ip) => match ip.parse::<Ipv4Addr>() {
                Ok(ip) => ip,
                Err(_) => {
                    skipped.push(format!(
                        "{ns}/{name}: clusterIP {ip} is not IPv4 (skiff's service proxy is IPv4-only)"
                    ));
                    continue;
                }
            },
        };
        let mut external_ips = Vec::new();
        for ip in spec.external_ips.iter().flatten() {
            match ip.parse::<Ipv4Addr>() {
                Ok(ip) => external_ips.push(ip),
                Err(_) => skipped.push(format!(
                    "{ns}/{name}: externalIP {ip} is not IPv4; the other addresses are served"
                )),
            }
        }
        let local_only_external = spec.external_traffic_policy.as_deref() == Some("Local");
        let own_slices = slices.get(&(ns, name)).map(Vec::as_slice).unwrap_or(&[]);
        for port in spec.ports.iter().flatten() {
            let port_name = port.name.as_deref().unwrap_or("");
            let label = if port_name.is_empty() {
                port.port.to_string()
            } else {
                port_name.to_string()
            };
            let protocol = match port.protocol.as_deref().unwrap_or("TCP") {
                "TCP" => "tcp",
                "UDP" => "udp",
                "SCTP" => "sctp",
                other => {
                    skipped.push(format!(
                        "{ns}/{name} port {label}: protocol {other} is not TCP, UDP or SCTP"
                    ));
                    continue;
                }
            };
            let Ok(number) = u16::try_from(port.port) else {
                skipped.push(format!(
                    "{ns}/{name} port {label}: {} is not a port number",
                    port.port
                ));
                continue;
            };
            let node_port = port
                .node_port
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p > 0);
            out.push(PortRules {
                id: format!("{ns}_{name}_{label}_{protocol}"),
                protocol,
                cluster_ip,
                port: number,
                node_port,
                external_ips: external_ips.clone(),
                local_only_external,
                endpoints: endpoints(
                    own_slices,
                    port_name,
                    port.protocol.as_deref(),
                    input.node_name,
                ),
            });
        }
    }
    out
}

/// The ready IPv4 endpoints of a Service port, from its EndpointSlices: the slice port
/// with the same name carries the target port the endpoints controller resolved.
fn endpoints(
    slices: &[&EndpointSlice],
    port_name: &str,
    protocol: Option<&str>,
    node: &str,
) -> Vec<Endpoint> {
    let mut out = BTreeSet::new();
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let Some(port) = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == port_name
                && p.protocol.as_deref().unwrap_or("TCP") == protocol.unwrap_or("TCP")
        }) else {
            continue;
        };
        let Some(number) = port
            .port
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)
        else {
            continue;
        };
        for endpoint in &slice.endpoints {
            // An absent `ready` means ready, as the EndpointSlice API defines it.
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true);
            if !ready {
                continue;
            }
            let local = endpoint.node_name.as_deref() == Some(node);
            for address in &endpoint.addresses {
                if let Ok(ip) = address.parse::<Ipv4Addr>() {
                    out.insert(Endpoint {
                        ip,
                        port: number,
                        local,
                    });
                }
            }
        }
    }
    out.into_iter().collect()
}

/// The verdict maps of the table, in the order the full script writes them.
const MAPS: [(&str, &str); 2] = [
    (
        "service_ips",
        "ipv4_addr . inet_proto . inet_service : verdict",
    ),
    ("service_nodeports", "inet_proto . inet_service : verdict"),
];
/// The sets of the table, in the order the full script writes them.
const SETS: [(&str, &str); 3] = [
    ("no_endpoints", "ipv4_addr . inet_proto . inet_service"),
    ("no_endpoint_nodeports", "inet_proto . inet_service"),
    ("hairpin", "ipv4_addr . ipv4_addr"),
];

/// netd's table as data: the elements of its maps and sets and the chains of its
/// Service ports. The fixed chains follow from the cluster CIDR. From it come both the
/// script that loads the whole table and the script that turns a table loaded before
/// into this one (kube-proxy's partial sync), which touches only what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    cluster_cidr: Ipv4Net,
    /// Map name → element key → verdict.
    maps: BTreeMap<&'static str, BTreeMap<String, String>>,
    /// Set name → elements.
    sets: BTreeMap<&'static str, BTreeSet<String>>,
    /// Chain name → its rules.
    chains: BTreeMap<String, Vec<String>>,
}

impl Table {
    fn new(cluster_cidr: Ipv4Net) -> Table {
        Table {
            cluster_cidr,
            maps: MAPS.iter().map(|(n, _)| (*n, BTreeMap::new())).collect(),
            sets: SETS.iter().map(|(n, _)| (*n, BTreeSet::new())).collect(),
            chains: BTreeMap::new(),
        }
    }

    fn map(&mut self, name: &'static str, key: String, verdict: String) {
        self.maps.entry(name).or_default().insert(key, verdict);
    }

    fn set(&mut self, name: &'static str, element: String) {
        self.sets.entry(name).or_default().insert(element);
    }

    /// The script that replaces the table whole: creates it if missing, deletes it,
    /// writes it anew, all in the one transaction `nft -f` makes of a file.
    pub fn full_script(&self) -> String {
        let cluster_cidr = self.cluster_cidr;
        let mut s = String::new();
        // `table` first so that `delete` has something to delete on a fresh node.
        let _ = writeln!(
            s,
            "table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{"
        );
        for (name, type_) in MAPS {
            let elements: Vec<String> = self.maps[name]
                .iter()
                .map(|(k, v)| format!("{k} : {v}"))
                .collect();
            block(&mut s, &format!("map {name}"), type_, &elements);
        }
        for (name, type_) in SETS {
            let elements: Vec<String> = self.sets[name].iter().cloned().collect();
            block(&mut s, &format!("set {name}"), type_, &elements);
        }
        let _ = write!(
            s,
            "\tchain services {{
\t\tip daddr . meta l4proto . th dport vmap @service_ips
\t\tfib daddr type local meta l4proto . th dport vmap @service_nodeports
\t}}
\tchain nat_prerouting {{
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tjump services
\t}}
\tchain nat_output {{
\t\ttype nat hook output priority -100; policy accept;
\t\tjump services
\t}}
\tchain nat_postrouting {{
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tmeta mark & {MASQUERADE_MARK:#x} == {MASQUERADE_MARK:#x} masquerade
\t\tct status dnat ip saddr . ip daddr @hairpin masquerade
\t\tip saddr {cluster_cidr} ip daddr != {cluster_cidr} masquerade
\t}}
\tchain reject_unserved {{
\t\tip daddr . meta l4proto . th dport @no_endpoints reject
\t\tfib daddr type local meta l4proto . th dport @no_endpoint_nodeports reject
\t}}
\tchain filter_input {{
\t\ttype filter hook input priority filter; policy accept;
\t\tjump reject_unserved
\t}}
\tchain filter_forward {{
\t\ttype filter hook forward priority filter; policy accept;
\t\tjump reject_unserved
\t}}
\tchain filter_output {{
\t\ttype filter hook output priority filter; policy accept;
\t\tjump reject_unserved
\t}}
"
        );
        for (name, rules) in &self.chains {
            let _ = writeln!(s, "\tchain {name} {{");
            for r in rules {
                let _ = writeln!(s, "\t\t{r}");
            }
            let _ = writeln!(s, "\t}}");
        }
        s.push_str("}\n");
        s
    }

    /// The script that turns `loaded` (what an earlier script put in the kernel) into
    /// this table, in one transaction, touching only the chains and elements that
    /// differ; `None` when only a full load will do (the cluster CIDR changed).
    pub fn update_script(&self, loaded: &Table) -> Option<String> {
        if loaded.cluster_cidr != self.cluster_cidr {
            return None;
        }
        let mut s = String::new();
        // New chains first: the rules and verdicts below may name them.
        for name in self.chains.keys() {
            if !loaded.chains.contains_key(name) {
                let _ = writeln!(s, "add chain ip {TABLE} {name}");
            }
        }
        for (name, rules) in &self.chains {
            match loaded.chains.get(name) {
                Some(old) if old == rules => continue,
                Some(_) => {
                    let _ = writeln!(s, "flush chain ip {TABLE} {name}");
                }
                None => {}
            }
            for r in rules {
                let _ = writeln!(s, "add rule ip {TABLE} {name} {r}");
            }
        }
        for (name, _) in MAPS {
            let (new, old) = (&self.maps[name], &loaded.maps[name]);
            let gone: Vec<&str> = old
                .iter()
                .filter(|(k, v)| new.get(*k) != Some(v))
                .map(|(k, _)| k.as_str())
                .collect();
            let added: Vec<String> = new
                .iter()
                .filter(|(k, v)| old.get(*k) != Some(v))
                .map(|(k, v)| format!("{k} : {v}"))
                .collect();
            elements(&mut s, "delete", name, &gone);
            elements(&mut s, "add", name, &added);
        }
        for (name, _) in SETS {
            let (new, old) = (&self.sets[name], &loaded.sets[name]);
            let gone: Vec<&String> = old.difference(new).collect();
            let added: Vec<&String> = new.difference(old).collect();
            elements(&mut s, "delete", name, &gone);
            elements(&mut s, "add", name, &added);
        }
        // Chains that went: emptied first, so that none still jumps to another, then
        // deleted once no element names them.
        let gone: Vec<&String> = loaded
            .chains
            .keys()
            .filter(|n| !self.chains.contains_key(*n))
            .collect();
        for name in &gone {
            let _ = writeln!(s, "flush chain ip {TABLE} {name}");
        }
        for name in &gone {
            let _ = writeln!(s, "delete chain ip {TABLE} {name}");
        }
        Some(s)
    }
}

fn elements<T: std::fmt::Display>(s: &mut String, verb: &str, set: &str, items: &[T]) {
    if items.is_empty() {
        return;
    }
    let list: Vec<String> = items.iter().map(ToString::to_string).collect();
    let _ = writeln!(
        s,
        "{verb} element ip {TABLE} {set} {{ {} }}",
        list.join(", ")
    );
}

fn table(cluster_cidr: Ipv4Net, ports: &[PortRules]) -> Table {
    let mut t = Table::new(cluster_cidr);
    for p in ports {
        let (proto, svc, ext) = (p.protocol, format!("svc_{}", p.id), format!("ext_{}", p.id));
        // Only a pod on this node can reach itself through this node's DNAT: a remote
        // pod's connection is translated on its own node.
        for e in p.endpoints.iter().filter(|e| e.local) {
            t.set("hairpin", format!("{} . {}", e.ip, e.ip));
        }
        if p.endpoints.is_empty() {
            t.set(
                "no_endpoints",
                format!("{} . {proto} . {}", p.cluster_ip, p.port),
            );
            for ip in &p.external_ips {
                t.set("no_endpoints", format!("{ip} . {proto} . {}", p.port));
            }
            if let Some(np) = p.node_port {
                t.set("no_endpoint_nodeports", format!("{proto} . {np}"));
            }
            continue;
        }
        t.map(
            "service_ips",
            format!("{} . {proto} . {}", p.cluster_ip, p.port),
            format!("goto {svc}"),
        );
        t.chains.insert(
            svc.clone(),
            vec![
                format!(
                    "ip saddr != {cluster_cidr} meta mark set meta mark | {MASQUERADE_MARK:#x}"
                ),
                dnat(proto, p.endpoints.iter()),
            ],
        );
        // Most Services are reached by clusterIP alone; a chain nothing jumps to would
        // only cost load time (a tenth of it at 1,000 Services).
        if p.node_port.is_none() && p.external_ips.is_empty() {
            continue;
        }
        for ip in &p.external_ips {
            t.map(
                "service_ips",
                format!("{ip} . {proto} . {}", p.port),
                format!("goto {ext}"),
            );
        }
        if let Some(np) = p.node_port {
            t.map(
                "service_nodeports",
                format!("{proto} . {np}"),
                format!("goto {ext}"),
            );
        }
        let rules = if p.local_only_external {
            let local: Vec<&Endpoint> = p.endpoints.iter().filter(|e| e.local).collect();
            if local.is_empty() {
                vec!["drop".to_string()]
            } else {
                vec![dnat(proto, local.into_iter())]
            }
        } else {
            vec![
                format!("meta mark set meta mark | {MASQUERADE_MARK:#x}"),
                format!("goto {svc}"),
            ]
        };
        t.chains.insert(ext, rules);
    }
    t
}

/// DNAT to one of `endpoints`, picked at random with equal weights.
fn dnat<'a>(proto: &str, endpoints: impl Iterator<Item = &'a Endpoint>) -> String {
    let targets: Vec<String> = endpoints
        .enumerate()
        .map(|(i, e)| format!("{i} : {} . {}", e.ip, e.port))
        .collect();
    format!(
        "meta l4proto {proto} dnat ip to numgen random mod {} map {{ {} }}",
        targets.len(),
        targets.join(", ")
    )
}

fn block(s: &mut String, header: &str, type_: &str, elements: &[String]) {
    let _ = writeln!(s, "\t{header} {{\n\t\ttype {type_}");
    if !elements.is_empty() {
        let _ = writeln!(s, "\t\telements = {{ {} }}", elements.join(", "));
    }
    let _ = writeln!(s, "\t}}");
}

#[cfg(test)]
mod tests;
