//! `Api<K>`: REST calls for one resource type, typed or untyped.

use std::marker::PhantomData;
use std::time::Duration;

use futures::stream::BoxStream;
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope, Resource, SubResourceScope};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::client::RequestBody;
use crate::params::{encode_segment, Query};
use crate::{
    Client, DeleteParams, Error, ListParams, ObjectList, Patch, PatchParams, PostParams, Result,
    WatchEvent, WatchParams,
};

/// Whether a k8s-openapi scope type is namespaced; lets `Api::all` and
/// [`ApiResource::erase`] learn a kind's scope from its type.
pub trait ScopeInfo {
    /// True for namespaced kinds.
    const NAMESPACED: bool;
}

impl ScopeInfo for NamespaceResourceScope {
    const NAMESPACED: bool = true;
}

impl ScopeInfo for ClusterResourceScope {
    const NAMESPACED: bool = false;
}

impl ScopeInfo for SubResourceScope {
    const NAMESPACED: bool = false;
}

/// Which resource a request is about, known at run time: what `Api` builds paths from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiResource {
    /// API group; "" for the core group.
    pub group: String,
    /// Version, e.g. `v1`.
    pub version: String,
    /// `group/version`, or just the version in the core group.
    pub api_version: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// The plural path segment, e.g. `deployments`.
    pub plural: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
}

impl ApiResource {
    /// The resource of a k8s-openapi type.
    pub fn erase<K: Resource>() -> Self
    where
        K::Scope: ScopeInfo,
    {
        ApiResource {
            group: K::GROUP.to_string(),
            version: K::VERSION.to_string(),
            api_version: K::API_VERSION.to_string(),
            kind: K::KIND.to_string(),
            plural: K::URL_PATH_SEGMENT.to_string(),
            namespaced: K::Scope::NAMESPACED,
        }
    }

    /// A resource named at run time, e.g. for skiffctl's untyped calls.
    pub fn new(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        let api_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        ApiResource {
            group: group.to_string(),
            version: version.to_string(),
            api_version,
            kind: kind.to_string(),
            plural: plural.to_string(),
            namespaced,
        }
    }

    /// `/api/v1` for the core group, `/apis/{group}/{version}` for the others.
    pub fn group_path(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// The collection path in `namespace`, or across all namespaces (and for
    /// cluster-scoped kinds) when None.
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        match namespace.filter(|_| self.namespaced) {
            Some(ns) => format!(
                "{}/namespaces/{}/{}",
                self.group_path(),
                encode_segment(ns),
                self.plural
            ),
            None => format!("{}/{}", self.group_path(), self.plural),
        }
    }
}

/// REST calls for resource `K` in one namespace, across all, or cluster-wide.
///
/// `K` is a k8s-openapi type, or `serde_json::Value` with [`Api::dynamic`].
pub struct Api<K> {
    client: Client,
    resource: ApiResource,
    namespace: Option<String>,
    // fn() -> K: an Api is Send + Sync whatever K is; it holds no K.
    _kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Api<K> {
    fn clone(&self) -> Self {
        Api {
            client: self.client.clone(),
            resource: self.resource.clone(),
            namespace: self.namespace.clone(),
            _kind: PhantomData,
        }
    }
}

impl<K> std::fmt::Debug for Api<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("resource", &self.resource.plural)
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl<K: Resource<Scope = NamespaceResourceScope>> Api<K> {
    /// Objects of a namespaced kind in `namespace`.
    pub fn namespaced(client: Client, namespace: &str) -> Self {
        Api {
            client,
            resource: ApiResource::erase::<K>(),
            namespace: Some(namespace.to_string()),
            _kind: PhantomData,
        }
    }

    /// Objects in the client's default namespace (the kubeconfig context's).
    pub fn default_namespaced(client: Client) -> Self {
        let ns = client.default_namespace().to_string();
        Api::namespaced(client, &ns)
    }
}

impl<K: Resource<Scope = ClusterResourceScope>> Api<K> {
    /// Objects of a cluster-scoped kind.
    pub fn cluster(client: Client) -> Self {
        Api {
            client,
            resource: ApiResource::erase::<K>(),
            namespace: None,
            _kind: PhantomData,
        }
    }
}

impl<K: Resource> Api<K>
where
    K::Scope: ScopeInfo,
{
    /// Objects in every namespace (for list and watch), or cluster-scoped objects.
    pub fn all(client: Client) -> Self {
        Api {
            client,
            resource: ApiResource::erase::<K>(),
            namespace: None,
            _kind: PhantomData,
        }
    }
}

impl Api<serde_json::Value> {
    /// Untyped objects of a resource named at run time, in `namespace` (None: all
    /// namespaces, or a cluster-scoped resource).
    pub fn dynamic(client: Client, resource: ApiResource, namespace: Option<&str>) -> Self {
        Api {
            client,
            resource,
            namespace: namespace.map(str::to_string),
            _kind: PhantomData,
        }
    }
}

impl<K> Api<K> {
    /// The resource this Api talks about.
    pub fn resource(&self) -> &ApiResource {
        &self.resource
    }

    /// The namespace, None for all namespaces or cluster-scoped kinds.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The collection path, e.g. `/api/v1/namespaces/default/pods`.
    pub fn collection_path(&self) -> String {
        self.resource.collection_path(self.namespace.as_deref())
    }

    /// The path of one object; refuses a namespaced kind without a namespace, which the
    /// server would answer with a puzzling 404.
    pub fn item_path(&self, name: &str) -> Result<String> {
        if name.is_empty() {
            return Err(Error::InvalidRequest(format!(
                "a {} needs a name",
                self.resource.kind
            )));
        }
        if self.resource.namespaced && self.namespace.is_none() {
            return Err(Error::InvalidRequest(format!(
                "{} is namespaced: use Api::namespaced to address {name:?}",
                self.resource.kind
            )));
        }
        Ok(format!(
            "{}/{}",
            self.collection_path(),
            encode_segment(name)
        ))
    }

    /// The path of a subresource (`status`, `scale`, `binding`, `eviction`, …).
    pub fn subresource_path(&self, name: &str, subresource: &str) -> Result<String> {
        Ok(format!("{}/{subresource}", self.item_path(name)?))
    }
}

/// What a DELETE answered: the object (still there while finalizers or a grace period
/// run, or its last state) or a Status (it is gone).
#[derive(Clone, Debug, PartialEq)]
pub enum Deleted<K> {
    /// The server returned the object.
    Object(K),
    /// The server returned a Status.
    Status(Box<Status>),
}

impl<K> Deleted<K> {
    /// The object, when the server returned one.
    pub fn object(self) -> Option<K> {
        match self {
            Deleted::Object(k) => Some(k),
            Deleted::Status(_) => None,
        }
    }
}

fn encode<T: Serialize>(what: &str, value: &T) -> Result<RequestBody> {
    serde_json::to_vec(value)
        .map(RequestBody::json)
        .map_err(|source| Error::Encode {
            what: what.to_string(),
            source,
        })
}

impl<K: Serialize + DeserializeOwned> Api<K> {
    fn kind(&self) -> &str {
        &self.resource.kind
    }

    /// Reads one object (GET).
    pub async fn get(&self, name: &str) -> Result<K> {
        let path = self.item_path(name)?;
        self.client
            .request(Method::GET, &path, None, self.kind())
            .await
    }

    /// Reads one object; None when it does not exist.
    pub async fn get_opt(&self, name: &str) -> Result<Option<K>> {
        match self.get(name).await {
            Ok(k) => Ok(Some(k)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Lists one page of objects.
    pub async fn list(&self, lp: &ListParams) -> Result<ObjectList<K>> {
        let mut q = Query::default();
        lp.populate(&mut q);
        let path = q.to_url(&self.collection_path());
        let what = format!("{}List", self.kind());
        self.client.request(Method::GET, &path, None, &what).await
    }

    /// Creates an object (POST); answers it as stored.
    pub async fn create(&self, pp: &PostParams, obj: &K) -> Result<K> {
        let mut q = Query::default();
        pp.populate(&mut q);
        let path = q.to_url(&self.collection_path());
        let body = encode(self.kind(), obj)?;
        self.client
            .request(Method::POST, &path, Some(body), self.kind())
            .await
    }

    /// Replaces an object (PUT); set `metadata.resourceVersion` for optimistic concurrency
    /// (a stale one fails with 409 Conflict).
    pub async fn replace(&self, name: &str, pp: &PostParams, obj: &K) -> Result<K> {
        self.put(self.item_path(name)?, pp, obj, self.kind()).await
    }

    /// Patches an object (PATCH) with a JSON, merge, strategic-merge or apply patch.
    pub async fn patch<P: Serialize>(
        &self,
        name: &str,
        pp: &PatchParams,
        patch: &Patch<P>,
    ) -> Result<K> {
        self.send_patch(self.item_path(name)?, pp, patch).await
    }

    /// Deletes an object; the body is a `DeleteOptions`.
    pub async fn delete(&self, name: &str, dp: &DeleteParams) -> Result<Deleted<K>> {
        let path = self.item_path(name)?;
        self.send_delete(&path, dp, self.kind()).await
    }

    /// Deletes every object the list parameters select.
    pub async fn delete_collection(
        &self,
        dp: &DeleteParams,
        lp: &ListParams,
    ) -> Result<Deleted<ObjectList<K>>> {
        let mut q = Query::default();
        lp.populate(&mut q);
        let path = q.to_url(&self.collection_path());
        self.send_delete(&path, dp, &format!("{}List", self.kind()))
            .await
    }

    /// Reads the status subresource.
    pub async fn get_status(&self, name: &str) -> Result<K> {
        let path = self.subresource_path(name, "status")?;
        self.client
            .request(Method::GET, &path, None, self.kind())
            .await
    }

    /// Replaces the status subresource: only `.status` of `obj` is taken.
    pub async fn replace_status(&self, name: &str, pp: &PostParams, obj: &K) -> Result<K> {
        self.put(self.subresource_path(name, "status")?, pp, obj, self.kind())
            .await
    }

    /// Patches the status subresource.
    pub async fn patch_status<P: Serialize>(
        &self,
        name: &str,
        pp: &PatchParams,
        patch: &Patch<P>,
    ) -> Result<K> {
        self.send_patch(self.subresource_path(name, "status")?, pp, patch)
            .await
    }

    /// Reads the scale subresource (autoscaling/v1 `Scale`).
    pub async fn get_scale(&self, name: &str) -> Result<Scale> {
        let path = self.subresource_path(name, "scale")?;
        self.client.request(Method::GET, &path, None, "Scale").await
    }

    /// Replaces the scale subresource.
    pub async fn replace_scale(&self, name: &str, pp: &PostParams, scale: &Scale) -> Result<Scale> {
        self.put(self.subresource_path(name, "scale")?, pp, scale, "Scale")
            .await
    }

    /// POSTs `body` to a subresource such as `binding` (a `Binding` for pods) or
    /// `eviction` (a policy/v1 `Eviction`); `R` is what the server answers, usually a
    /// `Status`.
    pub async fn create_subresource<B: Serialize, R: DeserializeOwned>(
        &self,
        name: &str,
        subresource: &str,
        pp: &PostParams,
        body: &B,
    ) -> Result<R> {
        let mut q = Query::default();
        pp.populate(&mut q);
        let path = q.to_url(&self.subresource_path(name, subresource)?);
        let body = encode(subresource, body)?;
        self.client
            .request(Method::POST, &path, Some(body), subresource)
            .await
    }

    /// Watches from `resource_version` ("" for "now, with ADDED events for what exists").
    /// The outer error is the server refusing the watch (410 when the version is too old);
    /// the stream ends when the server closes the watch (see `timeoutSeconds`).
    pub async fn watch(
        &self,
        wp: &WatchParams,
        resource_version: &str,
    ) -> Result<BoxStream<'static, Result<WatchEvent<K>>>>
    where
        K: Send + 'static,
    {
        let mut q = Query::default();
        wp.populate(&mut q, resource_version);
        let path = q.to_url(&self.collection_path());
        // The server ends the watch after timeoutSeconds; past that plus a margin the
        // connection is presumed dead.
        let timeout = wp
            .timeout_seconds
            .map(|s| Duration::from_secs(u64::from(s) + 30));
        self.client.request_watch(&path, timeout).await
    }

    async fn put<T: Serialize, R: DeserializeOwned>(
        &self,
        path: String,
        pp: &PostParams,
        body: &T,
        what: &str,
    ) -> Result<R> {
        let mut q = Query::default();
        pp.populate(&mut q);
        let path = q.to_url(&path);
        let body = encode(what, body)?;
        self.client
            .request(Method::PUT, &path, Some(body), what)
            .await
    }

    async fn send_patch<P: Serialize>(
        &self,
        path: String,
        pp: &PatchParams,
        patch: &Patch<P>,
    ) -> Result<K> {
        let mut q = Query::default();
        pp.populate(&mut q, patch)?;
        let path = q.to_url(&path);
        let body = RequestBody {
            content_type: patch.content_type(),
            bytes: patch.body()?,
        };
        self.client
            .request(Method::PATCH, &path, Some(body), self.kind())
            .await
    }

    async fn send_delete<R: DeserializeOwned>(
        &self,
        path: &str,
        dp: &DeleteParams,
        what: &str,
    ) -> Result<Deleted<R>> {
        let body = RequestBody::json(dp.body()?);
        let value: serde_json::Value = self
            .client
            .request(Method::DELETE, path, Some(body), what)
            .await?;
        let decode_err = |source| Error::Decode {
            what: format!("{what} from DELETE {path}"),
            source,
        };
        if value.get("kind").and_then(|k| k.as_str()) == Some("Status") {
            serde_json::from_value(value)
                .map(|s| Deleted::Status(Box::new(s)))
                .map_err(decode_err)
        } else {
            serde_json::from_value(value)
                .map(Deleted::Object)
                .map_err(decode_err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use k8s_openapi::api::rbac::v1::ClusterRole;

    fn client() -> Client {
        Client::new("http://127.0.0.1:1").unwrap()
    }

    #[test]
    fn core_namespaced_paths() {
        let pods: Api<Pod> = Api::namespaced(client(), "default");
        assert_eq!(pods.collection_path(), "/api/v1/namespaces/default/pods");
        assert_eq!(
            pods.item_path("web-1").unwrap(),
            "/api/v1/namespaces/default/pods/web-1"
        );
        assert_eq!(
            pods.subresource_path("web-1", "binding").unwrap(),
            "/api/v1/namespaces/default/pods/web-1/binding"
        );
    }

    #[test]
    fn group_and_cluster_paths() {
        let deps: Api<Deployment> = Api::namespaced(client(), "prod");
        assert_eq!(
            deps.subresource_path("web", "scale").unwrap(),
            "/apis/apps/v1/namespaces/prod/deployments/web/scale"
        );
        let leases: Api<Lease> = Api::namespaced(client(), "kube-system");
        assert_eq!(
            leases.item_path("skiff-scheduler").unwrap(),
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/skiff-scheduler"
        );
        let nodes: Api<Node> = Api::cluster(client());
        assert_eq!(nodes.item_path("n1").unwrap(), "/api/v1/nodes/n1");
        let roles: Api<ClusterRole> = Api::all(client());
        assert_eq!(
            roles.item_path("system:node").unwrap(),
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:node"
        );
    }

    #[test]
    fn all_namespaces_lists_but_cannot_address_items() {
        let pods: Api<Pod> = Api::all(client());
        assert_eq!(pods.collection_path(), "/api/v1/pods");
        let e = pods.item_path("web-1").unwrap_err();
        assert!(e.to_string().contains("Api::namespaced"), "{e}");
        assert!(Api::<Pod>::namespaced(client(), "d").item_path("").is_err());
    }

    #[test]
    fn dynamic_resources() {
        let r = ApiResource::new("apps", "v1", "Deployment", "deployments", true);
        assert_eq!(r, ApiResource::erase::<Deployment>());
        let api = Api::dynamic(client(), r, Some("a"));
        assert_eq!(
            api.item_path("x").unwrap(),
            "/apis/apps/v1/namespaces/a/deployments/x"
        );
        let ns = ApiResource::new("", "v1", "Namespace", "namespaces", false);
        assert_eq!(ns.api_version, "v1");
        // A namespace given for a cluster-scoped resource is ignored, not sent.
        assert_eq!(ns.collection_path(Some("a")), "/api/v1/namespaces");
    }
}
