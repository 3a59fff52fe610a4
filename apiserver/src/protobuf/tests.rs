use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::openapi::OpenApi;

fn decoder() -> &'static Decoder {
    static OPENAPI: OnceLock<OpenApi> = OnceLock::new();
    &OPENAPI
        .get_or_init(|| OpenApi::build().expect("the OpenAPI documents build"))
        .protobuf
}

/// Protobuf wire writing for the fixtures: field number and bytes, nothing schema-aware.
fn key(tag: u32, wire: u8) -> Vec<u8> {
    uvarint(u64::from(tag) << 3 | u64::from(wire))
}

fn uvarint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

fn int(tag: u32, n: i64) -> Vec<u8> {
    [key(tag, 0), uvarint(n as u64)].concat()
}

fn bytes(tag: u32, b: &[u8]) -> Vec<u8> {
    [key(tag, 2), uvarint(b.len() as u64), b.to_vec()].concat()
}

fn string(tag: u32, s: &str) -> Vec<u8> {
    bytes(tag, s.as_bytes())
}

fn message(tag: u32, parts: &[Vec<u8>]) -> Vec<u8> {
    bytes(tag, &parts.concat())
}

fn entry(tag: u32, k: &str, value: Vec<u8>) -> Vec<u8> {
    message(tag, &[string(1, k), value])
}

fn envelope(api_version: &str, kind: &str, object: &[Vec<u8>]) -> Vec<u8> {
    [
        b"k8s\0".to_vec(),
        message(1, &[string(1, api_version), string(2, kind)]),
        bytes(2, &object.concat()),
        string(3, ""),
        string(4, "application/vnd.kubernetes.protobuf"),
    ]
    .concat()
}

#[test]
fn every_served_kind_and_the_subresource_bodies_decode() {
    let d = decoder();
    for r in skiff_api::resource::RESOURCES {
        let api_version = if r.group.is_empty() {
            r.version.to_string()
        } else {
            format!("{}/{}", r.group, r.version)
        };
        assert!(
            d.kinds
                .contains_key(&(api_version.clone(), r.kind.to_string())),
            "{} {api_version}",
            r.kind
        );
    }
    for (api_version, kind) in [
        ("policy/v1", "Eviction"),
        ("v1", "Binding"),
        ("autoscaling/v1", "Scale"),
        ("v1", "DeleteOptions"),
        ("apps/v1", "DeleteOptions"),
    ] {
        assert!(
            d.kinds
                .contains_key(&(api_version.to_string(), kind.to_string())),
            "{kind} {api_version}"
        );
    }
}

#[test]
fn only_fields_newer_than_the_served_version_go_unnamed() {
    // k8s-pb follows the newest Kubernetes; these fields came after v1.33. A field
    // whose name merely failed to match its OpenAPI property would show up here too.
    let newer = [
        "api.core.v1.Container.restart_policy_rules",
        "api.core.v1.EnvVarSource.file_key_ref",
        "api.core.v1.EphemeralContainerCommon.restart_policy_rules",
        "api.core.v1.NodeStatus.declared_features",
        "api.core.v1.PodSpec.hostname_override",
        "api.core.v1.PodSpec.workload_ref",
        "api.core.v1.PodStatus.allocated_resources",
        "api.core.v1.PodStatus.extended_resource_claim_status",
        "api.core.v1.PodStatus.resources",
        "api.core.v1.VolumeProjection.pod_certificate",
    ];
    let mut unnamed = decoder().unnamed.clone();
    unnamed.sort();
    unnamed.dedup();
    assert_eq!(unnamed, newer);
}

#[test]
fn a_deployment_as_kubectl_create_deployment_sends_it() {
    let time_zero = message(8, &[]);
    let body = envelope(
        "apps/v1",
        "Deployment",
        &[
            message(
                1,
                &[
                    string(1, "web"),
                    string(2, ""),
                    string(3, ""),
                    time_zero.clone(),
                    entry(11, "app", string(2, "web")),
                ],
            ),
            message(
                2,
                &[
                    int(1, 0),
                    message(2, &[entry(1, "app", string(2, "web"))]),
                    message(
                        3,
                        &[
                            message(1, &[time_zero, entry(11, "app", string(2, "web"))]),
                            message(
                                2,
                                &[message(
                                    2,
                                    &[
                                        string(1, "busybox"),
                                        string(2, "busybox:1.36"),
                                        string(3, "sleep"),
                                        string(3, "3600"),
                                        message(6, &[int(2, 0), int(3, 80), string(4, "TCP")]),
                                        message(
                                            8,
                                            &[entry(1, "cpu", message(2, &[string(1, "500m")]))],
                                        ),
                                        string(14, ""),
                                    ],
                                )],
                            ),
                        ],
                    ),
                    message(
                        4,
                        &[message(
                            2,
                            &[
                                message(1, &[int(1, 0), int(2, 0)]),
                                message(2, &[int(1, 1), string(3, "25%")]),
                            ],
                        )],
                    ),
                    int(7, 0),
                ],
            ),
            message(3, &[]),
        ],
    );
    let got = decoder().decode_body(&body).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "busybox",
                        "image": "busybox:1.36",
                        "command": ["sleep", "3600"],
                        "ports": [{"containerPort": 80, "protocol": "TCP"}],
                        "resources": {"limits": {"cpu": "500m"}},
                    }]},
                },
                "strategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
            },
            "status": {},
        })
    );
}

#[test]
fn secrets_times_embedded_structs_and_packed_numbers() {
    let body = envelope(
        "v1",
        "Secret",
        &[
            message(
                1,
                &[
                    string(1, "s"),
                    message(8, &[int(1, 1_700_000_000), int(2, 5)]),
                ],
            ),
            entry(2, "key", bytes(2, &[0, 159, 146, 150])),
            string(3, "Opaque"),
        ],
    );
    let got = decoder().decode_body(&body).unwrap();
    assert_eq!(got["metadata"]["creationTimestamp"], "2023-11-14T22:13:20Z");
    assert_eq!(got["data"]["key"], "AJ+Slg==");
    assert_eq!(got["type"], "Opaque");

    // ConfigMapProjection embeds LocalObjectReference: JSON has `name` at its level.
    let volume = envelope(
        "v1",
        "Pod",
        &[message(
            2,
            &[message(
                1,
                &[
                    string(1, "cfg"),
                    // Volume embeds VolumeSource (field 2) as well.
                    message(
                        2,
                        &[message(
                            26,
                            &[message(
                                1,
                                &[message(3, &[message(1, &[string(1, "settings")])])],
                            )],
                        )],
                    ),
                ],
            )],
        )],
    );
    let got = decoder().decode_body(&volume).unwrap();
    assert_eq!(
        got["spec"]["volumes"][0]["projected"]["sources"][0]["configMap"],
        json!({"name": "settings"})
    );

    // A negative int32 is sign-extended to ten bytes; packed repeated numbers share one field.
    let rc = envelope(
        "v1",
        "Pod",
        &[message(
            2,
            &[int(4, -5), message(14, &[bytes(4, &[1, 2, 3])])],
        )],
    );
    let got = decoder().decode_body(&rc).unwrap();
    assert_eq!(got["spec"]["terminationGracePeriodSeconds"], -5);
    assert_eq!(
        got["spec"]["securityContext"]["supplementalGroups"],
        json!([1, 2, 3])
    );
}

#[test]
fn durations_print_as_go_does() {
    assert_eq!(go_duration(0), "0s");
    assert_eq!(go_duration(1_500_000_000), "1.5s");
    assert_eq!(go_duration(3_723_000_000_000), "1h2m3s");
    assert_eq!(go_duration(120_000_000_000), "2m0s");
    assert_eq!(go_duration(-1_000_000), "-0.001s");
}

#[test]
fn bad_bodies_are_400_or_415() {
    let d = decoder();
    let status = |b: &[u8]| d.decode_body(b).unwrap_err().to_status().code;
    assert_eq!(status(b"{\"kind\":\"Pod\"}"), 400);
    assert_eq!(status(b"k8s\0\x0a\x05"), 400);
    assert_eq!(status(&envelope("v1", "Frobnicator", &[])), 415);
    assert_eq!(status(&envelope("v1", "Pod", &[vec![0x0a, 0x7f, 1]])), 400);
    // A string where a message is expected.
    assert_eq!(status(&envelope("v1", "Pod", &[int(1, 3)])), 400);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    // Any bytes after a valid envelope header: an answer, never a panic.
    #[test]
    fn decoding_any_bytes_never_panics(raw in prop::collection::vec(any::<u8>(), 0..300)) {
        let body = envelope("apps/v1", "Deployment", std::slice::from_ref(&raw));
        if let Err(e) = decoder().decode_body(&body) {
            prop_assert!(matches!(e.to_status().code, 400 | 415));
        }
        let _ = decoder().decode_body(&[b"k8s\0".as_slice(), &raw].concat());
    }
}
