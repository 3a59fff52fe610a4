//! Expected cells for realistic objects of every served kind, written the way the API
//! serializes them (each is decoded through its k8s-openapi type first), and the pod
//! status rules in detail.

use super::*;
use jiff::SignedDuration;
use proptest::prelude::*;

/// The moment every test prints at.
fn now() -> Timestamp {
    "2024-05-01T12:00:00Z".parse().unwrap()
}

/// `now` minus `secs`, as an API timestamp string.
fn ago(secs: i64) -> String {
    (now() - SignedDuration::from_secs(secs))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

const MIN: i64 = 60;
const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;

/// Decodes `obj` through the kind's k8s-openapi type (so the test object is one the API
/// could have served), prints it, and checks the cells and their count.
#[track_caller]
fn check(kind: &str, obj: Value, want: Value) {
    let resource = RESOURCES
        .iter()
        .find(|r| r.kind == kind)
        .unwrap_or_else(|| panic!("{kind} is not served"));
    let obj = (resource.roundtrip)(&obj).unwrap_or_else(|e| panic!("{kind} does not decode: {e}"));
    let cells = row_cells(kind, &obj, now());
    assert_eq!(Value::Array(cells.clone()), want, "{kind} cells");
    assert_eq!(
        cells.len(),
        column_definitions(kind).len(),
        "{kind} cell count"
    );
}

fn column_names(kind: &str) -> Vec<String> {
    column_definitions(kind)
        .into_iter()
        .map(|c| c.name)
        .collect()
}

fn wide_names(kind: &str) -> Vec<String> {
    column_definitions(kind)
        .into_iter()
        .filter(|c| c.priority == 1)
        .map(|c| c.name)
        .collect()
}

// ---- HumanDuration ----

#[test]
fn human_duration_matches_kubernetes_at_every_boundary() {
    let secs = |s: i64| human_duration(SignedDuration::from_secs(s));
    assert_eq!(secs(-2), "<invalid>");
    assert_eq!(secs(-1), "0s");
    assert_eq!(human_duration(SignedDuration::from_millis(-1500)), "0s");
    assert_eq!(
        human_duration(SignedDuration::from_millis(-2500)),
        "<invalid>"
    );
    assert_eq!(secs(0), "0s");
    assert_eq!(human_duration(SignedDuration::from_millis(5900)), "5s");
    assert_eq!(secs(59), "59s");
    assert_eq!(secs(119), "119s");
    assert_eq!(secs(2 * MIN), "2m");
    assert_eq!(secs(2 * MIN + 1), "2m1s");
    assert_eq!(secs(3 * MIN + 20), "3m20s");
    assert_eq!(secs(10 * MIN - 1), "9m59s");
    assert_eq!(secs(10 * MIN), "10m");
    assert_eq!(secs(10 * MIN + 30), "10m");
    assert_eq!(secs(HOUR), "60m");
    assert_eq!(secs(3 * HOUR - 1), "179m");
    assert_eq!(secs(3 * HOUR), "3h");
    assert_eq!(secs(3 * HOUR + MIN), "3h1m");
    assert_eq!(secs(4 * HOUR), "4h");
    assert_eq!(secs(8 * HOUR - 1), "7h59m");
    assert_eq!(secs(8 * HOUR), "8h");
    assert_eq!(secs(48 * HOUR - 1), "47h");
    assert_eq!(secs(2 * DAY), "2d");
    assert_eq!(secs(2 * DAY + 3 * HOUR), "2d3h");
    assert_eq!(secs(8 * DAY - 1), "7d23h");
    assert_eq!(secs(8 * DAY), "8d");
    assert_eq!(secs(730 * DAY - 1), "729d");
    assert_eq!(secs(730 * DAY), "2y");
    assert_eq!(secs(731 * DAY), "2y1d");
    assert_eq!(secs(3 * 365 * DAY), "3y");
    assert_eq!(secs(8 * 365 * DAY - 1), "7y364d");
    assert_eq!(secs(8 * 365 * DAY), "8y");
    assert_eq!(secs(100 * 365 * DAY + 5 * DAY), "100y");
}

#[test]
fn a_missing_or_bad_timestamp_ages_as_unknown() {
    let kinds = ["ConfigMap", "Namespace", "Lease"];
    for kind in kinds {
        let cells = row_cells(kind, &json!({"metadata": {"name": "x"}}), now());
        assert_eq!(cells.last().unwrap(), "<unknown>", "{kind}");
        let bad = json!({"metadata": {"name": "x", "creationTimestamp": "yesterday"}});
        assert_eq!(row_cells(kind, &bad, now()).last().unwrap(), "<unknown>");
        let zero = json!({"metadata": {"name": "x", "creationTimestamp": "0001-01-01T00:00:00Z"}});
        assert_eq!(row_cells(kind, &zero, now()).last().unwrap(), "<unknown>");
    }
}

// ---- columns ----

#[test]
fn every_served_kind_has_columns_with_exactly_one_name_column() {
    for r in RESOURCES {
        let cols = column_definitions(r.kind);
        assert!(cols.len() >= 2, "{}", r.kind);
        let names: Vec<_> = cols.iter().filter(|c| c.format == "name").collect();
        assert_eq!(names.len(), 1, "{} has one name column", r.kind);
        assert_eq!(names[0].name, "Name");
        for c in &cols {
            assert!(c.priority == 0 || c.priority == 1, "{} {}", r.kind, c.name);
            assert!(
                ["string", "integer", "boolean", "date"].contains(&c.type_.as_str()),
                "{} {}",
                r.kind,
                c.name
            );
            assert!(!c.description.is_empty());
        }
        assert_eq!(has_printer(r.kind), r.kind != "LimitRange", "{}", r.kind);
    }
}

#[test]
fn column_lists_match_kubernetes() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "Pod",
            &[
                "Name",
                "Ready",
                "Status",
                "Restarts",
                "Age",
                "IP",
                "Node",
                "Nominated Node",
                "Readiness Gates",
            ],
            &["IP", "Node", "Nominated Node", "Readiness Gates"],
        ),
        (
            "Node",
            &[
                "Name",
                "Status",
                "Roles",
                "Age",
                "Version",
                "Internal-IP",
                "External-IP",
                "OS-Image",
                "Kernel-Version",
                "Container-Runtime",
            ],
            &[
                "Internal-IP",
                "External-IP",
                "OS-Image",
                "Kernel-Version",
                "Container-Runtime",
            ],
        ),
        ("Namespace", &["Name", "Status", "Age"], &[]),
        (
            "Service",
            &[
                "Name",
                "Type",
                "Cluster-IP",
                "External-IP",
                "Port(s)",
                "Age",
                "Selector",
            ],
            &["Selector"],
        ),
        ("Endpoints", &["Name", "Endpoints", "Age"], &[]),
        ("ConfigMap", &["Name", "Data", "Age"], &[]),
        ("Secret", &["Name", "Type", "Data", "Age"], &[]),
        (
            "Event",
            &[
                "Last Seen",
                "Type",
                "Reason",
                "Object",
                "Subobject",
                "Source",
                "Message",
                "First Seen",
                "Count",
                "Name",
            ],
            &["Subobject", "Source", "First Seen", "Count", "Name"],
        ),
        ("ServiceAccount", &["Name", "Secrets", "Age"], &[]),
        ("ResourceQuota", &["Name", "Request", "Limit", "Age"], &[]),
        ("LimitRange", &["Name", "Created At"], &[]),
        (
            "PersistentVolume",
            &[
                "Name",
                "Capacity",
                "Access Modes",
                "Reclaim Policy",
                "Status",
                "Claim",
                "StorageClass",
                "VolumeAttributesClass",
                "Reason",
                "Age",
                "VolumeMode",
            ],
            &["VolumeMode"],
        ),
        (
            "PersistentVolumeClaim",
            &[
                "Name",
                "Status",
                "Volume",
                "Capacity",
                "Access Modes",
                "StorageClass",
                "VolumeAttributesClass",
                "Age",
                "VolumeMode",
            ],
            &["VolumeMode"],
        ),
        (
            "Deployment",
            &[
                "Name",
                "Ready",
                "Up-to-date",
                "Available",
                "Age",
                "Containers",
                "Images",
                "Selector",
            ],
            &["Containers", "Images", "Selector"],
        ),
        (
            "ReplicaSet",
            &[
                "Name",
                "Desired",
                "Current",
                "Ready",
                "Age",
                "Containers",
                "Images",
                "Selector",
            ],
            &["Containers", "Images", "Selector"],
        ),
        (
            "ReplicationController",
            &[
                "Name",
                "Desired",
                "Current",
                "Ready",
                "Age",
                "Containers",
                "Images",
                "Selector",
            ],
            &["Containers", "Images", "Selector"],
        ),
        (
            "StatefulSet",
            &["Name", "Ready", "Age", "Containers", "Images"],
            &["Containers", "Images"],
        ),
        (
            "DaemonSet",
            &[
                "Name",
                "Desired",
                "Current",
                "Ready",
                "Up-to-date",
                "Available",
                "Node Selector",
                "Age",
                "Containers",
                "Images",
                "Selector",
            ],
            &["Containers", "Images", "Selector"],
        ),
        (
            "ControllerRevision",
            &["Name", "Controller", "Revision", "Age"],
            &[],
        ),
        (
            "Job",
            &[
                "Name",
                "Status",
                "Completions",
                "Duration",
                "Age",
                "Containers",
                "Images",
                "Selector",
            ],
            &["Containers", "Images", "Selector"],
        ),
        (
            "CronJob",
            &[
                "Name",
                "Schedule",
                "Timezone",
                "Suspend",
                "Active",
                "Last Schedule",
                "Age",
                "Containers",
                "Images",
                "Selector",
            ],
            &["Containers", "Images", "Selector"],
        ),
        (
            "HorizontalPodAutoscaler",
            &[
                "Name",
                "Reference",
                "Targets",
                "MinPods",
                "MaxPods",
                "Replicas",
                "Age",
            ],
            &[],
        ),
        ("Lease", &["Name", "Holder", "Age"], &[]),
        (
            "EndpointSlice",
            &["Name", "AddressType", "Ports", "Endpoints", "Age"],
            &[],
        ),
        (
            "Ingress",
            &["Name", "Class", "Hosts", "Address", "Ports", "Age"],
            &[],
        ),
        (
            "IngressClass",
            &["Name", "Controller", "Parameters", "Age"],
            &[],
        ),
    ];
    for (kind, all, wide) in cases {
        assert_eq!(column_names(kind), *all, "{kind} columns");
        assert_eq!(wide_names(kind), *wide, "{kind} wide columns");
    }
    assert_eq!(cases.len(), RESOURCES.len(), "every served kind is listed");
}

#[test]
fn column_types_follow_kubernetes() {
    let types = |kind: &str| -> Vec<String> {
        column_definitions(kind)
            .into_iter()
            .map(|c| c.type_)
            .collect()
    };
    assert_eq!(types("ReplicaSet")[1..4], ["integer", "integer", "integer"]);
    assert_eq!(types("DaemonSet")[1..6], ["integer"; 5]);
    assert_eq!(types("CronJob")[3..5], ["boolean", "integer"]);
    assert_eq!(types("LimitRange"), ["string", "date"]);
    assert!(types("Pod").iter().all(|t| t == "string"));
    let json = serde_json::to_value(&column_definitions("Pod")[0]).unwrap();
    assert_eq!(json["type"], "string");
    assert_eq!(json["format"], "name");
    assert_eq!(json["priority"], 0);
    assert!(json["description"].is_string());
    let ip = serde_json::to_value(&column_definitions("Pod")[5]).unwrap();
    assert_eq!(
        ip,
        json!({"name": "IP", "type": "string", "format": "", "description": ip["description"], "priority": 1})
    );
}

// ---- default printer ----

#[test]
fn a_kind_without_a_printer_gets_name_and_created_at() {
    let cols = column_definitions("Widget");
    assert_eq!(cols.len(), 2);
    assert_eq!(
        (cols[0].name.as_str(), cols[0].format.as_str()),
        ("Name", "name")
    );
    assert_eq!(
        (cols[1].name.as_str(), cols[1].type_.as_str()),
        ("Created At", "date")
    );
    let obj = json!({"metadata": {"name": "w", "creationTimestamp": "2024-04-30T10:11:12Z"}});
    assert_eq!(
        row_cells("Widget", &obj, now()),
        vec![json!("w"), json!("2024-04-30T10:11:12Z")]
    );
    // Go's zero time for a missing timestamp.
    assert_eq!(
        row_cells("Widget", &json!({}), now()),
        vec![json!(""), json!("0001-01-01T00:00:00Z")]
    );
    // Printed in UTC with whole seconds, as RFC 3339 in Go.
    let offset =
        json!({"metadata": {"name": "w", "creationTimestamp": "2024-04-30T12:11:12.5+02:00"}});
    assert_eq!(
        row_cells("Widget", &offset, now())[1],
        "2024-04-30T10:11:12Z"
    );
}

#[test]
fn limit_range_uses_the_default_columns() {
    check(
        "LimitRange",
        json!({
            "apiVersion": "v1", "kind": "LimitRange",
            "metadata": {"name": "cpu-limits", "namespace": "default", "creationTimestamp": "2024-04-30T12:00:00Z"},
            "spec": {"limits": [{"type": "Container", "default": {"cpu": "500m"}, "defaultRequest": {"cpu": "250m"}}]}
        }),
        json!(["cpu-limits", "2024-04-30T12:00:00Z"]),
    );
}

// ---- Pod ----

/// A pod with one container `app` on node-1, created an hour ago; `status` and extra
/// `spec` fields are merged in.
fn pod(spec: Value, status: Value) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "web-7d4b9c-x2x9z", "namespace": "default", "uid": "1f0e4c7a-0000-4000-8000-000000000001",
            "creationTimestamp": ago(HOUR), "labels": {"app": "web"}
        },
        "spec": {
            "containers": [{"name": "app", "image": "nginx:1.25", "imagePullPolicy": "IfNotPresent"}],
            "restartPolicy": "Always", "nodeName": "node-1", "schedulerName": "default-scheduler"
        },
        "status": status
    });
    for (k, v) in spec.as_object().unwrap() {
        pod["spec"][k] = v.clone();
    }
    pod
}

fn running(name: &str, restarts: i64) -> Value {
    json!({
        "name": name, "image": "nginx:1.25", "imageID": "docker.io/library/nginx@sha256:0", "ready": true,
        "restartCount": restarts, "started": true,
        "state": {"running": {"startedAt": ago(50 * MIN)}}
    })
}

fn conditions(initialized: bool, ready: bool) -> Value {
    let s = |b: bool| if b { "True" } else { "False" };
    json!([
        {"type": "Initialized", "status": s(initialized)},
        {"type": "Ready", "status": s(ready)},
        {"type": "ContainersReady", "status": s(ready)},
        {"type": "PodScheduled", "status": "True"}
    ])
}

/// The first five cells: name, READY, STATUS, RESTARTS, AGE.
#[track_caller]
fn check_pod(obj: Value, ready: &str, status: &str, restarts: &str) {
    let obj = (RESOURCES
        .iter()
        .find(|r| r.kind == "Pod")
        .unwrap()
        .roundtrip)(&obj)
    .unwrap();
    let cells = row_cells("Pod", &obj, now());
    assert_eq!(cells.len(), 9);
    assert_eq!(
        (
            cells[1].as_str().unwrap(),
            cells[2].as_str().unwrap(),
            cells[3].as_str().unwrap()
        ),
        (ready, status, restarts)
    );
}

#[test]
fn pod_running_one_of_one() {
    check(
        "Pod",
        pod(
            json!({}),
            json!({
                "phase": "Running", "conditions": conditions(true, true),
                "hostIP": "192.168.1.10", "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}],
                "startTime": ago(HOUR), "containerStatuses": [running("app", 0)], "qosClass": "BestEffort"
            }),
        ),
        json!([
            "web-7d4b9c-x2x9z",
            "1/1",
            "Running",
            "0",
            "60m",
            "10.244.1.5",
            "node-1",
            "<none>",
            "<none>"
        ]),
    );
}

#[test]
fn pod_pending_unscheduled_and_container_creating() {
    let mut unscheduled = pod(
        json!({}),
        json!({
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                            "message": "0/1 nodes are available"}]
        }),
    );
    unscheduled["spec"]
        .as_object_mut()
        .unwrap()
        .remove("nodeName");
    unscheduled["metadata"]["creationTimestamp"] = json!(ago(5));
    check(
        "Pod",
        unscheduled,
        json!([
            "web-7d4b9c-x2x9z",
            "0/1",
            "Pending",
            "0",
            "5s",
            "<none>",
            "<none>",
            "<none>",
            "<none>"
        ]),
    );
    check_pod(
        pod(
            json!({}),
            json!({
                "phase": "Pending", "conditions": conditions(true, false),
                "containerStatuses": [{"name": "app", "image": "nginx:1.25", "imageID": "", "ready": false,
                    "restartCount": 0, "started": false, "state": {"waiting": {"reason": "ContainerCreating"}}}]
            }),
        ),
        "0/1",
        "ContainerCreating",
        "0",
    );
    // A pod held by scheduling gates says so.
    check_pod(
        pod(
            json!({}),
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
        ),
        "0/1",
        "SchedulingGated",
        "0",
    );
}

#[test]
fn pod_crash_loop_shows_restarts_and_when_the_last_one_was() {
    let status = json!({
        "phase": "Running", "conditions": conditions(true, false),
        "containerStatuses": [{
            "name": "app", "image": "nginx:1.25", "imageID": "", "ready": false, "restartCount": 3, "started": false,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": ago(12), "finishedAt": ago(10)}}
        }]
    });
    check_pod(
        pod(json!({}), status),
        "0/1",
        "CrashLoopBackOff",
        "3 (10s ago)",
    );
}

#[test]
fn pod_restarts_without_a_last_termination_show_just_the_count() {
    let mut c = running("app", 2);
    c["lastState"] = json!({});
    check_pod(
        pod(
            json!({}),
            json!({"phase": "Running", "conditions": conditions(true, true), "containerStatuses": [c]}),
        ),
        "1/1",
        "Running",
        "2",
    );
}

#[test]
fn pod_init_containers_show_progress_and_failures() {
    let inits = json!({"initContainers": [
        {"name": "migrate", "image": "busybox"}, {"name": "warm", "image": "busybox"}
    ]});
    let done = json!({"name": "migrate", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": ago(30), "finishedAt": ago(20)}}});
    let main_waiting = json!([{"name": "app", "image": "nginx:1.25", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": "PodInitializing"}}}]);
    let status = |second: Value| {
        json!({"phase": "Pending", "conditions": conditions(false, false),
               "initContainerStatuses": [done.clone(), second], "containerStatuses": main_waiting.clone()})
    };
    let warm = |state: Value, restarts: i64, last: Value| {
        json!({"name": "warm", "image": "busybox", "imageID": "", "ready": false, "restartCount": restarts,
               "state": state, "lastState": last})
    };
    // The second init container is running: one of two done.
    check_pod(
        pod(
            inits.clone(),
            status(warm(
                json!({"running": {"startedAt": ago(5)}}),
                0,
                json!({}),
            )),
        ),
        "0/1",
        "Init:1/2",
        "0",
    );
    // Crash-looping init containers count their restarts.
    check_pod(
        pod(
            inits.clone(),
            status(warm(
                json!({"waiting": {"reason": "CrashLoopBackOff"}}),
                4,
                json!({"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(3 * MIN)}}),
            )),
        ),
        "0/1",
        "Init:CrashLoopBackOff",
        "4 (3m ago)",
    );
    check_pod(
        pod(
            inits.clone(),
            status(warm(
                json!({"terminated": {"exitCode": 2, "reason": "Error"}}),
                0,
                json!({}),
            )),
        ),
        "0/1",
        "Init:Error",
        "0",
    );
    check_pod(
        pod(
            inits.clone(),
            status(warm(
                json!({"terminated": {"exitCode": 137, "signal": 9}}),
                0,
                json!({}),
            )),
        ),
        "0/1",
        "Init:Signal:9",
        "0",
    );
    check_pod(
        pod(
            inits.clone(),
            status(warm(json!({"terminated": {"exitCode": 3}}), 0, json!({}))),
        ),
        "0/1",
        "Init:ExitCode:3",
        "0",
    );
    // Waiting for its turn (PodInitializing) counts as not started.
    check_pod(
        pod(
            inits,
            status(warm(
                json!({"waiting": {"reason": "PodInitializing"}}),
                0,
                json!({}),
            )),
        ),
        "0/1",
        "Init:1/2",
        "0",
    );
}

#[test]
fn pod_sidecars_count_as_containers_and_their_restarts_stay() {
    let spec = json!({"initContainers": [
        {"name": "setup", "image": "busybox"},
        {"name": "proxy", "image": "envoy", "restartPolicy": "Always"}
    ]});
    let status = json!({
        "phase": "Running", "conditions": conditions(true, true),
        "initContainerStatuses": [
            {"name": "setup", "image": "busybox", "imageID": "", "ready": false, "restartCount": 1,
             "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
             "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(50 * MIN)}}},
            {"name": "proxy", "image": "envoy", "imageID": "", "ready": true, "restartCount": 2, "started": true,
             "state": {"running": {"startedAt": ago(5 * MIN)}},
             "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(5 * MIN)}}}
        ],
        "containerStatuses": [running("app", 0)]
    });
    // The plain init container's restart no longer counts once the pod is initialized.
    check_pod(pod(spec, status), "2/2", "Running", "2 (5m ago)");
}

#[test]
fn pod_completed_and_error() {
    let finished = |exit: i64, reason: &str, phase: &str| {
        pod(
            json!({"restartPolicy": "Never"}),
            json!({
                "phase": phase, "conditions": conditions(true, false),
                "containerStatuses": [{"name": "app", "image": "busybox", "imageID": "", "ready": false,
                    "restartCount": 0, "started": false,
                    "state": {"terminated": {"exitCode": exit, "reason": reason, "startedAt": ago(HOUR), "finishedAt": ago(HOUR - 5)}}}]
            }),
        )
    };
    check_pod(
        finished(0, "Completed", "Succeeded"),
        "0/1",
        "Completed",
        "0",
    );
    check_pod(finished(1, "Error", "Failed"), "0/1", "Error", "0");
    check_pod(
        finished(137, "OOMKilled", "Failed"),
        "0/1",
        "OOMKilled",
        "0",
    );
    check_pod(finished(143, "", "Failed"), "0/1", "ExitCode:143", "0");
}

#[test]
fn pod_phase_reason_shows_when_no_container_says_more() {
    check_pod(
        pod(
            json!({}),
            json!({"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."}),
        ),
        "0/1",
        "Evicted",
        "0",
    );
}

#[test]
fn pod_with_one_container_done_and_one_running_is_running() {
    let spec = json!({"containers": [
        {"name": "job", "image": "busybox"}, {"name": "app", "image": "nginx:1.25"}
    ]});
    let statuses = |ready: bool| {
        json!({
            "phase": "Running", "conditions": conditions(true, ready),
            "containerStatuses": [
                {"name": "job", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                running("app", 0)
            ]
        })
    };
    check_pod(pod(spec.clone(), statuses(true)), "1/2", "Running", "0");
    check_pod(pod(spec, statuses(false)), "1/2", "NotReady", "0");
}

#[test]
fn pod_being_deleted_is_terminating_unless_finished() {
    let mut p = pod(
        json!({}),
        json!({"phase": "Running", "conditions": conditions(true, true), "containerStatuses": [running("app", 0)]}),
    );
    p["metadata"]["deletionTimestamp"] = json!(ago(0));
    p["metadata"]["deletionGracePeriodSeconds"] = json!(30);
    check_pod(p.clone(), "1/1", "Terminating", "0");
    // A node that went away: Kubernetes cannot know, and says so.
    p["status"]["reason"] = json!("NodeLost");
    check_pod(p, "1/1", "Unknown", "0");
    let mut done = pod(
        json!({}),
        json!({"phase": "Succeeded", "containerStatuses": [{"name": "app", "image": "busybox", "imageID": "",
            "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
    );
    done["metadata"]["deletionTimestamp"] = json!(ago(0));
    check_pod(done, "0/1", "Completed", "0");
}

#[test]
fn pod_wide_columns() {
    let mut p = pod(
        json!({"readinessGates": [{"conditionType": "example.com/lb-ready"}, {"conditionType": "example.com/warm"}]}),
        json!({
            "phase": "Running", "podIP": "fd00::5", "podIPs": [{"ip": "fd00::5"}, {"ip": "10.244.1.5"}],
            "nominatedNodeName": "node-2",
            "conditions": [{"type": "example.com/lb-ready", "status": "True"}, {"type": "example.com/warm", "status": "False"}],
            "containerStatuses": [running("app", 0)]
        }),
    );
    p["metadata"]["creationTimestamp"] = json!(ago(2 * DAY + 3 * HOUR));
    check(
        "Pod",
        p,
        json!([
            "web-7d4b9c-x2x9z",
            "1/1",
            "Running",
            "0",
            "2d3h",
            "fd00::5",
            "node-1",
            "node-2",
            "1/2"
        ]),
    );
}

#[test]
fn finished_pods_carry_a_completed_row_condition() {
    let t = table(
        "Pod",
        &[
            pod(json!({}), json!({"phase": "Succeeded"})),
            pod(json!({}), json!({"phase": "Failed"})),
            pod(json!({}), json!({"phase": "Running"})),
        ],
        now(),
        IncludeObject::None,
    );
    assert_eq!(
        t["rows"][0]["conditions"],
        json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}])
    );
    assert_eq!(t["rows"][1]["conditions"][0]["reason"], "Failed");
    assert!(t["rows"][2].get("conditions").is_none());
}

// ---- core kinds ----

fn meta(name: &str, age_secs: i64) -> Value {
    json!({"name": name, "namespace": "default", "uid": "0b7e5a60-0000-4000-8000-000000000002",
           "resourceVersion": "4711", "creationTimestamp": ago(age_secs)})
}

#[test]
fn node_status_roles_and_wide_columns() {
    let node_info = json!({
        "architecture": "amd64", "bootID": "b", "containerRuntimeVersion": "containerd://2.0.0",
        "kernelVersion": "6.12.0-amd64", "kubeProxyVersion": "", "kubeletVersion": "v1.33.1",
        "machineID": "m", "operatingSystem": "linux", "osImage": "Debian GNU/Linux 13 (trixie)", "systemUUID": "u"
    });
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node-1", "creationTimestamp": ago(30 * DAY),
            "labels": {"kubernetes.io/hostname": "node-1", "node-role.kubernetes.io/control-plane": "",
                       "node-role.kubernetes.io/etcd": "true", "kubernetes.io/role": "master"}},
        "spec": {"unschedulable": true, "podCIDR": "10.244.0.0/24"},
        "status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"},
                {"type": "Ready", "status": "True", "reason": "KubeletReady"}
            ],
            "addresses": [{"type": "Hostname", "address": "node-1"}, {"type": "InternalIP", "address": "192.168.1.10"},
                          {"type": "ExternalIP", "address": "203.0.113.10"}],
            "nodeInfo": node_info
        }
    });
    check(
        "Node",
        node,
        json!([
            "node-1",
            "Ready,SchedulingDisabled",
            "control-plane,etcd,master",
            "30d",
            "v1.33.1",
            "192.168.1.10",
            "203.0.113.10",
            "Debian GNU/Linux 13 (trixie)",
            "6.12.0-amd64",
            "containerd://2.0.0"
        ]),
    );
    let not_ready = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node-2", "creationTimestamp": ago(5 * MIN)},
        "status": {"conditions": [{"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown"}]}
    });
    check(
        "Node",
        not_ready,
        json!([
            "node-2",
            "NotReady",
            "<none>",
            "5m",
            "",
            "<none>",
            "<none>",
            "<unknown>",
            "<unknown>",
            "<unknown>"
        ]),
    );
    let fresh = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-3", "creationTimestamp": ago(1)}});
    assert_eq!(row_cells("Node", &fresh, now())[1], "Unknown");
}

#[test]
fn namespace_phase() {
    check(
        "Namespace",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": meta("kube-system", 2 * DAY + 3 * HOUR),
               "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
        json!(["kube-system", "Active", "2d3h"]),
    );
    check(
        "Namespace",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": meta("old", 400 * DAY),
               "status": {"phase": "Terminating"}}),
        json!(["old", "Terminating", "400d"]),
    );
    // Defaulting gives every namespace a phase.
    check(
        "Namespace",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": meta("new", 3)}),
        json!(["new", "Active", "3s"]),
    );
}

#[test]
fn service_types_ips_and_ports() {
    let svc = |spec: Value, status: Value| json!({"apiVersion": "v1", "kind": "Service", "metadata": meta("web", 10 * DAY), "spec": spec, "status": status});
    check(
        "Service",
        svc(
            json!({"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                   "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                             {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}],
                   "selector": {"k8s-app": "kube-dns", "app": "dns"}, "sessionAffinity": "None"}),
            json!({"loadBalancer": {}}),
        ),
        json!([
            "web",
            "ClusterIP",
            "10.96.0.10",
            "<none>",
            "53/UDP,53/TCP",
            "10d",
            "app=dns,k8s-app=kube-dns"
        ]),
    );
    check(
        "Service",
        svc(
            json!({"type": "NodePort", "clusterIPs": ["10.96.12.3", "fd00::3"],
                   "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}], "externalIPs": ["198.51.100.1"]}),
            json!({}),
        ),
        json!([
            "web",
            "NodePort",
            "10.96.12.3",
            "198.51.100.1",
            "80:30080/TCP",
            "10d",
            "<none>"
        ]),
    );
    check(
        "Service",
        svc(
            json!({"type": "LoadBalancer", "clusterIPs": ["10.96.0.20"], "ports": [{"port": 443, "nodePort": 31443}]}),
            json!({}),
        ),
        json!([
            "web",
            "LoadBalancer",
            "10.96.0.20",
            "<pending>",
            "443:31443/TCP",
            "10d",
            "<none>"
        ]),
    );
    check(
        "Service",
        svc(
            json!({"type": "LoadBalancer", "clusterIPs": ["10.96.0.20"], "externalIPs": ["198.51.100.1"],
                   "ports": [{"port": 443, "protocol": "TCP"}]}),
            json!({"loadBalancer": {"ingress": [{"hostname": "lb.example.com"}, {"ip": "203.0.113.7"},
                                                {"ip": "203.0.113.7", "hostname": "x"}]}}),
        ),
        json!([
            "web",
            "LoadBalancer",
            "10.96.0.20",
            "203.0.113.7,lb.example.com,198.51.100.1",
            "443/TCP",
            "10d",
            "<none>"
        ]),
    );
    check(
        "Service",
        svc(
            json!({"type": "ExternalName", "externalName": "db.example.com"}),
            json!({}),
        ),
        json!([
            "web",
            "ExternalName",
            "<none>",
            "db.example.com",
            "<none>",
            "10d",
            "<none>"
        ]),
    );
    // Headless; type and protocol left to defaulting.
    check(
        "Service",
        svc(
            json!({"clusterIP": "None", "ports": [{"port": 5432}], "selector": {"app": "db"}}),
            json!({}),
        ),
        json!([
            "web",
            "ClusterIP",
            "None",
            "<none>",
            "5432/TCP",
            "10d",
            "app=db"
        ]),
    );
}

#[test]
fn endpoints_list_three_and_count_the_rest() {
    let ep = |subsets: Value| json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": meta("web", 90), "subsets": subsets});
    check(
        "Endpoints",
        ep(
            json!([{"addresses": [{"ip": "10.244.1.5", "nodeName": "node-1"}, {"ip": "10.244.2.6"}],
                   "notReadyAddresses": [{"ip": "10.244.3.7"}],
                   "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]),
        ),
        json!(["web", "10.244.1.5:8080,10.244.2.6:8080", "90s"]),
    );
    check(
        "Endpoints",
        ep(json!([
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]},
            {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}
        ])),
        json!([
            "web",
            "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 2 more...",
            "90s"
        ]),
    );
    check(
        "Endpoints",
        ep(
            json!([{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}, {"addresses": [{"ip": "10.0.0.9"}]}]),
        ),
        json!(["web", "[fd00::1]:80,10.0.0.9", "90s"]),
    );
    check("Endpoints", ep(json!([])), json!(["web", "<none>", "90s"]));
    // Only not-ready addresses: nothing to list, but not "<none>" either.
    check(
        "Endpoints",
        ep(json!([{"notReadyAddresses": [{"ip": "10.0.0.3"}], "ports": [{"port": 80}]}])),
        json!(["web", "", "90s"]),
    );
}

#[test]
fn config_map_and_secret_count_keys() {
    check(
        "ConfigMap",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("settings", 3 * MIN + 20),
               "data": {"a.conf": "x=1", "b.conf": "y=2"}, "binaryData": {"logo.png": "iVBORw0KGgo="}}),
        json!(["settings", 3, "3m20s"]),
    );
    check(
        "ConfigMap",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("empty", 59)}),
        json!(["empty", 0, "59s"]),
    );
    check(
        "Secret",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta("web-tls", 4 * HOUR),
               "type": "kubernetes.io/tls", "data": {"tls.crt": "Y2VydA==", "tls.key": "a2V5"}}),
        json!(["web-tls", "kubernetes.io/tls", 2, "4h"]),
    );
    check(
        "Secret",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta("plain", 4 * HOUR), "data": {"password": "aHVudGVyMg=="}}),
        json!(["plain", "Opaque", 1, "4h"]),
    );
}

#[test]
fn events_old_and_new_style() {
    let old_style = json!({
        "apiVersion": "v1", "kind": "Event", "metadata": meta("web.17c2a5b0", 5 * MIN),
        "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web", "apiVersion": "v1",
                           "fieldPath": "spec.containers{app}"},
        "reason": "Pulled", "message": "Successfully pulled image \"nginx:1.25\" in 1.2s\n",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": ago(5 * MIN), "lastTimestamp": ago(MIN), "count": 3, "type": "Normal",
        "eventTime": null, "reportingComponent": "kubelet", "reportingInstance": "node-1"
    });
    check(
        "Event",
        old_style,
        json!([
            "60s",
            "Normal",
            "Pulled",
            "pod/web",
            "spec.containers{app}",
            "kubelet, node-1",
            "Successfully pulled image \"nginx:1.25\" in 1.2s",
            "5m",
            3,
            "web.17c2a5b0"
        ]),
    );
    let new_style = json!({
        "apiVersion": "v1", "kind": "Event", "metadata": meta("node-1.17c2a5b1", 30),
        "involvedObject": {"kind": "Node", "name": "node-1"},
        "reason": "Scheduled", "message": "Successfully assigned default/web to node-1",
        "source": {}, "type": "Normal",
        "eventTime": format!("{}.123456Z", ago(30).trim_end_matches('Z')),
        "reportingComponent": "default-scheduler", "reportingInstance": ""
    });
    check(
        "Event",
        new_style,
        // 29.876544s truncate to 29s, as Go's conversion to whole seconds does.
        json!([
            "29s",
            "Normal",
            "Scheduled",
            "node/node-1",
            "",
            "default-scheduler",
            "Successfully assigned default/web to node-1",
            "29s",
            1,
            "node-1.17c2a5b1"
        ]),
    );
    let series = json!({
        "apiVersion": "v1", "kind": "Event", "metadata": meta("web.17c2a5b2", HOUR),
        "involvedObject": {"kind": "Pod", "name": "web"}, "reason": "BackOff", "type": "Warning",
        "message": "Back-off restarting failed container", "eventTime": format!("{}.000000Z", ago(HOUR).trim_end_matches('Z')),
        "series": {"count": 12, "lastObservedTime": format!("{}.000000Z", ago(2 * MIN).trim_end_matches('Z'))},
        "reportingComponent": "kubelet", "reportingInstance": "node-1"
    });
    check(
        "Event",
        series,
        json!([
            "2m",
            "Warning",
            "BackOff",
            "pod/web",
            "",
            "kubelet, node-1",
            "Back-off restarting failed container",
            "60m",
            12,
            "web.17c2a5b2"
        ]),
    );
    let unnamed = json!({"apiVersion": "v1", "kind": "Event", "metadata": meta("cluster.1", 10),
                          "involvedObject": {"kind": "Namespace"}, "firstTimestamp": ago(10)});
    assert_eq!(row_cells("Event", &unnamed, now())[3], "namespace");
}

#[test]
fn service_account_counts_secrets() {
    check(
        "ServiceAccount",
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("default", 20 * DAY)}),
        json!(["default", 0, "20d"]),
    );
    check(
        "ServiceAccount",
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("builder", 20 * DAY),
               "secrets": [{"name": "builder-token"}], "imagePullSecrets": [{"name": "registry"}]}),
        json!(["builder", 1, "20d"]),
    );
}

#[test]
fn resource_quota_splits_requests_and_limits() {
    check(
        "ResourceQuota",
        json!({
            "apiVersion": "v1", "kind": "ResourceQuota", "metadata": meta("compute", 7 * DAY),
            "spec": {"hard": {"pods": "10", "requests.cpu": "1", "requests.memory": "1Gi", "limits.cpu": "2", "limits.memory": "2Gi"}},
            "status": {
                "hard": {"pods": "10", "requests.cpu": "1", "requests.memory": "1Gi", "limits.cpu": "2",
                         "limits.memory": "2048Mi", "configmaps": "5"},
                "used": {"pods": "3", "requests.cpu": "250m", "requests.memory": "1024Mi", "limits.cpu": "0.5",
                         "limits.memory": "512Mi"}
            }
        }),
        json!([
            "compute",
            "configmaps: 0/5, pods: 3/10, requests.cpu: 250m/1, requests.memory: 1Gi/1Gi",
            "limits.cpu: 500m/2, limits.memory: 512Mi/2Gi",
            "7d"
        ]),
    );
    // A quota the controller has not counted yet.
    check(
        "ResourceQuota",
        json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": meta("new", 1), "spec": {"hard": {"pods": "10"}}}),
        json!(["new", "", "", "1s"]),
    );
}

#[test]
fn persistent_volumes_and_claims() {
    let pv = json!({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-1", "creationTimestamp": ago(3 * DAY)},
        "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadOnlyMany", "ReadWriteOnce", "ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "standard",
                 "claimRef": {"kind": "PersistentVolumeClaim", "namespace": "default", "name": "data-0", "uid": "u"},
                 "hostPath": {"path": "/data/pv-1"}, "volumeMode": "Filesystem"},
        "status": {"phase": "Bound"}
    });
    check(
        "PersistentVolume",
        pv.clone(),
        json!([
            "pv-1",
            "10Gi",
            "RWO,ROX",
            "Delete",
            "Bound",
            "default/data-0",
            "standard",
            "<unset>",
            "",
            "3d",
            "Filesystem"
        ]),
    );
    let mut odd = pv;
    odd["metadata"]["annotations"] = json!({"volume.beta.kubernetes.io/storage-class": "legacy"});
    odd["metadata"]["deletionTimestamp"] = json!(ago(0));
    odd["spec"] = json!({"capacity": {"storage": "1.5Gi"}, "accessModes": ["ReadWriteOncePod"],
                         "volumeAttributesClassName": "gold", "volumeMode": "Block", "storageClassName": "standard",
                         "hostPath": {"path": "/x"}});
    odd["status"] = json!({"phase": "Failed", "reason": "RecyclerFailed"});
    check(
        "PersistentVolume",
        odd,
        json!([
            "pv-1",
            "1536Mi",
            "RWOP",
            "Retain",
            "Terminating",
            "",
            "legacy",
            "gold",
            "RecyclerFailed",
            "3d",
            "Block"
        ]),
    );
    let bound = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta("data-0", 3 * DAY),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                 "storageClassName": "standard", "volumeName": "pv-1", "volumeMode": "Filesystem"},
        "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce", "ReadOnlyMany"], "capacity": {"storage": "10Gi"}}
    });
    check(
        "PersistentVolumeClaim",
        bound,
        json!([
            "data-0",
            "Bound",
            "pv-1",
            "10Gi",
            "RWO,ROX",
            "standard",
            "<unset>",
            "3d",
            "Filesystem"
        ]),
    );
    let pending = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta("data-1", 40),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    });
    check(
        "PersistentVolumeClaim",
        pending,
        json!([
            "data-1",
            "Pending",
            "",
            "",
            "",
            "",
            "<unset>",
            "40s",
            "Filesystem"
        ]),
    );
}

// ---- apps ----

fn template(containers: Value) -> Value {
    json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}})
}

fn web_containers() -> Value {
    json!([{"name": "nginx", "image": "nginx:1.25"}, {"name": "log", "image": "busybox:1.36"}])
}

#[test]
fn deployment_ready_counts_and_selector() {
    let deploy = |selector: Value, replicas: Option<i64>| {
        let mut spec = json!({"selector": selector, "template": template(web_containers()),
                              "strategy": {"type": "RollingUpdate"}});
        if let Some(r) = replicas {
            spec["replicas"] = json!(r);
        }
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("web", 6 * HOUR), "spec": spec,
               "status": {"replicas": 3, "updatedReplicas": 3, "readyReplicas": 2, "availableReplicas": 2,
                          "observedGeneration": 1}})
    };
    check(
        "Deployment",
        deploy(json!({"matchLabels": {"app": "web"}}), Some(3)),
        json!([
            "web",
            "2/3",
            3,
            2,
            "6h",
            "nginx,log",
            "nginx:1.25,busybox:1.36",
            "app=web"
        ]),
    );
    check(
        "Deployment",
        deploy(
            json!({"matchLabels": {"app": "web"}, "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["frontend", "backend"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "env", "operator": "NotIn", "values": ["dev"]},
                {"key": "zone", "operator": "Exists"}
            ]}),
            // Defaulting's one replica.
            None,
        ),
        json!([
            "web",
            "2/1",
            3,
            2,
            "6h",
            "nginx,log",
            "nginx:1.25,busybox:1.36",
            "app=web,!canary,env notin (dev),tier in (backend,frontend),zone"
        ]),
    );
    // Deployments print a bad selector as <invalid> and an empty one as nothing.
    let bad = deploy(
        json!({"matchExpressions": [{"key": "tier", "operator": "Near", "values": ["x"]}]}),
        Some(1),
    );
    assert_eq!(row_cells("Deployment", &bad, now())[7], "<invalid>");
    let empty = deploy(json!({}), Some(1));
    assert_eq!(row_cells("Deployment", &empty, now())[7], "");
}

#[test]
fn replica_set_numbers_and_selector() {
    let rs = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-7d4b9c", "namespace": "default", "creationTimestamp": ago(6 * HOUR),
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "u", "controller": true}]},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "7d4b9c"}},
                 "template": template(web_containers())},
        "status": {"replicas": 3, "fullyLabeledReplicas": 3, "readyReplicas": 2, "availableReplicas": 2}
    });
    check(
        "ReplicaSet",
        rs.clone(),
        json!([
            "web-7d4b9c",
            3,
            3,
            2,
            "6h",
            "nginx,log",
            "nginx:1.25,busybox:1.36",
            "app=web,pod-template-hash=7d4b9c"
        ]),
    );
    let mut bad = rs;
    bad["spec"]["selector"] = json!({"matchLabels": {"bad key!": "x"}});
    assert_eq!(row_cells("ReplicaSet", &bad, now())[7], "<error>");
    bad["spec"]["selector"] =
        json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]});
    assert_eq!(row_cells("ReplicaSet", &bad, now())[7], "<error>");
    bad["spec"]["selector"] = json!({});
    assert_eq!(row_cells("ReplicaSet", &bad, now())[7], "<none>");
}

#[test]
fn stateful_set_and_daemon_set() {
    check(
        "StatefulSet",
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta("db", 12 * DAY),
               "spec": {"replicas": 3, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                        "template": template(json!([{"name": "postgres", "image": "postgres:16"}]))},
               "status": {"replicas": 2, "readyReplicas": 1, "currentReplicas": 2, "updatedReplicas": 2, "availableReplicas": 1}}),
        json!(["db", "1/3", "12d", "postgres", "postgres:16"]),
    );
    let mut ds_template = template(json!([{"name": "agent", "image": "fluent-bit:3"}]));
    ds_template["spec"]["nodeSelector"] = json!({"kubernetes.io/os": "linux", "disk": "ssd"});
    check(
        "DaemonSet",
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta("logs", 9 * DAY),
               "spec": {"selector": {"matchLabels": {"app": "logs"}}, "template": ds_template},
               "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                          "updatedNumberScheduled": 1, "numberAvailable": 2, "numberMisscheduled": 0}}),
        json!([
            "logs",
            3,
            3,
            2,
            1,
            2,
            "disk=ssd,kubernetes.io/os=linux",
            "9d",
            "agent",
            "fluent-bit:3",
            "app=logs"
        ]),
    );
    check(
        "DaemonSet",
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta("bare", 9 * DAY),
               "spec": {"selector": {"matchLabels": {"app": "bare"}}, "template": template(json!([]))}}),
        json!(["bare", 0, 0, 0, 0, 0, "<none>", "9d", "", "", "app=bare"]),
    );
}

#[test]
fn controller_revision_names_its_controller() {
    let rev = |owners: Value| {
        json!({"apiVersion": "apps/v1", "kind": "ControllerRevision",
               "metadata": {"name": "db-5d8c7b", "namespace": "default", "creationTimestamp": ago(12 * DAY),
                            "ownerReferences": owners},
               "data": {"spec": {"template": {}}}, "revision": 2})
    };
    check(
        "ControllerRevision",
        rev(json!([
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "not-the-controller", "uid": "a"},
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "b", "controller": true,
             "blockOwnerDeletion": true}
        ])),
        json!(["db-5d8c7b", "statefulset.apps/db", 2, "12d"]),
    );
    check(
        "ControllerRevision",
        rev(
            json!([{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "c", "controller": true}]),
        ),
        json!(["db-5d8c7b", "pod/p", 2, "12d"]),
    );
    check(
        "ControllerRevision",
        rev(json!([])),
        json!(["db-5d8c7b", "<none>", 2, "12d"]),
    );
}

// ---- batch ----

fn job(spec: Value, status: Value) -> Value {
    let mut s = json!({"selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "8f3c"}},
                       "template": {"spec": {"containers": [{"name": "pi", "image": "perl:5.34"}], "restartPolicy": "Never"}}});
    for (k, v) in spec.as_object().unwrap() {
        s[k] = v.clone();
    }
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta("pi", 2 * MIN), "spec": s, "status": status})
}

#[test]
fn job_status_completions_and_duration() {
    let tail = json!([
        "2m",
        "pi",
        "perl:5.34",
        "batch.kubernetes.io/controller-uid=8f3c"
    ]);
    let row = |status: &str, completions: &str, duration: &str| {
        let mut r = json!(["pi", status, completions, duration]);
        r.as_array_mut()
            .unwrap()
            .extend(tail.as_array().unwrap().iter().cloned());
        r
    };
    check(
        "Job",
        job(
            json!({"completions": 1, "parallelism": 1, "backoffLimit": 6}),
            json!({"conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}],
                   "startTime": ago(2 * MIN), "completionTime": ago(2 * MIN - 15), "succeeded": 1}),
        ),
        row("Complete", "1/1", "15s"),
    );
    check(
        "Job",
        job(
            json!({"parallelism": 3}),
            json!({"startTime": ago(90), "active": 3}),
        ),
        row("Running", "0/1 of 3", "90s"),
    );
    check(
        "Job",
        job(
            json!({"completions": 5, "parallelism": 2}),
            json!({"startTime": ago(100), "succeeded": 2, "failed": 7,
            "conditions": [{"type": "FailureTarget", "status": "True"}, {"type": "Failed", "status": "True"}]}),
        ),
        row("Failed", "2/5", "100s"),
    );
    check(
        "Job",
        job(
            json!({"suspend": true}),
            json!({"conditions": [{"type": "Suspended", "status": "True"}]}),
        ),
        row("Suspended", "0/1", ""),
    );
    check(
        "Job",
        job(
            json!({}),
            json!({"conditions": [{"type": "FailureTarget", "status": "True"}], "startTime": ago(5)}),
        ),
        row("FailureTarget", "0/1", "5s"),
    );
    let mut deleting = job(json!({}), json!({"startTime": ago(5)}));
    deleting["metadata"]["deletionTimestamp"] = json!(ago(0));
    check("Job", deleting, row("Terminating", "0/1", "5s"));
    // A condition that is no longer true does not count.
    check(
        "Job",
        job(
            json!({}),
            json!({"conditions": [{"type": "Suspended", "status": "False"}], "startTime": ago(5)}),
        ),
        row("Running", "0/1", "5s"),
    );
}

#[test]
fn cron_job_schedule_and_last_run() {
    let cj = |spec_extra: Value, status: Value| {
        let mut spec = json!({"schedule": "*/5 * * * *", "concurrencyPolicy": "Allow",
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "hello", "image": "busybox:1.36"}],
                                                           "restartPolicy": "OnFailure"}}}}});
        for (k, v) in spec_extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta("hello", 3 * DAY), "spec": spec, "status": status})
    };
    check(
        "CronJob",
        cj(
            json!({"timeZone": "Etc/UTC", "suspend": false}),
            json!({"active": [{"kind": "Job", "name": "hello-28570000", "namespace": "default"}],
                  "lastScheduleTime": ago(2 * MIN), "lastSuccessfulTime": ago(7 * MIN)}),
        ),
        json!([
            "hello",
            "*/5 * * * *",
            "Etc/UTC",
            "False",
            1,
            "2m",
            "3d",
            "hello",
            "busybox:1.36",
            "<none>"
        ]),
    );
    check(
        "CronJob",
        cj(json!({"suspend": true}), json!({})),
        json!([
            "hello",
            "*/5 * * * *",
            "<none>",
            "True",
            0,
            "<none>",
            "3d",
            "hello",
            "busybox:1.36",
            "<none>"
        ]),
    );
    // Suspend left to defaulting.
    assert_eq!(
        row_cells("CronJob", &cj(json!({}), json!({})), now())[3],
        "False"
    );
}

// ---- autoscaling, coordination, discovery, networking ----

#[test]
fn horizontal_pod_autoscaler_targets() {
    let hpa = |metrics: Value, current: Value| {
        json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": meta("web", 5 * DAY),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "minReplicas": 2, "maxReplicas": 10, "metrics": metrics},
            "status": {"currentReplicas": 3, "desiredReplicas": 3, "currentMetrics": current}
        })
    };
    let cpu = json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}});
    let memory = json!({"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "500Mi"}}});
    let pods = json!({"type": "Pods", "pods": {"metric": {"name": "packets"}, "target": {"type": "AverageValue", "averageValue": "1k"}}});
    check(
        "HorizontalPodAutoscaler",
        hpa(
            json!([cpu, memory, pods]),
            json!([
                {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 45, "averageValue": "225m"}}},
                {"type": "Resource", "resource": {"name": "memory", "current": {"averageValue": "262144Ki"}}}
            ]),
        ),
        json!([
            "web",
            "Deployment/web",
            "cpu: 45%/80%, memory: 256Mi/500Mi + 1 more...",
            "2",
            10,
            3,
            "5d"
        ]),
    );
    check(
        "HorizontalPodAutoscaler",
        hpa(json!([cpu]), json!(null)),
        json!([
            "web",
            "Deployment/web",
            "cpu: <unknown>/80%",
            "2",
            10,
            3,
            "5d"
        ]),
    );
    let external = json!({"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "AverageValue", "averageValue": "30"}}});
    let object = json!({"type": "Object", "object": {"metric": {"name": "rps"},
        "describedObject": {"kind": "Ingress", "name": "main", "apiVersion": "networking.k8s.io/v1"},
        "target": {"type": "Value", "value": "2k"}}});
    check(
        "HorizontalPodAutoscaler",
        hpa(
            json!([external, object]),
            json!([{"type": "External", "external": {"metric": {"name": "queue"}, "current": {"averageValue": "12"}}},
                   {"type": "Object", "object": {"metric": {"name": "rps"},
                    "describedObject": {"kind": "Ingress", "name": "main"}, "current": {"value": "1500"}}}]),
        ),
        json!([
            "web",
            "Deployment/web",
            "12/30 (avg), 1500/2k",
            "2",
            10,
            3,
            "5d"
        ]),
    );
    let container = json!({"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app",
        "target": {"type": "Utilization"}}});
    let mut no_min = hpa(json!([container]), json!([]));
    no_min["spec"]
        .as_object_mut()
        .unwrap()
        .remove("minReplicas");
    check(
        "HorizontalPodAutoscaler",
        no_min,
        json!([
            "web",
            "Deployment/web",
            "cpu: <unknown>/<auto>",
            "1",
            10,
            3,
            "5d"
        ]),
    );
    check(
        "HorizontalPodAutoscaler",
        hpa(json!([]), json!([])),
        json!(["web", "Deployment/web", "<none>", "2", 10, 3, "5d"]),
    );
}

#[test]
fn lease_holder() {
    check(
        "Lease",
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta("node-1", 30 * DAY),
               "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40, "renewTime": format!("{}.000000Z", ago(5).trim_end_matches('Z'))}}),
        json!(["node-1", "node-1", "30d"]),
    );
    check(
        "Lease",
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta("free", 30), "spec": {}}),
        json!(["free", "", "30s"]),
    );
}

#[test]
fn endpoint_slice_ports_and_addresses() {
    let slice = |ports: Value, endpoints: Value| {
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": meta("web-abc12", 20 * MIN),
               "addressType": "IPv4", "ports": ports, "endpoints": endpoints})
    };
    check(
        "EndpointSlice",
        slice(
            json!([{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "metrics", "protocol": "TCP"}]),
            json!([{"addresses": ["10.244.1.5"], "conditions": {"ready": true}, "nodeName": "node-1"},
                   {"addresses": ["10.244.2.6", "10.244.2.7"], "conditions": {"ready": false}},
                   {"addresses": ["10.244.3.8"]}]),
        ),
        json!([
            "web-abc12",
            "IPv4",
            "8080,metrics",
            "10.244.1.5,10.244.2.6,10.244.2.7 + 1 more...",
            "20m"
        ]),
    );
    check(
        "EndpointSlice",
        slice(json!([]), json!([])),
        json!(["web-abc12", "IPv4", "<unset>", "<unset>", "20m"]),
    );
}

#[test]
fn ingress_hosts_address_and_ports() {
    let ing = |spec: Value, status: Value| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta("web", 8 * DAY),
               "spec": spec, "status": status})
    };
    let rule = |host: &str| {
        let mut r = json!({"http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}});
        if !host.is_empty() {
            r["host"] = json!(host);
        }
        r
    };
    check(
        "Ingress",
        ing(
            json!({"ingressClassName": "nginx", "rules": [rule("foo.example.com"), rule("bar.example.com")],
                   "tls": [{"hosts": ["foo.example.com"], "secretName": "foo-tls"}]}),
            json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}, {"hostname": "lb.example.com"}]}}),
        ),
        json!([
            "web",
            "nginx",
            "foo.example.com,bar.example.com",
            "203.0.113.9,lb.example.com",
            "80, 443",
            "8d"
        ]),
    );
    check(
        "Ingress",
        ing(
            json!({"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}, "rules": [rule("")]}),
            json!({}),
        ),
        json!(["web", "<none>", "*", "", "80", "8d"]),
    );
    check(
        "Ingress",
        ing(
            json!({"rules": [rule("a.io"), rule(""), rule("b.io"), rule("c.io"), rule("d.io")]}),
            json!({}),
        ),
        json!([
            "web",
            "<none>",
            "a.io,b.io,c.io + 2 more...",
            "",
            "80",
            "8d"
        ]),
    );
}

#[test]
fn ingress_class_parameters() {
    let class = |spec: Value| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
               "metadata": {"name": "nginx", "creationTimestamp": ago(8 * DAY)}, "spec": spec})
    };
    check(
        "IngressClass",
        class(json!({"controller": "k8s.io/ingress-nginx",
                     "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external-lb"}})),
        json!([
            "nginx",
            "k8s.io/ingress-nginx",
            "IngressParameters.k8s.example.com/external-lb",
            "8d"
        ]),
    );
    check(
        "IngressClass",
        class(
            json!({"controller": "example.com/ic", "parameters": {"kind": "ConfigMap", "name": "cfg", "scope": "Namespace", "namespace": "x"}}),
        ),
        json!(["nginx", "example.com/ic", "ConfigMap/cfg", "8d"]),
    );
    check(
        "IngressClass",
        class(json!({"controller": "example.com/ic"})),
        json!(["nginx", "example.com/ic", "<none>", "8d"]),
    );
}

// ---- the Table ----

fn sample_config_map() -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "settings", "namespace": "default", "resourceVersion": "42",
                        "creationTimestamp": ago(HOUR), "labels": {"app": "web"}},
           "data": {"k": "v"}})
}

#[test]
fn table_has_kubernetes_shape_with_metadata_objects_by_default() {
    let t = table(
        "ConfigMap",
        &[sample_config_map()],
        now(),
        IncludeObject::default(),
    );
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(t["metadata"], json!({}));
    assert_eq!(
        t["columnDefinitions"],
        serde_json::to_value(column_definitions("ConfigMap")).unwrap()
    );
    assert_eq!(t["rows"][0]["cells"], json!(["settings", 1, "60m"]));
    assert_eq!(
        t["rows"][0]["object"],
        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
               "metadata": sample_config_map()["metadata"]})
    );
}

#[test]
fn table_include_object_none_and_object() {
    let none = table(
        "ConfigMap",
        &[sample_config_map()],
        now(),
        IncludeObject::None,
    );
    assert_eq!(
        none["rows"][0]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["cells"]
    );
    let whole = table(
        "ConfigMap",
        &[sample_config_map()],
        now(),
        IncludeObject::Object,
    );
    assert_eq!(whole["rows"][0]["object"], sample_config_map());
    // A stored form without type meta still goes out with it.
    let mut bare = sample_config_map();
    bare.as_object_mut().unwrap().remove("kind");
    bare.as_object_mut().unwrap().remove("apiVersion");
    let t = table("ConfigMap", &[bare], now(), IncludeObject::Object);
    assert_eq!(t["rows"][0]["object"], sample_config_map());
    // An object without metadata still gets a PartialObjectMetadata.
    let t = table(
        "ConfigMap",
        &[json!({"data": {}})],
        now(),
        IncludeObject::Metadata,
    );
    assert_eq!(t["rows"][0]["object"]["metadata"], json!({}));
}

#[test]
fn empty_table_still_lists_columns() {
    let t = table("Pod", &[], now(), IncludeObject::Metadata);
    assert_eq!(t["rows"], json!([]));
    assert_eq!(t["columnDefinitions"].as_array().unwrap().len(), 9);
    let t = table("Widget", &[], now(), IncludeObject::Metadata);
    assert_eq!(t["columnDefinitions"][1]["name"], "Created At");
}

#[test]
fn the_caller_fills_in_list_metadata() {
    let mut t = table(
        "ConfigMap",
        &[sample_config_map()],
        now(),
        IncludeObject::None,
    );
    set_list_meta(
        &mut t,
        "1234",
        Some("eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ"),
        Some(7),
    );
    assert_eq!(
        t["metadata"],
        json!({"resourceVersion": "1234", "continue": "eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ", "remainingItemCount": 7})
    );
    set_list_meta(&mut t, "1235", Some(""), None);
    assert_eq!(t["metadata"], json!({"resourceVersion": "1235"}));
    let mut not_a_table = json!(3);
    set_list_meta(&mut not_a_table, "1", None, None);
    assert_eq!(not_a_table, json!(3));
}

#[test]
fn include_object_parses_like_kubernetes() {
    assert_eq!(IncludeObject::parse(None), Ok(IncludeObject::Metadata));
    assert_eq!(IncludeObject::parse(Some("")), Ok(IncludeObject::Metadata));
    assert_eq!(IncludeObject::parse(Some("None")), Ok(IncludeObject::None));
    assert_eq!(
        IncludeObject::parse(Some("Metadata")),
        Ok(IncludeObject::Metadata)
    );
    assert_eq!(
        IncludeObject::parse(Some("Object")),
        Ok(IncludeObject::Object)
    );
    let err = IncludeObject::parse(Some("object")).unwrap_err();
    assert_eq!(err, TableError::UnknownIncludeObject("object".into()));
    assert_eq!(
        err.to_string(),
        "unrecognized includeObject value: \"object\""
    );
}

// ---- robustness ----

/// Every kind we print, plus one without a printer.
fn all_kinds() -> Vec<&'static str> {
    let mut kinds: Vec<&'static str> = RESOURCES.iter().map(|r| r.kind).collect();
    kinds.push("Widget");
    kinds
}

#[test]
fn wrong_types_print_as_unset_fields() {
    let weird = json!({
        "metadata": {"name": 7, "creationTimestamp": 12, "labels": ["x"], "deletionTimestamp": null,
                     "ownerReferences": {"controller": true}},
        "spec": {"replicas": "three", "containers": "nginx", "selector": [1], "ports": [{"port": "http"}, 5],
                 "metrics": [{"type": "Resource", "resource": 5}], "rules": [null], "initContainers": [{}]},
        "status": {"conditions": [1, "Ready", {"type": 3}], "containerStatuses": [{"state": {"terminated": "yes"}}],
                   "initContainerStatuses": [{"state": []}], "hard": {"pods": 10}, "loadBalancer": {"ingress": [{}]}},
        "subsets": [{"addresses": [{"ip": 1}], "ports": [{}]}],
        "data": "not a map", "secrets": {}, "endpoints": [{"addresses": [1]}]
    });
    for kind in all_kinds() {
        let cells = row_cells(kind, &weird, now());
        assert_eq!(cells.len(), column_definitions(kind).len(), "{kind}");
        for not_an_object in [json!(null), json!("pod"), json!([1, 2]), json!(1.5)] {
            let cells = row_cells(kind, &not_an_object, now());
            assert_eq!(cells.len(), column_definitions(kind).len(), "{kind}");
        }
    }
    assert_eq!(row_cells("Deployment", &weird, now())[1], "0/1");
}

/// Keys the printers read, so that random objects reach deep into them.
const KEYS: &[&str] = &[
    "metadata",
    "spec",
    "status",
    "name",
    "creationTimestamp",
    "deletionTimestamp",
    "labels",
    "annotations",
    "ownerReferences",
    "controller",
    "apiVersion",
    "kind",
    "containers",
    "initContainers",
    "containerStatuses",
    "initContainerStatuses",
    "state",
    "lastState",
    "waiting",
    "running",
    "terminated",
    "reason",
    "exitCode",
    "signal",
    "finishedAt",
    "restartCount",
    "ready",
    "started",
    "restartPolicy",
    "conditions",
    "type",
    "phase",
    "podIP",
    "podIPs",
    "ip",
    "nodeName",
    "readinessGates",
    "conditionType",
    "replicas",
    "readyReplicas",
    "selector",
    "matchLabels",
    "matchExpressions",
    "key",
    "operator",
    "values",
    "template",
    "ports",
    "port",
    "nodePort",
    "protocol",
    "clusterIPs",
    "externalIPs",
    "loadBalancer",
    "ingress",
    "hostname",
    "subsets",
    "addresses",
    "address",
    "data",
    "binaryData",
    "hard",
    "used",
    "capacity",
    "storage",
    "accessModes",
    "claimRef",
    "metrics",
    "currentMetrics",
    "resource",
    "target",
    "current",
    "averageValue",
    "averageUtilization",
    "value",
    "pods",
    "external",
    "object",
    "series",
    "count",
    "firstTimestamp",
    "lastTimestamp",
    "eventTime",
    "involvedObject",
    "source",
    "rules",
    "host",
    "tls",
    "parameters",
    "apiGroup",
    "endpoints",
    "completions",
    "parallelism",
    "startTime",
    "completionTime",
    "jobTemplate",
    "suspend",
    "timeZone",
    "active",
    "lastScheduleTime",
    "holderIdentity",
    "nodeInfo",
    "unschedulable",
    "secrets",
    "revision",
    "volumeName",
    "scaleTargetRef",
    "minReplicas",
    "maxReplicas",
];

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let timestamp = (0i64..4_000_000_000).prop_map(|s| {
        json!(Timestamp::from_second(s)
            .unwrap()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string())
    });
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-5i64..5).prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-zA-Z0-9./:=-]{0,12}".prop_map(Value::from),
        prop::sample::select(vec![
            "True",
            "False",
            "Running",
            "Pending",
            "Succeeded",
            "Failed",
            "Ready",
            "Always",
            "Completed",
            "In",
            "NotIn",
            "Exists",
            "DoesNotExist",
            "Resource",
            "Pods",
            "External",
            "Object",
            "ContainerResource",
            "LoadBalancer",
            "NodePort",
            "ExternalName",
            "1.5Gi",
            "250m",
            "1e3",
            "0001-01-01T00:00:00Z",
            "Initialized",
            "PodScheduled",
            "SchedulingGated",
            "NodeLost",
        ])
        .prop_map(Value::from),
        timestamp,
    ];
    leaf.prop_recursive(6, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..8).prop_map(|entries| {
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                )
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn row_cells_never_panic_and_fill_every_column(obj in arbitrary_json(), offset in -10i64..4_000_000_000) {
        let at = Timestamp::from_second(offset).unwrap();
        for kind in all_kinds() {
            let cells = row_cells(kind, &obj, at);
            prop_assert_eq!(cells.len(), column_definitions(kind).len(), "{}", kind);
        }
        let t = table("Pod", std::slice::from_ref(&obj), at, IncludeObject::Object);
        prop_assert_eq!(t["rows"][0]["cells"].as_array().map(Vec::len), Some(9));
    }

    #[test]
    fn human_duration_never_panics(nanos in any::<i64>(), secs in any::<i64>()) {
        let short = human_duration(SignedDuration::from_nanos(nanos));
        prop_assert!(!short.is_empty());
        let long = human_duration(SignedDuration::from_secs(secs));
        prop_assert!(!long.is_empty());
    }
}
