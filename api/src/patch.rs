//! PLACEHOLDER until the patch branch lands.
#![allow(missing_docs)]
use serde_json::Value;
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PatchError(pub String);
pub fn apply_json_patch(doc: &Value, _patch: &Value) -> Result<Value, PatchError> {
    Ok(doc.clone())
}
pub fn apply_merge_patch(doc: &Value, _patch: &Value) -> Result<Value, PatchError> {
    Ok(doc.clone())
}
pub fn apply_strategic_merge_patch(
    _kind: &str,
    doc: &Value,
    _patch: &Value,
) -> Result<Value, PatchError> {
    Ok(doc.clone())
}
