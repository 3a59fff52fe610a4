use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use prost::Message;
use serde_json::Value;
use skiff_api::resource::RESOURCES;
use tower::ServiceExt;

use super::paths::gv_key;
use super::proto;
use super::*;

pub(super) fn shared() -> &'static Arc<OpenApi> {
    static API: OnceLock<Arc<OpenApi>> = OnceLock::new();
    API.get_or_init(|| match OpenApi::build() {
        Ok(api) => Arc::new(api),
        Err(e) => panic!("building the documents failed: {e}"),
    })
}

fn api() -> &'static OpenApi {
    shared()
}

fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("a document is valid JSON")
}

fn v3(key: &str) -> Value {
    parse(
        api()
            .v3_document(key)
            .expect("the group-version has a document"),
    )
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

const OPERATIONS: &[&str] = &["get", "put", "post", "delete", "patch"];

/// Every operation of a document: (path, method, operation).
fn operations(doc: &Value) -> Vec<(String, &'static str, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in OPERATIONS {
            if let Some(op) = item.get(*method) {
                out.push((path.clone(), *method, op.clone()));
            }
        }
    }
    out
}

fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    out.push(v.as_str().unwrap_or_default().to_string());
                } else {
                    refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn builds_quickly_and_reports_sizes() {
    let start = Instant::now();
    let api = OpenApi::build().expect("the documents build");
    let elapsed = start.elapsed();
    println!("built the OpenAPI documents in {elapsed:?}");
    println!("v2 JSON: {} bytes", api.v2_json().len());
    println!("v2 protobuf: {} bytes", api.v2_protobuf().len());
    println!("v3 index: {} bytes", api.v3_index().len());
    for key in api.v3_keys() {
        println!(
            "v3 {key}: {} bytes",
            api.v3_document(key).map_or(0, <[u8]>::len)
        );
    }
    let debug = format!("{api:?}");
    assert!(debug.len() < 1000, "{debug}");
    // Generous for an unoptimized test build on a shared machine; release takes far less.
    assert!(elapsed.as_secs() < 5, "building took {elapsed:?}");
}

#[test]
fn documents_parse() {
    let v2 = parse(api().v2_json());
    assert_eq!(v2["swagger"], "2.0");
    let index = parse(api().v3_index());
    let paths = index["paths"].as_object().expect("index paths");
    assert!(paths.contains_key("api/v1"));
    assert!(paths.contains_key("apis/apps/v1"));
    for (key, entry) in paths {
        let url = entry["serverRelativeURL"].as_str().expect("a URL");
        assert!(
            url.starts_with(&format!("/openapi/v3/{key}?hash=")),
            "{url}"
        );
        let doc = v3(key);
        assert_eq!(doc["openapi"], "3.0.0");
        assert!(doc["components"]["schemas"].as_object().is_some());
    }
}

#[test]
fn index_covers_exactly_the_served_group_versions() {
    let mut expected: Vec<String> = RESOURCES
        .iter()
        .map(|r| gv_key(r.group, r.version))
        .collect();
    expected.sort();
    expected.dedup();
    let index = parse(api().v3_index());
    let mut keys: Vec<String> = index["paths"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    keys.sort();
    assert_eq!(keys, expected);
}

#[test]
fn every_reference_resolves() {
    for key in api().v3_keys() {
        let doc = v3(key);
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        for r in found {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{key}: reference {r} has the wrong prefix"));
            assert!(schemas.contains_key(name), "{key}: {r} is not defined");
        }
    }
    let v2 = parse(api().v2_json());
    let definitions = v2["definitions"].as_object().unwrap();
    let mut found = Vec::new();
    refs(&v2, &mut found);
    for r in found {
        let name = r.strip_prefix("#/definitions/").expect("v2 prefix");
        assert!(definitions.contains_key(name), "v2: {r} is not defined");
    }
}

/// The name of the schema carrying a GVK, as kubectl searches for it.
fn schema_with_gvk(schemas: &Value, wanted: &Value) -> Option<String> {
    schemas.as_object()?.iter().find_map(|(name, s)| {
        s.get("x-kubernetes-group-version-kind")?
            .as_array()?
            .contains(wanted)
            .then(|| name.clone())
    })
}

#[test]
fn every_served_kind_and_list_has_a_schema_with_its_gvk() {
    let v2 = parse(api().v2_json());
    for r in RESOURCES {
        let doc = v3(&gv_key(r.group, r.version));
        let schemas = &doc["components"]["schemas"];
        for kind in [r.kind, r.list_kind] {
            let wanted = gvk(r.group, r.version, kind);
            let name = schema_with_gvk(schemas, &wanted)
                .unwrap_or_else(|| panic!("no v3 schema for {kind}.{}", r.group));
            assert!(name.ends_with(&format!(".{kind}")), "{name}");
            assert!(
                schema_with_gvk(&v2["definitions"], &wanted).is_some(),
                "no v2 definition for {kind}.{}",
                r.group
            );
        }
    }
    let apps = v3("apis/apps/v1");
    assert!(schema_with_gvk(
        &apps["components"]["schemas"],
        &gvk("autoscaling", "v1", "Scale")
    )
    .is_some());
    let core = v3("api/v1");
    for meta in ["Status", "DeleteOptions", "WatchEvent"] {
        assert!(
            schema_with_gvk(&core["components"]["schemas"], &gvk("", "v1", meta)).is_some(),
            "{meta}"
        );
    }
    assert!(core["components"]["schemas"]
        .get("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
        .is_some());
}

fn has_query_param(op: &Value, name: &str) -> bool {
    op["parameters"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["name"] == name && p["in"] == "query"))
}

#[test]
fn every_write_operation_takes_field_validation() {
    let mut writes = 0;
    let docs: Vec<(String, Value)> = api()
        .v3_keys()
        .map(|k| (k.to_string(), v3(k)))
        .chain([("v2".to_string(), parse(api().v2_json()))])
        .collect();
    for (key, doc) in &docs {
        for (path, method, op) in operations(doc) {
            let action = op["x-kubernetes-action"].as_str().unwrap_or_default();
            if matches!(action, "post" | "put" | "patch") {
                writes += 1;
                for param in ["fieldValidation", "dryRun", "fieldManager"] {
                    assert!(
                        has_query_param(&op, param),
                        "{key}: {method} {path} lacks {param}"
                    );
                }
            }
        }
    }
    assert!(writes > RESOURCES.len() * 3);
}

/// What cli-runtime's v3 verifier and kubectl apply's patcher look for: PATCH operations
/// carrying the kind's GVK, each with `fieldValidation` and a strategic-merge-patch body.
#[test]
fn kubectl_finds_field_validation_and_strategic_merge_patch_for_every_kind() {
    for r in RESOURCES {
        let doc = v3(&gv_key(r.group, r.version));
        let wanted = gvk(r.group, r.version, r.kind);
        let patches: Vec<_> = operations(&doc)
            .into_iter()
            .filter(|(_, method, op)| {
                *method == "patch" && op["x-kubernetes-group-version-kind"] == wanted
            })
            .collect();
        assert!(!patches.is_empty(), "no PATCH for {}", r.kind);
        for (path, _, op) in patches {
            assert!(has_query_param(&op, "fieldValidation"), "{path}");
            let content = &op["requestBody"]["content"];
            for ct in [
                "application/strategic-merge-patch+json",
                "application/merge-patch+json",
                "application/json-patch+json",
                "application/apply-patch+yaml",
            ] {
                assert!(content.get(ct).is_some(), "{path} lacks {ct}");
            }
        }
    }
}

/// What `kubectl explain` does: the GVK of an operation on the resource's paths, then the
/// schema that lists it.
#[test]
fn explain_finds_every_kind_from_its_paths() {
    for r in RESOURCES {
        let doc = v3(&gv_key(r.group, r.version));
        let root = if r.group.is_empty() {
            format!("/api/{}", r.version)
        } else {
            format!("/apis/{}/{}", r.group, r.version)
        };
        let path = format!("{root}/{}", r.plural);
        let op_gvk = &doc["paths"][&path]["get"]["x-kubernetes-group-version-kind"];
        assert_eq!(op_gvk, &gvk(r.group, r.version, r.kind), "{path}");
        assert!(schema_with_gvk(&doc["components"]["schemas"], op_gvk).is_some());
    }
}

#[test]
fn lists_carry_their_patch_strategies() {
    let core = v3("api/v1");
    let schemas = &core["components"]["schemas"];
    let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    let volumes = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["volumes"];
    assert_eq!(volumes["x-kubernetes-patch-strategy"], "merge,retainKeys");
    let ports = &schemas["io.k8s.api.core.v1.Container"]["properties"]["ports"];
    assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
    let apps = v3("apis/apps/v1");
    let strategy = &apps["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentSpec"]
        ["properties"]["strategy"];
    assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
    // OpenAPI 3.0 ignores `$ref` siblings, so the reference moves into `allOf`, which is
    // where apimachinery's PatchMetaFromOpenAPIV3 resolves it from.
    assert!(strategy.get("$ref").is_none());
    assert_eq!(
        strategy["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.api.apps.v1.DeploymentStrategy"
    );
    let v2 = parse(api().v2_json());
    assert_eq!(
        v2["definitions"]["io.k8s.api.core.v1.Container"]["properties"]["env"]
            ["x-kubernetes-patch-merge-key"],
        "name"
    );
}

#[test]
fn protobuf_decodes_to_the_same_document() {
    let v2 = parse(api().v2_json());
    let doc = proto::Document::decode(api().v2_protobuf()).expect("the protobuf decodes");
    assert_eq!(doc.swagger, "2.0");
    let definitions = doc.definitions.as_ref().expect("definitions");
    assert_eq!(
        definitions.additional_properties.len(),
        v2["definitions"].as_object().unwrap().len()
    );
    let paths = doc.paths.as_ref().expect("paths");
    assert_eq!(paths.path.len(), v2["paths"].as_object().unwrap().len());

    // What client-go's v2 verifier reads: the PATCH operation's GVK extension (as YAML)
    // and its query parameters.
    let pods = paths
        .path
        .iter()
        .find(|p| p.name == "/api/v1/namespaces/{namespace}/pods/{name}")
        .and_then(|p| p.value.as_ref())
        .and_then(|p| p.patch.as_ref())
        .expect("PATCH pod");
    let ext = pods
        .vendor_extension
        .iter()
        .find(|e| e.name == "x-kubernetes-group-version-kind")
        .and_then(|e| e.value.as_ref())
        .expect("GVK extension");
    let decoded: Value = serde_json::from_str(&ext.yaml).unwrap();
    assert_eq!(decoded, gvk("", "v1", "Pod"));
    let names: Vec<&str> = pods
        .parameters
        .iter()
        .filter_map(|p| match &p.oneof {
            Some(proto::parameters_item::Oneof::Parameter(proto::Parameter {
                oneof: Some(proto::parameter::Oneof::NonBodyParameter(nb)),
            })) => match &nb.oneof {
                Some(proto::non_body_parameter::Oneof::QueryParameterSubSchema(q)) => {
                    Some(q.name.as_str())
                }
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert!(names.contains(&"fieldValidation"), "{names:?}");
    assert!(pods
        .consumes
        .iter()
        .any(|c| c == "application/strategic-merge-patch+json"));

    let pod = definitions
        .additional_properties
        .iter()
        .find(|d| d.name == "io.k8s.api.core.v1.PodSpec")
        .and_then(|d| d.value.as_ref())
        .expect("PodSpec");
    let containers = pod
        .properties
        .as_ref()
        .and_then(|p| {
            p.additional_properties
                .iter()
                .find(|p| p.name == "containers")
        })
        .and_then(|p| p.value.as_ref())
        .expect("containers");
    assert_eq!(containers.r#type.as_ref().unwrap().value, ["array"]);
    assert_eq!(
        containers.items.as_ref().unwrap().schema[0].r#ref,
        "#/definitions/io.k8s.api.core.v1.Container"
    );
}

async fn get(
    uri: &str,
    headers: &[(header::HeaderName, &str)],
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let router = routes(Arc::clone(shared()));
    let mut request = Request::get(uri);
    for (name, value) in headers {
        request = request.header(name, *value);
    }
    let response = router
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .expect("the router answers");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

#[tokio::test]
async fn serves_v2_as_json_or_protobuf() {
    let (status, headers, body) = get("/openapi/v2", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(body, api().v2_json());

    let (status, headers, body) = get(
        "/openapi/v2",
        &[(
            header::ACCEPT,
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
        )],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], V2_PROTOBUF_CONTENT_TYPE);
    assert_eq!(body, api().v2_protobuf());
    let etag = headers[header::ETAG].to_str().unwrap().to_string();

    let (status, _, body) = get("/openapi/v2", &[(header::IF_NONE_MATCH, &etag)]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());

    let (status, _, _) = get("/openapi/v2", &[(header::ACCEPT, "text/html")]).await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
}

#[tokio::test]
async fn serves_v3_index_and_documents() {
    let (status, headers, body) = get("/openapi/v3", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let index = parse(&body);
    let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();

    let (status, headers, body) = get(&url, &[(header::ACCEPT, "application/json")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CACHE_CONTROL], "public, immutable");
    assert!(headers.contains_key(header::EXPIRES));
    assert_eq!(body, api().v3_document("apis/apps/v1").unwrap());

    let (status, headers, _) = get("/openapi/v3/api/v1", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!headers.contains_key(header::CACHE_CONTROL));

    let (status, headers, _) = get("/openapi/v3/api/v1?hash=stale", &[]).await;
    assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
    assert!(headers[header::LOCATION]
        .to_str()
        .unwrap()
        .starts_with("/openapi/v3/api/v1?hash="));
}

#[tokio::test]
async fn unknown_group_versions_are_not_found() {
    for uri in [
        "/openapi/v3/apis/example.com/v1",
        "/openapi/v3/apis/apps/v2",
        "/openapi/v3/api/v2?hash=abc",
    ] {
        let (status, _, body) = get(uri, &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(parse(&body)["reason"], "NotFound");
    }
}

#[test]
fn negotiation_follows_the_clients_preference() {
    let both = [Format::Json, Format::Protobuf];
    assert_eq!(negotiate(None, &both), Some(Format::Json));
    assert_eq!(negotiate(Some("*/*"), &both), Some(Format::Json));
    assert_eq!(
        negotiate(
            Some("application/com.github.proto-openapi.spec.v2.v1.0+protobuf, application/json;q=0.5"),
            &both
        ),
        Some(Format::Protobuf)
    );
    assert_eq!(
        negotiate(
            Some("application/json;q=0.9, application/com.github.proto-openapi.spec.v2@v1.0+protobuf"),
            &both
        ),
        Some(Format::Protobuf)
    );
    assert_eq!(negotiate(Some("text/plain"), &both), None);
    assert_eq!(
        negotiate(
            Some("application/com.github.proto-openapi.spec.v2@v1.0+protobuf"),
            &[Format::Json]
        ),
        None
    );
}
