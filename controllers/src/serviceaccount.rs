//! The ServiceAccount controller: every namespace that is not being deleted has a
//! ServiceAccount named `default`, created when missing (also when someone deletes it).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use skiff_client::controller::{Action, Controller};
use skiff_client::{reflector, watcher, Api, Client, ObjectRef, PostParams, ResourceExt, Store};

use crate::Result;

/// The controller's name, as kube-controller-manager's.
pub const NAME: &str = "serviceaccount-controller";

/// The ServiceAccount each namespace gets.
pub const DEFAULT: &str = "default";

/// What the reconcile needs.
pub struct Ctx {
    client: Client,
    accounts: Store<ServiceAccount>,
}

/// Builds the controller over Namespaces, woken also when a `default` ServiceAccount
/// changes or goes.
pub fn controller(client: &Client) -> (Controller<Namespace>, Arc<Ctx>) {
    let (accounts, writer) = reflector::store();
    let events = reflector::reflector(
        writer,
        watcher::watcher(
            Api::<ServiceAccount>::all(client.clone()),
            watcher::Config::default(),
        ),
    );
    let c = Controller::new(Api::<Namespace>::all(client.clone()), Default::default())
        .watches_stream(events, |sa: &ServiceAccount| match sa.namespace() {
            Some(ns) if sa.name() == DEFAULT => vec![ObjectRef::new(None, ns)],
            _ => Vec::new(),
        });
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        accounts,
    });
    (c, ctx)
}

/// One reconcile of one namespace.
pub async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action> {
    let terminating = ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    if terminating || ctx.accounts.get(Some(ns.name()), DEFAULT).is_some() {
        return Ok(Action::await_change());
    }
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), ns.name());
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT.into()),
            namespace: Some(ns.name().to_string()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    match api.create(&PostParams::default(), &sa).await {
        Ok(_) => {
            tracing::info!(namespace = %ns.name(), "created the default ServiceAccount");
            Ok(Action::await_change())
        }
        // Already there (the cache lags), or the namespace began terminating.
        Err(e) if e.is_already_exists() || e.is_not_found() || e.code() == Some(403) => {
            Ok(Action::await_change())
        }
        Err(e) => Err(e.into()),
    }
}
