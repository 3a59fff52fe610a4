//! Leader election over a coordination.k8s.io/v1 `Lease`, with client-go's rules.
//!
//! Candidates read the Lease; a free one (absent, or without holder) is taken at once; one
//! held by another candidate is taken only after it has stayed unchanged for its
//! `leaseDurationSeconds`, measured on our own clock from when we first saw that version
//! of it (never by comparing its `renewTime` with our clock, so clock skew between
//! machines does not matter). Every write carries the resourceVersion we read, so of two
//! candidates racing only one wins (the other gets 409 and tries later). The leader
//! renews every `retry_period`; if it cannot renew within `renew_deadline` it stops
//! leading. Identities must be unique per process (e.g. hostname plus a random suffix):
//! a candidate treats a Lease held under its own identity as its own.
//!
//! ```no_run
//! # async fn demo(client: skiff_client::Client) -> skiff_client::Result<()> {
//! use k8s_openapi::api::coordination::v1::Lease;
//! use skiff_client::leader_election::{LeaderElectionConfig, LeaderElector, Outcome};
//! use skiff_client::Api;
//!
//! let leases: Api<Lease> = Api::namespaced(client, "kube-system");
//! let mut elector = LeaderElector::new(leases, "skiff-scheduler", "host-1_4f2a", LeaderElectionConfig::default());
//! let shutdown = async { let _ = tokio::signal::ctrl_c().await; };
//! let outcome = elector.run(shutdown, async { /* schedule pods */ }).await?;
//! if outcome == Outcome::LostLeadership {
//!     std::process::exit(1); // as client-go's users do: start afresh as a follower
//! }
//! # Ok(()) }
//! ```

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use rand::Rng;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::{Api, PostParams, Result};

/// Timing of leader election; the defaults are client-go's and kube-scheduler's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderElectionConfig {
    /// How long a Lease stays valid after its last observed change (15 s).
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up leading (10 s).
    /// Must be shorter than `lease_duration`, so it stops before others may take over.
    pub renew_deadline: Duration,
    /// Time between attempts to acquire or renew (2 s).
    pub retry_period: Duration,
    /// Release the Lease when `run` ends on shutdown or when the leading future finishes,
    /// so another candidate takes over at once rather than after `lease_duration`.
    pub release_on_shutdown: bool,
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        LeaderElectionConfig {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            release_on_shutdown: true,
        }
    }
}

/// What a candidate should do about the Lease it just read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// There is no Lease: create it, holding it.
    Create,
    /// The Lease is free or expired: take it over.
    Acquire,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds it; it could be taken over after this long.
    Wait(Duration),
}

/// Decides from the Lease as read (`None`: absent), how long it has been unchanged on our
/// clock, and our identity. A Lease without `leaseDurationSeconds` uses `default_duration`.
pub fn decide(
    lease: Option<&LeaseSpec>,
    unchanged_for: Duration,
    identity: &str,
    default_duration: Duration,
) -> Decision {
    let Some(spec) = lease else {
        return Decision::Create;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() {
        return Decision::Acquire;
    }
    if holder == identity {
        return Decision::Renew;
    }
    let duration = spec
        .lease_duration_seconds
        .filter(|s| *s > 0)
        .map_or(default_duration, |s| {
            Duration::from_secs(s.unsigned_abs().into())
        });
    if unchanged_for >= duration {
        Decision::Acquire
    } else {
        Decision::Wait(duration - unchanged_for)
    }
}

/// The Lease spec to write for a decision made on `current`, at time `now`; None for
/// [`Decision::Wait`], which writes nothing.
pub fn next_spec(
    current: Option<&LeaseSpec>,
    decision: Decision,
    identity: &str,
    now: jiff::Timestamp,
    duration: Duration,
) -> Option<LeaseSpec> {
    let old = current.cloned().unwrap_or_default();
    let transitions = old.lease_transitions.unwrap_or(0);
    let duration = i32::try_from(duration.as_secs().max(1)).unwrap_or(i32::MAX);
    let now = Some(MicroTime(now));
    Some(match decision {
        Decision::Wait(_) => return None,
        Decision::Renew => LeaseSpec {
            holder_identity: Some(identity.to_string()),
            lease_duration_seconds: Some(duration),
            acquire_time: old.acquire_time.or_else(|| now.clone()),
            renew_time: now,
            lease_transitions: Some(transitions),
            ..old
        },
        Decision::Create | Decision::Acquire => LeaseSpec {
            holder_identity: Some(identity.to_string()),
            lease_duration_seconds: Some(duration),
            acquire_time: now.clone(),
            renew_time: now,
            lease_transitions: Some(if decision == Decision::Create {
                0
            } else {
                transitions.saturating_add(1)
            }),
            ..old
        },
    })
}

/// Why [`LeaderElector::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The shutdown signal came (while leading or not).
    Shutdown,
    /// The leading future finished by itself.
    Finished,
    /// Renewing failed for `renew_deadline`, or another holder took the Lease; the leading
    /// future was dropped. Most daemons exit on this, as client-go's do.
    LostLeadership,
}

/// One candidate for one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    config: LeaderElectionConfig,
    is_leader: watch::Sender<bool>,
    // The Lease as last read or written and when it last changed on our clock.
    observed: Option<(Lease, Instant)>,
}

impl LeaderElector {
    /// A candidate `identity` for the Lease `name` in `api`'s namespace.
    pub fn new(api: Api<Lease>, name: &str, identity: &str, config: LeaderElectionConfig) -> Self {
        LeaderElector {
            api,
            name: name.to_string(),
            identity: identity.to_string(),
            config,
            is_leader: watch::channel(false).0,
            observed: None,
        }
    }

    /// Follows whether this candidate currently leads.
    pub fn is_leader(&self) -> watch::Receiver<bool> {
        self.is_leader.subscribe()
    }

    /// The holder of the Lease as last observed, if any.
    pub fn observed_leader(&self) -> Option<&str> {
        self.observed
            .as_ref()
            .and_then(|(l, _)| l.spec.as_ref())
            .and_then(|s| s.holder_identity.as_deref())
            .filter(|h| !h.is_empty())
    }

    fn observe(&mut self, lease: Lease, now: Instant) {
        let changed = match &self.observed {
            Some((old, _)) => old.spec != lease.spec,
            None => true,
        };
        let at = match &self.observed {
            Some((_, at)) if !changed => *at,
            _ => now,
        };
        self.observed = Some((lease, at));
    }

    /// One attempt: read the Lease and create, take over or renew it when the rules allow.
    /// True when we hold it afterwards; false when someone else does or we lost a race.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool> {
        let now = Instant::now();
        let current = self.api.get_opt(&self.name).await?;
        let spec = current.as_ref().map(|l| l.spec.clone().unwrap_or_default());
        if let Some(lease) = current.clone() {
            self.observe(lease, now);
        }
        let unchanged_for = self
            .observed
            .as_ref()
            .map_or(Duration::ZERO, |(_, at)| now.duration_since(*at));
        let decision = decide(
            spec.as_ref(),
            unchanged_for,
            &self.identity,
            self.config.lease_duration,
        );
        let Some(new_spec) = next_spec(
            spec.as_ref(),
            decision,
            &self.identity,
            jiff::Timestamp::now(),
            self.config.lease_duration,
        ) else {
            return Ok(false);
        };
        let written = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        namespace: self.api.namespace().map(str::to_string),
                        ..ObjectMeta::default()
                    },
                    spec: Some(new_spec),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Some(mut lease) => {
                // The resourceVersion we read makes this write lose any race.
                lease.spec = Some(new_spec);
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match written {
            Ok(lease) => {
                if decision != Decision::Renew {
                    tracing::info!(lease = %self.name, identity = %self.identity, ?decision, "acquired lease");
                }
                self.observe(lease, Instant::now());
                Ok(true)
            }
            Err(e) if e.is_conflict() || e.is_already_exists() => {
                tracing::debug!(lease = %self.name, identity = %self.identity, error = %e, "lost a race for the lease");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    fn jittered_retry(&self) -> Duration {
        // client-go's JitterUntil: retry_period stretched by up to 1.2 times itself.
        self.config
            .retry_period
            .mul_f64(1.0 + rand::thread_rng().gen_range(0.0..1.2))
    }

    /// Waits to become leader, then runs `lead` while renewing the Lease, until
    /// `shutdown` completes, `lead` finishes, or leadership is lost. `lead` is dropped
    /// (cancelled) before the Lease is released; tasks it spawned must watch
    /// [`is_leader`](Self::is_leader) themselves. Errors are only logged: the loop retries.
    pub async fn run<F: Future<Output = ()>>(
        &mut self,
        shutdown: impl Future<Output = ()>,
        lead: F,
    ) -> Result<Outcome> {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(Outcome::Shutdown),
                r = self.try_acquire_or_renew() => match r {
                    Ok(true) => break,
                    Ok(false) => tracing::debug!(
                        lease = %self.name,
                        holder = self.observed_leader().unwrap_or(""),
                        "lease is held by another candidate"
                    ),
                    Err(error) => tracing::warn!(lease = %self.name, %error, "could not read or acquire lease"),
                },
            }
            let wait = self.jittered_retry();
            tokio::select! {
                _ = &mut shutdown => return Ok(Outcome::Shutdown),
                _ = tokio::time::sleep(wait) => {}
            }
        }

        tracing::info!(lease = %self.name, identity = %self.identity, "started leading");
        self.is_leader.send_replace(true);
        let mut lead = Box::pin(lead);
        let outcome = tokio::select! {
            _ = &mut shutdown => Outcome::Shutdown,
            _ = &mut lead => Outcome::Finished,
            _ = self.renew_until_lost() => Outcome::LostLeadership,
        };
        // Stop the leader's work before anyone else can be elected.
        drop(lead);
        self.is_leader.send_replace(false);
        match outcome {
            Outcome::LostLeadership => {
                tracing::warn!(lease = %self.name, identity = %self.identity, "lost leadership")
            }
            _ => {
                tracing::info!(lease = %self.name, identity = %self.identity, ?outcome, "stopped leading");
                if self.config.release_on_shutdown {
                    if let Err(error) = self.release().await {
                        tracing::warn!(lease = %self.name, %error, "could not release lease");
                    }
                }
            }
        }
        Ok(outcome)
    }

    /// Renews every retry period; returns when a renewal round fails for the renew
    /// deadline or the Lease turns out to be someone else's.
    async fn renew_until_lost(&mut self) {
        let (retry, deadline_after) = (self.config.retry_period, self.config.renew_deadline);
        loop {
            tokio::time::sleep(retry).await;
            let deadline = Instant::now() + deadline_after;
            loop {
                let remaining = deadline.saturating_duration_since(Instant::now());
                if remaining.is_zero() {
                    tracing::warn!(lease = %self.name, "could not renew lease within the renew deadline");
                    return;
                }
                match tokio::time::timeout(remaining, self.try_acquire_or_renew()).await {
                    Ok(Ok(true)) => break,
                    // Waiting out the deadline would only delay the inevitable.
                    Ok(Ok(false)) if self.observed_leader().is_some_and(|h| h != self.identity) => {
                        tracing::warn!(
                            lease = %self.name,
                            holder = self.observed_leader().unwrap_or(""),
                            "lease taken by another candidate"
                        );
                        return;
                    }
                    Ok(Ok(false)) => {}
                    Ok(Err(error)) => {
                        tracing::warn!(lease = %self.name, %error, "renewing lease failed")
                    }
                    Err(_) => {
                        tracing::warn!(lease = %self.name, "renewing lease timed out");
                        return;
                    }
                }
                let pause = retry.min(deadline.saturating_duration_since(Instant::now()));
                tokio::time::sleep(pause).await;
            }
        }
    }

    /// Gives the Lease up if we hold it: an empty holder (`""`, as client-go writes it)
    /// and a 1 s duration, so waiting candidates take over at their next try. Reads the
    /// Lease afresh, since a renewal cut short by shutdown may have changed it after our
    /// last observation.
    pub async fn release(&mut self) -> Result<()> {
        // A renewal cancelled by shutdown may still land on the server between our read
        // and our write; its 409 is not a reason to leave the Lease to expire.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let Some(mut lease) = self.api.get_opt(&self.name).await? else {
                return Ok(());
            };
            let Some(spec) = lease.spec.as_mut() else {
                return Ok(());
            };
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(());
            }
            let now = Some(MicroTime(jiff::Timestamp::now()));
            spec.holder_identity = Some(String::new());
            spec.lease_duration_seconds = Some(1);
            spec.acquire_time = now.clone();
            spec.renew_time = now;
            match self
                .api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
            {
                Ok(released) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "released lease");
                    self.observe(released, Instant::now());
                    return Ok(());
                }
                Err(e) if e.is_conflict() && attempts < 3 => {
                    tracing::debug!(lease = %self.name, error = %e, "lease changed while releasing; reading it again");
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(15);

    fn held_by(holder: &str, secs: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(secs),
            lease_transitions: Some(3),
            acquire_time: Some(MicroTime("2025-01-01T00:00:00Z".parse().unwrap())),
            renew_time: Some(MicroTime("2025-01-01T00:00:10Z".parse().unwrap())),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn absent_or_free_leases_are_taken() {
        assert_eq!(decide(None, Duration::ZERO, "me", D), Decision::Create);
        assert_eq!(
            decide(Some(&LeaseSpec::default()), Duration::ZERO, "me", D),
            Decision::Acquire
        );
        assert_eq!(
            decide(Some(&held_by("", 15)), Duration::ZERO, "me", D),
            Decision::Acquire
        );
    }

    #[test]
    fn our_lease_is_renewed() {
        assert_eq!(
            decide(Some(&held_by("me", 15)), Duration::from_secs(60), "me", D),
            Decision::Renew
        );
    }

    #[test]
    fn others_leases_wait_for_their_duration_on_our_clock() {
        let lease = held_by("other", 20);
        assert_eq!(
            decide(Some(&lease), Duration::ZERO, "me", D),
            Decision::Wait(Duration::from_secs(20))
        );
        assert_eq!(
            decide(Some(&lease), Duration::from_secs(15), "me", D),
            Decision::Wait(Duration::from_secs(5)),
            "the Lease's own duration counts, not ours"
        );
        assert_eq!(
            decide(Some(&lease), Duration::from_secs(20), "me", D),
            Decision::Acquire
        );
        let mut no_duration = held_by("other", 0);
        no_duration.lease_duration_seconds = None;
        assert_eq!(
            decide(Some(&no_duration), Duration::from_secs(14), "me", D),
            Decision::Wait(Duration::from_secs(1))
        );
    }

    #[test]
    fn written_specs_follow_client_go() {
        let now: jiff::Timestamp = "2025-01-01T00:01:00Z".parse().unwrap();
        let created = next_spec(None, Decision::Create, "me", now, D).unwrap();
        assert_eq!(created.holder_identity.as_deref(), Some("me"));
        assert_eq!(created.lease_duration_seconds, Some(15));
        assert_eq!(created.lease_transitions, Some(0));
        assert_eq!(created.acquire_time, Some(MicroTime(now)));
        assert_eq!(created.renew_time, Some(MicroTime(now)));

        let old = held_by("other", 15);
        let taken = next_spec(Some(&old), Decision::Acquire, "me", now, D).unwrap();
        assert_eq!(taken.lease_transitions, Some(4));
        assert_eq!(taken.acquire_time, Some(MicroTime(now)));

        let ours = held_by("me", 15);
        let renewed = next_spec(Some(&ours), Decision::Renew, "me", now, D).unwrap();
        assert_eq!(renewed.lease_transitions, Some(3));
        assert_eq!(renewed.acquire_time, ours.acquire_time);
        assert_eq!(renewed.renew_time, Some(MicroTime(now)));

        let wait = Decision::Wait(Duration::from_secs(1));
        assert_eq!(next_spec(Some(&old), wait, "me", now, D), None);
    }
}
