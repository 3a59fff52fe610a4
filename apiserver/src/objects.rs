//! Small accessors over objects held as JSON, and the decoding of request bodies into
//! objects of a served type (with Kubernetes' strict/warn handling of unknown fields).

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use skiff_api::ResourceType;

use crate::error::{Error, Result};
use crate::request::FieldValidation;

/// `metadata.<field>` as a string.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// The `metadata` object, created if missing.
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = Value::Object(Map::new());
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata was just made an object")
}

/// The object's name ("" when missing).
pub fn name(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or("")
}

/// `metadata.labels` as a map.
pub fn labels(obj: &Value) -> BTreeMap<String, String> {
    string_map(obj.get("metadata").and_then(|m| m.get("labels")))
}

/// A JSON object of strings as a map (other values are skipped).
pub fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// `metadata.finalizers`.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `metadata.deletionTimestamp` is set.
pub fn is_deleting(obj: &Value) -> bool {
    meta_str(obj, "deletionTimestamp").is_some()
}

/// The current time as Kubernetes writes timestamps (RFC 3339, whole seconds, UTC).
pub fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}

/// A time `secs` from now, formatted as Kubernetes does.
pub fn rfc3339_in(secs: i64) -> String {
    let now = jiff::Timestamp::now().as_second() + secs;
    jiff::Timestamp::from_second(now)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| now_rfc3339())
}

/// Value of a dotted field path, as a string for field selectors. Boolean fields that
/// are left out compare as "false", as their Go zero value does in Kubernetes.
pub fn field_value(obj: &Value, path: &str) -> Option<String> {
    let mut cur = obj;
    for part in path.split('.') {
        match cur.get(part) {
            Some(next) => cur = next,
            None if matches!(path, "spec.unschedulable" | "spec.hostNetwork") => {
                return Some("false".into())
            }
            None => return None,
        }
    }
    match cur {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Decodes a request body: JSON, YAML or Kubernetes protobuf, as the content type says.
pub fn parse_body(
    body: &[u8],
    content_type: &str,
    protobuf: &crate::protobuf::Decoder,
) -> Result<Value> {
    if content_type.contains("vnd.kubernetes.protobuf") {
        return protobuf.decode_body(body);
    }
    if content_type.contains("cbor") {
        // client-go falls back to JSON for the rest of its life after a 415 to CBOR.
        return Err(Error::unsupported_media_type(
            content_type,
            "application/json, application/yaml, application/vnd.kubernetes.protobuf",
        ));
    }
    if content_type.contains("yaml") {
        serde_norway::from_slice(body)
            .map_err(|e| Error::bad_request(format!("the request body is not valid YAML: {e}")))
    } else {
        serde_json::from_slice(body).map_err(|e| {
            Error::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })
    }
}

/// Map fields whose values are resource quantities: a number there (`cpu: 1` in YAML)
/// is what Kubernetes accepts, but k8s-openapi's `Quantity` only takes strings.
const QUANTITY_MAPS: &[&str] = &[
    "requests",
    "limits",
    "hard",
    "used",
    "capacity",
    "allocatable",
    "default",
    "defaultRequest",
    "max",
    "min",
    "maxLimitRequestRatio",
];

fn quantities_as_strings(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if QUANTITY_MAPS.contains(&k.as_str()) {
                    if let Value::Object(q) = child {
                        for qv in q.values_mut() {
                            if let Value::Number(n) = qv {
                                *qv = Value::String(n.to_string());
                            }
                        }
                    }
                }
                if k == "sizeLimit" || k == "storage" {
                    if let Value::Number(n) = child {
                        *child = Value::String(n.to_string());
                        continue;
                    }
                }
                quantities_as_strings(child);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(quantities_as_strings),
        _ => {}
    }
}

/// Paths of fields in `input` that the typed decoding dropped: the unknown fields.
fn unknown_fields(input: &Value, output: &Value, path: &str, out: &mut Vec<String>) {
    match (input, output) {
        (Value::Object(i), Value::Object(o)) => {
            for (k, v) in i {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match o.get(k) {
                    None if !v.is_null() => out.push(p),
                    None => {}
                    Some(ov) => unknown_fields(v, ov, &p, out),
                }
            }
        }
        (Value::Array(i), Value::Array(o)) => {
            for (n, (iv, ov)) in i.iter().zip(o).enumerate() {
                unknown_fields(iv, ov, &format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
}

/// Decodes `body` as an object of type `rt`: checks apiVersion and kind, type-checks it
/// through the k8s-openapi type, and handles unknown fields per `validation`. Returns
/// the normalized object and any warnings.
pub fn decode_object(
    rt: &ResourceType,
    mut body: Value,
    validation: FieldValidation,
) -> Result<(Value, Vec<String>)> {
    if !body.is_object() {
        return Err(Error::bad_request(format!(
            "the request body must be a JSON object of kind {}",
            rt.kind
        )));
    }
    let kind = body
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let api_version = body
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    // Kubernetes fills a missing kind/apiVersion from the path.
    if kind.is_empty() {
        body["kind"] = Value::String(rt.kind.into());
    } else if kind != rt.kind {
        return Err(Error::bad_request(format!(
            "the kind in the request body ({kind}) does not match the resource of the path ({}, kind {}); send it to the path of its own resource",
            rt.qualified_name(),
            rt.kind
        )));
    }
    if api_version.is_empty() {
        body["apiVersion"] = Value::String(rt.api_version.into());
    } else if api_version != rt.api_version {
        return Err(Error::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            rt.api_version
        )));
    }
    quantities_as_strings(&mut body);
    let decoded = (rt.roundtrip)(&body).map_err(|e| {
        Error::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {e}",
            rt.kind, rt.version, rt.kind
        ))
    })?;
    let mut unknown = Vec::new();
    if validation != FieldValidation::Ignore {
        unknown_fields(&body, &decoded, "", &mut unknown);
    }
    let messages: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    if validation == FieldValidation::Strict && !messages.is_empty() {
        return Err(Error::bad_request(format!(
            "strict decoding error: {}",
            messages.join(", ")
        )));
    }
    Ok((decoded, messages))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pods() -> &'static ResourceType {
        ResourceType::lookup("", "v1", "pods").unwrap()
    }

    #[test]
    fn unknown_fields_are_named_by_path() {
        let body = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"},
            "spec": {"containerz": [], "containers": [{"name": "c", "image": "i", "imagePullPolicyy": "x"}]}});
        let err = decode_object(pods(), body.clone(), FieldValidation::Strict).unwrap_err();
        let msg = err.to_status().message;
        assert!(msg.contains("unknown field \"spec.containerz\""), "{msg}");
        assert!(msg.contains("spec.containers[0].imagePullPolicyy"), "{msg}");
        let (obj, warnings) = decode_object(pods(), body, FieldValidation::Warn).unwrap();
        assert_eq!(warnings.len(), 2);
        assert!(obj["spec"].get("containerz").is_none());
    }

    #[test]
    fn numbers_are_accepted_as_quantities() {
        let body = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": 1, "memory": 1024}}}]}});
        let (obj, _) = decode_object(pods(), body, FieldValidation::Strict).unwrap();
        assert_eq!(
            obj["spec"]["containers"][0]["resources"]["requests"]["cpu"],
            "1"
        );
    }

    #[test]
    fn a_wrong_kind_or_version_is_refused() {
        let body =
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"}});
        assert_eq!(
            decode_object(pods(), body, FieldValidation::Strict)
                .unwrap_err()
                .to_status()
                .code,
            400
        );
        let body = json!({"apiVersion": "v2", "kind": "Pod", "metadata": {"name": "a"}});
        assert_eq!(
            decode_object(pods(), body, FieldValidation::Strict)
                .unwrap_err()
                .to_status()
                .code,
            400
        );
        let body = json!({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": "x"}});
        assert_eq!(
            decode_object(pods(), body, FieldValidation::Strict)
                .unwrap_err()
                .to_status()
                .code,
            400
        );
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        /// Keys that reach deep into the typed decoders, mixed with unknown ones.
        const KEYS: &[&str] = &[
            "metadata",
            "name",
            "namespace",
            "labels",
            "spec",
            "status",
            "containers",
            "image",
            "ports",
            "containerPort",
            "replicas",
            "selector",
            "matchLabels",
            "template",
            "data",
            "resources",
            "requests",
            "cpu",
            "type",
            "x",
            "template",
        ];

        fn json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                "[a-z0-9.]{0,8}".prop_map(Value::from),
            ];
            leaf.prop_recursive(5, 64, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                    prop::collection::btree_map(prop::sample::select(KEYS), inner, 0..5).prop_map(
                        |m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                    ),
                ]
            })
        }

        proptest! {
            // Decoding any body as any served type answers Ok or a 400, never panics, and
            // what it keeps re-decodes to itself (nothing unknown survives).
            #[test]
            fn decoding_never_panics(body in json(), which in 0..skiff_api::RESOURCES.len(), strict in any::<bool>()) {
                let rt = &skiff_api::RESOURCES[which];
                let mut body = body;
                if let Value::Object(m) = &mut body {
                    m.insert("kind".into(), json!(rt.kind));
                    m.insert("apiVersion".into(), json!(rt.api_version));
                }
                let mode = if strict { FieldValidation::Strict } else { FieldValidation::Warn };
                match decode_object(rt, body, mode) {
                    Ok((obj, _)) => {
                        let (again, warnings) = decode_object(rt, obj.clone(), FieldValidation::Strict)
                            .expect("a decoded object decodes again");
                        prop_assert!(warnings.is_empty());
                        prop_assert_eq!(again, obj);
                    }
                    Err(e) => prop_assert_eq!(e.to_status().code, 400),
                }
            }

            // Any bytes as a body: a 400, never a panic.
            #[test]
            fn parsing_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200), yaml in any::<bool>()) {
                let ct = if yaml { "application/yaml" } else { "application/json" };
                if let Err(e) = parse_body(&bytes, ct, &crate::protobuf::Decoder::default()) {
                    prop_assert_eq!(e.to_status().code, 400);
                }
            }
        }
    }
}
