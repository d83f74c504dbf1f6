//! How long to wait before the next connection attempt: exponential backoff with jitter.
//!
//! The n-th consecutive failure waits a random time in `[d/2, d]` where `d = base * 2^n`, capped
//! at `max`: a link that keeps failing tries less and less often, and the authorizers of a bank
//! that lost the network together do not all dial back at the same instant. The randomness is a
//! seeded xorshift: deterministic in tests, seeded from the clock and the address in the daemon.
//!
//! Must never: wait longer than `max`, or zero when `base` is not zero (no busy loop of dials).

use std::time::Duration;

/// Exponential backoff with jitter. [`Backoff::reset`] after a success.
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
    rng: u64,
}

impl Backoff {
    /// Waits from about `base` up to `max`; `seed` drives the jitter (any value, 0 included).
    pub fn new(base: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff {
            base,
            max: max.max(base),
            failures: 0,
            // xorshift must not start at 0.
            rng: seed | 1,
        }
    }

    /// The wait after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let shift = self.failures.min(20);
        self.failures = self.failures.saturating_add(1);
        let ceiling = self
            .base
            .checked_mul(1u32 << shift)
            .unwrap_or(self.max)
            .min(self.max);
        let ceiling_ns = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        let half = ceiling_ns / 2;
        let jitter = if half == 0 {
            0
        } else {
            self.next_random() % (half + 1)
        };
        Duration::from_nanos(ceiling_ns - half + jitter)
    }

    /// Back to the first, shortest wait (after a successful sign-on).
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Consecutive failures counted since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64 (Marsaglia): plenty for spreading reconnections.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_within_half_to_full_and_stop_at_max() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(10);
        let mut b = Backoff::new(base, max, 42);
        for n in 0..30u32 {
            let d = b.next_delay();
            let ceiling = base.saturating_mul(1 << n.min(20)).min(max);
            assert!(d <= ceiling, "failure {n}: {d:?} over {ceiling:?}");
            assert!(
                d >= ceiling / 2,
                "failure {n}: {d:?} under half of {ceiling:?}"
            );
        }
        b.reset();
        assert!(b.next_delay() <= base);
    }

    #[test]
    fn two_seeds_spread_their_retries() {
        let mut a = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), 1);
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), 2);
        let da: Vec<_> = (0..8).map(|_| a.next_delay()).collect();
        let db: Vec<_> = (0..8).map(|_| b.next_delay()).collect();
        assert_ne!(da, db);
    }
}
