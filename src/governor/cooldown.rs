//! The shared pause after a 429 (pure; the caller passes `now` and does the sleeping): once a
//! server has said "wait", nobody is sent to it until the wait has passed, because an early
//! request only earns the same or a longer wait. Used by each provider's [`super::pacer`] and
//! by the Confluence site governor (`crate::confluence::pace`).

use std::time::Duration;

use tokio::time::Instant;

use crate::retry::Backoff;

/// When the server may be called again, and how many 429s came in a row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cooldown {
    until: Option<Instant>,
    streak: u32,
}

impl Cooldown {
    /// The end of the pause, while it lasts.
    pub fn until(&self, now: Instant) -> Option<Instant> {
        self.until.filter(|&u| u > now)
    }

    /// A 429 (or a 503 with a wait) asks for `wait` from `now`: the pause lasts until then
    /// unless it already lasts longer. Returns true when this moved the end later.
    pub fn extend(&mut self, wait: Duration, now: Instant) -> bool {
        self.streak += 1;
        let until = now + wait;
        let extended = self.until.is_none_or(|u| until > u);
        if extended {
            self.until = Some(until);
        }
        extended
    }

    /// 429s in a row (for the backoff exponent when the server gave no hint).
    pub fn streak(&self) -> u32 {
        self.streak
    }

    /// A call went through: the next unhinted 429 starts the backoff afresh.
    pub fn clear_streak(&mut self) {
        self.streak = 0;
    }

    /// The pause for a 429 without a hint: capped exponential backoff over the streak so far,
    /// with full jitter (`unit` in `[0, 1)`).
    pub fn unhinted_wait(&self, backoff: &Backoff, unit: f64) -> Duration {
        backoff.full_jitter(self.streak, unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_end_extends_an_earlier_one_never_shortens_it() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut c = Cooldown::default();
        assert_eq!(c.until(t0), None);
        assert!(c.extend(s(5), t0));
        assert!(!c.extend(s(1), t0 + s(1)));
        assert_eq!(c.until(t0 + s(2)), Some(t0 + s(5)));
        assert!(c.extend(s(5), t0 + s(1)));
        assert_eq!(c.until(t0 + s(5)), Some(t0 + s(6)));
        assert_eq!(c.until(t0 + s(6)), None);
        assert_eq!(c.streak(), 3);
        let b = Backoff::new(s(1), s(30));
        assert_eq!(c.unhinted_wait(&b, 1.0), s(8));
        c.clear_streak();
        assert_eq!(c.unhinted_wait(&b, 0.5), Duration::from_millis(500));
    }
}
