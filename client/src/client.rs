//! The HTTP client: where the API server is and how requests are sent and answered.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;
use serde::de::DeserializeOwned;

use crate::watch::{event_stream, WatchEvent};
use crate::{Error, Result};

/// Where the API server is and how to reach it. Built by hand, or from a kubeconfig
/// with [`Config::from_kubeconfig`]. TLS settings (a CA bundle, client certificates)
/// will be added here when the client learns TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The server's base URL, e.g. `http://127.0.0.1:6443`; a path prefix is kept.
    pub cluster_url: String,
    /// The namespace `Api::default_namespaced` uses (the kubeconfig context's, else
    /// `default`).
    pub default_namespace: String,
    /// Sent as `Authorization: Bearer …` when set.
    pub bearer_token: Option<String>,
    /// How long to wait for a TCP connection.
    pub connect_timeout: Duration,
    /// Limit for a whole non-watch request; watches are bounded by their own
    /// `timeoutSeconds` instead.
    pub request_timeout: Option<Duration>,
}

impl Config {
    /// A config for a server at `cluster_url` with the `default` namespace.
    pub fn new(cluster_url: &str) -> Self {
        Config {
            cluster_url: cluster_url.to_string(),
            default_namespace: "default".to_string(),
            bearer_token: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Some(Duration::from_secs(60)),
        }
    }
}

/// A body to send and its Content-Type.
#[derive(Clone, Debug)]
pub struct RequestBody {
    /// Content-Type header.
    pub content_type: &'static str,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl RequestBody {
    /// A JSON body.
    pub fn json(bytes: Vec<u8>) -> Self {
        RequestBody {
            content_type: "application/json",
            bytes,
        }
    }
}

/// A handle on the API server; cheap to clone, share one per process.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    base: String,
    http: reqwest::Client,
    default_namespace: String,
    authorization: Option<HeaderValue>,
    request_timeout: Option<Duration>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.inner.base)
            .field("default_namespace", &self.inner.default_namespace)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for the server at `url` (`http://host:port`).
    pub fn new(url: &str) -> Result<Self> {
        Client::try_from_config(Config::new(url))
    }

    /// A client for the server a kubeconfig names; see [`Config::from_kubeconfig`].
    pub fn from_kubeconfig(path: Option<&std::path::Path>, context: Option<&str>) -> Result<Self> {
        Client::try_from_config(Config::from_kubeconfig(path, context)?)
    }

    /// A client from a [`Config`].
    pub fn try_from_config(config: Config) -> Result<Self> {
        let base = check_url(&config.cluster_url)?;
        let authorization = match &config.bearer_token {
            Some(token) => {
                let mut v = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                    Error::InvalidRequest(
                        "bearer token has characters not allowed in a header".into(),
                    )
                })?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        let http = reqwest_builder()
            .connect_timeout(config.connect_timeout)
            // A watch idles for minutes; keepalive lets us notice a vanished server.
            .tcp_keepalive(Duration::from_secs(30))
            .user_agent(concat!("skiff-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| Error::Http {
                method: "-".into(),
                path: base.clone(),
                source,
            })?;
        Ok(Client {
            inner: Arc::new(Inner {
                base,
                http,
                default_namespace: config.default_namespace,
                authorization,
                request_timeout: config.request_timeout,
            }),
        })
    }

    /// The `Authorization` header value sent with each request, if any (for callers that
    /// open connections of their own, such as WebSocket streams).
    pub fn authorization(&self) -> Option<&HeaderValue> {
        self.inner.authorization.as_ref()
    }

    /// The server's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// The namespace from the kubeconfig context, else `default`.
    pub fn default_namespace(&self) -> &str {
        &self.inner.default_namespace
    }

    fn builder(
        &self,
        method: &Method,
        path: &str,
        accept: &str,
        body: Option<RequestBody>,
    ) -> reqwest::RequestBuilder {
        let url = format!("{}{path}", self.inner.base);
        // Logged under HTTP_LOG_TARGET so a CLI can print kubectl-style `-v` traces.
        tracing::trace!(
            target: HTTP_LOG_TARGET,
            verb = %method,
            url = %url,
            accept,
            content_type = body.as_ref().map(|b| b.content_type).unwrap_or(""),
            body = %body.as_ref().map(|b| String::from_utf8_lossy(&b.bytes)).unwrap_or_default(),
            "Request"
        );
        let mut req = self
            .inner
            .http
            .request(method.clone(), url)
            .header(ACCEPT, accept);
        if let Some(auth) = &self.inner.authorization {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        if let Some(body) = body {
            req = req.header(CONTENT_TYPE, body.content_type).body(body.bytes);
        }
        req
    }

    /// Sends a request and returns the body of a 2xx answer; any other answer becomes
    /// [`Error::Api`]. `path` includes the query.
    pub async fn request_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<RequestBody>,
    ) -> Result<Vec<u8>> {
        self.request_raw_accept(method, path, "application/json", body)
            .await
    }

    /// Like [`Client::request_raw`] with the Accept header given, e.g. to ask for a
    /// `meta.k8s.io` Table.
    pub async fn request_raw_accept(
        &self,
        method: Method,
        path: &str,
        accept: &str,
        body: Option<RequestBody>,
    ) -> Result<Vec<u8>> {
        let mut req = self.builder(&method, path, accept, body);
        if let Some(timeout) = self.inner.request_timeout {
            req = req.timeout(timeout);
        }
        let http_err = |source| Error::Http {
            method: method.to_string(),
            path: path.to_string(),
            source,
        };
        let started = std::time::Instant::now();
        let resp = req.send().await.map_err(http_err)?;
        let code = resp.status();
        let headers = header_lines(resp.headers());
        let bytes = resp.bytes().await.map_err(http_err)?;
        log_response(&method, path, code, &headers, started, Some(&bytes));
        tracing::debug!(%method, path, code = code.as_u16(), bytes = bytes.len(), "api request");
        if !code.is_success() {
            return Err(error_from_body(code.as_u16(), &bytes));
        }
        Ok(bytes.to_vec())
    }

    /// Sends a request and decodes a 2xx answer as `T`; `what` names `T` in errors.
    pub async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<RequestBody>,
        what: &str,
    ) -> Result<T> {
        let bytes = self.request_raw(method.clone(), path, body).await?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Decode {
            what: format!("{what} from {method} {path}"),
            source,
        })
    }

    /// Sends a GET and streams the body of a 2xx answer in chunks as they arrive (pod
    /// logs with `follow=true`); any other answer becomes [`Error::Api`]. No overall
    /// timeout applies.
    pub async fn request_stream(&self, path: &str) -> Result<BoxStream<'static, Result<Vec<u8>>>> {
        use futures::StreamExt;
        let req = self.builder(&Method::GET, path, "*/*", None);
        let http_err = |source| Error::Http {
            method: "GET".into(),
            path: path.to_string(),
            source,
        };
        let started = std::time::Instant::now();
        let resp = req.send().await.map_err(http_err)?;
        let code = resp.status();
        log_response(
            &Method::GET,
            path,
            code,
            &header_lines(resp.headers()),
            started,
            None,
        );
        if !code.is_success() {
            let bytes = resp.bytes().await.map_err(http_err)?;
            return Err(error_from_body(code.as_u16(), &bytes));
        }
        let path = path.to_string();
        Ok(resp
            .bytes_stream()
            .map(move |chunk| {
                chunk.map(|b| b.to_vec()).map_err(|source| Error::Http {
                    method: "GET".into(),
                    path: path.clone(),
                    source,
                })
            })
            .boxed())
    }

    /// Opens a watch at `path` (with its query) and streams its events. A refusal (410
    /// for a too old resourceVersion, 404, …) is the outer error; the stream ends when the
    /// server ends the watch or the connection breaks.
    pub async fn request_watch<K: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        timeout: Option<Duration>,
    ) -> Result<BoxStream<'static, Result<WatchEvent<K>>>> {
        self.request_watch_accept(path, "application/json", timeout)
            .await
    }

    /// Like [`Client::request_watch`] with the Accept header given (a Table watch
    /// streams events whose objects are one-row Tables).
    pub async fn request_watch_accept<K: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        accept: &str,
        timeout: Option<Duration>,
    ) -> Result<BoxStream<'static, Result<WatchEvent<K>>>> {
        let mut req = self.builder(&Method::GET, path, accept, None);
        if let Some(timeout) = timeout {
            req = req.timeout(timeout);
        }
        let http_err = |source| Error::Http {
            method: "GET".into(),
            path: path.to_string(),
            source,
        };
        let started = std::time::Instant::now();
        let resp = req.send().await.map_err(http_err)?;
        let code = resp.status();
        log_response(
            &Method::GET,
            path,
            code,
            &header_lines(resp.headers()),
            started,
            None,
        );
        tracing::debug!(path, code = code.as_u16(), "watch opened");
        if !code.is_success() {
            let bytes = resp.bytes().await.map_err(http_err)?;
            return Err(error_from_body(code.as_u16(), &bytes));
        }
        Ok(event_stream(resp.bytes_stream(), path.to_string()))
    }
}

/// The tracing target of the per-request events (`Request` at TRACE with the URL, Accept,
/// Content-Type and body; `Response` at DEBUG with status, headers, milliseconds and
/// body): what `skiffctl -v N` prints, as kubectl's round-trippers do.
pub const HTTP_LOG_TARGET: &str = "skiff_client::http";

fn header_lines(headers: &reqwest::header::HeaderMap) -> String {
    if !tracing::enabled!(target: HTTP_LOG_TARGET, tracing::Level::DEBUG) {
        return String::new();
    }
    let mut lines: Vec<String> = headers
        .iter()
        .map(|(k, v)| format!("{}: {}", k, v.to_str().unwrap_or("<binary>")))
        .collect();
    lines.sort();
    lines.join("\n")
}

fn log_response(
    method: &Method,
    path: &str,
    code: reqwest::StatusCode,
    headers: &str,
    started: std::time::Instant,
    body: Option<&[u8]>,
) {
    tracing::debug!(
        target: HTTP_LOG_TARGET,
        verb = %method,
        path,
        status = %code,
        headers,
        milliseconds = started.elapsed().as_millis() as u64,
        body = %body.map(String::from_utf8_lossy).unwrap_or_default(),
        "Response"
    );
}

fn check_url(url: &str) -> Result<String> {
    let url = url.trim_end_matches('/');
    if url.starts_with("https://") {
        return Err(Error::TlsNotSupported(format!(
            "server {url} is https; use an http:// server for now"
        )));
    }
    let Some(host) = url.strip_prefix("http://") else {
        return Err(Error::InvalidRequest(format!(
            "server URL {url:?} must start with http://"
        )));
    };
    if host.is_empty() || host.starts_with('/') {
        return Err(Error::InvalidRequest(format!(
            "server URL {url:?} has no host"
        )));
    }
    Ok(url.to_string())
}

/// The error for a non-2xx answer: its Status when the body is one, else a Status made
/// up from the HTTP code and body text.
pub(crate) fn error_from_body(code: u16, body: &[u8]) -> Error {
    #[derive(serde::Deserialize)]
    struct Kind {
        kind: Option<String>,
    }
    let is_status = serde_json::from_slice::<Kind>(body)
        .ok()
        .and_then(|k| k.kind)
        .is_some_and(|k| k == "Status");
    if is_status {
        if let Ok(status) = serde_json::from_slice(body) {
            return Error::from_status(status, code);
        }
    }
    Error::from_unstructured(code, body)
}

/// A reqwest client builder that can be built: reqwest's TLS (rustls, for the kubelet's
/// HTTPS registry pulls) needs a process-wide crypto provider installed first, or
/// building any client panics. Every reqwest client in skiff starts here.
pub fn reqwest_builder() -> reqwest::ClientBuilder {
    static PROVIDER: std::sync::Once = std::sync::Once::new();
    PROVIDER.call_once(|| {
        // Already installed (by this process's own choice) is fine too.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert_eq!(
            check_url("http://127.0.0.1:6443/").unwrap(),
            "http://127.0.0.1:6443"
        );
        assert_eq!(check_url("http://h/prefix").unwrap(), "http://h/prefix");
        let e = check_url("https://h:6443").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("TLS is not supported by skiff's client yet"),
            "{e}"
        );
        assert!(check_url("h:6443").is_err());
        assert!(check_url("http://").is_err());
    }

    #[test]
    fn status_bodies_become_api_errors() {
        let e = error_from_body(
            404,
            br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \"a\" not found","reason":"NotFound","details":{"name":"a","kind":"pods"},"code":404}"#,
        );
        assert!(e.is_not_found());
        assert_eq!(e.to_string(), "pods \"a\" not found (NotFound, 404)");

        let e = error_from_body(
            409,
            br#"{"kind":"Status","reason":"AlreadyExists","message":"x"}"#,
        );
        assert!(e.is_already_exists());
        assert_eq!(e.code(), Some(409));

        let e = error_from_body(502, b"<html>bad gateway</html>");
        assert_eq!(e.code(), Some(502));
        assert_eq!(e.reason(), Some("Unknown"));
    }
}
