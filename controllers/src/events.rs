//! Events: what controllers did, as core/v1 Events so that `kubectl describe` and
//! `kubectl get events` tell the story.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::{Metadata, Resource};
use skiff_client::{Api, Client, PostParams, ResourceExt};

/// `Normal` or `Warning`, as Kubernetes' event types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something went wrong.
    Warning,
}

/// Records Events for one component (e.g. `replicaset-controller`).
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: &'static str,
}

/// A reference to the object an Event is about.
pub fn object_reference<K: Resource + Metadata<Ty = ObjectMeta>>(obj: &K) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::API_VERSION.to_string()),
        kind: Some(K::KIND.to_string()),
        name: Some(obj.name().to_string()),
        namespace: obj.namespace().map(str::to_string),
        uid: obj.uid().map(str::to_string),
        resource_version: obj.resource_version().map(str::to_string),
        ..ObjectReference::default()
    }
}

/// The Event for `regarding`, named as client-go names them (`<object>.<hex nanos>`).
pub fn build_event(
    regarding: ObjectReference,
    component: &str,
    type_: EventType,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
) -> Event {
    let name = format!(
        "{}.{:x}",
        regarding.name.as_deref().unwrap_or("unknown"),
        now.as_nanosecond()
    );
    let namespace = regarding
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_string());
    Event {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace),
            ..ObjectMeta::default()
        },
        involved_object: regarding,
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        type_: Some(
            match type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .to_string(),
        ),
        source: Some(EventSource {
            component: Some(component.to_string()),
            host: None,
        }),
        reporting_component: Some(component.to_string()),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        ..Event::default()
    }
}

impl Recorder {
    /// A recorder writing as `component`.
    pub fn new(client: Client, component: &'static str) -> Self {
        Recorder { client, component }
    }

    /// Records an Event about `obj` in the background: an Event that cannot be written
    /// is logged, never a reason to fail a reconcile.
    pub fn publish<K: Resource + Metadata<Ty = ObjectMeta>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        message: &str,
    ) {
        let event = build_event(
            object_reference(obj),
            self.component,
            type_,
            reason,
            message,
            jiff::Timestamp::now(),
        );
        let ns = event.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let reason = reason.to_string();
        tokio::spawn(async move {
            if let Err(error) = api.create(&PostParams::default(), &event).await {
                tracing::debug!(%error, %reason, "could not record event");
            }
        });
    }
}
