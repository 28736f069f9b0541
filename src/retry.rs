//! Backoff schedules: capped exponential growth with full jitter (Brooker, "Exponential
//! Backoff And Jitter"). Pure functions; the caller supplies the random number so that tests
//! are exact.

use std::time::Duration;

/// A capped exponential schedule: attempt `n` (0-based) may wait up to `min(cap, base·2ⁿ)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    pub const fn new(base: Duration, cap: Duration) -> Self {
        Self { base, cap }
    }

    /// The largest wait for retry number `attempt` (0-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.checked_pow(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Full jitter: a uniform pick in `[0, ceiling(attempt)]`; `unit` is a random number in
    /// `[0, 1)` (pass `rand::random()`; tests pass a constant).
    pub fn full_jitter(&self, attempt: u32, unit: f64) -> Duration {
        self.ceiling(attempt).mul_f64(unit.clamp(0.0, 1.0))
    }

    /// The wait before retry `attempt`: the server's hint when it gave one, else full jitter.
    pub fn delay(&self, attempt: u32, hint: Option<Duration>, unit: f64) -> Duration {
        hint.unwrap_or_else(|| self.full_jitter(attempt, unit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn grows_exponentially_then_caps() {
        let b = Backoff::new(ms(100), ms(8000));
        assert_eq!(b.ceiling(0), ms(100));
        assert_eq!(b.ceiling(3), ms(800));
        assert_eq!(b.ceiling(10), ms(8000));
        assert_eq!(b.ceiling(u32::MAX), ms(8000));
    }

    #[test]
    fn jitter_spans_zero_to_ceiling_and_hint_wins() {
        let b = Backoff::new(ms(100), ms(8000));
        assert_eq!(b.full_jitter(2, 0.0), Duration::ZERO);
        assert_eq!(b.full_jitter(2, 0.5), ms(200));
        assert_eq!(b.full_jitter(2, 7.0), ms(400));
        assert_eq!(b.delay(2, Some(ms(3)), 0.5), ms(3));
        assert_eq!(b.delay(2, None, 0.5), ms(200));
    }
}
