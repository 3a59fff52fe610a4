use serde_json::{json, Value};

use super::*;
use crate::validation::{validate_create, FieldErrorKind};

fn defaulted(kind: &str, mut obj: Value) -> Value {
    apply_defaults(kind, &mut obj);
    obj
}

/// The template spec Kubernetes stores for a container without extras.
fn defaulted_template_spec(containers: Value) -> Value {
    json!({
        "containers": containers,
        "dnsPolicy": "ClusterFirst",
        "restartPolicy": "Always",
        "schedulerName": "default-scheduler",
        "securityContext": {},
        "terminationGracePeriodSeconds": 30
    })
}

#[test]
fn nginx_deployment_gets_kubernetes_defaults() {
    // The example from the Kubernetes Deployment documentation.
    let d = defaulted(
        "Deployment",
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "nginx-deployment", "labels": {"app": "nginx"}},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "nginx"}},
                "template": {
                    "metadata": {"labels": {"app": "nginx"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx:1.14.2", "ports": [{"containerPort": 80}]}]}
                }
            }
        }),
    );
    assert_eq!(
        d["spec"],
        json!({
            "progressDeadlineSeconds": 600,
            "replicas": 3,
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": {"app": "nginx"}},
            "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}, "type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": defaulted_template_spec(json!([{
                    "image": "nginx:1.14.2",
                    "imagePullPolicy": "IfNotPresent",
                    "name": "nginx",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "resources": {},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File"
                }]))
            }
        })
    );
    assert_eq!(
        d["metadata"],
        json!({"name": "nginx-deployment", "labels": {"app": "nginx"}})
    );
    assert!(validate_create("Deployment", &d).is_empty());
}

#[test]
fn pod_gets_kubernetes_defaults_and_admission() {
    // What `kubectl run nginx --image=nginx` creates.
    let p = defaulted(
        "Pod",
        json!({"metadata": {"name": "nginx", "labels": {"run": "nginx"}}, "spec": {"containers": [{"name": "nginx", "image": "nginx", "resources": {}}]}}),
    );
    assert_eq!(
        p["spec"],
        json!({
            "containers": [{
                "image": "nginx",
                "imagePullPolicy": "Always",
                "name": "nginx",
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File"
            }],
            "dnsPolicy": "ClusterFirst",
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "securityContext": {},
            "serviceAccount": "default",
            "serviceAccountName": "default",
            "terminationGracePeriodSeconds": 30
        })
    );
}

#[test]
fn pod_details() {
    let p = defaulted(
        "Pod",
        json!({"metadata": {"name": "p"}, "spec": {
            "hostNetwork": true,
            "serviceAccountName": "builder",
            "priorityClassName": "system-node-critical",
            "tolerations": [{"operator": "Exists"}],
            "volumes": [
                {"name": "scratch"},
                {"name": "cfg", "configMap": {"name": "cfg"}},
                {"name": "info", "downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
                {"name": "tok", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}
            ],
            "containers": [{
                "name": "app", "image": "app:v1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "ports": [{"containerPort": 8080}],
                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}},
                "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                "readinessProbe": {"httpGet": {"port": 8080}}
            }]
        }}),
    );
    let spec = &p["spec"];
    assert_eq!(spec["serviceAccount"], "builder");
    assert_eq!(spec["priority"], 2_000_001_000);
    assert_eq!(spec["tolerations"], json!([{"operator": "Exists"}]));
    assert_eq!(
        spec["volumes"][0],
        json!({"name": "scratch", "emptyDir": {}})
    );
    assert_eq!(spec["volumes"][1]["configMap"]["defaultMode"], 420);
    assert_eq!(
        spec["volumes"][2]["downwardAPI"]["items"][0]["fieldRef"]["apiVersion"],
        "v1"
    );
    assert_eq!(
        spec["volumes"][3]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
        3600
    );
    let c = &spec["containers"][0];
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(
        c["ports"][0],
        json!({"containerPort": 8080, "hostPort": 8080, "protocol": "TCP"})
    );
    assert_eq!(
        c["resources"]["requests"],
        json!({"cpu": "500m", "memory": "1Gi"})
    );
    assert_eq!(
        c["env"][0]["valueFrom"]["fieldRef"],
        json!({"apiVersion": "v1", "fieldPath": "spec.nodeName"})
    );
    assert_eq!(
        c["readinessProbe"],
        json!({"httpGet": {"path": "/", "port": 8080, "scheme": "HTTP"}, "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
    );
}

#[test]
fn templates_do_not_get_pod_only_defaults() {
    let d = defaulted(
        "ReplicaSet",
        json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "a", "resources": {"limits": {"cpu": "1"}}}]}}}}),
    );
    let spec = &d["spec"]["template"]["spec"];
    for f in [
        "enableServiceLinks",
        "priority",
        "tolerations",
        "serviceAccountName",
    ] {
        assert!(spec.get(f).is_none(), "{f} set on a template");
    }
    assert!(spec["containers"][0]["resources"].get("requests").is_none());
    assert_eq!(d["spec"]["replicas"], 1);
}

#[test]
fn service_defaults() {
    let s = defaulted(
        "Service",
        json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
    );
    assert_eq!(
        s["spec"],
        json!({
            "internalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
            "selector": {"app": "web"},
            "sessionAffinity": "None",
            "type": "ClusterIP"
        })
    );
    let lb = defaulted(
        "Service",
        json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 443, "targetPort": "https"}]}}),
    );
    assert_eq!(lb["spec"]["externalTrafficPolicy"], "Cluster");
    assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
    assert_eq!(lb["spec"]["ports"][0]["targetPort"], "https");
    let en = defaulted(
        "Service",
        json!({"spec": {"type": "ExternalName", "externalName": "example.com"}}),
    );
    assert!(en["spec"].get("ipFamilies").is_none());
    assert!(en["spec"].get("internalTrafficPolicy").is_none());
    let headless = defaulted("Service", json!({"spec": {"clusterIP": "None"}}));
    assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
    assert_eq!(headless["spec"]["ipFamilyPolicy"], "RequireDualStack");
    let sticky = defaulted(
        "Service",
        json!({"spec": {"sessionAffinity": "ClientIP", "ports": [{"port": 1}]}}),
    );
    assert_eq!(
        sticky["spec"]["sessionAffinityConfig"],
        json!({"clientIP": {"timeoutSeconds": 10800}})
    );
}

#[test]
fn workload_defaults() {
    let ds = defaulted(
        "DaemonSet",
        json!({"spec": {"template": {"spec": {"containers": []}}}}),
    );
    assert_eq!(
        ds["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
    );
    assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);
    let sts = defaulted(
        "StatefulSet",
        json!({"spec": {"template": {"spec": {"containers": []}}, "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}}),
    );
    let spec = &sts["spec"];
    assert_eq!(spec["podManagementPolicy"], "OrderedReady");
    assert_eq!(
        spec["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    );
    assert_eq!(
        spec["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
    );
    assert_eq!(
        (
            spec["replicas"].clone(),
            spec["revisionHistoryLimit"].clone()
        ),
        (json!(1), json!(10))
    );
    assert_eq!(
        spec["volumeClaimTemplates"][0],
        json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "www"},
            "spec": {"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem"},
            "status": {"phase": "Pending"}
        })
    );
    let ondelete = defaulted(
        "StatefulSet",
        json!({"spec": {"updateStrategy": {"type": "OnDelete"}}}),
    );
    assert_eq!(
        ondelete["spec"]["updateStrategy"],
        json!({"type": "OnDelete"})
    );
    let cj = defaulted(
        "CronJob",
        json!({"spec": {"schedule": "@hourly", "jobTemplate": {"spec": {"template": {"spec": {"containers": [], "restartPolicy": "OnFailure"}}}}}}),
    );
    assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow");
    assert_eq!(cj["spec"]["suspend"], false);
    assert_eq!(cj["spec"]["successfulJobsHistoryLimit"], 3);
    assert_eq!(cj["spec"]["failedJobsHistoryLimit"], 1);
    assert_eq!(
        cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"],
        "ClusterFirst"
    );
    assert!(cj["spec"]["jobTemplate"]["spec"]
        .get("backoffLimit")
        .is_none());
}

#[test]
fn job_defaults_and_generated_selector() {
    let mut job = defaulted(
        "Job",
        json!({"metadata": {"name": "pi", "uid": "8f3e"}, "spec": {"template": {"spec": {"containers": [{"name": "pi", "image": "perl:5.34.0"}], "restartPolicy": "Never"}}}}),
    );
    let spec = &job["spec"];
    assert_eq!(
        (
            spec["completions"].clone(),
            spec["parallelism"].clone(),
            spec["backoffLimit"].clone()
        ),
        (json!(1), json!(1), json!(6))
    );
    assert_eq!(spec["completionMode"], "NonIndexed");
    assert_eq!(spec["suspend"], false);
    assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
    default_job_selector(&mut job, "8f3e");
    let labels = json!({
        "batch.kubernetes.io/controller-uid": "8f3e",
        "batch.kubernetes.io/job-name": "pi",
        "controller-uid": "8f3e",
        "job-name": "pi"
    });
    assert_eq!(
        job["spec"]["selector"],
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "8f3e"}})
    );
    assert_eq!(job["spec"]["template"]["metadata"]["labels"], labels);
    assert_eq!(job["metadata"]["labels"], labels);
    assert!(validate_create("Job", &job).is_empty());
    // Only parallelism given: completions stays unset.
    let par = defaulted(
        "Job",
        json!({"spec": {"parallelism": 3, "template": {"metadata": {"labels": {"app": "w"}}}}}),
    );
    assert!(par["spec"].get("completions").is_none());
    assert_eq!(par["metadata"]["labels"], json!({"app": "w"}));
    let mut manual =
        json!({"spec": {"manualSelector": true, "selector": {"matchLabels": {"a": "b"}}}});
    default_job_selector(&mut manual, "x");
    assert_eq!(
        manual,
        json!({"spec": {"manualSelector": true, "selector": {"matchLabels": {"a": "b"}}}})
    );
}

#[test]
fn cluster_object_defaults() {
    let ns = defaulted("Namespace", json!({"metadata": {"name": "team-a"}}));
    assert_eq!(
        ns,
        json!({
            "metadata": {"name": "team-a", "labels": {"kubernetes.io/metadata.name": "team-a"}},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"}
        })
    );
    let ns = defaulted(
        "Namespace",
        json!({"metadata": {"name": "x"}, "spec": {"finalizers": ["example.com/hold"]}}),
    );
    assert_eq!(
        ns["spec"]["finalizers"],
        json!(["example.com/hold", "kubernetes"])
    );
    assert_eq!(
        defaulted("Secret", json!({"metadata": {"name": "s"}}))["type"],
        "Opaque"
    );
    let pvc = defaulted(
        "PersistentVolumeClaim",
        json!({"spec": {"accessModes": ["ReadWriteOnce"]}}),
    );
    assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
    assert_eq!(pvc["status"]["phase"], "Pending");
    let pv = defaulted(
        "PersistentVolume",
        json!({"spec": {"hostPath": {"path": "/mnt"}}}),
    );
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert_eq!(pv["spec"]["volumeMode"], "Filesystem");
    assert_eq!(pv["spec"]["hostPath"]["type"], "");
    assert_eq!(pv["status"]["phase"], "Pending");
    let hpa = defaulted(
        "HorizontalPodAutoscaler",
        json!({"spec": {"maxReplicas": 5, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}}),
    );
    assert_eq!(hpa["spec"]["minReplicas"], 1);
    assert_eq!(
        hpa["spec"]["metrics"],
        json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}])
    );
    assert_eq!(
        hpa["spec"]["behavior"],
        json!({
            "scaleDown": {"stabilizationWindowSeconds": 60, "selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]},
            "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]}
        })
    );
    let node = defaulted("Node", json!({"status": {"capacity": {"cpu": "2"}}}));
    assert_eq!(node["status"]["allocatable"], json!({"cpu": "2"}));
    let slice = defaulted("EndpointSlice", json!({"ports": [{"port": 80}]}));
    assert_eq!(
        slice["ports"],
        json!([{"name": "", "port": 80, "protocol": "TCP"}])
    );
    let lr = defaulted(
        "LimitRange",
        json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "64Mi"}}]}}),
    );
    assert_eq!(
        lr["spec"]["limits"][0],
        json!({"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "64Mi"}, "default": {"cpu": "2"}, "defaultRequest": {"cpu": "2", "memory": "64Mi"}})
    );
}

#[test]
fn normalize_merges_string_data_and_canonicalizes_quantities() {
    let mut s = json!({"metadata": {"name": "s"}, "data": {"a": "eA=="}, "stringData": {"b": "hello", "a": "y"}});
    normalize("Secret", &mut s);
    assert_eq!(
        s,
        json!({"metadata": {"name": "s"}, "data": {"a": "eQ==", "b": "aGVsbG8="}})
    );
    let mut p = json!({"spec": {"containers": [{"resources": {"requests": {"cpu": "0.5", "memory": "1024Mi"}, "limits": {"cpu": "0.0001", "memory": "bad"}}}]}});
    normalize("Pod", &mut p);
    assert_eq!(
        p["spec"]["containers"][0]["resources"],
        json!({"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1m", "memory": "bad"}})
    );
}

#[test]
fn limit_range_defaults_and_violations() {
    let lr = json!({"spec": {"limits": [{"type": "Container", "default": {"cpu": "500m", "memory": "256Mi"}, "defaultRequest": {"cpu": "100m"}, "max": {"cpu": "1"}, "min": {"cpu": "50m"}}]}});
    let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "app", "image": "app", "resources": {"limits": {"memory": "128Mi"}}},
        {"name": "side", "image": "side", "resources": {"requests": {"cpu": "200m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "64Mi"}}}
    ]}});
    apply_limit_range_defaults(&mut pod, std::slice::from_ref(&lr));
    assert_eq!(
        pod["spec"]["containers"][0]["resources"],
        json!({"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m", "memory": "256Mi"}})
    );
    assert_eq!(
        pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container app; cpu limit for container app"
    );
    assert!(limit_range_violations(&pod, std::slice::from_ref(&lr)).is_empty());
    let mut greedy = json!({"spec": {"containers": [{"name": "g", "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "4"}}}]}});
    apply_limit_range_defaults(&mut greedy, std::slice::from_ref(&lr));
    assert_eq!(
        limit_range_violations(&greedy, std::slice::from_ref(&lr)),
        vec!["maximum cpu usage per Container is 1, but limit is 4"]
    );
    let pod_lr = json!({"spec": {"limits": [{"type": "Pod", "max": {"memory": "100Mi"}}, {"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}}]}});
    let two = json!({"spec": {"containers": [
        {"name": "a", "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "300m", "memory": "64Mi"}}},
        {"name": "b", "resources": {"limits": {"memory": "64Mi"}}}
    ]}});
    assert_eq!(
        limit_range_violations(&two, std::slice::from_ref(&pod_lr)),
        vec![
            "maximum memory usage per Pod is 100Mi, but limit is 128Mi",
            "cpu max limit to request ratio per Container is 2, but provided ratio is 3.000000",
            "cpu max limit to request ratio per Container is 2, but no request is specified or request is 0",
        ]
    );
}

#[test]
fn defaults_keep_what_the_user_set() {
    let mut d = json!({"spec": {"replicas": 0, "strategy": {"type": "Recreate"}, "template": {"spec": {"restartPolicy": "Always", "dnsPolicy": "Default", "containers": [{"name": "a", "image": "a", "imagePullPolicy": "Never"}]}}}});
    apply_defaults("Deployment", &mut d);
    assert_eq!(d["spec"]["replicas"], 0);
    assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
    assert_eq!(d["spec"]["template"]["spec"]["dnsPolicy"], "Default");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "Never"
    );
}

#[test]
fn unsupported_fields_are_reported_on_templates_too() {
    let mut d = json!({"metadata": {"name": "d"}, "spec": {
        "selector": {"matchLabels": {"a": "b"}},
        "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"os": {"name": "windows"}, "containers": [{"name": "c", "image": "c", "volumeDevices": [{"name": "v", "devicePath": "/dev/x"}]}]}}
    }});
    apply_defaults("Deployment", &mut d);
    let errs = validate_create("Deployment", &d);
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    assert!(fields.contains(&"spec.template.spec.os.name"), "{errs:?}");
    assert!(
        fields.contains(&"spec.template.spec.containers[0].volumeDevices"),
        "{errs:?}"
    );
    assert!(errs
        .iter()
        .filter(|e| e.field.ends_with("os.name") || e.field.ends_with("volumeDevices"))
        .all(|e| e.kind == FieldErrorKind::NotSupported));
}
