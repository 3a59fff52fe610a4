//! The connection every verb shares: the client from the kubeconfig, the namespace, and
//! discovery (which resources the server has, their short names and scopes).

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context as _, Result};
use serde_json::Value;
use skiff_client::kubeconfig::Kubeconfig;
use skiff_client::{ApiResource, Client, Method, RequestBody};
use tokio::sync::OnceCell;

/// Accept header of `kubectl get`: a server-side Table, else plain JSON.
pub const TABLE_ACCEPT: &str =
    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

/// Flags every verb understands.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct GlobalArgs {
    /// Path to the kubeconfig file to use.
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The namespace for this request.
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Log level: 6 requests, 8 headers, 9 bodies (as kubectl's -v).
    #[arg(short = 'v', long = "v", global = true, default_value_t = 0)]
    pub verbosity: u8,
}

/// One resource type the server serves.
#[derive(Clone, Debug)]
pub struct Resource {
    /// Group, version, kind, plural, scope.
    pub api: ApiResource,
    /// e.g. `deployment`.
    pub singular: String,
    /// e.g. `deploy`.
    pub short_names: Vec<String>,
    /// e.g. `all`.
    pub categories: Vec<String>,
    /// e.g. `list`, `watch`.
    pub verbs: Vec<String>,
    /// Subresources served, e.g. `scale`, `eviction`.
    pub subresources: Vec<String>,
}

impl Resource {
    /// `deployment.apps` or `pod`: how kubectl names the type before `/NAME`.
    pub fn kind_prefix(&self) -> String {
        let kind = self.api.kind.to_lowercase();
        if self.api.group.is_empty() {
            kind
        } else {
            format!("{kind}.{}", self.api.group)
        }
    }

    /// `deployments.apps` or `pods`: how the server names the type in messages.
    pub fn plural_group(&self) -> String {
        if self.api.group.is_empty() {
            self.api.plural.clone()
        } else {
            format!("{}.{}", self.api.plural, self.api.group)
        }
    }
}

/// The server's resource types.
#[derive(Debug, Default)]
pub struct Discovery {
    /// In discovery order: core first, then groups in the server's order.
    pub resources: Vec<Resource>,
}

impl Discovery {
    /// The resource a user's word names: plural, singular, short name or kind, optionally
    /// followed by `.group` (`deploy`, `deployments.apps`, `Deployment`).
    pub fn resolve(&self, word: &str) -> Result<&Resource> {
        let word_lc = word.to_lowercase();
        let matches = |r: &Resource, name: &str| {
            r.api.plural == name
                || r.singular == name
                || r.api.kind.to_lowercase() == name
                || r.short_names.iter().any(|s| s == name)
        };
        if let Some(r) = self.resources.iter().find(|r| matches(r, &word_lc)) {
            return Ok(r);
        }
        if let Some((name, group)) = word_lc.split_once('.') {
            // `deployments.apps`, `deployments.v1.apps`
            let (version, group) = match group.split_once('.') {
                Some((v, g))
                    if v.starts_with('v') && v[1..].starts_with(|c: char| c.is_ascii_digit()) =>
                {
                    (Some(v), g)
                }
                _ => (None, group),
            };
            if let Some(r) = self.resources.iter().find(|r| {
                r.api.group == group
                    && version.is_none_or(|v| r.api.version == v)
                    && matches(r, name)
            }) {
                return Ok(r);
            }
        }
        bail!("the server doesn't have a resource type {word:?}")
    }

    /// The resource of an object's apiVersion and kind.
    pub fn for_kind(&self, api_version: &str, kind: &str) -> Result<&Resource> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        self.resources
            .iter()
            .find(|r| r.api.group == group && r.api.kind == kind && r.api.version == version)
            .or_else(|| {
                self.resources
                    .iter()
                    .find(|r| r.api.group == group && r.api.kind == kind)
            })
            .ok_or_else(|| {
                anyhow!(
                    "resource mapping not found for kind {kind:?} in version {api_version:?}; ensure CRDs are installed first"
                )
            })
    }

    /// The types in a category (`all`), in discovery order.
    pub fn category(&self, name: &str) -> Vec<&Resource> {
        self.resources
            .iter()
            .filter(|r| r.categories.iter().any(|c| c == name))
            .collect()
    }
}

/// What a verb needs to talk to the cluster.
pub struct Ctx {
    /// The client.
    pub client: Client,
    /// The namespace (`-n`, else the context's, else `default`).
    pub namespace: String,
    /// Whether `-n` was given.
    pub namespace_explicit: bool,
    discovery: OnceCell<Discovery>,
}

impl Ctx {
    /// Connects as kubectl would from the global flags.
    pub fn new(global: &GlobalArgs) -> Result<Ctx> {
        let (kc, shown) = Kubeconfig::load(global.kubeconfig.as_deref())?;
        let config = kc.to_config(global.context.as_deref(), &shown)?;
        tracing::info!(
            target: "skiffctl::loader",
            path = %shown.display(),
            server = %config.cluster_url.trim_end_matches('/'),
            "Config loaded from file"
        );
        let namespace = global
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from_config(config)?;
        Ok(Ctx {
            client,
            namespace,
            namespace_explicit: global.namespace.is_some(),
            discovery: OnceCell::new(),
        })
    }

    /// The server's resource types, read once.
    pub async fn discovery(&self) -> Result<&Discovery> {
        self.discovery
            .get_or_try_init(|| discover(&self.client))
            .await
    }

    /// GET a path as JSON.
    pub async fn get_json(&self, path: &str) -> Result<Value> {
        let bytes = self.client.request_raw(Method::GET, path, None).await?;
        serde_json::from_slice(&bytes).with_context(|| format!("decoding the answer to GET {path}"))
    }

    /// GET a path asking for a Table.
    pub async fn get_table(&self, path: &str) -> Result<Value> {
        let bytes = self
            .client
            .request_raw_accept(Method::GET, path, TABLE_ACCEPT, None)
            .await?;
        serde_json::from_slice(&bytes).with_context(|| format!("decoding the answer to GET {path}"))
    }

    /// Sends a JSON body (or none) and decodes the JSON answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: &'static str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let body = body.map(|b| RequestBody {
            content_type,
            bytes: serde_json::to_vec(b).unwrap_or_default(),
        });
        let bytes = self.client.request_raw(method.clone(), path, body).await?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes)
            .with_context(|| format!("decoding the answer to {method} {path}"))
    }

    /// The namespace to use for a resource: None for cluster-scoped ones.
    pub fn ns_for<'a>(&'a self, r: &Resource, explicit: Option<&'a str>) -> Option<&'a str> {
        r.api
            .namespaced
            .then(|| explicit.unwrap_or(&self.namespace))
    }
}

async fn discover(client: &Client) -> Result<Discovery> {
    let mut d = Discovery::default();
    let get = |path: String| async move {
        let bytes = client.request_raw(Method::GET, &path, None).await?;
        serde_json::from_slice::<Value>(&bytes)
            .with_context(|| format!("decoding discovery document {path}"))
    };
    let mut group_versions = vec![("".to_string(), "v1".to_string(), "/api/v1".to_string())];
    let groups = get("/apis".into()).await?;
    for g in groups["groups"].as_array().into_iter().flatten() {
        let name = g["name"].as_str().unwrap_or_default();
        let version = g["preferredVersion"]["version"]
            .as_str()
            .or_else(|| g["versions"][0]["version"].as_str())
            .unwrap_or_default();
        if name.is_empty() || version.is_empty() {
            continue;
        }
        group_versions.push((
            name.to_string(),
            version.to_string(),
            format!("/apis/{name}/{version}"),
        ));
    }
    for (group, version, path) in group_versions {
        let list = get(path).await?;
        let entries = list["resources"].as_array().cloned().unwrap_or_default();
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        };
        for e in &entries {
            let name = e["name"].as_str().unwrap_or_default();
            if name.is_empty() || name.contains('/') {
                continue;
            }
            let subresources = entries
                .iter()
                .filter_map(|s| s["name"].as_str()?.strip_prefix(&format!("{name}/")))
                .map(str::to_string)
                .collect();
            let kind = e["kind"].as_str().unwrap_or_default();
            d.resources.push(Resource {
                api: ApiResource::new(
                    &group,
                    &version,
                    kind,
                    name,
                    e["namespaced"].as_bool().unwrap_or(false),
                ),
                singular: e["singularName"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .unwrap_or_else(|| kind.to_lowercase()),
                short_names: strings(&e["shortNames"]),
                categories: strings(&e["categories"]),
                verbs: strings(&e["verbs"]),
                subresources,
            });
        }
    }
    Ok(d)
}

/// Percent-encodes a query value.
pub fn encode(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `key=value,…` from a label map (a Service's selector).
pub fn labels_selector(labels: &Value) -> String {
    let mut pairs: Vec<String> = labels
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
        .collect();
    pairs.sort();
    pairs.join(",")
}

/// The `labelSelector` query of a LabelSelector (matchLabels and matchExpressions), as
/// kubectl writes it.
pub fn label_selector_query(selector: &Value) -> String {
    let mut terms = Vec::new();
    let labels = labels_selector(&selector["matchLabels"]);
    if !labels.is_empty() {
        terms.push(labels);
    }
    for e in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = e["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        terms.push(match e["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "DoesNotExist" => format!("!{key}"),
            _ => key.to_string(),
        });
    }
    terms.join(",")
}

/// The path of one object.
pub fn item_path(r: &Resource, ns: Option<&str>, name: &str) -> String {
    format!("{}/{}", r.api.collection_path(ns), encode(name))
}

/// `metadata.name` of an object.
pub fn name_of(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or_default()
}

/// `metadata.namespace` of an object.
pub fn namespace_of(obj: &Value) -> Option<&str> {
    obj["metadata"]["namespace"]
        .as_str()
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selector_query_writes_labels_then_expressions() {
        let sel = json!({
            "matchLabels": {"tier": "web", "app": "greet"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["a", "b"]},
                {"key": "zone", "operator": "NotIn", "values": ["x"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "team", "operator": "Exists"},
            ],
        });
        assert_eq!(
            label_selector_query(&sel),
            "app=greet,tier=web,env in (a,b),zone notin (x),!canary,team"
        );
        assert_eq!(label_selector_query(&json!({})), "");
    }
}
