//! `/portForward/{namespace}/{pod}`: Kubernetes' WebSocket port-forwarding
//! (subprotocol `v4.channel.k8s.io`, or the older `channel.k8s.io`). The request names
//! ports with `?port=N` (repeated; `ports=` as the API's PodPortForwardOptions spells it
//! is read too). For the i-th port, channel 2i carries data and 2i+1 errors; the first
//! frame the kubelet sends on each is the port, 2 bytes little endian. Each port is a TCP
//! connection to 127.0.0.1:PORT made from inside the pod's network namespace.
//!
//! The same handler serves SPDY port-forwarding, what kubectl speaks: after
//! `Upgrade: SPDY/3.1` (`X-Stream-Protocol-Version: portforward.k8s.io`), or tunnelled in
//! a WebSocket with subprotocol `SPDY/3.1+portforward.k8s.io` (kubectl 1.31+ tries that
//! first). There the ports are not in the URL: each forwarded connection opens two SPDY
//! streams, `streamtype: error` and `streamtype: data`, carrying `port` and a shared
//! `requestid` header.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path as UrlPath, RawQuery, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::netns::PodNamespacePaths;
use crate::runtime::pod_dir;
use crate::spdy::{self, Frame};
use crate::streaming::{status_response, Streaming};

/// The subprotocols of WebSocket port-forwarding this server speaks, best first.
pub const PORT_FORWARD_PROTOCOLS: [&str; 2] = ["v4.channel.k8s.io", "channel.k8s.io"];

/// The header in which SPDY clients and servers agree on a stream protocol.
const STREAM_PROTOCOL_HEADER: &str = "x-stream-protocol-version";

/// How long connecting to a port inside the pod may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// SPDY's port-forwarding protocol, as `X-Stream-Protocol-Version` names it.
pub const SPDY_PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";

/// The WebSocket subprotocol that tunnels SPDY port-forwarding (kubectl 1.31+).
pub const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// How long the rest of a forwarded connection may take once one direction has ended
/// (containerd's and so Kubernetes' grace).
const HALF_CLOSED_GRACE: Duration = Duration::from_secs(1);

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

/// How a port-forward request wants to talk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `Upgrade: SPDY/3.1`, then SPDY frames on the connection.
    Spdy,
    /// A WebSocket whose binary messages carry SPDY frames.
    TunnelledSpdy,
    /// WebSocket channels (`v4.channel.k8s.io`), the ports in the URL.
    Channels,
}

impl Transport {
    /// The transport a request's headers ask for; a WebSocket that offers no SPDY
    /// tunnel is taken as channels (the subprotocol is checked at the upgrade).
    pub fn of(headers: &HeaderMap) -> Self {
        let values = |name: &str| -> Vec<String> {
            headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|v| v.trim().to_string())
                .collect()
        };
        if values("upgrade")
            .iter()
            .any(|u| u.to_ascii_uppercase().starts_with("SPDY/"))
        {
            return Self::Spdy;
        }
        let offered = values("sec-websocket-protocol");
        // A client offering both speaks channels too, which need no SPDY framing.
        let channels = offered
            .iter()
            .any(|p| PORT_FORWARD_PROTOCOLS.contains(&p.as_str()));
        if !channels && offered.iter().any(|p| p == TUNNEL_PROTOCOL) {
            return Self::TunnelledSpdy;
        }
        Self::Channels
    }
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
    request: Request,
) -> Response {
    let (mut parts, _body) = request.into_parts();
    let transport = Transport::of(&parts.headers);
    let label = format!("{namespace}/{pod}");
    let mut ports = Vec::new();
    if transport == Transport::Channels {
        ports = match parse_ports(query.as_deref().unwrap_or("")) {
            Ok(p) => p,
            Err(e) => return status_response(StatusCode::BAD_REQUEST, "BadRequest", e),
        };
    }
    let upgrade = match transport {
        Transport::Spdy => None,
        _ => match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(u) => Some(u),
            Err(_) => {
                return status_response(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!(
                        "port-forward needs an upgrade: to WebSocket with subprotocol {} or {TUNNEL_PROTOCOL}, or to SPDY/3.1",
                        PORT_FORWARD_PROTOCOLS[0]
                    ),
                )
            }
        },
    };
    let Some(uid) = s
        .pods
        .get(Some(&namespace), &pod)
        .and_then(|p| p.metadata.uid.clone())
    else {
        return status_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("pod {label} is not running on this node"),
        );
    };
    let netns = PodNamespacePaths::new(&pod_dir(&s.root_dir, &uid)).net;
    if !netns.exists() {
        return status_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("pod {label} has no network namespace (its sandbox is not running)"),
        );
    }
    let Some(upgrade) = upgrade else {
        return spdy_upgrade(&mut parts, netns, label);
    };
    if transport == Transport::TunnelledSpdy {
        tracing::info!(pod = %label, "port-forward over SPDY in WebSocket");
        return upgrade
            .protocols([TUNNEL_PROTOCOL])
            .on_upgrade(move |socket| tunnel(socket, netns, label));
    }
    let upgrade = upgrade.protocols(PORT_FORWARD_PROTOCOLS);
    if upgrade.selected_protocol().is_none() {
        return status_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!(
                "none of the offered WebSocket subprotocols is served; port-forward speaks {}, {TUNNEL_PROTOCOL}",
                PORT_FORWARD_PROTOCOLS.join(", ")
            ),
        );
    }
    tracing::info!(pod = %label, ?ports, "port-forward");
    upgrade.on_upgrade(move |socket| session(socket, netns, ports, label))
}

/// Answers `Upgrade: SPDY/3.1` with 101 and serves SPDY on the connection, after
/// agreeing on the stream protocol as Kubernetes' handshake does.
fn spdy_upgrade(parts: &mut Parts, netns: PathBuf, label: String) -> Response {
    let offered: Vec<String> = parts
        .headers
        .get_all(STREAM_PROTOCOL_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    // A client that names no protocol is an old one, served the only protocol there is.
    if !offered.is_empty() && !offered.iter().any(|p| p == SPDY_PORT_FORWARD_PROTOCOL) {
        return status_response(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports [{SPDY_PORT_FORWARD_PROTOCOL}]"
            ),
        );
    }
    let Some(on_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
        return status_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "this connection cannot be upgraded".into(),
        );
    };
    tracing::info!(pod = %label, "port-forward over SPDY");
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => serve_spdy(TokioIo::new(upgraded), netns, label).await,
            Err(e) => {
                tracing::debug!(pod = %label, error = %e, "the SPDY upgrade did not complete")
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1")
        .header(STREAM_PROTOCOL_HEADER, SPDY_PORT_FORWARD_PROTOCOL)
        .body(Body::empty())
        .unwrap_or_else(|e| {
            status_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                format!("building the upgrade answer: {e}"),
            )
        })
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

/// What a client is told when its port inside the pod does not answer.
fn connect_error(port: u16, label: &str, e: &std::io::Error) -> String {
    format!("error forwarding port {port} to pod {label}: failed to connect to 127.0.0.1:{port} inside the pod's network namespace: {e}")
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
                msg.extend_from_slice(connect_error(port, &label, &e).as_bytes());
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

/// Carries a SPDY session in WebSocket binary messages, as kubectl's tunnelling dialer
/// does: message boundaries mean nothing, the bytes are one stream each way.
async fn tunnel(socket: WebSocket, netns: PathBuf, label: String) {
    let (session_side, pump_side) = tokio::io::duplex(64 * 1024);
    let session = tokio::spawn(serve_spdy(session_side, netns, label));
    let (mut from_session, mut to_session) = tokio::io::split(pump_side);
    let (mut ws_tx, mut ws_rx) = socket.split();
    let inbound = tokio::spawn(async move {
        while let Some(Ok(message)) = ws_rx.next().await {
            match message {
                Message::Binary(b) if to_session.write_all(&b).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = to_session.shutdown().await;
    });
    // The session ends when the client's side does (inbound shuts the pipe) or on a
    // protocol error; either way everything it wrote is sent before the close.
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from_session.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if ws_tx
                    .send(Message::Binary(buf[..n].to_vec().into()))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    let _ = ws_tx
        .send(Message::Close(Some(CloseFrame {
            code: close_code::NORMAL,
            reason: "".into(),
        })))
        .await;
    inbound.abort();
    let _ = session.await;
}

/// One forwarded connection being assembled from its two streams.
#[derive(Default)]
struct PendingConnection {
    error_stream: Option<u32>,
    data_stream: Option<(u32, Option<String>, mpsc::Receiver<Vec<u8>>)>,
}

/// The request a stream belongs to: its `requestid`, or for clients too old to send
/// one, Kubernetes' guess from consecutive stream ids (error n, data n+2).
fn request_id(headers: &spdy::Headers, stream_id: u32, is_error: bool) -> String {
    match spdy::header(headers, "requestid") {
        Some(id) if !id.is_empty() => id.to_string(),
        _ if is_error => stream_id.to_string(),
        _ => stream_id.saturating_sub(2).to_string(),
    }
}

/// Serves kubectl's SPDY port-forwarding on one connection until the client ends it:
/// every forwarded TCP connection is a pair of streams; the data stream's bytes go to
/// the pod's port and back, and the error stream carries a message if that fails.
pub async fn serve_spdy<IO>(io: IO, netns: PathBuf, label: String)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read_half, write_half) = tokio::io::split(io);
    let mut frames = spdy::FrameReader::new(read_half);
    let mut writer = match spdy::FrameWriter::new(write_half) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(pod = %label, error = %e, "port-forward: SPDY cannot start");
            return;
        }
    };
    let (out, mut out_rx) = mpsc::channel::<Frame>(64);
    let write_task = tokio::spawn(async move {
        while let Some(frame) = out_rx.recv().await {
            if writer.write(&frame).await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    });
    let mut inbound: HashMap<u32, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut pending: HashMap<String, PendingConnection> = HashMap::new();
    let mut forwards = JoinSet::new();
    let mut last_stream_id = 0;
    loop {
        let frame = tokio::select! {
            frame = frames.next() => frame,
            Some(_) = forwards.join_next(), if !forwards.is_empty() => continue,
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                tracing::info!(pod = %label, error = %e, "port-forward: the SPDY connection ended");
                if e.kind() == std::io::ErrorKind::InvalidData {
                    let _ = out
                        .send(Frame::GoAway {
                            last_good_stream_id: last_stream_id,
                            status: spdy::GOAWAY_PROTOCOL_ERROR,
                        })
                        .await;
                }
                break;
            }
        };
        match frame {
            Frame::SynStream {
                stream_id,
                fin,
                headers,
            } => {
                // Client streams are odd and increase; anything else is a protocol error.
                if stream_id % 2 == 0 || stream_id <= last_stream_id {
                    let _ = out
                        .send(Frame::RstStream {
                            stream_id,
                            status: spdy::rst::PROTOCOL_ERROR,
                        })
                        .await;
                    continue;
                }
                last_stream_id = stream_id;
                let is_error = match spdy::header(&headers, "streamtype") {
                    Some("error") => true,
                    Some("data") => false,
                    other => {
                        tracing::info!(pod = %label, streamtype = ?other, "port-forward: refused a stream of unknown type");
                        let _ = out
                            .send(Frame::RstStream {
                                stream_id,
                                status: spdy::rst::REFUSED_STREAM,
                            })
                            .await;
                        continue;
                    }
                };
                let id = request_id(&headers, stream_id, is_error);
                let slot = pending.entry(id.clone()).or_default();
                let taken = if is_error {
                    slot.error_stream.is_some()
                } else {
                    slot.data_stream.is_some()
                };
                if taken {
                    let _ = out
                        .send(Frame::RstStream {
                            stream_id,
                            status: spdy::rst::STREAM_IN_USE,
                        })
                        .await;
                    continue;
                }
                let _ = out
                    .send(Frame::SynReply {
                        stream_id,
                        fin: false,
                        headers: Vec::new(),
                    })
                    .await;
                if is_error {
                    slot.error_stream = Some(stream_id);
                } else {
                    let (tx, rx) = mpsc::channel(8);
                    if !fin {
                        inbound.insert(stream_id, tx);
                    }
                    let port = spdy::header(&headers, "port").map(str::to_string);
                    slot.data_stream = Some((stream_id, port, rx));
                }
                if slot.error_stream.is_some() && slot.data_stream.is_some() {
                    let Some(PendingConnection {
                        error_stream: Some(error_stream),
                        data_stream: Some((data_stream, port, rx)),
                    }) = pending.remove(&id)
                    else {
                        continue;
                    };
                    forwards.spawn(forward_connection(
                        Streams {
                            error: error_stream,
                            data: data_stream,
                            out: out.clone(),
                        },
                        port,
                        rx,
                        netns.clone(),
                        label.clone(),
                    ));
                }
            }
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                if let Some(tx) = inbound.get(&stream_id) {
                    if !data.is_empty() && tx.send(data).await.is_err() {
                        inbound.remove(&stream_id);
                    }
                }
                if fin {
                    inbound.remove(&stream_id);
                }
            }
            Frame::RstStream { stream_id, .. } => {
                inbound.remove(&stream_id);
            }
            Frame::Ping { id } => {
                let _ = out.send(Frame::Ping { id }).await;
            }
            // GOAWAY: no new streams will come; the open ones finish or the
            // connection closes. The rest carries nothing port-forwarding needs.
            _ => {}
        }
    }
    forwards.abort_all();
    drop(out);
    let _ = write_task.await;
}

/// The two streams of a forwarded connection and the way to the client.
struct Streams {
    error: u32,
    data: u32,
    out: mpsc::Sender<Frame>,
}

impl Streams {
    async fn send(&self, stream_id: u32, fin: bool, data: Vec<u8>) -> bool {
        self.out
            .send(Frame::Data {
                stream_id,
                fin,
                data,
            })
            .await
            .is_ok()
    }

    /// Ends both streams, with a message on the error stream when there is one.
    async fn close(&self, error: Option<String>) {
        if let Some(message) = error {
            self.send(self.error, false, message.into_bytes()).await;
        }
        self.send(self.data, true, Vec::new()).await;
        self.send(self.error, true, Vec::new()).await;
    }
}

async fn forward_connection(
    streams: Streams,
    port: Option<String>,
    mut from_client: mpsc::Receiver<Vec<u8>>,
    netns: PathBuf,
    label: String,
) {
    let port = match port.as_deref().map(str::parse::<u16>) {
        Some(Ok(p)) if p > 0 => p,
        _ => {
            let message = format!(
                "error forwarding to pod {label}: invalid port {port:?}: a port is 1-65535"
            );
            return streams.close(Some(message)).await;
        }
    };
    let conn = match connect(netns, port).await {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(pod = %label, port, error = %e, "port-forward connect failed");
            return streams.close(Some(connect_error(port, &label, &e))).await;
        }
    };
    let (mut from_pod, mut to_pod) = conn.into_split();
    let upstream = async {
        while let Some(chunk) = from_client.recv().await {
            if to_pod.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to_pod.shutdown().await;
    };
    let downstream = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from_pod.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if !streams.send(streams.data, false, buf[..n].to_vec()).await {
                        break;
                    }
                }
            }
        }
    };
    tokio::pin!(upstream, downstream);
    // kubectl waits for the error stream to end before it closes its local connection,
    // so the streams end soon after either direction does, as with containerd.
    tokio::select! {
        _ = &mut upstream => { let _ = tokio::time::timeout(HALF_CLOSED_GRACE, &mut downstream).await; }
        _ = &mut downstream => { let _ = tokio::time::timeout(HALF_CLOSED_GRACE, &mut upstream).await; }
    }
    streams.close(None).await;
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
    fn transports_are_told_apart() {
        let ws = |protocols: &str| {
            let mut h = HeaderMap::new();
            h.insert("upgrade", "websocket".parse().unwrap());
            h.insert("sec-websocket-protocol", protocols.parse().unwrap());
            Transport::of(&h)
        };
        assert_eq!(ws(TUNNEL_PROTOCOL), Transport::TunnelledSpdy);
        assert_eq!(
            ws("SPDY/3.1+portforward.k8s.io, v4.channel.k8s.io"),
            Transport::Channels
        );
        assert_eq!(ws("v4.channel.k8s.io"), Transport::Channels);
        let mut plain = HeaderMap::new();
        plain.insert("connection", "Upgrade".parse().unwrap());
        plain.insert("upgrade", "SPDY/3.1".parse().unwrap());
        assert_eq!(Transport::of(&plain), Transport::Spdy);
    }

    #[test]
    fn old_clients_pair_streams_by_id() {
        let with = vec![("requestid".to_string(), "7".to_string())];
        assert_eq!(request_id(&with, 1, true), "7");
        assert_eq!(request_id(&Vec::new(), 5, true), "5");
        assert_eq!(request_id(&Vec::new(), 7, false), "5");
    }
}
