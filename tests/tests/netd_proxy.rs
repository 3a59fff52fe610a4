//! netd's service proxy rules in a real kernel: two network namespaces (a node and a
//! pod on a veth pair), the ruleset loaded with the real `nft`, and real connections
//! from the node to a ClusterIP, a NodePort and a Service without endpoints.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use skiff_netd::proxy::{ruleset, ProxyInput};

fn run(args: &[&str]) -> Result<String> {
    let out = Command::new(args[0]).args(&args[1..]).output()?;
    ensure!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Two namespaces and a web server; all removed on drop, also when the test fails.
struct Machines {
    node: String,
    pod: String,
    server: Option<Child>,
    dir: tempfile::TempDir,
}

impl Drop for Machines {
    fn drop(&mut self) {
        if let Some(mut s) = self.server.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
        for ns in [&self.node, &self.pod] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn machines() -> Result<Machines> {
    let id = std::process::id();
    let mut m = Machines {
        node: format!("skiff-t{id}-node"),
        pod: format!("skiff-t{id}-pod"),
        server: None,
        dir: tempfile::tempdir()?,
    };
    let (node, pod) = (m.node.clone(), m.pod.clone());
    let veth = format!("sk{id}");
    run(&["ip", "netns", "add", &node])?;
    run(&["ip", "netns", "add", &pod])?;
    let in_node = |args: &[&str]| {
        let mut all = vec!["ip", "netns", "exec", &node];
        all.extend(args);
        run(&all)
    };
    let in_pod = |args: &[&str]| {
        let mut all = vec!["ip", "netns", "exec", &pod];
        all.extend(args);
        run(&all)
    };
    in_node(&[
        "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &pod,
    ])?;
    in_node(&["ip", "link", "set", "lo", "up"])?;
    in_node(&["ip", "addr", "add", "10.244.1.1/24", "dev", &veth])?;
    in_node(&["ip", "link", "set", &veth, "up"])?;
    // The service range has no route of its own, as on a real node: the default route
    // lets a connection start, and the rules rewrite it.
    in_node(&["ip", "route", "add", "default", "dev", &veth])?;
    in_pod(&["ip", "link", "set", "lo", "up"])?;
    in_pod(&["ip", "addr", "add", "10.244.1.5/24", "dev", "eth0"])?;
    in_pod(&["ip", "link", "set", "eth0", "up"])?;
    in_pod(&["ip", "route", "add", "default", "via", "10.244.1.1"])?;
    std::fs::write(m.dir.path().join("index.html"), "hello from the pod\n")?;
    let www = m.dir.path().display().to_string();
    m.server = Some(
        Command::new("ip")
            .args([
                "netns", "exec", &pod, "busybox", "httpd", "-f", "-p", "8080", "-h", &www,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("busybox httpd (Debian's busybox-static)")?,
    );
    Ok(m)
}

fn fetch(ns: &str, url: &str) -> Result<String> {
    // curl, not busybox wget: Debian's static busybox wget crashes here.
    run(&[
        "ip",
        "netns",
        "exec",
        ns,
        "curl",
        "-sS",
        "--max-time",
        "5",
        url,
    ])
}

#[test]
fn cluster_ip_and_node_port_reach_the_pod_and_no_endpoints_is_refused() -> Result<()> {
    let m = machines()?;
    let services: Vec<Service> = serde_json::from_value(json!([
        {"metadata": {"name": "web", "namespace": "default"},
         "spec": {"type": "NodePort", "clusterIP": "10.96.0.20",
                  "ports": [{"port": 80, "nodePort": 30080}]}},
        {"metadata": {"name": "empty", "namespace": "default"},
         "spec": {"clusterIP": "10.96.0.30", "ports": [{"port": 80}]}},
    ]))?;
    let slices: Vec<EndpointSlice> = serde_json::from_value(json!([
        {"metadata": {"name": "web-1", "namespace": "default",
                      "labels": {"kubernetes.io/service-name": "web"}},
         "addressType": "IPv4", "ports": [{"port": 8080}],
         "endpoints": [{"addresses": ["10.244.1.5"], "nodeName": "node"}]},
    ]))?;
    let rules = ruleset(&ProxyInput {
        node_name: "node",
        cluster_cidr: "10.244.0.0/16".parse()?,
        services: &services,
        slices: &slices,
    });
    let file = m.dir.path().join("rules.nft");
    std::fs::write(&file, rules.script())?;
    let file = file.display().to_string();
    // Loaded twice: the second load replaces the table instead of adding to it.
    for _ in 0..2 {
        run(&["ip", "netns", "exec", &m.node, "nft", "-f", &file])?;
    }
    let listed = run(&["ip", "netns", "exec", &m.node, "nft", "list", "ruleset"])?;
    ensure!(
        listed.matches("table ip skiff_netd").count() == 1,
        "{listed}"
    );

    // The server may take a moment to listen.
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        match fetch(&m.node, "http://10.96.0.20/") {
            Ok(b) => break b,
            Err(e) if Instant::now() > deadline => return Err(e.context("ClusterIP")),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    ensure!(body == "hello from the pod\n", "{body:?}");
    let body = fetch(&m.node, "http://10.244.1.1:30080/").context("NodePort")?;
    ensure!(body == "hello from the pod\n", "{body:?}");

    // No endpoints: refused at once by the rules, not left to time out.
    let started = Instant::now();
    let refused = fetch(&m.node, "http://10.96.0.30/");
    ensure!(refused.is_err(), "a Service without endpoints answered");
    ensure!(
        started.elapsed() < Duration::from_secs(4),
        "the refusal took {:?}, as long as a timeout",
        started.elapsed()
    );
    Ok(())
}

/// `nft list table` reduced to its lines and list items, sorted: two loads of one
/// table list the same items, though chains created later are listed later.
fn table_items(ns: &str) -> Result<Vec<String>> {
    let listed = run(&[
        "ip",
        "netns",
        "exec",
        ns,
        "nft",
        "list",
        "table",
        "ip",
        "skiff_netd",
    ])?;
    let mut items: Vec<String> = listed
        .split(['\n', ',', '{', '}'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    items.sort();
    Ok(items)
}

#[test]
fn an_update_in_place_reaches_the_same_table_as_a_full_load() -> Result<()> {
    let m = machines()?;
    let services: Vec<Service> = serde_json::from_value(json!([
        {"metadata": {"name": "web", "namespace": "default"},
         "spec": {"type": "NodePort", "clusterIP": "10.96.0.20",
                  "ports": [{"port": 80, "nodePort": 30080}]}},
        {"metadata": {"name": "other", "namespace": "default"},
         "spec": {"clusterIP": "10.96.0.30", "ports": [{"port": 80}]}},
    ]))?;
    let slice = |service: &str| -> Result<EndpointSlice> {
        Ok(serde_json::from_value(json!(
            {"metadata": {"name": format!("{service}-1"), "namespace": "default",
                          "labels": {"kubernetes.io/service-name": service}},
             "addressType": "IPv4", "ports": [{"port": 8080}],
             "endpoints": [{"addresses": ["10.244.1.5"], "nodeName": "node"}]}
        ))?)
    };
    let input = |slices: &[EndpointSlice]| {
        ruleset(&ProxyInput {
            node_name: "node",
            cluster_cidr: "10.244.0.0/16".parse().expect("a CIDR"),
            services: &services,
            slices,
        })
    };
    // First the pod serves `other`; then it serves `web` and `other` has nothing.
    let before = input(&[slice("other")?]);
    let after = input(&[slice("web")?]);
    let load = |script: &str, name: &str| -> Result<()> {
        let file = m.dir.path().join(name);
        std::fs::write(&file, script)?;
        run(&[
            "ip",
            "netns",
            "exec",
            &m.node,
            "nft",
            "-f",
            &file.display().to_string(),
        ])?;
        Ok(())
    };
    load(&before.script(), "before.nft")?;
    let update = after
        .table
        .update_script(&before.table)
        .context("the same cluster CIDR allows an update")?;
    ensure!(
        !update.contains("delete table"),
        "an update replaced the table: {update}"
    );
    load(&update, "update.nft")?;
    let updated = table_items(&m.node)?;

    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        match fetch(&m.node, "http://10.244.1.1:30080/") {
            Ok(b) => break b,
            Err(e) if Instant::now() > deadline => {
                return Err(e.context("NodePort after the update"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    ensure!(body == "hello from the pod\n", "{body:?}");
    ensure!(
        fetch(&m.node, "http://10.96.0.30/").is_err(),
        "`other` lost its endpoint but still answered"
    );

    load(&after.script(), "after.nft")?;
    let full = table_items(&m.node)?;
    ensure!(
        updated == full,
        "the updated table differs from a full load:\nupdated: {updated:?}\nfull: {full:?}"
    );
    Ok(())
}
