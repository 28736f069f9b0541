//! A continuously refilled token bucket with reservations (pure; the caller passes `now`).
//!
//! Capacity is one minute's worth, so an initial burst is allowed, then requests are paced at
//! the refill rate. A reservation may drive the level below zero: the caller then waits until
//! the refill has paid the debt, which queues concurrent callers in order without a loop.

use std::time::Duration;

use tokio::time::Instant;

/// A bucket of `capacity` units refilling at `per_sec` units a second.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    capacity: f64,
    per_sec: f64,
    level: f64,
    /// The level is as of this instant; it may lie in the future after [`Bucket::empty_at`].
    updated: Instant,
}

impl Bucket {
    /// A full bucket holding `per_minute` units, refilling `per_minute · headroom` a minute.
    pub fn per_minute(per_minute: f64, headroom: f64, now: Instant) -> Self {
        let capacity = per_minute.max(1.0);
        Self {
            capacity,
            per_sec: capacity * headroom / 60.0,
            level: capacity,
            updated: now,
        }
    }

    /// An empty bucket (as the server's is right after it refused us).
    pub fn empty_per_minute(per_minute: f64, headroom: f64, now: Instant) -> Self {
        Self {
            level: 0.0,
            ..Self::per_minute(per_minute, headroom, now)
        }
    }

    pub fn capacity(&self) -> f64 {
        self.capacity
    }

    /// Units a minute the bucket currently refills.
    pub fn rate_per_minute(&self) -> f64 {
        self.per_sec * 60.0
    }

    /// The level at `now` (negative while reservations are outstanding).
    pub fn level(&self, now: Instant) -> f64 {
        if now <= self.updated {
            return self.level;
        }
        let secs = (now - self.updated).as_secs_f64();
        (self.level + secs * self.per_sec).min(self.capacity)
    }

    fn refill(&mut self, now: Instant) {
        if now > self.updated {
            self.level = self.level(now);
            self.updated = now;
        }
    }

    /// Takes `cost` units and returns when the caller may go: now if the bucket can pay, else
    /// once the refill has paid for it. A cost above capacity is charged as a full bucket (it
    /// could never be paid otherwise; the provider will say whether it fits).
    pub fn reserve(&mut self, cost: f64, now: Instant) -> Instant {
        self.refill(now);
        let cost = cost.min(self.capacity);
        let start = self.updated.max(now);
        let wait = if self.level >= cost {
            0.0
        } else {
            (cost - self.level) / self.per_sec
        };
        self.level -= cost;
        // A starved bucket (a learned rate near zero) must not overflow the clock.
        start + crate::http::clamped_secs(wait)
    }

    /// Adds (or with a negative `delta`, takes) units, e.g. correcting an estimate from usage.
    pub fn adjust(&mut self, delta: f64, now: Instant) {
        self.refill(now);
        self.level = (self.level + delta).min(self.capacity);
    }

    /// The server reported `remaining` units left; `outstanding` of ours were sent after the
    /// request that carried the report or are reserved and still to be sent.
    pub fn set_remaining(&mut self, remaining: f64, outstanding: f64, now: Instant) {
        self.refill(now);
        self.level = (remaining - outstanding).min(self.capacity);
    }

    /// The server says the bucket holds `limit` and is full again after `reset`: adopt that
    /// capacity and, when it can be derived, that refill rate (times `headroom`).
    pub fn set_shape(
        &mut self,
        limit: f64,
        remaining: f64,
        reset: Option<Duration>,
        headroom: f64,
        now: Instant,
    ) {
        self.refill(now);
        self.capacity = limit.max(1.0);
        if let Some(reset) = reset.filter(|r| !r.is_zero()) {
            if limit > remaining {
                self.per_sec = (limit - remaining) / reset.as_secs_f64() * headroom;
            }
        }
    }

    /// Changes the refill rate (learning), keeping the level.
    pub fn set_rate_per_minute(&mut self, per_minute: f64, now: Instant) {
        self.refill(now);
        self.per_sec = per_minute.max(0.1) / 60.0;
        self.capacity = self.capacity.max(1.0);
    }

    /// The server's bucket is empty and stays closed until `at`: drop every outstanding
    /// reservation (their holders reserve again) and start refilling at `at`.
    pub fn empty_at(&mut self, at: Instant, now: Instant) {
        self.refill(now);
        self.level = 0.0;
        self.updated = at.max(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: f64) -> Duration {
        Duration::from_secs_f64(n)
    }

    #[test]
    fn burst_of_capacity_then_paced_at_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::per_minute(60.0, 1.0, t0);
        for _ in 0..60 {
            assert_eq!(b.reserve(1.0, t0), t0);
        }
        assert_eq!(b.reserve(1.0, t0), t0 + secs(1.0));
        assert_eq!(b.reserve(1.0, t0), t0 + secs(2.0));
        // Time passing pays the debt; the next slot is after the queued ones.
        assert_eq!(b.reserve(1.0, t0 + secs(1.5)), t0 + secs(3.0));
    }

    #[test]
    fn headroom_slows_refill_and_oversized_cost_waits_for_full_bucket() {
        let t0 = Instant::now();
        let mut b = Bucket::per_minute(60.0, 0.5, t0);
        assert_eq!(b.reserve(60.0, t0), t0);
        assert_eq!(b.reserve(1.0, t0), t0 + secs(2.0));
        let mut b = Bucket::per_minute(100.0, 1.0, t0);
        b.reserve(100.0, t0);
        assert_eq!(b.reserve(500.0, t0), t0 + secs(60.0));
    }

    #[test]
    fn adjust_and_server_report_override_the_level() {
        let t0 = Instant::now();
        let mut b = Bucket::per_minute(60.0, 1.0, t0);
        b.adjust(-30.0, t0);
        assert_eq!(b.level(t0), 30.0);
        b.adjust(1000.0, t0);
        assert_eq!(b.level(t0), 60.0);
        b.set_remaining(5.0, 2.0, t0);
        assert_eq!(b.level(t0), 3.0);
        b.set_shape(120.0, 60.0, Some(secs(30.0)), 1.0, t0);
        assert_eq!(b.rate_per_minute(), 120.0);
        assert_eq!(b.capacity(), 120.0);
    }

    #[test]
    fn empty_at_starts_refilling_only_then() {
        let t0 = Instant::now();
        let mut b = Bucket::per_minute(60.0, 1.0, t0);
        b.reserve(70.0, t0);
        b.empty_at(t0 + secs(5.0), t0);
        assert_eq!(b.reserve(1.0, t0 + secs(1.0)), t0 + secs(6.0));
        assert_eq!(b.reserve(1.0, t0 + secs(1.0)), t0 + secs(7.0));
    }
}
