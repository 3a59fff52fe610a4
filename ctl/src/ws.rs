//! WebSocket connections to the apiserver's streaming subresources (`pods/exec`,
//! `pods/portforward`), which it proxies to the kubelet: the handshake with a chosen
//! subprotocol, and a refusal turned into kubectl's `Error from server (…)` message.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::WebSocketStream;

use crate::cluster::Ctx;

/// An open stream and the subprotocol the server chose.
pub type Socket = WebSocketStream<TcpStream>;

/// The `ws://` URL and `host:port` for a path on the apiserver at `base`.
pub fn ws_url(base: &str, path_and_query: &str) -> Result<(String, String)> {
    let base = base.trim_end_matches('/');
    let rest = if let Some(r) = base.strip_prefix("http://") {
        r
    } else if base.starts_with("https://") {
        bail!("streaming over HTTPS is not built into skiffctl yet; the apiserver at {base} needs plain HTTP for exec, cp and port-forward")
    } else {
        bail!("the server URL {base:?} is not http://")
    };
    let (authority, prefix) = match rest.split_once('/') {
        Some((a, p)) => (a, format!("/{p}")),
        None => (rest, String::new()),
    };
    let host_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !authority.ends_with(']')
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((
        format!("ws://{authority}{prefix}{path_and_query}"),
        host_port,
    ))
}

/// The message of a refusal: the Status's message when the body is one, else the body.
pub fn refusal_message(status: u16, body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v["kind"] == "Status" => {
            let reason = v["reason"].as_str().unwrap_or("Unknown");
            let message = v["message"].as_str().unwrap_or_default();
            format!("Error from server ({reason}): {message}")
        }
        _ => {
            let text = String::from_utf8_lossy(body);
            format!("error: the server answered {status}: {}", text.trim())
        }
    }
}

/// A refusal already worded as kubectl words it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Opens a WebSocket to `path_and_query` on the apiserver offering `protocols` (best
/// first); returns the stream and the protocol chosen.
pub async fn connect(
    ctx: &Ctx,
    path_and_query: &str,
    protocols: &[&str],
) -> Result<(Socket, String)> {
    let (url, host_port) = ws_url(ctx.client.base_url(), path_and_query)?;
    let mut request = url
        .as_str()
        .into_client_request()
        .with_context(|| format!("building the request for {url}"))?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_str(&protocols.join(", "))?,
    );
    if let Some(auth) = ctx.client.authorization() {
        let value = HeaderValue::from_bytes(auth.as_bytes())?;
        request.headers_mut().insert("Authorization", value);
    }
    tracing::debug!(%url, ?protocols, "opening a stream");
    let tcp = TcpStream::connect(&host_port)
        .await
        .with_context(|| format!("connecting to {host_port}"))?;
    let _ = tcp.set_nodelay(true);
    match tokio_tungstenite::client_async(request, tcp).await {
        Ok((socket, response)) => {
            let chosen = response
                .headers()
                .get("Sec-WebSocket-Protocol")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            Ok((socket, chosen))
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            Err(Refused(refusal_message(response.status().as_u16(), &body)).into())
        }
        Err(e) => Err(anyhow!("upgrading the connection to {url}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_the_server_url() {
        assert_eq!(
            ws_url("http://127.0.0.1:6443/", "/api/v1/x?a=b").unwrap(),
            (
                "ws://127.0.0.1:6443/api/v1/x?a=b".to_string(),
                "127.0.0.1:6443".to_string()
            )
        );
        assert_eq!(
            ws_url("http://example/prefix", "/api").unwrap(),
            (
                "ws://example/prefix/api".to_string(),
                "example:80".to_string()
            )
        );
        assert!(ws_url("https://h:6443", "/api").is_err());
    }

    #[test]
    fn refusals_read_as_kubectl_prints_them() {
        let body = br#"{"kind":"Status","reason":"NotFound","message":"pods \"x\" not found"}"#;
        assert_eq!(
            refusal_message(404, body),
            "Error from server (NotFound): pods \"x\" not found"
        );
        assert!(refusal_message(502, b"bad gateway").contains("502"));
    }
}
