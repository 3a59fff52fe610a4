//! The CronJob controller: creates a Job `<cronjob>-<scheduled time in minutes since
//! the epoch>` at each scheduled time ([`crate::cron`], in `spec.timeZone` or the
//! controller manager's zone), honouring `concurrencyPolicy` (Allow, Forbid, Replace),
//! `startingDeadlineSeconds`, `suspend`, and keeping `successfulJobsHistoryLimit` and
//! `failedJobsHistoryLimit` finished Jobs; `status.active` and `status.lastScheduleTime`
//! as Kubernetes' cronjob_controllerv2.
//!
//! When to run is pure ([`due`]); the reconcile reads the caches, acts, and asks to be
//! woken at the next scheduled time.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;
use skiff_client::controller::{Action, Controller};
use skiff_client::{
    Api, Client, DeleteParams, ObjectRef, PostParams, PropagationPolicy, ResourceExt, Store,
};

use crate::cron::{time_zone, Schedule};
use crate::events::{object_reference, EventType, Recorder};
use crate::informer::Informer;
use crate::job::is_finished;
use crate::pods::controller_ref;
use crate::status::patch_status;
use crate::Result;

/// The controller's name, as kube-controller-manager's.
pub const NAME: &str = "cronjob-controller";
/// The annotation with the time a Job was scheduled for.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// More missed start times than this get a warning, as in Kubernetes.
pub const TOO_MANY_MISSED: usize = 100;

/// What the CronJob reconcile needs.
pub struct Ctx {
    client: Client,
    jobs: Store<Job>,
    recorder: Recorder,
}

/// Builds the controller, fed by a Job informer.
pub fn controller(client: &Client, jobs: &mut Informer<Job>) -> (Controller<CronJob>, Arc<Ctx>) {
    let c = Controller::new(Api::<CronJob>::all(client.clone()), Default::default());
    let c = c.watches_stream(jobs.subscribe(), |j: &Job| {
        j.controller_owner()
            .filter(|o| o.kind == "CronJob" && o.api_version == "batch/v1")
            .map(|o| ObjectRef::new(j.namespace(), &o.name))
            .into_iter()
            .collect()
    });
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        jobs: jobs.store(),
        recorder: Recorder::new(client.clone(), NAME),
    });
    (c, ctx)
}

/// The name of the Job for scheduled time `t`.
pub fn job_name(cronjob: &str, t: Timestamp) -> String {
    format!("{cronjob}-{}", t.as_second().div_euclid(60))
}

/// What is due at `now`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    /// The most recent scheduled time not yet run, if any.
    pub unmet: Option<Timestamp>,
    /// How many scheduled times were missed (all counted up to [`TOO_MANY_MISSED`]+1).
    pub missed: usize,
    /// The next scheduled time after `now`.
    pub next: Option<Timestamp>,
}

/// The scheduled times between the last one run (or the CronJob's creation) and `now`,
/// no earlier than `starting_deadline` seconds ago (Kubernetes' `mostRecentScheduleTime`).
pub fn due(
    schedule: &Schedule,
    tz: &jiff::tz::TimeZone,
    created: Timestamp,
    last_scheduled: Option<Timestamp>,
    starting_deadline: Option<i64>,
    now: Timestamp,
) -> Due {
    let mut earliest = last_scheduled.unwrap_or(created);
    if let Some(d) = starting_deadline {
        if let Ok(limit) = Timestamp::from_second(now.as_second() - d) {
            earliest = earliest.max(limit);
        }
    }
    let mut unmet = None;
    let mut missed = 0;
    let mut t = earliest;
    // Walk forward; many missed times (a long outage) need not all be visited exactly.
    for _ in 0..100_000 {
        match schedule.next(t, tz) {
            Some(n) if n <= now => {
                unmet = Some(n);
                missed += 1;
                t = n;
            }
            other => {
                return Due {
                    unmet,
                    missed,
                    next: other,
                }
            }
        }
    }
    Due {
        unmet,
        missed,
        next: schedule.next(now, tz),
    }
}

/// The Job for scheduled time `t`: the jobTemplate, named for `t`, owned by the CronJob.
pub fn new_job(cj: &CronJob, t: Timestamp, tz: &jiff::tz::TimeZone) -> Job {
    let template = cj.spec.clone().unwrap_or_default().job_template;
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.into(), rfc3339_in(t, tz));
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(cj.name(), t)),
            namespace: cj.namespace().map(str::to_string),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref(cj)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// `t` in RFC 3339 at the zone's offset, as Go's `time.RFC3339` prints it.
fn rfc3339_in(t: Timestamp, tz: &jiff::tz::TimeZone) -> String {
    let zoned = t.to_zoned(tz.clone());
    if zoned.offset().seconds() == 0 {
        t.to_string()
    } else {
        zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

fn job_reference(j: &Job) -> ObjectReference {
    object_reference(j)
}

/// One reconcile of one CronJob; see the module docs.
pub async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Ctx>) -> Result<Action> {
    let ns = cj.namespace().unwrap_or("").to_string();
    let uid = cj.uid().unwrap_or("").to_string();
    if cj.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let spec = cj.spec.clone().unwrap_or_default();
    let status = cj.status.clone().unwrap_or_default();
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let cj_api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);
    let owned: Vec<Arc<Job>> = ctx
        .jobs
        .list()
        .into_iter()
        .filter(|j| j.namespace() == Some(ns.as_str()))
        .filter(|j| j.controller_owner().is_some_and(|o| o.uid == uid))
        .collect();

    // status.active: the owned Jobs not finished (and not being deleted).
    let mut active: Vec<ObjectReference> = owned
        .iter()
        .filter(|j| !is_finished(j) && j.metadata.deletion_timestamp.is_none())
        .map(|j| job_reference(j))
        .collect();
    let was_active: Vec<String> = status
        .active
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| r.name)
        .collect();
    let mut last_successful = status.last_successful_time.as_ref().map(|t| t.0);
    for j in owned.iter().filter(|j| is_finished(j)) {
        if was_active.iter().any(|n| n == j.name()) {
            let failed = j
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Failed" && c.status == "True"));
            ctx.recorder.publish(
                cj.as_ref(),
                EventType::Normal,
                "SawCompletedJob",
                &format!(
                    "Saw completed job: {}, condition: {}",
                    j.name(),
                    if failed { "Failed" } else { "Complete" }
                ),
            );
            if !failed {
                let done = j
                    .status
                    .as_ref()
                    .and_then(|s| s.completion_time.as_ref())
                    .map(|t| t.0);
                last_successful = last_successful.max(done);
            }
        }
    }

    // History limits: the oldest finished Jobs beyond them go.
    cleanup(&cj, &ctx, &jobs_api, &owned).await?;

    let now = Timestamp::now();
    let mut last_scheduled = status.last_schedule_time.as_ref().map(|t| t.0);
    let mut requeue = None;
    if !spec.suspend.unwrap_or(false) {
        let schedule = match Schedule::parse(&spec.schedule) {
            Ok(s) => Some(s),
            Err(message) => {
                ctx.recorder.publish(
                    cj.as_ref(),
                    EventType::Warning,
                    "UnparseableSchedule",
                    &format!("unparseable schedule: {:?} : {message}", spec.schedule),
                );
                None
            }
        };
        let tz = match time_zone(spec.time_zone.as_deref()) {
            Ok(tz) => Some(tz),
            Err(message) => {
                ctx.recorder.publish(
                    cj.as_ref(),
                    EventType::Warning,
                    "UnknownTimeZone",
                    &format!("invalid timeZone: {:?}: {message}", spec.time_zone),
                );
                None
            }
        };
        if let (Some(schedule), Some(tz)) = (schedule, tz) {
            let created = cj.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
            let d = due(
                &schedule,
                &tz,
                created,
                last_scheduled,
                spec.starting_deadline_seconds,
                now,
            );
            if d.missed > TOO_MANY_MISSED {
                ctx.recorder.publish(
                    cj.as_ref(),
                    EventType::Warning,
                    "TooManyMissedTimes",
                    "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
                );
            }
            requeue = d.next;
            if let Some(t) = d.unmet {
                let name = job_name(cj.name(), t);
                let exists = owned.iter().any(|j| j.name() == name);
                let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
                if exists {
                    last_scheduled = Some(t);
                } else if policy == "Forbid" && !active.is_empty() {
                    tracing::debug!(cronjob = %ObjectRef::from_obj(cj.as_ref()), "not starting a job: one is still active (Forbid)");
                } else {
                    if policy == "Replace" {
                        for r in std::mem::take(&mut active) {
                            let n = r.name.clone().unwrap_or_default();
                            let dp = DeleteParams {
                                propagation_policy: Some(PropagationPolicy::Background),
                                ..DeleteParams::default()
                            };
                            match jobs_api.delete(&n, &dp).await {
                                Ok(_) => ctx.recorder.publish(
                                    cj.as_ref(),
                                    EventType::Normal,
                                    "SuccessfulDelete",
                                    &format!("Deleted job {n}"),
                                ),
                                Err(e) if e.is_not_found() => {}
                                Err(e) => return Err(e.into()),
                            }
                        }
                    }
                    let job = new_job(&cj, t, &tz);
                    match jobs_api.create(&PostParams::default(), &job).await {
                        Ok(created) => {
                            ctx.recorder.publish(
                                cj.as_ref(),
                                EventType::Normal,
                                "SuccessfulCreate",
                                &format!("Created job {}", created.name()),
                            );
                            active.push(job_reference(&created));
                            last_scheduled = Some(t);
                        }
                        Err(e) if e.is_already_exists() => last_scheduled = Some(t),
                        Err(e) => {
                            ctx.recorder.publish(
                                cj.as_ref(),
                                EventType::Warning,
                                "FailedCreate",
                                &format!("Error creating job: {e}"),
                            );
                            return Err(e.into());
                        }
                    }
                }
            }
        }
    }

    let mut new_status = json!({
        "active": active,
    });
    if let Some(t) = last_scheduled {
        new_status["lastScheduleTime"] = json!(t.to_string());
    }
    if let Some(t) = last_successful {
        new_status["lastSuccessfulTime"] = json!(t.to_string());
    }
    let names = |refs: &[ObjectReference]| -> Vec<String> {
        let mut v: Vec<String> = refs.iter().filter_map(|r| r.name.clone()).collect();
        v.sort();
        v
    };
    let changed = names(&active) != names(&status.active.clone().unwrap_or_default())
        || last_scheduled != status.last_schedule_time.as_ref().map(|t| t.0)
        || last_successful != status.last_successful_time.as_ref().map(|t| t.0);
    if changed && !patch_status(&cj_api, cj.name(), &new_status).await? {
        return Ok(Action::await_change());
    }
    Ok(match requeue {
        Some(t) => {
            let wait = (t.as_millisecond() - now.as_millisecond()).max(0) as u64 + 100;
            Action::requeue(Duration::from_millis(wait))
        }
        None => Action::await_change(),
    })
}

/// Deletes the oldest finished Jobs beyond the history limits.
async fn cleanup(cj: &CronJob, ctx: &Ctx, api: &Api<Job>, owned: &[Arc<Job>]) -> Result<()> {
    let spec = cj.spec.clone().unwrap_or_default();
    let failed = |j: &Job| {
        j.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Failed" && c.status == "True"))
    };
    for (want_failed, limit) in [
        (false, spec.successful_jobs_history_limit.unwrap_or(3)),
        (true, spec.failed_jobs_history_limit.unwrap_or(1)),
    ] {
        let mut finished: Vec<&Arc<Job>> = owned
            .iter()
            .filter(|j| is_finished(j) && failed(j) == want_failed)
            .filter(|j| j.metadata.deletion_timestamp.is_none())
            .collect();
        finished.sort_by_key(|j| {
            j.status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0)
                .or(j.metadata.creation_timestamp.as_ref().map(|t| t.0))
        });
        let excess = finished.len().saturating_sub(limit.max(0) as usize);
        for j in finished.into_iter().take(excess) {
            let dp = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..DeleteParams::default()
            };
            match api.delete(j.name(), &dp).await {
                Ok(_) => ctx.recorder.publish(
                    cj,
                    EventType::Normal,
                    "SuccessfulDelete",
                    &format!("Deleted job {}", j.name()),
                ),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::tz::TimeZone;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn jobs_are_named_by_scheduled_minute() {
        assert_eq!(
            job_name("hello", ts("2024-01-01T00:01:00Z")),
            "hello-28401121"
        );
    }

    #[test]
    fn the_most_recent_unmet_time_is_due() {
        let every_minute = Schedule::parse("* * * * *").unwrap();
        let utc = TimeZone::UTC;
        let created = ts("2024-01-01T00:00:30Z");
        // Nothing yet before the first minute.
        let d = due(
            &every_minute,
            &utc,
            created,
            None,
            None,
            ts("2024-01-01T00:00:59Z"),
        );
        assert_eq!(d.unmet, None);
        assert_eq!(d.next, Some(ts("2024-01-01T00:01:00Z")));
        // Three minutes missed: the latest runs; the clock is injected.
        let d = due(
            &every_minute,
            &utc,
            created,
            None,
            None,
            ts("2024-01-01T00:03:10Z"),
        );
        assert_eq!(d.unmet, Some(ts("2024-01-01T00:03:00Z")));
        assert_eq!(d.missed, 3);
        assert_eq!(d.next, Some(ts("2024-01-01T00:04:00Z")));
        // Already run at 00:03: nothing unmet.
        let d = due(
            &every_minute,
            &utc,
            created,
            Some(ts("2024-01-01T00:03:00Z")),
            None,
            ts("2024-01-01T00:03:50Z"),
        );
        assert_eq!(d.unmet, None);
    }

    #[test]
    fn starting_deadline_drops_old_times() {
        let hourly = Schedule::parse("@hourly").unwrap();
        let utc = TimeZone::UTC;
        let created = ts("2024-01-01T00:00:00Z");
        let now = ts("2024-01-01T05:10:00Z");
        let d = due(&hourly, &utc, created, None, Some(300), now);
        assert_eq!(d.unmet, None, "05:00 is more than 300 s ago");
        let d = due(&hourly, &utc, created, None, Some(900), now);
        assert_eq!(d.unmet, Some(ts("2024-01-01T05:00:00Z")));
        assert_eq!(d.missed, 1);
    }

    #[test]
    fn jobs_come_from_the_template() {
        let cj: CronJob = serde_json::from_value(json!({
            "metadata": {"name": "tick", "namespace": "ns", "uid": "u1"},
            "spec": {"schedule": "* * * * *", "jobTemplate": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"template": {"spec": {"restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox"}]}}}}}
        }))
        .unwrap();
        let t = ts("2024-01-01T00:01:00Z");
        let j = new_job(&cj, t, &TimeZone::UTC);
        assert_eq!(j.name(), "tick-28401121");
        assert_eq!(j.labels().get("a").map(String::as_str), Some("b"));
        assert_eq!(j.controller_owner().unwrap().kind, "CronJob");
        assert_eq!(
            j.metadata
                .annotations
                .unwrap()
                .get(SCHEDULED_TIMESTAMP)
                .map(String::as_str),
            Some("2024-01-01T00:01:00Z")
        );
    }
}
