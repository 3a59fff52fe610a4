//! Cluster DNS answers (CoreDNS's `kubernetes` plugin role), as a pure function of a
//! [`Zone`] built from Services and EndpointSlices, following Kubernetes' DNS spec:
//! - `<svc>.<ns>.svc.<domain>`: A → the clusterIP; a headless Service → one A per ready
//!   endpoint, rotated on each query for round robin; ExternalName → CNAME;
//! - `<hostname>.<svc>.<ns>.svc.<domain>`: A → that endpoint of a headless Service;
//! - `_<port>._<proto>.<svc>.<ns>.svc.<domain>`: SRV for named ports;
//! - `<a-b-c-d>.<ns>.pod.<domain>`: A → a.b.c.d;
//! - any other name in the cluster domain: NXDOMAIN; a name the cluster does not own
//!   goes to the node's upstream resolver.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// How long answers may be cached (CoreDNS's default for the kubernetes plugin).
pub const TTL: u32 = 5;

/// The record type asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryType {
    /// IPv4 address.
    A,
    /// IPv6 address: cluster names have none.
    Aaaa,
    /// Service location (port and target).
    Srv,
    /// Canonical name.
    Cname,
    /// Anything else.
    Other,
}

/// One resource record of an answer (names are fully qualified, without the final dot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// An address.
    A {
        /// The owner name.
        name: String,
        /// The address.
        ip: Ipv4Addr,
    },
    /// An alias.
    Cname {
        /// The owner name.
        name: String,
        /// The name it stands for.
        target: String,
    },
    /// A named port.
    Srv {
        /// The owner name (`_port._proto.svc...`).
        name: String,
        /// Port of the service.
        port: u16,
        /// The host serving it.
        target: String,
    },
}

/// What to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// These records (NOERROR).
    Records(Vec<Record>),
    /// The name exists but has no records of that type (NOERROR, empty).
    NoData,
    /// No such name in the cluster domain.
    NxDomain,
    /// Not the cluster's: ask the upstream resolver.
    Forward,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    ClusterIp(Ipv4Addr),
    Headless,
    ExternalName(String),
}

#[derive(Debug, Clone)]
struct Endpoint {
    ip: Ipv4Addr,
    hostname: Option<String>,
}

#[derive(Debug, Clone)]
struct Entry {
    kind: Kind,
    /// (port name, protocol in lower case) → port number.
    ports: Vec<(String, String, u16)>,
    endpoints: Vec<Endpoint>,
}

/// The cluster's names, rebuilt when Services or EndpointSlices change.
#[derive(Debug, Clone, Default)]
pub struct Zone {
    domain: String,
    /// (namespace, service) → entry.
    services: BTreeMap<(String, String), Entry>,
}

impl Zone {
    /// The zone of `domain` (`cluster.local`) for these objects.
    pub fn build(domain: &str, services: &[Service], slices: &[EndpointSlice]) -> Zone {
        let mut zone = Zone {
            domain: domain.trim_end_matches('.').to_ascii_lowercase(),
            services: BTreeMap::new(),
        };
        for svc in services {
            let (Some(ns), Some(name), Some(spec)) = (
                svc.metadata.namespace.as_deref(),
                svc.metadata.name.as_deref(),
                svc.spec.as_ref(),
            ) else {
                continue;
            };
            let kind = if spec.type_.as_deref() == Some("ExternalName") {
                match &spec.external_name {
                    Some(target) => Kind::ExternalName(target.trim_end_matches('.').to_string()),
                    None => continue,
                }
            } else {
                match spec.cluster_ip.as_deref() {
                    Some("None") => Kind::Headless,
                    Some(ip) => match ip.parse() {
                        Ok(ip) => Kind::ClusterIp(ip),
                        Err(_) => continue,
                    },
                    None => continue,
                }
            };
            let ports = spec
                .ports
                .iter()
                .flatten()
                .filter_map(|p| {
                    let name = p.name.clone().filter(|n| !n.is_empty())?;
                    let protocol = p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
                    Some((name, protocol, u16::try_from(p.port).ok()?))
                })
                .collect();
            zone.services.insert(
                (ns.to_string(), name.to_string()),
                Entry {
                    kind,
                    ports,
                    endpoints: Vec::new(),
                },
            );
        }
        for slice in slices {
            let service = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"));
            let (Some(ns), Some(service)) = (slice.metadata.namespace.as_deref(), service) else {
                continue;
            };
            let Some(entry) = zone.services.get_mut(&(ns.to_string(), service.clone())) else {
                continue;
            };
            if entry.kind != Kind::Headless || slice.address_type != "IPv4" {
                continue;
            }
            // Only ready endpoints are published; for a Service with
            // publishNotReadyAddresses the endpoints controller marks them all ready.
            for e in &slice.endpoints {
                let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                if !ready {
                    continue;
                }
                for address in &e.addresses {
                    if let Ok(ip) = address.parse() {
                        entry.endpoints.push(Endpoint {
                            ip,
                            hostname: e.hostname.clone(),
                        });
                    }
                }
            }
            entry.endpoints.sort_by_key(|e| e.ip);
            entry.endpoints.dedup_by_key(|e| e.ip);
        }
        zone
    }

    /// The answer to a query for `name` (any case, trailing dot or not). `rotation`
    /// varies from query to query so that headless answers come in turns.
    pub fn answer(&self, name: &str, qtype: QueryType, rotation: usize) -> Answer {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let Some(local) = name
            .strip_suffix(&self.domain)
            .and_then(|rest| rest.strip_suffix('.'))
            .or_else(|| (name == self.domain).then_some(""))
        else {
            return Answer::Forward;
        };
        let labels: Vec<&str> = if local.is_empty() {
            Vec::new()
        } else {
            local.split('.').collect()
        };
        match labels.as_slice() {
            // The zone apex and the `svc` / `pod` subtrees exist, without records.
            [] | ["svc"] | ["pod"] | [_, "svc"] | [_, "pod"] => Answer::NoData,
            [ip, _ns, "pod"] => match dashed_ip(ip) {
                Some(addr) => self.addresses(&name, qtype, vec![addr]),
                None => Answer::NxDomain,
            },
            [svc, ns, "svc"] => self.service(&name, ns, svc, qtype, rotation),
            [host, svc, ns, "svc"] => {
                let Some(entry) = self.entry(ns, svc) else {
                    return Answer::NxDomain;
                };
                let ips: Vec<Ipv4Addr> = entry
                    .endpoints
                    .iter()
                    .filter(|e| endpoint_name(e) == *host)
                    .map(|e| e.ip)
                    .collect();
                if ips.is_empty() {
                    return Answer::NxDomain;
                }
                self.addresses(&name, qtype, ips)
            }
            [port, proto, svc, ns, "svc"] => self.srv(&name, port, proto, ns, svc, qtype),
            _ => Answer::NxDomain,
        }
    }

    fn entry(&self, ns: &str, svc: &str) -> Option<&Entry> {
        self.services.get(&(ns.to_string(), svc.to_string()))
    }

    fn service(
        &self,
        name: &str,
        ns: &str,
        svc: &str,
        qtype: QueryType,
        rotation: usize,
    ) -> Answer {
        let Some(entry) = self.entry(ns, svc) else {
            return Answer::NxDomain;
        };
        match &entry.kind {
            Kind::ExternalName(target) => match qtype {
                QueryType::A | QueryType::Aaaa | QueryType::Cname | QueryType::Other => {
                    Answer::Records(vec![Record::Cname {
                        name: name.to_string(),
                        target: target.clone(),
                    }])
                }
                QueryType::Srv => Answer::NoData,
            },
            Kind::ClusterIp(ip) => self.addresses(name, qtype, vec![*ip]),
            Kind::Headless => {
                let mut ips: Vec<Ipv4Addr> = entry.endpoints.iter().map(|e| e.ip).collect();
                if !ips.is_empty() {
                    let turn = rotation % ips.len();
                    ips.rotate_left(turn);
                }
                self.addresses(name, qtype, ips)
            }
        }
    }

    fn srv(
        &self,
        name: &str,
        port: &str,
        proto: &str,
        ns: &str,
        svc: &str,
        qtype: QueryType,
    ) -> Answer {
        let (Some(port), Some(proto)) = (port.strip_prefix('_'), proto.strip_prefix('_')) else {
            return Answer::NxDomain;
        };
        let Some(entry) = self.entry(ns, svc) else {
            return Answer::NxDomain;
        };
        let Some((_, _, number)) = entry.ports.iter().find(|(n, p, _)| n == port && p == proto)
        else {
            return Answer::NxDomain;
        };
        if qtype != QueryType::Srv {
            return Answer::NoData;
        }
        let service_name = format!("{svc}.{ns}.svc.{}", self.domain);
        let targets: Vec<String> = match entry.kind {
            Kind::Headless => entry
                .endpoints
                .iter()
                .map(|e| format!("{}.{service_name}", endpoint_name(e)))
                .collect(),
            _ => vec![service_name],
        };
        Answer::Records(
            targets
                .into_iter()
                .map(|target| Record::Srv {
                    name: name.to_string(),
                    port: *number,
                    target,
                })
                .collect(),
        )
    }

    fn addresses(&self, name: &str, qtype: QueryType, ips: Vec<Ipv4Addr>) -> Answer {
        if qtype != QueryType::A || ips.is_empty() {
            return Answer::NoData;
        }
        Answer::Records(
            ips.into_iter()
                .map(|ip| Record::A {
                    name: name.to_string(),
                    ip,
                })
                .collect(),
        )
    }
}

/// An endpoint's name under its headless Service: its hostname, else its dashed address.
fn endpoint_name(e: &Endpoint) -> String {
    e.hostname
        .clone()
        .unwrap_or_else(|| e.ip.to_string().replace('.', "-"))
}

/// `10-244-1-5` → 10.244.1.5.
fn dashed_ip(label: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = label.split('-').collect();
    if parts.len() != 4 {
        return None;
    }
    let mut octets = [0u8; 4];
    for (o, p) in octets.iter_mut().zip(parts) {
        if p.is_empty() || p.len() > 3 {
            return None;
        }
        *o = p.parse().ok()?;
    }
    Some(Ipv4Addr::from(octets))
}

#[cfg(test)]
mod tests;
