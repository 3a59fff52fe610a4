//! The StatefulSet controller: pods with stable names `<set>-<ordinal>`, created from
//! ordinal 0 up and deleted from the highest ordinal down, each waiting for the one
//! before it to be Running and Ready under the `OrderedReady` policy (all at once under
//! `Parallel`); rolling updates from the highest ordinal down to `partition`; one
//! PersistentVolumeClaim `<claim>-<set>-<ordinal>` per volumeClaimTemplate and pod, kept
//! or deleted with the set and on scale-down as persistentVolumeClaimRetentionPolicy
//! says. Orphan pods named as members and matching the selector are adopted; owned pods
//! that stop matching are released.
//!
//! Revisions are ControllerRevisions named `<set>-<hash>` holding the pod template, as
//! Kubernetes keeps them (so `kubectl rollout history|undo statefulset` work); each pod
//! carries the `controller-revision-hash` label of the revision it was made from.
//!
//! The decision of what to do next is pure ([`plan`]); the reconcile reads the caches,
//! plans, and carries out the steps.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde_json::{json, Value};
use skiff_client::controller::{Action, Controller};
use skiff_client::{
    Api, Client, ListParams, ObjectRef, Patch, PatchParams, PostParams, ResourceExt, Store,
};

use crate::deployment::template_hash;
use crate::events::{EventType, Recorder};
use crate::expectations::{Expectations, Seen};
use crate::informer::Informer;
use crate::pods::{self, controller_ref};
use crate::replicaset::selector_of;
use crate::revisions;
use crate::status::patch_status;
use crate::Result;

/// The controller's name, as kube-controller-manager's.
pub const NAME: &str = "statefulset-controller";
/// The label naming the revision a pod (or ControllerRevision) belongs to.
pub const REVISION_LABEL: &str = "controller-revision-hash";
/// The label carrying a StatefulSet pod's own name (for per-pod Services).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label carrying a pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// What the StatefulSet reconcile needs.
pub struct Ctx {
    client: Client,
    pods: Store<Pod>,
    recorder: Recorder,
    expectations: Expectations,
    revisions: revisions::Synced,
}

/// Builds the controller, fed by the shared pod informer.
pub fn controller(
    client: &Client,
    pods: &mut Informer<Pod>,
) -> (Controller<StatefulSet>, Arc<Ctx>) {
    let c = Controller::new(Api::<StatefulSet>::all(client.clone()), Default::default());
    let c = c.watches_stream(pods.subscribe(), |p: &Pod| match p.controller_owner() {
        Some(o) if o.kind == "StatefulSet" && o.api_version == "apps/v1" => {
            vec![ObjectRef::new(p.namespace(), &o.name)]
        }
        Some(_) => Vec::new(),
        // An orphan may be adopted by the set its name says it belongs to.
        None => set_name_of(p.name())
            .map(|set| ObjectRef::new(p.namespace(), set))
            .into_iter()
            .collect(),
    });
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        pods: pods.store(),
        recorder: Recorder::new(client.clone(), NAME),
        expectations: Expectations::default(),
        revisions: revisions::Synced::default(),
    });
    (c, ctx)
}

/// The set a pod named `<set>-<ordinal>` would belong to.
pub fn set_name_of(pod: &str) -> Option<&str> {
    let (set, _) = pod.rsplit_once('-')?;
    ordinal_of(set, pod).map(|_| set)
}

/// The ordinal of a pod named `<set>-<ordinal>`, if it is one.
pub fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    let rest = pod.strip_prefix(set)?.strip_prefix('-')?;
    if rest.is_empty() || (rest.len() > 1 && rest.starts_with('0')) {
        return None;
    }
    rest.parse().ok().filter(|o: &i32| *o >= 0)
}

/// How one existing pod looks to [`plan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodState {
    /// Its ordinal.
    pub ordinal: i32,
    /// Phase Running and condition Ready.
    pub running_and_ready: bool,
    /// Has a deletionTimestamp.
    pub terminating: bool,
    /// Phase Failed or Succeeded: to be replaced.
    pub finished: bool,
    /// Made from the update revision.
    pub updated: bool,
}

/// The settings of a StatefulSet [`plan`] needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// spec.replicas.
    pub replicas: i32,
    /// podManagementPolicy is OrderedReady (else Parallel).
    pub ordered: bool,
    /// updateStrategy is RollingUpdate (else OnDelete).
    pub rolling: bool,
    /// rollingUpdate.partition: ordinals below it keep the current revision.
    pub partition: i32,
}

/// One thing to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Create the pod with this ordinal; `updated` when from the update revision.
    Create {
        /// Its ordinal.
        ordinal: i32,
        /// From the update revision (else the current one).
        updated: bool,
    },
    /// Delete the pod with this ordinal.
    Delete(i32),
}

/// What to do next for a StatefulSet whose pods are `pods` (Kubernetes'
/// `updateStatefulSet`): replace finished pods; create missing ordinals below
/// `replicas` in ascending order; delete ordinals at or above it in descending order;
/// then roll pods at or above `partition` to the update revision from the highest
/// ordinal down, one at a time. Under OrderedReady each step waits for every lower
/// ordinal to be Running and Ready (and a deletion for the previous one to finish).
pub fn plan(policy: &Policy, pods: &[PodState]) -> Vec<Step> {
    let by_ordinal: BTreeMap<i32, &PodState> = pods.iter().map(|p| (p.ordinal, p)).collect();
    let mut steps = Vec::new();
    let wants_update = |ordinal: i32| !policy.rolling || ordinal >= policy.partition;

    // Finished pods are deleted and made again, as Kubernetes does.
    for p in pods.iter().filter(|p| p.finished && !p.terminating) {
        steps.push(Step::Delete(p.ordinal));
        if policy.ordered {
            return steps;
        }
    }
    for ordinal in 0..policy.replicas.max(0) {
        match by_ordinal.get(&ordinal) {
            None => {
                steps.push(Step::Create {
                    ordinal,
                    updated: wants_update(ordinal),
                });
                if policy.ordered {
                    return steps;
                }
            }
            Some(p) if policy.ordered && (!p.running_and_ready || p.terminating) => {
                return steps;
            }
            Some(_) => {}
        }
    }
    let mut condemned: Vec<&PodState> = pods
        .iter()
        .filter(|p| p.ordinal >= policy.replicas)
        .collect();
    condemned.sort_by_key(|p| std::cmp::Reverse(p.ordinal));
    for p in condemned {
        if p.terminating {
            if policy.ordered {
                return steps;
            }
            continue;
        }
        if policy.ordered && !steps.is_empty() {
            return steps;
        }
        steps.push(Step::Delete(p.ordinal));
        if policy.ordered {
            return steps;
        }
    }
    if !steps.is_empty() || !policy.rolling {
        return steps;
    }
    // Rolling update: highest ordinal first, one pod at a time, each waiting for every
    // pod to be back and healthy.
    let all_healthy = (0..policy.replicas.max(0)).all(|o| {
        by_ordinal
            .get(&o)
            .is_some_and(|p| p.running_and_ready && !p.terminating)
    });
    if !all_healthy {
        return steps;
    }
    for ordinal in (policy.partition.max(0)..policy.replicas.max(0)).rev() {
        if let Some(p) = by_ordinal.get(&ordinal) {
            if !p.updated {
                steps.push(Step::Delete(ordinal));
                return steps;
            }
        }
    }
    steps
}

/// The revision name of a template: `<set>-<hash>`.
pub fn revision_name(set: &StatefulSet) -> String {
    let spec = set.spec.clone().unwrap_or_default();
    // A count of 0 is no collision: the hash must not change when status says 0.
    let collision = set
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .filter(|c| *c > 0);
    format!(
        "{}-{}",
        set.name(),
        template_hash(&spec.template, collision)
    )
}

/// The name of the claim for template `claim` of pod `ordinal`.
pub fn claim_name(claim: &str, set: &str, ordinal: i32) -> String {
    format!("{claim}-{set}-{ordinal}")
}

/// The pod for `ordinal` from `template` of `revision` (a ControllerRevision name).
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, revision: &str, ordinal: i32) -> Pod {
    let name = format!("{}-{ordinal}", set.name());
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(REVISION_LABEL.into(), revision.to_string());
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    if let Some(service) = set.spec.as_ref().and_then(|s| s.service_name.as_ref()) {
        if !service.is_empty() {
            spec.subdomain = Some(service.clone());
        }
    }
    let claims = set
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.clone())
        .unwrap_or_default();
    if !claims.is_empty() {
        let volumes = spec.volumes.get_or_insert_with(Vec::new);
        for c in &claims {
            let claim = c.metadata.name.clone().unwrap_or_default();
            volumes.retain(|v| v.name != claim);
            volumes.push(Volume {
                name: claim.clone(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim_name(&claim, set.name(), ordinal),
                    read_only: None,
                }),
                ..Volume::default()
            });
        }
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.namespace().map(str::to_string),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref(set)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// The status of a set whose pods are `pods`; `current` and `update` are revision
/// names.
pub fn compute_status(
    set: &StatefulSet,
    pods: &[Arc<Pod>],
    current: &str,
    update: &str,
    now: jiff::Timestamp,
) -> Value {
    let min_ready = set
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let live: Vec<&Arc<Pod>> = pods.iter().filter(|p| pods::is_active(p)).collect();
    let rev = |p: &Pod| p.labels().get(REVISION_LABEL).cloned().unwrap_or_default();
    let ready = live.iter().filter(|p| pods::is_ready(p)).count();
    let available = live
        .iter()
        .filter(|p| pods::is_available(p, min_ready, now))
        .count();
    let updated = live.iter().filter(|p| rev(p) == update).count();
    let current_n = live.iter().filter(|p| rev(p) == current).count();
    json!({
        "replicas": live.len(),
        "readyReplicas": ready,
        "availableReplicas": available,
        "currentReplicas": current_n,
        "updatedReplicas": updated,
        "currentRevision": current,
        "updateRevision": update,
        "observedGeneration": set.metadata.generation.unwrap_or(0),
    })
}

fn current_status(set: &StatefulSet) -> Value {
    let s = set.status.clone().unwrap_or_default();
    json!({
        "replicas": s.replicas,
        "readyReplicas": s.ready_replicas.unwrap_or(0),
        "availableReplicas": s.available_replicas.unwrap_or(0),
        "currentReplicas": s.current_replicas.unwrap_or(0),
        "updatedReplicas": s.updated_replicas.unwrap_or(0),
        "currentRevision": s.current_revision.unwrap_or_default(),
        "updateRevision": s.update_revision.unwrap_or_default(),
        "observedGeneration": s.observed_generation.unwrap_or(0),
    })
}

/// Makes sure the ControllerRevision `name` holding `template` exists and is the newest.
async fn ensure_revision(
    api: &Api<ControllerRevision>,
    set: &StatefulSet,
    name: &str,
    template: &PodTemplateSpec,
) -> Result<ControllerRevision> {
    let mut labels = set
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    labels.insert(REVISION_LABEL.into(), name.to_string());
    revisions::ensure(
        api,
        set,
        name,
        labels,
        json!({"spec": {"template": template}}),
    )
    .await
}

fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let data = revision.data.as_ref()?;
    serde_json::from_value(data.0.get("spec")?.get("template")?.clone()).ok()
}

/// One reconcile of one StatefulSet; see the module docs.
pub async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Ctx>) -> Result<Action> {
    let key = ObjectRef::from_obj(set.as_ref());
    let ns = set.namespace().unwrap_or("").to_string();
    let uid = set.uid().unwrap_or("").to_string();
    if set.metadata.deletion_timestamp.is_some() {
        ctx.expectations.forget(&key);
        ctx.revisions.forget(&uid);
        return Ok(Action::await_change());
    }
    let selector = match selector_of(set.spec.as_ref().map(|s| &s.selector)) {
        Ok(s) => s,
        Err(message) => {
            ctx.recorder.publish(
                set.as_ref(),
                EventType::Warning,
                "InvalidSelector",
                &message,
            );
            return Ok(Action::await_change());
        }
    };
    let spec = set.spec.clone().unwrap_or_default();
    let owned = claim_pods(&set, &ctx, &selector).await?;
    let satisfied = ctx.expectations.satisfied(
        &key,
        |name| match ctx.pods.get(Some(&ns), name) {
            Some(p) => Seen::Present {
                uid: p.uid().unwrap_or("").to_string(),
                deleting: p.metadata.deletion_timestamp.is_some(),
            },
            None => Seen::Absent,
        },
        |pod_uid| {
            owned
                .iter()
                .any(|p| p.uid() == Some(pod_uid) && p.metadata.deletion_timestamp.is_none())
        },
    );

    let revisions: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let update = revision_name(&set);
    let status = set.status.clone().unwrap_or_default();
    if status.update_revision.as_deref() != Some(update.as_str()) {
        ensure_revision(&revisions, &set, &update, &spec.template).await?;
    }
    let mut current = status
        .current_revision
        .clone()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| update.clone());

    let mut states = Vec::new();
    for p in &owned {
        let Some(ordinal) = ordinal_of(set.name(), p.name()) else {
            continue;
        };
        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
        states.push(PodState {
            ordinal,
            running_and_ready: phase == Some("Running") && pods::is_ready(p),
            terminating: p.metadata.deletion_timestamp.is_some(),
            finished: matches!(phase, Some("Succeeded" | "Failed")),
            updated: p.labels().get(REVISION_LABEL) == Some(&update),
        });
    }
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let rolling = strategy.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate";
    let policy = Policy {
        replicas: spec.replicas.unwrap_or(1),
        ordered: spec
            .pod_management_policy
            .as_deref()
            .unwrap_or("OrderedReady")
            != "Parallel",
        rolling,
        partition: strategy
            .rolling_update
            .and_then(|r| r.partition)
            .unwrap_or(0),
    };

    let mut result = Ok(());
    if satisfied {
        sync_claim_owners(&set, &ctx, &owned).await?;
        let steps = plan(&policy, &states);
        result = execute(&set, &ctx, &key, &steps, &update, &current, &revisions).await;
    }
    // History beyond revisionHistoryLimit goes, except what a pod still runs.
    let mut in_use: BTreeSet<String> = [current.clone(), update.clone()].into();
    in_use.extend(
        owned
            .iter()
            .filter_map(|p| p.labels().get(REVISION_LABEL).cloned()),
    );
    let limit = spec
        .revision_history_limit
        .unwrap_or(revisions::DEFAULT_HISTORY_LIMIT);
    if result.is_ok() && ctx.revisions.stale(&uid, &update, limit, &in_use) {
        result = revisions::prune(&revisions, &uid, &in_use, limit).await;
        if result.is_ok() {
            ctx.revisions.record(&uid, &update, limit, in_use);
        }
    }

    let now = jiff::Timestamp::now();
    let mut new_status = compute_status(&set, &owned, &current, &update, now);
    // The rollout is complete when every pod is updated and ready: the update revision
    // becomes the current one.
    let replicas = policy.replicas.max(0) as usize;
    if new_status["updatedReplicas"] == json!(replicas)
        && new_status["readyReplicas"] == json!(replicas)
        && new_status["replicas"] == json!(replicas)
        && current != update
    {
        current = update.clone();
        new_status = compute_status(&set, &owned, &current, &update, now);
    }
    if new_status != current_status(&set) {
        let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
        if !patch_status(&api, set.name(), &new_status).await? {
            return Ok(Action::await_change());
        }
    }
    result?;
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let next = owned
        .iter()
        .filter_map(|p| pods::until_available(p, min_ready, now))
        .min();
    Ok(match next {
        Some(d) => Action::requeue(d + Duration::from_secs(1)),
        None if !satisfied => Action::requeue(Duration::from_secs(30)),
        None => Action::await_change(),
    })
}

/// The set's pods, as Kubernetes' ControllerRefManager claims them: owned pods that
/// stopped matching the selector are released; orphans that match it and are named as
/// the set's members (`<set>-<ordinal>`) are adopted, after checking afresh that the
/// set still exists and is not being deleted.
async fn claim_pods(
    set: &StatefulSet,
    ctx: &Ctx,
    selector: &skiff_api::selector::LabelSelector,
) -> Result<Vec<Arc<Pod>>> {
    let ns = set.namespace().unwrap_or("");
    let uid = set.uid().unwrap_or("");
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let mut owned = Vec::new();
    let mut orphans = Vec::new();
    for pod in ctx.pods.list() {
        if pod.namespace() != Some(ns) {
            continue;
        }
        let matches = selector.matches(pod.labels());
        match pod.controller_owner() {
            Some(o) if o.uid == uid && matches => owned.push(pod),
            Some(o) if o.uid == uid => pods::release(&api, &pod, uid).await?,
            Some(_) => {}
            None if matches
                && pod.metadata.deletion_timestamp.is_none()
                && ordinal_of(set.name(), pod.name()).is_some() =>
            {
                orphans.push(pod)
            }
            None => {}
        }
    }
    if orphans.is_empty() {
        return Ok(owned);
    }
    let fresh = Api::<StatefulSet>::namespaced(ctx.client.clone(), ns)
        .get_opt(set.name())
        .await?;
    if !fresh.is_some_and(|f| f.uid() == Some(uid) && f.metadata.deletion_timestamp.is_none()) {
        return Ok(owned);
    }
    for pod in orphans {
        match pods::adopt(&api, &pod, set).await {
            Ok(adopted) => owned.push(Arc::new(adopted)),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(owned)
}

async fn execute(
    set: &StatefulSet,
    ctx: &Ctx,
    key: &ObjectRef,
    steps: &[Step],
    update: &str,
    current: &str,
    revisions: &Api<ControllerRevision>,
) -> Result<()> {
    let ns = set.namespace().unwrap_or("");
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let update_template = set.spec.clone().unwrap_or_default().template;
    for step in steps {
        match *step {
            Step::Create { ordinal, updated } => {
                let (template, revision) = if updated || current == update {
                    (update_template.clone(), update)
                } else {
                    match revisions
                        .get_opt(current)
                        .await?
                        .as_ref()
                        .and_then(template_of)
                    {
                        Some(t) => (t, current),
                        // The old revision is gone: only the new template is left.
                        None => (update_template.clone(), update),
                    }
                };
                create_claims(set, ctx, ordinal).await?;
                let pod = new_pod(set, &template, revision, ordinal);
                let name = pod.metadata.name.clone().unwrap_or_default();
                match pod_api.create(&PostParams::default(), &pod).await {
                    Ok(_) => {
                        ctx.expectations.expect_add(key, &name);
                        ctx.recorder.publish(
                            set,
                            EventType::Normal,
                            "SuccessfulCreate",
                            &format!("create Pod {name} in StatefulSet {} successful", set.name()),
                        );
                    }
                    Err(e) if e.is_already_exists() => {}
                    Err(e) => {
                        ctx.recorder.publish(
                            set,
                            EventType::Warning,
                            "FailedCreate",
                            &format!(
                                "create Pod {name} in StatefulSet {} failed error: {e}",
                                set.name()
                            ),
                        );
                        return Err(e.into());
                    }
                }
            }
            Step::Delete(ordinal) => {
                let name = format!("{}-{ordinal}", set.name());
                let uid = ctx
                    .pods
                    .get(Some(ns), &name)
                    .and_then(|p| p.uid().map(str::to_string));
                match pod_api.delete(&name, &Default::default()).await {
                    Ok(_) => {
                        if let Some(uid) = uid {
                            ctx.expectations.expect_delete(key, &uid);
                        }
                        ctx.recorder.publish(
                            set,
                            EventType::Normal,
                            "SuccessfulDelete",
                            &format!("delete Pod {name} in StatefulSet {} successful", set.name()),
                        );
                    }
                    Err(e) if e.is_not_found() => {}
                    Err(e) => {
                        ctx.recorder.publish(
                            set,
                            EventType::Warning,
                            "FailedDelete",
                            &format!(
                                "delete Pod {name} in StatefulSet {} failed error: {e}",
                                set.name()
                            ),
                        );
                        return Err(e.into());
                    }
                }
            }
        }
    }
    Ok(())
}

/// The set's persistentVolumeClaimRetentionPolicy: whether claims go with the set
/// (whenDeleted: Delete) and with the pods a scale-down removes (whenScaled: Delete).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// whenDeleted is Delete.
    pub delete_with_set: bool,
    /// whenScaled is Delete.
    pub delete_when_scaled: bool,
}

impl Retention {
    /// The policy of `set`; Retain unless it says Delete, as Kubernetes defaults it.
    pub fn of(set: &StatefulSet) -> Retention {
        let p = set
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
        let delete = |v: Option<&String>| v.is_some_and(|v| v == "Delete");
        Retention {
            delete_with_set: delete(p.and_then(|p| p.when_deleted.as_ref())),
            delete_when_scaled: delete(p.and_then(|p| p.when_scaled.as_ref())),
        }
    }
}

/// A reference that makes the garbage collector delete a claim with its owner.
fn claim_owner(api_version: &str, kind: &str, name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: name.into(),
        uid: uid.into(),
        controller: None,
        block_owner_deletion: None,
    }
}

/// The owner references the claim of `ordinal` should carry, Kubernetes' way of carrying
/// out the retention policy through the garbage collector: the set's reference under
/// whenDeleted: Delete; instead the pod's while the pod is condemned by a scale-down
/// (ordinal at or above `replicas`) under whenScaled: Delete. Other owners are kept.
pub fn claim_owner_refs(
    existing: &[OwnerReference],
    set: &OwnerReference,
    pod: Option<&OwnerReference>,
    ordinal: i32,
    replicas: i32,
    retention: Retention,
) -> Vec<OwnerReference> {
    let mut refs: Vec<OwnerReference> = existing
        .iter()
        .filter(|r| r.uid != set.uid && pod.is_none_or(|p| r.uid != p.uid))
        .cloned()
        .collect();
    // The pod alone: the garbage collector deletes a dependent only when all its owners
    // are gone, so a claim also naming the set would outlive the pod.
    match pod.filter(|_| retention.delete_when_scaled && ordinal >= replicas) {
        Some(pod) => refs.push(pod.clone()),
        None if retention.delete_with_set => refs.push(set.clone()),
        None => {}
    }
    refs
}

/// Brings the owner references of the set's claims in line with its retention policy
/// (see [`claim_owner_refs`]); runs before pods are deleted, so that a condemned pod's
/// claims already name it when it goes.
async fn sync_claim_owners(set: &StatefulSet, ctx: &Ctx, owned: &[Arc<Pod>]) -> Result<()> {
    let spec = set.spec.clone().unwrap_or_default();
    let templates = spec.volume_claim_templates.unwrap_or_default();
    if templates.is_empty() {
        return Ok(());
    }
    let ns = set.namespace().unwrap_or("");
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    let set_ref = claim_owner(
        "apps/v1",
        "StatefulSet",
        set.name(),
        set.uid().unwrap_or(""),
    );
    let retention = Retention::of(set);
    let replicas = spec.replicas.unwrap_or(1);
    for claim in api.list(&ListParams::default()).await?.items {
        let ordinal = templates.iter().find_map(|t| {
            let prefix = format!("{}-", t.metadata.name.as_deref().unwrap_or(""));
            ordinal_of(set.name(), claim.name().strip_prefix(&prefix)?)
        });
        let Some(ordinal) = ordinal else { continue };
        let pod_name = format!("{}-{ordinal}", set.name());
        let pod_ref = owned
            .iter()
            .find(|p| p.name() == pod_name && p.metadata.deletion_timestamp.is_none())
            .map(|p| claim_owner("v1", "Pod", p.name(), p.uid().unwrap_or("")));
        let existing = claim.owner_references();
        let want = claim_owner_refs(
            existing,
            &set_ref,
            pod_ref.as_ref(),
            ordinal,
            replicas,
            retention,
        );
        if want == existing {
            continue;
        }
        let refs = if want.is_empty() {
            Value::Null
        } else {
            json!(want)
        };
        let patch = json!({"metadata": {
            "ownerReferences": refs,
            "resourceVersion": claim.resource_version(),
        }});
        match api
            .patch(claim.name(), &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => {}
            // Changed or gone meanwhile: the next sync looks again.
            Err(e) if e.is_not_found() || e.is_conflict() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Creates the pod's claims that do not exist yet; they outlive the pod unless the
/// retention policy says Delete (see [`claim_owner_refs`]), so a pod made again finds
/// its data.
async fn create_claims(set: &StatefulSet, ctx: &Ctx, ordinal: i32) -> Result<()> {
    let templates = set
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.clone())
        .unwrap_or_default();
    if templates.is_empty() {
        return Ok(());
    }
    let ns = set.namespace().unwrap_or("");
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    for t in templates {
        let name = claim_name(
            t.metadata.name.as_deref().unwrap_or(""),
            set.name(),
            ordinal,
        );
        if api.get_opt(&name).await?.is_some() {
            continue;
        }
        let mut labels = t.metadata.labels.clone().unwrap_or_default();
        if let Some(m) = set
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.as_ref())
        {
            labels.extend(m.clone());
        }
        let claim = PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.to_string()),
                labels: Some(labels),
                annotations: t.metadata.annotations.clone(),
                // Under whenDeleted: Delete the claim goes with the set from the start.
                owner_references: Retention::of(set).delete_with_set.then(|| {
                    vec![claim_owner(
                        "apps/v1",
                        "StatefulSet",
                        set.name(),
                        set.uid().unwrap_or(""),
                    )]
                }),
                ..ObjectMeta::default()
            },
            spec: t.spec.clone(),
            status: None,
        };
        match api.create(&PostParams::default(), &claim).await {
            Ok(_) => ctx.recorder.publish(
                set,
                EventType::Normal,
                "SuccessfulCreate",
                &format!(
                    "create Claim {name} Pod {}-{ordinal} in StatefulSet {} success",
                    set.name(),
                    set.name()
                ),
            ),
            Err(e) if e.is_already_exists() => {}
            Err(e) => {
                ctx.recorder.publish(
                    set,
                    EventType::Warning,
                    "FailedCreate",
                    &format!(
                        "create Claim {name} for StatefulSet {} failed error: {e}",
                        set.name()
                    ),
                );
                return Err(e.into());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ordinal: i32, ready: bool) -> PodState {
        PodState {
            ordinal,
            running_and_ready: ready,
            terminating: false,
            finished: false,
            updated: true,
        }
    }

    fn ordered(replicas: i32) -> Policy {
        Policy {
            replicas,
            ordered: true,
            rolling: true,
            partition: 0,
        }
    }

    #[test]
    fn an_orphan_is_offered_to_the_set_its_name_names() {
        assert_eq!(set_name_of("web-0"), Some("web"));
        assert_eq!(set_name_of("my-db-12"), Some("my-db"));
        assert_eq!(set_name_of("web-01"), None);
        assert_eq!(set_name_of("web-x"), None);
        assert_eq!(set_name_of("web"), None);
    }

    #[test]
    fn claims_carry_the_owners_the_retention_policy_asks_for() {
        let set = claim_owner("apps/v1", "StatefulSet", "web", "s1");
        let pod = claim_owner("v1", "Pod", "web-2", "p2");
        let other = claim_owner("v1", "ConfigMap", "keep", "c1");
        let retain = Retention::default();
        let both = Retention {
            delete_with_set: true,
            delete_when_scaled: true,
        };
        let scaled = Retention {
            delete_with_set: false,
            delete_when_scaled: true,
        };
        // Retain: nothing of ours, other owners kept.
        let refs = claim_owner_refs(
            &[other.clone(), set.clone()],
            &set,
            Some(&pod),
            2,
            3,
            retain,
        );
        assert_eq!(refs, std::slice::from_ref(&other));
        // whenDeleted: Delete names the set; whenScaled only matters for a condemned pod.
        let refs = claim_owner_refs(&[], &set, Some(&pod), 2, 3, both);
        assert_eq!(refs, std::slice::from_ref(&set));
        let refs = claim_owner_refs(std::slice::from_ref(&set), &set, Some(&pod), 2, 2, both);
        assert_eq!(
            refs,
            std::slice::from_ref(&pod),
            "the condemned pod alone, or the set keeps it"
        );
        let refs = claim_owner_refs(&[], &set, Some(&pod), 2, 2, scaled);
        assert_eq!(refs, std::slice::from_ref(&pod));
        // Scaled back up before the pod went: the pod's reference is taken away again.
        let refs = claim_owner_refs(std::slice::from_ref(&pod), &set, Some(&pod), 2, 3, scaled);
        assert!(refs.is_empty());
        // No pod: nothing to tie the claim to.
        assert!(claim_owner_refs(&[], &set, None, 2, 2, scaled).is_empty());
    }

    #[test]
    fn ordinals_parse_only_from_the_sets_own_names() {
        assert_eq!(ordinal_of("web", "web-0"), Some(0));
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        assert_eq!(ordinal_of("web", "web-01"), None);
        assert_eq!(ordinal_of("web", "web-x"), None);
        assert_eq!(ordinal_of("web", "webby-1"), None);
        assert_eq!(ordinal_of("web", "web-"), None);
    }

    #[test]
    fn ordered_ready_creates_one_at_a_time_waiting_for_ready() {
        let p = ordered(3);
        assert_eq!(
            plan(&p, &[]),
            [Step::Create {
                ordinal: 0,
                updated: true
            }]
        );
        assert_eq!(plan(&p, &[pod(0, false)]), []);
        assert_eq!(
            plan(&p, &[pod(0, true)]),
            [Step::Create {
                ordinal: 1,
                updated: true
            }]
        );
        // A lost pod in the middle is made again before any higher one.
        assert_eq!(
            plan(&p, &[pod(0, true), pod(2, true)]),
            [Step::Create {
                ordinal: 1,
                updated: true
            }]
        );
    }

    #[test]
    fn scale_down_goes_from_the_highest_ordinal_one_at_a_time() {
        let p = ordered(1);
        let pods = [pod(0, true), pod(1, true), pod(2, true)];
        assert_eq!(plan(&p, &pods), [Step::Delete(2)]);
        let mut going = pods.clone();
        going[2].terminating = true;
        assert_eq!(plan(&p, &going), [], "waits for 2 to be gone");
        assert_eq!(plan(&p, &pods[..2]), [Step::Delete(1)]);
        // Not while a lower ordinal is unhealthy.
        assert_eq!(plan(&p, &[pod(0, false), pod(1, true)]), []);
        assert_eq!(plan(&ordered(0), &[pod(0, true)]), [Step::Delete(0)]);
    }

    #[test]
    fn parallel_creates_and_deletes_at_once() {
        let p = Policy {
            ordered: false,
            ..ordered(3)
        };
        assert_eq!(plan(&p, &[pod(1, false)]).len(), 2);
        let down = Policy {
            replicas: 1,
            ..p.clone()
        };
        assert_eq!(
            plan(&down, &[pod(0, false), pod(1, false), pod(2, false)]),
            [Step::Delete(2), Step::Delete(1)]
        );
    }

    #[test]
    fn rolling_update_goes_down_from_the_top_and_stops_at_the_partition() {
        let mut p = ordered(3);
        p.partition = 1;
        let mut pods = vec![pod(0, true), pod(1, true), pod(2, true)];
        for q in &mut pods {
            q.updated = false;
        }
        assert_eq!(plan(&p, &pods), [Step::Delete(2)]);
        pods[2].updated = true;
        assert_eq!(plan(&p, &pods), [Step::Delete(1)]);
        pods[1].updated = true;
        assert_eq!(plan(&p, &pods), [], "ordinal 0 is below the partition");
        // A pod below the partition that is lost comes back at the current revision.
        assert_eq!(
            plan(&p, &pods[1..]),
            [Step::Create {
                ordinal: 0,
                updated: false
            }]
        );
        pods[2].running_and_ready = false;
        pods[1].updated = false;
        assert_eq!(plan(&p, &pods), [], "waits for every pod to be healthy");
        let on_delete = Policy {
            rolling: false,
            ..ordered(3)
        };
        let old: Vec<PodState> = (0..3)
            .map(|o| PodState {
                updated: false,
                ..pod(o, true)
            })
            .collect();
        assert_eq!(plan(&on_delete, &old), []);
    }

    #[test]
    fn finished_pods_are_replaced() {
        let mut failed = pod(0, false);
        failed.finished = true;
        assert_eq!(plan(&ordered(2), &[failed]), [Step::Delete(0)]);
    }

    #[test]
    fn pods_get_stable_identity_and_claims() {
        let set: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "ns", "uid": "u1"},
            "spec": {
                "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": {
                    "metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}
                },
                "volumeClaimTemplates": [{"metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"],
                             "resources": {"requests": {"storage": "1Gi"}}}}]
            }
        }))
        .unwrap();
        let template = set.spec.clone().unwrap().template;
        let rev = revision_name(&set);
        assert!(rev.starts_with("db-"));
        let p = new_pod(&set, &template, &rev, 2);
        assert_eq!(p.name(), "db-2");
        assert_eq!(p.labels().get(REVISION_LABEL), Some(&rev));
        assert_eq!(
            p.labels().get(POD_INDEX_LABEL).map(String::as_str),
            Some("2")
        );
        let spec = p.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("db-2"));
        assert_eq!(spec.subdomain.as_deref(), Some("db"));
        let vol = &spec.volumes.unwrap()[0];
        assert_eq!(
            vol.persistent_volume_claim.as_ref().unwrap().claim_name,
            "data-db-2"
        );
        let mut changed = set.clone();
        changed
            .spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
            .image = Some("busybox:2".into());
        assert_ne!(revision_name(&changed), rev);
    }
}
