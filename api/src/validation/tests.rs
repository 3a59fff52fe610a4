use serde_json::{json, Value};

use super::*;
use crate::defaults::{apply_defaults, default_job_selector};

/// Validates after defaulting, as the server does.
fn create(kind: &str, mut obj: Value) -> Vec<FieldError> {
    apply_defaults(kind, &mut obj);
    validate_create(kind, &obj)
}

fn update(kind: &str, mut new: Value, mut old: Value) -> Vec<FieldError> {
    apply_defaults(kind, &mut new);
    apply_defaults(kind, &mut old);
    validate_update(kind, &new, &old)
}

fn messages(errs: &[FieldError]) -> Vec<String> {
    errs.iter().map(FieldError::message).collect()
}

fn nginx_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "nginx-deployment", "namespace": "default", "labels": {"app": "nginx"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.14.2", "ports": [{"containerPort": 80}]}]}
            }
        }
    })
}

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
}

fn busybox() -> Value {
    json!({"name": "app", "image": "busybox:1.36"})
}

#[test]
fn nginx_deployment_is_valid() {
    assert_eq!(
        messages(&create("Deployment", nginx_deployment())),
        Vec::<String>::new()
    );
    // Validation reads absent defaultable fields as their defaults.
    assert!(validate_create("Deployment", &nginx_deployment()).is_empty());
}

#[test]
fn field_error_formatting_matches_kubernetes() {
    let e = FieldError::required("spec.containers[0].image", "");
    assert_eq!(e.message(), "spec.containers[0].image: Required value");
    assert_eq!(e.reason(), "FieldValueRequired");
    assert_eq!(e.body(), "Required value");
    let e = FieldError::not_supported(
        "spec.restartPolicy",
        &json!("Sometimes"),
        &["Always", "OnFailure", "Never"],
    );
    assert_eq!(
        e.message(),
        r#"spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never""#
    );
    assert_eq!(e.reason(), "FieldValueNotSupported");
    assert_eq!(
        FieldError::invalid("x", &json!(5), "bad").message(),
        "x: Invalid value: 5: bad"
    );
    assert_eq!(
        FieldError::invalid("x", &json!({"a": "b"}), "bad").message(),
        r#"x: Invalid value: {"a":"b"}: bad"#
    );
    assert_eq!(
        FieldError::invalid_str("x", "a\"b\n", "bad").message(),
        r#"x: Invalid value: "a\"b\n": bad"#
    );
    assert_eq!(
        FieldError::too_long("metadata.annotations", 262144).message(),
        "metadata.annotations: Too long: may not be more than 262144 bytes"
    );
    assert_eq!(
        FieldError::too_many("items", 5, 4).message(),
        "items: Too many: 5: must have at most 4 items"
    );
    assert_eq!(
        FieldError::forbidden("spec", "no").message(),
        "spec: Forbidden: no"
    );
    assert_eq!(
        FieldError::duplicate("a", &json!("x")).message(),
        r#"a: Duplicate value: "x""#
    );
    assert_eq!(
        FieldError::not_found("a", &json!("x")).message(),
        r#"a: Not found: "x""#
    );
    for (k, r) in [
        (FieldErrorKind::Invalid, "FieldValueInvalid"),
        (FieldErrorKind::Duplicate, "FieldValueDuplicate"),
        (FieldErrorKind::Forbidden, "FieldValueForbidden"),
        (FieldErrorKind::TooLong, "FieldValueTooLong"),
        (FieldErrorKind::TooMany, "FieldValueTooMany"),
    ] {
        assert_eq!(k.reason(), r);
    }
}

#[test]
fn invalid_message_aggregates_like_kubernetes() {
    let a = FieldError::required("spec.selector", "");
    let b = FieldError::required("spec.template.spec.containers", "");
    assert_eq!(
        invalid_message("Deployment.apps", "web", std::slice::from_ref(&a)),
        r#"Deployment.apps "web" is invalid: spec.selector: Required value"#
    );
    assert_eq!(
        invalid_message("Deployment.apps", "web", &[a.clone(), b, a]),
        r#"Deployment.apps "web" is invalid: [spec.selector: Required value, spec.template.spec.containers: Required value]"#
    );
}

#[test]
fn pod_without_image() {
    let errs = create("Pod", pod(json!({"containers": [{"name": "app"}]})));
    assert_eq!(
        messages(&errs),
        vec!["spec.containers[0].image: Required value"]
    );
    assert_eq!(errs[0].reason(), "FieldValueRequired");
}

#[test]
fn pod_without_containers() {
    let errs = create("Pod", pod(json!({})));
    assert_eq!(messages(&errs), vec!["spec.containers: Required value"]);
}

#[test]
fn bad_names() {
    let mut p = pod(json!({"containers": [busybox()]}));
    p["metadata"]["name"] = json!("Foo");
    assert_eq!(
        messages(&create("Pod", p)),
        vec![
            r#"metadata.name: Invalid value: "Foo": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#
        ]
    );
    let ns = json!({"metadata": {"name": "team.a"}});
    assert_eq!(
        messages(&create("Namespace", ns)),
        vec![r#"metadata.name: Invalid value: "team.a": must not contain dots"#]
    );
    let svc = json!({"metadata": {"name": "1web"}, "spec": {"ports": [{"port": 80}]}});
    let msgs = messages(&create("Service", svc));
    assert_eq!(msgs.len(), 1);
    assert!(
        msgs[0].starts_with(
            r#"metadata.name: Invalid value: "1web": a DNS-1035 label must consist of"#
        ),
        "{msgs:?}"
    );
    let mut p = pod(json!({"containers": [busybox()]}));
    p["metadata"] = json!({"generateName": "web-", "namespace": "default"});
    assert!(create("Pod", p.clone()).is_empty());
    p["metadata"] = json!({"namespace": "default"});
    assert_eq!(
        messages(&create("Pod", p)),
        vec!["metadata.name: Required value: name or generateName is required"]
    );
}

#[test]
fn labels_and_annotations() {
    let mut p = pod(json!({"containers": [busybox()]}));
    p["metadata"]["labels"] = json!({"app": "-bad", "a/b/c": "x"});
    let msgs = messages(&create("Pod", p.clone()));
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(msgs.iter().any(|m| m.starts_with(
        r#"metadata.labels: Invalid value: "-bad": a valid label must be an empty string"#
    )));
    assert!(msgs.iter().any(|m| m
        .starts_with(r#"metadata.labels: Invalid value: "a/b/c": a qualified name must consist"#)));
    p["metadata"]["labels"] = json!({});
    p["metadata"]["annotations"] = json!({"big": "x".repeat(256 * 1024)});
    assert_eq!(
        messages(&create("Pod", p)),
        vec!["metadata.annotations: Too long: may not be more than 262144 bytes"]
    );
}

#[test]
fn restart_policy_values() {
    let errs = create(
        "Pod",
        pod(json!({"containers": [busybox()], "restartPolicy": "Sometimes"})),
    );
    assert_eq!(
        messages(&errs),
        vec![
            r#"spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never""#
        ]
    );
    let mut d = nginx_deployment();
    d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
    assert_eq!(
        messages(&create("Deployment", d)),
        vec![
            r#"spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always""#
        ]
    );
}

#[test]
fn deployment_selector_must_match_template() {
    let mut d = nginx_deployment();
    d["spec"]["selector"] = json!({"matchLabels": {"app": "web"}});
    assert_eq!(
        messages(&create("Deployment", d.clone())),
        vec![
            r#"spec.template.metadata.labels: Invalid value: {"app":"nginx"}: `selector` does not match template `labels`"#
        ]
    );
    d["spec"]["selector"] = json!({});
    assert_eq!(
        messages(&create("Deployment", d.clone())),
        vec!["spec.selector: Invalid value: {}: empty selector is invalid for deployment"]
    );
    d["spec"].as_object_mut().unwrap().remove("selector");
    assert_eq!(
        messages(&create("Deployment", d)),
        vec!["spec.selector: Required value"]
    );
}

#[test]
fn deployment_numbers_and_strategy() {
    let mut d = nginx_deployment();
    d["spec"]["replicas"] = json!(-1);
    d["spec"]["strategy"] =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}});
    assert_eq!(
        messages(&create("Deployment", d.clone())),
        vec![
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            r#"spec.strategy.rollingUpdate.maxUnavailable: Invalid value: "0%": may not be 0 when `maxSurge` is 0"#,
        ]
    );
    d["spec"]["replicas"] = json!(1);
    d["spec"]["strategy"] = json!({"type": "Sideways"});
    assert_eq!(
        messages(&create("Deployment", d.clone())),
        vec![
            r#"spec.strategy: Unsupported value: {"type":"Sideways"}: supported values: "Recreate", "RollingUpdate""#
        ]
    );
    d["spec"]["strategy"] = json!({"type": "Recreate", "rollingUpdate": {"maxSurge": 1}});
    assert_eq!(
        messages(&create("Deployment", d)),
        vec!["spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"]
    );
}

#[test]
fn selector_is_immutable() {
    let old = nginx_deployment();
    let mut new = nginx_deployment();
    new["spec"]["selector"]["matchLabels"]["tier"] = json!("web");
    new["spec"]["template"]["metadata"]["labels"]["tier"] = json!("web");
    assert_eq!(
        messages(&update("Deployment", new, old.clone())),
        vec![
            r#"spec.selector: Invalid value: {"matchLabels":{"app":"nginx","tier":"web"}}: field is immutable"#
        ]
    );
    let mut scaled = nginx_deployment();
    scaled["spec"]["replicas"] = json!(5);
    scaled["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.27");
    assert!(update("Deployment", scaled, old).is_empty());
}

#[test]
fn nfs_volume_is_not_supported() {
    let spec = json!({
        "containers": [{"name": "app", "image": "busybox", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
        "volumes": [{"name": "data", "nfs": {"server": "nfs.example.com", "path": "/export"}}]
    });
    let errs = create("Pod", pod(spec));
    assert_eq!(errs.len(), 1, "{:?}", messages(&errs));
    assert_eq!(errs[0].kind, FieldErrorKind::NotSupported);
    assert_eq!(errs[0].field, "spec.volumes[0].nfs");
    assert!(
        errs[0]
            .message()
            .contains("skiff's kubelet does not support nfs volumes"),
        "{}",
        errs[0]
    );
    let mut d = nginx_deployment();
    d["spec"]["template"]["spec"]["volumes"] =
        json!([{"name": "x", "csi": {"driver": "example.com"}}]);
    let errs = create("Deployment", d);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].field, "spec.template.spec.volumes[0].csi");
    let ok = json!({
        "containers": [busybox()],
        "volumes": [
            {"name": "a", "emptyDir": {}},
            {"name": "b", "configMap": {"name": "cfg"}},
            {"name": "c", "secret": {"secretName": "s"}},
            {"name": "d", "hostPath": {"path": "/var/log"}},
            {"name": "e", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "f", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
            {"name": "g", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
            {"name": "h"}
        ]
    });
    assert_eq!(messages(&create("Pod", pod(ok))), Vec::<String>::new());
}

#[test]
fn volumes_and_mounts() {
    let spec = json!({
        "containers": [{"name": "app", "image": "busybox", "volumeMounts": [{"name": "missing", "mountPath": "/a"}]}],
        "volumes": [
            {"name": "Data", "emptyDir": {}},
            {"name": "two", "emptyDir": {}, "configMap": {"name": "x"}},
            {"name": "two", "emptyDir": {}}
        ]
    });
    let msgs = messages(&create("Pod", pod(spec)));
    assert!(
        msgs.iter().any(|m| m.starts_with(
            r#"spec.volumes[0].name: Invalid value: "Data": a lowercase RFC 1123 label"#
        )),
        "{msgs:?}"
    );
    assert!(
        msgs.contains(
            &"spec.volumes[1].configMap: Forbidden: may not specify more than 1 volume type"
                .to_string()
        ),
        "{msgs:?}"
    );
    assert!(
        msgs.contains(
            &r#"spec.containers[0].volumeMounts[0].name: Not found: "missing""#.to_string()
        ),
        "{msgs:?}"
    );
    let dup = json!({"containers": [busybox()], "volumes": [{"name": "a", "emptyDir": {}}, {"name": "a", "emptyDir": {}}]});
    assert_eq!(
        messages(&create("Pod", pod(dup))),
        vec![r#"spec.volumes[1].name: Duplicate value: "a""#]
    );
}

#[test]
fn containers_names_ports_env_probes() {
    let spec = json!({
        "initContainers": [{"name": "app", "image": "busybox"}],
        "containers": [{
            "name": "app",
            "image": "busybox",
            "ports": [{"containerPort": 70000, "protocol": "HTTP"}, {"name": "web", "containerPort": 80}, {"name": "web", "containerPort": 81}],
            "env": [{"name": "A=B", "value": "x"}, {"name": ""}],
            "livenessProbe": {"exec": {"command": ["true"]}, "httpGet": {"port": 80}, "successThreshold": 2}
        }]
    });
    let msgs = messages(&create("Pod", pod(spec)));
    let expected = [
        "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
        r#"spec.containers[0].ports[0].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP""#,
        r#"spec.containers[0].ports[2].name: Duplicate value: "web""#,
        r#"spec.containers[0].env[0].name: Invalid value: "A=B": a valid environment variable name must consist only of printable ASCII characters other than '='"#,
        "spec.containers[0].env[1].name: Required value",
        "spec.containers[0].livenessProbe.httpGet: Forbidden: may not specify more than 1 handler type",
        "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
        r#"spec.initContainers[0].name: Duplicate value: "app""#,
    ];
    for e in expected {
        assert!(msgs.contains(&e.to_string()), "missing {e}\n{msgs:#?}");
    }
    assert_eq!(msgs.len(), expected.len(), "{msgs:#?}");
}

#[test]
fn resources_and_quantities() {
    let spec = json!({"containers": [{
        "name": "app", "image": "busybox",
        "resources": {"requests": {"cpu": "2", "memory": "lots"}, "limits": {"cpu": "500m"}}
    }]});
    let msgs = messages(&create("Pod", pod(spec)));
    assert_eq!(
        msgs,
        vec![
            r#"spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to cpu limit of 500m"#,
            r#"spec.containers[0].resources.requests[memory]: Invalid value: "lots": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"#,
        ]
    );
    let spec = json!({"containers": [{
        "name": "app", "image": "busybox",
        "resources": {"requests": {"example.com/gpu": "1", "cpu": "-1", "widgets": "1"}}
    }]});
    let msgs = messages(&create("Pod", pod(spec)));
    assert!(msgs.contains(&"spec.containers[0].resources.limits: Required value: Limit must be set for non overcommitable resources".to_string()), "{msgs:#?}");
    assert!(msgs.contains(&r#"spec.containers[0].resources.requests[cpu]: Invalid value: "-1": must be greater than or equal to 0"#.to_string()), "{msgs:#?}");
    assert!(msgs.contains(&r#"spec.containers[0].resources.requests[widgets]: Invalid value: "widgets": must be a standard resource for containers"#.to_string()), "{msgs:#?}");
}

#[test]
fn dns_policy_and_tolerations() {
    let spec = json!({
        "containers": [busybox()],
        "dnsPolicy": "None",
        "tolerations": [{"operator": "Equal", "value": "x"}, {"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 5}]
    });
    let msgs = messages(&create("Pod", pod(spec)));
    assert!(
        msgs.contains(
            &"spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None"
                .to_string()
        ),
        "{msgs:#?}"
    );
    assert!(msgs.iter().any(|m| m.starts_with(r#"spec.tolerations[0].operator: Invalid value: "Equal": operator must be Exists when `key` is empty"#)), "{msgs:#?}");
    assert!(msgs.contains(&r#"spec.tolerations[1].effect: Invalid value: "NoSchedule": effect must be 'NoExecute' when `tolerationSeconds` is set"#.to_string()), "{msgs:#?}");
}

#[test]
fn pod_updates() {
    let old = pod(
        json!({"containers": [{"name": "app", "image": "busybox:1.36", "ports": [{"containerPort": 80}]}]}),
    );
    let mut new = old.clone();
    new["spec"]["containers"][0]["image"] = json!("busybox:1.37");
    new["spec"]["activeDeadlineSeconds"] = json!(30);
    new["spec"]["tolerations"] =
        json!([{"key": "k", "operator": "Exists", "effect": "NoSchedule"}]);
    assert_eq!(
        messages(&update("Pod", new.clone(), old.clone())),
        Vec::<String>::new()
    );
    let mut bad = new.clone();
    bad["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(8080);
    let errs = update("Pod", bad, old.clone());
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].field, "spec");
    assert_eq!(errs[0].kind, FieldErrorKind::Forbidden);
    assert!(errs[0].detail.starts_with("pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"), "{}", errs[0].detail);
    assert!(
        errs[0]
            .detail
            .contains("spec.containers[0].ports[0].containerPort: 8080"),
        "{}",
        errs[0].detail
    );
    let mut more = new.clone();
    more["spec"]["containers"] = json!([busybox(), {"name": "b", "image": "busybox"}]);
    assert_eq!(
        messages(&update("Pod", more, old.clone())),
        vec!["spec.containers: Forbidden: pod updates may not add or remove containers"]
    );
    let mut noimage = new;
    noimage["spec"]["containers"][0]["image"] = json!("");
    assert_eq!(
        messages(&update("Pod", noimage, old)),
        vec!["spec.containers[0].image: Required value"]
    );
}

#[test]
fn stateful_set_rules() {
    let sts = json!({
        "metadata": {"name": "web"},
        "spec": {
            "serviceName": "nginx",
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {"metadata": {"labels": {"app": "nginx"}}, "spec": {"containers": [{
                "name": "nginx", "image": "nginx", "volumeMounts": [{"name": "www", "mountPath": "/usr/share/nginx/html"}]
            }]}},
            "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
        }
    });
    assert_eq!(
        messages(&create("StatefulSet", sts.clone())),
        Vec::<String>::new()
    );
    let mut dotted = sts.clone();
    dotted["metadata"]["name"] = json!("web.v1");
    assert_eq!(
        messages(&create("StatefulSet", dotted)),
        vec![r#"metadata.name: Invalid value: "web.v1": must not contain dots"#]
    );
    let mut changed = sts.clone();
    changed["spec"]["serviceName"] = json!("other");
    changed["spec"]["replicas"] = json!(5);
    assert_eq!(
        messages(&update("StatefulSet", changed, sts.clone())),
        vec!["spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"]
    );
    let mut scaled = sts.clone();
    scaled["spec"]["replicas"] = json!(5);
    assert!(update("StatefulSet", scaled, sts).is_empty());
}

#[test]
fn daemon_set_rules() {
    let ds = json!({
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}},
            "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [busybox()]}}
        }
    });
    assert_eq!(
        messages(&create("DaemonSet", ds)),
        vec!["spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"]
    );
}

fn job() -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "pi", "namespace": "default", "uid": "7f1c"},
        "spec": {"template": {"spec": {"containers": [{"name": "pi", "image": "perl:5.34.0", "command": ["perl", "-e", "print 1"]}], "restartPolicy": "Never"}}, "backoffLimit": 4}
    })
}

fn create_job(mut j: Value) -> Vec<FieldError> {
    apply_defaults("Job", &mut j);
    default_job_selector(&mut j, "7f1c");
    validate_create("Job", &j)
}

#[test]
fn job_rules() {
    assert_eq!(messages(&create_job(job())), Vec::<String>::new());
    let mut j = job();
    j["spec"]["template"]["spec"]
        .as_object_mut()
        .unwrap()
        .remove("restartPolicy");
    assert_eq!(
        messages(&create_job(j)),
        vec![
            r#"spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never""#
        ]
    );
    let mut j = job();
    j["spec"]["completions"] = json!(-1);
    j["spec"]["parallelism"] = json!(-2);
    j["spec"]["backoffLimit"] = json!(-3);
    assert_eq!(
        messages(&create_job(j)),
        vec![
            "spec.parallelism: Invalid value: -2: must be greater than or equal to 0",
            "spec.completions: Invalid value: -1: must be greater than or equal to 0",
            "spec.backoffLimit: Invalid value: -3: must be greater than or equal to 0",
        ]
    );
    let mut j = job();
    apply_defaults("Job", &mut j);
    assert_eq!(
        messages(&validate_create("Job", &j)),
        vec!["spec.selector: Required value"]
    );
    // Job selectors and templates are immutable.
    let mut old = job();
    apply_defaults("Job", &mut old);
    default_job_selector(&mut old, "7f1c");
    let mut new = old.clone();
    new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("perl:5.36");
    let errs = validate_update("Job", &new, &old);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].field, "spec.template");
    assert_eq!(errs[0].detail, "field is immutable");
}

#[test]
fn pod_failure_policy_rules() {
    let mut j = job();
    j["spec"]["podFailurePolicy"] = json!({"rules": [
        {"action": "FailJob", "onExitCodes": {"containerName": "pi", "operator": "In", "values": [1, 42]}},
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [0]}},
    ]});
    assert_eq!(messages(&create_job(j.clone())), Vec::<String>::new());
    j["spec"]["template"]["spec"]["restartPolicy"] = json!("OnFailure");
    j["spec"]["podFailurePolicy"] = json!({"rules": [
        {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [0, 3, 2, 2]}},
        {"action": "Retry", "onPodConditions": [{"type": "", "status": "Maybe"}]},
        {"action": "Count"},
    ]});
    assert_eq!(
        messages(&create_job(j)),
        vec![
            r#"spec.template.spec.restartPolicy: Invalid value: "OnFailure": only "Never" is supported when podFailurePolicy is specified"#,
            r#"spec.podFailurePolicy.rules[0].action: Invalid value: "FailIndex": requires the backoffLimitPerIndex to be set"#,
            "spec.podFailurePolicy.rules[0].onExitCodes.values[0]: Invalid value: 0: must not be 0 for the In operator",
            "spec.podFailurePolicy.rules[0].onExitCodes.values[2]: Invalid value: 2: must be ordered",
            "spec.podFailurePolicy.rules[0].onExitCodes.values[3]: Duplicate value: 2",
            r#"spec.podFailurePolicy.rules[1].action: Unsupported value: "Retry": supported values: "Count", "FailIndex", "FailJob", "Ignore""#,
            "spec.podFailurePolicy.rules[1].onPodConditions[0].type: Required value",
            r#"spec.podFailurePolicy.rules[1].onPodConditions[0].status: Unsupported value: "Maybe": supported values: "False", "True", "Unknown""#,
            "spec.podFailurePolicy.rules[2]: Required value: specifying one of OnExitCodes and OnPodConditions is required",
        ]
    );
}

#[test]
fn cron_job_rules() {
    let cj = json!({
        "metadata": {"name": "hello"},
        "spec": {
            "schedule": "* * * * *",
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [busybox()], "restartPolicy": "OnFailure"}}}}
        }
    });
    assert_eq!(
        messages(&create("CronJob", cj.clone())),
        Vec::<String>::new()
    );
    let mut bad = cj.clone();
    bad["spec"]["schedule"] = json!("every minute");
    bad["spec"]["concurrencyPolicy"] = json!("Sometimes");
    assert_eq!(
        messages(&create("CronJob", bad)),
        vec![
            r#"spec.schedule: Invalid value: "every minute": expected exactly 5 fields, found 2: [every minute]"#,
            r#"spec.concurrencyPolicy: Unsupported value: "Sometimes": supported values: "Allow", "Forbid", "Replace""#,
        ]
    );
    let mut bad = cj;
    bad["spec"].as_object_mut().unwrap().remove("schedule");
    bad["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
    assert_eq!(
        messages(&create("CronJob", bad)),
        vec![
            "spec.schedule: Required value",
            r#"spec.jobTemplate.spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never""#,
        ]
    );
}

fn service(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
}

#[test]
fn service_rules() {
    let ok =
        service(json!({"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}));
    assert_eq!(
        messages(&create("Service", ok.clone())),
        Vec::<String>::new()
    );
    let bad = service(
        json!({"type": "Magic", "ports": [{"port": 0}, {"port": 443, "protocol": "ICMP"}]}),
    );
    assert_eq!(
        messages(&create("Service", bad)),
        vec![
            "spec.ports[0].name: Required value",
            "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            // The target port is defaulted to the (bad) port, as in Kubernetes.
            "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.ports[1].name: Required value",
            r#"spec.ports[1].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP""#,
            r#"spec.type: Unsupported value: "Magic": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort""#,
        ]
    );
    let np = service(
        json!({"type": "NodePort", "clusterIP": "None", "ports": [{"port": 80, "nodePort": 80}]}),
    );
    assert_eq!(
        messages(&create("Service", np)),
        vec![
            r#"spec.clusterIPs[0]: Invalid value: "None": may not be set to 'None' for NodePort services"#,
            "spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767",
        ]
    );
    let en = service(json!({"type": "ExternalName"}));
    assert_eq!(
        messages(&create("Service", en)),
        vec!["spec.externalName: Required value"]
    );
    let headless = service(json!({"clusterIP": "None", "selector": {"app": "web"}}));
    assert!(create("Service", headless).is_empty());
    let mut old = ok.clone();
    old["spec"]["clusterIP"] = json!("10.96.0.10");
    old["spec"]["clusterIPs"] = json!(["10.96.0.10"]);
    let mut new = old.clone();
    new["spec"]["clusterIP"] = json!("10.96.0.11");
    new["spec"]["clusterIPs"] = json!(["10.96.0.11"]);
    assert_eq!(
        messages(&update("Service", new, old.clone())),
        vec![r#"spec.clusterIPs[0]: Invalid value: ["10.96.0.11"]: may not change once set"#]
    );
    // A replace without the allocated IP keeps it.
    assert!(update("Service", ok, old).is_empty());
}

#[test]
fn config_map_and_secret_rules() {
    let cm = json!({"metadata": {"name": "cfg"}, "data": {"a/b": "x", "ok.key": "y"}});
    assert_eq!(
        messages(&create("ConfigMap", cm)),
        vec![
            r#"data[a/b]: Invalid value: "a/b": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"#
        ]
    );
    let big = json!({"metadata": {"name": "cfg"}, "data": {"a": "x".repeat(1024 * 1024 + 1)}});
    assert_eq!(
        messages(&create("ConfigMap", big)),
        vec!["[]: Too long: may not be more than 1048576 bytes"]
    );
    let old = json!({"metadata": {"name": "cfg"}, "immutable": true, "data": {"a": "1"}});
    let new = json!({"metadata": {"name": "cfg"}, "immutable": true, "data": {"a": "2"}});
    assert_eq!(
        messages(&update("ConfigMap", new, old)),
        vec!["data: Forbidden: field is immutable when `immutable` is set"]
    );
    let tls = json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}});
    assert_eq!(
        messages(&create("Secret", tls)),
        vec!["data[tls.key]: Required value"]
    );
    let old = json!({"metadata": {"name": "s"}, "data": {"a": "eA=="}});
    let new = json!({"metadata": {"name": "s"}, "type": "kubernetes.io/basic-auth", "data": {"username": "eA=="}});
    assert_eq!(
        messages(&update("Secret", new, old)),
        vec![r#"type: Invalid value: "kubernetes.io/basic-auth": field is immutable"#]
    );
}

#[test]
fn storage_rules() {
    let pvc = json!({"metadata": {"name": "data"}, "spec": {}});
    assert_eq!(
        messages(&create("PersistentVolumeClaim", pvc)),
        vec![
            "spec.accessModes: Required value: at least 1 access mode is required",
            "spec.resources[storage]: Required value",
        ]
    );
    let pvc = json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
    assert!(create("PersistentVolumeClaim", pvc.clone()).is_empty());
    let mut changed = pvc.clone();
    changed["spec"]["accessModes"] = json!(["ReadWriteMany"]);
    let errs = update("PersistentVolumeClaim", changed, pvc.clone());
    assert_eq!(errs.len(), 1);
    assert!(errs[0].message().starts_with(
        "spec: Forbidden: spec is immutable after creation except resources.requests"
    ));
    let mut bound_old = pvc.clone();
    bound_old["status"] = json!({"phase": "Bound", "capacity": {"storage": "1Gi"}});
    let mut grown = bound_old.clone();
    grown["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
    assert!(update("PersistentVolumeClaim", grown, bound_old).is_empty());
    let pv = json!({"metadata": {"name": "pv1"}, "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/mnt/data"}}});
    assert!(create("PersistentVolume", pv).is_empty());
    let pv = json!({"metadata": {"name": "pv1"}, "spec": {"capacity": {"storage": "1Gi"}}});
    assert_eq!(
        messages(&create("PersistentVolume", pv)),
        vec![
            "spec.accessModes: Required value",
            "spec: Required value: must specify a volume type"
        ]
    );
}

#[test]
fn cluster_objects() {
    let quota = json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "1.5", "widgets": "1", "cpu": "x"}}});
    let msgs = messages(&create("ResourceQuota", quota));
    assert!(
        msgs.contains(
            &r#"spec.hard[pods]: Invalid value: "1500m": must be an integer"#.to_string()
        ),
        "{msgs:#?}"
    );
    assert!(msgs.contains(&r#"spec.hard[widgets]: Invalid value: "widgets": must be a standard resource for quota"#.to_string()), "{msgs:#?}");
    assert!(
        msgs.iter()
            .any(|m| m.starts_with(r#"spec.hard[cpu]: Invalid value: "x": quantities must match"#)),
        "{msgs:#?}"
    );
    let lr = json!({"metadata": {"name": "l"}, "spec": {"limits": [{"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}}]}});
    let msgs = messages(&create("LimitRange", lr));
    assert!(msgs.contains(&r#"spec.limits[0].min[cpu]: Invalid value: "2": min value 2 is greater than max value 1"#.to_string()), "{msgs:#?}");
    let lease = json!({"metadata": {"name": "l"}, "spec": {"leaseDurationSeconds": 0}});
    assert_eq!(
        messages(&create("Lease", lease)),
        vec!["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]
    );
    let hpa = json!({"metadata": {"name": "h"}, "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment"}, "minReplicas": 5, "maxReplicas": 2}});
    assert_eq!(
        messages(&create("HorizontalPodAutoscaler", hpa)),
        vec![
            "spec.scaleTargetRef.name: Required value",
            "spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`",
        ]
    );
    let node = json!({"metadata": {"name": "n1"}, "spec": {"taints": [{"key": "k", "effect": "Sometimes"}]}});
    assert_eq!(
        messages(&create("Node", node)),
        vec![
            r#"metadata.taints[0].effect: Unsupported value: "Sometimes": supported values: "NoSchedule", "PreferNoSchedule", "NoExecute""#
        ]
    );
    let ns = json!({"metadata": {"name": "team"}, "spec": {"finalizers": ["custom"]}});
    assert_eq!(
        messages(&create("Namespace", ns)),
        vec![
            r#"spec.finalizers: Invalid value: "custom": name is neither a standard finalizer name nor is it fully qualified"#
        ]
    );
}

#[test]
fn network_objects() {
    let ing = json!({"metadata": {"name": "web"}, "spec": {"rules": [{"host": "example.com", "http": {"paths": [{"path": "/", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}});
    assert_eq!(
        messages(&create("Ingress", ing)),
        vec!["spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified"]
    );
    let ing = json!({"metadata": {"name": "web"}, "spec": {}});
    assert_eq!(
        messages(&create("Ingress", ing)),
        vec!["spec: Invalid value: null: either `defaultBackend` or `rules` must be specified"]
    );
    let slice = json!({"metadata": {"name": "s"}, "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.300"]}]});
    assert_eq!(
        messages(&create("EndpointSlice", slice)),
        vec![r#"endpoints[0].addresses[0]: Invalid value: "10.0.0.300": must be an IPv4 address"#]
    );
    let ep = json!({"metadata": {"name": "e"}, "subsets": [{"ports": [{"port": 80}]}]});
    assert_eq!(
        messages(&create("Endpoints", ep)),
        vec!["subsets[0]: Required value: must specify `addresses` or `notReadyAddresses`"]
    );
}

mod prop {
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    use super::super::{validate_create, validate_update};
    use crate::defaults::{
        apply_defaults, apply_limit_range_defaults, default_job_selector, limit_range_violations,
        normalize,
    };

    const KEYS: &[&str] = &[
        "metadata",
        "name",
        "namespace",
        "labels",
        "annotations",
        "generateName",
        "spec",
        "status",
        "template",
        "containers",
        "initContainers",
        "image",
        "ports",
        "containerPort",
        "hostPort",
        "protocol",
        "env",
        "valueFrom",
        "fieldRef",
        "fieldPath",
        "resources",
        "limits",
        "requests",
        "cpu",
        "memory",
        "volumes",
        "volumeMounts",
        "mountPath",
        "emptyDir",
        "nfs",
        "projected",
        "sources",
        "secret",
        "configMap",
        "selector",
        "matchLabels",
        "matchExpressions",
        "operator",
        "values",
        "key",
        "replicas",
        "strategy",
        "rollingUpdate",
        "maxSurge",
        "maxUnavailable",
        "type",
        "updateStrategy",
        "restartPolicy",
        "dnsPolicy",
        "tolerations",
        "livenessProbe",
        "httpGet",
        "exec",
        "port",
        "targetPort",
        "nodePort",
        "clusterIP",
        "clusterIPs",
        "externalName",
        "data",
        "stringData",
        "binaryData",
        "immutable",
        "jobTemplate",
        "schedule",
        "completions",
        "parallelism",
        "manualSelector",
        "volumeClaimTemplates",
        "accessModes",
        "storage",
        "hard",
        "finalizers",
        "scaleTargetRef",
        "minReplicas",
        "maxReplicas",
        "metrics",
        "behavior",
        "scaleUp",
        "policies",
        "capacity",
        "subsets",
        "addresses",
        "endpoints",
        "addressType",
        "rules",
        "http",
        "paths",
        "backend",
        "service",
        "hostNetwork",
        "serviceAccountName",
        "serviceAccount",
        "priorityClassName",
        "activeDeadlineSeconds",
        "terminationGracePeriodSeconds",
        "default",
        "defaultRequest",
        "min",
        "max",
        "uid",
        "items",
        "path",
    ];
    const STRINGS: &[&str] = &[
        "",
        "a",
        "web",
        "Foo",
        "Always",
        "Never",
        "None",
        "ClusterIP",
        "NodePort",
        "ExternalName",
        "RollingUpdate",
        "OnDelete",
        "Recreate",
        "100m",
        "1Gi",
        "-1",
        "1e3",
        "0.5",
        "abc",
        "25%",
        "0%",
        "Exists",
        "In",
        "TCP",
        "nginx:1.14.2",
        "* * * * *",
        "10.0.0.1",
        "Container",
        "Pod",
        "Resource",
        "Utilization",
        "é",
        "a/b/c",
        "Indexed",
        "Bound",
        "kubernetes",
    ];

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-3i64..70000).prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            proptest::sample::select(STRINGS).prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
        ]
    }

    pub(crate) fn json_value() -> BoxedStrategy<Value> {
        leaf().prop_recursive(5, 96, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![3 => proptest::sample::select(KEYS).prop_map(str::to_string), 1 => ".{0,6}"],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<String, Value>>())),
            ]
        })
        .boxed()
    }

    fn obj_with(
        keys: &'static [&'static str],
        inner: BoxedStrategy<Value>,
    ) -> BoxedStrategy<Value> {
        proptest::collection::btree_map(
            proptest::sample::select(keys).prop_map(str::to_string),
            inner,
            0..keys.len(),
        )
        .prop_map(|m| Value::Object(m.into_iter().collect()))
        .boxed()
    }

    /// Pod specs shaped enough to reach the container, volume and probe rules.
    fn pod_spec() -> BoxedStrategy<Value> {
        let container = obj_with(
            &[
                "name",
                "image",
                "ports",
                "resources",
                "env",
                "livenessProbe",
                "readinessProbe",
                "volumeMounts",
                "imagePullPolicy",
                "restartPolicy",
                "lifecycle",
            ],
            json_value(),
        );
        let volume = obj_with(
            &[
                "name",
                "emptyDir",
                "nfs",
                "configMap",
                "secret",
                "hostPath",
                "projected",
                "downwardAPI",
            ],
            json_value(),
        );
        (
            proptest::collection::vec(container, 0..3),
            proptest::collection::vec(volume, 0..3),
            obj_with(
                &[
                    "restartPolicy",
                    "dnsPolicy",
                    "tolerations",
                    "hostNetwork",
                    "serviceAccountName",
                    "serviceAccount",
                    "priorityClassName",
                    "activeDeadlineSeconds",
                    "initContainers",
                    "nodeSelector",
                ],
                json_value(),
            ),
        )
            .prop_map(|(cs, vs, mut rest)| {
                if let Some(m) = rest.as_object_mut() {
                    m.insert("containers".to_string(), Value::Array(cs));
                    m.insert("volumes".to_string(), Value::Array(vs));
                }
                rest
            })
            .boxed()
    }

    /// Whole objects: metadata plus a spec that is a pod spec, holds a template, or is random.
    pub(crate) fn object() -> impl Strategy<Value = Value> {
        let meta = obj_with(
            &[
                "name",
                "namespace",
                "labels",
                "annotations",
                "generateName",
                "uid",
                "finalizers",
            ],
            json_value(),
        );
        let spec = prop_oneof![
            pod_spec(),
            (pod_spec(), obj_with(&["selector", "replicas", "strategy", "updateStrategy", "completions", "parallelism", "manualSelector", "volumeClaimTemplates", "serviceName"], json_value()), json_value())
                .prop_map(|(ps, mut rest, labels)| {
                    if let Some(m) = rest.as_object_mut() {
                        m.insert("template".to_string(), serde_json::json!({"metadata": {"labels": labels}, "spec": ps}));
                    }
                    rest
                }),
            pod_spec().prop_map(|ps| serde_json::json!({"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": ps}}}})),
            json_value(),
        ];
        (
            meta,
            spec,
            obj_with(
                &[
                    "status",
                    "data",
                    "stringData",
                    "type",
                    "immutable",
                    "subsets",
                    "endpoints",
                    "addressType",
                ],
                json_value(),
            ),
        )
            .prop_map(|(meta, spec, mut rest)| {
                if let Some(m) = rest.as_object_mut() {
                    m.insert("metadata".to_string(), meta);
                    m.insert("spec".to_string(), spec);
                }
                rest
            })
    }

    fn kinds() -> impl Strategy<Value = &'static str> {
        proptest::sample::select(crate::RESOURCES.iter().map(|r| r.kind).collect::<Vec<_>>())
    }

    /// Every non-null leaf of `input` is unchanged in `output`; lists may only grow.
    pub(crate) fn keeps_set_fields(input: &Value, output: &Value) -> bool {
        match (input, output) {
            (Value::Null, _) => true,
            (Value::Object(a), Value::Object(b)) => a
                .iter()
                .all(|(k, v)| v.is_null() || b.get(k).is_some_and(|w| keeps_set_fields(v, w))),
            (Value::Array(a), Value::Array(b)) => {
                a.len() <= b.len() && a.iter().zip(b).all(|(x, y)| keeps_set_fields(x, y))
            }
            (a, b) => a == b,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        #[test]
        fn validation_never_panics(kind in kinds(), obj in json_value(), old in json_value()) {
            let _ = validate_create(kind, &obj);
            let _ = validate_update(kind, &obj, &old);
            let mut wrapped = serde_json::json!({"metadata": {"name": "x"}, "spec": obj.clone()});
            apply_defaults(kind, &mut wrapped);
            let _ = validate_create(kind, &wrapped);
            let _ = validate_update(kind, &wrapped, &old);
        }

        #[test]
        fn defaults_are_idempotent_and_keep_set_fields(kind in kinds(), spec in json_value(), top in json_value()) {
            let mut obj = match top {
                Value::Object(mut m) => { m.insert("spec".to_string(), spec); Value::Object(m) }
                other => other,
            };
            let input = obj.clone();
            apply_defaults(kind, &mut obj);
            prop_assert!(keeps_set_fields(&input, &obj), "{input}\n=>\n{obj}");
            let once = obj.clone();
            apply_defaults(kind, &mut obj);
            prop_assert_eq!(&once, &obj);
            default_job_selector(&mut obj, "uid");
            prop_assert!(keeps_set_fields(&once, &obj));
            let mut n = obj.clone();
            normalize(kind, &mut n);
            let n1 = n.clone();
            normalize(kind, &mut n);
            prop_assert_eq!(n1, n);
        }

        #[test]
        fn shaped_objects_keep_their_invariants(kind in kinds(), obj in object(), old in object()) {
            let _ = validate_create(kind, &obj);
            let _ = validate_update(kind, &obj, &old);
            let mut d = obj.clone();
            apply_defaults(kind, &mut d);
            prop_assert!(keeps_set_fields(&obj, &d), "{obj}\n=>\n{d}");
            let once = d.clone();
            apply_defaults(kind, &mut d);
            prop_assert_eq!(&once, &d);
            let _ = validate_create(kind, &d);
            let _ = validate_update(kind, &d, &old);
            let mut n = d.clone();
            normalize(kind, &mut n);
            let _ = validate_create(kind, &n);
        }

        #[test]
        fn limit_ranges_never_panic(pod in json_value(), lrs in proptest::collection::vec(json_value(), 0..3)) {
            let mut p = pod.clone();
            apply_limit_range_defaults(&mut p, &lrs);
            prop_assert!(keeps_set_fields(&pod, &p));
            let _ = limit_range_violations(&p, &lrs);
        }
    }
}
