//! ConfigMaps and Secrets: keys, sizes, types, and `immutable: true`.

use base64::Engine;
use serde_json::Value;

use super::json::{bool_at, obj, str_at};
use super::names::is_config_map_key;
use super::{FieldError, Path};

/// Largest total size of a ConfigMap's or Secret's data, 1 MiB.
pub const MAX_DATA_SIZE: usize = 1024 * 1024;

const IMMUTABLE_MSG: &str = "field is immutable when `immutable` is set";

/// The decoded size of a base64 data value (its encoded length if it does not decode).
fn decoded_len(v: &Value) -> usize {
    let s = v.as_str().unwrap_or("");
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_or(s.len(), |b| b.len())
}

/// Validates a ConfigMap.
pub(crate) fn validate_config_map(
    obj_value: &Value,
    old: Option<&Value>,
    errs: &mut Vec<FieldError>,
) {
    let mut total = 0usize;
    let binary = obj(obj_value, "binaryData");
    if let Some(data) = obj(obj_value, "data") {
        for (k, v) in data {
            for m in is_config_map_key(k) {
                errs.push(FieldError::invalid_str(Path::new("data").key(k), k, m));
            }
            if binary.is_some_and(|b| b.contains_key(k)) {
                errs.push(FieldError::invalid_str(
                    Path::new("data").key(k),
                    k,
                    "duplicate of key present in binaryData",
                ));
            }
            total = total.saturating_add(v.as_str().map_or(0, str::len));
        }
    }
    if let Some(b) = binary {
        for (k, v) in b {
            for m in is_config_map_key(k) {
                errs.push(FieldError::invalid_str(
                    Path::new("binaryData").key(k),
                    k,
                    m,
                ));
            }
            total = total.saturating_add(decoded_len(v));
        }
    }
    if total > MAX_DATA_SIZE {
        // Kubernetes reports this on the whole object, whose path prints as "[]".
        errs.push(FieldError::too_long("[]", MAX_DATA_SIZE));
    }
    if let Some(old) = old {
        immutable_data(obj_value, old, &["data", "binaryData"], errs);
    }
}

fn immutable_data(new: &Value, old: &Value, fields: &[&str], errs: &mut Vec<FieldError>) {
    if bool_at(old, "immutable") != Some(true) {
        return;
    }
    if bool_at(new, "immutable") != Some(true) {
        errs.push(FieldError::forbidden(Path::new("immutable"), IMMUTABLE_MSG));
    }
    let norm = |v: Option<&Value>| {
        v.filter(|x| x.as_object().is_some_and(|m| !m.is_empty()))
            .cloned()
    };
    for f in fields {
        if norm(new.get(*f)) != norm(old.get(*f)) {
            errs.push(FieldError::forbidden(Path::new(f), IMMUTABLE_MSG));
        }
    }
}

/// Validates a Secret.
pub(crate) fn validate_secret(obj_value: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let data_path = Path::new("data");
    let data = obj(obj_value, "data");
    let mut total = 0usize;
    if let Some(d) = data {
        for (k, v) in d {
            for m in is_config_map_key(k) {
                errs.push(FieldError::invalid_str(data_path.key(k), k, m));
            }
            total = total.saturating_add(decoded_len(v));
        }
    }
    // stringData is merged into data by the server; count it in case it was not.
    if let Some(sd) = obj(obj_value, "stringData") {
        for (k, v) in sd {
            for m in is_config_map_key(k) {
                errs.push(FieldError::invalid_str(
                    Path::new("stringData").key(k),
                    k,
                    m,
                ));
            }
            total = total.saturating_add(v.as_str().map_or(0, str::len));
        }
    }
    if total > MAX_DATA_SIZE {
        errs.push(FieldError::too_long(&data_path, MAX_DATA_SIZE));
    }
    let has_key = |k: &str| {
        data.is_some_and(|d| d.contains_key(k))
            || obj(obj_value, "stringData").is_some_and(|d| d.contains_key(k))
    };
    let ty = str_at(obj_value, "type").unwrap_or("Opaque");
    match ty {
        "kubernetes.io/service-account-token" => {
            let named = obj_value
                .get("metadata")
                .and_then(|m| m.get("annotations"))
                .and_then(|a| a.get("kubernetes.io/service-account.name"))
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty());
            if !named {
                errs.push(FieldError::required(
                    Path::new("metadata")
                        .child("annotations")
                        .key("kubernetes.io/service-account.name"),
                    "",
                ));
            }
        }
        "kubernetes.io/dockercfg" => required_keys(&[".dockercfg"], &has_key, &data_path, errs),
        "kubernetes.io/dockerconfigjson" => {
            required_keys(&[".dockerconfigjson"], &has_key, &data_path, errs)
        }
        "kubernetes.io/basic-auth" if !has_key("username") && !has_key("password") => {
            required_keys(&["username", "password"], &has_key, &data_path, errs);
        }
        "kubernetes.io/ssh-auth" => required_keys(&["ssh-privatekey"], &has_key, &data_path, errs),
        "kubernetes.io/tls" => required_keys(&["tls.crt", "tls.key"], &has_key, &data_path, errs),
        _ => {}
    }
    if let Some(old) = old {
        let new_ty = str_at(obj_value, "type").unwrap_or("Opaque");
        let old_ty = str_at(old, "type").unwrap_or("Opaque");
        if new_ty != old_ty {
            errs.push(FieldError::invalid_str(
                Path::new("type"),
                new_ty,
                "field is immutable",
            ));
        }
        immutable_data(obj_value, old, &["data"], errs);
    }
}

fn required_keys(
    keys: &[&str],
    has_key: &dyn Fn(&str) -> bool,
    path: &Path,
    errs: &mut Vec<FieldError>,
) {
    for k in keys {
        if !has_key(k) {
            errs.push(FieldError::required(path.key(k), ""));
        }
    }
}
