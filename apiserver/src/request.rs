//! What a REST request asks for: the resource, namespace, name and subresource from the
//! path, and the query parameters Kubernetes defines.

use std::collections::HashMap;

use skiff_api::{ResourceType, Subresource};

use crate::error::{Error, Result};

/// A request path resolved against the served resources.
#[derive(Debug)]
pub struct Target {
    /// The resource type.
    pub rt: &'static ResourceType,
    /// The namespace from the path (namespaced types only).
    pub namespace: Option<String>,
    /// The object's name, for requests on one object.
    pub name: Option<String>,
    /// The subresource, if any.
    pub subresource: Option<Subresource>,
}

/// Resolves `/api/v1/…` or `/apis/{group}/{version}/…` below the group-version prefix.
/// Returns `None` when the path is not a resource path (discovery paths are handled
/// before this).
pub fn parse_path(path: &str) -> Result<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(Error::no_route(path)),
    };
    let lookup = |plural: &str| ResourceType::lookup(group, version, plural);
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, tail @ ..] if lookup(plural).is_some_and(|rt| rt.namespaced) => {
            (
                Some(ns.to_string()),
                std::iter::once(*plural)
                    .chain(tail.iter().copied())
                    .collect::<Vec<_>>(),
            )
        }
        _ => (None, rest.to_vec()),
    };
    let (plural, name, sub) = match rest.as_slice() {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return Err(Error::no_route(path)),
    };
    let rt = lookup(plural).ok_or_else(|| Error::no_route(path))?;
    let subresource = match sub {
        None => None,
        Some(s) => match Subresource::parse(s) {
            Some(sub) if rt.has(sub) => Some(sub),
            _ => return Err(Error::no_route(path)),
        },
    };
    if name.is_some_and(str::is_empty) {
        return Err(Error::no_route(path));
    }
    Ok(Target {
        rt,
        namespace,
        name: name.map(str::to_string),
        subresource,
    })
}

/// Query parameters, decoded.
#[derive(Debug, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    /// Decodes a query string.
    pub fn parse(query: Option<&str>) -> Query {
        Query(
            url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// A parameter's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A boolean parameter (`true`/`1`).
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some("true" | "1"))
    }

    /// An integer parameter; a malformed one is a 400.
    pub fn int(&self, name: &str) -> Result<Option<i64>> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                Error::bad_request(format!(
                    "invalid value for query parameter {name}: {v:?} is not an integer"
                ))
            }),
        }
    }

    /// `dryRun=All` (the only value Kubernetes accepts).
    pub fn dry_run(&self) -> Result<bool> {
        match self.get("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(Error::bad_request(format!(
                "unsupported dryRun value {other:?}: the only supported value is \"All\""
            ))),
        }
    }

    /// `fieldValidation`: Strict, Warn (the default) or Ignore.
    pub fn field_validation(&self) -> Result<FieldValidation> {
        match self.get("fieldValidation") {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(Error::bad_request(format!(
                "invalid fieldValidation directive {other:?}: must be one of Ignore, Warn, Strict"
            ))),
        }
    }
}

/// How unknown fields in a request body are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    /// Rejected with 400.
    Strict,
    /// Dropped, with a `Warning` header.
    Warn,
    /// Dropped silently.
    Ignore,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_to_resources() {
        let t = parse_path("/api/v1/namespaces/default/pods/web/status").unwrap();
        assert_eq!(t.rt.plural, "pods");
        assert_eq!(t.namespace.as_deref(), Some("default"));
        assert_eq!(t.name.as_deref(), Some("web"));
        assert_eq!(t.subresource, Some(Subresource::Status));
        let t = parse_path("/api/v1/namespaces/kube-system").unwrap();
        assert_eq!(t.rt.plural, "namespaces");
        assert_eq!(t.name.as_deref(), Some("kube-system"));
        let t = parse_path("/api/v1/namespaces/x/finalize").unwrap();
        assert_eq!(t.subresource, Some(Subresource::Finalize));
        let t = parse_path("/apis/apps/v1/deployments").unwrap();
        assert!(t.namespace.is_none() && t.name.is_none());
        let t = parse_path("/apis/apps/v1/namespaces/a/deployments/d/scale").unwrap();
        assert_eq!(t.subresource, Some(Subresource::Scale));
        assert!(parse_path("/api/v1/namespaces/a/widgets").is_err());
        assert!(parse_path("/api/v1/namespaces/a/configmaps/c/scale").is_err());
        assert!(parse_path("/apis/apps/v2/deployments").is_err());
    }

    #[test]
    fn queries_decode() {
        let q = Query::parse(Some("labelSelector=app%3Dweb&watch=1&limit=5"));
        assert_eq!(q.get("labelSelector"), Some("app=web"));
        assert!(q.flag("watch"));
        assert_eq!(q.int("limit").unwrap(), Some(5));
        assert!(Query::parse(Some("limit=x")).int("limit").is_err());
    }
}
