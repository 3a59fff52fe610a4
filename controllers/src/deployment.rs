//! The Deployment controller: one ReplicaSet per pod template, named by the template's
//! hash, rolled from old to new by the RollingUpdate (maxSurge, maxUnavailable) or
//! Recreate strategy, with the `deployment.kubernetes.io/revision` annotations that
//! `kubectl rollout status|history|undo` read and write.
//!
//! A rollback (`kubectl rollout undo`) is done by kubectl: it copies an old
//! ReplicaSet's template into the Deployment; this controller then finds that
//! ReplicaSet as the new one and gives it the next revision, as Kubernetes does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Value};
use skiff_client::controller::{Action, Controller};
use skiff_client::{Api, Client, ObjectRef, Patch, PatchParams, PostParams, ResourceExt, Store};

use crate::events::{EventType, Recorder};
use crate::informer::Informer;
use crate::pods::controller_ref;
use crate::replicaset::selector_of;
use crate::status::patch_status;
use crate::Result;

/// The controller's name, as kube-controller-manager's.
pub const NAME: &str = "deployment-controller";
/// The label that tells a Deployment's ReplicaSets apart.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The revision of a Deployment and of each of its ReplicaSets.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions a ReplicaSet had (after rollbacks).
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's replicas when the ReplicaSet was last scaled.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// The Deployment's replicas plus maxSurge.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// Annotations of a Deployment not copied onto its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// What the Deployment reconcile needs.
pub struct Ctx {
    client: Client,
    sets: Store<ReplicaSet>,
    pods: Store<Pod>,
    recorder: Recorder,
}

/// Builds the controller, fed by shared ReplicaSet and pod informers.
pub fn controller(
    client: &Client,
    sets: &mut Informer<ReplicaSet>,
    pods: &mut Informer<Pod>,
) -> (Controller<Deployment>, Arc<Ctx>) {
    let c = Controller::new(Api::<Deployment>::all(client.clone()), Default::default());
    let deployments = c.store();
    let set_store = sets.store();
    // Pods matter to Recreate, which waits for the old ones to be gone.
    let pod_to_deployment = move |p: &Pod| -> Vec<ObjectRef> {
        p.controller_owner()
            .filter(|o| o.kind == "ReplicaSet")
            .and_then(|o| set_store.get(p.namespace(), &o.name))
            .and_then(|rs| {
                rs.controller_owner()
                    .filter(|o| o.kind == "Deployment")
                    .map(|o| ObjectRef::new(p.namespace(), &o.name))
            })
            .into_iter()
            .collect()
    };
    let c = c
        .watches_stream(sets.subscribe(), move |rs: &ReplicaSet| {
            owner_deployments(rs, &deployments)
        })
        .watches_stream(pods.subscribe(), pod_to_deployment);
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        sets: sets.store(),
        pods: pods.store(),
        recorder: Recorder::new(client.clone(), NAME),
    });
    (c, ctx)
}

fn owner_deployments(rs: &ReplicaSet, deployments: &Store<Deployment>) -> Vec<ObjectRef> {
    let ns = rs.namespace();
    if let Some(o) = rs.controller_owner() {
        return if o.kind == "Deployment" {
            vec![ObjectRef::new(ns, &o.name)]
        } else {
            Vec::new()
        };
    }
    deployments
        .list()
        .iter()
        .filter(|d| d.namespace() == ns)
        .filter(|d| {
            selector_of(d.spec.as_ref().map(|s| &s.selector)).is_ok_and(|s| s.matches(rs.labels()))
        })
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

/// An int-or-percent of `total`, rounded up or down (Kubernetes'
/// `GetScaledValueFromIntOrPercent`).
pub fn scaled_value(v: Option<&IntOrString>, total: i32, round_up: bool, default: &str) -> i32 {
    let s = match v {
        Some(IntOrString::Int(i)) => return *i,
        Some(IntOrString::String(s)) => s.as_str(),
        None => default,
    };
    let Some(pct) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
        return s.parse().unwrap_or(0);
    };
    let scaled = i64::from(total) * pct;
    let v = if round_up {
        (scaled + 99) / 100
    } else {
        scaled / 100
    };
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// maxSurge and maxUnavailable of a RollingUpdate Deployment; never both 0 (Kubernetes'
/// `ResolveFenceposts`), and maxUnavailable never above the replicas.
pub fn surge_and_unavailable(d: &Deployment) -> (i32, i32) {
    let spec = d.spec.as_ref();
    let replicas = spec.and_then(|s| s.replicas).unwrap_or(1);
    let rolling = spec
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let surge = scaled_value(
        rolling.and_then(|r| r.max_surge.as_ref()),
        replicas,
        true,
        "25%",
    );
    let mut unavailable = scaled_value(
        rolling.and_then(|r| r.max_unavailable.as_ref()),
        replicas,
        false,
        "25%",
    );
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable.min(replicas))
}

fn is_recreate(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate")
}

/// The pod-template-hash of a template: FNV-1a over its JSON and the collision count,
/// spelled with Kubernetes' safe alphabet (no vowels, no 0/1/3).
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    feed(&serde_json::to_vec(template).unwrap_or_default());
    if let Some(c) = collision_count {
        feed(&c.to_le_bytes());
    }
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

fn without_hash(t: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = t.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    t
}

/// Whether two templates are equal but for the pod-template-hash label.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash(a) == without_hash(b)
}

/// A ReplicaSet's revision (0 when unset).
pub fn revision(meta: &ObjectMeta) -> i64 {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

/// Available pods of a ReplicaSet, never more than it is scaled to: after a scale-down
/// its status may still count pods that are about to go.
fn available(rs: &ReplicaSet) -> i32 {
    let a = rs
        .status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0);
    a.min(spec_replicas(rs))
}

/// Replicas the new ReplicaSet may have now (Kubernetes' `NewRSNewReplicas`).
pub fn new_rs_replicas(replicas: i32, surge: i32, all_spec: i32, new_spec: i32) -> i32 {
    let max_total = replicas + surge;
    if all_spec >= max_total {
        return new_spec;
    }
    new_spec + (max_total - all_spec).min(replicas - new_spec).max(0)
}

/// Target replicas for old ReplicaSets in a rolling update (Kubernetes'
/// `reconcileOldReplicaSets`): first unhealthy pods, then available ones while at least
/// `replicas - maxUnavailable` stay available. `old` is (spec, available) oldest first.
pub fn scale_down_old(
    replicas: i32,
    max_unavailable: i32,
    old: &[(i32, i32)],
    new: (i32, i32),
) -> Vec<i32> {
    let mut target: Vec<i32> = old.iter().map(|(s, _)| *s).collect();
    let old_total: i32 = target.iter().sum();
    if old_total == 0 {
        return target;
    }
    let all_total = old_total + new.0;
    let min_available = replicas - max_unavailable;
    let new_unavailable = new.0 - new.1;
    let max_scaled_down = all_total - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return target;
    }
    // Unhealthy pods first: they count for nothing.
    let mut cleaned = 0;
    for (i, (spec, avail)) in old.iter().enumerate() {
        if cleaned >= max_scaled_down {
            break;
        }
        let unhealthy = spec - avail;
        if *spec == 0 || unhealthy <= 0 {
            continue;
        }
        let n = unhealthy.min(max_scaled_down - cleaned);
        target[i] -= n;
        cleaned += n;
    }
    // Then available pods, keeping min_available.
    let available_total: i32 = old
        .iter()
        .zip(&target)
        .map(|((_, a), t)| (*a).min(*t))
        .sum::<i32>()
        + new.1;
    if available_total <= min_available {
        return target;
    }
    let mut to_scale = available_total - min_available;
    for t in target.iter_mut() {
        if to_scale <= 0 {
            break;
        }
        let n = (*t).min(to_scale);
        *t -= n;
        to_scale -= n;
    }
    target
}

/// One active ReplicaSet as [`proportional_sizes`] sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActiveSize {
    /// spec.replicas.
    pub replicas: i32,
    /// Its `max-replicas` annotation: the Deployment's replicas plus surge when it was
    /// last scaled.
    pub max_replicas: Option<i32>,
    /// Creation order (higher is newer).
    pub age_rank: usize,
}

/// New sizes for a Deployment's active ReplicaSets when the Deployment is scaled
/// mid-rollout (Kubernetes' proportional scaling in `scale`): the change up to
/// `replicas + surge` is spread across them by their share of the total they were
/// sized for, and the rounding leftover goes to the largest. `status_replicas` stands
/// in for a missing annotation.
pub fn proportional_sizes(
    replicas: i32,
    surge: i32,
    status_replicas: i32,
    sets: &[ActiveSize],
) -> Vec<i32> {
    let allowed = if replicas > 0 { replicas + surge } else { 0 };
    let total: i32 = sets.iter().map(|s| s.replicas).sum();
    let to_add = allowed - total;
    let mut order: Vec<usize> = (0..sets.len()).collect();
    // Largest first; ties: newest first when growing, oldest first when shrinking.
    order.sort_by(|&a, &b| {
        sets[b].replicas.cmp(&sets[a].replicas).then_with(|| {
            if to_add > 0 {
                sets[b].age_rank.cmp(&sets[a].age_rank)
            } else {
                sets[a].age_rank.cmp(&sets[b].age_rank)
            }
        })
    });
    let mut sizes: Vec<i32> = sets.iter().map(|s| s.replicas).collect();
    if to_add == 0 || sets.is_empty() {
        return sizes;
    }
    let mut added = 0;
    for &i in &order {
        let rs = sets[i];
        if rs.replicas == 0 || to_add == added {
            continue;
        }
        let fraction = if replicas == 0 {
            -rs.replicas
        } else {
            let annotated = rs.max_replicas.unwrap_or(status_replicas).max(1);
            let scaled =
                f64::from(rs.replicas) * f64::from(replicas + surge) / f64::from(annotated);
            scaled.round() as i32 - rs.replicas
        };
        let allowed_now = to_add - added;
        let p = if to_add > 0 {
            fraction.min(allowed_now)
        } else {
            fraction.max(allowed_now)
        };
        sizes[i] += p;
        added += p;
    }
    let first = order[0];
    sizes[first] = (sizes[first] + to_add - added).max(0);
    sizes
}

fn max_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(MAX_REPLICAS))
        .and_then(|v| v.parse().ok())
}

fn desired_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DESIRED_REPLICAS))
        .and_then(|v| v.parse().ok())
}

fn copied_annotations(d: &Deployment) -> BTreeMap<String, String> {
    d.metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
        .collect()
}

/// The new ReplicaSet for a Deployment's template at `revision` with `replicas`.
pub fn new_replica_set(d: &Deployment, revision: i64, replicas: i32, surge: i32) -> ReplicaSet {
    let spec = d.spec.clone().unwrap_or_default();
    let collision = d.status.as_ref().and_then(|s| s.collision_count);
    let hash = template_hash(&spec.template, collision);
    let mut template = spec.template.clone();
    template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(Default::default)
        .insert(POD_TEMPLATE_HASH.into(), hash.clone());
    let mut selector: LabelSelector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(Default::default)
        .insert(POD_TEMPLATE_HASH.into(), hash.clone());
    let mut annotations = copied_annotations(d);
    annotations.insert(REVISION.into(), revision.to_string());
    let want = spec.replicas.unwrap_or(1);
    annotations.insert(DESIRED_REPLICAS.into(), want.to_string());
    annotations.insert(MAX_REPLICAS.into(), (want + surge).to_string());
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", d.name())),
            namespace: d.namespace().map(str::to_string),
            labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref(d)]),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    }
}

struct Sync<'a> {
    d: &'a Deployment,
    ctx: &'a Ctx,
    api: Api<ReplicaSet>,
}

impl Sync<'_> {
    async fn scale(&self, rs: &ReplicaSet, to: i32, surge: i32) -> Result<ReplicaSet> {
        let from = spec_replicas(rs);
        let want = self.d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let patch = json!({
            "metadata": {
                "resourceVersion": rs.resource_version(),
                "annotations": {
                    DESIRED_REPLICAS: want.to_string(),
                    MAX_REPLICAS: (want + surge).to_string(),
                }
            },
            "spec": {"replicas": to},
        });
        let updated = self
            .api
            .patch(rs.name(), &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        if from != to {
            let verb = if to > from { "up" } else { "down" };
            self.ctx.recorder.publish(
                self.d,
                EventType::Normal,
                "ScalingReplicaSet",
                &format!(
                    "Scaled {verb} replica set {} from {from} to {to}",
                    rs.name()
                ),
            );
        }
        Ok(updated)
    }
}

/// One reconcile of one Deployment; see the module docs.
pub async fn reconcile(d: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action> {
    let ns = d.namespace().unwrap_or("").to_string();
    let uid = d.uid().unwrap_or("").to_string();
    let selector = match selector_of(d.spec.as_ref().map(|s| &s.selector)) {
        Ok(s) => s,
        Err(message) => {
            ctx.recorder
                .publish(d.as_ref(), EventType::Warning, "InvalidSelector", &message);
            return Ok(Action::await_change());
        }
    };
    let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let sync = Sync {
        d: &d,
        ctx: &ctx,
        api: api.clone(),
    };
    let deleting = d.metadata.deletion_timestamp.is_some();

    // Claim ReplicaSets: ours by controller UID; matching orphans are adopted.
    let mut owned: Vec<ReplicaSet> = Vec::new();
    for rs in ctx.sets.list() {
        if rs.namespace() != Some(ns.as_str()) {
            continue;
        }
        match rs.controller_owner() {
            Some(o) if o.uid == uid => owned.push((*rs).clone()),
            None if !deleting
                && rs.metadata.deletion_timestamp.is_none()
                && selector.matches(rs.labels()) =>
            {
                let mut refs = rs.owner_references().to_vec();
                refs.push(controller_ref(d.as_ref()));
                let adopted = api
                    .patch(
                        rs.name(),
                        &PatchParams::default(),
                        &Patch::Merge(json!({"metadata": {
                            "ownerReferences": refs,
                            "resourceVersion": rs.resource_version(),
                        }})),
                    )
                    .await?;
                owned.push(adopted);
            }
            _ => {}
        }
    }
    owned.sort_by(|a, b| {
        let created = |r: &ReplicaSet| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
        created(a).cmp(&created(b)).then(a.name().cmp(b.name()))
    });
    let spec = d.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    let (surge, max_unavailable) = if is_recreate(&d) {
        (0, replicas)
    } else {
        surge_and_unavailable(&d)
    };
    let new_pos = owned.iter().position(|rs| {
        rs.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .is_some_and(|t| equal_ignore_hash(t, &spec.template))
    });
    let mut new_rs = new_pos.map(|i| owned.remove(i));
    let mut old = owned;
    let max_old_revision = old.iter().map(|r| revision(&r.metadata)).max().unwrap_or(0);
    let next_revision = max_old_revision + 1;

    if deleting {
        return write_status(&d, &ctx, new_rs.as_ref(), &old, max_unavailable, None).await;
    }
    let paused = spec.paused.unwrap_or(false);

    // The existing new ReplicaSet takes the next revision (after a rollback it had an
    // older one, which goes into its history).
    if let Some(rs) = new_rs.as_ref() {
        let current = revision(&rs.metadata);
        let have = rs.metadata.annotations.clone().unwrap_or_default();
        let stale_annotations = copied_annotations(&d)
            .iter()
            .any(|(k, v)| have.get(k) != Some(v));
        if (current < next_revision || stale_annotations) && !paused {
            let next_revision = next_revision.max(current);
            let mut history: Vec<String> = rs
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION_HISTORY))
                .map(|h| h.split(',').map(str::to_string).collect())
                .unwrap_or_default();
            if current > 0 && current < next_revision {
                history.push(current.to_string());
            }
            let mut annotations = serde_json::Map::new();
            for (k, v) in copied_annotations(&d) {
                annotations.insert(k, json!(v));
            }
            annotations.insert(REVISION.into(), json!(next_revision.to_string()));
            if !history.is_empty() {
                annotations.insert(REVISION_HISTORY.into(), json!(history.join(",")));
            }
            let updated = api
                .patch(
                    rs.name(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {
                        "annotations": annotations,
                        "resourceVersion": rs.resource_version(),
                    }})),
                )
                .await?;
            new_rs = Some(updated);
        }
    }

    let mut progress_reason = None;
    if paused {
        // Only scaling while paused: the single active ReplicaSet follows the replicas.
        let active: Vec<&ReplicaSet> = new_rs
            .iter()
            .chain(old.iter())
            .filter(|r| spec_replicas(r) > 0)
            .collect();
        if let [only] = active.as_slice() {
            if spec_replicas(only) != replicas {
                sync.scale(only, replicas, surge).await?;
            }
        }
    } else if is_recreate(&d) {
        let mut scaled = false;
        for rs in old.iter_mut().filter(|r| spec_replicas(r) > 0) {
            *rs = sync.scale(rs, 0, 0).await?;
            scaled = true;
        }
        let old_uids: Vec<&str> = old.iter().filter_map(|r| r.uid()).collect();
        let old_pods_left = ctx.pods.list().iter().any(|p| {
            p.namespace() == Some(ns.as_str())
                && p.controller_owner()
                    .is_some_and(|o| old_uids.contains(&o.uid.as_str()))
                && !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
        });
        if !scaled && !old_pods_left {
            match new_rs.as_ref() {
                None => {
                    let created = create_new(&d, &ctx, &api, next_revision, replicas, 0).await?;
                    progress_reason = Some(("NewReplicaSetCreated", created.name().to_string()));
                    new_rs = Some(created);
                }
                Some(rs) if spec_replicas(rs) != replicas => {
                    new_rs = Some(sync.scale(rs, replicas, 0).await?);
                }
                Some(_) => {}
            }
        }
    } else if is_scaling_event(new_rs.as_ref(), &old, replicas) {
        // Scaled mid-rollout: spread the change over the active ReplicaSets first; the
        // rollout goes on at the next sync.
        let status_replicas = d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let mut active: Vec<&mut ReplicaSet> = old
            .iter_mut()
            .chain(new_rs.iter_mut())
            .filter(|r| spec_replicas(r) > 0)
            .collect();
        let sized: Vec<ActiveSize> = active
            .iter()
            .enumerate()
            .map(|(i, r)| ActiveSize {
                replicas: spec_replicas(r),
                max_replicas: max_replicas_annotation(r),
                age_rank: i,
            })
            .collect();
        let sizes = proportional_sizes(replicas, surge, status_replicas, &sized);
        for (rs, size) in active.iter_mut().zip(sizes) {
            **rs = sync.scale(rs, size, surge).await?;
        }
    } else {
        let all_spec: i32 =
            old.iter().map(spec_replicas).sum::<i32>() + new_rs.as_ref().map_or(0, spec_replicas);
        match new_rs.as_ref() {
            None => {
                let n = new_rs_replicas(replicas, surge, all_spec, 0);
                let created = create_new(&d, &ctx, &api, next_revision, n, surge).await?;
                progress_reason = Some(("NewReplicaSetCreated", created.name().to_string()));
                new_rs = Some(created);
            }
            Some(rs) => {
                let cur = spec_replicas(rs);
                let target = if cur > replicas {
                    replicas
                } else {
                    new_rs_replicas(replicas, surge, all_spec, cur)
                };
                if target != cur {
                    new_rs = Some(sync.scale(rs, target, surge).await?);
                } else {
                    let pairs: Vec<(i32, i32)> = old
                        .iter()
                        .map(|r| (spec_replicas(r), available(r)))
                        .collect();
                    let new_pair = (cur, available(rs));
                    let targets = scale_down_old(replicas, max_unavailable, &pairs, new_pair);
                    for (rs, t) in old.iter_mut().zip(targets) {
                        if spec_replicas(rs) != t {
                            *rs = sync.scale(rs, t, surge).await?;
                        }
                    }
                }
            }
        }
    }

    // Old ReplicaSets beyond revisionHistoryLimit go, oldest revision first.
    let complete = new_rs
        .as_ref()
        .is_some_and(|rs| spec_replicas(rs) == replicas && available(rs) == replicas)
        && old.iter().all(|r| spec_replicas(r) == 0);
    if complete {
        let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
        let mut idle: Vec<&ReplicaSet> = old
            .iter()
            .filter(|r| {
                spec_replicas(r) == 0
                    && r.status.as_ref().is_none_or(|s| s.replicas == 0)
                    && r.metadata.deletion_timestamp.is_none()
            })
            .collect();
        idle.sort_by_key(|r| revision(&r.metadata));
        let excess = idle.len().saturating_sub(limit);
        for rs in idle.into_iter().take(excess) {
            match api.delete(rs.name(), &Default::default()).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    // The Deployment carries its new ReplicaSet's revision, for kubectl.
    if let Some(rs) = new_rs.as_ref() {
        let rev = revision(&rs.metadata).to_string();
        let current = d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION));
        if current != Some(&rev) && revision(&rs.metadata) > 0 {
            let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
            deployments
                .patch(
                    d.name(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"annotations": {REVISION: rev}}})),
                )
                .await?;
        }
    }
    write_status(
        &d,
        &ctx,
        new_rs.as_ref(),
        &old,
        max_unavailable,
        progress_reason,
    )
    .await
}

/// Whether the Deployment was scaled since its active ReplicaSets were last sized
/// (Kubernetes' `isScalingEvent`), while more than one of them is active.
fn is_scaling_event(new_rs: Option<&ReplicaSet>, old: &[ReplicaSet], replicas: i32) -> bool {
    let active: Vec<&ReplicaSet> = old
        .iter()
        .chain(new_rs)
        .filter(|r| spec_replicas(r) > 0)
        .collect();
    active.len() > 1
        && active
            .iter()
            .any(|r| desired_replicas_annotation(r).is_some_and(|d| d != replicas))
}

async fn create_new(
    d: &Deployment,
    ctx: &Ctx,
    api: &Api<ReplicaSet>,
    revision: i64,
    replicas: i32,
    surge: i32,
) -> Result<ReplicaSet> {
    let rs = new_replica_set(d, revision, replicas, surge);
    match api.create(&PostParams::default(), &rs).await {
        Ok(created) => {
            ctx.recorder.publish(
                d,
                EventType::Normal,
                "ScalingReplicaSet",
                &format!(
                    "Scaled up replica set {} from 0 to {replicas}",
                    created.name()
                ),
            );
            Ok(created)
        }
        Err(e) if e.is_already_exists() => {
            // Ours, created by an earlier sync the cache has not shown yet; or a hash
            // collision, which the collision count resolves on the next try.
            let existing = api.get(rs.metadata.name.as_deref().unwrap_or("")).await?;
            let same = existing
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .zip(d.spec.as_ref().map(|s| &s.template))
                .is_some_and(|(a, b)| equal_ignore_hash(a, b));
            if same && existing.controller_owner().map(|o| o.uid.as_str()) == d.uid() {
                return Ok(existing);
            }
            let count = d
                .status
                .as_ref()
                .and_then(|s| s.collision_count)
                .unwrap_or(0)
                + 1;
            let deployments: Api<Deployment> =
                Api::namespaced(ctx.client.clone(), d.namespace().unwrap_or(""));
            deployments
                .patch_status(
                    d.name(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"collisionCount": count}})),
                )
                .await?;
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

fn condition(type_: &str, status: bool, reason: &str, message: &str, now: &str) -> Value {
    json!({
        "type": type_,
        "status": if status { "True" } else { "False" },
        "reason": reason,
        "message": message,
        "lastUpdateTime": now,
        "lastTransitionTime": now,
    })
}

/// Writes the status and decides when to look again (progress deadline).
async fn write_status(
    d: &Deployment,
    ctx: &Ctx,
    new_rs: Option<&ReplicaSet>,
    old: &[ReplicaSet],
    max_unavailable: i32,
    progress_reason: Option<(&str, String)>,
) -> Result<Action> {
    let spec = d.spec.clone().unwrap_or_default();
    let want = spec.replicas.unwrap_or(1);
    let all: Vec<&ReplicaSet> = new_rs.into_iter().chain(old.iter()).collect();
    let status_of = |r: &ReplicaSet| r.status.clone().unwrap_or_default();
    let actual: i32 = all.iter().map(|r| status_of(r).replicas).sum();
    let updated = new_rs.map_or(0, |r| status_of(r).replicas);
    let ready: i32 = all
        .iter()
        .map(|r| status_of(r).ready_replicas.unwrap_or(0))
        .sum();
    let available: i32 = all
        .iter()
        .map(|r| status_of(r).available_replicas.unwrap_or(0))
        .sum();
    let spec_total: i32 = all.iter().map(|r| spec_replicas(r)).sum();
    let unavailable = (spec_total - available).max(0);
    let now_ts = jiff::Timestamp::now();
    let now = jiff::Timestamp::from_second(now_ts.as_second())
        .unwrap_or(now_ts)
        .to_string();
    let old_status = d.status.clone().unwrap_or_default();
    let old_conditions = old_status.conditions.clone().unwrap_or_default();
    let find = |t: &str| old_conditions.iter().find(|c| c.type_ == t);

    let mut conditions = Vec::new();
    let is_available = available >= want - max_unavailable;
    let mut avail = if is_available {
        condition(
            "Available",
            true,
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            &now,
        )
    } else {
        condition(
            "Available",
            false,
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            &now,
        )
    };
    keep_times(&mut avail, find("Available"));
    conditions.push(avail);

    let rs_name = new_rs.map_or("", |r| r.name()).to_string();
    let complete = updated == want
        && actual == want
        && available == want
        && new_rs.is_some_and(|r| spec_replicas(r) == want);
    let deadline = spec.progress_deadline_seconds.unwrap_or(600);
    let prev_progress = find("Progressing");
    let mut requeue = None;
    let progressing = if spec.paused.unwrap_or(false) {
        Some(condition(
            "Progressing",
            true,
            "DeploymentPaused",
            "Deployment is paused",
            &now,
        ))
    } else if let Some((reason, name)) = progress_reason {
        let msg = format!("Created new replica set \"{name}\"");
        Some(condition("Progressing", true, reason, &msg, &now))
    } else if complete {
        let msg = format!("ReplicaSet \"{rs_name}\" has successfully progressed.");
        Some(condition(
            "Progressing",
            true,
            "NewReplicaSetAvailable",
            &msg,
            &now,
        ))
    } else {
        let moved = updated > old_status.updated_replicas.unwrap_or(0)
            || available > old_status.available_replicas.unwrap_or(0);
        let last_update = prev_progress
            .and_then(|c| c.last_update_time.as_ref())
            .map(|t| t.0.as_second());
        let timed_out = prev_progress
            .is_some_and(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
            || last_update.is_some_and(|t| now_ts.as_second() - t > i64::from(deadline));
        if moved || last_update.is_none() {
            requeue = Some(Duration::from_secs(deadline.max(1) as u64));
            let msg = format!("ReplicaSet \"{rs_name}\" is progressing.");
            Some(condition(
                "Progressing",
                true,
                "ReplicaSetUpdated",
                &msg,
                &now,
            ))
        } else if timed_out {
            let msg = format!("ReplicaSet \"{rs_name}\" has timed out progressing.");
            Some(condition(
                "Progressing",
                false,
                "ProgressDeadlineExceeded",
                &msg,
                &now,
            ))
        } else {
            let left = last_update.map_or(i64::from(deadline), |t| {
                t + i64::from(deadline) - now_ts.as_second()
            });
            requeue = Some(Duration::from_secs(left.max(1) as u64));
            prev_progress.map(|c| serde_json::to_value(c).unwrap_or(Value::Null))
        }
    };
    if let Some(mut p) = progressing {
        if !p.is_null() {
            // Same status: keep when it turned; same reason too: keep when it was set.
            if let Some(prev) = prev_progress {
                let same_status = p["status"] == prev.status.as_str();
                let same_reason = p["reason"].as_str() == prev.reason.as_deref();
                if same_status {
                    if let Some(t) = &prev.last_transition_time {
                        p["lastTransitionTime"] = json!(t.0.to_string());
                    }
                }
                if same_status && same_reason {
                    if let Some(t) = &prev.last_update_time {
                        p["lastUpdateTime"] = json!(t.0.to_string());
                    }
                }
            }
            conditions.push(p);
        }
    }

    let status = json!({
        "observedGeneration": d.metadata.generation.unwrap_or(0),
        "replicas": actual,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "unavailableReplicas": unavailable,
        "conditions": conditions,
        "collisionCount": old_status.collision_count,
    });
    let current = serde_json::to_value(&old_status).unwrap_or(Value::Null);
    let mut changed = false;
    for (k, v) in status.as_object().into_iter().flatten() {
        let cur = current.get(k).cloned().unwrap_or(Value::Null);
        let same = cur == *v || (cur.is_null() && (v == &json!(0)));
        if !same {
            changed = true;
        }
    }
    if changed {
        let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), d.namespace().unwrap_or(""));
        if !patch_status(&api, d.name(), &status).await? {
            return Ok(Action::await_change());
        }
    }
    Ok(match requeue {
        Some(d) if !complete => Action::requeue(d),
        _ => Action::await_change(),
    })
}

fn keep_times(cond: &mut Value, prev: Option<&k8s_openapi::api::apps::v1::DeploymentCondition>) {
    let Some(prev) = prev else { return };
    if cond["status"] == prev.status.as_str() {
        if let Some(t) = &prev.last_transition_time {
            cond["lastTransitionTime"] = json!(t.0.to_string());
        }
        if cond["reason"].as_str() == prev.reason.as_deref() {
            if let Some(t) = &prev.last_update_time {
                cond["lastUpdateTime"] = json!(t.0.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active_size(replicas: i32, max: i32, age_rank: usize) -> ActiveSize {
        ActiveSize {
            replicas,
            max_replicas: Some(max),
            age_rank,
        }
    }

    #[test]
    fn scaling_mid_rollout_is_proportional() {
        // Kubernetes' docs example: 10 replicas, maxSurge 3, mid-rollout with 8 old
        // and 5 new; scaled to 15: the 5 extra go 3 to the old, 2 to the new.
        let sets = [active_size(8, 13, 0), active_size(5, 13, 1)];
        assert_eq!(proportional_sizes(15, 3, 13, &sets), vec![11, 7]);
        // Scaled down to 5: both shrink by their share.
        assert_eq!(proportional_sizes(5, 3, 13, &sets), vec![5, 3]);
        // To zero: everything goes.
        assert_eq!(proportional_sizes(0, 3, 13, &sets), vec![0, 0]);
        // Nothing to add: unchanged.
        assert_eq!(proportional_sizes(10, 3, 13, &sets), vec![8, 5]);
        // Rounding leftovers go to the largest.
        let three = [
            active_size(1, 3, 0),
            active_size(1, 3, 1),
            active_size(1, 3, 2),
        ];
        let sizes = proportional_sizes(4, 0, 3, &three);
        assert_eq!(sizes.iter().sum::<i32>(), 4);
        assert_eq!(sizes, vec![1, 1, 2], "ties grow the newest first");
    }

    #[test]
    fn percentages_round_like_kubernetes() {
        let pct = |s: &str| IntOrString::String(s.into());
        assert_eq!(scaled_value(Some(&pct("25%")), 3, true, "25%"), 1);
        assert_eq!(scaled_value(Some(&pct("25%")), 3, false, "25%"), 0);
        assert_eq!(scaled_value(Some(&pct("50%")), 10, false, "25%"), 5);
        assert_eq!(
            scaled_value(Some(&IntOrString::Int(2)), 10, false, "25%"),
            2
        );
        assert_eq!(scaled_value(None, 4, true, "25%"), 1);
    }

    #[test]
    fn fenceposts_never_both_zero() {
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "d"},
            "spec": {"replicas": 3, "selector": {}, "template": {},
                     "strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "10%"}}}
        }))
        .unwrap();
        assert_eq!(surge_and_unavailable(&d), (0, 1));
    }

    #[test]
    fn rolling_with_max_unavailable_zero_keeps_availability() {
        // 3 replicas, surge 1, unavailable 0: the new set may go to 1 at first.
        assert_eq!(new_rs_replicas(3, 1, 3, 0), 1);
        assert_eq!(new_rs_replicas(3, 1, 4, 1), 1, "at the surge limit");
        // New pod not available yet: old keeps all 3.
        assert_eq!(scale_down_old(3, 0, &[(3, 3)], (1, 0)), vec![3]);
        // New pod available: one old pod may go.
        assert_eq!(scale_down_old(3, 0, &[(3, 3)], (1, 1)), vec![2]);
        // Unhealthy old pods go first, without touching availability.
        assert_eq!(scale_down_old(3, 0, &[(3, 1)], (1, 1)), vec![2]);
        // …but never while the new set is itself short of available pods.
        assert_eq!(scale_down_old(3, 0, &[(3, 1)], (1, 0)), vec![3]);
        // maxUnavailable 1 lets one go at once.
        assert_eq!(scale_down_old(3, 1, &[(3, 3)], (0, 0)), vec![2]);
        // Oldest first across several old sets.
        assert_eq!(scale_down_old(4, 0, &[(1, 1), (3, 3)], (2, 2)), vec![0, 2]);
    }

    #[test]
    fn hashes_are_stable_and_ignore_the_hash_label() {
        let t: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}
        }))
        .unwrap();
        let h = template_hash(&t, None);
        assert_eq!(h, template_hash(&t, None));
        assert_ne!(h, template_hash(&t, Some(1)));
        assert!(h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
        let mut labelled = t.clone();
        labelled
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(POD_TEMPLATE_HASH.into(), h);
        assert!(equal_ignore_hash(&t, &labelled));
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u",
                         "annotations": {"team": "a", REVISION: "4"}},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": t}
        }))
        .unwrap();
        let rs = new_replica_set(&d, 5, 1, 1);
        let a = rs.metadata.annotations.unwrap();
        assert_eq!(a.get(REVISION).map(String::as_str), Some("5"));
        assert_eq!(a.get("team").map(String::as_str), Some("a"));
        assert_eq!(a.get(MAX_REPLICAS).map(String::as_str), Some("4"));
        assert!(rs.metadata.name.unwrap().starts_with("web-"));
    }
}
