//! Renders the catalogue and the operations as OpenAPI 3.0 (one document per
//! group-version) and Swagger 2.0 (one document for everything).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::paths::{list_content, GroupVersion, In, Operation, Param, PathItem, Payload};
use super::schemas::{rewrite_refs, Catalog};
use super::OpenApiError;

const V3_PREFIX: &str = "#/components/schemas/";
const V2_PREFIX: &str = "#/definitions/";

fn info() -> Value {
    json!({"title": "skiff", "version": env!("CARGO_PKG_VERSION")})
}

/// Each schema in its v3 form, serialized once: most schemas (ObjectMeta, PodSpec, …)
/// appear in several group-versions' documents, which are assembled from these pieces.
#[derive(Default)]
pub(super) struct V3Schemas {
    serialized: BTreeMap<String, Vec<u8>>,
}

impl V3Schemas {
    fn get(&mut self, catalog: &Catalog, name: &str) -> Result<&[u8], OpenApiError> {
        if !self.serialized.contains_key(name) {
            let schema = catalog
                .defs
                .get(name)
                .ok_or_else(|| OpenApiError::DanglingReference(name.to_string()))?;
            let bytes = serde_json::to_vec(&rewrite_refs(schema, V3_PREFIX, true))?;
            self.serialized.insert(name.to_string(), bytes);
        }
        Ok(self.serialized.get(name).map_or(&[][..], Vec::as_slice))
    }
}

/// The OpenAPI 3.0 document of one group-version, serialized.
pub(super) fn v3_document(
    catalog: &Catalog,
    gv: &GroupVersion,
    schemas: &mut V3Schemas,
) -> Result<Vec<u8>, OpenApiError> {
    let mut paths = Map::new();
    for item in &gv.paths {
        paths.insert(item.path.clone(), v3_path_item(item, &gv.tag));
    }
    // Written by hand rather than through a `Value` so that the shared schemas are copied
    // as bytes; keys in sorted order, as serde_json writes its maps.
    let mut out = Vec::with_capacity(1 << 20);
    out.extend_from_slice(br#"{"components":{"schemas":{"#);
    for (i, name) in catalog
        .closure_for(gv.group, gv.version)?
        .iter()
        .enumerate()
    {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, name)?;
        out.push(b':');
        out.extend_from_slice(schemas.get(catalog, name)?);
    }
    out.extend_from_slice(br#"}},"info":"#);
    serde_json::to_writer(&mut out, &info())?;
    out.extend_from_slice(br#","openapi":"3.0.0","paths":"#);
    serde_json::to_writer(&mut out, &paths)?;
    out.push(b'}');
    Ok(out)
}

fn v3_param(p: &Param) -> Value {
    let mut out = json!({
        "name": p.name,
        "in": in_name(p.location),
        "description": p.description,
        "schema": {"type": p.ty.name(), "uniqueItems": true},
    });
    if p.location == In::Path {
        out["required"] = Value::Bool(true);
    }
    out
}

fn v3_path_item(item: &PathItem, tag: &str) -> Value {
    let mut out = Map::new();
    for op in &item.operations {
        out.insert(op.method.key().into(), v3_operation(op, tag));
    }
    out.insert(
        "parameters".into(),
        item.params.iter().map(v3_param).collect(),
    );
    Value::Object(out)
}

fn v3_ref(name: &str) -> Value {
    json!({"$ref": format!("{V3_PREFIX}{name}")})
}

fn v3_operation(op: &Operation, tag: &str) -> Value {
    let mut out = json!({
        "tags": [tag],
        "description": op.description,
        "operationId": op.operation_id,
        "responses": v3_responses(op),
        "x-kubernetes-action": op.action,
        "x-kubernetes-group-version-kind": op.gvk.to_json(),
    });
    if !op.params.is_empty() {
        out["parameters"] = op.params.iter().map(v3_param).collect();
    }
    if let Some(body) = &op.body {
        let content: Map<String, Value> = body
            .content_types
            .iter()
            .map(|ct| (ct.to_string(), json!({"schema": v3_ref(&body.schema)})))
            .collect();
        out["requestBody"] = json!({"content": content, "required": body.required});
    }
    out
}

fn v3_responses(op: &Operation) -> Value {
    let mut out = Map::new();
    for (code, payload) in &op.responses {
        let content: Map<String, Value> = match payload {
            Payload::Object(name) => [(
                "application/json".to_string(),
                json!({"schema": v3_ref(name)}),
            )]
            .into_iter()
            .collect(),
            Payload::List(name) => list_content(name)
                .into_iter()
                .map(|(ct, schema)| (ct.to_string(), json!({"schema": v3_ref(&schema)})))
                .collect(),
            Payload::Text => [(
                "text/plain".to_string(),
                json!({"schema": {"type": "string"}}),
            )]
            .into_iter()
            .collect(),
        };
        out.insert(
            code.to_string(),
            json!({"description": status_text(*code), "content": content}),
        );
    }
    out.insert("401".into(), json!({"description": "Unauthorized"}));
    Value::Object(out)
}

/// The Swagger 2.0 document of every group-version.
pub(super) fn v2_document(catalog: &Catalog, gvs: &[GroupVersion]) -> Value {
    let definitions: Map<String, Value> = catalog
        .defs
        .iter()
        .map(|(name, schema)| (name.clone(), rewrite_refs(schema, V2_PREFIX, false)))
        .collect();
    let mut paths = Map::new();
    for gv in gvs {
        for item in &gv.paths {
            paths.insert(item.path.clone(), v2_path_item(item, &gv.tag));
        }
    }
    json!({
        "swagger": "2.0",
        "info": info(),
        "paths": paths,
        "definitions": definitions,
    })
}

fn v2_param(p: &Param) -> Value {
    let mut out = json!({
        "name": p.name,
        "in": in_name(p.location),
        "description": p.description,
        "type": p.ty.name(),
        "uniqueItems": true,
    });
    if p.location == In::Path {
        out["required"] = Value::Bool(true);
    }
    out
}

fn v2_path_item(item: &PathItem, tag: &str) -> Value {
    let mut out = Map::new();
    for op in &item.operations {
        out.insert(op.method.key().into(), v2_operation(op, tag));
    }
    out.insert(
        "parameters".into(),
        item.params.iter().map(v2_param).collect(),
    );
    Value::Object(out)
}

fn v2_ref(name: &str) -> Value {
    json!({"$ref": format!("{V2_PREFIX}{name}")})
}

fn v2_operation(op: &Operation, tag: &str) -> Value {
    let mut params: Vec<Value> = op.params.iter().map(v2_param).collect();
    let mut consumes: Vec<&str> = vec!["*/*"];
    if let Some(body) = &op.body {
        params.push(json!({
            "name": "body",
            "in": "body",
            "required": body.required,
            "schema": v2_ref(&body.schema),
        }));
        consumes = body.content_types.to_vec();
    }
    let produces: Vec<&str> = if op.responses.iter().any(|(_, p)| matches!(p, Payload::Text)) {
        vec!["*/*"]
    } else if op
        .responses
        .iter()
        .any(|(_, p)| matches!(p, Payload::List(_)))
    {
        vec!["application/json", "application/json;stream=watch"]
    } else {
        vec!["application/json"]
    };
    let mut responses = Map::new();
    for (code, payload) in &op.responses {
        let schema = match payload {
            Payload::Object(name) | Payload::List(name) => v2_ref(name),
            Payload::Text => json!({"type": "string"}),
        };
        responses.insert(
            code.to_string(),
            json!({"description": status_text(*code), "schema": schema}),
        );
    }
    responses.insert("401".into(), json!({"description": "Unauthorized"}));
    let mut out = json!({
        "tags": [tag],
        "description": op.description,
        "operationId": op.operation_id,
        "consumes": consumes,
        "produces": produces,
        "responses": responses,
        "x-kubernetes-action": op.action,
        "x-kubernetes-group-version-kind": op.gvk.to_json(),
    });
    if !params.is_empty() {
        out["parameters"] = Value::Array(params);
    }
    out
}

fn in_name(location: In) -> &'static str {
    match location {
        In::Path => "path",
        In::Query => "query",
    }
}

fn status_text(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        _ => "Other",
    }
}
