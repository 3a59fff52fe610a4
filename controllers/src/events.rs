//! Events: what controllers did, as core/v1 Events so that `kubectl describe` and
//! `kubectl get events` tell the story.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// Events one recorder has on the wire at once; more wait. A 1,000-pod scale-up must
/// not become 1,000 concurrent requests (and their connections and buffers).
const MAX_IN_FLIGHT: usize = 16;

/// Records Events for one component (e.g. `replicaset-controller`).
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: &'static str,
    in_flight: Arc<tokio::sync::Semaphore>,
    spam: Arc<Mutex<SpamFilter>>,
}

/// client-go's `EventSourceObjectSpamFilter`: for each (source, involved object) a
/// token bucket of 25 Events, refilled by one every 5 minutes; Events beyond it are
/// dropped, so a ReplicaSet scaled to 1,000 records 25 SuccessfulCreate Events, as
/// with Kubernetes.
#[derive(Debug, Default)]
pub struct SpamFilter {
    buckets: HashMap<String, (f64, Instant)>,
}

impl SpamFilter {
    /// Burst per object.
    pub const BURST: f64 = 25.0;
    /// One token back per this long.
    pub const REFILL: Duration = Duration::from_secs(300);
    /// Objects remembered (client-go keeps an LRU of 4,096).
    const CAPACITY: usize = 4096;

    /// Whether one more Event for `key` may be written at `now`; takes a token if so.
    pub fn allow(&mut self, key: &str, now: Instant) -> bool {
        let refill = |(tokens, last): (f64, Instant)| {
            let earned =
                now.saturating_duration_since(last).as_secs_f64() / Self::REFILL.as_secs_f64();
            (tokens + earned).min(Self::BURST)
        };
        if self.buckets.len() >= Self::CAPACITY && !self.buckets.contains_key(key) {
            // Full buckets carry no memory worth keeping.
            self.buckets.retain(|_, b| refill(*b) < Self::BURST);
            if self.buckets.len() >= Self::CAPACITY {
                return true;
            }
        }
        let bucket = self
            .buckets
            .entry(key.to_string())
            .or_insert((Self::BURST, now));
        let tokens = refill(*bucket);
        if tokens < 1.0 {
            *bucket = (tokens, now);
            return false;
        }
        *bucket = (tokens - 1.0, now);
        true
    }
}

/// client-go's spam key: the source and the involved object.
fn spam_key(event: &Event) -> String {
    let o = &event.involved_object;
    let component = event
        .source
        .as_ref()
        .and_then(|s| s.component.as_deref())
        .unwrap_or("");
    format!(
        "{component}/{}/{}/{}/{}/{}",
        o.kind.as_deref().unwrap_or(""),
        o.namespace.as_deref().unwrap_or(""),
        o.name.as_deref().unwrap_or(""),
        o.uid.as_deref().unwrap_or(""),
        o.api_version.as_deref().unwrap_or("")
    )
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
        Recorder {
            client,
            component,
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
            spam: Arc::new(Mutex::new(SpamFilter::default())),
        }
    }

    /// Records an Event about `obj` in the background: an Event that cannot be written
    /// is logged, never a reason to fail a reconcile; one past the spam filter is
    /// dropped.
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
        let allowed = match self.spam.lock() {
            Ok(mut spam) => spam.allow(&spam_key(&event), Instant::now()),
            Err(_) => true,
        };
        if !allowed {
            tracing::debug!(%reason, "event dropped by the spam filter");
            return;
        }
        let ns = event.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let reason = reason.to_string();
        let in_flight = self.in_flight.clone();
        tokio::spawn(async move {
            let Ok(_permit) = in_flight.acquire_owned().await else {
                return;
            };
            if let Err(error) = api.create(&PostParams::default(), &event).await {
                tracing::debug!(%error, %reason, "could not record event");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spam_filter_allows_a_burst_of_25_per_object_then_one_per_five_minutes() {
        let mut f = SpamFilter::default();
        let t0 = Instant::now();
        for i in 0..25 {
            assert!(f.allow("rs/a", t0), "event {i}");
        }
        assert!(!f.allow("rs/a", t0));
        assert!(f.allow("rs/b", t0), "another object has its own bucket");
        assert!(!f.allow("rs/a", t0 + Duration::from_secs(299)));
        assert!(f.allow("rs/a", t0 + Duration::from_secs(301)));
        assert!(!f.allow("rs/a", t0 + Duration::from_secs(302)));
    }
}
