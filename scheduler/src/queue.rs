//! The scheduling queue, after kube-scheduler's: pods ready to try (active, in arrival
//! order), pods waiting out a back-off, and unschedulable pods parked until the cluster
//! changes. Time is passed in, so the queue is pure.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

/// First back-off after a failed attempt (kube-scheduler's podInitialBackoffDuration).
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Longest back-off (podMaxBackoffDuration).
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Unschedulable pods are tried again after this even if nothing changed
/// (podMaxInUnschedulablePodsDuration).
pub const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Active,
    InFlight { move_seq: u64 },
    Backoff(Instant),
    Unschedulable(Instant),
}

#[derive(Clone, Debug)]
struct Entry {
    place: Place,
    attempts: u32,
    last_attempt: Option<Instant>,
}

/// Pending pods by `namespace/name`.
#[derive(Debug, Default)]
pub struct SchedulingQueue {
    active: VecDeque<String>,
    entries: HashMap<String, Entry>,
    move_seq: u64,
}

/// Back-off after `attempts` failed attempts: 1 s, 2 s, 4 s … up to 10 s.
pub fn backoff(attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(16);
    INITIAL_BACKOFF.saturating_mul(1 << exp).min(MAX_BACKOFF)
}

impl SchedulingQueue {
    /// An empty queue.
    pub fn new() -> Self {
        SchedulingQueue::default()
    }

    /// Adds a newly seen pending pod; a pod already queued stays where it is.
    pub fn add(&mut self, key: &str) {
        if self.entries.contains_key(key) {
            return;
        }
        self.entries.insert(
            key.to_string(),
            Entry {
                place: Place::Active,
                attempts: 0,
                last_attempt: None,
            },
        );
        self.active.push_back(key.to_string());
    }

    /// Whether the pod is queued anywhere (or being scheduled).
    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// Every queued pod.
    pub fn keys(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// Removes a pod (bound, deleted, or no longer ours).
    pub fn remove(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// The next pod to try, marked in flight.
    pub fn pop(&mut self, now: Instant) -> Option<String> {
        while let Some(key) = self.active.pop_front() {
            let Some(e) = self.entries.get_mut(&key) else {
                continue;
            };
            if e.place != Place::Active {
                continue;
            }
            e.place = Place::InFlight {
                move_seq: self.move_seq,
            };
            e.last_attempt = Some(now);
            return Some(key);
        }
        None
    }

    /// Pods ready to pop.
    pub fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    /// The in-flight pod fit nowhere: park it until the cluster changes, or back off
    /// if the cluster already changed while it was being tried.
    pub fn unschedulable(&mut self, key: &str, now: Instant) {
        let seq = self.move_seq;
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        e.attempts += 1;
        e.place = match e.place {
            Place::InFlight { move_seq } if move_seq != seq => {
                Place::Backoff(now + backoff(e.attempts))
            }
            _ => Place::Unschedulable(now),
        };
    }

    /// The in-flight pod failed for another reason (its binding failed): retry after a
    /// back-off.
    pub fn retry(&mut self, key: &str, now: Instant) {
        if let Some(e) = self.entries.get_mut(key) {
            e.attempts += 1;
            e.place = Place::Backoff(now + backoff(e.attempts));
        }
    }

    /// The cluster changed (a node appeared or changed, a pod went away): unschedulable
    /// pods go back to active, or to back-off if their last attempt was too recent.
    pub fn move_all(&mut self, now: Instant) {
        self.move_seq += 1;
        for (key, e) in self.entries.iter_mut() {
            if let Place::Unschedulable(_) = e.place {
                let ready = e.last_attempt.unwrap_or(now) + backoff(e.attempts);
                if ready <= now {
                    e.place = Place::Active;
                    self.active.push_back(key.clone());
                } else {
                    e.place = Place::Backoff(ready);
                }
            }
        }
    }

    /// The pod's spec changed: retry it like after a cluster change.
    pub fn updated(&mut self, key: &str, now: Instant) {
        if let Some(e) = self.entries.get_mut(key) {
            if let Place::Unschedulable(_) = e.place {
                e.place = Place::Backoff(e.last_attempt.unwrap_or(now) + backoff(e.attempts));
            }
        }
    }

    /// Moves pods whose back-off ended, and pods unschedulable for too long, to active.
    pub fn flush(&mut self, now: Instant) {
        for (key, e) in self.entries.iter_mut() {
            let ready = match e.place {
                Place::Backoff(at) => at <= now,
                Place::Unschedulable(since) => now.duration_since(since) >= MAX_UNSCHEDULABLE,
                _ => false,
            };
            if ready {
                e.place = Place::Active;
                self.active.push_back(key.clone());
            }
        }
    }

    /// When the next pod leaves back-off or the unschedulable set by time alone.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter_map(|e| match e.place {
                Place::Backoff(at) => Some(at),
                Place::Unschedulable(since) => Some(since + MAX_UNSCHEDULABLE),
                _ => None,
            })
            .min()
    }

    /// Counts of pods (active, backoff, unschedulable, in flight), for metrics.
    pub fn counts(&self) -> [usize; 4] {
        let mut c = [0; 4];
        for e in self.entries.values() {
            let i = match e.place {
                Place::Active => 0,
                Place::Backoff(_) => 1,
                Place::Unschedulable(_) => 2,
                Place::InFlight { .. } => 3,
            };
            c[i] += 1;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_ten_seconds() {
        let b: Vec<u64> = (1..=6).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(b, vec![1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn unschedulable_pods_wait_for_a_cluster_change_then_back_off() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add("ns/a");
        q.add("ns/a");
        assert_eq!(q.pop(t0).as_deref(), Some("ns/a"));
        assert_eq!(q.pop(t0), None);
        q.unschedulable("ns/a", t0);
        q.flush(t0 + Duration::from_secs(60));
        assert!(!q.has_active(), "nothing changed: no retry (no busy loop)");
        // A change right away: the pod still has to wait out its 1 s back-off.
        q.move_all(t0 + Duration::from_millis(10));
        assert!(!q.has_active());
        assert_eq!(q.next_wakeup(), Some(t0 + Duration::from_secs(1)));
        q.flush(t0 + Duration::from_secs(1));
        assert_eq!(q.pop(t0 + Duration::from_secs(1)).as_deref(), Some("ns/a"));
    }

    #[test]
    fn a_change_during_an_attempt_is_not_missed() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add("ns/a");
        q.pop(t0);
        q.move_all(t0); // a node appeared while the pod was being tried
        q.unschedulable("ns/a", t0);
        assert_eq!(q.counts(), [0, 1, 0, 0], "backing off, not parked");
    }

    #[test]
    fn long_unschedulable_pods_are_retried_anyway() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add("ns/a");
        q.pop(t0);
        q.unschedulable("ns/a", t0);
        q.flush(t0 + MAX_UNSCHEDULABLE);
        assert!(q.has_active());
    }
}
