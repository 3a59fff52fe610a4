//! `port-forward`: local TCP ports to a pod's ports through the apiserver's
//! `pods/portforward` subresource, over Kubernetes' WebSocket port-forward protocol
//! (`v4.channel.k8s.io`): one WebSocket per accepted connection, channel 0 its data and
//! channel 1 its errors, the first frame on each carrying the port (2 bytes, little
//! endian). For `svc/NAME` (and workloads) a running pod of the selector is chosen and
//! service ports map to their targetPort, as kubectl does.

use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use crate::cluster::{encode, Ctx};
use crate::ws;

/// The subprotocols of WebSocket port-forwarding, best first.
pub const PROTOCOLS: [&str; 2] = ["v4.channel.k8s.io", "channel.k8s.io"];

/// `port-forward` flags.
#[derive(Args, Debug)]
pub struct PortForwardArgs {
    /// Addresses to listen on (comma separated); `localhost` is 127.0.0.1 and ::1.
    #[arg(long, value_delimiter = ',', default_value = "localhost")]
    address: Vec<String>,
    /// TYPE/NAME (pod/NAME, svc/NAME, deploy/NAME, …) or a pod's NAME.
    target: String,
    /// [LOCAL_PORT:]REMOTE_PORT, several allowed.
    #[arg(required = true)]
    ports: Vec<String>,
}

/// One `[LOCAL:]REMOTE` as written: the local port (0: any free one; None: same as
/// the remote) and the remote port, a number or a port name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// The local port, when given (`:80` gives 0).
    pub local: Option<u16>,
    /// The remote port or port name.
    pub remote: String,
}

/// Parses `8080`, `8888:80`, `:80` and `8080:http`.
pub fn parse_port(s: &str) -> Result<PortSpec> {
    let (local, remote) = match s.split_once(':') {
        Some(("", r)) => (Some(0), r),
        Some((l, r)) => (
            Some(
                l.parse::<u16>()
                    .with_context(|| format!("Error parsing local port '{l}'"))?,
            ),
            r,
        ),
        None => (None, s),
    };
    if remote.is_empty() {
        bail!("Remote port must be > 0");
    }
    if let Ok(n) = remote.parse::<u32>() {
        if n == 0 || n > 65535 {
            bail!("Remote port must be > 0 and < 65536");
        }
    }
    Ok(PortSpec {
        local,
        remote: remote.to_string(),
    })
}

/// A container port of the pod by name.
pub fn named_container_port(pod: &Value, name: &str) -> Result<u16> {
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| p["containerPort"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
        .with_context(|| {
            format!(
                "Pod '{}' does not have a named port '{name}'",
                crate::cluster::name_of(pod)
            )
        })
}

/// The (local, remote) ports for a pod: a named remote port is the container port of
/// that name; a missing local port is the remote's number.
pub fn pod_ports(pod: &Value, spec: &PortSpec) -> Result<(u16, u16)> {
    let remote = match spec.remote.parse::<u16>() {
        Ok(n) => n,
        Err(_) => named_container_port(pod, &spec.remote)?,
    };
    Ok((spec.local.unwrap_or(remote), remote))
}

/// The (local, remote) ports for a Service's port: REMOTE names a service port (by
/// number or name), the pod's side is its targetPort (a number, or a container port
/// name; absent or 0 means the service port); a missing local port is the service port.
pub fn service_ports(svc: &Value, pod: &Value, spec: &PortSpec) -> Result<(u16, u16)> {
    let svc_name = crate::cluster::name_of(svc);
    let ports: Vec<&Value> = svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let found = match spec.remote.parse::<u16>() {
        Ok(n) => ports
            .iter()
            .find(|p| p["port"].as_u64() == Some(u64::from(n)))
            .with_context(|| format!("Service {svc_name} does not have a service port {n}"))?,
        Err(_) => ports
            .iter()
            .find(|p| p["name"].as_str() == Some(spec.remote.as_str()))
            .with_context(|| {
                format!(
                    "Service '{svc_name}' does not have a named port '{}'",
                    spec.remote
                )
            })?,
    };
    let port = found["port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .with_context(|| format!("Service {svc_name} has a port without a number"))?;
    let target = match &found["targetPort"] {
        Value::String(name) => match name.parse::<u16>() {
            Ok(n) => n,
            Err(_) => named_container_port(pod, name)?,
        },
        Value::Number(n) => match n.as_u64().and_then(|n| u16::try_from(n).ok()) {
            Some(0) | None => port,
            Some(n) => n,
        },
        _ => port,
    };
    Ok((spec.local.unwrap_or(port), target))
}

/// A running pod matching `selector` (kubectl takes the first active one).
async fn pod_for_selector(ctx: &Ctx, ns: &str, selector: &str, what: &str) -> Result<Value> {
    if selector.is_empty() {
        bail!("{what} has no selector, so there is no pod to forward to");
    }
    let list = ctx
        .get_json(&format!(
            "/api/v1/namespaces/{}/pods?labelSelector={}",
            encode(ns),
            encode(selector)
        ))
        .await?;
    let mut items: Vec<Value> = list["items"].as_array().cloned().unwrap_or_default();
    items.retain(|p| p["metadata"]["deletionTimestamp"].is_null());
    items.sort_by_key(|p| {
        (
            p["status"]["phase"].as_str() != Some("Running"),
            p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    });
    match items.into_iter().next() {
        Some(p) => Ok(p),
        None => bail!("no pods found for {what} (selector {selector})"),
    }
}

/// Runs `port-forward`.
pub async fn run(ctx: Arc<Ctx>, a: PortForwardArgs) -> Result<()> {
    let ctx_arc = ctx.clone();
    let ctx = &*ctx_arc;
    let specs: Vec<PortSpec> = a
        .ports
        .iter()
        .map(|p| parse_port(p))
        .collect::<Result<_>>()?;
    let ns = ctx.namespace.clone();
    let (kind, name) = match a.target.split_once('/') {
        Some((k, n)) => (k.to_string(), n.to_string()),
        None => ("pod".to_string(), a.target.clone()),
    };
    let nsq = encode(&ns);
    let (pod, mapping) = match kind.as_str() {
        "pod" | "pods" | "po" => {
            let pod = ctx
                .get_json(&format!("/api/v1/namespaces/{nsq}/pods/{}", encode(&name)))
                .await?;
            let m = specs
                .iter()
                .map(|s| pod_ports(&pod, s))
                .collect::<Result<Vec<_>>>()?;
            (pod, m)
        }
        "svc" | "service" | "services" => {
            let svc = ctx
                .get_json(&format!(
                    "/api/v1/namespaces/{nsq}/services/{}",
                    encode(&name)
                ))
                .await?;
            let selector = crate::cluster::labels_selector(&svc["spec"]["selector"]);
            let pod = pod_for_selector(ctx, &ns, &selector, &format!("service/{name}")).await?;
            let m = specs
                .iter()
                .map(|s| service_ports(&svc, &pod, s))
                .collect::<Result<Vec<_>>>()?;
            (pod, m)
        }
        other => {
            let resource = ctx.discovery().await?.resolve(other)?;
            let path = crate::cluster::item_path(resource, ctx.ns_for(resource, None), &name);
            let obj = ctx.get_json(&path).await?;
            let selector = crate::cluster::label_selector_query(&obj["spec"]["selector"]);
            let pod = pod_for_selector(ctx, &ns, &selector, &format!("{other}/{name}")).await?;
            let m = specs
                .iter()
                .map(|s| pod_ports(&pod, s))
                .collect::<Result<Vec<_>>>()?;
            (pod, m)
        }
    };
    let pod_name = crate::cluster::name_of(&pod).to_string();
    let phase = pod["status"]["phase"].as_str().unwrap_or_default();
    if phase != "Running" {
        bail!("unable to forward port because pod is not running. Current status={phase}");
    }
    let url = Arc::new(format!(
        "/api/v1/namespaces/{nsq}/pods/{}/portforward",
        encode(&pod_name)
    ));
    let mut addresses: Vec<IpAddr> = Vec::new();
    for a in &a.address {
        match a.as_str() {
            "localhost" => addresses.extend([
                IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            ]),
            other => addresses.push(
                other
                    .parse()
                    .with_context(|| format!("{other} is not a valid IP address"))?,
            ),
        }
    }
    let explicit_localhost = a.address.iter().any(|x| x != "localhost");
    let mut servers = Vec::new();
    for (local, remote) in mapping {
        let mut bound_port = local;
        let mut any_bound = false;
        for ip in &addresses {
            let listener = match TcpListener::bind((*ip, bound_port)).await {
                Ok(l) => l,
                // localhost's ::1 may be missing (IPv6 off); 127.0.0.1 suffices then.
                Err(_) if !explicit_localhost && ip.is_ipv6() => continue,
                Err(e) => bail!("unable to listen on port {local}: {ip}:{bound_port}: {e}"),
            };
            let addr = listener.local_addr()?;
            bound_port = addr.port();
            any_bound = true;
            let shown = match addr.ip() {
                IpAddr::V6(v6) => format!("[{v6}]"),
                IpAddr::V4(v4) => v4.to_string(),
            };
            let _ = writeln!(
                std::io::stdout(),
                "Forwarding from {shown}:{} -> {remote}",
                addr.port()
            );
            servers.push(tokio::spawn(serve(
                ctx_arc.clone(),
                listener,
                url.clone(),
                remote,
            )));
        }
        if !any_bound {
            bail!("unable to listen on any of the requested ports: [{local}]");
        }
    }
    for s in servers {
        let _ = s.await;
    }
    Ok(())
}

/// Accepts connections and forwards each over a WebSocket of its own.
async fn serve(ctx: Arc<Ctx>, listener: TcpListener, url: Arc<String>, remote: u16) {
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            continue;
        };
        let local = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let _ = writeln!(std::io::stdout(), "Handling connection for {local}");
        let (ctx, url) = (ctx.clone(), url.clone());
        tokio::spawn(async move {
            if let Err(e) = forward(&ctx, conn, &url, remote).await {
                eprintln!("E an error occurred forwarding {local} -> {remote}: {e:#}");
            }
        });
    }
}

/// One connection over one WebSocket.
pub async fn forward(ctx: &Ctx, conn: TcpStream, url: &str, remote: u16) -> Result<()> {
    let (socket, _) = ws::connect(ctx, &format!("{url}?ports={remote}"), &PROTOCOLS).await?;
    let _ = conn.set_nodelay(true);
    let (mut sink, mut source) = socket.split();
    let (mut reader, mut writer) = conn.into_split();
    let upstream = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            let mut msg = Vec::with_capacity(n + 1);
            msg.push(0u8);
            msg.extend_from_slice(&buf[..n]);
            sink.send(Message::Binary(msg.into())).await?;
        }
        let _ = sink.send(Message::Close(None)).await;
        anyhow::Ok(())
    };
    let downstream = async {
        // The first frame of each channel is its port, not data.
        let mut seen = [false; 2];
        while let Some(msg) = source.next().await {
            let data = match msg? {
                Message::Binary(b) => b,
                Message::Close(_) => break,
                _ => continue,
            };
            let Some((&chan, payload)) = data.split_first() else {
                continue;
            };
            let chan = usize::from(chan);
            if chan > 1 {
                continue;
            }
            if !seen[chan] {
                seen[chan] = true;
                continue;
            }
            if chan == 0 {
                writer.write_all(payload).await?;
            } else if !payload.is_empty() {
                bail!("{}", String::from_utf8_lossy(payload));
            }
        }
        let _ = writer.shutdown().await;
        anyhow::Ok(())
    };
    tokio::select! {
        r = upstream => r,
        r = downstream => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn port_specs_parse_as_kubectl_reads_them() {
        assert_eq!(
            parse_port("8080").unwrap(),
            PortSpec {
                local: None,
                remote: "8080".into()
            }
        );
        assert_eq!(
            parse_port("8888:80").unwrap(),
            PortSpec {
                local: Some(8888),
                remote: "80".into()
            }
        );
        assert_eq!(parse_port(":80").unwrap().local, Some(0));
        assert_eq!(parse_port("9000:http").unwrap().remote, "http");
        assert!(parse_port("x:80").is_err());
        assert!(parse_port("8080:").is_err());
        assert!(parse_port("70000").is_err());
    }

    fn pod() -> Value {
        json!({"metadata": {"name": "web-1"}, "spec": {"containers": [
            {"name": "a", "ports": [{"name": "http", "containerPort": 8080}]}]}})
    }

    #[test]
    fn service_ports_map_to_their_target_ports() {
        let svc = json!({"metadata": {"name": "web"}, "spec": {"ports": [
            {"name": "web", "port": 80, "targetPort": "http"},
            {"name": "raw", "port": 81, "targetPort": 9000},
            {"port": 82}]}});
        let p = |s: &str| parse_port(s).unwrap();
        assert_eq!(service_ports(&svc, &pod(), &p("80")).unwrap(), (80, 8080));
        assert_eq!(
            service_ports(&svc, &pod(), &p("5000:81")).unwrap(),
            (5000, 9000)
        );
        assert_eq!(service_ports(&svc, &pod(), &p("82")).unwrap(), (82, 82));
        assert_eq!(service_ports(&svc, &pod(), &p("web")).unwrap(), (80, 8080));
        assert!(service_ports(&svc, &pod(), &p("99"))
            .unwrap_err()
            .to_string()
            .contains("does not have a service port 99"));
    }

    #[test]
    fn named_pod_ports_resolve() {
        let p = |s: &str| parse_port(s).unwrap();
        assert_eq!(pod_ports(&pod(), &p("http")).unwrap(), (8080, 8080));
        assert_eq!(pod_ports(&pod(), &p("9:http")).unwrap(), (9, 8080));
        assert!(pod_ports(&pod(), &p("grpc")).is_err());
    }
}
