//! The OpenAPI documents kubectl reads: `/openapi/v2` (Swagger 2.0, as JSON or as gnostic
//! protobuf) and `/openapi/v3` (an index, then one OpenAPI 3.0 document per
//! group-version), covering exactly the resources in `skiff_api::RESOURCES`.
//!
//! Why kubectl needs them:
//! - `--validate=strict` (the default) asks whether the server takes the `fieldValidation`
//!   query parameter. cli-runtime's `pkg/resource/query_param_verifier_v3.go` fetches the
//!   object's group-version document from the `/openapi/v3` index and looks, among the
//!   paths, for a PATCH operation whose `x-kubernetes-group-version-kind` is the object's,
//!   then for a query parameter named `fieldValidation` on that operation (not on the
//!   path). It checks only the first such operation it meets, in Go's random map order, so
//!   every PATCH operation carries the parameter, subresources included. Without the
//!   documents kubectl errors out unless told `--validate=false`.
//! - `kubectl explain` (kubectl's `pkg/explain/v2`, template `plaintext.tmpl`) takes the
//!   GVK from an operation of the resource's list or object path and then finds the schema
//!   whose `x-kubernetes-group-version-kind` list contains it.
//! - Client-side `kubectl apply` builds its strategic merge patch from these documents when
//!   it can: kubectl's `pkg/cmd/apply/patcher.go` first checks that the group-version's v3
//!   document has a PATCH operation for the kind accepting
//!   `application/strategic-merge-patch+json`, then computes the patch with apimachinery's
//!   `strategicpatch.PatchMetaFromOpenAPIV3` (`pkg/util/strategicpatch/meta.go`), which
//!   reads `x-kubernetes-patch-merge-key` and `x-kubernetes-patch-strategy` from each
//!   property's schema; only if that fails does it try v2, and only then its compiled-in
//!   Go types. A schema without the extensions makes every list atomic: kubectl would send
//!   whole `containers` or `env` lists, dropping items other writers added. So the schemas
//!   carry the extensions wherever Kubernetes has them (`patch_meta`), rather than hiding
//!   the kinds from kubectl, which would also break `explain` and the validation check.
//!
//! The schemas come from k8s-openapi's `JsonSchema` impls (its `schemars` feature); the
//! documents are built and serialized once at start, and requests only copy out bytes.

pub mod patch_meta;
mod paths;
mod proto;
mod render;
mod schemas;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;
use sha2::{Digest, Sha512};

/// Why the documents could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OpenApiError {
    /// A served kind has no Rust type in the schema table.
    #[error("no schema for kind {0}")]
    UnknownKind(String),
    /// A schema refers to a schema that was not generated.
    #[error("schema {0} is referenced but not defined")]
    DanglingReference(String),
    /// A patch-strategy entry names a field the schemas do not have.
    #[error("patch strategy for missing field {schema}.{field}")]
    PatchField {
        /// The schema named by the entry.
        schema: &'static str,
        /// The field named by the entry.
        field: &'static str,
    },
    /// The v2 document has a shape its protobuf form cannot carry, or the protobuf
    /// schema of request bodies disagrees with the OpenAPI schemas.
    #[error("protobuf: {0}")]
    Protobuf(String),
    /// Serializing a document failed.
    #[error("cannot serialize an OpenAPI document: {0}")]
    Json(#[from] serde_json::Error),
}

/// The content type of the v2 document as protobuf; Kubernetes answers with this spelling
/// whichever of the two the client asked for.
pub const V2_PROTOBUF_CONTENT_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

const V2_PROTOBUF_SUBTYPE: &str = "com.github.proto-openapi.spec.v2.v1.0+protobuf";
const V2_PROTOBUF_SUBTYPE_OLD: &str = "com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// One group-version's v3 document.
struct V3Document {
    json: Bytes,
    hash: String,
}

/// The serialized OpenAPI documents, built once at start.
pub struct OpenApi {
    /// Decodes protobuf request bodies, with field names from the same schemas.
    pub protobuf: std::sync::Arc<crate::protobuf::Decoder>,
    v2_json: Bytes,
    v2_protobuf: Bytes,
    v2_etag: String,
    v3_index: Bytes,
    v3_index_etag: String,
    v3: BTreeMap<String, V3Document>,
}

/// The hash Kubernetes uses for ETags and the v3 index's `hash` parameter: upper-case hex
/// SHA-512 of the JSON bytes.
fn content_hash(bytes: &[u8]) -> String {
    Sha512::digest(bytes)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

impl std::fmt::Debug for OpenApi {
    // The documents are megabytes; their sizes say enough in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v3: BTreeMap<&str, usize> = self
            .v3
            .iter()
            .map(|(k, d)| (k.as_str(), d.json.len()))
            .collect();
        f.debug_struct("OpenApi")
            .field("v2_json_bytes", &self.v2_json.len())
            .field("v2_protobuf_bytes", &self.v2_protobuf.len())
            .field("v3_bytes", &v3)
            .finish()
    }
}

impl OpenApi {
    /// Generates the schemas and operations and serializes every document.
    pub fn build() -> Result<OpenApi, OpenApiError> {
        let catalog = schemas::Catalog::build()?;
        let protobuf = crate::protobuf::Decoder::build(&catalog.defs)
            .map_err(|e| OpenApiError::Protobuf(e.to_string()))?;
        let gvs = paths::group_versions(&catalog)?;
        let mut v3 = BTreeMap::new();
        let mut index = serde_json::Map::new();
        let mut schemas = render::V3Schemas::default();
        for gv in &gvs {
            let json = render::v3_document(&catalog, gv, &mut schemas)?;
            let hash = content_hash(&json);
            index.insert(
                gv.key.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{}?hash={hash}", gv.key)}),
            );
            v3.insert(
                gv.key.clone(),
                V3Document {
                    json: Bytes::from(json),
                    hash,
                },
            );
        }
        let v3_index = serde_json::to_vec(&json!({ "paths": index }))?;
        let v2 = render::v2_document(&catalog, &gvs);
        let v2_protobuf = prost::Message::encode_to_vec(&proto::document(&v2)?);
        let v2_json = serde_json::to_vec(&v2)?;
        Ok(OpenApi {
            protobuf: std::sync::Arc::new(protobuf),
            v2_etag: format!("\"{}\"", content_hash(&v2_json)),
            v2_json: Bytes::from(v2_json),
            v2_protobuf: Bytes::from(v2_protobuf),
            v3_index_etag: format!("\"{}\"", content_hash(&v3_index)),
            v3_index: Bytes::from(v3_index),
            v3,
        })
    }

    /// The Swagger 2.0 document as JSON.
    pub fn v2_json(&self) -> &[u8] {
        &self.v2_json
    }

    /// The Swagger 2.0 document as gnostic `openapi_v2.Document` protobuf.
    pub fn v2_protobuf(&self) -> &[u8] {
        &self.v2_protobuf
    }

    /// The `/openapi/v3` index.
    pub fn v3_index(&self) -> &[u8] {
        &self.v3_index
    }

    /// The v3 document of a group-version, by its index key (`api/v1`, `apis/apps/v1`).
    pub fn v3_document(&self, key: &str) -> Option<&[u8]> {
        self.v3.get(key).map(|d| d.json.as_ref())
    }

    /// The index keys of every group-version with a v3 document.
    pub fn v3_keys(&self) -> impl Iterator<Item = &str> {
        self.v3.keys().map(String::as_str)
    }
}

/// The routes serving the documents: `/openapi/v2`, `/openapi/v3` and
/// `/openapi/v3/{api/v1 | apis/<group>/<version>}`.
pub fn routes(openapi: Arc<OpenApi>) -> Router {
    Router::new()
        .route("/openapi/v2", get(serve_v2))
        .route("/openapi/v3", get(serve_v3_index))
        .route("/openapi/v3/{*gv}", get(serve_v3_document))
        .with_state(openapi)
}

/// The formats a document can be served in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Protobuf,
}

/// Picks the first format in the client's order of preference that is on offer, as
/// kube-openapi's handlers do; `None` means 406.
fn negotiate(accept: Option<&str>, offered: &[Format]) -> Option<Format> {
    let accept = match accept.map(str::trim) {
        None | Some("") => return offered.first().copied(),
        Some(a) => a,
    };
    let mut clauses: Vec<(f32, &str, &str)> = accept
        .split(',')
        .filter_map(|clause| {
            let mut parts = clause.split(';');
            let media = parts.next()?.trim();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let (ty, sub) = media.split_once('/')?;
            Some((q, ty.trim(), sub.trim()))
        })
        .filter(|(q, _, _)| *q > 0.0)
        .collect();
    clauses.sort_by(|a, b| b.0.total_cmp(&a.0));
    clauses.into_iter().find_map(|(_, ty, sub)| {
        if ty != "application" && ty != "*" {
            return None;
        }
        offered.iter().copied().find(|f| match f {
            Format::Json => sub == "json" || sub == "*",
            Format::Protobuf => {
                sub == V2_PROTOBUF_SUBTYPE || sub == V2_PROTOBUF_SUBTYPE_OLD || sub == "*"
            }
        })
    })
}

fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag == etag || tag.strip_prefix("W/") == Some(etag)
        })
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A 200 (or 304) answer carrying `body`, with the headers Kubernetes sends.
fn document_response(
    request: &HeaderMap,
    body: Bytes,
    content_type: &'static str,
    etag: &str,
    vary_accept: bool,
) -> Response {
    let mut response = if not_modified(request, etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = Response::new(Body::from(body));
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        r
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, header_value(etag));
    if vary_accept {
        headers.insert(header::VARY, HeaderValue::from_static("Accept"));
    }
    response
}

fn not_acceptable() -> Response {
    (
        StatusCode::NOT_ACCEPTABLE,
        "the OpenAPI document is served as application/json or, for v2, as protobuf\n",
    )
        .into_response()
}

async fn serve_v2(State(api): State<Arc<OpenApi>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    match negotiate(accept, &[Format::Json, Format::Protobuf]) {
        Some(Format::Json) => document_response(
            &headers,
            api.v2_json.clone(),
            "application/json",
            &api.v2_etag,
            true,
        ),
        Some(Format::Protobuf) => document_response(
            &headers,
            api.v2_protobuf.clone(),
            V2_PROTOBUF_CONTENT_TYPE,
            &api.v2_etag,
            true,
        ),
        None => not_acceptable(),
    }
}

async fn serve_v3_index(State(api): State<Arc<OpenApi>>, headers: HeaderMap) -> Response {
    document_response(
        &headers,
        api.v3_index.clone(),
        "application/json",
        &api.v3_index_etag,
        false,
    )
}

async fn serve_v3_document(
    State(api): State<Arc<OpenApi>>,
    Path(key): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let key = key.trim_matches('/');
    let Some(doc) = api.v3.get(key) else {
        return not_found(key);
    };
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    if negotiate(accept, &[Format::Json]).is_none() {
        return not_acceptable();
    }
    let asked_hash = query.as_deref().and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("hash="))
            .filter(|h| !h.is_empty())
    });
    if let Some(hash) = asked_hash {
        if hash != doc.hash {
            // A stale link from an old index: send the client to the current document.
            let location = format!("/openapi/v3/{key}?hash={}", doc.hash);
            return (
                StatusCode::MOVED_PERMANENTLY,
                [(header::LOCATION, header_value(&location))],
            )
                .into_response();
        }
    }
    let etag = format!("\"{}\"", doc.hash);
    let mut response =
        document_response(&headers, doc.json.clone(), "application/json", &etag, true);
    if asked_hash.is_some() {
        // A hashed URL names immutable content, so clients may keep it for a year.
        let headers = response.headers_mut();
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, immutable"),
        );
        if let Some(expires) = a_year_from_now() {
            headers.insert(header::EXPIRES, header_value(&expires));
        }
    }
    response
}

fn a_year_from_now() -> Option<String> {
    let later = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(365 * 24))
        .ok()?;
    jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&later)
        .ok()
}

fn not_found(key: &str) -> Response {
    let status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format!("no OpenAPI v3 document for {key}"),
        "reason": "NotFound",
        "code": 404,
    });
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "application/json")],
        status.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod kubectl_tests;
#[cfg(test)]
mod tests;
