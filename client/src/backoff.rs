//! Exponential back-off with a cap, shared by the watcher, the work queue and leader
//! election.

use std::time::Duration;

use rand::Rng;

/// Delays that double from `initial` up to `max`, with optional random stretch so that
/// many clients failing together don't retry in step.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    jitter: f64,
    failures: u32,
}

impl Backoff {
    /// Starts at `initial` and doubles up to `max`, without jitter.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            jitter: 0.0,
            failures: 0,
        }
    }

    /// Stretches each delay by a random factor in `[1, 1 + fraction)`, capped at `max`.
    pub fn with_jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction.max(0.0);
        self
    }

    /// The delay after `failures` consecutive failures (the first failure is 1).
    pub fn delay_for(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(63);
        let base = self
            .initial
            .checked_mul(1u32.checked_shl(exp.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.max)
            .min(self.max);
        if self.jitter > 0.0 {
            let stretch = rand::thread_rng().gen_range(1.0..1.0 + self.jitter);
            base.mul_f64(stretch).min(self.max)
        } else {
            base
        }
    }

    /// Counts a failure and returns how long to wait before the next try.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.delay_for(self.failures)
    }

    /// Forgets past failures after a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(5), Duration::from_secs(1000));
        let delays: Vec<_> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, vec![5, 10, 20, 40]);
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.next_delay(), Duration::from_secs(1000));
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(5));
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let b = Backoff::new(Duration::from_millis(800), Duration::from_secs(30)).with_jitter(0.5);
        for n in 1..10 {
            let d = b.delay_for(n);
            let base = Duration::from_millis(800 << (n - 1)).min(Duration::from_secs(30));
            assert!(
                d >= base && d <= base.mul_f64(1.5).min(Duration::from_secs(30)),
                "{n}: {d:?}"
            );
        }
    }
}
