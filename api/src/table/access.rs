//! Lenient reads from a JSON object. Printing must never fail on odd input: a missing
//! field or one of the wrong type reads as the Go zero value, which is what the Kubernetes
//! printers see for an unset field.

use jiff::Timestamp;
use serde_json::{Map, Value};

/// The value at `path`, if every step is an object holding the next key.
pub(super) fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(v, |cur, key| cur.as_object()?.get(*key))
}

/// Whether the field at `path` is present and not null (a non-nil Go pointer).
pub(super) fn is_set(v: &Value, path: &[&str]) -> bool {
    get(v, path).is_some_and(|f| !f.is_null())
}

/// The string at `path`, `None` when missing, null or not a string (a Go `*string`).
pub(super) fn opt_str<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(v, path)?.as_str()
}

/// The string at `path`, or `""`.
pub(super) fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    opt_str(v, path).unwrap_or("")
}

/// The string at `path`, or `default` when it is missing or empty: for fields the API
/// server's defaulting always fills, so that Kubernetes' printers never see them empty.
pub(super) fn str_or<'a>(v: &'a Value, path: &[&str], default: &'a str) -> &'a str {
    match opt_str(v, path) {
        Some(s) if !s.is_empty() => s,
        _ => default,
    }
}

/// The integer at `path`, `None` when missing or not an integer (a Go `*int32`).
pub(super) fn opt_int(v: &Value, path: &[&str]) -> Option<i64> {
    get(v, path)?.as_i64()
}

/// The integer at `path`, or 0.
pub(super) fn int_at(v: &Value, path: &[&str]) -> i64 {
    opt_int(v, path).unwrap_or(0)
}

/// The boolean at `path`, `None` when missing or not a boolean (a Go `*bool`).
pub(super) fn opt_bool(v: &Value, path: &[&str]) -> Option<bool> {
    get(v, path)?.as_bool()
}

/// The boolean at `path`, or false.
pub(super) fn bool_at(v: &Value, path: &[&str]) -> bool {
    opt_bool(v, path).unwrap_or(false)
}

/// The array at `path`, or an empty slice.
pub(super) fn array_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    get(v, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The object at `path`, if there is one.
pub(super) fn object_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Map<String, Value>> {
    get(v, path)?.as_object()
}

/// The number of entries of the object at `path` (a Go map's `len`), 0 when missing.
pub(super) fn len_of_object(v: &Value, path: &[&str]) -> i64 {
    object_at(v, path).map_or(0, |m| m.len() as i64)
}

/// The number of elements of the array at `path`, 0 when missing.
pub(super) fn len_of_array(v: &Value, path: &[&str]) -> i64 {
    array_at(v, path).len() as i64
}

/// The string map at `path` (labels, selectors); entries whose value is not a string are
/// skipped, since Kubernetes could not have decoded them.
pub(super) fn string_map<'a>(v: &'a Value, path: &[&str]) -> Vec<(&'a str, &'a str)> {
    object_at(v, path)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// The timestamp at `path`. `None` stands for Go's zero time: missing, null, unparsable,
/// or the zero instant itself (`0001-01-01T00:00:00Z`), which `metav1.Time.IsZero` treats
/// as unset.
pub(super) fn time_at(v: &Value, path: &[&str]) -> Option<Timestamp> {
    let ts: Timestamp = opt_str(v, path)?.parse().ok()?;
    (ts != go_zero_time()).then_some(ts)
}

/// Go's `time.Time{}`: January 1 of year 1, UTC.
pub(super) fn go_zero_time() -> Timestamp {
    // -62135596800 is 0001-01-01T00:00:00Z in Unix seconds, well inside jiff's range.
    Timestamp::from_second(-62_135_596_800).unwrap_or(Timestamp::MIN)
}
