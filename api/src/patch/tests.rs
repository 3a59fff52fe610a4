use super::*;
use proptest::prelude::*;
use serde_json::json;

fn smp(kind: &str, doc: Value, patch: Value) -> Value {
    apply_strategic_merge_patch(kind, &doc, &patch).unwrap_or_else(|e| panic!("patch failed: {e}"))
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect()
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "labels": {"app": "web", "team": "a"},
            "finalizers": ["example.com/a", "example.com/b"]
        },
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "nginx:1.25",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            "resources": {"limits": {"cpu": "1"}}
                        },
                        {"name": "sidecar", "image": "busybox", "args": ["sleep", "1d"]}
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                    "tolerations": [{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}]
                }
            }
        },
        "status": {
            "conditions": [
                {"type": "Available", "status": "True"},
                {"type": "Progressing", "status": "True"}
            ]
        }
    })
}

#[test]
fn kubectl_apply_changes_image_and_adds_env_keeping_the_rest() {
    // The body kubectl 1.32 sends when the manifest changes app's image and adds C.
    let patch = json!({
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
            "containers": [{
                "$setElementOrder/env": [{"name": "A"}, {"name": "B"}, {"name": "C"}],
                "env": [{"name": "C", "value": "3"}],
                "image": "nginx:1.27",
                "name": "app"
            }]
        }}}
    });
    let out = smp("Deployment", deployment(), patch);
    let containers = &out["spec"]["template"]["spec"]["containers"];
    assert_eq!(names(containers), ["app", "sidecar"]);
    let app = &containers[0];
    assert_eq!(app["image"], "nginx:1.27");
    assert_eq!(
        app["env"],
        json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}, {"name": "C", "value": "3"}])
    );
    assert_eq!(
        app["ports"],
        json!([{"containerPort": 80, "protocol": "TCP"}])
    );
    assert_eq!(app["resources"], json!({"limits": {"cpu": "1"}}));
    assert_eq!(
        containers[1],
        deployment()["spec"]["template"]["spec"]["containers"][1]
    );
    assert_eq!(out["spec"]["replicas"], 3);
    assert_eq!(
        out["metadata"]["labels"],
        json!({"app": "web", "team": "a"})
    );
    assert_eq!(
        out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        "{}"
    );
    assert_eq!(out["status"], deployment()["status"]);
}

#[test]
fn patch_delete_removes_a_container() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}});
    let out = smp("Deployment", deployment(), patch);
    assert_eq!(
        names(&out["spec"]["template"]["spec"]["containers"]),
        ["app"]
    );
}

#[test]
fn kubectl_apply_removing_a_container_and_an_env_var() {
    // kubectl sends deletions as $patch: delete elements plus the new order.
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "app"}],
        "containers": [
            {"$setElementOrder/env": [{"name": "B"}], "name": "app", "env": [{"$patch": "delete", "name": "A"}]},
            {"$patch": "delete", "name": "sidecar"}
        ]
    }}}});
    let out = smp("Deployment", deployment(), patch);
    let containers = &out["spec"]["template"]["spec"]["containers"];
    assert_eq!(names(containers), ["app"]);
    assert_eq!(containers[0]["env"], json!([{"name": "B", "value": "2"}]));
}

#[test]
fn set_element_order_reorders_a_merged_list() {
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}]
    }}}});
    let out = smp("Deployment", deployment(), patch);
    assert_eq!(
        names(&out["spec"]["template"]["spec"]["containers"]),
        ["sidecar", "app"]
    );
}

#[test]
fn set_element_order_places_new_elements() {
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "app"}, {"name": "logger"}, {"name": "sidecar"}],
        "containers": [{"name": "logger", "image": "fluentd"}]
    }}}});
    let out = smp("Deployment", deployment(), patch);
    assert_eq!(
        names(&out["spec"]["template"]["spec"]["containers"]),
        ["app", "logger", "sidecar"]
    );
}

#[test]
fn set_element_order_that_contradicts_the_patch_is_refused() {
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
        "containers": [{"name": "app", "image": "x"}, {"name": "sidecar", "image": "y"}]
    }}}});
    let err = apply_strategic_merge_patch("Deployment", &deployment(), &patch).unwrap_err();
    assert!(
        matches!(err, PatchError::SetElementOrderMismatch { .. }),
        "{err}"
    );
}

#[test]
fn new_element_without_order_goes_first_like_kubernetes() {
    // Without $setElementOrder, Kubernetes puts elements the server lacks before the
    // server's own elements.
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "logger", "image": "fluentd"}]}}}});
    let out = smp("Deployment", deployment(), patch);
    assert_eq!(
        names(&out["spec"]["template"]["spec"]["containers"]),
        ["logger", "app", "sidecar"]
    );
}

#[test]
fn retain_keys_drops_the_unlisted_keys() {
    // kubectl apply switching the strategy from RollingUpdate to Recreate.
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}});
    let out = smp("Deployment", deployment(), patch);
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));

    // A volume changing its source: the old source must go.
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/volumes": [{"name": "data"}],
        "volumes": [{"$retainKeys": ["configMap", "name"], "configMap": {"name": "cfg"}, "name": "data"}]
    }}}});
    let out = smp("Deployment", deployment(), patch);
    assert_eq!(
        out["spec"]["template"]["spec"]["volumes"],
        json!([{"name": "data", "configMap": {"name": "cfg"}}])
    );
}

#[test]
fn retain_keys_must_list_every_patched_key() {
    let patch =
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 1}}}});
    let err = apply_strategic_merge_patch("Deployment", &deployment(), &patch).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid patch format of retainKeys"),
        "{err}"
    );
    let patch = json!({"spec": {"strategy": {"$retainKeys": "type"}}});
    assert!(apply_strategic_merge_patch("Deployment", &deployment(), &patch).is_err());
}

#[test]
fn finalizers_merge_as_a_set() {
    let patch = json!({"metadata": {"finalizers": ["example.com/c", "example.com/a"]}});
    let out = smp("Deployment", deployment(), patch);
    assert_eq!(
        out["metadata"]["finalizers"],
        json!(["example.com/c", "example.com/a", "example.com/b"])
    );

    // kubectl apply adding one and dropping one.
    let patch = json!({"metadata": {
        "$setElementOrder/finalizers": ["example.com/a", "example.com/c"],
        "$deleteFromPrimitiveList/finalizers": ["example.com/b"],
        "finalizers": ["example.com/c"]
    }});
    let out = smp("Deployment", deployment(), patch);
    assert_eq!(
        out["metadata"]["finalizers"],
        json!(["example.com/a", "example.com/c"])
    );
}

#[test]
fn tolerations_are_replaced() {
    let patch = json!({"spec": {"template": {"spec": {"tolerations": [{"key": "c", "operator": "Exists"}]}}}});
    let out = smp("Deployment", deployment(), patch);
    assert_eq!(
        out["spec"]["template"]["spec"]["tolerations"],
        json!([{"key": "c", "operator": "Exists"}])
    );
}

#[test]
fn null_deletes_a_label() {
    let patch = json!({"metadata": {"labels": {"team": null, "tier": "front"}}});
    let out = smp("Deployment", deployment(), patch);
    assert_eq!(
        out["metadata"]["labels"],
        json!({"app": "web", "tier": "front"})
    );
    // A null for a key that is not there changes nothing and leaves no null behind.
    let out = smp(
        "Deployment",
        deployment(),
        json!({"metadata": {"annotations": {"x": null}}}),
    );
    assert_eq!(out["metadata"]["annotations"], json!({}));
}

#[test]
fn patch_replace_directives() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "only", "image": "alpine"},
        {"$patch": "replace"}
    ]}}}});
    let out = smp("Deployment", deployment(), patch);
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name": "only", "image": "alpine"}])
    );

    let patch = json!({"metadata": {"labels": {"$patch": "replace", "fresh": "yes"}}});
    let out = smp("Deployment", deployment(), patch);
    assert_eq!(out["metadata"]["labels"], json!({"fresh": "yes"}));
}

#[test]
fn patch_delete_on_a_map_removes_it() {
    let patch = json!({"metadata": {"labels": {"$patch": "delete"}}});
    let out = smp("Deployment", deployment(), patch);
    assert!(out["metadata"].get("labels").is_none());
    assert_eq!(out["metadata"]["name"], "web");
    assert_eq!(
        smp("Deployment", deployment(), json!({"$patch": "delete"})),
        json!({})
    );
}

#[test]
fn patch_merge_is_the_default() {
    let patch = json!({"metadata": {"labels": {"$patch": "merge", "tier": "front"}}});
    let out = smp("Deployment", deployment(), patch);
    assert_eq!(
        out["metadata"]["labels"],
        json!({"app": "web", "team": "a", "tier": "front"})
    );
}

#[test]
fn unknown_directive_is_refused() {
    let err = apply_strategic_merge_patch(
        "Deployment",
        &deployment(),
        &json!({"metadata": {"$patch": "explode"}}),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("unknown patch type: \"explode\" in map"),
        "{err}"
    );
}

#[test]
fn merge_list_elements_need_the_merge_key() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
    let err = apply_strategic_merge_patch("Deployment", &deployment(), &patch).unwrap_err();
    assert_eq!(
        err.to_string(),
        "map: {\"image\":\"x\"} does not contain declared merge key: name"
    );
}

#[test]
fn ports_merge_by_container_port_and_service_port() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "ports": [{"containerPort": 443}, {"containerPort": 80, "name": "http"}]}
    ]}}}});
    let out = smp("Deployment", deployment(), patch);
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"][0]["ports"],
        json!([{"containerPort": 443}, {"containerPort": 80, "protocol": "TCP", "name": "http"}])
    );

    let svc = json!({"kind": "Service", "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}});
    let out = smp(
        "Service",
        svc.clone(),
        json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
    );
    assert_eq!(
        out["spec"]["ports"],
        json!([{"port": 80, "targetPort": 9090}, {"port": 443}])
    );
    // Go decodes every JSON number to float64, so 80.0 names the same port as 80.
    let out = smp(
        "Service",
        svc,
        json!({"spec": {"ports": [{"port": 80.0, "targetPort": 9090}]}}),
    );
    assert_eq!(out["spec"]["ports"].as_array().unwrap().len(), 2);
    assert_eq!(out["spec"]["ports"][0]["targetPort"], 9090);
}

#[test]
fn status_conditions_merge_by_type() {
    let pod = json!({"kind": "Pod", "status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "True"},
        {"type": "Ready", "status": "False"}
    ]}});
    let patch = json!({"status": {
        "$setElementOrder/conditions": [{"type": "PodScheduled"}, {"type": "Ready"}],
        "conditions": [{"type": "Ready", "status": "True"}],
        "phase": "Running"
    }});
    let out = smp("Pod", pod, patch);
    assert_eq!(out["status"]["phase"], "Running");
    assert_eq!(
        out["status"]["conditions"],
        json!([{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}])
    );
}

#[test]
fn owner_references_merge_by_uid_and_node_addresses_by_type() {
    let cm = json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]}});
    let out = smp(
        "ConfigMap",
        cm,
        json!({"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]}}),
    );
    assert_eq!(
        out["metadata"]["ownerReferences"].as_array().unwrap().len(),
        2
    );

    let node = json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "n1"}]}});
    let out = smp(
        "Node",
        node,
        json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.2"}]}}),
    );
    assert_eq!(
        out["status"]["addresses"],
        json!([{"type": "InternalIP", "address": "10.0.0.2"}, {"type": "Hostname", "address": "n1"}])
    );
    // Taints have no merge strategy: the list is replaced.
    let node = json!({"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}});
    let out = smp(
        "Node",
        node,
        json!({"spec": {"taints": [{"key": "b", "effect": "NoSchedule"}]}}),
    );
    assert_eq!(
        out["spec"]["taints"],
        json!([{"key": "b", "effect": "NoSchedule"}])
    );
}

#[test]
fn cronjob_reaches_the_pod_template() {
    let cj = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [
        {"name": "a", "image": "x"}, {"name": "b", "image": "y"}
    ]}}}}}});
    let patch = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "z"}]}}}}}});
    let out = smp("CronJob", cj, patch);
    assert_eq!(
        out["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"],
        json!([{"name": "a", "image": "x"}, {"name": "b", "image": "z"}])
    );
}

#[test]
fn unknown_kind_falls_back_to_merge_patch() {
    let doc = json!({"spec": {"containers": [{"name": "a", "image": "x"}], "size": 1}});
    let patch = json!({"spec": {"containers": [{"name": "b"}], "size": null}});
    let out = smp("Widget", doc.clone(), patch.clone());
    assert_eq!(out, apply_merge_patch(&doc, &patch).unwrap());
    assert_eq!(out, json!({"spec": {"containers": [{"name": "b"}]}}));
}

#[test]
fn directives_never_reach_the_result() {
    // A list the original lacks and an atomic list, which Kubernetes would copy verbatim.
    let doc = json!({"metadata": {"name": "p"}, "spec": {}});
    let patch = json!({"spec": {
        "containers": [{"name": "a", "$patch": "delete"}, {"name": "b", "env": [{"name": "X", "value": null}]}],
        "tolerations": [{"key": "a"}, {"$patch": "replace"}],
        "securityContext": {"$retainKeys": ["runAsUser"], "runAsUser": 1}
    }});
    let out = smp("Pod", doc, patch);
    assert_eq!(
        out["spec"],
        json!({
            "containers": [{"name": "b", "env": [{"name": "X"}]}],
            "tolerations": [{"key": "a"}],
            "securityContext": {"runAsUser": 1}
        })
    );
    assert!(!out.to_string().contains('$'));
}

#[test]
fn strategic_patch_needs_objects() {
    assert_eq!(
        apply_strategic_merge_patch("Pod", &json!([]), &json!({})).unwrap_err(),
        PatchError::NotAnObject("document")
    );
    assert_eq!(
        apply_strategic_merge_patch("Pod", &json!({}), &json!("x")).unwrap_err(),
        PatchError::NotAnObject("patch")
    );
}

#[test]
fn mixed_and_nested_lists_are_refused_in_merging_lists() {
    let doc = json!({"metadata": {"finalizers": ["a"]}});
    assert_eq!(
        apply_strategic_merge_patch("Pod", &doc, &json!({"metadata": {"finalizers": [["b"]]}}))
            .unwrap_err(),
        PatchError::ListOfLists
    );
    assert!(matches!(
        apply_strategic_merge_patch("Pod", &doc, &json!({"metadata": {"finalizers": [1]}}))
            .unwrap_err(),
        PatchError::MixedList(_)
    ));
}

#[test]
fn json_patch() {
    let doc = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 1}});
    let patch = json!([
        {"op": "test", "path": "/spec/replicas", "value": 1},
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        {"op": "add", "path": "/metadata/labels/b", "value": "2"},
        {"op": "remove", "path": "/metadata/labels/a"}
    ]);
    let out = apply_json_patch(&doc, &patch).unwrap();
    assert_eq!(
        out,
        json!({"metadata": {"labels": {"b": "2"}}, "spec": {"replicas": 3}})
    );

    let failing = json!([
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        {"op": "test", "path": "/spec/replicas", "value": 1}
    ]);
    assert!(matches!(
        apply_json_patch(&doc, &failing),
        Err(PatchError::JsonPatch(_))
    ));
    assert!(matches!(
        apply_json_patch(&doc, &json!({"op": "add"})),
        Err(PatchError::InvalidJsonPatch(_))
    ));
    assert!(matches!(
        apply_json_patch(&doc, &json!([{"op": "remove", "path": "/nope"}])),
        Err(PatchError::JsonPatch(_))
    ));
    // json-patch's own undo panics on this one (found by json_patch_never_panics).
    let moves_to_root = json!([
        {"op": "add", "path": "/x", "value": null},
        {"op": "move", "from": "/x", "path": ""},
        {"op": "add", "path": "/a", "value": null}
    ]);
    assert!(matches!(
        apply_json_patch(&json!({}), &moves_to_root),
        Err(PatchError::JsonPatch(_))
    ));
}

#[test]
fn merge_patch_rfc7386_examples() {
    let cases = [
        (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
        (
            json!({"a": "b"}),
            json!({"b": "c"}),
            json!({"a": "b", "b": "c"}),
        ),
        (json!({"a": "b"}), json!({"a": null}), json!({})),
        (
            json!({"a": "b", "b": "c"}),
            json!({"a": null}),
            json!({"b": "c"}),
        ),
        (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
        (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
        (
            json!({"a": {"b": "c"}}),
            json!({"a": {"b": "d", "c": null}}),
            json!({"a": {"b": "d"}}),
        ),
        (
            json!({"a": [{"b": "c"}]}),
            json!({"a": [1]}),
            json!({"a": [1]}),
        ),
        (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
        (json!({"a": "b"}), json!(["c"]), json!(["c"])),
        (json!({"a": "foo"}), json!(null), json!(null)),
        (json!({"a": "foo"}), json!("bar"), json!("bar")),
        (
            json!({"e": null}),
            json!({"a": 1}),
            json!({"e": null, "a": 1}),
        ),
        (
            json!([1, 2]),
            json!({"a": "b", "c": null}),
            json!({"a": "b"}),
        ),
        (
            json!({}),
            json!({"a": {"bb": {"ccc": null}}}),
            json!({"a": {"bb": {}}}),
        ),
    ];
    for (doc, patch, expected) in cases {
        assert_eq!(
            apply_merge_patch(&doc, &patch).unwrap(),
            expected,
            "{doc} + {patch}"
        );
    }
}

// Property tests.

const KINDS: [&str; 6] = [
    "Pod",
    "Deployment",
    "Node",
    "ConfigMap",
    "CronJob",
    "Widget",
];

fn any_json() -> impl Strategy<Value = Value> {
    let key = prop::sample::select(vec![
        "a",
        "b",
        "name",
        "type",
        "spec",
        "metadata",
        "containers",
        "env",
        "finalizers",
        "template",
        "$patch",
        "$retainKeys",
        "$setElementOrder/containers",
        "$deleteFromPrimitiveList/finalizers",
        "$setElementOrder/finalizers",
        "$setElementOrder/env",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..3).prop_map(Value::from),
        prop::sample::select(vec!["a", "b", "x", "replace", "delete", "merge", "name"])
            .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..5).prop_map(|m| Value::Object(
                m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

fn any_object() -> impl Strategy<Value = Value> {
    any_json().prop_map(|v| match v {
        Value::Object(_) => v,
        other => json!({"spec": other}),
    })
}

/// JSON without lists and without `$` keys, where strategic and merge patch must agree.
fn list_free_object() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..3).prop_map(Value::from),
        "[a-c]{0,2}".prop_map(Value::from),
    ];
    let key = prop::sample::select(vec![
        "a", "b", "spec", "metadata", "labels", "template", "strategy", "status",
    ]);
    let tree = leaf.prop_recursive(4, 32, 5, move |inner| {
        prop::collection::btree_map(key.clone(), inner, 0..5)
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
    });
    tree.prop_map(|v| match v {
        Value::Object(_) => v,
        other => json!({"a": other}),
    })
}

fn json_patch_operations() -> impl Strategy<Value = Value> {
    let path = prop::sample::select(vec![
        "", "/a", "/a/b", "/spec", "/spec/0", "/spec/-", "/x~1y", "/a/0/b",
    ]);
    let op = (
        prop::sample::select(vec![
            "add", "remove", "replace", "move", "copy", "test", "bogus",
        ]),
        path.clone(),
        path,
        any_json(),
    )
        .prop_map(
            |(op, path, from, value)| json!({"op": op, "path": path, "from": from, "value": value}),
        );
    prop::collection::vec(op, 0..5).prop_map(Value::Array)
}

proptest! {
    #[test]
    fn json_patch_never_panics(doc in any_json(), patch in json_patch_operations()) {
        let _ = apply_json_patch(&doc, &patch);
    }

    #[test]
    fn arbitrary_json_as_json_patch_never_panics(doc in any_json(), patch in any_json()) {
        let _ = apply_json_patch(&doc, &patch);
    }

    #[test]
    fn merge_patch_never_panics(doc in any_json(), patch in any_json()) {
        let _ = apply_merge_patch(&doc, &patch);
    }

    #[test]
    fn strategic_patch_never_panics(doc in any_object(), patch in any_object(), kind in prop::sample::select(KINDS.to_vec())) {
        if let Ok(out) = apply_strategic_merge_patch(kind, &doc, &patch) {
            prop_assert!(out.is_object());
        }
    }

    #[test]
    fn strategic_patch_on_pod_shapes_never_panics(
        containers in prop::collection::vec(any_object(), 0..3),
        patch_containers in prop::collection::vec(any_object(), 0..3),
        extra in any_object(),
    ) {
        let doc = json!({"spec": {"containers": containers, "volumes": [{"name": "v"}]}, "metadata": {"finalizers": ["f"]}});
        let mut patch = json!({"spec": {"containers": patch_containers}});
        patch["spec"]["$setElementOrder/containers"] = json!([{"name": "a"}, {"name": "b"}]);
        patch["metadata"] = extra;
        let _ = apply_strategic_merge_patch("Pod", &doc, &patch);
    }

    #[test]
    fn merge_patch_with_empty_object_is_identity(doc in any_object()) {
        prop_assert_eq!(apply_merge_patch(&doc, &json!({})).unwrap(), doc);
    }

    #[test]
    fn strategic_patch_with_empty_object_is_identity_without_directives(doc in list_free_object(), kind in prop::sample::select(KINDS.to_vec())) {
        prop_assert_eq!(apply_strategic_merge_patch(kind, &doc, &json!({})).unwrap(), doc);
    }

    #[test]
    fn strategic_equals_merge_patch_without_lists(
        doc in list_free_object(),
        patch in list_free_object(),
        kind in prop::sample::select(KINDS.to_vec()),
    ) {
        prop_assert_eq!(
            apply_strategic_merge_patch(kind, &doc, &patch).unwrap(),
            apply_merge_patch(&doc, &patch).unwrap()
        );
    }

    #[test]
    fn strategic_results_never_hold_directives(doc in any_object(), patch in any_object(), kind in prop::sample::select(KINDS.to_vec())) {
        // Directive keys the original already had are data, not directives; start clean.
        let Ok(doc) = apply_strategic_merge_patch("Widget", &json!({}), &doc) else {
            return Ok(());
        };
        if let Ok(out) = apply_strategic_merge_patch(kind, &doc, &patch) {
            prop_assert!(!has_directive(&out), "{}", out);
        }
    }
}

fn has_directive(v: &Value) -> bool {
    match v {
        Value::Object(m) => m
            .iter()
            .any(|(k, v)| k.starts_with('$') || has_directive(v)),
        Value::Array(l) => l.iter().any(has_directive),
        _ => false,
    }
}
