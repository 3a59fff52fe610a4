use serde_json::json;

use super::*;

fn zone() -> Zone {
    let services: Vec<Service> = serde_json::from_value(json!([
        {"metadata": {"name": "web", "namespace": "shop"},
         "spec": {"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80}]}},
        {"metadata": {"name": "db", "namespace": "shop"},
         "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}},
        {"metadata": {"name": "search", "namespace": "shop"},
         "spec": {"type": "ExternalName", "externalName": "search.example.com."}},
    ]))
    .unwrap();
    let slices: Vec<EndpointSlice> = serde_json::from_value(json!([
        {"metadata": {"name": "db-1", "namespace": "shop",
                      "labels": {"kubernetes.io/service-name": "db"}},
         "addressType": "IPv4", "ports": [{"name": "pg", "port": 5432}],
         "endpoints": [
            {"addresses": ["10.244.1.7"], "hostname": "db-0"},
            {"addresses": ["10.244.2.8"], "conditions": {"ready": true}},
            {"addresses": ["10.244.3.9"], "conditions": {"ready": false}},
         ]},
    ]))
    .unwrap();
    Zone::build("cluster.local", &services, &slices)
}

fn a(name: &str, ip: &str) -> Record {
    Record::A {
        name: name.into(),
        ip: ip.parse().unwrap(),
    }
}

#[test]
fn a_service_name_is_its_cluster_ip() {
    let z = zone();
    let name = "web.shop.svc.cluster.local";
    assert_eq!(
        z.answer("WEB.shop.svc.cluster.local.", QueryType::A, 0),
        Answer::Records(vec![a(name, "10.96.0.20")])
    );
    assert_eq!(z.answer(name, QueryType::Aaaa, 0), Answer::NoData);
    assert_eq!(
        z.answer("nope.shop.svc.cluster.local", QueryType::A, 0),
        Answer::NxDomain
    );
    assert_eq!(
        z.answer("web.other.svc.cluster.local", QueryType::A, 0),
        Answer::NxDomain
    );
}

#[test]
fn a_headless_service_answers_each_ready_endpoint_in_turn() {
    let z = zone();
    let name = "db.shop.svc.cluster.local";
    let first = z.answer(name, QueryType::A, 0);
    let second = z.answer(name, QueryType::A, 1);
    assert_eq!(
        first,
        Answer::Records(vec![a(name, "10.244.1.7"), a(name, "10.244.2.8")])
    );
    assert_eq!(
        second,
        Answer::Records(vec![a(name, "10.244.2.8"), a(name, "10.244.1.7")])
    );
    assert_eq!(
        z.answer("db-0.db.shop.svc.cluster.local", QueryType::A, 0),
        Answer::Records(vec![a("db-0.db.shop.svc.cluster.local", "10.244.1.7")])
    );
    assert_eq!(
        z.answer("10-244-2-8.db.shop.svc.cluster.local", QueryType::A, 0),
        Answer::Records(vec![a(
            "10-244-2-8.db.shop.svc.cluster.local",
            "10.244.2.8"
        )])
    );
    assert_eq!(
        z.answer("10-244-3-9.db.shop.svc.cluster.local", QueryType::A, 0),
        Answer::NxDomain,
        "not ready"
    );
}

#[test]
fn srv_records_for_named_ports() {
    let z = zone();
    assert_eq!(
        z.answer("_http._tcp.web.shop.svc.cluster.local", QueryType::Srv, 0),
        Answer::Records(vec![Record::Srv {
            name: "_http._tcp.web.shop.svc.cluster.local".into(),
            port: 80,
            target: "web.shop.svc.cluster.local".into(),
        }])
    );
    let Answer::Records(headless) =
        z.answer("_pg._tcp.db.shop.svc.cluster.local", QueryType::Srv, 0)
    else {
        panic!("no SRV for the headless service");
    };
    let targets: Vec<_> = headless
        .iter()
        .map(|r| match r {
            Record::Srv { target, port, .. } => (target.as_str(), *port),
            _ => ("", 0),
        })
        .collect();
    assert_eq!(
        targets,
        [
            ("db-0.db.shop.svc.cluster.local", 5432),
            ("10-244-2-8.db.shop.svc.cluster.local", 5432)
        ]
    );
    assert_eq!(
        z.answer("_http._udp.web.shop.svc.cluster.local", QueryType::Srv, 0),
        Answer::NxDomain
    );
}

#[test]
fn external_names_pods_and_names_outside_the_cluster() {
    let z = zone();
    assert_eq!(
        z.answer("search.shop.svc.cluster.local", QueryType::A, 0),
        Answer::Records(vec![Record::Cname {
            name: "search.shop.svc.cluster.local".into(),
            target: "search.example.com".into(),
        }])
    );
    assert_eq!(
        z.answer("10-244-1-5.shop.pod.cluster.local", QueryType::A, 0),
        Answer::Records(vec![a("10-244-1-5.shop.pod.cluster.local", "10.244.1.5")])
    );
    assert_eq!(
        z.answer("10-244-1.shop.pod.cluster.local", QueryType::A, 0),
        Answer::NxDomain
    );
    assert_eq!(
        z.answer("300-1-1-1.shop.pod.cluster.local", QueryType::A, 0),
        Answer::NxDomain
    );
    assert_eq!(z.answer("example.com", QueryType::A, 0), Answer::Forward);
    assert_eq!(
        z.answer("notcluster.local", QueryType::A, 0),
        Answer::Forward
    );
    assert_eq!(
        z.answer("shop.svc.cluster.local", QueryType::A, 0),
        Answer::NoData
    );
    assert_eq!(
        z.answer("a.b.c.d.e.svc.cluster.local", QueryType::A, 0),
        Answer::NxDomain
    );
}
