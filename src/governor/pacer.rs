//! Proactive pacing and the shared 429 cooldown of one provider (pure; the caller passes
//! `now` and does the sleeping).
//!
//! The request rate comes from, in order of trust: the provider's `x-ratelimit-*` report, the
//! configured RPM, or a rate learned from 429s when neither exists. A learned rate starts from
//! how many calls the provider accepted before it first refused one, and is cut and grown
//! AIMD-style afterwards. Tokens are paced only when a TPM is configured or reported.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::bucket::Bucket;
use super::cooldown::Cooldown;
use super::stats::WaitReason;
use crate::llm::{RateLimitHints, Usage};

const MINUTE: Duration = Duration::from_secs(60);

/// Where the request rate being paced to comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateSource {
    Configured,
    /// `x-ratelimit-*-requests` headers.
    Reported,
    /// Learned from 429s.
    Learned,
}

/// A place in the request and token queues, taken before sending.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reservation {
    at: Instant,
    epoch: u64,
    tokens: f64,
}

/// What a request should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Sleep until then (for this reason) and ask again.
    Wait(Instant, WaitReason),
    /// Send now; the pacer counted it as in flight from `now`.
    Go,
}

/// Pacing state of one provider.
#[derive(Debug, Clone)]
pub struct Pacer {
    headroom: f64,
    requests: Option<Bucket>,
    source: Option<RateSource>,
    /// The highest rate a learned or cut rate may grow back to (configured · headroom).
    rate_cap: Option<f64>,
    tokens: Option<Bucket>,
    /// Bumped whenever the buckets are emptied; older reservations must be taken again.
    epoch: u64,
    cooldown: Cooldown,
    /// When the rate was last cut; 429s to requests sent before it are the same event.
    last_cut: Option<Instant>,
    accepted_since_cut: u64,
    first_send: Option<Instant>,
    /// Send times of accepted calls in the last minute.
    accepted: VecDeque<Instant>,
    /// Send times of calls in flight, and the tokens they reserved.
    in_flight: Vec<Instant>,
    in_flight_tokens: f64,
    tokens_per_char: f64,
}

impl Pacer {
    /// `rpm`/`tpm` configured quotas; pacing runs at `headroom` (≤ 1) of them.
    pub fn new(rpm: Option<u32>, tpm: Option<u32>, headroom: f64, now: Instant) -> Self {
        let headroom = headroom.clamp(0.1, 1.0);
        let requests = rpm.map(|r| Bucket::per_minute(r as f64, headroom, now));
        Self {
            headroom,
            source: requests.as_ref().map(|_| RateSource::Configured),
            rate_cap: rpm.map(|r| r as f64 * headroom),
            requests,
            tokens: tpm.map(|t| Bucket::per_minute(t as f64, headroom, now)),
            epoch: 0,
            cooldown: Cooldown::default(),
            last_cut: None,
            accepted_since_cut: 0,
            first_send: None,
            accepted: VecDeque::new(),
            in_flight: Vec::new(),
            in_flight_tokens: 0.0,
            tokens_per_char: 0.25,
        }
    }

    /// Estimated tokens of a request with `chars` characters of prompt and the output cap.
    pub fn estimate_tokens(&self, chars: usize, max_output_tokens: u32) -> f64 {
        (chars as f64 * self.tokens_per_char).ceil() + max_output_tokens as f64
    }

    /// The request rate paced to, per minute, if any.
    pub fn rate_per_minute(&self) -> Option<f64> {
        self.requests.as_ref().map(Bucket::rate_per_minute)
    }

    pub fn source(&self) -> Option<RateSource> {
        self.source
    }

    pub fn cooldown_until(&self, now: Instant) -> Option<Instant> {
        self.cooldown.until(now)
    }

    /// How many 429s in a row (for the backoff exponent when the server gave no hint).
    pub fn consecutive_429s(&self) -> u32 {
        self.cooldown.streak()
    }

    /// The next step for a request costing `tokens`, holding `res` (taken or renewed here).
    pub fn next_step(&mut self, res: &mut Option<Reservation>, tokens: f64, now: Instant) -> Step {
        if let Some(until) = self.cooldown_until(now) {
            return Step::Wait(until, WaitReason::Cooldown429);
        }
        let r = match *res {
            Some(r) if r.epoch == self.epoch => r,
            _ => {
                let req_at = self.requests.as_mut().map_or(now, |b| b.reserve(1.0, now));
                let tok_at = self.tokens.as_mut().map_or(now, |b| b.reserve(tokens, now));
                let r = Reservation {
                    at: req_at.max(tok_at),
                    epoch: self.epoch,
                    tokens,
                };
                *res = Some(r);
                r
            }
        };
        if r.at > now {
            return Step::Wait(r.at, WaitReason::Preflight);
        }
        self.first_send.get_or_insert(now);
        self.in_flight.push(now);
        self.in_flight_tokens += r.tokens;
        Step::Go
    }

    fn finish(&mut self, sent_at: Instant, tokens: f64) {
        if let Some(i) = self.in_flight.iter().position(|&t| t == sent_at) {
            self.in_flight.swap_remove(i);
        }
        self.in_flight_tokens = (self.in_flight_tokens - tokens).max(0.0);
    }

    /// A call sent at `sent_at` with `tokens` estimated tokens and `chars` prompt characters
    /// was answered: correct the estimate from the usage, adopt the reported limits, and let
    /// a cut rate grow back by about one request a minute per minute.
    pub fn on_success(
        &mut self,
        sent_at: Instant,
        tokens: f64,
        chars: usize,
        usage: Option<Usage>,
        hints: &RateLimitHints,
        now: Instant,
    ) {
        self.finish(sent_at, tokens);
        self.cooldown.clear_streak();
        self.accepted.push_back(sent_at);
        self.accepted_since_cut += 1;
        while self.accepted.front().is_some_and(|&t| t + MINUTE < now) {
            self.accepted.pop_front();
        }
        if let Some(u) = usage {
            let actual = (u.input_tokens + u.output_tokens) as f64;
            if let Some(b) = self.tokens.as_mut() {
                b.adjust(tokens - actual, now);
            }
            if chars > 0 && u.input_tokens > 0 {
                let ratio = u.input_tokens as f64 / chars as f64;
                self.tokens_per_char = 0.5 * self.tokens_per_char + 0.5 * ratio;
            }
        }
        self.apply_hints(hints, now);
        if let (Some(b), Some(RateSource::Configured | RateSource::Learned)) =
            (self.requests.as_mut(), self.source)
        {
            let rate = b.rate_per_minute();
            let grown = rate + 1.0 / rate.max(1.0);
            let grown = self.rate_cap.map_or(grown, |cap| grown.min(cap.max(rate)));
            if grown > rate {
                b.set_rate_per_minute(grown, now);
            }
        }
    }

    fn apply_hints(&mut self, h: &RateLimitHints, now: Instant) {
        let outstanding = self.in_flight.len() as f64;
        if let Some(remaining) = h.remaining_requests {
            let limit = h.limit_requests.map(|l| l as f64);
            let b = self.requests.get_or_insert_with(|| {
                Bucket::per_minute(limit.unwrap_or(remaining as f64 + 1.0), self.headroom, now)
            });
            if let Some(limit) = limit {
                b.set_shape(
                    limit,
                    remaining as f64,
                    h.reset_requests,
                    self.headroom,
                    now,
                );
                self.rate_cap = Some(b.rate_per_minute());
            }
            b.set_remaining(remaining as f64, outstanding, now);
            self.source = Some(RateSource::Reported);
        }
        if let Some(remaining) = h.remaining_tokens {
            let limit = h.limit_tokens.map(|l| l as f64);
            let b = self.tokens.get_or_insert_with(|| {
                Bucket::per_minute(limit.unwrap_or(remaining as f64 + 1.0), self.headroom, now)
            });
            if let Some(limit) = limit {
                b.set_shape(limit, remaining as f64, h.reset_tokens, self.headroom, now);
            }
            b.set_remaining(remaining as f64, self.in_flight_tokens, now);
        }
    }

    /// A call sent at `sent_at` was answered "slow down" (OpenAI `slow_down`: traffic ramped
    /// up too fast): halve the request rate, or start pacing at half the rate accepted in the
    /// minute before it, without pausing the provider. Answers to calls sent before the last
    /// cut are the same event. True if the rate was cut.
    pub fn on_slow_down(&mut self, sent_at: Instant, tokens: f64, now: Instant) -> bool {
        self.finish(sent_at, tokens);
        if self.last_cut.is_some_and(|cut| sent_at <= cut) {
            return false;
        }
        match self.requests.as_mut() {
            Some(b) => {
                let halved = (b.rate_per_minute() / 2.0).max(1.0);
                b.set_rate_per_minute(halved, now);
            }
            None => {
                let window_start = sent_at.checked_sub(MINUTE);
                let sent = self
                    .accepted
                    .iter()
                    .chain(&self.in_flight)
                    .filter(|t| window_start.is_none_or(|s| **t >= s) && **t <= sent_at)
                    .count();
                let halved = (sent as f64 / 2.0).max(1.0);
                self.requests = Some(Bucket::empty_per_minute(halved, 1.0, now));
                self.source = Some(RateSource::Learned);
            }
        }
        self.last_cut = Some(now);
        self.accepted_since_cut = 0;
        self.epoch += 1;
        true
    }

    /// A call ended in an error that is not a 429 (its slot in flight is freed).
    pub fn on_error(&mut self, sent_at: Instant, tokens: f64) {
        self.finish(sent_at, tokens);
    }

    /// A call sent at `sent_at` was refused with 429; the provider pauses for `wait`. Every
    /// request waits until then, and the request bucket restarts empty then. Returns true if
    /// this was a new congestion event (the first 429 to a request sent after the last cut),
    /// in which case the rate was cut (or learned).
    pub fn on_rate_limited(
        &mut self,
        sent_at: Instant,
        tokens: f64,
        wait: Duration,
        now: Instant,
    ) -> bool {
        self.finish(sent_at, tokens);
        let extended = self.cooldown.extend(wait, now);
        let new_event = self.last_cut.is_none_or(|cut| sent_at > cut);
        if new_event {
            match self.requests.as_mut() {
                Some(_) => {
                    let rate = self.cut_rate(now);
                    if let Some(b) = self.requests.as_mut() {
                        b.set_rate_per_minute(rate, now);
                    }
                }
                None => {
                    if let Some(rpm) = self.first_estimate(sent_at) {
                        self.requests = Some(Bucket::empty_per_minute(rpm, self.headroom, now));
                        self.source = Some(RateSource::Learned);
                    }
                }
            }
            self.last_cut = Some(now);
            self.accepted_since_cut = 0;
        }
        if new_event || extended {
            let restart = self.cooldown.until(now).unwrap_or(now);
            if let Some(b) = self.requests.as_mut() {
                b.empty_at(restart, now);
            }
            self.epoch += 1;
        }
        new_event
    }

    /// The provider's RPM estimated at the first 429 (to a call sent at `sent_at`) when there
    /// is nothing to pace to yet: it accepted `w` calls in the last minute, which for a
    /// per-minute bucket that started full is `rpm · (1 + t/60)` after `t` s (an upper bound
    /// on rpm later in a run). `None` below [`Self::MIN_SAMPLE`] calls: too little to learn
    /// from, so the cooldown and concurrency cut alone respond.
    fn first_estimate(&self, sent_at: Instant) -> Option<f64> {
        let window_start = sent_at.checked_sub(MINUTE);
        let counted = |t: &&Instant| window_start.is_none_or(|s| **t >= s) && **t <= sent_at;
        let w = self.accepted.iter().filter(counted).count()
            + self.in_flight.iter().filter(counted).count();
        if w < Self::MIN_SAMPLE {
            return None;
        }
        let elapsed = self
            .first_send
            .map_or(Duration::ZERO, |f| sent_at.saturating_duration_since(f))
            .min(MINUTE);
        Some(w as f64 / (1.0 + elapsed.as_secs_f64() / 60.0))
    }

    /// Calls accepted before the first 429 needed to learn a rate from it.
    pub const MIN_SAMPLE: usize = 5;

    /// The rate to pace at after a later 429: cut by β, or to the rate actually accepted since
    /// the last cut when that was measured over long enough and is lower (never below half).
    fn cut_rate(&self, now: Instant) -> f64 {
        const BETA: f64 = 0.9;
        let rate = self.requests.as_ref().map_or(1.0, Bucket::rate_per_minute);
        let mut cut = rate * BETA;
        if let Some(cut_at) = self.last_cut {
            let span = now.saturating_duration_since(cut_at);
            if span >= Duration::from_secs(20) {
                let delivered = self.accepted_since_cut as f64 * 60.0 / span.as_secs_f64();
                cut = cut.min(delivered * self.headroom).max(rate * 0.5);
            }
        }
        cut.max(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: f64) -> Duration {
        Duration::from_secs_f64(n)
    }

    fn go(p: &mut Pacer, tokens: f64, now: Instant) -> Result<Instant, Step> {
        let mut res = None;
        match p.next_step(&mut res, tokens, now) {
            Step::Go => Ok(now),
            other => Err(other),
        }
    }

    #[test]
    fn without_quota_nothing_waits() {
        let t0 = Instant::now();
        let mut p = Pacer::new(None, None, 1.0, t0);
        for _ in 0..1000 {
            assert_eq!(go(&mut p, 500.0, t0), Ok(t0));
        }
        assert_eq!(p.rate_per_minute(), None);
    }

    #[test]
    fn rpm_burst_then_one_per_interval_with_reservation_renewed_after_cooldown() {
        let t0 = Instant::now();
        let mut p = Pacer::new(Some(2), None, 1.0, t0);
        assert_eq!(go(&mut p, 1.0, t0), Ok(t0));
        assert_eq!(go(&mut p, 1.0, t0), Ok(t0));
        let mut res = None;
        assert_eq!(
            p.next_step(&mut res, 1.0, t0),
            Step::Wait(t0 + secs(30.0), WaitReason::Preflight)
        );
        // A 429 meanwhile: everyone waits for the cooldown, then the bucket restarts empty
        // at the cut rate (2 · 0.9 a minute) and the old reservation is taken again.
        assert!(p.on_rate_limited(t0, 1.0, secs(5.0), t0 + secs(1.0)));
        let t6 = t0 + secs(6.0);
        assert_eq!(
            p.next_step(&mut res, 1.0, t0 + secs(2.0)),
            Step::Wait(t6, WaitReason::Cooldown429)
        );
        assert_eq!(
            p.next_step(&mut res, 1.0, t6),
            Step::Wait(t6 + secs(60.0 / 1.8), WaitReason::Preflight)
        );
        assert_eq!(p.next_step(&mut res, 1.0, t6 + secs(60.0 / 1.8)), Step::Go);
    }

    #[test]
    fn tpm_corrected_from_usage_and_estimate_learns_ratio() {
        let t0 = Instant::now();
        let mut p = Pacer::new(None, Some(1000), 1.0, t0);
        assert_eq!(p.estimate_tokens(400, 100), 200.0);
        assert_eq!(go(&mut p, 600.0, t0), Ok(t0));
        let usage = Usage {
            input_tokens: 200,
            output_tokens: 0,
            cached_input_tokens: 0,
        };
        p.on_success(t0, 600.0, 400, Some(usage), &RateLimitHints::default(), t0);
        // 400 tokens refunded: 800 left, a 700-token request goes at once.
        assert_eq!(go(&mut p, 700.0, t0), Ok(t0));
        assert_eq!(p.estimate_tokens(400, 100), 250.0);
    }

    #[test]
    fn slow_down_halves_the_rate_without_a_cooldown() {
        let t0 = Instant::now();
        let mut p = Pacer::new(Some(120), None, 1.0, t0);
        go(&mut p, 1.0, t0).unwrap();
        assert!(p.on_slow_down(t0, 1.0, t0 + secs(0.1)));
        assert_eq!(p.rate_per_minute(), Some(60.0));
        assert_eq!(p.cooldown_until(t0 + secs(0.1)), None);
        assert_eq!(p.consecutive_429s(), 0);
        // A second answer to a call sent before the cut is the same event.
        assert!(!p.on_slow_down(t0, 1.0, t0 + secs(0.2)));
        assert_eq!(p.rate_per_minute(), Some(60.0));

        // Nothing to pace to yet: half the rate the provider accepted in the last minute.
        let mut p = Pacer::new(None, None, 1.0, t0);
        for i in 0..10 {
            let at = t0 + secs(f64::from(i));
            go(&mut p, 1.0, at).unwrap();
            p.on_success(at, 1.0, 0, None, &RateLimitHints::default(), at);
        }
        let at = t0 + secs(10.0);
        go(&mut p, 1.0, at).unwrap();
        assert!(p.on_slow_down(at, 1.0, at));
        assert_eq!(p.rate_per_minute(), Some(5.0));
        assert_eq!(p.source(), Some(RateSource::Learned));
        assert_eq!(p.cooldown_until(at), None);
    }

    #[test]
    fn reported_limits_override_configured() {
        let t0 = Instant::now();
        let mut p = Pacer::new(Some(600), None, 1.0, t0);
        let h = RateLimitHints {
            limit_requests: Some(60),
            remaining_requests: Some(0),
            reset_requests: Some(secs(60.0)),
            ..Default::default()
        };
        go(&mut p, 1.0, t0).unwrap();
        p.on_success(t0, 1.0, 0, None, &h, t0);
        assert_eq!(p.source(), Some(RateSource::Reported));
        assert_eq!(p.rate_per_minute(), Some(60.0));
        let mut res = None;
        assert_eq!(
            p.next_step(&mut res, 1.0, t0),
            Step::Wait(t0 + secs(1.0), WaitReason::Preflight)
        );
    }

    #[test]
    fn first_429_learns_rate_from_accepted_calls_and_stale_429s_do_not_cut_again() {
        let t0 = Instant::now();
        let mut p = Pacer::new(None, None, 1.0, t0);
        // 66 calls accepted in the first 6 s: a bucket of rpm that started full and refilled
        // 6 s admits rpm·1.1, so rpm ≈ 60.
        for i in 0..66 {
            let t = t0 + secs(i as f64 * 6.0 / 65.0);
            go(&mut p, 0.0, t).unwrap();
            p.on_success(t, 0.0, 0, None, &RateLimitHints::default(), t);
        }
        let t6 = t0 + secs(6.0);
        go(&mut p, 0.0, t6).unwrap();
        assert!(p.on_rate_limited(t6, 0.0, secs(1.0), t6));
        assert_eq!(p.source(), Some(RateSource::Learned));
        assert_eq!(p.rate_per_minute().map(|r| r.round()), Some(60.0));
        // A request sent before the cut comes back 429 too: same event, no second cut.
        assert!(!p.on_rate_limited(t6, 0.0, secs(1.0), t6 + secs(0.1)));
        assert_eq!(p.rate_per_minute().map(|r| r.round()), Some(60.0));
        // Cooldown, then one call a second.
        let mut res = None;
        assert_eq!(
            p.next_step(&mut res, 0.0, t6),
            Step::Wait(t6 + secs(1.1), WaitReason::Cooldown429)
        );
        let t = t6 + secs(1.1);
        let Step::Wait(at, WaitReason::Preflight) = p.next_step(&mut res, 0.0, t) else {
            panic!()
        };
        assert!((at - t).as_secs_f64() > 0.99 && (at - t).as_secs_f64() < 1.01);
        // A new 429 to a request sent after the cut: cut by 0.9.
        assert!(p.on_rate_limited(at, 0.0, secs(1.0), at));
        assert_eq!(p.rate_per_minute().map(|r| r.round()), Some(54.0));
    }

    #[test]
    fn too_few_accepted_calls_learn_nothing() {
        let t0 = Instant::now();
        let mut p = Pacer::new(None, None, 1.0, t0);
        for _ in 0..Pacer::MIN_SAMPLE - 1 {
            go(&mut p, 0.0, t0).unwrap();
        }
        assert!(p.on_rate_limited(t0, 0.0, secs(2.0), t0));
        assert_eq!(p.rate_per_minute(), None);
        assert_eq!(
            go(&mut p, 0.0, t0 + secs(1.0)),
            Err(Step::Wait(t0 + secs(2.0), WaitReason::Cooldown429))
        );
        assert_eq!(go(&mut p, 0.0, t0 + secs(2.0)), Ok(t0 + secs(2.0)));
    }

    #[test]
    fn cut_rate_grows_back_slowly_up_to_the_configured_cap() {
        let t0 = Instant::now();
        let mut p = Pacer::new(Some(60), None, 1.0, t0);
        go(&mut p, 0.0, t0).unwrap();
        p.on_rate_limited(t0, 0.0, secs(0.0), t0);
        assert_eq!(p.rate_per_minute(), Some(54.0));
        for _ in 0..54 {
            go(&mut p, 0.0, t0).ok();
            p.on_success(t0, 0.0, 0, None, &RateLimitHints::default(), t0);
        }
        let r = p.rate_per_minute().unwrap();
        assert!(r > 54.9 && r < 55.1, "{r}");
        for _ in 0..1000 {
            p.on_success(t0, 0.0, 0, None, &RateLimitHints::default(), t0);
        }
        assert_eq!(p.rate_per_minute(), Some(60.0));
    }
}
