//! The three PATCH bodies Kubernetes accepts, applied to an object's JSON.
//!
//! - `application/json-patch+json`: [`apply_json_patch`], RFC 6902.
//! - `application/merge-patch+json`: [`apply_merge_patch`], RFC 7386.
//! - `application/strategic-merge-patch+json`: [`apply_strategic_merge_patch`], the
//!   semantics of apimachinery's `strategicpatch` package, which `kubectl apply`,
//!   `kubectl patch` (its default) and `kubectl edit` send.
//!
//! Strategic merge patch differs from merge patch in lists: a list whose field is tagged
//! `patchStrategy:"merge"` merges element by element (on the field's `patchMergeKey`, or as
//! a set for lists of strings), and the patch may carry directives: `$patch`
//! (`replace`, `delete`, `merge`), `$retainKeys`, `$setElementOrder/<field>` and
//! `$deleteFromPrimitiveList/<field>`. Which fields merge is in the table of `patch/schema.rs`.
//!
//! Where this module departs from Kubernetes, on purpose:
//! - A kind without patch metadata (a custom resource, say) is patched with merge patch
//!   semantics: maps merge and every list is replaced, but directives are still obeyed.
//!   Kubernetes refuses strategic merge patches for custom resources.
//! - Directives never reach the result, even inside values that Kubernetes copies
//!   verbatim (a list the original lacks, an atomic list). Kubernetes drops them later,
//!   when it decodes the result into its Go types.
//! - `$patch: delete` inside a map removes that map's key; Kubernetes leaves an empty
//!   map, which its Go types then mostly print as absent.
//! - `$patch: merge` is accepted and means the default; Kubernetes refuses it.
//! - Elements of the original list that lack the merge key are left alone; Kubernetes
//!   fails the patch.

mod schema;
mod strategic;

use serde_json::Value;

/// Why a patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// A JSON patch body is not an array of RFC 6902 operations.
    #[error("invalid JSON patch: {0}")]
    InvalidJsonPatch(String),
    /// A JSON patch operation failed: a missing path, a failed `test`, …
    #[error("{0}")]
    JsonPatch(String),
    /// The document or the strategic merge patch is not a JSON object.
    #[error("invalid JSON document: the {0} is not a JSON object")]
    NotAnObject(&'static str),
    /// A `$patch` directive with a value other than `replace`, `delete` or `merge`.
    #[error("unknown patch type: {directive} in map: {map}")]
    UnknownDirective {
        /// The directive's value.
        directive: String,
        /// The map that carried it.
        map: String,
    },
    /// A patch element of a merging list lacks the list's merge key.
    #[error("map: {map} does not contain declared merge key: {key}")]
    NoMergeKey {
        /// The element.
        map: String,
        /// The merge key it should have.
        key: String,
    },
    /// A list tagged to merge holds objects but declares no merge key.
    #[error("cannot merge lists without merge key: {0}")]
    NoDeclaredMergeKey(String),
    /// A `$retainKeys` directive that is not a list, or a patch key it does not retain.
    #[error("invalid patch format of retainKeys: {0}")]
    RetainKeys(String),
    /// A `$setElementOrder` directive that is not a list or names a field that is not one.
    #[error("invalid patch format of setElementOrder list: {0}")]
    SetElementOrder(String),
    /// The patch list's order disagrees with its `$setElementOrder` list.
    #[error("the order in patch list {patch} doesn't match $setElementOrder list {order}")]
    SetElementOrderMismatch {
        /// The patch list.
        patch: String,
        /// The `$setElementOrder` list.
        order: String,
    },
    /// A `$deleteFromPrimitiveList` directive that is not a list.
    #[error("invalid patch format of primitive list: {0}")]
    PrimitiveList(String),
    /// A list holding lists, which strategic merge cannot merge.
    #[error("lists of lists are not supported")]
    ListOfLists,
    /// A merging list holding values of different JSON types.
    #[error("list element types are not identical: {0}")]
    MixedList(String),
}

/// Applies an RFC 6902 JSON patch (an array of operations) to a copy of `doc`.
///
/// The operations apply all or nothing, as in Kubernetes.
pub fn apply_json_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let operations: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| PatchError::InvalidJsonPatch(e.to_string()))?;
    // Work on a copy and drop it on failure instead of letting the crate undo its steps:
    // json-patch 5.0's undo panics when an operation moved a value to the root.
    let mut patched = doc.clone();
    json_patch::patch_unsafe(&mut patched, &operations)
        .map_err(|e| PatchError::JsonPatch(e.to_string()))?;
    Ok(patched)
}

/// Applies an RFC 7386 JSON merge patch to a copy of `doc`: objects merge, `null`
/// removes a key, anything else (lists included) replaces.
pub fn apply_merge_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let mut patched = doc.clone();
    json_patch::merge(&mut patched, patch);
    Ok(patched)
}

/// Applies a strategic merge patch to a copy of `doc`, an object of Kubernetes kind `kind`.
///
/// Both `doc` and `patch` must be JSON objects. Kinds without patch metadata get merge
/// patch semantics (see the module documentation).
pub fn apply_strategic_merge_patch(
    kind: &str,
    doc: &Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    let doc = doc.as_object().ok_or(PatchError::NotAnObject("document"))?;
    let patch = patch.as_object().ok_or(PatchError::NotAnObject("patch"))?;
    strategic::apply(kind, doc, patch).map(Value::Object)
}

#[cfg(test)]
mod tests;
