//! A work queue of keys with client-go's guarantees: a key waiting in the queue is held
//! once however often it is added; a key being processed is not handed to a second
//! worker, and if it is added meanwhile it is queued again once processing is done;
//! delayed adds and per-key exponential back-off on failure.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::backoff::Backoff;

/// The queue's bookkeeping, without clocks or locks so it can be tested step by step.
#[derive(Debug)]
pub struct QueueState<T> {
    queue: VecDeque<T>,
    // Keys that need processing: those in `queue` plus those re-added while processing.
    dirty: HashSet<T>,
    processing: HashSet<T>,
    // Delayed adds, by key, at the earliest time asked for.
    waiting: HashMap<T, Instant>,
    failures: HashMap<T, u32>,
    backoff: Backoff,
    shut_down: bool,
}

impl<T: Clone + Eq + Hash> QueueState<T> {
    /// An empty queue whose per-key failure delays follow `backoff`.
    pub fn new(backoff: Backoff) -> Self {
        QueueState {
            queue: VecDeque::new(),
            dirty: HashSet::new(),
            processing: HashSet::new(),
            waiting: HashMap::new(),
            failures: HashMap::new(),
            backoff,
            shut_down: false,
        }
    }

    /// Marks `key` as needing processing.
    pub fn add(&mut self, key: T) {
        if self.shut_down || !self.dirty.insert(key.clone()) {
            return;
        }
        // A key being processed goes back in the queue when `done` is called.
        if !self.processing.contains(&key) {
            self.queue.push_back(key);
        }
    }

    /// Adds `key` at `at`; an earlier pending time for the same key wins.
    pub fn add_at(&mut self, key: T, at: Instant) {
        if self.shut_down {
            return;
        }
        let entry = self.waiting.entry(key).or_insert(at);
        if at < *entry {
            *entry = at;
        }
    }

    /// Adds delayed keys that are due by `now`; returns when the next one is due.
    pub fn promote(&mut self, now: Instant) -> Option<Instant> {
        let due: Vec<T> = self
            .waiting
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.waiting.remove(&key);
            self.add(key);
        }
        self.waiting.values().min().copied()
    }

    /// Takes the next key to process, if any is ready.
    pub fn pop(&mut self) -> Option<T> {
        let key = self.queue.pop_front()?;
        self.dirty.remove(&key);
        self.processing.insert(key.clone());
        Some(key)
    }

    /// Ends processing of `key`; if it was added meanwhile it is queued again.
    pub fn done(&mut self, key: &T) {
        self.processing.remove(key);
        if self.dirty.contains(key) {
            self.queue.push_back(key.clone());
        }
    }

    /// Counts a failure of `key` and returns its back-off delay.
    pub fn failure_delay(&mut self, key: &T) -> Duration {
        let n = self.failures.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        self.backoff.delay_for(*n)
    }

    /// Forgets `key`'s failures after a success.
    pub fn forget(&mut self, key: &T) {
        self.failures.remove(key);
    }

    /// How many times in a row `key` has failed.
    pub fn failures(&self, key: &T) -> u32 {
        self.failures.get(key).copied().unwrap_or(0)
    }

    /// Keys ready to be processed.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no key is ready.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Stops accepting keys; `pop` still drains, but workers stop asking.
    pub fn shut_down(&mut self) {
        self.shut_down = true;
    }

    /// Whether `shut_down` was called.
    pub fn is_shut_down(&self) -> bool {
        self.shut_down
    }
}

/// The shared, async work queue; cheap to clone.
pub struct WorkQueue<T> {
    inner: Arc<Shared<T>>,
}

struct Shared<T> {
    state: Mutex<QueueState<T>>,
    changed: Notify,
}

impl<T> Clone for WorkQueue<T> {
    fn clone(&self) -> Self {
        WorkQueue {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Clone + Eq + Hash> WorkQueue<T> {
    /// An empty queue; failed keys wait according to `backoff`.
    pub fn new(backoff: Backoff) -> Self {
        WorkQueue {
            inner: Arc::new(Shared {
                state: Mutex::new(QueueState::new(backoff)),
                changed: Notify::new(),
            }),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut QueueState<T>) -> R) -> R {
        // Every mutation leaves the state consistent, so a poisoned lock is still usable.
        let mut state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        let r = f(&mut state);
        drop(state);
        // Waiters re-check the state and recompute their next deadline.
        self.inner.changed.notify_waiters();
        r
    }

    /// Marks `key` as needing processing.
    pub fn add(&self, key: T) {
        self.with(|s| s.add(key));
    }

    /// Adds `key` after `delay`.
    pub fn add_after(&self, key: T, delay: Duration) {
        let at = Instant::now() + delay;
        self.with(|s| s.add_at(key, at));
    }

    /// Adds `key` after its back-off delay and returns that delay.
    pub fn add_rate_limited(&self, key: T) -> Duration {
        let now = Instant::now();
        self.with(|s| {
            let delay = s.failure_delay(&key);
            s.add_at(key, now + delay);
            delay
        })
    }

    /// Forgets `key`'s failures.
    pub fn forget(&self, key: &T) {
        self.with(|s| s.forget(key));
    }

    /// Ends processing of `key`.
    pub fn done(&self, key: &T) {
        self.with(|s| s.done(key));
    }

    /// Keys ready to be processed.
    pub fn len(&self) -> usize {
        self.with(|s| s.len())
    }

    /// Whether no key is ready.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes every `next` return None.
    pub fn shut_down(&self) {
        self.with(|s| s.shut_down());
    }

    /// Waits for a key to process; None once the queue is shut down.
    pub async fn next(&self) -> Option<T> {
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            // Registered before looking, so a change made right after cannot be missed.
            changed.as_mut().enable();
            let deadline = {
                let mut s = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
                if s.is_shut_down() {
                    return None;
                }
                let deadline = s.promote(Instant::now());
                if let Some(key) = s.pop() {
                    return Some(key);
                }
                deadline
            };
            match deadline {
                Some(at) => {
                    tokio::select! {
                        _ = &mut changed => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> QueueState<&'static str> {
        QueueState::new(Backoff::new(
            Duration::from_millis(5),
            Duration::from_secs(1000),
        ))
    }

    #[test]
    fn a_key_added_twice_while_waiting_is_processed_once() {
        let mut q = state();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop(), Some("a"));
        assert_eq!(q.pop(), Some("b"));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn a_key_being_processed_is_not_handed_out_again_until_done() {
        let mut q = state();
        q.add("a");
        assert_eq!(q.pop(), Some("a"));
        q.add("a");
        q.add("a");
        assert_eq!(q.pop(), None, "no second worker gets a key in process");
        q.done(&"a");
        assert_eq!(
            q.pop(),
            Some("a"),
            "re-added while processing: processed again once"
        );
        q.done(&"a");
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn delayed_adds_keep_the_earliest_time() {
        let mut q = state();
        let t0 = Instant::now();
        q.add_at("a", t0 + Duration::from_secs(10));
        q.add_at("a", t0 + Duration::from_secs(5));
        q.add_at("a", t0 + Duration::from_secs(7));
        q.add_at("b", t0 + Duration::from_secs(8));
        assert_eq!(q.promote(t0), Some(t0 + Duration::from_secs(5)));
        assert_eq!(q.pop(), None);
        assert_eq!(
            q.promote(t0 + Duration::from_secs(5)),
            Some(t0 + Duration::from_secs(8))
        );
        assert_eq!(q.pop(), Some("a"));
        assert_eq!(q.promote(t0 + Duration::from_secs(9)), None);
        assert_eq!(q.pop(), Some("b"));
    }

    #[test]
    fn failures_back_off_per_key_until_forgotten() {
        let mut q = state();
        let delays: Vec<u128> = (0..4).map(|_| q.failure_delay(&"a").as_millis()).collect();
        assert_eq!(delays, vec![5, 10, 20, 40]);
        assert_eq!(
            q.failure_delay(&"b"),
            Duration::from_millis(5),
            "keys back off independently"
        );
        for _ in 0..40 {
            q.failure_delay(&"a");
        }
        assert_eq!(q.failure_delay(&"a"), Duration::from_secs(1000));
        q.forget(&"a");
        assert_eq!(q.failures(&"a"), 0);
        assert_eq!(q.failure_delay(&"a"), Duration::from_millis(5));
    }

    #[test]
    fn shut_down_refuses_new_keys() {
        let mut q = state();
        q.shut_down();
        q.add("a");
        assert_eq!(q.pop(), None);
    }

    #[tokio::test]
    async fn next_wakes_for_adds_and_due_delays() {
        let q = WorkQueue::new(Backoff::new(
            Duration::from_millis(5),
            Duration::from_secs(1),
        ));
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.next().await }
        });
        tokio::task::yield_now().await;
        q.add("a");
        assert_eq!(waiter.await.unwrap(), Some("a"));

        q.add_after("b", Duration::from_millis(30));
        let started = std::time::Instant::now();
        assert_eq!(q.next().await, Some("b"));
        assert!(started.elapsed() >= Duration::from_millis(25));

        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.next().await }
        });
        tokio::task::yield_now().await;
        q.shut_down();
        assert_eq!(waiter.await.unwrap(), None);
    }
}
