//! The Endpoints and EndpointSlice controllers: for each Service with a selector, the
//! addresses of the pods it selects, as a core/v1 Endpoints named like the Service and
//! as discovery.k8s.io/v1 EndpointSlices labelled `kubernetes.io/service-name`.
//!
//! Both are pure functions of the Service and the pods of its namespace
//! ([`endpoints_for`], [`desired_slices`]); the reconciles write only what differs from
//! the cache. A Service without a selector is left alone (its Endpoints are the user's),
//! and the apiserver keeps `default/kubernetes` itself.
//!
//! EndpointSlices are owned by their Service, so the garbage collector removes them with
//! it; Endpoints carry no owner reference (as in Kubernetes), so a third loop
//! ([`sweep_reconcile`]) deletes Endpoints whose Service is gone.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort as CorePort, EndpointSubset, Endpoints, ObjectReference, Pod,
    Service, ServicePort,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use skiff_client::controller::{Action, Controller};
use skiff_client::{reflector, watcher, Api, Client, ObjectRef, PostParams, ResourceExt, Store};

use crate::expectations::{Expectations, Seen};
use crate::informer::Informer;
use crate::pods::{self, controller_ref};
use crate::Result;

/// The Endpoints controller's name, as kube-controller-manager's.
pub const NAME: &str = "endpoints-controller";
/// The EndpointSlice controller's name, as kube-controller-manager's.
pub const SLICE_NAME: &str = "endpointslice-controller";

/// The label naming an EndpointSlice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming who manages an EndpointSlice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's value of [`MANAGED_BY_LABEL`], as Kubernetes'.
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// The label on the Endpoints and slices of a headless Service.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// Kubernetes' default `--max-endpoints-per-slice`.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// The selector of a Service the controllers manage; None for one without.
fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .filter(|s| !s.is_empty())
}

fn managed(svc: &Service) -> bool {
    let is_apiserver = svc.name() == "kubernetes" && svc.namespace() == Some("default");
    !is_apiserver && selector(svc).is_some()
}

fn selects(svc: &Service, pod: &Pod) -> bool {
    let Some(sel) = selector(svc) else {
        return false;
    };
    pod.namespace() == svc.namespace() && sel.iter().all(|(k, v)| pod.labels().get(k) == Some(v))
}

/// The container port a Service port sends to on `pod` (Kubernetes' `FindPort`): a
/// named targetPort is looked up among the pod's container ports of the same protocol.
pub fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(0)) => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

fn pod_ip(pod: &Pod) -> Option<&str> {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .filter(|ip| !ip.is_empty())
}

fn terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.namespace().map(str::to_string),
        name: Some(pod.name().to_string()),
        uid: pod.uid().map(str::to_string),
        ..ObjectReference::default()
    }
}

/// A pod's DNS hostname under a headless Service: its `hostname` when its `subdomain`
/// is the Service's name.
fn hostname(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    (spec.subdomain.as_deref() == Some(svc.name()))
        .then(|| spec.hostname.clone())
        .flatten()
        .filter(|h| !h.is_empty())
}

fn publish_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

fn service_ports(svc: &Service) -> &[ServicePort] {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or(&[])
}

fn labels_for(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.labels().clone();
    let headless = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None");
    if headless {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    labels
}

/// The subsets of a Service's Endpoints: ready pods in `addresses`, the others in
/// `notReadyAddresses` (all ready with `publishNotReadyAddresses`), grouped by the
/// ports they resolve to, sorted so that equal inputs give equal outputs.
pub fn endpoints_for(svc: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    // ports (sorted) -> (ready, not ready)
    type Group = (Vec<EndpointAddress>, Vec<EndpointAddress>);
    let mut groups: BTreeMap<Vec<(String, i32, String)>, Group> = BTreeMap::new();
    let tolerate = publish_not_ready(svc);
    for pod in pods.iter().filter(|p| selects(svc, p)) {
        let Some(ip) = pod_ip(pod) else { continue };
        if terminal(pod) || (pod.metadata.deletion_timestamp.is_some() && !tolerate) {
            continue;
        }
        let mut ports: Vec<(String, i32, String)> = service_ports(svc)
            .iter()
            .filter_map(|sp| {
                let n = find_port(pod, sp)?;
                Some((
                    sp.name.clone().unwrap_or_default(),
                    n,
                    sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                ))
            })
            .collect();
        if ports.is_empty() && !service_ports(svc).is_empty() {
            continue;
        }
        ports.sort();
        let address = EndpointAddress {
            ip: ip.to_string(),
            hostname: hostname(pod, svc),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(target_ref(pod)),
        };
        let group = groups.entry(ports).or_default();
        if tolerate || pods::is_ready(pod) {
            group.0.push(address);
        } else {
            group.1.push(address);
        }
    }
    groups
        .into_iter()
        .map(|(ports, (mut ready, mut not_ready))| {
            ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then(|| {
                    ports
                        .into_iter()
                        .map(|(name, port, protocol)| CorePort {
                            name: (!name.is_empty()).then_some(name),
                            port,
                            protocol: Some(protocol),
                            app_protocol: None,
                        })
                        .collect()
                }),
            }
        })
        .collect()
}

/// One desired EndpointSlice: its ports and endpoints (no name yet).
#[derive(Clone, Debug, PartialEq)]
pub struct SliceContent {
    /// The slice's ports.
    pub ports: Vec<EndpointPort>,
    /// Its endpoints, sorted by address.
    pub endpoints: Vec<Endpoint>,
}

/// The EndpointSlices a Service should have: endpoints grouped by the ports they
/// resolve to, at most [`MAX_ENDPOINTS_PER_SLICE`] per slice. Terminating pods stay in,
/// with `ready: false, terminating: true`, as Kubernetes keeps them.
pub fn desired_slices(svc: &Service, pods: &[Arc<Pod>]) -> Vec<SliceContent> {
    let mut groups: BTreeMap<Vec<(String, i32, String)>, Vec<Endpoint>> = BTreeMap::new();
    let tolerate = publish_not_ready(svc);
    for pod in pods.iter().filter(|p| selects(svc, p)) {
        let Some(ip) = pod_ip(pod) else { continue };
        if terminal(pod) {
            continue;
        }
        let mut ports: Vec<(String, i32, String)> = service_ports(svc)
            .iter()
            .filter_map(|sp| {
                Some((
                    sp.name.clone().unwrap_or_default(),
                    find_port(pod, sp)?,
                    sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                ))
            })
            .collect();
        if ports.is_empty() && !service_ports(svc).is_empty() {
            continue;
        }
        ports.sort();
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let serving = pods::is_ready(pod);
        groups.entry(ports).or_default().push(Endpoint {
            addresses: vec![ip.to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(tolerate || (serving && !terminating)),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            hostname: hostname(pod, svc),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(target_ref(pod)),
            ..Endpoint::default()
        });
    }
    let mut out = Vec::new();
    for (ports, mut endpoints) in groups {
        endpoints.sort_by(|a, b| a.addresses.cmp(&b.addresses));
        let ports: Vec<EndpointPort> = ports
            .into_iter()
            .map(|(name, port, protocol)| EndpointPort {
                name: Some(name),
                port: Some(port),
                protocol: Some(protocol),
                app_protocol: None,
            })
            .collect();
        for chunk in endpoints.chunks(MAX_ENDPOINTS_PER_SLICE) {
            out.push(SliceContent {
                ports: ports.clone(),
                endpoints: chunk.to_vec(),
            });
        }
    }
    // A Service that selects nothing still gets one empty slice with its ports, as
    // Kubernetes keeps a placeholder.
    if out.is_empty() {
        out.push(SliceContent {
            ports: Vec::new(),
            endpoints: Vec::new(),
        });
    }
    out
}

/// The Services of the pod's namespace that have a selector: a pod change (its labels
/// included, which may no longer match) concerns each of them.
fn services_for_pod(pod: &Pod, services: &Store<Service>) -> Vec<ObjectRef> {
    let ns = pod.namespace();
    services
        .list()
        .iter()
        .filter(|s| s.namespace() == ns && managed(s))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// What the Endpoints reconcile needs.
pub struct Ctx {
    client: Client,
    pods: Store<Pod>,
    endpoints: Store<Endpoints>,
}

/// Builds the Endpoints controller over Services, fed by the shared pod informer and
/// woken when an Endpoints object changes under it.
pub fn controller(client: &Client, pods: &mut Informer<Pod>) -> (Controller<Service>, Arc<Ctx>) {
    let (endpoints, writer) = reflector::store();
    let c = Controller::new(Api::<Service>::all(client.clone()), Default::default());
    let services = c.store();
    let c = c
        .watches_stream(pods.subscribe(), move |pod: &Pod| {
            services_for_pod(pod, &services)
        })
        .watches_stream(
            reflector::reflector(
                writer,
                watcher::watcher(Api::<Endpoints>::all(client.clone()), Default::default()),
            ),
            |e: &Endpoints| vec![ObjectRef::from_obj(e)],
        );
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        pods: pods.store(),
        endpoints,
    });
    (c, ctx)
}

/// One reconcile of the Endpoints of one Service.
pub async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action> {
    if !managed(&svc) || svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = svc.namespace().unwrap_or("default").to_string();
    let pods = ctx.pods.list();
    let subsets = endpoints_for(&svc, &pods);
    let labels = labels_for(&svc);
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
    let current = ctx.endpoints.get(Some(&ns), svc.name());
    let subsets_opt = (!subsets.is_empty()).then_some(subsets);
    match current {
        Some(cur)
            if cur.subsets.as_ref().filter(|s| !s.is_empty()) == subsets_opt.as_ref()
                && cur.labels() == &labels =>
        {
            Ok(Action::await_change())
        }
        Some(cur) => {
            let mut next = (*cur).clone();
            next.subsets = subsets_opt;
            next.metadata.labels = Some(labels);
            match api.replace(svc.name(), &PostParams::default(), &next).await {
                Ok(_) => Ok(Action::await_change()),
                Err(e) => Err(e.into()),
            }
        }
        None => {
            let e = Endpoints {
                metadata: ObjectMeta {
                    name: Some(svc.name().to_string()),
                    namespace: Some(ns.clone()),
                    labels: Some(labels),
                    ..ObjectMeta::default()
                },
                subsets: subsets_opt,
            };
            match api.create(&PostParams::default(), &e).await {
                Ok(_) => Ok(Action::await_change()),
                // The cache lags; the watch brings it and the next reconcile updates.
                Err(e) if e.is_already_exists() => Ok(Action::await_change()),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// What the Endpoints sweep needs.
pub struct SweepCtx {
    client: Client,
    services: Store<Service>,
}

/// Builds the loop that deletes Endpoints whose Service is gone.
pub fn sweeper(client: &Client) -> (Controller<Endpoints>, Arc<SweepCtx>) {
    let (services, writer) = reflector::store();
    let c = Controller::new(Api::<Endpoints>::all(client.clone()), Default::default())
        .watches_stream(
            reflector::reflector(
                writer,
                watcher::watcher(Api::<Service>::all(client.clone()), Default::default()),
            ),
            |s: &Service| vec![ObjectRef::from_obj(s)],
        );
    (
        c,
        Arc::new(SweepCtx {
            client: client.clone(),
            services,
        }),
    )
}

/// Deletes an Endpoints object whose Service no longer exists (Kubernetes does so when
/// the Service is deleted and, for leftovers, at start).
pub async fn sweep_reconcile(e: Arc<Endpoints>, ctx: Arc<SweepCtx>) -> Result<Action> {
    let ns = e.namespace().unwrap_or("default").to_string();
    if ctx.services.get(Some(&ns), e.name()).is_some() {
        return Ok(Action::await_change());
    }
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
    // Check afresh: a Service just created may not be cached yet.
    if Api::<Service>::namespaced(ctx.client.clone(), &ns)
        .get_opt(e.name())
        .await?
        .is_some()
    {
        return Ok(Action::await_change());
    }
    match api.delete(e.name(), &Default::default()).await {
        Ok(_) => {
            tracing::info!(endpoints = %ObjectRef::from_obj(e.as_ref()), "deleted the Endpoints of a gone Service");
            Ok(Action::await_change())
        }
        Err(err) if err.is_not_found() => Ok(Action::await_change()),
        Err(err) => Err(err.into()),
    }
}

/// What the EndpointSlice reconcile needs.
pub struct SliceCtx {
    client: Client,
    expectations: Expectations,
    pods: Store<Pod>,
    slices: Store<EndpointSlice>,
}

/// Builds the EndpointSlice controller over Services, fed by the shared pod informer
/// and woken when one of its slices changes.
pub fn slice_controller(
    client: &Client,
    pods: &mut Informer<Pod>,
) -> (Controller<Service>, Arc<SliceCtx>) {
    let (slices, writer) = reflector::store();
    let c = Controller::new(Api::<Service>::all(client.clone()), Default::default());
    let services = c.store();
    let c = c
        .watches_stream(pods.subscribe(), move |pod: &Pod| {
            services_for_pod(pod, &services)
        })
        .watches_stream(
            reflector::reflector(
                writer,
                watcher::watcher(
                    Api::<EndpointSlice>::all(client.clone()),
                    watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}")),
                ),
            ),
            |s: &EndpointSlice| match s.labels().get(SERVICE_NAME_LABEL) {
                Some(svc) => vec![ObjectRef::new(s.namespace(), svc)],
                None => Vec::new(),
            },
        );
    let ctx = Arc::new(SliceCtx {
        client: client.clone(),
        expectations: Expectations::default(),
        pods: pods.store(),
        slices,
    });
    (c, ctx)
}

fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = labels_for(svc);
    labels.insert(SERVICE_NAME_LABEL.into(), svc.name().to_string());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    labels
}

fn content_of(slice: &EndpointSlice) -> SliceContent {
    SliceContent {
        ports: slice.ports.clone().unwrap_or_default(),
        endpoints: slice.endpoints.clone(),
    }
}

/// What to do to a Service's slices: see [`plan_slices`].
#[derive(Debug, Default)]
pub struct SlicePlan {
    /// Existing slices to rewrite with new content.
    pub updates: Vec<(Arc<EndpointSlice>, SliceContent)>,
    /// Slices to create.
    pub creates: Vec<SliceContent>,
    /// Slices to delete.
    pub deletes: Vec<Arc<EndpointSlice>>,
}

/// Pairs desired slices with existing ones: an existing slice with the same content is
/// kept as is, then the rest are rewritten in name order, created or deleted.
pub fn plan_slices(existing: &[Arc<EndpointSlice>], desired: Vec<SliceContent>) -> SlicePlan {
    let mut spare: Vec<Arc<EndpointSlice>> = existing.to_vec();
    spare.sort_by(|a, b| a.name().cmp(b.name()));
    let mut unplaced = Vec::new();
    for want in desired {
        match spare.iter().position(|s| content_of(s) == want) {
            Some(i) => {
                spare.remove(i);
            }
            None => unplaced.push(want),
        }
    }
    let mut plan = SlicePlan::default();
    for want in unplaced {
        if spare.is_empty() {
            plan.creates.push(want);
        } else {
            plan.updates.push((spare.remove(0), want));
        }
    }
    plan.deletes = spare;
    plan
}

/// One reconcile of the EndpointSlices of one Service.
pub async fn slice_reconcile(svc: Arc<Service>, ctx: Arc<SliceCtx>) -> Result<Action> {
    if !managed(&svc) || svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = svc.namespace().unwrap_or("default").to_string();
    let uid = svc.uid().unwrap_or("");
    let key = ObjectRef::from_obj(svc.as_ref());
    // Until the cache shows the slices this controller created and no longer shows the
    // ones it deleted, counting them again would make duplicates.
    let satisfied = ctx.expectations.satisfied(
        &key,
        |name| match ctx.slices.get(Some(&ns), name) {
            Some(s) => Seen::Present {
                uid: s.uid().unwrap_or("").to_string(),
                deleting: s.metadata.deletion_timestamp.is_some(),
            },
            None => Seen::Absent,
        },
        |slice_uid| ctx.slices.list().iter().any(|s| s.uid() == Some(slice_uid)),
    );
    if !satisfied {
        return Ok(Action::requeue(std::time::Duration::from_secs(5)));
    }
    let existing: Vec<Arc<EndpointSlice>> = ctx
        .slices
        .list()
        .into_iter()
        .filter(|s| {
            s.namespace() == Some(ns.as_str())
                && s.labels().get(SERVICE_NAME_LABEL).map(String::as_str) == Some(svc.name())
        })
        .collect();
    // A slice left from an earlier Service of the same name goes; the GC would too.
    let (mine, stale): (Vec<_>, Vec<_>) = existing
        .into_iter()
        .partition(|s| s.owner_references().iter().any(|o| o.uid == uid));
    let desired = desired_slices(&svc, &ctx.pods.list());
    let labels = slice_labels(&svc);
    let SlicePlan {
        updates,
        creates,
        mut deletes,
    } = plan_slices(&mine, desired);
    deletes.extend(stale);
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ns);
    let mut relabel: Vec<Arc<EndpointSlice>> = mine
        .iter()
        .filter(|s| s.labels() != &labels)
        .filter(|s| !updates.iter().any(|(u, _)| u.name() == s.name()))
        .filter(|s| !deletes.iter().any(|d| d.name() == s.name()))
        .cloned()
        .collect();
    for (cur, want) in updates {
        let mut next = (*cur).clone();
        next.metadata.labels = Some(labels.clone());
        next.ports = Some(want.ports);
        next.endpoints = want.endpoints;
        api.replace(cur.name(), &PostParams::default(), &next)
            .await?;
    }
    for cur in relabel.drain(..) {
        let mut next = (*cur).clone();
        next.metadata.labels = Some(labels.clone());
        api.replace(cur.name(), &PostParams::default(), &next)
            .await?;
    }
    for want in creates {
        let slice = EndpointSlice {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}-", svc.name())),
                namespace: Some(ns.clone()),
                labels: Some(labels.clone()),
                owner_references: Some(vec![controller_ref(svc.as_ref())]),
                ..ObjectMeta::default()
            },
            address_type: "IPv4".into(),
            endpoints: want.endpoints,
            ports: Some(want.ports),
        };
        let created = api.create(&PostParams::default(), &slice).await?;
        ctx.expectations.expect_add(&key, created.name());
    }
    for gone in deletes {
        match api.delete(gone.name(), &Default::default()).await {
            Ok(_) => ctx
                .expectations
                .expect_delete(&key, gone.uid().unwrap_or("")),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(publish_not_ready: bool) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "s1"},
            "spec": {
                "selector": {"app": "web"},
                "publishNotReadyAddresses": publish_not_ready,
                "ports": [
                    {"name": "http", "port": 80, "targetPort": "http"},
                    {"name": "metrics", "port": 9090, "targetPort": 9090},
                ],
            },
        }))
        .unwrap()
    }

    fn pod(
        name: &str,
        app: &str,
        http: Option<i32>,
        ip: &str,
        ready: bool,
        deleting: bool,
    ) -> Arc<Pod> {
        let ports: Vec<_> = http
            .map(|p| json!({"name": "http", "containerPort": p}))
            .into_iter()
            .collect();
        let mut meta = json!({"name": name, "namespace": "ns", "uid": format!("u-{name}"), "labels": {"app": app}});
        if deleting {
            meta["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        Arc::new(
            serde_json::from_value(json!({
                "metadata": meta,
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": ports}]},
                "status": {
                    "phase": "Running",
                    "podIP": ip,
                    "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}],
                },
            }))
            .unwrap(),
        )
    }

    #[test]
    fn named_target_ports_resolve_per_pod() {
        let s = svc(false);
        let a = pod("a", "web", Some(8080), "10.0.0.1", true, false);
        let http = &service_ports(&s)[0];
        assert_eq!(find_port(&a, http), Some(8080));
        assert_eq!(find_port(&a, &service_ports(&s)[1]), Some(9090));
        let none = pod("n", "web", None, "10.0.0.9", true, false);
        assert_eq!(find_port(&none, http), None);
    }

    #[test]
    fn endpoints_split_ready_and_not_ready_and_group_by_ports() {
        let pods = vec![
            pod("a", "web", Some(8080), "10.0.0.1", true, false),
            pod("b", "web", Some(8081), "10.0.0.2", false, false),
            pod("c", "web", Some(8080), "", true, false),
            pod("d", "other", Some(8080), "10.0.0.4", true, false),
            pod("e", "web", Some(8080), "10.0.0.5", true, true),
        ];
        let subsets = endpoints_for(&svc(false), &pods);
        assert_eq!(subsets.len(), 2, "{subsets:?}");
        let ips = |a: &Option<Vec<EndpointAddress>>| -> Vec<String> {
            a.iter().flatten().map(|a| a.ip.clone()).collect()
        };
        assert_eq!(ips(&subsets[0].addresses), ["10.0.0.1"]);
        assert_eq!(subsets[0].ports.as_ref().unwrap()[0].port, 8080);
        assert_eq!(ips(&subsets[1].not_ready_addresses), ["10.0.0.2"]);
        let published = endpoints_for(&svc(true), &pods);
        assert_eq!(ips(&published[0].addresses), ["10.0.0.1", "10.0.0.5"]);
        assert_eq!(ips(&published[1].addresses), ["10.0.0.2"]);
    }

    #[test]
    fn slices_keep_terminating_endpoints_and_plan_reuses_names() {
        let pods = vec![
            pod("a", "web", Some(8080), "10.0.0.1", true, false),
            pod("e", "web", Some(8080), "10.0.0.5", true, true),
        ];
        let want = desired_slices(&svc(false), &pods);
        assert_eq!(want.len(), 1);
        let c = want[0].endpoints[1].conditions.clone().unwrap();
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(false), Some(true), Some(true))
        );
        assert_eq!(
            desired_slices(&svc(false), &[]).len(),
            1,
            "an empty placeholder"
        );

        let existing = |name: &str, content: &SliceContent| {
            Arc::new(EndpointSlice {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..ObjectMeta::default()
                },
                address_type: "IPv4".into(),
                endpoints: content.endpoints.clone(),
                ports: Some(content.ports.clone()),
            })
        };
        let same = plan_slices(&[existing("web-a", &want[0])], want.clone());
        assert!(same.updates.is_empty() && same.creates.is_empty() && same.deletes.is_empty());
        let empty = SliceContent {
            ports: Vec::new(),
            endpoints: Vec::new(),
        };
        let plan = plan_slices(
            &[existing("web-b", &empty), existing("web-a", &empty)],
            want,
        );
        assert_eq!(plan.updates.len(), 1);
        assert_eq!(plan.updates[0].0.name(), "web-a");
        assert_eq!(plan.deletes.len(), 1);
        assert!(plan.creates.is_empty());
    }
}
