//! Tables of pods × nodes for each filter and score, and the decision over a snapshot.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, Node, NodeAffinity, NodeCondition, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, NodeSpec, NodeStatus, Pod, PodSpec,
    PreferredSchedulingTerm, ResourceRequirements, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::cache::Cache;
use crate::decide::{num_feasible_nodes_to_find, schedule};
use crate::filter::{filter, tolerates, Reason};
use crate::score::{normalize, score_nodes, Weights};
use crate::snapshot::{NodeInfo, NodeView, PodInfo};

fn q(s: &str) -> Quantity {
    Quantity(s.into())
}

fn node(name: &str, cpu: &str, mem: &str, pods: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([(
                "kubernetes.io/hostname".to_string(),
                name.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            allocatable: Some(BTreeMap::from([
                ("cpu".to_string(), q(cpu)),
                ("memory".to_string(), q(mem)),
                ("pods".to_string(), q(pods)),
            ])),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..NodeCondition::default()
            }]),
            ..NodeStatus::default()
        }),
    }
}

fn labelled(mut n: Node, k: &str, v: &str) -> Node {
    n.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(k.into(), v.into());
    n
}

fn tainted(mut n: Node, key: &str, value: &str, effect: &str) -> Node {
    n.spec
        .get_or_insert_with(NodeSpec::default)
        .taints
        .get_or_insert_with(Vec::new)
        .push(Taint {
            key: key.into(),
            value: (!value.is_empty()).then(|| value.into()),
            effect: effect.into(),
            ..Taint::default()
        });
    n
}

fn pod(name: &str, cpu: &str, mem: &str) -> Pod {
    let mut req = BTreeMap::new();
    if !cpu.is_empty() {
        req.insert("cpu".to_string(), q(cpu));
    }
    if !mem.is_empty() {
        req.insert("memory".to_string(), q(mem));
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                resources: Some(ResourceRequirements {
                    requests: Some(req),
                    ..ResourceRequirements::default()
                }),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

fn spec(p: &mut Pod) -> &mut PodSpec {
    p.spec.get_or_insert_with(PodSpec::default)
}

fn tol(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
    let s = |v: &str| (!v.is_empty()).then(|| v.to_string());
    Toleration {
        key: s(key),
        operator: s(op),
        value: s(value),
        effect: s(effect),
        ..Toleration::default()
    }
}

fn info(n: &Node) -> NodeInfo {
    NodeInfo {
        name: n.metadata.name.clone().unwrap(),
        node: Some(NodeView::new(n)),
        ..NodeInfo::default()
    }
}

fn reasons(p: &Pod, n: &NodeInfo) -> Vec<Reason> {
    let mut out = Vec::new();
    filter(&PodInfo::new(p), n, &mut out);
    out
}

fn taint(key: &str, value: &str, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        value: (!value.is_empty()).then(|| value.into()),
        effect: effect.into(),
        ..Taint::default()
    }
}

#[test]
fn taints_and_tolerations_matrix() {
    let gpu = taint("dedicated", "gpu", "NoSchedule");
    let exec = taint("dedicated", "gpu", "NoExecute");
    // (toleration, taint, tolerated)
    let cases = [
        (tol("dedicated", "Equal", "gpu", "NoSchedule"), &gpu, true),
        (tol("dedicated", "", "gpu", "NoSchedule"), &gpu, true), // Equal is the default
        (tol("dedicated", "Equal", "cpu", "NoSchedule"), &gpu, false),
        (tol("dedicated", "Exists", "", "NoSchedule"), &gpu, true),
        (tol("dedicated", "Exists", "", ""), &exec, true), // empty effect: all effects
        (tol("dedicated", "Exists", "", "NoSchedule"), &exec, false),
        (tol("", "Exists", "", ""), &gpu, true), // empty key + Exists: everything
        (tol("", "Exists", "", "NoExecute"), &gpu, false),
        (tol("", "Equal", "", ""), &gpu, false),
        (tol("other", "Exists", "", ""), &gpu, false),
        (tol("dedicated", "Equal", "gpu", "Sometimes"), &gpu, false), // unknown effect
    ];
    for (i, (t, taint, want)) in cases.iter().enumerate() {
        assert_eq!(tolerates(t, taint), *want, "case {i}: {t:?} vs {taint:?}");
    }

    // Through the filter: NoSchedule and NoExecute block, PreferNoSchedule does not.
    let plain = pod("p", "100m", "");
    for (effect, blocks) in [
        ("NoSchedule", true),
        ("NoExecute", true),
        ("PreferNoSchedule", false),
    ] {
        let n = info(&tainted(
            node("n", "4", "8Gi", "110"),
            "dedicated",
            "gpu",
            effect,
        ));
        let r = reasons(&plain, &n);
        assert_eq!(!r.is_empty(), blocks, "{effect}: {r:?}");
        if blocks {
            assert_eq!(
                r[0].to_string(),
                "node(s) had untolerated taint {dedicated: gpu}"
            );
        }
    }
}

#[test]
fn requests_pack_with_init_containers() {
    let n = node("n", "2", "4Gi", "110");
    let mut ni = info(&n);
    // Already 1500m requested on the node.
    ni.requested.milli_cpu = 1500;
    ni.pod_count = 3;
    let small = pod("small", "500m", "1Gi");
    assert!(reasons(&small, &ni).is_empty());
    let big = pod("big", "501m", "1Gi");
    assert_eq!(reasons(&big, &ni), vec![Reason::Insufficient("cpu".into())]);
    // An init container of 1 cpu makes a 100m pod need 1 cpu.
    let mut init = pod("init", "100m", "");
    spec(&mut init).init_containers = Some(vec![Container {
        name: "i".into(),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([("cpu".to_string(), q("1"))])),
            ..ResourceRequirements::default()
        }),
        ..Container::default()
    }]);
    assert_eq!(
        reasons(&init, &ni),
        vec![Reason::Insufficient("cpu".into())]
    );
    // Every shortage is reported, and the pods count too.
    let huge = pod("huge", "4", "8Gi");
    ni.pod_count = 110;
    assert_eq!(
        reasons(&huge, &ni),
        vec![
            Reason::TooManyPods,
            Reason::Insufficient("cpu".into()),
            Reason::Insufficient("memory".into())
        ]
    );
    // A pod without requests still needs a pod slot.
    ni.pod_count = 109;
    assert!(reasons(&pod("none", "", ""), &ni).is_empty());
    // Extended resources.
    let mut gpu = pod("gpu", "", "");
    spec(&mut gpu).containers[0].resources = Some(ResourceRequirements {
        requests: Some(BTreeMap::from([("nvidia.com/gpu".to_string(), q("1"))])),
        ..ResourceRequirements::default()
    });
    assert_eq!(
        reasons(&gpu, &ni),
        vec![Reason::Insufficient("nvidia.com/gpu".into())]
    );
}

fn expr(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.into(),
        operator: op.into(),
        values: Some(values.iter().map(|v| v.to_string()).collect()),
    }
}

fn required(terms: Vec<Vec<NodeSelectorRequirement>>) -> Affinity {
    Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: terms
                    .into_iter()
                    .map(|e| NodeSelectorTerm {
                        match_expressions: Some(e),
                        match_fields: None,
                    })
                    .collect(),
            }),
            ..NodeAffinity::default()
        }),
        ..Affinity::default()
    }
}

#[test]
fn selector_and_affinity_operators() {
    let n = info(&labelled(
        labelled(node("n1", "4", "8Gi", "110"), "zone", "a"),
        "cores",
        "8",
    ));
    // (terms, fits)
    let cases: Vec<(Vec<Vec<NodeSelectorRequirement>>, bool)> = vec![
        (vec![vec![expr("zone", "In", &["a", "b"])]], true),
        (vec![vec![expr("zone", "In", &["b"])]], false),
        (vec![vec![expr("zone", "NotIn", &["b"])]], true),
        (vec![vec![expr("zone", "NotIn", &["a"])]], false),
        (vec![vec![expr("missing", "NotIn", &["a"])]], true),
        (vec![vec![expr("zone", "Exists", &[])]], true),
        (vec![vec![expr("missing", "Exists", &[])]], false),
        (vec![vec![expr("missing", "DoesNotExist", &[])]], true),
        (vec![vec![expr("zone", "DoesNotExist", &[])]], false),
        (vec![vec![expr("cores", "Gt", &["4"])]], true),
        (vec![vec![expr("cores", "Gt", &["8"])]], false),
        (vec![vec![expr("cores", "Lt", &["16"])]], true),
        (vec![vec![expr("cores", "Lt", &["8"])]], false),
        (vec![vec![expr("zone", "Gt", &["1"])]], false), // not a number
        (vec![vec![expr("cores", "Bogus", &["1"])]], false),
        // terms are ORed, expressions ANDed
        (
            vec![
                vec![expr("zone", "In", &["b"])],
                vec![expr("cores", "Exists", &[])],
            ],
            true,
        ),
        (
            vec![vec![
                expr("zone", "In", &["a"]),
                expr("cores", "Lt", &["2"]),
            ]],
            false,
        ),
        (vec![vec![]], false), // an empty term matches nothing
    ];
    for (i, (terms, fits)) in cases.into_iter().enumerate() {
        let mut p = pod("p", "", "");
        spec(&mut p).affinity = Some(required(terms));
        let r = reasons(&p, &n);
        assert_eq!(r.is_empty(), fits, "case {i}: {r:?}");
        if !fits {
            assert_eq!(
                r[0].to_string(),
                "node(s) didn't match Pod's node affinity/selector"
            );
        }
    }
    // matchFields on metadata.name
    let mut p = pod("p", "", "");
    spec(&mut p).affinity = Some(Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: None,
                    match_fields: Some(vec![expr("metadata.name", "In", &["n1"])]),
                }],
            }),
            ..NodeAffinity::default()
        }),
        ..Affinity::default()
    });
    assert!(reasons(&p, &n).is_empty());
    // nodeSelector
    for (sel, fits) in [
        (("zone", "a"), true),
        (("zone", "b"), false),
        (("x", "y"), false),
    ] {
        let mut p = pod("p", "", "");
        spec(&mut p).node_selector = Some(BTreeMap::from([(sel.0.to_string(), sel.1.to_string())]));
        assert_eq!(reasons(&p, &n).is_empty(), fits, "{sel:?}");
    }
}

fn with_port(mut p: Pod, ip: &str, port: i32, proto: &str) -> Pod {
    spec(&mut p).containers[0].ports = Some(vec![ContainerPort {
        container_port: 80,
        host_port: Some(port),
        host_ip: (!ip.is_empty()).then(|| ip.into()),
        protocol: Some(proto.into()),
        ..ContainerPort::default()
    }]);
    p
}

#[test]
fn host_port_clash() {
    let mut cache = Cache::new();
    cache.set_node(&node("n", "4", "8Gi", "110"));
    let first = with_port(pod("a", "", ""), "", 8080, "TCP");
    cache.assume("default/a", "n", PodInfo::new(&first).usage());
    let n = cache.snapshot().get("n").unwrap().clone();
    // (ip, port, protocol, fits)
    for (ip, port, proto, fits) in [
        ("", 8080, "TCP", false),
        ("10.0.0.1", 8080, "TCP", false), // 0.0.0.0 taken covers every address
        ("", 8080, "UDP", true),
        ("", 8081, "TCP", true),
    ] {
        let r = reasons(&with_port(pod("b", "", ""), ip, port, proto), &n);
        assert_eq!(r.is_empty(), fits, "{ip}:{port}/{proto}: {r:?}");
    }
    // Forgetting the assumed pod frees the port.
    cache.forget("default/a");
    let n = cache.snapshot().get("n").unwrap().clone();
    assert!(reasons(&with_port(pod("b", "", ""), "", 8080, "TCP"), &n).is_empty());
}

#[test]
fn node_state_filters() {
    let p = pod("p", "100m", "");
    let mut cordoned = node("c", "4", "8Gi", "110");
    cordoned.spec.as_mut().unwrap().unschedulable = Some(true);
    assert_eq!(reasons(&p, &info(&cordoned)), vec![Reason::Unschedulable]);
    let mut tolerant = p.clone();
    spec(&mut tolerant).tolerations = Some(vec![tol(
        "node.kubernetes.io/unschedulable",
        "Exists",
        "",
        "NoSchedule",
    )]);
    assert!(reasons(&tolerant, &info(&cordoned)).is_empty());

    let mut not_ready = node("r", "4", "8Gi", "110");
    not_ready
        .status
        .as_mut()
        .unwrap()
        .conditions
        .as_mut()
        .unwrap()[0]
        .status = "False".into();
    assert_eq!(reasons(&p, &info(&not_ready)), vec![Reason::NotReady]);

    let mut empty = node("e", "4", "8Gi", "110");
    empty.status.as_mut().unwrap().allocatable = None;
    assert_eq!(reasons(&p, &info(&empty)), vec![Reason::NoAllocatable]);
    let mut bad = node("b", "4", "8Gi", "110");
    bad.status
        .as_mut()
        .unwrap()
        .allocatable
        .as_mut()
        .unwrap()
        .insert("cpu".into(), q("four"));
    assert_eq!(reasons(&p, &info(&bad)), vec![Reason::InvalidAllocatable]);
}

#[test]
fn least_allocated_and_balanced_scores() {
    let p = pod("p", "1", "1Gi");
    let idle = info(&node("idle", "4", "4Gi", "110"));
    let mut busy = info(&node("busy", "4", "4Gi", "110"));
    busy.non_zero_requested.milli_cpu = 2000;
    busy.non_zero_requested.memory = 2 << 30;
    let mut lopsided = info(&node("lopsided", "4", "4Gi", "110"));
    lopsided.non_zero_requested.milli_cpu = 2000;
    let pi = PodInfo::new(&p);
    let v = |n: &NodeInfo| n.node.clone().unwrap();
    // idle: (3/4 + 3/4)/2 = 75; busy: (1/4 + 1/4)/2 = 25
    assert_eq!(crate::score::least_allocated(&pi, &idle, &v(&idle)), 75);
    assert_eq!(crate::score::least_allocated(&pi, &busy, &v(&busy)), 25);
    assert_eq!(
        crate::score::balanced_allocation(&pi, &idle, &v(&idle)),
        100
    );
    // cpu 3/4, memory 1/4: std 0.25
    assert_eq!(
        crate::score::balanced_allocation(&pi, &lopsided, &v(&lopsided)),
        75
    );
    let scores = score_nodes(&pi, &[&idle, &busy, &lopsided], &Weights::default());
    // idle 75 + 100, busy 25 + 100, lopsided 50 + 75; the other plugins add the same.
    assert_eq!(scores[0] - scores[1], 50, "{scores:?}");
    assert_eq!(scores[2], scores[1], "{scores:?}");
}

#[test]
fn normalization_as_kubernetes() {
    let mut s = vec![0, 2, 4];
    normalize(&mut s, false);
    assert_eq!(s, vec![0, 50, 100]);
    let mut s = vec![0, 2, 4];
    normalize(&mut s, true);
    assert_eq!(s, vec![100, 50, 0]);
    let mut s = vec![0, 0];
    normalize(&mut s, true);
    assert_eq!(s, vec![100, 100]);
}

#[test]
fn prefer_no_schedule_affinity_and_spreading_scores() {
    let w = Weights::default();
    let plain = info(&node("a", "4", "8Gi", "110"));
    let soft = info(&tainted(
        node("b", "4", "8Gi", "110"),
        "k",
        "v",
        "PreferNoSchedule",
    ));
    let p = PodInfo::new(&pod("p", "100m", ""));
    let s = score_nodes(&p, &[&plain, &soft], &w);
    assert!(
        s[0] > s[1],
        "fewer intolerable PreferNoSchedule taints is better: {s:?}"
    );
    let mut tolerant = pod("p", "100m", "");
    spec(&mut tolerant).tolerations = Some(vec![tol("k", "Exists", "", "")]);
    let s = score_nodes(&PodInfo::new(&tolerant), &[&plain, &soft], &w);
    assert_eq!(s[0], s[1]);

    let ssd = info(&labelled(node("c", "4", "8Gi", "110"), "disk", "ssd"));
    let mut prefers = pod("p", "100m", "");
    spec(&mut prefers).affinity = Some(Affinity {
        node_affinity: Some(NodeAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                PreferredSchedulingTerm {
                    weight: 10,
                    preference: NodeSelectorTerm {
                        match_expressions: Some(vec![expr("disk", "In", &["ssd"])]),
                        match_fields: None,
                    },
                },
            ]),
            ..NodeAffinity::default()
        }),
        ..Affinity::default()
    });
    let s = score_nodes(&PodInfo::new(&prefers), &[&plain, &ssd], &w);
    assert!(s[1] > s[0], "{s:?}");

    // Spreading: the node with fewer pods of the same owner wins.
    let mut owned = pod("p", "100m", "");
    owned.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        name: "rs".into(),
        uid: "rs-uid".into(),
        controller: Some(true),
        ..OwnerReference::default()
    }]);
    let mut crowded = info(&node("d", "4", "8Gi", "110"));
    crowded.owner_counts.insert("rs-uid".into(), 2);
    let s = score_nodes(&PodInfo::new(&owned), &[&crowded, &plain], &w);
    assert!(s[1] > s[0], "{s:?}");
}

#[test]
fn the_chosen_node_is_valid_and_ties_are_random() {
    let mut cache = Cache::new();
    for i in 0..5 {
        cache.set_node(&node(&format!("n{i}"), "1", "4Gi", "110"));
    }
    cache.set_node(&tainted(
        node("gpu", "8", "32Gi", "110"),
        "dedicated",
        "gpu",
        "NoSchedule",
    ));
    let mut rng = StdRng::seed_from_u64(7);
    let w = Weights::default();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let d = schedule(
            cache.snapshot(),
            &PodInfo::new(&pod("p", "100m", "")),
            0,
            &w,
            &mut rng,
        )
        .unwrap();
        assert_ne!(d.node, "gpu");
        seen.insert(d.node);
    }
    assert_eq!(
        seen.len(),
        5,
        "equal nodes are all chosen sometimes: {seen:?}"
    );

    // Pack pods until nothing fits; every choice must pass the filters.
    let mut placed = 0;
    loop {
        let p = pod(&format!("p{placed}"), "300m", "");
        let pi = PodInfo::new(&p);
        match schedule(cache.snapshot(), &pi, placed, &w, &mut rng) {
            Ok(d) => {
                let mut out = Vec::new();
                filter(&pi, cache.snapshot().get(&d.node).unwrap(), &mut out);
                assert!(out.is_empty(), "{d:?} does not fit: {out:?}");
                cache.assume(&pi.key, &d.node, pi.usage());
                placed += 1;
            }
            Err(e) => {
                assert_eq!(
                    e.to_string(),
                    "0/6 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 5 Insufficient cpu."
                );
                break;
            }
        }
    }
    assert_eq!(placed, 15, "three 300m pods per 1-cpu node");
}

#[test]
fn fit_error_messages() {
    let mut cache = Cache::new();
    let mut rng = StdRng::seed_from_u64(1);
    let w = Weights::default();
    let p = PodInfo::new(&pod("p", "100m", ""));
    assert_eq!(
        schedule(cache.snapshot(), &p, 0, &w, &mut rng)
            .unwrap_err()
            .to_string(),
        "no nodes available to schedule pods"
    );
    let mut empty = node("e", "1", "1Gi", "1");
    empty.status.as_mut().unwrap().allocatable = None;
    cache.set_node(&empty);
    cache.set_node(&node("small", "50m", "1Gi", "110"));
    assert_eq!(
        schedule(cache.snapshot(), &p, 0, &w, &mut rng).unwrap_err().to_string(),
        "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had no allocatable resources in status."
    );
    let bad = PodInfo::new(&pod("bad", "a lot", ""));
    let msg = schedule(cache.snapshot(), &bad, 0, &w, &mut rng)
        .unwrap_err()
        .to_string();
    assert!(msg.starts_with("0/2 nodes are available: pod has an invalid resource request: container c: cpu: \"a lot\""), "{msg}");
}

#[test]
fn large_clusters_are_sampled_like_kube_scheduler() {
    assert_eq!(num_feasible_nodes_to_find(50), 50);
    assert_eq!(num_feasible_nodes_to_find(100), 100);
    assert_eq!(num_feasible_nodes_to_find(1000), 420);
    assert_eq!(num_feasible_nodes_to_find(5000), 500);
    assert_eq!(num_feasible_nodes_to_find(100_000), 5000);
}

#[test]
fn cache_follows_bindings_and_relists() {
    let mut cache = Cache::new();
    cache.set_node(&node("n", "1", "1Gi", "110"));
    let p = PodInfo::new(&pod("a", "600m", ""));
    cache.assume("default/a", "n", p.usage());
    assert!(cache.is_assumed("default/a"));
    cache.bound("default/a", "n", p.usage());
    assert!(!cache.is_assumed("default/a"));
    assert_eq!(cache.snapshot().get("n").unwrap().requested.milli_cpu, 600);
    cache.forget("default/a"); // confirmed pods are not forgotten
    assert_eq!(cache.snapshot().get("n").unwrap().pod_count, 1);
    // The Node goes away and comes back: the pod still counts.
    cache.remove_node("n");
    assert!(cache.snapshot().get("n").unwrap().node.is_none());
    cache.replace_nodes(&[node("n", "1", "1Gi", "110")]);
    assert_eq!(cache.snapshot().get("n").unwrap().requested.milli_cpu, 600);
    // A relist without the pod drops it.
    cache.retain_pods(&Default::default());
    assert_eq!(cache.snapshot().get("n").unwrap().requested.milli_cpu, 0);
    cache.replace_nodes(&[]);
    assert!(cache.snapshot().get("n").is_none());
}
