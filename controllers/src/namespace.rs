//! The namespace controller: a namespace being deleted (Terminating) is emptied of every
//! namespaced object, then its `kubernetes` finalizer is removed through
//! `namespaces/{name}/finalize`, upon which the API server deletes it.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use serde_json::json;
use skiff_client::controller::{Action, Controller};
use skiff_client::{
    Api, ApiResource, Client, DeleteParams, ListParams, Method, Patch, PatchParams, RequestBody,
    ResourceExt,
};

use crate::Result;

/// The controller's name, as kube-controller-manager's.
pub const NAME: &str = "namespace-controller";

/// The finalizer the namespace controller owns.
pub const FINALIZER: &str = "kubernetes";

/// What the namespace reconcile needs.
#[derive(Clone)]
pub struct Ctx {
    client: Client,
}

/// Builds the controller over all namespaces.
pub fn controller(client: &Client) -> (Controller<Namespace>, Arc<Ctx>) {
    let c = Controller::new(Api::<Namespace>::all(client.clone()), Default::default());
    (
        c,
        Arc::new(Ctx {
            client: client.clone(),
        }),
    )
}

/// Every namespaced resource that can hold objects, in the order to empty them:
/// workloads before the pods they would otherwise recreate.
pub fn namespaced_resources() -> Vec<ApiResource> {
    let mut rts: Vec<&skiff_api::ResourceType> = skiff_api::RESOURCES
        .iter()
        .filter(|r| r.namespaced && r.writable)
        .collect();
    let order = |r: &skiff_api::ResourceType| match r.kind {
        "CronJob" => 0,
        "Deployment" | "StatefulSet" | "DaemonSet" | "Job" => 1,
        "ReplicaSet" => 2,
        "Pod" => 3,
        _ => 4,
    };
    rts.sort_by_key(|r| order(r));
    rts.into_iter()
        .map(|r| ApiResource::new(r.group, r.version, r.kind, r.plural, true))
        .collect()
}

/// One reconcile of one namespace; see the module docs.
pub async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action> {
    if ns.metadata.deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    let finalizers = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default();
    if !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let name = ns.name().to_string();
    let mut remaining = Vec::new();
    for resource in namespaced_resources() {
        let api = Api::dynamic(ctx.client.clone(), resource.clone(), Some(&name));
        let listed = api.list(&ListParams::default()).await?;
        if listed.items.is_empty() {
            continue;
        }
        match api
            .delete_collection(&DeleteParams::background(), &ListParams::default())
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        let left = api.list(&ListParams::default()).await?.items.len();
        if left > 0 {
            remaining.push(format!("{}: {left}", resource.plural));
        }
    }
    let ns_api: Api<Namespace> = Api::all(ctx.client.clone());
    if !remaining.is_empty() {
        // Finalizers or grace periods hold some objects; look again shortly.
        let message = format!("Some resources are remaining: {}", remaining.join(", "));
        tracing::info!(namespace = %name, %message, "namespace not empty yet");
        let condition = json!({
            "type": "NamespaceContentRemaining",
            "status": "True",
            "reason": "SomeResourcesRemain",
            "message": message,
            "lastTransitionTime": jiff::Timestamp::now().to_string(),
        });
        let r = ns_api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"conditions": [condition]}})),
            )
            .await;
        if let Err(e) = r {
            if !e.is_not_found() {
                return Err(e.into());
            }
        }
        return Ok(Action::requeue(Duration::from_secs(2)));
    }

    let mut finalized = (*ns).clone();
    // Only spec.finalizers is taken from the body; a stale resourceVersion would only
    // cost a retry.
    finalized.metadata.resource_version = None;
    if let Some(spec) = finalized.spec.as_mut() {
        spec.finalizers = Some(finalizers.into_iter().filter(|f| f != FINALIZER).collect());
    }
    let body = serde_json::to_vec(&finalized).map_err(|source| skiff_client::Error::Encode {
        what: "Namespace".into(),
        source,
    })?;
    let path = format!("/api/v1/namespaces/{name}/finalize");
    match ctx
        .client
        .request_raw(Method::PUT, &path, Some(RequestBody::json(body)))
        .await
    {
        Ok(_) => {
            tracing::info!(namespace = %name, "namespace emptied and finalized");
            Ok(Action::await_change())
        }
        Err(e) if e.is_not_found() => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_are_emptied_before_pods() {
        let rs = namespaced_resources();
        let at = |k: &str| rs.iter().position(|r| r.kind == k).unwrap();
        assert!(at("Deployment") < at("ReplicaSet"));
        assert!(at("ReplicaSet") < at("Pod"));
        assert!(rs.iter().all(|r| r.kind != "Node" && r.kind != "Namespace"));
        assert!(rs.iter().any(|r| r.kind == "ConfigMap"));
    }
}
