//! Leases: which exist and which keys they hold (replicated), and when they expire
//! (decided by the leader alone, from its own clock).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// The longest TTL a lease may be granted, in seconds (etcd's limit).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// One granted lease.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lease {
    /// The TTL it was granted with, in seconds.
    pub ttl: i64,
    /// The keys attached to it.
    pub keys: BTreeSet<Vec<u8>>,
}

/// The replicated part of leases: every member holds the same.
#[derive(Debug, Clone, Default)]
pub struct Lessor {
    leases: BTreeMap<i64, Lease>,
}

impl Lessor {
    /// Records a granted lease.
    pub fn grant(&mut self, id: i64, ttl: i64) {
        self.leases.entry(id).or_default().ttl = ttl;
    }

    /// Removes a lease, returning the keys it held (to be deleted with it).
    pub fn revoke(&mut self, id: i64) -> Option<Lease> {
        self.leases.remove(&id)
    }

    /// Whether a lease exists.
    pub fn contains(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    /// The lease, if it exists.
    pub fn get(&self, id: i64) -> Option<&Lease> {
        self.leases.get(&id)
    }

    /// Moves a key from one lease to another (0 = none).
    pub fn move_key(&mut self, key: &[u8], from: i64, to: i64) {
        if from != 0 {
            if let Some(l) = self.leases.get_mut(&from) {
                l.keys.remove(key);
            }
        }
        if to != 0 {
            if let Some(l) = self.leases.get_mut(&to) {
                l.keys.insert(key.to_vec());
            }
        }
    }

    /// Every lease ID with its TTL.
    pub fn leases(&self) -> impl Iterator<Item = (i64, &Lease)> {
        self.leases.iter().map(|(id, l)| (*id, l))
    }

    /// Number of leases.
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    /// Whether there are no leases.
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }
}

/// The TTL a grant actually gets: at least the minimum the election timeout allows, so a
/// lease cannot expire during an ordinary leader election.
pub fn effective_ttl(requested: i64, min_ttl: i64) -> i64 {
    requested.max(min_ttl)
}

/// The minimum lease TTL in seconds for a given election timeout (1.5 × election timeout,
/// rounded up, as etcd computes it).
pub fn min_ttl(election_timeout: Duration) -> i64 {
    let ms = election_timeout.as_millis() as i64 * 3 / 2;
    ((ms + 999) / 1000).max(1)
}

/// Expiry deadlines, kept only by the leader. Not replicated: a new leader starts every
/// lease's clock afresh ([`LeaseClock::promote`]), so a leader change never makes leases
/// expire early.
#[derive(Debug, Default)]
pub struct LeaseClock {
    deadlines: HashMap<i64, Instant>,
}

impl LeaseClock {
    /// Starts the clock of every lease at `now` (on becoming leader).
    pub fn promote<'a>(&mut self, now: Instant, leases: impl Iterator<Item = (i64, &'a Lease)>) {
        self.deadlines.clear();
        for (id, l) in leases {
            self.deadlines.insert(id, now + secs(l.ttl));
        }
    }

    /// Forgets every deadline (on losing leadership).
    pub fn demote(&mut self) {
        self.deadlines.clear();
    }

    /// Renews a lease for its full TTL.
    pub fn renew(&mut self, id: i64, ttl: i64, now: Instant) {
        self.deadlines.insert(id, now + secs(ttl));
    }

    /// Forgets a revoked lease.
    pub fn forget(&mut self, id: i64) {
        self.deadlines.remove(&id);
    }

    /// Seconds left before the lease expires (rounded up), if the clock knows it.
    pub fn remaining(&self, id: i64, now: Instant) -> Option<i64> {
        self.deadlines.get(&id).map(|d| {
            let left = d.saturating_duration_since(now);
            left.as_secs() as i64 + i64::from(left.subsec_nanos() > 0)
        })
    }

    /// The leases whose deadline has passed.
    pub fn expired(&self, now: Instant) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .deadlines
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }
}

fn secs(ttl: i64) -> Duration {
    Duration::from_secs(u64::try_from(ttl).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_expire_only_after_their_ttl() {
        let mut lessor = Lessor::default();
        lessor.grant(7, 5);
        let mut clock = LeaseClock::default();
        let t0 = Instant::now();
        clock.promote(t0, lessor.leases());
        assert!(clock.expired(t0 + Duration::from_secs(4)).is_empty());
        assert_eq!(
            clock.remaining(7, t0 + Duration::from_millis(3500)),
            Some(2)
        );
        assert_eq!(clock.expired(t0 + Duration::from_secs(5)), vec![7]);
    }

    #[test]
    fn keep_alive_pushes_the_deadline() {
        let mut clock = LeaseClock::default();
        let t0 = Instant::now();
        clock.renew(1, 3, t0);
        clock.renew(1, 3, t0 + Duration::from_secs(2));
        assert!(clock.expired(t0 + Duration::from_secs(4)).is_empty());
        assert_eq!(clock.expired(t0 + Duration::from_secs(5)), vec![1]);
    }

    #[test]
    fn a_new_leader_restarts_every_clock() {
        let mut lessor = Lessor::default();
        lessor.grant(1, 10);
        let mut clock = LeaseClock::default();
        let t0 = Instant::now();
        clock.promote(t0, lessor.leases());
        clock.demote();
        assert!(clock.expired(t0 + Duration::from_secs(60)).is_empty());
        let t1 = t0 + Duration::from_secs(9);
        clock.promote(t1, lessor.leases());
        assert!(clock.expired(t0 + Duration::from_secs(11)).is_empty());
        assert_eq!(clock.expired(t1 + Duration::from_secs(10)), vec![1]);
    }

    #[test]
    fn keys_follow_their_lease() {
        let mut lessor = Lessor::default();
        lessor.grant(1, 10);
        lessor.grant(2, 10);
        lessor.move_key(b"k", 0, 1);
        lessor.move_key(b"k", 1, 2);
        assert!(lessor.get(1).unwrap().keys.is_empty());
        let revoked = lessor.revoke(2).unwrap();
        assert!(revoked.keys.contains(b"k".as_slice()));
    }

    #[test]
    fn min_ttl_follows_the_election_timeout() {
        assert_eq!(min_ttl(Duration::from_millis(1000)), 2);
        assert_eq!(effective_ttl(1, 2), 2);
        assert_eq!(effective_ttl(60, 2), 60);
    }
}
