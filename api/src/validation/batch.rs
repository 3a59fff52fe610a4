//! batch/v1: Job and CronJob.

use serde_json::Value;

use super::cron::check_schedule;
use super::json::{bool_at, has, int_at, str_at, str_or_empty};
use super::meta::{immutable, non_negative, selector_matches, validate_label_selector};
use super::pod::{
    effective_restart_policy, template_labels, template_labels_value, validate_pod_template, PodCtx,
};
use super::{FieldError, Path};

/// The label the generated Job selector matches on.
pub(crate) const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
/// The label with the Job's name on its pods.
pub(crate) const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// Longest Indexed Job (completions) Kubernetes accepts.
const MAX_INDEXED_COMPLETIONS: i64 = 100_000;

/// The Job spec rules shared by Jobs and CronJob job templates.
fn validate_job_spec_common(spec: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    for f in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
    ] {
        non_negative(spec, f, path, errs);
    }
    let mode = str_at(spec, "completionMode").unwrap_or("NonIndexed");
    match mode {
        "NonIndexed" => {
            for f in ["backoffLimitPerIndex", "maxFailedIndexes"] {
                if has(spec, f) {
                    errs.push(FieldError::invalid(
                        path.child(f),
                        spec.get(f).unwrap_or(&Value::Null),
                        "requires indexed completion mode",
                    ));
                }
            }
        }
        "Indexed" => match int_at(spec, "completions") {
            None => errs.push(FieldError::required(path.child("completions"), "when completion mode is Indexed")),
            Some(c) if c > MAX_INDEXED_COMPLETIONS => errs.push(FieldError::invalid(
                path.child("completions"),
                &Value::from(c),
                format!("must be less than or equal to {MAX_INDEXED_COMPLETIONS} when completion mode is Indexed"),
            )),
            _ => {}
        },
        other => errs.push(FieldError::not_supported(
            path.child("completionMode"),
            &Value::from(other),
            &["NonIndexed", "Indexed"],
        )),
    }
    let template = spec.get("template").unwrap_or(&Value::Null);
    let tpath = path.child("template");
    validate_pod_template(template, &tpath, &PodCtx::default(), errs);
    let restart = effective_restart_policy(template.get("spec").unwrap_or(&Value::Null));
    if restart != "OnFailure" && restart != "Never" {
        errs.push(FieldError::not_supported(
            tpath.child("spec").child("restartPolicy"),
            &Value::from(restart),
            &["OnFailure", "Never"],
        ));
    }
    if let Some(policy) = spec.get("podFailurePolicy").filter(|p| !p.is_null()) {
        if restart != "Never" {
            errs.push(FieldError::invalid_str(
                tpath.child("spec").child("restartPolicy"),
                restart,
                "only \"Never\" is supported when podFailurePolicy is specified",
            ));
        }
        let per_index = has(spec, "backoffLimitPerIndex");
        validate_pod_failure_policy(policy, per_index, &path.child("podFailurePolicy"), errs);
    }
}

/// Most rules a podFailurePolicy may have, as Kubernetes.
const MAX_POD_FAILURE_POLICY_RULES: usize = 20;
/// Most exit codes one rule may list.
const MAX_POD_FAILURE_POLICY_EXIT_CODES: usize = 255;

/// Kubernetes' `validatePodFailurePolicy`: known actions, one matcher per rule, exit
/// code lists ascending without duplicates (and without 0 for `In`).
fn validate_pod_failure_policy(
    policy: &Value,
    per_index: bool,
    path: &Path,
    errs: &mut Vec<FieldError>,
) {
    let empty = Vec::new();
    let rules = policy
        .get("rules")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let rules_path = path.child("rules");
    if rules.len() > MAX_POD_FAILURE_POLICY_RULES {
        errs.push(FieldError::too_many(
            rules_path.to_string(),
            rules.len(),
            MAX_POD_FAILURE_POLICY_RULES,
        ));
    }
    for (i, rule) in rules.iter().enumerate() {
        let rpath = rules_path.index(i);
        let action = str_or_empty(rule, "action");
        match action {
            "FailJob" | "Ignore" | "Count" => {}
            "FailIndex" if per_index => {}
            "FailIndex" => errs.push(FieldError::invalid_str(
                rpath.child("action"),
                action,
                "requires the backoffLimitPerIndex to be set",
            )),
            "" => errs.push(FieldError::required(rpath.child("action"), "")),
            other => errs.push(FieldError::not_supported(
                rpath.child("action"),
                &Value::from(other),
                &["Count", "FailIndex", "FailJob", "Ignore"],
            )),
        }
        let exit_codes = rule.get("onExitCodes").filter(|v| !v.is_null());
        let conditions = rule.get("onPodConditions").filter(|v| !v.is_null());
        match (exit_codes, conditions) {
            (Some(req), None) => validate_on_exit_codes(req, &rpath.child("onExitCodes"), errs),
            (None, Some(patterns)) => {
                for (j, p) in patterns.as_array().unwrap_or(&empty).iter().enumerate() {
                    let ppath = rpath.child("onPodConditions").index(j);
                    if str_or_empty(p, "type").is_empty() {
                        errs.push(FieldError::required(ppath.child("type"), ""));
                    }
                    let status = str_or_empty(p, "status");
                    if !matches!(status, "True" | "False" | "Unknown") {
                        errs.push(FieldError::not_supported(
                            ppath.child("status"),
                            &Value::from(status),
                            &["False", "True", "Unknown"],
                        ));
                    }
                }
            }
            _ => errs.push(FieldError::required(
                rpath.to_string(),
                "specifying one of OnExitCodes and OnPodConditions is required",
            )),
        }
    }
}

fn validate_on_exit_codes(req: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    let operator = str_or_empty(req, "operator");
    if !matches!(operator, "In" | "NotIn") {
        errs.push(FieldError::not_supported(
            path.child("operator"),
            &Value::from(operator),
            &["In", "NotIn"],
        ));
    }
    let values: Vec<i64> = req
        .get("values")
        .and_then(Value::as_array)
        .map(|v| v.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    let vpath = path.child("values");
    if values.is_empty() {
        errs.push(FieldError::invalid(
            vpath.to_string(),
            &Value::from(Vec::<i64>::new()),
            "at least one value is required",
        ));
    }
    if values.len() > MAX_POD_FAILURE_POLICY_EXIT_CODES {
        errs.push(FieldError::too_many(
            vpath.to_string(),
            values.len(),
            MAX_POD_FAILURE_POLICY_EXIT_CODES,
        ));
    }
    for (i, v) in values.iter().enumerate() {
        if operator == "In" && *v == 0 {
            errs.push(FieldError::invalid(
                vpath.index(i),
                &Value::from(*v),
                "must not be 0 for the In operator",
            ));
        }
        if i > 0 && values[i - 1] == *v {
            errs.push(FieldError::duplicate(vpath.index(i), &Value::from(*v)));
        } else if i > 0 && values[i - 1] > *v {
            errs.push(FieldError::invalid(
                vpath.index(i),
                &Value::from(*v),
                "must be ordered",
            ));
        }
    }
}

/// Validates a Job. The server generates the selector first with
/// [`crate::defaults::default_job_selector`], as Kubernetes does unless manualSelector.
pub(crate) fn validate_job(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let path = Path::new("spec");
    validate_job_spec_common(spec, &path, errs);
    let template = spec.get("template").unwrap_or(&Value::Null);
    match spec.get("selector").filter(|s| !s.is_null()) {
        None => errs.push(FieldError::required(path.child("selector"), "")),
        Some(sel) => {
            validate_label_selector(sel, &path.child("selector"), errs);
            if !selector_matches(sel, template_labels(template)) {
                errs.push(FieldError::invalid(
                    path.child("template").child("metadata").child("labels"),
                    &template_labels_value(template),
                    "`selector` does not match template `labels`",
                ));
            }
            if bool_at(spec, "manualSelector") != Some(true) {
                let uid = obj.get("metadata").map_or("", |m| str_or_empty(m, "uid"));
                if uid.is_empty() {
                    errs.push(FieldError::required(Path::new("metadata").child("uid"), ""));
                }
                let expected = serde_json::json!({ CONTROLLER_UID_LABEL: uid });
                if !selector_matches(sel, Some(&expected)) {
                    errs.push(FieldError::invalid(
                        path.child("selector"),
                        sel,
                        "`selector` not auto-generated",
                    ));
                }
            }
        }
    }
    if let Some(old) = old {
        let old_spec = old.get("spec").unwrap_or(&Value::Null);
        immutable(
            spec.get("selector"),
            old_spec.get("selector"),
            &path.child("selector"),
            errs,
        );
        immutable(
            spec.get("template"),
            old_spec.get("template"),
            &path.child("template"),
            errs,
        );
        immutable(
            spec.get("completionMode"),
            old_spec.get("completionMode"),
            &path.child("completionMode"),
            errs,
        );
        // Indexed Jobs may scale completions together with parallelism (elastic Jobs).
        let elastic = str_at(spec, "completionMode") == Some("Indexed")
            && int_at(spec, "completions") == int_at(spec, "parallelism");
        if !elastic {
            immutable(
                spec.get("completions"),
                old_spec.get("completions"),
                &path.child("completions"),
                errs,
            );
        }
    }
}

/// Validates a CronJob.
pub(crate) fn validate_cron_job(obj: &Value, _old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let name = obj.get("metadata").map_or("", |m| str_or_empty(m, "name"));
    // Job names get an 11-character suffix and must stay DNS-1035 labels.
    if name.len() > 52 {
        errs.push(FieldError::invalid_str(
            Path::new("metadata").child("name"),
            name,
            "must be no more than 52 characters",
        ));
    }
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let path = Path::new("spec");
    let schedule = str_or_empty(spec, "schedule");
    if schedule.is_empty() {
        errs.push(FieldError::required(path.child("schedule"), ""));
    } else if schedule.contains("TZ") {
        errs.push(FieldError::invalid_str(
            path.child("schedule"),
            schedule,
            "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
        ));
    } else if let Err(m) = check_schedule(schedule) {
        errs.push(FieldError::invalid_str(path.child("schedule"), schedule, m));
    }
    if let Some(tz) = str_at(spec, "timeZone") {
        if tz.is_empty() || tz.contains(' ') || tz.starts_with('/') || tz.contains("..") {
            errs.push(FieldError::invalid_str(
                path.child("timeZone"),
                tz,
                "unknown time zone",
            ));
        }
    }
    non_negative(spec, "startingDeadlineSeconds", &path, errs);
    non_negative(spec, "successfulJobsHistoryLimit", &path, errs);
    non_negative(spec, "failedJobsHistoryLimit", &path, errs);
    match str_at(spec, "concurrencyPolicy").unwrap_or("Allow") {
        "Allow" | "Forbid" | "Replace" => {}
        "" => errs.push(FieldError::required(path.child("concurrencyPolicy"), "")),
        other => errs.push(FieldError::not_supported(
            path.child("concurrencyPolicy"),
            &Value::from(other),
            &["Allow", "Forbid", "Replace"],
        )),
    }
    let jt = spec.get("jobTemplate").unwrap_or(&Value::Null);
    let jp = path.child("jobTemplate");
    if let Some(meta) = jt.get("metadata") {
        super::meta::validate_template_meta(meta, &jp.child("metadata"), errs);
    }
    let job_spec = jt.get("spec").unwrap_or(&Value::Null);
    let jsp = jp.child("spec");
    validate_job_spec_common(job_spec, &jsp, errs);
    if let Some(sel) = job_spec.get("selector").filter(|s| !s.is_null()) {
        errs.push(FieldError::invalid(
            jsp.child("selector"),
            sel,
            "`selector` will be auto-generated",
        ));
    }
    if bool_at(job_spec, "manualSelector") == Some(true) {
        errs.push(FieldError::not_supported(
            jsp.child("manualSelector"),
            &Value::Bool(true),
            &["nil", "false"],
        ));
    }
}
