//! Pods: the READY/STATUS/RESTARTS summary `kubectl get pods` shows, following
//! Kubernetes 1.33's `printPod`.

use jiff::Timestamp;
use serde_json::{json, Value};

use super::access::{array_at, bool_at, get, int_at, is_set, opt_bool, str_at, time_at};
use super::col::{text, wide, Col, AGE, NAME};
use super::format::since;

pub(super) const COLUMNS: &[Col] = &[
    NAME,
    text(
        "Ready",
        "Ready containers out of all that count toward readiness.",
    ),
    text("Status", "Phase or the most telling container state."),
    text(
        "Restarts",
        "Container restarts, with the time of the latest.",
    ),
    AGE,
    wide("IP", "The pod's IP address."),
    wide("Node", "The node the pod is bound to."),
    wide(
        "Nominated Node",
        "The node preemption made room on, if any.",
    ),
    wide(
        "Readiness Gates",
        "Readiness gates whose condition is True, out of all.",
    ),
];

/// Why a deleted pod on an unreachable node is shown as Unknown.
const NODE_LOST: &str = "NodeLost";

pub(super) fn cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let summary = summarize(pod, now);
    let ip = match str_at(pod, &["status", "podIP"]) {
        // podIP wins when the two disagree, as in Kubernetes' conversion; a pod that
        // has only podIPs still shows its address.
        "" => array_at(pod, &["status", "podIPs"])
            .first()
            .map_or("", |first| str_at(first, &["ip"])),
        ip => ip,
    };
    vec![
        json!(str_at(pod, &["metadata", "name"])),
        json!(summary.ready),
        json!(summary.status),
        json!(summary.restarts),
        json!(since(time_at(pod, &["metadata", "creationTimestamp"]), now)),
        json!(or_none(ip)),
        json!(or_none(str_at(pod, &["spec", "nodeName"]))),
        json!(or_none(str_at(pod, &["status", "nominatedNodeName"]))),
        json!(readiness_gates(pod)),
    ]
}

/// The row conditions Kubernetes attaches to a finished pod's row.
pub(super) fn row_conditions(pod: &Value) -> Option<Value> {
    let (reason, message) = match str_at(pod, &["status", "phase"]) {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]))
}

fn or_none(s: &str) -> &str {
    if s.is_empty() {
        "<none>"
    } else {
        s
    }
}

struct Summary {
    ready: String,
    status: String,
    restarts: String,
}

/// The later of two restart times, `None` being Go's zero time.
fn latest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    a.max(b)
}

fn summarize(pod: &Value, now: Timestamp) -> Summary {
    let phase = str_at(pod, &["status", "phase"]);
    let mut reason = match str_at(pod, &["status", "reason"]) {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    let conditions = array_at(pod, &["status", "conditions"]);
    if conditions.iter().any(|c| {
        str_at(c, &["type"]) == "PodScheduled" && str_at(c, &["reason"]) == "SchedulingGated"
    }) {
        reason = "SchedulingGated".to_string();
    }

    let init_specs = array_at(pod, &["spec", "initContainers"]);
    // Sidecars (init containers that keep running) count as containers of the pod.
    let is_sidecar = |name: &str| {
        init_specs
            .iter()
            .any(|c| str_at(c, &["name"]) == name && str_at(c, &["restartPolicy"]) == "Always")
    };
    let mut total = array_at(pod, &["spec", "containers"]).len();
    total += init_specs
        .iter()
        .filter(|c| str_at(c, &["restartPolicy"]) == "Always")
        .count();
    let mut ready = 0usize;

    let mut restarts = 0i64;
    let mut last_restart: Option<Timestamp> = None;
    let mut sidecar_restarts = 0i64;
    let mut last_sidecar_restart: Option<Timestamp> = None;

    let mut initializing = false;
    for (i, c) in array_at(pod, &["status", "initContainerStatuses"])
        .iter()
        .enumerate()
    {
        let count = int_at(c, &["restartCount"]);
        let finished = time_at(c, &["lastState", "terminated", "finishedAt"]);
        restarts += count;
        last_restart = latest(last_restart, finished);
        let sidecar = is_sidecar(str_at(c, &["name"]));
        if sidecar {
            sidecar_restarts += count;
            last_sidecar_restart = latest(last_sidecar_restart, finished);
        }
        let terminated = get(c, &["state", "terminated"]).filter(|t| t.is_object());
        let waiting_reason = str_at(c, &["state", "waiting", "reason"]);
        match terminated {
            Some(t) if int_at(t, &["exitCode"]) == 0 => continue,
            _ if sidecar && opt_bool(c, &["started"]) == Some(true) => {
                if bool_at(c, &["ready"]) {
                    ready += 1;
                }
                continue;
            }
            Some(t) => {
                reason = match str_at(t, &["reason"]) {
                    "" => match int_at(t, &["signal"]) {
                        0 => format!("Init:ExitCode:{}", int_at(t, &["exitCode"])),
                        signal => format!("Init:Signal:{signal}"),
                    },
                    r => format!("Init:{r}"),
                };
            }
            None if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" => {
                reason = format!("Init:{waiting_reason}");
            }
            None => reason = format!("Init:{i}/{}", init_specs.len()),
        }
        initializing = true;
        break;
    }

    let initialized = conditions
        .iter()
        .find(|c| str_at(c, &["type"]) == "Initialized")
        .is_some_and(|c| str_at(c, &["status"]) == "True");
    if !initializing || initialized {
        // Plain init containers' restarts stop counting once the pod has started.
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        // Backwards, so the first container's state is the one that sticks.
        for c in array_at(pod, &["status", "containerStatuses"]).iter().rev() {
            restarts += int_at(c, &["restartCount"]);
            last_restart = latest(
                last_restart,
                time_at(c, &["lastState", "terminated", "finishedAt"]),
            );
            let waiting_reason = str_at(c, &["state", "waiting", "reason"]);
            let terminated = get(c, &["state", "terminated"]).filter(|t| t.is_object());
            let running = get(c, &["state", "running"]).is_some_and(Value::is_object);
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = terminated {
                reason = match str_at(t, &["reason"]) {
                    "" => match int_at(t, &["signal"]) {
                        0 => format!("ExitCode:{}", int_at(t, &["exitCode"])),
                        signal => format!("Signal:{signal}"),
                    },
                    r => r.to_string(),
                };
            } else if bool_at(c, &["ready"]) && running {
                has_running = true;
                ready += 1;
            }
        }
        // A finished container must not hide ones still running.
        if reason == "Completed" && has_running {
            let pod_ready = conditions
                .iter()
                .any(|c| str_at(c, &["type"]) == "Ready" && str_at(c, &["status"]) == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.to_string();
        }
    }

    let deleting = is_set(pod, &["metadata", "deletionTimestamp"]);
    if deleting && str_at(pod, &["status", "reason"]) == NODE_LOST {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    let restarts = match last_restart {
        Some(at) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(at), now)),
        _ => restarts.to_string(),
    };
    Summary {
        ready: format!("{ready}/{total}"),
        status: reason,
        restarts,
    }
}

/// `True` readiness-gate conditions out of all gates, `<none>` without gates.
fn readiness_gates(pod: &Value) -> String {
    let gates = array_at(pod, &["spec", "readinessGates"]);
    if gates.is_empty() {
        return "<none>".to_string();
    }
    let conditions = array_at(pod, &["status", "conditions"]);
    let passed = gates
        .iter()
        .filter(|g| {
            let ty = str_at(g, &["conditionType"]);
            // Only the first condition of a type counts, as in Kubernetes.
            conditions
                .iter()
                .find(|c| str_at(c, &["type"]) == ty)
                .is_some_and(|c| str_at(c, &["status"]) == "True")
        })
        .count();
    format!("{passed}/{}", gates.len())
}
