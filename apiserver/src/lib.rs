//! skiff apiserver: Kubernetes REST over an etcd v3 store. Stateless: every request
//! reads and writes the store, so several apiservers can serve one store.

pub mod admission;
pub mod discovery;
pub mod error;
pub mod handlers;
pub mod metrics;
pub mod objects;
pub mod openapi;
pub mod protobuf;
pub mod proxy;
pub mod request;
pub mod storage;
pub mod tokens;
pub mod watch;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::StreamExt;
use serde_json::{json, Value};
use skiff_api::table::IncludeObject;
use skiff_api::{ResourceType, Subresource};

pub use admission::Ipv4Range;
pub use error::{Error, Result};
use request::{Query, Target};
use storage::Storage;

/// Kubernetes' limit on a request body.
pub const MAX_REQUEST_BYTES: usize = 3 * 1024 * 1024;

/// The apiserver's configuration (flags in Kubernetes' names).
#[derive(Debug, Clone)]
pub struct Config {
    /// `--etcd-servers`: the store's client URLs.
    pub etcd_servers: Vec<String>,
    /// `--bind-address` and `--secure-port`.
    pub listen: SocketAddr,
    /// `--service-cluster-ip-range`.
    pub service_cluster_ip_range: Ipv4Range,
    /// `--default-not-ready-toleration-seconds` and
    /// `--default-unreachable-toleration-seconds` (300 each in Kubernetes).
    pub default_toleration_seconds: admission::DefaultTolerationSeconds,
    /// `--service-account-signing-key-file`: the key tokens are signed with (else one
    /// kept in the store).
    pub service_account_signing_key_file: Option<std::path::PathBuf>,
    /// `--service-account-issuer`: the `iss` of the tokens.
    pub service_account_issuer: String,
    /// `--api-audiences`: the audiences of tokens whose request names none (the issuer
    /// when empty, as Kubernetes defaults it).
    pub api_audiences: Vec<String>,
}

/// The shared state of all requests.
pub struct Server {
    /// The store.
    pub storage: Storage,
    /// Where Service clusterIPs come from.
    pub service_range: Ipv4Range,
    /// How long pods tolerate a lost node unless they say otherwise.
    pub default_toleration_seconds: admission::DefaultTolerationSeconds,
    /// Request counters and latencies.
    pub metrics: metrics::Metrics,
    /// The address clients reach this server at (for `/api`).
    pub advertise: String,
    /// Decodes protobuf request bodies (kubectl's typed clients send them).
    pub protobuf: Arc<protobuf::Decoder>,
    /// Signs service account tokens.
    pub tokens: tokens::TokenIssuer,
}

/// The namespaces Kubernetes creates at start.
const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Runs the apiserver until `shutdown` completes.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let storage = Storage::connect(&config.etcd_servers).await?;
    let openapi = Arc::new(
        openapi::OpenApi::build()
            .map_err(|e| Error::Config(format!("building the OpenAPI documents failed: {e}")))?,
    );
    let key = tokens::load_key(
        config.service_account_signing_key_file.as_deref(),
        &storage.client(),
    )
    .await?;
    let audiences = if config.api_audiences.is_empty() {
        vec![config.service_account_issuer.clone()]
    } else {
        config.api_audiences.clone()
    };
    let server = Arc::new(Server {
        tokens: tokens::TokenIssuer::new(key, config.service_account_issuer.clone(), audiences),
        storage,
        service_range: config.service_cluster_ip_range,
        default_toleration_seconds: config.default_toleration_seconds,
        metrics: metrics::Metrics::default(),
        advertise: config.listen.to_string(),
        protobuf: openapi.protobuf.clone(),
    });
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: config.listen.to_string(),
            source,
        })?;
    // Watch events and streamed lists are many small writes: with Nagle's algorithm
    // each one after the first waits for the client's (delayed, up to 40 ms) ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY on a connection");
        }
    });
    bootstrap(&server).await?;
    tracing::info!(listen = %config.listen, etcd = ?config.etcd_servers, "apiserver serving");
    axum::serve(listener, router(server, openapi))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Serve)
}

/// The whole HTTP surface.
pub fn router(server: Arc<Server>, openapi: Arc<openapi::OpenApi>) -> Router {
    openapi::routes(openapi).merge(Router::new().fallback(serve).with_state(server))
}

/// Creates the system namespaces and the `kubernetes` Service if they are missing; every
/// apiserver does this at start and the store's create-if-absent makes it safe.
async fn bootstrap(server: &Arc<Server>) -> Result<()> {
    let ns_target = |name: Option<&str>| Target {
        rt: ResourceType::lookup("", "v1", "namespaces").expect("namespaces are served"),
        namespace: None,
        name: name.map(str::to_string),
        subresource: None,
    };
    let q = Query::default();
    for ns in SYSTEM_NAMESPACES {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        match server.create(&ns_target(None), &q, body).await {
            Ok(_) => tracing::info!(namespace = ns, "created system namespace"),
            Err(e) if e.to_status().code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    let svc_target = Target {
        rt: ResourceType::lookup("", "v1", "services").expect("services are served"),
        namespace: Some("default".into()),
        name: None,
        subresource: None,
    };
    let body = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": server.service_range.nth(1).to_string(),
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]},
    });
    match server.create(&svc_target, &q, body).await {
        Ok(_) | Err(Error::Status(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// What the client accepts back.
fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get_all("accept")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("as=Table"))
}

fn include_object(q: &Query) -> Result<IncludeObject> {
    IncludeObject::parse(q.get("includeObject")).map_err(|e| Error::bad_request(e.to_string()))
}

fn json_response(code: u16, body: &Value) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    (
        code,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(body).unwrap_or_default(),
    )
        .into_response()
}

fn text(body: &'static str) -> Response {
    (
        StatusCode::OK,
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Every request: routes it, answers errors as Status objects, and records metrics.
async fn serve(State(server): State<Arc<Server>>, req: Request) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let (verb, resource, response) = match route(&server, req).await {
        Ok((verb, resource, response)) => (verb, resource, response),
        Err((verb, resource, e)) => (verb, resource, e.into_response()),
    };
    let code = response.status().as_u16();
    server
        .metrics
        .observe(verb, &resource, code, started.elapsed());
    tracing::debug!(%method, %path, code, elapsed_ms = started.elapsed().as_millis() as u64, "request");
    response
}

type Routed = std::result::Result<(&'static str, String, Response), (&'static str, String, Error)>;

async fn route(server: &Arc<Server>, req: Request) -> Routed {
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_string();
    let query = Query::parse(req.uri().query());
    let headers = req.headers().clone();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let fixed = |body: Value| Ok(("get", String::new(), json_response(200, &body)));
    match segments.as_slice() {
        ["version"] => return fixed(discovery::version()),
        ["api"] => return fixed(discovery::core_versions(&server.advertise)),
        ["apis"] => return fixed(discovery::groups()),
        ["api", version] => {
            if let Some(v) = discovery::resource_list("", version) {
                return fixed(v);
            }
        }
        ["apis", group] => {
            if let Some(v) = discovery::group(group) {
                return fixed(v);
            }
        }
        ["apis", group, version] => {
            if let Some(v) = discovery::resource_list(group, version) {
                return fixed(v);
            }
        }
        ["healthz"] | ["livez"] => return Ok(("get", String::new(), text("ok"))),
        [".well-known", "openid-configuration"] => {
            return fixed(server.tokens.openid_configuration())
        }
        ["openid", "v1", "jwks"] => return fixed(server.tokens.jwks()),
        ["readyz"] => {
            return match server.storage.ping().await {
                Ok(()) => Ok(("get", String::new(), text("ok"))),
                Err(e) => Ok((
                    "get",
                    String::new(),
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("[-]etcd failed: {e}\nreadyz check failed\n"),
                    )
                        .into_response(),
                )),
            }
        }
        ["metrics"] => {
            return Ok((
                "get",
                String::new(),
                (
                    StatusCode::OK,
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    server.metrics.render(),
                )
                    .into_response(),
            ))
        }
        _ => {}
    }
    let target = request::parse_path(&path).map_err(|e| ("unknown", String::new(), e))?;
    let resource = match target.subresource {
        Some(sub) => format!("{}/{}", target.rt.plural, sub.name()),
        None => target.rt.plural.to_string(),
    };
    if let (Some(sub), Some(_)) = (target.subresource, &target.name) {
        if matches!(
            sub,
            Subresource::Log | Subresource::Exec | Subresource::Attach | Subresource::PortForward
        ) {
            let verb = if method == Method::GET {
                "get"
            } else {
                "create"
            };
            return match proxy::to_kubelet(server, &target, sub, req).await {
                Ok(r) => Ok((verb, resource, r)),
                Err(e) => Err((verb, resource, e)),
            };
        }
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(e) => return Err(("unknown", resource, e)),
    };
    let verb = verb_of(&method, &target, &query);
    match resource_request(
        server,
        &method,
        target,
        &query,
        &headers,
        &content_type,
        &body,
    )
    .await
    {
        Ok(r) => Ok((verb, resource, r)),
        Err(e) => Err((verb, resource, e)),
    }
}

async fn read_body(req: Request) -> Result<Bytes> {
    let limited = axum::body::to_bytes(req.into_body(), MAX_REQUEST_BYTES + 1).await;
    match limited {
        Ok(b) if b.len() > MAX_REQUEST_BYTES => Err(Error::too_large(MAX_REQUEST_BYTES)),
        Ok(b) => Ok(b),
        Err(_) => Err(Error::too_large(MAX_REQUEST_BYTES)),
    }
}

fn verb_of(method: &Method, t: &Target, q: &Query) -> &'static str {
    match (method.as_str(), t.name.is_some()) {
        ("GET", false) if q.flag("watch") => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", false) => "deletecollection",
        ("DELETE", true) => "delete",
        _ => "unknown",
    }
}

fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let value = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
            response.headers_mut().append("warning", v);
        }
    }
    response
}

fn list_json(rt: &ResourceType, listed: handlers::Listed) -> Value {
    let mut metadata = json!({"resourceVersion": listed.revision.to_string()});
    if let Some(c) = listed.continue_token {
        metadata["continue"] = json!(c);
    }
    if let Some(r) = listed.remaining {
        metadata["remainingItemCount"] = json!(r);
    }
    json!({
        "kind": rt.list_kind,
        "apiVersion": rt.api_version,
        "metadata": metadata,
        "items": listed.items,
    })
}

/// What a DELETE of one object answers, as Kubernetes' registry does: the object while
/// it is still there (finalizers, a grace period) and always for pods and services
/// (`ReturnDeletedObject`); otherwise a success Status naming what was removed, which is
/// how clients tell "gone" from "being deleted".
fn deleted_answer(rt: &ResourceType, obj: Value) -> Value {
    if objects::is_deleting(&obj) || matches!(rt.kind, "Pod" | "Service") {
        return obj;
    }
    let mut details = json!({"name": objects::name(&obj), "kind": rt.plural});
    if !rt.group.is_empty() {
        details["group"] = json!(rt.group);
    }
    if let Some(uid) = objects::meta_str(&obj, "uid") {
        details["uid"] = json!(uid);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

/// What an unpaged list's entries are.
#[derive(Clone, Copy)]
enum Rows {
    /// The objects (a `…List`).
    Objects,
    /// Table rows (`kubectl get`).
    Table {
        kind: &'static str,
        now: jiff::Timestamp,
        include: IncludeObject,
    },
}

impl Rows {
    /// The list's JSON without its entries, as the bytes before and after them.
    fn envelope(self, rt: &ResourceType, revision: i64) -> (Vec<u8>, Vec<u8>) {
        let metadata = json!({"resourceVersion": revision.to_string()});
        let (mut head, field) = match self {
            Rows::Objects => (
                json!({"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": metadata}),
                "items",
            ),
            Rows::Table { kind, now, include } => {
                let mut head = skiff_api::table::table(kind, &[], now, include);
                head["metadata"] = metadata;
                (head, "rows")
            }
        };
        if let Some(m) = head.as_object_mut() {
            m.remove(field);
        }
        let mut open = serde_json::to_vec(&head).unwrap_or_default();
        // `{…}` becomes `{…,"items":[`: the entries go last, streamed.
        open.pop();
        if open.len() > 1 {
            open.push(b',');
        }
        open.extend_from_slice(format!("\"{field}\":[").as_bytes());
        (open, b"]}".to_vec())
    }

    /// Appends a page's entries to `out`, each after a comma unless it is the first.
    fn write(self, objects: &[Value], first: &mut bool, out: &mut Vec<u8>) {
        let rows;
        let entries = match self {
            Rows::Objects => objects,
            Rows::Table { kind, now, include } => {
                let mut table = skiff_api::table::table(kind, objects, now, include);
                rows = match table.get_mut("rows").map(Value::take) {
                    Some(Value::Array(rows)) => rows,
                    _ => Vec::new(),
                };
                &rows[..]
            }
        };
        for entry in entries {
            if !std::mem::take(first) {
                out.push(b',');
            }
            // Writing a Value to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, entry);
        }
    }
}

/// Answers an unpaged list. One store page is answered whole; a longer list is streamed,
/// the next store page read as the client takes the previous one, so that the
/// apiserver's memory does not grow with the number of objects. A store failure after
/// the first page cuts the answer short (the status is sent already), which the client
/// sees as a broken body, never as a shorter list.
async fn unpaged_list(
    rt: &'static ResourceType,
    mut pages: handlers::ListPages,
    rows: Rows,
) -> Result<Response> {
    let (open, close) = rows.envelope(rt, pages.revision());
    let mut first = true;
    let mut body = open;
    if let Some(objects) = pages.next_page().await? {
        rows.write(&objects, &mut first, &mut body);
    }
    if pages.read_all() {
        body.extend_from_slice(&close);
        return Ok((
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response());
    }
    struct Stream {
        pages: handlers::ListPages,
        rows: Rows,
        first: bool,
        close: Option<Vec<u8>>,
    }
    let state = Stream {
        pages,
        rows,
        first,
        close: Some(close),
    };
    let rest = futures::stream::unfold(state, |mut s| async move {
        loop {
            let close = s.close.take()?;
            match s.pages.next_page().await {
                Ok(Some(objects)) => {
                    s.close = Some(close);
                    let mut chunk = Vec::new();
                    s.rows.write(&objects, &mut s.first, &mut chunk);
                    // An empty chunk would end a chunked body early in some clients.
                    if !chunk.is_empty() {
                        return Some((Ok(Bytes::from(chunk)), s));
                    }
                }
                Ok(None) => return Some((Ok(Bytes::from(close)), s)),
                Err(e) => {
                    tracing::warn!(error = %e, "a streamed list failed after its first page");
                    return Some((Err(std::io::Error::other(e.to_string())), s));
                }
            }
        }
    });
    let stream = futures::stream::once(async move { Ok(Bytes::from(body)) }).chain(rest);
    Response::builder()
        .header(axum::http::header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from_stream(stream))
        .map_err(|e| Error::internal(e.to_string()))
}

#[allow(clippy::too_many_arguments)]
async fn resource_request(
    server: &Arc<Server>,
    method: &Method,
    t: Target,
    q: &Query,
    headers: &HeaderMap,
    content_type: &str,
    body: &[u8],
) -> Result<Response> {
    let rt = t.rt;
    let table = wants_table(headers);
    if rt.namespaced
        && t.namespace.is_none()
        && !(method == Method::GET || (method == Method::DELETE && t.name.is_none()))
    {
        return Err(Error::bad_request(format!(
            "{} are namespaced: this request needs a namespace (/namespaces/<namespace>/{})",
            rt.plural, rt.plural
        )));
    }
    if rt.namespaced && t.namespace.is_none() && t.name.is_some() {
        return Err(Error::no_route(&format!(
            "{}/{}",
            rt.plural,
            t.name.as_deref().unwrap_or("")
        )));
    }
    if !rt.writable && matches!(method.as_str(), "POST" | "PUT" | "PATCH") {
        return Err(Error::method_not_allowed(
            method.as_str(),
            &format!(
                "{}: skiff serves them read-only (it has no controller for them); use a Deployment or a ReplicaSet instead",
                rt.qualified_name()
            ),
        ));
    }
    let now = jiff::Timestamp::now();
    let parse = |body: &[u8]| objects::parse_body(body, content_type, &server.protobuf);
    match (t.subresource, method.as_str(), t.name.is_some()) {
        (None, "GET", false) if q.flag("watch") => {
            let render = if table {
                watch::Render::Table(include_object(q)?)
            } else {
                watch::Render::Object
            };
            watch::watch(server.clone(), t, q, render).await
        }
        (None, "GET", false) if q.int("limit")?.unwrap_or(0) <= 0 => {
            let rows = if table {
                Rows::Table {
                    kind: rt.kind,
                    now,
                    include: include_object(q)?,
                }
            } else {
                Rows::Objects
            };
            let pages = server.list_pages(&t, q).await?;
            unpaged_list(rt, pages, rows).await
        }
        (None, "GET", false) => {
            let listed = server.list(&t, q).await?;
            if table {
                let mut tbl =
                    skiff_api::table::table(rt.kind, &listed.items, now, include_object(q)?);
                tbl["metadata"]["resourceVersion"] = json!(listed.revision.to_string());
                if let Some(c) = &listed.continue_token {
                    tbl["metadata"]["continue"] = json!(c);
                }
                Ok(json_response(200, &tbl))
            } else {
                Ok(json_response(200, &list_json(rt, listed)))
            }
        }
        (None, "GET", true) => {
            let obj = server.get(&t).await?;
            if table {
                let mut tbl = skiff_api::table::table(
                    rt.kind,
                    std::slice::from_ref(&obj),
                    now,
                    include_object(q)?,
                );
                tbl["metadata"]["resourceVersion"] = obj["metadata"]["resourceVersion"].clone();
                Ok(json_response(200, &tbl))
            } else {
                Ok(json_response(200, &obj))
            }
        }
        (None, "POST", false) => {
            let w = server.create(&t, q, parse(body)?).await?;
            Ok(with_warnings(json_response(w.code, &w.object), &w.warnings))
        }
        (None | Some(Subresource::Status), "PUT", true) => {
            let w = server.update(&t, q, parse(body)?).await?;
            Ok(with_warnings(json_response(w.code, &w.object), &w.warnings))
        }
        (Some(Subresource::Finalize), "PUT", true) => {
            let w = server.update(&t, q, parse(body)?).await?;
            Ok(json_response(w.code, &w.object))
        }
        (None | Some(Subresource::Status), "PATCH", true) => {
            let w = server.patch(&t, q, content_type, body).await?;
            Ok(with_warnings(json_response(w.code, &w.object), &w.warnings))
        }
        (None, "DELETE", true) => {
            let w = server.delete(&t, q, body).await?;
            Ok(json_response(w.code, &deleted_answer(rt, w.object)))
        }
        (None, "DELETE", false) => {
            let v = server.delete_collection(&t, q, body).await?;
            Ok(json_response(200, &v))
        }
        (Some(Subresource::Status), "GET", true) => Ok(json_response(200, &server.get(&t).await?)),
        (Some(Subresource::Scale), "GET", true) => {
            Ok(json_response(200, &server.get_scale(&t).await?))
        }
        (Some(Subresource::Scale), "PUT", true) => {
            let w = server.update_scale(&t, q, None, body).await?;
            Ok(json_response(200, &w.object))
        }
        (Some(Subresource::Scale), "PATCH", true) => {
            let w = server.update_scale(&t, q, Some(content_type), body).await?;
            Ok(json_response(200, &w.object))
        }
        (Some(Subresource::Binding), "POST", true) => {
            Ok(json_response(201, &server.bind(&t, parse(body)?).await?))
        }
        (Some(Subresource::Eviction), "POST", true) => {
            Ok(json_response(201, &server.evict(&t, q, body).await?))
        }
        (Some(Subresource::Token), "POST", true) => Ok(json_response(
            201,
            &server.create_token(&t, parse(body)?).await?,
        )),
        (sub, m, _) => Err(Error::method_not_allowed(
            m,
            &match sub {
                Some(s) => format!("{}/{}", rt.plural, s.name()),
                None => rt.plural.to_string(),
            },
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods() -> Vec<Value> {
        (0..3)
            .map(|i| json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("p{i}"), "namespace": "default", "resourceVersion": "7"},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}}))
            .collect()
    }

    /// The list as the streamed path writes it, pages of `sizes` objects.
    fn streamed(rows: Rows, rt: &ResourceType, objects: &[Value], sizes: &[usize]) -> Value {
        let (mut body, close) = rows.envelope(rt, 9);
        let mut first = true;
        let mut at = 0;
        for n in sizes {
            rows.write(&objects[at..at + n], &mut first, &mut body);
            at += n;
        }
        body.extend_from_slice(&close);
        serde_json::from_slice(&body).expect("the streamed list is JSON")
    }

    #[test]
    fn a_streamed_list_is_the_list() {
        let rt = ResourceType::lookup("", "v1", "pods").unwrap();
        let items = pods();
        let whole = list_json(
            rt,
            handlers::Listed {
                items: items.clone(),
                revision: 9,
                continue_token: None,
                remaining: None,
            },
        );
        for sizes in [&[3][..], &[1, 0, 2], &[0], &[]] {
            let objects = &items[..sizes.iter().sum::<usize>()];
            let mut expected = whole.clone();
            expected["items"] = json!(objects);
            assert_eq!(streamed(Rows::Objects, rt, objects, sizes), expected);
        }
    }

    #[test]
    fn a_streamed_table_is_the_table() {
        let rt = ResourceType::lookup("", "v1", "pods").unwrap();
        let items = pods();
        let now = jiff::Timestamp::now();
        let include = IncludeObject::Metadata;
        let mut whole = skiff_api::table::table("Pod", &items, now, include);
        whole["metadata"]["resourceVersion"] = json!("9");
        let rows = Rows::Table {
            kind: "Pod",
            now,
            include,
        };
        assert_eq!(streamed(rows, rt, &items, &[2, 1]), whole);
    }
}
