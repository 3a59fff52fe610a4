//! The `batch/v1` kinds.

use jiff::Timestamp;
use serde_json::{json, Value};

use super::access::{
    array_at, bool_at, int_at, is_set, len_of_array, opt_int, opt_str, str_at, time_at,
};
use super::col::{boolean, integer, text, Col, AGE, CONTAINERS, IMAGES, NAME, SELECTOR};
use super::format::{containers, format_label_selector, human_duration, since};

fn name(obj: &Value) -> Value {
    json!(str_at(obj, &["metadata", "name"]))
}

fn age(obj: &Value, now: Timestamp) -> Value {
    json!(since(time_at(obj, &["metadata", "creationTimestamp"]), now))
}

pub(super) const JOB: &[Col] = &[
    NAME,
    text("Status", "Complete, Failed, Running, …"),
    text(
        "Completions",
        "Succeeded pods out of the completions wanted.",
    ),
    text("Duration", "How long the job ran, or has been running."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

pub(super) fn job(obj: &Value, now: Timestamp) -> Vec<Value> {
    let succeeded = int_at(obj, &["status", "succeeded"]);
    let mut completions = opt_int(obj, &["spec", "completions"]);
    let mut parallelism = opt_int(obj, &["spec", "parallelism"]);
    // The API server's defaulting: a job with neither runs one pod once.
    if completions.is_none() && parallelism.is_none() {
        completions = Some(1);
        parallelism = Some(1);
    }
    let parallelism = parallelism.unwrap_or(1);
    let completions = match completions {
        Some(c) => format!("{succeeded}/{c}"),
        None if parallelism > 1 => format!("{succeeded}/1 of {parallelism}"),
        None => format!("{succeeded}/1"),
    };
    let duration = match (
        time_at(obj, &["status", "startTime"]),
        time_at(obj, &["status", "completionTime"]),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now.duration_since(start)),
        (Some(start), Some(end)) => human_duration(end.duration_since(start)),
    };
    let (names, images) = containers(obj, &["spec", "template", "spec", "containers"]);
    vec![
        name(obj),
        json!(job_status(obj)),
        json!(completions),
        json!(duration),
        age(obj, now),
        json!(names),
        json!(images),
        json!(format_label_selector(obj, &["spec", "selector"])),
    ]
}

/// The first matching of Complete, Failed, Terminating (being deleted), Suspended,
/// FailureTarget; Running otherwise.
fn job_status(obj: &Value) -> &'static str {
    let conditions = array_at(obj, &["status", "conditions"]);
    // Only the first condition of a type counts, as in Kubernetes' hasJobCondition.
    let has = |ty: &str| {
        conditions
            .iter()
            .find(|c| str_at(c, &["type"]) == ty)
            .is_some_and(|c| str_at(c, &["status"]) == "True")
    };
    if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if is_set(obj, &["metadata", "deletionTimestamp"]) {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    }
}

pub(super) const CRON_JOB: &[Col] = &[
    NAME,
    text("Schedule", "Cron schedule of the job."),
    text("Timezone", "Time zone of the schedule."),
    boolean("Suspend", "Whether new runs are held back."),
    integer("Active", "Number of jobs running."),
    text("Last Schedule", "Time since a job was last scheduled."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

pub(super) fn cron_job(obj: &Value, now: Timestamp) -> Vec<Value> {
    let last_schedule = if is_set(obj, &["status", "lastScheduleTime"]) {
        since(time_at(obj, &["status", "lastScheduleTime"]), now)
    } else {
        "<none>".to_string()
    };
    // Defaulting sets suspend to false, so Kubernetes' "<unset>" never shows.
    let suspend = if bool_at(obj, &["spec", "suspend"]) {
        "True"
    } else {
        "False"
    };
    let template = [
        "spec",
        "jobTemplate",
        "spec",
        "template",
        "spec",
        "containers",
    ];
    let (names, images) = containers(obj, &template);
    vec![
        name(obj),
        json!(str_at(obj, &["spec", "schedule"])),
        json!(opt_str(obj, &["spec", "timeZone"]).unwrap_or("<none>")),
        json!(suspend),
        json!(len_of_array(obj, &["status", "active"])),
        json!(last_schedule),
        age(obj, now),
        json!(names),
        json!(images),
        json!(format_label_selector(
            obj,
            &["spec", "jobTemplate", "spec", "selector"]
        )),
    ]
}
