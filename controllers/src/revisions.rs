//! ControllerRevisions, the history StatefulSets and DaemonSets keep of their pod
//! templates (what `kubectl rollout history|undo` read for them): one per template,
//! numbered in the order the templates were last used, pruned to
//! `revisionHistoryLimit` (default 10) without touching a revision a pod still runs.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::{Metadata, Resource};
use serde_json::{json, Value};
use skiff_client::{Api, ListParams, Patch, PatchParams, PostParams, ResourceExt};

use crate::pods::controller_ref;
use crate::Result;

/// Kubernetes' default `revisionHistoryLimit` for StatefulSets and DaemonSets.
pub const DEFAULT_HISTORY_LIMIT: i32 = 10;

/// The revisions of `owner_uid` among `all`, oldest first.
pub fn owned_by<'a>(all: &'a [ControllerRevision], owner_uid: &str) -> Vec<&'a ControllerRevision> {
    let mut owned: Vec<&ControllerRevision> = all
        .iter()
        .filter(|r| r.controller_owner().is_some_and(|o| o.uid == owner_uid))
        .collect();
    owned.sort_by_key(|r| r.revision);
    owned
}

/// The revisions to delete so that at most `limit` are kept beside those `in_use`: the
/// oldest ones not in use.
pub fn to_prune(
    owned: &[&ControllerRevision],
    in_use: &BTreeSet<String>,
    limit: i32,
) -> Vec<String> {
    let unused: Vec<&str> = owned
        .iter()
        .map(|r| r.name())
        .filter(|n| !in_use.contains(*n))
        .collect();
    let excess = unused.len().saturating_sub(limit.max(0) as usize);
    unused[..excess].iter().map(|n| n.to_string()).collect()
}

/// Makes sure the revision `name` holding `data` exists and is the newest one: a
/// template used again gets the next number, as Kubernetes renumbers it. `labels` are
/// the owner's selector labels plus the revision label.
pub async fn ensure<K>(
    api: &Api<ControllerRevision>,
    owner: &K,
    name: &str,
    labels: BTreeMap<String, String>,
    data: Value,
) -> Result<ControllerRevision>
where
    K: Resource + Metadata<Ty = ObjectMeta>,
{
    let uid = owner.metadata().uid.clone().unwrap_or_default();
    let all = api.list(&ListParams::default()).await?.items;
    let owned = owned_by(&all, &uid);
    let newest = owned.last().map_or(0, |r| r.revision);
    if let Some(existing) = owned.iter().find(|r| r.name() == name) {
        if existing.revision == newest {
            return Ok((*existing).clone());
        }
        let patch = json!({"revision": newest + 1});
        return Ok(api
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await?);
    }
    let revision = ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: owner.metadata().namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![controller_ref(owner)]),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(data)),
        revision: newest + 1,
    };
    match api.create(&PostParams::default(), &revision).await {
        Ok(r) => Ok(r),
        Err(e) if e.is_already_exists() => Ok(api.get(name).await?),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the owner's revisions beyond `limit` that no pod runs (see [`to_prune`]).
pub async fn prune(
    api: &Api<ControllerRevision>,
    owner_uid: &str,
    in_use: &BTreeSet<String>,
    limit: i32,
) -> Result<()> {
    let all = api.list(&ListParams::default()).await?.items;
    let owned = owned_by(&all, owner_uid);
    for name in to_prune(&owned, in_use, limit) {
        match api.delete(&name, &Default::default()).await {
            Ok(_) => {
                tracing::info!(revision = %name, "pruned a ControllerRevision beyond revisionHistoryLimit")
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// What the revisions of each owner were last brought in line with (its update revision
/// and the revisions its pods run), so that a reconcile lists and prunes revisions only
/// when one of those changed rather than on every pod event.
#[derive(Default)]
pub struct Synced(std::sync::Mutex<std::collections::HashMap<String, SyncedState>>);

/// The update revision, history limit and revisions in use last synced for an owner.
type SyncedState = (String, i32, BTreeSet<String>);

impl Synced {
    /// Whether the owner's revisions need a look for this update revision, limit and use.
    pub fn stale(
        &self,
        owner_uid: &str,
        update: &str,
        limit: i32,
        in_use: &BTreeSet<String>,
    ) -> bool {
        let seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(owner_uid)
            .is_none_or(|(u, l, used)| u != update || *l != limit || used != in_use)
    }

    /// Records that the owner's revisions are in line with this update revision, limit
    /// and use.
    pub fn record(&self, owner_uid: &str, update: &str, limit: i32, in_use: BTreeSet<String>) {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        seen.insert(owner_uid.to_string(), (update.to_string(), limit, in_use));
    }

    /// Forgets a deleted owner.
    pub fn forget(&self, owner_uid: &str) {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        seen.remove(owner_uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revision(name: &str, number: i64, owner: &str) -> ControllerRevision {
        serde_json::from_value(json!({
            "metadata": {"name": name, "ownerReferences": [{"apiVersion": "apps/v1",
                "kind": "StatefulSet", "name": "web", "uid": owner, "controller": true}]},
            "revision": number,
        }))
        .unwrap()
    }

    #[test]
    fn the_oldest_unused_revisions_beyond_the_limit_go() {
        let all = [
            revision("web-c", 3, "u1"),
            revision("web-a", 1, "u1"),
            revision("web-b", 2, "u1"),
            revision("web-d", 4, "u1"),
            revision("other-a", 1, "u2"),
        ];
        let owned = owned_by(&all, "u1");
        let names: Vec<&str> = owned.iter().map(|r| r.name()).collect();
        assert_eq!(names, ["web-a", "web-b", "web-c", "web-d"]);
        let in_use: BTreeSet<String> = ["web-a".to_string(), "web-d".to_string()].into();
        assert_eq!(
            to_prune(&owned, &in_use, 1),
            ["web-b"],
            "web-a is in use, so it stays"
        );
        assert_eq!(to_prune(&owned, &in_use, 0), ["web-b", "web-c"]);
        assert!(to_prune(&owned, &in_use, 10).is_empty());
        assert!(
            to_prune(&owned, &in_use, -1).len() == 2,
            "a negative limit keeps none unused"
        );
    }
}
