//! Expectations, as Kubernetes' ControllerExpectations: after a controller creates or
//! deletes children, its cache lags behind; until the cache has caught up with what was
//! done, a reconcile must not count children again, or it would create (or delete)
//! them twice.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use skiff_client::ObjectRef;

/// Kubernetes lets expectations expire after five minutes, in case a watch event was
/// lost for good.
pub const EXPECTATION_TTL: Duration = Duration::from_secs(300);

#[derive(Default)]
struct Pending {
    // Names of children created but not yet seen in the cache.
    adds: HashSet<String>,
    // UIDs of children deleted but still in the cache (without deletionTimestamp).
    deletes: HashSet<String>,
    since: Option<Instant>,
}

/// Pending creations and deletions per parent key.
#[derive(Default)]
pub struct Expectations {
    pending: Mutex<HashMap<ObjectRef, Pending>>,
}

/// How a child looks in the cache now, for [`Expectations::satisfied`].
pub enum Seen {
    /// Not in the cache.
    Absent,
    /// In the cache with this UID; `deleting` when it has a deletionTimestamp.
    Present {
        /// Its UID.
        uid: String,
        /// Whether it is being deleted.
        deleting: bool,
    },
}

impl Expectations {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<ObjectRef, Pending>) -> R) -> R {
        f(&mut self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Notes that `name` was created for `parent`.
    pub fn expect_add(&self, parent: &ObjectRef, name: &str) {
        self.with(|p| {
            let e = p.entry(parent.clone()).or_default();
            e.since.get_or_insert_with(Instant::now);
            e.adds.insert(name.to_string());
        });
    }

    /// Notes that the child with `uid` was deleted for `parent`.
    pub fn expect_delete(&self, parent: &ObjectRef, uid: &str) {
        self.with(|p| {
            let e = p.entry(parent.clone()).or_default();
            e.since.get_or_insert_with(Instant::now);
            e.deletes.insert(uid.to_string());
        });
    }

    /// Whether the cache has caught up with everything done for `parent`. `by_name`
    /// looks a child up by name, `by_uid` tells whether a UID is still cached and
    /// live.
    pub fn satisfied(
        &self,
        parent: &ObjectRef,
        by_name: impl Fn(&str) -> Seen,
        uid_live: impl Fn(&str) -> bool,
    ) -> bool {
        self.with(|p| {
            let Some(e) = p.get_mut(parent) else {
                return true;
            };
            e.adds.retain(|name| matches!(by_name(name), Seen::Absent));
            e.deletes.retain(|uid| uid_live(uid));
            let expired = e.since.is_some_and(|s| s.elapsed() > EXPECTATION_TTL);
            if (e.adds.is_empty() && e.deletes.is_empty()) || expired {
                if expired {
                    tracing::warn!(%parent, "expectations expired; the cache may have missed events");
                }
                p.remove(parent);
                true
            } else {
                false
            }
        })
    }

    /// Forgets `parent` (it was deleted).
    pub fn forget(&self, parent: &ObjectRef) {
        self.with(|p| {
            p.remove(parent);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn satisfied_once_the_cache_shows_adds_and_deletes() {
        let e = Expectations::default();
        let rs = ObjectRef::new(Some("ns"), "rs");
        assert!(e.satisfied(&rs, |_| Seen::Absent, |_| false));
        e.expect_add(&rs, "rs-a");
        e.expect_delete(&rs, "uid-b");
        assert!(!e.satisfied(&rs, |_| Seen::Absent, |_| true));
        let seen_a = |n: &str| {
            if n == "rs-a" {
                Seen::Present {
                    uid: "uid-a".into(),
                    deleting: false,
                }
            } else {
                Seen::Absent
            }
        };
        assert!(!e.satisfied(&rs, seen_a, |_| true), "b still live");
        assert!(e.satisfied(&rs, seen_a, |_| false));
        assert!(e.satisfied(&rs, |_| Seen::Absent, |_| true), "cleared");
    }
}
