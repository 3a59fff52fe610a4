//! Object metadata: names, labels, annotations, owner references, finalizers, and the
//! label selectors that pick objects by their labels.

use serde_json::Value;

use super::json::{arr, int_at, obj, str_at, str_or_empty};
use super::names::{is_dns1123_label, is_qualified_name, is_valid_label_value, validate_name};
use super::{FieldError, Path};
use crate::RESOURCES;

/// Largest total size of an object's annotations, keys plus values.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// Finalizer names that need no domain prefix.
const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

/// Validates `metadata` on create and update: name or generateName, namespace format,
/// labels, annotations, owner references, finalizers.
pub(crate) fn validate_object_meta(kind: &str, obj_value: &Value, errs: &mut Vec<FieldError>) {
    let path = Path::new("metadata");
    let meta = obj_value.get("metadata").unwrap_or(&Value::Null);
    let name = str_or_empty(meta, "name");
    let generate_name = str_or_empty(meta, "generateName");
    if !generate_name.is_empty() {
        for m in validate_name(kind, generate_name, true) {
            errs.push(FieldError::invalid_str(
                path.child("generateName"),
                generate_name,
                m,
            ));
        }
    }
    if name.is_empty() {
        // The server generates the name from generateName before validating; if it has
        // not yet, the prefix check above is what can be said.
        if generate_name.is_empty() {
            errs.push(FieldError::required(
                path.child("name"),
                "name or generateName is required",
            ));
        }
    } else {
        for m in validate_name(kind, name, false) {
            errs.push(FieldError::invalid_str(path.child("name"), name, m));
        }
    }
    let namespaced = RESOURCES
        .iter()
        .find(|r| r.kind == kind)
        .is_none_or(|r| r.namespaced);
    if namespaced {
        if let Some(ns) = str_at(meta, "namespace").filter(|s| !s.is_empty()) {
            for m in is_dns1123_label(ns) {
                errs.push(FieldError::invalid_str(path.child("namespace"), ns, m));
            }
        }
    }
    if let Some(g) = int_at(meta, "generation") {
        if g < 0 {
            errs.push(FieldError::invalid(
                path.child("generation"),
                &Value::from(g),
                "must be greater than or equal to 0",
            ));
        }
    }
    validate_labels(meta.get("labels"), &path.child("labels"), errs);
    validate_annotations(meta.get("annotations"), &path.child("annotations"), errs);
    validate_owner_references(meta, &path.child("ownerReferences"), errs);
    validate_finalizers(meta, &path.child("finalizers"), errs);
}

/// Validates a label map: qualified-name keys and label values, reported at `path`.
pub(crate) fn validate_labels(labels: Option<&Value>, path: &Path, errs: &mut Vec<FieldError>) {
    let Some(map) = labels.and_then(Value::as_object) else {
        return;
    };
    for (k, v) in map {
        for m in is_qualified_name(k) {
            errs.push(FieldError::invalid_str(path, k, m));
        }
        let v = v.as_str().unwrap_or("");
        for m in is_valid_label_value(v) {
            errs.push(FieldError::invalid_str(path, v, m));
        }
    }
}

/// Validates an annotation map: case-insensitive qualified-name keys and a 256 KiB total.
pub(crate) fn validate_annotations(
    annotations: Option<&Value>,
    path: &Path,
    errs: &mut Vec<FieldError>,
) {
    let Some(map) = annotations.and_then(Value::as_object) else {
        return;
    };
    let mut total = 0usize;
    for (k, v) in map {
        for m in is_qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid_str(path, k, m));
        }
        total = total
            .saturating_add(k.len())
            .saturating_add(v.as_str().map_or(0, str::len));
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
}

fn validate_owner_references(meta: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    let refs = arr(meta, "ownerReferences");
    let mut controller: Option<String> = None;
    for r in refs {
        let api_version = str_or_empty(r, "apiVersion");
        let version = api_version.rsplit('/').next().unwrap_or("");
        if version.is_empty() {
            errs.push(FieldError::invalid_str(
                path.child("apiVersion"),
                api_version,
                "version must not be empty",
            ));
        }
        for (field, msg) in [
            ("kind", "must not be empty"),
            ("name", "must not be empty"),
            ("uid", "must not be empty"),
        ] {
            let v = str_or_empty(r, field);
            if v.is_empty() {
                errs.push(FieldError::invalid_str(path.child(field), v, msg));
            }
        }
        if api_version == "v1" && str_or_empty(r, "kind") == "Event" {
            errs.push(FieldError::invalid(
                path,
                r,
                "/v1, Kind=Event is disallowed from being an owner",
            ));
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            let this = format!("{}/{}", str_or_empty(r, "kind"), str_or_empty(r, "name"));
            match &controller {
                Some(first) => errs.push(FieldError::invalid(
                    path,
                    meta.get("ownerReferences").unwrap_or(&Value::Null),
                    format!("Only one reference can have Controller set to true. Found \"true\" in references for {first} and {this}"),
                )),
                None => controller = Some(this),
            }
        }
    }
}

fn validate_finalizers(meta: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    let finalizers = arr(meta, "finalizers");
    for f in finalizers {
        let s = f.as_str().unwrap_or("");
        validate_finalizer_name(s, path, errs);
    }
    let names: Vec<&str> = finalizers.iter().filter_map(Value::as_str).collect();
    if names.contains(&"orphan") && names.contains(&"foregroundDeletion") {
        errs.push(FieldError::invalid(
            path,
            meta.get("finalizers").unwrap_or(&Value::Null),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
}

/// A finalizer is a qualified name, and one without a domain must be a standard one.
pub(crate) fn validate_finalizer_name(s: &str, path: &Path, errs: &mut Vec<FieldError>) {
    for m in is_qualified_name(s) {
        errs.push(FieldError::invalid_str(path, s, m));
    }
    if !s.contains('/') && !STANDARD_FINALIZERS.contains(&s) {
        errs.push(FieldError::invalid_str(
            path,
            s,
            "name is neither a standard finalizer name nor is it fully qualified",
        ));
    }
}

/// Validates a `LabelSelector` (matchLabels and matchExpressions).
pub(crate) fn validate_label_selector(sel: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    validate_labels(sel.get("matchLabels"), &path.child("matchLabels"), errs);
    for (i, expr) in arr(sel, "matchExpressions").iter().enumerate() {
        let p = path.child("matchExpressions").index(i);
        let op = str_or_empty(expr, "operator");
        let values = arr(expr, "values");
        match op {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        p.child("values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(FieldError::forbidden(
                        p.child("values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            _ => errs.push(FieldError::invalid_str(
                p.child("operator"),
                op,
                "not a valid selector operator",
            )),
        }
        let key = str_or_empty(expr, "key");
        for m in is_qualified_name(key) {
            errs.push(FieldError::invalid_str(p.child("key"), key, m));
        }
        for (j, v) in values.iter().enumerate() {
            let v = v.as_str().unwrap_or("");
            for m in is_valid_label_value(v) {
                errs.push(FieldError::invalid_str(p.child("values").index(j), v, m));
            }
        }
    }
}

/// Whether a selector has neither matchLabels nor matchExpressions.
pub(crate) fn selector_is_empty(sel: &Value) -> bool {
    obj(sel, "matchLabels").is_none_or(|m| m.is_empty()) && arr(sel, "matchExpressions").is_empty()
}

/// Whether a label selector matches a label set, as `metav1.LabelSelectorAsSelector`
/// then `Matches`; an invalid operator matches nothing.
pub(crate) fn selector_matches(sel: &Value, labels: Option<&Value>) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    if let Some(ml) = obj(sel, "matchLabels") {
        for (k, v) in ml {
            if get(k) != v.as_str() {
                return false;
            }
        }
    }
    for expr in arr(sel, "matchExpressions") {
        let key = str_or_empty(expr, "key");
        let values: Vec<&str> = arr(expr, "values")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let ok = match str_or_empty(expr, "operator") {
            "In" => get(key).is_some_and(|v| values.contains(&v)),
            "NotIn" => get(key).is_none_or(|v| !values.contains(&v)),
            "Exists" => get(key).is_some(),
            "DoesNotExist" => get(key).is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Validates the metadata of an embedded template (labels and annotations only).
pub(crate) fn validate_template_meta(meta: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    validate_labels(meta.get("labels"), &path.child("labels"), errs);
    validate_annotations(meta.get("annotations"), &path.child("annotations"), errs);
}

/// Reports `field is immutable` when a field differs between the new and old object.
pub(crate) fn immutable(
    new: Option<&Value>,
    old: Option<&Value>,
    path: &Path,
    errs: &mut Vec<FieldError>,
) {
    let norm = |v: Option<&Value>| v.filter(|x| !x.is_null()).cloned();
    if norm(new) != norm(old) {
        errs.push(FieldError::invalid(
            path,
            new.unwrap_or(&Value::Null),
            "field is immutable",
        ));
    }
}

/// Reports a negative integer at `key` of `v` (`must be greater than or equal to 0`).
pub(crate) fn non_negative(v: &Value, key: &str, path: &Path, errs: &mut Vec<FieldError>) {
    if let Some(n) = v.get(key).and_then(Value::as_i64) {
        if n < 0 {
            errs.push(FieldError::invalid(
                path.child(key),
                &Value::from(n),
                "must be greater than or equal to 0",
            ));
        }
    }
}
