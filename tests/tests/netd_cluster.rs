//! `skiff netd` on three machines: node network namespaces on a bridge, each with a
//! `skiff kubelet` (its own containerd namespace) and a `skiff netd`, the control
//! plane on the host. Real pods, real VXLAN, real nftables, real DNS queries.
//!
//! The lab's controller-manager gives the nodes their podCIDRs and writes the
//! Services' EndpointSlices from the pods, as in a cluster; cluster DNS answers on
//! the node-local address every kubelet is given.
//!
//! One set of namespaces serves the whole binary, so the checks run in one test, in
//! order; the destructive ones (netd restart, node deletion) come last.

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use serde_json::json;
use skiff_client::{Api, Client, DeleteParams, PostParams};
use skiff_tests::control_plane::ControlPlane;
use skiff_tests::kubelet::ensure_images;
use skiff_tests::netns::{run, task_pid, Lab};
use skiff_tests::wait::eventually;

const TIMEOUT: Duration = Duration::from_secs(120);
const BUSYBOX: &str = "skiff.invalid/test/busybox:1";

/// A pod on `node` serving HTTP on 8080: `/` answers its name, `/cgi-bin/ip` the
/// client address it sees.
fn server_pod(name: &str, node: &str, labels: serde_json::Value) -> Result<Pod> {
    let script = format!(
        "mkdir -p /tmp/w/cgi-bin && echo {name} > /tmp/w/index.html && \
         printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' > /tmp/w/cgi-bin/ip && \
         chmod +x /tmp/w/cgi-bin/ip && exec httpd -f -p 8080 -h /tmp/w"
    );
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "main", "image": BUSYBOX,
                                 "command": ["sh", "-c", script]}]}
    }))?)
}

fn client_pod(name: &str, node: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "main", "image": BUSYBOX,
                                 "command": ["sleep", "3600"]}]}
    }))?)
}

/// What the test needs of a running pod.
#[derive(Clone, Debug)]
struct Running {
    ip: String,
    pid: u32,
}

async fn wait_running(pods: &Api<Pod>, name: &str, containerd_ns: &str) -> Result<Running> {
    eventually(&format!("pod {name} running"), TIMEOUT, || async {
        let p = pods.get(name).await?;
        let st = p.status.clone().unwrap_or_default();
        let id = st
            .container_statuses
            .as_ref()
            .and_then(|c| c.first())
            .filter(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
            .and_then(|c| c.container_id.clone());
        match (st.pod_ip.clone(), id) {
            (Some(ip), Some(id)) => Ok(Some(Running {
                ip,
                pid: task_pid(containerd_ns, &id)?,
            })),
            _ => bail!("status {}", serde_json::to_string(&st)?),
        }
    })
    .await
}

/// Runs `args` (host binaries) in a pod's network namespace.
fn in_pod_net(pod: &Running, args: &[&str]) -> Result<Output> {
    Ok(Command::new("nsenter")
        .arg("-t")
        .arg(pod.pid.to_string())
        .arg("-n")
        .arg("--")
        .args(args)
        .output()?)
}

/// Runs `args` inside a pod: its network and mount namespaces (its own busybox and
/// /etc/resolv.conf).
fn in_pod(pod: &Running, args: &[&str]) -> Result<Output> {
    Ok(Command::new("nsenter")
        .arg("-t")
        .arg(pod.pid.to_string())
        .args(["-n", "-m", "--"])
        .args(args)
        .output()?)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn curl_from(pod: &Running, url: &str) -> Result<String> {
    let out = in_pod_net(pod, &["curl", "-sS", "--max-time", "5", url])?;
    ensure!(out.status.success(), "curl {url}: {}", text(&out));
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// busybox httpd's REMOTE_ADDR (`[::ffff:10.0.0.1]`) as a plain IPv4 address.
fn remote_addr(s: &str) -> String {
    s.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_start_matches("::ffff:")
        .to_string()
}

fn curl_host(url: &str) -> Result<String> {
    Ok(run(&["curl", "-sS", "--max-time", "5", url])?
        .trim()
        .to_string())
}

fn service(name: &str, spec: serde_json::Value) -> Result<Service> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec
    }))?)
}

/// Lines of `ip <args>` in a node, for counting overlay entries.
fn entries(lab: &Lab, i: usize, args: &[&str]) -> Result<Vec<String>> {
    Ok(lab.nodes[i]
        .exec(args)?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

fn overlay_state(lab: &Lab, i: usize) -> Result<(Vec<String>, Vec<String>, Vec<String>)> {
    let routes = entries(lab, i, &["ip", "-4", "route", "show", "dev", "skiff.1"])?;
    let neighbors = entries(lab, i, &["ip", "-4", "neigh", "show", "dev", "skiff.1"])?;
    let fdb: Vec<String> = entries(lab, i, &["bridge", "fdb", "show", "dev", "skiff.1"])?
        .into_iter()
        .filter(|l| l.contains(" dst "))
        .collect();
    Ok((routes, neighbors, fdb))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlay_services_and_dns_across_three_nodes() -> Result<()> {
    tokio::task::spawn_blocking(ensure_images).await??;
    let cp = ControlPlane::start(1).await?;
    let client = Client::from_kubeconfig(Some(cp.kubeconfig()), None)?;
    let mut lab = Lab::start(&cp, 3).await?;
    // The nodes' upstream resolver takes questions and never answers.
    let hanging = std::net::UdpSocket::bind((lab.host_ip, 53))?;
    let resolv = cp.dir().join("resolv.conf");
    std::fs::write(&resolv, format!("nameserver {}\n", lab.host_ip))?;
    let resolv_flag = format!("--resolv-conf={}", resolv.display());
    for i in 0..3 {
        lab.start_netd(i, &[&resolv_flag])?;
    }
    for i in 0..3 {
        lab.wait_netd_healthy(i).await?;
    }
    let names: Vec<String> = lab.nodes.iter().map(|n| n.name.clone()).collect();
    let ns: Vec<String> = lab
        .nodes
        .iter()
        .map(|n| n.containerd_namespace.clone())
        .collect();

    // Each netd published its VTEP and programmed the two other nodes.
    let nodes: Api<Node> = Api::cluster(client.clone());
    for (i, name) in names.iter().enumerate() {
        let n = nodes.get(name).await?;
        let a = n.metadata.annotations.unwrap_or_default();
        ensure!(
            a.get("skiff.io/public-ip") == Some(&lab.nodes[i].ip.to_string()),
            "annotations of {name}: {a:?}"
        );
        ensure!(a.contains_key("skiff.io/backend-data"), "{a:?}");
    }
    for i in 0..3 {
        eventually("two peers programmed", TIMEOUT, || async {
            let (r, n, f) = overlay_state(&lab, i)?;
            Ok((r.len() == 2 && n.len() == 2 && f.len() == 2).then_some(()))
        })
        .await?;
    }

    // Pods: a client on node 0, web servers on nodes 1 and 2.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    pods.create(&pp, &client_pod("client", &names[0])?).await?;
    pods.create(
        &pp,
        &server_pod("web-b", &names[1], json!({"app": "web", "only": "b"}))?,
    )
    .await?;
    pods.create(&pp, &server_pod("web-c", &names[2], json!({"app": "web"}))?)
        .await?;
    let client_pod = wait_running(&pods, "client", &ns[0]).await?;
    let web_b = wait_running(&pods, "web-b", &ns[1]).await?;
    let web_c = wait_running(&pods, "web-c", &ns[2]).await?;
    for (pod, node) in [(&web_b, &lab.nodes[1]), (&web_c, &lab.nodes[2])] {
        let net = node.pod_cidr.trim_end_matches(".0/24");
        ensure!(
            pod.ip.starts_with(&format!("{net}.")),
            "{} not in {}",
            pod.ip,
            node.pod_cidr
        );
    }

    // Pod to pod across nodes by IP: ping and HTTP.
    let ping = in_pod(&client_pod, &["ping", "-c", "2", "-W", "5", &web_b.ip])?;
    ensure!(ping.status.success(), "ping {}: {}", web_b.ip, text(&ping));
    let body = eventually("HTTP from client to web-b", TIMEOUT, || async {
        Ok(Some(curl_from(
            &client_pod,
            &format!("http://{}:8080/", web_b.ip),
        )?))
    })
    .await?;
    ensure!(body == "web-b", "{body:?}");
    // The pod sees the client pod's own address: no NAT inside the cluster CIDR.
    let seen = remote_addr(&curl_from(
        &client_pod,
        &format!("http://{}:8080/cgi-bin/ip", web_c.ip),
    )?);
    ensure!(
        seen == client_pod.ip,
        "web-c saw {seen}, not {}",
        client_pod.ip
    );

    // ClusterIP across two nodes: both answer.
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let web = services
        .create(
            &pp,
            &service(
                "web",
                json!({"selector": {"app": "web"},
                       "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}),
            )?,
        )
        .await?;
    let cluster_ip = web
        .spec
        .and_then(|s| s.cluster_ip)
        .context("web has no clusterIP")?;
    let url = format!("http://{cluster_ip}/");
    eventually("ClusterIP answers", TIMEOUT, || async {
        Ok(Some(curl_from(&client_pod, &url)?))
    })
    .await?;
    let mut responders = BTreeSet::new();
    for _ in 0..50 {
        responders.insert(curl_from(&client_pod, &url)?);
    }
    ensure!(
        responders == BTreeSet::from(["web-b".to_string(), "web-c".to_string()]),
        "responders over 50 requests: {responders:?}"
    );
    // And from a node itself.
    let from_node = lab.nodes[0].exec(&["curl", "-sS", "--max-time", "5", &url])?;
    ensure!(from_node.trim().starts_with("web-"), "{from_node:?}");

    // No endpoints: refused (curl's exit 7), not a timeout (28).
    let empty = services
        .create(
            &pp,
            &service("empty", json!({"ports": [{"name": "http", "port": 80}]}))?,
        )
        .await?;
    let empty_ip = empty.spec.and_then(|s| s.cluster_ip).context("clusterIP")?;
    let empty_url = format!("http://{empty_ip}/");
    eventually(
        "a Service without endpoints is refused",
        TIMEOUT,
        || async {
            let out = in_pod_net(
                &client_pod,
                &["curl", "-sS", "--max-time", "10", &empty_url],
            )?;
            match out.status.code() {
                Some(7) => Ok(Some(())),
                other => bail!("curl exit {other:?}: {}", text(&out)),
            }
        },
    )
    .await?;

    // NodePort (policy Cluster) on every node, from the host.
    services
        .create(
            &pp,
            &service(
                "web-np",
                json!({"type": "NodePort", "selector": {"app": "web"},
                       "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}]}),
            )?,
        )
        .await?;
    for node in &lab.nodes {
        let url = format!("http://{}:30080/", node.ip);
        let body = eventually(&format!("NodePort on {}", node.name), TIMEOUT, || async {
            Ok(Some(curl_host(&url)?))
        })
        .await?;
        ensure!(body.starts_with("web-"), "{url}: {body:?}");
    }

    // externalTrafficPolicy: Local, endpoint on node 1 only: node 1 answers and the pod
    // sees the host's address; node 0 has no endpoint and does not answer.
    services
        .create(
            &pp,
            &service(
                "web-local",
                json!({"type": "NodePort", "externalTrafficPolicy": "Local",
                       "selector": {"app": "web", "only": "b"},
                       "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30081}]}),
            )?,
        )
        .await?;
    let local_url = format!("http://{}:30081/cgi-bin/ip", lab.nodes[1].ip);
    let seen = eventually("Local NodePort answers on node 1", TIMEOUT, || async {
        Ok(Some(remote_addr(&curl_host(&local_url)?)))
    })
    .await?;
    ensure!(
        seen == lab.host_ip.to_string(),
        "the pod saw {seen}, not the client's {}",
        lab.host_ip
    );
    let other = run(&[
        "curl",
        "-sS",
        "--max-time",
        "3",
        &format!("http://{}:30081/", lab.nodes[0].ip),
    ]);
    ensure!(
        other.is_err(),
        "node 0 has no local endpoint but answered: {other:?}"
    );

    // ExternalIP: an address routed (by the host) to node 0.
    let external = format!("10.250.{}.200", lab.host_ip.octets()[2]);
    run(&[
        "ip",
        "route",
        "add",
        &format!("{external}/32"),
        "via",
        &lab.nodes[0].ip.to_string(),
        "dev",
        &lab.bridge,
    ])?;
    services
        .create(
            &pp,
            &service(
                "web-ext-ip",
                json!({"externalIPs": [external], "selector": {"app": "web"},
                       "ports": [{"name": "http", "port": 8088, "targetPort": 8080}]}),
            )?,
        )
        .await?;
    let ext_url = format!("http://{external}:8088/");
    let body = eventually("ExternalIP answers", TIMEOUT, || async {
        Ok(Some(curl_host(&ext_url)?))
    })
    .await?;
    ensure!(body.starts_with("web-"), "{body:?}");

    // DNS from the busybox client pod, through its resolv.conf (search path).
    services
        .create(
            &pp,
            &service(
                "web-headless",
                json!({"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"name": "http", "port": 8080}]}),
            )?,
        )
        .await?;
    services
        .create(
            &pp,
            &service(
                "docs",
                json!({"type": "ExternalName", "externalName": "docs.example.invalid"}),
            )?,
        )
        .await?;
    let lookup = |name: &'static str| {
        let pod = client_pod.clone();
        async move {
            let out = in_pod(&pod, &["nslookup", name])?;
            Ok::<_, anyhow::Error>(text(&out))
        }
    };
    let out = eventually("nslookup of the ClusterIP Service", TIMEOUT, || async {
        let t = lookup("web.default.svc.cluster.local").await?;
        if t.contains(&cluster_ip) {
            Ok(Some(t))
        } else {
            bail!("{t}")
        }
    })
    .await
    .with_context(|| format!("netd log:\n{}", lab.nodes[0].netd_log_tail(30)))?;
    ensure!(out.contains(&cluster_ip), "{out}");
    let out = lookup("web").await?;
    ensure!(
        out.contains(&cluster_ip),
        "short name via the search path: {out}"
    );
    // The zone follows the Services after netd's debounce.
    eventually("headless: every endpoint", TIMEOUT, || async {
        let out = lookup("web-headless.default.svc.cluster.local").await?;
        if out.contains(&web_b.ip) && out.contains(&web_c.ip) {
            Ok(Some(()))
        } else {
            bail!("{out}")
        }
    })
    .await?;
    eventually("ExternalName as a CNAME", TIMEOUT, || async {
        let out = lookup("docs.default.svc.cluster.local").await?;
        if out.contains("docs.example.invalid") {
            Ok(Some(()))
        } else {
            bail!("{out}")
        }
    })
    .await?;

    // A name outside the cluster goes to the hanging upstream: SERVFAIL, a log line,
    // and the cluster's names still answer.
    let out = in_pod(&client_pod, &["nslookup", "example.org."])?;
    ensure!(
        !out.status.success(),
        "example.org resolved: {}",
        text(&out)
    );
    eventually("the upstream failure is logged", TIMEOUT, || async {
        Ok(lab.nodes[0]
            .netd_log_tail(200)
            .contains("the upstream resolver failed")
            .then_some(()))
    })
    .await?;
    let out = lookup("web").await?;
    ensure!(
        out.contains(&cluster_ip),
        "after the upstream failure: {out}"
    );
    drop(hanging);

    // Bad input: a node whose netd never ran (no VTEP published; whether node IPAM has
    // given it a podCIDR yet or not, it is skipped with the reason), two nodes claiming
    // one underlay address, and a Service port netd cannot program; each is logged, and
    // the rest keeps working.
    let ghost = |name: &str, cidr: &str, ip: &str| -> Result<Node> {
        Ok(serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": {
                "skiff.io/public-ip": ip,
                "skiff.io/backend-data": "{\"VNI\":1,\"VtepMAC\":\"02:00:00:00:00:09\"}"}},
            "spec": {"podCIDR": cidr, "podCIDRs": [cidr]}
        }))?)
    };
    let dup_ip = format!("10.250.{}.99", lab.host_ip.octets()[2]);
    nodes
        .create(
            &pp,
            &serde_json::from_value(json!({"metadata": {"name": "ghost-no-netd"}}))?,
        )
        .await?;
    nodes
        .create(&pp, &ghost("ghost-a", "10.244.20.0/24", &dup_ip)?)
        .await?;
    nodes
        .create(&pp, &ghost("ghost-b", "10.244.21.0/24", &dup_ip)?)
        .await?;
    let bad_port = services
        .create(
            &pp,
            &service(
                "bad-port",
                json!({"externalIPs": ["fd00::10", external],
                       "ports": [{"name": "http", "port": 8089, "targetPort": 8080}]}),
            )?,
        )
        .await;
    let bad_port_created = bad_port.is_ok();
    eventually("bad input logged on node 0", TIMEOUT, || async {
        let log = lab.nodes[0].netd_log_tail(300);
        let seen = (log.contains("ghost-no-netd: no spec.podCIDR yet")
            || log.contains("ghost-no-netd: no skiff.io/backend-data"))
            && log.contains("clashes with node")
            && (!bad_port_created || log.contains("fd00::10 is not IPv4"));
        Ok(seen.then_some(()))
    })
    .await?;
    // ghost-a alone was a valid peer until ghost-b claimed its address: its entries go.
    eventually(
        "no overlay entries for the clashing nodes",
        TIMEOUT,
        || async {
            let (routes, neighbors, fdb) = overlay_state(&lab, 0)?;
            let clean = routes.len() == 2
                && neighbors.len() == 2
                && fdb.len() == 2
                && !routes
                    .iter()
                    .any(|r| r.contains("10.244.20.") || r.contains("10.244.21."));
            if clean {
                Ok(Some(()))
            } else {
                bail!("{routes:?} {neighbors:?} {fdb:?}")
            }
        },
    )
    .await?;
    let body = curl_from(&client_pod, &format!("http://{}:8080/", web_c.ip))?;
    ensure!(body == "web-c", "{body:?}");
    for g in ["ghost-no-netd", "ghost-a", "ghost-b"] {
        nodes.delete(g, &DeleteParams::default()).await?;
    }

    // netd restart on node 0: the traffic keeps working, nothing is duplicated.
    let before = overlay_state(&lab, 0)?;
    lab.nodes[0].stop_netd()?;
    let during = curl_from(&client_pod, &url)?;
    ensure!(during.starts_with("web-"), "while netd is down: {during:?}");
    lab.start_netd(0, &[&resolv_flag])?;
    lab.wait_netd_healthy(0).await?;
    let after = overlay_state(&lab, 0)?;
    ensure!(
        before == after,
        "overlay before {before:?}\nafter {after:?}"
    );
    let tables = lab.nodes[0].exec(&["nft", "list", "tables"])?;
    ensure!(
        tables.matches("table ip skiff_netd").count() == 1,
        "{tables}"
    );
    let mut responders = BTreeSet::new();
    for _ in 0..20 {
        responders.insert(curl_from(&client_pod, &url)?);
    }
    ensure!(responders.len() == 2, "after restart: {responders:?}");

    // Node 2 goes: its route, neighbor and FDB entry leave node 0.
    let node2_cidr = lab.nodes[2].pod_cidr.clone();
    lab.nodes[2].stop_netd()?;
    lab.stop_kubelet(2)?;
    nodes.delete(&names[2], &DeleteParams::default()).await?;
    eventually(
        "node 2's overlay entries gone on node 0",
        TIMEOUT,
        || async {
            let (r, n, f) = overlay_state(&lab, 0)?;
            if r.len() == 1
                && n.len() == 1
                && f.len() == 1
                && !r.iter().any(|l| l.contains(&node2_cidr))
            {
                Ok(Some(()))
            } else {
                bail!("routes {r:?} neighbors {n:?} fdb {f:?}")
            }
        },
    )
    .await?;
    // Node 1 is still reached.
    let body = curl_from(&client_pod, &format!("http://{}:8080/", web_b.ip))?;
    ensure!(body == "web-b", "{body:?}");
    drop(lab);
    Ok(())
}
