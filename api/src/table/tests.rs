//! Expected cells for realistic objects of every served kind, written the way the API
//! serializes them (each is decoded through its k8s-openapi type first), and the pod
//! status rules in detail.

use super::*;
use jiff::SignedDuration;

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
