//! networking.k8s.io/v1: Ingress and IngressClass.

use serde_json::Value;

use super::json::{arr, has, int_at, str_at, str_or_empty};
use super::meta::immutable;
use super::names::{
    is_dns1035_label, is_dns1123_subdomain, is_valid_port_name, is_valid_port_num,
    is_wildcard_dns1123_subdomain,
};
use super::{FieldError, Path};

/// Validates an Ingress.
pub(crate) fn validate_ingress(obj: &Value, errs: &mut Vec<FieldError>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let path = Path::new("spec");
    let rules = arr(spec, "rules");
    let default_backend = spec.get("defaultBackend").filter(|v| !v.is_null());
    if rules.is_empty() && default_backend.is_none() {
        errs.push(FieldError::invalid(
            &path,
            spec.get("rules").unwrap_or(&Value::Null),
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if let Some(b) = default_backend {
        validate_backend(b, &path.child("defaultBackend"), errs);
    }
    for (i, rule) in rules.iter().enumerate() {
        let rp = path.child("rules").index(i);
        let host = str_or_empty(rule, "host");
        if !host.is_empty() {
            if host.parse::<std::net::IpAddr>().is_ok() {
                errs.push(FieldError::invalid_str(
                    rp.child("host"),
                    host,
                    "must be a DNS name, not an IP address",
                ));
            }
            let msgs = if host.contains('*') {
                is_wildcard_dns1123_subdomain(host)
            } else {
                is_dns1123_subdomain(host)
            };
            for m in msgs {
                errs.push(FieldError::invalid_str(rp.child("host"), host, m));
            }
        }
        let Some(http) = rule.get("http").filter(|v| !v.is_null()) else {
            continue;
        };
        let hp = rp.child("http");
        let paths = arr(http, "paths");
        if paths.is_empty() {
            errs.push(FieldError::required(hp.child("paths"), ""));
        }
        for (j, p) in paths.iter().enumerate() {
            let pp = hp.child("paths").index(j);
            let path_str = str_or_empty(p, "path");
            match str_at(p, "pathType") {
                None | Some("") => errs.push(FieldError::required(
                    pp.child("pathType"),
                    "pathType must be specified",
                )),
                Some("Exact") | Some("Prefix") => {
                    if !path_str.starts_with('/') {
                        errs.push(FieldError::invalid_str(
                            pp.child("path"),
                            path_str,
                            "must be an absolute path",
                        ));
                    }
                    if path_str.contains("//") {
                        errs.push(FieldError::invalid_str(
                            pp.child("path"),
                            path_str,
                            "must not contain '//'",
                        ));
                    }
                }
                Some("ImplementationSpecific") => {
                    if !path_str.is_empty() && !path_str.starts_with('/') {
                        errs.push(FieldError::invalid_str(
                            pp.child("path"),
                            path_str,
                            "must be an absolute path",
                        ));
                    }
                }
                Some(other) => errs.push(FieldError::not_supported(
                    pp.child("pathType"),
                    &Value::from(other),
                    &["Exact", "ImplementationSpecific", "Prefix"],
                )),
            }
            validate_backend(
                p.get("backend").unwrap_or(&Value::Null),
                &pp.child("backend"),
                errs,
            );
        }
    }
    for (i, tls) in arr(spec, "tls").iter().enumerate() {
        for (j, h) in arr(tls, "hosts").iter().enumerate() {
            let h = h.as_str().unwrap_or("");
            let msgs = if h.contains('*') {
                is_wildcard_dns1123_subdomain(h)
            } else {
                is_dns1123_subdomain(h)
            };
            for m in msgs {
                errs.push(FieldError::invalid_str(
                    path.child("tls").index(i).child("hosts").index(j),
                    h,
                    m,
                ));
            }
        }
    }
    if let Some(class) = str_at(spec, "ingressClassName") {
        for m in is_dns1123_subdomain(class) {
            errs.push(FieldError::invalid_str(
                path.child("ingressClassName"),
                class,
                m,
            ));
        }
    }
}

fn validate_backend(b: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    let service = b.get("service").filter(|v| !v.is_null());
    let resource = b.get("resource").filter(|v| !v.is_null());
    match (service, resource) {
        (Some(_), Some(_)) => errs.push(FieldError::invalid(
            path,
            b,
            "cannot set both resource and service backends",
        )),
        (None, None) => errs.push(FieldError::invalid(
            path,
            b,
            "resource or service backend is required",
        )),
        (Some(s), None) => {
            let sp = path.child("service");
            let name = str_or_empty(s, "name");
            if name.is_empty() {
                errs.push(FieldError::required(sp.child("name"), ""));
            } else {
                for m in is_dns1035_label(name) {
                    errs.push(FieldError::invalid_str(sp.child("name"), name, m));
                }
            }
            let port = s.get("port").unwrap_or(&Value::Null);
            let pp = sp.child("port");
            let pname = str_or_empty(port, "name");
            let pnum = int_at(port, "number").unwrap_or(0);
            match (pname.is_empty(), pnum == 0) {
                (false, false) => errs.push(FieldError::invalid(
                    &pp,
                    port,
                    "cannot set both port name & port number",
                )),
                (true, true) => {
                    errs.push(FieldError::required(&pp, "port name or number is required"))
                }
                (false, true) => {
                    for m in is_valid_port_name(pname) {
                        errs.push(FieldError::invalid_str(pp.child("name"), pname, m));
                    }
                }
                (true, false) => {
                    for m in is_valid_port_num(pnum) {
                        errs.push(FieldError::invalid(
                            pp.child("number"),
                            &Value::from(pnum),
                            m,
                        ));
                    }
                }
            }
        }
        (None, Some(r)) => {
            let rp = path.child("resource");
            for f in ["kind", "name"] {
                if str_or_empty(r, f).is_empty() {
                    errs.push(FieldError::required(rp.child(f), ""));
                }
            }
        }
    }
}

/// Validates an IngressClass.
pub(crate) fn validate_ingress_class(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let path = Path::new("spec");
    let controller = str_or_empty(spec, "controller");
    if controller.is_empty() {
        errs.push(FieldError::required(path.child("controller"), ""));
    } else {
        if controller.len() > 250 {
            errs.push(FieldError::too_long(path.child("controller"), 250));
        }
        let ok = controller
            .split_once('/')
            .is_some_and(|(host, rest)| !rest.is_empty() && is_dns1123_subdomain(host).is_empty());
        if !ok {
            errs.push(FieldError::invalid_str(
                path.child("controller"),
                controller,
                "must be a domain-prefixed path (such as \"acme.io/foo\")",
            ));
        }
    }
    if let Some(params) = spec.get("parameters").filter(|v| !v.is_null()) {
        let pp = path.child("parameters");
        for f in ["kind", "name"] {
            if str_or_empty(params, f).is_empty() {
                errs.push(FieldError::required(pp.child(f), ""));
            }
        }
        if let Some(scope) = str_at(params, "scope") {
            match scope {
                "Cluster" => {
                    if has(params, "namespace") {
                        errs.push(FieldError::forbidden(
                            pp.child("namespace"),
                            "`parameters.scope` is set to 'Cluster'",
                        ));
                    }
                }
                "Namespace" => {
                    if !has(params, "namespace") {
                        errs.push(FieldError::required(
                            pp.child("namespace"),
                            "`parameters.scope` is set to 'Namespace'",
                        ));
                    }
                }
                other => errs.push(FieldError::not_supported(
                    pp.child("scope"),
                    &Value::from(other),
                    &["Cluster", "Namespace"],
                )),
            }
        }
    }
    if let Some(old) = old {
        let old_spec = old.get("spec").unwrap_or(&Value::Null);
        immutable(
            spec.get("controller"),
            old_spec.get("controller"),
            &path.child("controller"),
            errs,
        );
    }
}
