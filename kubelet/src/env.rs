//! A container's environment as Kubernetes builds it (pure): the service variables of
//! the pod's namespace, then `envFrom`, then `env` (with `valueFrom` and `$(VAR)`
//! expansion), each later source overriding an earlier one.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, Service};

use crate::{Error, Result};

/// What `valueFrom`, `envFrom` and the service variables read, fetched beforehand.
#[derive(Clone, Debug, Default)]
pub struct EnvSources {
    /// ConfigMaps of the pod's namespace by name (absent: not found).
    pub config_maps: HashMap<String, BTreeMap<String, String>>,
    /// Secrets of the pod's namespace by name, values decoded.
    pub secrets: HashMap<String, BTreeMap<String, Vec<u8>>>,
    /// Services whose variables the container gets (the namespace's when
    /// enableServiceLinks, and `kubernetes` of default).
    pub services: Vec<Service>,
    /// The pod's IP.
    pub pod_ip: Option<String>,
    /// The node's IP.
    pub host_ip: Option<String>,
    /// The node's CPU in millicores (limits.cpu when the container has none).
    pub node_cpu_milli: i128,
    /// The node's memory in bytes (limits.memory when the container has none).
    pub node_memory: i128,
}

/// The names of the ConfigMaps and Secrets a container's env and envFrom refer to.
pub fn references(container: &Container) -> (Vec<String>, Vec<String>) {
    let mut cms = Vec::new();
    let mut secrets = Vec::new();
    for e in container.env.iter().flatten() {
        if let Some(vf) = &e.value_from {
            if let Some(r) = &vf.config_map_key_ref {
                cms.push(r.name.clone());
            }
            if let Some(r) = &vf.secret_key_ref {
                secrets.push(r.name.clone());
            }
        }
    }
    for f in container.env_from.iter().flatten() {
        if let Some(r) = &f.config_map_ref {
            cms.push(r.name.clone());
        }
        if let Some(r) = &f.secret_ref {
            secrets.push(r.name.clone());
        }
    }
    cms.sort();
    cms.dedup();
    secrets.sort();
    secrets.dedup();
    (cms, secrets)
}

fn env_name(service: &str) -> String {
    service.to_uppercase().replace('-', "_")
}

/// Kubernetes' service variables (`<SVC>_SERVICE_HOST`, `<SVC>_PORT_<port>_<PROTO>…`)
/// for services with a cluster IP, in the order given.
pub fn service_vars(services: &[Service]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        let Some(ip) = spec
            .cluster_ip
            .clone()
            .filter(|ip| !ip.is_empty() && ip != "None")
        else {
            continue;
        };
        let ports = spec.ports.clone().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        let name = env_name(svc.metadata.name.as_deref().unwrap_or_default());
        out.push((format!("{name}_SERVICE_HOST"), ip.clone()));
        out.push((format!("{name}_SERVICE_PORT"), first.port.to_string()));
        for p in &ports {
            if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!("{name}_SERVICE_PORT_{}", env_name(pn)),
                    p.port.to_string(),
                ));
            }
        }
        let proto = |p: &k8s_openapi::api::core::v1::ServicePort| {
            p.protocol.clone().unwrap_or_else(|| "TCP".into())
        };
        let url = |p: &k8s_openapi::api::core::v1::ServicePort| {
            let host = if ip.contains(':') {
                format!("[{ip}]")
            } else {
                ip.clone()
            };
            format!("{}://{host}:{}", proto(p).to_lowercase(), p.port)
        };
        out.push((format!("{name}_PORT"), url(first)));
        for p in &ports {
            let prefix = format!("{name}_PORT_{}_{}", p.port, proto(p).to_uppercase());
            out.push((prefix.clone(), url(p)));
            out.push((format!("{prefix}_PROTO"), proto(p).to_lowercase()));
            out.push((format!("{prefix}_PORT"), p.port.to_string()));
            out.push((format!("{prefix}_ADDR"), ip.clone()));
        }
    }
    out
}

pub(crate) fn field_ref(pod: &Pod, path: &str, sources: &EnvSources) -> Result<String> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    let from_map = |map: &Option<BTreeMap<String, String>>, rest: &str| -> Result<String> {
        let key = rest
            .strip_prefix("['")
            .and_then(|r| r.strip_suffix("']"))
            .ok_or_else(|| Error::Spec(format!("fieldRef {path:?}: malformed subscript")))?;
        Ok(map
            .as_ref()
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_default())
    };
    Ok(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => sources.pod_ip.clone().unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => sources.host_ip.clone().unwrap_or_default(),
        p => {
            if let Some(rest) = p.strip_prefix("metadata.labels") {
                from_map(&m.labels, rest)?
            } else if let Some(rest) = p.strip_prefix("metadata.annotations") {
                from_map(&m.annotations, rest)?
            } else {
                return Err(Error::Spec(format!("fieldRef {path:?} is not supported")));
            }
        }
    })
}

/// A `resourceFieldRef` value: the container's request or limit (the node's capacity
/// for an unset limit), divided by the divisor and rounded up.
pub fn resource_field(
    container: &Container,
    resource: &str,
    divisor: Option<&str>,
    sources: &EnvSources,
) -> Result<String> {
    use skiff_api::validation::quantity;
    let (which, kind) = resource
        .split_once('.')
        .ok_or_else(|| Error::Spec(format!("resourceFieldRef {resource:?} is not supported")))?;
    let r = container.resources.as_ref();
    let map = match which {
        "limits" => r.and_then(|r| r.limits.as_ref()),
        "requests" => r.and_then(|r| r.requests.as_ref()),
        _ => {
            return Err(Error::Spec(format!(
                "resourceFieldRef {resource:?} is not supported"
            )))
        }
    };
    let value = map.and_then(|m| m.get(kind)).map(|q| q.0.clone());
    let bad =
        |e: quantity::QuantityError| Error::Spec(format!("resourceFieldRef {resource:?}: {e}"));
    let divisor = divisor.unwrap_or("1");
    match kind {
        "cpu" => {
            let milli = match value {
                Some(v) => quantity::parse_milli(&v).map_err(bad)?,
                None if which == "limits" => sources.node_cpu_milli,
                None => 0,
            };
            let d = quantity::parse_milli(divisor).map_err(bad)?.max(1);
            Ok(((milli + d - 1) / d).to_string())
        }
        "memory" | "ephemeral-storage" => {
            let bytes = match value {
                Some(v) => quantity::parse_value(&v).map_err(bad)?,
                None if which == "limits" && kind == "memory" => sources.node_memory,
                None => 0,
            };
            let d = quantity::parse_value(divisor).map_err(bad)?.max(1);
            Ok(((bytes + d - 1) / d).to_string())
        }
        _ => Err(Error::Spec(format!(
            "resourceFieldRef {resource:?} is not supported"
        ))),
    }
}

fn set(vars: &mut Vec<(String, String)>, k: String, v: String) {
    if let Some(slot) = vars.iter_mut().find(|(name, _)| *name == k) {
        slot.1 = v;
    } else {
        vars.push((k, v));
    }
}

fn value_of(
    pod: &Pod,
    container: &Container,
    e: &EnvVar,
    vars: &[(String, String)],
    sources: &EnvSources,
    ns: &str,
) -> Result<Option<String>> {
    let Some(vf) = &e.value_from else {
        return Ok(Some(crate::spec::expand(
            e.value.as_deref().unwrap_or_default(),
            vars,
        )));
    };
    if let Some(f) = &vf.field_ref {
        return field_ref(pod, &f.field_path, sources).map(Some);
    }
    if let Some(r) = &vf.resource_field_ref {
        return resource_field(
            container,
            &r.resource,
            r.divisor.as_ref().map(|d| d.0.as_str()),
            sources,
        )
        .map(Some);
    }
    if let Some(r) = &vf.config_map_key_ref {
        let optional = r.optional == Some(true);
        return match sources.config_maps.get(&r.name) {
            None if optional => Ok(None),
            None => Err(Error::Spec(format!("configmap \"{}\" not found", r.name))),
            Some(data) => match data.get(&r.key) {
                Some(v) => Ok(Some(v.clone())),
                None if optional => Ok(None),
                None => Err(Error::Spec(format!(
                    "couldn't find key {} in ConfigMap {ns}/{}",
                    r.key, r.name
                ))),
            },
        };
    }
    if let Some(r) = &vf.secret_key_ref {
        let optional = r.optional == Some(true);
        return match sources.secrets.get(&r.name) {
            None if optional => Ok(None),
            None => Err(Error::Spec(format!("secret \"{}\" not found", r.name))),
            Some(data) => match data.get(&r.key) {
                Some(v) => Ok(Some(String::from_utf8_lossy(v).into_owned())),
                None if optional => Ok(None),
                None => Err(Error::Spec(format!(
                    "couldn't find key {} in Secret {ns}/{}",
                    r.key, r.name
                ))),
            },
        };
    }
    Err(Error::Spec(format!(
        "env {:?}: valueFrom names no source",
        e.name
    )))
}

/// The variables the pod gives a container, in order (before the image's are merged
/// under them): service variables, envFrom, env.
pub fn container_vars(
    pod: &Pod,
    container: &Container,
    sources: &EnvSources,
) -> Result<Vec<(String, String)>> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut vars: Vec<(String, String)> = Vec::new();
    for (k, v) in service_vars(&sources.services) {
        set(&mut vars, k, v);
    }
    for f in container.env_from.iter().flatten() {
        let prefix = f.prefix.clone().unwrap_or_default();
        if let Some(r) = &f.config_map_ref {
            match sources.config_maps.get(&r.name) {
                Some(data) => {
                    for (k, v) in data {
                        set(&mut vars, format!("{prefix}{k}"), v.clone());
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(Error::Spec(format!("configmap \"{}\" not found", r.name))),
            }
        }
        if let Some(r) = &f.secret_ref {
            match sources.secrets.get(&r.name) {
                Some(data) => {
                    for (k, v) in data {
                        set(
                            &mut vars,
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(v).into_owned(),
                        );
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(Error::Spec(format!("secret \"{}\" not found", r.name))),
            }
        }
    }
    for e in container.env.iter().flatten() {
        if let Some(v) = value_of(pod, container, e, &vars, sources, &ns)? {
            set(&mut vars, e.name.clone(), v);
        }
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ConfigMapEnvSource, ConfigMapKeySelector, EnvFromSource, EnvVarSource, ObjectFieldSelector,
        ResourceFieldSelector, ResourceRequirements, SecretKeySelector, ServicePort, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn svc(name: &str, ip: &str, ports: &[(Option<&str>, i32)]) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, p)| ServicePort {
                            name: n.map(str::to_string),
                            port: *p,
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn service_variables_follow_kubernetes() {
        let vars = service_vars(&[
            svc(
                "redis-master",
                "10.0.0.11",
                &[(Some("db"), 6379), (None, 7000)],
            ),
            svc("headless", "None", &[(None, 80)]),
        ]);
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("REDIS_MASTER_SERVICE_HOST"), Some("10.0.0.11"));
        assert_eq!(get("REDIS_MASTER_SERVICE_PORT"), Some("6379"));
        assert_eq!(get("REDIS_MASTER_SERVICE_PORT_DB"), Some("6379"));
        assert_eq!(get("REDIS_MASTER_PORT"), Some("tcp://10.0.0.11:6379"));
        assert_eq!(
            get("REDIS_MASTER_PORT_7000_TCP"),
            Some("tcp://10.0.0.11:7000")
        );
        assert_eq!(get("REDIS_MASTER_PORT_6379_TCP_PROTO"), Some("tcp"));
        assert_eq!(get("REDIS_MASTER_PORT_6379_TCP_PORT"), Some("6379"));
        assert_eq!(get("REDIS_MASTER_PORT_6379_TCP_ADDR"), Some("10.0.0.11"));
        assert!(vars.iter().all(|(k, _)| !k.starts_with("HEADLESS")));
    }

    fn env(name: &str, source: EnvVarSource) -> EnvVar {
        EnvVar {
            name: name.into(),
            value_from: Some(source),
            ..Default::default()
        }
    }

    #[test]
    fn value_from_sources_and_env_from() {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let container = Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                limits: Some([("memory".to_string(), Quantity("64Mi".into()))].into()),
                ..Default::default()
            }),
            env_from: Some(vec![EnvFromSource {
                prefix: Some("CM_".into()),
                config_map_ref: Some(ConfigMapEnvSource {
                    name: "cm".into(),
                    optional: None,
                }),
                ..Default::default()
            }]),
            env: Some(vec![
                env(
                    "NAME",
                    EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "metadata.name".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ),
                env(
                    "APP",
                    EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "metadata.labels['app']".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ),
                env(
                    "IP",
                    EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "status.podIP".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ),
                env(
                    "MEM",
                    EnvVarSource {
                        resource_field_ref: Some(ResourceFieldSelector {
                            resource: "limits.memory".into(),
                            divisor: Some(Quantity("1Mi".into())),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ),
                env(
                    "CPU",
                    EnvVarSource {
                        resource_field_ref: Some(ResourceFieldSelector {
                            resource: "limits.cpu".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ),
                env(
                    "KEY",
                    EnvVarSource {
                        config_map_key_ref: Some(ConfigMapKeySelector {
                            name: "cm".into(),
                            key: "k".into(),
                            optional: None,
                        }),
                        ..Default::default()
                    },
                ),
                env(
                    "PASS",
                    EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: "s".into(),
                            key: "password".into(),
                            optional: None,
                        }),
                        ..Default::default()
                    },
                ),
                env(
                    "GONE",
                    EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: "missing".into(),
                            key: "x".into(),
                            optional: Some(true),
                        }),
                        ..Default::default()
                    },
                ),
                EnvVar {
                    name: "REF".into(),
                    value: Some("$(NAME)-$(CM_k)".into()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let sources = EnvSources {
            config_maps: [(
                "cm".to_string(),
                [("k".to_string(), "v".to_string())].into(),
            )]
            .into(),
            secrets: [(
                "s".to_string(),
                [("password".to_string(), b"hunter2".to_vec())].into(),
            )]
            .into(),
            pod_ip: Some("10.1.2.3".into()),
            node_cpu_milli: 2500,
            ..Default::default()
        };
        let vars = container_vars(&pod, &container, &sources).unwrap();
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("CM_k"), Some("v"));
        assert_eq!(get("NAME"), Some("p"));
        assert_eq!(get("APP"), Some("web"));
        assert_eq!(get("IP"), Some("10.1.2.3"));
        assert_eq!(get("MEM"), Some("64"));
        assert_eq!(get("CPU"), Some("3"));
        assert_eq!(get("KEY"), Some("v"));
        assert_eq!(get("PASS"), Some("hunter2"));
        assert_eq!(get("GONE"), None);
        assert_eq!(get("REF"), Some("p-v"));

        let mut strict = container.clone();
        strict.env = Some(vec![env(
            "X",
            EnvVarSource {
                config_map_key_ref: Some(ConfigMapKeySelector {
                    name: "cm".into(),
                    key: "nope".into(),
                    optional: None,
                }),
                ..Default::default()
            },
        )]);
        let err = container_vars(&pod, &strict, &sources)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "couldn't find key nope in ConfigMap ns/cm");
        assert_eq!(
            references(&container),
            (
                vec!["cm".to_string()],
                vec!["missing".to_string(), "s".to_string()]
            )
        );
    }
}
