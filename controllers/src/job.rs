//! The Job controller: runs pods until `completions` succeed (or, without completions,
//! until one succeeds and the rest stop), `parallelism` at a time; retries failures with
//! exponential back-off (10 s doubling, capped at 6 minutes, as Kubernetes) until
//! `backoffLimit` is exceeded; fails a Job active longer than `activeDeadlineSeconds`;
//! and deletes a finished Job `ttlSecondsAfterFinished` later (Kubernetes' ttl-after-
//! finished controller, done here).
//!
//! The pods carry the labels the apiserver defaults into the template
//! (`batch.kubernetes.io/job-name`, `batch.kubernetes.io/controller-uid` and their
//! legacy spellings). Counts come from the Job's pods, which are kept until the Job goes
//! (as Kubernetes keeps them), and never decrease.
//!
//! Indexed Jobs give each pod a completion index in 0..completions (annotation and label
//! `batch.kubernetes.io/job-completion-index`, `$JOB_COMPLETION_INDEX`, hostname
//! `<job>-<index>`) and complete when every index has succeeded (`completedIndexes`).
//! A podFailurePolicy decides per failed pod whether the Job fails at once (FailJob),
//! the failure is not counted (Ignore) or counts against backoffLimit (Count).
//! backoffLimitPerIndex, maxFailedIndexes (so FailIndex) and successPolicy are not
//! built: such Jobs get a Warning Event naming the field and are not run.
//!
//! What to do next is pure ([`decide`]); the reconcile reads the caches and acts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, PodFailurePolicy, PodFailurePolicyRule};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{json, Value};
use skiff_client::controller::{Action, Controller};
use skiff_client::{Api, Client, DeleteParams, ObjectRef, PostParams, ResourceExt, Store};

use crate::events::{EventType, Recorder};
use crate::expectations::{Expectations, Seen};
use crate::informer::Informer;
use crate::pods::{self, controller_ref};
use crate::replicaset::{selector_of, BURST_REPLICAS};
use crate::status::patch_status;
use crate::Result;

/// The controller's name, as kube-controller-manager's.
pub const NAME: &str = "job-controller";
/// The first retry delay after a failed pod (Kubernetes' `DefaultJobPodFailureBackOff`).
pub const BACKOFF_BASE: Duration = Duration::from_secs(10);
/// The longest retry delay (Kubernetes documents six minutes).
pub const BACKOFF_MAX: Duration = Duration::from_secs(360);
/// The annotation (and label) holding an Indexed Job pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// The environment variable an Indexed Job's containers read their index from.
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// What the Job reconcile needs.
pub struct Ctx {
    client: Client,
    pods: Store<Pod>,
    recorder: Recorder,
    expectations: Expectations,
    // The ttl-after-finished controller is enabled.
    ttl: bool,
}

/// Builds the controller, fed by the shared pod informer.
/// `ttl` enables deleting finished Jobs after `ttlSecondsAfterFinished`.
pub fn controller(
    client: &Client,
    pods: &mut Informer<Pod>,
    ttl: bool,
) -> (Controller<Job>, Arc<Ctx>) {
    let c = Controller::new(Api::<Job>::all(client.clone()), Default::default());
    let c = c.watches_stream(pods.subscribe(), |p: &Pod| {
        p.controller_owner()
            .filter(|o| o.kind == "Job" && o.api_version == "batch/v1")
            .map(|o| ObjectRef::new(p.namespace(), &o.name))
            .into_iter()
            .collect()
    });
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        pods: pods.store(),
        recorder: Recorder::new(client.clone(), NAME),
        expectations: Expectations::default(),
        ttl,
    });
    (c, ctx)
}

/// The delay before the next pod after `failures` failures (Kubernetes'
/// `getRemainingTime` back-off): 0, then 10 s, 20 s, 40 s, … at most [`BACKOFF_MAX`].
pub fn backoff(failures: i32) -> Duration {
    if failures <= 0 {
        return Duration::ZERO;
    }
    let shift = (failures - 1).min(16) as u32;
    BACKOFF_BASE.saturating_mul(1 << shift).min(BACKOFF_MAX)
}

/// A Job's state as [`decide`] sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// spec.parallelism (default 1).
    pub parallelism: i32,
    /// spec.completions; None for a work queue.
    pub completions: Option<i32>,
    /// spec.backoffLimit (default 6).
    pub backoff_limit: i32,
    /// Pods running or pending (not being deleted).
    pub active: i32,
    /// Pods that succeeded.
    pub succeeded: i32,
    /// Pods that failed, plus container restarts under restartPolicy OnFailure.
    pub failed: i32,
    /// Seconds since status.startTime.
    pub running_for: Option<i64>,
    /// spec.activeDeadlineSeconds.
    pub active_deadline: Option<i64>,
    /// Seconds since the newest failure.
    pub since_last_failure: Option<i64>,
    /// spec.suspend.
    pub suspended: bool,
}

/// What the Job should do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Fail it with this reason and message; active pods are deleted.
    Fail(&'static str, String),
    /// It is complete.
    Complete,
    /// Create this many pods now.
    Create(i32),
    /// Delete this many active pods (parallelism lowered, or suspended).
    Delete(i32),
    /// Wait this long before creating more (back-off), or indefinitely (None).
    Wait(Option<Duration>),
}

/// Kubernetes' `syncJob`, for the decisions this controller makes.
pub fn decide(o: &Observed) -> Decision {
    if o.failed > o.backoff_limit {
        return Decision::Fail(
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit".into(),
        );
    }
    if let (Some(deadline), Some(ran)) = (o.active_deadline, o.running_for) {
        if ran >= deadline {
            return Decision::Fail(
                "DeadlineExceeded",
                "Job was active longer than specified deadline".into(),
            );
        }
    }
    let done = match o.completions {
        Some(c) => o.succeeded >= c,
        // A work queue is done once a pod succeeded and the others stopped.
        None => o.succeeded > 0 && o.active == 0,
    };
    if done {
        return Decision::Complete;
    }
    if o.suspended {
        return if o.active > 0 {
            Decision::Delete(o.active)
        } else {
            Decision::Wait(None)
        };
    }
    let want = match o.completions {
        Some(c) => o.parallelism.min(c - o.succeeded),
        None if o.succeeded > 0 => 0,
        None => o.parallelism,
    }
    .max(0);
    if o.active > want {
        return Decision::Delete(o.active - want);
    }
    if o.active == want {
        return Decision::Wait(None);
    }
    if o.failed > 0 {
        let wait = backoff(o.failed);
        let since = o.since_last_failure.unwrap_or(i64::MAX);
        if (since.max(0) as u64) < wait.as_secs() {
            return Decision::Wait(Some(wait - Duration::from_secs(since.max(0) as u64)));
        }
    }
    Decision::Create(want - o.active)
}

/// An Indexed Job pod's completion index: its annotation, else its label.
pub fn index_of(p: &Pod) -> Option<i32> {
    [&p.metadata.annotations, &p.metadata.labels]
        .into_iter()
        .find_map(|m| m.as_ref()?.get(COMPLETION_INDEX))
        .and_then(|v| v.parse().ok())
}

/// Kubernetes' spelling of a set of indexes: ascending, runs as ranges (`0-2,4,6-7`).
pub fn format_indexes(indexes: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut run: Option<(i32, i32)> = None;
    for &i in indexes {
        run = match run {
            Some((first, last)) if i == last + 1 => Some((first, i)),
            Some(done) => {
                parts.push(format_run(done));
                Some((i, i))
            }
            None => Some((i, i)),
        };
    }
    parts.extend(run.map(format_run));
    parts.join(",")
}

fn format_run((first, last): (i32, i32)) -> String {
    if first == last {
        first.to_string()
    } else {
        format!("{first}-{last}")
    }
}

/// The indexes of a `completedIndexes` string below `completions`; what does not parse
/// is skipped (the pods still tell).
pub fn parse_indexes(s: &str, completions: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
            None => (part.parse(), part.parse()),
        };
        if let (Ok(first), Ok(last)) = (first, last) {
            out.extend(first.max(0)..=last.min(completions - 1));
        }
    }
    out
}

/// The `n` lowest indexes below `completions` that neither succeeded nor have an active
/// pod: the ones an Indexed Job starts next.
pub fn indexes_to_start(
    completions: i32,
    succeeded: &BTreeSet<i32>,
    active: &BTreeSet<i32>,
    n: i32,
) -> Vec<i32> {
    (0..completions)
        .filter(|i| !succeeded.contains(i) && !active.contains(i))
        .take(n.max(0) as usize)
        .collect()
}

/// What a podFailurePolicy makes of one failed pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailureAction {
    /// Fail the Job now, with this message.
    FailJob(String),
    /// Do not count the failure against backoffLimit.
    Ignore,
    /// Count it (also when no rule matches).
    Count,
}

/// Kubernetes' `matchPodFailurePolicy`: the first rule matching the failed pod decides.
/// An exit-code rule matches a container (init or app, optionally only `containerName`)
/// that terminated with a non-zero code In (or NotIn) its values; a condition rule
/// matches a pod condition of that type and status.
pub fn failure_action(policy: &PodFailurePolicy, pod: &Pod) -> FailureAction {
    let who = format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    );
    for (index, rule) in policy.rules.iter().enumerate() {
        let Some(matched) = rule_matches(rule, pod) else {
            continue;
        };
        return match rule.action.as_str() {
            "FailJob" => FailureAction::FailJob(match matched {
                Matched::ExitCode(container, code) => format!(
                    "Container {container} for pod {who} failed with exit code {code} matching FailJob rule at index {index}"
                ),
                Matched::Condition(type_) => format!(
                    "Pod {who} has condition {type_} matching FailJob rule at index {index}"
                ),
            }),
            "Ignore" => FailureAction::Ignore,
            _ => FailureAction::Count,
        };
    }
    FailureAction::Count
}

enum Matched {
    ExitCode(String, i32),
    Condition(String),
}

fn rule_matches(rule: &PodFailurePolicyRule, pod: &Pod) -> Option<Matched> {
    let status = pod.status.as_ref()?;
    if let Some(req) = &rule.on_exit_codes {
        let statuses = status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten());
        for c in statuses {
            if req.container_name.as_ref().is_some_and(|n| n != &c.name) {
                continue;
            }
            let Some(code) = c.state.as_ref()?.terminated.as_ref().map(|t| t.exit_code) else {
                continue;
            };
            let listed = req.values.contains(&code);
            let hit = match req.operator.as_str() {
                "In" => listed,
                "NotIn" => !listed,
                _ => false,
            };
            if code != 0 && hit {
                return Some(Matched::ExitCode(c.name.clone(), code));
            }
        }
        return None;
    }
    let patterns = rule.on_pod_conditions.as_ref()?;
    let conditions = status.conditions.as_ref()?;
    patterns.iter().find_map(|want| {
        conditions
            .iter()
            .any(|c| c.type_ == want.type_ && c.status == want.status)
            .then(|| Matched::Condition(want.type_.clone()))
    })
}

/// When a finished pod finished: its containers' latest finishedAt, else the time its
/// Ready condition last changed, else its creation.
fn finished_at(p: &Pod) -> Option<jiff::Timestamp> {
    let status = p.status.as_ref();
    let from_containers = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| {
            cs.iter()
                .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
                .map(|t| t.0)
                .max()
        });
    from_containers
        .or_else(|| {
            status
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
                .and_then(|c| c.last_transition_time.as_ref())
                .map(|t| t.0)
        })
        .or_else(|| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn phase(p: &Pod) -> Option<&str> {
    p.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn has_condition(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// The time a finished Job finished: its completionTime or its terminal condition.
fn finish_time(job: &Job) -> Option<jiff::Timestamp> {
    let s = job.status.as_ref()?;
    if let Some(t) = s.completion_time.as_ref() {
        return Some(t.0);
    }
    s.conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Failed" || c.type_ == "Complete") && c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

/// Whether a Job has finished (Complete or Failed).
pub fn is_finished(job: &Job) -> bool {
    has_condition(job, "Complete") || has_condition(job, "Failed")
}

/// The pod a Job creates from its template; for an Indexed Job, the pod of `index`
/// (named `<job>-<index>-…`, hostname `<job>-<index>`, the index in its annotation,
/// label and `$JOB_COMPLETION_INDEX`, as Kubernetes makes them).
pub fn new_pod(job: &Job, index: Option<i32>) -> Pod {
    let template = job.spec.clone().unwrap_or_default().template;
    let meta = template.metadata.unwrap_or_default();
    let mut pod = Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", job.name())),
            namespace: job.namespace().map(str::to_string),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref(job)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    };
    if let Some(index) = index {
        let value = index.to_string();
        pod.metadata.generate_name = Some(format!("{}-{index}-", job.name()));
        for map in [&mut pod.metadata.annotations, &mut pod.metadata.labels] {
            map.get_or_insert_with(BTreeMap::new)
                .insert(COMPLETION_INDEX.into(), value.clone());
        }
        if let Some(spec) = pod.spec.as_mut() {
            spec.hostname
                .get_or_insert_with(|| format!("{}-{index}", job.name()));
            let containers = spec
                .containers
                .iter_mut()
                .chain(spec.init_containers.iter_mut().flatten());
            for c in containers {
                let env = c.env.get_or_insert_with(Vec::new);
                if env.iter().all(|e| e.name != COMPLETION_INDEX_ENV) {
                    env.push(EnvVar {
                        name: COMPLETION_INDEX_ENV.into(),
                        value: None,
                        value_from: Some(EnvVarSource {
                            field_ref: Some(ObjectFieldSelector {
                                api_version: None,
                                field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
                            }),
                            ..EnvVarSource::default()
                        }),
                    });
                }
            }
        }
    }
    pod
}

fn condition(type_: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({
        "type": type_,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": now,
        "lastTransitionTime": now,
    })
}

/// TTL-after-finished: delete the Job (and, in the background, its pods) once `ttl`
/// has passed since it finished.
async fn expire(job: &Job, ctx: &Ctx, now: jiff::Timestamp) -> Result<Action> {
    let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
        return Ok(Action::await_change());
    };
    let finished = finish_time(job).unwrap_or(now);
    let left = finished.as_second() + i64::from(ttl) - now.as_second();
    if left > 0 {
        return Ok(Action::requeue(Duration::from_secs(left.unsigned_abs())));
    }
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), job.namespace().unwrap_or(""));
    let dp = DeleteParams {
        propagation_policy: Some(skiff_client::PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    match api.delete(job.name(), &dp).await {
        Ok(_) => {
            tracing::info!(job = %ObjectRef::from_obj(job), "deleted a finished Job after its TTL");
            Ok(Action::await_change())
        }
        Err(e) if e.is_not_found() => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

/// One reconcile of one Job; see the module docs.
pub async fn reconcile(job: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action> {
    let key = ObjectRef::from_obj(job.as_ref());
    let ns = job.namespace().unwrap_or("").to_string();
    let uid = job.uid().unwrap_or("").to_string();
    let now = jiff::Timestamp::now();
    if job.metadata.deletion_timestamp.is_some() {
        ctx.expectations.forget(&key);
        return Ok(Action::await_change());
    }
    if is_finished(&job) {
        if !ctx.ttl {
            return Ok(Action::await_change());
        }
        return expire(&job, &ctx, now).await;
    }
    let spec = job.spec.clone().unwrap_or_default();
    if let Some(field) = unsupported_field(&spec) {
        ctx.recorder.publish(
            job.as_ref(),
            EventType::Warning,
            "NotSupported",
            &format!("skiff's job controller does not run Jobs with spec.{field}; remove it to run this Job"),
        );
        return Ok(Action::await_change());
    }
    let selector = match selector_of(spec.selector.as_ref()) {
        Ok(s) => s,
        Err(message) => {
            ctx.recorder.publish(
                job.as_ref(),
                EventType::Warning,
                "InvalidSelector",
                &message,
            );
            return Ok(Action::await_change());
        }
    };
    let owned: Vec<Arc<Pod>> = ctx
        .pods
        .list()
        .into_iter()
        .filter(|p| p.namespace() == Some(ns.as_str()))
        .filter(|p| p.controller_owner().is_some_and(|o| o.uid == uid))
        .filter(|p| selector.matches(p.labels()))
        .collect();
    let status = job.status.clone().unwrap_or_default();
    let mut active: Vec<&Arc<Pod>> = owned.iter().filter(|p| pods::is_active(p)).collect();
    // Running and ready pods first: of two pods for one index, the one kept.
    active.sort_by_key(|p| (phase(p) != Some("Running"), !pods::is_ready(p)));
    let succeeded_pods = owned.iter().filter(|p| phase(p) == Some("Succeeded"));
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions.unwrap_or(1);
    // Indexed: the indexes done, and active pods that serve no index still to do
    // (a duplicate, or an index done or out of range), deleted as Kubernetes does.
    let mut done_indexes = BTreeSet::new();
    let mut extra: Vec<&Arc<Pod>> = Vec::new();
    let succeeded_now = if indexed {
        done_indexes = parse_indexes(
            status.completed_indexes.as_deref().unwrap_or_default(),
            completions,
        );
        done_indexes.extend(
            succeeded_pods
                .filter_map(|p| index_of(p))
                .filter(|i| (0..completions).contains(i)),
        );
        let mut serving = BTreeSet::new();
        let (keep, drop): (Vec<&Arc<Pod>>, Vec<&Arc<Pod>>) =
            active.iter().partition(|p| match index_of(p) {
                Some(i) => {
                    (0..completions).contains(&i) && !done_indexes.contains(&i) && serving.insert(i)
                }
                None => false,
            });
        active = keep;
        extra = drop;
        done_indexes.len() as i32
    } else {
        succeeded_pods.count() as i32
    };
    let active_indexes: BTreeSet<i32> = active.iter().filter_map(|p| index_of(p)).collect();
    // The podFailurePolicy sorts failures into ignored, counted, and one that fails the Job.
    let mut fail_job = None;
    let failed_pods: Vec<&Arc<Pod>> = owned
        .iter()
        .filter(|p| phase(p) == Some("Failed"))
        .filter(|p| {
            match spec
                .pod_failure_policy
                .as_ref()
                .map(|pol| failure_action(pol, p))
            {
                Some(FailureAction::FailJob(message)) => {
                    fail_job.get_or_insert(message);
                    true
                }
                Some(FailureAction::Ignore) => false,
                Some(FailureAction::Count) | None => true,
            }
        })
        .collect();
    let on_failure = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");
    let restarts: i32 = if on_failure {
        active.iter().map(|p| pods::restarts(p)).sum()
    } else {
        0
    };
    // Counts never go down, even when a counted pod was removed meanwhile.
    let succeeded = succeeded_now.max(status.succeeded.unwrap_or(0));
    let failed = (failed_pods.len() as i32).max(status.failed.unwrap_or(0));
    let last_failure = failed_pods.iter().filter_map(|p| finished_at(p)).max();
    let start = status.start_time.as_ref().map(|t| t.0);
    let suspended = spec.suspend.unwrap_or(false);
    let observed = Observed {
        parallelism: spec.parallelism.unwrap_or(1),
        completions: spec.completions,
        backoff_limit: spec.backoff_limit.unwrap_or(6),
        active: active.len() as i32,
        succeeded,
        failed: failed + restarts,
        running_for: start.map(|s| now.as_second() - s.as_second()),
        active_deadline: spec.active_deadline_seconds,
        since_last_failure: last_failure.map(|t| now.as_second() - t.as_second()),
        suspended,
    };
    let satisfied = ctx.expectations.satisfied(
        &key,
        |name| match ctx.pods.get(Some(&ns), name) {
            Some(p) => Seen::Present {
                uid: p.uid().unwrap_or("").to_string(),
                deleting: p.metadata.deletion_timestamp.is_some(),
            },
            None => Seen::Absent,
        },
        |pod_uid| active.iter().any(|p| p.uid() == Some(pod_uid)),
    );
    let decision = match fail_job {
        Some(message) => Decision::Fail("PodFailurePolicy", message),
        None => decide(&observed),
    };
    let now_s = now.to_string();
    let mut patch = json!({
        "active": observed.active,
        "succeeded": succeeded,
        "failed": failed,
        "ready": active.iter().filter(|p| pods::is_ready(p)).count(),
    });
    if indexed {
        patch["completedIndexes"] = json!(format_indexes(&done_indexes));
    }
    if start.is_none() && !suspended {
        patch["startTime"] = json!(now_s);
    }
    let mut conditions: Vec<Value> = status
        .conditions
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect();
    let mut after = Action::await_change();
    let mut result = Ok(());
    match &decision {
        Decision::Fail(reason, message) => {
            let all: Vec<&Arc<Pod>> = active.iter().chain(&extra).copied().collect();
            result = delete_pods(&job, &ctx, &key, &all, all.len()).await;
            conditions.push(condition("FailureTarget", reason, message, &now_s));
            conditions.push(condition("Failed", reason, message, &now_s));
            patch["active"] = json!(0);
            ctx.recorder
                .publish(job.as_ref(), EventType::Warning, reason, message);
        }
        Decision::Complete => {
            conditions.push(condition(
                "SuccessCriteriaMet",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                &now_s,
            ));
            conditions.push(condition(
                "Complete",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                &now_s,
            ));
            patch["completionTime"] = json!(now_s);
            ctx.recorder.publish(
                job.as_ref(),
                EventType::Normal,
                "Completed",
                "Job completed",
            );
        }
        Decision::Create(n) if satisfied => {
            let n = (*n).min(BURST_REPLICAS as i32);
            let indexes: Vec<Option<i32>> = if indexed {
                indexes_to_start(completions, &done_indexes, &active_indexes, n)
                    .into_iter()
                    .map(Some)
                    .collect()
            } else {
                vec![None; n as usize]
            };
            result = create_pods(&job, &ctx, &key, &indexes).await;
        }
        Decision::Delete(n) if satisfied => {
            // Pods not yet running go first; of Indexed pods, the highest indexes.
            let mut victims = active.clone();
            victims.sort_by_key(|p| {
                (
                    phase(p) == Some("Running"),
                    pods::is_ready(p),
                    std::cmp::Reverse(index_of(p)),
                )
            });
            result = delete_pods(&job, &ctx, &key, &victims, *n as usize).await;
        }
        Decision::Wait(Some(d)) => after = Action::requeue(*d + Duration::from_millis(500)),
        _ => {}
    }
    if !extra.is_empty() && satisfied && !matches!(decision, Decision::Fail(..)) {
        let removed = delete_pods(&job, &ctx, &key, &extra, extra.len()).await;
        result = result.and(removed);
    }
    // Suspended Jobs say so; resumed ones say they are not.
    let was_suspended = has_condition(&job, "Suspended");
    if suspended != was_suspended && !matches!(decision, Decision::Fail(..) | Decision::Complete) {
        conditions.retain(|c| c["type"] != "Suspended");
        let (status_s, reason, message) = if suspended {
            ("True", "JobSuspended", "Job suspended")
        } else {
            ("False", "JobResumed", "Job resumed")
        };
        conditions.push(
            json!({"type": "Suspended", "status": status_s, "reason": reason,
            "message": message, "lastProbeTime": now_s, "lastTransitionTime": now_s}),
        );
        if !suspended {
            patch["startTime"] = json!(now_s);
        }
    }
    patch["conditions"] = json!(conditions);
    let current = json!({
        "active": status.active.unwrap_or(0),
        "succeeded": status.succeeded.unwrap_or(0),
        "failed": status.failed.unwrap_or(0),
        "ready": status.ready.unwrap_or(0),
        "completedIndexes": status.completed_indexes.clone().unwrap_or_default(),
        "conditions": status
            .conditions
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| serde_json::to_value(c).ok())
            .collect::<Vec<_>>(),
    });
    let changed = patch
        .as_object()
        .is_some_and(|m| m.iter().any(|(k, v)| current.get(k).is_none_or(|c| c != v)));
    if changed {
        let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
        if !patch_status(&api, job.name(), &patch).await? {
            return Ok(Action::await_change());
        }
    }
    result?;
    if let (Some(deadline), Some(ran)) = (observed.active_deadline, observed.running_for) {
        let left = Duration::from_secs((deadline - ran).max(1).unsigned_abs());
        after = match after {
            Action::Requeue(d) => Action::requeue(d.min(left)),
            Action::AwaitChange => Action::requeue(left),
        };
    }
    if !satisfied && after == Action::await_change() {
        after = Action::requeue(Duration::from_secs(30));
    }
    Ok(after)
}

/// The spec fields skiff's Job controller does not carry out, the first one set.
fn unsupported_field(spec: &k8s_openapi::api::batch::v1::JobSpec) -> Option<&'static str> {
    if spec.backoff_limit_per_index.is_some() {
        Some("backoffLimitPerIndex")
    } else if spec.max_failed_indexes.is_some() {
        Some("maxFailedIndexes")
    } else if spec.success_policy.is_some() {
        Some("successPolicy")
    } else {
        None
    }
}

/// Creates a pod for each entry of `indexes` (an index, or None for a NonIndexed Job),
/// in slow-start batches.
async fn create_pods(job: &Job, ctx: &Ctx, key: &ObjectRef, indexes: &[Option<i32>]) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), job.namespace().unwrap_or(""));
    let pp = PostParams::default();
    let mut rest = indexes;
    for batch in crate::replicaset::slow_start_batches(indexes.len()) {
        let (now, later) = rest.split_at(batch.min(rest.len()));
        rest = later;
        let pods: Vec<Pod> = now.iter().map(|i| new_pod(job, *i)).collect();
        let results =
            crate::pods::join_in_flight(pods.iter().map(|pod| api.create(&pp, pod))).await;
        let mut failure = None;
        for r in results {
            match r {
                Ok(p) => {
                    ctx.expectations.expect_add(key, p.name());
                    ctx.recorder.publish(
                        job,
                        EventType::Normal,
                        "SuccessfulCreate",
                        &format!("Created pod: {}", p.name()),
                    );
                }
                Err(e) => {
                    ctx.recorder.publish(
                        job,
                        EventType::Warning,
                        "FailedCreate",
                        &format!("Error creating: {e}"),
                    );
                    failure = Some(e);
                }
            }
        }
        if let Some(e) = failure {
            return Err(e.into());
        }
    }
    Ok(())
}

async fn delete_pods(
    job: &Job,
    ctx: &Ctx,
    key: &ObjectRef,
    victims: &[&Arc<Pod>],
    n: usize,
) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), job.namespace().unwrap_or(""));
    let results = crate::pods::join_in_flight(victims.iter().take(n).map(|p| {
        let api = api.clone();
        async move { (p, api.delete(p.name(), &Default::default()).await) }
    }))
    .await;
    let mut failure = None;
    for (p, r) in results {
        match r {
            Ok(_) => {
                ctx.expectations.expect_delete(key, p.uid().unwrap_or(""));
                ctx.recorder.publish(
                    job,
                    EventType::Normal,
                    "SuccessfulDelete",
                    &format!("Deleted pod: {}", p.name()),
                );
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => failure = Some(e),
        }
    }
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(parallelism: i32, completions: Option<i32>) -> Observed {
        Observed {
            parallelism,
            completions,
            backoff_limit: 6,
            active: 0,
            succeeded: 0,
            failed: 0,
            running_for: Some(0),
            active_deadline: None,
            since_last_failure: None,
            suspended: false,
        }
    }

    #[test]
    fn backoff_doubles_from_ten_seconds_and_is_capped() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(1), Duration::from_secs(10));
        assert_eq!(backoff(2), Duration::from_secs(20));
        assert_eq!(backoff(4), Duration::from_secs(80));
        assert_eq!(backoff(10), BACKOFF_MAX);
        assert_eq!(backoff(1000), BACKOFF_MAX);
    }

    #[test]
    fn parallelism_and_completions_bound_active_pods() {
        assert_eq!(decide(&job(2, Some(5))), Decision::Create(2));
        let mut o = job(3, Some(5));
        o.succeeded = 4;
        assert_eq!(decide(&o), Decision::Create(1));
        o.active = 1;
        assert_eq!(decide(&o), Decision::Wait(None));
        o.succeeded = 5;
        assert_eq!(decide(&o), Decision::Complete);
        let mut q = job(2, None);
        assert_eq!(decide(&q), Decision::Create(2));
        q.succeeded = 1;
        q.active = 1;
        assert_eq!(decide(&q), Decision::Delete(1), "a work queue winds down");
        q.active = 0;
        assert_eq!(decide(&q), Decision::Complete);
    }

    #[test]
    fn failures_back_off_then_exceed_the_limit() {
        let mut o = job(1, Some(1));
        o.backoff_limit = 2;
        o.failed = 1;
        o.since_last_failure = Some(3);
        assert_eq!(decide(&o), Decision::Wait(Some(Duration::from_secs(7))));
        o.since_last_failure = Some(10);
        assert_eq!(decide(&o), Decision::Create(1));
        o.failed = 2;
        o.since_last_failure = Some(10);
        assert_eq!(decide(&o), Decision::Wait(Some(Duration::from_secs(10))));
        o.failed = 3;
        assert_eq!(
            decide(&o),
            Decision::Fail(
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit".into()
            )
        );
    }

    #[test]
    fn completed_indexes_are_written_and_read_as_kubernetes_spells_them() {
        let set: BTreeSet<i32> = [0, 1, 2, 4, 6, 7].into();
        assert_eq!(format_indexes(&set), "0-2,4,6-7");
        assert_eq!(format_indexes(&BTreeSet::new()), "");
        assert_eq!(parse_indexes("0-2,4,6-7", 10), set);
        assert_eq!(
            parse_indexes("0-2,x,9", 5),
            [0, 1, 2].into(),
            "out of range and junk skipped"
        );
    }

    #[test]
    fn an_indexed_job_starts_the_lowest_indexes_not_done_or_running() {
        let done: BTreeSet<i32> = [0, 2].into();
        let active: BTreeSet<i32> = [1].into();
        assert_eq!(indexes_to_start(6, &done, &active, 2), vec![3, 4]);
        assert_eq!(indexes_to_start(4, &done, &active, 5), vec![3]);
    }

    fn indexed_job() -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "sq", "namespace": "default", "uid": "u1"},
            "spec": {"completionMode": "Indexed", "completions": 3, "template": {"spec": {
                "restartPolicy": "Never",
                "initContainers": [{"name": "init", "image": "busybox"}],
                "containers": [{"name": "main", "image": "busybox",
                    "env": [{"name": "A", "value": "1"}]}]}}}
        }))
        .unwrap()
    }

    #[test]
    fn an_indexed_pod_carries_its_index_in_name_hostname_annotation_label_and_env() {
        let p = new_pod(&indexed_job(), Some(2));
        assert_eq!(p.metadata.generate_name.as_deref(), Some("sq-2-"));
        assert_eq!(index_of(&p), Some(2));
        assert_eq!(p.metadata.labels.as_ref().unwrap()[COMPLETION_INDEX], "2");
        let spec = p.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("sq-2"));
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            let env = c.env.as_ref().unwrap();
            let e = env.iter().find(|e| e.name == COMPLETION_INDEX_ENV).unwrap();
            let path = &e
                .value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path;
            assert_eq!(
                path,
                "metadata.annotations['batch.kubernetes.io/job-completion-index']"
            );
        }
        let plain = new_pod(&indexed_job(), None);
        assert_eq!(index_of(&plain), None);
        assert_eq!(plain.metadata.generate_name.as_deref(), Some("sq-"));
    }

    fn failed_pod(statuses: Value, conditions: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "sq-0-abc", "namespace": "default"},
            "status": {"phase": "Failed", "conditions": conditions,
                "initContainerStatuses": [{"name": "init", "image": "b", "imageID": "", "ready": false,
                    "restartCount": 0, "state": {"terminated": {"exitCode": 0}}}],
                "containerStatuses": statuses}
        }))
        .unwrap()
    }

    fn exited(name: &str, code: i32) -> Value {
        json!({"name": name, "image": "b", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": code}}})
    }

    #[test]
    fn the_first_matching_pod_failure_rule_decides() {
        let policy: PodFailurePolicy = serde_json::from_value(json!({"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            {"action": "Ignore", "onExitCodes": {"operator": "NotIn", "values": [1, 42]}},
        ]}))
        .unwrap();
        let p = failed_pod(json!([exited("main", 42)]), json!([]));
        assert_eq!(
            failure_action(&policy, &p),
            FailureAction::FailJob(
                "Container main for pod default/sq-0-abc failed with exit code 42 matching FailJob rule at index 1".into()
            )
        );
        let p = failed_pod(json!([exited("side", 42)]), json!([]));
        assert_eq!(
            failure_action(&policy, &p),
            FailureAction::Count,
            "42 from another container: no rule"
        );
        let p = failed_pod(json!([exited("main", 7)]), json!([]));
        assert_eq!(failure_action(&policy, &p), FailureAction::Ignore);
        let p = failed_pod(json!([exited("main", 1)]), json!([]));
        assert_eq!(failure_action(&policy, &p), FailureAction::Count);
        let p = failed_pod(
            json!([exited("main", 42)]),
            json!([{"type": "DisruptionTarget", "status": "True"}]),
        );
        assert_eq!(
            failure_action(&policy, &p),
            FailureAction::Ignore,
            "rule 0 comes first"
        );
        // Exit code 0 never matches, not even NotIn.
        let p = failed_pod(json!([exited("main", 0)]), json!([]));
        assert_eq!(failure_action(&policy, &p), FailureAction::Count);
    }

    #[test]
    fn deadline_and_suspend() {
        let mut o = job(1, Some(1));
        o.active = 1;
        o.active_deadline = Some(30);
        o.running_for = Some(29);
        assert_eq!(decide(&o), Decision::Wait(None));
        o.running_for = Some(30);
        assert!(matches!(decide(&o), Decision::Fail("DeadlineExceeded", _)));
        let mut s = job(2, Some(2));
        s.suspended = true;
        s.active = 2;
        assert_eq!(decide(&s), Decision::Delete(2));
        s.active = 0;
        assert_eq!(decide(&s), Decision::Wait(None));
    }
}
