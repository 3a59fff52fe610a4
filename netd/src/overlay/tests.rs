use serde_json::json;

use super::*;

fn node(name: &str, cidr: Option<&str>, mac: Option<&str>, ip: Option<&str>) -> Node {
    let mut annotations = serde_json::Map::new();
    if let Some(mac) = mac {
        annotations.insert(
            BACKEND_DATA_ANNOTATION.into(),
            json!(format!("{{\"VNI\":1,\"VtepMAC\":\"{mac}\"}}")),
        );
    }
    if let Some(ip) = ip {
        annotations.insert(PUBLIC_IP_ANNOTATION.into(), json!(ip));
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"podCIDR": cidr},
    }))
    .unwrap()
}

#[test]
fn every_other_ready_node_is_a_peer() {
    let nodes = [
        node(
            "a",
            Some("10.244.0.0/24"),
            Some("0a:00:00:00:00:01"),
            Some("192.168.50.11"),
        ),
        node(
            "b",
            Some("10.244.1.0/24"),
            Some("0A:00:00:00:00:02"),
            Some("192.168.50.12"),
        ),
        node(
            "c",
            Some("10.244.2.0/24"),
            Some("0a:00:00:00:00:03"),
            Some("192.168.50.13"),
        ),
    ];
    let d = desired_peers("a", &nodes);
    assert!(d.skipped.is_empty(), "{:?}", d.skipped);
    assert_eq!(d.peers.len(), 2);
    assert_eq!(
        d.peers[0],
        Peer {
            node: "b".into(),
            pod_cidr: "10.244.1.0/24".parse().unwrap(),
            vtep_ip: "10.244.1.0".parse().unwrap(),
            vtep_mac: [0x0a, 0, 0, 0, 0, 2],
            public_ip: "192.168.50.12".parse().unwrap(),
        }
    );
    assert_eq!(d.peers[1].node, "c");
}

#[test]
fn nodes_not_ready_for_the_overlay_are_skipped_with_the_reason() {
    let nodes = [
        node(
            "a",
            Some("10.244.0.0/24"),
            Some("0a:00:00:00:00:01"),
            Some("192.168.50.11"),
        ),
        node(
            "no-cidr",
            None,
            Some("0a:00:00:00:00:02"),
            Some("192.168.50.12"),
        ),
        node("no-netd", Some("10.244.2.0/24"), None, None),
        node(
            "bad-mac",
            Some("10.244.3.0/24"),
            Some("zz:00"),
            Some("192.168.50.14"),
        ),
        node(
            "bad-cidr",
            Some("10.244.4.1/24"),
            Some("0a:00:00:00:00:05"),
            Some("192.168.50.15"),
        ),
    ];
    let d = desired_peers("a", &nodes);
    assert!(d.peers.is_empty(), "{:?}", d.peers);
    let all = d.skipped.join("\n");
    for expected in [
        "no-cidr: no spec.podCIDR",
        "no-netd: no skiff.io/backend-data",
        "bad-mac: skiff.io/backend-data has no valid VtepMAC",
        "bad-cidr: spec.podCIDR",
    ] {
        assert!(all.contains(expected), "{expected:?} in {all}");
    }
}

#[test]
fn clashing_nodes_get_no_routes_at_all() {
    let nodes = [
        node(
            "a",
            Some("10.244.0.0/24"),
            Some("0a:00:00:00:00:01"),
            Some("192.168.50.11"),
        ),
        node(
            "b",
            Some("10.244.1.0/24"),
            Some("0a:00:00:00:00:02"),
            Some("192.168.50.12"),
        ),
        node(
            "b-twin",
            Some("10.244.1.0/24"),
            Some("0a:00:00:00:00:03"),
            Some("192.168.50.13"),
        ),
        node(
            "same-ip",
            Some("10.244.5.0/24"),
            Some("0a:00:00:00:00:04"),
            Some("192.168.50.14"),
        ),
        node(
            "same-ip-2",
            Some("10.244.6.0/24"),
            Some("0a:00:00:00:00:05"),
            Some("192.168.50.14"),
        ),
        node(
            "mine",
            Some("10.244.0.0/25"),
            Some("0a:00:00:00:00:06"),
            Some("192.168.50.16"),
        ),
        node(
            "ok",
            Some("10.244.7.0/24"),
            Some("0a:00:00:00:00:07"),
            Some("192.168.50.17"),
        ),
    ];
    let d = desired_peers("a", &nodes);
    let names: Vec<&str> = d.peers.iter().map(|p| p.node.as_str()).collect();
    assert_eq!(names, ["ok"], "{:?}", d.skipped);
    assert_eq!(d.skipped.len(), 5, "{:?}", d.skipped);
}

#[test]
fn macs_round_trip_and_bad_ones_are_refused() {
    let mac = [0xde, 0xad, 0xbe, 0xef, 0x00, 0x01];
    assert_eq!(parse_mac(&format_mac(mac)), Some(mac));
    assert_eq!(
        backend_data(mac),
        r#"{"VNI":1,"VtepMAC":"de:ad:be:ef:00:01"}"#
    );
    for bad in [
        "",
        "de:ad:be:ef:00",
        "de:ad:be:ef:00:01:02",
        "de:ad:be:ef:00:1",
        "gg:ad:be:ef:00:01",
    ] {
        assert_eq!(parse_mac(bad), None, "{bad}");
    }
}

#[test]
fn the_cni_config_leaves_room_for_vxlan() {
    let c = cni_config("10.244.3.0/24".parse().unwrap(), 1500, None);
    assert_eq!(c["plugins"][0]["mtu"], 1450);
    assert_eq!(
        c["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
        "10.244.3.0/24"
    );
    assert_eq!(c["plugins"][0]["isGateway"], true);
    assert_eq!(c["plugins"][1]["type"], "portmap");
    assert_eq!(c["plugins"][2]["type"], "loopback");
    assert!(c["plugins"][0]["ipam"].get("dataDir").is_none());
    let c = cni_config("10.244.3.0/24".parse().unwrap(), 9000, Some("/tmp/ipam"));
    assert_eq!(c["plugins"][0]["mtu"], 8950);
    assert_eq!(c["plugins"][0]["ipam"]["dataDir"], "/tmp/ipam");
}
