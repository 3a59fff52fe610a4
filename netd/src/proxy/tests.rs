use serde_json::json;

use super::*;

fn service(v: serde_json::Value) -> Service {
    serde_json::from_value(v).expect("a Service")
}

fn slice(v: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(v).expect("an EndpointSlice")
}

fn web() -> Service {
    service(json!({
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "clusterIP": "10.96.0.20",
            "type": "NodePort",
            "externalIPs": ["192.0.2.7"],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}]
        }
    }))
}

fn web_slice(ready_b: Option<bool>) -> EndpointSlice {
    slice(json!({
        "metadata": {"name": "web-abc", "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.244.1.5"], "nodeName": "node-a", "conditions": {"ready": true}},
            {"addresses": ["10.244.2.9"], "nodeName": "node-b", "conditions": {"ready": ready_b}},
        ]
    }))
}

fn rules(services: &[Service], slices: &[EndpointSlice]) -> Ruleset {
    ruleset(&ProxyInput {
        node_name: "node-a",
        cluster_cidr: "10.244.0.0/16".parse().unwrap(),
        services,
        slices,
    })
}

/// The body of one chain of a script.
fn chain<'a>(script: &'a str, name: &str) -> &'a str {
    let start = script
        .split(&format!("chain {name} {{"))
        .nth(1)
        .unwrap_or_else(|| panic!("no chain {name} in {script}"));
    start.split("\t}").next().unwrap_or("").trim()
}

#[test]
fn cluster_ip_node_port_and_external_ip_reach_every_ready_endpoint() {
    let r = rules(&[web()], &[web_slice(None)]);
    let s = &r.script();
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
    assert!(
        s.contains("10.96.0.20 . tcp . 80 : goto svc_shop_web_http_tcp"),
        "{s}"
    );
    assert!(
        s.contains("192.0.2.7 . tcp . 80 : goto ext_shop_web_http_tcp"),
        "{s}"
    );
    assert!(
        s.contains("tcp . 30080 : goto ext_shop_web_http_tcp"),
        "{s}"
    );
    assert!(
        chain(s, "svc_shop_web_http_tcp").contains(
            "meta l4proto tcp dnat ip to numgen random mod 2 map { 0 : 10.244.1.5 . 8080, 1 : 10.244.2.9 . 8080 }"
        ),
        "an absent ready condition counts as ready: {s}"
    );
    assert!(
        s.contains("elements = { 10.244.1.5 . 10.244.1.5 }"),
        "hairpin lists the endpoints of this node only: {s}"
    );
    // Cluster policy: external traffic is masqueraded, then shares the service chain.
    let ext = chain(s, "ext_shop_web_http_tcp");
    assert!(
        ext.contains("meta mark set meta mark | 0x4000")
            && ext.contains("goto svc_shop_web_http_tcp"),
        "{ext}"
    );
}

#[test]
fn a_cluster_ip_only_service_gets_no_external_chain() {
    let mut svc = web();
    let spec = svc.spec.as_mut().unwrap();
    spec.type_ = Some("ClusterIP".into());
    spec.external_ips = None;
    spec.ports.as_mut().unwrap()[0].node_port = None;
    let s = rules(&[svc], &[web_slice(None)]).script();
    assert!(s.contains("chain svc_shop_web_http_tcp"), "{s}");
    assert!(!s.contains("ext_shop_web_http_tcp"), "{s}");
}

#[test]
fn endpoints_that_are_not_ready_are_left_out_and_none_rejects() {
    let s = rules(&[web()], &[web_slice(Some(false))]).script();
    assert!(s.contains("map { 0 : 10.244.1.5 . 8080 }"), "{s}");
    assert!(!s.contains("10.244.2.9 . 8080"), "{s}");

    let s = rules(&[web()], &[]).script();
    assert!(!s.contains("chain svc_"), "{s}");
    assert!(
        s.contains("elements = { 10.96.0.20 . tcp . 80, 192.0.2.7 . tcp . 80 }"),
        "{s}"
    );
    assert!(s.contains("elements = { tcp . 30080 }"), "{s}");
}

#[test]
fn local_traffic_policy_keeps_external_traffic_on_this_node_unmasqueraded() {
    let mut svc = web();
    svc.spec.as_mut().unwrap().external_traffic_policy = Some("Local".into());
    let s = rules(std::slice::from_ref(&svc), &[web_slice(Some(true))]).script();
    let ext = chain(&s, "ext_shop_web_http_tcp");
    assert!(ext.contains("mod 1 map { 0 : 10.244.1.5 . 8080 }"), "{ext}");
    assert!(!ext.contains("mark"), "the client's address is kept: {ext}");
    // In-cluster traffic to the clusterIP still reaches both.
    assert!(
        chain(&s, "svc_shop_web_http_tcp").contains("mod 2 map"),
        "{s}"
    );

    // No endpoint on this node: external traffic is dropped here.
    let remote_only = slice(json!({
        "metadata": {"name": "web-x", "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": [{"addresses": ["10.244.2.9"], "nodeName": "node-b"}]
    }));
    let s = rules(&[svc], &[remote_only]).script();
    assert_eq!(chain(&s, "ext_shop_web_http_tcp"), "drop", "{s}");
}

#[test]
fn headless_external_name_ipv6_and_odd_protocols() {
    let headless = service(json!({"metadata": {"name": "db", "namespace": "a"},
        "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}}));
    let external = service(json!({"metadata": {"name": "ext", "namespace": "a"},
        "spec": {"type": "ExternalName", "externalName": "example.com"}}));
    let v6 = service(json!({"metadata": {"name": "six", "namespace": "a"},
        "spec": {"clusterIP": "fd00::10", "ports": [{"port": 80}]}}));
    let udp = service(
        json!({"metadata": {"name": "dns", "namespace": "kube-system"},
        "spec": {"clusterIP": "10.96.0.10", "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "weird", "port": 9, "protocol": "DCCP"}]}}),
    );
    let r = rules(&[headless, external, v6, udp], &[]);
    assert!(!r.script().contains("5432") && !r.script().contains("example.com"));
    assert_eq!(r.skipped.len(), 2, "{:?}", r.skipped);
    assert!(r.skipped.iter().any(|s| s.contains("IPv4-only")));
    assert!(r.skipped.iter().any(|s| s.contains("DCCP")));
    assert!(
        r.script().contains("10.96.0.10 . udp . 53"),
        "{}",
        r.script()
    );
}

#[test]
fn the_same_input_gives_the_same_script() {
    let a = rules(&[web()], &[web_slice(None)]);
    let b = rules(&[web()], &[web_slice(None)]);
    assert_eq!(a, b);
    assert!(a
        .script()
        .starts_with("table ip skiff_netd\ndelete table ip skiff_netd\n"));
}

#[test]
fn cidrs_parse_strictly() {
    use crate::net::Ipv4Net;
    assert_eq!(
        "10.244.0.0/16".parse::<Ipv4Net>().unwrap().to_string(),
        "10.244.0.0/16"
    );
    assert!("10.244.1.0/16".parse::<Ipv4Net>().is_err());
    assert!("10.244.0.0".parse::<Ipv4Net>().is_err());
    assert!("10.244.0.0/33".parse::<Ipv4Net>().is_err());
    assert!("0.0.0.0/0".parse::<Ipv4Net>().is_ok());
}

fn plain(name: &str, ip: &str, endpoints: &[&str]) -> (Service, EndpointSlice) {
    let svc = service(json!({"metadata": {"name": name, "namespace": "a"},
        "spec": {"clusterIP": ip, "ports": [{"port": 80}]}}));
    let eps: Vec<serde_json::Value> = endpoints
        .iter()
        .map(|e| json!({"addresses": [e], "nodeName": "node-a"}))
        .collect();
    let slice = slice(json!({"metadata": {"name": name, "namespace": "a",
            "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4", "ports": [{"port": 8080}], "endpoints": eps}));
    (svc, slice)
}

#[test]
fn an_update_touches_only_what_changed() {
    let (a, a_eps) = plain("a", "10.96.0.1", &["10.244.1.1"]);
    let (b, b_eps) = plain("b", "10.96.0.2", &["10.244.1.2"]);
    let before = rules(
        &[a.clone(), b.clone(), web()],
        &[a_eps.clone(), b_eps, web_slice(None)],
    );
    assert_eq!(
        before.table.update_script(&before.table).as_deref(),
        Some("")
    );

    // b's endpoint moves, c arrives without endpoints, web goes.
    let (_, b_moved) = plain("b", "10.96.0.2", &["10.244.1.3"]);
    let (c, _) = plain("c", "10.96.0.3", &[]);
    let after = rules(&[a, b, c], &[a_eps, b_moved]);
    let update = after.table.update_script(&before.table).unwrap();
    let lines: Vec<&str> = update.lines().collect();
    assert_eq!(
        lines,
        [
            "flush chain ip skiff_netd svc_a_b_80_tcp",
            "add rule ip skiff_netd svc_a_b_80_tcp ip saddr != 10.244.0.0/16 meta mark set meta mark | 0x4000",
            "add rule ip skiff_netd svc_a_b_80_tcp meta l4proto tcp dnat ip to numgen random mod 1 map { 0 : 10.244.1.3 . 8080 }",
            "delete element ip skiff_netd service_ips { 10.96.0.20 . tcp . 80, 192.0.2.7 . tcp . 80 }",
            "delete element ip skiff_netd service_nodeports { tcp . 30080 }",
            "add element ip skiff_netd no_endpoints { 10.96.0.3 . tcp . 80 }",
            "delete element ip skiff_netd hairpin { 10.244.1.2 . 10.244.1.2, 10.244.1.5 . 10.244.1.5 }",
            "add element ip skiff_netd hairpin { 10.244.1.3 . 10.244.1.3 }",
            "flush chain ip skiff_netd ext_shop_web_http_tcp",
            "flush chain ip skiff_netd svc_shop_web_http_tcp",
            "delete chain ip skiff_netd ext_shop_web_http_tcp",
            "delete chain ip skiff_netd svc_shop_web_http_tcp",
        ],
        "{update}"
    );
    // And back: the chains come again before the elements that name them.
    let back = before.table.update_script(&after.table).unwrap();
    let add_chain = back
        .find("add chain ip skiff_netd svc_shop_web_http_tcp")
        .unwrap();
    let element = back.find(": goto svc_shop_web_http_tcp").unwrap();
    assert!(add_chain < element, "{back}");

    // Another cluster CIDR changes the fixed chains: only a full load will do.
    let other = ruleset(&ProxyInput {
        node_name: "node-a",
        cluster_cidr: "10.250.0.0/16".parse().unwrap(),
        services: &[],
        slices: &[],
    });
    assert!(other.table.update_script(&before.table).is_none());
}
