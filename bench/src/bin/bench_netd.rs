//! `bench_netd`: netd's figures (docs/benchmarks.md).
//!
//! - overlay: TCP throughput (iperf3, 5 s) and latency (ping) between two pods on two
//!   node namespaces through the VXLAN overlay, against the same between the two nodes
//!   directly on the underlay bridge, in one run;
//! - rules: building and loading (`nft -f`, one transaction) the ruleset of 1,000
//!   Services × 10 endpoints in a scratch network namespace, and reloading it after
//!   one endpoint changed;
//! - rules through the daemon: the same 1,000 × 10 written to the API while netd runs
//!   on a lab node, timed from the last write until the node's nftables table holds
//!   it, then again for one changed endpoint;
//! - dns: questions per second answered by netd's DNS server (the daemon's handler
//!   over hickory-server on loopback) for a zone of 1,000 Services.
//!
//! Each figure is printed as one `bench_netd <name> <value> <unit>` line.

use std::net::Ipv4Addr;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use skiff_client::{Api, Client, Patch, PatchParams, PostParams};
use skiff_netd::dns::Zone;
use skiff_netd::dns_server::{DnsServer, DnsState};
use skiff_netd::proxy::{ruleset, ProxyInput};
use skiff_tests::control_plane::ControlPlane;
use skiff_tests::kubelet::ensure_images;
use skiff_tests::netns::{run, task_pid, Lab};
use skiff_tests::wait::eventually;

#[derive(Parser, Debug)]
#[command(
    name = "bench_netd",
    about = "netd's overlay, rule sync and DNS figures"
)]
struct Args {
    /// Skip the overlay throughput/latency part (needs containerd, iperf3, ping).
    #[arg(long)]
    no_overlay: bool,
    /// Services for the rule sync and DNS parts.
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Endpoints per Service.
    #[arg(long, default_value_t = 10)]
    endpoints: usize,
    /// Seconds of DNS load.
    #[arg(long, default_value_t = 5)]
    dns_seconds: u64,
    /// Concurrent DNS clients.
    #[arg(long, default_value_t = 16)]
    dns_clients: usize,
}

fn objects(n: usize, per: usize) -> Result<(Vec<Service>, Vec<EndpointSlice>)> {
    let mut services = Vec::new();
    let mut slices = Vec::new();
    for i in 0..n {
        let name = format!("svc-{i:04}");
        let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 10)) + i as u32);
        services.push(serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"clusterIP": ip.to_string(), "type": "NodePort",
                     "ports": [{"name": "http", "port": 80, "nodePort": 30000 + (i % 2700)}]}
        }))?);
        let endpoints: Vec<serde_json::Value> = (0..per)
            .map(|j| {
                let k = (i * per + j) as u32;
                let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 244, 0, 0)) + 2 + k);
                json!({"addresses": [ip.to_string()], "nodeName": format!("node-{}", j % 3)})
            })
            .collect();
        slices.push(serde_json::from_value(json!({
            "metadata": {"name": format!("{name}-abc"), "namespace": "default",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": endpoints
        }))?);
    }
    Ok((services, slices))
}

/// Ruleset build + `nft -f` for `n` × `per`, then again after one endpoint changed.
async fn rules(n: usize, per: usize) -> Result<()> {
    let netns = format!("skiff-bench-{:06x}", rand::random::<u32>() & 0xff_ffff);
    run(&["ip", "netns", "add", &netns])?;
    struct Gone(String);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
        }
    }
    let _gone = Gone(netns.clone());
    let (services, mut slices) = objects(n, per)?;
    let load = |script: &str| -> Result<Duration> {
        let file = std::env::temp_dir().join(format!("{netns}.nft"));
        std::fs::write(&file, script)?;
        let started = Instant::now();
        run(&[
            "ip",
            "netns",
            "exec",
            &netns,
            "nft",
            "-f",
            &file.display().to_string(),
        ])?;
        let took = started.elapsed();
        let _ = std::fs::remove_file(&file);
        Ok(took)
    };
    let mut loaded: Option<skiff_netd::proxy::Table> = None;
    for round in ["full", "one_endpoint_changed"] {
        let started = Instant::now();
        let r = ruleset(&ProxyInput {
            node_name: "node-0",
            cluster_cidr: "10.244.0.0/16".parse()?,
            services: &services,
            slices: &slices,
        });
        // The second round is what netd does after a change: an update in place.
        let script = match &loaded {
            Some(before) => r
                .table
                .update_script(before)
                .context("an update of the same cluster CIDR")?,
            None => r.script(),
        };
        let build = started.elapsed();
        ensure!(r.skipped.is_empty(), "{:?}", r.skipped);
        let apply = load(&script)?;
        println!(
            "bench_netd rules_{round}_build_ms {:.1} ms ({n} services x {per} endpoints, {} KiB script)",
            build.as_secs_f64() * 1e3,
            script.len() / 1024
        );
        loaded = Some(r.table);
        println!(
            "bench_netd rules_{round}_nft_ms {:.1} ms",
            apply.as_secs_f64() * 1e3
        );
        println!(
            "bench_netd rules_{round}_total_ms {:.1} ms",
            (build + apply).as_secs_f64() * 1e3
        );
        if let Some(e) = slices[0].endpoints.first_mut() {
            e.addresses = vec!["10.244.255.254".into()];
        }
    }
    Ok(())
}

/// A DNS question for `name`, type A, with id `id`.
fn question(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

async fn dns(n: usize, per: usize, seconds: u64, clients: usize) -> Result<()> {
    let (services, slices) = objects(n, per)?;
    let state = Arc::new(DnsState::new(None));
    state.set_zone(Zone::build("cluster.local", &services, &slices));
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let addr = udp.local_addr()?;
    let server = DnsServer::start(state, udp, None);
    let answered = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let answered = answered.clone();
        tasks.push(tokio::spawn(async move {
            let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
            socket.connect(addr).await?;
            let mut buf = [0u8; 1500];
            let mut i = c;
            while Instant::now() < deadline {
                let id = (i % 65536) as u16;
                let q = question(id, &format!("svc-{:04}.default.svc.cluster.local", i % n));
                socket.send(&q).await?;
                match tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buf)).await {
                    // NOERROR with one answer.
                    Ok(Ok(len))
                        if len > 12
                            && buf[..2] == id.to_be_bytes()
                            && buf[3] & 0x0f == 0
                            && buf[7] == 1 =>
                    {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
                i += clients;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    let started = Instant::now();
    for t in tasks {
        t.await??;
    }
    let took = started.elapsed();
    server.shutdown().await;
    let total = answered.load(Ordering::Relaxed);
    ensure!(total > 0, "no DNS answers");
    println!(
        "bench_netd dns_queries_per_second {:.0} q/s ({clients} clients, {n} services, {total} answers)",
        total as f64 / took.as_secs_f64()
    );
    Ok(())
}

fn iperf(client_ns: &[&str], server_ns: &[&str], server_ip: &str) -> Result<f64> {
    let mut server = Command::new(server_ns[0]);
    server
        .args(&server_ns[1..])
        .args(["iperf3", "-s", "-1", "-p", "5201"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut server = server.spawn().context("iperf3 (Debian package iperf3)")?;
    let mut last = String::new();
    for _ in 0..50 {
        let mut args: Vec<&str> = client_ns.to_vec();
        args.extend(["iperf3", "-c", server_ip, "-p", "5201", "-t", "5", "-J"]);
        let out = Command::new(args[0]).args(&args[1..]).output()?;
        if out.status.success() {
            let _ = server.wait();
            let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            return v["end"]["sum_received"]["bits_per_second"]
                .as_f64()
                .context("iperf3 JSON without end.sum_received");
        }
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = server.kill();
    let _ = server.wait();
    bail!("iperf3 client failed: {last}")
}

fn ping_ms(client_ns: &[&str], ip: &str) -> Result<f64> {
    let mut args: Vec<&str> = client_ns.to_vec();
    args.extend(["ping", "-q", "-c", "50", "-i", "0.05", ip]);
    let out = Command::new(args[0]).args(&args[1..]).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // rtt min/avg/max/mdev = 0.051/0.075/0.120/0.010 ms
    let avg = text
        .lines()
        .find(|l| l.contains("min/avg/max"))
        .and_then(|l| l.split('=').nth(1))
        .and_then(|v| v.trim().split('/').nth(1))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("ping output: {text}"))?;
    Ok(avg)
}

/// Waits until node 0's nftables table mentions `needle`; the time it took.
async fn until_programmed(lab: &Lab, needle: &str, since: Instant) -> Result<Duration> {
    let node = lab.nodes[0].name.clone();
    eventually(
        &format!("{needle} in the rules"),
        Duration::from_secs(120),
        || async {
            let table = run(&[
                "ip",
                "netns",
                "exec",
                &node,
                "nft",
                "list",
                "table",
                "ip",
                "skiff_netd",
            ])?;
            Ok(table.contains(needle).then(|| since.elapsed()))
        },
    )
    .await
}

/// The daemon's rule sync: Services and EndpointSlices written through the API, until
/// the node's table holds the last of them; then one endpoint changed.
async fn rules_through_the_daemon(lab: &Lab, client: &Client, n: usize, per: usize) -> Result<()> {
    let (services, slices) = objects(n, per)?;
    let svc_api: Api<Service> = Api::namespaced(client.clone(), "default");
    let slice_api: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    let started = Instant::now();
    for chunk in services.chunks(50) {
        let created = futures::future::join_all(chunk.iter().map(|s| svc_api.create(&pp, s))).await;
        for c in created {
            c?;
        }
    }
    for chunk in slices.chunks(50) {
        let created =
            futures::future::join_all(chunk.iter().map(|s| slice_api.create(&pp, s))).await;
        for c in created {
            c?;
        }
    }
    let last_write = Instant::now();
    println!(
        "bench_netd api_writes_s {:.1} s ({n} services + {n} slices)",
        (last_write - started).as_secs_f64()
    );
    let last_ip = slices
        .last()
        .and_then(|s| s.endpoints.last())
        .and_then(|e| e.addresses.first())
        .cloned()
        .context("no endpoints")?;
    let took = until_programmed(lab, &format!("{last_ip} "), last_write).await?;
    println!(
        "bench_netd daemon_rules_after_last_write_ms {:.0} ms ({n} services x {per} endpoints; polled with nft list)",
        took.as_secs_f64() * 1e3
    );
    let name = slices[0].metadata.name.clone().context("slice name")?;
    let mut endpoints = serde_json::to_value(&slices[0].endpoints)?;
    endpoints[0]["addresses"] = json!(["10.244.250.250"]);
    let changed = Instant::now();
    slice_api
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"endpoints": endpoints})),
        )
        .await?;
    let took = until_programmed(lab, "10.244.250.250 ", changed).await?;
    println!(
        "bench_netd daemon_rules_one_endpoint_changed_ms {:.0} ms",
        took.as_secs_f64() * 1e3
    );
    let metrics = run(&[
        "curl",
        "-sf",
        &format!("http://{}:10249/metrics", lab.nodes[0].ip),
    ])?;
    if let Some(line) = metrics
        .lines()
        .find(|l| l.starts_with("netd_proxy_last_sync_microseconds "))
    {
        println!(
            "bench_netd daemon_last_sync_build_and_apply_ms {:.0} ms",
            line.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
                / 1e3
        );
    }
    Ok(())
}

async fn overlay(services: usize, per: usize) -> Result<()> {
    tokio::task::spawn_blocking(ensure_images).await??;
    let cp = ControlPlane::start(1).await?;
    let client = Client::from_kubeconfig(Some(cp.kubeconfig()), None)?;
    let mut lab = Lab::start(&cp, 2).await?;
    for i in 0..2 {
        lab.start_netd(i, &[])?;
    }
    for i in 0..2 {
        lab.wait_netd_healthy(i).await?;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut running = Vec::new();
    for i in 0..2 {
        let name = format!("bench-{i}");
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": lab.nodes[i].name, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "main", "image": "skiff.invalid/test/busybox:1",
                                     "command": ["sleep", "3600"]}]}
        }))?;
        pods.create(&PostParams::default(), &pod).await?;
        let ns = lab.nodes[i].containerd_namespace.clone();
        let pods = pods.clone();
        let r = eventually(&format!("{name} running"), Duration::from_secs(120), || {
            let (pods, name, ns) = (pods.clone(), name.clone(), ns.clone());
            async move {
                let p = pods.get(&name).await?;
                let st = p.status.unwrap_or_default();
                let id = st
                    .container_statuses
                    .and_then(|c| c.into_iter().next())
                    .filter(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
                    .and_then(|c| c.container_id);
                match (st.pod_ip, id) {
                    (Some(ip), Some(id)) => Ok(Some((ip, task_pid(&ns, &id)?))),
                    _ => Ok(None),
                }
            }
        })
        .await?;
        running.push(r);
    }
    let pid = |i: usize| running[i].1.to_string();
    let (p0, p1) = (pid(0), pid(1));
    let pod_ns = |p: &str| {
        vec![
            "nsenter".to_string(),
            "-t".into(),
            p.to_string(),
            "-n".into(),
            "--".into(),
        ]
    };
    let pod0 = pod_ns(&p0);
    let pod1 = pod_ns(&p1);
    let pod0: Vec<&str> = pod0.iter().map(String::as_str).collect();
    let pod1: Vec<&str> = pod1.iter().map(String::as_str).collect();
    let node0 = ["ip", "netns", "exec", lab.nodes[0].name.as_str()];
    let node1 = ["ip", "netns", "exec", lab.nodes[1].name.as_str()];
    let node1_ip = lab.nodes[1].ip.to_string();
    let pod1_ip = running[1].0.clone();

    let node_bps = iperf(&node0, &node1, &node1_ip)?;
    let pod_bps = iperf(&pod0, &pod1, &pod1_ip)?;
    let node_ms = ping_ms(&node0, &node1_ip)?;
    let pod_ms = ping_ms(&pod0, &pod1_ip)?;
    println!("bench_netd node_to_node_gbps {:.2} Gbit/s", node_bps / 1e9);
    println!("bench_netd pod_to_pod_gbps {:.2} Gbit/s", pod_bps / 1e9);
    println!(
        "bench_netd pod_to_pod_throughput_ratio {:.0} % of node-to-node",
        100.0 * pod_bps / node_bps
    );
    println!("bench_netd node_to_node_rtt_ms {node_ms:.3} ms");
    println!("bench_netd pod_to_pod_rtt_ms {pod_ms:.3} ms");
    rules_through_the_daemon(&lab, &client, services, per).await?;
    drop(lab);
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = Args::parse();
    let result = async {
        rules(args.services, args.endpoints).await?;
        dns(
            args.services,
            args.endpoints,
            args.dns_seconds,
            args.dns_clients,
        )
        .await?;
        if !args.no_overlay {
            overlay(args.services, args.endpoints).await?;
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_netd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
