//! Services, Endpoints and EndpointSlices.

use std::collections::BTreeSet;

use serde_json::Value;

use super::json::{arr, has, int_at, str_at, str_or_empty};
use super::meta::{immutable, validate_labels};
use super::names::{
    is_dns1123_label, is_dns1123_subdomain, is_qualified_name, is_valid_cidr, is_valid_ip,
    is_valid_port_num,
};
use super::pod::{port_num_or_name, protocol};
use super::{FieldError, Path};

/// The node port range skiff allocates from, as Kubernetes' default.
pub const NODE_PORT_RANGE: (i64, i64) = (30000, 32767);
/// Longest ClientIP session affinity, one day.
const MAX_CLIENT_IP_AFFINITY_SECONDS: i64 = 86400;

fn effective_cluster_ips(spec: &Value) -> Vec<&str> {
    let ips: Vec<&str> = arr(spec, "clusterIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if !ips.is_empty() {
        return ips;
    }
    match str_at(spec, "clusterIP") {
        Some(ip) if !ip.is_empty() => vec![ip],
        _ => Vec::new(),
    }
}

fn is_headless(spec: &Value) -> bool {
    effective_cluster_ips(spec) == ["None"]
}

/// Validates a Service.
pub(crate) fn validate_service(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let path = Path::new("spec");
    let ty = str_at(spec, "type").unwrap_or("ClusterIP");
    let headless = is_headless(spec);
    let ports = arr(spec, "ports");
    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(FieldError::required(path.child("ports"), ""));
    }
    match ty {
        "LoadBalancer" | "NodePort" if headless => errs.push(FieldError::invalid_str(
            path.child("clusterIPs").index(0),
            "None",
            format!("may not be set to 'None' for {ty} services"),
        )),
        "ExternalName" => {
            if !effective_cluster_ips(spec).is_empty() {
                errs.push(FieldError::forbidden(
                    path.child("clusterIPs"),
                    "may not be set for ExternalName services",
                ));
            }
            if !arr(spec, "ipFamilies").is_empty() {
                errs.push(FieldError::forbidden(
                    path.child("ipFamilies"),
                    "may not be set for ExternalName services",
                ));
            }
            if has(spec, "ipFamilyPolicy") {
                errs.push(FieldError::forbidden(
                    path.child("ipFamilyPolicy"),
                    "may not be set for ExternalName services",
                ));
            }
            let name = str_or_empty(spec, "externalName");
            let cname = name.strip_suffix('.').unwrap_or(name);
            if cname.is_empty() {
                errs.push(FieldError::required(path.child("externalName"), ""));
            } else {
                for m in is_dns1123_subdomain(cname) {
                    errs.push(FieldError::invalid_str(
                        path.child("externalName"),
                        cname,
                        m,
                    ));
                }
            }
        }
        _ => {}
    }
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = path.child("ports").index(i);
        let name = str_or_empty(port, "name");
        if ports.len() > 1 && name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        } else if !name.is_empty() {
            for m in is_dns1123_label(name) {
                errs.push(FieldError::invalid_str(p.child("name"), name, m));
            }
            if !names.insert(name) {
                errs.push(FieldError::duplicate(p.child("name"), &Value::from(name)));
            }
        }
        let num = int_at(port, "port").unwrap_or(0);
        for m in is_valid_port_num(num) {
            errs.push(FieldError::invalid(p.child("port"), &Value::from(num), m));
        }
        protocol(port, &p.child("protocol"), errs);
        // An unset targetPort is defaulted to the port.
        if let Some(tp) = port.get("targetPort").filter(|v| !v.is_null()) {
            port_num_or_name(Some(tp), &p.child("targetPort"), errs);
        }
        if let Some(ap) = str_at(port, "appProtocol") {
            for m in is_qualified_name(ap) {
                errs.push(FieldError::invalid_str(p.child("appProtocol"), ap, m));
            }
        }
        let node_port = int_at(port, "nodePort").unwrap_or(0);
        if node_port != 0 {
            if ty == "ClusterIP" {
                errs.push(FieldError::forbidden(
                    p.child("nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            } else if !(NODE_PORT_RANGE.0..=NODE_PORT_RANGE.1).contains(&node_port) {
                errs.push(FieldError::invalid(
                    p.child("nodePort"),
                    &Value::from(node_port),
                    format!(
                        "provided port is not in the valid range. The range of valid ports is {}-{}",
                        NODE_PORT_RANGE.0, NODE_PORT_RANGE.1
                    ),
                ));
            }
        }
    }
    let mut node_ports = BTreeSet::new();
    let mut seen_ports = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let proto = str_at(port, "protocol").unwrap_or("TCP");
        let np = int_at(port, "nodePort").unwrap_or(0);
        if np != 0 && !node_ports.insert((proto, np)) {
            errs.push(FieldError::duplicate(
                path.child("ports").index(i).child("nodePort"),
                &Value::from(np),
            ));
        }
        let num = int_at(port, "port").unwrap_or(0);
        if !seen_ports.insert((proto, num)) {
            errs.push(FieldError::duplicate(
                path.child("ports").index(i),
                &serde_json::json!({"port": num, "protocol": proto}),
            ));
        }
    }
    if let Some(sel) = spec.get("selector") {
        validate_labels(Some(sel), &path.child("selector"), errs);
    }
    let affinity = str_at(spec, "sessionAffinity").unwrap_or("None");
    match affinity {
        "None" => {
            if has(spec, "sessionAffinityConfig") {
                errs.push(FieldError::forbidden(
                    path.child("sessionAffinityConfig"),
                    "must not be set when session affinity is None",
                ));
            }
        }
        "ClientIP" => {
            let timeout = spec
                .get("sessionAffinityConfig")
                .and_then(|c| c.get("clientIP"))
                .and_then(|c| int_at(c, "timeoutSeconds"));
            if let Some(t) = timeout {
                if t <= 0 || t > MAX_CLIENT_IP_AFFINITY_SECONDS {
                    errs.push(FieldError::invalid(
                        path.child("sessionAffinityConfig")
                            .child("clientIP")
                            .child("timeoutSeconds"),
                        &Value::from(t),
                        format!(
                            "must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}"
                        ),
                    ));
                }
            }
        }
        "" => errs.push(FieldError::required(path.child("sessionAffinity"), "")),
        other => errs.push(FieldError::not_supported(
            path.child("sessionAffinity"),
            &Value::from(other),
            &["ClientIP", "None"],
        )),
    }
    if ty != "ExternalName" {
        validate_cluster_ips(spec, &path, errs);
    }
    for (i, ip) in arr(spec, "externalIPs").iter().enumerate() {
        let ip = ip.as_str().unwrap_or("");
        for m in is_valid_ip(ip) {
            errs.push(FieldError::invalid_str(
                path.child("externalIPs").index(i),
                ip,
                m,
            ));
        }
    }
    if !matches!(
        ty,
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
    ) {
        errs.push(FieldError::not_supported(
            path.child("type"),
            &Value::from(ty),
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        ));
    }
    let ranges = arr(spec, "loadBalancerSourceRanges");
    if !ranges.is_empty() {
        let rp = path.child("LoadBalancerSourceRanges");
        if ty != "LoadBalancer" {
            errs.push(FieldError::forbidden(
                &rp,
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
        for (i, r) in ranges.iter().enumerate() {
            let r = r.as_str().unwrap_or("").trim();
            for m in is_valid_cidr(r) {
                errs.push(FieldError::invalid_str(rp.index(i), r, m));
            }
        }
    }
    if has(spec, "allocateLoadBalancerNodePorts") && ty != "LoadBalancer" {
        errs.push(FieldError::forbidden(
            path.child("allocateLoadBalancerNodePorts"),
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if has(spec, "loadBalancerClass") && ty != "LoadBalancer" {
        errs.push(FieldError::forbidden(
            path.child("loadBalancerClass"),
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    let externally_accessible = matches!(ty, "NodePort" | "LoadBalancer")
        || (ty == "ClusterIP" && !arr(spec, "externalIPs").is_empty());
    if let Some(etp) = str_at(spec, "externalTrafficPolicy").filter(|s| !s.is_empty()) {
        if !externally_accessible {
            errs.push(FieldError::invalid_str(
                path.child("externalTrafficPolicy"),
                etp,
                "may only be set for externally-accessible services",
            ));
        } else if !matches!(etp, "Cluster" | "Local") {
            errs.push(FieldError::not_supported(
                path.child("externalTrafficPolicy"),
                &Value::from(etp),
                &["Cluster", "Local"],
            ));
        }
    }
    if let Some(itp) = str_at(spec, "internalTrafficPolicy") {
        if !matches!(itp, "Cluster" | "Local") {
            errs.push(FieldError::not_supported(
                path.child("internalTrafficPolicy"),
                &Value::from(itp),
                &["Cluster", "Local"],
            ));
        }
    }
    if let Some(old) = old {
        validate_service_update(spec, old.get("spec").unwrap_or(&Value::Null), &path, errs);
    }
}

fn validate_cluster_ips(spec: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    let cluster_ip = str_or_empty(spec, "clusterIP");
    let ips = arr(spec, "clusterIPs");
    let ips_path = path.child("clusterIPs");
    if !cluster_ip.is_empty()
        && !ips.is_empty()
        && ips.first().and_then(Value::as_str) != Some(cluster_ip)
    {
        errs.push(FieldError::invalid(
            &ips_path,
            spec.get("clusterIPs").unwrap_or(&Value::Null),
            "first value must match `clusterIP`",
        ));
    }
    if cluster_ip.is_empty() && !ips.is_empty() {
        errs.push(FieldError::invalid(
            &ips_path,
            spec.get("clusterIPs").unwrap_or(&Value::Null),
            "must be empty when `clusterIP` is not specified",
        ));
    }
    let mut families = BTreeSet::new();
    for (i, f) in arr(spec, "ipFamilies").iter().enumerate() {
        let f = f.as_str().unwrap_or("");
        if !matches!(f, "IPv4" | "IPv6") {
            errs.push(FieldError::not_supported(
                path.child("ipFamilies").index(i),
                &Value::from(f),
                &["IPv4", "IPv6"],
            ));
        }
        if !families.insert(f) {
            errs.push(FieldError::duplicate(
                path.child("ipFamilies").index(i),
                &Value::from(f),
            ));
        }
    }
    if let Some(policy) = str_at(spec, "ipFamilyPolicy") {
        if !matches!(
            policy,
            "SingleStack" | "PreferDualStack" | "RequireDualStack"
        ) {
            errs.push(FieldError::not_supported(
                path.child("ipFamilyPolicy"),
                &Value::from(policy),
                &["PreferDualStack", "RequireDualStack", "SingleStack"],
            ));
        }
    }
    let effective = effective_cluster_ips(spec);
    for (i, ip) in effective.iter().enumerate() {
        if i == 0 && *ip == "None" {
            if effective.len() > 1 {
                errs.push(FieldError::invalid(
                    &ips_path,
                    spec.get("clusterIPs").unwrap_or(&Value::Null),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        for m in is_valid_ip(ip) {
            errs.push(FieldError::invalid_str(ips_path.index(i), ip, m));
        }
    }
    if effective.len() > 2 {
        errs.push(FieldError::invalid(
            &ips_path,
            spec.get("clusterIPs").unwrap_or(&Value::Null),
            "may only hold up to 2 values",
        ));
    }
}

/// A Service's cluster IPs may not change once allocated. A new object without them
/// keeps the allocated ones (the server carries them over), so absence is not a change.
fn validate_service_update(spec: &Value, old: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    let ty = str_at(spec, "type").unwrap_or("ClusterIP");
    let old_ty = str_at(old, "type").unwrap_or("ClusterIP");
    if ty == "ExternalName" || old_ty == "ExternalName" {
        return;
    }
    let new_ips = effective_cluster_ips(spec);
    let old_ips = effective_cluster_ips(old);
    if new_ips.is_empty() || (is_headless(spec) && is_headless(old)) {
        return;
    }
    let value = Value::from(new_ips.clone());
    if let (Some(n), Some(o)) = (new_ips.first(), old_ips.first()) {
        if n != o {
            errs.push(FieldError::invalid(
                path.child("clusterIPs").index(0),
                &value,
                "may not change once set",
            ));
            return;
        }
    }
    if new_ips.len() == old_ips.len() {
        for (i, (n, o)) in new_ips.iter().zip(&old_ips).enumerate().skip(1) {
            if n != o {
                errs.push(FieldError::invalid(
                    path.child("clusterIPs").index(i),
                    &value,
                    "may not change once set",
                ));
            }
        }
    }
    let new_fam: Vec<&str> = arr(spec, "ipFamilies")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let old_fam: Vec<&str> = arr(old, "ipFamilies")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if !new_fam.is_empty() && !old_fam.is_empty() && new_fam[0] != old_fam[0] && !is_headless(spec)
    {
        errs.push(FieldError::invalid(
            path.child("ipFamilies").index(0),
            spec.get("ipFamilies").unwrap_or(&Value::Null),
            "may not change once set",
        ));
    }
    if ty == "LoadBalancer"
        && old_ty == "LoadBalancer"
        && str_at(spec, "loadBalancerClass") != str_at(old, "loadBalancerClass")
    {
        errs.push(FieldError::invalid(
            path.child("loadBalancerClass"),
            spec.get("loadBalancerClass").unwrap_or(&Value::Null),
            "may not change once set",
        ));
    }
}

fn validate_endpoint_address(addr: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    let ip = str_or_empty(addr, "ip");
    let msgs = is_valid_ip(ip);
    for m in &msgs {
        errs.push(FieldError::invalid_str(path.child("ip"), ip, m.clone()));
    }
    if let Some(h) = str_at(addr, "hostname").filter(|s| !s.is_empty()) {
        for m in is_dns1123_label(h) {
            errs.push(FieldError::invalid_str(path.child("hostname"), h, m));
        }
    }
    if let Some(n) = str_at(addr, "nodeName") {
        for m in is_dns1123_subdomain(n) {
            errs.push(FieldError::invalid_str(path.child("nodeName"), n, m));
        }
    }
    if let Ok(parsed) = ip.parse::<std::net::IpAddr>() {
        if parsed.is_unspecified() {
            errs.push(FieldError::invalid_str(
                path.child("ip"),
                ip,
                format!("may not be unspecified ({ip})"),
            ));
        }
        if parsed.is_loopback() {
            errs.push(FieldError::invalid_str(
                path.child("ip"),
                ip,
                "may not be in the loopback range (127.0.0.0/8, ::1/128)",
            ));
        }
    }
}

fn validate_endpoint_port(
    port: &Value,
    require_name: bool,
    path: &Path,
    errs: &mut Vec<FieldError>,
) {
    let name = str_or_empty(port, "name");
    if require_name && name.is_empty() {
        errs.push(FieldError::required(path.child("name"), ""));
    } else if !name.is_empty() {
        for m in is_dns1123_label(name) {
            errs.push(FieldError::invalid_str(path.child("name"), name, m));
        }
    }
    let num = int_at(port, "port").unwrap_or(0);
    for m in is_valid_port_num(num) {
        errs.push(FieldError::invalid(
            path.child("port"),
            &Value::from(num),
            m,
        ));
    }
    protocol(port, &path.child("protocol"), errs);
    if let Some(ap) = str_at(port, "appProtocol") {
        for m in is_qualified_name(ap) {
            errs.push(FieldError::invalid_str(path.child("appProtocol"), ap, m));
        }
    }
}

/// Validates Endpoints.
pub(crate) fn validate_endpoints(obj: &Value, errs: &mut Vec<FieldError>) {
    let path = Path::new("subsets");
    for (i, ss) in arr(obj, "subsets").iter().enumerate() {
        let p = path.index(i);
        let addrs = arr(ss, "addresses");
        let not_ready = arr(ss, "notReadyAddresses");
        if addrs.is_empty() && not_ready.is_empty() {
            errs.push(FieldError::required(
                &p,
                "must specify `addresses` or `notReadyAddresses`",
            ));
        }
        for (j, a) in addrs.iter().enumerate() {
            validate_endpoint_address(a, &p.child("addresses").index(j), errs);
        }
        for (j, a) in not_ready.iter().enumerate() {
            validate_endpoint_address(a, &p.child("notReadyAddresses").index(j), errs);
        }
        let ports = arr(ss, "ports");
        for (j, port) in ports.iter().enumerate() {
            validate_endpoint_port(port, ports.len() > 1, &p.child("ports").index(j), errs);
        }
    }
}

/// Validates an EndpointSlice.
pub(crate) fn validate_endpoint_slice(
    obj: &Value,
    old: Option<&Value>,
    errs: &mut Vec<FieldError>,
) {
    let at = str_or_empty(obj, "addressType");
    match at {
        "IPv4" | "IPv6" | "FQDN" => {}
        "" => errs.push(FieldError::required(Path::new("addressType"), "")),
        other => errs.push(FieldError::not_supported(
            Path::new("addressType"),
            &Value::from(other),
            &["FQDN", "IPv4", "IPv6"],
        )),
    }
    let endpoints = arr(obj, "endpoints");
    if endpoints.len() > 1000 {
        errs.push(FieldError::too_many(
            Path::new("endpoints"),
            endpoints.len(),
            1000,
        ));
    }
    for (i, ep) in endpoints.iter().enumerate() {
        let p = Path::new("endpoints").index(i);
        let addrs = arr(ep, "addresses");
        if addrs.is_empty() {
            errs.push(FieldError::required(
                p.child("addresses"),
                "must contain at least 1 address",
            ));
        } else if addrs.len() > 100 {
            errs.push(FieldError::too_many(p.child("addresses"), addrs.len(), 100));
        }
        for (j, a) in addrs.iter().enumerate() {
            let a = a.as_str().unwrap_or("");
            let ap = p.child("addresses").index(j);
            match at {
                "IPv4" if a.parse::<std::net::Ipv4Addr>().is_err() => {
                    errs.push(FieldError::invalid_str(ap, a, "must be an IPv4 address"));
                }
                "IPv6" if a.parse::<std::net::Ipv6Addr>().is_err() => {
                    errs.push(FieldError::invalid_str(ap, a, "must be an IPv6 address"));
                }
                "FQDN" => {
                    for m in is_dns1123_subdomain(a.strip_suffix('.').unwrap_or(a)) {
                        errs.push(FieldError::invalid_str(&ap, a, m));
                    }
                }
                _ => {}
            }
        }
        if let Some(h) = str_at(ep, "hostname") {
            for m in is_dns1123_label(h) {
                errs.push(FieldError::invalid_str(p.child("hostname"), h, m));
            }
        }
    }
    let ports = arr(obj, "ports");
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = Path::new("ports").index(i);
        let name = str_or_empty(port, "name");
        if !name.is_empty() {
            for m in is_dns1123_label(name) {
                errs.push(FieldError::invalid_str(p.child("name"), name, m));
            }
        }
        if !names.insert(name) {
            errs.push(FieldError::duplicate(p.child("name"), &Value::from(name)));
        }
        protocol(port, &p.child("protocol"), errs);
        if let Some(n) = int_at(port, "port") {
            for m in is_valid_port_num(n) {
                errs.push(FieldError::invalid(p.child("port"), &Value::from(n), m));
            }
        }
    }
    if let Some(old) = old {
        immutable(
            obj.get("addressType"),
            old.get("addressType"),
            &Path::new("addressType"),
            errs,
        );
    }
}
