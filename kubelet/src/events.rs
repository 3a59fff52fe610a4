//! Events about pods (Pulling, Pulled, Created, Started, Killing, BackOff, Unhealthy,
//! Failed), written to the pod's namespace as the kubelet writes them. A repeated
//! event (same pod, reason and message) raises the count of the first one instead of
//! making a new object. Recording never blocks a pod worker: a lost Event is logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use skiff_client::{Api, Client, Patch, PatchParams, PostParams};

/// The pod an Event is about.
#[derive(Clone, Debug)]
pub struct PodRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// uid.
    pub uid: String,
}

/// (pod uid, reason, message) → (Event name, count) of the Events already made.
type Seen = HashMap<(String, String, String), (String, i32)>;

/// Records Events as the kubelet of one node.
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    node: String,
    seen: Arc<Mutex<Seen>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("node", &self.node)
            .finish()
    }
}

/// The fieldPath of a container in an Event's involvedObject.
pub fn field_path(container: &str, init: bool) -> String {
    if init {
        format!("spec.initContainers{{{container}}}")
    } else {
        format!("spec.containers{{{container}}}")
    }
}

impl Recorder {
    /// A recorder reporting as the kubelet on `node`.
    pub fn new(client: Client, node: String) -> Recorder {
        Recorder {
            client,
            node,
            seen: Arc::default(),
        }
    }

    /// Records a Normal Event.
    pub fn normal(&self, pod: &PodRef, field: Option<String>, reason: &str, message: String) {
        self.record(pod, field, "Normal", reason, message);
    }

    /// Records a Warning Event.
    pub fn warning(&self, pod: &PodRef, field: Option<String>, reason: &str, message: String) {
        self.record(pod, field, "Warning", reason, message);
    }

    /// Forgets the counts kept for a pod that is gone.
    pub fn forget(&self, uid: &str) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| k.0 != uid);
    }

    fn record(
        &self,
        pod: &PodRef,
        field: Option<String>,
        type_: &str,
        reason: &str,
        message: String,
    ) {
        let now = jiff::Timestamp::now();
        let key = (pod.uid.clone(), reason.to_string(), message.clone());
        let repeat = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            match seen.get_mut(&key) {
                Some((name, count)) => {
                    *count += 1;
                    Some((name.clone(), *count))
                }
                None => {
                    let name = format!("{}.{:x}", pod.name, now.as_nanosecond());
                    seen.insert(key, (name, 1));
                    None
                }
            }
        };
        let events: Api<Event> = Api::namespaced(self.client.clone(), &pod.namespace);
        let (pod, reason, type_, node) = (
            pod.clone(),
            reason.to_string(),
            type_.to_string(),
            self.node.clone(),
        );
        let name = {
            let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.get(&(pod.uid.clone(), reason.clone(), message.clone()))
                .map(|(n, _)| n.clone())
                .unwrap_or_default()
        };
        tokio::spawn(async move {
            let result = match repeat {
                Some((name, count)) => {
                    let patch = serde_json::json!({"count": count, "lastTimestamp": Time(now)});
                    events
                        .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                        .await
                        .map(|_| ())
                }
                None => {
                    let event = Event {
                        metadata: ObjectMeta {
                            name: Some(name),
                            namespace: Some(pod.namespace.clone()),
                            ..Default::default()
                        },
                        involved_object: ObjectReference {
                            api_version: Some("v1".into()),
                            kind: Some("Pod".into()),
                            name: Some(pod.name.clone()),
                            namespace: Some(pod.namespace.clone()),
                            uid: Some(pod.uid.clone()),
                            field_path: field,
                            ..Default::default()
                        },
                        reason: Some(reason.clone()),
                        message: Some(message),
                        type_: Some(type_),
                        source: Some(EventSource {
                            component: Some("kubelet".into()),
                            host: Some(node.clone()),
                        }),
                        reporting_component: Some("kubelet".into()),
                        reporting_instance: Some(node),
                        first_timestamp: Some(Time(now)),
                        last_timestamp: Some(Time(now)),
                        count: Some(1),
                        ..Default::default()
                    };
                    events
                        .create(&PostParams::default(), &event)
                        .await
                        .map(|_| ())
                }
            };
            if let Err(e) = result {
                tracing::warn!(pod = %format!("{}/{}", pod.namespace, pod.name), reason = %reason, error = %e, "recording an event failed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_name_the_container() {
        assert_eq!(field_path("main", false), "spec.containers{main}");
        assert_eq!(field_path("setup", true), "spec.initContainers{setup}");
    }
}
