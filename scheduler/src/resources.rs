//! Resource amounts: what a pod requests (Kubernetes' rules for init containers, sidecars
//! and overhead) and what a node offers.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use skiff_api::validation::quantity;

/// CPU (millicores) assumed for scoring when a container requests none, as kube-scheduler.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory (bytes) assumed for scoring when a container requests none, as kube-scheduler.
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// An amount of each resource: cpu in millicores, the rest in whole units.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// `cpu`, millicores.
    pub milli_cpu: i64,
    /// `memory`, bytes.
    pub memory: i64,
    /// `ephemeral-storage`, bytes.
    pub ephemeral_storage: i64,
    /// Every other resource (extended resources such as `nvidia.com/gpu`, hugepages).
    pub scalar: BTreeMap<String, i64>,
}

fn clamp(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

impl Resources {
    /// Parses a `requests`, `limits`, `overhead` or `allocatable` map. The error names the
    /// resource and the text that is not a quantity.
    pub fn parse(map: &BTreeMap<String, Quantity>) -> Result<Resources, String> {
        let mut r = Resources::default();
        for (name, q) in map {
            let bad = |e: quantity::QuantityError| format!("{name}: {:?}: {e}", q.0);
            match name.as_str() {
                "cpu" => r.milli_cpu = clamp(quantity::parse_milli(&q.0).map_err(bad)?),
                "memory" => r.memory = clamp(quantity::parse_value(&q.0).map_err(bad)?),
                "ephemeral-storage" => {
                    r.ephemeral_storage = clamp(quantity::parse_value(&q.0).map_err(bad)?)
                }
                // `pods` is a node's capacity, not a request: NodeInfo keeps it apart.
                "pods" => {}
                _ => {
                    let v = clamp(quantity::parse_value(&q.0).map_err(bad)?);
                    r.scalar.insert(name.clone(), v);
                }
            }
        }
        Ok(r)
    }

    /// Adds `other` to self.
    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = e.saturating_add(*v);
        }
    }

    /// Subtracts `other` from self.
    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_sub(other.milli_cpu);
        self.memory = self.memory.saturating_sub(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_sub(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            if let Some(e) = self.scalar.get_mut(k) {
                *e = e.saturating_sub(*v);
                if *e == 0 {
                    self.scalar.remove(k);
                }
            }
        }
    }

    /// Raises each amount of self to at least `other`'s.
    pub fn set_max(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = (*e).max(*v);
        }
    }
}

/// What a pod asks of a node, computed once per pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRequests {
    /// The effective requests the resource filter checks.
    pub requests: Resources,
    /// cpu and memory with kube-scheduler's defaults for containers that request none;
    /// what the scoring functions use, so that request-less pods still spread.
    pub non_zero: Resources,
}

fn container_requests(c: &Container, non_zero: bool) -> Result<Resources, String> {
    let mut r = match c.resources.as_ref().and_then(|r| r.requests.as_ref()) {
        Some(req) => Resources::parse(req).map_err(|e| format!("container {}: {e}", c.name))?,
        None => Resources::default(),
    };
    if non_zero {
        let requested = |name: &str| {
            c.resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .is_some_and(|m| m.contains_key(name))
        };
        if !requested("cpu") {
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if !requested("memory") {
            r.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    Ok(r)
}

fn effective(spec: &PodSpec, non_zero: bool) -> Result<Resources, String> {
    // App containers run together: their requests add up.
    let mut total = Resources::default();
    for c in &spec.containers {
        total.add(&container_requests(c, non_zero)?);
    }
    // Init containers run one at a time before the app containers, except sidecars
    // (restartPolicy Always), which keep running beside everything started after them.
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c, non_zero)?;
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&r);
            init_peak.set_max(&sidecars);
        } else {
            let mut during = r;
            during.add(&sidecars);
            init_peak.set_max(&during);
        }
    }
    total.add(&sidecars);
    total.set_max(&init_peak);
    if let Some(overhead) = &spec.overhead {
        total.add(&Resources::parse(overhead).map_err(|e| format!("overhead: {e}"))?);
    }
    Ok(total)
}

/// A pod's effective requests, as Kubernetes computes them: the larger of (the sum of the
/// app containers plus sidecars) and (the peak of any one init container plus the sidecars
/// started before it), plus the pod overhead. The error says which quantity is bad.
pub fn pod_requests(spec: &PodSpec) -> Result<PodRequests, String> {
    let requests = effective(spec, false)?;
    let all = effective(spec, true)?;
    let non_zero = Resources {
        milli_cpu: all.milli_cpu,
        memory: all.memory,
        ..Resources::default()
    };
    Ok(PodRequests { requests, non_zero })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    pub(crate) fn container(name: &str, cpu: &str, mem: &str) -> Container {
        let mut req = BTreeMap::new();
        if !cpu.is_empty() {
            req.insert("cpu".to_string(), Quantity(cpu.into()));
        }
        if !mem.is_empty() {
            req.insert("memory".to_string(), Quantity(mem.into()));
        }
        Container {
            name: name.into(),
            resources: Some(ResourceRequirements {
                requests: Some(req),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn init_containers_count_as_kubernetes_counts_them() {
        // (app containers, init containers, overhead cpu) → effective cpu, memory
        let mi = 1024 * 1024;
        type Case = (
            Vec<Container>,
            Vec<Container>,
            Option<&'static str>,
            i64,
            i64,
        );
        let cases: Vec<Case> = vec![
            (vec![container("a", "100m", "1Mi")], vec![], None, 100, mi),
            (
                vec![container("a", "100m", "1Mi"), container("b", "200m", "2Mi")],
                vec![],
                None,
                300,
                3 * mi,
            ),
            // an init container bigger than the app containers sets the peak
            (
                vec![container("a", "100m", "1Mi"), container("b", "200m", "2Mi")],
                vec![container("i", "1", "1Mi")],
                None,
                1000,
                3 * mi,
            ),
            // init containers run one after the other: the max, not the sum
            (
                vec![container("a", "100m", "")],
                vec![container("i1", "500m", ""), container("i2", "400m", "")],
                None,
                500,
                0,
            ),
            // overhead is added on top
            (
                vec![container("a", "100m", "1Mi")],
                vec![],
                Some("250m"),
                350,
                mi,
            ),
        ];
        for (i, (apps, inits, overhead, cpu, mem)) in cases.into_iter().enumerate() {
            let spec = PodSpec {
                containers: apps,
                init_containers: Some(inits),
                overhead: overhead
                    .map(|o| BTreeMap::from([("cpu".to_string(), Quantity(o.into()))])),
                ..Default::default()
            };
            let r = pod_requests(&spec).unwrap();
            assert_eq!(
                (r.requests.milli_cpu, r.requests.memory),
                (cpu, mem),
                "case {i}"
            );
        }
    }

    #[test]
    fn sidecars_run_beside_what_follows_them() {
        let mut sidecar = container("s", "200m", "");
        sidecar.restart_policy = Some("Always".into());
        let spec = PodSpec {
            containers: vec![container("a", "100m", "")],
            init_containers: Some(vec![sidecar, container("i", "500m", "")]),
            ..Default::default()
        };
        // init peak: 500m + 200m sidecar = 700m; running: 100m + 200m = 300m
        assert_eq!(pod_requests(&spec).unwrap().requests.milli_cpu, 700);
    }

    #[test]
    fn request_less_containers_score_with_defaults() {
        let spec = PodSpec {
            containers: vec![container("a", "", ""), container("b", "300m", "")],
            ..Default::default()
        };
        let r = pod_requests(&spec).unwrap();
        assert_eq!(r.requests.milli_cpu, 300);
        assert_eq!(r.requests.memory, 0);
        assert_eq!(r.non_zero.milli_cpu, 400);
        assert_eq!(r.non_zero.memory, 2 * DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn bad_quantities_are_named() {
        let spec = PodSpec {
            containers: vec![container("web", "lots", "")],
            ..Default::default()
        };
        let e = pod_requests(&spec).unwrap_err();
        assert!(
            e.contains("container web") && e.contains("cpu") && e.contains("lots"),
            "{e}"
        );
    }
}
