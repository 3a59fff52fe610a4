//! `pods/log`, `pods/exec`, `pods/attach` and `pods/portforward`: the apiserver does not
//! serve these itself but passes them to the kubelet of the pod's node, as kube-apiserver
//! does. Plain requests (logs) are forwarded and their answer streamed back; upgrade
//! requests (WebSocket for exec, attach and port-forward) are forwarded with their
//! handshake headers, and once the kubelet switches protocols the two connections are
//! spliced byte for byte, so the apiserver never needs to understand the stream protocol.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use skiff_api::Subresource;

use crate::error::{Error, Result};
use crate::request::{parse_path, Target};
use crate::Server;

/// The kubelet's port when its Node does not report one (Kubernetes' default).
pub const DEFAULT_KUBELET_PORT: u16 = 10250;

/// How long connecting to a kubelet may take before the request fails.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Forwards a pod streaming request to the kubelet that runs the pod.
pub async fn to_kubelet(
    server: &Arc<Server>,
    t: &Target,
    sub: Subresource,
    mut req: Request,
) -> Result<Response> {
    let pod_name = t.name.clone().unwrap_or_default();
    let namespace = t.namespace.clone().unwrap_or_default();
    let pod = server.get(t).await?;
    let node_name = pod["spec"]["nodeName"].as_str().unwrap_or("").to_string();
    if node_name.is_empty() {
        return Err(Error::bad_request(format!(
            "pod {pod_name} does not have a host assigned"
        )));
    }
    let node = server
        .get(&parse_path(&format!("/api/v1/nodes/{node_name}"))?)
        .await
        .map_err(|e| {
            Error::internal(format!(
                "the node {node_name} of pod {pod_name} cannot be read: {}",
                e.to_status().message
            ))
        })?;
    let (ip, port) = kubelet_endpoint(&node).ok_or_else(|| {
        Error::internal(format!(
            "node {node_name} reports no address for its kubelet (status.addresses is empty)"
        ))
    })?;

    let mut query: Vec<(String, String)> =
        url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let path = match sub {
        Subresource::PortForward => format!("/portForward/{namespace}/{pod_name}"),
        _ => {
            let asked = query
                .iter()
                .position(|(k, _)| k == "container")
                .map(|i| query.remove(i).1);
            let container = choose_container(&pod, &pod_name, asked.as_deref())?;
            let route = match sub {
                Subresource::Log => "containerLogs",
                Subresource::Exec => "exec",
                _ => "attach",
            };
            format!("/{route}/{namespace}/{pod_name}/{container}")
        }
    };
    let mut path_and_query = path;
    if !query.is_empty() {
        path_and_query.push('?');
        path_and_query.push_str(
            &url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&query)
                .finish(),
        );
    }

    let authority = match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    };
    let unreachable = |what: String| {
        Error::internal(format!(
            "error dialing backend: the kubelet of node {node_name} at {authority}: {what}"
        ))
    };
    let stream = tokio::time::timeout(DIAL_TIMEOUT, tokio::net::TcpStream::connect((ip, port)))
        .await
        .map_err(|_| unreachable(format!("no answer within {DIAL_TIMEOUT:?}")))?
        .map_err(|e| unreachable(e.to_string()))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "kubelet connection ended");
        }
    });

    let mut upstream = axum::http::Request::builder()
        .method(req.method().clone())
        .uri(&path_and_query);
    for (name, value) in req.headers() {
        // The kubelet authenticates nobody yet; the caller's credentials stay here.
        if name != header::HOST && name != header::AUTHORIZATION {
            upstream = upstream.header(name, value);
        }
    }
    let upstream = upstream
        .header(header::HOST, &authority)
        .body(Body::empty())
        .map_err(|e| Error::internal(format!("building the kubelet request: {e}")))?;
    let mut answer = sender
        .send_request(upstream)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    tracing::debug!(pod = %pod_name, node = %node_name, path = %path_and_query, status = answer.status().as_u16(), "proxied to kubelet");

    if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, body) = answer.into_parts();
        return Ok(Response::from_parts(parts, Body::new(body)));
    }
    let client_side = hyper::upgrade::on(&mut req);
    let kubelet_side = hyper::upgrade::on(&mut answer);
    tokio::spawn(async move {
        let (client, kubelet) = match tokio::try_join!(client_side, kubelet_side) {
            Ok(both) => both,
            Err(e) => {
                tracing::warn!(error = %e, "a streaming upgrade did not complete");
                return;
            }
        };
        let (mut client, mut kubelet) = (TokioIo::new(client), TokioIo::new(kubelet));
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut kubelet).await {
            tracing::debug!(error = %e, "a proxied stream ended with an error");
        }
    });
    let mut response = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for (name, value) in answer.headers() {
        response = response.header(name, value);
    }
    response
        .body(Body::empty())
        .map_err(|e| Error::internal(format!("building the upgrade answer: {e}")))
}

/// Where a node's kubelet listens: its InternalIP (else its first address) and the port
/// it reports in `status.daemonEndpoints`. Kubernetes prefers the Hostname address; skiff
/// prefers the IP because lab machine names resolve nowhere.
pub fn kubelet_endpoint(node: &Value) -> Option<(IpAddr, u16)> {
    let addresses = node["status"]["addresses"].as_array()?;
    let parsed = |a: &Value| a["address"].as_str().and_then(|s| s.parse::<IpAddr>().ok());
    let ip = addresses
        .iter()
        .filter(|a| a["type"] == "InternalIP")
        .find_map(parsed)
        .or_else(|| addresses.iter().find_map(parsed))?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Some((ip, port))
}

/// The container a request is for: the one asked for, else the only one, with
/// Kubernetes' messages when the choice is missing or wrong.
pub fn choose_container(pod: &Value, pod_name: &str, asked: Option<&str>) -> Result<String> {
    let names = |field: &str| -> Vec<String> {
        pod["spec"][field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect()
    };
    let (app, init) = (names("containers"), names("initContainers"));
    match asked.filter(|c| !c.is_empty()) {
        Some(c) if app.iter().chain(&init).any(|n| n == c) => Ok(c.to_string()),
        Some(c) => Err(Error::bad_request(format!(
            "container {c} is not valid for pod {pod_name}"
        ))),
        None if app.len() == 1 => Ok(app[0].clone()),
        None => {
            let mut message = format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                app.join(" ")
            );
            if !init.is_empty() {
                message.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            Err(Error::bad_request(message))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_kubelet_is_reached_on_the_internal_ip_and_reported_port() {
        let node = json!({"status": {
            "addresses": [{"type": "Hostname", "address": "w1"}, {"type": "InternalIP", "address": "10.0.0.7"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10311}}
        }});
        assert_eq!(
            kubelet_endpoint(&node),
            Some(("10.0.0.7".parse().unwrap(), 10311))
        );
        let bare =
            json!({"status": {"addresses": [{"type": "ExternalIP", "address": "192.0.2.1"}]}});
        assert_eq!(
            kubelet_endpoint(&bare),
            Some(("192.0.2.1".parse().unwrap(), DEFAULT_KUBELET_PORT))
        );
        assert_eq!(kubelet_endpoint(&json!({"status": {}})), None);
    }

    #[test]
    fn containers_are_chosen_as_kubernetes_chooses_them() {
        let one = json!({"spec": {"containers": [{"name": "web"}]}});
        assert_eq!(choose_container(&one, "p", None).unwrap(), "web");
        assert!(choose_container(&one, "p", Some("db"))
            .unwrap_err()
            .to_status()
            .message
            .contains("container db is not valid for pod p"));
        let two = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "i"}]}});
        assert_eq!(choose_container(&two, "p", Some("i")).unwrap(), "i");
        let e = choose_container(&two, "p", None)
            .unwrap_err()
            .to_status()
            .message;
        assert_eq!(
            e,
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"
        );
    }
}
