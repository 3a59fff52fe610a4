//! Request parameters and how they become query strings and bodies.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, Preconditions};
use serde::Serialize;

use crate::{Error, Result};

/// Builds `a=b&c=d` with values percent-encoded.
#[derive(Debug, Default)]
pub(crate) struct Query(String);

impl Query {
    pub(crate) fn push(&mut self, key: &str, value: &str) {
        if !self.0.is_empty() {
            self.0.push('&');
        }
        self.0.push_str(key);
        self.0.push('=');
        encode_into(&mut self.0, value, QUERY_SAFE);
    }

    pub(crate) fn push_opt(&mut self, key: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.push(key, value);
        }
    }

    /// Appends `?query` to `path` when there is a query.
    pub(crate) fn to_url(&self, path: &str) -> String {
        if self.0.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{}", self.0)
        }
    }
}

// Everything outside RFC 3986's unreserved set is encoded in query values, so selectors
// (`a=b,c!=d`, `x in (y,z)`) survive intact.
const QUERY_SAFE: &[u8] = b"-._~";
// In a path segment ':' and '@' may stay (ClusterRole names such as `system:node`).
const PATH_SAFE: &[u8] = b"-._~:@";

fn encode_into(out: &mut String, value: &str, safe: &[u8]) {
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric() || safe.contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// Percent-encodes one path segment (a namespace or object name).
pub(crate) fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    encode_into(&mut out, segment, PATH_SAFE);
    out
}

/// Parameters of a list: selectors, paging and read consistency.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListParams {
    /// `labelSelector`, e.g. `app=web,tier!=db`.
    pub label_selector: Option<String>,
    /// `fieldSelector`, e.g. `spec.nodeName=n1`.
    pub field_selector: Option<String>,
    /// `limit`: at most this many items per page.
    pub limit: Option<u32>,
    /// `continue`: the token from the previous page's `metadata.continue`.
    pub continue_token: Option<String>,
    /// `resourceVersion`: unset reads the latest state; "0" allows any cached state.
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`: `NotOlderThan` or `Exact`.
    pub resource_version_match: Option<String>,
    /// `timeoutSeconds` for the list call on the server.
    pub timeout_seconds: Option<u32>,
}

impl ListParams {
    /// Selects by label (`labelSelector`).
    pub fn labels(mut self, selector: &str) -> Self {
        self.label_selector = Some(selector.to_string());
        self
    }

    /// Selects by field (`fieldSelector`).
    pub fn fields(mut self, selector: &str) -> Self {
        self.field_selector = Some(selector.to_string());
        self
    }

    /// Pages of at most `limit` items.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Continues from a previous page's `metadata.continue`.
    pub fn continue_token(mut self, token: &str) -> Self {
        self.continue_token = Some(token.to_string());
        self
    }

    pub(crate) fn populate(&self, q: &mut Query) {
        q.push_opt("labelSelector", self.label_selector.as_deref());
        q.push_opt("fieldSelector", self.field_selector.as_deref());
        if let Some(limit) = self.limit {
            q.push("limit", &limit.to_string());
        }
        q.push_opt("continue", self.continue_token.as_deref());
        q.push_opt("resourceVersion", self.resource_version.as_deref());
        q.push_opt(
            "resourceVersionMatch",
            self.resource_version_match.as_deref(),
        );
        if let Some(t) = self.timeout_seconds {
            q.push("timeoutSeconds", &t.to_string());
        }
    }
}

/// Parameters of a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchParams {
    /// `labelSelector`.
    pub label_selector: Option<String>,
    /// `fieldSelector`.
    pub field_selector: Option<String>,
    /// `timeoutSeconds`: the server ends the watch after this long; the watcher then
    /// simply watches again. Kept under five minutes so idle proxies don't cut us first.
    pub timeout_seconds: Option<u32>,
    /// `allowWatchBookmarks`: let the server send BOOKMARK events that advance our
    /// resourceVersion without an object change, so re-watches don't hit 410.
    pub bookmarks: bool,
}

impl Default for WatchParams {
    fn default() -> Self {
        WatchParams {
            label_selector: None,
            field_selector: None,
            timeout_seconds: Some(290),
            bookmarks: true,
        }
    }
}

impl WatchParams {
    /// Selects by label (`labelSelector`).
    pub fn labels(mut self, selector: &str) -> Self {
        self.label_selector = Some(selector.to_string());
        self
    }

    /// Selects by field (`fieldSelector`).
    pub fn fields(mut self, selector: &str) -> Self {
        self.field_selector = Some(selector.to_string());
        self
    }

    /// Sets `timeoutSeconds`.
    pub fn timeout(mut self, seconds: u32) -> Self {
        self.timeout_seconds = Some(seconds);
        self
    }

    pub(crate) fn populate(&self, q: &mut Query, resource_version: &str) {
        q.push("watch", "true");
        if !resource_version.is_empty() {
            q.push("resourceVersion", resource_version);
        }
        if self.bookmarks {
            q.push("allowWatchBookmarks", "true");
        }
        if let Some(t) = self.timeout_seconds {
            q.push("timeoutSeconds", &t.to_string());
        }
        q.push_opt("labelSelector", self.label_selector.as_deref());
        q.push_opt("fieldSelector", self.field_selector.as_deref());
    }
}

/// Parameters of a create or replace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PostParams {
    /// `dryRun=All`: validate and answer without storing.
    pub dry_run: bool,
    /// `fieldManager`: who makes the change, for managedFields.
    pub field_manager: Option<String>,
}

impl PostParams {
    pub(crate) fn populate(&self, q: &mut Query) {
        if self.dry_run {
            q.push("dryRun", "All");
        }
        q.push_opt("fieldManager", self.field_manager.as_deref());
    }
}

/// A patch body; the variant picks the Content-Type.
#[derive(Clone, Debug, PartialEq)]
pub enum Patch<P: Serialize> {
    /// RFC 6902 JSON patch: a list of operations.
    Json(P),
    /// RFC 7386 JSON merge patch.
    Merge(P),
    /// Kubernetes strategic merge patch (built-in kinds only).
    Strategic(P),
    /// Server-side apply; needs [`PatchParams::field_manager`]. Sent as JSON, which is
    /// valid YAML.
    Apply(P),
}

impl<P: Serialize> Patch<P> {
    /// The Content-Type the API server expects for this kind of patch.
    pub fn content_type(&self) -> &'static str {
        match self {
            Patch::Json(_) => "application/json-patch+json",
            Patch::Merge(_) => "application/merge-patch+json",
            Patch::Strategic(_) => "application/strategic-merge-patch+json",
            Patch::Apply(_) => "application/apply-patch+yaml",
        }
    }

    pub(crate) fn body(&self) -> Result<Vec<u8>> {
        let (Patch::Json(p) | Patch::Merge(p) | Patch::Strategic(p) | Patch::Apply(p)) = self;
        serde_json::to_vec(p).map_err(|source| Error::Encode {
            what: "patch".into(),
            source,
        })
    }
}

/// Parameters of a patch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PatchParams {
    /// `dryRun=All`.
    pub dry_run: bool,
    /// `force=true`: take ownership of conflicting fields (server-side apply only).
    pub force: bool,
    /// `fieldManager`: required for server-side apply.
    pub field_manager: Option<String>,
}

impl PatchParams {
    /// Parameters for server-side apply as `manager`.
    pub fn apply(manager: &str) -> Self {
        PatchParams {
            field_manager: Some(manager.to_string()),
            ..PatchParams::default()
        }
    }

    /// Forces server-side apply over other managers' fields.
    pub fn force(mut self) -> Self {
        self.force = true;
        self
    }

    pub(crate) fn populate<P: Serialize>(&self, q: &mut Query, patch: &Patch<P>) -> Result<()> {
        let is_apply = matches!(patch, Patch::Apply(_));
        if is_apply && self.field_manager.is_none() {
            return Err(Error::InvalidRequest(
                "server-side apply needs PatchParams::field_manager".into(),
            ));
        }
        if self.force && !is_apply {
            return Err(Error::InvalidRequest(
                "force is only valid for server-side apply".into(),
            ));
        }
        if self.dry_run {
            q.push("dryRun", "All");
        }
        if self.force {
            q.push("force", "true");
        }
        q.push_opt("fieldManager", self.field_manager.as_deref());
        Ok(())
    }
}

/// How dependents of a deleted object are treated (`propagationPolicy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PropagationPolicy {
    /// Leave dependents, removing their ownerReferences.
    Orphan,
    /// Delete the object now and its dependents in the background.
    Background,
    /// Delete dependents first, then the object.
    Foreground,
}

impl PropagationPolicy {
    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            PropagationPolicy::Orphan => "Orphan",
            PropagationPolicy::Background => "Background",
            PropagationPolicy::Foreground => "Foreground",
        }
    }
}

/// Parameters of a delete; sent as a `DeleteOptions` body.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeleteParams {
    /// `dryRun=All`.
    pub dry_run: bool,
    /// `gracePeriodSeconds`; 0 deletes at once.
    pub grace_period_seconds: Option<i64>,
    /// `propagationPolicy`.
    pub propagation_policy: Option<PropagationPolicy>,
    /// Only delete if the object still has this uid / resourceVersion.
    pub preconditions: Option<Preconditions>,
}

impl DeleteParams {
    /// Deletes with a grace period of 0.
    pub fn immediate() -> Self {
        DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        }
    }

    /// Deletes in the background with dependents following.
    pub fn background() -> Self {
        DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        }
    }

    /// Deletes dependents first.
    pub fn foreground() -> Self {
        DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            ..DeleteParams::default()
        }
    }

    /// The `DeleteOptions` body for this delete.
    pub fn to_delete_options(&self) -> DeleteOptions {
        DeleteOptions {
            dry_run: self.dry_run.then(|| vec!["All".to_string()]),
            grace_period_seconds: self.grace_period_seconds,
            preconditions: self.preconditions.clone(),
            propagation_policy: self.propagation_policy.map(|p| p.as_str().to_string()),
            ..DeleteOptions::default()
        }
    }

    pub(crate) fn body(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(&self.to_delete_options()).map_err(|source| Error::Encode {
            what: "DeleteOptions".into(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(f: impl FnOnce(&mut Query)) -> String {
        let mut q = Query::default();
        f(&mut q);
        q.to_url("/p")
    }

    #[test]
    fn list_params_are_encoded() {
        let lp = ListParams::default()
            .labels("app=web,tier notin (db, cache)")
            .fields("spec.nodeName=n1")
            .limit(500)
            .continue_token("abc/+=");
        assert_eq!(
            query(|q| lp.populate(q)),
            "/p?labelSelector=app%3Dweb%2Ctier%20notin%20%28db%2C%20cache%29\
             &fieldSelector=spec.nodeName%3Dn1&limit=500&continue=abc%2F%2B%3D"
        );
        let lp = ListParams {
            resource_version: Some("0".into()),
            resource_version_match: Some("NotOlderThan".into()),
            ..ListParams::default()
        };
        assert_eq!(
            query(|q| lp.populate(q)),
            "/p?resourceVersion=0&resourceVersionMatch=NotOlderThan"
        );
        assert_eq!(query(|q| ListParams::default().populate(q)), "/p");
    }

    #[test]
    fn watch_params_are_encoded() {
        let wp = WatchParams::default().labels("a=b");
        assert_eq!(
            query(|q| wp.populate(q, "42")),
            "/p?watch=true&resourceVersion=42&allowWatchBookmarks=true\
             &timeoutSeconds=290&labelSelector=a%3Db"
        );
        let wp = WatchParams {
            bookmarks: false,
            timeout_seconds: None,
            ..WatchParams::default()
        };
        assert_eq!(query(|q| wp.populate(q, "")), "/p?watch=true");
    }

    #[test]
    fn post_and_patch_params_are_encoded() {
        let pp = PostParams {
            dry_run: true,
            field_manager: Some("skiff-scheduler".into()),
        };
        assert_eq!(
            query(|q| pp.populate(q)),
            "/p?dryRun=All&fieldManager=skiff-scheduler"
        );

        let apply = Patch::Apply(serde_json::json!({}));
        assert_eq!(
            query(|q| PatchParams::apply("ctl")
                .force()
                .populate(q, &apply)
                .unwrap()),
            "/p?force=true&fieldManager=ctl"
        );
        let mut q = Query::default();
        let err = PatchParams::default().populate(&mut q, &apply).unwrap_err();
        assert!(err.to_string().contains("field_manager"), "{err}");
        let merge = Patch::Merge(serde_json::json!({}));
        assert!(PatchParams::apply("x")
            .force()
            .populate(&mut q, &merge)
            .is_err());
    }

    #[test]
    fn patch_content_types() {
        let v = serde_json::json!([]);
        assert_eq!(
            Patch::Json(&v).content_type(),
            "application/json-patch+json"
        );
        assert_eq!(
            Patch::Merge(&v).content_type(),
            "application/merge-patch+json"
        );
        assert_eq!(
            Patch::Strategic(&v).content_type(),
            "application/strategic-merge-patch+json"
        );
        assert_eq!(
            Patch::Apply(&v).content_type(),
            "application/apply-patch+yaml"
        );
        assert_eq!(Patch::Merge(&v).body().unwrap(), b"[]");
    }

    #[test]
    fn delete_params_become_delete_options() {
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            propagation_policy: Some(PropagationPolicy::Foreground),
            preconditions: Some(Preconditions {
                resource_version: Some("7".into()),
                uid: None,
            }),
            dry_run: true,
        };
        let body: serde_json::Value = serde_json::from_slice(&dp.body().unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "dryRun": ["All"],
                "gracePeriodSeconds": 0,
                "preconditions": {"resourceVersion": "7"},
                "propagationPolicy": "Foreground",
            })
        );
    }

    #[test]
    fn path_segments_keep_colons() {
        assert_eq!(encode_segment("system:node:n1"), "system:node:n1");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }
}
