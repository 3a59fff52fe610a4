//! `/portForward/{namespace}/{pod}`: Kubernetes' WebSocket port-forwarding
//! (subprotocol `v4.channel.k8s.io`, or the older `channel.k8s.io`). The request names
//! ports with `?port=N` (repeated; `ports=` as the API's PodPortForwardOptions spells it
//! is read too). For the i-th port, channel 2i carries data and 2i+1 errors; the first
//! frame the kubelet sends on each is the port, 2 bytes little endian. Each port is a TCP
//! connection to 127.0.0.1:PORT made from inside the pod's network namespace.
//!
//! kubectl 1.32 port-forwards over SPDY (tunnelled in a WebSocket as
//! `SPDY/3.1+portforward.k8s.io`, then plain SPDY), which skiff does not speak: those
//! requests get a 400 naming `skiffctl port-forward`, never a hang.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::netns::PodNamespacePaths;
use crate::runtime::pod_dir;
use crate::streaming::{status_response, Streaming};

/// The subprotocols of WebSocket port-forwarding this server speaks, best first.
pub const PORT_FORWARD_PROTOCOLS: [&str; 2] = ["v4.channel.k8s.io", "channel.k8s.io"];

/// How long connecting to a port inside the pod may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The refusal for SPDY port-forwarding (what kubectl port-forward sends).
pub const SPDY_REFUSAL: &str = "port-forwarding over SPDY (what kubectl port-forward uses, SPDY/3.1+portforward.k8s.io) is not served by skiff's kubelet; use `skiffctl port-forward`, which speaks WebSocket port-forwarding (v4.channel.k8s.io)";

/// The ports of a request: `port=` and `ports=`, each possibly comma separated.
pub fn parse_ports(query: &str) -> std::result::Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if k != "port" && k != "ports" {
            continue;
        }
        for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => ports.push(n),
                _ => return Err(format!("invalid port {p:?}: a port is 1-65535")),
            }
        }
    }
    if ports.is_empty() {
        return Err("at least one port must be given with ?port=N".into());
    }
    Ok(ports)
}

/// Whether the request asks for SPDY: an `Upgrade: SPDY/…` or a SPDY subprotocol.
pub fn wants_spdy(headers: &HeaderMap) -> bool {
    let mentions = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_uppercase().contains("SPDY"))
    };
    let channel_offered = headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| PORT_FORWARD_PROTOCOLS.contains(&p.trim()));
    mentions("upgrade") || (mentions("sec-websocket-protocol") && !channel_offered)
}

/// The first frame of a channel: its number, then the port little endian.
pub fn port_frame(channel: u8, port: u16) -> Vec<u8> {
    let [lo, hi] = port.to_le_bytes();
    vec![channel, lo, hi]
}

pub(crate) async fn port_forward(
    State(s): State<Arc<Streaming>>,
    UrlPath((namespace, pod)): UrlPath<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    upgrade: std::result::Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if wants_spdy(&headers) {
        tracing::info!(pod = %format!("{namespace}/{pod}"), "refused a SPDY port-forward");
        return status_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            SPDY_REFUSAL.to_string(),
        );
    }
    let ports = match parse_ports(query.as_deref().unwrap_or("")) {
        Ok(p) => p,
        Err(e) => return status_response(StatusCode::BAD_REQUEST, "BadRequest", e),
    };
    let Ok(upgrade) = upgrade else {
        return status_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!(
                "port-forward needs a WebSocket upgrade with subprotocol {}",
                PORT_FORWARD_PROTOCOLS[0]
            ),
        );
    };
    let Some(uid) = s
        .pods
        .get(Some(&namespace), &pod)
        .and_then(|p| p.metadata.uid.clone())
    else {
        return status_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("pod {namespace}/{pod} is not running on this node"),
        );
    };
    let netns = PodNamespacePaths::new(&pod_dir(&s.root_dir, &uid)).net;
    if !netns.exists() {
        return status_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("pod {namespace}/{pod} has no network namespace (its sandbox is not running)"),
        );
    }
    let upgrade = upgrade.protocols(PORT_FORWARD_PROTOCOLS);
    if upgrade.selected_protocol().is_none() {
        return status_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!(
                "none of the offered WebSocket subprotocols is served; port-forward speaks {}",
                PORT_FORWARD_PROTOCOLS.join(", ")
            ),
        );
    }
    tracing::info!(pod = %format!("{namespace}/{pod}"), ?ports, "port-forward");
    let label = format!("{namespace}/{pod}");
    upgrade.on_upgrade(move |socket| session(socket, netns, ports, label))
}

/// Connects to 127.0.0.1:`port` from a thread of its own moved into `netns` (a pooled
/// thread must never change namespace); the socket stays in the namespace it was made in.
fn connect_in(
    netns: PathBuf,
    port: u16,
) -> oneshot::Receiver<std::io::Result<std::net::TcpStream>> {
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        let result = (|| {
            let ns = std::fs::File::open(&netns)?;
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)?;
            std::net::TcpStream::connect_timeout(
                &SocketAddr::from(([127, 0, 0, 1], port)),
                CONNECT_TIMEOUT,
            )
        })();
        let _ = tx.send(result);
    });
    rx
}

async fn connect(netns: PathBuf, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let stream = connect_in(netns, port)
        .await
        .map_err(|_| std::io::Error::other("the connecting thread ended"))??;
    stream.set_nonblocking(true)?;
    let _ = stream.set_nodelay(true);
    tokio::net::TcpStream::from_std(stream)
}

async fn session(socket: WebSocket, netns: PathBuf, ports: Vec<u16>, label: String) {
    let (mut ws_tx, mut ws_rx) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(32);
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            let close = matches!(m, Message::Close(_));
            if ws_tx.send(m).await.is_err() || close {
                return;
            }
        }
    });
    let (done_tx, mut done_rx) = mpsc::channel::<usize>(ports.len().max(1));
    let mut writers = Vec::with_capacity(ports.len());
    let mut readers = Vec::new();
    for (i, &port) in ports.iter().enumerate() {
        // Channel numbers are one byte: at most 128 ports in a session.
        let Ok(data) = u8::try_from(2 * i) else {
            writers.push(None);
            let _ = done_tx.send(i).await;
            continue;
        };
        let error = data + 1;
        for ch in [data, error] {
            let _ = out_tx
                .send(Message::Binary(port_frame(ch, port).into()))
                .await;
        }
        match connect(netns.clone(), port).await {
            Ok(stream) => {
                let (mut r, w) = stream.into_split();
                writers.push(Some(w));
                let (out, done) = (out_tx.clone(), done_tx.clone());
                readers.push(tokio::spawn(async move {
                    let mut buf = vec![0u8; 32 * 1024];
                    while let Ok(n) = r.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        let mut msg = Vec::with_capacity(n + 1);
                        msg.push(data);
                        msg.extend_from_slice(&buf[..n]);
                        if out.send(Message::Binary(msg.into())).await.is_err() {
                            break;
                        }
                    }
                    let _ = done.send(i).await;
                }));
            }
            Err(e) => {
                tracing::info!(pod = %label, port, error = %e, "port-forward connect failed");
                let mut msg = vec![error];
                msg.extend_from_slice(
                    format!("error forwarding port {port} to pod {label}: failed to connect to 127.0.0.1:{port} inside the pod's network namespace: {e}").as_bytes(),
                );
                let _ = out_tx.send(Message::Binary(msg.into())).await;
                writers.push(None);
                let _ = done_tx.send(i).await;
            }
        }
    }
    drop(done_tx);
    let mut open = ports.len();
    while open > 0 {
        tokio::select! {
            msg = ws_rx.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    let Some((&chan, payload)) = b.split_first() else { continue };
                    let i = usize::from(chan / 2);
                    if chan % 2 != 0 || payload.is_empty() {
                        continue;
                    }
                    if let Some(slot) = writers.get_mut(i) {
                        if let Some(w) = slot {
                            if w.write_all(payload).await.is_err() {
                                *slot = None;
                            }
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            done = done_rx.recv() => match done {
                Some(_) => open -= 1,
                None => break,
            },
        }
    }
    for r in &readers {
        r.abort();
    }
    drop(writers);
    let _ = out_tx
        .send(Message::Close(Some(CloseFrame {
            code: close_code::NORMAL,
            reason: "".into(),
        })))
        .await;
    drop(out_tx);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_from_port_and_ports() {
        assert_eq!(parse_ports("port=8080&port=9090").unwrap(), [8080, 9090]);
        assert_eq!(parse_ports("ports=80,443").unwrap(), [80, 443]);
        assert!(parse_ports("").is_err());
        assert!(parse_ports("port=0").is_err());
        assert!(parse_ports("port=http").is_err());
    }

    #[test]
    fn first_frames_carry_the_port_little_endian() {
        assert_eq!(port_frame(0, 8080), [0, 0x90, 0x1f]);
        assert_eq!(port_frame(3, 1), [3, 1, 0]);
    }

    #[test]
    fn spdy_requests_are_told_apart() {
        let mut h = HeaderMap::new();
        h.insert(
            "sec-websocket-protocol",
            "SPDY/3.1+portforward.k8s.io".parse().unwrap(),
        );
        assert!(wants_spdy(&h));
        h.insert(
            "sec-websocket-protocol",
            "SPDY/3.1+portforward.k8s.io, v4.channel.k8s.io"
                .parse()
                .unwrap(),
        );
        assert!(!wants_spdy(&h));
        let mut plain = HeaderMap::new();
        plain.insert("upgrade", "SPDY/3.1".parse().unwrap());
        assert!(wants_spdy(&plain));
        let mut ws = HeaderMap::new();
        ws.insert("upgrade", "websocket".parse().unwrap());
        ws.insert(
            "sec-websocket-protocol",
            "v4.channel.k8s.io".parse().unwrap(),
        );
        assert!(!wants_spdy(&ws));
    }
}
