//! Writing a controller's view back to an object's status subresource.

use serde::de::DeserializeOwned;
use serde::Serialize;
use skiff_client::{Api, Patch, PatchParams};

use crate::Result;

/// Merge-patches `{"status": status}` onto `name`. `Ok(false)` when the object is gone
/// (deleted after the cache saw it): the reconcile then ends quietly instead of
/// retrying a write that can never succeed.
pub async fn patch_status<K, S>(api: &Api<K>, name: &str, status: &S) -> Result<bool>
where
    K: Serialize + DeserializeOwned,
    S: Serialize,
{
    let patch = Patch::Merge(serde_json::json!({ "status": status }));
    match api
        .patch_status(name, &PatchParams::default(), &patch)
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e.into()),
    }
}
