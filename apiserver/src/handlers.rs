//! The REST verbs on objects: get, list, create, update, patch, delete, deletecollection,
//! and the status, scale, binding and eviction subresources.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::Rng;
use serde_json::{json, Value};
use skiff_api::selector::{FieldSelector, LabelSelector};
use skiff_api::{ResourceType, Subresource};

use crate::admission;
use crate::error::{Error, Result};
use crate::objects::{
    decode_object, field_value, finalizers, is_deleting, labels, meta_mut, meta_str, name,
    now_rfc3339, rfc3339_in,
};
use crate::request::{Query, Target};
use crate::storage::{Stored, WriteConflict, STORE_PAGE};
use crate::Server;

/// How many times a write that lost a race (without a client-given resourceVersion) is
/// retried before answering 409.
const MAX_RETRIES: usize = 16;

/// What a write handler answers: the HTTP code, the object, and warnings.
pub struct Written {
    /// 200 or 201.
    pub code: u16,
    /// The object as stored (or as it would be, for a dry run).
    pub object: Value,
    /// `Warning` headers (unknown fields under `fieldValidation=Warn`).
    pub warnings: Vec<String>,
}

/// Label and field selectors of a list, watch or deletecollection.
pub struct Selectors {
    label: Option<LabelSelector>,
    field: Option<FieldSelector>,
}

/// Fields each type can be selected by, beyond `metadata.name` and `metadata.namespace`
/// (Kubernetes' field label conversions).
fn selectable_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pod" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        "Event" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "Node" => &["spec.unschedulable"],
        "Namespace" => &["status.phase"],
        "Secret" => &["type"],
        "ReplicaSet" => &["status.replicas"],
        "Job" => &["status.successful"],
        "PersistentVolumeClaim" => &["spec.volumeName"],
        _ => &[],
    }
}

impl Selectors {
    /// Parses `labelSelector` and `fieldSelector`; unknown field labels are a 400.
    pub fn parse(rt: &ResourceType, q: &Query) -> Result<Selectors> {
        let label = match q.get("labelSelector") {
            None | Some("") => None,
            Some(s) => Some(
                LabelSelector::parse(s)
                    .map_err(|e| Error::bad_request(format!("unable to parse requirement: {e}")))?,
            ),
        };
        let field = match q.get("fieldSelector") {
            None | Some("") => None,
            Some(s) => {
                let f = FieldSelector::parse(s).map_err(|e| {
                    Error::bad_request(format!("invalid field selector {s:?}: {e}"))
                })?;
                let mut supported = vec!["metadata.name"];
                if rt.namespaced {
                    supported.push("metadata.namespace");
                }
                supported.extend_from_slice(selectable_fields(rt.kind));
                f.check_fields(&supported)
                    .map_err(|e| Error::bad_request(e.to_string()))?;
                Some(f)
            }
        };
        Ok(Selectors { label, field })
    }

    /// Whether the object matches both selectors.
    pub fn matches(&self, obj: &Value) -> bool {
        if let Some(l) = &self.label {
            if !l.matches(&labels(obj)) {
                return false;
            }
        }
        if let Some(f) = &self.field {
            if !f.matches(|path: &str| field_value(obj, path)) {
                return false;
            }
        }
        true
    }

    /// Whether there is any selector.
    pub fn is_empty(&self) -> bool {
        self.label.is_none() && self.field.is_none()
    }
}

/// A continue token: the list's revision and the key to start after.
fn encode_continue(revision: i64, after_key: &str) -> String {
    use base64::Engine;
    let token = json!({"rv": revision, "start": after_key});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str, prefix: &str) -> Result<(i64, String)> {
    use base64::Engine;
    let bad = || {
        Error::bad_request(format!(
            "continue key is not valid: {token:?}; start a new list without the continue parameter"
        ))
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let rv = v["rv"].as_i64().ok_or_else(bad)?;
    let start = v["start"].as_str().ok_or_else(bad)?;
    if !start.starts_with(prefix) {
        return Err(bad());
    }
    // Resume strictly after the last key returned.
    Ok((rv, format!("{start}\0")))
}

/// A list result.
pub struct Listed {
    /// The matching objects.
    pub items: Vec<Value>,
    /// The revision the list was read at.
    pub revision: i64,
    /// The continue token, when more may follow.
    pub continue_token: Option<String>,
    /// How many objects remain (only without selectors, as Kubernetes reports it).
    pub remaining: Option<i64>,
}

/// An unpaged list read from the store a page of [`STORE_PAGE`] objects at a time, every
/// page at the first one's revision, so that the list is one consistent snapshot and
/// the apiserver holds one page at a time, however many objects there are.
pub struct ListPages {
    server: Arc<Server>,
    prefix: String,
    selectors: Selectors,
    revision: i64,
    /// Where the next store read starts (None: the prefix's beginning).
    next: Option<String>,
    /// The first page, read when the list started and not handed out yet.
    first: Option<Vec<Value>>,
    done: bool,
}

impl ListPages {
    /// The revision the list is read at: its resourceVersion.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Whether every page has been read from the store.
    pub fn read_all(&self) -> bool {
        self.done
    }

    /// The next page's matching objects, in key order; None after the last page.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Value>>> {
        if let Some(first) = self.first.take() {
            return Ok(Some(first));
        }
        if self.done {
            return Ok(None);
        }
        self.read().await.map(Some)
    }

    async fn read(&mut self) -> Result<Vec<Value>> {
        let page = self
            .server
            .storage
            .list(
                &self.prefix,
                self.next.as_deref(),
                STORE_PAGE,
                self.revision,
            )
            .await?;
        self.revision = page.revision;
        match page.more_after {
            Some(k) => self.next = Some(format!("{k}\0")),
            None => self.done = true,
        }
        Ok(page
            .items
            .into_iter()
            .map(|s| s.object)
            .filter(|o| self.selectors.matches(o))
            .collect())
    }
}

impl Server {
    fn namespace_of(&self, t: &Target) -> Option<String> {
        if t.rt.namespaced {
            t.namespace.clone()
        } else {
            None
        }
    }

    /// GET of one object.
    pub async fn get(&self, t: &Target) -> Result<Value> {
        let name = t.name.as_deref().unwrap_or("");
        let key = t.rt.key(self.namespace_of(t).as_deref(), name);
        match self.storage.get(&key).await? {
            Some(s) => Ok(s.object),
            None => Err(Error::not_found(t.rt, name)),
        }
    }

    /// Reads the object at `key`, or answers 404 for `name`.
    async fn must_get(&self, rt: &ResourceType, key: &str, name: &str) -> Result<Stored> {
        self.storage
            .get(key)
            .await?
            .ok_or_else(|| Error::not_found(rt, name))
    }

    /// LIST with selectors and paging.
    pub async fn list(&self, t: &Target, q: &Query) -> Result<Listed> {
        let selectors = Selectors::parse(t.rt, q)?;
        let prefix = t.rt.prefix(self.namespace_of(t).as_deref());
        let limit = q.int("limit")?.unwrap_or(0).max(0);
        let (mut revision, mut start) = match q.get("continue") {
            Some(c) if !c.is_empty() => {
                let (rv, start) = decode_continue(c, &prefix)?;
                (rv, Some(start))
            }
            _ => (0, None),
        };
        let mut items = Vec::new();
        loop {
            let want = if limit > 0 {
                limit - items.len() as i64
            } else {
                0
            };
            // With a selector, read a little more than asked so that few round trips
            // fill the page.
            let wanted = if limit > 0 && !selectors.is_empty() {
                want.max(100)
            } else if limit > 0 {
                want
            } else {
                STORE_PAGE
            };
            let batch = wanted.min(STORE_PAGE);
            let page = self
                .storage
                .list(&prefix, start.as_deref(), batch, revision)
                .await
                .map_err(|e| match e {
                    Error::Status(s) if s.code == 410 => Error::gone(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                    ),
                    other => other,
                })?;
            revision = page.revision;
            let mut last_key = None;
            for stored in page.items {
                if limit > 0 && items.len() as i64 >= limit {
                    break;
                }
                last_key = stored.object.get("metadata").map(|_| {
                    t.rt.key(meta_str(&stored.object, "namespace"), name(&stored.object))
                });
                if selectors.matches(&stored.object) {
                    items.push(stored.object);
                }
            }
            let full = limit > 0 && items.len() as i64 >= limit;
            let more = page.more_after.is_some() || (full && last_key.is_some());
            if full || page.more_after.is_none() {
                // A page that filled up exactly at the end of the keys has no more.
                let continue_token = if full && more {
                    last_key.map(|k| encode_continue(revision, &k))
                } else {
                    None
                };
                let continue_token = match continue_token {
                    Some(tok) if self.any_after(&prefix, &tok, revision).await? => Some(tok),
                    _ => None,
                };
                let remaining = if selectors.is_empty() && continue_token.is_some() {
                    Some(page.remaining)
                } else {
                    None
                };
                return Ok(Listed {
                    items,
                    revision,
                    continue_token,
                    remaining,
                });
            }
            start = page.more_after.map(|k| format!("{k}\0"));
        }
    }

    /// An unpaged LIST (no `limit`) as a sequence of store pages; see [`ListPages`].
    pub async fn list_pages(self: &Arc<Self>, t: &Target, q: &Query) -> Result<ListPages> {
        let selectors = Selectors::parse(t.rt, q)?;
        let prefix = t.rt.prefix(self.namespace_of(t).as_deref());
        let (revision, start) = match q.get("continue") {
            Some(c) if !c.is_empty() => {
                let (rv, start) = decode_continue(c, &prefix)?;
                (rv, Some(start))
            }
            _ => (0, None),
        };
        let mut pages = ListPages {
            server: self.clone(),
            prefix,
            selectors,
            revision,
            next: start,
            first: None,
            done: false,
        };
        // The first page is read now so that its failure is the answer's status.
        let first = pages.read().await.map_err(|e| match e {
            Error::Status(s) if s.code == 410 => Error::gone(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
            ),
            other => other,
        })?;
        pages.first = Some(first);
        Ok(pages)
    }

    async fn any_after(&self, prefix: &str, token: &str, revision: i64) -> Result<bool> {
        let (_, start) = decode_continue(token, prefix)?;
        let page = self.storage.list(prefix, Some(&start), 1, revision).await?;
        Ok(!page.items.is_empty())
    }

    /// POST: create.
    pub async fn create(&self, t: &Target, q: &Query, body: Value) -> Result<Written> {
        let validation = q.field_validation()?;
        let dry_run = q.dry_run()?;
        let rt = t.rt;
        let (mut obj, warnings) = decode_object(rt, body, validation)?;
        let namespace = self.namespace_of(t);
        {
            let meta = meta_mut(&mut obj);
            if rt.namespaced {
                match (meta.get("namespace").and_then(Value::as_str), &namespace) {
                    (Some(ns), Some(path_ns)) if !ns.is_empty() && ns != path_ns => {
                        return Err(Error::bad_request(
                            "the namespace of the provided object does not match the namespace sent on the request",
                        ))
                    }
                    (_, Some(path_ns)) => {
                        meta.insert("namespace".into(), json!(path_ns));
                    }
                    (_, None) => {
                        return Err(Error::bad_request(format!(
                            "{} are namespaced: create them below /namespaces/<namespace>/",
                            rt.plural
                        )))
                    }
                }
            } else {
                meta.remove("namespace");
            }
            let has_name = meta
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            if !has_name {
                if let Some(prefix) = meta.get("generateName").and_then(Value::as_str) {
                    let generated = generate_name(prefix);
                    meta.insert("name".into(), json!(generated));
                }
            }
            let uid = new_uid();
            meta.insert("uid".into(), json!(uid));
            meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
            meta.remove("resourceVersion");
            meta.remove("deletionTimestamp");
            meta.remove("deletionGracePeriodSeconds");
            meta.remove("managedFields");
            meta.remove("selfLink");
            if tracks_generation(rt.kind) {
                meta.insert("generation".into(), json!(1));
            } else {
                meta.remove("generation");
            }
        }
        let obj_name = name(&obj).to_string();
        if obj_name.is_empty() {
            return Err(Error::invalid(
                rt,
                "",
                &[skiff_api::validation::FieldError::required(
                    "metadata.name",
                    "name or generateName is required",
                )],
            ));
        }
        reset_status_on_create(rt, &mut obj);
        skiff_api::defaults::normalize(rt.kind, &mut obj);
        skiff_api::defaults::apply_defaults(rt.kind, &mut obj);
        if rt.kind == "Job" {
            let uid = meta_str(&obj, "uid").unwrap_or("").to_string();
            skiff_api::defaults::default_job_selector(&mut obj, &uid);
        }
        let mut effects = Vec::new();
        // The namespace check and admission only read the store, and each read waits for
        // a ReadIndex round in the store: running them together takes one round off
        // every create. The namespace's verdict comes first, as when they ran in turn.
        let namespace_open = async {
            match &namespace {
                Some(ns) => self.check_namespace_open(rt, ns, &obj_name).await,
                None => Ok(()),
            }
        };
        let (open, admitted) = tokio::join!(
            namespace_open,
            admission::admit_create(self, rt, namespace.as_deref(), &mut obj, &mut effects)
        );
        open?;
        admitted?;
        let errors = skiff_api::validation::validate_create(rt.kind, &obj);
        if !errors.is_empty() {
            return Err(Error::invalid(rt, &obj_name, &errors));
        }
        if dry_run {
            return Ok(Written {
                code: 201,
                object: obj,
                warnings,
            });
        }
        let key = rt.key(namespace.as_deref(), &obj_name);
        match self.storage.create(&key, &obj, &effects).await? {
            Ok(rev) => {
                crate::storage::set_resource_version(&mut obj, rev);
                Ok(Written {
                    code: 201,
                    object: obj,
                    warnings,
                })
            }
            Err(WriteConflict::Object) => Err(Error::already_exists(rt, &obj_name)),
            Err(WriteConflict::SideEffect(k)) => {
                Err(admission::explain_conflict(rt, &obj_name, &k))
            }
        }
    }

    async fn check_namespace_open(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<()> {
        let ns_rt = ResourceType::lookup("", "v1", "namespaces").expect("namespaces are served");
        match self.storage.get(&ns_rt.key(None, ns)).await? {
            None => Err(Error::not_found(ns_rt, ns)),
            Some(s) if is_deleting(&s.object) => Err(Error::forbidden(
                rt,
                name,
                format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            )),
            Some(_) => Ok(()),
        }
    }

    /// PUT of an object or its status.
    pub async fn update(&self, t: &Target, q: &Query, body: Value) -> Result<Written> {
        let validation = q.field_validation()?;
        let rt = t.rt;
        let path_name = t.name.clone().unwrap_or_default();
        let (obj, warnings) = decode_object(rt, body, validation)?;
        if name(&obj) != path_name && !name(&obj).is_empty() {
            return Err(Error::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({path_name})",
                name(&obj)
            )));
        }
        if let (Some(ns), Some(path_ns)) = (meta_str(&obj, "namespace"), &t.namespace) {
            if rt.namespaced && !ns.is_empty() && ns != path_ns {
                return Err(Error::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
        let precondition = meta_str(&obj, "resourceVersion")
            .filter(|rv| !rv.is_empty())
            .map(|rv| {
                rv.parse::<i64>().map_err(|_| {
                    Error::bad_request(format!("invalid resourceVersion {rv:?}: must be a number"))
                })
            })
            .transpose()?;
        let key = rt.key(self.namespace_of(t).as_deref(), &path_name);
        let current = self.storage.get(&key).await?;
        let Some(current) = current else {
            if allows_create_on_update(rt.kind) && t.subresource.is_none() {
                let mut w = self.create(t, q, obj).await?;
                w.warnings.extend(warnings);
                return Ok(w);
            }
            return Err(Error::not_found(rt, &path_name));
        };
        if let Some(rv) = precondition {
            if rv != current.revision {
                return Err(Error::conflict(rt, &path_name));
            }
        }
        let status_only = t.subresource == Some(Subresource::Status);
        let mut w = self
            .write_update(t, q, current, obj, status_only, precondition.is_some())
            .await?;
        w.warnings.extend(warnings);
        Ok(w)
    }

    /// Applies an update computed against `current`; on a lost race it re-reads and
    /// reapplies `change` unless the client pinned a resourceVersion.
    async fn write_update(
        &self,
        t: &Target,
        q: &Query,
        mut current: Stored,
        new: Value,
        status_only: bool,
        pinned: bool,
    ) -> Result<Written> {
        let rt = t.rt;
        let name_ = t.name.clone().unwrap_or_default();
        let key = rt.key(self.namespace_of(t).as_deref(), &name_);
        let dry_run = q.dry_run()?;
        for _ in 0..MAX_RETRIES {
            let mut obj = merge_for_update(rt, &current.object, &new, status_only);
            skiff_api::defaults::normalize(rt.kind, &mut obj);
            skiff_api::defaults::apply_defaults(rt.kind, &mut obj);
            if rt.kind == "Namespace" {
                keep_namespace_finalizers(t.subresource, &current.object, &new, &mut obj);
            }
            let mut effects = Vec::new();
            if !status_only {
                admission::admit_update(self, rt, &current.object, &mut obj, &mut effects).await?;
            }
            let errors = skiff_api::validation::validate_update(rt.kind, &obj, &current.object);
            if !errors.is_empty() {
                return Err(Error::invalid(rt, &name_, &errors));
            }
            if dry_run {
                return Ok(Written {
                    code: 200,
                    object: obj,
                    warnings: vec![],
                });
            }
            // The last finalizer removed from an object being deleted deletes it; a
            // namespace waits for its spec.finalizers too (Kubernetes'
            // ShouldDeleteNamespaceDuringUpdate).
            let result = if is_deleting(&obj)
                && finalizers(&obj).is_empty()
                && namespace_finalizers(&obj).is_empty()
            {
                let mut release = Vec::new();
                admission::release_on_delete(rt, &current.object, &mut release);
                self.storage
                    .delete(&key, current.revision, &release)
                    .await?
            } else {
                self.storage
                    .update(&key, &obj, current.revision, &effects)
                    .await?
            };
            match result {
                Ok(rev) => {
                    crate::storage::set_resource_version(&mut obj, rev);
                    return Ok(Written {
                        code: 200,
                        object: obj,
                        warnings: vec![],
                    });
                }
                Err(WriteConflict::SideEffect(k)) => {
                    if !k.contains("/resourcequotas/") {
                        return Err(admission::explain_conflict(rt, &name_, &k));
                    }
                }
                Err(WriteConflict::Object) if pinned => return Err(Error::conflict(rt, &name_)),
                Err(WriteConflict::Object) => {}
            }
            current = match self.storage.get(&key).await? {
                Some(c) => c,
                None => return Err(Error::not_found(rt, &name_)),
            };
        }
        Err(Error::conflict(rt, &name_))
    }

    /// PATCH of an object or its status.
    pub async fn patch(
        &self,
        t: &Target,
        q: &Query,
        content_type: &str,
        body: &[u8],
    ) -> Result<Written> {
        let rt = t.rt;
        let name_ = t.name.clone().unwrap_or_default();
        let key = rt.key(self.namespace_of(t).as_deref(), &name_);
        let patch: Value = if content_type.starts_with("application/apply-patch") {
            return Err(Error::unsupported_media_type(
                content_type,
                "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (server-side apply is not supported by skiff yet; use client-side `kubectl apply`)",
            ));
        } else {
            serde_json::from_slice(body)
                .map_err(|e| Error::bad_request(format!("the patch is not valid JSON: {e}")))?
        };
        let validation = q.field_validation()?;
        for _ in 0..MAX_RETRIES {
            let current = self.must_get(rt, &key, &name_).await?;
            let patched = if content_type.starts_with("application/json-patch+json") {
                skiff_api::patch::apply_json_patch(&current.object, &patch)
            } else if content_type.starts_with("application/merge-patch+json") {
                skiff_api::patch::apply_merge_patch(&current.object, &patch)
            } else if content_type.starts_with("application/strategic-merge-patch+json") {
                skiff_api::patch::apply_strategic_merge_patch(rt.kind, &current.object, &patch)
            } else {
                return Err(Error::unsupported_media_type(
                    content_type,
                    "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json",
                ));
            }
            .map_err(|e| Error::invalid_request(format!("the patch could not be applied: {e}")))?;
            // A resourceVersion in the patch is a precondition, as in Kubernetes.
            let pinned = meta_str(&patched, "resourceVersion")
                .filter(|rv| *rv != current.revision.to_string())
                .is_some();
            if pinned {
                return Err(Error::conflict(rt, &name_));
            }
            let (obj, warnings) = decode_object(rt, patched, validation)?;
            let status_only = t.subresource == Some(Subresource::Status);
            match self
                .write_update(t, q, current, obj, status_only, true)
                .await
            {
                Err(e) if e.is_conflict() => continue,
                Ok(mut w) => {
                    w.warnings = warnings;
                    return Ok(w);
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict(rt, &name_))
    }

    /// DELETE of one object: graceful for pods on a node, held by finalizers, and
    /// recording the propagation policy for the garbage collector.
    pub async fn delete(&self, t: &Target, q: &Query, body: &[u8]) -> Result<Written> {
        let rt = t.rt;
        let name_ = t.name.clone().unwrap_or_default();
        let options = DeleteOptions::parse(q, body)?;
        let key = rt.key(self.namespace_of(t).as_deref(), &name_);
        if rt.kind == "Namespace"
            && ["default", "kube-system", "kube-public"].contains(&name_.as_str())
        {
            return Err(Error::forbidden(
                rt,
                &name_,
                "this namespace may not be deleted",
            ));
        }
        for _ in 0..MAX_RETRIES {
            let current = self.must_get(rt, &key, &name_).await?;
            options.check_preconditions(rt, &name_, &current)?;
            let mut obj = current.object.clone();
            let mut fins = finalizers(&obj);
            match options.propagation.as_deref() {
                Some("Foreground") if !fins.iter().any(|f| f == "foregroundDeletion") => {
                    fins.push("foregroundDeletion".into())
                }
                Some("Orphan") if !fins.iter().any(|f| f == "orphan") => fins.push("orphan".into()),
                _ => {}
            }
            let grace = if rt.kind == "Pod" {
                pod_grace_period(&obj, options.grace_period)
            } else {
                0
            };
            // A namespace is emptied by the namespace controller first; a second delete
            // once its finalizers are gone removes it.
            let namespace_done = rt.kind == "Namespace"
                && is_deleting(&obj)
                && namespace_finalizers(&obj).is_empty();
            let hold = !fins.is_empty() || grace > 0 || (rt.kind == "Namespace" && !namespace_done);
            if options.dry_run {
                return Ok(Written {
                    code: 200,
                    object: obj,
                    warnings: vec![],
                });
            }
            let result = if hold {
                let already = is_deleting(&obj);
                let meta = meta_mut(&mut obj);
                if !fins.is_empty() {
                    meta.insert("finalizers".into(), json!(fins));
                }
                // A second delete may shorten the grace period, never lengthen it.
                let old_grace = meta
                    .get("deletionGracePeriodSeconds")
                    .and_then(Value::as_i64);
                if !already || old_grace.is_some_and(|g| grace < g) {
                    meta.insert("deletionTimestamp".into(), json!(rfc3339_in(grace)));
                    meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
                }
                if rt.kind == "Namespace" {
                    obj["status"]["phase"] = json!("Terminating");
                }
                self.storage
                    .update(&key, &obj, current.revision, &[])
                    .await?
            } else {
                let mut release = Vec::new();
                admission::release_on_delete(rt, &current.object, &mut release);
                self.storage
                    .delete(&key, current.revision, &release)
                    .await?
            };
            match result {
                Ok(rev) => {
                    crate::storage::set_resource_version(&mut obj, rev);
                    return Ok(Written {
                        code: 200,
                        object: obj,
                        warnings: vec![],
                    });
                }
                Err(_) => continue,
            }
        }
        Err(Error::conflict(rt, &name_))
    }

    /// DELETE of a collection: each matching object as a single delete would.
    pub async fn delete_collection(&self, t: &Target, q: &Query, body: &[u8]) -> Result<Value> {
        let listed = self.list(t, q).await?;
        let mut deleted = Vec::new();
        for obj in listed.items {
            let target = Target {
                rt: t.rt,
                namespace: meta_str(&obj, "namespace").map(str::to_string),
                name: Some(name(&obj).to_string()),
                subresource: None,
            };
            match self.delete(&target, q, body).await {
                Ok(w) => deleted.push(w.object),
                Err(Error::Status(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(json!({
            "kind": t.rt.list_kind,
            "apiVersion": t.rt.api_version,
            "metadata": {"resourceVersion": listed.revision.to_string()},
            "items": deleted,
        }))
    }

    /// GET of `…/scale`.
    pub async fn get_scale(&self, t: &Target) -> Result<Value> {
        let obj = self.get(t).await?;
        Ok(scale_of(&obj))
    }

    /// PUT or PATCH of `…/scale`: sets `spec.replicas`.
    pub async fn update_scale(
        &self,
        t: &Target,
        q: &Query,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Written> {
        let rt = t.rt;
        let name_ = t.name.clone().unwrap_or_default();
        let key = rt.key(self.namespace_of(t).as_deref(), &name_);
        for _ in 0..MAX_RETRIES {
            let current = self.must_get(rt, &key, &name_).await?;
            let scale = scale_of(&current.object);
            let body_json: Value = serde_json::from_slice(body)
                .map_err(|e| Error::bad_request(format!("the body is not valid JSON: {e}")))?;
            let new_scale = match content_type {
                None => body_json,
                Some(ct) if ct.starts_with("application/json-patch+json") => {
                    skiff_api::patch::apply_json_patch(&scale, &body_json)
                        .map_err(|e| Error::invalid_request(e.to_string()))?
                }
                Some(_) => skiff_api::patch::apply_merge_patch(&scale, &body_json)
                    .map_err(|e| Error::invalid_request(e.to_string()))?,
            };
            if let Some(rv) = meta_str(&new_scale, "resourceVersion") {
                if !rv.is_empty() && rv != current.revision.to_string() {
                    return Err(Error::conflict(rt, &name_));
                }
            }
            let replicas = new_scale["spec"]["replicas"].as_i64().unwrap_or(0);
            if replicas < 0 {
                return Err(Error::invalid(
                    rt,
                    &name_,
                    &[skiff_api::validation::FieldError::invalid_str(
                        "spec.replicas",
                        &replicas.to_string(),
                        "must be greater than or equal to 0",
                    )],
                ));
            }
            let mut obj = current.object.clone();
            obj["spec"]["replicas"] = json!(replicas);
            match self.write_update(t, q, current, obj, false, true).await {
                Ok(w) => {
                    return Ok(Written {
                        code: 200,
                        object: scale_of(&w.object),
                        warnings: vec![],
                    })
                }
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict(rt, &name_))
    }

    /// POST `pods/{name}/binding`: sets `spec.nodeName` once.
    pub async fn bind(&self, t: &Target, body: Value) -> Result<Value> {
        let rt = t.rt;
        let name_ = t.name.clone().unwrap_or_default();
        let node = body["target"]["name"].as_str().unwrap_or("").to_string();
        if node.is_empty() {
            return Err(Error::invalid(
                rt,
                &name_,
                &[skiff_api::validation::FieldError::required(
                    "target.name",
                    "",
                )],
            ));
        }
        let key = rt.key(self.namespace_of(t).as_deref(), &name_);
        for _ in 0..MAX_RETRIES {
            let current = self.must_get(rt, &key, &name_).await?;
            if is_deleting(&current.object) {
                return Err(Error::conflict_because(
                    rt,
                    &name_,
                    "pod is being deleted, cannot be assigned to a host",
                ));
            }
            if let Some(existing) = current.object["spec"]["nodeName"]
                .as_str()
                .filter(|n| !n.is_empty())
            {
                return Err(Error::conflict_because(
                    rt,
                    &name_,
                    &format!("pod {name_} is already assigned to node \"{existing}\""),
                ));
            }
            let mut obj = current.object.clone();
            obj["spec"]["nodeName"] = json!(node);
            let conditions = obj["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut conditions: Vec<Value> = conditions
                .into_iter()
                .filter(|c| c["type"] != "PodScheduled")
                .collect();
            conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now_rfc3339()}));
            obj["status"]["conditions"] = json!(conditions);
            if let Ok(_rev) = self
                .storage
                .update(&key, &obj, current.revision, &[])
                .await?
            {
                return Ok(
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
                );
            }
        }
        Err(Error::conflict(rt, &name_))
    }

    /// POST `pods/{name}/eviction`: a polite delete (no disruption budgets in skiff yet).
    pub async fn evict(&self, t: &Target, q: &Query, body: &[u8]) -> Result<Value> {
        let eviction: Value = if body.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(body)
                .map_err(|e| Error::bad_request(format!("the Eviction is not valid JSON: {e}")))?
        };
        let delete_options = serde_json::to_vec(&eviction["deleteOptions"]).unwrap_or_default();
        let delete_options = if eviction["deleteOptions"].is_null() {
            Vec::new()
        } else {
            delete_options
        };
        self.delete(t, q, &delete_options).await?;
        Ok(
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        )
    }
}

/// The parameters of a delete, from the query and the DeleteOptions body.
struct DeleteOptions {
    grace_period: Option<i64>,
    propagation: Option<String>,
    precondition_uid: Option<String>,
    precondition_rv: Option<String>,
    dry_run: bool,
}

impl DeleteOptions {
    fn parse(q: &Query, body: &[u8]) -> Result<DeleteOptions> {
        let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            serde_json::from_slice(body).map_err(|e| {
                Error::bad_request(format!("the DeleteOptions body is not valid JSON: {e}"))
            })?
        };
        let propagation = q
            .get("propagationPolicy")
            .map(str::to_string)
            .or_else(|| body["propagationPolicy"].as_str().map(str::to_string))
            .or_else(|| match body["orphanDependents"].as_bool() {
                Some(true) => Some("Orphan".into()),
                Some(false) => Some("Background".into()),
                None => None,
            });
        if let Some(p) = &propagation {
            if !["Foreground", "Background", "Orphan"].contains(&p.as_str()) {
                return Err(Error::bad_request(format!(
                    "propagationPolicy: Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
                )));
            }
        }
        let grace_period = match q.int("gracePeriodSeconds")? {
            Some(g) => Some(g),
            None => body["gracePeriodSeconds"].as_i64(),
        };
        let dry_run = q.dry_run()?
            || body["dryRun"]
                .as_array()
                .is_some_and(|a| a.iter().any(|v| v == "All"));
        Ok(DeleteOptions {
            grace_period,
            propagation,
            precondition_uid: body["preconditions"]["uid"].as_str().map(str::to_string),
            precondition_rv: body["preconditions"]["resourceVersion"]
                .as_str()
                .map(str::to_string),
            dry_run,
        })
    }

    fn check_preconditions(&self, rt: &ResourceType, name: &str, current: &Stored) -> Result<()> {
        if let Some(uid) = &self.precondition_uid {
            if meta_str(&current.object, "uid") != Some(uid.as_str()) {
                return Err(Error::conflict_because(
                    rt,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta_str(&current.object, "uid").unwrap_or("")
                    ),
                ));
            }
        }
        if let Some(rv) = &self.precondition_rv {
            if *rv != current.revision.to_string() {
                return Err(Error::conflict_because(
                    rt,
                    name,
                    &format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}", current.revision),
                ));
            }
        }
        Ok(())
    }
}

/// How long a deleted pod has to stop: 0 for pods no kubelet runs (unscheduled or
/// finished), else the request's period or the pod's terminationGracePeriodSeconds.
fn pod_grace_period(pod: &Value, requested: Option<i64>) -> i64 {
    let scheduled = pod["spec"]["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty());
    let finished = matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    );
    if !scheduled || finished {
        return 0;
    }
    let grace = requested
        .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(30);
    // kubectl sends 0 only with `--force` (it turns a plain `--grace-period=0` into 1),
    // so 0 means: remove the object now, without waiting for the kubelet.
    grace.max(0)
}

/// A namespace's `spec.finalizers` (empty for every other kind).
fn namespace_finalizers(obj: &Value) -> Vec<&str> {
    obj["spec"]["finalizers"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// As Kubernetes' namespace strategy: only `namespaces/finalize` changes
/// `spec.finalizers` (which defaulting would otherwise re-add on every update); every
/// other update keeps them as they are.
fn keep_namespace_finalizers(
    subresource: Option<Subresource>,
    current: &Value,
    new: &Value,
    obj: &mut Value,
) {
    let finalizers = if subresource == Some(Subresource::Finalize) {
        new["spec"]["finalizers"].clone()
    } else {
        current["spec"]["finalizers"].clone()
    };
    let finalizers = if finalizers.is_array() {
        finalizers
    } else {
        json!([])
    };
    obj["spec"]["finalizers"] = finalizers;
}

/// Kinds whose `metadata.generation` counts spec changes.
fn tracks_generation(kind: &str) -> bool {
    matches!(
        kind,
        "Deployment"
            | "ReplicaSet"
            | "StatefulSet"
            | "DaemonSet"
            | "Job"
            | "CronJob"
            | "HorizontalPodAutoscaler"
            | "Ingress"
            | "PersistentVolumeClaim"
    )
}

/// Kinds Kubernetes lets PUT create (AllowCreateOnUpdate).
fn allows_create_on_update(kind: &str) -> bool {
    matches!(
        kind,
        "Lease" | "Endpoints" | "Event" | "EndpointSlice" | "LimitRange"
    )
}

/// Clears client-sent status on create where Kubernetes' strategies do.
fn reset_status_on_create(rt: &ResourceType, obj: &mut Value) {
    match rt.kind {
        "Pod" => {
            obj["status"] = json!({"phase": "Pending", "qosClass": admission::qos_class(obj)});
        }
        "PersistentVolume" => obj["status"] = json!({"phase": "Pending"}),
        "PersistentVolumeClaim" => obj["status"] = json!({"phase": "Pending"}),
        // The kubelet registers its node with its status.
        "Node" => {}
        _ if rt.has(Subresource::Status) => {
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
        _ => {}
    }
}

/// The object an update writes: the client's object with the server-owned metadata
/// kept, status kept (main resource) or only status taken (status subresource), and the
/// generation bumped when the spec changed.
fn merge_for_update(rt: &ResourceType, current: &Value, new: &Value, status_only: bool) -> Value {
    let mut obj = if status_only {
        let mut o = current.clone();
        o["status"] = new.get("status").cloned().unwrap_or(Value::Null);
        if o["status"].is_null() {
            if let Some(m) = o.as_object_mut() {
                m.remove("status");
            }
        }
        o
    } else {
        let mut o = new.clone();
        if rt.has(Subresource::Status) {
            match current.get("status") {
                Some(s) => o["status"] = s.clone(),
                None => {
                    if let Some(m) = o.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        o
    };
    let cur_meta = current.get("metadata").cloned().unwrap_or(json!({}));
    let meta = meta_mut(&mut obj);
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "namespace",
        "name",
        "generation",
        "selfLink",
    ] {
        match cur_meta.get(field) {
            Some(v) => {
                meta.insert(field.into(), v.clone());
            }
            None => {
                meta.remove(field);
            }
        }
    }
    meta.remove("resourceVersion");
    meta.remove("managedFields");
    if !status_only && tracks_generation(rt.kind) {
        let spec_changed = spec_of(current) != spec_of(&obj);
        let generation = cur_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        meta_mut(&mut obj).insert(
            "generation".into(),
            json!(if spec_changed {
                generation + 1
            } else {
                generation
            }),
        );
    }
    obj
}

fn spec_of(obj: &Value) -> BTreeMap<String, Value> {
    obj.as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "metadata" | "status" | "kind" | "apiVersion")
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// The autoscaling/v1 Scale view of an object with `spec.replicas`.
fn scale_of(obj: &Value) -> Value {
    let selector = obj["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let mut status = json!({"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0)});
    if !selector.is_empty() {
        status["selector"] = json!(selector);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": obj["metadata"]["name"],
            "namespace": obj["metadata"]["namespace"],
            "uid": obj["metadata"]["uid"],
            "resourceVersion": obj["metadata"]["resourceVersion"],
            "creationTimestamp": obj["metadata"]["creationTimestamp"],
        },
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": status,
    })
}

/// A random version-4 UUID, as Kubernetes gives every object.
pub fn new_uid() -> String {
    let mut b: [u8; 16] = rand::thread_rng().gen();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `generateName` + 5 characters from Kubernetes' alphabet (no vowels, no look-alikes).
fn generate_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::thread_rng();
    let suffix: String = (0..5)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    // Kubernetes trims the prefix so the name stays within 63 characters.
    let keep = prefix.len().min(58);
    format!("{}{suffix}", &prefix[..keep])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_look_like_uuids() {
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, new_uid());
    }

    #[test]
    fn generated_names_keep_the_prefix() {
        let n = generate_name("web-");
        assert!(n.starts_with("web-") && n.len() == 9);
    }

    #[test]
    fn continue_tokens_roundtrip_and_stay_in_their_prefix() {
        let tok = encode_continue(42, "/registry/pods/default/a");
        let (rv, start) = decode_continue(&tok, "/registry/pods/default/").unwrap();
        assert_eq!(rv, 42);
        assert_eq!(start, "/registry/pods/default/a\0");
        assert!(decode_continue(&tok, "/registry/secrets/").is_err());
        assert!(decode_continue("!!", "/registry/").is_err());
    }

    #[test]
    fn updates_keep_server_fields_and_count_generations() {
        let rt = ResourceType::lookup("apps", "v1", "deployments").unwrap();
        let current = json!({"metadata": {"name": "d", "uid": "u1", "generation": 3, "creationTimestamp": "t"},
            "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let new = json!({"metadata": {"name": "d", "uid": "forged"}, "spec": {"replicas": 2}, "status": {"replicas": 9}});
        let out = merge_for_update(rt, &current, &new, false);
        assert_eq!(out["metadata"]["uid"], "u1");
        assert_eq!(out["metadata"]["generation"], 4);
        assert_eq!(out["status"]["replicas"], 1);
        let out = merge_for_update(rt, &current, &new, true);
        assert_eq!(out["spec"]["replicas"], 1);
        assert_eq!(out["status"]["replicas"], 9);
        assert_eq!(out["metadata"]["generation"], 3);
    }

    #[test]
    fn pods_not_on_a_node_go_at_once() {
        let pending = json!({"spec": {}, "status": {"phase": "Pending"}});
        assert_eq!(pod_grace_period(&pending, None), 0);
        let running = json!({"spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 10}, "status": {"phase": "Running"}});
        assert_eq!(pod_grace_period(&running, None), 10);
        assert_eq!(pod_grace_period(&running, Some(0)), 0);
    }
}
