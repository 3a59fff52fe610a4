//! PLACEHOLDER until the table branch lands.
#![allow(missing_docs)]
use serde_json::{json, Value};
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}
pub fn table(
    _kind: &str,
    objects: &[Value],
    _now: jiff::Timestamp,
    _include: IncludeObject,
) -> Value {
    json!({"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":{},"columnDefinitions":[{"name":"Name","type":"string","format":"name","description":"","priority":0}],
      "rows": objects.iter().map(|o| json!({"cells":[o["metadata"]["name"].clone()],"object":{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":o["metadata"].clone()}})).collect::<Vec<_>>()})
}
